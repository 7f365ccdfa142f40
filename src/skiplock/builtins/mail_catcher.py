"""`skiplock dev`'s mail catcher: an SMTP server on 127.0.0.1 that keeps each message.

Every message it is sent is saved as an .eml file (open it in any mail program) in its
folder, `.skiplock/mail/` under dev, and logged in one line: who it is to, its subject
and where it was saved. Nothing is delivered anywhere: in dev, `skiplock.email` is
pointed at the catcher, whatever its settings say, so no real mail leaves the machine.
aiosmtpd comes with the `embedded` extra, as the private PostgreSQL does.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import socket
from collections.abc import Mapping
from datetime import datetime, timezone
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skiplock.builtins.email import EMAIL_TASK, Mailer, register

if TYPE_CHECKING:
    from aiosmtpd.controller import Controller

    from skiplock.app import App

log = logging.getLogger("skiplock.mail")

HOST = "127.0.0.1"
PREFERRED_PORT = 1025  # the port mail catchers (MailHog, Mailpit, smtp4dev) are known by
DEV_SENDER = "skiplock@localhost"  # From, when no [email] settings give one
INSTALL_HINT = "pip install 'skiplock[embedded]'"


class MailCatcher:
    """An SMTP server on 127.0.0.1 (port 1025 when free, else a free one) that saves each
    message as FOLDER/<UTC time>-<random>.eml; no TLS, no AUTH, loopback only."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = 0
        self._controller: Controller | None = None

    def start(self) -> None:
        """Listen (in a thread of its own); ImportError without aiosmtpd."""
        from aiosmtpd.controller import Controller

        # aiosmtpd logs every SMTP command at INFO ("mail.log"): dev says one line per
        # message instead (_SaveToFolder), and keeps the server's warnings
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        self.folder.mkdir(parents=True, exist_ok=True)
        ports = [PREFERRED_PORT, _free_port()] if _is_free(PREFERRED_PORT) else [_free_port()]
        for port in ports:
            controller = Controller(_SaveToFolder(self.folder), hostname=HOST, port=port)
            try:
                controller.start()
            except OSError:  # taken since it was found free: another dev started too
                if port == ports[-1]:
                    raise
                continue
            self._controller, self.port = controller, port
            return

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def email_section(self, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """An `[email]` section that sends to this catcher: `base`'s sender and templates,
        the catcher's host and port, no TLS and no credentials."""
        kept = {key: base[key] for key in ("from", "templates", "timeout") if base and key in base}
        return {"from": DEV_SENDER, **kept, "host": HOST, "port": self.port, "tls": "none"}

    def banner_line(self) -> str:
        return (
            f"mail: skiplock.email sends to the mail catcher at smtp://{HOST}:{self.port};"
            f" each message is saved as .eml in {self.folder}/"
        )


def start_for_dev(app: App, folder: Path) -> MailCatcher | None:
    """Start a catcher saving into `folder` and point `app`'s `skiplock.email` at it
    (registering the task when the app lacks it); None, with a warning, when aiosmtpd
    is not installed."""
    catcher = MailCatcher(folder)
    try:
        catcher.start()
    except ImportError:
        log.warning("no mail catcher (skiplock.email is not sent): %s", INSTALL_HINT)
        return None
    point_email_at(app, catcher)
    return catcher


def point_email_at(app: App, catcher: MailCatcher) -> None:
    """Make `app`'s `skiplock.email` send to `catcher`, keeping its sender and templates;
    register it on the catcher when the app has none. An app that registers a task of
    that name with a handler of its own is left alone, with a warning."""
    task = app.tasks.get(EMAIL_TASK)
    if task is None:
        register(app, catcher.email_section())
        return
    mailer = getattr(task.fn, "__self__", None)
    if not isinstance(mailer, Mailer):
        log.warning("the app's own %s handler does not send to the mail catcher", EMAIL_TASK)
        return
    mailer.settings = dataclasses.replace(
        mailer.settings,
        host=HOST,
        port=catcher.port,
        tls="none",
        username=None,
        password_env=None,
        ca_file=None,
    )


class _SaveToFolder:
    """aiosmtpd's handler: each message to a new .eml file, and a line in the log."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.content
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        path = self.folder / f"{stamp}-{secrets.token_hex(3)}.eml"
        try:
            with path.open("xb") as file:  # x: never overwrite an earlier message
                file.write(content)
        except OSError as exc:
            log.error("mail catcher: cannot save a message in %s: %s", self.folder, exc)
            return "451 4.3.0 cannot save the message"
        subject = message_from_bytes(content, policy=default_policy).get("Subject", "")
        log.info(
            "mail to %s subject %r \N{RIGHTWARDS ARROW} %s",
            ", ".join(envelope.rcpt_tos),
            str(subject),
            path,
        )
        return "250 OK: saved"


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    # Bind to port 0 and hand the port on: aiosmtpd's controller must be told its port
    # before it listens (it connects to it to check that it is up).
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port
