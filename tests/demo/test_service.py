"""The demo service and the router, run as real processes on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from gendev_release.demo.service import SECURITY_HEADERS, RequestMetrics
from gendev_release.probes import parse_prometheus_text

PY = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1].decode()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listened on {port}")


@contextmanager
def process(module: str, *args: str, port: int | None = None, env: dict[str, str] | None = None,
            wait: bool = True) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Run ``python -m module --port P *args``; always terminated at the end (lifetime 300 s as a backstop)."""
    port = port or free_port()
    full_env = {**os.environ, "GENDEV_MAX_LIFETIME": "300", **(env or {})}
    proc = subprocess.Popen([PY, "-m", module, "--port", str(port), *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env)
    try:
        if wait:
            wait_port(port, proc)
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def service(version: str, *args: str, **kwargs: Any) -> Any:
    return process("gendev_release.demo.service", "--version", version, *args, **kwargs)


def metrics(base: str) -> dict[str, float]:
    response = httpx.get(base + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse_prometheus_text(response.text)


@pytest.fixture(scope="module")
def stable() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    with service("1.0.0", "--service", "shop") as running:
        yield running


# ----------------------------------------------------------------------------------- service
def test_endpoints(stable: tuple[subprocess.Popen[bytes], str]) -> None:
    proc, base = stable
    health = httpx.get(base + "/healthz")
    assert (health.status_code, health.text.strip()) == (200, "ok")
    version = httpx.get(base + "/version").json()
    assert version["service"] == "shop" and version["version"] == "1.0.0" and version["pid"] == proc.pid
    assert version["started_at"].endswith("+00:00")
    items = httpx.get(base + "/api/items")
    assert items.status_code == 200 and len(items.json()) == 3
    assert httpx.get(base + "/nope").status_code == 404
    assert httpx.get(base + "/api/nope").status_code == 404
    head = httpx.head(base + "/version")
    assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) > 0
    assert httpx.post(base + "/version", content=b"x").status_code == 405


def test_every_response_carries_security_headers(stable: tuple[subprocess.Popen[bytes], str]) -> None:
    _, base = stable
    responses = [httpx.get(base + path) for path in ("/healthz", "/version", "/api/items", "/metrics", "/nope")]
    responses.append(httpx.post(base + "/healthz"))
    responses.append(httpx.request("DELETE", base + "/healthz"))  # the stdlib's own 501 page
    for response in responses:
        for name, value in SECURITY_HEADERS:
            assert response.headers.get(name) == value, (response.request.url, name)
        assert "Python" not in response.headers.get("server", "")


def test_metrics_move_after_requests() -> None:
    with service("1.2.3") as (_, base):
        before = metrics(base)
        assert before["demo_http_requests_total"] == 0
        assert before["demo_http_error_ratio"] == 0 and before["demo_http_request_p95_seconds"] == 0
        assert before['demo_build_info{version="1.2.3"}'] == 1
        for path in ("/healthz", "/version", "/api/items", "/nope"):
            httpx.get(base + path)
        after = metrics(base)
        assert after["demo_http_requests_total"] == 4  # the scrapes themselves are not counted
        assert after["demo_http_errors_total"] == 0 and after["demo_http_error_ratio"] == 0
        assert 0 < after["demo_http_request_p95_seconds"] < 0.4


def test_broken_version_fails_healthz_only() -> None:
    with service("2.0.0-broken") as (_, base):
        health = httpx.get(base + "/healthz")
        assert (health.status_code, health.text.strip()) == (503, "unhealthy")
        assert httpx.get(base + "/version").status_code == 200
        assert httpx.get(base + "/api/items").status_code == 200
        sample = metrics(base)
        assert sample["demo_http_errors_total"] == 1
        assert sample["demo_http_error_ratio"] == pytest.approx(1 / 3, abs=1e-5)


def test_slow_version_adds_latency() -> None:
    with service("2.0.0-slow") as (_, base):
        started = time.monotonic()
        assert httpx.get(base + "/version").status_code == 200
        assert time.monotonic() - started >= 0.4
        started = time.monotonic()
        assert httpx.get(base + "/healthz").status_code == 200
        assert time.monotonic() - started < 0.3
        assert metrics(base)["demo_http_request_p95_seconds"] >= 0.4


def test_errors_version_fails_every_fourth_request() -> None:
    with service("2.0.0-errors") as (_, base):
        statuses = [httpx.get(base + ("/api/items" if i % 2 else "/version")).status_code for i in range(8)]
        assert statuses == [200, 200, 200, 500] * 2
        assert all(httpx.get(base + "/healthz").status_code == 200 for _ in range(4))
        sample = metrics(base)
        assert sample["demo_http_requests_total"] == 12
        assert sample["demo_http_errors_total"] == 2
        assert sample["demo_http_error_ratio"] == pytest.approx(2 / 12, abs=1e-5)


def test_window_forgets_old_requests() -> None:
    window = RequestMetrics(window_seconds=60)
    window.record(0.2, 500, now=100.0)
    window.record(0.1, 200, now=130.0)
    assert window.snapshot(now=131.0)["error_ratio"] == 0.5
    late = window.snapshot(now=165.0)
    assert late["error_ratio"] == 0 and late["p95_seconds"] == 0.1 and late["window_requests"] == 1
    assert late["requests_total"] == 2 and late["errors_total"] == 1


@pytest.mark.parametrize("how", ["flag", "env"])
def test_max_lifetime_exits_by_itself(how: str) -> None:
    args = ("--max-lifetime", "0.5") if how == "flag" else ()
    with service("1.0.0", *args, env={"GENDEV_MAX_LIFETIME": "0.5"} if how == "env" else None) as (proc, _):
        assert proc.wait(timeout=10) == 0
        assert b"max lifetime" in proc.stdout.read()  # type: ignore[union-attr]


def test_sigterm_is_clean_and_the_log_quiet() -> None:
    with service("1.0.0") as (proc, base):
        for path in ("/healthz", "/version", "/nope", "/metrics"):
            httpx.get(base + path)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0
        assert err == b""


def test_port_in_use_exits_with_a_message() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with service("1.0.0", port=taken.getsockname()[1], wait=False) as (proc, _):
            _, err = proc.communicate(timeout=10)
            assert proc.returncode == 2 and b"cannot listen" in err


# ------------------------------------------------------------------------------------ router
class Echo(BaseHTTPRequestHandler):
    """An upstream that answers with what it received."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        payload = json.dumps({"method": self.command, "path": self.path, "body": body.decode(),
                              "headers": {k.lower(): v for k, v in self.headers.items()},
                              "name": self.server.name}).encode()  # type: ignore[attr-defined]
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Upstream", self.server.name)  # type: ignore[attr-defined]
        self.send_header("Keep-Alive", "timeout=5")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_HEAD = _answer


@contextmanager
def echo(name: str) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    server.name = name  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def write_state(path: Path, active: str | None, urls: dict[str, str]) -> None:
    state = {"active": active, "slots": {slot: {"slot": slot, "url": url} for slot, url in urls.items()}}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)


def test_router_forwards_to_the_active_slot_and_follows_switches(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    with echo("blue") as blue, echo("green") as green, \
            process("gendev_release.demo.router", "--state", str(state)) as (_, router):
        health = httpx.get(router + "/__router/health")
        assert health.status_code == 200
        missing = httpx.get(router + "/anything")
        assert missing.status_code == 502 and "no active slot" in missing.text

        write_state(state, "blue", {"blue": blue, "green": green})
        with httpx.Client(base_url=router) as client:  # one keep-alive connection across the switch
            got = client.get("/a/b?x=1&y=2", headers={"X-Custom": "kept", "Connection": "keep-alive, X-Drop",
                                                      "X-Drop": "dropped"})
            assert got.status_code == 200 and got.headers["x-gendev-slot"] == "blue"
            seen = got.json()
            assert seen["name"] == "blue" and seen["path"] == "/a/b?x=1&y=2"
            assert seen["headers"]["x-custom"] == "kept" and "x-drop" not in seen["headers"]
            assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"
            assert got.headers["x-upstream"] == "blue" and "keep-alive" not in got.headers

            posted = client.post("/submit", content=b'{"n": 1}', headers={"Content-Type": "application/json"})
            assert posted.status_code == 201 and posted.json()["body"] == '{"n": 1}'
            head = client.head("/h")
            assert head.status_code == 200 and head.content == b"" and head.headers["x-gendev-slot"] == "blue"

            write_state(state, "green", {"blue": blue, "green": green})
            switched = client.get("/after")
            assert switched.json()["name"] == "green" and switched.headers["x-gendev-slot"] == "green"

        write_state(state, None, {"blue": blue})
        assert httpx.get(router + "/x").status_code == 502

    # An upstream that does not answer, and one off loopback, both give a 502 naming the slot.
    dead = free_port()
    with process("gendev_release.demo.router", "--state", str(state)) as (_, router):
        write_state(state, "blue", {"blue": f"http://127.0.0.1:{dead}"})
        failed = httpx.get(router + "/x")
        assert failed.status_code == 502 and failed.headers["x-gendev-slot"] == "blue"
        assert "upstream slot blue" in failed.text
        write_state(state, "blue", {"blue": "http://198.51.100.7:80"})
        assert "not on loopback" in httpx.get(router + "/x").text
