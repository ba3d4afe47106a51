"""Approvals by people on a real Airflow (api-server, scheduler, dag-processor, triggerer; SQLite).

Two releases of the demo service run at once, each with its own spec and DAG:

* ``gated``: every production release needs 2 distinct approvals of ``alice`` and ``role:op``
  (bob, carol). alice triggers it, so only bob and carol may approve. The tests answer through the
  REST API as different SimpleAuthManager users and read back task instance states, Airflow's
  HITL records, the run record and the evidence store.
* ``quick``: 1 approval of bob within 20 seconds; nobody answers, the scheduler's timeout sweep
  resumes the gate, which rejects, and the release is aborted before traffic moves.
* ``urgent``: its change window is frozen for a month; alice triggers an emergency run, and bob's
  approval of ``change_window_override`` lets it through the closed window.

One stack is started for the module (own users, the timeout sweep every 2 s); the tests run in order.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from airflow_stack import AirflowStack, running_stack
from spec_folder import demo_spec_folder

from gendev_release.dagfile import write_dag_file
from gendev_release.run_record import RunRecord, RunRecordStore

pytestmark = pytest.mark.airflow_e2e

USERS = "admin:admin,alice:admin,bob:op,carol:op,dave:viewer"
GATED, QUICK, URGENT = "release__gated", "release__quick", "release__urgent"
RUN = "e2e-approval"
APPROVAL_1, APPROVAL_2 = "p4_environment.approval_1", "p4_environment.approval_2"
BUSY = {"running", "queued", "scheduled", "up_for_retry", "restarting"}


def _spec(folder: Path, service: str, approvals: dict[str, Any], window: dict[str, Any] | None = None) -> Path:
    def change(data: dict[str, Any]) -> None:
        data["change_window"].update(window or {})
        data["service"] = service
        for document in (folder / "demo").glob("*.md"):  # provided documents must name the service they cover
            document.write_text(document.read_text() + f"\nThe {service} service is released by this procedure.\n")
        build = folder / "demo" / "build.toml"
        build.write_text(build.read_text() + f'\n[release]\nservice = "{service}"\n')
        data["approvals"] = approvals
        data["notifications"]["channel"]["path"] = f"notifications/{service}.jsonl"

    spec = demo_spec_folder(folder, change, name=f"{service}.yaml")
    write_dag_file(spec)
    return spec


@pytest.fixture(scope="module")
def dags(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dags = tmp_path_factory.mktemp("dags")
    _spec(dags / "gated", "gated", {"approvers": ["alice", "role:op"], "required": 2,
                                    "required_for": ["production"], "timeout_minutes": 30})
    _spec(dags / "quick", "quick", {"approvers": ["bob"], "required": 1, "required_for": ["production"],
                                    "timeout_minutes": 1 / 3})
    today = date.today()
    _spec(dags / "urgent", "urgent", {"approvers": ["alice", "bob"], "required": 1, "timeout_minutes": 30},
          {"emergency_override": True, "freeze": [{"start": (today - timedelta(days=1)).isoformat(),
                                                   "end": (today + timedelta(days=30)).isoformat(),
                                                   "reason": "year-end freeze"}]})
    return dags


class Users:
    """REST calls as one SimpleAuthManager user (passwords from the file the api-server generated)."""

    def __init__(self, stack: AirflowStack) -> None:
        self.stack = stack
        self.passwords = json.loads((stack.airflow_home / "passwords.json").read_text())
        self.tokens: dict[str, str] = {}

    def request(self, user: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if user not in self.tokens:
            answer = httpx.post(f"{self.stack.base_url}/auth/token", timeout=10,
                                json={"username": user, "password": self.passwords[user]})
            answer.raise_for_status()
            self.tokens[user] = answer.json()["access_token"]
        return httpx.request(method, f"{self.stack.base_url}/api/v2{path}", timeout=30,
                             headers={"Authorization": f"Bearer {self.tokens[user]}"}, **kwargs)

    def respond(self, user: str, dag_id: str, task_id: str, option: str, comment: str) -> httpx.Response:
        return self.request(user, "PATCH", f"/dags/{dag_id}/dagRuns/{RUN}/taskInstances/{task_id}/-1/hitlDetails",
                            json={"chosen_options": [option], "params_input": {"comment": comment}})


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, dags: Path) -> Iterator[AirflowStack]:
    env = {"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": USERS, "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "2"}
    with running_stack(tmp_path_factory.mktemp("airflow-approvals"), dags, [GATED, QUICK, URGENT],
                       specs=[dags / name / f"{name}.yaml" for name in ("gated", "quick", "urgent")],
                       extra_env=env) as stack:
        yield stack


@pytest.fixture(scope="module")
def users(stack: AirflowStack) -> Users:
    return Users(stack)


@pytest.fixture(scope="module")
def started(stack: AirflowStack, users: Users) -> dict[str, str]:
    """Both releases triggered: gated by alice, quick by admin."""
    for user, dag_id in (("alice", GATED), ("admin", QUICK)):
        response = users.request(user, "POST", f"/dags/{dag_id}/dagRuns",
                                 json={"logical_date": None, "dag_run_id": RUN, "conf": {"version": "1.1.0"}})
        assert response.status_code == 200, response.text
    return {GATED: "alice", QUICK: "admin"}


def wait_until(what: str, check: Callable[[], Any], stack: AirflowStack, timeout: float = 480) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack._check_alive()
        value = check()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"{what}: not reached in {timeout}s\n{stack.log_tail('scheduler', 3000)}")


def wait_for_state(stack: AirflowStack, dag_id: str, task_id: str, state: str) -> dict[str, str | None]:
    def reached() -> dict[str, str | None] | None:
        states = stack.task_states(dag_id, RUN)
        if any(s in ("failed", "upstream_failed") for s in states.values()):
            raise AssertionError(f"{dag_id} failed while waiting for {task_id} to be {state}: {states}")
        return states if states.get(task_id) == state else None

    return wait_until(f"{dag_id} {task_id} {state}", reached, stack)


def parked(stack: AirflowStack, dag_id: str, task_id: str) -> None:
    """Wait until the scheduler has handled the exit of the worker that parked ``task_id``.

    Airflow 3.3.2's LocalExecutor marks a task FAILED ("finished with state success, but the task
    instance's state attribute is queued") when an answer re-queues it before the scheduler has
    processed the success event of the workload that parked it: that event then also drops the new
    workload from the executor's running set. A person takes longer than that second; the test
    waits for the event in the scheduler's log instead of racing it.
    """
    needle = (f"Received executor event with state success for task instance TaskInstanceKey(dag_id='{dag_id}', "
              f"task_id='{task_id}'")
    wait_until(f"the scheduler saw {task_id} park", lambda: needle in stack.log_tail("scheduler", 10**8), stack)


def hitl(stack: AirflowStack, dag_id: str, task_id: str) -> dict[str, Any]:
    response = stack.request("GET", f"/dags/{dag_id}/dagRuns/{RUN}/taskInstances/{task_id}/-1/hitlDetails")
    assert response.status_code == 200, response.text
    return response.json()


def evidence(stack: AirflowStack, dag_id: str, name: str) -> dict[str, Any]:
    return json.loads((stack.gendev_home / "evidence" / dag_id / RUN / name).read_text())


def record_of(stack: AirflowStack, dag_id: str) -> RunRecord:
    record = RunRecordStore(stack.gendev_home).load(dag_id, RUN)
    assert record is not None
    return record


# ----------------------------------------------------------------------------------------- gated
def test_a_release_waiting_for_approval_is_awaiting_input_and_holds_no_worker_slot(
        stack: AirflowStack, started: dict[str, str]) -> None:
    states = wait_for_state(stack, GATED, APPROVAL_1, "awaiting_input")
    assert states["p4_environment.hardening"] == "success"
    busy = {task: state for task, state in states.items() if state in BUSY or state == "deferred"}
    assert busy == {}, "while people decide no task of the run runs, waits in a queue or holds a trigger"
    assert states["p5_deployment.execute_strategy"] is None, "no traffic moves before the approval"
    detail = hitl(stack, GATED, APPROVAL_1)
    assert detail["response_received"] is False
    assert sorted(u["id"] for u in detail["assigned_users"]) == ["bob", "carol"], "alice triggered it"
    assert detail["options"] == ["Approve", "Reject"] and detail["defaults"] == ["Reject"]
    assert detail["subject"] == "Approve gated 1.1.0 (approval 1 of 2)"
    waiting = evidence(stack, GATED, "approval-1.json")
    assert (waiting["outcome"], waiting["triggered_by"]) == ("waiting", "alice")
    assert waiting["approvers"] == ["alice", "bob", "carol"]  # role:op resolved through Airflow's users


def test_the_triggering_user_cannot_approve_her_own_release(stack: AirflowStack, users: Users) -> None:
    parked(stack, GATED, APPROVAL_1)
    refused = users.respond("alice", GATED, APPROVAL_1, "Approve", "my own release")
    assert refused.status_code == 403, refused.text
    assert "alice" in refused.json()["detail"]
    viewer = users.respond("dave", GATED, APPROVAL_1, "Approve", "not an approver")
    assert viewer.status_code == 403, viewer.text
    assert hitl(stack, GATED, APPROVAL_1)["response_received"] is False
    assert stack.task_states(GATED, RUN)[APPROVAL_1] == "awaiting_input"


def test_one_approval_of_two_keeps_the_release_waiting(stack: AirflowStack, users: Users) -> None:
    approved = users.respond("bob", GATED, APPROVAL_1, "Approve", "staged slot checked")
    assert approved.status_code == 200, approved.text
    assert approved.json()["responded_by"] == {"id": "bob", "name": "bob"}
    states = wait_for_state(stack, GATED, APPROVAL_2, "awaiting_input")
    assert states[APPROVAL_1] == "success"
    assert states["p5_deployment.execute_strategy"] is None
    assert [u["id"] for u in hitl(stack, GATED, APPROVAL_2)["assigned_users"]] == ["carol"]
    parked(stack, GATED, APPROVAL_2)
    again = users.respond("bob", GATED, APPROVAL_2, "Approve", "twice")
    assert again.status_code == 403, "each approval must come from a different person"
    first = evidence(stack, GATED, "approval-1.json")
    assert (first["outcome"], first["decided_by"]["id"], first["comment"]) == ("approved", "bob", "staged slot checked")


def test_the_second_approval_by_another_user_continues_the_release(stack: AirflowStack, users: Users) -> None:
    approved = users.respond("carol", GATED, APPROVAL_2, "Approve", "go")
    assert approved.status_code == 200, approved.text
    state = stack.wait_for_run(GATED, RUN)
    states = stack.task_states(GATED, RUN)
    assert state == "success", states
    assert states["p5_deployment.execute_strategy"] == "success"
    record = record_of(stack, GATED)
    assert (record.outcome, record.active_version, record.triggered_by) == ("success", "1.1.0", "alice")
    second = evidence(stack, GATED, "approval-2.json")
    assert (second["outcome"], second["decided_by"]["id"], second["approved_before"]) == ("approved", "carol", ["bob"])
    report = json.loads(Path(record.report_json or "").read_text())
    assert [(a["number"], a["outcome"], a["decided_by"]["id"]) for a in report["approvals"]] == [
        (1, "approved", "bob"), (2, "approved", "carol")]
    markdown = Path(record.report or "").read_text()
    assert "## Approvals" in markdown and "approval 2 of 2: **approved** by carol" in markdown


# ----------------------------------------------------------------------------------------- quick
def test_a_timeout_rejects_and_the_release_aborts_before_traffic_moves(stack: AirflowStack,
                                                                      started: dict[str, str]) -> None:
    state = stack.wait_for_run(QUICK, RUN)
    states = stack.task_states(QUICK, RUN)
    assert state == "failed", states
    assert states[APPROVAL_1] == "failed"
    assert states["p5_deployment.execute_strategy"] == "upstream_failed"
    assert states["failure.abort"] == "success" and states["failure.rollback"] == "skipped", states
    detail = hitl(stack, QUICK, APPROVAL_1)
    assert detail["responded_by_user"] is None and detail["chosen_options"] == ["Reject"]  # the scheduler's sweep
    decision = evidence(stack, QUICK, "approval-1.json")
    assert decision["outcome"] == "rejected" and decision["decided_by"] is None
    assert decision["reason"] == "no approver answered before the deadline: a timeout rejects"
    assert [(r["by"], r["verdict"]) for r in decision["responses"]] == [(None, "reject")]
    record = record_of(stack, QUICK)
    assert record.outcome == "aborted" and record.failure_decision == "abort"
    assert record.failed_tasks == [APPROVAL_1]
    assert "a timeout rejects" in (record.reason or "")
    assert record.active_version is None, "the first release of quick never took traffic"
    report = json.loads(Path(record.report_json or "").read_text())
    assert [(a["outcome"], a["reason"]) for a in report["approvals"]] == [
        ("rejected", "no approver answered before the deadline: a timeout rejects")]


# ---------------------------------------------------------------------------------------- urgent
def test_an_emergency_run_passes_a_frozen_window_once_another_person_approves(
        stack: AirflowStack, users: Users) -> None:
    response = users.request("alice", "POST", f"/dags/{URGENT}/dagRuns", json={
        "logical_date": None, "dag_run_id": RUN, "conf": {"version": "1.1.0", "emergency": True}})
    assert response.status_code == 200, response.text
    states = wait_for_state(stack, URGENT, "change_window_override", "awaiting_input")
    assert states["change_window"] is None and states["p1_pre_deployment.readiness"] is None, "nothing ran yet"
    detail = hitl(stack, URGENT, "change_window_override")
    assert [u["id"] for u in detail["assigned_users"]] == ["bob"], "alice triggered it: she may not approve"
    assert detail["subject"] == "Emergency release of urgent 1.1.0 outside its change window"
    assert "year-end freeze" in detail["body"]
    parked(stack, URGENT, "change_window_override")
    assert users.respond("alice", URGENT, "change_window_override", "Approve", "mine").status_code == 403
    approved = users.respond("bob", URGENT, "change_window_override", "Approve", "customer outage, fix now")
    assert approved.status_code == 200, approved.text
    assert stack.wait_for_run(URGENT, RUN) == "success", stack.task_states(URGENT, RUN)
    gate = evidence(stack, URGENT, "change_window.json")
    assert gate["status"] == "override" and gate["override"]["approvers"] == ["bob"]
    assert gate["override"]["comment"] == "customer outage, fix now" and "frozen" in gate["state"]["reason"]
    decision = evidence(stack, URGENT, "approval-emergency.json")
    assert (decision["role"], decision["outcome"], decision["decided_by"]["id"]) == ("emergency", "approved", "bob")
    record = record_of(stack, URGENT)
    markdown = Path(record.report or "").read_text()
    assert "emergency override of the change window: **approved** by bob" in markdown

