"""Phase 5, second step: put monitoring and alerts in place (``monitoring_alerts``).

With ``monitoring.prometheus`` in the spec, a real Prometheus is the monitoring system and the
items are judged on what it reports through its HTTP API:

* read: ``/api/v1/rules`` lists every spec alert rule with the spec's metric, operator and
  threshold, for this service's job, evaluated without error and no looser than the SLA it
  protects (the launched server loads the rule file this step writes; an existing one its own);
* verify: the service's scrape target is up and the request counter Prometheus stores moves after
  a request this step sends;
* check: every rule was evaluated by Prometheus after that fresh sample, on series of this
  service that exist, and is quiet; the notification channel delivers a test message.

Without it, the metrics path is scraped directly (the fallback, named in the evidence): the rule
file is checked by ``promtool`` and against the live exposition, freshness by two scrapes, and
the rules are evaluated here on the scraped samples.

Deliverables: ``alert-rules`` (the rule file) and the phase's ``Monitoring alerts`` (the rules as
the monitoring system holds and evaluates them, from this run's evidence).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gendev_release import notify
from gendev_release.context import DutyContext, write_json_atomic
from gendev_release.duties.base import duty
from gendev_release.duties.common import breaches, evaluate_rules, router_url
from gendev_release.probes import HttpResult, http_get, parse_prometheus_text
from gendev_release.prometheus import base_name, metric_types, request_counter, scrape_metrics
from gendev_release.prometheus_api import PrometheusError, rule_problems, rule_selector
from gendev_release.prometheus_watch import (
    PrometheusSource,
    alert_rules_document,
    counter_total,
    open_prometheus,
    prometheus_job,
    request_counter_name,
    scrape_interval,
    wait_for_rules,
    wait_for_target,
    wait_until,
)
from gendev_release.report import Evidence, ItemKind, ReportBuilder
from gendev_release.verification_matrix import ItemProof

__all__ = ["PROOFS", "alert_rules_document", "monitoring_alerts"]

#: The items a duty decides itself (the report item is decided by the report builder).
JUDGED_ITEMS: tuple[ItemKind, ...] = ("read", "verify", "check")

_TESTS = "tests/duties/test_monitoring.py"
PROOFS: dict[str, ItemProof] = {
    "monitoring_alerts.read": ItemProof(
        evidence="Prometheus' /api/v1/rules answer: each alerting rule's name, PromQL, health and last evaluation "
                 "(without a Prometheus: promtool check rules on the rule file, and the live /metrics exposition)",
        oracle="the spec's monitoring.alert_rules (metric, operator, threshold, job) and quality_gates' SLA, "
               "against what the Prometheus server itself loaded and evaluates",
        fails_when="the Prometheus the spec names loaded a rule with another threshold (or not at all), a rule "
                   "selects another job, evaluates with an error, or is looser than the SLA it protects",
        test=f"{_TESTS}::test_rule_loaded_in_prometheus_with_another_threshold_fails_read"),
    "monitoring_alerts.verify": ItemProof(
        evidence="Prometheus' scrape target of the service's job (/api/v1/targets) and the request counter it "
                 "stores before and after a request this step sends (/api/v1/query)",
        oracle="the live service, through the samples Prometheus scraped from it in this run",
        fails_when="the service's metrics cannot be scraped (target down) or its request counter stays flat "
                   "after a request: stale samples",
        test=f"{_TESTS}::test_stale_counter_in_prometheus_fails_verify"),
    "monitoring_alerts.check": ItemProof(
        evidence="each rule's series for the job (/api/v1/query), the rule's state and last evaluation after the "
                 "fresh sample (/api/v1/rules), and the test notification read back from its channel",
        oracle="Prometheus' own evaluation of the rules on the live service's series, and the notification channel",
        fails_when="a rule fires in Prometheus, watches a metric the service does not export, or was not "
                   "evaluated on fresh data; or the notification channel cannot deliver",
        test=f"{_TESTS}::test_alert_firing_in_prometheus_is_a_blocker"),
}

#: How many evaluation intervals a rule may take to be evaluated after a fresh sample.
EVALUATION_ROUNDS = 3


@dataclass(frozen=True)
class RuleFindings:
    """What the check item found about the rules, before the notification channel is tried."""

    problems: list[str]
    summary: str


# ============================================================================ monitoring alerts
@duty("monitoring_alerts")
def monitoring_alerts(ctx: DutyContext, report: ReportBuilder) -> None:
    """Alert rules in the monitoring system, fresh samples, rules evaluated and quiet, a channel that delivers."""
    spec = ctx.spec
    job = prometheus_job(spec)
    rules_path = ctx.paths.workdir / "monitoring" / "alert-rules.json"
    write_json_atomic(rules_path, alert_rules_document(spec, job))
    report.deliver("alert-rules", rules_path)
    report.metrics["alert_rules"] = float(len(spec.monitoring.alert_rules))
    summary: dict[str, Any] = {"service": spec.service, "version": ctx.version, "run_id": ctx.run_id,
                               "rule_file": str(rules_path), "spec_rules": [r.model_dump()
                                                                             for r in spec.monitoring.alert_rules]}
    router = router_url(ctx)
    try:
        source = open_prometheus(ctx, router)
    except PrometheusError as exc:
        report.fail_items(JUDGED_ITEMS, f"monitoring.prometheus: {exc}")
        return
    findings: RuleFindings | None
    if source is not None:
        summary["source"] = {"kind": "prometheus", "url": source.url, "origin": source.origin, "job": job}
        report.facts["alerts_source"] = "prometheus"
        findings = _through_prometheus(ctx, report, source, router, summary)
    elif router is None:
        report.fail_items(JUDGED_ITEMS, "the target has no router URL: no metrics endpoint to scrape and no "
                                        "Prometheus named in monitoring.prometheus")
        return
    else:
        summary["source"] = {"kind": "direct scrape", "url": router + spec.monitoring.metrics_path}
        report.facts["alerts_source"] = "direct scrape"
        findings = _direct(ctx, report, rules_path, router, summary)
    if findings is not None:
        _check_channel(ctx, report, findings)
    summary["notification_channels"] = report.facts.get("notification_channels")
    summary["items"] = {kind: report.passed(kind) for kind in ("read", "verify", "check")}
    path = ctx.paths.workdir / "monitoring" / "monitoring-alerts.json"
    write_json_atomic(path, summary)
    report.deliver("Monitoring alerts", path)


# ================================================================================== Prometheus
def _through_prometheus(ctx: DutyContext, report: ReportBuilder, source: PrometheusSource, router: str | None,
                        summary: dict[str, Any]) -> RuleFindings | None:
    """The three items judged on the server's answers; None when it stopped answering (items failed)."""
    decided: list[str] = []
    try:
        targets, target_problem = wait_for_target(source)
        interval = scrape_interval(source, targets)
        _read_loaded_rules(ctx, report, source, interval, summary)
        decided.append("read")
        fresh_at = _verify_prometheus_fresh(ctx, report, source, router, targets, target_problem, interval)
        decided.append("verify")
        return _check_rules_in_prometheus(ctx, report, source, fresh_at, interval, summary)
    except PrometheusError as exc:
        for kind in JUDGED_ITEMS:
            if kind not in decided:
                report.fail(kind, f"{source.describe()}: {exc}")
        return None


def _rule_wait_seconds(interval: float) -> float:
    return EVALUATION_ROUNDS * interval + 2.0


def _read_loaded_rules(ctx: DutyContext, report: ReportBuilder, source: PrometheusSource, interval: float,
                       summary: dict[str, Any]) -> None:
    spec = ctx.spec
    report.evidence("read", source.evidence())
    names = [rule.name for rule in spec.monitoring.alert_rules]
    loaded = wait_for_rules(source, names, after=None, seconds=_rule_wait_seconds(interval))
    gates = spec.quality_gates
    matched, problems = rule_problems(spec.monitoring.alert_rules, loaded, job=source.job,
                                      p95_latency_ms=gates.p95_latency_ms,
                                      max_error_rate_pct=gates.max_error_rate_pct,
                                      alert_rules_waived=gates.waiver_for("alert_rules") is not None)
    problems.extend(f"rule {name} is loaded but Prometheus has not evaluated it (health unknown)"
                    for name, rule in matched.items() if rule.health == "unknown")
    mine = [rule.as_dict() for rule in loaded if rule.name in names]
    report.evidence("read", Evidence(kind="http", source=f"{source.url}/api/v1/rules",
                                     summary="; ".join(f"{r['name']}: {r['query']} ({r['health']})" for r in mine)
                                     or "none of the spec's rules is loaded",
                                     data={"rules": mine, "loaded_alerting_rules": len(loaded)}))
    summary["loaded_rules"] = mine
    report.verdict("read", not problems, "; ".join(problems) or
                   f"all {len(names)} alert rules loaded in {source.describe()} as the spec gives them, for "
                   f"job={source.job}, healthy: " + "; ".join(f"{n}: {matched[n].query}" for n in names))


def _verify_prometheus_fresh(ctx: DutyContext, report: ReportBuilder, source: PrometheusSource, router: str | None,
                             targets: list[Any], target_problem: str | None, interval: float) -> float | None:
    """The job's target is up and the request counter Prometheus stores moves after a request. Returns its time."""
    report.evidence("verify", Evidence(kind="http", source=f"{source.url}/api/v1/targets",
                                       summary="; ".join(f"{t.scrape_url}: {t.health}" for t in targets)
                                       or f"no active target with job={source.job}",
                                       data={"targets": [t.as_dict() for t in targets], "interval": interval}))
    problems = [target_problem] if target_problem else []
    fresh_at: float | None = None
    counter = None if problems else request_counter_name(source)
    if not problems and counter is None:
        problems.append(f"{source.describe()} holds no request counter for job={source.job} (a counter whose "
                        "name mentions requests): freshness cannot be shown")
    if counter is not None:
        before, before_at = counter_total(source, counter)
        if router is not None:
            poke = http_get(router + ctx.spec.health.checks[0].path)
            report.evidence("verify", poke.evidence(f"request sent through the router: HTTP {poke.status}"))
        seconds = 5 * interval + 2.0
        (after, after_at), moved = wait_until(lambda: counter_total(source, counter),
                                              lambda total: before is not None and total[0] is not None
                                              and total[0] > before, seconds)
        selector = rule_selector(counter, source.job)
        report.evidence("verify", Evidence(kind="metric", source=f"{source.url} sum({selector})",
                                           summary=f"{counter}: {before} -> {after} (scraped at {before_at} -> "
                                                   f"{after_at})",
                                           data={"before": before, "after": after, "before_at": before_at,
                                                 "after_at": after_at}))
        report.facts["request_counter"] = counter
        if moved:
            fresh_at = after_at
        else:
            problems.append(f"{counter} in {source.describe()} did not increase within {seconds:g} s "
                            f"({before} -> {after}) although a request was sent: stale samples")
    report.verdict("verify", not problems, "; ".join(problems) or
                   f"{source.describe()} scrapes job={source.job} every {interval:g} s; {counter} rose "
                   f"{before:g} -> {after:g} after a request")
    return fresh_at


def _check_rules_in_prometheus(ctx: DutyContext, report: ReportBuilder, source: PrometheusSource,
                               fresh_at: float | None, interval: float, summary: dict[str, Any]) -> RuleFindings:
    spec = ctx.spec
    names = [rule.name for rule in spec.monitoring.alert_rules]
    rules = {r.name: r for r in wait_for_rules(source, names, after=fresh_at, seconds=_rule_wait_seconds(interval))}
    problems: list[str] = []
    evaluated: list[dict[str, Any]] = []
    firing = missing = 0
    for rule in spec.monitoring.alert_rules:
        series = source.client.query(rule_selector(rule.metric, source.job))
        values = {s.key(): s.latest for s in series}
        loaded = rules.get(rule.name)
        state = loaded.state if loaded else "not loaded"
        evaluated.append({"rule": rule.name, "metric": rule.metric, "op": rule.op, "threshold": rule.threshold,
                          "values": values, "state": state,
                          "last_evaluation": loaded.last_evaluation if loaded else None})
        if not series:
            missing += 1
            problems.append(f"rule {rule.name}: {source.describe()} has no {rule.metric} series for "
                            f"job={source.job} (the service does not export it)")
        if loaded is None:
            problems.append(f"rule {rule.name} is not loaded in {source.describe()}: nothing evaluates it")
            continue
        if fresh_at is not None and (loaded.last_evaluation is None or loaded.last_evaluation < fresh_at):
            problems.append(f"rule {rule.name} was not evaluated after the fresh sample at {fresh_at:.3f} "
                            f"(last evaluation {loaded.last_evaluation})")
        if loaded.health == "err":
            problems.append(f"rule {rule.name}: Prometheus cannot evaluate it: {loaded.last_error}")
        if state in ("firing", "pending"):
            firing += 1
            worst = [f"{k}={v:g}" for k, v in values.items() if breaches(v, rule.op, rule.threshold)]
            issue = (f"alert {rule.name} is {state} in {source.describe()}: {rule.metric} {rule.op} "
                     f"{rule.threshold:g} ({', '.join(worst) or 'see its alerts'})")
            problems.append(issue)
            report.block(issue)
    report.evidence("check", Evidence(kind="metric", source=f"{source.url}/api/v1/query and /api/v1/rules",
                                      summary="; ".join(f"{e['rule']}: {e['state']}, {len(e['values'])} series"
                                                        for e in evaluated),
                                      data={"rules": evaluated, "fresh_sample_at": fresh_at}))
    summary["evaluations"] = evaluated
    report.metrics["alerts_firing"] = float(firing)
    report.metrics["alert_rules_missing_metric"] = float(missing)
    return RuleFindings(problems, f"all {len(names)} rules evaluated by {source.describe()} on fresh series of "
                                  f"job={source.job}, quiet")


# ============================================================================= direct fallback
def _direct(ctx: DutyContext, report: ReportBuilder, rules_path: Path, router: str,
            summary: dict[str, Any]) -> RuleFindings:
    metrics_url = router + ctx.spec.monitoring.metrics_path
    _read_rule_file(ctx, report, rules_path, metrics_url)
    samples = _verify_fresh_samples(ctx, report, router, metrics_url)
    return _evaluate_directly(ctx, report, metrics_url, samples, summary)


def _promtool(rules_path: Path) -> tuple[Evidence | None, str | None]:
    """``promtool check rules`` on the rule file: its evidence and a problem, or no evidence when promtool is absent."""
    binary = shutil.which("promtool")
    if binary is None:
        return None, None
    argv = [binary, "check", "rules", str(rules_path)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"promtool could not run: {exc}"
    output = (done.stdout + done.stderr).strip()
    evidence = Evidence(kind="command", source=" ".join(argv), summary=f"exit {done.returncode}: {output[-200:]}",
                        data={"exit_code": done.returncode, "output": output[-2000:]})
    return evidence, None if done.returncode == 0 else f"promtool check rules refused {rules_path.name}: {output}"


def _read_rule_file(ctx: DutyContext, report: ReportBuilder, rules_path: Path, metrics_url: str) -> None:
    rules = ctx.spec.monitoring.alert_rules
    problems = []
    report.evidence("read", Evidence.file(rules_path, summary=f"{len(rules)} alert rule(s) for Prometheus, not "
                                          "loaded anywhere: the spec names no monitoring.prometheus"))
    checked, problem = _promtool(rules_path)
    if checked is not None:
        report.evidence("read", checked)
    if problem:
        problems.append(problem)
    answer, text, samples = scrape_metrics(metrics_url)
    report.evidence("read", answer.evidence(f"the live exposition: HTTP {answer.status}, {len(samples)} samples"))
    declared = set(metric_types(text)) | {base_name(key) for key in parse_prometheus_text(text)}
    if answer.status != 200:
        problems.append(f"{metrics_url} answered {answer.status or answer.error}: the rules' metrics cannot be "
                        "confirmed")
    else:
        problems.extend(f"rule {rule.name}: the live service at {metrics_url} does not expose {rule.metric}"
                        for rule in rules if rule.metric not in declared)
    how = "checked by promtool and " if checked is not None else "(promtool not installed) "
    report.verdict("read", not problems, "; ".join(problems) or
                   f"{len(rules)} alert rule(s) in {rules_path.name}, {how}every rule metric exposed by the live "
                   f"service at {metrics_url} (direct scrape: no Prometheus in the spec)")


def _scrape_problem(result: HttpResult, samples: dict[str, float]) -> str | None:
    if result.status is None:
        return f"{result.url} did not answer: {result.error}"
    if result.status != 200:
        return f"{result.url} answered {result.status}, expected 200"
    if not samples:
        return f"{result.url} answered 200 but the exposition has no samples"
    return None


def _verify_fresh_samples(ctx: DutyContext, report: ReportBuilder, router: str, metrics_url: str) -> dict[str, float]:
    """Two scrapes, a request between them: the request counter must have moved. Returns the newest samples."""
    first, first_text, first_samples = scrape_metrics(metrics_url)
    report.evidence("verify", first.evidence(f"direct scrape 1 (no Prometheus in the spec): HTTP {first.status}, "
                                             f"{len(first_samples)} samples"))
    poke = http_get(router + ctx.spec.health.checks[0].path)
    report.evidence("verify", poke.evidence(f"request between scrapes: HTTP {poke.status}"))
    time.sleep(ctx.spec.monitoring.sample_interval_seconds)
    second, second_text, second_samples = scrape_metrics(metrics_url)
    report.evidence("verify", second.evidence(f"direct scrape 2: HTTP {second.status}, {len(second_samples)} samples"))
    problems = [p for p in (_scrape_problem(first, first_samples), _scrape_problem(second, second_samples)) if p]
    counter_before, counter_after = request_counter(first_text), request_counter(second_text)
    rise = ""
    if not problems:
        if counter_before is None or counter_after is None:
            problems.append(f"{metrics_url} exposes no request counter (a counter whose name mentions requests): "
                            "freshness cannot be shown")
        else:
            name, before, after = counter_after[0], counter_before[1], counter_after[1]
            report.evidence("verify", Evidence(kind="metric", source=f"{metrics_url} {name}",
                                               summary=f"{name}: {before:g} -> {after:g}",
                                               data={"before": before, "after": after}))
            report.facts["request_counter"] = name
            rise = f"{name} rose {before:g} -> {after:g}"
            if after <= before:
                problems.append(f"{name} did not increase between scrapes ({before:g} -> {after:g}) although a "
                                "request was sent: stale samples")
    report.metrics["metric_samples"] = float(len(second_samples))
    report.verdict("verify", not problems, "; ".join(problems) or
                   f"{metrics_url} answers 200 with {len(second_samples)} samples; {rise} in "
                   f"{ctx.spec.monitoring.sample_interval_seconds:g} s (direct scrape: no Prometheus in the spec)")
    return second_samples or first_samples


def _evaluate_directly(ctx: DutyContext, report: ReportBuilder, metrics_url: str, samples: dict[str, float],
                       summary: dict[str, Any]) -> RuleFindings:
    spec = ctx.spec
    problems: list[str] = []
    evaluations = evaluate_rules(spec.monitoring.alert_rules, samples)
    rows = [asdict(e) | {"firing": e.firing, "missing": e.missing} for e in evaluations]
    report.evidence("check", Evidence(kind="metric", source=metrics_url,
                                      summary="; ".join(e.describe() for e in evaluations), data={"rules": rows}))
    summary["evaluations"] = rows
    if not samples:
        problems.append(f"no samples from {metrics_url}: alert rules cannot be evaluated")
    missing = [e for e in evaluations if e.missing]
    problems.extend(e.describe() for e in missing if samples)
    firing = [e for e in evaluations if e.firing]
    for evaluation in firing:
        issue = f"alert {evaluation.describe()}"
        problems.append(issue)
        report.block(issue)
    report.metrics["alerts_firing"] = float(len(firing))
    report.metrics["alert_rules_missing_metric"] = float(len(missing))
    return RuleFindings(problems, f"all {len(evaluations)} rule metrics present and quiet on a direct scrape of "
                                  f"{metrics_url}")


# ====================================================================================== channel
def _check_channel(ctx: DutyContext, report: ReportBuilder, findings: RuleFindings) -> None:
    """The test notification; then the check verdict over it and the rule findings."""
    spec = ctx.spec
    problems = list(findings.problems)
    result = notify.send(spec, ctx.paths.home, event="monitoring_test", severity="info",
                         subject=f"{spec.service} {ctx.version}: monitoring test notification",
                         body=f"Alert rules {', '.join(r.name for r in spec.monitoring.alert_rules)} are "
                              f"active for {spec.service} {ctx.version}; this is a test of the channel.",
                         run_id=ctx.run_id)
    # a failed channel fails the item; the channels that delivered keep their evidence
    for delivery in result.delivered:
        report.evidence("check", delivery)
    for failure in result.failures:
        report.evidence("check", failure.evidence())
        problems.append(f"notification channel {failure.describe()}")
    delivered_to = [e.source for e in result.delivered]
    report.facts["notification_channels"] = delivered_to
    report.facts["notification_channel"] = delivered_to[0] if delivered_to else None
    report.verdict("check", not problems, "; ".join(problems) or
                   f"{findings.summary}; test notification delivered to {', '.join(delivered_to)}")
