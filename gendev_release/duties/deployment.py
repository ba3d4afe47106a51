"""Phase 5, first step: execute the blue-green strategy (monitoring and alerts: :mod:`.monitoring`).

``execute_strategy`` is the only step of a release that moves traffic. It gates the staged slot
on consecutive health successes, switches while sending requests to every critical endpoint
through the router and counting, per endpoint, those that fail (zero-downtime evidence:
``facts["failed_switch_requests_by_path"]``, :mod:`gendev_release.duties.switch_watch`), then
asks the router as clients do: every health check and critical endpoint as the spec expects, and
every answer of the version endpoint naming this run's version (:func:`gendev_release.serving.check_serving`).
Last it rehearses the rollback without moving traffic (:func:`rehearse_rollback`): the previous
slot must answer its health checks on its own URL and the target must confirm a rollback is only a
traffic move (``facts["rollback_rehearsal"]``). A gate that fails leaves traffic where it was; a
check that fails after the switch fails the step with ``facts["traffic_moved"] = True`` so the
rollback path takes over.

Items: ``read`` holds the strategy log against the target's own report (provisioning's staged slot
is the target's, and the switch the log records is the one the target shows: active slot, the run
that moved it, its history); ``verify`` is the pre-switch gate on the live staged slot; ``check``
is what clients got during and after the switch. The phase 5 deliverables are written from the
same observations (:mod:`.deployment_records`).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from gendev_release.context import DutyContext
from gendev_release.duties.base import duty
from gendev_release.duties.common import describe_slot, router_url, target_evidence
from gendev_release.duties.deployment_records import (
    ExecutionRecord,
    GateState,
    StrategyLog,
    check_rows,
    log_disagreements,
    status_snapshot,
)
from gendev_release.duties.environment import pending_changes
from gendev_release.duties.health_gate import wait_for_streak
from gendev_release.duties.switch_watch import (
    PathTally,
    SwitchObserver,
    count_failed,
    tally_by_path,
    tally_by_phase,
)
from gendev_release.errors import TargetError
from gendev_release.facts import StagedRevision, handed_on
from gendev_release.probes import run_checks
from gendev_release.report import Evidence, ReportBuilder, utcnow
from gendev_release.serving import check_serving
from gendev_release.targets.base import SlotInfo, TargetStatus
from gendev_release.verification_matrix import ItemProof

STRATEGY_STEPS: tuple[str, ...] = ("pre_switch_gate", "switch", "post_switch_checks", "rollback_rehearsal")
PROVISIONING_TASK = "p4_environment.provisioning"
_TESTS = "tests/duties/test_deployment.py"

#: How the read, verify and check items of ``execute_strategy`` are decided (the verification matrix).
PROOFS: dict[str, ItemProof] = {
    "execute_strategy.read": ItemProof(
        evidence="the target's status report before and after the attempt (staged, active and previous slots, the "
                 "run that moved traffic, its history), the provisioning report's staged slot, the strategy log "
                 "read back from disk",
        oracle="the target's own state (target.status(): the local target's state.json and history) and the "
               "provisioning step's handed-on StagedRevision: the staged slot must be provisioning's, and the switch "
               "the log records must be the one the target shows (active slot, switched_by_run, a history entry of "
               "this run); a switch not made must have left the active slot as it was",
        fails_when="the slot provisioning staged is no longer staged on the target (discarded, rolled back or "
                   "replaced since), provisioning staged another version, or the target's report contradicts the "
                   "log (it shows another active slot or another run's switch)",
        test=f"{_TESTS}::test_staged_slot_gone_from_target_fails_read"),
    "execute_strategy.verify": ItemProof(
        evidence="HTTP answers of the staged slot's own URL to the spec's pre-switch health checks, every attempt "
                 "of the gate with its time and failures",
        oracle="the live staged slot judged against the spec's health checks (status, body) and "
               "health.consecutive_successes / interval_seconds / timeout_seconds",
        fails_when="the staged version fails a pre-switch health check (a -broken version's /healthz answers 503) "
                   "or passes only intermittently; traffic is then never moved",
        test=f"{_TESTS}::test_failed_pre_switch_gate_never_moves_traffic"),
    "execute_strategy.check": ItemProof(
        evidence="every request sent through the router to every critical endpoint before, during and after the "
                 "switch (status, served version); the health checks, critical endpoints and version endpoint "
                 "asked through the router after it; the target's status",
        oracle="the live service through the router clients use, judged against the spec's critical_endpoints, "
               "health checks and quality_gates.health_pass_pct (0 failed requests on every critical endpoint), and "
               "the target's state (this run's slot active) with gendev_release.serving.check_serving",
        fails_when="the new version answers some API requests with 500 during the switch while /healthz passes "
                   "(a -errors version), a health check fails after the switch, or the router does not serve the "
                   "new version",
        test=f"{_TESTS}::test_api_errors_behind_a_passing_healthz_fail_zero_downtime"),
}


# ============================================================================ execute strategy
def _slot_matches(slot: SlotInfo | None, name: str, version: str) -> bool:
    return slot is not None and slot.slot == name and slot.version == version


def staged_slot_from(ctx: DutyContext) -> tuple[SlotInfo | None, str]:
    """The slot provisioning staged for this run's version, or None and why not."""
    staged, problem = handed_on(ctx, StagedRevision)
    if staged is None:
        return None, f"nothing was staged: {problem}"
    if staged.version != ctx.version:
        return None, (f"provisioning staged version {staged.version!r} on slot {staged.slot}, "
                      f"but this run releases {ctx.version}")
    return SlotInfo(slot=staged.slot, version=staged.version, url=staged.url, pid=staged.pid,
                    started_at=staged.started_at, run_id=staged.run_id), "ok"


def _stepped_revision(ctx: DutyContext, staged: SlotInfo) -> SlotInfo | None:
    """Provisioning's revision as the target reports it, when this run's strategy steps gave it part of the traffic."""
    for revision in ctx.target.revisions():
        if revision.id == staged.slot and revision.version == staged.version and revision.running \
                and revision.run_id == ctx.run_id and 0 < revision.weight < 100:
            return SlotInfo(slot=revision.id, version=revision.version, url=revision.url, pid=revision.pid,
                            started_at=revision.started_at, run_id=revision.run_id)
    return None


def _deploy_dark(ctx: DutyContext, report: ReportBuilder, log: StrategyLog) -> str | None:
    """Feature flags: the flag is off before the new revision takes traffic; a problem, or None."""
    strategy = ctx.spec.strategy
    if strategy.kind != "feature_flags":
        return None
    from gendev_release.strategies.flags import flag_provider

    try:
        provider = flag_provider(ctx.spec, ctx.paths.home)
        before = provider.get(strategy.flag)
        kept = provider.set(strategy.flag, 0)
    except TargetError as exc:
        log.record("deploy_dark", "failed", str(exc))
        return f"could not turn flag {strategy.flag} off before deploying dark: {exc}"
    report.evidence("check", Evidence(kind="computed", source=provider.where,
                                      summary=f"flag {strategy.flag}: {before} % -> {kept} % before the switch "
                                              "(deploy dark)", data={"flag": strategy.flag, "before": before,
                                                                     "after": kept}))
    log.record("deploy_dark", "passed" if kept == 0 else "failed", f"flag {strategy.flag} {before} % -> {kept} %")
    return None if kept == 0 else f"flag {strategy.flag} is still at {kept} % after being turned off"


@duty("execute_strategy")
def execute_strategy(ctx: DutyContext, report: ReportBuilder) -> None:
    """Blue-green: gate the staged slot, switch while observing the router, judge what clients get after."""
    log = StrategyLog(ctx.paths.workdir / "deploy" / "strategy-log.jsonl", ctx.run_id)
    record = ExecutionRecord(ctx.spec.service, ctx.version, ctx.run_id)
    status = ctx.target.status()
    record.before = status_snapshot(status, ctx.run_id)
    report.evidence("read", target_evidence(ctx, status))
    staged, problem = staged_slot_from(ctx)
    rerun = leads = False
    if staged is not None:
        report.evidence("read", Evidence(kind="computed", source="provisioning report facts.staged",
                                         summary=f"staged {describe_slot(staged)}", data=staged.as_dict()))
        # This run's revision leads: a re-run after the switch (all traffic), or a rolling batch past half.
        leads = _slot_matches(status.active, staged.slot, staged.version) and status.active is not None \
            and status.active.run_id == ctx.run_id
        rerun = leads and not 0 < status.weights.get(staged.slot, 100) < 100  # a target without weights: all
        if rerun:
            staged = status.active or staged
        elif _slot_matches(status.staged, staged.slot, staged.version):
            staged = status.staged or staged  # the target's own record is authoritative for the URL
        elif 0 < status.weights.get(staged.slot, 0) < 100 and (stepped := _stepped_revision(ctx, staged)):
            staged = stepped  # the strategy's steps (canary, rolling batch) gave it part of the traffic
            report.findings.append(f"{staged.slot} {staged.version} takes {status.weights.get(staged.slot, 0)} % "
                                   f"after the {ctx.spec.strategy.kind} steps of this run; promotion moves the rest")
        else:
            problem = (f"target shows staged {describe_slot(status.staged)} and active "
                       f"{describe_slot(status.active)}, not provisioning's {staged.slot} {staged.version} "
                       f"(it was rolled back, discarded or replaced); clear from {PROVISIONING_TASK} (with "
                       f"downstream) to stage {ctx.version} again")
            staged = None
    router = router_url(ctx)
    if staged is not None and router is None:
        problem, staged = "the target has no router URL: clients could not reach any slot", None
    # what served before this run's switch: the rollback target (a re-run finds it kept as previous)
    before = status.previous if leads else status.active
    record.rerun = rerun
    report.facts.update({"traffic_moved": rerun, "rerun": rerun, "router_url": router,
                         "strategy_log": str(log.path), "active_before": before.as_dict() if before else None})
    if staged is None or router is None:
        for step in STRATEGY_STEPS:
            log.record(step, "skipped", f"not run: {problem}", switched=False)
        record.not_run = problem
        record.gate("staged_slot", "provisioning's staged slot is the target's staged slot", "failed",
                    detail=str(problem))
        report.fail("verify", f"pre-switch gate not run: {problem}")
        after = ctx.target.status()
        report.evidence("check", target_evidence(ctx, after))
        report.fail("check", f"switch not attempted, traffic not moved: {problem}")
        _finish(ctx, report, log, record, before=status, after=after, staged=None, rerun=False, problem=problem)
        return
    report.facts["staged"] = staged.as_dict()
    record.staged = staged.as_dict()

    gate_ok = _pre_switch_gate(ctx, report, log, record, staged)
    if not gate_ok and not rerun:
        log.record("switch", "skipped", "pre-switch gate failed: traffic was not moved",
                   active=describe_slot(status.active), switched=False)
        log.record("post_switch_checks", "skipped", "no switch happened")
        log.record("rollback_rehearsal", "skipped", "no switch happened: traffic stays where it was")
        after = ctx.target.status()
        report.evidence("check", target_evidence(ctx, after,
                                                 f"traffic not moved: active {describe_slot(after.active)}"))
        report.fail("check", f"switch not attempted: the pre-switch gate failed on {staged.slot} {staged.version}; "
                             f"traffic stays on {describe_slot(after.active)}")
        report.block(f"pre-switch gate failed on {staged.slot} {staged.version}: traffic was not moved")
        report.facts["traffic_moved"] = _slot_matches(after.active, staged.slot, staged.version)
        record.switch = {"attempted": False, "traffic_moved": report.facts["traffic_moved"],
                         "reason": "the pre-switch gate failed"}
        _finish(ctx, report, log, record, before=status, after=after, staged=staged, rerun=False,
                detail=f"staged {describe_slot(staged)}")
        return

    problems = _switch(ctx, report, log, record, staged, router, rerun)
    problems += _post_switch_checks(ctx, report, log, record, router)
    problems += _router_serves_new_version(ctx, report, record, router)
    rehearsal = _rehearse_rollback(ctx, report, log, record, before)
    after = ctx.target.status()
    report.evidence("check", target_evidence(ctx, after))
    moved = _slot_matches(after.active, staged.slot, staged.version)
    record.gate("target_active", f"the target reports {staged.slot} {staged.version} active", _state(moved),
                measured=after.active.as_dict() if after.active else None)
    if not moved:
        problems.insert(0, f"target shows active {describe_slot(after.active)}, not {staged.slot} {staged.version}")
    report.facts.update({
        "traffic_moved": moved,
        "active": after.active.as_dict() if after.active else None,
        "previous": after.previous.as_dict() if after.previous else None,
    })
    if record.switch is not None:
        record.switch["traffic_moved"] = moved
    failed_requests = report.metrics.get("failed_switch_requests")
    report.verdict("check", not problems, "; ".join(problems) if problems else
                   f"traffic on {staged.slot} {staged.version}; "
                   + (f"{failed_requests:g} failed requests during the switch; " if failed_requests is not None else "")
                   + f"all {len(ctx.spec.health.checks)} health checks and {len(ctx.spec.critical_endpoints)} "
                     f"critical endpoints pass through {router}, every answer names {ctx.version}; {rehearsal}")
    _finish(ctx, report, log, record, before=status, after=after, staged=staged, rerun=rerun,
            detail=f"staged {describe_slot(staged)}")


def _state(passed: bool) -> GateState:
    return "passed" if passed else "failed"


def _pre_switch_gate(ctx: DutyContext, report: ReportBuilder, log: StrategyLog, record: ExecutionRecord,
                     staged: SlotInfo) -> bool:
    health = ctx.spec.health
    wanted = ctx.spec.strategy.pre_switch_checks
    checks = [check for check in health.checks if wanted is None or check.name in wanted]
    threshold = (f"{health.consecutive_successes} consecutive successes of every pre-switch check on the staged "
                 f"slot, polled every {health.interval_seconds:g} s for at most {health.timeout_seconds:g} s")
    if not checks:
        reason = "strategy.pre_switch_checks is empty: no health check gates the switch"
        log.record("pre_switch_gate", "failed", reason)
        record.gate("pre_switch_health", threshold, "failed", detail=reason)
        report.evidence("verify", Evidence(kind="computed", source="spec strategy.pre_switch_checks",
                                           summary="empty list: no pre-switch checks", data={"checks": []}))
        report.verdict("verify", False, f"{reason}; name at least one of health.checks (or omit it for all)")
        return False
    gate = wait_for_streak(lambda: run_checks(staged.url, checks), required=health.consecutive_successes,
                           interval=health.interval_seconds, timeout=health.timeout_seconds)
    for check in gate.last:
        report.evidence("verify", check.result.evidence(f"pre-switch {check.name} on {staged.slot}: {check.reason}"))
    where = f"staged slot {staged.slot} ({staged.url})"
    attempts = [asdict(a) for a in gate.attempts]
    report.evidence("verify", Evidence(
        kind="computed", source=f"pre-switch gate on {staged.slot}", summary=gate.describe(where),
        data={"checks": [c.name for c in checks], "required": gate.required, "streak": gate.streak,
              "interval_seconds": health.interval_seconds, "timeout_seconds": health.timeout_seconds,
              "attempts": attempts}))
    report.metrics["pre_switch_attempts"] = float(len(gate.attempts))
    log.record("pre_switch_gate", "passed" if gate.passed else "failed", gate.describe(where),
               checks=[c.name for c in checks], streak=gate.streak, required=gate.required,
               attempts=len(gate.attempts))
    record.pre_switch = {"slot": staged.slot, "url": staged.url, "checks": [c.name for c in checks],
                         "required": gate.required, "streak": gate.streak, "passed": gate.passed,
                         "elapsed_seconds": round(gate.elapsed, 3), "attempts": attempts,
                         "last": check_rows(gate.last)}
    record.gate("pre_switch_health", threshold, _state(gate.passed),
                measured={"streak": gate.streak, "attempts": len(gate.attempts)}, detail=gate.describe(where))
    names = ", ".join(c.name for c in checks)
    if gate.passed:
        report.verdict("verify", True, f"pre-switch gate passed: {names} {gate.describe(where)}")
    else:
        report.verdict("verify", False, f"pre-switch gate failed ({names}, {health.consecutive_successes} in a row, "
                                        f"interval {health.interval_seconds:g} s, timeout "
                                        f"{health.timeout_seconds:g} s): {gate.describe(where)}")
    return gate.passed


def path_metric(path: str) -> str:
    """The metric key of one endpoint's failed switch requests: ``failed_switch_requests{path="/api/items"}``."""
    return 'failed_switch_requests{path="' + path.replace("\\", "\\\\").replace('"', '\\"') + '"}'


def observation_problems(tally: dict[str, PathTally], total: int) -> list[str]:
    """Zero-downtime per endpoint: every critical endpoint observed, none of its requests failed."""
    if total == 0:
        return []  # nothing was asked for; the finding says so and the report does not tick zero-downtime
    unseen = [path for path, t in tally.items() if t.observed == 0]
    failing = [f"{path} ({t.failed} of {t.observed})" for path, t in tally.items() if t.failed]
    problems = [f"zero-downtime not met on {', '.join(failing)}"] if failing else []
    if unseen:
        problems.append(f"critical endpoint(s) {', '.join(unseen)} were not observed during the switch")
    return problems


def _record_observation(report: ReportBuilder, record: ExecutionRecord, observation: dict[str, Any]) -> None:
    by_path = observation["by_path"]
    report.facts["switch_observation"] = observation
    report.facts["failed_switch_requests_by_path"] = {path: t["failed"] for path, t in by_path.items()}
    report.metrics["failed_switch_requests"] = float(observation["failed"])
    report.metrics.update({path_metric(path): float(t["failed"]) for path, t in by_path.items()})
    record.observation = observation


def _switch(ctx: DutyContext, report: ReportBuilder, log: StrategyLog, record: ExecutionRecord, staged: SlotInfo,
            router: str, rerun: bool) -> list[str]:
    """Switch (unless this run already did) while observing every critical endpoint; return the problems."""
    problems: list[str] = []
    zero_downtime = "0 failed requests (no answer or 5xx) on every critical endpoint observed around the switch"
    if rerun:
        earlier = ctx.earlier("execute_strategy")
        measured = earlier.metrics.get("failed_switch_requests") if earlier else None
        observation = earlier.facts.get("switch_observation") if earlier else None
        log.record("switch", "skipped", f"{staged.slot} {staged.version} is already active, switched by this run "
                                        f"({ctx.run_id}); not switched again", switched=False)
        report.findings.append(f"re-run: traffic was already on {staged.slot} {staged.version} (switched by this "
                               "run); the switch was not repeated"
                               + (f"; the first attempt counted {measured:g} failed requests" if measured is not None
                                  else "; zero-downtime was not re-measured"))
        record.switch = {"attempted": False, "rerun": True, "reason": "already switched by this run"}
        if isinstance(observation, dict) and isinstance(observation.get("by_path"), dict):
            _record_observation(report, record, {**observation, "measured_by": "an earlier attempt of this run"})
        elif measured is not None:
            report.metrics["failed_switch_requests"] = measured
        if measured is not None and measured > 0:
            problems.append(f"the first attempt counted {measured:g} failed requests during the switch")
        record.gate("zero_downtime", zero_downtime, "not_run" if measured is None else _state(measured == 0),
                    measured=measured, detail="measured by an earlier attempt of this run")
        return problems

    paths = list(dict.fromkeys(endpoint.path for endpoint in ctx.spec.critical_endpoints))
    total = ctx.spec.strategy.observe_switch_requests
    # On a first release nothing served before the switch: only requests after it can show downtime.
    first_release = ctx.target.status().active is None
    counted = ("after",) if first_release else ("before", "during", "after")
    dark = _deploy_dark(ctx, report, log)
    if dark is not None:
        problems.append(dark)
        record.switch = {"attempted": False, "rerun": False, "reason": dark}
        return problems
    observer = SwitchObserver(router, paths, total)
    observer.start()
    observer.wait_ready()
    started = time.monotonic()
    error: str | None = None
    try:
        ctx.target.switch(staged.slot, ctx.run_id)
    except Exception as exc:  # any target failure is recorded, never swallowed silently
        error = f"{type(exc).__name__}: {exc}"
    finally:
        observer.switch_done()
    seconds = time.monotonic() - started
    observed = observer.join()
    failed = count_failed(observed, counted)
    tally = tally_by_path(observed, paths, counted)
    if first_release:
        report.findings.append(f"first release: nothing served before the switch, so only the "
                               f"{sum(1 for r in observed if r.phase == 'after')} requests after it count as "
                               "zero-downtime evidence")
    by_path = {path: asdict(t) for path, t in tally.items()}
    _record_observation(report, record, {
        "router": router, "paths": paths, "counted_phases": list(counted), "requests": len(observed),
        "failed": failed, "by_path": by_path, "by_phase": tally_by_phase(observed), "first_release": first_release,
        "measured_by": "this attempt"})
    report.metrics.update({"switch_requests_observed": float(len(observed)), "switch_seconds": round(seconds, 4)})
    record.switch = {"attempted": True, "rerun": False, "slot": staged.slot, "version": staged.version,
                     "error": error, "seconds": round(seconds, 4)}
    versions = sorted({r.served_version for r in observed if r.served_version})
    report.evidence("check", Evidence(
        kind="http", source=f"{router} ({', '.join(paths)})",
        summary=f"{len(observed)} requests around the switch to {len(paths)} critical endpoint(s), {failed} failed "
                f"(no answer or 5xx): " + ", ".join(f"{p} {t.failed}/{t.observed}" for p, t in tally.items())
                + f"; versions served: {', '.join(versions) or 'unknown'}",
        data={"requests": [asdict(r) for r in observed], "failed": failed, "counted_phases": list(counted),
              "by_path": by_path, "switch_seconds": round(seconds, 4)}))
    if error:
        problems.append(f"switch to {staged.slot} failed: {error}")
    if total == 0:
        report.findings.append("strategy.observe_switch_requests is 0: zero-downtime was not observed")
    per_path = observation_problems(tally, total)
    record.gate("zero_downtime", zero_downtime, "not_run" if total == 0 else _state(not per_path),
                measured=by_path, detail="; ".join(per_path))
    if per_path:
        where = ", ".join(f"{r.phase}@{r.at_seconds:.3f}s {r.path}={r.status if r.status is not None else r.error}"
                          for r in observed if r.failed and r.phase in counted)
        issue = (f"{failed} of {len(observed)} requests through {router} failed during the switch (no answer or "
                 f"status >= 500): {'; '.join(per_path)}" + (f" [{where}]" if where else ""))
        problems.append(issue)
        report.findings.append(issue)
        report.block(issue)
    log.record("switch", "failed" if error or per_path else "passed",
               error or f"switched to {staged.slot} in {seconds:.3f} s; {failed} of {len(observed)} observed "
                        "requests failed",
               slot=staged.slot, version=staged.version, failed_requests=failed, observed_requests=len(observed),
               failed_by_path={path: t.failed for path, t in tally.items()}, switched=error is None)
    return problems


def rehearse_rollback(ctx: DutyContext, before: SlotInfo | None) -> dict[str, Any]:
    """After the switch: would a rollback work right now? Nothing moves traffic here.

    The previous slot must answer every health check directly on its own URL, and the target must
    confirm that it still runs the version that served before the switch, apart from the active
    slot, behind a router, with nothing to change but the traffic (its plan for that version is
    empty or all no-op).

    :param before: the slot that served before this run's switch (None on a first release).
    :return: the rehearsal record (``rehearsed`` True only when every condition held), JSON-shaped.
    """
    status = ctx.target.status()
    previous = status.previous
    record: dict[str, Any] = {"expected": before.as_dict() if before else None,
                              "previous": previous.as_dict() if previous else None, "health": [],
                              "target": {}, "problems": [], "rehearsed": False, "at": utcnow().isoformat()}
    if previous is None:
        record["problems"].append("the target keeps no previous slot" + (
            f" although {describe_slot(before)} served before the switch" if before else
            ": nothing served before the switch (first release)"))
        return record
    checks = run_checks(previous.url, list(ctx.spec.health.checks))
    record["health"] = [{"name": c.name, "passed": c.passed, "reason": c.reason, "url": c.result.url}
                        for c in checks]
    health_problems = [f"previous slot {previous.slot} {c.name}: {c.reason}" for c in checks if not c.passed]
    try:
        pending = [f"{c.address} ({'/'.join(c.actions)})" for c in pending_changes(ctx.target.plan(previous.version))]
    except Exception as exc:  # the target could not plan: the rollback path is unconfirmed, not crashed
        pending = [f"plan failed: {type(exc).__name__}: {exc}"]
    target = {"running": previous.pid is not None,
              "version_matches": before is None or (previous.slot, previous.version) == (before.slot, before.version),
              "apart_from_active": status.active is None or status.active.slot != previous.slot,
              "router": status.router_url, "plan_pending": pending}
    target_problems = [problem for failed, problem in (
        (not target["running"], f"the target reports previous slot {previous.slot} as not running"),
        (not target["version_matches"], f"previous slot is {describe_slot(previous)}, but {describe_slot(before)} "
                                        "served before the switch"),
        (not target["apart_from_active"], f"previous slot {previous.slot} is the active slot"),
        (not status.router_url, "the target has no router to move traffic back through"),
        (bool(pending), f"rolling back to {previous.version} needs more than a traffic move: {', '.join(pending)}"),
    ) if failed]
    record.update(target=target, problems=health_problems + target_problems, health_ok=not health_problems,
                  target_confirms=not target_problems, rehearsed=not health_problems and not target_problems)
    return record


def _rehearse_rollback(ctx: DutyContext, report: ReportBuilder, log: StrategyLog, record: ExecutionRecord,
                       before: SlotInfo | None) -> str:
    """Rehearse the rollback (no traffic moves), record the evidence and facts; return a clause for the check."""
    rehearsal = rehearse_rollback(ctx, before)
    report.facts["rollback_rehearsal"] = rehearsal
    record.rehearsal = rehearsal
    previous = rehearsal["previous"]
    summary = ("rollback rehearsed: previous slot {slot} {version} answers its {n} health check(s) and the target "
               "would move traffic back to it".format(n=len(rehearsal["health"]), **previous)
               if rehearsal["rehearsed"] else "rollback not rehearsable: " + "; ".join(rehearsal["problems"]))
    report.evidence("check", Evidence(kind="target", source=f"{ctx.target.kind} target rollback rehearsal",
                                      summary=summary, data=rehearsal))
    record.gate("rollback_rehearsal", "the previous slot answers its health checks and the target would switch back "
                "to it (not blocking: the checklist shows 'Rollback tested' not done)",
                "not_run" if previous is None else _state(rehearsal["rehearsed"]), measured=rehearsal["problems"],
                detail=summary, blocking=False)
    if previous is None:
        log.record("rollback_rehearsal", "skipped", summary)
    else:
        log.record("rollback_rehearsal", "passed" if rehearsal["rehearsed"] else "failed", summary,
                   slot=previous["slot"], version=previous["version"])
    if not rehearsal["rehearsed"] and previous is not None:
        report.findings.append(summary)  # the release stands; the checklist shows "Rollback tested" not done
    return summary


def _post_switch_checks(ctx: DutyContext, report: ReportBuilder, log: StrategyLog, record: ExecutionRecord,
                        router: str) -> list[str]:
    results = run_checks(router, list(ctx.spec.health.checks))
    for check in results:
        report.evidence("check", check.result.evidence(f"post-switch {check.name} via router: {check.reason}"))
    passed = sum(1 for c in results if c.passed)
    pct = 100.0 * passed / len(results) if results else 0.0
    report.metrics["health_pass_pct"] = round(pct, 3)
    report.facts["health_pass_pct"] = round(pct, 3)
    gate = ctx.spec.quality_gates.health_pass_pct
    failing = [f"{c.name}: {c.reason}" for c in results if not c.passed]
    ok = pct >= gate
    record.post_switch = {"router": router, "results": check_rows(results), "pass_pct": round(pct, 3),
                          "health_pass_pct": gate}
    record.gate("post_switch_health", f"health_pass_pct >= {gate:g} % of the spec's health checks through the router",
                _state(ok), measured=round(pct, 3), detail="; ".join(failing))
    log.record("post_switch_checks", "passed" if ok else "failed",
               f"{passed}/{len(results)} health checks pass through {router} ({pct:.0f} %, gate {gate:g} %)",
               failing=failing)
    if ok:
        return []
    return [f"post-switch health {pct:.0f} % < health_pass_pct {gate:g} % through {router}: {'; '.join(failing)}"]


def _router_serves_new_version(ctx: DutyContext, report: ReportBuilder, record: ExecutionRecord,
                               router: str) -> list[str]:
    """After the switch, ask the router as clients do: every critical endpoint as the spec expects, this version."""
    endpoints = run_checks(router, list(ctx.spec.critical_endpoints))
    for check in endpoints:
        report.evidence("check", check.result.evidence(f"after the switch {check.name} via router: {check.reason}"))
    serving = check_serving(ctx)
    report.evidence("check", serving.evidence())
    record.endpoints = check_rows(endpoints)
    record.serving = serving.evidence().data
    failing = [f"{c.name}: {c.reason}" for c in endpoints if not c.passed]
    record.gate("critical_endpoints", "every critical endpoint answers through the router as the spec expects",
                _state(not failing), measured=[row["status"] for row in record.endpoints], detail="; ".join(failing))
    record.gate("serving_version", f"the target's active slot is this run's and every answer of "
                                   f"{ctx.spec.health.version_check.path} names {ctx.version}",
                _state(serving.ok), measured=serving.served_versions, detail="; ".join(serving.problems()))
    problems = []
    if failing:
        problems.append(f"critical endpoint(s) failing through {router} after the switch: {'; '.join(failing)}")
    if not serving.ok:
        problems.append(f"clients do not get {ctx.version}: {'; '.join(serving.problems())}")
    return problems


def _finish(ctx: DutyContext, report: ReportBuilder, log: StrategyLog, record: ExecutionRecord, *,
            before: TargetStatus, after: TargetStatus, staged: SlotInfo | None, rerun: bool,
            problem: str | None = None, detail: str = "") -> None:
    """Deliver the log and the phase 5 records; decide the read item on the target's own report."""
    record.after = status_snapshot(after, ctx.run_id)
    try:
        entries = log.read_back()
    except ValueError as exc:
        record.deliver(ctx.paths.workdir / "deploy", report, [])
        report.fail("read", f"strategy log {log.path} is unreadable: {exc}")
        return
    outcome = ", ".join(f"{e['step']}={e['status']}" for e in entries)
    report.evidence("read", Evidence.file(log.path, summary=f"strategy log: {outcome}"))
    report.deliver("strategy-log", log.path)
    record.deliver(ctx.paths.workdir / "deploy", report, entries)
    if problem is not None or staged is None:
        report.fail("read", f"no staged slot to deploy: {problem}")
        return
    report.evidence("read", target_evidence(ctx, after, "the target's report after this attempt: active "
                                                        f"{describe_slot(after.active)}, switched by "
                                                        f"{after.switched_by_run or '-'}"))
    disagreements = log_disagreements(entries, before, after, staged, ctx.run_id, rerun)
    report.verdict("read", not disagreements, "; ".join(disagreements) or
                   f"{detail}; the target's report agrees with the strategy log ({outcome}): active "
                   f"{describe_slot(after.active)}, switched by {after.switched_by_run or '-'}"
                   + (f", {sum(1 for h in after.history if h.get('run_id') == ctx.run_id)} history entries of "
                      "this run" if after.history else ""))
