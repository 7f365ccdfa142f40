"""A real HTTP server on loopback for the built-ins' tests: it records every request and
answers from a script of responses (the last one repeats)."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None  # answer only once this is set (a slow server)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class LocalServer:
    """ThreadingHTTPServer on 127.0.0.1 (or ::1) that counts the connections it accepts."""

    def __init__(self, answers: list[Answer] | None = None, host: str = "127.0.0.1") -> None:
        self.answers = list(answers or [Answer()])
        self.requests: list[Seen] = []
        self.connections = 0
        self.release = threading.Event()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorder.requests.append(
                    Seen(self.command, self.path, dict(self.headers.items()), body)
                )
                answers = recorder.answers
                answer = answers.pop(0) if len(answers) > 1 else answers[0]
                if answer.hold is not None:
                    answer.hold.wait(30)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(answer.body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _answer

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def verify_request(self, request: Any, client_address: Any) -> bool:
                recorder.connections += 1
                return True

        if ":" in host:
            Server.address_family = socket.AF_INET6
        self.server = Server((host, 0), Handler)
        self.port = int(self.server.server_address[1])
        self.host = host
        self.url = f"http://{host if ':' not in host else f'[{host}]'}:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, *answers: Answer) -> None:
        self.answers = list(answers)

    def close(self) -> None:
        self.release.set()
        for answer in self.answers:
            if answer.hold is not None:
                answer.hold.set()
        self.server.shutdown()
        self.server.server_close()
