"""Phase 7 duties: observability over a window, and post-deployment performance analysis.

``observability`` scrapes the live metrics endpoint over ``monitoring.observation_seconds`` (with
real traffic between scrapes), keeps the series, and judges it twice: against the pre-release
baseline the readiness step recorded (anomaly detection) and against the SLA as the alert rules
express it (every rule quiet on every sample).

``performance`` runs a bounded load test through the router, measures the previous slot the same
way when the target still keeps one, and gates p95, error rate and regression.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from gendev_release.context import DutyContext, write_json_atomic
from gendev_release.duties.base import duty
from gendev_release.duties.common import describe_slot, evaluate_rules, router_url, target_evidence
from gendev_release.facts import Baseline, handed_on
from gendev_release.probes import LoadResult, http_get, load_test
from gendev_release.prometheus import base_name, request_counter, scrape_metrics
from gendev_release.report import Evidence, ReportBuilder, sha256_file
from gendev_release.spec import AlertRule, QualityGates, ReleaseSpec

#: Anomaly noise margin, as a fraction of the rule's threshold: tiny absolute moves are not anomalies.
ANOMALY_MARGIN = 0.1
#: Floor for the previous p95 in the regression ratio: loopback latencies of a fraction of a ms are noise.
MIN_BASELINE_P95_MS = 1.0


# ============================================================================== observability
@dataclass
class MetricSample:
    """One scrape of the metrics endpoint, reduced to the watched series."""

    index: int
    at_seconds: float
    status: int | None
    series: dict[str, float] = field(default_factory=dict)
    counter: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.series or self.counter is not None)


def sample_count(observation_seconds: float, interval_seconds: float) -> int:
    """Scrapes in the window: one at its start and one per interval, at least two."""
    return max(2, int(round(observation_seconds / interval_seconds, 6)) + 1)


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


def build_dashboard(spec: ReleaseSpec, counter: str | None) -> dict[str, Any]:
    """A Grafana-style dashboard: one panel per alert rule metric (with its threshold) and request rate."""
    panels: list[dict[str, Any]] = []
    for rule in spec.monitoring.alert_rules:
        panels.append({"id": len(panels) + 1, "type": "timeseries", "title": f"{rule.name}: {rule.metric}",
                       "targets": [{"refId": "A", "expr": rule.metric}],
                       "fieldConfig": {"defaults": {"thresholds": {"mode": "absolute", "steps": [
                           {"color": "green", "value": None}, {"color": "red", "value": rule.threshold}]}}},
                       "alert": {"name": rule.name, "op": rule.op, "threshold": rule.threshold}})
    rate = f"sum(rate({counter}[1m]))" if counter else 'sum(rate({__name__=~".*requests_total"}[1m]))'
    panels.append({"id": len(panels) + 1, "type": "timeseries", "title": "request rate",
                   "targets": [{"refId": "A", "expr": rate}]})
    return {"title": f"{spec.service} release", "uid": f"gendev-{spec.service}",
            "tags": ["gendev-release", spec.service],
            "schemaVersion": 39, "time": {"from": "now-1h", "to": "now"}, "refresh": "10s", "panels": panels}


def dashboard_gaps(text: str, rules: list[AlertRule]) -> list[str]:
    """Alert rule metrics a dashboard definition does not mention (it would not display them)."""
    return [f"{rule.metric} (rule {rule.name})" for rule in rules if rule.metric not in text]


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


def detect_anomalies(rules: list[AlertRule], samples: list[MetricSample], baseline: dict[str, float],
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


def sla_compliance(rules: list[AlertRule], samples: list[MetricSample]) -> tuple[float, list[str]]:
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


@duty("observability")
def observability(ctx: DutyContext, report: ReportBuilder) -> None:
    """Dashboard, samples over the window, anomalies against the baseline, SLA compliance."""
    spec, monitoring = ctx.spec, ctx.spec.monitoring
    router = router_url(ctx)
    samples: list[MetricSample] = []
    counter: str | None = None
    if router is not None:
        samples, counter = _observe(ctx, report, router)
    else:
        report.fail("verify", "the target has no router URL: no metrics endpoint to observe")
    _read_dashboard(ctx, report, counter)
    if router is None:
        report.fail("check", "no samples: anomaly and SLA checks not possible")
        return

    handed, _ = handed_on(ctx, Baseline)
    baseline = handed.samples if handed else None
    problems: list[str] = []
    if baseline:
        report.evidence("check", Evidence(kind="computed", source="readiness report facts.baseline_metrics",
                                          summary=f"pre-release baseline: {len(baseline)} samples",
                                          data={"baseline": {k: v for k, v in baseline.items()
                                                             if k.split('{', 1)[0] in _rule_metrics(spec)}}))
        comparisons = detect_anomalies(list(monitoring.alert_rules), samples, baseline,
                                       spec.quality_gates.regression_tolerance_pct)
        anomalies = [c for c in comparisons if c.anomaly]
        problems.extend(f"anomaly against the pre-release baseline: {c.describe()}" for c in anomalies)
        report.metrics["anomalies"] = float(len(anomalies))
        report.facts["anomalies"] = [asdict(c) for c in comparisons]
        baseline_note = "baseline comparison: " + "; ".join(c.describe() for c in comparisons)
    else:
        baseline_note = ("no pre-release baseline (the readiness report has no baseline_metrics, e.g. a first "
                         "release): compared against the SLA only")
        report.findings.append(baseline_note)
    pct, breaches = sla_compliance(list(monitoring.alert_rules), samples)
    report.metrics["sla_compliance_pct"] = round(pct, 3)
    report.facts["sla_breaches"] = breaches
    report.evidence("check", Evidence(kind="computed", source=f"{len(samples)} samples vs alert rules",
                                      summary=f"SLA compliance {pct:.1f} % ({len(breaches)} breach(es))",
                                      data={"sla_compliance_pct": round(pct, 3), "breaches": breaches,
                                            "rules": [r.model_dump() for r in monitoring.alert_rules]}))
    if pct < 100.0:
        problems.append(f"SLA compliance {pct:.1f} % < 100 % over {len(samples)} samples: {'; '.join(breaches[:5])}")
    report.verdict("check", not problems, "; ".join(problems + [baseline_note]) if problems else
                   f"SLA compliance 100 % over {len(samples)} samples (all {len(monitoring.alert_rules)} alert rules "
                   f"quiet); {baseline_note}")


def _rule_metrics(spec: ReleaseSpec) -> set[str]:
    return {rule.metric for rule in spec.monitoring.alert_rules}


def _observe(ctx: DutyContext, report: ReportBuilder, router: str) -> tuple[list[MetricSample], str | None]:
    monitoring = ctx.spec.monitoring
    metrics_url = router + monitoring.metrics_path
    count = sample_count(monitoring.observation_seconds, monitoring.sample_interval_seconds)
    traffic = [router + endpoint.path for endpoint in ctx.spec.critical_endpoints]
    samples, counter = collect_samples(metrics_url, traffic, count=count, interval=monitoring.sample_interval_seconds,
                                       metrics=_rule_metrics(ctx.spec))
    path = ctx.paths.workdir / "monitoring" / "samples.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(asdict(s), sort_keys=True) + "\n" for s in samples), encoding="utf-8")
    report.deliver("metric-samples", path)
    ok = [s for s in samples if s.ok]
    report.evidence("verify", Evidence(kind="metric", source=metrics_url, sha256=sha256_file(path),
                                       summary=f"{len(ok)}/{len(samples)} scrapes answered over "
                                               f"{samples[-1].at_seconds:g} s; series in {path.name}",
                                       data={"samples": [asdict(s) for s in samples], "counter": counter}))
    report.metrics["samples"] = float(len(ok))
    report.facts["samples_file"] = str(path)
    problems = []
    if len(ok) < 2:
        failed = [f"sample {s.index}: HTTP {s.status} {s.error or ''}".strip() for s in samples if not s.ok]
        problems.append(f"only {len(ok)} of {len(samples)} scrapes of {metrics_url} returned samples (>= 2 "
                        f"required): {'; '.join(failed[:3])}")
    elif counter is None:
        problems.append(f"{metrics_url} exposes no request counter: active collection cannot be shown")
    else:
        first, last = ok[0].counter, ok[-1].counter
        if first is None or last is None or last <= first:
            shown = " -> ".join("none" if value is None else f"{value:g}" for value in (first, last))
            problems.append(f"{counter} did not increase over the window ({shown}) although "
                            f"{len(traffic) * (len(samples) - 1)} requests were sent: stale samples")
    report.verdict("verify", not problems, "; ".join(problems) or
                   f"{len(ok)} samples over {monitoring.observation_seconds:g} s every "
                   f"{monitoring.sample_interval_seconds:g} s; {counter} {ok[0].counter:g} -> {ok[-1].counter:g}")
    return samples, counter


def _read_dashboard(ctx: DutyContext, report: ReportBuilder, counter: str | None) -> None:
    rules = list(ctx.spec.monitoring.alert_rules)
    if ctx.spec.monitoring.dashboard:
        path = ctx.spec.input_path("monitoring.dashboard", ctx.spec.monitoring.dashboard)
        origin = "spec monitoring.dashboard"
        if not path.is_file():
            report.fail("read", f"dashboard {path} named by monitoring.dashboard does not exist")
            return
    else:
        path = ctx.paths.workdir / "monitoring" / "dashboard.json"
        origin = "generated"
        write_json_atomic(path, build_dashboard(ctx.spec, counter))
    text = path.read_text(encoding="utf-8", errors="replace")
    panels: int | None = None
    if path.suffix == ".json":
        try:
            document = json.loads(text)
        except ValueError as exc:
            report.fail("read", f"dashboard {path} is not valid JSON: {exc}")
            return
        panels = len(document.get("panels", [])) if isinstance(document, dict) else None
    report.evidence("read", Evidence.file(path, summary=f"{origin} dashboard {path.name}"
                                          + (f", {panels} panels" if panels is not None else ""), origin=origin))
    report.deliver("dashboard", path)
    gaps = dashboard_gaps(text, rules)
    report.verdict("read", not gaps, f"dashboard {path} does not display: {', '.join(gaps)}" if gaps else
                   f"{origin} dashboard {path.name} displays all {len(rules)} alert rule metrics")


# ================================================================================ performance
def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def load_record(result: LoadResult) -> dict[str, Any]:
    """A load result as plain JSON (infinite percentiles, from all requests failing, become null)."""
    summary = {key: _finite(float(value)) for key, value in result.summary().items()}
    return {"url": result.url, **summary, "status_counts": result.status_counts, "seconds": round(result.seconds, 3)}


def merge_loads(url: str, parts: list[LoadResult]) -> LoadResult:
    """One result from several chunks of a load test against the same URL."""
    statuses: dict[str, int] = {}
    for part in parts:
        for key, count in part.status_counts.items():
            statuses[key] = statuses.get(key, 0) + count
    return LoadResult(url, sum(p.requests for p in parts), sum(p.errors for p in parts),
                      [ms for p in parts for ms in p.latencies_ms], sum(p.seconds for p in parts), statuses)


def paired_load_test(new_url: str, previous_url: str, requests: int, concurrency: int,
                     rounds: int = 4) -> tuple[LoadResult, LoadResult]:
    """Load-test two slots the same way (``requests`` each), interleaved in ``rounds`` chunks.

    Alternating which slot goes first spreads drift on the machine (other work, CPU clock) over both,
    so the p95 ratio reflects the versions rather than the moment each was measured.
    """
    rounds = max(1, min(rounds, requests))
    sizes = [requests // rounds + (1 if index < requests % rounds else 0) for index in range(rounds)]
    new_parts: list[LoadResult] = []
    previous_parts: list[LoadResult] = []
    for index, size in enumerate(sizes):
        order = [(new_url, new_parts), (previous_url, previous_parts)]
        for url, parts in order if index % 2 == 0 else reversed(order):
            parts.append(load_test(url, size, concurrency))
    return merge_loads(new_url, new_parts), merge_loads(previous_url, previous_parts)


def regression_problem(new_p95: float, previous_p95: float, tolerance_pct: float,
                       min_ms: float = 0.0) -> str | None:
    """None when ``new_p95`` is within ``max(previous, 1 ms) * (1 + tolerance)`` or within ``min_ms`` of it.

    ``min_ms`` (``quality_gates.regression_min_ms``) keeps millisecond noise on a busy machine from
    failing a release: a regression must be both relatively and absolutely large.
    """
    base = max(previous_p95, MIN_BASELINE_P95_MS)
    limit = max(base * (1 + tolerance_pct / 100.0), previous_p95 + min_ms)
    if new_p95 <= limit:
        return None
    return (f"p95 regression: {new_p95:g} ms > {limit:g} ms (previous {previous_p95:g} ms, floor "
            f"{MIN_BASELINE_P95_MS:g} ms, + regression_tolerance_pct {tolerance_pct:g} %, "
            f"at least regression_min_ms {min_ms:g} ms)")


def recommendations(p95: float, error_rate: float, gates: QualityGates, ratio: float | None,
                    status_counts: dict[str, int]) -> list[str]:
    """Plain advice from the numbers; always at least the latency headroom."""
    advice = []
    sla = gates.p95_latency_ms
    if not math.isfinite(p95):
        advice.append("no request succeeded: check the service logs and the router before anything else")
    elif p95 > sla:
        advice.append(f"p95 {p95:g} ms exceeds the SLA of {sla:g} ms by {p95 - sla:g} ms: profile the slowest "
                      "endpoint or roll back")
    elif p95 > 0.8 * sla:
        advice.append(f"p95 {p95:g} ms uses {100 * p95 / sla:.0f} % of the {sla:g} ms SLA: little headroom, "
                      "investigate before traffic grows")
    else:
        advice.append(f"latency headroom: p95 {p95:g} ms leaves {sla - p95:g} ms ({100 * (sla - p95) / sla:.0f} %) "
                      f"under the {sla:g} ms SLA")
    if error_rate > 0:
        failing = {k: v for k, v in status_counts.items() if k == "error" or k.startswith("5")}
        advice.append(f"{error_rate:g} % of requests failed {failing}: inspect the server log for these errors")
    if ratio is not None:
        tolerance = 1 + gates.regression_tolerance_pct / 100.0
        if ratio > tolerance:
            advice.append(f"p95 is {ratio:.2f}x the previous version's: review the change set for slower code paths")
        elif ratio > 1.2:
            advice.append(f"p95 is {ratio:.2f}x the previous version's, within tolerance: watch the trend")
        elif ratio < 0.8:
            advice.append(f"p95 improved to {ratio:.2f}x the previous version's")
    return advice


@duty("performance")
def performance(ctx: DutyContext, report: ReportBuilder) -> None:
    """Bounded load test through the router, the previous slot measured the same way, SLA and regression."""
    settings, gates = ctx.spec.load_test, ctx.spec.quality_gates
    router = router_url(ctx)
    if router is None:
        report.fail("read", "the target has no router URL: nothing to load-test")
        return
    live = load_test(router + settings.path, settings.requests, settings.concurrency)
    report.evidence("read", live.evidence())
    status = ctx.target.status()
    report.evidence("verify", target_evidence(ctx, status))

    new_direct: LoadResult | None = None
    previous: LoadResult | None = None
    baseline_problem: str | None = None
    if status.previous is not None and status.previous.url:
        probe = http_get(status.previous.url.rstrip("/") + settings.path)
        report.evidence("verify", probe.evidence(f"previous slot {status.previous.slot} probe: HTTP {probe.status}"))
        if probe.status is None:
            baseline_problem = (f"previous slot {describe_slot(status.previous)} is kept for rollback but does not "
                                f"answer ({probe.error}): no baseline for the regression comparison")
        else:
            # Like for like: both slots directly (no router hop), interleaved, the same request count.
            new_url = (status.active.url if status.active and status.active.url else router).rstrip("/")
            new_direct, previous = paired_load_test(new_url + settings.path,
                                                    status.previous.url.rstrip("/") + settings.path,
                                                    settings.requests, settings.concurrency)
            report.evidence("verify", previous.evidence())
            report.evidence("verify", new_direct.evidence())
            if not previous.latencies_ms:
                baseline_problem = (f"previous slot {describe_slot(status.previous)}: all {previous.requests} requests "
                                    f"failed ({previous.status_counts}): no baseline for the regression comparison")
                previous = new_direct = None

    record = {"router": load_record(live), "active_direct": load_record(new_direct) if new_direct else None,
              "previous": load_record(previous) if previous else None,
              "previous_slot": status.previous.as_dict() if status.previous else None,
              "settings": settings.model_dump(), "gates": {"p95_latency_ms": gates.p95_latency_ms,
                                                           "max_error_rate_pct": gates.max_error_rate_pct,
                                                           "regression_tolerance_pct": gates.regression_tolerance_pct}}
    path = ctx.paths.workdir / "performance" / "load-test.json"
    write_json_atomic(path, record)
    written = json.loads(path.read_text(encoding="utf-8"))
    report.evidence("read", Evidence.file(path, summary=f"load test record: {written['router']['requests']} requests, "
                                                        f"p95 {written['router']['p95_ms']} ms"))
    report.deliver("load-test", path)
    report.verdict("read", written["router"]["requests"] == settings.requests,
                   f"{settings.requests} GETs to {live.url} at concurrency {settings.concurrency}: p95 "
                   f"{written['router']['p95_ms']} ms, p99 {written['router']['p99_ms']} ms, errors "
                   f"{written['router']['error_rate_pct']} %; recorded in {path.name}")

    summary = live.summary()
    ratio: float | None = None
    new_p95 = (new_direct or live).percentile(95)
    if previous is not None:
        prev_p95 = previous.percentile(95)
        ratio = new_p95 / max(prev_p95, MIN_BASELINE_P95_MS)
        report.metrics.update({"baseline_p95_ms": round(prev_p95, 3), "p95_ratio": round(ratio, 3)})
        report.verdict("verify", True, f"compared with previous slot {describe_slot(status.previous)} in this run "
                                       f"({previous.requests} requests each, slot to slot, interleaved): "
                                       f"p95 {new_p95:.3f} ms vs "
                                       f"{prev_p95:.3f} ms, ratio {ratio:.2f}; and with the SLA")
    elif baseline_problem:
        report.verdict("verify", False, baseline_problem)
    else:
        report.verdict("verify", True, "no previous slot is kept (first release): compared with the SLA only")
        report.findings.append("no previous version to compare with: performance compared with the SLA only")

    problems = []
    if not math.isfinite(summary["p95_ms"]) or summary["p95_ms"] > gates.p95_latency_ms:
        problems.append(f"p95 {summary['p95_ms']:g} ms through {live.url} > p95_latency_ms {gates.p95_latency_ms:g} ms")
    if summary["error_rate_pct"] > gates.max_error_rate_pct:
        problems.append(f"error rate {summary['error_rate_pct']:g} % through {live.url} > max_error_rate_pct "
                        f"{gates.max_error_rate_pct:g} % ({live.status_counts})")
    if previous is not None:
        regression = regression_problem(new_p95, previous.percentile(95), gates.regression_tolerance_pct,
                                        gates.regression_min_ms)
        if regression:
            problems.append(regression)
    report.metrics.update({key: float(value) for key, value in summary.items()
                           if key != "requests" and math.isfinite(value)})  # JSON has no infinity
    ratio_text = f"{ratio:.2f}" if ratio is not None else "-"
    report.evidence("check", Evidence(kind="computed", source=str(path),
                                      summary=f"p95 {summary['p95_ms']:g} ms, errors {summary['error_rate_pct']:g} %, "
                                              f"ratio {ratio_text}",
                                      data={"router": load_record(live), "ratio": ratio}))
    advice = recommendations(summary["p95_ms"], summary["error_rate_pct"], gates, ratio, live.status_counts)
    report.findings.extend(f"recommendation: {line}" for line in advice)
    report.facts["recommendations"] = advice
    compared = (f", ratio {ratio:.2f} within {gates.regression_tolerance_pct:g} % tolerance" if ratio is not None
                else ", no previous version to compare")
    report.verdict("check", not problems, "; ".join(problems) or
                   f"p95 {summary['p95_ms']:g} ms <= {gates.p95_latency_ms:g} ms, errors "
                   f"{summary['error_rate_pct']:g} % <= {gates.max_error_rate_pct:g} %{compared}")
