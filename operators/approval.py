"""The approval gate: people approve a release in Airflow (Human-in-the-loop) before traffic moves.

Each task of the gate is a :class:`~airflow.providers.standard.operators.hitl.HITLOperator` with the
options Approve and Reject: it is listed under **Required actions** in the Airflow UI and answered
there or through the REST API (``PATCH /api/v2/dags/{dag}/dagRuns/{run}/taskInstances/{task}/-1/hitlDetails``
with ``{"chosen_options": ["Approve"], "params_input": {"comment": "..."}}``). While it waits the task
is ``awaiting_input``: no worker slot, no triggerer; the scheduler resumes it with the answer, or
with the timeout when the deadline passes.

The rules are :mod:`gendev_release.approvals` (pure, unit-tested); this module wires them to
Airflow: who triggered the run (``dag_run.triggering_user_name``), the roles of Airflow's users
(SimpleAuthManager), the risk step's level (XCom), the earlier approvals (XCom), the HITL request
(``assigned_users``: Airflow answers 403 to anyone else) and the service's lease, kept alive for
the whole wait. Every decision is written to the run's evidence store (``approval-<n>``) and
handed on through XCom; a Reject, a timeout or too few eligible approvers fail the task, so the
release is aborted by the failure branch before anything moves.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import Context, Param, conf
from airflow.sdk.exceptions import AirflowSkipException, TaskAwaitingInput
from airflow.sdk.execution_time.hitl import upsert_hitl_detail

from gendev_release.approvals import (
    ANALYSIS,
    APPROVE,
    EMERGENCY,
    GATE_PHASE,
    OPTIONS,
    REJECT,
    Answer,
    ApprovalError,
    ApprovalRejected,
    GateRecord,
    GateRole,
    approved_users,
    deadline_after,
    eligible,
    gate_tasks,
    judge,
    record_name,
    remaining,
    resolve_approvers,
    shortfall,
    stop_reasons,
    utcnow,
)
from gendev_release.change_window import evaluate
from gendev_release.context import DutyContext
from gendev_release.lease import lease_ttl
from gendev_release.operators.base import ReleaseOperatorMixin, fail_fast
from gendev_release.release_run import load_record, send_notification, service_lease, update_record
from gendev_release.sensors.change_window import OVERRIDE_TASK, WindowOverride
from gendev_release.spec import Approvals, ReleaseSpec
from gendev_release.strategies import PlannedStep, plan_strategy
from gendev_release.strategies.steps import decided, stored_record, undo

COMMENT_PARAM = "comment"
#: The triggering user Airflow records for ``dag.test()`` runs (``airflow/sdk/definitions/dag.py``).
DAG_TEST_USER = "dag_test"


def _simple_auth_manager() -> bool:
    return str(conf.get("core", "auth_manager", fallback="") or "").rsplit(".", 1)[-1] == "SimpleAuthManager"


def known_users() -> set[str] | None:
    """Airflow's user ids when a task can read them (SimpleAuthManager), else None (nothing to compare with)."""
    if not _simple_auth_manager():
        return None
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    try:
        return {u.username for u in SimpleAuthManager.get_users()}
    except Exception:  # a malformed user list: role_members says why if a role needs it
        return None


def role_members(role: str) -> list[str]:
    """User ids holding ``role``, from Airflow's SimpleAuthManager (``[core] simple_auth_manager_users``).

    :raises ApprovalError: with another auth manager (its roles are not readable from a task), or an empty role.
    """
    manager = str(conf.get("core", "auth_manager", fallback="") or "")
    if not _simple_auth_manager():
        raise ApprovalError(f"approvals names role:{role}, but roles are resolved only with Airflow's "
                            f"SimpleAuthManager (this Airflow uses {manager or 'an unknown auth manager'}); "
                            "list the approvers' Airflow user ids instead")
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    try:
        users = SimpleAuthManager.get_users()
    except Exception as exc:  # a malformed [core] simple_auth_manager_users
        raise ApprovalError(f"cannot read Airflow's users to resolve role:{role}: {exc}") from exc
    members = [u.username for u in users if str(u.role or "").lower() == role.lower()]
    if not members:
        raise ApprovalError(f"role:{role} names no Airflow user ([core] simple_auth_manager_users lists "
                            f"{', '.join(f'{u.username}:{u.role}' for u in users) or 'nobody'}); fix "
                            "approvals.approvers or the users")
    return members


class ApprovalGateOperator(HITLOperator, ReleaseOperatorMixin):
    """One task of the approval gate (``approval_<n>``: the n-th distinct approval; ``approval_escalation``).

    Build it with :meth:`for_gate`. Templating is off: the subject and body are written at run time
    from the run's evidence, and names typed into a spec are never rendered as Jinja.
    """

    template_fields = ()
    ui_color = "#e6f4ea"
    gate_task: str = ""

    @classmethod
    def for_gate(cls, *, gate_task: str, spec_data: dict[str, Any], spec_path: str | None = None,
                 **kwargs: Any) -> ApprovalGateOperator:
        """The gate task ``gate_task`` (a local id of :func:`gendev_release.approvals.gate_tasks`) of one spec."""
        service = spec_data.get("service", "the service")
        operator = cls.for_release(
            spec_data=spec_data, spec_path=spec_path, subject=f"Approve the release of {service}",
            options=list(OPTIONS), defaults=[REJECT], multiple=False,
            params={COMMENT_PARAM: Param("", type="string", maxLength=2000, title="Comment",
                                         description="Why you approve or reject; kept in the release's evidence.")},
            **kwargs)
        operator.gate_task = gate_task
        return operator

    # ----------------------------------------------------------------------------- Airflow entry points
    def execute(self, context: Context) -> dict[str, Any]:
        with fail_fast():
            ctx = self.duty_context(context)
            if ctx.params.dry_run:
                raise AirflowSkipException("dry run: no traffic moves, so nobody is asked to approve")
            self.enter_run(context, ctx)
            record = self._open(context, ctx)
            if record.outcome != "waiting":
                return self._finish(ctx, record, keep_earlier=True)
            return self._ask(context, ctx, record, first=True)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None,
                         gate: dict[str, Any] | None = None) -> dict[str, Any]:
        with fail_fast():
            ctx = self.duty_context(context)
            self.enter_run(context, ctx)
            if gate is None:
                raise ApprovalError(f"{self.task_id} resumed without its gate record; clear the task to ask again")
            record = GateRecord.model_validate(gate)
            return self._answered(context, ctx, record, Answer.from_event(event))

    # --------------------------------------------------------------------------------------- steps
    def _position(self, spec: ReleaseSpec) -> tuple[Approvals, GateRole, int, list[str]]:
        approvals = spec.approvals
        tasks = gate_tasks(approvals)
        locals_ = [local for local, _, _ in tasks]
        if approvals is None or self.gate_task not in locals_:
            raise ApprovalError(f"{self.task_id}: the spec's approvals have no gate task {self.gate_task!r} "
                                f"(its gate: {', '.join(locals_) or 'none'}); let Airflow parse the spec again")
        _, role, number = tasks[locals_.index(self.gate_task)]
        return approvals, role, number, locals_[:locals_.index(self.gate_task)]

    def _earlier(self, context: Context, earlier_tasks: list[str]) -> list[GateRecord]:
        """The decisions of the gate's earlier tasks, handed on through XCom (fail closed when one is missing)."""
        records = []
        for local in earlier_tasks:
            value = context["ti"].xcom_pull(task_ids=f"{GATE_PHASE}.{local}", key="return_value")
            if not value:
                raise ApprovalError(f"{GATE_PHASE}.{local} handed on no decision; clear it to ask again")
            records.append(GateRecord.model_validate(value))
        return records

    def _open(self, context: Context, ctx: DutyContext) -> GateRecord:
        """What this task asks and of whom, or its decision when it need not ask anyone."""
        spec = ctx.spec
        approvals, role, number, earlier_tasks = self._position(spec)
        earlier = self._earlier(context, earlier_tasks)
        triggered_by = getattr(context["dag_run"], "triggering_user_name", None)
        record = GateRecord(task_id=self.task_id, role=role, number=number, required=approvals.required,
                            service=spec.service, version=ctx.version, triggered_by=triggered_by,
                            on_timeout=approvals.on_timeout if role == "approval" else "reject")
        now = utcnow()
        try:
            if role == "escalation":
                escalated = [r for r in earlier if r.outcome == "escalated"]
                if not escalated:
                    return record.decide("not_required", "no approval timed out: nothing to escalate")
                record.stop_reasons = escalated[0].stop_reasons
                record.approved_before = approved_users(earlier)
                record.approvers = resolve_approvers(approvals.escalate_to, role_members)
                record.not_users = self._not_users(record.approvers)
                record.eligible = eligible(record.approvers, triggered_by, record.not_users)
                record.opened_at, record.deadline = now, deadline_after(now, approvals.escalation_timeout_minutes)
                problem = shortfall(record.approvers, record.eligible, 1, triggered_by, [], record.not_users)
            else:
                if earlier and earlier[0].outcome == "not_required":
                    return record.decide("not_required", earlier[0].reason)
                if any(r.outcome == "escalated" for r in earlier):
                    return record.decide("escalated", "an earlier approval timed out and was escalated to "
                                                      f"{', '.join(approvals.escalate_to)}: the escalation decides")
                risk = ctx.earlier("risk_assessment")
                level = risk.facts.get("risk_level") if risk else None
                record.stop_reasons = stop_reasons(approvals, spec.environment, level,
                                                   risk.facts.get("risk_score") if risk else None)
                if not record.stop_reasons:
                    return record.decide("not_required", f"no reason to stop: {spec.environment} is not in "
                                                         f"approvals.required_for and the risk level is {level}")
                record.approved_before = approved_users(earlier)
                record.approvers = resolve_approvers(approvals.approvers, role_members)
                record.not_users = self._not_users(record.approvers)
                record.eligible = eligible(record.approvers, triggered_by, [*record.approved_before, *record.not_users])
                first = earlier[0] if earlier else None
                record.opened_at = first.opened_at if first and first.opened_at else now
                record.deadline = (first.deadline if first and first.deadline
                                   else deadline_after(record.opened_at, approvals.timeout_minutes))
                problem = shortfall(record.approvers, record.eligible, approvals.required - len(record.approved_before),
                                    triggered_by, record.approved_before, record.not_users)
        except ApprovalError as exc:
            problem = str(exc)
        if not problem and triggered_by == DAG_TEST_USER:
            problem = ("this run cannot wait for people: dag.test (gendev-release run, the embedded runner) never "
                       "resumes a Human-in-the-loop task nor applies its timeout; trigger the release in a running "
                       "Airflow (api-server and scheduler), where the approvers answer under Required actions")
        if problem:
            return record.decide("rejected", problem)
        return record

    def _ask(self, context: Context, ctx: DutyContext, record: GateRecord, *, first: bool) -> dict[str, Any]:
        """Write the HITL request for the eligible approvers and park the task until they answer or time out."""
        assert record.deadline is not None
        wait = remaining(record.deadline)
        if wait <= timedelta(0):
            return self._answered(context, ctx, record, Answer(timed_out=True), keep_earlier=first)
        ctx.store.save_record(record_name(record.role, record.number), record.model_dump(mode="json"),
                              keep_earlier=first)
        self._keep_lease(ctx, wait)
        subject, body = self._request_text(ctx, record)
        if first and (record.role == "escalation" or record.number == 1):
            send_notification(ctx, event="approval_requested", severity="info", subject=subject,
                              body=f"{body}\n\nAnswer in Airflow: {context['dag_run'].dag_id} / "
                                   f"{context['dag_run'].run_id} / {self.task_id} (Required actions).")
        self.log.info("%s; asking %s until %s", subject, ", ".join(record.eligible), record.deadline.isoformat())
        upsert_hitl_detail(
            ti_id=context["task_instance"].id, options=list(self.options), subject=subject, body=body,
            defaults=self.defaults, multiple=False, params=self.serialized_params,
            assigned_users=[{"id": user, "name": user} for user in record.eligible])
        raise TaskAwaitingInput(method_name="execute_complete", kwargs={"gate": record.model_dump(mode="json")},
                                timeout=wait)

    def _answered(self, context: Context, ctx: DutyContext, record: GateRecord, answer: Answer,
                  *, keep_earlier: bool = False) -> dict[str, Any]:
        judgement = judge(answer, eligible_now=record.eligible, triggered_by=record.triggered_by,
                          approved=record.approved_before, on_timeout=record.on_timeout)
        response = record.respond(answer, judgement)
        self.log.info("answer %s from %s: %s -> %s", answer.option, answer.by.name if answer.by else "nobody",
                      judgement.verdict, judgement.reason)
        if judgement.verdict == "refuse":  # not counted: ask the same approval again until the deadline
            return self._ask(context, ctx, record, first=False)
        if judgement.verdict == "approve":
            record.decide("approved", judgement.reason, response)
        elif judgement.verdict == "escalate":
            record.decide("escalated", judgement.reason, response)
            approvals = ctx.spec.approvals
            send_notification(ctx, event="approval_escalated", severity="warning",
                              subject=f"{ctx.spec.service} {ctx.version}: approval {record.number} of "
                                      f"{record.required} timed out, escalated",
                              body=f"Nobody approved before {record.deadline}; "
                                   f"{', '.join(approvals.escalate_to) if approvals else 'escalate_to'} decide(s).")
        else:
            record.decide("rejected", judgement.reason, response)
        return self._finish(ctx, record, keep_earlier=keep_earlier)

    def _finish(self, ctx: DutyContext, record: GateRecord, *, keep_earlier: bool) -> dict[str, Any]:
        """Record the decision; a rejection fails the task (the release is aborted before traffic moves)."""
        payload = record.model_dump(mode="json")
        ctx.store.save_record(record_name(record.role, record.number), payload, keep_earlier=keep_earlier)
        self.log.info("%s: %s (%s)", self.task_id, record.outcome, record.reason)
        if record.outcome == "rejected":
            reason = f"approval gate {self.task_id}: {record.reason}"
            if load_record(ctx) is not None:  # the run's one-line story: why it ends aborted
                update_record(ctx, reason=reason)
            raise ApprovalRejected(f"{reason}; the release is aborted before traffic moves")
        return payload

    # ------------------------------------------------------------------------------------- helpers
    def _one_of(self, record: GateRecord, approvals: Approvals, needs: str) -> GateRecord:
        """Ask one person of ``approvals.approvers`` other than the one who triggered the run (the emergency
        override, a paused canary); rejected at once when nobody could answer."""
        now = utcnow()
        try:
            record.approvers = resolve_approvers(approvals.approvers, role_members)
            record.not_users = self._not_users(record.approvers)
            record.eligible = eligible(record.approvers, record.triggered_by, record.not_users)
            record.opened_at, record.deadline = now, deadline_after(now, approvals.timeout_minutes)
            problem = shortfall(record.approvers, record.eligible, 1, record.triggered_by, [], record.not_users)
        except ApprovalError as exc:
            problem = str(exc)
        if not problem and record.triggered_by == DAG_TEST_USER:
            problem = (f"{needs}, and dag.test (gendev-release run) never resumes a Human-in-the-loop task; trigger "
                       "it in a running Airflow")
        return record.decide("rejected", problem) if problem else record

    def _not_users(self, approvers: list[str]) -> list[str]:
        """Approvers Airflow does not list as users: they could never log in, so they are never asked."""
        users = known_users()
        not_users = [] if users is None else [a for a in approvers if a not in users]
        if not_users:
            self.log.warning("approvers %s are not Airflow users; they are not asked", ", ".join(not_users))
        return not_users

    def _keep_lease(self, ctx: DutyContext, wait: timedelta) -> None:
        """Nothing renews the service's lease while people decide: make its time to live cover the whole wait."""
        approvals = ctx.spec.approvals
        extra = approvals.escalation_timeout_minutes * 60 if approvals and approvals.on_timeout == "escalate" else 0
        service_lease(ctx.paths.home, ctx.spec.service).acquire(
            dag_id=ctx.paths.dag_id, run_id=ctx.run_id, ttl_seconds=lease_ttl(wait.total_seconds() + extra))

    def _request_text(self, ctx: DutyContext, record: GateRecord) -> tuple[str, str]:
        label = "escalated approval" if record.role == "escalation" else \
            f"approval {record.number} of {record.required}"
        subject = f"Approve {ctx.spec.service} {ctx.version} ({label})"
        risk = ctx.earlier("risk_assessment")
        facts = risk.facts if risk else {}
        fired = ", ".join(str(r.get("rule")) for r in facts.get("risk_rules_fired") or [] if isinstance(r, dict))
        on_timeout = ("the release is rejected and aborted" if record.on_timeout == "reject"
                      else "one person of approvals.escalate_to decides instead")
        lines = [
            f"**{ctx.spec.service} {ctx.version}** is staged and hardened (phases 1-4 passed); no traffic has "
            f"moved. It waits for your decision before the traffic switch ({label}).", "",
            *[f"- Why it stops: {reason}" for reason in record.stop_reasons],
            f"- Risk: {facts.get('risk_level', 'not handed on')} (score {facts.get('risk_score', '-')}"
            + (f"; rules: {fired}" if fired else "") + ")",
            f"- Environment: {ctx.spec.environment}; active version: {ctx.target.current_version() or 'nothing'}",
            f"- Triggered by: {record.triggered_by or 'nobody (scheduled)'} (may not approve)",
            f"- Approved so far: {', '.join(record.approved_before) or 'nobody'}",
            f"- Who may answer: {', '.join(record.eligible)}",
            f"- Deadline: {record.deadline.isoformat() if record.deadline else '-'}; then {on_timeout}",
            f"- Evidence of this run: {ctx.paths.evidence_location}", "",
            f"**{APPROVE}** lets the release continue; **{REJECT}** aborts it (the staged version is stopped, "
            "the serving version keeps serving). Give a comment: it is kept in the release's evidence.",
        ]
        return subject, "\n".join(lines)


class WindowOverrideOperator(ApprovalGateOperator):
    """``change_window_override``: people let an emergency release through a closed change window.

    It runs before the change-window gate and asks only when the run was triggered with
    ``emergency: true`` *and* the window is closed now; otherwise it hands on nothing and the gate
    decides as always. One person of ``approvals.approvers`` other than the one who triggered the
    run approves (Airflow's Required actions); a Reject or a timeout fails the task, so the release
    is aborted before anything changed. The approval is handed on as a
    :class:`~gendev_release.sensors.change_window.WindowOverride`, which the gate records.
    """

    @classmethod
    def for_override(cls, *, spec_data: dict[str, Any], spec_path: str | None = None,
                     **kwargs: Any) -> WindowOverrideOperator:
        operator = cls.for_gate(gate_task=OVERRIDE_TASK, spec_data=spec_data, spec_path=spec_path, **kwargs)
        operator.subject = f"Approve an emergency release of {spec_data.get('service', 'the service')} outside " \
                           "its change window"
        assert isinstance(operator, WindowOverrideOperator)
        return operator

    def _open(self, context: Context, ctx: DutyContext) -> GateRecord:
        spec = ctx.spec
        approvals, window = spec.approvals, spec.change_window
        triggered_by = getattr(context["dag_run"], "triggering_user_name", None)
        record = GateRecord(task_id=self.task_id, role=EMERGENCY, number=1, required=1, service=spec.service,
                            version=ctx.version, triggered_by=triggered_by, on_timeout="reject")
        if not ctx.params.emergency:
            return record.decide("not_required", "the run asks for no emergency override (trigger conf "
                                                 "emergency: true)")
        if window is None or approvals is None or not window.emergency_override:
            return record.decide("rejected", "this spec allows no emergency override (change_window."
                                             "emergency_override and approvals)")
        state = evaluate(window, utcnow())
        if state.open:
            return record.decide("not_required", f"the change window is open ({state.reason}): no override needed")
        record.stop_reasons = [f"emergency override requested by {triggered_by or 'nobody (scheduled)'}: the change "
                               f"window is {state.reason}"]
        return self._one_of(record, approvals, "an emergency override needs a person's approval")

    def _finish(self, ctx: DutyContext, record: GateRecord, *, keep_earlier: bool) -> dict[str, Any]:
        super()._finish(ctx, record, keep_earlier=keep_earlier)  # records it; a rejection fails the task here
        if record.outcome != "approved":
            return {}  # nothing handed on: the gate decides on the clock alone
        who = [record.decided_by.name] if record.decided_by else approved_users([record])
        override = WindowOverride(approved=True, approvers=who, decided_at=record.decided_at or utcnow(),
                                  comment=record.comment or "")
        return override.model_dump(mode="json")

    def _request_text(self, ctx: DutyContext, record: GateRecord) -> tuple[str, str]:
        subject = f"Emergency release of {ctx.spec.service} {ctx.version} outside its change window"
        lines = [
            f"**{ctx.spec.service} {ctx.version}** was triggered as an emergency: it asks to run although its "
            "change window is closed. Nothing has changed yet.", "",
            *[f"- {reason}" for reason in record.stop_reasons],
            f"- Active version: {ctx.target.current_version() or 'nothing'}",
            f"- Who may answer: {', '.join(record.eligible)} (not {record.triggered_by or 'the scheduler'}, who "
            "triggered it)",
            f"- Deadline: {record.deadline.isoformat() if record.deadline else '-'}; then the release is rejected",
            "", f"**{APPROVE}** lets it run now (every later gate still applies); **{REJECT}** aborts it. Give a "
            "comment: it is kept in the release's evidence."]
        return subject, "\n".join(lines)


class AnalysisDecisionOperator(ApprovalGateOperator):
    """``canary_<pct>_decision`` (``on_failed_analysis: pause``): people decide a canary whose analysis failed.

    When the step's analysis passed (or had no baseline) nobody is asked. When it failed, the canary
    stays at its weight and one person of ``approvals.approvers`` other than the one who triggered
    the run decides: **Approve** continues to the next step; **Reject** or a timeout takes the canary
    back to 0 % at once and fails the task, so the release rolls back. The decision goes to the
    evidence store (``approval-analysis-<n>``) and onto the step's record.
    """

    local_step: str = ""

    @classmethod
    def for_step(cls, *, local_step: str, spec_data: dict[str, Any], spec_path: str | None = None,
                 **kwargs: Any) -> AnalysisDecisionOperator:
        operator = cls.for_gate(gate_task=local_step, spec_data=spec_data, spec_path=spec_path, **kwargs)
        assert isinstance(operator, AnalysisDecisionOperator)
        operator.local_step = local_step
        operator.subject = f"Decide a failed canary analysis of {spec_data.get('service', 'the service')}"
        return operator

    def _step(self, ctx: DutyContext) -> PlannedStep:
        try:
            return plan_strategy(ctx.spec).step(self.local_step)
        except KeyError as exc:
            raise ApprovalError(str(exc.args[0])) from None

    def _open(self, context: Context, ctx: DutyContext) -> GateRecord:
        spec, step = ctx.spec, self._step(ctx)
        approvals = spec.approvals
        triggered_by = getattr(context["dag_run"], "triggering_user_name", None)
        record = GateRecord(task_id=self.task_id, role=ANALYSIS, number=step.number, required=1,
                            service=spec.service, version=ctx.version, triggered_by=triggered_by, on_timeout="reject")
        outcome = stored_record(ctx, step).get("outcome")
        if outcome in ("passed", "not_applicable"):
            return record.decide("not_required", f"{step.local_id} {outcome.replace('_', ' ')}: nothing to decide")
        if outcome != "paused":
            return record.decide("rejected", f"{step.local_id} left no paused analysis to decide (its record says "
                                             f"{outcome or 'nothing'}); clear {step.local_id} to run it again")
        analysis = stored_record(ctx, step).get("analysis") or {}
        record.stop_reasons = [f"{step.local_id} ({step.percent} %) analysis failed: {reason}"
                               for reason in analysis.get("reasons") or ["(no reason recorded)"]]
        if approvals is None:
            return record.decide("rejected", "on_failed_analysis: pause needs approvals; none in the spec")
        return self._one_of(record, approvals, "a paused canary needs a person's decision")

    def _finish(self, ctx: DutyContext, record: GateRecord, *, keep_earlier: bool) -> dict[str, Any]:
        step = self._step(ctx)
        if record.outcome in ("approved", "rejected"):
            stored = stored_record(ctx, step)
            who = record.decided_by.name if record.decided_by else "nobody (timeout)"
            if record.outcome == "rejected" and stored.get("outcome") == "paused":
                done = undo(ctx, step, stored)
                decided(ctx, step, {**stored, "undone": done}, "failed", f"rejected by {who}: {record.reason}")
                record.reason = f"{record.reason}; {done}"
            elif record.outcome == "approved":
                decided(ctx, step, stored, "continued", f"approved by {who} despite the failed analysis")
        return super()._finish(ctx, record, keep_earlier=keep_earlier)

    def _request_text(self, ctx: DutyContext, record: GateRecord) -> tuple[str, str]:
        step = self._step(ctx)
        subject = f"{ctx.spec.service} {ctx.version}: the canary at {step.percent} % failed its analysis"
        lines = [
            f"The canary of **{ctx.spec.service} {ctx.version}** takes {step.percent} % of the traffic and failed "
            "its analysis; the spec asks people to decide (on_failed_analysis: pause). It stays at "
            f"{step.percent} % until you answer.", "",
            *[f"- {reason}" for reason in record.stop_reasons],
            f"- Evidence: {ctx.paths.evidence_location} (progress records: samples, statistic, p-value)",
            f"- Who may answer: {', '.join(record.eligible)}",
            f"- Deadline: {record.deadline.isoformat() if record.deadline else '-'}; then the canary goes back to "
            "0 % and the release rolls back", "",
            f"**{APPROVE}** continues the rollout; **{REJECT}** takes the canary back to 0 % and rolls back."]
        return subject, "\n".join(lines)
