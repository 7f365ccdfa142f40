"""The built-in task `skiplock.email`: one message over SMTP, from the `[email]` settings.

The SMTP server, its TLS mode and its credentials come from the settings only, never
from a job's args: whoever can enqueue can choose recipients and words, not where the
password goes. A message is plain text, HTML, or both (multipart/alternative), given in
the args or rendered from Jinja2 templates in the configured folder.

Delivery is at least once, like every job. The Message-ID is derived from the job
(`<skiplock.JOB_ID.CREATED_US@DOMAIN>`), the same on every attempt, so a receiver that
gets a message twice after a worker crashed between SMTP's answer and the job's
completion sees the same Message-ID twice. Refusals that a retry cannot change (a 5xx
answer, a bad address, a missing template) go to the dead letters at once; 4xx answers
and connection failures are retried by the job's retry policy. See
docs/builtins.md.
"""

from __future__ import annotations

import os
import re
import smtplib
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import jinja2.sandbox

from skiplock.builtins import check_keys
from skiplock.context import JobContext
from skiplock.errors import ConfigError, Discard

if TYPE_CHECKING:
    from skiplock.app import App

EMAIL_TASK = "skiplock.email"
# Served only when its settings table is given: it has no default for the sender (email.from).
NEEDS_SETTINGS = True
TLS_MODES = ("starttls", "tls", "none")
DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
SETTING_KEYS = frozenset(
    {"host", "port", "tls", "username", "password_env", "from", "templates", "timeout", "ca_file"}
)
DEFAULT_TIMEOUT = 30.0  # seconds per SMTP connection; a stalled server fails the attempt

# Folders and names of letters, digits, `_` and `-`, joined by `/`: no dot, so no `..`
# and no extension (the task adds .txt, .html and .subject.txt), and no leading `/`.
TEMPLATE_NAME_PATTERN = r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$"
_TEMPLATE_NAME = re.compile(TEMPLATE_NAME_PATTERN)

# One address, "a@example.com" or "Ann <a@example.com>", on one line (the task parses
# it again before sending; the schema refuses the obvious at enqueue).
_ADDRESS: dict[str, Any] = {
    "type": "string",
    "minLength": 3,
    "maxLength": 320,
    "pattern": r"^[^\r\n]*@[^\r\n]*$",
}
_ADDRESSES: dict[str, Any] = {
    "anyOf": [_ADDRESS, {"type": "array", "items": _ADDRESS, "minItems": 1, "maxItems": 100}]
}

ARGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "to": _ADDRESSES,
        "cc": _ADDRESSES,
        "bcc": _ADDRESSES,
        "reply_to": _ADDRESS,
        # one line: a line break would start a header of the sender's choosing
        "subject": {"type": "string", "maxLength": 998, "pattern": r"^[^\r\n]*$"},
        "text": {"type": "string"},
        "html": {"type": "string"},
        "template": {"type": "string", "maxLength": 200, "pattern": TEMPLATE_NAME_PATTERN},
        "context": {"type": "object"},
    },
    "required": ["to"],
    "additionalProperties": False,
    # A body: text and/or html, or a template (which then gives them).
    "anyOf": [{"required": ["text"]}, {"required": ["html"]}, {"required": ["template"]}],
    "dependentSchemas": {"template": {"properties": {"text": False, "html": False}}},
    "dependentRequired": {"context": ["template"]},
    # Without a template nothing else can give the subject.
    "if": {"not": {"required": ["template"]}},
    "then": {"required": ["subject"]},
}


@dataclass(frozen=True)
class EmailSettings:
    """The `[email]` section, checked: where and how messages are sent."""

    sender: str  # the `from` key: the From header and the envelope sender
    host: str = "localhost"
    port: int = DEFAULT_PORTS["starttls"]
    tls: str = "starttls"
    username: str | None = None
    password_env: str | None = None  # the environment variable holding the password
    templates: Path | None = None
    timeout: float = DEFAULT_TIMEOUT
    ca_file: Path | None = None  # certificates to trust instead of the system's

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> EmailSettings:
        """The settings of an `[email]` table; ConfigError naming the key that is wrong."""
        check_keys(section, SETTING_KEYS, "email")
        sender = _text(section, "from")
        if sender is None:
            raise ConfigError("email.from is required: the address messages are sent from")
        if "@" not in _address_spec(sender, "email.from", ConfigError):
            raise ConfigError(f"email.from must be an email address, got {sender!r}")
        tls = _text(section, "tls") or "starttls"
        if tls not in TLS_MODES:
            raise ConfigError(f"email.tls must be one of {', '.join(TLS_MODES)}, got {tls!r}")
        port = section.get("port", DEFAULT_PORTS[tls])
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigError(f"email.port must be a port number (1-65535), got {port!r}")
        timeout = section.get("timeout", DEFAULT_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ConfigError(f"email.timeout must be a number of seconds > 0, got {timeout!r}")
        username = _text(section, "username")
        password_env = _text(section, "password_env")
        if username is not None and password_env is None:
            raise ConfigError(
                "email.password_env is required with email.username: the name of the"
                " environment variable that holds the password"
            )
        if username is not None and tls == "none":
            raise ConfigError(
                "email.username needs email.tls = 'starttls' or 'tls': the password is never"
                " sent in the clear"
            )
        return cls(
            sender=sender,
            host=_text(section, "host") or "localhost",
            port=port,
            tls=tls,
            username=username,
            password_env=password_env,
            templates=_folder(section, "templates"),
            timeout=float(timeout),
            ca_file=_file(section, "ca_file"),
        )


def register(app: App, section: Mapping[str, Any]) -> None:
    """Check the `[email]` settings and register `skiplock.email` on `app`; ConfigError
    naming the key when a setting is wrong."""
    mailer = Mailer(EmailSettings.from_section(section))
    app.task(
        name=EMAIL_TASK,
        args_schema=ARGS_SCHEMA,
        description="Send one email over the configured SMTP server (text, HTML or a"
        " template). At least once: a rerun sends the same Message-ID again.",
    )(mailer.send)


class MailNotSent(Exception):
    """The SMTP server could not be reached or answered 4xx: the attempt is retried."""


class Mailer:
    """Builds and sends the message of one `skiplock.email` job."""

    def __init__(self, settings: EmailSettings) -> None:
        self.settings = settings
        self.templates = (
            None
            if settings.templates is None
            else jinja2.sandbox.SandboxedEnvironment(
                loader=jinja2.FileSystemLoader(settings.templates),
                # .html templates are escaped; .txt ones are plain text and are not
                autoescape=jinja2.select_autoescape(["html"], default_for_string=False),
                undefined=jinja2.StrictUndefined,
                keep_trailing_newline=True,
            )
        )

    def send(self, ctx: JobContext, **args: Any) -> dict[str, Any]:
        """The handler: build the message, send it, return its Message-ID and the
        recipients the server refused (the others got it). Can run twice for one job."""
        message, recipients = self.build(ctx, args)
        refused = self.deliver(message, recipients)
        return {
            "message_id": message["Message-ID"],
            "recipients": len(recipients) - len(refused),
            "refused": {
                address: f"{code} {_text_of(reply)}" for address, (code, reply) in refused.items()
            },
        }

    def build(self, ctx: JobContext, args: Mapping[str, Any]) -> tuple[EmailMessage, list[str]]:
        """The message of this job and its envelope recipients (to, cc and bcc).
        Discard (dead letters) when an address, the template or the subject is wrong."""
        subject, text, html = self.content(args)
        message = EmailMessage()
        try:
            message["From"] = self.settings.sender
            recipients = []
            for field in ("to", "cc", "bcc"):
                addresses = _listed(args.get(field))
                recipients += [_address_spec(a, field, Discard) for a in addresses]
                if addresses and field != "bcc":  # Bcc is in the envelope only
                    message[field.capitalize()] = ", ".join(addresses)
            if args.get("reply_to"):
                message["Reply-To"] = args["reply_to"]
            message["Subject"] = subject
        except ValueError as exc:  # a header the email package refuses (e.g. a newline)
            raise Discard(f"cannot build the message: {exc}") from None
        message["Date"] = formatdate()
        message["Message-ID"] = message_id(ctx, self.settings.sender)
        if text is not None:
            message.set_content(text)
            if html is not None:
                message.add_alternative(html, subtype="html")
        elif html is not None:
            message.set_content(html, subtype="html")
        return message, recipients

    def content(self, args: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
        """Subject, text and HTML, from the args or their template; the subject given in
        the args wins over the template's."""
        name = args.get("template")
        if name is None:
            return str(args["subject"]), args.get("text"), args.get("html")
        text = self.render(name, "txt", args)
        html = self.render(name, "html", args)
        if text is None and html is None:
            raise Discard(f"template {name!r} not found: no {name}.txt and no {name}.html")
        subject = args.get("subject") or self.render(name, "subject.txt", args)
        if not subject:
            raise Discard(f"no subject: the args have none and there is no {name}.subject.txt")
        return " ".join(subject.split()), text, html

    def render(self, name: str, suffix: str, args: Mapping[str, Any]) -> str | None:
        """Template NAME.SUFFIX rendered with the args' `context`; None if there is none."""
        if self.templates is None:
            raise Discard("the args name a template but email.templates is not set")
        if not _TEMPLATE_NAME.fullmatch(name):
            raise Discard(f"template must be a name inside the templates folder, got {name!r}")
        file = f"{name}.{suffix}"
        try:
            return self.templates.get_template(file).render(args.get("context") or {})
        except jinja2.TemplateNotFound as exc:
            if exc.name == file:
                return None
            raise Discard(f"template {file} includes {exc.name}, which is not there") from None
        except jinja2.TemplateError as exc:  # syntax, undefined variable, sandbox refusal
            raise Discard(f"template {file}: {type(exc).__name__}: {exc}") from None

    def deliver(self, message: EmailMessage, recipients: list[str]) -> dict[str, tuple[int, bytes]]:
        """Send `message` to `recipients`; the recipients refused while others took it.
        Discard on an answer a retry cannot change (5xx, no STARTTLS or AUTH offered),
        MailNotSent (retried) on 4xx and on connection failures."""
        settings = self.settings
        where = f"{settings.host}:{settings.port}"
        sender = _address_spec(settings.sender, "email.from", ConfigError)
        try:
            with self.connect() as smtp:
                if settings.tls == "starttls":
                    smtp.starttls(context=self.tls_context())
                if settings.username is not None:
                    smtp.login(settings.username, self.password())
                return smtp.send_message(message, from_addr=sender, to_addrs=recipients)
        except smtplib.SMTPRecipientsRefused as exc:  # every recipient refused
            answers = "; ".join(f"{a}: {c} {_text_of(r)}" for a, (c, r) in exc.recipients.items())
            if all(code >= 500 for code, _ in exc.recipients.values()):
                raise Discard(f"{where} refused every recipient: {answers}") from None
            raise MailNotSent(f"{where} refused every recipient: {answers}") from None
        except smtplib.SMTPResponseException as exc:
            answer = f"{where} answered {exc.smtp_code} {_text_of(exc.smtp_error)}"
            if exc.smtp_code >= 500:
                raise Discard(answer) from None
            raise MailNotSent(answer) from None
        except smtplib.SMTPNotSupportedError as exc:
            # no STARTTLS (mail is never sent in the clear instead) or no AUTH offered
            raise Discard(f"{where}: {exc}") from None
        except (smtplib.SMTPException, OSError) as exc:  # refused, reset, timed out, TLS
            raise MailNotSent(f"{where}: {type(exc).__name__}: {exc}") from exc

    def connect(self) -> smtplib.SMTP:
        settings = self.settings
        # gethostname, not smtplib's default getfqdn(), which may wait on a DNS lookup
        helo = socket.gethostname()
        if settings.tls == "tls":
            return smtplib.SMTP_SSL(
                settings.host,
                settings.port,
                local_hostname=helo,
                timeout=settings.timeout,
                context=self.tls_context(),
            )
        return smtplib.SMTP(
            settings.host, settings.port, local_hostname=helo, timeout=settings.timeout
        )

    def tls_context(self) -> ssl.SSLContext:
        ca_file = self.settings.ca_file
        return ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))

    def password(self) -> str:
        name = self.settings.password_env
        password = os.environ.get(name) if name else None
        if not password:
            # a worker started without its secret: dead letters, redrive once it is set
            raise Discard(f"email.password_env names {name}, which is not set for this worker")
        return password


def message_id(ctx: JobContext, sender: str) -> str:
    """`<skiplock.JOB_ID.CREATED_US@DOMAIN>`: the same for every attempt of one job, so a
    rerun is recognisable, and distinct between databases that reuse job ids (the job's
    creation time in microseconds). DOMAIN is the sender's."""
    created = int(ctx.created_at.timestamp() * 1_000_000)
    domain = _address_spec(sender, "email.from", ConfigError).rpartition("@")[2]
    return f"<skiplock.{ctx.id}.{created}@{domain}>"


def _address_spec(address: str, field: str, error: type[Exception]) -> str:
    """`a@example.com` of "Ann <a@example.com>"; `error` naming `field` if it is not one."""
    parsed = getaddresses([address])
    spec = parsed[0][1] if len(parsed) == 1 else ""
    if spec != parseaddr(address)[1] or "@" not in spec:
        raise error(f"{field} must be one email address, got {address!r}")
    try:
        Address(addr_spec=spec)
    except (ValueError, IndexError):  # the email package's header parser refuses it
        raise error(f"{field} must be one email address, got {address!r}") from None
    return spec


def _listed(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _text_of(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)


def _text(section: Mapping[str, Any], key: str) -> str | None:
    value = section.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"email.{key} must be a non-empty string, got {value!r}")
    return value


def _folder(section: Mapping[str, Any], key: str) -> Path | None:
    value = _text(section, key)
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ConfigError(f"email.{key} must be an existing folder, got {value!r}")
    return path


def _file(section: Mapping[str, Any], key: str) -> Path | None:
    value = _text(section, key)
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(f"email.{key} must be an existing file, got {value!r}")
    return path
