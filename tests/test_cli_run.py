"""In-process release runs through ``gendev-release run`` (embedded SQLite Airflow, local target).

The runs share one home, like a real environment: each release deploys over the previous one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from spec_folder import demo_spec_folder

from gendev_release.catalogue import PHASES, deliverable_gaps
from gendev_release.run_record import ReleaseHistory, RunRecordStore

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "dags" / "releases" / "demo.yaml"


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["GENDEV_MAX_LIFETIME"] = "900"
    return subprocess.run([sys.executable, "-m", "gendev_release.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO, check=False)


def run(spec: Path, home: Path, *sets: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    args = ["run", str(spec), "--home", str(home), "--json"]
    for item in sets:
        args += ["--set", item]
    result = cli(*args)
    assert "Traceback" not in result.stdout + result.stderr, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    summary = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    return result, summary


def served_version(home: Path) -> str | None:
    state = json.loads((home / "targets" / "demo" / "state.json").read_text())
    response = httpx.get(state["router"]["url"] + "/version", timeout=5)
    return response.json()["version"] if response.status_code == 200 else None


def healthz(home: Path) -> int:
    state = json.loads((home / "targets" / "demo" / "state.json").read_text())
    return httpx.get(state["router"]["url"] + "/healthz", timeout=5).status_code


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("gendev-home")
    yield home
    cli("down", str(DEMO), "--home", str(home))


@pytest.fixture(scope="module")
def strict_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo spec, but /healthz must pass before the switch: a broken version aborts early."""

    def strict(data: dict[str, Any]) -> None:
        data["strategy"]["pre_switch_checks"] = ["healthz", "version"]

    return demo_spec_folder(tmp_path_factory.mktemp("strict-spec"), strict)


def test_1_good_release_succeeds_and_stays_up(home: Path) -> None:
    result, summary = run(DEMO, home, "version=1.1.0")
    assert result.returncode == 0, result.stdout[-4000:]
    assert summary["state"] == "success" and summary["dag_id"] == "release__demo"
    assert summary["active_version"] == "1.1.0" and summary["rolled_back"] is False
    assert summary["failed_step"] is None
    assert "Phase 8/8: Post-Deployment Activities" in result.stdout
    assert served_version(home) == "1.1.0" and healthz(home) == 200
    report = json.loads(Path(summary["report"]).with_suffix(".json").read_text())
    assert report["outcome"] == "success"
    assert len(report["checklist"]) == 18 and len(report["success_criteria"]) == 6
    assert all(step["status"] == "passed" for step in report["steps"]) and len(report["steps"]) == 16
    # every one of the seed's 39 phase deliverables is a file of its own in the evidence store
    evidence = home / "evidence" / "release__demo" / summary["run_id"].replace(":", "_")
    manifest = json.loads((evidence / "manifest.json").read_text())
    assert deliverable_gaps(manifest) == []
    assert sum(len(phase.deliverables) for phase in PHASES) == 39
    for line in manifest:
        assert (evidence / line["stored"]).stat().st_size > 0, line
    verified = cli("verify-evidence", str(evidence))
    assert verified.returncode == 0, verified.stdout


def test_2_failure_before_traffic_moved_aborts_and_keeps_the_old_version(home: Path, strict_spec: Path) -> None:
    result, summary = run(strict_spec, home, "version=1.2.0-broken")
    assert result.returncode == 1, result.stdout[-4000:]
    assert summary["state"] == "failed"
    # the deferred preview of the new revision (strict: /healthz before the switch) never got healthy
    assert summary["failed_step"] == "p5_deployment.preview_health"
    assert summary["rolled_back"] is False
    assert summary["active_version"] == "1.1.0"
    decision = json.loads(next((home / "evidence" / "release__demo").glob(
        f"{summary['run_id'].replace(':', '_')}/failure-decision.json")).read_text())
    assert decision == {**decision, "decision": "abort", "this_run_serving": False}
    assert served_version(home) == "1.1.0" and healthz(home) == 200
    state = json.loads((home / "targets" / "demo" / "state.json").read_text())
    assert all(slot is None or slot["version"] != "1.2.0-broken" or not slot.get("pid")
               for slot in state["slots"].values()), "the staged broken version must be discarded"


def test_3_failure_after_traffic_moved_rolls_back_to_a_healthy_previous(home: Path) -> None:
    result, summary = run(DEMO, home, "version=1.2.0-broken")
    assert result.returncode == 1, result.stdout[-4000:]
    assert summary["state"] == "failed"
    assert summary["rolled_back"] is True
    assert summary["failed_step"] == "p5_deployment.execute_strategy"
    assert summary["active_version"] == "1.1.0"
    assert served_version(home) == "1.1.0" and healthz(home) == 200
    assert "FAILED   release_outcome" in result.stdout
    state = json.loads((home / "targets" / "demo" / "state.json").read_text())
    assert all(slot is None or slot["version"] != "1.2.0-broken" for slot in state["slots"].values()), \
        "the failed version must be stopped once the rollback is verified"
    notes = [json.loads(line) for line in (home / "notifications" / "demo.jsonl").read_text().splitlines()]
    assert notes[-1]["event"] == "release_rolled_back" and notes[-1]["severity"] == "critical"


def test_3b_slow_version_breaks_the_latency_alert_and_rolls_back(home: Path) -> None:
    result, summary = run(DEMO, home, "version=1.2.0-slow")
    assert result.returncode == 1, result.stdout[-4000:]
    # Healthy, but the p95 latency alert rule fires on the live metrics after the switch.
    assert summary["failed_step"] == "p5_deployment.monitoring_alerts"
    assert summary["rolled_back"] is True and summary["active_version"] == "1.1.0"
    assert "latency-p95" in result.stdout
    assert served_version(home) == "1.1.0"


def test_4_dry_run_changes_nothing(home: Path) -> None:
    result, summary = run(DEMO, home, "version=1.3.0", "dry_run=true")
    assert result.returncode == 0, result.stdout[-4000:]
    assert summary["state"] == "success"
    assert summary["active_version"] == "1.1.0"
    assert served_version(home) == "1.1.0"


@pytest.mark.parametrize(("setting", "message"), [
    ("version=1.0", "--set: version: '1.0' is not a semantic version"),
    ("version=1\u0662.0.0", "--set: version: '1\u0662.0.0' is not a semantic version"),
    ("version=1.0.0\n", "--set: version: '1.0.0\\n' is not a semantic version"),
    ("dry_run=true", "--set: version: version is required"),
    ("strategy=canary", "--set: strategy: cannot be set: a strategy shapes the release DAG, so it lives in the spec "
                        "(strategy: {kind: canary, ...})"),
    ("colour=blue", "--set: colour: cannot be set; settable: version, dry_run, emergency"),
    ("dry_run=maybe", "--set: dry_run: 'maybe' is not a boolean; use true or false"),
])
def test_bad_run_parameters_exit_2_without_starting_anything(tmp_path: Path, setting: str, message: str) -> None:
    result = cli("run", str(DEMO), "--home", str(tmp_path / "home"), "--set", setting, "--json")
    assert result.returncode == 2
    assert message in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "home" / "targets").exists()


def test_first_release_failing_after_the_switch_is_withdrawn(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    try:
        result, summary = run(DEMO, home, "version=1.0.0-broken")
        assert result.returncode == 1, result.stdout[-4000:]
        assert summary["rolled_back"] is True and summary["active_version"] is None
        assert summary["outcome"] == "withdrawn"
        assert healthz(home) == 502
    finally:
        cli("down", str(DEMO), "--home", str(home))


# ----------------------------------------------------------------- one release per service
def _start(spec: Path, home: Path, version: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["GENDEV_MAX_LIFETIME"] = "900"
    return subprocess.Popen([sys.executable, "-m", "gendev_release.cli", "run", str(spec), "--home", str(home),
                             "--set", f"version={version}", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=REPO, start_new_session=True)


def _wait_for(condition: Any, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _state(home: Path) -> dict[str, Any]:
    try:
        return json.loads((home / "targets" / "demo" / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def _active_version(home: Path) -> str | None:
    state = _state(home)
    slot = (state.get("slots") or {}).get(state.get("active") or "")
    return slot["version"] if slot else None


def test_a_second_release_of_the_service_is_refused_while_the_first_completes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    try:
        first = _start(DEMO, home, "2.0.0")
        _wait_for(lambda: (home / "targets" / "demo" / "lease.json").exists(), "the first run's lease")
        second, summary = run(DEMO, home, "version=2.1.0")
        assert second.returncode == 3, second.stdout[-2000:] + second.stderr[-2000:]
        assert "another release of demo is in progress" in second.stderr and summary["state"] == "refused"
        out, err = first.communicate(timeout=600)
        assert first.returncode == 0, out[-3000:] + err[-3000:]
        assert json.loads(out.strip().splitlines()[-1])["active_version"] == "2.0.0"
        # The state is consistent: the first release serves, the refused one never staged anything,
        # its records do not exist, and the lease is free again.
        assert served_version(home) == "2.0.0"
        assert all(slot is None or slot["version"] == "2.0.0" or not slot.get("pid")
                   for slot in _state(home)["slots"].values())
        records = RunRecordStore(home).list("release__demo")
        assert [(r.version, r.outcome) for r in records] == [("2.0.0", "success")]
        assert not (home / "targets" / "demo" / "lease.json").exists()
    finally:
        cli("down", str(DEMO), "--home", str(home))


def test_a_run_killed_after_the_switch_is_interrupted_and_the_next_release_restores_first(tmp_path: Path) -> None:
    home = tmp_path / "home"
    try:
        result, _ = run(DEMO, home, "version=3.0.0")
        assert result.returncode == 0, result.stdout[-3000:]
        killed = _start(DEMO, home, "3.1.0")
        _wait_for(lambda: _active_version(home) == "3.1.0", "the switch to 3.1.0")
        os.killpg(killed.pid, signal.SIGKILL)  # the runner dies; its service slots live on (own sessions)
        killed.communicate(timeout=30)
        assert served_version(home) == "3.1.0"  # an unverified version serves
        [dead] = [r for r in RunRecordStore(home).list("release__demo") if r.version == "3.1.0"]
        assert dead.state.value == "running"

        result, summary = run(DEMO, home, "version=3.2.0")
        assert result.returncode == 0, result.stdout[-4000:]
        assert "Found a dead release" in result.stdout
        dead_after = RunRecordStore(home).load("release__demo", dead.run_id)
        assert dead_after is not None and dead_after.state.value == "interrupted"
        assert dead_after.outcome == "interrupted" and "is gone" in (dead_after.reason or "")
        record = RunRecordStore(home).load("release__demo", summary["run_id"])
        assert record is not None and record.restored_before_release is not None
        assert record.restored_before_release["unverified_version"] == "3.1.0"
        assert record.restored_before_release["restored_version"] == "3.0.0"
        assert record.previous_version == "3.0.0" and record.last_verified_version == "3.0.0"
        assert served_version(home) == "3.2.0"
        history = ReleaseHistory(home, "release__demo")
        assert [(e.version, e.outcome, e.verified) for e in history.entries()] == [
            ("3.0.0", "success", True), ("3.1.0", "interrupted", False), ("3.2.0", "success", True)]
    finally:
        cli("down", str(DEMO), "--home", str(home))
