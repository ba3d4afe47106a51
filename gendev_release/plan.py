"""Step one of the factory: a release spec becomes a plan of plain task records.

Nothing here imports Airflow, so the plan (task ids, phases, edges, trigger rules) is testable
on its own; :mod:`gendev_release.render` turns it into a DAG.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from gendev_release.approvals import GATE_PHASE as APPROVAL_PHASE
from gendev_release.approvals import gate_tasks
from gendev_release.catalogue import PHASES
from gendev_release.spec import ReleaseSpec
from gendev_release.spec_rules import VERSION_FORMAT, VERSION_MAX_LENGTH, VERSION_PATTERN
from gendev_release.strategies import DECISION_SUFFIX, POST_PROMOTION_TASK, PlannedStep, plan_strategy

TaskKind = Literal["agent", "sensor", "control", "approval", "strategy", "watch"]

START_TASK = "start_release"
GATE_TASK = "release_gate"
DECIDE_TASK = "failure.decide"
ABORT_TASK = "failure.abort"
ROLLBACK_TASK = "failure.rollback"
VERIFY_TASK = "failure.verify_restored"
NOTIFY_TASK = "failure.notify"
WATCHER_TASK = "release_outcome"
HEALTH_SENSOR = "post_switch_health"
#: Before any traffic moves: the new revision's own health, deferred (sensors/health.py PreviewHealthSensor).
PREVIEW_SENSOR = "preview_health"
#: Phase 7's observation window, deferred before the step that judges it (sensors/observation.py).
OBSERVATION_TASK = "observation_window"
OBSERVED_STEP = "observability"
#: The change-window gate: first after start_release, before anything changes (sensors/change_window.py).
WINDOW_TASK = "change_window"
#: People let an emergency run through a closed window (operators/approval.py WindowOverrideOperator).
OVERRIDE_TASK = "change_window_override"

APPROVAL_DOCS = {
    "approval": "People approve in Airflow (Required actions) before traffic moves; a Reject or a timeout aborts.",
    "escalation": "An approval timed out: one person of approvals.escalate_to decides; silence rejects.",
}

# Trigger rules as plain strings (the values of airflow.sdk.TriggerRule).
ALL_SUCCESS = "all_success"
ALL_DONE = "all_done"
ONE_FAILED = "one_failed"


@dataclass(frozen=True)
class PlannedTask:
    """One task of the release DAG. ``task_id`` is the full id (group prefix included)."""

    task_id: str
    kind: TaskKind
    role: str
    group: str | None = None
    agent: str | None = None
    duty: str | None = None
    step_id: str | None = None
    upstream: tuple[str, ...] = ()
    trigger_rule: str = ALL_SUCCESS
    moves_traffic: bool = False
    doc: str = ""


@dataclass(frozen=True)
class PlannedPhase:
    id: str
    number: int
    title: str
    deliverables: tuple[str, ...]
    tasks: tuple[PlannedTask, ...]


@dataclass(frozen=True)
class ReleasePlan:
    dag_id: str
    service: str
    description: str
    spec_data: dict[str, Any]
    spec_path: str | None
    start: PlannedTask
    phases: tuple[PlannedPhase, ...]
    gate: PlannedTask
    failure_branch: tuple[PlannedTask, ...]
    watcher: PlannedTask
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Waits (deferred) for the change window between start and phase 1; None when the spec has no window.
    window_gate: PlannedTask | None = None
    #: Before the window gate: people approve an emergency run outside the window (emergency_override only).
    override_gate: PlannedTask | None = None

    def gates(self) -> list[PlannedTask]:
        """The tasks between start_release and phase 1, in order."""
        return [task for task in (self.override_gate, self.window_gate) if task is not None]

    def all_tasks(self) -> list[PlannedTask]:
        tasks = [self.start, *self.gates()]
        for phase in self.phases:
            tasks.extend(phase.tasks)
        return [*tasks, self.gate, *self.failure_branch, self.watcher]

    def task(self, task_id: str) -> PlannedTask:
        for task in self.all_tasks():
            if task.task_id == task_id:
                return task
        raise KeyError(task_id)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _params(spec: ReleaseSpec) -> dict[str, dict[str, Any]]:
    """JSON-schema of the trigger form (rendered to Airflow ``Param`` objects).

    ``version`` has no default: the trigger form requires it and a REST trigger without it is
    refused (400). Its pattern and length are the rule :func:`~gendev_release.spec_rules.check_version`
    applies on every other path (``--set``, :func:`~gendev_release.spec.run_params`).
    """
    return {
        "version": {"type": "string", "pattern": VERSION_PATTERN, "maxLength": VERSION_MAX_LENGTH,
                    "title": "Version", "description": f"Semantic version {VERSION_FORMAT}."},
        "dry_run": {"default": False, "type": "boolean", "title": "Dry run",
                    "description_md": "Run phases 1-3 (checks, build, scans) and change nothing on the target."},
        **({"emergency": {"default": False, "type": "boolean", "title": "Emergency",
                          "description_md": "Outside the change window: ask an approver to let this run through "
                                            "now (task change_window_override) instead of waiting."}}
           if spec.change_window is not None and spec.change_window.emergency_override else {}),
    }


def plan_release(spec: ReleaseSpec) -> ReleasePlan:
    """Turn a validated spec into the release plan: seed phase order, failure branch, watcher."""
    start = PlannedTask(START_TASK, "control", "start", doc="Validate the run's parameters and open the run record.")
    previous = START_TASK
    window_gate = override_gate = None
    if spec.change_window is not None and spec.change_window.emergency_override:
        override_gate = PlannedTask(OVERRIDE_TASK, "approval", "emergency", upstream=(START_TASK,),
                                    doc="An emergency run (trigger conf emergency: true) outside the change window: "
                                        "one approver lets it through (Required actions); otherwise nothing to ask.")
        previous = OVERRIDE_TASK
    if spec.change_window is not None:  # before phase 1's backup: nothing has changed while it waits
        window_gate = PlannedTask(WINDOW_TASK, "control", "change_window", upstream=(previous,),
                                  doc="Wait for the change window (deferred, no worker slot): until it is open "
                                      "and no freeze holds it; nothing has changed yet.")
        previous = WINDOW_TASK
    phases: list[PlannedPhase] = []
    strategy = plan_strategy(spec)

    def strategy_task(group: str, step: PlannedStep, after: str) -> PlannedTask:
        return PlannedTask(f"{group}.{step.local_id}", "strategy", step.role, group=group, upstream=(after,),
                           moves_traffic=True, doc=step.doc)

    for phase in PHASES:
        tasks: list[PlannedTask] = []
        for step in phase.steps:
            if step.id == OBSERVED_STEP:  # its observation window waits in the triggerer first
                tasks.append(PlannedTask(f"{phase.id}.{OBSERVATION_TASK}", "watch", "observation", group=phase.id,
                                         upstream=(previous,),
                                         doc="Send traffic through the router for the observation window "
                                             "(deferred); observability then judges what Prometheus or the "
                                             "scrapes recorded over it."))
                previous = tasks[-1].task_id
            if step.moves_traffic:
                preview = PlannedTask(f"{phase.id}.{PREVIEW_SENSOR}", "sensor", "preview", group=phase.id,
                                      upstream=(previous,),
                                      doc="Wait (deferred) until the new revision passes the pre-switch checks on "
                                          "its own URL; nothing has moved yet.")
                tasks.append(preview)
                previous = preview.task_id
                # the strategy's steps before its promotion (canary weights, rolling batches)
                for planned in strategy.before_promotion:
                    tasks.append(strategy_task(phase.id, planned, previous))
                    previous = tasks[-1].task_id
                    if planned.asks_people:
                        tasks.append(PlannedTask(
                            f"{phase.id}.{planned.local_id}{DECISION_SUFFIX}", "approval", "analysis", group=phase.id,
                            upstream=(previous,), doc=f"Only when {planned.local_id}'s analysis failed: people "
                                                      "decide (Required actions); Approve continues, Reject or a "
                                                      "timeout takes the canary back to 0 % and rolls back."))
                        previous = tasks[-1].task_id
            task = PlannedTask(f"{phase.id}.{step.id}", "agent", "step", group=phase.id, agent=step.agent,
                               duty=step.duty, step_id=step.id, upstream=(previous,),
                               moves_traffic=step.moves_traffic, doc=step.title)
            tasks.append(task)
            previous = task.task_id
            if step.moves_traffic:
                sensor = PlannedTask(f"{phase.id}.{HEALTH_SENSOR}", "sensor", "health", group=phase.id,
                                     upstream=(previous,),
                                     doc="Wait (deferred) until every health check passes through the router.")
                tasks.append(sensor)
                previous = sensor.task_id
                for planned in strategy.after_promotion:  # feature flags: the flag's steps after deploying dark
                    tasks.append(strategy_task(phase.id, planned, previous))
                    previous = tasks[-1].task_id
                if strategy.post_promotion_seconds > 0:
                    watch = PlannedTask(f"{phase.id}.{POST_PROMOTION_TASK}", "watch", "post_promotion",
                                        group=phase.id, upstream=(previous,),
                                        doc=f"Watch every health check through the router for "
                                            f"{strategy.post_promotion_seconds:g} s (deferred); a failure rolls "
                                            "back at once, without re-running any analysis.")
                    tasks.append(watch)
                    previous = watch.task_id
        if phase.id == APPROVAL_PHASE:  # people approve after staging, before traffic moves (approvals.py)
            for local_id, role, _ in gate_tasks(spec.approvals):
                gate_task = PlannedTask(f"{phase.id}.{local_id}", "approval", role, group=phase.id,
                                        upstream=(previous,), doc=APPROVAL_DOCS[role])
                tasks.append(gate_task)
                previous = gate_task.task_id
        phases.append(PlannedPhase(phase.id, phase.number, phase.title, phase.deliverables, tuple(tasks)))
    gate = PlannedTask(GATE_TASK, "control", "gate", upstream=(previous,),
                       doc="All phases passed: verify live that the version serves, then record the release.")
    # The main path is one chain, so a failure anywhere reaches release_gate as upstream_failed:
    # one edge from the gate feeds the failure branch and the watcher (a readable graph, no fan-in
    # from every task).
    failure = (
        PlannedTask(DECIDE_TASK, "control", "decide", group="failure", upstream=(GATE_TASK,),
                    trigger_rule=ONE_FAILED,
                    doc="A step failed: roll back if this run's version takes traffic, else abort."),
        PlannedTask(ABORT_TASK, "control", "abort", group="failure", upstream=(DECIDE_TASK,),
                    doc="Failure before traffic moved: discard the staged slot; nothing is rolled back."),
        PlannedTask(ROLLBACK_TASK, "control", "rollback", group="failure", upstream=(DECIDE_TASK,),
                    doc="Failure after traffic moved: switch back to the previous slot."),
        PlannedTask(VERIFY_TASK, "control", "verify_restored", group="failure", upstream=(ROLLBACK_TASK,),
                    doc="The restored version answers every health check."),
        PlannedTask(NOTIFY_TASK, "control", "notify", group="failure", upstream=(ABORT_TASK, VERIFY_TASK),
                    trigger_rule=ALL_DONE, doc="Tell stakeholders what failed and what was done."),
    )
    watcher = PlannedTask(WATCHER_TASK, "control", "watcher", upstream=(GATE_TASK, NOTIFY_TASK),
                          trigger_rule=ALL_DONE,
                          doc="Close the run record; the run ends failed whenever a step failed.")
    return ReleasePlan(
        dag_id=spec.dag_id, service=spec.service, description=spec.description or f"Release of {spec.service}",
        spec_data=spec.model_dump(mode="json"), spec_path=str(spec.source) if spec.source else None,
        start=start, phases=tuple(phases), gate=gate, failure_branch=failure, watcher=watcher,
        params=_params(spec), window_gate=window_gate, override_gate=override_gate,
    )


def graph_json(plan: ReleasePlan) -> dict[str, Any]:
    """The ``gendev-release graph --json`` contract."""
    return {
        "dag_id": plan.dag_id,
        "gates": [{"task_id": t.task_id, "upstream": list(t.upstream)} for t in plan.gates()],
        "phases": [
            {
                "id": phase.id,
                "title": phase.title,
                "steps": [{"task_id": t.task_id, "agent": t.agent, "duty": t.duty}
                          for t in phase.tasks if t.kind == "agent"],
                "sensors": [{"task_id": t.task_id, "upstream": list(t.upstream)}
                            for t in phase.tasks if t.kind in ("sensor", "watch")],
                "strategy_steps": [{"task_id": t.task_id, "role": t.role, "upstream": list(t.upstream)}
                                   for t in phase.tasks if t.kind == "strategy"],
            }
            for phase in plan.phases
        ],
        "failure_branch": [{"task_id": t.task_id, "trigger_rule": t.trigger_rule, "upstream": list(t.upstream)}
                           for t in (*plan.failure_branch, plan.watcher)],
    }
