"""Phase 5, first step: execute the blue-green strategy (monitoring and alerts: :mod:`.monitoring`).

``execute_strategy`` is the only step of a release that moves traffic. It gates the staged slot
on consecutive health successes, switches while sending requests to every critical endpoint
through the router and counting, per endpoint, those that fail (zero-downtime evidence:
``facts["failed_switch_requests_by_path"]``, :mod:`gendev_release.duties.switch_watch`), then
judges every health check once through the router. Last it rehearses the rollback without moving
traffic (:func:`rehearse_rollback`): the previous slot must answer its health checks on its own URL
and the target must confirm a rollback is only a traffic move (``facts["rollback_rehearsal"]``).
A gate that fails leaves traffic where it was; a check that fails after the switch fails the step
with ``facts["traffic_moved"] = True`` so the rollback path takes over.

"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gendev_release.context import DutyContext
from gendev_release.duties.base import duty
from gendev_release.duties.common import describe_slot, router_url, target_evidence
from gendev_release.duties.environment import pending_changes
from gendev_release.duties.switch_watch import (
    PathTally,
    SwitchObserver,
    count_failed,
    tally_by_path,
)
from gendev_release.facts import StagedRevision, handed_on
from gendev_release.probes import CheckResult, run_checks
from gendev_release.report import Evidence, ReportBuilder, utcnow
from gendev_release.targets.base import SlotInfo

STRATEGY_STEPS: tuple[str, ...] = ("pre_switch_gate", "switch", "post_switch_checks", "rollback_rehearsal")
PROVISIONING_TASK = "p4_environment.provisioning"


# ============================================================================ execute strategy
@dataclass(frozen=True)
class GateAttempt:
    index: int
    at_seconds: float
    passed: bool
    failures: list[str]


@dataclass
class GateResult:
    passed: bool
    streak: int
    required: int
    elapsed: float
    attempts: list[GateAttempt] = field(default_factory=list)
    last: list[CheckResult] = field(default_factory=list)

    def describe(self, where: str) -> str:
        head = (f"{self.streak} of {self.required} consecutive successes on {where} "
                f"after {len(self.attempts)} attempt(s) in {self.elapsed:.1f} s")
        failing = next((a for a in reversed(self.attempts) if not a.passed), None)
        return head if failing is None else f"{head}; last failure: {'; '.join(failing.failures)}"


def trailing_streak(outcomes: Sequence[bool]) -> int:
    """How many of the last outcomes were successes in a row."""
    streak = 0
    for outcome in reversed(outcomes):
        if not outcome:
            break
        streak += 1
    return streak


def wait_for_streak(probe: Callable[[], list[CheckResult]], *, required: int, interval: float, timeout: float,
                    clock: Callable[[], float] = time.monotonic,
                    sleep: Callable[[float], None] = time.sleep) -> GateResult:
    """Probe until ``required`` consecutive rounds pass, or until ``timeout`` seconds are used up.

    A round passes when every check in it passes. There is always at least one round.
    """
    started = clock()
    attempts: list[GateAttempt] = []
    last: list[CheckResult] = []
    while True:
        last = probe()
        ok = bool(last) and all(check.passed for check in last)
        attempts.append(GateAttempt(len(attempts) + 1, round(clock() - started, 3), ok,
                                    [f"{c.name}: {c.reason}" for c in last if not c.passed]))
        streak = trailing_streak([a.passed for a in attempts])
        if streak >= required:
            return GateResult(True, streak, required, clock() - started, attempts, last)
        if clock() - started + interval > timeout:
            return GateResult(False, streak, required, clock() - started, attempts, last)
        sleep(interval)


class StrategyLog:
    """The strategy step log: one JSON line per strategy step, rewritten by every attempt."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("", encoding="utf-8")

    def record(self, step: str, status: str, detail: str, **data: Any) -> None:
        line = {"step": step, "status": status, "detail": detail, "run_id": self.run_id,
                "at": utcnow().isoformat(), **data}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line, sort_keys=True, default=str) + "\n")

    def read_back(self) -> list[dict[str, Any]]:
        """The log as written on disk; ``ValueError`` on a line that is not a JSON object."""
        entries = []
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            entry = json.loads(line)
            if not isinstance(entry, dict) or "step" not in entry:
                raise ValueError(f"{self.path}:{number}: not a strategy log entry")
            entries.append(entry)
        return entries


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


@duty("execute_strategy")
def execute_strategy(ctx: DutyContext, report: ReportBuilder) -> None:
    """Blue-green: gate the staged slot, switch while observing the router, judge health after."""
    log = StrategyLog(ctx.paths.workdir / "deploy" / "strategy-log.jsonl", ctx.run_id)
    status = ctx.target.status()
    report.evidence("read", target_evidence(ctx, status))
    staged, problem = staged_slot_from(ctx)
    rerun = False
    if staged is not None:
        report.evidence("read", Evidence(kind="computed", source="provisioning report facts.staged",
                                         summary=f"staged {describe_slot(staged)}", data=staged.as_dict()))
        rerun = _slot_matches(status.active, staged.slot, staged.version) and status.active is not None \
            and status.active.run_id == ctx.run_id
        if rerun:
            staged = status.active or staged
        elif _slot_matches(status.staged, staged.slot, staged.version):
            staged = status.staged or staged  # the target's own record is authoritative for the URL
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
    before = status.previous if rerun else status.active
    report.facts.update({"traffic_moved": rerun, "rerun": rerun, "router_url": router,
                         "strategy_log": str(log.path), "active_before": before.as_dict() if before else None})
    if staged is None or router is None:
        for step in STRATEGY_STEPS:
            log.record(step, "skipped", f"not run: {problem}")
        report.fail("verify", f"pre-switch gate not run: {problem}")
        report.evidence("check", target_evidence(ctx, ctx.target.status()))
        report.fail("check", f"switch not attempted, traffic not moved: {problem}")
        _finish_read(report, log, problem=problem)
        return
    report.facts["staged"] = staged.as_dict()

    gate_ok = _pre_switch_gate(ctx, report, log, staged)
    if not gate_ok and not rerun:
        log.record("switch", "skipped", "pre-switch gate failed: traffic was not moved",
                   active=describe_slot(status.active))
        log.record("post_switch_checks", "skipped", "no switch happened")
        log.record("rollback_rehearsal", "skipped", "no switch happened: traffic stays where it was")
        after = ctx.target.status()
        report.evidence("check", target_evidence(ctx, after,
                                                 f"traffic not moved: active {describe_slot(after.active)}"))
        report.fail("check", f"switch not attempted: the pre-switch gate failed on {staged.slot} {staged.version}; "
                             f"traffic stays on {describe_slot(after.active)}")
        report.block(f"pre-switch gate failed on {staged.slot} {staged.version}: traffic was not moved")
        report.facts["traffic_moved"] = _slot_matches(after.active, staged.slot, staged.version)
        _finish_read(report, log, detail=f"staged {describe_slot(staged)}")
        return

    problems = _switch(ctx, report, log, staged, router, rerun)
    problems += _post_switch_checks(ctx, report, log, router)
    rehearsal = _rehearse_rollback(ctx, report, log, before)
    after = ctx.target.status()
    report.evidence("check", target_evidence(ctx, after))
    moved = _slot_matches(after.active, staged.slot, staged.version)
    if not moved:
        problems.insert(0, f"target shows active {describe_slot(after.active)}, not {staged.slot} {staged.version}")
    report.facts.update({
        "traffic_moved": moved,
        "active": after.active.as_dict() if after.active else None,
        "previous": after.previous.as_dict() if after.previous else None,
    })
    failed_requests = report.metrics.get("failed_switch_requests")
    report.verdict("check", not problems, "; ".join(problems) if problems else
                   f"traffic on {staged.slot} {staged.version}; "
                   + (f"{failed_requests:g} failed requests during the switch; " if failed_requests is not None else "")
                   + f"all {len(ctx.spec.health.checks)} health checks pass through {router}; {rehearsal}")
    _finish_read(report, log, detail=f"staged {describe_slot(staged)}")


def _pre_switch_gate(ctx: DutyContext, report: ReportBuilder, log: StrategyLog, staged: SlotInfo) -> bool:
    health = ctx.spec.health
    wanted = ctx.spec.blue_green.pre_switch_checks
    checks = [check for check in health.checks if wanted is None or check.name in wanted]
    if not checks:
        reason = "blue_green.pre_switch_checks is empty: no health check gates the switch"
        log.record("pre_switch_gate", "failed", reason)
        report.evidence("verify", Evidence(kind="computed", source="spec blue_green.pre_switch_checks",
                                           summary="empty list: no pre-switch checks", data={"checks": []}))
        report.verdict("verify", False, f"{reason}; name at least one of health.checks (or omit it for all)")
        return False
    gate = wait_for_streak(lambda: run_checks(staged.url, checks), required=health.consecutive_successes,
                           interval=health.interval_seconds, timeout=health.timeout_seconds)
    for check in gate.last:
        report.evidence("verify", check.result.evidence(f"pre-switch {check.name} on {staged.slot}: {check.reason}"))
    where = f"staged slot {staged.slot} ({staged.url})"
    report.evidence("verify", Evidence(
        kind="computed", source=f"pre-switch gate on {staged.slot}", summary=gate.describe(where),
        data={"checks": [c.name for c in checks], "required": gate.required, "streak": gate.streak,
              "interval_seconds": health.interval_seconds, "timeout_seconds": health.timeout_seconds,
              "attempts": [asdict(a) for a in gate.attempts]}))
    report.metrics["pre_switch_attempts"] = float(len(gate.attempts))
    log.record("pre_switch_gate", "passed" if gate.passed else "failed", gate.describe(where),
               checks=[c.name for c in checks], streak=gate.streak, required=gate.required,
               attempts=len(gate.attempts))
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


def _record_observation(report: ReportBuilder, observation: dict[str, Any]) -> None:
    by_path = observation["by_path"]
    report.facts["switch_observation"] = observation
    report.facts["failed_switch_requests_by_path"] = {path: t["failed"] for path, t in by_path.items()}
    report.metrics["failed_switch_requests"] = float(observation["failed"])
    report.metrics.update({path_metric(path): float(t["failed"]) for path, t in by_path.items()})


def _switch(ctx: DutyContext, report: ReportBuilder, log: StrategyLog, staged: SlotInfo, router: str,
            rerun: bool) -> list[str]:
    """Switch (unless this run already did) while observing every critical endpoint; return the problems."""
    problems: list[str] = []
    if rerun:
        earlier = ctx.earlier("execute_strategy")
        measured = earlier.metrics.get("failed_switch_requests") if earlier else None
        observation = earlier.facts.get("switch_observation") if earlier else None
        log.record("switch", "skipped", f"{staged.slot} {staged.version} is already active, switched by this run "
                                        f"({ctx.run_id}); not switched again")
        report.findings.append(f"re-run: traffic was already on {staged.slot} {staged.version} (switched by this "
                               "run); the switch was not repeated"
                               + (f"; the first attempt counted {measured:g} failed requests" if measured is not None
                                  else "; zero-downtime was not re-measured"))
        if isinstance(observation, dict) and isinstance(observation.get("by_path"), dict):
            _record_observation(report, {**observation, "measured_by": "an earlier attempt of this run"})
        elif measured is not None:
            report.metrics["failed_switch_requests"] = measured
        if measured is not None and measured > 0:
            problems.append(f"the first attempt counted {measured:g} failed requests during the switch")
        return problems

    paths = list(dict.fromkeys(endpoint.path for endpoint in ctx.spec.critical_endpoints))
    total = ctx.spec.blue_green.observe_switch_requests
    # On a first release nothing served before the switch: only requests after it can show downtime.
    first_release = ctx.target.status().active is None
    counted = ("after",) if first_release else ("before", "during", "after")
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
    _record_observation(report, {"router": router, "paths": paths, "counted_phases": list(counted),
                                 "requests": len(observed), "failed": failed, "by_path": by_path,
                                 "first_release": first_release, "measured_by": "this attempt"})
    report.metrics.update({"switch_requests_observed": float(len(observed)), "switch_seconds": round(seconds, 4)})
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
        report.findings.append("blue_green.observe_switch_requests is 0: zero-downtime was not observed")
    per_path = observation_problems(tally, total)
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
               failed_by_path={path: t.failed for path, t in tally.items()})
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


def _rehearse_rollback(ctx: DutyContext, report: ReportBuilder, log: StrategyLog, before: SlotInfo | None) -> str:
    """Rehearse the rollback (no traffic moves), record the evidence and facts; return a clause for the check."""
    rehearsal = rehearse_rollback(ctx, before)
    report.facts["rollback_rehearsal"] = rehearsal
    previous = rehearsal["previous"]
    summary = ("rollback rehearsed: previous slot {slot} {version} answers its {n} health check(s) and the target "
               "would move traffic back to it".format(n=len(rehearsal["health"]), **previous)
               if rehearsal["rehearsed"] else "rollback not rehearsable: " + "; ".join(rehearsal["problems"]))
    report.evidence("check", Evidence(kind="target", source=f"{ctx.target.kind} target rollback rehearsal",
                                      summary=summary, data=rehearsal))
    if previous is None:
        log.record("rollback_rehearsal", "skipped", summary)
    else:
        log.record("rollback_rehearsal", "passed" if rehearsal["rehearsed"] else "failed", summary,
                   slot=previous["slot"], version=previous["version"])
    if not rehearsal["rehearsed"] and previous is not None:
        report.findings.append(summary)  # the release stands; the checklist shows "Rollback tested" not done
    return summary


def _post_switch_checks(ctx: DutyContext, report: ReportBuilder, log: StrategyLog, router: str) -> list[str]:
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
    log.record("post_switch_checks", "passed" if ok else "failed",
               f"{passed}/{len(results)} health checks pass through {router} ({pct:.0f} %, gate {gate:g} %)",
               failing=failing)
    if ok:
        return []
    return [f"post-switch health {pct:.0f} % < health_pass_pct {gate:g} % through {router}: {'; '.join(failing)}"]


def _finish_read(report: ReportBuilder, log: StrategyLog, *, problem: str | None = None, detail: str = "") -> None:
    """Read the strategy log back from disk, deliver it and decide the read item."""
    try:
        entries = log.read_back()
    except ValueError as exc:
        report.fail("read", f"strategy log {log.path} is unreadable: {exc}")
        return
    steps = [entry["step"] for entry in entries]
    outcome = ", ".join(f"{e['step']}={e['status']}" for e in entries)
    report.evidence("read", Evidence.file(log.path, summary=f"strategy log: {outcome}"))
    report.deliver("strategy-log", log.path)
    if problem is not None:
        report.fail("read", f"no staged slot to deploy: {problem}")
    elif steps != list(STRATEGY_STEPS):
        report.fail("read", f"strategy log {log.path} has steps {steps}, expected {list(STRATEGY_STEPS)}")
    else:
        report.verdict("read", True, f"{detail}; strategy log {log.path.name}: {outcome}")
