"""The shared base of every gendev-release operator.

An operator stores the spec (as plain JSON) and its step; ``execute`` builds a
:class:`~gendev_release.context.DutyContext` from the Airflow context and delegates to plain
functions that are unit-testable without Airflow. What Airflow contributes is wired here:

* the run's parameters, checked strictly (an unknown conf key is refused, never ignored);
* the service's lease (one release per service), renewed from a heartbeat thread while a task
  works, with Airflow's own DAG-run state as a witness that a holder died;
* earlier steps' reports through XCom (the typed hand-off between steps);
* our errors that retrying cannot fix become ``AirflowFailException`` (:func:`fail_fast`).

Our operators have no ``__init__`` of their own; they are built with the classmethods
:meth:`ReleaseOperatorMixin.for_release` and :meth:`GendevAgentOperator.for_step`. Airflow wraps
every ``__init__`` of an operator class hierarchy and deep-copies the DAG's Params once per
wrapped level, so one level of our own doubled the cost of building a release DAG at parse time
(measured by ``benchmarks/dag_build.py``: 1.9x a hand-written DAG of the same shape, 1.3x without).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, TypeVar

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from pydantic import ValidationError

from gendev_release.catalogue import step_by_id
from gendev_release.context import DutyContext, RunPaths, gendev_home
from gendev_release.duties import run_duty
from gendev_release.errors import GateFailed, GendevError
from gendev_release.evidence_store import EvidenceError
from gendev_release.lease import LeaseKeeper, lease_ttl
from gendev_release.release_run import begin_task, hold_lease, load_record, longest_wait, service_lease
from gendev_release.report import AgentReport
from gendev_release.serving import check_serving, guidance
from gendev_release.spec import RUN_PARAMETERS, ReleaseSpec, RunParams, run_params, spec_from_json
from gendev_release.targets import make_target

#: Phases from this number on change the target; a dry run skips them.
FIRST_CHANGING_PHASE = 4
#: From this phase on (after the step that moves traffic) every step needs this run's version serving.
FIRST_SERVING_PHASE = 5
TRAFFIC_STEP = "execute_strategy"

R = TypeVar("R", bound="ReleaseOperatorMixin")


@contextmanager
def fail_fast() -> Iterator[None]:
    """Errors of ours that retrying cannot fix fail the task at once (no retries burnt)."""
    try:
        yield
    except GendevError as exc:
        if exc.retryable:
            raise
        raise AirflowFailException(str(exc)) from exc


def upstream_reports(context: Context) -> Callable[[str], AgentReport | None]:
    """Read an earlier step's report of this run from XCom (what the step returned, or pushed before failing)."""
    ti = context["ti"]

    def pull(step_id: str) -> AgentReport | None:
        phase, step = step_by_id(step_id)
        value = ti.xcom_pull(task_ids=f"{phase.id}.{step.id}", key="return_value")
        if not value:
            return None
        try:
            return AgentReport.model_validate(value)
        except ValidationError as exc:
            raise GateFailed(f"the report {phase.id}.{step.id} handed on through XCom is not an AgentReport: "
                             f"{exc.errors()[0]['msg']}") from exc

    return pull


def airflow_run_state(context: Context) -> Callable[[str, str], str | None]:
    """Ask Airflow (Execution API) for a DAG run's state; the lease uses it to tell a dead holder."""
    ti = context["ti"]

    def lookup(dag_id: str, run_id: str) -> str | None:
        return str(ti.get_dagrun_state(dag_id=dag_id, run_id=run_id))

    return lookup


class ReleaseOperatorMixin:
    """Builds the run's context from the operator's spec and the run's params.

    :param spec_data: the validated release spec as JSON (``ReleaseSpec.model_dump(mode="json")``).
    :param spec_path: the spec file, for resolving relative paths.
    """

    spec_data: dict[str, Any] | None = None
    spec_path: str | None = None

    @classmethod
    def for_release(cls: type[R], *, spec_data: dict[str, Any], spec_path: str | None = None, **kwargs: Any) -> R:
        """The operator for one release spec; ``kwargs`` are the usual ``BaseOperator`` arguments."""
        operator = cls(**kwargs)
        operator.spec_data = spec_data
        operator.spec_path = spec_path
        return operator

    def release_spec(self) -> ReleaseSpec:
        if self.spec_data is None:
            raise GateFailed(f"{type(self).__name__} has no release spec: build it with "
                             f"{type(self).__name__}.for_release(spec_data=..., ...)")
        return spec_from_json(self.spec_data, self.spec_path)

    @staticmethod
    def parameters(context: Context, spec: ReleaseSpec) -> RunParams:
        """The run's parameters: the declared Params plus every key of the trigger conf, checked strictly.

        :raises SpecError: naming an unknown key, a missing version or a bad value.
        """
        params = dict(context.get("params") or {})
        given = {name: params[name] for name in RUN_PARAMETERS if name in params}
        conf = getattr(context["dag_run"], "conf", None) or {}
        given.update(dict(conf))
        return run_params(spec, given)

    def duty_context(self, context: Context, params: RunParams | None = None) -> DutyContext:
        spec = self.release_spec()
        params = params or self.parameters(context, spec)
        dag_run = context["dag_run"]
        home = gendev_home()
        paths = RunPaths(home=home, dag_id=dag_run.dag_id, run_id=dag_run.run_id)
        paths.workdir.mkdir(parents=True, exist_ok=True)
        return DutyContext(spec=spec, params=params, paths=paths, target=make_target(spec, home),
                           logger=getattr(self, "log", None), upstream=upstream_reports(context))

    def enter_run(self, context: Context, ctx: DutyContext) -> None:
        """Hold the service's lease for this run and open a new attempt if the run had finished."""
        hold_lease(ctx, airflow_run_state(context))
        begin_task(ctx, context["ti"].task_id)

    @staticmethod
    @contextmanager
    def keep_lease(ctx: DutyContext) -> Iterator[None]:
        lease = service_lease(ctx.paths.home, ctx.spec.service)
        with LeaseKeeper(lease, ctx.run_id, interval=min(60.0, lease_ttl(longest_wait(ctx)) / 4)):
            yield

    @staticmethod
    def require_serving(ctx: DutyContext) -> None:
        """After the traffic switch every step starts by asking the live service: is this run's version serving?"""
        check = check_serving(ctx)
        if not check.ok:
            raise GateFailed(guidance(ctx, check, load_record(ctx)))


class GendevAgentOperator(BaseOperator, ReleaseOperatorMixin):
    """Runs one GENDEV agent step and gates it on the evidence its duty gathered.

    Build it with :meth:`for_step`; ``step_id`` is the catalogue step this task performs (one of
    the agent's duties).
    """

    agent: ClassVar[str] = ""
    duties: ClassVar[Sequence[str]] = ()
    ui_color = "#e8f0fe"
    step_id: str = ""

    @classmethod
    def for_step(cls, *, step_id: str, spec_data: dict[str, Any], spec_path: str | None = None,
                 **kwargs: Any) -> GendevAgentOperator:
        """The task of ``step_id`` for one release spec.

        :raises ValueError: when ``step_id`` is not one of this agent's duties.
        """
        if step_id not in cls.duties:
            raise ValueError(f"{cls.__name__} ({cls.agent}) has no duty {step_id!r}; "
                             f"its duties: {', '.join(cls.duties)}")
        operator = cls.for_release(spec_data=spec_data, spec_path=spec_path, **kwargs)
        operator.step_id = step_id
        return operator

    def execute(self, context: Context) -> dict[str, Any]:
        with fail_fast():
            phase, step = step_by_id(self.step_id)
            ctx = self.duty_context(context)
            if ctx.params.dry_run and phase.number >= FIRST_CHANGING_PHASE:
                raise AirflowSkipException(f"dry run: {step.agent} {step.duty} changes the target; skipped")
            self.enter_run(context, ctx)
            if phase.number >= FIRST_SERVING_PHASE and step.id != TRAFFIC_STEP:
                self.require_serving(ctx)
            self.log.info("%s: %s (%s) for %s %s", phase.title, step.agent, step.duty, ctx.spec.service, ctx.version)
            with self.keep_lease(ctx):
                report = run_duty(ctx, self.step_id)
            payload = report.model_dump(mode="json")
            try:  # the final report is chained after the draft its report item read back
                path = ctx.store.save(report)
            except EvidenceError:
                context["ti"].xcom_push(key="return_value", value=payload)
                raise  # retryable (the store may come back); the report still reached XCom
            log_report(self.log, report, path)
            failures = report.gate_failures()
            if failures:
                context["ti"].xcom_push(key="return_value", value=payload)
                raise GateFailed(f"{self.step_id} gate failed: " + "; ".join(failures))
            return payload


def log_report(log: Any, report: AgentReport, path: Any) -> None:
    for verification in report.verifications:
        log.info("[%s] %s: %s (%d evidence)", "PASS" if verification.passed else "FAIL", verification.item_id,
                 verification.detail, len(verification.evidence))
    for issue in report.blocking_issues:
        log.warning("blocker: %s", issue)
    log.info("report written to %s", path)
