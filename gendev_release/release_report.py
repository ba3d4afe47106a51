"""The release report: the seed's checklist and success criteria, derived from the agent reports.

Nothing in the checklist is typed by hand: each line is judged by a rule of
:mod:`gendev_release.release_checklist` from the evidence the steps recorded in this run, the run
record and the release history. A line is ticked only when the thing it names happened in this
run; a line that leans on a waiver shows ``waived (reason, approved_by)`` and is never ticked;
any other line says why it is not done.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gendev_release.approvals import approvals_markdown, gate_records
from gendev_release.catalogue import PHASES
from gendev_release.evidence_store import current_records
from gendev_release.release_checklist import RunFacts, derive, first_release_reason
from gendev_release.report import AgentReport, utcnow
from gendev_release.run_record import ReleaseHistory
from gendev_release.strategies import POST_PROMOTION_RECORD, STEP_RECORD_PREFIX

if TYPE_CHECKING:
    from gendev_release.context import DutyContext
    from gendev_release.evidence_store import StoredPath

#: How each state shows in the Markdown report.
MARKS = {"done": "[x]", "waived": "[ ]", "not_done": "[ ]"}


def run_facts(ctx: DutyContext, reports: dict[str, AgentReport], record: dict[str, Any]) -> RunFacts:
    """What the checklist rules read: the reports, the spec, the run record and the verified history before this run."""
    verified = tuple(str(e.version) for e in ReleaseHistory(ctx.paths.home, ctx.paths.dag_id).entries()
                     if e.verified and e.outcome == "success" and e.run_id != ctx.run_id and e.version)
    return RunFacts(reports=reports, spec=ctx.spec, version=ctx.version, record=record, verified_before=verified)


def build_release_report(ctx: DutyContext, reports: dict[str, AgentReport], *, outcome: str,
                         record: dict[str, Any]) -> dict[str, Any]:
    phase_seconds: dict[str, float] = {}
    for phase in PHASES:
        seconds = [(reports[s.id].finished_at - reports[s.id].started_at).total_seconds()
                   for s in phase.steps if s.id in reports]
        if seconds:
            phase_seconds[phase.id] = round(sum(seconds), 3)
    facts = run_facts(ctx, reports, record)
    checklist, criteria = derive(facts)
    return {
        "service": ctx.spec.service, "version": ctx.version, "run_id": ctx.run_id, "outcome": outcome,
        "previous_version": record.get("previous_version"), "first_release": first_release_reason(facts),
        "generated_at": utcnow().isoformat(),
        "checklist": checklist, "success_criteria": criteria, "phase_seconds": phase_seconds,
        "approvals": gate_records(ctx.store),
        "strategy": {"kind": ctx.spec.strategy.kind,
                     "steps": current_records(ctx.store, STEP_RECORD_PREFIX),
                     "post_promotion": _post_promotion(ctx)},
        "steps": [{"step_id": r.step_id, "agent": r.agent, "status": r.status,
                   "items": {v.kind: v.passed for v in r.verifications}, "blocking_issues": r.blocking_issues,
                   "deliverables": [d.model_dump() for d in r.deliverables], "metrics": r.metrics}
                  for r in reports.values()],
    }


def _line(name: str, row: dict[str, Any]) -> str:
    """``- [x] Backup created: what proved it``; waived and not-done lines are never ticked and say why."""
    if row["state"] == "waived":
        waivers = "; ".join(f"{w['reason']}, {w['approved_by']}" for w in row["waived"] or [])
        text = f"waived ({waivers}): {row['detail']}"
    elif row["state"] == "done":
        text = row["detail"]
    else:
        text = f"not done: {row['why']}"
    return f"- {MARKS[row['state']]} {name}: {text} _({row['derived_from']})_"


def _post_promotion(ctx: DutyContext) -> dict[str, Any] | None:
    rows = current_records(ctx.store, POST_PROMOTION_RECORD)
    return rows[-1] if rows else None


def progression_markdown(strategy: dict[str, Any] | None) -> list[str]:
    """The report's ``Progressive delivery`` section: every strategy step with what decided it."""
    if not strategy or not (strategy.get("steps") or strategy.get("post_promotion")):
        return []
    lines = [f"## Progressive delivery ({strategy['kind']})", ""]
    for step in strategy.get("steps") or []:
        text = f"- {step.get('step')} ({step.get('percent')} %): **{step.get('outcome')}**"
        if step.get("router_split"):
            split = step["router_split"]
            text += f"; router served {split.get('served')} of {split.get('requests')} requests"
        if step.get("flag"):
            flag = step["flag"]
            text += (f"; flag {flag.get('name')} {flag.get('before')} % -> {flag.get('after')} % "
                     f"({flag.get('provider')})")
        lines.append(text)
        analysis = step.get("analysis")
        if analysis:
            canary, baseline = analysis["canary"], analysis["baseline"]
            stat = analysis.get("statistic")
            p_value = analysis.get("p_value")
            lines.append(f"  - analysis ({analysis.get('test')}): canary {canary['samples']} samples, "
                         f"{canary['error_rate_pct']:g} % errors, p95 {canary['p95_ms']} ms; baseline "
                         f"{baseline['samples']} samples, {baseline['error_rate_pct']:g} % errors, p95 "
                         f"{baseline['p95_ms']} ms; U = {stat if stat is None else f'{stat:g}'}, "
                         f"p-value = {p_value if p_value is None else f'{p_value:.4g}'}")
            lines += [f"  - failed: {reason}" for reason in analysis.get("reasons") or []]
        if step.get("health"):
            lines.append(f"  - health gate: {step['health'].get('reason')}")
        if step.get("reason"):
            lines.append(f"  - {step['reason']}")
        if step.get("decision"):
            lines.append(f"  - people decided: {step['decision']}")
        if step.get("undone"):
            lines.append(f"  - undone: {step['undone']}")
    watch = strategy.get("post_promotion")
    if watch:
        lines.append(f"- post-promotion watch: **{watch.get('status')}**; {watch.get('reason')}")
    return lines + [""]


def render_markdown(report: dict[str, Any]) -> str:
    previous = report["previous_version"] or f"none ({report.get('first_release') or 'nothing was active'})"
    lines = [f"# Release report: {report['service']} {report['version']}", "",
             f"- Outcome: **{report['outcome']}**", f"- Run: `{report['run_id']}`",
             f"- Previous version: {previous}",
             f"- Generated: {report['generated_at']}", "", "## Deployment checklist", ""]
    lines += [_line(row["item"], row) for row in report["checklist"]]
    lines += ["", "## Success criteria", ""]
    lines += [_line(row["criterion"], row) for row in report["success_criteria"]]
    lines += ["", *approvals_markdown(report.get("approvals") or [])]
    lines += progression_markdown(report.get("strategy"))
    lines += ["## Steps", "", "| step | agent | status | read | verify | check | report |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for step in report["steps"]:
        items = step["items"]
        cells = " | ".join("pass" if items.get(k) else "FAIL" for k in ("read", "verify", "check", "report"))
        lines.append(f"| {step['step_id']} | {step['agent']} | {step['status']} | {cells} |")
    return "\n".join(lines) + "\n"


def write_release_report(ctx: DutyContext, report: dict[str, Any]) -> dict[str, StoredPath]:
    """Store the release report (JSON and Markdown) in the run's evidence store, each chained.

    An earlier attempt's report is moved under ``attempts/`` first. The locations returned are local
    paths for a local store (what the run record and the CLI show), else the stored objects.
    """
    store = ctx.store
    return {"json": store.save_record("release-report", report),
            "markdown": store.save_text("release-report.md", render_markdown(report))}
