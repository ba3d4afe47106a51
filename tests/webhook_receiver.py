"""A webhook receiver on loopback for tests: records every request, answers as told, stops by itself.

    with WebhookReceiver(body=b'{"ok": true}') as receiver:
        monkeypatch.setenv("AIRFLOW_CONN_RELEASE_HOOK", receiver.connection(password="pw"))
        ...                                   # post to it through an Airflow HTTP connection
        [request] = receiver.requests         # method, path, headers, body

It listens on 127.0.0.1 on a free port. Leaving the ``with`` block stops it; a server left
running by a broken test stops after ``GENDEV_MAX_LIFETIME`` seconds (default 900) anyway.
``hold=True`` makes it accept requests and never answer until it stops (a receiver that hangs).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the receiver got it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    """What the receiver answers: status, body and content type."""

    status: int = 200
    body: bytes = b'{"ok": true}'
    content_type: str = "application/json"


@dataclass
class WebhookReceiver:
    """A ``ThreadingHTTPServer`` on 127.0.0.1 that records requests and answers with :attr:`answer`."""

    status: int = 200
    body: bytes = b'{"ok": true}'
    content_type: str = "application/json"
    hold: bool = False
    """Accept requests but answer none until the receiver stops."""
    max_lifetime: float = field(default_factory=lambda: float(os.environ.get("GENDEV_MAX_LIFETIME", "900")))
    requests: list[ReceivedRequest] = field(default_factory=list, init=False)
    answer: Answer = field(init=False)
    _server: ThreadingHTTPServer | None = field(default=None, init=False, repr=False)
    _stopped: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _timer: threading.Timer | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.answer = Answer(self.status, self.body, self.content_type)

    # --------------------------------------------------------------------------------- lifecycle
    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the name http.server calls)
                length = int(self.headers.get("Content-Length") or 0)
                request = ReceivedRequest(self.command, self.path, dict(self.headers.items()), self.rfile.read(length))
                with receiver._lock:
                    receiver.requests.append(request)
                if receiver.hold:
                    receiver._stopped.wait(receiver.max_lifetime)
                    return  # the client gave up long ago; close without an answer
                answer = receiver.answer
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            do_PUT = do_POST  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the signature of the base)
                pass  # quiet: the test reads self.requests

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        # a short poll interval: stop() returns at once instead of after serve_forever's default 0.5 s
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         name=f"webhook-receiver-{self.port}", daemon=True).start()
        self._timer = threading.Timer(self.max_lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        """Stop serving and release held requests; safe to call twice."""
        self._stopped.set()
        if self._timer is not None:
            self._timer.cancel()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -------------------------------------------------------------------------------------- use
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the receiver is not running")
        return int(self._server.server_address[1])

    def connection(self, *, login: str | None = None, password: str | None = None,
                   headers: dict[str, str] | None = None) -> str:
        """An Airflow HTTP connection to this receiver, as JSON for an ``AIRFLOW_CONN_<ID>`` variable."""
        conn: dict[str, Any] = {"conn_type": "http", "host": "127.0.0.1", "port": self.port, "schema": "http"}
        if login is not None:
            conn["login"] = login
        if password is not None:
            conn["password"] = password
        if headers:
            conn["extra"] = headers
        return json.dumps(conn)
