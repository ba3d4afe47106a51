"""The demo HTTP service that the ``local`` target deploys on loopback blue/green slots.

Run it as ``python -m gendev_release.demo.service --port N --version V [--service NAME]
[--flags-file FILE --flag NAME] [--max-lifetime SECONDS]``. It binds 127.0.0.1 only and imports nothing but the standard
library, so a slot starts in well under a second.

Endpoints: ``/healthz``, ``/version``, ``/api/items`` and ``/metrics`` (Prometheus text). The
version string chooses a behaviour, so that a release can show a failure on purpose:

* ``...-broken``: ``/healthz`` answers 503 ``unhealthy``;
* ``...-slow``: ``/version`` and ``/api/*`` take 400 ms longer;
* ``...-errors``: every 4th request to ``/version`` and ``/api/*`` answers 500 (exactly 25 %).

With ``--flags-file`` and ``--flag`` the version's new behaviour sits behind a feature flag: the file
(``{flag: percent}``, as the ``file`` flag provider writes it) is re-read when it changes, that share
of requests to ``/version`` and ``/api/*`` is exposed (spread evenly by a request counter), each
answer says ``X-Gendev-Flag: on`` or ``off``, and an ``-errors`` version fails only exposed requests.

Request metrics leave out ``/metrics`` itself: scrapes are not traffic, and counting them would
dilute the error ratio the monitoring step alerts on.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import BaseServer, TCPServer
from typing import Any
from urllib.parse import urlsplit

#: Environment variable read when ``--max-lifetime`` is not given (seconds; empty or 0: no limit).
MAX_LIFETIME_ENV = "GENDEV_MAX_LIFETIME"
#: Headers every response carries (the security step checks for them).
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", "default-src 'none'"),
    ("Cache-Control", "no-store"),
)
WINDOW_SECONDS = 60.0
SLOW_SECONDS = 0.4
ERROR_EVERY = 4
ITEMS: tuple[dict[str, Any], ...] = (
    {"id": 1, "name": "alpha", "price": 9.5},
    {"id": 2, "name": "beta", "price": 12.0},
    {"id": 3, "name": "gamma", "price": 3.25},
)

Response = tuple[int, bytes, str]


# ------------------------------------------------------------------------------------ metrics
class RequestMetrics:
    """Counters plus a sliding window of (time, latency, error) samples; thread-safe."""

    def __init__(self, window_seconds: float = WINDOW_SECONDS) -> None:
        self.window_seconds = window_seconds
        self.requests_total = 0
        self.errors_total = 0
        self._window: deque[tuple[float, float, bool]] = deque()
        self._lock = threading.Lock()

    def record(self, seconds: float, status: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        error = status >= 500
        with self._lock:
            self.requests_total += 1
            self.errors_total += int(error)
            self._window.append((now, seconds, error))
            self._prune(now)

    def _prune(self, now: float) -> None:
        horizon = now - self.window_seconds
        while self._window and self._window[0][0] < horizon:
            self._window.popleft()

    def snapshot(self, now: float | None = None) -> dict[str, float]:
        """Totals, the window's error ratio and its p95 latency (0 when the window is empty)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._prune(now)
            samples = list(self._window)
            requests_total, errors_total = self.requests_total, self.errors_total
        errors = sum(1 for _, _, error in samples if error)
        latencies = sorted(seconds for _, seconds, _ in samples)
        return {
            "requests_total": requests_total,
            "errors_total": errors_total,
            "window_requests": len(samples),
            "window_errors": errors,
            "error_ratio": errors / len(samples) if samples else 0.0,
            "p95_seconds": _nearest_rank(latencies, 0.95),
        }


def _nearest_rank(ordered: list[float], q: float) -> float:
    # Nearest-rank, like probes.LoadResult.percentile, so the service and the load test agree.
    if not ordered:
        return 0.0
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


# ---------------------------------------------------------------------------------------- app
class FlagFile:
    """A flag's percentage from the flag provider's JSON file, re-read when the file is replaced."""

    def __init__(self, path: str, flag: str) -> None:
        self.path = path
        self.flag = flag
        self._key: tuple[int, int] | None = None
        self._percent = 0
        self._lock = threading.Lock()

    def percent(self) -> int:
        try:
            st = os.stat(self.path)
        except OSError:
            return 0  # no file yet: the flag is off
        with self._lock:
            if (st.st_ino, st.st_mtime_ns) != self._key:
                try:
                    with open(self.path, encoding="utf-8") as handle:
                        value = json.load(handle).get(self.flag, 0)
                    self._percent = int(value) if isinstance(value, (int, float)) and 0 <= value <= 100 else 0
                except (OSError, ValueError, AttributeError):
                    self._percent = 0  # unreadable: off, the safe side
                self._key = (st.st_ino, st.st_mtime_ns)
            return self._percent


class DemoApp:
    """The service's behaviour, independent of sockets: ``route(path) -> (status, body, type)``."""

    def __init__(self, service: str, version: str, flags: FlagFile | None = None) -> None:
        self.flags = flags
        self._exposure_count = 0
        self.service = service
        self.version = version
        self.broken = version.endswith("-broken")
        self.slow = version.endswith("-slow")
        self.errors = version.endswith("-errors")
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.metrics = RequestMetrics()
        self._flaky_count = 0
        self._flaky_lock = threading.Lock()

    def _inject_failure(self) -> bool:
        # A counter, not randomness: every 4th request fails, so tests and gates see exactly 25 %.
        if not self.errors:
            return False
        with self._flaky_lock:
            self._flaky_count += 1
            return self._flaky_count % ERROR_EVERY == 0

    def exposed(self) -> bool | None:
        """Whether this request sees the flagged behaviour (None: no flag configured)."""
        if self.flags is None:
            return None
        percent = self.flags.percent()
        with self._flaky_lock:
            self._exposure_count += 1
            # 61 is coprime to 100: every 100 consecutive requests hold exactly `percent` exposed, spread out.
            return (self._exposure_count * 61) % 100 < percent

    def handle(self, path: str) -> tuple[Response, tuple[tuple[str, str], ...]]:
        """The answer and the headers it adds (the flag state on flagged paths)."""
        if self.flags is not None and (path == "/version" or path.startswith("/api/")):
            exposed = bool(self.exposed())
            return self.route(path, exposed), (("X-Gendev-Flag", "on" if exposed else "off"),)
        return self.route(path), ()

    def route(self, path: str, exposed: bool = True) -> Response:
        if path == "/healthz":
            return (503, b"unhealthy\n", "text/plain; charset=utf-8") if self.broken else \
                (200, b"ok\n", "text/plain; charset=utf-8")
        if path == "/metrics":
            return 200, self.render_metrics().encode(), "text/plain; version=0.0.4; charset=utf-8"
        if path == "/version" or path.startswith("/api/"):
            if self.slow:
                time.sleep(SLOW_SECONDS)
            if exposed and self._inject_failure():
                return _json(500, {"error": "injected failure (version ends with -errors)"})
            if path == "/version":
                return _json(200, {"service": self.service, "version": self.version, "pid": os.getpid(),
                                   "started_at": self.started_at})
            if path == "/api/items":
                return _json(200, list(ITEMS))
        return _json(404, {"error": "not found", "path": path})

    def render_metrics(self) -> str:
        snap = self.metrics.snapshot()
        lines = [
            "# HELP demo_http_requests_total Requests served (scrapes of /metrics excluded).",
            "# TYPE demo_http_requests_total counter",
            f"demo_http_requests_total {snap['requests_total']}",
            "# HELP demo_http_errors_total Requests answered with a 5xx status.",
            "# TYPE demo_http_errors_total counter",
            f"demo_http_errors_total {snap['errors_total']}",
            f"# HELP demo_http_window_requests Requests in the last {WINDOW_SECONDS:g} s.",
            "# TYPE demo_http_window_requests gauge",
            f"demo_http_window_requests {snap['window_requests']}",
            f"# HELP demo_http_error_ratio 5xx share of the requests in the last {WINDOW_SECONDS:g} s.",
            "# TYPE demo_http_error_ratio gauge",
            f"demo_http_error_ratio {snap['error_ratio']:.6f}",
            f"# HELP demo_http_request_p95_seconds p95 latency of the last {WINDOW_SECONDS:g} s.",
            "# TYPE demo_http_request_p95_seconds gauge",
            f"demo_http_request_p95_seconds {snap['p95_seconds']:.6f}",
            "# HELP demo_build_info The running version.",
            "# TYPE demo_build_info gauge",
            f'demo_build_info{{version="{_label(self.version)}"}} 1',
        ]
        return "\n".join(lines) + "\n"


def _json(status: int, payload: Any) -> Response:
    return status, (json.dumps(payload) + "\n").encode(), "application/json"


# ------------------------------------------------------------------------------------- server
class QuietHandler(BaseHTTPRequestHandler):
    """Shared base: HTTP/1.1 keep-alive, no access log, no version disclosure."""

    protocol_version = "HTTP/1.1"
    # Keep-alive plus Nagle and delayed ACK would add ~40 ms to every small response on loopback.
    disable_nagle_algorithm = True
    server_version = "gendev"
    sys_version = ""
    timeout = 30  # an idle keep-alive connection must not pin a thread forever

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Access logs stay off: a slot's log file should hold only what matters."""

    def send_body(self, status: int, body: bytes, content_type: str, head: bool = False,
                  extra: tuple[tuple[str, str], ...] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)


class DemoHandler(QuietHandler):
    server: DemoServer

    def end_headers(self) -> None:
        # Here rather than in send_body so that stdlib error pages (400, 501) carry them too.
        for name, value in SECURITY_HEADERS:
            self.send_header(name, value)
        super().end_headers()

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)  # drain, so a keep-alive connection stays in step
        self.send_body(405, b"method not allowed\n", "text/plain; charset=utf-8", extra=(("Allow", "GET, HEAD"),))

    def _serve(self, head: bool) -> None:
        started = time.monotonic()
        path = urlsplit(self.path).path
        (status, body, content_type), extra = self.server.app.handle(path)
        self.send_body(status, body, content_type, head, extra)
        if path != "/metrics":
            self.server.app.metrics.record(time.monotonic() - started, status)


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-response is normal under load tests; anything else is printed.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class DemoServer(QuietServer):
    def __init__(self, port: int, app: DemoApp) -> None:
        self.app = app
        super().__init__(("127.0.0.1", port), DemoHandler)


# ------------------------------------------------------------------------------------ running
def max_lifetime(flag: float | None) -> float | None:
    """The lifetime limit: the flag, else ``$GENDEV_MAX_LIFETIME``; None (no limit) when unset or <= 0."""
    if flag is None:
        raw = os.environ.get(MAX_LIFETIME_ENV, "").strip()
        if not raw:
            return None
        try:
            flag = float(raw)
        except ValueError:
            raise SystemExit(f"{MAX_LIFETIME_ENV}={raw!r} is not a number of seconds") from None
    return flag if flag > 0 else None


def serve(server: BaseServer, lifetime: float | None, name: str) -> int:
    """Serve until SIGTERM/SIGINT or until ``lifetime`` seconds passed; return the exit code."""

    def stop(*_: Any) -> None:
        # shutdown() waits for serve_forever, which runs in this (main) thread: call it elsewhere.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    timer = None
    if lifetime:
        def expire() -> None:
            print(f"{name}: max lifetime of {lifetime:g} s reached, exiting", flush=True)
            server.shutdown()

        timer = threading.Timer(lifetime, expire)
        timer.daemon = True
        timer.start()
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        if timer is not None:
            timer.cancel()
        server.server_close()
    return 0


def lifetime_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-lifetime", type=float, default=None, metavar="SECONDS",
                        help=f"exit after this many seconds (default: ${MAX_LIFETIME_ENV}, else never)")


def port_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The command line of a loopback process, starting with ``--port``; add :func:`lifetime_argument` last."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1 (0 picks a free one)")
    return parser


def listen_and_serve(name: str, args: argparse.Namespace, make_server: Callable[[int], TCPServer], *,
                     banner: str, where: str = "") -> int:
    """Bind ``make_server(args.port)``, say where it listens and :func:`serve` it; 2 when it cannot bind.

    ``name`` starts the error and lifetime messages; the listening line reads
    ``<banner> listening on http://127.0.0.1:<port><where> (pid ..., max lifetime ...)``.
    """
    lifetime = max_lifetime(args.max_lifetime)
    try:
        server = make_server(args.port)
    except OSError as exc:
        print(f"{name}: cannot listen on 127.0.0.1:{args.port}: {exc}", file=sys.stderr, flush=True)
        return 2
    port = int(server.server_address[1])
    print(f"{banner} listening on http://127.0.0.1:{port}{where} (pid {os.getpid()}, "
          f"max lifetime {lifetime or 'none'})", flush=True)
    return serve(server, lifetime, name)


def main(argv: list[str] | None = None) -> int:
    parser = port_parser("python -m gendev_release.demo.service", __doc__.splitlines()[0])
    parser.add_argument("--version", required=True, help="the version this process reports")
    parser.add_argument("--service", default="demo", help="service name reported by /version")
    parser.add_argument("--flags-file", help="the file flag provider's JSON file ({flag: percent})")
    parser.add_argument("--flag", help="the flag guarding this version's new behaviour (with --flags-file)")
    lifetime_argument(parser)
    args = parser.parse_args(argv)
    if bool(args.flags_file) != bool(args.flag):
        parser.error("--flags-file and --flag go together")
    flags = FlagFile(args.flags_file, args.flag) if args.flags_file else None
    return listen_and_serve("demo service", args,
                            lambda port: DemoServer(port, DemoApp(args.service, args.version, flags)),
                            banner=f"demo service {args.service} {args.version}")


if __name__ == "__main__":
    sys.exit(main())
