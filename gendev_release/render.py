"""Step two of the factory: render a :class:`ReleasePlan` into an Airflow DAG.

Parse-time work only: no network, subprocess or database here.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import DAG, BaseOperator, Param, TaskGroup

from gendev_release.operators import AGENT_OPERATORS
from gendev_release.operators.approval import AnalysisDecisionOperator, ApprovalGateOperator, WindowOverrideOperator
from gendev_release.operators.base import ReleaseOperatorMixin
from gendev_release.operators.release_control import (
    AbortReleaseOperator,
    FailureDecisionOperator,
    FailureNotifyOperator,
    ReleaseGateOperator,
    ReleaseOutcomeOperator,
    RollbackOperator,
    StartReleaseOperator,
    VerifyRestoredOperator,
)
from gendev_release.plan import PlannedTask, ReleasePlan, plan_release
from gendev_release.sensors.change_window import ChangeWindowGateOperator
from gendev_release.sensors.health import HealthCheckSensor, PreviewHealthSensor
from gendev_release.sensors.observation import MonitoringWindowOperator
from gendev_release.sensors.progressive import PostPromotionOperator, StrategyStepOperator
from gendev_release.spec import ReleaseSpec

_CONTROL: dict[str, type[ReleaseOperatorMixin]] = {
    "start": StartReleaseOperator,
    "gate": ReleaseGateOperator,
    "abort": AbortReleaseOperator,
    "rollback": RollbackOperator,
    "verify_restored": VerifyRestoredOperator,
    "watcher": ReleaseOutcomeOperator,
    "decide": FailureDecisionOperator,
    "notify": FailureNotifyOperator,
    "change_window": ChangeWindowGateOperator,
}


def _local_id(task: PlannedTask) -> str:
    return task.task_id.split(".", 1)[1] if task.group else task.task_id


#: Tasks that defer to a trigger get one retry: a second guard against Airflow 3.3's race of a trigger resuming
#: a task before the worker that parked it reported the deferral (the first guard is the triggers' hold, see
#: sensors/triggers.settle_seconds). A retry re-runs the wait, which is idempotent. Our gate failures fail at
#: once whatever the retries (AirflowFailException), so a real failure is never waited out twice.
DEFERRING = {"sensor", "strategy", "watch"}
DEFERRING_RETRY: dict[str, Any] = {"retries": 1, "retry_delay": timedelta(seconds=5)}


def _operator(plan: ReleasePlan, task: PlannedTask) -> BaseOperator:
    common: dict[str, Any] = {"task_id": _local_id(task), "spec_data": plan.spec_data, "spec_path": plan.spec_path,
                              "trigger_rule": task.trigger_rule, "doc_md": task.doc}
    if task.kind in DEFERRING or task.role == "change_window":
        common.update(DEFERRING_RETRY)
    if task.kind == "agent":
        return AGENT_OPERATORS[task.agent or ""].for_step(step_id=task.step_id or "", **common)
    if task.kind == "sensor":
        sensor = PreviewHealthSensor if task.role == "preview" else HealthCheckSensor
        return sensor.for_release(poke_interval=1.0, **common)
    if task.kind == "strategy":
        return StrategyStepOperator.for_step(local_step=_local_id(task), **common)
    if task.kind == "watch" and task.role == "observation":
        return MonitoringWindowOperator.for_release(**common)
    if task.kind == "watch":
        return PostPromotionOperator.for_release(**common)
    if task.kind == "approval" and task.role == "emergency":
        return WindowOverrideOperator.for_override(**common)
    if task.kind == "approval" and task.role == "analysis":
        return AnalysisDecisionOperator.for_step(local_step=_local_id(task), **common)
    if task.kind == "approval":
        return ApprovalGateOperator.for_gate(gate_task=_local_id(task), **common)
    operator = _CONTROL[task.role].for_release(**common)
    assert isinstance(operator, BaseOperator)
    return operator


def render(plan: ReleasePlan, *, dag_kwargs: dict[str, Any] | None = None) -> DAG:
    """Build the DAG: one TaskGroup per phase in seed order, the failure branch and the watcher."""
    kwargs: dict[str, Any] = {
        "dag_id": plan.dag_id,
        "description": plan.description,
        "schedule": None,
        "start_date": datetime(2024, 1, 1, tzinfo=timezone.utc),
        "catchup": False,
        "max_active_runs": 1,
        "tags": ["gendev-release", f"service:{plan.service}"],
        "params": {name: Param(**schema) for name, schema in plan.params.items()},
        "doc_md": f"Release of **{plan.service}** from `{plan.spec_path or 'an in-memory spec'}`.",
        "default_args": {"retries": 0, "owner": "gendev-release"},
    }
    kwargs.update(dag_kwargs or {})
    operators: dict[str, BaseOperator] = {}
    with DAG(**kwargs) as dag:
        operators[plan.start.task_id] = _operator(plan, plan.start)
        for gate in plan.gates():
            operators[gate.task_id] = _operator(plan, gate)
        for phase in plan.phases:
            with TaskGroup(phase.id, tooltip=f"Phase {phase.number}: {phase.title}",
                           group_display_name=f"{phase.number}. {phase.title}"):
                for task in phase.tasks:
                    operators[task.task_id] = _operator(plan, task)
        operators[plan.gate.task_id] = _operator(plan, plan.gate)
        with TaskGroup("failure", tooltip="Abort or roll back, verify, notify", group_display_name="On failure"):
            for task in plan.failure_branch:
                operators[task.task_id] = _operator(plan, task)
        operators[plan.watcher.task_id] = _operator(plan, plan.watcher)
        for task in plan.all_tasks():
            for upstream in task.upstream:
                operators[upstream] >> operators[task.task_id]
    return dag


def build_release_dag(spec: ReleaseSpec, **dag_kwargs: Any) -> DAG:
    """The factory: ``render(plan_release(spec))``."""
    return render(plan_release(spec), dag_kwargs=dag_kwargs)
