"""The triggers: exact serialization round trips (the way the triggerer stores and rebuilds them), and each
trigger run against real loopback servers (a real Prometheus for the range-query sampling)."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow._shared.module_loading import import_string  # what the triggerer imports a classpath with
from airflow.models.trigger import Trigger
from airflow.triggers.base import BaseTrigger
from loopback import LoopbackServer, Response
from prometheus_server import running_prometheus
from trigger_run import first_event

from gendev_release.sensors.events import (
    BakeEvent,
    HealthEvent,
    RequestSamplingEvent,
    SamplingEvent,
    WindowEvent,
    read_event,
)
from gendev_release.sensors.triggers import (
    ChangeWindowTrigger,
    HealthCheckTrigger,
    MetricSamplingTrigger,
    ObservationWindowTrigger,
    RequestSamplingTrigger,
    TrafficWindowTrigger,
)
from gendev_release.spec import ChangeWindow

CHECKS = [{"name": "healthz", "path": "/healthz", "expect_status": 200, "expect_body_contains": "ok",
           "timeout_seconds": 2.0}]
WINDOW = ChangeWindow(days=["mon", "tue"], start="22:00", end="02:00", timezone="Europe/Berlin",
                      freeze=[{"start": "2026-12-24", "end": "2026-12-26T12:00:00+01:00", "reason": "holidays"}])

TRIGGERS: dict[str, tuple[BaseTrigger, tuple[str, dict[str, Any]]]] = {
    "health": (
        HealthCheckTrigger(url="http://127.0.0.1:8080", checks=CHECKS, consecutive_successes=3,
                           interval_seconds=1.0, deadline=1767225600.0),
        ("gendev_release.sensors.triggers.HealthCheckTrigger",
         {"url": "http://127.0.0.1:8080", "checks": CHECKS, "consecutive_successes": 3, "interval_seconds": 1.0,
          "deadline": 1767225600.0})),
    "bake": (
        ObservationWindowTrigger(url="http://127.0.0.1:8080", checks=CHECKS, started_at=1767225600.0,
                                 until=1767225900.0, interval_seconds=5.0, failure_limit=1),
        ("gendev_release.sensors.triggers.ObservationWindowTrigger",
         {"url": "http://127.0.0.1:8080", "checks": CHECKS, "started_at": 1767225600.0, "until": 1767225900.0,
          "interval_seconds": 5.0, "failure_limit": 1})),
    "scrape": (
        MetricSamplingTrigger(source="scrape", url="http://127.0.0.1:8080/metrics", started_at=1767225600.0,
                              until=1767225660.0, interval_seconds=2.0, min_samples=10,
                              series=["http_requests_total"]),
        ("gendev_release.sensors.triggers.MetricSamplingTrigger",
         {"source": "scrape", "url": "http://127.0.0.1:8080/metrics", "started_at": 1767225600.0,
          "until": 1767225660.0, "interval_seconds": 2.0, "min_samples": 10, "series": ["http_requests_total"],
          "query": None})),
    "prometheus": (
        MetricSamplingTrigger(source="prometheus", url="http://127.0.0.1:9090", started_at=1767225600.0,
                              until=1767225660.0, interval_seconds=5.0, query='sum(rate(http_requests_total[1m]))'),
        ("gendev_release.sensors.triggers.MetricSamplingTrigger",
         {"source": "prometheus", "url": "http://127.0.0.1:9090", "started_at": 1767225600.0,
          "until": 1767225660.0, "interval_seconds": 5.0, "min_samples": 2, "series": None,
          "query": "sum(rate(http_requests_total[1m]))"})),
    "requests": (
        RequestSamplingTrigger(urls={"canary": "http://127.0.0.1:8081", "baseline": "http://127.0.0.1:8082"},
                               paths=["/version", "/api/items"], started_at=1767225600.0, until=1767225610.0,
                               interval_seconds=0.2),
        ("gendev_release.sensors.triggers.RequestSamplingTrigger",
         {"urls": {"canary": "http://127.0.0.1:8081", "baseline": "http://127.0.0.1:8082"},
          "paths": ["/version", "/api/items"], "started_at": 1767225600.0, "until": 1767225610.0,
          "interval_seconds": 0.2, "group_header": None, "timeout_seconds": 5.0})),
    "flag_requests": (
        RequestSamplingTrigger(urls={"router": "http://127.0.0.1:8080"}, paths=["/api/items"],
                               started_at=1767225600.0, until=1767225610.0, interval_seconds=0.5,
                               group_header="X-Gendev-Flag", timeout_seconds=2.0),
        ("gendev_release.sensors.triggers.RequestSamplingTrigger",
         {"urls": {"router": "http://127.0.0.1:8080"}, "paths": ["/api/items"], "started_at": 1767225600.0,
          "until": 1767225610.0, "interval_seconds": 0.5, "group_header": "X-Gendev-Flag",
          "timeout_seconds": 2.0})),
    "traffic_window": (
        TrafficWindowTrigger(traffic=["http://127.0.0.1:8080/api/items"], started_at=1767225600.0,
                             until=1767225605.0, interval_seconds=0.5, scrape_url="http://127.0.0.1:8080/metrics",
                             series=["demo_http_error_ratio"]),
        ("gendev_release.sensors.triggers.TrafficWindowTrigger",
         {"traffic": ["http://127.0.0.1:8080/api/items"], "started_at": 1767225600.0, "until": 1767225605.0,
          "interval_seconds": 0.5, "scrape_url": "http://127.0.0.1:8080/metrics",
          "series": ["demo_http_error_ratio"]})),
    "change_window": (
        ChangeWindowTrigger(window=WINDOW.model_dump(mode="json"), deadline=1767830400.0, requested_at=1767225600.0),
        ("gendev_release.sensors.triggers.ChangeWindowTrigger",
         {"window": {"days": ["mon", "tue"], "start": "22:00", "end": "02:00", "timezone": "Europe/Berlin",
                     "freeze": [{"start": "2026-12-24", "end": "2026-12-26T12:00:00+01:00", "reason": "holidays"}],
                     "max_wait_hours": 168.0, "emergency_override": False},
          "deadline": 1767830400.0, "requested_at": 1767225600.0})),
}


# ================================================================================== serialization
@pytest.mark.parametrize("name", TRIGGERS)
def test_serialize_gives_the_exact_classpath_and_kwargs(name: str) -> None:
    trigger, expected = TRIGGERS[name]
    assert trigger.serialize() == expected


@pytest.mark.parametrize("name", TRIGGERS)
def test_serialize_round_trips_through_the_triggerers_storage(name: str) -> None:
    """Stored as Airflow stores a deferral (serde + encryption), rebuilt as the triggerer rebuilds it."""
    trigger, _ = TRIGGERS[name]
    classpath, kwargs = trigger.serialize()
    stored = Trigger.encrypt_kwargs(kwargs)
    rebuilt = import_string(classpath)(**Trigger._decrypt_kwargs(stored))
    assert type(rebuilt) is type(trigger)
    assert rebuilt.serialize() == trigger.serialize()


def test_the_change_window_trigger_reads_its_window_back() -> None:
    trigger, _ = TRIGGERS["change_window"]
    assert ChangeWindow.model_validate(trigger.serialize()[1]["window"]) == WINDOW


# ========================================================================================== runs
class Flaky:
    """Answers 503 for the first ``failures`` health requests, then 200 "ok"."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.seen = 0
        self.lock = threading.Lock()

    def __call__(self, path: str) -> Response:
        with self.lock:
            self.seen += 1
            failing = self.seen <= self.failures
        return (503, {}, b"down") if failing else (200, {"Content-Type": "text/plain"}, b"ok")


@pytest.fixture
def serve():
    servers: list[LoopbackServer] = []

    def start(responder: Any) -> LoopbackServer:
        servers.append(LoopbackServer(responder))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def test_health_trigger_succeeds_after_a_streak_of_healthy_rounds(serve: Any) -> None:
    server = serve(Flaky(failures=2))
    event = read_event(HealthEvent, first_event(HealthCheckTrigger(
        url=server.url, checks=CHECKS, consecutive_successes=2, interval_seconds=0.05, deadline=time.time() + 60)),
        "test")
    assert event["status"] == "success" and event["rounds"] == 4  # two failures, then two healthy rounds
    assert event["reason"] == "2 consecutive healthy rounds"
    assert [(r["name"], r["status"], r["passed"]) for r in event["last_results"]] == [("healthz", 200, True)]


def test_health_trigger_fails_at_its_wall_clock_deadline(serve: Any) -> None:
    server = serve(Flaky(failures=10**6))
    event = first_event(HealthCheckTrigger(url=server.url, checks=CHECKS, consecutive_successes=1,
                                           interval_seconds=0.05, deadline=time.time() + 0.3))
    assert event["status"] == "failed"
    assert event["reason"].startswith(f"deadline passed after {event['rounds']} rounds (0 of 1 in a row): "
                                      f"{server.url}/healthz answered 503, expected 200")


def test_a_deadline_already_past_still_checks_once(serve: Any) -> None:
    """A triggerer that comes back after the deadline decides on one round instead of waiting again."""
    server = serve(Flaky(failures=0))
    event = first_event(HealthCheckTrigger(url=server.url, checks=CHECKS, consecutive_successes=1,
                                           interval_seconds=5, deadline=time.time() - 60))
    assert (event["status"], event["rounds"]) == ("success", 1)


def test_observation_window_passes_when_healthy_to_its_end(serve: Any) -> None:
    server = serve(Flaky(failures=0))
    started = time.time()
    event = read_event(BakeEvent, first_event(ObservationWindowTrigger(
        url=server.url, checks=CHECKS, started_at=started, until=started + 0.6, interval_seconds=0.1)), "test")
    assert event["status"] == "success" and event["rounds"] >= 2 and event["failed_rounds"] == []
    assert event["ended_at"] >= event["until"]


def test_observation_window_fails_at_once_past_its_failure_limit(serve: Any) -> None:
    server = serve(Flaky(failures=2))
    started = time.time()
    event = read_event(BakeEvent, first_event(ObservationWindowTrigger(
        url=server.url, checks=CHECKS, started_at=started, until=started + 600, interval_seconds=0.05,
        failure_limit=1)), "test")
    assert event["status"] == "failed" and event["rounds"] == 2
    assert [r["index"] for r in event["failed_rounds"]] == [1, 2]
    assert event["ended_at"] < event["until"]  # it did not sit out the window


EXPOSITION = (b"# TYPE http_requests_total counter\n"
              b'http_requests_total{path="/api"} 41\nhttp_requests_total{path="/healthz"} 7\n'
              b"process_cpu_seconds_total 1.5\n")


def test_metric_sampling_by_scrape_keeps_the_named_series(serve: Any) -> None:
    server = serve(lambda path: (200, {"Content-Type": "text/plain"}, EXPOSITION))
    started = time.time()
    event = read_event(SamplingEvent, first_event(MetricSamplingTrigger(
        source="scrape", url=server.url + "/metrics", started_at=started, until=started + 0.3, interval_seconds=0.1,
        min_samples=2, series=["http_requests_total"])), "test")
    assert event["status"] == "success" and len(event["samples"]) >= 2
    assert event["samples"][0]["values"] == {'http_requests_total{path="/api"}': 41.0,
                                             'http_requests_total{path="/healthz"}': 7.0}


def test_metric_sampling_fails_without_enough_usable_samples(serve: Any) -> None:
    server = serve(lambda path: (200, {"Content-Type": "text/plain"}, b"process_cpu_seconds_total 1.5\n"))
    started = time.time()
    event = first_event(MetricSamplingTrigger(source="scrape", url=server.url + "/metrics", started_at=started,
                                              until=started + 0.2, interval_seconds=0.1, min_samples=2,
                                              series=["http_requests_total"]))
    assert event["status"] == "failed"
    assert event["reason"].startswith("only 0 usable of")
    assert event["reason"].endswith(f"{server.url}/metrics has no series http_requests_total")


def test_metric_sampling_through_a_real_prometheus_reads_the_window_back(tmp_path: Path, serve: Any) -> None:
    counter = {"value": 0}

    def metrics(path: str) -> Response:
        counter["value"] += 5
        return 200, {"Content-Type": "text/plain"}, f"demo_requests_total {counter['value']}\n".encode()

    service = serve(metrics)
    with running_prometheus(tmp_path / "prometheus") as prometheus:
        prometheus.scrape(service.url, scrapes=2)
        started = time.time()
        prometheus.scrape(service.url, scrapes=3)  # scraped during the window
        event = read_event(SamplingEvent, first_event(MetricSamplingTrigger(
            source="prometheus", url=prometheus.url, started_at=started, until=time.time(), interval_seconds=0.5,
            query='demo_requests_total{job="demo"}')), "test")
    assert event["status"] == "success", event["reason"]
    values = [next(iter(s["values"].values())) for s in event["samples"]]
    assert len(values) >= 2 and values == sorted(values) and values[-1] > values[0]  # a counter over the window
    assert all(s["at"] >= started - 0.5 for s in event["samples"])


def yesterday() -> str:
    return (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()


def test_change_window_trigger_fires_when_a_freeze_ends() -> None:
    opens = datetime.now(timezone.utc) + timedelta(seconds=1)
    window = ChangeWindow(freeze=[{"start": yesterday(), "end": opens.isoformat(), "reason": "release train"}])
    requested = time.time()
    event = read_event(WindowEvent, first_event(ChangeWindowTrigger(
        window=window.model_dump(mode="json"), deadline=requested + 3600, requested_at=requested)), "test")
    assert event["status"] == "open" and event["state"]["open"] is True
    assert event["decided_at"] >= opens.timestamp() and event["waited_seconds"] > 0


def test_change_window_trigger_fails_when_the_opening_is_past_its_deadline() -> None:
    ends = datetime.now(timezone.utc) + timedelta(days=3)
    window = ChangeWindow(freeze=[{"start": yesterday(), "end": ends.isoformat(), "reason": "moratorium"}])
    now = time.time()
    event = first_event(ChangeWindowTrigger(window=window.model_dump(mode="json"), deadline=now + 60,
                                            requested_at=now))
    assert event["status"] == "failed" and event["state"]["frozen_by"]["reason"] == "moratorium"
    assert "after the longest wait allowed" in event["reason"]


# ==================================================================== the operators that defer to them
def test_observation_operator_checks_its_rendered_arguments_then_defers() -> None:
    from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

    from gendev_release.sensors.observation import MetricSamplingOperator, ObservationWindowOperator

    bad = [({"url": "file:///etc/passwd"}, "url must be an http(s) URL with a host, got 'file:///etc/passwd'"),
           ({"checks": []}, "checks is empty: name at least one health check"),
           ({"checks": [{"name": "Bad Name", "path": "/x"}]}, "checks[0].name: String should match pattern"),
           ({"seconds": float("nan")}, "seconds must be a finite number > 0, got nan"),
           ({"failure_limit": 1.5}, "failure_limit must be a whole number >= 0, got 1.5")]
    for change, message in bad:
        arguments = {"url": "http://127.0.0.1:9", "checks": CHECKS, "seconds": 30, **change}
        operator = ObservationWindowOperator(task_id="bake", **arguments)
        with pytest.raises(AirflowFailException) as info:
            operator.execute({})
        assert str(info.value).startswith(message), (change, str(info.value))

    operator = ObservationWindowOperator(task_id="bake", url="http://127.0.0.1:9", checks=CHECKS, seconds=30,
                                         interval_seconds=2, failure_limit=1)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, ObservationWindowTrigger) and trigger.until - trigger.started_at == 30
    assert deferred.value.timeout == timedelta(seconds=30) + timedelta(minutes=5)

    sampling = MetricSamplingOperator(task_id="sample", source="prometheus", url="http://127.0.0.1:9090", seconds=60)
    with pytest.raises(AirflowFailException, match="query is empty: source 'prometheus' needs a PromQL query"):
        sampling.execute({})


def test_observation_operator_fails_with_the_triggers_reason() -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from gendev_release.sensors.observation import ObservationWindowOperator

    operator = ObservationWindowOperator(task_id="bake", url="http://127.0.0.1:9", checks=CHECKS, seconds=30)
    event = {"status": "failed", "url": "http://127.0.0.1:9", "started_at": 0.0, "until": 30.0, "ended_at": 3.0,
             "rounds": 2, "failure_limit": 0, "failed_rounds": [], "reason": "1 of 2 rounds failed", "last_results": []}
    with pytest.raises(AirflowFailException, match="observation window on http://127.0.0.1:9 failed: 1 of 2 rounds"):
        operator.execute_complete({}, event=event)
    with pytest.raises(AirflowFailException, match="not a BakeEvent: rounds"):
        operator.execute_complete({}, event={**event, "rounds": "two"})
    assert operator.execute_complete({}, event={**event, "status": "success"})["rounds"] == 2


def test_request_sampling_samples_both_sides_to_the_end_of_the_bake(serve: Any) -> None:
    canary = serve(lambda path: (500, {}, b"boom") if path == "/api/items" else (200, {}, b"{}"))
    baseline = serve(lambda path: (200, {}, b"{}"))
    started = time.time()
    event = read_event(RequestSamplingEvent, first_event(RequestSamplingTrigger(
        urls={"canary": canary.url, "baseline": baseline.url}, paths=["/version", "/api/items"],
        started_at=started, until=started + 0.4, interval_seconds=0.05)), "test")
    assert event["status"] == "success" and event["rounds"] >= 2 and event["ended_at"] >= event["until"]
    rows = {(r["group"], r["path"], r["status"]) for r in event["samples"]}
    assert rows == {("canary", "/version", 200), ("canary", "/api/items", 500), ("baseline", "/version", 200),
                    ("baseline", "/api/items", 200)}
    assert all(r["ms"] >= 0 and r["error"] is None for r in event["samples"])


def test_request_sampling_groups_by_the_header_the_service_names(serve: Any) -> None:
    seen = iter(range(10**6))
    router = serve(lambda path: (200, {"X-Gendev-Flag": "on" if next(seen) % 2 else "off"}, b"{}"))
    started = time.time()
    event = first_event(RequestSamplingTrigger(urls={"router": router.url}, paths=["/api/items"], started_at=started,
                                               until=started + 0.3, interval_seconds=0.02,
                                               group_header="X-Gendev-Flag"))
    groups = [r["group"] for r in event["samples"]]
    assert set(groups) == {"on", "off"} and abs(groups.count("on") - groups.count("off")) <= 1



def test_an_event_is_held_until_the_settle_time_after_the_trigger_began(serve: Any,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A healthy streak decides in well under a second; the event still waits for the settle time, so a
    LocalExecutor never sees the task resumed before it handled the worker that parked it."""
    from gendev_release.sensors.triggers import SETTLE_ENV, settle_seconds

    server = serve(Flaky(failures=0))
    monkeypatch.setenv(SETTLE_ENV, "1.5")
    began = time.monotonic()
    event = first_event(HealthCheckTrigger(url=server.url, checks=CHECKS, consecutive_successes=1,
                                           interval_seconds=0.05, deadline=time.time() + 60))
    assert event["status"] == "success" and time.monotonic() - began >= 1.5
    # Without the override: the worker's exit-notice interval (Airflow's min_heartbeat_interval) plus 2 s.
    monkeypatch.delenv(SETTLE_ENV)
    monkeypatch.setenv("AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL", "1")
    assert settle_seconds() == 3.0
    monkeypatch.setenv(SETTLE_ENV, "soon")
    assert settle_seconds() == 3.0
    monkeypatch.delenv("AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL")
    assert settle_seconds() == 7.0
