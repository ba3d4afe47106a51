"""The release spec: strict loading, exact problem paths and messages, never a stray exception."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from gendev_release.errors import SpecError, SpecProblem
from gendev_release.spec import (
    SEMVER_PATTERN,
    ReleaseSpec,
    Strategy,
    json_schema,
    load_spec,
    parse_spec,
    run_params,
)

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "dags" / "releases" / "demo.yaml"

UNKNOWN_FIELD = "unknown field (check the spelling; see `gendev-release schema`)"
SEMVER_MESSAGE = "is not a semantic version; use MAJOR.MINOR.PATCH[-PRERELEASE], e.g. 1.4.2"
NOT_SUPPORTED = "is not supported yet; use one of: blue_green"


def demo_data() -> dict[str, Any]:
    return yaml.safe_load(DEMO.read_text(encoding="utf-8"))


def mutated(mutate: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    data = copy.deepcopy(demo_data())
    mutate(data)
    return data


def problems_of(data: Any) -> list[tuple[str, str]]:
    """Parse ``data``; it must be refused with a SpecError. Return ``[(field, message), ...]``."""
    with pytest.raises(SpecError) as info:
        parse_spec(data, source="spec.yaml")
    assert info.value.source == "spec.yaml"
    assert info.value.problems, "a SpecError must name at least one problem"
    assert all(isinstance(p, SpecProblem) for p in info.value.problems)
    return [(p.field, p.message) for p in info.value.problems]


def only_problem(data: Any) -> tuple[str, str]:
    problems = problems_of(data)
    assert len(problems) == 1, problems
    return problems[0]


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path (list indices as numbers), creating mappings on the way."""
    parts = path.split(".")
    node: Any = data
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
    if isinstance(node, list):
        node[int(parts[-1])] = value
    else:
        node[parts[-1]] = value


# ------------------------------------------------------------------------------------ the demo
def test_demo_spec_loads_from_file() -> None:
    spec = load_spec(DEMO)
    assert isinstance(spec, ReleaseSpec)
    assert spec.service == "demo"
    assert spec.version == "1.0.0"
    assert spec.environment == "production"
    assert spec.strategy is Strategy.blue_green
    assert spec.dag_id == "release__demo"
    assert spec.source == DEMO.resolve()
    assert spec.spec_dir == DEMO.resolve().parent
    assert [c.name for c in spec.health.checks] == ["healthz", "version"]
    assert spec.blue_green.pre_switch_checks == ["version"]
    assert spec.resolve("demo/runbook.md") == DEMO.resolve().parent / "demo" / "runbook.md"


def test_demo_spec_parses_from_dict() -> None:
    spec = parse_spec(demo_data())
    assert spec.service == "demo"
    assert spec.source is None


def test_spec_is_frozen() -> None:
    spec = parse_spec(demo_data())
    with pytest.raises(Exception):
        spec.version = "9.9.9"  # type: ignore[misc]


def test_dag_id_replaces_dashes() -> None:
    spec = parse_spec(mutated(lambda d: d.update(service="my-api")))
    assert spec.dag_id == "release__my_api"


@pytest.mark.parametrize("service", ["Demo", "1demo", "demo_api", "", "a" * 41])
def test_bad_service_name_refused(service: str) -> None:
    field, message = only_problem(mutated(lambda d: d.update(service=service)))
    assert field == "service"
    assert message == (f"{service!r} is not a valid service name; use lower-case letters, digits and '-', "
                       "max 40")


# ---------------------------------------------------------------------------------- unknown keys
def test_unknown_top_level_key_refused() -> None:
    assert only_problem(mutated(lambda d: d.update(bogus=1))) == ("bogus", UNKNOWN_FIELD)


def test_typo_of_a_known_key_refused() -> None:
    def typo(d: dict[str, Any]) -> None:
        d["strategie"] = d.pop("strategy")

    assert only_problem(mutated(typo)) == ("strategie", UNKNOWN_FIELD)


@pytest.mark.parametrize(
    "path",
    [
        "health.checks.0.bogus",
        "health.bogus",
        "target.bogus",
        "quality_gates.bogus",
        "notifications.channel.bogus",
        "risk.backup.bogus",
        "qa.suites.0.bogus",
        "monitoring.alert_rules.1.bogus",
        "change_window.bogus",
        "blue_green.bogus",
    ],
)
def test_unknown_nested_key_refused_with_dotted_path(path: str) -> None:
    assert only_problem(mutated(lambda d: set_path(d, path, 1))) == (path, UNKNOWN_FIELD)


def test_every_problem_is_reported_not_just_the_first() -> None:
    def several(d: dict[str, Any]) -> None:
        d["bogus"] = 1
        d["version"] = "1.0"
        d["health"]["checks"][0]["bogus"] = 2

    problems = problems_of(mutated(several))
    assert sorted(field for field, _ in problems) == ["bogus", "health.checks.0.bogus", "version"]


def test_missing_required_field_named() -> None:
    assert only_problem(mutated(lambda d: d.pop("build"))) == ("build", "required field is missing")
    assert only_problem(mutated(lambda d: d["build"].pop("command"))) == ("build.command",
                                                                           "required field is missing")


# -------------------------------------------------------------------------------------- version
@pytest.mark.parametrize("version", ["1.0", "v1.0.0", "01.0.0", "1.0.0.0", "1.0.0-", "1.0.0-01", "latest", ""])
def test_version_not_semver_refused(version: str) -> None:
    assert only_problem(mutated(lambda d: d.update(version=version))) == (
        "version", f"{version!r} {SEMVER_MESSAGE}")


@pytest.mark.parametrize("version", ["0.0.0", "1.2.0-broken", "1.0.0+build.1", "1.0.0-rc.1+sha.5114f85",
                                     "10.20.30"])
def test_valid_semver_accepted(version: str) -> None:
    assert parse_spec(mutated(lambda d: d.update(version=version))).version == version


@pytest.mark.parametrize("version", [1.0, 1])
def test_unquoted_yaml_number_version_refused(version: float) -> None:
    # ``version: 1.0`` in YAML is a number, not the string "1.0": refused at the version field.
    assert only_problem(mutated(lambda d: d.update(version=version))) == (
        "version", f'{version!r} was read as a number; quote it in YAML, e.g. version: "1.0.0"')


# ------------------------------------------------------------------------------------- strategy
@pytest.mark.parametrize("strategy", ["canary", "rolling", "feature_flag"])
def test_unsupported_strategies_refused(strategy: str) -> None:
    assert only_problem(mutated(lambda d: d.update(strategy=strategy))) == (
        "strategy", f"strategy {strategy!r} {NOT_SUPPORTED}")


def test_unknown_strategy_refused() -> None:
    field, message = only_problem(mutated(lambda d: d.update(strategy="big_bang")))
    assert field == "strategy"
    assert message == "Input should be 'blue_green', 'canary', 'rolling' or 'feature_flag'"


def test_strategy_defaults_to_blue_green() -> None:
    assert parse_spec(mutated(lambda d: d.pop("strategy"))).strategy is Strategy.blue_green


# -------------------------------------------------------------------------------- quality gates
WEAKER = [("build_success_pct", 95, 100), ("test_pass_pct", 80, 90), ("max_critical_vulns", 1, 0),
          ("health_pass_pct", 90, 100)]


@pytest.mark.parametrize(("gate", "value", "minimum"), WEAKER)
def test_gate_weaker_than_seed_refused_without_waiver(gate: str, value: float, minimum: float) -> None:
    field, message = only_problem(mutated(lambda d: d["quality_gates"].update({gate: value})))
    assert field == f"quality_gates.{gate}"
    assert message == (f"{gate}={value} is weaker than the seed's minimum {minimum}; "
                       f"add a waiver with gate: {gate}, a reason and approved_by")


@pytest.mark.parametrize(("gate", "value", "minimum"), WEAKER)
def test_gate_weaker_than_seed_accepted_with_waiver(gate: str, value: float, minimum: float) -> None:
    def weaken(d: dict[str, Any]) -> None:
        d["quality_gates"][gate] = value
        d["quality_gates"]["waivers"] = [{"gate": gate, "reason": "legacy suite, tracked in REL-42",
                                          "approved_by": "release-manager"}]

    spec = parse_spec(mutated(weaken))
    assert getattr(spec.quality_gates, gate) == value
    assert spec.quality_gates.weaker_than_seed() == [gate]
    assert [w.gate for w in spec.quality_gates.waivers] == [gate]


def test_waiver_for_another_gate_does_not_cover() -> None:
    def weaken(d: dict[str, Any]) -> None:
        d["quality_gates"]["test_pass_pct"] = 80
        d["quality_gates"]["waivers"] = [{"gate": "build_success_pct", "reason": "legacy suite, tracked",
                                          "approved_by": "release-manager"}]

    field, message = only_problem(mutated(weaken))
    assert field == "quality_gates.test_pass_pct"
    assert message.startswith("test_pass_pct=80 is weaker than the seed's minimum 90")


def test_waiver_needs_a_real_reason() -> None:
    def weaken(d: dict[str, Any]) -> None:
        d["quality_gates"]["test_pass_pct"] = 80
        d["quality_gates"]["waivers"] = [{"gate": "test_pass_pct", "reason": "meh", "approved_by": "x"}]

    field, _ = only_problem(mutated(weaken))
    assert field == "quality_gates.waivers.0.reason"


def test_stronger_gates_accepted() -> None:
    def strengthen(d: dict[str, Any]) -> None:
        d["quality_gates"].update(test_pass_pct=99, build_success_pct=100, max_critical_vulns=0,
                                  health_pass_pct=100)

    spec = parse_spec(mutated(strengthen))
    assert spec.quality_gates.test_pass_pct == 99
    assert spec.quality_gates.weaker_than_seed() == []


def test_default_gates_are_the_seed_minimums() -> None:
    gates = parse_spec(mutated(lambda d: d.pop("quality_gates"))).quality_gates
    assert (gates.build_success_pct, gates.test_pass_pct, gates.max_critical_vulns, gates.health_pass_pct) == (
        100, 90, 0, 100)


# -------------------------------------------------------------------------------- production
@pytest.mark.parametrize(
    ("remove", "message"),
    [
        (("approvals",), "production releases need approvals"),
        (("change_window",), "production releases need change_window"),
        (("approvals", "change_window"), "production releases need approvals and change_window"),
    ],
)
def test_production_needs_approvals_and_change_window(remove: tuple[str, ...], message: str) -> None:
    def strip(d: dict[str, Any]) -> None:
        for key in remove:
            d.pop(key)

    assert only_problem(mutated(strip)) == (remove[0], message)


def test_staging_does_not_need_approvals() -> None:
    def staging(d: dict[str, Any]) -> None:
        d["environment"] = "staging"
        d.pop("approvals")
        d.pop("change_window")

    assert parse_spec(mutated(staging)).environment == "staging"


def test_more_required_approvals_than_approvers_refused() -> None:
    field, message = only_problem(mutated(lambda d: d["approvals"].update(required=2)))
    assert field == "approvals"
    assert message == "required=2 approvals but only 1 approvers listed"


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", "../etc/passwd"])
def test_change_window_bad_timezone_refused(zone: str) -> None:
    assert only_problem(mutated(lambda d: d["change_window"].update(timezone=zone))) == (
        "change_window.timezone", f"unknown time zone {zone!r}; use an IANA name such as Europe/Berlin")


def test_change_window_iana_timezone_accepted() -> None:
    spec = parse_spec(mutated(lambda d: d["change_window"].update(timezone="Europe/Berlin")))
    assert spec.change_window is not None
    assert spec.change_window.timezone == "Europe/Berlin"


def test_change_window_bad_time_refused() -> None:
    field, _ = only_problem(mutated(lambda d: d["change_window"].update(start="24:00")))
    assert field == "change_window.start"


# ----------------------------------------------------------------------------- shell smuggling
COMMAND_FIELDS = {
    "build.command": lambda d, argv: d["build"].update(command=argv),
    "risk.backup.command": lambda d, argv: d["risk"]["backup"].update(command=argv),
    "qa.suites.0.command": lambda d, argv: d["qa"]["suites"][0].update(command=argv),
    "target.command": lambda d, argv: d["target"].update(command=argv),
    "infrastructure.plan_command": lambda d, argv: d.setdefault("infrastructure", {}).update(plan_command=argv),
    "infrastructure.apply_command": lambda d, argv: d.setdefault("infrastructure", {}).update(apply_command=argv),
}

KNOWN = ("artifacts_dir, environment, port, previous_version, python, service, spec_dir, url, version, "
         "workdir")
SMUGGLED = [
    (["sh", "-c", "x"], "command runs the shell 'sh'; give the program and its arguments directly"),
    (["/bin/bash", "x"], "command runs the shell '/bin/bash'; give the program and its arguments directly"),
    (["echo", "$(id)"], "element 1 '$(id)' contains shell substitution; use a {placeholder} instead"),
    (["echo", "`id`"], "element 1 '`id`' contains shell substitution; use a {placeholder} instead"),
    (["echo", ";"], "element 1 ';' is shell syntax; commands never run in a shell"),
    (["x", "&&"], "element 1 '&&' is shell syntax; commands never run in a shell"),
    (["x", "|"], "element 1 '|' is shell syntax; commands never run in a shell"),
    (["x", " > "], "element 1 ' > ' is shell syntax; commands never run in a shell"),
    (["x", "${HOME}"], "element 1 '${HOME}' contains shell substitution; use a {placeholder} instead"),
    (["x", "--out={foo}"], f"element 1 uses unknown placeholder {{foo}}; known: {KNOWN}"),
    (["x", "{}"], f"element 1 uses unknown placeholder {{}}; known: {KNOWN}"),
]


@pytest.mark.parametrize("field", sorted(COMMAND_FIELDS))
@pytest.mark.parametrize(("argv", "message"), SMUGGLED,
                         ids=lambda v: repr(v) if isinstance(v, list) else "")
def test_shell_smuggling_refused_in_every_command_field(field: str, argv: list[str], message: str) -> None:
    assert only_problem(mutated(lambda d: COMMAND_FIELDS[field](d, argv))) == (field, message)


@pytest.mark.parametrize("field", sorted(COMMAND_FIELDS))
def test_empty_command_refused(field: str) -> None:
    got_field, message = only_problem(mutated(lambda d: COMMAND_FIELDS[field](d, [])))
    assert got_field == field
    assert "at least 1 item" in message


@pytest.mark.parametrize("field", sorted(COMMAND_FIELDS))
def test_shell_string_instead_of_argv_refused(field: str) -> None:
    got_field, message = only_problem(mutated(lambda d: COMMAND_FIELDS[field](d, "make build && deploy")))
    assert got_field == field
    assert message == "Input should be a valid list"


@pytest.mark.parametrize("field", sorted(COMMAND_FIELDS))
def test_known_placeholders_accepted(field: str) -> None:
    argv = ["{python}", "-m", "tool", "--version={version}", "{url}", "{workdir}/x", "{previous_version}"]
    parse_spec(mutated(lambda d: COMMAND_FIELDS[field](d, argv)))


def test_shell_name_as_argument_is_fine() -> None:
    # Only the program (argv[0]) is judged as a shell; "bash" as data is harmless without a shell.
    spec = parse_spec(mutated(lambda d: d["build"].update(command=["grep", "-c", "bash", "{spec_dir}/x"])))
    assert spec.build.command == ["grep", "-c", "bash", "{spec_dir}/x"]


def test_backup_needs_command_and_output_or_waiver() -> None:
    field, message = only_problem(mutated(lambda d: d["risk"]["backup"].pop("output")))
    assert field == "risk.backup"
    assert message == "give command and output for the backup, or a waiver with a reason"
    spec = parse_spec(mutated(lambda d: d["risk"].update(backup={"waiver": "stateless service, nothing to back"})))
    assert spec.risk.backup.command is None


# ---------------------------------------------------------------------------- blue/green checks
def test_pre_switch_check_must_name_a_health_check() -> None:
    assert only_problem(mutated(lambda d: d["blue_green"].update(pre_switch_checks=["version", "readyz"]))) == (
        "blue_green.pre_switch_checks",
        "names 'readyz', which is not in health.checks (healthz, version)",
    )


def test_pre_switch_checks_default_to_none() -> None:
    spec = parse_spec(mutated(lambda d: d.pop("blue_green")))
    assert spec.blue_green.pre_switch_checks is None
    assert spec.blue_green.observe_switch_requests == 20


# ------------------------------------------------------------------------- not-a-spec documents
@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "spec is empty; expected a mapping"),
        ([{"service": "demo"}], "expected a mapping, got list"),
        ("service: demo", "expected a mapping, got str"),
        (42, "expected a mapping, got int"),
    ],
)
def test_non_mapping_data_refused(data: Any, message: str) -> None:
    assert only_problem(data) == ("(top level)", message)


def _load_problems(path: Path) -> list[tuple[str, str]]:
    try:
        load_spec(path)
    except SpecError as exc:  # anything else escapes and fails the test
        assert exc.source == str(path)
        return [(p.field, p.message) for p in exc.problems]
    raise AssertionError(f"{path} was accepted")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", [("(top level)", "spec is empty; expected a mapping")]),
        ("# only a comment\n\n", [("(top level)", "spec is empty; expected a mapping")]),
        ("- service: demo\n- version: 1.0.0\n", [("(top level)", "expected a mapping, got list")]),
        ("just a string\n", [("(top level)", "expected a mapping, got str")]),
        ("service: demo\nversion: [1.0\n",
         [("line 3, column 1", "invalid YAML: expected ',' or ']', but got '<stream end>'")]),
        ("service: demo\nversion: a: b\n", [("line 2, column 11", "invalid YAML: mapping values are not allowed here")]),
        ("service: demo\n---\nservice: other\n", [("line 2, column 1", "invalid YAML: but found another document")]),
        ("x: !!python/object/apply:os.system ['id']\n", None),
    ],
    ids=["empty", "comment-only", "list", "scalar", "unclosed-flow", "bad-mapping", "two-documents",
         "python-tag"],
)
def test_bad_files_give_spec_errors(tmp_path: Path, text: str, expected: list[tuple[str, str]] | None) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    problems = _load_problems(path)
    if expected is None:  # the python tag: refused by safe_load, reported with its position
        assert len(problems) == 1
        assert re.fullmatch(r"line \d+, column \d+", problems[0][0])
        assert problems[0][1].startswith("invalid YAML: ")
    else:
        assert problems == expected


def test_missing_file(tmp_path: Path) -> None:
    assert _load_problems(tmp_path / "nope.yaml") == [("(file)", "file not found")]


def test_directory_instead_of_file(tmp_path: Path) -> None:
    [(field, message)] = _load_problems(tmp_path)
    assert field == "(file)"
    assert message.startswith("cannot read: ")


def test_not_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_bytes(b"\xff\xfeservice: demo\n")
    [(field, message)] = _load_problems(path)
    assert field == "(file)"
    assert message.startswith("cannot read: 'utf-8' codec can't decode")


def test_spec_error_renders_one_line_per_problem() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(mutated(lambda d: d.update(bogus=1, version="1.0")), source="x.yaml")
    lines = str(info.value).splitlines()
    assert sorted(lines) == sorted([f"x.yaml: bogus: {UNKNOWN_FIELD}", f"x.yaml: version: '1.0' {SEMVER_MESSAGE}"])
    assert isinstance(info.value, ValueError)


# -------------------------------------------------------------------------------- run params
@pytest.fixture(scope="module")
def demo_spec() -> ReleaseSpec:
    return parse_spec(demo_data())


def test_run_params_default_to_the_spec(demo_spec: ReleaseSpec) -> None:
    for overrides in (None, {}):
        params = run_params(demo_spec, overrides)
        assert (params.version, params.strategy, params.dry_run) == ("1.0.0", Strategy.blue_green, False)


def test_run_params_override(demo_spec: ReleaseSpec) -> None:
    params = run_params(demo_spec, {"version": "1.2.0-broken", "dry_run": True, "strategy": "blue_green"})
    assert (params.version, params.strategy, params.dry_run) == ("1.2.0-broken", Strategy.blue_green, True)


def test_run_params_bad_version(demo_spec: ReleaseSpec) -> None:
    with pytest.raises(SpecError) as info:
        run_params(demo_spec, {"version": "v2"}, source="--set")
    assert info.value.source == "--set"
    assert [(p.field, p.message) for p in info.value.problems] == [("version", f"'v2' {SEMVER_MESSAGE}")]


@pytest.mark.parametrize("strategy", ["canary", "rolling", "feature_flag"])
def test_run_params_unsupported_strategy(demo_spec: ReleaseSpec, strategy: str) -> None:
    with pytest.raises(SpecError) as info:
        run_params(demo_spec, {"strategy": strategy})
    assert info.value.source == "params"
    assert [(p.field, p.message) for p in info.value.problems] == [
        ("strategy", f"strategy {strategy!r} {NOT_SUPPORTED}")]


def test_run_params_ignore_unknown_keys_and_none(demo_spec: ReleaseSpec) -> None:
    # Pinned behaviour: keys a run cannot set are ignored here (the CLI refuses them earlier), and
    # None means "use the spec's default" (an empty trigger-form field).
    params = run_params(demo_spec, {"service": "evil", "bogus": 1, "version": None, "strategy": None})
    assert (params.version, params.strategy, params.dry_run) == ("1.0.0", Strategy.blue_green, False)


def test_run_params_dry_run_must_be_boolean(demo_spec: ReleaseSpec) -> None:
    with pytest.raises(SpecError) as info:
        run_params(demo_spec, {"dry_run": "maybe"})
    assert [p.field for p in info.value.problems] == ["dry_run"]


def test_run_params_shell_in_version_refused(demo_spec: ReleaseSpec) -> None:
    with pytest.raises(SpecError) as info:
        run_params(demo_spec, {"version": "1.0.0; rm -rf /"})
    assert [p.field for p in info.value.problems] == ["version"]


# ------------------------------------------------------------------------------------- schema
def test_json_schema_is_json_and_describes_the_spec() -> None:
    schema = json.loads(json.dumps(json_schema()))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "gendev-release spec"
    assert schema["type"] == "object"
    for key in ("service", "version", "strategy", "health", "quality_gates", "build", "qa", "target"):
        assert key in schema["properties"], key
    assert schema["properties"]["version"]["pattern"] == SEMVER_PATTERN
    assert schema["additionalProperties"] is False
    for required in ("service", "version", "health", "build", "notifications"):
        assert required in schema["required"]


def test_duplicate_keys_are_refused_with_their_line(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("service: demo\nversion: 1.0.0\nservice: other\n")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    [problem] = caught.value.problems
    assert problem.field == "line 3, column 1"
    assert "duplicate key 'service'" in problem.message


@pytest.mark.parametrize("argv", [["env", "sh", "-c", "id"], ["timeout", "5", "/bin/bash", "x"]])
def test_wrapped_shells_are_refused(argv: list[str]) -> None:
    field, message = only_problem(mutated(lambda d: d["build"].update(command=argv)))
    assert field == "build.command"
    assert "runs a shell through" in message
