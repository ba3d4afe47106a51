"""Triggers: every wait of a release, run in the triggerer (never in a DAG file: the triggerer imports them).

The triggers are thin: each builds a gate of :mod:`gendev_release.gates` (the decisions, shared with
the synchronous paths), feeds it what it observed, and sends the verdict as a typed event
(:mod:`gendev_release.sensors.events`). Every deadline is wall-clock (epoch seconds), so a triggerer
that restarts picks the wait up where the clock says it is. ``serialize()`` mirrors the constructor
and derives its classpath from the class.

* :class:`HealthCheckTrigger`: health checks until N consecutive healthy rounds (post-switch health);
* :class:`ObservationWindowTrigger`: a bake or observation window sampling health until a wall-clock end;
* :class:`MetricSamplingTrigger`: metric samples over a window, from a metrics URL or a Prometheus query;
* :class:`RequestSamplingTrigger`: requests to two sides (canary and baseline, or flag on and off) over
  a bake, for the canary analysis (:mod:`gendev_release.strategies.analysis`);
* :class:`TrafficWindowTrigger`: phase 7's observation window: traffic to the critical endpoints through
  the router, and (without Prometheus) a scrape of the metrics path each round;
* :class:`ChangeWindowTrigger`: waits until the change window opens.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timezone
from typing import Any, Literal

import httpx
from airflow.triggers.base import BaseTrigger, TriggerEvent

from gendev_release.gates import (
    BakeGate,
    CheckOutcomes,
    Probe,
    Sample,
    SamplingGate,
    StreakGate,
    Verdict,
    WindowGate,
    drive_async,
    judge_answer,
)
from gendev_release.probes import parse_prometheus_text
from gendev_release.prometheus import base_name, request_counter
from gendev_release.prometheus_api import PrometheusClient, PrometheusError
from gendev_release.sensors.events import (
    MAX_EVENT_ITEMS,
    BakeEvent,
    CheckRow,
    HealthEvent,
    RequestRow,
    RequestSamplingEvent,
    RoundRow,
    SampleRow,
    SamplingEvent,
    ScrapeRow,
    TrafficWindowEvent,
    WindowEvent,
)

#: Environment variable: seconds a trigger holds its event at least (see :func:`settle_seconds`).
SETTLE_ENV = "GENDEV_TRIGGER_SETTLE_SECONDS"
#: Seconds a trigger holds its event beyond the worker's exit-notice interval (see :func:`settle_seconds`).
SETTLE_MARGIN_SECONDS = 2.0
#: Airflow's default ``[workers] min_heartbeat_interval``.
AIRFLOW_DEFAULT_HEARTBEAT_INTERVAL = 5


def classpath(trigger: BaseTrigger) -> str:
    return f"{type(trigger).__module__}.{type(trigger).__qualname__}"


def worker_exit_notice_seconds() -> int:
    """How late a worker may notice that the task process it supervises has exited.

    Airflow 3.3's task supervisor waits on the task's sockets for at most ``[workers]
    min_heartbeat_interval`` seconds; when the sockets close just before the process exits, it sees
    the exit only when that wait ends (measured: a deferral reported either at once or 5.0 s later).
    """
    try:
        from airflow.sdk.configuration import conf

        return max(0, conf.getint("workers", "min_heartbeat_interval", fallback=AIRFLOW_DEFAULT_HEARTBEAT_INTERVAL))
    except Exception:  # noqa: BLE001 - a broken setting must not stop a wait; assume Airflow's default
        return AIRFLOW_DEFAULT_HEARTBEAT_INTERVAL


def settle_seconds() -> float:
    """How long after it starts a trigger holds its event at least.

    Airflow 3.3.2's executors fail a task that a trigger resumes before the worker that parked it has
    reported the deferral: that late "success" event then meets a task instance that is queued again
    ("state attribute is queued") and the scheduler marks it failed. The worker reports within
    :func:`worker_exit_notice_seconds` of the park, so every trigger holds its verdict that long plus
    :data:`SETTLE_MARGIN_SECONDS` (7 s on Airflow's defaults; 3 s with ``min_heartbeat_interval = 1``,
    which the README recommends). :data:`SETTLE_ENV` overrides it; 0 turns it off (the embedded
    runner and unit tests, where no executor races).
    """
    raw = os.environ.get(SETTLE_ENV, "").strip()
    if raw:
        try:
            return max(0.0, float(raw))
        except ValueError:
            pass
    return worker_exit_notice_seconds() + SETTLE_MARGIN_SECONDS


class ArgumentsTrigger(BaseTrigger):
    """The base of our triggers: ``decide()`` waits and returns the event; ``run()`` yields it, never sooner
    than :func:`settle_seconds` after it began. ``serialize()`` is the constructor's keyword arguments,
    each read back from the attribute of the same name: what the triggerer stores rebuilds the same
    trigger (tested per trigger)."""

    def serialize(self) -> tuple[str, dict[str, Any]]:
        names = [name for name in inspect.signature(type(self).__init__).parameters if name != "self"]
        return classpath(self), {name: getattr(self, name) for name in names}

    async def decide(self) -> TriggerEvent:
        raise NotImplementedError

    async def run(self) -> AsyncIterator[TriggerEvent]:
        began = time.monotonic()
        event = await self.decide()
        await asyncio.sleep(max(0.0, began + settle_seconds() - time.monotonic()))
        yield event


async def check_round(client: httpx.AsyncClient, url: str, probes: Sequence[Probe]) -> list[CheckRow]:
    """One round of health checks against ``url``, each judged by :func:`gendev_release.gates.judge_answer`."""
    rows: list[CheckRow] = []
    for probe in probes:
        target = url.rstrip("/") + probe.path
        started = time.monotonic()
        status: int | None = None
        body, error = "", None
        try:
            response = await client.get(target, timeout=probe.timeout_seconds)
            status, body = response.status_code, response.text
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        passed, reason = judge_answer(probe, target, status, body, error)
        rows.append(CheckRow(name=probe.name, url=target, status=status, passed=passed,
                             seconds=round(time.monotonic() - started, 4), reason=reason))
    return rows


def outcomes(rows: Sequence[CheckRow]) -> CheckOutcomes:
    return [(row["passed"], row["reason"]) for row in rows]


class HealthCheckTrigger(ArgumentsTrigger):
    """Poll health checks until ``consecutive_successes`` clean rounds, or fail when the next round would pass
    ``deadline`` (epoch seconds).

    :param url: the base URL the checks' paths are appended to (the router).
    :param checks: the spec's health checks as JSON (``name``, ``path``, ``expect_status``, ...).
    """

    def __init__(self, *, url: str, checks: list[dict[str, Any]], consecutive_successes: int,
                 interval_seconds: float, deadline: float) -> None:
        super().__init__()
        self.url = url
        self.checks = checks
        self.consecutive_successes = consecutive_successes
        self.interval_seconds = interval_seconds
        self.deadline = deadline

    async def decide(self) -> TriggerEvent:
        probes = [Probe.of(check) for check in self.checks]
        gate = StreakGate(required=self.consecutive_successes, interval=self.interval_seconds, deadline=self.deadline)
        last: list[CheckRow] = []
        async with httpx.AsyncClient() as client:
            async def one_round() -> CheckOutcomes:
                nonlocal last
                last = await check_round(client, self.url, probes)
                return outcomes(last)

            def log(_: CheckOutcomes, verdict: Verdict | None) -> None:
                self.log.info("health round %d: %s", len(gate.rounds),
                              "; ".join(gate.rounds[-1].failures) or "healthy")

            verdict = await drive_async(gate, one_round, on_round=log)
        return TriggerEvent(HealthEvent(status="success" if verdict.passed else "failed", url=self.url,
                                       rounds=len(gate.rounds), reason=verdict.reason, last_results=last))


class ObservationWindowTrigger(ArgumentsTrigger):
    """A bake or observation window: sample health every ``interval_seconds`` until ``until`` (epoch seconds).

    Fails as soon as more than ``failure_limit`` rounds failed; passes at ``until`` otherwise. After a
    triggerer restart the window still ends at ``until``; the rounds seen before are not counted again.
    """

    def __init__(self, *, url: str, checks: list[dict[str, Any]], started_at: float, until: float,
                 interval_seconds: float, failure_limit: int = 0) -> None:
        super().__init__()
        self.url = url
        self.checks = checks
        self.started_at = started_at
        self.until = until
        self.interval_seconds = interval_seconds
        self.failure_limit = failure_limit

    async def decide(self) -> TriggerEvent:
        probes = [Probe.of(check) for check in self.checks]
        gate = BakeGate(until=self.until, interval=self.interval_seconds, failure_limit=self.failure_limit)
        last: list[CheckRow] = []
        async with httpx.AsyncClient() as client:
            async def one_round() -> CheckOutcomes:
                nonlocal last
                last = await check_round(client, self.url, probes)
                return outcomes(last)

            def log(_: CheckOutcomes, verdict: Verdict | None) -> None:
                latest = gate.rounds[-1]
                self.log.info("window round %d (%.0f s left): %s", latest.index, max(0.0, self.until - latest.at),
                              "; ".join(latest.failures) or "healthy")

            verdict = await drive_async(gate, one_round, on_round=log)
        failed = [RoundRow(index=r.index, at=r.at, passed=r.passed, failures=r.failures)
                  for r in gate.failed][-MAX_EVENT_ITEMS:]
        return TriggerEvent(BakeEvent(status="success" if verdict.passed else "failed", url=self.url,
                                     started_at=self.started_at, until=self.until, ended_at=time.time(),
                                     rounds=len(gate.rounds), failure_limit=self.failure_limit,
                                     failed_rounds=failed, reason=verdict.reason, last_results=last))


def sample_row(sample: Sample) -> SampleRow:
    return SampleRow(at=sample.at, ok=sample.ok, values=sample.values, status=sample.status, error=sample.error)


class MetricSamplingTrigger(ArgumentsTrigger):
    """Collect metric samples from ``started_at`` to ``until`` (epoch seconds); at least ``min_samples`` usable.

    ``source="scrape"``: GET ``url`` (Prometheus exposition text) every ``interval_seconds`` and keep the
    series whose base name is in ``series`` (all when empty). ``source="prometheus"``: ``url`` is a
    Prometheus server; at ``until`` one range query of ``query`` over the window, one sample per step.
    A range query reads what Prometheus stored, so a triggerer restart loses no sample; live scrapes
    taken before a restart are lost (``min_samples`` then judges what is left).
    """

    def __init__(self, *, source: Literal["scrape", "prometheus"], url: str, started_at: float, until: float,
                 interval_seconds: float, min_samples: int = 2, series: list[str] | None = None,
                 query: str | None = None) -> None:
        super().__init__()
        self.source = source
        self.url = url
        self.started_at = started_at
        self.until = until
        self.interval_seconds = interval_seconds
        self.min_samples = min_samples
        self.series = series
        self.query = query

    async def _scrape(self, client: httpx.AsyncClient) -> list[Sample]:
        now = time.time()
        try:
            response = await client.get(self.url, timeout=min(10.0, max(1.0, self.interval_seconds)))
        except httpx.HTTPError as exc:
            return [Sample(now, False, error=f"no answer from {self.url}: {type(exc).__name__}: {exc}")]
        if response.status_code != 200:
            return [Sample(now, False, status=response.status_code,
                           error=f"{self.url} answered {response.status_code}, expected 200")]
        wanted = set(self.series or ())
        values = {key: value for key, value in parse_prometheus_text(response.text).items()
                  if not wanted or base_name(key) in wanted}
        values = dict(list(values.items())[:MAX_EVENT_ITEMS])
        missing = sorted(wanted - {base_name(key) for key in values})
        return [Sample(now, bool(values) and not missing, values, 200,
                       f"{self.url} has no series {', '.join(missing)}" if missing else None)]

    def _range(self) -> list[Sample]:
        client = PrometheusClient(self.url)
        try:
            series = client.query_range(self.query or "", self.started_at, self.until, self.interval_seconds)
        except PrometheusError as exc:
            return [Sample(time.time(), False, error=str(exc))]
        by_time: dict[float, dict[str, float]] = {}
        for one in series:
            for at, value in one.points:
                by_time.setdefault(at, {})[one.key()] = value
        return [Sample(at, True, values, 200) for at, values in sorted(by_time.items())]

    async def decide(self) -> TriggerEvent:
        gate = SamplingGate(until=self.until, interval=self.interval_seconds, min_samples=self.min_samples)
        async with httpx.AsyncClient() as client:
            async def one_round() -> list[Sample]:
                if self.source == "scrape":
                    return await self._scrape(client)
                if time.time() < self.until:
                    return []
                return await asyncio.to_thread(self._range)  # PrometheusClient is synchronous

            def log(samples: Sequence[Sample], verdict: Verdict | None) -> None:
                for sample in samples:
                    if not sample.ok:
                        self.log.warning("sample at %.0f unusable: %s", sample.at, sample.error)

            verdict = await drive_async(gate, one_round, on_round=log)
        return TriggerEvent(SamplingEvent(status="success" if verdict.passed else "failed", source=self.source,
                                         url=self.url, query=self.query, started_at=self.started_at,
                                         until=self.until, reason=verdict.reason,
                                         samples=[sample_row(s) for s in gate.samples[-MAX_EVENT_ITEMS:]]))


class RequestSamplingTrigger(ArgumentsTrigger):
    """Request every path on every URL once per round until ``until`` (epoch seconds): the bake of a canary step.

    :param urls: side -> base URL (``{"canary": ..., "baseline": ...}``), or one URL when ``group_header``
        splits the answers (``{"router": ...}`` with ``X-Gendev-Flag``: on / off).
    :param group_header: the response header that names a sample's side instead of its URL.
    Each side keeps at most :data:`MAX_EVENT_ITEMS` samples; the window always runs to its end.
    """

    def __init__(self, *, urls: dict[str, str], paths: list[str], started_at: float, until: float,
                 interval_seconds: float, group_header: str | None = None, timeout_seconds: float = 5.0) -> None:
        super().__init__()
        self.urls = urls
        self.paths = paths
        self.started_at = started_at
        self.until = until
        self.interval_seconds = interval_seconds
        self.group_header = group_header
        self.timeout_seconds = timeout_seconds

    async def _request(self, client: httpx.AsyncClient, side: str, url: str, path: str) -> RequestRow:
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        group = side
        try:
            response = await client.get(url.rstrip("/") + path, timeout=self.timeout_seconds)
            status = response.status_code
            if self.group_header:
                group = response.headers.get(self.group_header, "missing").strip().lower()[:40]
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        return RequestRow(group=group, path=path, status=status, ms=round((time.monotonic() - started) * 1000, 3),
                          error=error)

    async def decide(self) -> TriggerEvent:
        samples: list[RequestRow] = []
        counts: dict[str, int] = {}
        rounds = 0
        async with httpx.AsyncClient() as client:
            while rounds == 0 or time.time() < self.until:  # a triggerer back after the end still samples once
                rounds += 1
                for path in self.paths:
                    for side, url in self.urls.items():
                        row = await self._request(client, side, url, path)
                        if counts.get(row["group"], 0) < MAX_EVENT_ITEMS:
                            counts[row["group"]] = counts.get(row["group"], 0) + 1
                            samples.append(row)
                await asyncio.sleep(max(0.0, min(self.interval_seconds, self.until - time.time())))
        self.log.info("sampled %d round(s): %s", rounds, ", ".join(f"{g} {n}" for g, n in sorted(counts.items())))
        return TriggerEvent(RequestSamplingEvent(
            status="success", urls=self.urls, started_at=self.started_at, until=self.until, ended_at=time.time(),
            rounds=rounds, reason=f"{rounds} round(s) over {len(self.paths)} path(s)", samples=samples))


class TrafficWindowTrigger(ArgumentsTrigger):
    """Send one GET to every ``traffic`` URL per round until ``until``; scrape ``scrape_url`` first in each round.

    The observation window of phase 7: Prometheus (when the spec has one) records what the traffic
    did, and the step queries it over ``[started_at, ended_at]``; without one, the scrapes taken here
    are the samples (only ``series`` and the request counter are kept). A round always runs once,
    even when the triggerer resumes after ``until``.
    """

    def __init__(self, *, traffic: list[str], started_at: float, until: float, interval_seconds: float,
                 scrape_url: str | None = None, series: list[str] | None = None) -> None:
        super().__init__()
        self.traffic = traffic
        self.started_at = started_at
        self.until = until
        self.interval_seconds = interval_seconds
        self.scrape_url = scrape_url
        self.series = series or []

    async def _scrape(self, client: httpx.AsyncClient, index: int) -> ScrapeRow:
        status: int | None = None
        error: str | None = None
        text = ""
        try:
            response = await client.get(str(self.scrape_url), timeout=5.0)
            status, text = response.status_code, response.text
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        parsed = parse_prometheus_text(text) if status == 200 else {}
        counter = request_counter(text) if status == 200 else None
        wanted = set(self.series)
        return ScrapeRow(index=index, at_seconds=round(time.time() - self.started_at, 3), status=status,
                         series={k: v for k, v in parsed.items() if base_name(k) in wanted},
                         counter=counter[1] if counter else None, counter_name=counter[0] if counter else None,
                         error=error)

    async def decide(self) -> TriggerEvent:
        samples: list[ScrapeRow] = []
        requests = rounds = 0
        async with httpx.AsyncClient() as client:
            while True:
                if self.scrape_url and len(samples) < MAX_EVENT_ITEMS:
                    samples.append(await self._scrape(client, len(samples)))
                if rounds and time.time() >= self.until:  # the last scrape follows the last traffic
                    break
                rounds += 1
                for url in self.traffic:
                    try:
                        await client.get(url, timeout=2.0)
                    except httpx.HTTPError:
                        pass  # a failed request is what the metrics show; the window goes on
                    requests += 1
                await asyncio.sleep(max(0.0, min(self.interval_seconds, self.until - time.time())))
        ended = time.time()
        self.log.info("observation window: %d request(s), %d scrape(s)", requests, len(samples))
        return TriggerEvent(TrafficWindowEvent(
            status="success", started_at=self.started_at, until=self.until, ended_at=ended, requests=requests,
            traffic=self.traffic, scrape_url=self.scrape_url, samples=samples,
            reason=f"{requests} request(s) to {len(self.traffic)} endpoint(s) over {ended - self.started_at:.1f} s"))


class ChangeWindowTrigger(ArgumentsTrigger):
    """Wait until the change window is open (freeze periods included), or fail when it would open after
    ``deadline`` (epoch seconds).

    :param window: the spec's ``change_window`` as JSON (``ChangeWindow.model_dump(mode="json")``).
    :param requested_at: when the gate started waiting (epoch seconds), for the waited time.
    """

    def __init__(self, *, window: dict[str, Any], deadline: float, requested_at: float) -> None:
        super().__init__()
        self.window = window
        self.deadline = deadline
        self.requested_at = requested_at

    async def decide(self) -> TriggerEvent:
        from gendev_release.spec import ChangeWindow  # the spec's own rules read the window back

        gate = WindowGate(window=ChangeWindow.model_validate(self.window), deadline=self.deadline)

        async def look() -> None:
            return None  # the clock is the only thing observed

        def log(_: object, verdict: Verdict | None) -> None:
            if verdict is None and gate.last is not None:
                self.log.info("change window %s", gate.last.reason)

        verdict = await drive_async(gate, look, on_round=log)
        now = time.time()
        state = gate.last.as_dict() if gate.last else {}
        self.log.info("change window decided at %s: %s", datetime.fromtimestamp(now, timezone.utc).isoformat(),
                      verdict.reason)
        return TriggerEvent(WindowEvent(status="open" if verdict.passed else "failed", requested_at=self.requested_at,
                                       decided_at=now, waited_seconds=round(max(0.0, now - self.requested_at), 3),
                                       reason=verdict.reason, state=state))
