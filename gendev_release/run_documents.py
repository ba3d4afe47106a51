"""Documents written from what this run's steps recorded: deployment documentation and lessons learned.

The deployment documentation (:func:`render_deployment`) is built from the reports of phases 4-5
(provisioning's staged slot and plan, hardening's controls, execute_strategy's switch, health
results, failed requests and rollback rehearsal, the monitoring and smoke steps where they ran) and
from the target's state read again when it is written; :func:`deployment_problems` says where the
two disagree (the documentation would describe a deployment that is not what serves).

Lessons learned (:func:`render_lessons`) come from the steps' findings and blockers, the earlier
attempts of steps in this run (their reports moved aside in the evidence store), the run record's
attempts, and each phase's duration against the mean of earlier runs in the history file.
No Airflow import here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gendev_release.catalogue import PHASES
from gendev_release.report import AgentReport
from gendev_release.targets.base import SlotInfo, TargetStatus

#: The steps whose reports document the deployment (phases 4-6); execute_strategy is required.
DEPLOYMENT_STEPS: tuple[str, ...] = ("provisioning", "hardening", "execute_strategy", "monitoring_alerts",
                                     "smoke_tests")
#: A phase this much slower than its historical mean is a lesson (ratio of this run to the mean).
SLOWER_RATIO = 1.5


def _slot(value: Any) -> str:
    if isinstance(value, SlotInfo):
        value = value.as_dict()
    if not isinstance(value, Mapping) or not value.get("slot"):
        return "none"
    return f"slot {value.get('slot')} version {value.get('version')} at {value.get('url')}"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


# =========================================================================== deployment document
def deployment_problems(version: str, reports: Mapping[str, AgentReport | None], status: TargetStatus | None,
                        status_error: str | None) -> list[str]:
    """Where the deployment evidence and the target's state now disagree (empty when they agree).

    :param version: the run's version, which must be the one serving.
    :param reports: this run's reports of :data:`DEPLOYMENT_STEPS` (None for a step that did not run).
    :param status: the target's state read when the document is written (None when unreadable).
    """
    problems = []
    strategy = reports.get("execute_strategy")
    recorded = _mapping(strategy.facts.get("active")) if strategy is not None else {}
    if strategy is None:
        problems.append("no execute_strategy report in this run: there is no deployment to document")
    elif not recorded.get("slot"):
        problems.append("the execute_strategy report records no active slot (facts['active']): traffic was "
                        "never confirmed on the new version")
    elif recorded.get("version") != version:
        problems.append(f"execute_strategy recorded {_slot(recorded)} active, not version {version}")
    if status is None:
        problems.append(f"the target's state cannot be read: {status_error}")
        return problems
    active = status.active
    if active is None:
        problems.append(f"the target serves nothing now, not {version}")
    elif active.version != version:
        problems.append(f"the target serves {active.version} on slot {active.slot} now, not {version}: the "
                        "deployment documentation would describe a version that does not serve")
    elif recorded.get("slot") and active.slot != recorded.get("slot"):
        problems.append(f"the target serves {version} on slot {active.slot}, but execute_strategy recorded slot "
                        f"{recorded.get('slot')}")
    return problems


def render_deployment(*, service: str, version: str, environment: str, strategy: str, run_id: str,
                      target_kind: str, read_at: str, reports: Mapping[str, AgentReport | None],
                      status: TargetStatus | None, problems: Sequence[str]) -> str:
    """The deployment documentation: the target now, then what phases 4-6 recorded, step by step."""
    lines = [f"# Deployment documentation: {service} {version}", "",
             f"- Environment: {environment}", f"- Strategy: {strategy}", f"- Target: {target_kind}",
             f"- Run: `{run_id}`", "", f"## Target state (read {read_at})", ""]
    if status is None:
        lines.append("- unreadable")
    else:
        lines += [f"- Router: {status.router_url or 'none'}", f"- Active: {_slot(status.active)}",
                  f"- Kept for rollback: {_slot(status.previous)}", f"- Staged: {_slot(status.staged)}",
                  f"- Switched by run: `{status.switched_by_run or '-'}`"]
    lines += ["", "## Provisioning (phase 4)", ""]
    provisioning = reports.get("provisioning")
    if provisioning is None:
        lines.append("- no report in this run")
    else:
        planned = _mapping(provisioning.facts.get("planned_changes"))
        lines += [f"- Status: {provisioning.status}", f"- Staged: {_slot(provisioning.facts.get('staged'))}",
                  f"- Planned changes: {planned.get('total', 'unknown')} {dict(_mapping(planned.get('by_action')))}",
                  f"- Destructive changes: {', '.join(map(str, planned.get('destructive') or [])) or 'none'}"]
    lines += ["", "## Hardening (phase 4)", ""]
    hardening = reports.get("hardening")
    if hardening is None:
        lines.append("- no report in this run")
    else:
        controls = _mapping(hardening.facts.get("controls"))
        lines += [f"- Status: {hardening.status}",
                  f"- Compliance: {hardening.metrics.get('compliance_pct', 'unknown')} %"]
        lines += [f"- Control {name}: {'passed' if _mapping(c).get('passed') else 'FAILED'} "
                  f"({_mapping(c).get('detail', '')})" for name, c in controls.items()]
    lines += ["", "## Deployment (phase 5)", ""]
    strategy_report = reports.get("execute_strategy")
    if strategy_report is None:
        lines.append("- no report in this run")
    else:
        facts, metrics = strategy_report.facts, strategy_report.metrics
        rehearsal = _mapping(facts.get("rollback_rehearsal"))
        by_path = _mapping(facts.get("failed_switch_requests_by_path"))
        lines += [f"- Status: {strategy_report.status}", f"- Serving before: {_slot(facts.get('active_before'))}",
                  f"- Serving after: {_slot(facts.get('active'))}",
                  f"- Traffic moved: {'yes' if facts.get('traffic_moved') else 'no'}",
                  f"- Health checks after the switch: {metrics.get('health_pass_pct', 'unknown')} % passing",
                  f"- Failed requests during the switch: {metrics.get('failed_switch_requests', 'not measured')}"
                  + (f" ({', '.join(f'{p}: {n}' for p, n in by_path.items())})" if by_path else ""),
                  f"- Rollback rehearsed: {'yes' if rehearsal.get('rehearsed') else 'no'}"
                  + (f" ({'; '.join(map(str, rehearsal.get('problems') or []))})" if rehearsal.get('problems')
                     else ""),
                  f"- Strategy log: `{facts.get('strategy_log', 'none')}`"]
    lines += ["", "## Monitoring and smoke tests", ""]
    for step_id, label, metric, unit in (("monitoring_alerts", "Monitoring", "alert_rules", "alert rule(s)"),
                                         ("smoke_tests", "Smoke tests", "smoke_tests", "test(s)")):
        step_report = reports.get(step_id)
        lines.append(f"- {label}: " + (f"{step_report.status}, {step_report.metrics.get(metric, 0):g} {unit}"
                                       if step_report is not None else "no report in this run"))
    lines += ["", "## Agreement with the target", ""]
    lines += [f"- PROBLEM: {p}" for p in problems] or [f"- the target serves {version} on the slot the deployment "
                                                       "step recorded"]
    return "\n".join(lines) + "\n"


# =============================================================================== lessons learned
@dataclass
class EarlierAttempt:
    """A report of this run that a re-run moved aside (``attempts/<step>.<n>.json``)."""

    step_id: str
    stored: str
    status: str
    blockers: list[str] = field(default_factory=list)


def phase_seconds(reports: Mapping[str, AgentReport]) -> dict[str, float]:
    """Seconds per phase in this run: the sum of its steps' durations (steps without a report left out)."""
    out: dict[str, float] = {}
    for phase in PHASES:
        spans = [(reports[s.id].finished_at - reports[s.id].started_at).total_seconds()
                 for s in phase.steps if s.id in reports]
        if spans:
            out[phase.id] = round(sum(spans), 3)
    return out


def history_means(entries: Sequence[Mapping[str, Any]], run_id: str) -> dict[str, tuple[float, int]]:
    """Mean seconds per phase over earlier runs' ``phase_seconds`` (finite, positive), with the count."""
    samples: dict[str, list[float]] = {}
    for entry in entries:
        if entry.get("run_id") == run_id:
            continue
        for phase_id, seconds in _mapping(entry.get("phase_seconds")).items():
            if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and math.isfinite(seconds) \
                    and seconds > 0:
                samples.setdefault(str(phase_id), []).append(float(seconds))
    return {phase: (sum(values) / len(values), len(values)) for phase, values in samples.items()}


def render_lessons(*, service: str, version: str, run_id: str, reports: Mapping[str, AgentReport],
                   history: Sequence[Mapping[str, Any]], history_file: str, attempts: Sequence[EarlierAttempt],
                   run_attempts: Sequence[Mapping[str, Any]]) -> tuple[str, list[str]]:
    """Lessons learned from this run's evidence; also returns the follow-ups it derived."""
    follow_ups: list[str] = []
    lines = [f"# Lessons learned: {service} {version}", "", f"Run `{run_id}`: {len(reports)} step report(s) so far.",
             "", "## Steps", "", "| step | status | seconds | blockers |", "| --- | --- | --- | --- |"]
    for step_id, report in reports.items():
        seconds = (report.finished_at - report.started_at).total_seconds()
        lines.append(f"| {step_id} | {report.status} | {seconds:.2f} | {len(report.blocking_issues)} |")
        if report.status != "passed":
            follow_ups.append(f"{step_id} did not pass: {'; '.join(report.blocking_issues) or 'see its report'}")
    lines += ["", "## Durations against history", ""]
    means = history_means(history, run_id)
    this_run = phase_seconds(reports)
    if not means:
        lines.append(f"- no earlier run with phase durations in {history_file}: nothing to compare with yet")
    for phase in PHASES:
        if phase.id not in this_run:
            continue
        seconds = this_run[phase.id]
        if phase.id not in means:
            lines.append(f"- {phase.id}: {seconds:.2f} s (no history)")
            continue
        mean, runs = means[phase.id]
        change = 100.0 * (seconds - mean) / mean
        lines.append(f"- {phase.id}: {seconds:.2f} s against a mean of {mean:.2f} s over {runs} earlier run(s) "
                     f"({change:+.0f} %)")
        if seconds > SLOWER_RATIO * mean:
            follow_ups.append(f"{phase.id} took {seconds:.2f} s, {seconds / mean:.1f}x its mean of {mean:.2f} s: "
                              "find out why before the next release")
    outcomes = [str(e.get("outcome")) for e in history if e.get("run_id") != run_id][-10:]
    if outcomes:
        failed = [o for o in outcomes if o not in ("success", "dry_run")]
        lines.append(f"- last {len(outcomes)} earlier attempt(s): {len(outcomes) - len(failed)} succeeded, "
                     f"{len(failed)} did not ({', '.join(sorted(set(failed))) or 'none'})")
    lines += ["", "## Failed attempts", ""]
    for attempt in attempts:
        lines.append(f"- earlier attempt of {attempt.step_id} (`{attempt.stored}`): {attempt.status}"
                     + (f": {'; '.join(attempt.blockers)}" if attempt.blockers else ""))
        if attempt.status != "passed":
            follow_ups.append(f"{attempt.step_id} needed a re-run in this release: "
                              f"{'; '.join(attempt.blockers[:2]) or attempt.status}")
    for run_attempt in run_attempts:
        if run_attempt.get("failed_tasks"):
            lines.append(f"- run attempt {run_attempt.get('number')}: {run_attempt.get('outcome') or 'failed'} at "
                         f"{', '.join(map(str, run_attempt.get('failed_tasks') or []))}")
    if lines[-1] == "":
        lines.append("- none: every step of this run passed at its first attempt")
    lines += ["", "## Findings", ""]
    findings = [f"{step_id}: {finding.strip().splitlines()[0]}" for step_id, report in reports.items()
                for finding in report.findings if finding.strip()]
    lines += [f"- {finding}" for finding in findings] or ["- none recorded"]
    lines += ["", "## Follow-ups", ""]
    lines += [f"- {item}" for item in follow_ups] or ["- none: no failed step, no earlier failed attempt, no phase "
                                                      f"over {SLOWER_RATIO:g}x its historical mean"]
    return "\n".join(lines) + "\n", follow_ups
