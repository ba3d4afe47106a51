"""In-process release runs through ``gendev-release run`` (embedded SQLite Airflow, local target).

The runs share one home, like a real environment: each release deploys over the previous one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

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
    folder = tmp_path_factory.mktemp("strict-spec")
    shutil.copytree(DEMO.parent / "demo", folder / "demo")
    data = yaml.safe_load(DEMO.read_text())
    data["blue_green"]["pre_switch_checks"] = ["healthz", "version"]
    data["risk"]["repo"] = str(REPO)
    path = folder / "demo.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


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


def test_2_failure_before_traffic_moved_aborts_and_keeps_the_old_version(home: Path, strict_spec: Path) -> None:
    result, summary = run(strict_spec, home, "version=1.2.0-broken")
    assert result.returncode == 1, result.stdout[-4000:]
    assert summary["state"] == "failed"
    assert summary["failed_step"] == "p5_deployment.execute_strategy"
    assert summary["rolled_back"] is False
    assert summary["active_version"] == "1.1.0"
    decision = json.loads(next((home / "evidence" / "release__demo").glob(
        f"{summary['run_id'].replace(':', '_')}/failure-decision.json")).read_text())
    assert decision == {**decision, "decision": "abort", "traffic_moved": False}
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
    ("strategy=canary", "--set: strategy: strategy 'canary' is not supported yet; use one of: blue_green"),
    ("colour=blue", "--set: colour: cannot be set; settable: version, strategy, dry_run"),
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
        assert healthz(home) == 502
    finally:
        cli("down", str(DEMO), "--home", str(home))
