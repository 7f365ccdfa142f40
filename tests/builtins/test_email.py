"""`skiplock.email` against a real SMTP server (aiosmtpd on loopback) and a real database:
plain, STARTTLS and implicit TLS with a certificate made here, AUTH, templates, and which
refusals are retried and which go to the dead letters."""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from skiplock import App
from skiplock.builtins.email import EMAIL_TASK, EmailSettings, Mailer, register
from skiplock.errors import ConfigError, Discard
from skiplock.testing import run_jobs
from skiplock.validation import InvalidArgs

SENDER = "Shop <shop@example.com>"
USER, PASSWORD = "mailer", "s3cret"


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage


@dataclass
class Inbox:
    """aiosmtpd's handler: keeps what it is sent; answers as the test tells it to."""

    messages: list[Received] = field(default_factory=list)
    rcpt_answer: str | None = None  # e.g. "550 no such user"; None: accept
    answers: dict[str, str] = field(default_factory=dict)  # one recipient's answer
    data_answers: list[str] = field(default_factory=list)  # one per DATA, then 250

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.rcpt_answer is not None:
            return self.rcpt_answer
        if address in self.answers:
            return self.answers[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        # as the receiving side stores it: lines end in \n, not the wire's \r\n
        content = envelope.content.replace(b"\r\n", b"\n")
        message = message_from_bytes(content, policy=default_policy)
        assert isinstance(message, EmailMessage)
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        return self.data_answers.pop(0) if self.data_answers else "250 OK"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class SmtpServer:
    inbox: Inbox
    port: int


def start_server(**kwargs: Any) -> tuple[Controller, SmtpServer]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    return controller, SmtpServer(inbox, port)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A plain SMTP server on loopback (no TLS, no AUTH)."""
    controller, server = start_server()
    yield server
    controller.stop()


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture
def certificate(tmp_path: Path) -> Certificate:
    """A self-signed certificate for localhost and 127.0.0.1, made for this test."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certificate(cert_path, key_path)


def authenticate(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    # handled=False: aiosmtpd then answers 535 itself (its default is to answer nothing)
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def app(dsn: str) -> Iterator[App]:
    application = App(dsn)
    yield application
    application.close()


def plain(smtp: SmtpServer, **more: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": smtp.port, "tls": "none", "from": SENDER, **more}


def status_of(app: App, job_id: int) -> tuple[str, int]:
    job = app.get_job(job_id)
    return job.status, job.attempt


# ---- settings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "named"),
    [
        ({}, "email.from is required"),
        ({"from": "nobody"}, "email.from must be"),
        ({"from": SENDER, "tls": "ssl"}, "email.tls must be one of starttls, tls, none"),
        ({"from": SENDER, "port": 0}, "email.port must be"),
        ({"from": SENDER, "port": "25"}, "email.port must be"),
        ({"from": SENDER, "timeout": 0}, "email.timeout must be"),
        ({"from": SENDER, "hots": "x"}, "email.hots is not a setting"),
        ({"from": SENDER, "username": "u"}, "email.password_env is required"),
        (
            {"from": SENDER, "tls": "none", "username": "u", "password_env": "P"},
            "email.username needs email.tls",
        ),
        ({"from": SENDER, "templates": "/no/such/folder"}, "email.templates must be"),
        ({"from": SENDER, "ca_file": "/no/such/file.pem"}, "email.ca_file must be"),
        ({"from": SENDER, "host": ""}, "email.host must be a non-empty string"),
    ],
)
def test_a_wrong_setting_is_refused_naming_its_key(section: dict[str, Any], named: str) -> None:
    app = App("postgresql:///unused")
    with pytest.raises(ConfigError, match=named):
        register(app, section)
    assert EMAIL_TASK not in app.tasks


def test_the_port_follows_the_tls_mode() -> None:
    ports = [EmailSettings.from_section({"from": SENDER, "tls": t}).port for t in ("tls", "none")]
    assert ports == [465, 25]
    assert EmailSettings.from_section({"from": SENDER}).tls == "starttls"


# ---- sending ---------------------------------------------------------------------------


def test_a_text_message_reaches_every_recipient_and_bcc_stays_hidden(
    app: App, smtp: SmtpServer
) -> None:
    register(app, plain(smtp))
    job_id = app.enqueue(
        EMAIL_TASK,
        {
            "to": ["Ann <ann@example.com>", "bob@example.com"],
            "cc": "carol@example.com",
            "bcc": ["audit@example.com"],
            "reply_to": "help@example.com",
            "subject": "Your order",
            "text": "It ships today.\n",
        },
    )
    assert run_jobs(app) == 1
    job = app.get_job(job_id)
    assert job.status == "succeeded", job.last_error
    [received] = smtp.inbox.messages
    assert received.sender == "shop@example.com"
    assert received.recipients == [
        "ann@example.com",
        "bob@example.com",
        "carol@example.com",
        "audit@example.com",
    ]
    message = received.message
    assert message["To"] == "Ann <ann@example.com>, bob@example.com"
    assert message["Cc"] == "carol@example.com"
    assert message["Bcc"] is None
    assert message["Reply-To"] == "help@example.com"
    assert message["Subject"] == "Your order"
    assert message.get_content_type() == "text/plain"
    assert message.get_content() == "It ships today.\n"
    created_us = int(job.created_at.timestamp() * 1_000_000)
    assert message["Message-ID"] == f"<skiplock.{job_id}.{created_us}@example.com>"
    assert job.result == {"message_id": message["Message-ID"], "recipients": 4, "refused": {}}


def test_text_and_html_make_a_multipart_alternative(app: App, smtp: SmtpServer) -> None:
    register(app, plain(smtp))
    app.enqueue(
        EMAIL_TASK,
        {"to": "a@example.com", "subject": "Hi", "text": "Hello", "html": "<p>Hello</p>"},
    )
    run_jobs(app)
    message = smtp.inbox.messages[0].message
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert (text.get_content_type(), text.get_content().strip()) == ("text/plain", "Hello")
    assert (html.get_content_type(), html.get_content().strip()) == ("text/html", "<p>Hello</p>")


def test_a_rerun_of_a_job_sends_the_same_message_id(app: App, smtp: SmtpServer) -> None:
    register(app, plain(smtp))
    job_id = app.enqueue(EMAIL_TASK, {"to": "a@example.com", "subject": "S", "text": "x"})
    run_jobs(app)
    app.retry_job(job_id)  # as a worker that crashed before recording the success would
    run_jobs(app)
    first, second = (r.message["Message-ID"] for r in smtp.inbox.messages)
    assert first == second and first.startswith(f"<skiplock.{job_id}.")
    other = app.enqueue(EMAIL_TASK, {"to": "a@example.com", "subject": "S", "text": "x"})
    run_jobs(app)
    assert smtp.inbox.messages[2].message["Message-ID"].startswith(f"<skiplock.{other}.")


# ---- templates -------------------------------------------------------------------------


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    (folder / "orders").mkdir(parents=True)
    (folder / "orders" / "shipped.subject.txt").write_text("Order {{ order }}\nshipped\n")
    (folder / "orders" / "shipped.txt").write_text("Hi {{ name }}, order {{ order }} ships.\n")
    (folder / "orders" / "shipped.html").write_text("<p>Hi {{ name }}, order {{ order }}.</p>\n")
    (folder / "plain.txt").write_text("Hi {{ name }}\n")
    (folder / "broken.txt").write_text("Hi {{ name \n")
    (folder / "includes.txt").write_text('{% include "parts/gone.txt" %}\n')
    (folder / "includes.html").write_text("<p>the text part must not be dropped</p>\n")
    (tmp_path / "secret.txt").write_text("not for mail\n")
    return folder


def test_a_template_renders_subject_text_and_escaped_html(
    app: App, smtp: SmtpServer, templates: Path
) -> None:
    register(app, plain(smtp, templates=str(templates)))
    job_id = app.enqueue(
        EMAIL_TASK,
        {
            "to": "a@example.com",
            "template": "orders/shipped",
            "context": {"name": "<b>Ann</b>", "order": 42},
        },
    )
    run_jobs(app)
    assert app.get_job(job_id).status == "succeeded"
    message = smtp.inbox.messages[0].message
    assert message["Subject"] == "Order 42 shipped"
    text, html = message.iter_parts()
    assert text.get_content() == "Hi <b>Ann</b>, order 42 ships.\n"
    assert html.get_content() == "<p>Hi &lt;b&gt;Ann&lt;/b&gt;, order 42.</p>\n"


def test_the_subject_in_the_args_wins_over_the_templates(
    app: App, smtp: SmtpServer, templates: Path
) -> None:
    register(app, plain(smtp, templates=str(templates)))
    app.enqueue(
        EMAIL_TASK,
        {"to": "a@example.com", "template": "plain", "subject": "Hello", "context": {"name": "A"}},
    )
    run_jobs(app)
    message = smtp.inbox.messages[0].message
    assert (message["Subject"], message.get_content()) == ("Hello", "Hi A\n")


@pytest.mark.parametrize("name", ["../secret", "/etc/passwd", "orders/../../secret", "a.txt"])
def test_a_template_name_cannot_leave_the_folder(
    app: App, smtp: SmtpServer, templates: Path, dsn: str, name: str
) -> None:
    register(app, plain(smtp, templates=str(templates)))
    args = {"to": "a@example.com", "subject": "S", "template": name}
    with pytest.raises(InvalidArgs, match=r"args\.template"):
        app.enqueue(EMAIL_TASK, args)
    # nor from SQL, which no producer-side check guards
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT skiplock.enqueue('skiplock.email', %s::jsonb)", [psycopg.types.json.Jsonb(args)]
        ).fetchone()
    assert row is not None
    run_jobs(app)
    assert status_of(app, row[0]) == ("failed", 1)
    # and the handler checks it again, whatever its schema says
    with pytest.raises(Discard, match="template must be a name inside"):
        Mailer(EmailSettings.from_section(plain(smtp, templates=str(templates)))).render(
            name, "txt", {}
        )
    assert smtp.inbox.messages == []


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"template": "missing"}, "template 'missing' not found"),
        ({"template": "plain"}, "UndefinedError"),  # `name` is not in the context
        ({"template": "plain", "context": {"name": "A"}}, "no subject"),
        ({"template": "broken", "subject": "S"}, "TemplateSyntaxError"),
        ({"template": "includes", "subject": "S"}, "includes parts/gone.txt, which is not there"),
    ],
)
def test_a_template_that_cannot_render_goes_to_the_dead_letters_at_once(
    app: App, smtp: SmtpServer, templates: Path, args: dict[str, Any], error: str
) -> None:
    register(app, plain(smtp, templates=str(templates)))
    job_id = app.enqueue(EMAIL_TASK, {"to": "a@example.com", **args}, max_attempts=5)
    run_jobs(app)
    job = app.get_job(job_id)
    assert (job.status, job.attempt) == ("failed", 1)
    assert job.last_error is not None and error in job.last_error["error"]
    assert smtp.inbox.messages == []


def test_the_sandbox_refuses_unsafe_template_code(
    app: App, smtp: SmtpServer, templates: Path
) -> None:
    (templates / "evil.txt").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    register(app, plain(smtp, templates=str(templates)))
    job_id = app.enqueue(EMAIL_TASK, {"to": "a@example.com", "subject": "S", "template": "evil"})
    run_jobs(app)
    job = app.get_job(job_id)
    assert job.status == "failed" and job.last_error is not None
    assert "SecurityError" in job.last_error["error"]


@pytest.mark.parametrize(
    "args",
    [
        {"subject": "S", "text": "x"},  # no recipient
        {"to": [], "subject": "S", "text": "x"},
        {"to": "not-an-address", "subject": "S", "text": "x"},
        {"to": "a@example.com\r\nBcc: x@evil.example", "subject": "S", "text": "x"},
        {"to": "a@example.com", "text": "x"},  # no subject
        {"to": "a@example.com", "subject": "S\r\nBcc: x@evil.example", "text": "x"},
        {"to": "a@example.com", "subject": "S"},  # no body
        {"to": "a@example.com", "template": "t", "text": "x"},  # template and a body
        {"to": "a@example.com", "subject": "S", "text": "x", "context": {}},
        {"to": "a@example.com", "subject": "S", "text": "x", "host": "smtp.evil.example"},
    ],
)
def test_bad_args_are_refused_at_enqueue(app: App, smtp: SmtpServer, args: dict[str, Any]) -> None:
    register(app, plain(smtp))
    with pytest.raises(InvalidArgs, match=r"args"):
        app.enqueue(EMAIL_TASK, args)


def test_an_address_the_schema_lets_through_but_email_cannot_parse_is_dead_lettered(
    app: App, smtp: SmtpServer
) -> None:
    register(app, plain(smtp))
    job_id = app.enqueue(EMAIL_TASK, {"to": "a@b@example.com", "subject": "S", "text": "x"})
    run_jobs(app)
    job = app.get_job(job_id)
    assert (job.status, job.attempt) == ("failed", 1)
    assert job.last_error is not None and "to must be one email address" in job.last_error["error"]


# ---- refusals: retried or not ----------------------------------------------------------


def test_a_permanent_refusal_goes_to_the_dead_letters_without_retry(
    app: App, smtp: SmtpServer
) -> None:
    register(app, plain(smtp))
    smtp.inbox.rcpt_answer = "550 5.1.1 no such user"
    job_id = app.enqueue(
        EMAIL_TASK, {"to": "gone@example.com", "subject": "S", "text": "x"}, max_attempts=5
    )
    run_jobs(app)
    job = app.get_job(job_id)
    assert (job.status, job.attempt) == ("failed", 1)
    assert job.last_error is not None and "550 5.1.1 no such user" in job.last_error["error"]


def test_recipients_refused_beside_accepted_ones_are_in_the_result(
    app: App, smtp: SmtpServer
) -> None:
    register(app, plain(smtp))
    smtp.inbox.answers["gone@example.com"] = "550 5.1.1 no such user"
    job_id = app.enqueue(
        EMAIL_TASK, {"to": ["a@example.com", "gone@example.com"], "subject": "S", "text": "x"}
    )
    run_jobs(app)
    job = app.get_job(job_id)
    assert job.status == "succeeded"
    assert job.result["recipients"] == 1
    assert job.result["refused"] == {"gone@example.com": "550 5.1.1 no such user"}
    assert [r.recipients for r in smtp.inbox.messages] == [["a@example.com"]]


def test_a_5xx_answer_to_the_message_is_permanent(app: App, smtp: SmtpServer) -> None:
    register(app, plain(smtp))
    smtp.inbox.data_answers = ["554 5.7.1 rejected as spam"]
    job_id = app.enqueue(EMAIL_TASK, {"to": "a@example.com", "subject": "S", "text": "x"})
    run_jobs(app)
    assert status_of(app, job_id) == ("failed", 1)


def test_a_temporary_refusal_is_retried(app: App, smtp: SmtpServer) -> None:
    register(app, plain(smtp))
    smtp.inbox.rcpt_answer = "450 4.2.1 mailbox busy, try later"
    job_id = app.enqueue(EMAIL_TASK, {"to": "a@example.com", "subject": "S", "text": "x"})
    run_jobs(app)
    job = app.get_job(job_id)
    assert (job.status, job.attempt) == ("retrying", 1)
    assert job.last_error is not None and job.last_error["type"] == "MailNotSent"
    assert "450 4.2.1 mailbox busy" in job.last_error["error"]


def test_a_4xx_answer_to_the_message_is_retried_and_then_sent(
    app: App, smtp: SmtpServer, conn: psycopg.Connection
) -> None:
    register(app, plain(smtp))
    smtp.inbox.data_answers = ["451 4.3.0 try again"]
    job_id = app.enqueue(EMAIL_TASK, {"to": "a@example.com", "subject": "S", "text": "x"})
    run_jobs(app)
    assert status_of(app, job_id) == ("retrying", 1)
    conn.execute("UPDATE skiplock.jobs SET run_at = now() WHERE id = %s", [job_id])
    conn.commit()
    run_jobs(app)
    assert status_of(app, job_id) == ("succeeded", 2)
    first, second = (r.message["Message-ID"] for r in smtp.inbox.messages)
    assert first == second


def test_a_server_that_cannot_be_reached_is_retried(app: App) -> None:
    register(app, {"host": "127.0.0.1", "port": free_port(), "tls": "none", "from": SENDER})
    job_id = app.enqueue(EMAIL_TASK, {"to": "a@example.com", "subject": "S", "text": "x"})
    run_jobs(app)
    job = app.get_job(job_id)
    assert job.status == "retrying" and job.last_error is not None
    assert "ConnectionRefusedError" in job.last_error["error"]


# ---- TLS and AUTH ----------------------------------------------------------------------


@pytest.fixture
def starttls_server(certificate: Certificate) -> Iterator[SmtpServer]:
    """STARTTLS required, AUTH required (and offered only once the link is encrypted)."""
    controller, server = start_server(
        tls_context=certificate.server_context(),
        require_starttls=True,
        auth_required=True,
        authenticator=authenticate,
    )
    yield server
    controller.stop()


def starttls_settings(server: SmtpServer, certificate: Certificate) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": server.port,
        "tls": "starttls",
        "username": USER,
        "password_env": "TEST_SMTP_PASSWORD",
        "ca_file": str(certificate.cert),
        "from": SENDER,
    }


def test_starttls_with_auth_sends(
    app: App,
    starttls_server: SmtpServer,
    certificate: Certificate,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_SMTP_PASSWORD", PASSWORD)
    register(app, starttls_settings(starttls_server, certificate))
    job_id = app.enqueue(EMAIL_TASK, {"to": "a@example.com", "subject": "S", "text": "x"})
    run_jobs(app)
    assert app.get_job(job_id).status == "succeeded"
    assert [r.recipients for r in starttls_server.inbox.messages] == [["a@example.com"]]


def test_a_wrong_password_is_permanent(
    app: App,
    starttls_server: SmtpServer,
    certificate: Certificate,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "wrong")
    register(app, starttls_settings(starttls_server, certificate))
    job_id = app.enqueue(EMAIL_TASK, {"to": "a@example.com", "subject": "S", "text": "x"})
    run_jobs(app)
    job = app.get_job(job_id)
    assert (job.status, job.attempt) == ("failed", 1) and job.last_error is not None
    assert "535" in job.last_error["error"]
    assert starttls_server.inbox.messages == []


def test_a_missing_password_variable_is_dead_lettered_naming_it(
    app: App,
    starttls_server: SmtpServer,
    certificate: Certificate,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TEST_SMTP_PASSWORD", raising=False)
    register(app, starttls_settings(starttls_server, certificate))
    job_id = app.enqueue(EMAIL_TASK, {"to": "a@example.com", "subject": "S", "text": "x"})
    run_jobs(app)
    job = app.get_job(job_id)
    assert job.status == "failed" and job.last_error is not None
    assert "TEST_SMTP_PASSWORD" in job.last_error["error"]


def test_an_untrusted_certificate_is_not_accepted(
    app: App,
    starttls_server: SmtpServer,
    certificate: Certificate,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_SMTP_PASSWORD", PASSWORD)
    settings = starttls_settings(starttls_server, certificate)
    del settings["ca_file"]  # the system's trust store does not know the test's certificate
    register(app, settings)
    job_id = app.enqueue(EMAIL_TASK, {"to": "a@example.com", "subject": "S", "text": "x"})
    run_jobs(app)
    job = app.get_job(job_id)
    assert job.status == "retrying" and job.last_error is not None
    assert "CERTIFICATE_VERIFY_FAILED" in job.last_error["error"]
    assert starttls_server.inbox.messages == []


def test_starttls_is_required_when_configured(app: App, smtp: SmtpServer) -> None:
    register(app, plain(smtp, tls="starttls"))  # the plain server offers no STARTTLS
    job_id = app.enqueue(EMAIL_TASK, {"to": "a@example.com", "subject": "S", "text": "x"})
    run_jobs(app)
    job = app.get_job(job_id)
    assert (job.status, job.attempt) == ("failed", 1) and job.last_error is not None
    assert "STARTTLS" in job.last_error["error"]
    assert smtp.inbox.messages == []


def test_implicit_tls_sends(app: App, certificate: Certificate) -> None:
    controller, server = start_server(ssl_context=certificate.server_context())
    try:
        register(
            app,
            {
                "host": "localhost",
                "port": server.port,
                "tls": "tls",
                "ca_file": str(certificate.cert),
                "from": SENDER,
            },
        )
        job_id = app.enqueue(EMAIL_TASK, {"to": "a@example.com", "subject": "S", "text": "x"})
        run_jobs(app)
        assert app.get_job(job_id).status == "succeeded"
        assert len(server.inbox.messages) == 1
    finally:
        controller.stop()
