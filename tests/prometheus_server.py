"""A real Prometheus for the tests, on 127.0.0.1 (free port), scraping a stable loopback address.

Prometheus hands a new scrape target to its scrape manager only every 5 s, so one server per test
module scrapes a :class:`SwitchableUpstream` whose upstream each test points at its own service
(a :class:`duty_helpers.FakeTarget`'s router): the series keep the same ``job``/``instance`` and the
test waits until Prometheus has scraped the new upstream (:meth:`TestPrometheus.scrape`).

The server runs under the package's watchdog (:mod:`gendev_release.prometheus_local`): it is
stopped at teardown and stops by itself after ``$GENDEV_MAX_LIFETIME`` seconds anyway. Without the
``prometheus`` binary the tests skip (and fail under ``CI``, where ``.ci/run`` installs it).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from loopback import LoopbackServer, Response

from gendev_release.prometheus_api import PrometheusClient
from gendev_release.prometheus_local import LocalPrometheus, server_config, start_prometheus
from gendev_release.targets.local import terminate

JOB = "demo"
#: The test server's scrape and evaluation interval.
INTERVAL = 0.5


def require_prometheus() -> str:
    """The Prometheus binary, or skip (fail under CI) saying how to install it."""
    binary = shutil.which(os.environ.get("GENDEV_PROMETHEUS") or "prometheus")
    if binary is None:
        message = "Prometheus is not installed: apt-get install prometheus (.ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary


class SwitchableUpstream:
    """A loopback HTTP server forwarding every GET to ``upstream``; it counts the scrapes since the last switch."""

    def __init__(self) -> None:
        self.upstream: str | None = None
        self.scrapes = 0
        self.lock = threading.Lock()
        self.http = LoopbackServer(self.forward)
        self.url = self.http.url

    def forward(self, path: str) -> Response:
        with self.lock:
            upstream = self.upstream
            if path.startswith("/metrics"):
                self.scrapes += 1
        if upstream is None:
            return 503, {"Content-Type": "text/plain"}, b"no upstream"
        try:
            response = httpx.get(upstream + path, timeout=5.0)
        except httpx.HTTPError as exc:
            return 502, {"Content-Type": "text/plain"}, str(exc).encode()
        return (response.status_code, {"Content-Type": response.headers.get("content-type", "text/plain")},
                response.content)

    def switch(self, upstream: str | None) -> None:
        with self.lock:
            self.upstream = upstream
            self.scrapes = 0

    def stop(self) -> None:
        self.http.stop()


class TestPrometheus:
    """Prometheus scraping ``upstream`` as ``job="demo"`` every :data:`INTERVAL`; rules set by :meth:`load_rules`."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, directory: Path, upstream: SwitchableUpstream) -> None:
        require_prometheus()
        self.upstream = upstream
        directory.mkdir(parents=True, exist_ok=True)
        self.rules_file = directory / "rules.json"
        self.rules_file.write_text('{"groups": []}\n', encoding="utf-8")
        config = directory / "prometheus.json"
        config.write_text(json.dumps(server_config(JOB, upstream.url + "/metrics", INTERVAL, self.rules_file)),
                          encoding="utf-8")
        self.server: LocalPrometheus = start_prometheus(directory, config, self.rules_file)
        self.url = self.server.url
        self.client = PrometheusClient(self.url)

    def load_rules(self, document: dict[str, Any]) -> None:
        """Replace the rule file and reload, as an operator would after editing it."""
        self.rules_file.write_text(json.dumps(document), encoding="utf-8")
        self.client.reload()

    def scrape(self, upstream: str | None, scrapes: int = 2, seconds: float = 30.0) -> None:
        """Point the scraped address at ``upstream`` and wait until Prometheus scraped it ``scrapes`` times."""
        self.upstream.switch(upstream)
        deadline = time.monotonic() + seconds
        while self.upstream.scrapes < scrapes:
            assert time.monotonic() < deadline, f"Prometheus did not scrape {upstream} within {seconds:g} s"
            time.sleep(0.05)

    def stop(self) -> None:
        terminate(self.server.pid, self.server.argv)


@contextmanager
def running_prometheus(directory: Path) -> Iterator[TestPrometheus]:
    """A :class:`TestPrometheus` with its upstream, both stopped on exit."""
    upstream = SwitchableUpstream()
    server: TestPrometheus | None = None
    try:
        server = TestPrometheus(directory, upstream)
        yield server
    finally:
        if server is not None:
            server.stop()
        upstream.stop()
