"""The command line without Airflow running: validate, schema, graph (exit codes and exact output)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO_REL = "dags/releases/demo.yaml"
SEED_AGENTS = [
    "deployment-ops-manager", "risk-manager", "project-planner", "stakeholder-communicator", "cicd-builder",
    "dependency-manager", "iac-automation-engineer", "security-architect", "deployment-ops-manager",
    "resource-monitor", "test-suite-generator", "qa-coordinator", "resource-monitor", "performance-optimizer",
    "documentation-generator", "training-change-manager",
]
SEED_PHASE_IDS = ["p1_pre_deployment", "p2_planning", "p3_build", "p4_environment", "p5_deployment",
                  "p6_testing", "p7_monitoring", "p8_post_deployment"]
UNKNOWN_FIELD = "unknown field (check the spelling; see `gendev-release schema`)"


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GENDEV_DEBUG"}
    env["AIRFLOW_HOME"] = str(tmp_path_factory.mktemp("airflow_home"))  # never touch ~/airflow
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "gendev_release.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


def _finish(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    assert "Traceback" not in out + err, out + err
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(scope="module")
def bad_specs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("specs")
    demo = (ROOT / DEMO_REL).read_text(encoding="utf-8")
    assert "\nstrategy: blue_green\n" in demo
    files = {
        "typo": demo.replace("\nstrategy: blue_green\n", "\nstrategie: blue_green\n"),
        "empty": "",
        "broken": "service: demo\nversion: [1.0\n",
        "list": "- service: demo\n- version: 1.0.0\n",
    }
    paths = {}
    for name, text in files.items():
        paths[name] = folder / f"{name}.yaml"
        paths[name].write_text(text, encoding="utf-8")
    paths["missing"] = folder / "missing.yaml"
    return paths


BAD_ORDER = ["typo", "empty", "broken", "list", "missing"]


@pytest.fixture(scope="module")
def runs(cli_env: dict[str, str], bad_specs: dict[str, Path]) -> dict[str, subprocess.CompletedProcess[str]]:
    """Each CLI call imports Airflow (~3 s), so the calls run side by side, once per module."""
    calls = {
        "validate_demo": ["validate", DEMO_REL],
        "validate_bad": ["validate", DEMO_REL, *(str(bad_specs[n]) for n in BAD_ORDER)],
        "validate_missing": ["validate", "no/such/spec.yaml"],
        "schema": ["schema"],
        "graph_json": ["graph", DEMO_REL, "--json"],
        "graph_bad": ["graph", str(bad_specs["typo"]), "--json"],
    }
    started = {name: _start(cli_env, *args) for name, args in calls.items()}
    return {name: _finish(proc) for name, proc in started.items()}


@pytest.fixture(scope="module")
def cli(cli_env: dict[str, str]):
    return lambda *args: _finish(_start(cli_env, *args))


# ------------------------------------------------------------------------------------ validate
def test_validate_demo_ok(runs) -> None:
    proc = runs["validate_demo"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.endswith(f"{DEMO_REL}: ok\n")


def test_validate_bad_files_one_line_per_problem(runs, bad_specs: dict[str, Path]) -> None:
    proc = runs["validate_bad"]
    assert proc.returncode == 2
    assert f"{DEMO_REL}: ok" in proc.stderr
    assert proc.stdout.splitlines() == [
        f"{bad_specs['typo']}: strategie: {UNKNOWN_FIELD}",
        f"{bad_specs['empty']}: (top level): spec is empty; expected a mapping",
        f"{bad_specs['broken']}: line 3, column 1: invalid YAML: expected ',' or ']', but got '<stream end>'",
        f"{bad_specs['list']}: (top level): expected a mapping, got list",
        f"{bad_specs['missing']}: (file): file not found",
    ]


def test_validate_nonexistent_file(runs) -> None:
    proc = runs["validate_missing"]
    assert proc.returncode == 2
    assert proc.stdout == "no/such/spec.yaml: (file): file not found\n"


def test_validate_needs_a_file(cli) -> None:
    proc = cli("validate")
    assert proc.returncode == 2
    assert "gendev-release: error:" in proc.stderr


# -------------------------------------------------------------------------------------- schema
def test_schema_prints_json_schema(runs) -> None:
    proc = runs["schema"]
    assert proc.returncode == 0
    schema = json.loads(proc.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "gendev-release spec"
    assert {"service", "version", "strategy", "health", "build"} <= set(schema["properties"])


# --------------------------------------------------------------------------------------- graph
def test_graph_json(runs) -> None:
    proc = runs["graph_json"]
    assert proc.returncode == 0, proc.stderr
    graph = json.loads(proc.stdout)
    assert set(graph) == {"dag_id", "phases", "failure_branch"}
    assert graph["dag_id"] == "release__demo"
    assert [p["id"] for p in graph["phases"]] == SEED_PHASE_IDS
    assert [p["title"] for p in graph["phases"]][0] == "Pre-Deployment Preparation"
    assert [s["agent"] for p in graph["phases"] for s in p["steps"]] == SEED_AGENTS
    for phase in graph["phases"]:
        assert set(phase) == {"id", "title", "steps", "sensors"}
        for step in phase["steps"]:
            assert set(step) == {"task_id", "agent", "duty"}
            assert step["task_id"] == f"{phase['id']}.{step['duty']}"
    assert graph["phases"][4]["sensors"] == [{"task_id": "p5_deployment.post_switch_health",
                                              "upstream": ["p5_deployment.execute_strategy"]}]
    assert [(t["task_id"], t["trigger_rule"]) for t in graph["failure_branch"]] == [
        ("failure.decide", "one_failed"), ("failure.abort", "all_success"), ("failure.rollback", "all_success"),
        ("failure.verify_restored", "all_success"), ("failure.notify", "all_done"),
        ("release_outcome", "all_done")]


def test_graph_on_a_bad_spec(runs, bad_specs: dict[str, Path]) -> None:
    proc = runs["graph_bad"]
    assert proc.returncode == 2
    assert proc.stdout == f"{bad_specs['typo']}: strategie: {UNKNOWN_FIELD}\n"


# ----------------------------------------------------------------------------------- arguments
@pytest.mark.parametrize("args", [["deploy"], [], ["graph"], ["schema", "--bogus"]],
                         ids=["unknown-subcommand", "no-subcommand", "graph-without-spec", "unknown-option"])
def test_bad_arguments_exit_2(cli, args: list[str]) -> None:
    proc = cli(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "gendev-release: error:" in proc.stderr
    assert proc.stderr.startswith("usage: gendev-release")
