"""An observation window over the live service, and the judgements made on it (phase 7).

Two ways to observe, one result (:class:`ObservedWindow`): through the spec's Prometheus
(:func:`observe_through_prometheus`: traffic during the window, then ``query_range`` over it for the
request counter and every alert rule metric of this service's job) or, without one, by scraping
the metrics path directly (:func:`observe_directly`). The judgements are pure functions of the
samples: :func:`detect_anomalies` (against the pre-release baseline), :func:`sla_compliance`
(every alert rule quiet on every sample), and the dashboard's :func:`panel_queries` and
:func:`dashboard_gaps`.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from gendev_release.duties.common import evaluate_rules
from gendev_release.probes import http_get
from gendev_release.prometheus import base_name, request_counter, scrape_metrics
from gendev_release.prometheus_api import Series, rule_selector
from gendev_release.prometheus_watch import (
    PrometheusSource,
    request_counter_name,
    scrape_interval,
    wait_for_target,
    wait_until,
)
from gendev_release.spec import AlertRule, ReleaseSpec

#: Anomaly noise margin, as a fraction of the rule's threshold: tiny absolute moves are not anomalies.
ANOMALY_MARGIN = 0.1
#: A window through Prometheus spans at least this many scrape intervals (two scrapes inside it, at least).
MIN_SCRAPES_PER_WINDOW = 3
#: The deferred window's record (sensors/observation.py MonitoringWindowOperator), and how old it may be
#: when ``observability`` reads it (older: a cleared step observes again by itself).
WINDOW_RECORD = "observation-window"
WINDOW_FRESH_SECONDS = 600.0


@dataclass(frozen=True)
class DeferredWindow:
    """The window the deferred task observed: its wall-clock ends, the traffic it sent and any scrapes."""

    started_at: float
    ended_at: float
    requests: int
    traffic: list[str]
    samples: list[dict[str, Any]]

    @classmethod
    def of(cls, record: Any, now: float) -> DeferredWindow | None:
        """The record when it is whole and recent, else None (the step observes by itself)."""
        if not isinstance(record, dict):
            return None
        try:
            window = cls(float(record["started_at"]), float(record["ended_at"]), int(record["requests"]),
                         [str(u) for u in record["traffic"]], list(record.get("samples") or []))
        except (KeyError, TypeError, ValueError):
            return None
        return window if 0 <= now - window.ended_at <= WINDOW_FRESH_SECONDS else None


@dataclass
class MetricSample:
    """The watched series at one moment of the window (a direct scrape, or one step of a range query)."""

    index: int
    at_seconds: float
    status: int | None
    series: dict[str, float] = field(default_factory=dict)
    counter: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.series or self.counter is not None)


@dataclass
class ObservedWindow:
    """What one observation window gathered, and the problems that make its samples unfit."""

    how: str
    source: str
    samples: list[MetricSample]
    counter: str | None
    seconds: float
    scrapes: int
    problems: list[str]
    detail: dict[str, Any] = field(default_factory=dict)


def sample_count(observation_seconds: float, interval_seconds: float) -> int:
    """Scrapes in the window: one at its start and one per interval, at least two."""
    return max(2, int(round(observation_seconds / interval_seconds, 6)) + 1)


def _stale_counter(window: ObservedWindow, requests: int) -> str | None:
    ok = [s for s in window.samples if s.ok]
    first, last = (ok[0].counter, ok[-1].counter) if ok else (None, None)
    if first is None or last is None or last <= first:
        shown = " -> ".join("none" if value is None else f"{value:g}" for value in (first, last))
        return (f"{window.counter} did not increase over the window ({shown}) although {requests} requests were "
                "sent: stale samples")
    return None


# ================================================================================ direct scrapes
def collect_samples(metrics_url: str, traffic_urls: list[str], *, count: int, interval: float,
                    metrics: set[str]) -> tuple[list[MetricSample], str | None]:
    """Scrape ``count`` times, ``interval`` apart, sending one GET to each traffic URL between scrapes.

    Returns the samples (only the series of ``metrics`` and the request counter are kept) and the
    request counter's name, if the exposition has one.
    """
    samples: list[MetricSample] = []
    counter_name: str | None = None
    started = time.monotonic()
    with httpx.Client() as client:
        for index in range(count):
            delay = started + index * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            result, text, parsed = scrape_metrics(metrics_url)
            counter = request_counter(text) if text else None
            if counter is not None:
                counter_name = counter[0]
            kept = {key: value for key, value in parsed.items() if base_name(key) in metrics}
            samples.append(MetricSample(index, round(time.monotonic() - started, 3), result.status, kept,
                                        counter[1] if counter else None, result.error))
            if index < count - 1:
                for url in traffic_urls:
                    http_get(url, 2.0, client)
    return samples, counter_name


def _scrapes_of(deferred: DeferredWindow) -> tuple[list[MetricSample], str | None]:
    samples: list[MetricSample] = []
    counter: str | None = None
    for row in deferred.samples:
        samples.append(MetricSample(int(row.get("index", len(samples))), float(row.get("at_seconds", 0.0)),
                                    row.get("status"), dict(row.get("series") or {}), row.get("counter"),
                                    row.get("error")))
        counter = row.get("counter_name") or counter
    return samples, counter


def observe_directly(spec: ReleaseSpec, router: str, deferred: DeferredWindow | None = None) -> ObservedWindow:
    """The fallback: scrape ``router + metrics_path`` over the window, with traffic between scrapes.

    :param deferred: the window the deferred task already observed (its scrapes are the samples);
        None: observe now, in this step.
    """
    monitoring = spec.monitoring
    metrics_url = router + monitoring.metrics_path
    count = sample_count(monitoring.observation_seconds, monitoring.sample_interval_seconds)
    traffic = [router + endpoint.path for endpoint in spec.critical_endpoints]
    if deferred is not None:
        samples, counter = _scrapes_of(deferred)
    else:
        samples, counter = collect_samples(metrics_url, traffic, count=count,
                                           interval=monitoring.sample_interval_seconds,
                                           metrics={rule.metric for rule in monitoring.alert_rules})
    ok = [s for s in samples if s.ok]
    how = "direct scrape (no Prometheus in the spec)" + (", deferred window" if deferred else "")
    window = ObservedWindow(how, metrics_url, samples, counter, samples[-1].at_seconds if samples else 0.0,
                            len(ok), [], {"deferred": deferred is not None})
    if len(ok) < 2:
        failed = [f"sample {s.index}: HTTP {s.status} {s.error or ''}".strip() for s in samples if not s.ok]
        window.problems.append(f"only {len(ok)} of {len(samples)} scrapes of {metrics_url} returned samples (>= 2 "
                               f"required): {'; '.join(failed[:3])}")
    elif counter is None:
        window.problems.append(f"{metrics_url} exposes no request counter: active collection cannot be shown")
    else:
        stale = _stale_counter(window, deferred.requests if deferred else len(traffic) * (len(samples) - 1))
        if stale:
            window.problems.append(stale)
    return window


# ================================================================================== Prometheus
def _at(series: Series, when: float) -> float | None:
    return next((value for t, value in series.points if abs(t - when) < 1e-6), None)


def observe_through_prometheus(spec: ReleaseSpec, source: PrometheusSource, router: str | None,
                               deferred: DeferredWindow | None = None) -> ObservedWindow:
    """Traffic through the router during the window, then the window's series from ``query_range``.

    The window lasts ``monitoring.observation_seconds`` but at least :data:`MIN_SCRAPES_PER_WINDOW`
    scrape intervals; its ends are Prometheus' own clock (``time()``), and its samples are the
    request counter and every alert rule metric of this job, one point per step
    (``max(sample_interval_seconds, scrape interval)``).
    """
    monitoring = spec.monitoring
    targets, target_problem = wait_for_target(source)
    interval = scrape_interval(source, targets)
    seconds = max(monitoring.observation_seconds, MIN_SCRAPES_PER_WINDOW * interval)
    step = max(monitoring.sample_interval_seconds, interval)
    counter = request_counter_name(source)
    window = ObservedWindow(f"Prometheus query_range ({source.origin})", source.url, [], counter, seconds, 0,
                            [target_problem] if target_problem else [],
                            {"interval": interval, "step": step, "targets": [t.as_dict() for t in targets]})
    if counter is None:
        window.problems.append(f"{source.describe()} holds no request counter for job={source.job}: active "
                               "collection cannot be shown")
        return window
    traffic = [router + endpoint.path for endpoint in spec.critical_endpoints] if router else []
    if deferred is not None:  # the deferred task sent the traffic; its wall clock bounds the window
        start, requests, traffic = deferred.started_at, deferred.requests, deferred.traffic
        window.how += ", deferred window"
    else:
        start = source.client.server_time()
        requests = 0
        began = time.monotonic()
        with httpx.Client() as client:
            while time.monotonic() - began < seconds:
                for url in traffic:
                    http_get(url, 2.0, client)
                    requests += 1
                time.sleep(monitoring.sample_interval_seconds)
    selector = rule_selector(counter, source.job)
    end = deferred.ended_at if deferred is not None else source.client.server_time()
    # the traffic of the window's last moments is in once a scrape after its end is stored
    wait_until(lambda: source.client.scalar(f"max(timestamp({selector}))") or 0.0, lambda t: t >= end,
               3 * interval + 2.0)
    end = max(end, source.client.server_time())
    totals = source.client.query_range(f"sum({selector})", start, end, step)
    scrapes = source.client.query(f"max(count_over_time({selector}[{max(1, round((end - start) * 1000))}ms]))",
                                  end)
    window.scrapes = int(scrapes[0].latest) if scrapes else 0
    by_metric = {rule.metric: source.client.query_range(rule_selector(rule.metric, source.job), start, end, step)
                 for rule in monitoring.alert_rules}
    grid = [t for t, _ in totals[0].points] if totals else []
    for index, when in enumerate(grid):
        values = {s.key(metric): v for metric, found in by_metric.items() for s in found
                  if (v := _at(s, when)) is not None}
        window.samples.append(MetricSample(index, round(when - start, 3), 200, values, _at(totals[0], when)))
    window.detail.update(start=start, end=end, requests=requests, traffic=traffic, deferred=deferred is not None)
    if window.scrapes < 2:
        window.problems.append(f"{source.describe()} stored {window.scrapes} scrape(s) of job={source.job} in the "
                               f"{end - start:.1f} s window (>= 2 required): it is not collecting")
    else:
        stale = _stale_counter(window, requests)
        if stale:
            window.problems.append(f"{stale} (as stored in {source.describe()})")
    return window


# ================================================================================== dashboards
def build_dashboard(spec: ReleaseSpec, counter: str | None, job: str) -> dict[str, Any]:
    """A Grafana dashboard: one panel per alert rule metric (with its threshold) and the request rate, for ``job``."""
    panels: list[dict[str, Any]] = []
    for rule in spec.monitoring.alert_rules:
        panels.append({"id": len(panels) + 1, "type": "timeseries", "title": f"{rule.name}: {rule.metric}",
                       "targets": [{"refId": "A", "expr": rule_selector(rule.metric, "$job")}],
                       "fieldConfig": {"defaults": {"thresholds": {"mode": "absolute", "steps": [
                           {"color": "green", "value": None}, {"color": "red", "value": rule.threshold}]}}},
                       "alert": {"name": rule.name, "op": rule.op, "threshold": rule.threshold}})
    rate = (f"sum(rate({rule_selector(counter, '$job')}[1m]))" if counter
            else 'sum(rate({__name__=~".*requests_total", job="$job"}[1m]))')
    panels.append({"id": len(panels) + 1, "type": "timeseries", "title": "request rate",
                   "targets": [{"refId": "A", "expr": rate}]})
    return {"title": f"{spec.service} release", "uid": f"gendev-{spec.service}",
            "tags": ["gendev-release", spec.service], "templating": {"list": [
                {"name": "job", "type": "constant", "query": job, "hide": 2}]},
            "schemaVersion": 39, "time": {"from": "now-1h", "to": "now"}, "refresh": "10s", "panels": panels}


def dashboard_gaps(text: str, rules: Sequence[AlertRule]) -> list[str]:
    """Alert rule metrics a dashboard definition does not mention (it would not display them)."""
    return [f"{rule.metric} (rule {rule.name})" for rule in rules if rule.metric not in text]


def panel_queries(document: Any) -> list[tuple[str, str]]:
    """``(panel title, PromQL)`` of every panel target of a Grafana dashboard (rows' panels included)."""
    found: list[tuple[str, str]] = []

    def walk(panels: Any) -> None:
        for panel in panels if isinstance(panels, list) else []:
            if not isinstance(panel, dict):
                continue
            title = str(panel.get("title") or f"panel {panel.get('id', len(found) + 1)}")
            for target in panel.get("targets") or []:
                if isinstance(target, dict) and isinstance(target.get("expr"), str) and target["expr"].strip():
                    found.append((title, target["expr"]))
            walk(panel.get("panels"))

    walk(document.get("panels") if isinstance(document, dict) else None)
    return found


_VARIABLE_RE = re.compile(r"\$\{?(__rate_interval|__interval|__range|job|service)\}?")
_IDENTIFIER_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def substitute_variables(expr: str, job: str, service: str) -> str:
    """Grafana variables a dashboard for this service may use, given their values for this run."""
    values = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m", "job": job, "service": service}
    return _VARIABLE_RE.sub(lambda m: values[m.group(1)], expr)


def metric_names_in(expr: str) -> set[str]:
    """Identifiers of a PromQL expression outside label matchers and strings (metric names among them)."""
    stripped = re.sub(r"\{[^}]*\}|\"(?:[^\"\\]|\\.)*\"|\[[^\]]*\]", " ", expr)
    return set(_IDENTIFIER_RE.findall(stripped))


# ================================================================================== judgements
@dataclass(frozen=True)
class Comparison:
    """One rule metric over the window, compared with its pre-release baseline."""

    rule: str
    metric: str
    observed: float | None
    baseline: float | None
    limit: float | None
    anomaly: bool

    def describe(self) -> str:
        if self.observed is None:
            return f"{self.metric}: no value in the window"
        if self.baseline is None:
            return f"{self.metric}: {self.observed:g} (no baseline value)"
        verdict = "ANOMALY" if self.anomaly else "normal"
        return f"{self.metric}: {self.observed:g} vs baseline {self.baseline:g} (limit {self.limit:g}): {verdict}"


def detect_anomalies(rules: Sequence[AlertRule], samples: list[MetricSample], baseline: dict[str, float],
                     tolerance_pct: float) -> list[Comparison]:
    """Compare each rule metric's worst value in the window with the baseline.

    For a "higher is worse" rule (``>``/``>=``) the limit is ``baseline * (1 + tolerance) + margin``,
    for a "lower is worse" rule ``baseline * (1 - tolerance) - margin``; the margin is
    :data:`ANOMALY_MARGIN` of the rule's threshold, so a move from 0.001 to 0.002 is not an anomaly.
    """
    comparisons = []
    tolerance = tolerance_pct / 100.0
    for rule in rules:
        higher_is_worse = rule.op.startswith(">")
        worst = [e.worst for s in samples if s.ok for e in evaluate_rules([rule], s.series) if e.worst is not None]
        observed = (max(worst) if higher_is_worse else min(worst)) if worst else None
        base = evaluate_rules([rule], baseline)[0].worst
        if observed is None or base is None:
            comparisons.append(Comparison(rule.name, rule.metric, observed, base, None, False))
            continue
        margin = ANOMALY_MARGIN * abs(rule.threshold)
        limit = base * (1 + tolerance) + margin if higher_is_worse else base * (1 - tolerance) - margin
        anomaly = observed > limit if higher_is_worse else observed < limit
        comparisons.append(Comparison(rule.name, rule.metric, observed, base, round(limit, 9), anomaly))
    return comparisons


def sla_compliance(rules: Sequence[AlertRule], samples: list[MetricSample]) -> tuple[float, list[str]]:
    """Percentage of samples on which every alert rule is quiet (a missing metric is not compliant)."""
    if not samples:
        return 0.0, ["no samples"]
    breaches: list[str] = []
    compliant = 0
    for sample in samples:
        if not sample.ok:
            breaches.append(f"sample {sample.index}: scrape failed (HTTP {sample.status}, {sample.error})")
            continue
        bad = [e for e in evaluate_rules(rules, sample.series) if e.firing or e.missing]
        breaches.extend(f"sample {sample.index} (t={sample.at_seconds:g}s): {e.describe()}" for e in bad)
        compliant += not bad
    return 100.0 * compliant / len(samples), breaches


def finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
