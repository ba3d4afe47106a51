"""The failure branch: decide, abort or roll back, verify the restored version, notify.

Each function judges *this attempt* from durable facts (the target's state, the run record, the
history), never from what an earlier attempt left behind, and logs what it found and did so the
task log tells the story. The rollback target is always the last version that passed its checks
(:meth:`~gendev_release.run_record.ReleaseHistory.last_verified_version`), never just "the previous slot".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gendev_release.errors import TargetError
from gendev_release.probes import run_checks
from gendev_release.release_run import load_record, send_notification, update_record
from gendev_release.run_record import Decision, RunRecord, utcnow
from gendev_release.serving import check_serving, version_in

if TYPE_CHECKING:
    from gendev_release.context import DutyContext


def decide(ctx: DutyContext, failed_tasks: list[str]) -> Decision:
    """Roll back when this run's version takes traffic or took some (a canary step); abort otherwise."""
    record = load_record(ctx)
    status = ctx.target.status()
    active = status.active
    ours = ctx.target.took_traffic(ctx.run_id)  # this run's revision serves, or served (a canary step)
    decision: Decision = "rollback" if ours and not (record and record.outcome == "refused") else "abort"
    ctx.store.save_record("failure-decision", {
        "decision": decision, "failed_tasks": failed_tasks, "this_run_serving": ours,
        "target": {"active": active.as_dict() if active else None,
                   "previous": status.previous.as_dict() if status.previous else None,
                   "staged": status.staged.as_dict() if status.staged else None},
        "decided_at": utcnow().isoformat(),
    })
    ctx.log("failed: %s; active: %s (deployed by %s); staged: %s -> %s", ", ".join(failed_tasks) or "?",
            f"{active.version} on {active.slot}" if active else "nothing", active.run_id if active else "-",
            f"{status.staged.version} on {status.staged.slot}" if status.staged else "nothing", decision)
    update_record(ctx, failed_tasks=failed_tasks, failure_decision=decision)
    return decision


def abort(ctx: DutyContext) -> RunRecord:
    """Nothing of this run takes traffic: stop the slot it staged (if any); the active version is untouched."""
    record = load_record(ctx)
    if record is not None and record.outcome == "refused":
        ctx.log("run was refused before it changed anything: %s", record.reason)
        return record
    discarded = ctx.target.discard_staged(ctx.run_id)
    active = ctx.target.current_version()
    ctx.log("staged slot of this run: %s; still serving: %s", discarded or "none to stop", active or "nothing")
    return update_record(ctx, outcome="aborted", rolled_back=False, active_version=active)


def rollback(ctx: DutyContext) -> RunRecord:
    """Switch back to the last verified release; a release with none before it is withdrawn."""
    record = load_record(ctx)
    target_version = record.last_verified_version if record else None
    before = ctx.target.current_version()
    try:
        if target_version is None:
            status = ctx.target.withdraw(ctx.run_id)
            outcome = "withdrawn"
        else:
            status = ctx.target.rollback(ctx.run_id, to_version=target_version)
            outcome = "rolled_back"
    except TargetError as exc:
        update_record(ctx, outcome="failed", reason=f"rollback failed: {exc}", rolled_back=False)
        ctx.log("rollback from %s to %s failed: %s", before, target_version or "(withdraw)", exc)
        raise
    active = status.active.version if status.active else None
    ctx.log("%s: %s -> %s", outcome, before, active or "nothing serving")
    return update_record(ctx, outcome=outcome, rolled_back=True, active_version=active)


def verify_restored(ctx: DutyContext) -> dict[str, Any]:
    """The restored version is the last verified one, answers every health check and names itself."""
    record = load_record(ctx)
    expected = record.last_verified_version if record else None
    status = ctx.target.status()
    url = ctx.target.url()
    active = status.active.version if status.active else None
    results = run_checks(url, list(ctx.spec.health.checks)) if url else []
    served: list[str | None] = []
    if url and expected is not None:
        probe = check_serving(ctx)
        served = [a.version for a in probe.answers]
    evidence: dict[str, Any] = {
        "expected_version": expected, "active_version": active, "url": url, "served_versions": served,
        "checks": [{"name": r.name, "passed": r.passed, "reason": r.reason, "status": r.result.status}
                   for r in results]}
    if expected is None:
        # First release withdrawn: nothing may serve the failed version any more.
        failures = [f"version {active!r} is still active"] if active else []
        failures += [f"{r.result.url} still answers {r.result.status}" for r in results
                     if r.result.status is not None and r.result.status < 500
                     and version_in(r.result.body, ctx.spec.health.version_check.json_field) == ctx.version]
    else:
        failures = [r.reason for r in results if not r.passed]
        if active != expected:
            failures.insert(0, f"active version is {active!r}, expected the last verified {expected!r}")
        if not url:
            failures.append("no router URL to check")
        elif any(v != expected for v in served):
            failures.append(f"{url} answered versions {sorted({str(v) for v in served})}, expected {expected}")
    for result in results:
        ctx.log("restored check %s: %s", result.name, result.reason)
    ctx.store.save_record("rollback-verification", evidence)
    update_record(ctx, restored_healthy=not failures, active_version=active)
    if failures:
        raise TargetError("restored version is not healthy: " + "; ".join(failures))
    # The failed version now sits in the previous slot: stop it, nothing should route back to it.
    evidence["retired_failed_slot"] = ctx.target.retire_previous(ctx.run_id)
    ctx.log("%s verified through %s; failed slot: %s", expected or "withdrawal", url,
            evidence["retired_failed_slot"] or "none left")
    ctx.store.save_record("rollback-verification", evidence, keep_earlier=False)
    return evidence


def failure_message(ctx: DutyContext, record: RunRecord) -> dict[str, str]:
    """Severity, subject and body of the failure notification, from what this attempt did."""
    service, version = ctx.spec.service, ctx.version
    failed = ", ".join(record.failed_tasks) or "unknown step"
    outcome = record.outcome or "failed"
    earlier = next((a for a in reversed(record.attempts[:-1]) if a.outcome in ("rolled_back", "withdrawn")), None)
    if outcome == "aborted" and earlier is not None:
        severity, subject = "warning", (f"{service} {version}: re-run failed at {failed}; still "
                                        f"{(earlier.outcome or '').replace('_', ' ')} "
                                        f"({record.active_version or 'nothing'} "
                                        "serving)")
    elif outcome == "aborted":
        severity, subject = "warning", f"{service} {version} aborted before traffic moved"
    elif outcome == "rolled_back" and record.restored_healthy:
        severity, subject = "critical", f"{service} {version} rolled back to {record.active_version}"
    elif outcome == "withdrawn" and record.restored_healthy:
        severity, subject = "critical", f"{service} {version} (first release) withdrawn after failing"
    else:
        severity, subject = "critical", f"{service} {version}: rollback did not restore a healthy service"
    body = (f"Failed: {failed}. Outcome: {outcome}. Active version: {record.active_version or 'nothing'}. "
            f"Evidence: {ctx.paths.evidence_location}")
    return {"severity": severity, "subject": subject, "body": body, "event": f"release_{outcome}"}


def notify_failure(ctx: DutyContext) -> dict[str, Any] | None:
    """Tell every audience what failed and what was done; None when there is nothing to tell.

    :raises TargetError: naming the channels that failed, after every other channel got the message.
    """
    record = load_record(ctx)
    if record is None or not record.failure_decision or record.outcome == "refused":
        return None
    message = failure_message(ctx, record)
    delivered, failures = send_notification(ctx, **message)
    update_record(ctx, notified=[*record.notified, *delivered],
                  notification_failures=[*record.notification_failures, *failures])
    ctx.log("notified: %s; failed channels: %s", "; ".join(delivered) or "nobody", "; ".join(failures) or "none")
    if failures:
        raise TargetError(f"notification '{message['subject']}' failed on {len(failures)} channel(s): "
                          + "; ".join(failures) + (f"; delivered: {'; '.join(delivered)}" if delivered else ""))
    return {"severity": message["severity"], "subject": message["subject"]}
