"""Phase 2, release planning and coordination: the release plan and stakeholder notifications.

``release_plan`` (project-planner) writes the plan: the 8 phases with estimated minutes, taken
from the ``phase_seconds`` of earlier runs in the history file when there are any, else from
``planning.default_phase_minutes``; the estimated end must fall inside the current change window.

``notifications`` (stakeholder-communicator) sends "release starting" through every channel of the
spec (each delivery read back as evidence; a failed channel fails the item, the others' evidence
stays), writes the communication plan and checks that production has approval gates and an open
change window right now.

Change windows: ``days`` names the day a window *starts* on; ``end`` is the last minute inside
the window (``02:00`` means until 02:00:59, ``23:59`` until midnight), and an ``end`` at or before
``start`` means the window crosses midnight (22:00-02:00). Back-to-back windows (00:00-23:59 on
consecutive days) join into one.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from gendev_release import notify
from gendev_release.catalogue import PHASES
from gendev_release.duties.base import duty
from gendev_release.facts import PlanEstimate, handed_on
from gendev_release.report import Evidence, ReportBuilder, utcnow

if TYPE_CHECKING:
    from gendev_release.context import DutyContext
    from gendev_release.spec import ChangeWindow

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


# ------------------------------------------------------------------------------ change window
def _bounds(window: ChangeWindow, day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """UTC start and (exclusive) end of the window that starts on local ``day``."""
    start_t, end_t = time.fromisoformat(window.start), time.fromisoformat(window.end)
    start = datetime.combine(day, start_t, tzinfo=tz)
    end_day = day + timedelta(days=1) if end_t <= start_t else day
    end = datetime.combine(end_day, end_t, tzinfo=tz) + timedelta(minutes=1)
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def window_end(window: ChangeWindow, now: datetime) -> datetime | None:
    """When the change window that is open at ``now`` closes (timezone.utc); None when ``now`` is outside it.

    :param window: the spec's change window (days, start, end, timezone).
    :param now: an aware datetime; a naive one is taken as UTC.
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    tz = ZoneInfo(window.timezone)
    today = now.astimezone(tz).date()
    allowed = set(window.days)
    for offset in (-1, 0):  # a window that started yesterday may still be open (crosses midnight)
        day = today + timedelta(days=offset)
        if WEEKDAYS[day.weekday()] not in allowed:
            continue
        start, end = _bounds(window, day, tz)
        if not start <= now < end:
            continue
        for _ in range(7):  # join back-to-back windows; after a week it is simply always open
            day += timedelta(days=1)
            if WEEKDAYS[day.weekday()] not in allowed:
                break
            next_start, next_end = _bounds(window, day, tz)
            if next_start > end:
                break
            end = max(end, next_end)
        return end
    return None


def describe_window(window: ChangeWindow) -> str:
    return f"{','.join(window.days)} {window.start}-{window.end} {window.timezone}"


# ------------------------------------------------------------------------------------ estimates
def read_history(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The history file's entries and the number of lines that were not JSON objects."""
    if not path.exists():
        return [], 0
    entries, bad = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(entry, dict):
            entries.append(entry)
        else:
            bad += 1
    return entries, bad


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


def plan_markdown(plan: dict[str, Any]) -> str:
    lines = [f"# Release plan: {plan['service']} {plan['version']}", "",
             f"- Run: `{plan['run_id']}`", f"- Environment: {plan['environment']}",
             f"- Strategy: {plan['strategy']}", f"- Created: {plan['created_at']}",
             f"- Estimated total: {plan['total_minutes']:.2f} min, estimated end {plan['estimated_end']}",
             f"- Change window: {plan['change_window'] or 'none'} (closes {plan['window_end'] or 'n/a'})",
             f"- Approvers: {', '.join(plan['approvers']) or 'none'} (required {plan['required_approvals']})",
             "", "| # | phase | steps | estimate (min) | from |", "| --- | --- | --- | --- | --- |"]
    for phase in plan["phases"]:
        source = f"history ({phase['runs']} runs)" if phase["source"] == "history" else "default"
        lines.append(f"| {phase['number']} | {phase['title']} | {', '.join(phase['steps'])} | "
                     f"{phase['estimated_minutes']:.2f} | {source} |")
    return "\n".join(lines) + "\n"


def _valid_estimate(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@duty("release_plan")
def release_plan(ctx: DutyContext, report: ReportBuilder) -> None:
    spec = ctx.spec
    now = utcnow()
    history, bad_lines = read_history(ctx.paths.history_file)
    if bad_lines:
        report.findings.append(f"{bad_lines} unreadable line(s) in {ctx.paths.history_file} were ignored")
    estimates = estimate_phases(history, spec.planning.default_phase_minutes)
    total = round(sum(e["minutes"] for e in estimates.values()), 3)
    end = window_end(spec.change_window, now) if spec.change_window else None
    plan = {
        "service": spec.service, "version": ctx.version, "run_id": ctx.run_id, "environment": spec.environment,
        "strategy": ctx.params.strategy.value, "created_at": now.isoformat(),
        "phases": [{"id": p.id, "number": p.number, "title": p.title, "steps": [s.id for s in p.steps],
                    "estimated_minutes": estimates[p.id]["minutes"], "source": estimates[p.id]["source"],
                    "runs": estimates[p.id]["runs"]} for p in PHASES],
        "total_minutes": total, "estimated_end": (now + timedelta(minutes=total)).isoformat(),
        "change_window": describe_window(spec.change_window) if spec.change_window else None,
        "window_end": end.isoformat() if end else None,
        "approvers": list(spec.approvals.approvers) if spec.approvals else [],
        "required_approvals": spec.approvals.required if spec.approvals else 0,
        "history_runs": len(history),
    }

    # read: the plan is written, read back and delivered
    path = ctx.paths.workdir / "release-plan.json"
    markdown = path.with_suffix(".md")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plan, indent=2), encoding="utf-8")
    markdown.write_text(plan_markdown(plan), encoding="utf-8")
    try:
        reread = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        report.fail("read", f"release plan {path} does not read back as JSON: {exc}")
        reread = {}
    phases = reread.get("phases", []) if isinstance(reread, dict) else []
    report.evidence("read", Evidence.file(path, summary=f"release plan: {len(phases)} phases, {total:.2f} min",
                                          phases=len(phases)))
    report.evidence("read", Evidence.file(markdown))
    report.deliver("release plan", path)
    report.deliver("release plan (Markdown)", markdown)
    if reread:
        ids = [p.get("id") for p in phases]
        report.verdict("read", ids == [p.id for p in PHASES],
                       f"release plan {path.name} lists the {len(ids)} phases" if ids == [p.id for p in PHASES]
                       else f"release plan {path} lists phases {ids}, expected the 8 seed phases")
    report.facts.update(plan_path=str(path), total_minutes=total, estimates=estimates,
                        estimated_end=plan["estimated_end"], window_end=plan["window_end"])

    # verify: approvers assigned, every phase estimated
    problems = []
    if not spec.approvals or not spec.approvals.approvers:
        problems.append("no approvers assigned: add approvals.approvers to the spec")
    missing = [p["id"] for p in phases if not _valid_estimate(p.get("estimated_minutes"))]
    if missing or len(phases) != len(PHASES):
        problems.append(f"phases without a valid estimate: {', '.join(missing) or 'plan incomplete'}")
    report.evidence("verify", Evidence(kind="computed", source=str(path),
                                       summary=f"approvers {plan['approvers']}, {len(phases)} phases estimated",
                                       data={"approvers": plan["approvers"], "required": plan["required_approvals"],
                                             "estimates": {p["id"]: p.get("estimated_minutes") for p in phases}}))
    report.verdict("verify", not problems, "; ".join(problems) or
                   f"{len(plan['approvers'])} approver(s) assigned; every phase estimated")

    # check: the estimated end falls before the change window closes
    estimated_end = now + timedelta(minutes=total)
    report.evidence("check", Evidence(kind="computed", source="change window vs estimate",
                                      summary=f"now {now.isoformat()}, +{total:.2f} min, "
                                              f"window end {plan['window_end']}",
                                      data={"now": now.isoformat(), "total_minutes": total,
                                            "estimated_end": estimated_end.isoformat(),
                                            "change_window": plan["change_window"], "window_end": plan["window_end"],
                                            "environment": spec.environment}))
    report.metrics["estimated_minutes"] = total
    if spec.change_window is None:
        feasible = spec.environment != "production"
        detail = (f"no change window; allowed for environment {spec.environment}" if feasible
                  else "production release without a change_window in the spec")
    elif end is None:
        feasible = False
        detail = f"now ({now.isoformat()}) is outside the change window {plan['change_window']}"
    else:
        feasible = estimated_end <= end
        detail = (f"estimated end {estimated_end.isoformat()} is before the window end {end.isoformat()}" if feasible
                  else f"estimated end {estimated_end.isoformat()} ({total:.2f} min) is after the change window "
                       f"{plan['change_window']} closes at {end.isoformat()}")
    report.facts["feasible"] = feasible
    report.verdict("check", feasible, detail)


# -------------------------------------------------------------------------------- notifications
def communication_plan(ctx: DutyContext) -> str:
    spec = ctx.spec
    lines = [f"# Communication plan: {spec.service} {ctx.version}", "",
             "Channels: " + ", ".join(f"{c.kind} ({c.path})" for c in spec.notifications.all_channels), "",
             "| audience | recipients |", "| --- | --- |"]
    lines += [f"| {audience} | {', '.join(recipients)} |"
              for audience, recipients in sorted(spec.notifications.stakeholders.items())]
    lines += ["", "| event | when | audiences | severity |", "| --- | --- | --- | --- |",
              "| release_starting | phase 2, before the build | all | info |",
              "| release_succeeded | after the release gate | all | info |",
              "| release_aborted | a gate failed before traffic moved | all | warning |",
              "| release_rolled_back | a gate failed after traffic moved | all | critical |", ""]
    if spec.approvals:
        lines.append(f"Approval gate: {spec.approvals.required} of {', '.join(spec.approvals.approvers)}.")
    else:
        lines.append("Approval gate: none.")
    lines.append(f"Change window: {describe_window(spec.change_window) if spec.change_window else 'none'}.")
    return "\n".join(lines) + "\n"


@duty("notifications")
def notifications(ctx: DutyContext, report: ReportBuilder) -> None:
    spec = ctx.spec
    stakeholders = spec.notifications.stakeholders

    # read: stakeholders per audience
    empty = sorted(a for a, recipients in stakeholders.items() if not recipients)
    report.evidence("read", Evidence(kind="computed", source="notifications.stakeholders",
                                     summary=f"{len(stakeholders)} audience(s), "
                                             f"{len({r for v in stakeholders.values() for r in v})} recipient(s)",
                                     data={"stakeholders": {a: list(r) for a, r in stakeholders.items()},
                                           "channels": [c.model_dump() for c in spec.notifications.all_channels]}))
    if not stakeholders:
        report.fail("read", "notifications.stakeholders names no audience")
    else:
        report.verdict("read", not empty, f"audiences without recipients: {', '.join(empty)}" if empty
                       else f"audiences: {', '.join(sorted(stakeholders))}")

    # verify: "release starting" delivered through the channel, communication plan written
    plan_path = ctx.paths.workdir / "communication-plan.md"
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    plan_path.write_text(communication_plan(ctx), encoding="utf-8")
    report.deliver("communication plan", plan_path)
    estimate, _ = handed_on(ctx, PlanEstimate)
    end = estimate.estimated_end.isoformat() if estimate else None
    result = notify.send(
        spec, ctx.paths.home, event="release_starting", severity="info",
        subject=f"{spec.service} {ctx.version} release starting",
        body=f"Release {ctx.version} of {spec.service} ({spec.environment}, {ctx.params.strategy.value}) starts "
             f"now" + (f"; estimated end {end}" if end else "") + ".",
        run_id=ctx.run_id, version=ctx.version)
    # every channel's outcome is kept: a failed one fails the item, the others' deliveries stay on record
    for delivery in result.delivered:
        report.evidence("verify", delivery)
    for failure in result.failures:
        report.evidence("verify", failure.evidence())
    report.evidence("verify", Evidence.file(plan_path))
    report.facts["notification"] = {"delivered": [e.source for e in result.delivered],
                                    "failed": [f.model_dump() for f in result.failures]}
    if result.ok:
        report.verdict("verify", True, result.summary)
    else:
        report.fail("verify", "release-starting notification not delivered to "
                    + "; ".join(f.describe() for f in result.failures)
                    + (f" (delivered to {', '.join(e.data['channel_path'] for e in result.delivered)})"
                       if result.delivered else ""))

    # check: approval gates and change window
    now = utcnow()
    problems = []
    if spec.environment == "production":
        if spec.approvals is None:
            problems.append("production release without approvals in the spec")
        if spec.change_window is None:
            problems.append("production release without a change_window in the spec")
    end_at = window_end(spec.change_window, now) if spec.change_window else None
    if spec.change_window is not None and end_at is None:
        problems.append(f"now ({now.isoformat()}) is outside the change window {describe_window(spec.change_window)}")
    approval = {"approvers": list(spec.approvals.approvers) if spec.approvals else [],
                "required": spec.approvals.required if spec.approvals else 0,
                "gate": "configured" if spec.approvals else "none"}
    report.evidence("check", Evidence(kind="computed", source="approvals and change_window",
                                      summary=f"approvals {approval['gate']}, window "
                                              f"{'open until ' + end_at.isoformat() if end_at else 'closed or none'}",
                                      data={"environment": spec.environment, "approvals": approval,
                                            "change_window": spec.change_window.model_dump()
                                            if spec.change_window else None,
                                            "now": now.isoformat(),
                                            "window_end": end_at.isoformat() if end_at else None}))
    report.verdict("check", not problems, "; ".join(problems) or
                   (f"approvals configured; change window open until {end_at.isoformat()}" if end_at
                    else f"no approval gate or window needed for {spec.environment}"))

    # report: readiness and approval status
    readiness = {step: (r.status if (r := ctx.earlier(step)) else "not run")
                 for step in ("readiness", "risk_assessment", "release_plan")}
    report.facts.update(approval=approval, window_open=end_at is not None,
                        window_end=end_at.isoformat() if end_at else None, readiness=readiness,
                        audiences=sorted(stakeholders))
