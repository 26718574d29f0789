"""Column and field limits shared by models and schemas, so both always agree."""

USERNAME_MIN = 3
USERNAME_MAX = 32
USERNAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
EMAIL_MAX = 254
NAME_MAX = 100
{%- if cookiecutter.database == "postgresql" %}
# PostgreSQL text cannot hold NUL (U+0000): free-text fields refuse it (422, not a 500).
{%- else %}
# SQLite's text functions (length, LIKE) stop at a NUL (U+0000): free-text fields refuse it.
{%- endif %}
NO_NUL_PATTERN = r"^[^\x00]*$"
# The largest OFFSET the database takes (a signed 64-bit integer).
PAGE_OFFSET_MAX = 2**63 - 1
PASSWORD_HASH_MAX = 60
# NIST SP 800-63B: at least 8 characters; bcrypt reads at most 72 bytes.
PASSWORD_MIN_CHARS = 8
PASSWORD_MAX_BYTES = 72
