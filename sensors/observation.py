"""Deferred waits with a wall-clock length: a bake (observation window) and metric sampling.

Both have the HttpOperator shape: ``execute`` checks the rendered arguments, fixes the window in
wall-clock time and defers (no worker slot while it lasts); ``execute_complete`` checks the typed
event and fails with the trigger's reason, or returns the event (XCom) for the next step, e.g. a
canary analysis reading the samples. The decisions are :class:`gendev_release.gates.BakeGate` and
:class:`gendev_release.gates.SamplingGate`.

They take plain arguments (not the release spec), so a strategy can place them after any step;
``url`` is templated (an earlier task's XCom can name the canary's address).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowSkipException
from pydantic import ValidationError

from gendev_release.errors import GateFailed
from gendev_release.operators.base import ReleaseOperatorMixin, fail_fast
from gendev_release.sensors.events import BakeEvent, SamplingEvent, read_event
from gendev_release.sensors.triggers import MetricSamplingTrigger, ObservationWindowTrigger
from gendev_release.spec import HealthCheck

#: Airflow's deferral timeout is this much longer than the window (the trigger decides first).
DEFER_GRACE = timedelta(minutes=5)


def check_url(value: Any, field: str) -> str:
    """An http(s) URL with a host, or :class:`GateFailed` naming ``field`` and the value."""
    text = str(value or "")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise GateFailed(f"{field} must be an http(s) URL with a host, got {text[:200]!r}")
    return text


def check_positive(value: Any, field: str, *, allow_zero: bool = False, whole: bool = False) -> float:
    """A finite number > 0 (>= 0 with ``allow_zero``; a whole number with ``whole``), else :class:`GateFailed`."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise GateFailed(f"{field} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero) \
            or (whole and not number.is_integer()):
        kind = "whole number" if whole else "finite number"
        raise GateFailed(f"{field} must be a {kind} {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return number


def check_checks(checks: Sequence[Any], field: str) -> list[dict[str, Any]]:
    """Health checks as the spec's :class:`HealthCheck` JSON; :class:`GateFailed` naming the bad entry."""
    if not checks:
        raise GateFailed(f"{field} is empty: name at least one health check")
    rows = []
    for index, check in enumerate(checks):
        try:
            rows.append(HealthCheck.model_validate(check).model_dump(mode="json"))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise GateFailed(f"{field}[{index}].{where}: {first['msg']}") from None
    return rows


class ObservationWindowOperator(BaseOperator):
    """Watch health for ``seconds`` of wall clock, deferred; fail as soon as more than ``failure_limit`` rounds fail.

    :param url: base URL the checks' paths are appended to (templated).
    :param checks: health checks (the spec's ``health.checks`` form).
    :param seconds: length of the window.
    :param interval_seconds: time between rounds.
    :param failure_limit: failed rounds tolerated (0: any failure fails the window).
    """

    template_fields: Sequence[str] = ("url",)
    ui_color = "#e6f4ea"

    def __init__(self, *, url: str, checks: Sequence[Any], seconds: float, interval_seconds: float = 5.0,
                 failure_limit: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.url = url
        self.checks = list(checks)
        self.seconds = seconds
        self.interval_seconds = interval_seconds
        self.failure_limit = failure_limit

    def execute(self, context: Context) -> None:
        with fail_fast():
            url = check_url(self.url, "url")
            checks = check_checks(self.checks, "checks")
            seconds = check_positive(self.seconds, "seconds")
            interval = check_positive(self.interval_seconds, "interval_seconds")
            limit = int(check_positive(self.failure_limit, "failure_limit", allow_zero=True, whole=True))
            now = time.time()
            self.log.info("observing %s for %.0f s (a round every %.1f s, %d failed round(s) tolerated)", url,
                          seconds, interval, limit)
            self.defer(trigger=ObservationWindowTrigger(url=url, checks=checks, started_at=now, until=now + seconds,
                                                        interval_seconds=interval, failure_limit=limit),
                       method_name="execute_complete", timeout=timedelta(seconds=seconds) + DEFER_GRACE)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        with fail_fast():
            bake = read_event(BakeEvent, event, "the observation-window trigger")
            if bake["status"] != "success":
                raise GateFailed(f"observation window on {bake['url']} failed: {bake['reason']}")
            self.log.info("observation window passed: %s", bake["reason"])
            return dict(bake)


class MetricSamplingOperator(BaseOperator):
    """Collect metric samples over ``seconds`` of wall clock, deferred; hand them on (XCom) for an analysis.

    :param source: ``scrape`` (``url`` serves Prometheus exposition text) or ``prometheus`` (``url`` is a
        Prometheus server and ``query`` is evaluated over the window).
    :param series: scrape only: metric names to keep (all when empty); a sample lacking one is unusable.
    :param min_samples: usable samples needed, else the task fails.
    """

    template_fields: Sequence[str] = ("url", "query")
    ui_color = "#e8f0fe"

    def __init__(self, *, source: Literal["scrape", "prometheus"], url: str, seconds: float,
                 interval_seconds: float = 5.0, min_samples: int = 2, series: Sequence[str] = (),
                 query: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.url = url
        self.seconds = seconds
        self.interval_seconds = interval_seconds
        self.min_samples = min_samples
        self.series = list(series)
        self.query = query

    def execute(self, context: Context) -> None:
        with fail_fast():
            if self.source not in ("scrape", "prometheus"):
                raise GateFailed(f"source must be 'scrape' or 'prometheus', got {self.source!r}")
            if self.source == "prometheus" and not (self.query or "").strip():
                raise GateFailed("query is empty: source 'prometheus' needs a PromQL query")
            url = check_url(self.url, "url")
            seconds = check_positive(self.seconds, "seconds")
            interval = check_positive(self.interval_seconds, "interval_seconds")
            min_samples = int(check_positive(self.min_samples, "min_samples", whole=True))
            now = time.time()
            self.defer(trigger=MetricSamplingTrigger(source=self.source, url=url, started_at=now, until=now + seconds,
                                                     interval_seconds=interval, min_samples=min_samples,
                                                     series=self.series or None, query=self.query),
                       method_name="execute_complete", timeout=timedelta(seconds=seconds) + DEFER_GRACE)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        with fail_fast():
            sampled = read_event(SamplingEvent, event, "the metric-sampling trigger")
            if sampled["status"] != "success":
                raise GateFailed(f"metric sampling of {sampled['url']} failed: {sampled['reason']}")
            self.log.info("metric sampling: %s", sampled["reason"])
            return dict(sampled)


class MonitoringWindowOperator(BaseOperator, ReleaseOperatorMixin):
    """Phase 7's observation window, deferred: traffic through the router for ``monitoring.observation_seconds``.

    With a Prometheus in the spec the window lasts at least :data:`~gendev_release.observation.MIN_SCRAPES_PER_WINDOW`
    scrape intervals and ``observability`` then queries Prometheus over it; without one the trigger
    scrapes the metrics path each round and those scrapes are the samples. The event is stored as
    ``observation-window.json``; ``observability`` judges it (and observes by itself when the record is
    missing or stale). Built with :meth:`~gendev_release.operators.base.ReleaseOperatorMixin.for_release`.
    """

    ui_color = "#e8f0fe"

    def execute(self, context: Context) -> dict[str, Any] | None:
        from gendev_release.duties.common import router_url
        from gendev_release.observation import MIN_SCRAPES_PER_WINDOW, sample_count
        from gendev_release.prometheus_api import PrometheusError
        from gendev_release.prometheus_watch import job_targets, open_prometheus, scrape_interval
        from gendev_release.sensors.triggers import TrafficWindowTrigger

        with fail_fast():
            ctx = self.duty_context(context)
            if ctx.params.dry_run:
                raise AirflowSkipException("dry run: nothing serves this version, nothing to observe")
            self.enter_run(context, ctx)
            self.require_serving(ctx)
            router = router_url(ctx)
            if router is None:
                raise GateFailed("observation window: the target has no router URL")
            monitoring = ctx.spec.monitoring
            try:
                source = open_prometheus(ctx, router)
            except PrometheusError as exc:  # observability reports it; nothing to wait for here
                self.log.warning("observation window not opened: %s", exc)
                return None
            interval = monitoring.sample_interval_seconds
            if source is not None:
                seconds = max(monitoring.observation_seconds,
                              MIN_SCRAPES_PER_WINDOW * scrape_interval(source, job_targets(source)))
            else:
                seconds = (sample_count(monitoring.observation_seconds, interval) - 1) * interval
            now = time.time()
            traffic = [router + endpoint.path for endpoint in ctx.spec.critical_endpoints]
            self.log.info("observing %s for %.1f s (deferred)%s", router, seconds,
                          "" if source else ", scraping " + router + monitoring.metrics_path)
            self.defer(trigger=TrafficWindowTrigger(
                traffic=traffic, started_at=now, until=now + seconds, interval_seconds=interval,
                scrape_url=None if source else router + monitoring.metrics_path,
                series=sorted({rule.metric for rule in monitoring.alert_rules})),
                method_name="execute_complete", timeout=timedelta(seconds=seconds) + DEFER_GRACE)
            return None  # not reached: defer() raises

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        from gendev_release.observation import WINDOW_RECORD
        from gendev_release.sensors.events import TrafficWindowEvent

        with fail_fast():
            ctx = self.duty_context(context)
            window = read_event(TrafficWindowEvent, event, "the observation-window trigger")
            ctx.store.save_record(WINDOW_RECORD, dict(window), keep_earlier=False)
            self.log.info("observation window done: %s", window["reason"])
            return {"started_at": window["started_at"], "ended_at": window["ended_at"],
                    "requests": window["requests"], "reason": window["reason"]}
