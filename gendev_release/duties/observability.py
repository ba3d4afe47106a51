"""Phase 7 duties: observability over a window, and post-deployment performance analysis.

``observability`` watches the live service over ``monitoring.observation_seconds`` with real
traffic, through the spec's Prometheus when it names one (``query_range`` over the window, the
dashboard's panel queries and the loaded alert rules asked of the server) or, without one, by
scraping the metrics path directly. It judges the samples against the pre-release baseline the
readiness step recorded (anomaly detection) and against the SLA as the alert rules express it (every
rule quiet on every sample; through Prometheus, also no alert fired in the window).

``performance`` runs a bounded load test through the router, confirmed by the service's own
request counter, measures the previous version (the one readiness saw live) the same way, and gates
p95, error rate and regression against the spec's quality gates.

Deliverables: ``Real-time monitoring`` (the window's samples), ``Performance dashboards`` (each
panel's query and what it returned), ``Anomaly detection``, ``SLA tracking`` and ``Alert
configuration`` (the rules as the monitoring system holds them and what they did in the window),
plus ``dashboard`` (the definition) and ``load-test``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gendev_release.context import DutyContext, write_json_atomic
from gendev_release.duties.base import duty
from gendev_release.duties.common import evaluate_rules, router_url
from gendev_release.duties.monitoring import JUDGED_ITEMS
from gendev_release.duties.performance import PROOFS as PERFORMANCE_PROOFS
from gendev_release.duties.performance import (  # noqa: F401 (registers the performance duty; re-exported)
    paired_load_test,
    performance,
    regression_problem,
)
from gendev_release.errors import GendevError
from gendev_release.facts import Baseline, handed_on
from gendev_release.observation import (
    ANOMALY_MARGIN,
    WINDOW_RECORD,
    Comparison,
    DeferredWindow,
    MetricSample,
    ObservedWindow,
    build_dashboard,
    collect_samples,
    dashboard_gaps,
    detect_anomalies,
    metric_names_in,
    observe_directly,
    observe_through_prometheus,
    panel_queries,
    sample_count,
    sla_compliance,
    substitute_variables,
)
from gendev_release.probes import parse_prometheus_text
from gendev_release.prometheus import base_name, metric_types, scrape_metrics
from gendev_release.prometheus_api import LoadedRule, PrometheusError, rule_problems
from gendev_release.prometheus_watch import PrometheusSource, open_prometheus, prometheus_job
from gendev_release.report import Evidence, ReportBuilder, sha256_file
from gendev_release.verification_matrix import ItemProof

__all__ = ["ANOMALY_MARGIN", "PROOFS", "Comparison", "MetricSample", "collect_samples", "detect_anomalies",
           "observability", "paired_load_test", "performance", "regression_problem", "sample_count",
           "sla_compliance"]

_TESTS = "tests/duties/test_observability.py"
PROOFS: dict[str, ItemProof] = {
    "observability.read": ItemProof(
        evidence="the dashboard definition's digest, each panel's query run against Prometheus (/api/v1/query) "
                 "with what it returned, and the alert rules Prometheus has loaded (/api/v1/rules); without a "
                 "Prometheus, the live /metrics exposition",
        oracle="Prometheus' stored series of this service's job (a panel must return data for it), the spec's "
               "alert rules (each displayed, each loaded as the spec gives it)",
        fails_when="a panel queries a metric the service does not export (no data), the dashboard leaves out a "
                   "rule metric, or a rule is no longer loaded as the spec gives it",
        test=f"{_TESTS}::test_dashboard_panel_without_data_in_prometheus_fails_read"),
    "observability.verify": ItemProof(
        evidence="query_range over the observation window (the job's request counter, one point per step) and "
                 "count_over_time of its scrapes, while this step sent traffic to every critical endpoint",
        oracle="the live service's counter as Prometheus scraped and stored it during the window (without a "
               "Prometheus: direct scrapes of the live service)",
        fails_when="fewer than two scrapes are stored in the window, or the request counter stays flat although "
                   "traffic was sent (stale samples)",
        test=f"{_TESTS}::test_stale_counter_in_prometheus_fails_verify"),
    "observability.check": ItemProof(
        evidence="each alert rule metric of the job over the window (query_range), Prometheus' ALERTS series over "
                 "the window, and the readiness step's pre-release baseline",
        oracle="the readiness step's baseline of the version live before the release (another step's evidence) "
               "and the spec's SLA thresholds, on samples Prometheus stored in this run",
        fails_when="a rule metric moves far from the baseline (anomaly) or breaks its threshold on any sample of "
                   "the window (SLA compliance under 100 %)",
        test=f"{_TESTS}::test_anomaly_against_the_baseline_in_prometheus_fails_check"),
}

PROOFS.update(PERFORMANCE_PROOFS)  # the matrix reads both steps of phase 7 from this module


# ============================================================================== observability
def deferred_window(ctx: DutyContext) -> DeferredWindow | None:
    """The window ``p7_monitoring.observation_window`` observed (deferred) for this run, if recent and whole."""
    try:
        record = json.loads(ctx.store.read(f"{WINDOW_RECORD}.json"))
    except (GendevError, OSError, ValueError):
        return None
    return DeferredWindow.of(record, time.time())


@duty("observability")
def observability(ctx: DutyContext, report: ReportBuilder) -> None:
    """Samples over the window, the dashboard's queries, anomalies against the baseline, SLA compliance."""
    spec = ctx.spec
    router = router_url(ctx)
    try:
        source = open_prometheus(ctx, router)
    except PrometheusError as exc:
        report.fail_items(JUDGED_ITEMS, f"monitoring.prometheus: {exc}")
        return
    if source is None and router is None:
        report.fail_items(JUDGED_ITEMS, "the target has no router URL: no metrics endpoint to observe and no "
                                        "Prometheus named in monitoring.prometheus")
        return
    deferred = deferred_window(ctx)
    if deferred is None:
        report.findings.append("no recent deferred observation window of this run "
                               f"({WINDOW_RECORD}.json): the window was observed in this step")
    try:
        window = observe_through_prometheus(spec, source, router, deferred) if source else \
            observe_directly(spec, str(router), deferred)
    except PrometheusError as exc:
        report.fail_items(JUDGED_ITEMS, f"{source.describe() if source else 'observation'}: {exc}")
        return
    _verify_window(ctx, report, window)
    loaded: list[LoadedRule] | None = None
    fired: dict[str, int] | None = None
    try:
        if source is not None:
            loaded = source.client.rules()
            fired = _alerts_fired(source, window)
        _read_dashboard(ctx, report, window, source, router, loaded)
    except PrometheusError as exc:
        report.fail("read", f"{source.describe() if source else 'dashboard'}: {exc}")
    per_rule = _check_window(ctx, report, window, fired)
    path = _monitoring_file(ctx, "alert-configuration.json")
    names = {rule.name for rule in spec.monitoring.alert_rules}
    write_json_atomic(path, {
        "monitoring_system": source.describe() if source else f"direct scrape of {window.source} (no Prometheus)",
        "job": source.job if source else None, "spec_rules": [r.model_dump() for r in spec.monitoring.alert_rules],
        "loaded_rules": [r.as_dict() for r in loaded if r.name in names] if loaded is not None else None,
        "in_window": per_rule, "notification_channels": len(spec.notifications.all_channels)})
    report.deliver("Alert configuration", path)


def _monitoring_file(ctx: DutyContext, name: str) -> Path:
    return ctx.paths.workdir / "monitoring" / name


def _verify_window(ctx: DutyContext, report: ReportBuilder, window: ObservedWindow) -> None:
    path = _monitoring_file(ctx, "samples.jsonl")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(asdict(s), sort_keys=True) + "\n" for s in window.samples), encoding="utf-8")
    report.deliver("Real-time monitoring", path)
    ok = [s for s in window.samples if s.ok]
    report.evidence("verify", Evidence(kind="metric", source=window.source, sha256=sha256_file(path),
                                       summary=f"{window.how}: {len(ok)}/{len(window.samples)} samples over "
                                               f"{window.seconds:g} s, {window.scrapes} scrape(s); series in "
                                               f"{path.name}",
                                       data={"samples": [asdict(s) for s in window.samples], "counter": window.counter,
                                             "scrapes": window.scrapes, **window.detail}))
    report.metrics["samples"] = float(len(ok))
    report.facts["samples_file"] = str(path)
    if window.problems:
        report.fail("verify", "; ".join(window.problems))
        return
    report.verdict("verify", True,
                   f"{window.how}: {len(ok)} samples over {window.seconds:g} s from {window.scrapes} scrapes; "
                   f"{window.counter} {ok[0].counter:g} -> {ok[-1].counter:g}")


def _alerts_fired(source: PrometheusSource, window: ObservedWindow) -> dict[str, int]:
    """Per spec rule, how many steps of the window Prometheus' ``ALERTS`` series shows it firing for this job."""
    start, end = window.detail.get("start"), window.detail.get("end")
    if start is None or end is None:
        return {}
    step = float(window.detail.get("step") or 1.0)
    fired: dict[str, int] = {}
    for series in source.client.query_range('ALERTS{alertstate="firing"}', start, end, step):
        name, job = series.labels.get("alertname", ""), series.labels.get("job")
        if job in (None, source.job):
            fired[name] = fired.get(name, 0) + len(series.points)
    return fired


def _check_window(ctx: DutyContext, report: ReportBuilder, window: ObservedWindow,
                  fired: dict[str, int] | None) -> dict[str, Any]:
    """Anomalies against the baseline and SLA compliance; returns what each rule did in the window."""
    spec, monitoring = ctx.spec, ctx.spec.monitoring
    rules = list(monitoring.alert_rules)
    handed, why = handed_on(ctx, Baseline)
    baseline = handed.samples if handed else None
    problems: list[str] = []
    comparisons: list[Comparison] = []
    if baseline:
        report.evidence("check", Evidence(kind="computed", source="readiness report facts.baseline_metrics",
                                          summary=f"pre-release baseline: {len(baseline)} samples",
                                          data={"baseline": {k: v for k, v in baseline.items()
                                                             if base_name(k) in {r.metric for r in rules}}}))
        comparisons = detect_anomalies(rules, window.samples, baseline, spec.quality_gates.regression_tolerance_pct)
        anomalies = [c for c in comparisons if c.anomaly]
        problems.extend(f"anomaly against the pre-release baseline: {c.describe()}" for c in anomalies)
        report.metrics["anomalies"] = float(len(anomalies))
        report.facts["anomalies"] = [asdict(c) for c in comparisons]
        baseline_note = "baseline comparison: " + "; ".join(c.describe() for c in comparisons)
    else:
        baseline_note = (f"no pre-release baseline ({why if handed is None else 'it is empty'}, e.g. a first "
                         "release): compared against the SLA only")
        report.findings.append(baseline_note)
    anomalies_path = _monitoring_file(ctx, "anomalies.json")
    write_json_atomic(anomalies_path, {
        "window": window.how, "baseline_source": "readiness facts.baseline_metrics" if baseline else None,
        "baseline": {k: v for k, v in (baseline or {}).items() if base_name(k) in {r.metric for r in rules}},
        "tolerance_pct": spec.quality_gates.regression_tolerance_pct, "margin_of_threshold": ANOMALY_MARGIN,
        "comparisons": [asdict(c) for c in comparisons], "anomalies": sum(c.anomaly for c in comparisons),
        "note": baseline_note})
    report.deliver("Anomaly detection", anomalies_path)

    pct, breaches = sla_compliance(rules, window.samples)
    report.metrics["sla_compliance_pct"] = round(pct, 3)
    report.facts["sla_breaches"] = breaches
    report.evidence("check", Evidence(kind="computed", source=f"{len(window.samples)} samples ({window.how}) vs "
                                                              "alert rules",
                                      summary=f"SLA compliance {pct:.1f} % ({len(breaches)} breach(es))",
                                      data={"sla_compliance_pct": round(pct, 3), "breaches": breaches,
                                            "rules": [r.model_dump() for r in rules], "alerts_fired": fired}))
    if pct < 100.0:
        problems.append(f"SLA compliance {pct:.1f} % < 100 % over {len(window.samples)} samples: "
                        f"{'; '.join(breaches[:5])}")
    for name, steps in sorted((fired or {}).items()):
        if name in {r.name for r in rules}:
            problems.append(f"Prometheus fired alert {name} during the window ({steps} step(s) of ALERTS)")
    sla_path = _monitoring_file(ctx, "sla.json")
    per_rule = {rule.name: {"metric": rule.metric, "op": rule.op, "threshold": rule.threshold,
                            "firing_samples": sum(1 for s in window.samples if s.ok
                                                  for e in evaluate_rules([rule], s.series) if e.firing),
                            "missing_samples": sum(1 for s in window.samples if s.ok
                                                   for e in evaluate_rules([rule], s.series) if e.missing),
                            "alerts_fired_steps": (fired or {}).get(rule.name, 0) if fired is not None else None}
                for rule in rules}
    write_json_atomic(sla_path, {"window": window.how, "samples": len(window.samples), "sla_compliance_pct": pct,
                                 "breaches": breaches, "rules": per_rule,
                                 "gates": {"p95_latency_ms": spec.quality_gates.p95_latency_ms,
                                           "max_error_rate_pct": spec.quality_gates.max_error_rate_pct}})
    report.deliver("SLA tracking", sla_path)
    report.facts["alert_rules_in_window"] = per_rule
    if not window.samples:
        problems.insert(0, f"no samples from {window.source}: anomaly and SLA checks not possible")
    report.verdict("check", not problems, "; ".join(problems + [baseline_note]) if problems else
                   f"SLA compliance 100 % over {len(window.samples)} samples (all {len(rules)} alert rules quiet"
                   f"{', no alert fired in Prometheus' if fired is not None else ''}); {baseline_note}")
    return per_rule


def _read_dashboard(ctx: DutyContext, report: ReportBuilder, window: ObservedWindow, source: PrometheusSource | None,
                    router: str | None, loaded: list[LoadedRule] | None) -> None:
    """The dashboard (the spec's, or one generated for the rules), each panel asked of the monitoring system."""
    spec = ctx.spec
    rules = list(spec.monitoring.alert_rules)
    job = prometheus_job(spec)
    if spec.monitoring.dashboard:
        path = spec.input_path("monitoring.dashboard", spec.monitoring.dashboard)
        origin = "spec monitoring.dashboard"
        if not path.is_file():
            report.fail("read", f"dashboard {path} named by monitoring.dashboard does not exist")
            return
    else:
        path = _monitoring_file(ctx, "dashboard.json")
        origin = "generated"
        write_json_atomic(path, build_dashboard(spec, window.counter, job))
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        document = json.loads(text)
    except ValueError as exc:
        report.evidence("read", Evidence.file(path, summary=f"{origin} dashboard {path.name}", origin=origin))
        report.fail("read", f"dashboard {path} is not valid JSON (a Grafana dashboard): {exc}")
        return
    queries = panel_queries(document)
    report.evidence("read", Evidence.file(path, summary=f"{origin} dashboard {path.name}, {len(queries)} panel "
                                                        "queries", origin=origin))
    report.deliver("dashboard", path)
    problems = [f"dashboard {path} does not display: {', '.join(gaps)}"] if (gaps := dashboard_gaps(text, rules)) \
        else []
    if not queries:
        problems.append(f"dashboard {path} has no panel with a query (panels[].targets[].expr)")
    if source is not None and loaded is not None:
        panels = _panels_in_prometheus(report, source, queries, job, spec.service, problems)
        gates = spec.quality_gates
        _, rule_issues = rule_problems(rules, loaded, job=job, p95_latency_ms=gates.p95_latency_ms,
                                       max_error_rate_pct=gates.max_error_rate_pct,
                                       alert_rules_waived=gates.waiver_for("alert_rules") is not None)
        mine = [r.as_dict() for r in loaded if r.name in {rule.name for rule in rules}]
        report.evidence("read", Evidence(kind="http", source=f"{source.url}/api/v1/rules",
                                         summary="; ".join(f"{r['name']}: {r['query']} ({r['health']}, {r['state']})"
                                                           for r in mine) or "no spec rule loaded",
                                         data={"rules": mine}))
        problems.extend(f"alert rules in {source.describe()}: {issue}" for issue in rule_issues)
        where = source.describe()
    else:
        panels = _panels_on_exposition(report, queries, router, spec, problems)
        where = f"the live exposition at {router}{spec.monitoring.metrics_path} (direct scrape: no Prometheus)"
    panels_path = _monitoring_file(ctx, "dashboard-panels.json")
    write_json_atomic(panels_path, {"dashboard": str(path), "sha256": sha256_file(path), "origin": origin,
                                    "asked": where, "panels": panels})
    report.deliver("Performance dashboards", panels_path)
    report.verdict("read", not problems, "; ".join(problems) or
                   f"{origin} dashboard {path.name}: all {len(queries)} panel queries return data of job={job} "
                   f"from {where}; displays all {len(rules)} alert rule metrics"
                   + ("; every alert rule still loaded as the spec gives it" if source is not None else ""))


def _panels_in_prometheus(report: ReportBuilder, source: PrometheusSource, queries: list[tuple[str, str]], job: str,
                          service: str, problems: list[str]) -> list[dict[str, Any]]:
    panels = []
    for title, expr in queries:
        asked = substitute_variables(expr, job, service)
        series = source.client.query(asked)
        values = {s.key(): s.latest for s in series if math.isfinite(s.latest)}
        jobs = {s.labels["job"] for s in series if "job" in s.labels}
        panels.append({"title": title, "expr": expr, "query": asked, "series": len(series), "values": values})
        if not values:
            problems.append(f"panel {title!r}: {asked} returned no data from {source.describe()}")
        elif jobs and job not in jobs:
            problems.append(f"panel {title!r}: {asked} returns series of job {sorted(jobs)}, not of this service's "
                            f"job={job}")
    report.evidence("read", Evidence(kind="http", source=f"{source.url}/api/v1/query",
                                     summary="; ".join(f"{p['title']}: {p['series']} series" for p in panels),
                                     data={"panels": panels}))
    return panels


def _panels_on_exposition(report: ReportBuilder, queries: list[tuple[str, str]], router: str | None,
                          spec: Any, problems: list[str]) -> list[dict[str, Any]]:
    metrics_url = f"{router}{spec.monitoring.metrics_path}"
    answer, text, _ = scrape_metrics(metrics_url)
    report.evidence("read", answer.evidence(f"live exposition for the dashboard's panels: HTTP {answer.status}"))
    exposed = set(metric_types(text)) | {base_name(k) for k in parse_prometheus_text(text)}
    panels = []
    for title, expr in queries:
        shown = sorted(metric_names_in(expr) & exposed)
        panels.append({"title": title, "expr": expr, "exposed_metrics": shown})
        if not shown:
            problems.append(f"panel {title!r}: {expr} names no metric the live service exposes at {metrics_url}")
    return panels


