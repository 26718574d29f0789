"""The job that mails a password-reset link."""

import uuid
from datetime import datetime, timedelta

from taskiq import TaskiqDepends

from app.jobs.context import JobContext
from app.services.password_reset import PasswordResets, reset_email


async def send_password_reset(
    email: str,
    request_id: uuid.UUID,
    requested_at: datetime,
    context: JobContext = TaskiqDepends(),
) -> None:
    """Mail a reset link to the account of `email`, if there is one; nothing otherwise.

    Idempotent per `request_id`: run again after its mail went out, it does nothing; run again
    after a failure or a crash, it sends a fresh link that replaces the earlier one.
    """
    settings = context.settings
    lifetime = timedelta(minutes=settings.password_reset_token_expire_minutes)
    async with context.database.session_factory() as session:
        resets = PasswordResets(session, lifetime=lifetime)
        issued = await resets.issue(email=email, request_id=request_id, requested_at=requested_at)
        await session.commit()
        if issued is None:
            return
        await context.mailer.send(reset_email(settings, context.templates, issued))
        await resets.mark_sent(issued.token_id)
        await session.commit()
