"""The deliverables of phase 1 as text: each a pure function of what the readiness and risk steps observed.

No duty is registered here. :mod:`gendev_release.duties.preparation` gathers the evidence, decides
the items and passes the observations and the items' outcomes in; what comes out is written as a
file of its own and delivered (``Deployment readiness``, ``Resource verification``, ``Risk
assessment``, ``Dependency validation``, ``Backup strategy``).
"""

from __future__ import annotations

import json
from typing import Any

from gendev_release.report import ItemKind, ReportBuilder

#: ``kind -> (passed, detail)`` of the items read, verify and check.
Outcomes = dict[str, tuple[bool, str]]


def decide(report: ReportBuilder, kind: ItemKind, problems: list[str], ok_detail: str, outcomes: Outcomes) -> bool:
    """Record the item's verdict (failed when there are problems) and its outcome for the step's documents."""
    detail = "; ".join(problems) or ok_detail
    passed = report.verdict(kind, not problems, detail)
    outcomes[kind] = (passed, detail if passed or problems else f"no evidence gathered: {detail}")
    return passed


def _mark(passed: bool) -> str:
    return "pass" if passed else "FAIL"


def items_section(step_id: str, outcomes: Outcomes) -> list[str]:
    """The items' outcomes and, for each failed one, the blocking issue it raises."""
    lines = ["## Items", ""]
    lines += [f"- {step_id}.{kind}: {_mark(passed)}: {detail}" for kind, (passed, detail) in outcomes.items()]
    blockers = [f"- {step_id}.{kind}: {detail}" for kind, (passed, detail) in outcomes.items() if not passed]
    return [*lines, "", "## Blocking issues", "", *(blockers or ["- none"])]


def readiness_markdown(head: dict[str, Any], documents: list[dict[str, Any]], table: dict[str, Any],
                       drift: list[str], resources: dict[str, Any], outcomes: Outcomes) -> str:
    """The deployment readiness report: documents, standards, target and resources, items, blockers.

    :param head: ``service``, ``version``, ``run_id``, ``environment``, ``active_version``.
    """
    lines = [f"# Deployment readiness: {head['service']} {head['version']}", "",
             f"- Run: `{head['run_id']}`, environment {head['environment']}",
             f"- Active version: {head['active_version'] or 'none (first deployment)'}", "",
             "## Documents", "", "| field | file | bytes | sha256 | sections | problems |",
             "| --- | --- | --- | --- | --- | --- |"]
    for doc in documents:
        held = ", ".join(f"{want} -> {got or 'missing'}" for want, got in doc["sections"].items()) or "-"
        size = "-" if doc["bytes"] is None else doc["bytes"]
        lines.append(f"| {doc['field']} | {doc['path']} | {size} | {(doc['sha256'] or '-')[:12]} | {held} | "
                     f"{'; '.join(doc['problems']) or 'none'} |")
    lines += ["", "## Standards", ""]
    for row in table["relaxations"]:
        waiver = row["waiver"]
        lines.append(f"- {row['field']}: {row['problem']}; "
                     + (f"waived by {waiver['approved_by']}: {waiver['reason']}" if waiver else "NOT waived"))
    if not table["relaxations"]:
        lines.append("- every gate meets the standard")
    lines += [f"- {line}" for line in drift] or ["- the spec file states the standards this run holds"]
    lines += ["", "## Target and resources", ""]
    target = resources.get("target") or {}
    lines.append(f"- target: {json.dumps(target, default=str)}")
    lines += [f"- health {h['check']} of the active version: {_mark(h['passed'])} ({h['reason']})"
              for h in resources.get("active_health", [])]
    disk = resources.get("disk") or {}
    if disk:
        lines.append(f"- disk: {disk['free_mb']} MB free under {disk['path']}, {disk['min_free_disk_mb']} MB "
                     f"required: {_mark(disk['passed'])}")
    port = resources.get("loopback_port") or {}
    if port:
        lines.append(f"- loopback port: {port.get('port') or port.get('error')}: {_mark(port['passed'])}")
    return "\n".join([*lines, "", *items_section("readiness", outcomes)]) + "\n"


def risk_markdown(head: dict[str, Any], change: dict[str, Any], assessment: dict[str, Any],
                  outcomes: Outcomes) -> str:
    """The risk assessment: the change set, the rules that fired with their mitigations, the level.

    :param change: ``repo``, ``paths``, ``from_sha``, ``source_sha``, ``commits`` (assessed, or None),
        ``total`` (in the range), ``files`` (changed).
    :param assessment: ``score``, ``level``, ``fired``, ``approval`` (text or None).
    """
    commits = change["commits"]
    lines = [f"# Risk assessment: {head['service']} {head['version']}", "",
             f"- Change set: {(change['from_sha'] or 'first release')[:12]}..{str(change['source_sha'] or '?')[:12]} "
             f"in {change['repo']}" + (f" (paths {', '.join(change['paths'])})" if change["paths"] else ""),
             f"- Commits assessed: {'unknown' if commits is None else commits} of {change['total']}; "
             f"files changed: {change['files']}",
             f"- Score {assessment.get('score', '-')}, level **{assessment.get('level', 'unknown')}**",
             f"- High-risk approval: {assessment.get('approval') or 'none'}", "",
             "## Rules fired", "", "| rule | points | matched | mitigation |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['rule']} | {r['points']} | {', '.join(r['matched'][:10])} | {r['mitigation']} |"
              for r in assessment.get("fired", [])] or ["| none | 0 | - | - |"]
    return "\n".join([*lines, "", *items_section("risk_assessment", outcomes)]) + "\n"


def backup_markdown(head: dict[str, Any], backup: dict[str, Any], check: tuple[bool, str]) -> str:
    """The backup strategy: what was run, what it wrote, how it was read back, what it restores; or the waiver."""
    lines = [f"# Backup strategy: {head['service']} {head['version']}", ""]
    if "waived" in backup:
        lines.append(f"No backup is taken: waived by {backup['approved_by']}: {backup['waived']}.")
    else:
        rehearsal = backup.get("rehearsal") or {}
        lines += [f"- Command: `{' '.join(backup.get('command') or [])}` (exit {backup.get('exit_code', 'not run')})",
                  f"- Output: `{backup.get('output', '-')}`",
                  f"- sha256: {backup.get('sha256') or '-'} "
                  f"(the command reported {backup.get('tool_sha256') or 'none'})",
                  f"- Restore rehearsal: {rehearsal.get('members', 0)} member(s), "
                  f"{rehearsal.get('restored_bytes', 0)} byte(s) read back; problems: "
                  f"{'; '.join(rehearsal.get('problems', [])) or 'none'}",
                  f"- Secret scan: {backup.get('secret_scan') or 'not run'}"
                  + ("; the backup was removed" if backup.get("removed") else ""),
                  "", "## Files it must restore (risk.backup.contents)", ""]
        for row in backup.get("contents", []):
            same = row["member"] is not None and row["file_sha256"] == row["member_sha256"]
            lines.append(f"- {row['file']}: " + (f"restored byte for byte from {row['member']}" if same else
                                                  f"NOT restored ({row['member'] or 'no such member'})"))
        if not backup.get("contents"):
            lines.append("- none named")
    passed, detail = check
    return "\n".join([*lines, "", f"risk_assessment.check: {_mark(passed)}: {detail}"]) + "\n"
