"""Phase 5, second step: put monitoring and alerts in place (``monitoring_alerts``).

``monitoring_alerts`` writes the spec's alert rules as a Prometheus-rule-like file, proves the
metrics endpoint answers with fresh samples, that every rule's metric exists, that the
notification channel delivers, and that no rule fires right now.

The helpers both this module and the observability duties use (target, rule evaluation, request
counter) live in :mod:`gendev_release.duties.common` and :mod:`gendev_release.prometheus`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from gendev_release import notify
from gendev_release.context import DutyContext, write_json_atomic
from gendev_release.duties.base import duty
from gendev_release.duties.common import evaluate_rules, router_url
from gendev_release.probes import HttpResult, http_get
from gendev_release.prometheus import request_counter, scrape_metrics
from gendev_release.report import Evidence, ReportBuilder
from gendev_release.spec import AlertRule, ReleaseSpec


# ========================================================================== monitoring helpers
def rule_expr(rule: AlertRule) -> str:
    return f"{rule.metric} {rule.op} {rule.threshold:g}"


_EXPR_RE = re.compile(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(>=|<=|>|<)\s*(\S+)\s*$")


def parse_rule_expr(expr: str) -> tuple[str, str, float]:
    """Inverse of :func:`rule_expr`; ``ValueError`` for anything else."""
    match = _EXPR_RE.match(expr)
    if not match:
        raise ValueError(f"alert expression {expr!r} is not '<metric> <op> <threshold>'")
    return match.group(1), match.group(2), float(match.group(3))


def alert_rules_document(spec: ReleaseSpec) -> dict[str, Any]:
    """The spec's alert rules as a Prometheus rule file (``groups[].rules[]``), JSON-shaped."""
    rules = [{
        "alert": rule.name,
        "expr": rule_expr(rule),
        "for": "0s",
        "labels": {"severity": "critical", "service": spec.service, "environment": spec.environment},
        "annotations": {"summary": f"{spec.service}: {rule_expr(rule)}",
                        "channel": ", ".join(c.path for c in spec.notifications.all_channels)},
    } for rule in spec.monitoring.alert_rules]
    return {"groups": [{"name": f"{spec.service}-release", "rules": rules}]}


def audit_alert_rules(document: Any, rules: Sequence[AlertRule]) -> list[str]:
    """Differences between a rule file read back from disk and the spec's rules (empty: they agree)."""
    try:
        written = {r["alert"]: r for group in document["groups"] for r in group["rules"]}
    except (KeyError, TypeError) as exc:
        return [f"rule file is not shaped groups[].rules[]: {exc}"]
    problems = []
    for rule in rules:
        entry = written.pop(rule.name, None)
        if entry is None:
            problems.append(f"rule {rule.name} is missing from the rule file")
            continue
        try:
            metric, op, threshold = parse_rule_expr(str(entry.get("expr", "")))
        except ValueError as exc:
            problems.append(f"rule {rule.name}: {exc}")
            continue
        if (metric, op, threshold) != (rule.metric, rule.op, rule.threshold):
            problems.append(f"rule {rule.name}: file says {metric} {op} {threshold:g}, spec says {rule_expr(rule)}")
    problems.extend(f"rule {name} is in the file but not in the spec" for name in written)
    return problems


def _scrape_problem(result: HttpResult, samples: dict[str, float]) -> str | None:
    if result.status is None:
        return f"{result.url} did not answer: {result.error}"
    if result.status != 200:
        return f"{result.url} answered {result.status}, expected 200"
    if not samples:
        return f"{result.url} answered 200 but the exposition has no samples"
    return None


# ============================================================================ monitoring alerts
@duty("monitoring_alerts")
def monitoring_alerts(ctx: DutyContext, report: ReportBuilder) -> None:
    """Alert rules written and consistent; metrics fresh; rule metrics present; channel delivers; quiet now."""
    spec, monitoring = ctx.spec, ctx.spec.monitoring
    rules_path = ctx.paths.workdir / "monitoring" / "alert-rules.json"
    write_json_atomic(rules_path, alert_rules_document(spec))
    try:
        problems = audit_alert_rules(json.loads(rules_path.read_text(encoding="utf-8")), monitoring.alert_rules)
    except ValueError as exc:
        problems = [f"{rules_path} is not JSON: {exc}"]
    report.evidence("read", Evidence.file(rules_path, summary=f"{len(monitoring.alert_rules)} alert rule(s): "
                                          + "; ".join(f"{r.name}: {rule_expr(r)}" for r in monitoring.alert_rules)))
    report.deliver("alert-rules", rules_path)
    report.metrics["alert_rules"] = float(len(monitoring.alert_rules))
    report.verdict("read", not problems, "; ".join(problems) or
                   f"{len(monitoring.alert_rules)} alert rule(s) written to {rules_path.name} and read back")

    router = router_url(ctx)
    if router is None:
        report.fail("verify", "the target has no router URL: no metrics endpoint to scrape")
        report.fail("check", "no metrics endpoint: rule metrics cannot be checked")
        return
    metrics_url = router + monitoring.metrics_path
    samples = _verify_fresh_samples(ctx, report, router, metrics_url)
    _check_rules_and_channel(ctx, report, metrics_url, samples)


def _verify_fresh_samples(ctx: DutyContext, report: ReportBuilder, router: str, metrics_url: str) -> dict[str, float]:
    """Two scrapes, a request between them: the request counter must have moved. Returns the newest samples."""
    first, first_text, first_samples = scrape_metrics(metrics_url)
    report.evidence("verify", first.evidence(f"scrape 1: HTTP {first.status}, {len(first_samples)} samples"))
    poke = http_get(router + ctx.spec.health.checks[0].path)
    report.evidence("verify", poke.evidence(f"request between scrapes: HTTP {poke.status}"))
    time.sleep(ctx.spec.monitoring.sample_interval_seconds)
    second, second_text, second_samples = scrape_metrics(metrics_url)
    report.evidence("verify", second.evidence(f"scrape 2: HTTP {second.status}, {len(second_samples)} samples"))
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
                   f"{ctx.spec.monitoring.sample_interval_seconds:g} s")
    return second_samples or first_samples


def _check_rules_and_channel(ctx: DutyContext, report: ReportBuilder, metrics_url: str,
                             samples: dict[str, float]) -> None:
    spec = ctx.spec
    problems: list[str] = []
    evaluations = evaluate_rules(spec.monitoring.alert_rules, samples)
    report.evidence("check", Evidence(kind="metric", source=metrics_url,
                                      summary="; ".join(e.describe() for e in evaluations),
                                      data={"rules": [asdict(e) | {"firing": e.firing, "missing": e.missing}
                                                      for e in evaluations]}))
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
                   f"all {len(evaluations)} rule metrics present and quiet; test notification delivered to "
                   f"{', '.join(delivered_to)}")
