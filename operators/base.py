"""The shared base of every gendev-release operator.

An operator stores the spec (as plain JSON) and its step; ``execute`` builds a
:class:`~gendev_release.context.DutyContext` from the Airflow context and delegates to plain
functions that are unit-testable without Airflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from gendev_release.catalogue import step_by_id
from gendev_release.context import DutyContext, RunPaths, gendev_home
from gendev_release.duties import run_duty
from gendev_release.errors import GateFailed, SpecError
from gendev_release.report import AgentReport
from gendev_release.spec import ReleaseSpec, run_params, spec_from_json
from gendev_release.targets import make_target

#: Phases from this number on change the target; a dry run skips them.
FIRST_CHANGING_PHASE = 4


class ReleaseOperatorMixin:
    """Builds the run's context from the operator's spec and the run's params."""

    spec_data: dict[str, Any]
    spec_path: str | None

    def release_spec(self) -> ReleaseSpec:
        return spec_from_json(self.spec_data, self.spec_path)

    def duty_context(self, context: Context) -> DutyContext:
        spec = self.release_spec()
        try:
            params = run_params(spec, dict(context.get("params") or {}))
        except SpecError as exc:
            # Bad trigger input: a clear message, no retries, no traceback for the user to decode.
            raise AirflowFailException(f"invalid run parameters: {exc}") from exc
        dag_run = context["dag_run"]
        home = gendev_home()
        paths = RunPaths(home=home, dag_id=dag_run.dag_id, run_id=dag_run.run_id)
        paths.workdir.mkdir(parents=True, exist_ok=True)
        return DutyContext(spec=spec, params=params, paths=paths, target=make_target(spec, home),
                           logger=getattr(self, "log", None))


class GendevAgentOperator(ReleaseOperatorMixin, BaseOperator):
    """Runs one GENDEV agent step and gates it on the evidence its duty gathered.

    :param step_id: the catalogue step this task performs (must be one of the agent's duties).
    :param spec_data: the validated release spec as JSON (``ReleaseSpec.model_dump(mode="json")``).
    :param spec_path: the spec file, for resolving relative paths.
    """

    agent: ClassVar[str] = ""
    duties: ClassVar[Sequence[str]] = ()
    ui_color = "#e8f0fe"

    def __init__(self, *, step_id: str, spec_data: dict[str, Any], spec_path: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if step_id not in self.duties:
            raise ValueError(f"{type(self).__name__} ({self.agent}) has no duty {step_id!r}; "
                             f"its duties: {', '.join(self.duties)}")
        self.step_id = step_id
        self.spec_data = spec_data
        self.spec_path = spec_path

    def execute(self, context: Context) -> dict[str, Any]:
        phase, step = step_by_id(self.step_id)
        ctx = self.duty_context(context)
        if ctx.params.dry_run and phase.number >= FIRST_CHANGING_PHASE:
            raise AirflowSkipException(f"dry run: {step.agent} {step.duty} changes the target; skipped")
        self.log.info("%s: %s (%s) for %s %s", phase.title, step.agent, step.duty, ctx.spec.service, ctx.version)
        report = run_duty(ctx, self.step_id)
        path = ctx.store.save(report)
        log_report(self.log, report, path)
        payload = report.model_dump(mode="json")
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
