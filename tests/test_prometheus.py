"""The Prometheus HTTP API client and the loopback Prometheus launcher (a real server where one is needed)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_server import require_prometheus

from gendev_release.prometheus_api import (
    PrometheusClient,
    PrometheusError,
    format_duration,
    parse_duration,
    parse_time,
)
from gendev_release.prometheus_local import (
    PrometheusNotInstalled,
    ensure_local_prometheus,
    find_binary,
    scrape_config,
    start_prometheus,
    stop_local_prometheus,
)
from gendev_release.targets.local import pid_running, port_answers

Answer = tuple[int, str]


@pytest.fixture
def answering() -> Iterator[Callable[[Callable[[str], Answer]], str]]:
    """Start a loopback server answering every GET through a function of the path; yields a starter."""
    servers: list[ThreadingHTTPServer] = []

    def start(respond: Callable[[str], Answer]) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (stdlib name)
                status, body = respond(self.path)
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
                return

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# ==================================================================================== the client
@pytest.mark.parametrize("status,body,message", [
    (200, "<html>grafana</html>", "with something that is not JSON (is this a Prometheus server?)"),
    (200, '{"data": []}', "JSON without a status field"),
    (400, '{"status": "error", "errorType": "bad_data", "error": "parse error at char 4"}',
     "answered bad_data: parse error at char 4 (HTTP 400)"),
    (200, '{"status": "success", "data": {"resultType": "vector", "result": [{"value": [1, "2"]}]}}',
     "a result entry has no metric labels"),
    (200, '{"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "x"]}]}}',
     "'x' is not a sample value"),
])
def test_bad_answers_are_named_errors(answering: Callable[[Callable[[str], Answer]], str], status: int, body: str,
                                      message: str) -> None:
    client = PrometheusClient(answering(lambda _: (status, body)))
    with pytest.raises(PrometheusError) as caught:
        client.query("up")
    assert message in str(caught.value) and client.url in str(caught.value)


def test_an_unreachable_server_is_a_named_error() -> None:
    client = PrometheusClient("http://127.0.0.1:9", timeout=1.0)
    with pytest.raises(PrometheusError, match=r"Prometheus at http://127.0.0.1:9 did not answer /api/v1/rules"):
        client.rules()


def test_rules_and_targets_are_read_from_the_api_shape(answering: Callable[[Callable[[str], Answer]], str]) -> None:
    rules = {"status": "success", "data": {"groups": [{"name": "g", "file": "r.yml", "interval": 15, "rules": [
        {"type": "recording", "name": "x", "query": "sum(up)"},
        {"type": "alerting", "name": "error-rate", "query": "e > 0.01", "health": "err", "lastError": "boom",
         "state": "firing", "lastEvaluation": "2026-01-05T10:00:00.123456789Z", "alerts": [{}, {}]}]}]}}
    targets = {"status": "success", "data": {"activeTargets": [
        {"labels": {"job": "demo", "instance": "127.0.0.1:1"}, "scrapeUrl": "http://127.0.0.1:1/metrics",
         "health": "down", "lastError": "connection refused", "lastScrape": "0001-01-01T00:00:00Z",
         "scrapeInterval": "1m30s"}]}}
    url = answering(lambda path: (200, json.dumps(rules if path.startswith("/api/v1/rules") else targets)))
    [rule] = PrometheusClient(url).rules()
    assert (rule.name, rule.health, rule.last_error, rule.state, rule.active_alerts, rule.interval) == (
        "error-rate", "err", "boom", "firing", 2, 15.0)
    assert rule.last_evaluation == pytest.approx(parse_time("2026-01-05T10:00:00.123456Z"))
    [target] = PrometheusClient(url).targets()
    assert (target.job, target.health, target.last_scrape, target.scrape_interval) == ("demo", "down", None, 90.0)


def test_durations_and_scrape_config() -> None:
    assert parse_duration("1m30s") == 90.0 and parse_duration("500ms") == 0.5 and parse_duration("1x") is None
    assert format_duration(1.0) == "1000ms" and format_duration(0.0001) == "1ms"
    config = scrape_config("demo", "http://127.0.0.1:8080/metrics?format=text", 1.0)
    assert config["static_configs"] == [{"targets": ["127.0.0.1:8080"]}]
    assert (config["metrics_path"], config["params"]) == ("/metrics", {"format": ["text"]})
    with pytest.raises(PrometheusError, match="not an http"):
        scrape_config("demo", "file:///etc/passwd", 1.0)


# ================================================================================== the launcher
def test_a_missing_binary_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GENDEV_PROMETHEUS", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PrometheusNotInstalled, match=r"no `prometheus` binary is on PATH; install it with "
                                                     r"`apt-get install prometheus`"):
        find_binary()
    monkeypatch.setenv("GENDEV_PROMETHEUS", str(tmp_path / "prometheus"))
    with pytest.raises(PrometheusNotInstalled, match="is not an executable Prometheus binary"):
        find_binary()


RULES = {"groups": [{"name": "demo-release", "rules": [
    {"alert": "error-rate", "expr": 'demo_http_error_ratio{job="demo"} > 0.01', "for": "0s"}]}]}


def test_ensure_starts_reuses_reloads_and_reports_a_refused_rule(tmp_path: Path) -> None:
    require_prometheus()
    home = tmp_path / "home"
    ensure = lambda rules: ensure_local_prometheus(home, "demo", job="demo",  # noqa: E731
                                                   scrape_url="http://127.0.0.1:9/metrics", interval=1.0, rules=rules)
    try:
        first = ensure(RULES)
        assert first.action == "started" and first.url.startswith("http://127.0.0.1:")
        assert ensure(RULES).action == "reused"
        changed = json.loads(json.dumps(RULES))
        changed["groups"][0]["rules"][0]["expr"] = 'demo_http_error_ratio{job="demo"} > 0.02'
        assert ensure(changed).action == "reloaded"
        assert [r.query for r in PrometheusClient(first.url).rules()] == ['demo_http_error_ratio{job="demo"} > 0.02']
        changed["groups"][0]["rules"][0]["expr"] = 'demo_http_error_ratio{job="demo" > 0.02'
        with pytest.raises(PrometheusError, match="refused to reload its configuration"):
            ensure(changed)
        # the refused file was not kept: Prometheus still evaluates the last good rule
        assert [r.query for r in PrometheusClient(first.url).rules()] == ['demo_http_error_ratio{job="demo"} > 0.02']
    finally:
        stopped = stop_local_prometheus(home, "demo")
    assert stopped is not None and "stopped (SIGTERM)" in stopped
    assert not port_answers(first.port)


def test_a_bad_rule_file_at_start_is_prometheus_own_error(tmp_path: Path) -> None:
    require_prometheus()
    bad = {"groups": [{"name": "g", "rules": [{"alert": "x", "expr": "up >"}]}]}
    with pytest.raises(PrometheusError, match=r"did not start on http://127\.0\.0\.1:\d+: it exited with code"):
        ensure_local_prometheus(tmp_path, "demo", job="demo", scrape_url="http://127.0.0.1:9/metrics",
                                interval=1.0, rules=bad)


def test_the_watchdog_stops_prometheus_after_its_max_lifetime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_prometheus()
    monkeypatch.setenv("GENDEV_MAX_LIFETIME", "1")
    (tmp_path / "rules.json").write_text('{"groups": []}')
    (tmp_path / "prometheus.json").write_text(json.dumps({"global": {}, "scrape_configs": []}))
    server = start_prometheus(tmp_path, tmp_path / "prometheus.json", tmp_path / "rules.json")
    deadline = time.monotonic() + 60
    while pid_running(server.pid) or port_answers(server.port):
        assert time.monotonic() < deadline, "Prometheus outlived GENDEV_MAX_LIFETIME"
        time.sleep(0.1)
    assert "max lifetime of 1 s reached" in (tmp_path / "prometheus.log").read_text()
