"""The release report: the seed's checklist and success criteria, derived from the agent reports.

Nothing in the checklist is typed by hand: each line is computed from the verifications and
metrics that the steps recorded in this run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from gendev_release.catalogue import DEPLOYMENT_CHECKLIST, PHASES
from gendev_release.context import write_json_atomic
from gendev_release.report import AgentReport, utcnow

if TYPE_CHECKING:
    from gendev_release.context import DutyContext


def _item(reports: dict[str, AgentReport], item_id: str) -> bool:
    step_id, kind = item_id.rsplit(".", 1)
    report = reports.get(step_id)
    return report is not None and any(v.kind == kind and v.passed for v in report.verifications)


def _step(reports: dict[str, AgentReport], *step_ids: str) -> bool:
    return all(step_id in reports and reports[step_id].status == "passed" for step_id in step_ids)


#: checklist line -> (how it is derived, predicate over the reports)
_CHECKLIST_RULES: dict[str, tuple[str, Any]] = {
    "Risk assessment complete": ("risk_assessment passed", lambda r: _step(r, "risk_assessment")),
    "Stakeholders notified": ("notifications.verify (delivery recorded)", lambda r: _item(r, "notifications.verify")),
    "Backup created": ("risk_assessment.check (backup verified or waived)",
                       lambda r: _item(r, "risk_assessment.check")),
    "Dependencies validated": ("dependencies passed", lambda r: _step(r, "dependencies")),
    "Build artifacts ready": ("build.check (artifacts with sha256)", lambda r: _item(r, "build.check")),
    "Security scan passed": ("dependencies.check (critical vulnerabilities)", lambda r: _item(r, "dependencies.check")),
    "Infrastructure provisioned": ("provisioning passed", lambda r: _step(r, "provisioning")),
    "Configuration validated": ("hardening passed", lambda r: _step(r, "hardening")),
    "Deployment executed": ("execute_strategy passed", lambda r: _step(r, "execute_strategy")),
    "Health checks passing": ("execute_strategy.check", lambda r: _item(r, "execute_strategy.check")),
    "Smoke tests passed": ("smoke_tests.check", lambda r: _item(r, "smoke_tests.check")),
    "Performance validated": ("performance.check", lambda r: _item(r, "performance.check")),
    "Monitoring active": ("observability.verify", lambda r: _item(r, "observability.verify")),
    "Alerts configured": ("monitoring_alerts.check", lambda r: _item(r, "monitoring_alerts.check")),
    "Documentation updated": ("release_notes passed", lambda r: _step(r, "release_notes")),
    "Team briefed": ("training passed", lambda r: _step(r, "training")),
    "Rollback tested": ("previous slot kept running and answered (execute_strategy facts)",
                        lambda r: bool(r.get("execute_strategy") and r["execute_strategy"].facts.get("previous"))),
    "Success metrics met": ("every step passed its gate", lambda r: all(x.status == "passed" for x in r.values())),
}
assert tuple(_CHECKLIST_RULES) == DEPLOYMENT_CHECKLIST

_SUCCESS_CRITERIA: dict[str, tuple[str, Any]] = {
    "Zero-downtime deployment": ("failed_switch_requests == 0",
                                 lambda r: "execute_strategy" in r
                                 and r["execute_strategy"].metrics.get("failed_switch_requests") == 0),
    "All tests passing": ("smoke_tests and qa passed", lambda r: _step(r, "smoke_tests", "qa")),
    "Performance maintained": ("performance passed", lambda r: _step(r, "performance")),
    "Security verified": ("dependencies and hardening passed", lambda r: _step(r, "dependencies", "hardening")),
    "Monitoring operational": ("monitoring_alerts and observability passed",
                               lambda r: _step(r, "monitoring_alerts", "observability")),
    "Documentation complete": ("release_notes and training passed", lambda r: _step(r, "release_notes", "training")),
}


def build_release_report(ctx: DutyContext, reports: dict[str, AgentReport], *, outcome: str,
                         record: dict[str, Any]) -> dict[str, Any]:
    phase_seconds: dict[str, float] = {}
    for phase in PHASES:
        seconds = [(reports[s.id].finished_at - reports[s.id].started_at).total_seconds()
                   for s in phase.steps if s.id in reports]
        if seconds:
            phase_seconds[phase.id] = round(sum(seconds), 3)
    checklist = [{"item": item, "done": bool(rule(reports)), "derived_from": how}
                 for item, (how, rule) in _CHECKLIST_RULES.items()]
    criteria = [{"criterion": name, "met": bool(rule(reports)), "derived_from": how}
                for name, (how, rule) in _SUCCESS_CRITERIA.items()]
    if checklist[16]["item"] == "Rollback tested" and not checklist[16]["done"]:
        checklist[16]["note"] = "first release: no previous version to roll back to"
    return {
        "service": ctx.spec.service, "version": ctx.version, "run_id": ctx.run_id, "outcome": outcome,
        "previous_version": record.get("previous_version"), "generated_at": utcnow().isoformat(),
        "checklist": checklist, "success_criteria": criteria, "phase_seconds": phase_seconds,
        "steps": [{"step_id": r.step_id, "agent": r.agent, "status": r.status,
                   "items": {v.kind: v.passed for v in r.verifications}, "blocking_issues": r.blocking_issues,
                   "deliverables": [d.model_dump() for d in r.deliverables], "metrics": r.metrics}
                  for r in reports.values()],
    }


def render_markdown(report: dict[str, Any]) -> str:
    lines = [f"# Release report: {report['service']} {report['version']}", "",
             f"- Outcome: **{report['outcome']}**", f"- Run: `{report['run_id']}`",
             f"- Previous version: {report['previous_version'] or '(first release)'}",
             f"- Generated: {report['generated_at']}", "", "## Deployment checklist", ""]
    for line in report["checklist"]:
        mark = "x" if line["done"] else " "
        note = f" ({line['note']})" if line.get("note") else ""
        lines.append(f"- [{mark}] {line['item']}{note}: _{line['derived_from']}_")
    lines += ["", "## Success criteria", ""]
    for line in report["success_criteria"]:
        lines.append(f"- [{'x' if line['met'] else ' '}] {line['criterion']}: _{line['derived_from']}_")
    lines += ["", "## Steps", "", "| step | agent | status | read | verify | check | report |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for step in report["steps"]:
        items = step["items"]
        cells = " | ".join("pass" if items.get(k) else "FAIL" for k in ("read", "verify", "check", "report"))
        lines.append(f"| {step['step_id']} | {step['agent']} | {step['status']} | {cells} |")
    return "\n".join(lines) + "\n"


def write_release_report(ctx: DutyContext, report: dict[str, Any]) -> dict[str, Path]:
    json_path = ctx.paths.evidence_dir / "release-report.json"
    md_path = ctx.paths.evidence_dir / "release-report.md"
    for path in (json_path, md_path):  # an earlier attempt's report is kept under attempts/
        ctx.store.keep_earlier(path)
    write_json_atomic(json_path, report)
    md_path.write_text(render_markdown(report), encoding="utf-8")
    return {"json": json_path, "markdown": md_path}
