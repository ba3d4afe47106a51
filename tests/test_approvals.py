"""Approvals by people: the spec section, the gate's rules, the operator's decisions, the DAG wiring.

The rules (:mod:`gendev_release.approvals`) are tested on their own; the operator
(:mod:`gendev_release.operators.approval`) is driven through ``execute`` / ``execute_complete`` with
the resume events Airflow sends (a person's answer from the REST API, the scheduler's timeout) and a
task instance whose XCom is a dict; Airflow's HITL request is captured instead of written to a
database. The behaviour inside a real Airflow (awaiting_input, 403 for the triggering user, the
scheduler's timeout) is proven in ``tests/test_e2e_approvals.py``.
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import pytest
import yaml
from airflow.sdk.exceptions import AirflowFailException, TaskAwaitingInput

from gendev_release import approvals as rules
from gendev_release.approvals import APPROVE, REJECT, Answer, ApprovalError, GateRecord, judge
from gendev_release.catalogue import step_by_id
from gendev_release.errors import SpecError
from gendev_release.evidence_store import EvidenceStore
from gendev_release.operators import approval as approval_module
from gendev_release.operators.approval import (
    AnalysisDecisionOperator,
    ApprovalGateOperator,
    WindowOverrideOperator,
    role_members,
)
from gendev_release.plan import plan_release
from gendev_release.release_report import render_markdown
from gendev_release.render import build_release_dag
from gendev_release.report import ReportBuilder
from gendev_release.run_record import RunRecord, RunRecordStore
from gendev_release.sensors.change_window import WindowOverride
from gendev_release.spec import Approvals, ReleaseSpec, parse_spec

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "dags" / "releases" / "demo.yaml"
USERS = "alice:admin,bob:op,carol:op,dave:viewer,erin:user"
NOW = datetime(2026, 3, 4, 10, 0, tzinfo=timezone.utc)


def spec_with(approvals: dict[str, Any] | None, **top: Any) -> ReleaseSpec:
    data = yaml.safe_load(DEMO.read_text())
    if approvals is not None:
        data["approvals"] = approvals
    data.update(top)
    return parse_spec(data, str(DEMO), DEMO)


def problems_of(approvals: dict[str, Any] | None = None, risk: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    data = yaml.safe_load(DEMO.read_text())
    if approvals is not None:
        data["approvals"] = approvals
    data["risk"].update(risk or {})
    with pytest.raises(SpecError) as caught:
        parse_spec(data)
    return [(p.field, p.message) for p in caught.value.problems]


# ------------------------------------------------------------------------------------------- spec
def test_the_demo_spec_has_no_gate_and_keeps_its_dag_shape() -> None:
    spec = spec_with(None)
    assert spec.approvals is not None and spec.approvals.required_for == []
    assert rules.gate_tasks(spec.approvals) == []
    assert not [t for t in plan_release(spec).all_tasks() if t.kind == "approval"]


def test_a_typed_in_high_risk_approval_is_refused_with_how_to_rewrite_it() -> None:
    found = problems_of(risk={"high_risk_approval": {"approved_by": "cto", "reason": "schema change rehearsed"}})
    assert len(found) == 1
    field, message = found[0]
    assert field == "risk.high_risk_approval"
    assert "remove risk.high_risk_approval and add high_risk to approvals.required_for" in message
    assert "people approve it in Airflow" in message


@pytest.mark.parametrize(("approvals", "field", "needle"), [
    ({"approvers": ["alice"], "on_timeout": "escalate"}, "approvals.escalate_to",
     "on_timeout: escalate needs escalate_to"),
    ({"approvers": ["alice"], "escalate_to": ["dave"]}, "approvals.escalate_to",
     "escalate_to is asked only with on_timeout: escalate"),
    ({"approvers": ["alice", "al ice"]}, "approvals.approvers.1",
     "'al ice' is not an Airflow user id or role:<name>"),
    ({"approvers": ["alice"], "required_for": ["production", "production"]}, "approvals.required_for",
     "production listed more than once"),
    ({"approvers": ["alice"], "required_for": ["canary"]}, "approvals.required_for.0", "'high_risk'"),
    ({"approvers": ["alice"], "on_timeout": "approve"}, "approvals.on_timeout", "'reject' or 'escalate'"),
    ({"approvers": ["alice"], "timeout_minutes": 0}, "approvals.timeout_minutes", "greater than 0"),
])
def test_bad_approvals_name_the_field(approvals: dict[str, Any], field: str, needle: str) -> None:
    found = problems_of(approvals)
    assert [f for f, _ in found] == [field], found
    assert needle in found[0][1]


def test_a_role_may_stand_for_more_approvers_than_listed() -> None:
    spec = spec_with({"approvers": ["role:op"], "required": 2, "required_for": ["production"]})
    assert spec.approvals is not None and spec.approvals.required == 2


# ---------------------------------------------------------------------------------- when it stops
def gate(**fields: Any) -> Approvals:
    return Approvals.model_validate({"approvers": ["alice", "bob", "carol"], **fields})


@pytest.mark.parametrize(("required_for", "environment", "level", "stops"), [
    ([], "production", "high", False),
    (["production"], "production", "low", True),
    (["production"], "staging", "low", False),
    (["high_risk"], "production", "low", False),
    (["high_risk"], "production", "high", True),
    (["high_risk"], "production", None, True),  # no level handed on: high risk cannot be ruled out
    (["staging", "high_risk"], "staging", "medium", True),
])
def test_stop_reasons(required_for: list[str], environment: str, level: str | None, stops: bool) -> None:
    reasons = rules.stop_reasons(gate(required_for=required_for), environment, level, 7)
    assert bool(reasons) is stops, reasons


def test_high_risk_gate_covers_the_environment_or_high_risk() -> None:
    assert rules.high_risk_gate(gate(required_for=[]), "production") is None
    assert rules.high_risk_gate(gate(required_for=["staging"]), "production") is None
    assert rules.high_risk_gate(None, "production") is None
    text = rules.high_risk_gate(gate(required_for=["high_risk"], required=2), "production")
    assert text == ("2 of alice, bob, carol approve in Airflow at p4_environment.approval_1, "
                    "p4_environment.approval_2 before traffic moves (approvals.required_for: high_risk)")


# -------------------------------------------------------------------------------------- who may
def test_roles_resolve_to_users_once_each_in_order() -> None:
    members = {"op": ["bob", "carol"], "admin": ["alice", "bob"]}
    assert rules.resolve_approvers(["carol", "role:op", "role:admin"], members.__getitem__) == \
        ["carol", "bob", "alice"]


def test_the_triggering_user_and_earlier_approvers_are_not_eligible() -> None:
    assert rules.eligible(["alice", "bob", "carol"], "alice") == ["bob", "carol"]
    assert rules.eligible(["alice", "bob", "carol"], "alice", ["bob"]) == ["carol"]
    assert rules.eligible(["alice", "bob"], None) == ["alice", "bob"]  # a scheduled run: nobody triggered it


def test_shortfall_names_why_the_gate_can_never_be_satisfied() -> None:
    assert rules.shortfall(["alice", "bob"], ["bob"], 1, "alice", []) is None
    assert rules.shortfall(["alice", "bob"], ["bob"], 2, "alice", []) == (
        "only 1 approver(s) (bob) may give the 2 approval(s) still needed: alice triggered this run and may not "
        "approve it")
    assert rules.shortfall(["alice"], [], 1, "alice", []) == (
        "only 0 approver(s) (nobody) may give the 1 approval(s) still needed: alice triggered this run and may "
        "not approve it")


# --------------------------------------------------------------------------------------- answers
def answer(option: str | None, user: str | None, comment: str | None = None, **extra: Any) -> Answer:
    event = {"chosen_options": [option] if option else [], "params_input": {"comment": comment} if comment else {},
             "responded_at": NOW, "responded_by_user": {"id": user, "name": user} if user else None, **extra}
    return Answer.from_event(event)


def verdict(ans: Answer, eligible_now: list[str] | None = None, approved: list[str] | None = None,
            on_timeout: str = "reject") -> tuple[str, str]:
    judged = judge(ans, eligible_now=["bob", "carol"] if eligible_now is None else eligible_now,
                   triggered_by="alice", approved=approved or [], on_timeout=on_timeout)  # type: ignore[arg-type]
    return judged.verdict, judged.reason


def test_an_eligible_approver_approves_with_a_comment() -> None:
    assert verdict(answer(APPROVE, "bob", "  staged slot looks right  ")) == \
        ("approve", "approved by bob: staged slot looks right")


def test_one_reject_rejects() -> None:
    assert verdict(answer(REJECT, "carol", "not during the sale")) == \
        ("reject", "rejected by carol: not during the sale")


def test_self_approval_is_refused_by_id_or_name() -> None:
    assert verdict(answer(APPROVE, "alice")) == ("refuse", "alice triggered this run and may not approve or reject it")
    fab = Answer.from_event({"chosen_options": [APPROVE], "responded_at": NOW,
                             "responded_by_user": {"id": "7", "name": "alice"}})
    assert verdict(fab, eligible_now=["7", "bob"])[0] == "refuse"


def test_a_second_approval_by_the_same_person_is_refused() -> None:
    assert verdict(answer(APPROVE, "bob"), eligible_now=["carol"], approved=["bob"]) == \
        ("refuse", "bob already approved this release; each approval must come from a different person")


def test_someone_outside_the_gate_is_refused() -> None:
    assert verdict(answer(APPROVE, "mallory")) == \
        ("refuse", "mallory is not an approver of this gate (it may be answered by bob, carol)")
    assert verdict(answer("Maybe", "bob"))[0] == "refuse"


@pytest.mark.parametrize("event", [
    {"chosen_options": [REJECT], "params_input": {}, "responded_at": NOW, "responded_by_user": None,
     "timedout": True},  # the scheduler applied the default
    {"error": "The Human-in-the-loop response timeout has passed without a response.", "error_type": "timeout"},
    {"chosen_options": [APPROVE], "params_input": {}, "responded_at": NOW, "responded_by_user": None,
     "timedout": True},  # even a default of Approve
])
def test_a_timeout_rejects_or_escalates_and_never_approves(event: dict[str, Any]) -> None:
    ans = Answer.from_event(event)
    assert ans.timed_out
    assert verdict(ans) == ("reject", "no approver answered before the deadline: a timeout rejects")
    assert verdict(ans, on_timeout="escalate") == ("escalate", "no approver answered before the deadline: escalated")


def test_no_answer_without_a_named_responder_ever_approves() -> None:
    options = [APPROVE, REJECT, None, "Maybe"]
    users = [None, "alice", "bob", "mallory"]
    for option, user, timed_out, on_timeout in itertools.product(options, users, (False, True),
                                                                  ("reject", "escalate")):
        ans = answer(option, user, timedout=timed_out)
        got, _ = verdict(ans, on_timeout=on_timeout)
        if got == "approve":
            assert (option, user, timed_out) == (APPROVE, "bob", False)


def test_the_answer_keeps_what_the_person_sent() -> None:
    ans = Answer.from_event({"chosen_options": [APPROVE], "params_input": {"comment": "ok", "extra": 1},
                             "responded_at": NOW.isoformat(), "responded_by_user": {"id": "bob", "name": "Bob B"}})
    assert (ans.option, ans.by, ans.at, ans.comment, ans.timed_out) == (
        APPROVE, rules.ApprovalUser(id="bob", name="Bob B"), NOW, "ok", False)
    assert ans.params_input == {"comment": "ok", "extra": 1}


# ----------------------------------------------------------------------------------- the operator
class FakeTI:
    """The task instance the operator sees: XCom of earlier tasks as a dict, the run alive."""

    def __init__(self, task_id: str, xcoms: dict[str, Any]) -> None:
        self.task_id = task_id
        self.id = uuid4()
        self.xcoms = xcoms

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> Any:
        return self.xcoms.get(task_ids)

    def get_dagrun_state(self, dag_id: str, run_id: str) -> str:
        return "running"


def risk_report(level: str, score: int) -> dict[str, Any]:
    """risk_assessment's report as it reaches XCom (only its facts matter to the gate)."""
    phase, step = step_by_id("risk_assessment")
    builder = ReportBuilder(phase, step, service="demo", version="1.2.0", run_id="r1")
    builder.facts.update(risk_level=level, risk_score=score, risk_rules_fired=[{"rule": "breaking_change",
                                                                               "points": 4}])
    return builder.finish().model_dump(mode="json")


class Gate:
    """One approval task of a spec, run the way Airflow runs it; captures the HITL requests it writes."""

    def __init__(self, spec: ReleaseSpec, local: str, monkeypatch: pytest.MonkeyPatch, home: Path, *,
                 triggered_by: str | None = "alice", xcoms: dict[str, Any] | None = None,
                 operator: ApprovalGateOperator | None = None, record: str | None = None,
                 conf: dict[str, Any] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        monkeypatch.setattr(approval_module, "upsert_hitl_detail", lambda **kw: self.requests.append(kw))
        self.operator = operator or ApprovalGateOperator.for_gate(
            gate_task=local, task_id=f"p4_environment.{local}", spec_data=spec.model_dump(mode="json"),
            spec_path=str(DEMO))
        self.ti = FakeTI(self.operator.task_id, xcoms or {})
        self.context: Any = {"ti": self.ti, "task_instance": self.ti, "params": {},
                             "dag_run": SimpleNamespace(dag_id=spec.dag_id, run_id="r1",
                                                        conf=conf or {"version": "1.2.0"},
                                                        triggering_user_name=triggered_by)}
        self.store = EvidenceStore.at(str(home / "evidence" / spec.dag_id / "r1"))
        self.record_name = record or rules.record_name(*self._position(spec, local))

    @staticmethod
    def _position(spec: ReleaseSpec, local: str) -> tuple[Any, int]:
        _, role, number = next(t for t in rules.gate_tasks(spec.approvals) if t[0] == local)
        return role, number

    def park(self) -> dict[str, Any]:
        """``execute``: the task must park awaiting input; returns the gate state Airflow keeps for the resume."""
        with pytest.raises(TaskAwaitingInput) as parked:
            self.operator.execute(self.context)
        assert parked.value.method_name == "execute_complete"
        return parked.value.kwargs["gate"]

    def resume(self, gate_state: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
        return self.operator.execute_complete(self.context, event=event, gate=gate_state)

    def evidence(self) -> dict[str, Any]:
        return json.loads(self.store.read(f"{self.record_name}.json"))


def response(option: str, user: str, comment: str = "") -> dict[str, Any]:
    return {"chosen_options": [option], "params_input": {"comment": comment},
            "responded_at": datetime.now(timezone.utc), "responded_by_user": {"id": user, "name": user},
            "timedout": False}


TIMEOUT = {"chosen_options": [REJECT], "params_input": {"comment": ""}, "responded_at": NOW,
           "responded_by_user": None, "timedout": True}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GENDEV_HOME", str(tmp_path / "gendev"))
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", USERS)
    return tmp_path / "gendev"


TWO_OF_OPS = {"approvers": ["alice", "role:op"], "required": 2, "required_for": ["production"],
              "timeout_minutes": 30}


def test_role_members_come_from_airflows_users(home: Path) -> None:
    assert role_members("op") == ["bob", "carol"]
    with pytest.raises(ApprovalError, match="role:auditor names no Airflow user"):
        role_members("auditor")


def test_the_gate_asks_everyone_but_the_triggering_user_and_records_it(home: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_with(TWO_OF_OPS)
    gate = Gate(spec, "approval_1", monkeypatch, home)
    state = gate.park()
    [request] = gate.requests
    assert request["assigned_users"] == [{"id": "bob", "name": "bob"}, {"id": "carol", "name": "carol"}]
    assert request["options"] == [APPROVE, REJECT] and request["defaults"] == [REJECT]
    assert request["subject"] == "Approve demo 1.2.0 (approval 1 of 2)"
    assert "Triggered by: alice (may not approve)" in request["body"]
    assert "comment" in request["params"]
    waiting = gate.evidence()
    assert waiting["outcome"] == "waiting" and waiting["eligible"] == ["bob", "carol"]
    assert waiting["approvers"] == ["alice", "bob", "carol"] and waiting["triggered_by"] == "alice"
    deadline = datetime.fromisoformat(waiting["deadline"])
    assert deadline - datetime.fromisoformat(waiting["opened_at"]) == timedelta(minutes=30)
    assert state == waiting
    sent = [json.loads(line) for line in (home / "notifications" / "demo.jsonl").read_text().splitlines()]
    assert [m["event"] for m in sent] == ["approval_requested"]


def test_n_of_m_two_distinct_approvals_then_the_release_continues(home: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_with(TWO_OF_OPS)
    first = Gate(spec, "approval_1", monkeypatch, home)
    decided = first.resume(first.park(), response(APPROVE, "bob", "looks good"))
    assert (decided["outcome"], decided["decided_by"], decided["comment"]) == (
        "approved", {"id": "bob", "name": "bob"}, "looks good")
    assert first.evidence() == decided

    # the second approval: assigned to whoever may still approve (not alice, not bob), same deadline
    second = Gate(spec, "approval_2", monkeypatch, home, xcoms={"p4_environment.approval_1": decided})
    state = second.park()
    assert second.requests[0]["assigned_users"] == [{"id": "carol", "name": "carol"}]
    assert second.requests[0]["subject"] == "Approve demo 1.2.0 (approval 2 of 2)"
    assert state["approved_before"] == ["bob"] and state["deadline"] == decided["deadline"]
    # bob again (Airflow refuses him with 403; if it let him through) is not counted: asked again, still waiting
    with pytest.raises(TaskAwaitingInput) as again:
        second.resume(state, response(APPROVE, "bob"))
    state = again.value.kwargs["gate"]
    assert [r["verdict"] for r in state["responses"]] == ["refuse"]
    assert second.evidence()["outcome"] == "waiting"
    done = second.resume(state, response(APPROVE, "carol"))
    assert done["outcome"] == "approved" and done["decided_by"]["id"] == "carol"
    assert [r["verdict"] for r in done["responses"]] == ["refuse", "approve"]


def test_self_approval_is_not_counted_even_when_airflow_lets_it_through(home: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``simple_auth_manager_all_admins`` Airflow lets anyone answer: the gate still refuses the triggerer."""
    gate = Gate(spec_with(TWO_OF_OPS), "approval_1", monkeypatch, home)
    with pytest.raises(TaskAwaitingInput) as again:
        gate.resume(gate.park(), response(APPROVE, "alice"))
    assert len(gate.requests) == 2  # the same approval asked again
    state = again.value.kwargs["gate"]
    assert state["outcome"] == "waiting"
    assert state["responses"][0]["reason"] == "alice triggered this run and may not approve or reject it"


def test_a_reject_aborts_with_the_decision_recorded(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_with(TWO_OF_OPS)
    gate = Gate(spec, "approval_1", monkeypatch, home)
    state = gate.park()
    RunRecordStore(home).save(RunRecord(dag_id=spec.dag_id, run_id="r1", service="demo", version="1.2.0"))
    with pytest.raises(AirflowFailException, match="rejected by carol: not during the sale"):
        gate.resume(state, response(REJECT, "carol", "not during the sale"))
    record = gate.evidence()
    assert (record["outcome"], record["decided_by"]["id"], record["comment"]) == (
        "rejected", "carol", "not during the sale")
    run = RunRecordStore(home).load(spec.dag_id, "r1")
    assert run is not None and run.reason == ("approval gate p4_environment.approval_1: rejected by carol: not "
                                              "during the sale")


def test_a_timeout_rejects(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = Gate(spec_with(TWO_OF_OPS), "approval_1", monkeypatch, home)
    with pytest.raises(AirflowFailException, match="no approver answered before the deadline: a timeout rejects"):
        gate.resume(gate.park(), TIMEOUT)
    record = gate.evidence()
    assert record["outcome"] == "rejected" and record["decided_by"] is None
    assert record["responses"][0]["by"] is None and record["responses"][0]["verdict"] == "reject"


def test_a_timeout_escalates_and_the_escalation_decides(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_with({**TWO_OF_OPS, "on_timeout": "escalate", "escalate_to": ["dave", "alice"],
                      "escalation_timeout_minutes": 10})
    assert [t[0] for t in rules.gate_tasks(spec.approvals)] == ["approval_1", "approval_2", "approval_escalation"]
    first = Gate(spec, "approval_1", monkeypatch, home)
    escalated = first.resume(first.park(), TIMEOUT)
    assert escalated["outcome"] == "escalated" and escalated["decided_by"] is None
    events = [json.loads(line)["event"] for line in (home / "notifications" / "demo.jsonl").read_text().splitlines()]
    assert events == ["approval_requested", "approval_escalated"]
    second = Gate(spec, "approval_2", monkeypatch, home, xcoms={"p4_environment.approval_1": escalated})
    passed = second.operator.execute(second.context)
    assert passed["outcome"] == "escalated" and second.requests == []
    escalation = Gate(spec, "approval_escalation", monkeypatch, home,
                      xcoms={"p4_environment.approval_1": escalated, "p4_environment.approval_2": passed})
    state = escalation.park()
    assert escalation.requests[0]["assigned_users"] == [{"id": "dave", "name": "dave"}]  # not alice: she triggered
    assert escalation.requests[0]["subject"] == "Approve demo 1.2.0 (escalated approval)"
    # the escalation's own timeout always rejects
    with pytest.raises(AirflowFailException, match="a timeout rejects"):
        escalation.resume(state, TIMEOUT)
    assert escalation.evidence()["outcome"] == "rejected"


def test_no_escalation_when_every_approval_came_in_time(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_with({**TWO_OF_OPS, "required": 1, "on_timeout": "escalate", "escalate_to": ["dave"]})
    approved = GateRecord(task_id="p4_environment.approval_1", role="approval", number=1, required=1,
                          service="demo", version="1.2.0", outcome="approved").model_dump(mode="json")
    gate = Gate(spec, "approval_escalation", monkeypatch, home, xcoms={"p4_environment.approval_1": approved})
    assert gate.operator.execute(gate.context)["outcome"] == "not_required" and gate.requests == []


def test_too_few_eligible_approvers_rejects_without_asking(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_with({"approvers": ["alice", "bob"], "required": 2, "required_for": ["production"]})
    gate = Gate(spec, "approval_1", monkeypatch, home, triggered_by="alice")
    with pytest.raises(AirflowFailException, match="only 1 approver.*alice triggered this run"):
        gate.operator.execute(gate.context)
    assert gate.requests == [] and gate.evidence()["outcome"] == "rejected"


def test_dag_test_cannot_wait_for_people_and_rejects(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``gendev-release run`` (dag.test) would wait forever for an answer: the gate aborts the release instead."""
    gate = Gate(spec_with(TWO_OF_OPS), "approval_1", monkeypatch, home, triggered_by="dag_test")
    with pytest.raises(AirflowFailException, match="this run cannot wait for people: dag.test"):
        gate.operator.execute(gate.context)
    assert gate.requests == [] and gate.evidence()["outcome"] == "rejected"


def test_approvers_who_are_not_airflow_users_are_never_asked(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's ``release-manager`` is no Airflow user: a gate needing it rejects at once instead of waiting."""
    spec = spec_with({"approvers": ["release-manager"], "required_for": ["production"]})
    gate = Gate(spec, "approval_1", monkeypatch, home)
    with pytest.raises(AirflowFailException, match="release-manager is not an Airflow user"):
        gate.operator.execute(gate.context)
    record = gate.evidence()
    assert record["not_users"] == ["release-manager"] and gate.requests == []
    partly = Gate(spec_with({"approvers": ["bob", "ghost"], "required_for": ["production"]}), "approval_1",
                  monkeypatch, home)
    partly.park()
    assert partly.requests[0]["assigned_users"] == [{"id": "bob", "name": "bob"}]


def test_a_release_that_need_not_stop_passes_and_says_why(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_with({"approvers": ["bob"], "required_for": ["high_risk"]})
    gate = Gate(spec, "approval_1", monkeypatch, home,
                xcoms={"p1_pre_deployment.risk_assessment": risk_report("low", 1)})
    record = gate.operator.execute(gate.context)
    assert record["outcome"] == "not_required" and gate.requests == []
    assert record["reason"] == ("no reason to stop: production is not in approvals.required_for and the risk "
                                "level is low")


def test_a_high_risk_release_stops_for_approval(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_with({"approvers": ["bob"], "required_for": ["high_risk"]})
    gate = Gate(spec, "approval_1", monkeypatch, home,
                xcoms={"p1_pre_deployment.risk_assessment": risk_report("high", 8)})
    state = gate.park()
    assert state["stop_reasons"] == ["risk_assessment rated this release high risk (score 8); "
                                     "approvals.required_for lists high_risk"]
    assert "Risk: high (score 8; rules: breaking_change)" in gate.requests[0]["body"]


def test_a_role_that_cannot_be_resolved_rejects(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", "airflow.providers.fab.auth_manager.fab_auth_manager."
                                                      "FabAuthManager")
    gate = Gate(spec_with(TWO_OF_OPS), "approval_1", monkeypatch, home)
    with pytest.raises(AirflowFailException, match="roles are resolved only with Airflow's SimpleAuthManager"):
        gate.operator.execute(gate.context)


def test_the_gates_lease_outlives_the_wait(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gendev_release.release_run import service_lease

    Gate(spec_with({**TWO_OF_OPS, "timeout_minutes": 600}), "approval_1", monkeypatch, home).park()
    lease = service_lease(home, "demo").read()
    assert lease is not None and lease.run_id == "r1" and lease.ttl_seconds >= 600 * 60


def test_the_release_report_lists_every_decision(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_with(TWO_OF_OPS)
    first = Gate(spec, "approval_1", monkeypatch, home)
    state = first.park()
    with pytest.raises(TaskAwaitingInput) as again:
        first.resume(state, response(APPROVE, "alice"))
    decided = first.resume(again.value.kwargs["gate"], response(APPROVE, "bob", "ok"))
    rows = rules.gate_records(first.store)
    assert [r["outcome"] for r in rows] == ["approved"]
    report = {"service": "demo", "version": "1.2.0", "outcome": "success", "run_id": "r1", "previous_version": None,
              "generated_at": "now", "checklist": [], "success_criteria": [], "steps": [], "approvals": rows}
    text = render_markdown(report)
    assert f"- approval 1 of 2: **approved** by bob at {decided['decided_at']} (ok); approved by bob: ok" in text
    assert "  - not counted: alice answered Approve: alice triggered this run and may not approve or reject it" in text


# --------------------------------------------------------------------------------------- the DAG
def test_the_gate_sits_between_phase_4_and_the_traffic_switch() -> None:
    spec = spec_with({**TWO_OF_OPS, "on_timeout": "escalate", "escalate_to": ["dave"]})
    dag = build_release_dag(spec)
    ids = ["p4_environment.approval_1", "p4_environment.approval_2", "p4_environment.approval_escalation"]
    assert dag.get_task(ids[0]).upstream_task_ids == {"p4_environment.hardening"}
    assert dag.get_task(ids[1]).upstream_task_ids == {ids[0]}
    assert dag.get_task(ids[2]).upstream_task_ids == {ids[1]}
    assert dag.get_task("p5_deployment.preview_health").upstream_task_ids == {ids[2]}
    for task_id in ids:
        task = dag.get_task(task_id)
        assert isinstance(task, ApprovalGateOperator)
        assert (task.options, task.defaults, task.multiple, task.retries) == ([APPROVE, REJECT], [REJECT], False, 0)
    # still one chain into the release gate: a reject reaches the failure branch, which aborts
    assert "release_gate" in dag.get_task(ids[0]).get_flat_relative_ids(upstream=False)
    edges = sum(len(t.upstream_task_ids) for t in dag.tasks)
    assert edges == len(dag.tasks) - 1 + 2


# ------------------------------------------------------------------------ the emergency override
TODAY = datetime.now(timezone.utc).date()  # the override asks only while the real clock sees the window closed
FROZEN_NOW = {"freeze": [{"start": (TODAY - timedelta(days=1)).isoformat(),
                          "end": (TODAY + timedelta(days=30)).isoformat(), "reason": "year-end freeze"}]}


def override_gate(monkeypatch: pytest.MonkeyPatch, home: Path, *, window: dict[str, Any],
                  conf: dict[str, Any]) -> Gate:
    data = yaml.safe_load(DEMO.read_text())
    data["approvals"] = {"approvers": ["alice", "role:op"], "required": 1, "timeout_minutes": 30}
    data["change_window"].update({"emergency_override": True, **window})
    spec = parse_spec(data, str(DEMO), DEMO)
    operator = WindowOverrideOperator.for_override(task_id="change_window_override",
                                                   spec_data=spec.model_dump(mode="json"), spec_path=str(DEMO))
    return Gate(spec, "change_window_override", monkeypatch, home, operator=operator, record="approval-emergency",
                conf=conf)


def test_no_emergency_asked_or_an_open_window_asks_nobody(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    quiet = override_gate(monkeypatch, home, window=FROZEN_NOW, conf={"version": "1.2.0"})
    assert quiet.operator.execute(quiet.context) == {} and quiet.requests == []
    assert quiet.evidence()["outcome"] == "not_required"
    open_window = override_gate(monkeypatch, home, window={}, conf={"version": "1.2.0", "emergency": True})
    assert open_window.operator.execute(open_window.context) == {} and open_window.requests == []
    assert open_window.evidence()["reason"].startswith("the change window is open")


def test_an_approved_emergency_hands_the_gate_its_override(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = override_gate(monkeypatch, home, window=FROZEN_NOW, conf={"version": "1.2.0", "emergency": True})
    state = gate.park()
    [request] = gate.requests
    assert [u["id"] for u in request["assigned_users"]] == ["bob", "carol"]  # alice triggered it
    assert request["subject"] == "Emergency release of demo 1.2.0 outside its change window"
    assert "frozen until" in request["body"] and "year-end freeze" in request["body"]
    handed = gate.resume(state, response(APPROVE, "carol", "outage"))
    override = WindowOverride.model_validate(handed)
    assert (override.approved, override.approvers, override.comment) == (True, ["carol"], "outage")
    assert gate.evidence()["role"] == "emergency" and gate.evidence()["outcome"] == "approved"


def test_a_rejected_or_silent_emergency_aborts(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = override_gate(monkeypatch, home, window=FROZEN_NOW, conf={"version": "1.2.0", "emergency": True})
    with pytest.raises(AirflowFailException, match="rejected by bob: wait for the window"):
        gate.resume(gate.park(), response(REJECT, "bob", "wait for the window"))
    silent = override_gate(monkeypatch, home, window=FROZEN_NOW, conf={"version": "1.2.0", "emergency": True})
    with pytest.raises(AirflowFailException, match="a timeout rejects"):
        silent.resume(silent.park(), TIMEOUT)


# ------------------------------------------------------------------ a paused canary analysis
def decision_gate(monkeypatch: pytest.MonkeyPatch, home: Path, outcome: str) -> tuple[Gate, list[str]]:
    data = yaml.safe_load(DEMO.read_text())
    data["approvals"] = {"approvers": ["alice", "role:op"], "required": 1, "timeout_minutes": 30}
    data["strategy"] = {"kind": "canary", "steps": [10, 100], "on_failed_analysis": "pause"}
    spec = parse_spec(data, str(DEMO), DEMO)
    operator = AnalysisDecisionOperator.for_step(local_step="canary_10_decision",
                                                 task_id="p5_deployment.canary_10_decision",
                                                 spec_data=spec.model_dump(mode="json"), spec_path=str(DEMO))
    gate = Gate(spec, "canary_10_decision", monkeypatch, home, operator=operator, record="approval-analysis-1")
    gate.store.save_record("progress-01-canary_10", {
        "step": "canary_10", "percent": 10, "outcome": outcome, "new": {"id": "green"}, "baseline": {"id": "blue"},
        "analysis": {"reasons": ["canary error rate 16.13 % is above 1 %"]}})
    undone: list[str] = []
    monkeypatch.setattr(approval_module, "undo", lambda ctx, step, record: undone.append(step.local_id) or
                        "canary green set back to 0 %")
    return gate, undone


def test_a_passed_analysis_asks_nobody(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate, undone = decision_gate(monkeypatch, home, "passed")
    assert gate.operator.execute(gate.context)["outcome"] == "not_required"
    assert gate.requests == [] and undone == []


def test_people_continue_a_paused_canary(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate, undone = decision_gate(monkeypatch, home, "paused")
    state = gate.park()
    [request] = gate.requests
    assert [u["id"] for u in request["assigned_users"]] == ["bob", "carol"]
    assert "canary_10 (10 %) analysis failed: canary error rate 16.13 % is above 1 %" in request["body"]
    assert gate.resume(state, response(APPROVE, "bob", "known noisy endpoint"))["outcome"] == "approved"
    step = json.loads(gate.store.read("progress-01-canary_10.json"))
    assert step["outcome"] == "continued" and step["decision"].startswith("approved by bob") and undone == []


def test_a_rejected_paused_canary_goes_back_to_zero_and_fails(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate, undone = decision_gate(monkeypatch, home, "paused")
    with pytest.raises(AirflowFailException, match="rejected by carol: roll it back; canary green set back to 0 %"):
        gate.resume(gate.park(), response(REJECT, "carol", "roll it back"))
    step = json.loads(gate.store.read("progress-01-canary_10.json"))
    assert (step["outcome"], step["undone"]) == ("failed", "canary green set back to 0 %") and undone == ["canary_10"]

