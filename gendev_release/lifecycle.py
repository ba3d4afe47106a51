"""The release's own control steps: open the run, finish it, and the failure branch.

Plain functions over a :class:`DutyContext`; the control operators in
``gendev_release.operators.release_control`` call them. Every decision is recorded in the run
record (``runs/<dag>/<run>/record.json``) so nothing is lost when a run fails half way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from gendev_release import notify
from gendev_release.catalogue import all_steps
from gendev_release.context import DutyContext, append_jsonl, write_json_atomic
from gendev_release.errors import GateFailed, ReleaseFailed, TargetError
from gendev_release.probes import run_checks
from gendev_release.release_report import build_release_report, write_release_report
from gendev_release.report import utcnow

FAILED_STATES = frozenset({"failed", "upstream_failed"})


def record_path(ctx: DutyContext) -> Path:
    return ctx.paths.run_dir / "record.json"


def read_record(ctx: DutyContext) -> dict[str, Any]:
    path = record_path(ctx)
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    return {}


def update_record(ctx: DutyContext, **changes: Any) -> dict[str, Any]:
    record = read_record(ctx)
    record.update(changes)
    record["updated_at"] = utcnow().isoformat()
    write_json_atomic(record_path(ctx), record)
    return record


def start_run(ctx: DutyContext) -> dict[str, Any]:
    """Open (or, on a re-run, reopen) the run record; remembers what was active before the release."""
    existing = read_record(ctx)
    status = ctx.target.status()
    previous_version = existing.get("previous_version", status.active.version if status.active else None)
    return update_record(
        ctx, dag_id=ctx.paths.dag_id, run_id=ctx.run_id, service=ctx.spec.service, version=ctx.version,
        strategy=ctx.params.strategy.value, dry_run=ctx.params.dry_run, environment=ctx.spec.environment,
        started_at=existing.get("started_at", utcnow().isoformat()), previous_version=previous_version,
        state="running", evidence_dir=str(ctx.paths.evidence_dir),
    )


def finish_success(ctx: DutyContext) -> dict[str, Any]:
    """Every phase passed: re-gate every stored report, write the release report, record the release."""
    reports = {r.step_id: r for r in ctx.store.all_reports()}
    problems = []
    for _, step in all_steps():
        report = reports.get(step.id)
        if report is None:
            problems.append(f"{step.id}: no report in {ctx.paths.evidence_dir}")
        else:
            problems.extend(report.gate_failures())
    if problems:
        raise GateFailed("release gate: " + "; ".join(problems))
    record = read_record(ctx)
    release_report = build_release_report(ctx, reports, outcome="success", record=record)
    paths = write_release_report(ctx, release_report)
    risk = reports["risk_assessment"]
    append_jsonl(ctx.paths.history_file, {
        "outcome": "success", "run_id": ctx.run_id, "version": ctx.version,
        "source_sha": risk.facts.get("source_sha"), "finished_at": utcnow().isoformat(),
        "phase_seconds": release_report["phase_seconds"],
    })
    notify.send(ctx.spec, ctx.paths.home, event="release_succeeded", severity="info",
                subject=f"{ctx.spec.service} {ctx.version} released",
                body=f"All 8 phases passed. Report: {paths['markdown']}", run_id=ctx.run_id)
    return update_record(ctx, report=str(paths["markdown"]), report_json=str(paths["json"]))


def traffic_moved(ctx: DutyContext) -> bool:
    """Did this run move traffic? Read from the target's durable state, not from memory."""
    status = ctx.target.status()
    return status.switched_by_run == ctx.run_id


def decide(ctx: DutyContext, failed_tasks: list[str]) -> Literal["rollback", "abort"]:
    status = ctx.target.status()
    moved = status.switched_by_run == ctx.run_id
    decision: Literal["rollback", "abort"] = "rollback" if moved else "abort"
    ctx.store.save_record("failure-decision", {
        "decision": decision, "failed_tasks": failed_tasks, "traffic_moved": moved,
        "target": {"active": status.active.as_dict() if status.active else None,
                   "previous": status.previous.as_dict() if status.previous else None,
                   "switched_by_run": status.switched_by_run},
        "decided_at": utcnow().isoformat(),
    })
    update_record(ctx, failed_tasks=failed_tasks, failure_decision=decision)
    return decision


def abort(ctx: DutyContext) -> dict[str, Any]:
    """Failure before traffic moved: stop the staged slot; the active version is untouched."""
    ctx.target.discard_staged(ctx.run_id)
    return update_record(ctx, outcome="aborted", rolled_back=False, active_version=ctx.target.current_version())


def rollback(ctx: DutyContext) -> dict[str, Any]:
    """Switch back to the version active before the release; on a first release, withdraw the new one."""
    if read_record(ctx).get("previous_version") is None:
        status = ctx.target.withdraw(ctx.run_id)
        return update_record(ctx, outcome="withdrawn", rolled_back=True,
                             active_version=status.active.version if status.active else None)
    status = ctx.target.rollback(ctx.run_id)
    return update_record(ctx, outcome="rolled_back", rolled_back=True,
                         active_version=status.active.version if status.active else None)


def verify_restored(ctx: DutyContext) -> dict[str, Any]:
    """The restored version is the one active before the release and answers every health check."""
    record = read_record(ctx)
    status = ctx.target.status()
    url = ctx.target.url()
    expected = record.get("previous_version")
    active = status.active.version if status.active else None
    results = run_checks(url, list(ctx.spec.health.checks)) if url else []
    evidence = {"expected_version": expected, "active_version": active, "url": url,
                "checks": [{"name": r.name, "passed": r.passed, "reason": r.reason,
                            "status": r.result.status} for r in results]}
    ctx.store.save_record("rollback-verification", evidence)
    if expected is None:
        # First release withdrawn: nothing may serve the failed version any more.
        failures = [f"version {active!r} is still active"] if active else []
        failures += [f"{r.result.url} still answers {r.result.status}" for r in results
                     if r.result.status is not None and r.result.status < 500]
    else:
        failures = [r.reason for r in results if not r.passed]
        if active != expected:
            failures.insert(0, f"active version is {active!r}, expected the previous {expected!r}")
        if not results:
            failures.append("no router URL to check")
    update_record(ctx, restored_healthy=not failures, active_version=active)
    if failures:
        raise TargetError("restored version is not healthy: " + "; ".join(failures))
    # The failed version now sits in the previous slot: stop it, nothing should route back to it.
    evidence["retired_failed_slot"] = ctx.target.retire_previous(ctx.run_id)
    ctx.store.save_record("rollback-verification", evidence)
    return evidence


def notify_failure(ctx: DutyContext) -> dict[str, Any] | None:
    """Tell every audience what failed and what was done; None on a run without failure."""
    record = read_record(ctx)
    if not record.get("failure_decision"):
        return None
    outcome = record.get("outcome", "unknown")
    failed = ", ".join(record.get("failed_tasks", [])) or "unknown step"
    if outcome == "aborted":
        severity, subject = "warning", f"{ctx.spec.service} {ctx.version} aborted before traffic moved"
    elif outcome == "rolled_back" and record.get("restored_healthy"):
        severity, subject = "critical", f"{ctx.spec.service} {ctx.version} rolled back to {record.get('active_version')}"
    elif outcome == "withdrawn" and record.get("restored_healthy"):
        severity, subject = "critical", f"{ctx.spec.service} {ctx.version} (first release) withdrawn after failing"
    else:
        severity, subject = "critical", f"{ctx.spec.service} {ctx.version}: rollback did not restore a healthy service"
    body = (f"Failed: {failed}. Outcome: {outcome}. Active version: {record.get('active_version')}. "
            f"Evidence: {ctx.paths.evidence_dir}")
    evidence = notify.send(ctx.spec, ctx.paths.home, event=f"release_{outcome}", severity=severity,
                           subject=subject, body=body, run_id=ctx.run_id)
    update_record(ctx, notified=evidence.summary)
    return {"severity": severity, "subject": subject}


def close_run(ctx: DutyContext, task_states: dict[str, str | None]) -> dict[str, Any]:
    """The watcher: close the run record and fail the run when any step failed (even after a rollback)."""
    failed = sorted(task for task, state in task_states.items() if state in FAILED_STATES)
    record = read_record(ctx)
    if failed:
        # The step that failed first (recorded by the failure decision) leads; failure-branch problems follow.
        first = [t for t in record.get("failed_tasks", []) if t in failed]
        root = first + [t for t in failed if task_states[t] == "failed" and t not in first] or failed
        state = "failed"
        record = update_record(ctx, state=state, finished_at=utcnow().isoformat(), failed_tasks=root,
                               outcome=record.get("outcome", "failed"),
                               active_version=ctx.target.current_version())
        reports = {r.step_id: r for r in ctx.store.all_reports()}
        paths = write_release_report(ctx, build_release_report(ctx, reports, outcome=record["outcome"],
                                                               record=record))
        record = update_record(ctx, report=str(paths["markdown"]), report_json=str(paths["json"]))
        if not record.get("history_written"):
            append_jsonl(ctx.paths.history_file, {"outcome": record["outcome"], "run_id": ctx.run_id,
                                                  "version": ctx.version, "failed_tasks": root,
                                                  "finished_at": record["finished_at"]})
            update_record(ctx, history_written=True)
        raise ReleaseFailed(f"release {ctx.version} failed at {', '.join(root)}; outcome: {record['outcome']}; "
                            f"active version: {record.get('active_version')}")
    if record.get("failed_tasks"):  # a cleared, re-run attempt succeeded: keep the earlier failure for audit
        record = update_record(ctx, earlier_failures=[*record.get("earlier_failures", []),
                                                      {"failed_tasks": record["failed_tasks"],
                                                       "outcome": record.get("outcome")}],
                               failed_tasks=[], failure_decision=None)
    outcome = "dry_run" if ctx.params.dry_run else "success"
    if ctx.params.dry_run:
        reports = {r.step_id: r for r in ctx.store.all_reports()}
        paths = write_release_report(ctx, build_release_report(ctx, reports, outcome=outcome, record=record))
        update_record(ctx, report=str(paths["markdown"]), report_json=str(paths["json"]))
    return update_record(ctx, state="success", outcome=outcome, rolled_back=False,
                         finished_at=utcnow().isoformat(), active_version=ctx.target.current_version())
