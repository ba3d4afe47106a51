"""The rendered DAG: structure, trigger rules, params, and how dags/releases.py loads specs."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk import TriggerRule

from gendev_release.catalogue import all_steps
from gendev_release.operators import AGENT_OPERATORS
from gendev_release.render import build_release_dag
from gendev_release.sensors import HealthCheckSensor
from gendev_release.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "dags" / "releases" / "demo.yaml"


@pytest.fixture(scope="module")
def dag():
    return build_release_dag(load_spec(DEMO))


def test_one_task_group_per_phase_in_seed_order(dag) -> None:
    groups = [g for g in dag.task_group.children if g.startswith("p")]
    assert groups == ["p1_pre_deployment", "p2_planning", "p3_build", "p4_environment", "p5_deployment",
                      "p6_testing", "p7_monitoring", "p8_post_deployment"]


def test_each_agent_step_runs_its_agents_operator(dag) -> None:
    for phase, step in all_steps():
        task = dag.get_task(f"{phase.id}.{step.id}")
        assert type(task) is AGENT_OPERATORS[step.agent]
        assert task.step_id == step.id
    assert len({type(dag.get_task(f"{p.id}.{s.id}")) for p, s in all_steps()}) == 14


def test_health_sensor_follows_the_traffic_switch(dag) -> None:
    sensor = dag.get_task("p5_deployment.post_switch_health")
    assert isinstance(sensor, HealthCheckSensor)
    assert sensor.deferrable is True
    assert sensor.upstream_task_ids == {"p5_deployment.execute_strategy"}
    assert dag.get_task("p5_deployment.monitoring_alerts").upstream_task_ids == {"p5_deployment.post_switch_health"}


def test_failure_branch_trigger_rules_and_edges(dag) -> None:
    main = {t.task_id for t in dag.tasks if not t.task_id.startswith("failure.") and t.task_id != "release_outcome"}
    decide = dag.get_task("failure.decide")
    assert decide.trigger_rule == TriggerRule.ONE_FAILED
    assert decide.upstream_task_ids == main
    assert decide.downstream_task_ids == {"failure.abort", "failure.rollback"}
    assert dag.get_task("failure.rollback").trigger_rule == TriggerRule.ALL_SUCCESS
    assert dag.get_task("failure.abort").trigger_rule == TriggerRule.ALL_SUCCESS
    assert dag.get_task("failure.verify_restored").upstream_task_ids == {"failure.rollback"}
    notify = dag.get_task("failure.notify")
    assert notify.trigger_rule == TriggerRule.ALL_DONE
    assert notify.upstream_task_ids == {"failure.abort", "failure.verify_restored"}
    watcher = dag.get_task("release_outcome")
    assert watcher.trigger_rule == TriggerRule.ALL_DONE
    assert watcher.upstream_task_ids == main | {"failure.notify"}
    # The watcher is the only leaf: the run's state is its state.
    assert [t.task_id for t in dag.leaves] == ["release_outcome"]


def test_no_retries_and_one_run_at_a_time(dag) -> None:
    assert dag.max_active_runs == 1
    assert all(t.retries == 0 for t in dag.tasks)
    assert dag.schedule is None or str(dag.timetable.summary) in ("None", "")


def test_trigger_form_params(dag) -> None:
    params = dag.params
    assert params["version"] == "1.0.0"
    assert params.get_param("strategy").schema["enum"] == ["blue_green"]
    assert params["dry_run"] is False
    from airflow.sdk.exceptions import ParamValidationError

    version = dag.params.get_param("version")
    with pytest.raises(ParamValidationError):
        version.resolve("1.0")
    assert version.resolve("2.0.0-rc.1") == "2.0.0-rc.1"
    with pytest.raises(ParamValidationError):
        dag.params.get_param("strategy").resolve("canary")


def _specs_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "releases"
    folder.mkdir()
    shutil.copytree(REPO / "dags" / "releases" / "demo", folder / "demo")
    text = DEMO.read_text()
    (folder / "demo.yaml").write_text(text)
    (folder / "second.yaml").write_text(text.replace("service: demo", "service: second"))
    (folder / "broken.yaml").write_text(text.replace("service: demo", "service: broken")
                                        .replace("version: 1.0.0", "version: one"))
    (folder / "typo.yaml").write_text(text.replace("service: demo", "service: typo")
                                      .replace("critical_endpoints:", "critical_endpoint:"))
    return folder


def test_invalid_specs_become_one_import_error_and_the_rest_load(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GENDEV_RELEASES_DIR", str(_specs_folder(tmp_path)))
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert sorted(bag.dags) == ["release__demo", "release__second"]
    [(path, message)] = bag.import_errors.items()
    assert path.endswith("releases.py")
    assert "broken.yaml: version: 'one' is not a semantic version" in message
    assert "typo.yaml: critical_endpoint: unknown field" in message
    assert "typo.yaml: critical_endpoints: required field is missing" in message


def test_parsing_needs_no_network_and_no_subprocess(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GENDEV_RELEASES_DIR", str(_specs_folder(tmp_path)))

    def forbidden(*args, **kwargs):
        raise AssertionError("network or subprocess at DAG parse time")

    monkeypatch.setattr(socket.socket, "connect", forbidden)
    monkeypatch.setattr(subprocess.Popen, "__init__", forbidden)
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert "release__demo" in bag.dags
    assert all("AssertionError" not in m for m in bag.import_errors.values())


def test_repo_dags_folder_loads_cleanly(monkeypatch) -> None:
    monkeypatch.delenv("GENDEV_RELEASES_DIR", raising=False)
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    assert "release__demo" in bag.dags
