"""Deferred waits on a real Airflow (scheduler, dag-processor, triggerer, api-server on SQLite).

One stack for this module. A release whose change window opens a few seconds after it is triggered
(a freeze period that ends then): its gate task is ``deferred``, with its trigger held by the
triggerer, while the pool shows no running slot; when the window opens the release continues with
phase 1. A small DAG of the observation-window and metric-sampling operators shows those triggers
loading and deciding in the real triggerer too.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from airflow_stack import REPO, AirflowStack, running_stack
from loopback import LoopbackServer, Response
from spec_folder import demo_spec_folder

from gendev_release.dagfile import write_dag_file

pytestmark = pytest.mark.airflow_e2e

DAG_ID = "release__demo"
PROBE_DAG = "waits_probe"
GATE = "change_window"
FIRST_STEP = "p1_pre_deployment.readiness"
#: From the trigger to the window's opening: start_release and the gate run first, then it must still be closed.
WINDOW_OPENS_AFTER = timedelta(seconds=50)

PROBE_DAG_FILE = '''
from datetime import datetime, timezone

from airflow.sdk import DAG

from gendev_release.sensors import MetricSamplingOperator, ObservationWindowOperator

with DAG("waits_probe", schedule=None, start_date=datetime(2024, 1, 1, tzinfo=timezone.utc), catchup=False):
    ObservationWindowOperator(task_id="bake", url="{{ dag_run.conf['url'] }}", seconds=6, interval_seconds=1,
                              checks=[{"name": "healthz", "path": "/healthz", "expect_body_contains": "ok"}])
    MetricSamplingOperator(task_id="sample", source="scrape", url="{{ dag_run.conf['url'] }}/metrics", seconds=6,
                           interval_seconds=1, min_samples=3, series=["demo_requests_total"])
'''


@pytest.fixture(scope="module")
def dags(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dags = tmp_path_factory.mktemp("dags")
    shutil.copy(REPO / "dags" / "releases.py", dags / "releases.py")
    (dags / "waits_probe.py").write_text(PROBE_DAG_FILE)
    write_dag_file(demo_spec_folder(dags / "releases"))
    return dags


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, dags: Path) -> Iterator[AirflowStack]:
    with running_stack(tmp_path_factory.mktemp("airflow-waits"), dags, [DAG_ID, PROBE_DAG],
                       specs=[dags / "releases" / "demo.yaml"]) as stack:
        yield stack


def task_instance(stack: AirflowStack, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
    response = stack.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")
    response.raise_for_status()
    return response.json()


def wait_for_state(stack: AirflowStack, dag_id: str, run_id: str, task_id: str, wanted: set[str],
                   timeout: float = 150) -> dict[str, Any]:
    """Poll the task instance until its state is one of ``wanted``; a state past them fails at once."""
    deadline = time.monotonic() + timeout
    ti: dict[str, Any] = {}
    while time.monotonic() < deadline:
        ti = task_instance(stack, dag_id, run_id, task_id)
        if ti["state"] in wanted:
            return ti
        if ti["state"] in {"failed", "upstream_failed", "skipped"} - wanted:
            raise AssertionError(f"{task_id} is {ti['state']}, expected {sorted(wanted)}; task states: "
                                 f"{stack.task_states(dag_id, run_id)}")
        time.sleep(0.5)
    raise AssertionError(f"{task_id} still {ti.get('state')} after {timeout:.0f} s, expected {sorted(wanted)}; "
                         f"task states: {stack.task_states(dag_id, run_id)}")


def returned(stack: AirflowStack, dag_id: str, run_id: str, task_id: str) -> Any:
    """A task's return value (XCom), as the task returned it."""
    response = stack.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/"
                                    "return_value", params={"deserialize": "true"})
    assert response.status_code == 200, response.text
    value = response.json()["value"]
    return json.loads(value) if isinstance(value, str) else value


def default_pool(stack: AirflowStack) -> dict[str, Any]:
    response = stack.request("GET", "/pools/default_pool")
    response.raise_for_status()
    return response.json()


def set_window(dags: Path, opens: datetime) -> None:
    """The release may not change anything until ``opens``: a freeze period ends then (the week is open)."""
    spec_path = dags / "releases" / "demo.yaml"
    data = yaml.safe_load(spec_path.read_text())
    data["change_window"].update(max_wait_hours=1, freeze=[{
        "start": (opens - timedelta(days=1)).date().isoformat(), "end": opens.isoformat(),
        "reason": "release train leaves at the next slot"}])
    spec_path.write_text(yaml.safe_dump(data, sort_keys=False))  # workers read the spec when they run a task


def test_a_closed_window_defers_the_gate_and_the_release_continues_when_it_opens(stack: AirflowStack,
                                                                                 dags: Path) -> None:
    run_id = "e2e-window"
    opens = (datetime.now(timezone.utc) + WINDOW_OPENS_AFTER).replace(microsecond=0)
    set_window(dags, opens)
    response = stack.trigger(DAG_ID, run_id, {"version": "1.1.0"})
    assert response.status_code == 200, response.text

    gate = wait_for_state(stack, DAG_ID, run_id, GATE, {"deferred", "success"})
    assert gate["state"] == "deferred", f"the gate passed before it was seen waiting: {gate}"
    assert datetime.now(timezone.utc) < opens, "the gate deferred after the window had opened: start it later"
    assert gate["trigger"]["classpath"] == "gendev_release.sensors.triggers.ChangeWindowTrigger"
    pool = default_pool(stack)
    assert (pool["running_slots"], pool["deferred_slots"]) == (0, 1), pool  # waiting holds no worker slot
    states = stack.task_states(DAG_ID, run_id)
    assert states["start_release"] == "success" and states[FIRST_STEP] is None, states  # nothing changed yet

    gate = wait_for_state(stack, DAG_ID, run_id, GATE, {"success"})
    first = wait_for_state(stack, DAG_ID, run_id, FIRST_STEP, {"running", "success", "failed"})
    assert datetime.fromisoformat(gate["end_date"]) >= opens
    assert datetime.fromisoformat(first["start_date"]) >= datetime.fromisoformat(gate["end_date"])

    record = json.loads((stack.gendev_home / "evidence" / DAG_ID / run_id / "change_window.json").read_text())
    assert (record["status"], record["deferred"]) == ("open", True)
    assert datetime.fromisoformat(record["decided_at"]) >= opens and record["waited_seconds"] > 0
    assert record["window"]["freeze"][0]["reason"] == "release train leaves at the next slot"

    # The release continued; this test is about the wait, so it ends the run here.
    wait_for_state(stack, DAG_ID, run_id, FIRST_STEP, {"success", "failed"})
    response = stack.request("PATCH", f"/dags/{DAG_ID}/dagRuns/{run_id}", json={"state": "failed"})
    assert response.status_code == 200, response.text


def test_observation_window_and_metric_sampling_defer_in_the_real_triggerer(stack: AirflowStack) -> None:
    scraped = {"count": 0}

    def service(path: str) -> Response:
        if path == "/metrics":
            scraped["count"] += 1
            return 200, {"Content-Type": "text/plain"}, f"demo_requests_total {scraped['count'] * 3}\n".encode()
        return 200, {"Content-Type": "text/plain"}, b"ok"

    server = LoopbackServer(service)
    try:
        response = stack.trigger(PROBE_DAG, "e2e-probe", {"url": server.url})
        assert response.status_code == 200, response.text
        seen = {task: wait_for_state(stack, PROBE_DAG, "e2e-probe", task, {"deferred", "success"})["state"]
                for task in ("bake", "sample")}
        assert stack.wait_for_run(PROBE_DAG, "e2e-probe", timeout=120) == "success"
    finally:
        server.stop()
    assert seen == {"bake": "deferred", "sample": "deferred"}, seen
    bake_event, sample_event = (returned(stack, PROBE_DAG, "e2e-probe", task) for task in ("bake", "sample"))
    assert bake_event["status"] == "success" and bake_event["rounds"] >= 2 and bake_event["failed_rounds"] == []
    values = [s["values"]["demo_requests_total"] for s in sample_event["samples"]]
    assert sample_event["status"] == "success" and len(values) >= 3 and values == sorted(values)
