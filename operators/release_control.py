"""Control operators: open the run, the release gate, the failure branch and the watcher."""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.branch import BaseBranchOperator
from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowSkipException

from gendev_release import lifecycle
from gendev_release.operators.base import ReleaseOperatorMixin


class _ReleaseControlOperator(ReleaseOperatorMixin, BaseOperator):
    """Base of the control operators; ``spec_data``/``spec_path`` as for the agent operators."""

    ui_color = "#fef7e0"

    def __init__(self, *, spec_data: dict[str, Any], spec_path: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec_data = spec_data
        self.spec_path = spec_path


def _task_states(context: Context, exclude: str) -> dict[str, str | None]:
    """States of every other task of this run, asked of Airflow itself (not inferred)."""
    ti = context["ti"]
    dag_run = context["dag_run"]
    states = ti.get_task_states(dag_id=dag_run.dag_id, run_ids=[dag_run.run_id])
    return {task: state for task, state in states.get(dag_run.run_id, {}).items() if task != exclude}


class StartReleaseOperator(_ReleaseControlOperator):
    """Validate the run's parameters and open the run record."""

    def execute(self, context: Context) -> dict[str, Any]:
        ctx = self.duty_context(context)
        record = lifecycle.start_run(ctx)
        self.log.info("release %s %s (%s%s); active before release: %s", ctx.spec.service, ctx.version,
                      ctx.params.strategy.value, ", dry run" if ctx.params.dry_run else "",
                      record.get("previous_version") or "nothing (first release)")
        return record


class ReleaseGateOperator(_ReleaseControlOperator):
    """All phases passed: re-gate the stored reports, write the release report, record the release."""

    def execute(self, context: Context) -> dict[str, Any]:
        record = lifecycle.finish_success(self.duty_context(context))
        self.log.info("release report: %s", record.get("report"))
        return record


class FailureDecisionOperator(ReleaseOperatorMixin, BaseBranchOperator):
    """Branch to rollback when this run moved traffic, to abort otherwise."""

    ui_color = "#fce8e6"

    def __init__(self, *, spec_data: dict[str, Any], spec_path: str | None = None, rollback_task_id: str,
                 abort_task_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec_data = spec_data
        self.spec_path = spec_path
        self.rollback_task_id = rollback_task_id
        self.abort_task_id = abort_task_id

    def choose_branch(self, context: Context) -> str:
        ctx = self.duty_context(context)
        states = _task_states(context, self.task_id)
        failed = sorted(t for t, s in states.items() if s == "failed")
        decision = lifecycle.decide(ctx, failed)
        self.log.info("failed: %s; traffic moved: %s -> %s", failed, decision == "rollback", decision)
        return self.rollback_task_id if decision == "rollback" else self.abort_task_id


class AbortReleaseOperator(_ReleaseControlOperator):
    ui_color = "#fce8e6"

    def execute(self, context: Context) -> dict[str, Any]:
        return lifecycle.abort(self.duty_context(context))


class RollbackOperator(_ReleaseControlOperator):
    ui_color = "#fce8e6"

    def execute(self, context: Context) -> dict[str, Any]:
        return lifecycle.rollback(self.duty_context(context))


class VerifyRestoredOperator(_ReleaseControlOperator):
    ui_color = "#fce8e6"

    def execute(self, context: Context) -> dict[str, Any]:
        return lifecycle.verify_restored(self.duty_context(context))


class FailureNotifyOperator(_ReleaseControlOperator):
    """Runs whatever happened upstream (all_done); skips itself when the run had no failure."""

    ui_color = "#fce8e6"

    def __init__(self, *, decide_task_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.decide_task_id = decide_task_id

    def execute(self, context: Context) -> dict[str, Any]:
        # Judge this attempt by Airflow's own task states: a re-run that succeeded after a cleared
        # failure must not repeat the earlier failure's notification.
        if _task_states(context, self.task_id).get(self.decide_task_id) != "success":
            raise AirflowSkipException("no failure in this run: nothing to notify")
        sent = lifecycle.notify_failure(self.duty_context(context))
        if sent is None:
            raise AirflowSkipException("no failure decision recorded: nothing to notify")
        return sent


class ReleaseOutcomeOperator(_ReleaseControlOperator):
    """The watcher: the run ends ``failed`` whenever a step failed, even when rollback succeeded."""

    def execute(self, context: Context) -> dict[str, Any]:
        return lifecycle.close_run(self.duty_context(context), _task_states(context, self.task_id))
