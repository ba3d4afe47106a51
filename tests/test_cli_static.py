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
    assert "\nstrategy:\n  kind: blue_green\n" in demo
    files = {
        "typo": demo.replace("\nstrategy:\n  kind: blue_green\n", "\nstrategie:\n  kind: blue_green\n"),
        "empty": "",
        "broken": "service: demo\nstrategy: [1.0\n",
        "list": "- service: demo\n- environment: staging\n",
        "relaxed": demo.replace("\nsecurity:\n", "\nsecurity:\n  min_compliance_pct: 90\n"),
    }
    hostile = {  # the crashers and guards: each must be one FILE: field: message line, exit 2
        "tz_folder": demo.replace("timezone: UTC", "timezone: Europe"),
        "tz_long": demo.replace("timezone: UTC", "timezone: " + "E" * 300),
        "complex_key": demo + "? [a, b]\n: 1\n",
        "deep": demo + "deep: " + "[" * 600 + "]" * 600 + "\n",
        "nul": demo.replace("service: demo", "service: de\x00mo"),
        "alias_bomb": "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)),
        "recursive_alias": "a: &a [1, *a]\n",
        "int_key": demo + "1: one\n",
        "old_version": demo.replace("\nenvironment: production\n", "\nversion: 1.0.0\nenvironment: production\n"),
        "nan": demo.replace("p95_latency_ms: 250", "p95_latency_ms: .nan"),
        "abs_junit": demo.replace("junit: qa/integration.xml", "junit: /etc/passwd"),
        "escape_runbook": demo.replace("runbook: demo/runbook.md", "runbook: ../../../etc/passwd"),
    }
    files.update({f"hostile_{name}": text for name, text in hostile.items()})
    paths = {}
    for name, text in files.items():
        paths[name] = folder / f"{name}.yaml"
        paths[name].write_text(text, encoding="utf-8")
    paths["missing"] = folder / "missing.yaml"
    paths["home"] = folder / "home"
    return paths


BAD_ORDER = ["typo", "empty", "broken", "list", "missing"]
#: Where each hostile spec is refused (a field, or a line and column for what YAML itself cannot be).
_END = f"line {(ROOT / DEMO_REL).read_text(encoding='utf-8').count(chr(10)) + 1}, column "
HOSTILE_FIELDS = {
    "tz_folder": "change_window.timezone",
    "tz_long": "change_window.timezone",
    "complex_key": f"{_END}3",
    "deep": _END,
    "nul": f"line {(ROOT / DEMO_REL).read_text(encoding='utf-8').splitlines().index('service: demo') + 1}, column 12",
    "alias_bomb": "line ",
    "recursive_alias": "line 1, column ",
    "int_key": f"{_END}1",
    "old_version": "version",
    "nan": "quality_gates.p95_latency_ms",
    "abs_junit": "qa.suites.0.junit",
    "escape_runbook": "readiness.runbook",
}


@pytest.fixture(scope="module")
def runs(cli_env: dict[str, str], bad_specs: dict[str, Path]) -> dict[str, subprocess.CompletedProcess[str]]:
    """Each CLI call imports Airflow (~3 s), so the calls run side by side, once per module."""
    calls = {
        "validate_demo": ["validate", DEMO_REL],
        "validate_bad": ["validate", DEMO_REL, *(str(bad_specs[n]) for n in BAD_ORDER)],
        "validate_missing": ["validate", "no/such/spec.yaml"],
        "validate_relaxed": ["validate", str(bad_specs["relaxed"])],
        "schema": ["schema"],
        "graph_json": ["graph", DEMO_REL, "--json"],
        "graph_bad": ["graph", str(bad_specs["typo"]), "--json"],
        "validate_hostile": ["validate", *(str(bad_specs[f"hostile_{n}"]) for n in HOSTILE_FIELDS)],
        "run_without_version": ["run", DEMO_REL, "--home", str(bad_specs["home"])],
        "run_spaced_version": ["run", DEMO_REL, "--home", str(bad_specs["home"]), "--set", "version= 1.0.0"],
        "run_newline_version": ["run", DEMO_REL, "--home", str(bad_specs["home"]), "--set", "version=1.0.0\n"],
        "run_typo": ["run", DEMO_REL, "--home", str(bad_specs["home"]), "--set", "verison=1.0.0"],
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
        f"{bad_specs['broken']}: line 3, column 1: invalid YAML: did not find expected ',' or ']'",
        f"{bad_specs['list']}: (top level): expected a mapping, got list",
        f"{bad_specs['missing']}: (file): file not found",
    ]


def test_validate_refuses_a_lowered_compliance_threshold_without_a_waiver(runs, bad_specs: dict[str, Path]) -> None:
    proc = runs["validate_relaxed"]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [
        f"{bad_specs['relaxed']}: security.min_compliance_pct: security.min_compliance_pct=90 is below the package "
        "default 100; use 100 or more, or add a waiver to quality_gates.waivers with gate: min_compliance_pct, "
        "a reason and approved_by"]


def test_validate_refuses_hostile_specs_one_line_each(runs, bad_specs: dict[str, Path]) -> None:
    proc = runs["validate_hostile"]
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == ""  # no "ok" line, no traceback, no warning
    lines = proc.stdout.splitlines()
    assert len(lines) == len(HOSTILE_FIELDS), lines
    for line, (name, field) in zip(lines, HOSTILE_FIELDS.items(), strict=True):
        source = str(bad_specs[f"hostile_{name}"])
        assert line.startswith(f"{source}: {field}"), (name, line)
        where, message = line[len(source) + 2:].split(": ", 1)
        assert where and message, line


def test_validate_reports_an_internal_error_as_one_line(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from gendev_release import cli, spec

    def broken(path: str) -> None:
        if path == "first.yaml":
            raise TypeError("boom")

    monkeypatch.delenv("GENDEV_DEBUG", raising=False)
    monkeypatch.setattr(spec, "load_spec", broken)
    assert cli.main(["validate", "first.yaml", "second.yaml"]) == 2
    out, err = capsys.readouterr()
    assert out == ("first.yaml: (internal error): TypeError: boom; please report it (set GENDEV_DEBUG=1 for the "
                   "traceback)\n")
    assert err == "second.yaml: ok\n"


@pytest.mark.parametrize("command", [["validate", DEMO_REL], ["schema"], ["graph", DEMO_REL, "--json"]],
                         ids=["validate", "schema", "graph"])
def test_static_commands_do_not_import_airflow(cli_env: dict[str, str], command: list[str]) -> None:
    code = ("import contextlib, io, sys\n"
            "from gendev_release import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
            f"    status = cli.main({command!r})\n"
            "print(status, sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=cli_env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.stdout == "0 []\n", proc.stdout + proc.stderr


# ------------------------------------------------------------------------------- run parameters
def test_run_without_a_version_is_refused_before_anything_starts(runs, bad_specs: dict[str, Path]) -> None:
    from gendev_release.spec import VERSION_REQUIRED

    proc = runs["run_without_version"]
    assert proc.returncode == 2
    assert proc.stdout == f"--set: version: {VERSION_REQUIRED}\n"
    assert not (bad_specs["home"] / "airflow" / "airflow.db").exists()


@pytest.mark.parametrize(("run", "value"), [("run_spaced_version", " 1.0.0"), ("run_newline_version", "1.0.0\n")])
def test_run_does_not_strip_the_version(runs, run: str, value: str) -> None:
    from gendev_release.spec_rules import VERSION_FORMAT

    proc = runs[run]
    assert proc.returncode == 2
    assert proc.stdout == f"--set: version: {value!r} is not a semantic version; use {VERSION_FORMAT}\n"


def test_run_refuses_an_unknown_parameter(runs) -> None:
    proc = runs["run_typo"]
    assert proc.returncode == 2
    assert proc.stdout == "--set: verison: cannot be set; settable: version, dry_run, emergency\n"


@pytest.mark.parametrize(("pairs", "expected"), [
    (["version=1.0.0"], {"version": "1.0.0"}),
    (["version= 1.0.0"], {"version": " 1.0.0"}),
    (["version=1.0.0\n", "dry_run=TRUE"], {"version": "1.0.0\n", "dry_run": True}),
    (["dry_run=no", "version=1.0.0"], {"dry_run": False, "version": "1.0.0"}),
])
def test_parse_overrides_keeps_values_as_typed(pairs: list[str], expected: dict[str, object]) -> None:
    from gendev_release.cli import _parse_overrides

    assert _parse_overrides(pairs) == expected


@pytest.mark.parametrize(("pairs", "problems"), [
    (["version"], [("version", "expected NAME=VALUE")]),
    ([" version=1.0.0"], [(" version", "cannot be set; settable: version, dry_run, emergency")]),
    (["dry-run=true"], [("dry-run", "cannot be set; settable: version, dry_run, emergency")]),
    (["=1"], [('""', "cannot be set; settable: version, dry_run, emergency")]),
    (["dry_run= true"], [("dry_run", "' true' is not a boolean; use true or false")]),
    (["version=1.0.0", "version=2.0.0"], [("version", "set twice; give it once")]),
])
def test_parse_overrides_refuses(pairs: list[str], problems: list[tuple[str, str]]) -> None:
    from gendev_release.cli import _parse_overrides
    from gendev_release.errors import SpecError

    with pytest.raises(SpecError) as info:
        _parse_overrides(pairs)
    assert info.value.source == "--set"
    assert [(p.field, p.message) for p in info.value.problems] == problems


def test_settable_names_are_the_run_parameters() -> None:
    from gendev_release.cli import SETTABLE
    from gendev_release.spec import RUN_PARAMETERS

    assert SETTABLE == RUN_PARAMETERS


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
    assert {"service", "strategy", "health", "build"} <= set(schema["properties"])
    assert "version" not in schema["properties"]  # every run names its version


# --------------------------------------------------------------------------------------- graph
def test_graph_json(runs) -> None:
    proc = runs["graph_json"]
    assert proc.returncode == 0, proc.stderr
    graph = json.loads(proc.stdout)
    assert set(graph) == {"dag_id", "gates", "phases", "failure_branch"}
    assert graph["gates"] == [{"task_id": "change_window", "upstream": ["start_release"]}]
    assert graph["dag_id"] == "release__demo"
    assert [p["id"] for p in graph["phases"]] == SEED_PHASE_IDS
    assert [p["title"] for p in graph["phases"]][0] == "Pre-Deployment Preparation"
    assert [s["agent"] for p in graph["phases"] for s in p["steps"]] == SEED_AGENTS
    for phase in graph["phases"]:
        assert set(phase) == {"id", "title", "steps", "sensors", "strategy_steps"}
        for step in phase["steps"]:
            assert set(step) == {"task_id", "agent", "duty"}
            assert step["task_id"] == f"{phase['id']}.{step['duty']}"
    assert [s["task_id"] for s in graph["phases"][4]["sensors"]] == [
        "p5_deployment.preview_health", "p5_deployment.post_switch_health", "p5_deployment.post_promotion"]
    assert graph["phases"][4]["sensors"][1]["upstream"] == ["p5_deployment.execute_strategy"]
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


def test_graph_text_lists_every_task_in_the_order_it_runs() -> None:
    proc = subprocess.run([sys.executable, "-m", "gendev_release.cli", "graph", "dags/releases/demo-canary.yaml"],
                          capture_output=True, text=True, cwd=ROOT, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = [line.strip() for line in proc.stdout.splitlines()]
    assert lines[1] == "change_window  [gate]"
    start = lines.index("p5_deployment: Deployment Execution")
    assert lines[start + 1:start + 9] == [
        "p5_deployment.preview_health  [deferred health wait]", "p5_deployment.canary_10  [strategy step]",
        "p5_deployment.canary_50  [strategy step]",
        "p5_deployment.execute_strategy  [deployment-ops-manager / execute_strategy]",
        "p5_deployment.post_switch_health  [deferred health wait]", "p5_deployment.post_promotion  [deferred window]",
        "p5_deployment.monitoring_alerts  [resource-monitor / monitoring_alerts]", "p6_testing: Testing & Validation"]
