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
from gendev_release.dagfile import DAG_FILE, InvalidReleaseSpec, write_dag_file
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
    watch = dag.get_task("p5_deployment.post_promotion")
    assert watch.upstream_task_ids == {"p5_deployment.post_switch_health"}
    assert dag.get_task("p5_deployment.monitoring_alerts").upstream_task_ids == {"p5_deployment.post_promotion"}


def test_failure_branch_trigger_rules_and_edges(dag) -> None:
    decide = dag.get_task("failure.decide")
    assert decide.trigger_rule == TriggerRule.ONE_FAILED
    # The main path is one chain: a failure anywhere reaches release_gate (upstream_failed), so one
    # edge feeds the branch instead of an edge from every task.
    assert decide.upstream_task_ids == {"release_gate"}
    assert decide.downstream_task_ids == {"failure.abort", "failure.rollback"}
    assert dag.get_task("failure.rollback").trigger_rule == TriggerRule.ALL_SUCCESS
    assert dag.get_task("failure.abort").trigger_rule == TriggerRule.ALL_SUCCESS
    assert dag.get_task("failure.verify_restored").upstream_task_ids == {"failure.rollback"}
    notify = dag.get_task("failure.notify")
    assert notify.trigger_rule == TriggerRule.ALL_DONE
    assert notify.upstream_task_ids == {"failure.abort", "failure.verify_restored"}
    watcher = dag.get_task("release_outcome")
    assert watcher.trigger_rule == TriggerRule.ALL_DONE
    assert watcher.upstream_task_ids == {"release_gate", "failure.notify"}
    # The watcher is the only leaf: the run's state is its state.
    assert [t.task_id for t in dag.leaves] == ["release_outcome"]
    edges = sum(len(t.upstream_task_ids) for t in dag.tasks)
    assert edges == len(dag.tasks) - 1 + 2  # a chain (one root), two joins (notify, watcher), no fan-in


def test_every_main_task_reaches_the_failure_branch(dag) -> None:
    """With a single edge into the branch, every main task must still lead to release_gate."""
    main = [t for t in dag.tasks if not t.task_id.startswith("failure.") and t.task_id != "release_outcome"]
    for task in main:
        assert task.task_id == "release_gate" or "release_gate" in task.get_flat_relative_ids(upstream=False)


def test_only_deferring_waits_retry_and_one_run_at_a_time(dag) -> None:
    """Steps, gates of people and the failure branch never retry; a deferred wait retries once, for Airflow
    3.3.2's LocalExecutor race (render.DEFERRING_RETRY); its gate failures still fail at once."""
    assert dag.max_active_runs == 1
    retrying = {t.task_id for t in dag.tasks if t.retries}
    assert retrying == {"change_window", "p5_deployment.preview_health", "p5_deployment.post_switch_health",
                        "p5_deployment.post_promotion", "p7_monitoring.observation_window"}
    assert all(dag.get_task(t).retries == 1 for t in retrying)
    assert dag.schedule is None or str(dag.timetable.summary) in ("None", "")


def test_trigger_form_params(dag) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    version = dag.params.get_param("version")
    assert not version.has_value, "version has no default: the form requires it, one click never deploys"
    assert version.schema["maxLength"] == 64 and "e.g. 1.4.2" in (version.description or "")
    with pytest.raises(ParamValidationError, match="No value passed"):
        dag.params.validate()
    for bad in ("1.0", "1\u0662.0.0", "1.0.0\n", "1.0.0-" + "x" * 60):
        with pytest.raises(ParamValidationError):
            version.resolve(bad)
    assert version.resolve("2.0.0-rc.1") == "2.0.0-rc.1"
    assert "strategy" not in dag.params  # it shapes the DAG, so it lives in the spec
    assert dag.params["dry_run"] is False


def _dags_folder(tmp_path: Path, *, without_dag_file: tuple[str, ...] = ()) -> Path:
    """A dags folder shaped like the repo's: releases.py plus releases/<name>.yaml with <name>.py beside each."""
    dags = tmp_path / "dags"
    folder = dags / "releases"
    folder.mkdir(parents=True)
    shutil.copy(REPO / "dags" / "releases.py", dags / "releases.py")
    shutil.copytree(REPO / "dags" / "releases" / "demo", folder / "demo")
    text = DEMO.read_text()
    specs = {"demo": text, "second": text.replace("service: demo", "service: second"),
             "broken": text.replace("service: demo", "service: broken")
                           .replace("consecutive_successes: 3", "consecutive_successes: many"),
             "typo": text.replace("service: demo", "service: typo")
                         .replace("critical_endpoints:", "critical_endpoint:")}
    for name, content in specs.items():
        (folder / f"{name}.yaml").write_text(content)
        if name not in without_dag_file:
            write_dag_file(folder / f"{name}.yaml")
    return dags


def test_each_invalid_spec_is_the_import_error_of_its_own_dag_file(tmp_path: Path) -> None:
    bag = DagBag(dag_folder=str(_dags_folder(tmp_path)))
    assert sorted(bag.dags) == ["release__demo", "release__second"]
    errors = {Path(path).name: message for path, message in bag.import_errors.items()}
    assert sorted(errors) == ["broken.py", "typo.py"]
    assert "broken.yaml: health.consecutive_successes: Input should be a valid integer" in errors["broken.py"]
    assert "typo.yaml: critical_endpoint: unknown field" in errors["typo.py"]
    assert "typo.yaml: critical_endpoints: required field is missing" in errors["typo.py"]
    assert "the other releases are not affected" in errors["typo.py"]
    # Each DAG comes from its own file: an import error of one file never marks another's DAGs stale.
    assert Path(bag.dags["release__demo"].fileloc).name == "demo.py"
    assert Path(bag.dags["release__second"].fileloc).name == "second.py"


def test_a_spec_without_its_dag_file_is_reported_not_ignored(tmp_path: Path) -> None:
    bag = DagBag(dag_folder=str(_dags_folder(tmp_path, without_dag_file=("second",))))
    errors = {Path(path).name: message for path, message in bag.import_errors.items()}
    assert "second.yaml" in errors["releases.py"] and "gendev-release dagfile" in errors["releases.py"]
    assert "release__demo" in bag.dags and "release__second" not in bag.dags


def test_the_dag_file_holds_no_data_from_the_spec(tmp_path: Path) -> None:
    """A spec's name is never code: the DAG file is the same constant text for every spec."""
    folder = tmp_path / "releases"
    folder.mkdir()
    hostile = folder / 'x""";__import__("pathlib").Path("PWNED").touch();""".yaml'
    hostile.write_text(DEMO.read_text())
    dag_file, written = write_dag_file(hostile)
    assert written and dag_file.read_text() == DAG_FILE
    assert write_dag_file(hostile) == (dag_file, False)  # idempotent
    other = folder / "other.yaml"
    other.write_text("service: x\n")
    (folder / "other.py").write_text("print('mine')\n")
    with pytest.raises(InvalidReleaseSpec, match="not a gendev-release DAG file"):
        write_dag_file(other)


def test_parsing_needs_no_network_and_no_subprocess(tmp_path, monkeypatch) -> None:
    dags = _dags_folder(tmp_path)

    def forbidden(*args, **kwargs):
        raise AssertionError("network or subprocess at DAG parse time")

    monkeypatch.setattr(socket.socket, "connect", forbidden)
    monkeypatch.setattr(subprocess.Popen, "__init__", forbidden)
    bag = DagBag(dag_folder=str(dags))
    assert "release__demo" in bag.dags
    assert all("AssertionError" not in m for m in bag.import_errors.values())


def test_repo_dags_folder_loads_cleanly() -> None:
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    assert "release__demo" in bag.dags


def test_each_task_pays_airflows_defaults_merge_once(monkeypatch) -> None:
    """Airflow deep-copies the DAG's Params at every wrapped ``__init__`` level of an operator; ours add none.

    A structural guard for the parse-time benchmark (benchmarks/dag_build.py), not a timing.
    """
    from airflow.sdk.bases import operator as operator_module

    calls: list[str] = []
    original = operator_module.get_merged_defaults

    def counting(*args, **kwargs):
        calls.append("merge")
        return original(*args, **kwargs)

    monkeypatch.setattr(operator_module, "get_merged_defaults", counting)
    dag = build_release_dag(load_spec(DEMO))
    sensors = sum(1 for t in dag.tasks if isinstance(t, HealthCheckSensor))  # BaseSensorOperator adds a level
    assert len(calls) == len(dag.tasks) + sensors


def test_a_hostile_spec_file_name_is_never_executed_by_the_embedded_runner(tmp_path: Path, monkeypatch) -> None:
    """``gendev-release run`` writes a DAG file for ``dag.test``: a spec's name must stay data."""
    import runpy

    from gendev_release.embedded_airflow import write_dag_file as write_embedded_dag_file

    folder = tmp_path / "specs"
    folder.mkdir()
    shutil.copytree(REPO / "dags" / "releases" / "demo", folder / "demo")
    hostile = folder / 'x""";__import__("pathlib").Path("PWNED").touch();""".yaml'
    hostile.write_text(DEMO.read_text().replace("repo: ../..", "repo: ."))
    dags = tmp_path / "dags"
    dags.mkdir()
    dag_file = write_embedded_dag_file(load_spec(hostile), dags)
    assert dag_file.read_text() == DAG_FILE and (dags / "release__demo.yaml").resolve() == hostile.resolve()
    monkeypatch.chdir(tmp_path)
    namespace = runpy.run_path(str(dag_file))
    assert not (tmp_path / "PWNED").exists()
    assert namespace["dag"].dag_id == "release__demo"
