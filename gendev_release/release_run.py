"""The release run's own steps: open the run, the release gate, close the run.

Plain functions over a :class:`~gendev_release.context.DutyContext`; the control operators call
them. Every decision lands in the typed :class:`~gendev_release.run_record.RunRecord` so nothing is
lost when a run fails half way, and the history only ever calls a version verified after the live
service answered with it. The failure branch lives in :mod:`gendev_release.recovery`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from gendev_release import notify
from gendev_release.catalogue import all_steps
from gendev_release.errors import GateFailed, GendevError, ReleaseFailed, TargetError
from gendev_release.facts import ChangeSet, handed_on
from gendev_release.lease import Lease, RunStateLookup, ServiceLease, lease_ttl
from gendev_release.probes import run_checks
from gendev_release.release_report import build_release_report, write_release_report
from gendev_release.run_record import (
    Attempt,
    HistoryEntry,
    ReleaseHistory,
    RunRecord,
    RunRecordStore,
    RunState,
    safe_name,
    utcnow,
)
from gendev_release.serving import check_serving, guidance

if TYPE_CHECKING:
    from gendev_release.context import DutyContext
    from gendev_release.report import AgentReport

FAILED_STATES = frozenset({"failed", "upstream_failed"})


class ReleaseRefused(GendevError):
    """The run may not start: what it found would make the release untrustworthy. Nothing was changed."""

    retryable = False


# ------------------------------------------------------------------------------------ plumbing
def records(ctx: DutyContext) -> RunRecordStore:
    return RunRecordStore(ctx.paths.home)


def history(ctx: DutyContext) -> ReleaseHistory:
    return ReleaseHistory(ctx.paths.home, ctx.paths.dag_id)


def service_lease(home: Path, service: str) -> ServiceLease:
    """The lease of ``service``: kept beside the target's state (``targets/<service>/lease.json``)."""
    return ServiceLease(Path(home) / "targets" / safe_name(service), service)


def longest_wait(ctx: DutyContext) -> float:
    """The longest time no task renews the lease: a deferred health wait, a strategy's bake or post-promotion watch."""
    strategy = ctx.spec.strategy
    return max(float(ctx.spec.health.timeout_seconds), float(getattr(strategy, "bake_seconds", 0.0)),
               float(strategy.post_promotion_seconds)) + 60.0


def load_record(ctx: DutyContext) -> RunRecord | None:
    return records(ctx).load(ctx.paths.dag_id, ctx.run_id)


def update_record(ctx: DutyContext, **changes: Any) -> RunRecord:
    def change(record: RunRecord) -> None:
        for name, value in changes.items():
            setattr(record, name, value)

    return records(ctx).update(ctx.paths.dag_id, ctx.run_id, change)


def hold_lease(ctx: DutyContext, run_state: RunStateLookup | None = None) -> Lease:
    """Take or renew the service's lease for this run; mark a dead holder's run ``interrupted``.

    :raises LeaseHeld: while another live release holds the service.
    """
    acquired = service_lease(ctx.paths.home, ctx.spec.service).acquire(
        dag_id=ctx.paths.dag_id, run_id=ctx.run_id, ttl_seconds=lease_ttl(longest_wait(ctx)), run_state=run_state)
    if acquired.taken_over is not None:
        mark_interrupted(ctx.paths.home, acquired.taken_over, acquired.stale_reason or "its lease went stale")
        ctx.log("took over the stale lease of %s: %s", acquired.taken_over.holder(), acquired.stale_reason)
    return acquired.lease


def mark_interrupted(home: Path, lease: Lease, reason: str) -> RunRecord | None:
    """The run that held ``lease`` died: say so in its record and its history, never leave it ``running``."""
    if not lease.dag_id or not lease.run_id:
        return None
    store = RunRecordStore(home)
    record = store.load(lease.dag_id, lease.run_id)
    if record is None or record.state not in (RunState.running,):
        return record
    why = f"interrupted: {reason}; its version was never verified"

    def change(r: RunRecord) -> None:
        r.state, r.outcome, r.reason, r.finished_at = RunState.interrupted, "interrupted", why, utcnow()
        if r.attempt is not None:
            r.attempt.state, r.attempt.outcome, r.attempt.finished_at = RunState.interrupted, "interrupted", utcnow()

    record = store.update(lease.dag_id, lease.run_id, change)
    ReleaseHistory(home, lease.dag_id).append(HistoryEntry(
        run_id=record.run_id, attempt=record.attempt.number if record.attempt else 1, version=record.version,
        outcome="interrupted", verified=False, failed_tasks=[]))
    return record


def refuse(home: Path, dag_id: str, run_id: str, service: str, reason: str, *, version: str | None = None,
           triggered_by: str | None = None) -> RunRecord:
    """Record a run that was refused before it changed anything (bad parameters, release held, unsafe target)."""
    def create() -> RunRecord:
        return RunRecord(dag_id=dag_id, run_id=run_id, service=service, version=version, triggered_by=triggered_by,
                         attempts=[Attempt(number=1, first_task="start_release")])

    def change(record: RunRecord) -> None:
        record.outcome, record.reason = "refused", reason
        record.version = record.version or version

    return RunRecordStore(home).update(dag_id, run_id, change, create=create)


def begin_task(ctx: DutyContext, task_id: str) -> RunRecord | None:
    """Every task calls this first: a task that runs after the run had finished opens a new attempt."""
    store = records(ctx)
    if store.load(ctx.paths.dag_id, ctx.run_id) is None:
        return None

    def change(record: RunRecord) -> None:
        if record.state == RunState.running and record.attempts:
            return
        record.attempts.append(Attempt(number=len(record.attempts) + 1, first_task=task_id))
        record.state, record.outcome, record.reason, record.finished_at = RunState.running, None, None, None
        record.failed_tasks, record.failure_decision, record.rolled_back = [], None, False
        record.restored_healthy = None
        record.version = ctx.version

    return store.update(ctx.paths.dag_id, ctx.run_id, change)


# ----------------------------------------------------------------------------------- open the run
def open_run(ctx: DutyContext, *, triggered_by: str | None = None) -> RunRecord:
    """Open (or reopen) the run record after the lease is held; restore an unverified version first.

    :raises ReleaseRefused: when an unverified version serves and the last verified one cannot be restored.
    """
    last_verified = history(ctx).last_verified_version()
    status = ctx.target.status()
    restored: dict[str, Any] | None = None
    active = status.active
    if active is not None and active.version != last_verified:
        if ctx.params.dry_run:
            ctx.log("dry run: %s %s serves but never passed its checks; a real release would restore %s first",
                    ctx.spec.service, active.version, last_verified or "nothing")
        else:
            restored = restore_last_verified(ctx, active.version, last_verified)
            status = ctx.target.status()
    existing = load_record(ctx)

    def create() -> RunRecord:
        return RunRecord(dag_id=ctx.paths.dag_id, run_id=ctx.run_id, service=ctx.spec.service, version=ctx.version)

    def change(record: RunRecord) -> None:
        first = existing is None or not existing.attempts
        if not record.attempts or record.state != RunState.running:
            record.attempts.append(Attempt(number=len(record.attempts) + 1, first_task="start_release"))
        record.version, record.strategy = ctx.version, ctx.spec.strategy.kind
        record.dry_run, record.environment = ctx.params.dry_run, ctx.spec.environment
        record.triggered_by = record.triggered_by or triggered_by
        record.state, record.outcome, record.reason = RunState.running, None, None
        record.failed_tasks, record.failure_decision, record.rolled_back = [], None, False
        if first or restored:
            record.previous_version = status.active.version if status.active else None
            record.last_verified_version = last_verified
        if restored:
            record.restored_before_release = restored
        record.active_version = status.active.version if status.active else None
        record.evidence_dir = ctx.paths.evidence_location

    return records(ctx).update(ctx.paths.dag_id, ctx.run_id, change, create=create)


def restore_last_verified(ctx: DutyContext, unverified: str, last_verified: str | None) -> dict[str, Any]:
    """An unverified version serves (a run died after its switch): go back to the last verified one, or refuse."""
    status = ctx.target.status()
    previous = status.previous
    where = f"{ctx.spec.service} {unverified} serves but never passed its checks"
    if last_verified is None:
        raise ReleaseRefused(f"{where}, and no release of {ctx.spec.service} was ever verified (history "
                             f"{history(ctx).path}), so there is nothing to restore. Take it out of service "
                             "(`gendev-release down SPEC`) and release again.")
    if previous is None or previous.version != last_verified or previous.pid is None:
        kept = f"{previous.version} (slot {previous.slot})" if previous else "nothing"
        raise ReleaseRefused(f"{where}; the last verified release {last_verified} is not running to go back to "
                             f"(previous slot: {kept}). Restore it by hand or take {unverified} out of service "
                             "(`gendev-release down SPEC`), then release again.")
    ctx.log("%s; rolling back to the last verified release %s before deploying", where, last_verified)
    ctx.target.rollback(ctx.run_id, to_version=last_verified)
    url = ctx.target.url()
    results = run_checks(url, list(ctx.spec.health.checks)) if url else []
    failures = [r.reason for r in results if not r.passed] or ([] if url else ["no router URL"])
    after = ctx.target.status()
    if after.active is None or after.active.version != last_verified:
        failures.insert(0, f"active version is {after.active.version if after.active else None}")
    evidence = {"unverified_version": unverified, "restored_version": last_verified, "url": url,
                "checks": [{"name": r.name, "passed": r.passed, "reason": r.reason} for r in results],
                "at": utcnow().isoformat()}
    ctx.store.save_record("restore-before-release", evidence)
    if failures:
        raise TargetError(f"restored {last_verified} but it is not healthy: {'; '.join(failures)}")
    evidence["retired"] = ctx.target.retire_previous(ctx.run_id)
    return evidence


# ------------------------------------------------------------------------------ the release gate
def agent_reports(ctx: DutyContext) -> tuple[dict[str, AgentReport], list[str]]:
    """This attempt's report of every agent step (as handed on through Airflow), and what is missing."""
    reports: dict[str, AgentReport] = {}
    missing: list[str] = []
    for _, step in all_steps():
        report = ctx.earlier(step.id)
        if report is None:
            missing.append(f"{step.id}: no report in this attempt")
        else:
            reports[step.id] = report
    return reports, missing


def finish_success(ctx: DutyContext) -> RunRecord:
    """Every phase passed: verify live that the version serves, re-gate every report, then record the release."""
    check = check_serving(ctx)
    ctx.store.save_record("serving-check", check.evidence().model_dump(mode="json"))
    if not check.ok:
        raise GateFailed("release gate: " + guidance(ctx, check, load_record(ctx)))
    reports, problems = agent_reports(ctx)
    for report in reports.values():
        problems.extend(report.gate_failures())
    if problems:
        raise GateFailed("release gate: " + "; ".join(problems))
    record = load_record(ctx) or open_run(ctx)
    release_report = build_release_report(ctx, reports, outcome="success", record=record.model_dump(mode="json"))
    paths = write_release_report(ctx, release_report)
    changes, _ = handed_on(ctx, ChangeSet)
    history(ctx).append(HistoryEntry(
        run_id=ctx.run_id, attempt=record.attempt.number if record.attempt else 1, version=ctx.version,
        outcome="success", verified=True, source_sha=changes.source_sha if changes else None,
        active_version=ctx.version,
        phase_seconds=release_report["phase_seconds"]))
    record = update_record(ctx, outcome="success", active_version=ctx.version, report=str(paths["markdown"]),
                           report_json=str(paths["json"]))
    delivered, failures = send_notification(
        ctx, event="release_succeeded", severity="info", subject=f"{ctx.spec.service} {ctx.version} released",
        body=f"All 8 phases passed and {ctx.version} serves through {check.url}. Report: {paths['markdown']}")
    return update_record(ctx, notified=[*record.notified, *delivered],
                         notification_failures=[*record.notification_failures, *failures])


def send_notification(ctx: DutyContext, **message: Any) -> tuple[list[str], list[str]]:
    """Deliver to every channel; returns (what was delivered, what failed). Never raises for a channel."""
    try:
        result = notify.send(ctx.spec, ctx.paths.home, run_id=ctx.run_id, **message)
    except Exception as exc:  # a notification problem is reported, never allowed to undo a verified release
        return [], [f"{type(exc).__name__}: {exc}"]
    return ([result.summary] if result.any_delivered else []), [str(f) for f in result.failures]


# ------------------------------------------------------------------------------- close the run
def close_run(ctx: DutyContext, task_states: dict[str, str | None]) -> RunRecord:
    """The watcher: close this attempt; the run ends ``failed`` whenever a step failed, even after a rollback.

    Success is recorded only while the target serves the run's version (asked live once more).
    """
    failed = sorted(task for task, state in task_states.items() if state in FAILED_STATES)
    record = load_record(ctx)
    if record is None:
        raise ReleaseFailed(f"no run record for {ctx.run_id}: start_release never ran")
    if not failed and not ctx.params.dry_run:
        check = check_serving(ctx)
        if not check.ok or record.outcome != "success":
            failed = ["release_gate"]
            record = update_record(ctx, outcome=record.outcome if record.outcome != "success" else "failed",
                                   reason=guidance(ctx, check, record))
    attempt = record.attempt.number if record.attempt else 1
    finished = utcnow()
    active = _active_version(ctx)
    if failed:
        first = [t for t in record.failed_tasks if t in failed]
        root = first + [t for t in failed if task_states.get(t) == "failed" and t not in first] or failed
        outcome = record.outcome or "failed"
        if outcome == "success":
            outcome = "failed"
        record = _finish(ctx, state=RunState.failed, outcome=outcome, failed_tasks=root, active=active,
                         finished=finished)
        record = _write_report(ctx, record, outcome)
        if outcome != "refused" or record.version:
            history(ctx).append(HistoryEntry(run_id=ctx.run_id, attempt=attempt, version=record.version,
                                             outcome=outcome, verified=False, failed_tasks=root,
                                             active_version=active, finished_at=finished))
        _release_lease(ctx)
        raise ReleaseFailed(f"release {record.version or '(no version)'} failed at {', '.join(root)}; "
                            f"outcome: {outcome}; active version: {active}. {record.reason or ''}".strip())
    outcome = "dry_run" if ctx.params.dry_run else "success"
    if ctx.params.dry_run:
        record = _write_report(ctx, record, outcome)
    record = _finish(ctx, state=RunState.success, outcome=outcome, failed_tasks=[], active=active, finished=finished)
    _release_lease(ctx)
    return record


def _write_report(ctx: DutyContext, record: RunRecord, outcome: str) -> RunRecord:
    """The release report of an attempt that did not pass the gate, from the reports this attempt handed on."""
    reports, _ = agent_reports(ctx)
    paths = write_release_report(ctx, build_release_report(ctx, reports, outcome=outcome,
                                                           record=record.model_dump(mode="json")))
    return update_record(ctx, report=str(paths["markdown"]), report_json=str(paths["json"]))


def _active_version(ctx: DutyContext) -> str | None:
    try:
        return ctx.target.current_version()
    except TargetError:
        return None


def _finish(ctx: DutyContext, *, state: RunState, outcome: Any, failed_tasks: list[str], active: str | None,
            finished: datetime) -> RunRecord:
    def change(record: RunRecord) -> None:
        record.state, record.outcome, record.failed_tasks = state, outcome, failed_tasks
        record.active_version, record.finished_at = active, finished
        if record.attempt is not None:
            record.attempt.state, record.attempt.outcome, record.attempt.finished_at = state, outcome, finished
            record.attempt.failed_tasks, record.attempt.active_version = failed_tasks, active
            record.attempt.decision = record.failure_decision

    return records(ctx).update(ctx.paths.dag_id, ctx.run_id, change)


def _release_lease(ctx: DutyContext) -> None:
    service_lease(ctx.paths.home, ctx.spec.service).release(run_id=ctx.run_id)


def close_refused(home: Path, dag_id: str, run_id: str, task_states: dict[str, str | None]) -> NoReturn:
    """The watcher of a run whose parameters were refused (no version to build a context from)."""
    failed = sorted(task for task, state in task_states.items() if state in FAILED_STATES)
    finished = utcnow()

    def change(record: RunRecord) -> None:
        record.state, record.outcome, record.finished_at = RunState.failed, record.outcome or "refused", finished
        record.failed_tasks = [t for t in failed if task_states.get(t) == "failed"] or failed
        if record.attempt is not None:
            record.attempt.state, record.attempt.outcome, record.attempt.finished_at = (
                RunState.failed, record.outcome, finished)
            record.attempt.failed_tasks = record.failed_tasks

    record = RunRecordStore(home).update(dag_id, run_id, change)
    raise ReleaseFailed(f"release refused: {record.reason}")
