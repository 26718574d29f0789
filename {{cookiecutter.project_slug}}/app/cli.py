"""Management commands.

`python -m app.cli create-superuser --email E --username U`: the password is prompted for;
scripts pass it on standard input with `--password-stdin`.

`python -m app.cli purge-expired`: deletes expired refresh and password-reset tokens (run it
on a schedule: the Kubernetes CronJob, or cron).
{%- if cookiecutter.use_redis %}

`python -m app.cli jobs dead`: lists the dead letters, jobs that stopped their worker more than
JOB_MAX_DELIVERIES times (arguments masked); `python -m app.cli jobs retry ID` queues one again.
{%- endif %}
"""

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TextIO, TypeVar

from pydantic import ValidationError

from app.core.auth import PasswordHasher
from app.core.clock import utc_now
from app.core.config import Settings, load_settings
from app.core.db import Database
from app.core.exceptions import ConflictError
{%- if cookiecutter.use_redis %}
from app.jobs.broker import create_jobs
from app.jobs.stream_broker import OUTAGE_ERRORS
{%- endif %}
from app.models.user import User
from app.schemas.user import UserCreate
from app.services.auth import register_user
from app.services.housekeeping import Purged, purge_expired

T = TypeVar("T")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app.cli")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-superuser", help="create an admin user")
    create.add_argument("--email", required=True)
    create.add_argument("--username", required=True)
    create.add_argument("--first-name", default="Admin")
    create.add_argument("--last-name", default="User")
    source = create.add_mutually_exclusive_group()
    source.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input (for scripts)",
    )
    source.add_argument(
        "--password",
        help="the password on the command line (visible in the process list and the shell "
        "history; prefer the prompt or --password-stdin)",
    )
    commands.add_parser("purge-expired", help="delete expired refresh and password-reset tokens")
    {%- if cookiecutter.use_redis %}
    jobs = commands.add_parser("jobs", help="the job queue's dead letters")
    jobs_commands = jobs.add_subparsers(dest="jobs_command", required=True)
    jobs_commands.add_parser("dead", help="list the jobs that stopped their worker too often")
    retry = jobs_commands.add_parser("retry", help="queue a dead letter's job again")
    retry.add_argument("id", help="the dead letter's id, as `jobs dead` shows it")
    {%- endif %}
    return parser


def read_password(
    args: argparse.Namespace,
    prompt: Callable[[str], str] = getpass.getpass,
    stdin: TextIO = sys.stdin,
) -> str:
    """From standard input, the command line (with a warning), or a prompt that echoes nothing."""
    if args.password_stdin:
        return stdin.readline().rstrip("\r\n")
    if args.password is not None:
        print(  # noqa: T201
            "warning: --password shows the password in the process list and the shell "
            "history; prefer the prompt or --password-stdin",
            file=sys.stderr,
        )
        return str(args.password)
    return prompt("Password: ")


def user_from_args(
    args: argparse.Namespace, prompt: Callable[[str], str] = getpass.getpass
) -> UserCreate:
    return UserCreate(
        username=args.username,
        email=args.email,
        first_name=args.first_name,
        last_name=args.last_name,
        password=read_password(args, prompt),
    )


async def create_superuser(database: Database, settings: Settings, data: UserCreate) -> User:
    passwords = PasswordHasher.from_settings(settings)
    async with database.session_factory() as session:
        user = await register_user(session, passwords, data)
        user.is_superuser = True
        await session.commit()
    return user


async def _on_database(work: Callable[[Database, Settings], Awaitable[T]]) -> T:
    """Run `work` on the database of the environment's settings, then close it.

    The commands use the database and password hashing only: they need no secret but the
    database's (no Need).
    """
    settings = load_settings()
    database = Database.from_settings(settings)
    try:
        return await work(database, settings)
    finally:
        await database.dispose()


async def purge(database: Database, settings: Settings) -> Purged:
    async with database.session_factory() as session:
        purged = await purge_expired(
            session, utc_now(), leeway=timedelta(seconds=settings.token_leeway_seconds)
        )
        await session.commit()
    return purged


{%- if cookiecutter.use_redis %}


async def dead_letters_command(args: argparse.Namespace, settings: Settings) -> int:
    """`jobs dead` and `jobs retry ID`."""
    broker = create_jobs(settings).broker
    try:
        if args.jobs_command == "retry":
            if not await broker.dead_letters.retry(args.id):
                print(f"error: no dead letter {args.id}", file=sys.stderr)  # noqa: T201
                return 1
            print(f"Queued the job of dead letter {args.id} again.")  # noqa: T201
            return 0
        letters = await broker.dead_letters.oldest_first()
        for dead_id, deliveries, data in letters:
            name, task_id, arguments = broker.dead_letters.describe(data)
            print(  # noqa: T201
                f"{dead_id}  {name} ({task_id}), {deliveries} deliveries, arguments {arguments}"
            )
        print(f"{len(letters)} dead letter(s).")  # noqa: T201
        return 0
    except OUTAGE_ERRORS as exc:
        print(f"error: Redis unreachable ({type(exc).__name__})", file=sys.stderr)  # noqa: T201
        return 1
    finally:
        await broker.shutdown()
{%- endif %}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    {%- if cookiecutter.use_redis %}
    if args.command == "jobs":
        return asyncio.run(dead_letters_command(args, load_settings()))
    {%- endif %}
    if args.command == "purge-expired":
        purged = asyncio.run(_on_database(purge))
        print(  # noqa: T201
            f"Purged {purged.refresh_tokens} expired refresh token(s) and "
            f"{purged.password_reset_tokens} expired password-reset token(s)."
        )
        return 0
    try:
        data = user_from_args(args)
        asyncio.run(
            _on_database(lambda database, settings: create_superuser(database, settings, data))
        )
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            print(f"error: {field}: {error['msg']}", file=sys.stderr)  # noqa: T201
        return 2
    except ConflictError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)  # noqa: T201
        return 1
    print(f"Superuser {data.username} created.")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
