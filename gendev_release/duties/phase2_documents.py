"""The deliverables of phase 2 as text: each a pure function of what the planning steps observed.

No duty is registered here. :mod:`gendev_release.duties.planning` builds the plan, sends the
notifications, decides the items and passes the results in; what comes out is written as a file of
its own and delivered (``Release plan``, ``Deployment schedule`` as an iCalendar file any calendar
imports, ``Stakeholder notifications``, ``Change windows``, ``Approval gates``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from gendev_release.duties.phase1_documents import Outcomes, items_section


def plan_markdown(plan: dict[str, Any], outcomes: Outcomes) -> str:
    """The release plan: what, when, by whom, phase by phase with its estimate and where it came from."""
    lines = [f"# Release plan: {plan['service']} {plan['version']}", "",
             f"- Run: `{plan['run_id']}`", f"- Environment: {plan['environment']}",
             f"- Strategy: {plan['strategy']}", f"- Created: {plan['created_at']}",
             f"- Estimated total: {plan['total_minutes']:.2f} min, estimated end {plan['estimated_end']}",
             f"- Change window: {plan['change_window'] or 'none'} (closes {plan['window_end'] or 'n/a'})",
             f"- Approvers: {', '.join(plan['approvers']) or 'none'} (required {plan['required_approvals']})",
             f"- History: {plan['history_runs']} earlier run(s) of {plan['dag_id']}", "",
             "## Schedule", "",
             "| # | phase | tasks | estimate (min) | from | planned start | planned end |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for phase in plan["phases"]:
        source = f"history ({phase['runs']} runs)" if phase["source"] == "history" else "default"
        lines.append(f"| {phase['number']} | {phase['title']} | {', '.join(phase['tasks'])} | "
                     f"{phase['estimated_minutes']:.2f} | {source} | {phase['start']} | {phase['end']} |")
    return "\n".join([*lines, "", *items_section("release_plan", outcomes)]) + "\n"


def _ics_text(value: str) -> str:
    """RFC 5545 TEXT: backslash, semicolon, comma and newlines escaped."""
    return value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _ics_time(value: str) -> str:
    return datetime.fromisoformat(value).astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _fold(line: str) -> list[str]:
    """RFC 5545 line folding: at most 75 octets per line, continuations start with a space."""
    data = line.encode("utf-8")
    parts: list[str] = []
    while len(data) > (75 if not parts else 74):  # a continuation line's leading space counts too
        cut = 75 if not parts else 74
        while cut and (data[cut] & 0xC0) == 0x80:  # never split a UTF-8 sequence
            cut -= 1
        parts.append(data[:cut].decode("utf-8"))
        data = data[cut:]
    parts.append(data.decode("utf-8"))
    return [parts[0], *(" " + part for part in parts[1:])]


def schedule_ics(plan: dict[str, Any]) -> str:
    """The deployment schedule as an iCalendar file: one event per phase, and the change window's close."""
    uid = "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in f"{plan['dag_id']}-{plan['run_id']}")
    stamp = _ics_time(plan["created_at"])
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//gendev-release//deployment schedule//EN",
             "CALSCALE:GREGORIAN", "METHOD:PUBLISH"]
    for phase in plan["phases"]:
        start, end = _ics_time(phase["start"]), _ics_time(phase["end"])
        if end <= start:  # a phase measured in milliseconds still gets a visible slot
            end = _ics_time(datetime.fromtimestamp(datetime.fromisoformat(phase["start"]).timestamp() + 1,
                                                   timezone.utc).isoformat())
        source = f"history of {phase['runs']} run(s)" if phase["source"] == "history" else "the spec's default"
        summary = f"{plan['service']} {plan['version']}: phase {phase['number']} {phase['title']}"
        description = (f"tasks: {', '.join(phase['tasks'])}; estimate {phase['estimated_minutes']:.2f} min "
                       f"from {source}")
        lines += ["BEGIN:VEVENT", f"UID:{uid}-{phase['id']}@gendev-release", f"DTSTAMP:{stamp}",
                  f"DTSTART:{start}", f"DTEND:{end}", f"SUMMARY:{_ics_text(summary)}",
                  f"DESCRIPTION:{_ics_text(description)}", "END:VEVENT"]
    if plan["window_end"]:
        close = _ics_time(plan["window_end"])
        lines += ["BEGIN:VEVENT", f"UID:{uid}-window-end@gendev-release", f"DTSTAMP:{stamp}",
                  f"DTSTART:{close}", f"DTEND:{close}",
                  "SUMMARY:" + _ics_text(f"change window {plan['change_window']} closes"), "END:VEVENT"]
    lines.append("END:VCALENDAR")
    return "".join(f"{part}\r\n" for line in lines for part in _fold(line))


def notifications_markdown(head: dict[str, Any], stakeholders: dict[str, list[str]], channels: list[dict[str, Any]],
                           message: dict[str, Any], deliveries: list[dict[str, Any]], outcomes: Outcomes) -> str:
    """The communication plan and what the channels answered when "release starting" was sent."""
    lines = [f"# Stakeholder notifications: {head['service']} {head['version']}", "",
             "## Audiences", "", "| audience | recipients |", "| --- | --- |"]
    lines += [f"| {audience} | {', '.join(recipients)} |" for audience, recipients in sorted(stakeholders.items())]
    lines += ["", "## Channels", "", "| field | kind | channel | min severity |", "| --- | --- | --- | --- |"]
    lines += [f"| {c['field']} | {c['kind']} | {c['channel']} | {c['min_severity']} |" for c in channels]
    lines += ["", "## Events", "", "| event | when | audiences | severity |", "| --- | --- | --- | --- |",
              "| release_starting | phase 2, before the build | all | info |",
              "| release_succeeded | after the release gate | all | info |",
              "| release_aborted | a gate failed before traffic moved | all | warning |",
              "| release_rolled_back | a gate failed after traffic moved | all | critical |",
              "", "## Sent in this run", "", f"- Subject: {message.get('subject')}", f"- Body: {message.get('body')}",
              f"- Audiences: {', '.join(message.get('audiences', []))}", "",
              "| channel | outcome | evidence |", "| --- | --- | --- |"]
    lines += [f"| {d['channel']} | {d['outcome']} | {d['evidence']} |" for d in deliveries] or ["| - | none | - |"]
    return "\n".join([*lines, "", *items_section("notifications", outcomes)]) + "\n"


def change_window_markdown(head: dict[str, Any], window: dict[str, Any] | None, evaluation: dict[str, Any]) -> str:
    """The change window as the run found it: open or not at ``now``, when it closes, the next openings."""
    lines = [f"# Change windows: {head['service']} {head['version']}", "",
             f"- Environment: {head['environment']}"]
    if window is None:
        lines.append("- No change window in the spec" + (": a production release needs one."
                                                           if head["environment"] == "production" else "."))
    else:
        lines += [f"- Window: {evaluation['describe']}",
                  f"- Evaluated at {evaluation['now']}: " + (f"open, closes {evaluation['window_end']}"
                                                              if evaluation["window_end"] else "CLOSED"),
                  f"- The release plan's estimated end: {evaluation['estimated_end'] or 'not handed on'}",
                  "", "## Next openings (UTC)", ""]
        lines += [f"- {start} to {end}" for start, end in evaluation["next"]] or ["- none in the next 7 days"]
    return "\n".join([*lines, "", f"notifications.check: {evaluation['check']}"]) + "\n"


def approval_gates_markdown(head: dict[str, Any], gates: dict[str, Any], check: tuple[bool, str]) -> str:
    """The approval gates the spec sets, their consistency, and what is not collected yet."""
    approvers = gates["approvers"]
    lines = [f"# Approval gates: {head['service']} {head['version']}", "",
             f"- Environment: {head['environment']} (production needs approvals and a change window)",
             f"- Release approvers: {', '.join(approvers) or 'none'}; {gates['required']} approval(s) required, "
             f"{len(set(approvers))} distinct approver(s)",
             f"- Risk level from risk_assessment: {gates['risk_level'] or 'not handed on'}; high-risk approval: "
             f"{gates['high_risk_approval'] or 'none'}",
             f"- Waivers recorded by readiness: {len(gates['waivers'])}",
             *[f"  - {w.get('gate')}: approved by {w.get('approved_by')}: {w.get('reason')}" for w in gates["waivers"]],
             "", "The approvers' sign-off is not collected by this step: people approve in Airflow (human-in-the-"
                 "loop, Required actions) at the approval gate after phase 4 when approvals.required_for asks for it; "
                 "each decision is in the run's evidence (approval-<n>) and the release report. This document "
                 "states the gates the spec sets.",
             "", f"notifications.check: {'pass' if check[0] else 'FAIL'}: {check[1]}"]
    return "\n".join(lines) + "\n"
