"""Settings, read from the environment and `.env`."""

import enum
{%- if cookiecutter.use_redis %}
import socket
import tempfile
{%- endif %}
from collections.abc import Iterator
{%- if cookiecutter.use_redis %}
from pathlib import Path
{%- endif %}
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit, urlunsplit

from limits import RateLimitItem, RateLimitItemPerHour, RateLimitItemPerMinute, parse
from pydantic import (
    Field,
    NameEmail,
    PlainValidator,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

INSECURE_SECRET_KEYS = frozenset({"change-me", "changeme", "secret", "password"})
MIN_SECRET_KEY_LENGTH = 32
# A random key of 32+ characters has far more distinct ones; "aaaa..." or "abab..." does not.
MIN_SECRET_KEY_DISTINCT_CHARACTERS = 12
MIN_PROD_BCRYPT_ROUNDS = 10
GENERATE_KEY_HINT = (
    'generate one with: python -c "import secrets; print(secrets.token_urlsafe(64))"'
)
MASK = "**********"
# The longest wait before a retry, in seconds (the n-th retry waits n x JOB_RETRY_DELAY_SECONDS).
MAX_RETRY_DELAY_SECONDS = 900.0
{%- if cookiecutter.use_redis %}
# The random part added to each retry's wait, at most.
RETRY_JITTER_SECONDS = 1.0
# What JOB_REDELIVER_AFTER_SECONDS keeps beyond a job's longest run and retry wait: the
# acknowledgement's round trip, a busy event loop.
REDELIVERY_MARGIN_SECONDS = 2.0
{%- endif %}


def _parse_rate_limit(value: object) -> RateLimitItem:
    if isinstance(value, RateLimitItem):
        return value
    try:
        return parse(str(value))
    except ValueError as exc:
        msg = "must be a rate limit like '5/minute' or '100/hour'"
        raise ValueError(msg) from exc


# A rate limit in the `limits` notation ("5/minute", "100/hour"), parsed once into its item.
RateLimit = Annotated[RateLimitItem, PlainValidator(_parse_rate_limit)]


def mask_password(url: str) -> str:
    """The URL with its password (if any) shown as `**********`."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{MASK}@{host}"))


class Environment(enum.StrEnum):
    LOCAL = "local"
    DEV = "dev"
    STAGING = "staging"
    PROD = "prod"


class Need(enum.Enum):
    """Settings that only some commands use. Each entry point asks for its own
    (`load_settings(Need.MAIL)`), so migrating or purging needs no secret but the database's.
    What every command reads has a default.
    """

    # SECRET_KEY: signing and checking tokens.
    TOKENS = "tokens"
    # Outside local SMTP_HOST, EMAIL_FROM and FRONTEND_URL; SMTP_USER with SMTP_PASSWORD: the
    # password-reset mail.
    MAIL = "mail"
    {%- if cookiecutter.use_b2_storage %}
    # B2_APPLICATION_KEY_ID, B2_APPLICATION_KEY, B2_BUCKET_NAME: the file storage.
    STORAGE = "storage"
    {%- endif %}


class Settings(BaseSettings):
    # A refused value is never echoed: error messages name the setting, not what it held. An
    # empty variable (`SMTP_HOST=` in .env) is unset, not a host named "".
    model_config = SettingsConfigDict(
        env_file=".env", env_ignore_empty=True, extra="ignore", hide_input_in_errors=True
    )

    project_name: str = "{{ cookiecutter.project_name }}"
    # Not local: a deployment that forgets to say what it is gets the strict rules.
    current_environment: Environment = Environment.PROD

    {%- if cookiecutter.database == "postgresql" %}

    database_url: str = "postgresql+asyncpg://postgres:postgres@127.0.0.1:5432/{{ cookiecutter.project_slug.replace('-', '_') }}"
    db_echo: bool = False
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=5, ge=0)
    db_pool_timeout: float = Field(default=5.0, gt=0)
    # Seconds to open a new connection (a server that never answers fails here, not later).
    db_connect_timeout: float = Field(default=5.0, gt=0)
    db_pool_recycle: int = 1800
    # A ping costs a round trip per request; pool_recycle already retires idle connections.
    db_pool_pre_ping: bool = False
    db_statement_timeout_ms: int = Field(default=15_000, ge=0)
    # PgBouncer in transaction mode: no prepared statements kept between transactions, and the
    # statement timeout set per transaction (PgBouncer refuses it as a start-up parameter).
    db_pgbouncer: bool = False
    # The server's max_connections left for this service. When set, every process's pool
    # must fit: (DB_POOL_SIZE + DB_MAX_OVERFLOW) x WEB_CONCURRENCY x MAX_REPLICAS.
    db_max_connections: int | None = Field(default=None, ge=1)
    max_replicas: int = Field(default=1, ge=1)
    {%- else %}

    database_url: str = "sqlite+aiosqlite:///./app.db"
    db_echo: bool = False
    db_busy_timeout_ms: int = Field(default=5_000, ge=0)
    {%- endif %}

    # No usable default: every environment must set its own (`.env` has one for local work).
    # Unset, only the commands that sign tokens refuse to start (Need.TOKENS); a weak key is
    # refused wherever it is set.
    secret_key: SecretStr = SecretStr("")
    access_token_expire_minutes: int = Field(default=30, ge=1)
    refresh_token_expire_days: int = Field(default=14, ge=1)
    # Allowance for clocks a little apart (replicas, clients): applied to `iat` and `exp`.
    token_leeway_seconds: int = Field(default=30, ge=0, le=300)
    bcrypt_rounds: int = Field(default=12, ge=4, le=31)
    # Hashing is CPU-bound: more parallel hashes than spare cores only starve the event loop.
    password_hash_concurrency: int = Field(default=1, ge=1)

    # Read by uvicorn itself (its --workers default); known here for the start-up checks.
    web_concurrency: int = Field(default=1, ge=1)
    cors_origins: list[str] = []
    # The largest request body, in bytes, for every route but the file upload (JSON and forms).
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    docs_enabled: bool | None = None

    log_level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_json: bool | None = None
    {%- if cookiecutter.use_redis %}

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_connect_timeout: float = Field(default=1.0, gt=0)
    redis_socket_timeout: float = Field(default=1.0, gt=0)
    # Every key this service writes starts with it, so services can share one Redis.
    redis_key_prefix: str = Field(default="{{ cookiecutter.project_slug }}", min_length=1)
    {%- endif %}

    # Auth rate limits, in the `limits` notation ("5/minute", "100/hour"). Login counts failed
    # attempts only, per account and per client address; the others count every request per
    # client address.
    rate_limit_login_account: RateLimit = RateLimitItemPerMinute(5)
    rate_limit_login_address: RateLimit = RateLimitItemPerMinute(20)
    rate_limit_signup: RateLimit = RateLimitItemPerMinute(10)
    rate_limit_refresh: RateLimit = RateLimitItemPerMinute(30)
    rate_limit_password_change: RateLimit = RateLimitItemPerMinute(5)
    # Password-reset requests per e-mail address asked for, and per client address; confirmations
    # per client address.
    rate_limit_password_reset_account: RateLimit = RateLimitItemPerHour(5)
    rate_limit_password_reset_address: RateLimit = RateLimitItemPerHour(20)
    rate_limit_password_reset_confirm: RateLimit = RateLimitItemPerMinute(10)

    # Outgoing e-mail (the password-reset link). In `local` without SMTP_HOST, mail is written
    # to the log instead; every other environment must set SMTP_HOST, EMAIL_FROM, FRONTEND_URL.
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    # TLS from the first byte (usually port 465), or STARTTLS after connecting (usually 587).
    smtp_tls: bool = False
    smtp_starttls: bool = True
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    email_from: NameEmail = NameEmail("{{ cookiecutter.project_slug }}", "noreply@example.com")
    # The web page that reads the token from the link and posts the new password.
    frontend_url: str = "http://localhost:3000"
    password_reset_path: str = Field(default="/reset-password", pattern=r"^/[^?#]*$")
    password_reset_token_expire_minutes: int = Field(default=30, ge=1, le=24 * 60)

    # Background jobs: attempts per job (the first included), and the wait before the n-th
    # retry (n times this, plus up to a second of jitter).
    job_max_attempts: int = Field(default=5, ge=1, le=20)
    job_retry_delay_seconds: float = Field(default=10.0, gt=0, le=3600)
    # A job still running after this long is cut off (and fails, so it may be retried).
    job_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    {%- if cookiecutter.use_redis %}
    # A job not acknowledged for this long (its worker died) is taken over by another worker:
    # longer than any job runs, retries' waits included (checked below).
    job_redeliver_after_seconds: float = Field(default=300.0, gt=0)
    # A job delivered more often than this (it stopped its worker each time) is dead-lettered.
    job_max_deliveries: int = Field(default=5, ge=1, le=100)
    # The worker's consumer name is `<WORKER_NAME>-<n>`: the host name, or the pod's name.
    worker_name: str = Field(default_factory=socket.gethostname, min_length=1, pattern=r"^\S+$")
    # Touched every few seconds by a running worker; its liveness probe reads its age.
    worker_heartbeat_file: Path = Path(tempfile.gettempdir()) / "worker-heartbeat"
    {%- endif %}
    {%- if cookiecutter.use_b2_storage %}

    # Unset, only the commands that store files refuse to start (Need.STORAGE).
    b2_application_key_id: str = ""
    b2_application_key: SecretStr = SecretStr("")
    b2_bucket_name: str = ""
    b2_realm: str = "production"
    b2_upload_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    b2_allowed_content_types: list[str] = [
        "image/png",
        "image/jpeg",
        "application/pdf",
        "text/plain",
    ]
    b2_link_valid_seconds: int = Field(default=3600, ge=1, le=604_800)
    {%- endif %}

    {%- if cookiecutter.database == "postgresql" %}

    @model_validator(mode="after")
    def _pools_fit_the_server(self) -> Self:
        if self.db_max_connections is None:
            return self
        needed = (
            (self.db_pool_size + self.db_max_overflow) * self.web_concurrency * self.max_replicas
        )
        if needed > self.db_max_connections:
            msg = (
                f"(DB_POOL_SIZE + DB_MAX_OVERFLOW) x WEB_CONCURRENCY x MAX_REPLICAS = {needed} "
                f"connections, more than DB_MAX_CONNECTIONS={self.db_max_connections}; lower the "
                "pool or the process count, or put PgBouncer in front (DB_PGBOUNCER=true)"
            )
            raise ValueError(msg)
        return self
    {%- endif %}

    {%- if cookiecutter.use_redis %}

    @model_validator(mode="after")
    def _redelivery_outlasts_a_job(self) -> Self:
        retries = self.job_max_attempts - 1
        longest_retry_wait = (
            min(self.job_retry_delay_seconds * retries, MAX_RETRY_DELAY_SECONDS)
            + RETRY_JITTER_SECONDS
            if retries
            else 0.0
        )
        needed = self.job_timeout_seconds + longest_retry_wait + REDELIVERY_MARGIN_SECONDS
        if self.job_redeliver_after_seconds <= needed:
            msg = (
                f"JOB_REDELIVER_AFTER_SECONDS={self.job_redeliver_after_seconds:g} must be longer "
                f"than JOB_TIMEOUT_SECONDS={self.job_timeout_seconds:g} plus the longest retry "
                f"wait ({longest_retry_wait:g} s, from JOB_RETRY_DELAY_SECONDS and "
                f"JOB_MAX_ATTEMPTS) plus {REDELIVERY_MARGIN_SECONDS:g} s, more than "
                f"{needed:g} s: else a job still running is handed to a second worker"
            )
            raise ValueError(msg)
        return self
    {%- endif %}

    @field_validator("secret_key")
    @classmethod
    def _require_a_real_secret(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if secret and (
            secret.lower() in INSECURE_SECRET_KEYS
            or len(secret) < MIN_SECRET_KEY_LENGTH
            or len(set(secret)) < MIN_SECRET_KEY_DISTINCT_CHARACTERS
        ):
            msg = (
                f"SECRET_KEY is too weak: use a random value of at least "
                f"{MIN_SECRET_KEY_LENGTH} characters; {GENERATE_KEY_HINT}"
            )
            raise ValueError(msg)
        return value

    @field_validator("frontend_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc or parts.query:
            msg = "must be an http(s) URL such as https://app.example.com, without a query"
            raise ValueError(msg)
        return value.rstrip("/")

    @model_validator(mode="after")
    def _mail_settings_fit(self) -> Self:
        if self.smtp_tls and self.smtp_starttls:
            msg = "SMTP_TLS and SMTP_STARTTLS exclude each other: set one of them to false"
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _refuse_weak_production_settings(self) -> Self:
        if self.current_environment is not Environment.PROD:
            return self
        if "*" in self.cors_origins:
            msg = (
                'CORS_ORIGINS must list the allowed origins in prod, not "*": the API '
                "allows credentials, so any site could call it as the signed-in user"
            )
            raise ValueError(msg)
        if self.bcrypt_rounds < MIN_PROD_BCRYPT_ROUNDS:
            msg = f"BCRYPT_ROUNDS must be at least {MIN_PROD_BCRYPT_ROUNDS} in prod"
            raise ValueError(msg)
        return self

    def unmet(self, *needs: Need) -> list[str]:
        """What these needs miss, one problem each (none: every need is met)."""
        problems: list[str] = []
        if Need.TOKENS in needs and not self.secret_key.get_secret_value():
            problems.append(f"SECRET_KEY is not set; {GENERATE_KEY_HINT}")
        if Need.MAIL in needs:
            problems.extend(self._unmet_mail())
        {%- if cookiecutter.use_b2_storage %}
        if Need.STORAGE in needs:
            missing = [
                name
                for name, value in (
                    ("B2_APPLICATION_KEY_ID", self.b2_application_key_id),
                    ("B2_APPLICATION_KEY", self.b2_application_key.get_secret_value()),
                    ("B2_BUCKET_NAME", self.b2_bucket_name),
                )
                if not value
            ]
            if missing:
                problems.append(
                    f"{', '.join(missing)} must be set: the file storage needs a key and a bucket"
                )
        {%- endif %}
        return problems

    def _unmet_mail(self) -> Iterator[str]:
        if not self.is_local:
            missing = [
                name.upper()
                for name in ("smtp_host", "email_from", "frontend_url")
                if name not in self.model_fields_set or not getattr(self, name)
            ]
            if missing:
                yield (
                    f"{', '.join(missing)} must be set outside local: the password-reset mail "
                    "needs a server, a sender and the page its link opens"
                )
        if (self.smtp_user is None) != (self.smtp_password is None):
            yield "SMTP_USER and SMTP_PASSWORD go together: set both or neither"

    def require(self, *needs: Need) -> Self:
        """These settings, if they meet `needs`; otherwise the process stops with one line
        naming each missing setting.
        """
        problems = self.unmet(*needs)
        if problems:
            raise SystemExit("Invalid settings: " + "; ".join(problems))
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # Secrets already show as `**********`; URLs may carry a password too.
        for name, value in super().__repr_args__():
            if name is not None and name.endswith("_url") and isinstance(value, str):
                yield name, mask_password(value)
            else:
                yield name, value

    @property
    def is_local(self) -> bool:
        return self.current_environment is Environment.LOCAL

    @property
    def show_docs(self) -> bool:
        if self.docs_enabled is not None:
            return self.docs_enabled
        return self.current_environment is not Environment.PROD

    @property
    def json_logs(self) -> bool:
        if self.log_json is not None:
            return self.log_json
        return not self.is_local


def load_settings(*needs: Need) -> Settings:
    """The settings from the environment and `.env`, with what `needs` require (the caller's
    own: every command asks only for what it uses). Invalid or missing ones stop the process
    with one line naming each problem (and never the refused value).
    """
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = "_".join(str(part) for part in error["loc"]).upper()
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(
                message if not name or message.startswith(name) else f"{name}: {message}"
            )
        raise SystemExit("Invalid settings: " + "; ".join(problems)) from None
    return settings.require(*needs)
