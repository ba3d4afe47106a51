"""Phase 2, release planning and coordination: the release plan and stakeholder notifications.

``release_plan`` (project-planner) reads the release history of this DAG (every line must be a
history entry: the plan's estimates rest on it) and builds the plan from the DAG's own task
records (:func:`gendev_release.plan.plan_release`): the 8 phases with estimated minutes, taken from
the ``phase_seconds`` of earlier runs when there are any, else from ``planning.default_phase_minutes``;
the estimated end must fall inside the change window as it stands at the run's time. It delivers
the release plan (Markdown) and the deployment schedule (iCalendar).

``notifications`` (stakeholder-communicator) checks every recipient of every audience is an
address, sends "release starting" through every channel of the spec and judges delivery by each
channel's answer (a file channel's line read back with the file's digest, a webhook receiver's
confirming answer): every channel delivers, to every audience. It then checks the approval gates
(consistent approvers, a high risk approved) and the change window against the clock and the
release plan's estimated end. It delivers the stakeholder notifications, the change windows and
the approval gates.

Change windows: ``days`` names the day a window *starts* on; ``end`` is the last minute inside
the window (``02:00`` means until 02:00:59, ``23:59`` until midnight), and an ``end`` at or before
``start`` means the window crosses midnight (22:00-02:00). Back-to-back windows (00:00-23:59 on
consecutive days) join into one.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from gendev_release import change_window, notify
from gendev_release.approvals import high_risk_gate
from gendev_release.catalogue import PHASES
from gendev_release.change_window import WEEKDAYS
from gendev_release.duties.base import duty
from gendev_release.duties.phase1_documents import Outcomes, decide
from gendev_release.duties.phase2_documents import (
    approval_gates_markdown,
    change_window_markdown,
    notifications_markdown,
    plan_markdown,
    schedule_ics,
)
from gendev_release.errors import GendevError
from gendev_release.facts import PlanEstimate, handed_on
from gendev_release.plan import plan_release
from gendev_release.report import Evidence, ReportBuilder, utcnow
from gendev_release.run_record import HistoryEntry
from gendev_release.verification_matrix import ItemProof

if TYPE_CHECKING:
    from gendev_release.context import DutyContext
    from gendev_release.spec import ChangeWindow

TEST_FILE = "tests/duties/test_planning.py"


# ------------------------------------------------------------------------------ change window
def window_end(window: ChangeWindow, now: datetime) -> datetime | None:
    """When the change window open at ``now`` closes (UTC): its end, or the next freeze if one starts first;
    None when it is closed at ``now`` (outside its hours, or frozen). One rule with the change-window gate:
    :func:`gendev_release.change_window.evaluate`.

    :param window: the spec's change window (days, start, end, timezone, freeze).
    :param now: an aware datetime; a naive one is taken as UTC.
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    state = change_window.evaluate(window, now)
    return state.closes_at if state.open else None


def next_openings(window: ChangeWindow, now: datetime, days: int = 7) -> list[tuple[datetime, datetime]]:
    """The windows (UTC start, exclusive end) that open after ``now`` within ``days`` days, frozen ones left out."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    today = now.astimezone(ZoneInfo(window.timezone)).date()
    frozen = change_window.freezes(window)
    found = []
    for offset in range(days + 1):
        day = today + timedelta(days=offset)
        if WEEKDAYS[day.weekday()] in window.days:
            start, end = change_window.window_bounds(window, day)
            if now < start <= now + timedelta(days=days) and not any(f.covers(start) for f in frozen):
                found.append((start, end))
    return found


def describe_window(window: ChangeWindow) -> str:
    return change_window.describe(window)


def window_override(ctx: DutyContext) -> dict[str, Any] | None:
    """The change-window gate's record of this run when people let it through a closed window, else None.

    Written by the gate (``change_window.json``) from the approval Airflow recorded
    (``change_window_override``), never by this duty.
    """
    try:
        record = json.loads(ctx.store.read("change_window.json"))
    except (GendevError, OSError, ValueError):
        return None
    approved = isinstance(record, dict) and record.get("status") == "override" and isinstance(record.get("override"),
                                                                                                dict)
    return record if approved and record["override"].get("approved") is True else None


def override_evidence(record: dict[str, Any]) -> Evidence:
    return Evidence(kind="file", source="change_window.json (the change-window gate of this run)",
                    summary=record["reason"], data={"override": record["override"], "state": record.get("state")})


# ------------------------------------------------------------------------------------ history
def history_entries(path: Path) -> tuple[list[HistoryEntry], list[str]]:
    """Every line of the release history as a :class:`HistoryEntry`, and a problem for each line that is not one.

    A duration that is negative or not finite is a problem too: the plan would be estimated from it.
    Lines of the format written before ``verified`` existed are read as :class:`ReleaseHistory` reads them.
    """
    if not path.exists():
        return [], []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [f"cannot be read: {type(exc).__name__}: {exc}"]
    entries, problems = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as exc:
            problems.append(f"line {number} is not JSON ({exc})")
            continue
        if isinstance(data, dict) and "verified" not in data and data.get("outcome") == "success":
            data["verified"] = True
        try:
            entry = HistoryEntry.model_validate(data)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"]) or "the line"
            problems.append(f"line {number} is not a history entry ({where}: {error['msg']})")
            continue
        bad = [f"{phase}={seconds}" for phase, seconds in entry.phase_seconds.items()
               if not math.isfinite(seconds) or seconds < 0]
        if bad:
            problems.append(f"line {number} has durations that are not a time: phase_seconds {', '.join(bad)}")
            continue
        entries.append(entry)
    return entries, problems


def estimate_phases(history: list[dict[str, Any]], default_minutes: float) -> dict[str, dict[str, Any]]:
    """Minutes per phase: mean of earlier runs' ``phase_seconds`` when any, else the default.

    Non-numeric, non-finite or non-positive durations are ignored.
    """
    estimates = {}
    for phase in PHASES:
        samples = []
        for entry in history:
            seconds = (entry.get("phase_seconds") or {}).get(phase.id) if isinstance(
                entry.get("phase_seconds"), dict) else None
            if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and math.isfinite(seconds) \
                    and seconds > 0:
                samples.append(float(seconds))
        if samples:
            # no coarse rounding: a phase measured in milliseconds must not become a 0-minute estimate
            estimates[phase.id] = {"minutes": sum(samples) / len(samples) / 60.0,
                                   "source": "history", "runs": len(samples)}
        else:
            estimates[phase.id] = {"minutes": float(default_minutes), "source": "default", "runs": 0}
    return estimates


def _valid_estimate(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


# ------------------------------------------------------------------------------- release plan
def build_plan(ctx: DutyContext, now: datetime, estimates: dict[str, dict[str, Any]], history_runs: int,
               end: datetime | None) -> dict[str, Any]:
    """The release plan: the DAG's phases and tasks (:func:`plan_release`), each phase scheduled from ``now``."""
    spec = ctx.spec
    dag = plan_release(spec)
    phases, cursor = [], now
    for phase in dag.phases:
        minutes = estimates[phase.id]["minutes"]
        start, cursor = cursor, cursor + timedelta(minutes=minutes)
        phases.append({"id": phase.id, "number": phase.number, "title": phase.title,
                       "steps": [t.step_id for t in phase.tasks if t.kind == "agent"],
                       "tasks": [t.task_id for t in phase.tasks], "deliverables": list(phase.deliverables),
                       "estimated_minutes": minutes, "source": estimates[phase.id]["source"],
                       "runs": estimates[phase.id]["runs"], "start": start.isoformat(), "end": cursor.isoformat()})
    total = round(sum(e["minutes"] for e in estimates.values()), 3)
    return {
        "service": spec.service, "version": ctx.version, "run_id": ctx.run_id, "dag_id": dag.dag_id,
        "environment": spec.environment, "strategy": ctx.spec.strategy.kind, "created_at": now.isoformat(),
        "phases": phases, "total_minutes": total, "estimated_end": (now + timedelta(minutes=total)).isoformat(),
        "change_window": describe_window(spec.change_window) if spec.change_window else None,
        "window_end": end.isoformat() if end else None,
        "approvers": list(spec.approvals.approvers) if spec.approvals else [],
        "required_approvals": spec.approvals.required if spec.approvals else 0,
        "history_runs": history_runs,
    }


@duty("release_plan")
def release_plan(ctx: DutyContext, report: ReportBuilder) -> None:
    spec = ctx.spec
    now = utcnow()
    outcomes: Outcomes = {}

    # read: the release history the estimates rest on; the plan built from the DAG, written and read back
    history_file = ctx.paths.history_file
    entries, history_problems = history_entries(history_file)
    if history_file.is_file():
        report.evidence("read", Evidence.file(history_file, summary=f"release history: {len(entries)} entries, "
                                                                    f"{len(history_problems)} unreadable line(s)",
                                              entries=len(entries), problems=history_problems))
    else:
        report.evidence("read", Evidence(kind="computed", source=str(history_file),
                                         summary="no release history yet: every phase from the spec's default",
                                         data={"exists": history_file.exists(), "entries": 0}))
    estimates = estimate_phases([e.model_dump() for e in entries], spec.planning.default_phase_minutes)
    end = window_end(spec.change_window, now) if spec.change_window else None
    plan = build_plan(ctx, now, estimates, len(entries), end)
    total = plan["total_minutes"]
    path = ctx.paths.workdir / "release-plan.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plan, indent=2), encoding="utf-8")
    problems = [f"release history {history_file} {problem}" for problem in history_problems]
    if history_problems:
        problems.append("the plan's estimates would rest on a history that does not read back: repair or remove "
                        "those lines")
    try:
        reread = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        problems.append(f"release plan {path} does not read back as JSON: {exc}")
        reread = {}
    phases = reread.get("phases", []) if isinstance(reread, dict) else []
    report.evidence("read", Evidence.file(path, summary=f"release plan: {len(phases)} phases, {total:.2f} min",
                                          phases=len(phases)))
    dag_phases = [p.id for p in plan_release(spec).phases]
    if [p.get("id") for p in phases] != dag_phases:
        problems.append(f"release plan {path.name} lists phases {[p.get('id') for p in phases]}, the DAG has "
                        f"{dag_phases}")
    decide(report, "read", problems, f"release history read ({len(entries)} earlier run(s)); release plan "
                                      f"{path.name} lists the DAG's {len(dag_phases)} phases", outcomes)
    report.facts.update(plan_path=str(path), total_minutes=total, estimates=estimates,
                        estimated_end=plan["estimated_end"], window_end=plan["window_end"])

    # verify: approvers assigned; every phase estimated from its measured history, else from the spec's default
    problems = []
    if not plan["approvers"]:
        problems.append("no approvers assigned: add approvals.approvers to the spec")
    for phase in phases:
        measured = sum(1 for e in entries if (e.phase_seconds.get(phase.get("id")) or 0) > 0)
        if not _valid_estimate(phase.get("estimated_minutes")):
            problems.append(f"phase {phase.get('id')} has no valid estimate ({phase.get('estimated_minutes')!r})")
        elif measured and (phase.get("source"), phase.get("runs")) != ("history", measured):
            problems.append(f"phase {phase.get('id')} is estimated from {phase.get('source')} although "
                            f"{measured} earlier run(s) measured it")
    report.evidence("verify", Evidence(kind="computed", source=f"{path.name} vs {history_file.name} and the spec",
                                       summary=f"approvers {plan['approvers']}, {len(phases)} phases estimated",
                                       data={"approvers": plan["approvers"], "required": plan["required_approvals"],
                                             "estimates": {p.get("id"): [p.get("estimated_minutes"), p.get("source"),
                                                                         p.get("runs")] for p in phases}}))
    decide(report, "verify", problems, f"{len(plan['approvers'])} approver(s) assigned; every phase estimated "
                                        f"({sum(1 for p in phases if p.get('source') == 'history')} from history)",
            outcomes)

    # check: the estimated end falls before the change window closes, at the clock of this run
    estimated_end = now + timedelta(minutes=total)
    report.evidence("check", Evidence(kind="computed", source="change window vs estimate",
                                      summary=f"now {now.isoformat()}, +{total:.2f} min, "
                                              f"window end {plan['window_end']}",
                                      data={"now": now.isoformat(), "total_minutes": total,
                                            "estimated_end": estimated_end.isoformat(),
                                            "change_window": plan["change_window"], "window_end": plan["window_end"],
                                            "environment": spec.environment}))
    report.metrics["estimated_minutes"] = total
    problems, detail = [], ""
    if spec.change_window is None:
        if spec.environment == "production":
            problems.append("production release without a change_window in the spec")
        detail = f"no change window; allowed for environment {spec.environment}"
    elif end is None and (override := window_override(ctx)) is not None:
        report.evidence("check", override_evidence(override))
        detail = f"outside the change window {plan['change_window']}: {override['reason']}"
    elif end is None:
        problems.append(f"now ({now.isoformat()}) is outside the change window {plan['change_window']}")
    elif estimated_end > end:
        problems.append(f"estimated end {estimated_end.isoformat()} ({total:.2f} min) is after the change window "
                        f"{plan['change_window']} closes at {end.isoformat()}")
    else:
        detail = f"estimated end {estimated_end.isoformat()} is before the window end {end.isoformat()}"
    report.facts["feasible"] = decide(report, "check", problems, detail, outcomes)

    # deliverables
    for name, file_name, text in (("Release plan", "release-plan.md", plan_markdown(plan, outcomes)),
                                  ("Deployment schedule", "deployment-schedule.ics", schedule_ics(plan))):
        out = ctx.paths.workdir / file_name
        out.write_text(text, encoding="utf-8", newline="")
        report.deliver(name, out)


# -------------------------------------------------------------------------------- notifications
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")
_HANDLE = re.compile(r"^[@#][A-Za-z0-9][A-Za-z0-9._-]*$")


def is_address(recipient: str) -> bool:
    """An e-mail address, a ``@handle`` or a ``#channel``: something a message can be addressed to."""
    return bool(_EMAIL.match(recipient) or _HANDLE.match(recipient))


def recipient_problems(stakeholders: dict[str, list[str]]) -> list[str]:
    """One problem per recipient that is not an address, naming its spec field."""
    return [f"notifications.stakeholders.{audience}[{index}] {recipient!r} is not an e-mail address, @handle or "
            "#channel" for audience, recipients in stakeholders.items()
            for index, recipient in enumerate(recipients) if not is_address(recipient)]


def addressing_problems(delivered: list[Evidence], stakeholders: dict[str, list[str]]) -> list[str]:
    """Deliveries whose message (as the channel took it) leaves out an audience or a recipient of the spec."""
    problems = []
    wanted_audiences = set(stakeholders)
    wanted_recipients = {r for recipients in stakeholders.values() for r in recipients}
    for evidence in delivered:
        message = evidence.data.get("message") or {}
        audiences = wanted_audiences - set(message.get("audiences") or [])
        recipients = wanted_recipients - set(message.get("recipients") or [])
        if audiences or recipients:
            problems.append(f"{evidence.source}: the message leaves out " + ", ".join(
                [f"audience(s) {sorted(audiences)}"] * bool(audiences) + [f"recipient(s) {sorted(recipients)}"]
                * bool(recipients)))
    return problems


def approval_problems(ctx: DutyContext, risk_level: str | None) -> list[str]:
    """The spec's approval gates, judged: present for production, enough distinct approvers, a high risk approved."""
    spec, problems = ctx.spec, []
    if spec.environment == "production" and spec.approvals is None:
        problems.append("production release without approvals in the spec")
    if spec.approvals is not None:
        approvers = spec.approvals.approvers
        distinct = sorted(set(approvers))
        if spec.approvals.required > len(distinct):
            twice = sorted({a for a in approvers if approvers.count(a) > 1})
            problems.append(f"approvals.required={spec.approvals.required} but approvals.approvers names only "
                            f"{len(distinct)} distinct approver(s) ({', '.join(twice)} listed more than once)")
    if risk_level == "high" and high_risk_gate(spec.approvals, spec.environment) is None:
        problems.append("risk_assessment rated this release high risk and nothing stops it for people's approval: "
                        "add high_risk to approvals.required_for")
    return problems


@duty("notifications")
def notifications(ctx: DutyContext, report: ReportBuilder) -> None:
    spec = ctx.spec
    stakeholders = {audience: list(recipients) for audience, recipients in spec.notifications.stakeholders.items()}
    outcomes: Outcomes = {}
    channels = [{"field": field, "kind": channel.kind, "channel": channel.path,
                 "min_severity": getattr(channel, "min_severity", "info")}
                for field, channel in spec.notifications.channel_fields()]
    estimate, why_no_estimate = handed_on(ctx, PlanEstimate)
    risk = ctx.earlier("risk_assessment")
    risk_level = risk.facts.get("risk_level") if risk else None

    # read: stakeholders per audience, each recipient an address; what earlier steps hand on for the message
    problems = recipient_problems(stakeholders)
    if not stakeholders:
        problems.append("notifications.stakeholders names no audience")
    report.evidence("read", Evidence(kind="computed", source="notifications.stakeholders",
                                     summary=f"{len(stakeholders)} audience(s), "
                                             f"{len({r for v in stakeholders.values() for r in v})} recipient(s)",
                                     data={"stakeholders": stakeholders, "channels": channels}))
    report.evidence("read", Evidence(kind="computed", source="release_plan and risk_assessment reports of this run",
                                     summary=f"estimated end {estimate.estimated_end.isoformat() if estimate else '-'}"
                                             f", risk level {risk_level or '-'}",
                                     data={"estimated_end": estimate.estimated_end.isoformat() if estimate else None,
                                           "why_no_estimate": None if estimate else why_no_estimate,
                                           "risk_level": risk_level}))
    if estimate is None:
        report.findings.append(f"the message names no estimated end: {why_no_estimate}")
    decide(report, "read", problems, f"audiences: {', '.join(sorted(stakeholders))}; every recipient is an address",
            outcomes)

    # verify: "release starting" delivered through every channel, to every audience, as each channel answered
    end = estimate.estimated_end.isoformat() if estimate else None
    result = notify.send(
        spec, ctx.paths.home, event="release_starting", severity="info",
        subject=f"{spec.service} {ctx.version} release starting",
        body=f"Release {ctx.version} of {spec.service} ({spec.environment}, {ctx.spec.strategy.kind}) starts "
             f"now" + (f"; estimated end {end}" if end else "") + (f"; risk {risk_level}" if risk_level else "") + ".",
        run_id=ctx.run_id, version=ctx.version)
    skipped = list(getattr(result, "skipped", []))
    # every channel's outcome is kept: a failed one fails the item, the others' deliveries stay on record
    for delivery in result.delivered:
        report.evidence("verify", delivery)
    for failure in result.failures:
        report.evidence("verify", failure.evidence())
    for skip in skipped:
        report.evidence("verify", skip.evidence())
    report.facts["notification"] = {"delivered": [e.source for e in result.delivered],
                                    "failed": [f.model_dump() for f in result.failures],
                                    "skipped": [s.describe() for s in skipped]}
    problems = addressing_problems(result.delivered, stakeholders)
    if result.failures:
        reached = ", ".join(str(e.data.get("channel_path", e.source)) for e in result.delivered)
        problems.insert(0, "release-starting notification not delivered to "
                        + "; ".join(f.describe() for f in result.failures)
                        + (f" (delivered to {reached})" if reached else ""))
    elif not result.delivered:
        problems.append("release-starting notification reached no channel: "
                        + ("; ".join(s.describe() for s in skipped) or "the spec names none"))
    decide(report, "verify", problems, result.summary, outcomes)

    # check: approval gates consistent; the change window open now and still open at the plan's estimated end
    now = utcnow()
    problems = approval_problems(ctx, risk_level)
    if spec.environment == "production" and spec.change_window is None:
        problems.append("production release without a change_window in the spec")
    end_at = window_end(spec.change_window, now) if spec.change_window else None
    override = window_override(ctx) if spec.change_window is not None and end_at is None else None
    if override is not None:
        report.evidence("check", override_evidence(override))
        report.findings.append(f"outside the change window: {override['reason']}")
    elif spec.change_window is not None and end_at is None:
        problems.append(f"now ({now.isoformat()}) is outside the change window {describe_window(spec.change_window)}")
    elif end_at is not None and estimate is not None and estimate.estimated_end > end_at:
        problems.append(f"the release plan's estimated end {estimate.estimated_end.isoformat()} is after the change "
                        f"window closes at {end_at.isoformat()}")
    approval = {"approvers": list(spec.approvals.approvers) if spec.approvals else [],
                "required": spec.approvals.required if spec.approvals else 0,
                "gate": "configured" if spec.approvals else "none"}
    report.evidence("check", Evidence(kind="computed", source="approvals and change_window at the run's clock",
                                      summary=f"approvals {approval['gate']}, window "
                                              f"{'open until ' + end_at.isoformat() if end_at else 'closed or none'}",
                                      data={"environment": spec.environment, "approvals": approval,
                                            "change_window": spec.change_window.model_dump()
                                            if spec.change_window else None,
                                            "now": now.isoformat(),
                                            "window_end": end_at.isoformat() if end_at else None,
                                            "estimated_end": estimate.estimated_end.isoformat() if estimate else None,
                                            "risk_level": risk_level}))
    check_ok = (f"approvals configured; change window open until {end_at.isoformat()}" if end_at
                else f"no approval gate or window needed for {spec.environment}")
    decide(report, "check", problems, check_ok, outcomes)

    # report: readiness and approval status
    readiness = {step: (r.status if (r := ctx.earlier(step)) else "not run")
                 for step in ("readiness", "risk_assessment", "release_plan")}
    report.facts.update(approval=approval, window_open=end_at is not None,
                        window_end=end_at.isoformat() if end_at else None, readiness=readiness,
                        audiences=sorted(stakeholders))
    _deliver_notifications(ctx, report, outcomes, stakeholders, channels, result, skipped, now, end_at, estimate,
                           risk_level)


def _deliver_notifications(ctx: DutyContext, report: ReportBuilder, outcomes: Outcomes,
                           stakeholders: dict[str, list[str]], channels: list[dict[str, Any]],
                           result: notify.NotificationResult, skipped: list[Any], now: datetime,
                           end_at: datetime | None, estimate: PlanEstimate | None, risk_level: str | None) -> None:
    spec = ctx.spec
    head = {"service": spec.service, "version": ctx.version, "environment": spec.environment}
    deliveries = [{"channel": e.data.get("field") or e.source, "outcome": "delivered",
                   "evidence": f"{e.kind} {e.source} sha256 {str(e.sha256)[:12]}"} for e in result.delivered]
    deliveries += [{"channel": f.field, "outcome": "FAILED", "evidence": f.error} for f in result.failures]
    deliveries += [{"channel": s.field, "outcome": "skipped", "evidence": s.describe()} for s in skipped]
    message = result.delivered[0].data.get("message", {}) if result.delivered else {
        "subject": result.subject, "audiences": sorted(stakeholders)}
    window = spec.change_window
    evaluation = {"describe": describe_window(window) if window else None, "now": now.isoformat(),
                  "window_end": end_at.isoformat() if end_at else None,
                  "estimated_end": estimate.estimated_end.isoformat() if estimate else None,
                  "next": [(s.isoformat(), e.isoformat()) for s, e in next_openings(window, now)] if window else [],
                  "check": f"{'pass' if outcomes['check'][0] else 'FAIL'}: {outcomes['check'][1]}"}
    gates = {"approvers": list(spec.approvals.approvers) if spec.approvals else [],
             "required": spec.approvals.required if spec.approvals else 0, "risk_level": risk_level,
             "high_risk_approval": high_risk_gate(spec.approvals, spec.environment),
             "waivers": (r.facts.get("waivers") or []) if (r := ctx.earlier("readiness")) else []}
    documents = (
        ("Stakeholder notifications", "stakeholder-notifications.md",
         notifications_markdown(head, stakeholders, channels, message, deliveries, outcomes)),
        ("Change windows", "change-windows.md", change_window_markdown(head, window.model_dump() if window else None,
                                                                       evaluation)),
        ("Approval gates", "approval-gates.md", approval_gates_markdown(head, gates, outcomes["check"])),
    )
    ctx.paths.workdir.mkdir(parents=True, exist_ok=True)
    for name, file_name, text in documents:
        path = ctx.paths.workdir / file_name
        path.write_text(text, encoding="utf-8")
        report.deliver(name, path)


# ------------------------------------------------------------------------------ verification matrix
PROOFS: dict[str, ItemProof] = {
    "release_plan.read": ItemProof(
        evidence="the release history file of this DAG (sha256, every line parsed as a HistoryEntry) and the plan "
                 "built from the DAG's task records (plan_release), written and read back",
        oracle="the release history the release gates of earlier runs appended (ReleaseHistory), and the DAG's "
               "phases from plan_release(spec)",
        fails_when="a line of the release history is not a history entry (truncated JSON, a duration that is not "
                   "a number): the estimates would rest on it",
        test=f"{TEST_FILE}::test_release_plan_read_fails_on_a_corrupt_history_line"),
    "release_plan.verify": ItemProof(
        evidence="the approvers and, per phase, the estimate with its source and the number of measured runs",
        oracle="the spec's approvals and planning.default_phase_minutes, and the phase_seconds measured by "
               "earlier runs in the release history (every measured phase must be estimated from them). Whether "
               "the approvers are Airflow users or roles is not checked yet: human approval comes with issue 7",
        fails_when="the spec assigns no approvers (a staging spec without approvals)",
        test=f"{TEST_FILE}::test_release_plan_fails_without_approvers"),
    "release_plan.check": ItemProof(
        evidence="the run's clock, the plan's estimated total and end, the change window's close",
        oracle="the wall clock at the run's time evaluated against the spec's change_window (days, hours, time zone)",
        fails_when="the estimated end falls after the change window closes (a 09:00-10:00 window at 09:50 with a "
                   "40-minute plan)",
        test=f"{TEST_FILE}::test_release_plan_fails_when_estimate_ends_after_window"),
    "notifications.read": ItemProof(
        evidence="the stakeholders per audience with each recipient checked as an address, the channels, and the "
                 "estimated end and risk level handed on by release_plan and risk_assessment",
        oracle="the spec's notifications.stakeholders, and the release_plan and risk_assessment reports of this run",
        fails_when="a recipient is not an e-mail address, @handle or #channel (product.example.com)",
        test=f"{TEST_FILE}::test_notifications_read_fails_on_a_recipient_that_is_no_address"),
    "notifications.verify": ItemProof(
        evidence="each channel's answer to the release-starting message: a file channel's line read back with the "
                 "file's sha256, a webhook receiver's confirming answer; failures and skipped channels",
        oracle="the channels themselves (the file as read back, the receiver's answer) and the spec's audiences: "
               "every channel delivers a message addressed to every audience and recipient",
        fails_when="a channel cannot take the message (its file path is a folder)",
        test=f"{TEST_FILE}::test_notifications_fail_when_channel_cannot_be_written"),
    "notifications.check": ItemProof(
        evidence="the approval gates (approvers, required, distinct) and the change window evaluated at the run's "
                 "clock, with the release plan's estimated end and the risk level",
        oracle="the wall clock against the spec's change_window; the spec's approvals; the release_plan and "
               "risk_assessment reports of this run. The approvers' sign-off itself is collected later, at the "
               "approval gate after phase 4 (Airflow human-in-the-loop, gendev_release.approvals)",
        fails_when="the run starts outside the change window (a weekday window on a Saturday)",
        test=f"{TEST_FILE}::test_notifications_fail_outside_change_window"),
}
