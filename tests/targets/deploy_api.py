"""A deploy API on loopback for the http target's tests: a fake platform behind basic auth.

    with DeployApi(user="deployer", password="s3cret") as api:
        monkeypatch.setenv("AIRFLOW_CONN_DEPLOY_API", api.connection())
        ...
        api.requests     # (method, path, authorization header, JSON body) of every request

Routes under ``/api/v1/services/<service>`` (the contract of gendev_release.targets.http):
``POST /revisions`` -> ``{"revision": "v<N>", "version"}`` (the API numbers revisions itself),
``PUT /weights``, ``GET /status``, ``DELETE /revisions/<id>`` (404 when unknown). Requests
without the right credentials get 401. Faults: ``api.fail[route] = status`` answers that status;
``api.ignore.add(route)`` answers 200 but changes nothing. It listens on 127.0.0.1 on a free port
and stops when the ``with`` block ends, or after ``$GENDEV_MAX_LIFETIME`` seconds anyway.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import quote

PREFIX = "/api/v1/services/"


class DeployApi:
    def __init__(self, user: str = "deployer", password: str = "s3cret") -> None:
        self.user = user
        self.password = password
        self.revisions: dict[str, dict[str, Any]] = {}
        self.weights: dict[str, int] = {}
        self.requests: list[tuple[str, str, str | None, Any]] = []
        self.fail: dict[str, int] = {}
        self.ignore: set[str] = set()
        self.counter = 0
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                return json.loads(raw) if raw else None

            def _answer(self, status: int, payload: Any) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                body = self._body()
                with api._lock:
                    api.requests.append((self.command, self.path, self.headers.get("Authorization"), body))
                    status, payload = api.route(self.command, self.path, self.headers.get("Authorization"), body)
                self._answer(status, payload)

            do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815 (the names http.server calls)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._timer = threading.Timer(float(os.environ.get("GENDEV_MAX_LIFETIME", "900")), self.stop)
        self._timer.daemon = True

    def connection(self) -> str:
        """The Airflow connection URI (``AIRFLOW_CONN_<ID>``): host, port and the credentials."""
        return f"http://{quote(self.user)}:{quote(self.password)}@127.0.0.1:{self.port}"

    def route(self, method: str, path: str, authorization: str | None, body: Any) -> tuple[int, Any]:
        expected = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if authorization != expected:
            return 401, {"error": "unauthorized"}
        if not path.startswith(PREFIX):
            return 404, {"error": "no such route"}
        service, _, rest = path[len(PREFIX):].partition("/")
        route = f"{method} /{rest.split('/')[0]}"
        if route in self.fail:
            return self.fail[route], {"error": "the platform is having a bad day"}
        if route in self.ignore:
            return 200, {"ok": True}
        if route == "GET /status":
            return 200, {"revisions": list(self.revisions.values()), "weights": self.weights,
                         "url": f"http://127.0.0.1:9/{service}"}
        if route == "POST /revisions":
            self.counter += 1
            revision = f"v{self.counter}"
            self.revisions[revision] = {"revision": revision, "version": body["version"],
                                        "url": f"http://127.0.0.1:9/{service}/{revision}", "ready": True}
            return 201, {"revision": revision, "version": body["version"]}
        if route == "PUT /weights":
            self.weights = {k: v for k, v in body["weights"].items()}
            return 200, {"weights": self.weights}
        if route == "DELETE /revisions":
            revision = rest.split("/")[1]
            if revision not in self.revisions:
                return 404, {"error": "no such revision"}
            del self.revisions[revision]
            self.weights.pop(revision, None)
            return 200, {"deleted": revision}
        return 404, {"error": f"no route {route}"}

    def start(self) -> DeployApi:
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        self._timer.cancel()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> DeployApi:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
