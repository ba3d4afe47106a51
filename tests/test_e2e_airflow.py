"""Real Airflow end to end: scheduler, dag-processor, triggerer and api-server on SQLite.

The demo release is triggered through the REST API with ``conf``; run and task states are read
back from the API, and the service's active version from the router it is served behind.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from airflow_stack import REPO, AirflowStack

pytestmark = pytest.mark.airflow_e2e

DAG_ID = "release__demo"
AGENT_STEPS = [
    "p1_pre_deployment.readiness", "p1_pre_deployment.risk_assessment", "p2_planning.release_plan",
    "p2_planning.notifications", "p3_build.build", "p3_build.dependencies", "p4_environment.provisioning",
    "p4_environment.hardening", "p5_deployment.execute_strategy", "p5_deployment.monitoring_alerts",
    "p6_testing.smoke_tests", "p6_testing.qa", "p7_monitoring.observability", "p7_monitoring.performance",
    "p8_post_deployment.release_notes", "p8_post_deployment.training",
]


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of dags/releases/ whose input files a test may change (the DAG file reads it)."""
    folder = tmp_path_factory.mktemp("releases")
    shutil.copytree(REPO / "dags" / "releases" / "demo", folder / "demo")
    text = (REPO / "dags" / "releases" / "demo.yaml").read_text()
    assert "repo: ../.." in text
    (folder / "demo.yaml").write_text(text.replace("repo: ../..", f"repo: {REPO}"))
    return folder


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, specs: Path) -> Iterator[AirflowStack]:
    stack = AirflowStack(tmp_path_factory.mktemp("airflow-e2e"), extra_env={"GENDEV_RELEASES_DIR": str(specs)})
    try:
        stack.start()
        stack.wait_for_dag(DAG_ID)
        response = stack.request("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
        assert response.status_code == 200, response.text
        yield stack
    finally:
        stack.stop()
        _down(stack.gendev_home)


def _down(home: Path) -> None:
    from gendev_release.spec import load_spec
    from gendev_release.targets import make_target

    make_target(load_spec(REPO / "dags" / "releases" / "demo.yaml"), home).down()


def _router_version(home: Path) -> str:
    state = json.loads((home / "targets" / "demo" / "state.json").read_text())
    return httpx.get(state["router"]["url"] + "/version", timeout=5).json()["version"]


def test_invalid_conf_is_refused_with_a_clear_error(stack: AirflowStack) -> None:
    response = stack.trigger(DAG_ID, "e2e-bad-conf", {"version": "1.0"})
    assert response.status_code == 400
    assert "version" in response.text


def test_good_release_succeeds_through_the_real_scheduler(stack: AirflowStack) -> None:
    response = stack.trigger(DAG_ID, "e2e-good", {"version": "1.1.0"})
    assert response.status_code == 200, response.text
    state = stack.wait_for_run(DAG_ID, "e2e-good")
    states = stack.task_states(DAG_ID, "e2e-good")
    assert state == "success", states
    for task_id in [*AGENT_STEPS, "start_release", "p5_deployment.post_switch_health", "release_gate",
                    "release_outcome"]:
        assert states[task_id] == "success", (task_id, states)
    for task_id in ("failure.decide", "failure.abort", "failure.rollback", "failure.verify_restored",
                    "failure.notify"):
        assert states[task_id] == "skipped", (task_id, states)
    assert _router_version(stack.gendev_home) == "1.1.0"
    health = json.loads(next(stack.gendev_home.glob("evidence/release__demo/e2e-good/post_switch_health.json"))
                        .read_text())
    # Written by execute_complete from the trigger's event: only reachable through the triggerer.
    assert health["status"] == "success" and health["rounds"] >= 3
    assert {r["name"] for r in health["last_results"]} == {"healthz", "version"}


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
    assert _router_version(stack.gendev_home) == "1.1.0"


def test_cleared_failed_phase_reruns_to_success(stack: AirflowStack, specs: Path) -> None:
    audit = specs / "demo" / "pip-audit.json"
    good = audit.read_text()
    report = json.loads(good)
    report["dependencies"][0]["vulns"] = [{"id": "GHSA-e2e-test", "fix_versions": ["99.0"],
                                           "description": "injected critical vulnerability"}]
    audit.write_text(json.dumps(report))
    try:
        assert stack.trigger(DAG_ID, "e2e-rerun", {"version": "1.3.0"}).status_code == 200
        assert stack.wait_for_run(DAG_ID, "e2e-rerun") == "failed"
        states = stack.task_states(DAG_ID, "e2e-rerun")
        assert states["p3_build.dependencies"] == "failed", states
        assert states["failure.abort"] == "success" and states["failure.rollback"] == "skipped", states
        assert _router_version(stack.gendev_home) == "1.1.0"
    finally:
        audit.write_text(good)  # the scanner's new report is clean
    response = stack.request("POST", f"/dags/{DAG_ID}/clearTaskInstances", json={
        "dag_run_id": "e2e-rerun", "task_ids": ["p3_build.dependencies"], "include_downstream": True,
        "only_failed": False, "reset_dag_runs": True, "dry_run": False})
    assert response.status_code == 200, response.text
    assert stack.wait_for_run(DAG_ID, "e2e-rerun") == "success", stack.task_states(DAG_ID, "e2e-rerun")
    states = stack.task_states(DAG_ID, "e2e-rerun")
    assert states["p3_build.dependencies"] == "success" and states["release_outcome"] == "success", states
    assert states["failure.decide"] == "skipped" and states["failure.notify"] == "skipped", states
    assert _router_version(stack.gendev_home) == "1.3.0"
    record = json.loads(next(stack.gendev_home.glob("runs/release__demo/e2e-rerun/record.json")).read_text())
    assert record["state"] == "success" and record["failed_tasks"] == []
    assert record["earlier_failures"][0]["failed_tasks"] == ["p3_build.dependencies"]
