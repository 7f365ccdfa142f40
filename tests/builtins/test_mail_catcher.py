"""`skiplock dev`'s mail catcher: a real SMTP server on loopback that saves .eml files,
the email task pointed at it, and a real `skiplock dev` process sending through it."""

from __future__ import annotations

import contextlib
import logging
import smtplib
import socket
from collections.abc import Iterator
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import pytest

from conftest import wait_until
from dev_process import run_dev
from skiplock import App
from skiplock.builtins.email import EMAIL_TASK, register
from skiplock.builtins.mail_catcher import HOST, PREFERRED_PORT, MailCatcher, point_email_at
from skiplock.testing import run_jobs


@pytest.fixture
def catcher(tmp_path: Path) -> Iterator[MailCatcher]:
    running = MailCatcher(tmp_path / "mail")
    running.start()
    yield running
    running.stop()


@pytest.fixture
def app(dsn: str) -> Iterator[App]:
    application = App(dsn)
    yield application
    application.close()


def saved(catcher: MailCatcher) -> list[EmailMessage]:
    messages = []
    for path in sorted(catcher.folder.glob("*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=default_policy)
        assert isinstance(message, EmailMessage)
        messages.append(message)
    return messages


def test_each_message_is_saved_as_eml_and_logged_in_one_line(
    catcher: MailCatcher, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="skiplock.mail")
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.com", "b@example.com", "Hi"
    message.set_content("hello\n")
    with smtplib.SMTP("127.0.0.1", catcher.port, timeout=10) as smtp:
        smtp.send_message(message)
        smtp.send_message(message, to_addrs=["c@example.com", "d@example.com"])
    first, _ = saved(catcher)
    # saved as received, with the wire's CRLF line ends, as .eml files usually are
    assert (first["Subject"], first.get_content()) == ("Hi", "hello\r\n")
    paths = sorted(catcher.folder.glob("*.eml"))
    lines = [r.getMessage() for r in caplog.records if r.name == "skiplock.mail"]
    assert lines == [
        f"mail to b@example.com subject 'Hi' \N{RIGHTWARDS ARROW} {paths[0]}",
        f"mail to c@example.com, d@example.com subject 'Hi' \N{RIGHTWARDS ARROW} {paths[1]}",
    ]


def test_it_takes_a_free_port_when_1025_is_taken(tmp_path: Path) -> None:
    with socket.socket() as holder:
        with contextlib.suppress(OSError):  # held by someone else already: as good
            holder.bind(("127.0.0.1", PREFERRED_PORT))
            holder.listen()
        catcher = MailCatcher(tmp_path / "mail")
        catcher.start()
        try:
            assert catcher.port != PREFERRED_PORT
            with socket.create_connection(("127.0.0.1", catcher.port), timeout=10):
                pass
            assert f"smtp://127.0.0.1:{catcher.port};" in catcher.banner_line()
            assert f"saved as .eml in {tmp_path / 'mail'}/" in catcher.banner_line()
        finally:
            catcher.stop()


def test_the_email_section_keeps_sender_and_templates_and_drops_credentials(
    catcher: MailCatcher, tmp_path: Path
) -> None:
    base = {
        "host": "smtp.example.com",
        "port": 587,
        "tls": "starttls",
        "username": "u",
        "password_env": "P",
        "from": "shop@example.com",
        "templates": str(tmp_path),
    }
    assert catcher.email_section(base) == {
        "from": "shop@example.com",
        "templates": str(tmp_path),
        "host": "127.0.0.1",
        "port": catcher.port,
        "tls": "none",
    }
    assert catcher.email_section()["from"] == "skiplock@localhost"


def test_an_app_without_the_email_task_gets_it_sending_to_the_catcher(
    app: App, catcher: MailCatcher
) -> None:
    point_email_at(app, catcher)
    job_id = app.enqueue(EMAIL_TASK, {"to": "a@example.com", "subject": "S", "text": "x"})
    run_jobs(app)
    assert app.get_job(job_id).status == "succeeded"
    [message] = saved(catcher)
    assert (message["From"], message["To"]) == ("skiplock@localhost", "a@example.com")


def test_a_configured_email_task_is_pointed_at_the_catcher(
    app: App, catcher: MailCatcher, tmp_path: Path
) -> None:
    # settings for a real server, with TLS and credentials the catcher never sees
    register(
        app,
        {
            "host": "smtp.invalid",
            "tls": "tls",
            "username": "u",
            "password_env": "SKIPLOCK_TEST_UNSET_PASSWORD",
            "from": "Shop <shop@example.com>",
        },
    )
    point_email_at(app, catcher)
    job_id = app.enqueue(EMAIL_TASK, {"to": "a@example.com", "subject": "S", "text": "x"})
    run_jobs(app)
    assert app.get_job(job_id).status == "succeeded"
    [message] = saved(catcher)
    assert message["From"] == "Shop <shop@example.com>"


def test_an_app_with_its_own_email_handler_is_left_alone(
    app: App, catcher: MailCatcher, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task(name=EMAIL_TASK)
    def own(**args: object) -> str:
        return "sent my way"

    point_email_at(app, catcher)
    assert app.tasks[EMAIL_TASK].fn is own.fn
    assert "does not send to the mail catcher" in caplog.text


@pytest.mark.slow
def test_skiplock_dev_catches_the_mail_it_sends(dsn: str, tmp_path: Path) -> None:
    with run_dev(dsn, "--data-dir", str(tmp_path)) as dev:
        [line] = [line for line in dev.banner if line.startswith("mail: ")]
        assert f"each message is saved as .eml in {tmp_path / 'mail'}/" in line
        answer = dev.api.post(
            "/api/v1/jobs",
            json={
                "task": EMAIL_TASK,
                "args": {"to": ["a@example.com"], "subject": "Welcome", "text": "hi"},
            },
        )
        assert answer.status_code == 201, answer.text
        [path] = wait_until(lambda: list((tmp_path / "mail").glob("*.eml")), timeout=60)
        wait_until(lambda: dev.logged("mail to a@example.com subject 'Welcome'"))
        assert "Subject: Welcome" in path.read_text()
        # the API checks the published args schema of the task dev registered
        refused = dev.api.post(
            "/api/v1/jobs",
            json={"task": EMAIL_TASK, "args": {"to": [], "subject": "S", "text": "x"}},
        )
        assert refused.status_code == 422 and "args.to" in refused.text


def test_the_smtp_servers_chatter_stays_out_of_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One line per message is dev's to say; aiosmtpd's per-command INFO lines are not."""
    catcher = MailCatcher(tmp_path)
    with caplog.at_level(logging.INFO):
        catcher.start()
        try:
            with smtplib.SMTP(HOST, catcher.port) as client:
                client.sendmail("a@example.com", ["b@example.com"], b"Subject: x\r\n\r\nbody")
        finally:
            catcher.stop()
    assert [r for r in caplog.records if r.name == "mail.log"] == []
    assert any("mail to b@example.com" in r.getMessage() for r in caplog.records)
