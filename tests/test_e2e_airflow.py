"""Real Airflow end to end: scheduler, dag-processor, triggerer and api-server on SQLite.

Releases are triggered through the REST API with ``conf``; run and task states are read back from
the API, the service's active version from the router clients use, and what the product recorded
from the run-record API. One stack is shared by every test of this module (they run in order and
deploy over each other like a real environment).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from airflow_stack import REPO, AirflowStack, running_stack
from spec_folder import demo_spec_folder

from gendev_release.dagfile import write_dag_file
from gendev_release.lease import ServiceLease
from gendev_release.run_record import ReleaseHistory, RunRecord, RunRecordStore

pytestmark = pytest.mark.airflow_e2e

DAG_ID = "release__demo"
AGENT_STEPS = [
    "p1_pre_deployment.readiness", "p1_pre_deployment.risk_assessment", "p2_planning.release_plan",
    "p2_planning.notifications", "p3_build.build", "p3_build.dependencies", "p4_environment.provisioning",
    "p4_environment.hardening", "p5_deployment.execute_strategy", "p5_deployment.monitoring_alerts",
    "p6_testing.smoke_tests", "p6_testing.qa", "p7_monitoring.observability", "p7_monitoring.performance",
    "p8_post_deployment.release_notes", "p8_post_deployment.training",
]
FAILURE_BRANCH = ("failure.decide", "failure.abort", "failure.rollback", "failure.verify_restored", "failure.notify")

#: An acceptance suite whose result the test controls: it fails while ``acceptance-broken`` exists
#: beside it (the "cause" of a failed release that a user then fixes).
ACCEPTANCE = '''
import pathlib, sys
junit = pathlib.Path(sys.argv[1])
broken = pathlib.Path(__file__).with_name("acceptance-broken").exists()
junit.parent.mkdir(parents=True, exist_ok=True)
cases = "".join(
    f'<testcase classname="acceptance" name="case{i}">' + ('<failure message="cause not fixed"/>' if broken else "")
    + "</testcase>" for i in range(10))
junit.write_text(f'<testsuite name="acceptance" tests="10" failures="{10 if broken else 0}">{cases}</testsuite>')
sys.exit(1 if broken else 0)
'''


@pytest.fixture(scope="module")
def dags(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dags folder shaped like the repo's, whose spec inputs a test may change while the stack runs."""
    dags = tmp_path_factory.mktemp("dags")
    shutil.copy(REPO / "dags" / "releases.py", dags / "releases.py")

    def with_acceptance_suite(data: dict) -> None:
        data["qa"]["suites"].insert(0, {
            "name": "acceptance", "junit": "qa/acceptance.xml",
            "command": ["{python}", "{spec_dir}/demo/acceptance.py", "{workdir}/qa/acceptance.xml"]})

    releases = dags / "releases"
    write_dag_file(demo_spec_folder(releases, with_acceptance_suite))
    (releases / "demo" / "acceptance.py").write_text(ACCEPTANCE)
    return dags


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, dags: Path) -> Iterator[AirflowStack]:
    with running_stack(tmp_path_factory.mktemp("airflow-e2e"), dags, [DAG_ID],
                       specs=[dags / "releases" / "demo.yaml"]) as stack:
        yield stack


def served_version(home: Path) -> str | None:
    state = json.loads((home / "targets" / "demo" / "state.json").read_text())
    response = httpx.get(state["router"]["url"] + "/version", timeout=5)
    return response.json()["version"] if response.status_code == 200 else None


def record_of(stack: AirflowStack, run_id: str) -> RunRecord:
    record = RunRecordStore(stack.gendev_home).load(DAG_ID, run_id)
    assert record is not None, run_id
    return record


def notifications(stack: AirflowStack) -> list[dict]:
    path = stack.gendev_home / "notifications" / "demo.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def clear(stack: AirflowStack, run_id: str, task_id: str) -> None:
    response = stack.request("POST", f"/dags/{DAG_ID}/clearTaskInstances", json={
        "dag_run_id": run_id, "task_ids": [task_id], "include_downstream": True, "only_failed": False,
        "reset_dag_runs": True, "dry_run": False})
    assert response.status_code == 200, response.text


def run_note(stack: AirflowStack, run_id: str) -> str | None:
    response = stack.request("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")
    response.raise_for_status()
    return response.json().get("note")


def wait_for_note(stack: AirflowStack, run_id: str, needle: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    note = None
    while time.monotonic() < deadline:
        note = run_note(stack, run_id)
        if note and needle in note:
            return note
        time.sleep(1)
    raise AssertionError(f"run {run_id} note is {note!r}, expected it to mention {needle!r}")


# ------------------------------------------------------------------------------ trigger input
def test_a_conf_without_version_is_refused_at_trigger_time(stack: AirflowStack) -> None:
    for conf in ({}, {"verison": "1.1.0"}):
        response = stack.trigger(DAG_ID, f"e2e-no-version-{len(conf)}", conf)
        assert response.status_code == 400, response.text
        assert "version" in response.json()["detail"]
    assert stack.request("GET", f"/dags/{DAG_ID}/dagRuns/e2e-no-version-0").status_code == 404


def test_a_conf_with_an_unknown_key_is_refused_before_anything_changes(stack: AirflowStack) -> None:
    response = stack.trigger(DAG_ID, "e2e-unknown-key", {"version": "1.1.0", "dry-run": True})
    assert response.status_code == 200, response.text  # Airflow accepts undeclared conf keys; the first task does not
    assert stack.wait_for_run(DAG_ID, "e2e-unknown-key") == "failed"
    states = stack.task_states(DAG_ID, "e2e-unknown-key")
    assert states["start_release"] == "failed"
    assert all(states[t] == "upstream_failed" for t in AGENT_STEPS), states
    assert states["failure.rollback"] == "skipped" and states["failure.notify"] == "skipped", states
    record = record_of(stack, "e2e-unknown-key")
    assert record.outcome == "refused" and record.state.value == "failed"
    assert "dry-run" in (record.reason or "") and "version, dry_run, emergency" in (record.reason or "")
    assert not (stack.gendev_home / "targets" / "demo" / "state.json").exists(), "nothing may be deployed"
    assert notifications(stack) == [], "a refused trigger tells no stakeholder anything"
    assert "refused" in wait_for_note(stack, "e2e-unknown-key", "dry-run")


# ------------------------------------------------------------------------------- releases
def test_good_release_succeeds_through_the_real_scheduler(stack: AirflowStack) -> None:
    response = stack.trigger(DAG_ID, "e2e-good", {"version": "1.1.0"})
    assert response.status_code == 200, response.text
    state = stack.wait_for_run(DAG_ID, "e2e-good")
    states = stack.task_states(DAG_ID, "e2e-good")
    assert state == "success", states
    for task_id in [*AGENT_STEPS, "start_release", "p5_deployment.post_switch_health", "release_gate",
                    "release_outcome"]:
        assert states[task_id] == "success", (task_id, states)
    for task_id in FAILURE_BRANCH:
        assert states[task_id] == "skipped", (task_id, states)
    assert served_version(stack.gendev_home) == "1.1.0"
    health = json.loads(next(stack.gendev_home.glob("evidence/release__demo/e2e-good/post_switch_health.json"))
                        .read_text())
    # Written by execute_complete from the trigger's event: only reachable through the triggerer.
    assert health["status"] == "success" and health["rounds"] >= 3
    assert {r["name"] for r in health["last_results"]} == {"healthz", "version"}
    record = record_of(stack, "e2e-good")
    assert (record.state.value, record.outcome, record.active_version) == ("success", "success", "1.1.0")
    assert record.triggered_by == "admin"
    assert ReleaseHistory(stack.gendev_home, DAG_ID).last_verified_version() == "1.1.0"
    assert wait_for_note(stack, "e2e-good", "released") == "demo 1.1.0 released and serving"


def test_broken_release_rolls_back_and_the_run_fails(stack: AirflowStack) -> None:
    response = stack.trigger(DAG_ID, "e2e-broken", {"version": "1.2.0-broken"})
    assert response.status_code == 200, response.text
    state = stack.wait_for_run(DAG_ID, "e2e-broken")
    states = stack.task_states(DAG_ID, "e2e-broken")
    assert state == "failed", states
    assert states["failure.rollback"] == "success", states
    assert states["failure.verify_restored"] == "success", states
    assert states["failure.abort"] == "skipped", states
    assert states["failure.notify"] == "success", states
    assert states["release_outcome"] == "failed", states
    assert served_version(stack.gendev_home) == "1.1.0"
    assert wait_for_note(stack, "e2e-broken", "rolled back") == \
        "rolled back to 1.1.0 after p5_deployment.execute_strategy failed"


def test_a_cleared_phase_never_succeeds_while_the_old_version_serves(stack: AirflowStack, dags: Path) -> None:
    """1.3.0 fails QA after the switch and is rolled back; its cause is fixed and QA is cleared.

    The re-run must not end ``success`` while 1.1.0 serves (it names the phase to clear); clearing
    from provisioning then redeploys 1.3.0 and the run succeeds. Record, history and notifications
    agree with what the router serves at every point.
    """
    marker = dags / "releases" / "demo" / "acceptance-broken"
    marker.write_text("the acceptance suite fails until this file is removed\n")
    run_id = "e2e-false-success"
    assert stack.trigger(DAG_ID, run_id, {"version": "1.3.0"}).status_code == 200
    assert stack.wait_for_run(DAG_ID, run_id) == "failed"
    states = stack.task_states(DAG_ID, run_id)
    assert states["p6_testing.qa"] == "failed" and states["failure.rollback"] == "success", states
    assert served_version(stack.gendev_home) == "1.1.0"
    record = record_of(stack, run_id)
    assert (record.outcome, record.active_version, record.failed_tasks) == \
        ("rolled_back", "1.1.0", ["p6_testing.qa"])
    assert notifications(stack)[-1]["subject"] == "demo 1.3.0 rolled back to 1.1.0"

    marker.unlink()  # the cause is fixed
    clear(stack, run_id, "p6_testing.qa")
    assert stack.wait_for_run(DAG_ID, run_id) == "failed"
    states = stack.task_states(DAG_ID, run_id)
    assert states["p6_testing.qa"] == "failed", states
    assert states["release_gate"] == "upstream_failed" and states["release_outcome"] == "failed", states
    # Judged afresh: nothing of this run serves, so nothing is rolled back again.
    assert states["failure.abort"] == "success" and states["failure.rollback"] == "skipped", states
    assert served_version(stack.gendev_home) == "1.1.0"
    record = record_of(stack, run_id)
    assert record.state.value == "failed" and record.active_version == "1.1.0"
    assert len(record.attempts) == 2 and record.attempts[0].outcome == "rolled_back"
    assert record.attempts[1].first_task == "p6_testing.qa"
    qa_log = stack.task_log(DAG_ID, run_id, "p6_testing.qa")
    assert "clear from p4_environment.provisioning" in qa_log
    history = ReleaseHistory(stack.gendev_home, DAG_ID)
    assert history.last_verified_version() == "1.1.0"
    assert not any(e.run_id == run_id and e.outcome == "success" for e in history.entries())
    assert "released" not in notifications(stack)[-1]["subject"]
    assert "still rolled back" in notifications(stack)[-1]["subject"]

    clear(stack, run_id, "p4_environment.provisioning")
    assert stack.wait_for_run(DAG_ID, run_id) == "success", stack.task_states(DAG_ID, run_id)
    assert served_version(stack.gendev_home) == "1.3.0"
    record = record_of(stack, run_id)
    assert (record.state.value, record.outcome, record.active_version) == ("success", "success", "1.3.0")
    assert [a.outcome for a in record.attempts] == ["rolled_back", "aborted", "success"]
    assert history.last_verified_version() == "1.3.0"
    assert notifications(stack)[-1]["subject"] == "demo 1.3.0 released"
    assert wait_for_note(stack, run_id, "released") == "demo 1.3.0 released and serving"
    # Every re-run gathered fresh evidence and kept the earlier attempt's next to it.
    evidence = stack.gendev_home / "evidence" / DAG_ID / run_id
    assert json.loads((evidence / "qa.json").read_text())["status"] == "passed"
    assert json.loads((evidence / "attempts" / "qa.1.json").read_text())["status"] == "failed"
    assert (evidence / "attempts" / "provisioning.1.json").exists()


def test_a_failure_before_the_switch_is_cleared_and_reruns_to_success(stack: AirflowStack, dags: Path) -> None:
    # A new advisory for a locked version: the scanner the dependencies step runs finds it.
    advisory = dags / "releases" / "demo" / "advisories" / "GHSA-e2e-test.json"
    advisory.write_text(json.dumps({
        "id": "GHSA-e2e-test", "modified": "2026-01-01T00:00:00Z", "summary": "injected critical vulnerability",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "anyio"}, "versions": ["4.16.0"]}],
        "database_specific": {"severity": "CRITICAL"}}))
    try:
        assert stack.trigger(DAG_ID, "e2e-rerun", {"version": "1.4.0"}).status_code == 200
        assert stack.wait_for_run(DAG_ID, "e2e-rerun") == "failed"
        states = stack.task_states(DAG_ID, "e2e-rerun")
        assert states["p3_build.dependencies"] == "failed", states
        assert states["failure.abort"] == "success" and states["failure.rollback"] == "skipped", states
        assert served_version(stack.gendev_home) == "1.3.0"
    finally:
        advisory.unlink()  # the advisory is withdrawn: the scan of the re-run is clean
    clear(stack, "e2e-rerun", "p3_build.dependencies")
    assert stack.wait_for_run(DAG_ID, "e2e-rerun") == "success", stack.task_states(DAG_ID, "e2e-rerun")
    states = stack.task_states(DAG_ID, "e2e-rerun")
    assert states["p3_build.dependencies"] == "success" and states["release_outcome"] == "success", states
    assert states["failure.decide"] == "skipped" and states["failure.notify"] == "skipped", states
    assert served_version(stack.gendev_home) == "1.4.0"
    record = record_of(stack, "e2e-rerun")
    assert record.state.value == "success" and record.failed_tasks == []
    assert record.attempts[0].failed_tasks == ["p3_build.dependencies"] and record.attempts[0].outcome == "aborted"


# ----------------------------------------------------------------- one release per service
def test_a_release_held_elsewhere_refuses_the_airflow_run(stack: AirflowStack) -> None:
    """Another release of the service (a CLI run, another Airflow) holds the lease: this run changes nothing."""
    lease = ServiceLease(stack.gendev_home / "targets" / "demo", "demo")
    lease.acquire(dag_id=DAG_ID, run_id="release-elsewhere", ttl_seconds=600)
    sent = len(notifications(stack))
    try:
        assert stack.trigger(DAG_ID, "e2e-held", {"version": "1.6.0"}).status_code == 200
        assert stack.wait_for_run(DAG_ID, "e2e-held") == "failed"
        states = stack.task_states(DAG_ID, "e2e-held")
        assert states["start_release"] == "failed" and states["failure.rollback"] == "skipped", states
        record = record_of(stack, "e2e-held")
        assert record.outcome == "refused" and "release-elsewhere" in (record.reason or "")
        assert served_version(stack.gendev_home) == "1.4.0"
        assert len(notifications(stack)) == sent
        held = lease.read()
        assert held is not None and held.run_id == "release-elsewhere", "the refused run must not take the lease"
    finally:
        lease.release(run_id="release-elsewhere")


# ------------------------------------------------------------------------- one bad spec
def test_a_bad_spec_added_while_running_hides_no_other_release(stack: AirflowStack, dags: Path) -> None:
    releases = dags / "releases"
    bad = releases / "bad.yaml"
    bad.write_text((releases / "demo.yaml").read_text().replace("service: demo", "service: bad")
                   .replace("consecutive_successes: 3", "consecutive_successes: many"))
    write_dag_file(bad)
    deadline = time.monotonic() + 180
    errors: list[dict] = []
    while time.monotonic() < deadline:
        errors = [e for e in stack.request("GET", "/importErrors").json()["import_errors"]
                  if e["filename"].endswith("bad.py")]
        if errors:
            break
        time.sleep(2)
    assert errors, stack.request("GET", "/importErrors").text
    assert "bad.yaml: health.consecutive_successes" in errors[0]["stack_trace"]
    time.sleep(12)  # two more parsing loops: the demo DAG must stay loaded, not go stale
    dag = stack.request("GET", f"/dags/{DAG_ID}").json()
    assert dag["is_stale"] is False and dag["has_import_errors"] is False, dag
    assert stack.trigger(DAG_ID, "e2e-after-bad-spec", {"version": "1.5.0", "dry_run": True}).status_code == 200
    assert stack.wait_for_run(DAG_ID, "e2e-after-bad-spec") == "success", \
        stack.task_states(DAG_ID, "e2e-after-bad-spec")
    assert record_of(stack, "e2e-after-bad-spec").outcome == "dry_run"
    assert served_version(stack.gendev_home) == "1.4.0"
