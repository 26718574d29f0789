"""Column and field limits shared by models and schemas, so both always agree."""

USERNAME_MIN = 3
USERNAME_MAX = 32
USERNAME_PATTERN = r"^[A-Za-z0-9_.-]+$"
EMAIL_MAX = 254
NAME_MAX = 100
PASSWORD_HASH_MAX = 60
# NIST SP 800-63B: at least 8 characters; bcrypt reads at most 72 bytes.
PASSWORD_MIN_CHARS = 8
PASSWORD_MAX_BYTES = 72
