"""Control operators: open the run, the release gate, the failure branch and the watcher."""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.branch import BaseBranchOperator
from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowSkipException

from gendev_release import recovery, release_run
from gendev_release.context import DutyContext, gendev_home
from gendev_release.errors import SpecError
from gendev_release.lease import LeaseHeld
from gendev_release.operators.base import ReleaseOperatorMixin, airflow_run_state, fail_fast
from gendev_release.plan import ABORT_TASK, DECIDE_TASK, ROLLBACK_TASK


class _ReleaseControlOperator(BaseOperator, ReleaseOperatorMixin):
    """Base of the control operators; built with :meth:`~ReleaseOperatorMixin.for_release`."""

    ui_color = "#fef7e0"


def _task_states(context: Context, exclude: str) -> dict[str, str | None]:
    """States of every other task of this run, asked of Airflow itself (not inferred)."""
    ti = context["ti"]
    dag_run = context["dag_run"]
    states = ti.get_task_states(dag_id=dag_run.dag_id, run_ids=[dag_run.run_id])
    return {task: state for task, state in states.get(dag_run.run_id, {}).items() if task != exclude}


def _failure_context(operator: ReleaseOperatorMixin, context: Context) -> DutyContext | None:
    """The context of a failure-branch task; None when the run's parameters were refused (nothing ran)."""
    try:
        ctx = operator.duty_context(context)
    except SpecError:
        return None
    try:
        release_run.hold_lease(ctx, airflow_run_state(context))
    except LeaseHeld as exc:  # another release holds the service: this run must not touch it
        ctx.log("%s", exc)
    return ctx


class StartReleaseOperator(_ReleaseControlOperator):
    """Check the run's parameters strictly, take the service's lease and open the run record.

    Anything wrong here refuses the run before it changes anything: an unknown or missing
    parameter, another live release of the service, or an unverified version serving that cannot
    be restored. The refusal is recorded and the task fails without retries.
    """

    def execute(self, context: Context) -> dict[str, Any]:
        with fail_fast():
            spec = self.release_spec()
            dag_run = context["dag_run"]
            triggered_by = getattr(dag_run, "triggering_user_name", None)
            try:
                params = self.parameters(context, spec)
            except SpecError as exc:
                problems = "; ".join(f"{p.field}: {p.message}" for p in exc.problems)
                release_run.refuse(gendev_home(), dag_run.dag_id, dag_run.run_id, spec.service,
                                   f"invalid run parameters: {problems}", triggered_by=triggered_by)
                raise
            ctx = self.duty_context(context, params)
            try:
                release_run.hold_lease(ctx, airflow_run_state(context))
                record = release_run.open_run(ctx, triggered_by=triggered_by)
            except (LeaseHeld, release_run.ReleaseRefused) as exc:
                release_run.refuse(ctx.paths.home, ctx.paths.dag_id, ctx.run_id, spec.service, str(exc),
                                   version=ctx.version, triggered_by=triggered_by)
                raise
            self.log.info("release %s %s (%s%s); serving before the release: %s; last verified: %s",
                          spec.service, ctx.version, ctx.spec.strategy.kind,
                          ", dry run" if ctx.params.dry_run else "",
                          record.previous_version or "nothing (first release)", record.last_verified_version or "none")
            if record.restored_before_release:
                self.log.warning("restored before releasing: %s", record.restored_before_release)
            return record.model_dump(mode="json")


class ReleaseGateOperator(_ReleaseControlOperator):
    """All phases passed: verify live that the version serves, re-gate the reports, record the release."""

    def execute(self, context: Context) -> dict[str, Any]:
        with fail_fast():
            ctx = self.duty_context(context)
            self.enter_run(context, ctx)
            record = release_run.finish_success(ctx)
            self.log.info("%s; report: %s", record.note, record.report)
            for failure in record.notification_failures:
                self.log.warning("notification channel failed: %s", failure)
            return record.model_dump(mode="json")


class FailureDecisionOperator(BaseBranchOperator, ReleaseOperatorMixin):
    """Branch to rollback when this run's version takes traffic, to abort otherwise."""

    ui_color = "#fce8e6"
    rollback_task_id: str = ROLLBACK_TASK
    abort_task_id: str = ABORT_TASK

    def choose_branch(self, context: Context) -> str:
        with fail_fast():
            states = _task_states(context, self.task_id)
            failed = sorted(t for t, s in states.items() if s == "failed")
            ctx = _failure_context(self, context)
            if ctx is None:
                self.log.info("the run's parameters were refused; nothing was changed -> abort (no-op)")
                return self.abort_task_id
            decision = recovery.decide(ctx, failed)
            return self.rollback_task_id if decision == "rollback" else self.abort_task_id


class AbortReleaseOperator(_ReleaseControlOperator):
    ui_color = "#fce8e6"

    def execute(self, context: Context) -> dict[str, Any] | None:
        with fail_fast():
            ctx = _failure_context(self, context)
            return None if ctx is None else recovery.abort(ctx).model_dump(mode="json")


class RollbackOperator(_ReleaseControlOperator):
    ui_color = "#fce8e6"

    def execute(self, context: Context) -> dict[str, Any]:
        with fail_fast():
            ctx = self.duty_context(context)
            self.enter_run(context, ctx)
            return recovery.rollback(ctx).model_dump(mode="json")


class VerifyRestoredOperator(_ReleaseControlOperator):
    ui_color = "#fce8e6"

    def execute(self, context: Context) -> dict[str, Any]:
        with fail_fast():
            ctx = self.duty_context(context)
            self.enter_run(context, ctx)
            return recovery.verify_restored(ctx)


class FailureNotifyOperator(_ReleaseControlOperator):
    """Runs whatever happened upstream (all_done); skips itself when this attempt had no failure."""

    ui_color = "#fce8e6"
    decide_task_id: str = DECIDE_TASK

    def execute(self, context: Context) -> dict[str, Any]:
        with fail_fast():
            # Judge this attempt by Airflow's own task states: a re-run that succeeded after a cleared
            # failure must not repeat the earlier failure's notification.
            if _task_states(context, self.task_id).get(self.decide_task_id) != "success":
                raise AirflowSkipException("no failure in this attempt: nothing to notify")
            ctx = _failure_context(self, context)
            sent = None if ctx is None else recovery.notify_failure(ctx)
            if sent is None:
                raise AirflowSkipException("the run was refused before it changed anything: nothing to notify")
            self.log.info("notified: %s (%s)", sent["subject"], sent["severity"])
            return sent


class ReleaseOutcomeOperator(_ReleaseControlOperator):
    """The watcher: the run ends ``failed`` whenever a step failed, even when rollback succeeded."""

    def execute(self, context: Context) -> dict[str, Any]:
        with fail_fast():
            states = _task_states(context, self.task_id)
            try:
                ctx = self.duty_context(context)
            except SpecError:
                dag_run = context["dag_run"]
                release_run.close_refused(gendev_home(), dag_run.dag_id, dag_run.run_id, states)
            record = release_run.close_run(ctx, states)
            self.log.info("%s", record.note)
            return record.model_dump(mode="json")
