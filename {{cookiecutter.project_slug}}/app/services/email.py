"""Outgoing e-mail: messages rendered from the Jinja2 templates in `app/templates/email/` (a
subject, a plain-text part and an HTML part per message), sent over SMTP with aiosmtplib.

In `local` without SMTP_HOST the message is written to the log instead (the settings refuse
a missing SMTP_HOST everywhere else).
"""

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, Self

import aiosmtplib
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from loguru import logger

from app.core.config import Settings

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates" / "email"


@dataclass(frozen=True, slots=True)
class Email:
    to: str
    subject: str
    text: str
    html: str


class EmailTemplates:
    """`<name>.subject.txt`, `<name>.txt` and `<name>.html` make the message `<name>`.

    Only the HTML part is autoescaped: a value shows as written in both parts.
    """

    def __init__(self, directory: Path = TEMPLATES_DIR) -> None:
        self._env = Environment(
            loader=FileSystemLoader(directory),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
        )

    def render(self, name: str, *, to: str, **context: Any) -> Email:
        subject = self._env.get_template(f"{name}.subject.txt").render(context)
        return Email(
            to=to,
            # One line: a newline in a header would end it.
            subject=" ".join(subject.split()),
            text=self._env.get_template(f"{name}.txt").render(context),
            html=self._env.get_template(f"{name}.html").render(context),
        )


class Mailer:
    """Sends messages through the SMTP server of the settings, or logs them (local only)."""

    def __init__(self, settings: Settings) -> None:
        self.sender = str(settings.email_from)
        self._settings = settings

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(settings)

    def compose(self, email: Email) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = email.to
        message["Subject"] = email.subject
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2].rstrip(">"))
        message.set_content(email.text)
        message.add_alternative(email.html, subtype="html")
        return message

    async def send(self, email: Email) -> None:
        message = self.compose(email)
        settings = self._settings
        if settings.smtp_host is None:
            logger.info(
                "E-mail not sent (no SMTP_HOST in local): to {} | {}\n{}",
                email.to,
                email.subject,
                email.text,
            )
            return
        password = settings.smtp_password
        await aiosmtplib.send(
            message,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_user,
            password=password.get_secret_value() if password is not None else None,
            use_tls=settings.smtp_tls,
            start_tls=settings.smtp_starttls,
            timeout=settings.smtp_timeout_seconds,
        )
