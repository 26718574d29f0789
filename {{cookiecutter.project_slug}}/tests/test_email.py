"""E-mail: both parts from the templates, sent to a real SMTP server; logged in local."""

from collections.abc import Callable

import pytest
from aiosmtplib import SMTPConnectError
from loguru import logger

from app.core.config import Settings
from app.services.email import Email, EmailTemplates, Mailer
from tests.helpers import MailCatcher, mail_parts, make_settings

RESET_CONTEXT = {
    "project_name": "My Tests",
    "first_name": "Ada",
    "username": "ada",
    "link": "https://app.example.com/reset-password?token=abc",
    "valid_minutes": 30,
}


async def test_a_message_reaches_the_server_with_both_parts(
    outbox: MailCatcher, mail_settings: Callable[..., Settings]
) -> None:
    mailer = Mailer(mail_settings())
    email = EmailTemplates().render("password_reset", to="ada@example.com", **RESET_CONTEXT)
    await mailer.send(email)
    [message] = outbox.to("ada@example.com")
    assert message["From"] == "My Tests <tests@example.com>"
    assert message["Subject"] == "Reset your My Tests password"
    assert message["Message-ID"].endswith("@example.com>")
    assert message["Date"]
    text, html = mail_parts(message)
    assert "Hello Ada," in text
    assert RESET_CONTEXT["link"] in text
    assert f'<a href="{RESET_CONTEXT["link"]}">' in html
    assert "within 30 minutes" in text


def test_values_are_escaped_in_html_only() -> None:
    email = EmailTemplates().render(
        "password_reset", to="x@example.com", **{**RESET_CONTEXT, "first_name": "<b>Bo & Co</b>"}
    )
    assert "Hello <b>Bo & Co</b>," in email.text
    assert "Hello &lt;b&gt;Bo &amp; Co&lt;/b&gt;," in email.html


def test_a_subject_is_one_line() -> None:
    email = EmailTemplates().render(
        "password_reset", to="x@example.com", **{**RESET_CONTEXT, "project_name": "A\nB"}
    )
    assert email.subject == "Reset your A B password"


async def test_local_without_a_server_logs_the_message(outbox: MailCatcher) -> None:
    lines: list[str] = []
    sink = logger.add(lines.append, format="{message}", level="INFO")
    try:
        await Mailer(make_settings()).send(Email("ada@example.com", "Hi", "the text", "<p>x</p>"))
    finally:
        logger.remove(sink)
    assert outbox.messages == []
    [line] = lines
    assert "to ada@example.com | Hi" in line
    assert "the text" in line


async def test_an_unreachable_server_raises(mail_settings: Callable[..., Settings]) -> None:
    mailer = Mailer(mail_settings(smtp_port=1, smtp_timeout_seconds=2))
    with pytest.raises(SMTPConnectError):
        await mailer.send(Email("ada@example.com", "Hi", "text", "<p>html</p>"))
