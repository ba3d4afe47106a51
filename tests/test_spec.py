"""The release spec: strict loading, exact problem paths and messages, never a stray exception."""

from __future__ import annotations

import copy
import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from gendev_release.errors import SpecError, SpecProblem
from gendev_release.paths import PathEscape
from gendev_release.spec import (
    RUN_PARAMETERS,
    STRATEGY_NOT_A_PARAMETER,
    VERSION_REQUIRED,
    ReleaseSpec,
    json_schema,
    load_spec,
    parse_spec,
    run_params,
)
from gendev_release.spec_rules import (
    ALLOWED_EXECUTABLES_ENV,
    VERSION_FORMAT,
    VERSION_MAX_LENGTH,
    VERSION_NOT_IN_SPEC,
    VERSION_PATTERN,
    check_version,
    resolve_output,
)
from gendev_release.spec_yaml import LOADER, MAX_DEPTH, MAX_NODES, MAX_SPEC_BYTES, StrictSafeLoader

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "dags" / "releases" / "demo.yaml"

UNKNOWN_FIELD = "unknown field (check the spelling; see `gendev-release schema`)"
NOT_SEMVER = f"is not a semantic version; use {VERSION_FORMAT}"
LOADERS = pytest.mark.parametrize("loader", [LOADER, StrictSafeLoader], ids=lambda c: c.__name__)


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


def load_problems(tmp_path: Path, text: str, loader: Any = None, name: str = "spec.yaml") -> list[tuple[str, str]]:
    """Write ``text`` and load it: it must be refused with a SpecError (anything else fails the test)."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    try:
        load_spec(path, loader=loader)
    except SpecError as exc:
        assert exc.source == str(path)
        assert exc.problems
        return [(p.field, p.message) for p in exc.problems]
    raise AssertionError(f"{path} was accepted")


DEMO_TEXT = DEMO.read_text(encoding="utf-8")


def demo_line(prefix: str) -> int:
    """The 1-based line of the demo spec that starts with ``prefix`` (after indentation)."""
    [number] = [n for n, line in enumerate(DEMO_TEXT.splitlines(), start=1) if line.lstrip().startswith(prefix)]
    return number


# ------------------------------------------------------------------------------------ the demo
def test_demo_spec_loads_from_file() -> None:
    spec = load_spec(DEMO)
    assert isinstance(spec, ReleaseSpec)
    assert spec.service == "demo"
    assert spec.environment == "production"
    assert spec.strategy.kind == "blue_green"
    assert spec.dag_id == "release__demo"
    assert spec.source == DEMO.resolve()
    assert spec.spec_dir == DEMO.resolve().parent
    assert [c.name for c in spec.health.checks] == ["healthz", "version"]
    assert spec.strategy.pre_switch_checks == ["version"]
    assert spec.input_path("readiness.runbook", "demo/runbook.md") == DEMO.resolve().parent / "demo" / "runbook.md"
    assert spec.repo_path() == ROOT  # risk.repo: ../.. from dags/releases
    assert not hasattr(spec, "version")


def test_demo_spec_parses_from_dict() -> None:
    spec = parse_spec(demo_data())
    assert spec.service == "demo"
    assert spec.source is None


def test_spec_is_frozen() -> None:
    spec = parse_spec(demo_data())
    with pytest.raises(ValidationError):
        spec.service = "other"  # type: ignore[misc]


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
        "strategy.bogus",
    ],
)
def test_unknown_nested_key_refused_with_dotted_path(path: str) -> None:
    assert only_problem(mutated(lambda d: set_path(d, path, 1))) == (path, UNKNOWN_FIELD)


def test_empty_key_is_named_not_blank() -> None:
    assert only_problem(mutated(lambda d: d.update({"": 1}))) == ('""', UNKNOWN_FIELD)


def test_every_problem_is_reported_not_just_the_first() -> None:
    def several(d: dict[str, Any]) -> None:
        d["bogus"] = 1
        d["version"] = "1.0.0"
        d["health"]["checks"][0]["bogus"] = 2

    problems = problems_of(mutated(several))
    assert sorted(field for field, _ in problems) == ["bogus", "health.checks.0.bogus", "version"]


def test_missing_required_field_named() -> None:
    assert only_problem(mutated(lambda d: d.pop("build"))) == ("build", "required field is missing")
    assert only_problem(mutated(lambda d: d["build"].pop("command"))) == ("build.command",
                                                                           "required field is missing")


# ------------------------------------------------------------------------- version: not in the spec
@pytest.mark.parametrize("version", ["1.0.0", 1.0, "latest"])
def test_a_spec_with_a_version_is_refused_at_version(version: Any) -> None:
    assert only_problem(mutated(lambda d: d.update(version=version))) == ("version", VERSION_NOT_IN_SPEC)
    assert VERSION_NOT_IN_SPEC == ('no longer part of the spec: every run names its version (trigger conf '
                                   '{"version": "1.4.2"} or `--set version=1.4.2`); remove this line')


def test_demo_spec_has_no_version_line() -> None:
    assert "version" not in demo_data()
    assert not re.search(r"^version:", DEMO_TEXT, flags=re.MULTILINE)


# ------------------------------------------------------------------------------ version rule
BAD_VERSIONS = [
    "1.0", "v1.0.0", "01.0.0", "1.0.0.0", "1.0.0-", "1.0.0-01", "latest", "",
    "1\u0662.0.0",  # ARABIC-INDIC DIGIT TWO: \d would accept it
    "\u0661.0.0", "1.0.\uff10",  # ARABIC-INDIC ONE, FULLWIDTH ZERO
    " 1.0.0", "1.0.0 ", "1.0.0\n", "\n1.0.0", "1.0.0\r", "1.0.0\x00", "1.0.0; rm -rf /", "1.0.0-é",
]


@pytest.mark.parametrize("version", BAD_VERSIONS, ids=repr)
def test_check_version_refuses(version: str) -> None:
    with pytest.raises(ValueError) as info:
        check_version(version)
    assert str(info.value) == f"{version!r} {NOT_SEMVER}"
    assert re.search(VERSION_PATTERN, version) is None  # the Param's pattern (re.search, as jsonschema) agrees


@pytest.mark.parametrize("version", ["0.0.0", "1.2.0-broken", "1.0.0+build.1", "1.0.0-rc.1+sha.5114f85",
                                     "10.20.30", "1.0.0-alpha-a.b-c-somethinglong+build.1-aef.1-its-okay",
                                     "1.0.0-" + "a" * (VERSION_MAX_LENGTH - 6)])
def test_check_version_accepts(version: str) -> None:
    assert check_version(version) == version
    assert re.search(VERSION_PATTERN, version)


@pytest.mark.parametrize("length", [VERSION_MAX_LENGTH + 1, 5000])
def test_check_version_refuses_long_versions(length: int) -> None:
    version = "1.0.0-" + "a" * (length - 6)
    assert re.fullmatch(VERSION_PATTERN, version)  # semver-shaped: only the length is wrong
    with pytest.raises(ValueError) as info:
        check_version(version)
    message = str(info.value)
    assert message.endswith(f" is {length} characters long; use {VERSION_FORMAT}")
    assert len(message) < 400  # the value is clipped, never echoed whole


@pytest.mark.parametrize(("value", "message"), [
    (1.0, f'1.0 is a number, not text; quote it, e.g. "1.4.2" ({VERSION_FORMAT})'),
    (1, f'1 is a number, not text; quote it, e.g. "1.4.2" ({VERSION_FORMAT})'),
    (True, f"version must be text, not bool; use {VERSION_FORMAT}"),
    (["1.0.0"], f"version must be text, not list; use {VERSION_FORMAT}"),
])
def test_check_version_wants_text(value: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        check_version(value)
    assert str(info.value) == message


def test_version_pattern_is_ascii_only() -> None:
    assert r"\d" not in VERSION_PATTERN
    assert VERSION_PATTERN.isascii()
    assert VERSION_MAX_LENGTH == 64
    assert VERSION_FORMAT == ("MAJOR.MINOR.PATCH with an optional -PRERELEASE and +BUILD, ASCII, at most 64 "
                              "characters, e.g. 1.4.2")


# ------------------------------------------------------------------------------------- strategy
@pytest.mark.parametrize("kind", ["blue_green", "canary", "rolling"])
def test_older_string_strategy_is_refused_with_the_rewrite(kind: str) -> None:
    field, message = only_problem(mutated(lambda d: d.update(strategy=kind)))
    assert field == "strategy"
    assert message.startswith("the strategy is now one mapping with its settings (and no longer a trigger parameter)")
    assert f"rewrite it as  strategy: {{kind: {kind}" in message


def test_older_blue_green_block_is_refused_with_its_settings_in_the_rewrite() -> None:
    def old_form(d: dict[str, Any]) -> None:
        d["blue_green"] = {k: v for k, v in d.pop("strategy").items() if k != "kind"}
        d["strategy"] = "blue_green"

    field, message = only_problem(mutated(old_form))
    assert field == "strategy"
    assert 'strategy: {kind: blue_green, pre_switch_checks: ["version"], observe_switch_requests: 20' in message
    assert "drop the blue_green block" in message


def test_unknown_strategy_kind_refused() -> None:
    field, message = only_problem(mutated(lambda d: d.update(strategy={"kind": "big_bang"})))
    assert field == "strategy"
    assert message == "unknown strategy kind 'big_bang'; use one of: blue_green, canary, rolling, feature_flags"


def test_strategy_defaults_to_blue_green() -> None:
    spec = parse_spec(mutated(lambda d: d.pop("strategy")))
    assert spec.strategy.kind == "blue_green" and spec.strategy.scale_down_delay_seconds == 30


def test_a_setting_of_another_kind_is_refused() -> None:
    field, message = only_problem(mutated(lambda d: d.update(strategy={"kind": "blue_green", "steps": [50, 100]})))
    assert (field, message) == ("strategy.steps", UNKNOWN_FIELD)


@pytest.mark.parametrize(("steps", "message"), [
    ([10, 50], "steps must end at 100 (the promotion), got [10, 50]"),
    ([50, 25, 100], "steps must rise: 50 then 25"),
    ([0, 100], "steps[0] = 0: a step is a percent from 1 to 100"),
])
def test_canary_steps_rise_to_100(steps: list[int], message: str) -> None:
    field, text = only_problem(mutated(lambda d: d.update(strategy={"kind": "canary", "steps": steps})))
    assert field == "strategy.steps" and message in text


def test_rolling_batch_weights_and_a_batch_larger_than_the_fleet() -> None:
    spec = parse_spec(mutated(lambda d: d.update(strategy={"kind": "rolling", "instances": 5, "batch_size": 2})))
    assert spec.strategy.kind == "rolling" and spec.strategy.batch_weights() == [40, 80, 100]
    field, text = only_problem(mutated(lambda d: d.update(strategy={"kind": "rolling", "instances": 2,
                                                                     "batch_size": 3})))
    assert field == "strategy.batch_size" and "3 is more than instances (2)" in text


def test_pausing_a_failed_canary_needs_people_to_ask() -> None:
    def staging_pause(d: dict[str, Any]) -> None:
        d.update(environment="staging", strategy={"kind": "canary", "on_failed_analysis": "pause"})
        d.pop("approvals")

    assert only_problem(mutated(staging_pause)) == (
        "strategy.on_failed_analysis", "pause asks people to decide; give approvals (its approvers decide a failed "
                                       "analysis)")


def test_feature_flags_need_a_provider_and_a_safe_file_name() -> None:
    field, _ = only_problem(mutated(lambda d: d.update(strategy={"kind": "feature_flags", "flag": "x"})))
    assert field == "strategy.provider"
    field, _ = only_problem(mutated(lambda d: d.update(strategy={
        "kind": "feature_flags", "flag": "x", "provider": {"kind": "file", "path": "../../etc/passwd.json"}})))
    assert field == "strategy.provider.path"


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


# ------------------------------------------------------------- every relaxation needs a waiver
def _rule(index: int, **changes: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d["monitoring"]["alert_rules"][index].update(changes)


#: (what a realistic spec loosens, the field named, the waiver gate that allows it, the message's problem)
RELAXATIONS = [
    (lambda d: d["security"].update(min_compliance_pct=90), "security.min_compliance_pct", "min_compliance_pct",
     "security.min_compliance_pct=90 is below the package default 100; use 100 or more"),
    (lambda d: d["security"].update(required_controls=["no_plaintext_secrets", "security_headers"]),
     "security.required_controls", "required_controls",
     "security.required_controls leaves out the default control(s) config_permissions; add them back"),
    (lambda d: d["security"].update(required_headers=["X-Content-Type-Options"]), "security.required_headers",
     "required_headers", "security.required_headers leaves out the default header(s) X-Frame-Options; add them back"),
    (lambda d: d["quality_gates"].update(regression_tolerance_pct=150), "quality_gates.regression_tolerance_pct",
     "regression_tolerance_pct",
     "quality_gates.regression_tolerance_pct=150 is above the package default 50; use 50 or less"),
    (lambda d: d["quality_gates"].update(regression_min_ms=100), "quality_gates.regression_min_ms",
     "regression_min_ms", "quality_gates.regression_min_ms=100 is above the package default 25; use 25 or less"),
    (lambda d: d["quality_gates"].update(p95_latency_ms=800), "quality_gates.p95_latency_ms", "p95_latency_ms",
     "quality_gates.p95_latency_ms=800 is above the package default 500; use 500 or less"),
    (lambda d: d["quality_gates"].update(max_error_rate_pct=5), "quality_gates.max_error_rate_pct",
     "max_error_rate_pct", "quality_gates.max_error_rate_pct=5 is above the package default 1; use 1 or less"),
    (_rule(0, threshold=0.05), "monitoring.alert_rules.0.threshold", "alert_rules",
     "rule error-rate fires at demo_http_error_ratio > 0.05, looser than the SLA it protects "
     "(quality_gates.max_error_rate_pct=1 is 0.01 as a 0-1 ratio); lower the threshold to 0.01 or less (or leave "
     "it out: a rule that protects an SLA defaults to it)"),
    (_rule(1, threshold=0.3), "monitoring.alert_rules.1.threshold", "alert_rules",
     "rule latency-p95 fires at demo_http_request_p95_seconds > 0.3, looser than the SLA it protects "
     "(quality_gates.p95_latency_ms=250 is 0.25 in seconds); lower the threshold to 0.25 or less (or leave it "
     "out: a rule that protects an SLA defaults to it)"),
    (lambda d: d["readiness"].update(min_document_bytes=1), "readiness.min_document_bytes", "document_standard",
     "readiness.min_document_bytes=1 is below the package default 200; use 200 or more"),
    (lambda d: d["readiness"].update(runbook_sections=["deploy"]), "readiness.runbook_sections",
     "document_standard", "readiness.runbook_sections leaves out the default section(s) verify, escalation; "
     "add them back"),
]
RELAXATION_IDS = ["min_compliance", "controls", "headers", "regression_tolerance", "regression_min_ms", "p95_sla",
                  "error_sla", "error_alert", "latency_alert", "document_size", "runbook_sections"]


@pytest.mark.parametrize(("relax", "field", "gate", "problem"), RELAXATIONS, ids=RELAXATION_IDS)
def test_relaxation_refused_without_waiver(relax: Callable[[dict[str, Any]], None], field: str, gate: str,
                                           problem: str) -> None:
    got, message = only_problem(mutated(relax))
    assert got == field
    assert message == f"{problem}, or add a waiver to quality_gates.waivers with gate: {gate}, a reason and approved_by"


@pytest.mark.parametrize(("relax", "field", "gate", "problem"), RELAXATIONS, ids=RELAXATION_IDS)
def test_relaxation_accepted_with_waiver(relax: Callable[[dict[str, Any]], None], field: str, gate: str,
                                         problem: str) -> None:
    def relax_and_waive(d: dict[str, Any]) -> None:
        relax(d)
        d["quality_gates"]["waivers"] = [{"gate": gate, "reason": "accepted for this service, tracked in REL-7",
                                          "approved_by": "release-manager"}]

    spec = parse_spec(mutated(relax_and_waive))
    assert [(r.gate, r.field) for r in spec.relaxations()] == [(gate, field)]


def test_waiver_for_another_relaxation_does_not_cover() -> None:
    def relax(d: dict[str, Any]) -> None:
        d["security"]["min_compliance_pct"] = 90
        d["quality_gates"]["waivers"] = [{"gate": "required_controls", "reason": "accepted, tracked in SEC-1",
                                          "approved_by": "security-lead"}]

    field, _ = only_problem(mutated(relax))
    assert field == "security.min_compliance_pct"


def test_tightening_never_needs_a_waiver() -> None:
    def tighten(d: dict[str, Any]) -> None:
        d["security"].update(required_controls=["tls_certificate", "config_permissions", "security_headers",
                                                "no_plaintext_secrets"],
                             required_headers=["x-frame-options", "X-CONTENT-TYPE-OPTIONS", "Referrer-Policy"])
        d["quality_gates"].update(p95_latency_ms=100, max_error_rate_pct=0.5, regression_tolerance_pct=20,
                                  regression_min_ms=5)
        d["monitoring"]["alert_rules"].append({"name": "errors-early", "metric": "demo_http_error_ratio", "op": ">=",
                                               "threshold": 0.001, "protects": "error_rate"})

    spec = parse_spec(mutated(tighten))
    assert spec.relaxations() == []
    # the rules that protect an SLA and name no threshold follow the tightened SLA
    assert [r.threshold for r in spec.monitoring.alert_rules] == [0.005, 0.1, 0.001]


def test_alert_threshold_defaults_to_the_sla_it_protects() -> None:
    data = demo_data()
    spec = parse_spec(data)
    assert [(r.protects, r.threshold) for r in spec.monitoring.alert_rules] == [("error_rate", 0.01),
                                                                                ("p95_latency", 0.25)]
    assert "threshold" not in data["monitoring"]["alert_rules"][0]  # the caller's data is left alone
    assert parse_spec(json.loads(spec.model_dump_json())) == spec  # and round-trips through JSON


def test_alert_threshold_equal_to_the_sla_is_not_looser() -> None:
    spec = parse_spec(mutated(lambda d: d["quality_gates"].update(p95_latency_ms=300) or
                              d["monitoring"]["alert_rules"][1].update(threshold=0.3)))
    assert spec.relaxations() == []


def test_rule_protecting_an_upper_bound_must_fire_above_it() -> None:
    field, message = only_problem(mutated(_rule(1, op="<")))
    assert field == "monitoring.alert_rules.1.op"
    assert message == ("rule latency-p95 protects p95_latency, an upper bound, so it must fire above its threshold; "
                       "use op > or >= (not <)")


def test_rule_that_protects_nothing_needs_a_threshold() -> None:
    field, message = only_problem(mutated(lambda d: d["monitoring"]["alert_rules"][1].pop("protects")))
    assert (field, message) == ("monitoring.alert_rules.1.threshold", "required field is missing")


def test_unknown_protects_is_refused() -> None:
    problems = dict(problems_of(mutated(_rule(0, protects="throughput"))))
    assert problems["monitoring.alert_rules.0.protects"] == "Input should be 'error_rate' or 'p95_latency'"
    # nothing to take a default threshold from: the rule's missing threshold is named too
    assert set(problems) == {"monitoring.alert_rules.0.protects", "monitoring.alert_rules.0.threshold"}


def test_one_waiver_per_gate() -> None:
    waiver = {"gate": "test_pass_pct", "reason": "legacy suite, tracked in REL-42", "approved_by": "qa-lead"}
    field, message = only_problem(mutated(lambda d: d["quality_gates"].update(test_pass_pct=80,
                                                                              waivers=[waiver, waiver])))
    assert (field, message) == ("quality_gates.waivers.1.gate", "a second waiver for test_pass_pct; keep one per gate")


def test_schema_lets_a_protecting_rule_leave_out_its_threshold() -> None:
    rule = json_schema()["$defs"]["AlertRule"]
    assert rule["required"] == ["name", "metric", "op"]
    assert rule["properties"]["protects"]["anyOf"][0]["enum"] == ["error_rate", "p95_latency"]


def test_default_gates_are_the_seed_minimums() -> None:
    gates = parse_spec(mutated(lambda d: d.pop("quality_gates"))).quality_gates
    assert (gates.build_success_pct, gates.test_pass_pct, gates.max_critical_vulns, gates.health_pass_pct) == (
        100, 90, 0, 100)


# ---------------------------------------------------------------------------- finite numbers
FLOAT_FIELDS = [
    "quality_gates.p95_latency_ms", "quality_gates.max_error_rate_pct", "quality_gates.regression_tolerance_pct",
    "quality_gates.regression_min_ms", "quality_gates.test_pass_pct", "quality_gates.build_success_pct",
    "quality_gates.health_pass_pct", "quality_gates.min_coverage_pct", "monitoring.alert_rules.0.threshold",
    "monitoring.alert_rules.1.threshold", "monitoring.observation_seconds", "monitoring.sample_interval_seconds",
    "planning.default_phase_minutes", "health.interval_seconds", "health.timeout_seconds",
    "health.checks.0.timeout_seconds", "target.startup_timeout_seconds",
]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("field", FLOAT_FIELDS)
def test_non_finite_numbers_refused(field: str, value: float) -> None:
    got, message = only_problem(mutated(lambda d: set_path(d, field, value)))
    assert got == field
    assert message == f"{value!r} is not a finite number; .nan and .inf are refused, give a value"


@LOADERS
@pytest.mark.parametrize("literal", [".nan", ".NaN", ".inf", "-.inf", "+.Inf", "1.0e+999"])
def test_non_finite_yaml_literals_refused(tmp_path: Path, loader: Any, literal: str) -> None:
    text = DEMO_TEXT.replace("p95_latency_ms: 250", f"p95_latency_ms: {literal}")
    [(field, message)] = load_problems(tmp_path, text, loader)
    assert field == "quality_gates.p95_latency_ms"
    assert "is not a finite number" in message


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


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", "../etc/passwd", "Europe", "America", "Etc",
                                  "/etc/localtime", "Europe/\x00Berlin", "zone.tab", "Europe/Berlin ",
                                  "UTC\n"])
def test_change_window_bad_timezone_refused(zone: str) -> None:
    assert only_problem(mutated(lambda d: d["change_window"].update(timezone=zone))) == (
        "change_window.timezone", f"unknown time zone {zone!r}; use an IANA name such as Europe/Berlin")


def test_change_window_very_long_timezone_refused() -> None:
    zone = "A" * 300
    field, message = only_problem(mutated(lambda d: d["change_window"].update(timezone=zone)))
    assert field == "change_window.timezone"
    assert message.startswith("unknown time zone 'AAAA")
    assert message.endswith("(302 characters); use an IANA name such as Europe/Berlin")


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+5", "UTC"])
def test_change_window_iana_timezone_accepted(zone: str) -> None:
    spec = parse_spec(mutated(lambda d: d["change_window"].update(timezone=zone)))
    assert spec.change_window is not None
    assert spec.change_window.timezone == zone


@pytest.mark.parametrize("time_text", ["24:00", "1\u0662:00", "\uff11\uff12:00"])
def test_change_window_bad_time_refused(time_text: str) -> None:
    field, _ = only_problem(mutated(lambda d: d["change_window"].update(start=time_text)))
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

KNOWN = ("artifacts_dir, environment, flags_file, port, previous_version, python, service, spec_dir, url, version, "
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


@pytest.mark.parametrize("argv", [["env", "sh", "-c", "id"], ["timeout", "5", "/bin/bash", "x"]])
def test_wrapped_shells_are_refused(argv: list[str]) -> None:
    field, message = only_problem(mutated(lambda d: d["build"].update(command=argv)))
    assert field == "build.command"
    assert "runs a shell through" in message


def test_backup_needs_command_and_output_or_waiver() -> None:
    field, message = only_problem(mutated(lambda d: d["risk"]["backup"].pop("output")))
    assert field == "risk.backup"
    assert message == "give command and output for the backup, or a waiver with a reason"
    spec = parse_spec(mutated(lambda d: d["risk"].update(backup={"waiver": "stateless service, nothing to back",
                                                                 "approved_by": "release-manager"})))
    assert spec.risk.backup.command is None and spec.risk.backup.approved_by == "release-manager"


def test_backup_waiver_needs_approved_by() -> None:
    field, message = only_problem(mutated(lambda d: d["risk"].update(
        backup={"waiver": "stateless service, nothing to back"})))
    assert field == "risk.backup.approved_by"
    assert message == "a backup waiver needs approved_by: name who accepted releasing without a backup"


# ------------------------------------------------------------------------ executable allowlist
ALLOW_PYTHON_GIT = "python, git , /usr/bin/make"


@pytest.mark.parametrize("field", sorted(COMMAND_FIELDS))
def test_allowlist_refuses_an_unlisted_program_in_every_command_field(
        monkeypatch: pytest.MonkeyPatch, field: str) -> None:
    monkeypatch.setenv(ALLOWED_EXECUTABLES_ENV, ALLOW_PYTHON_GIT)
    assert only_problem(mutated(lambda d: COMMAND_FIELDS[field](d, ["curl", "-O", "http://x"]))) == (
        field, "program 'curl' is not in GENDEV_ALLOWED_EXECUTABLES (python, git, /usr/bin/make); "
               "use a listed program or ask the operator to add it")


@pytest.mark.parametrize(("argv", "allowed"), [
    (["{python}", "-m", "tool"], True),  # {python} counts as the name python
    (["git", "status"], True),
    (["/usr/bin/make", "all"], True),  # an absolute path on the list allows exactly that path
    (["make", "all"], False),  # ... not the bare name
    (["/usr/bin/git", "status"], False),  # a name on the list never allows a path
    (["./git", "status"], False),
    (["python3", "-c", "print(1)"], False),
    (["{workdir}/python", "x"], False),
])
def test_allowlist_names_and_paths(monkeypatch: pytest.MonkeyPatch, argv: list[str], allowed: bool) -> None:
    monkeypatch.setenv(ALLOWED_EXECUTABLES_ENV, ALLOW_PYTHON_GIT)
    data = mutated(lambda d: d["build"].update(command=argv))
    if allowed:
        assert parse_spec(data).build.command == argv
    else:
        field, message = only_problem(data)
        assert (field, message.split(" is not in ")[0]) == ("build.command", f"program {argv[0]!r}")


def test_demo_spec_passes_an_allowlist_of_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOWED_EXECUTABLES_ENV, "python")
    assert load_spec(DEMO).service == "demo"


def test_empty_allowlist_allows_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOWED_EXECUTABLES_ENV, " , ")
    problems = problems_of(demo_data())
    assert ("build.command", "program '{python}' is not in GENDEV_ALLOWED_EXECUTABLES (empty: nothing may run); "
                             "use a listed program or ask the operator to add it") in problems


def test_no_allowlist_allows_any_program(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOWED_EXECUTABLES_ENV, raising=False)
    assert parse_spec(mutated(lambda d: d["build"].update(command=["curl", "-O", "x"]))).build.command[0] == "curl"


def test_run_command_enforces_the_allowlist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from gendev_release.commands import run_command

    monkeypatch.setenv(ALLOWED_EXECUTABLES_ENV, "python")
    with pytest.raises(ValueError) as info:
        run_command(["true"], cwd=tmp_path, timeout=10)
    assert str(info.value).startswith("program 'true' is not in GENDEV_ALLOWED_EXECUTABLES (python)")
    # sys.executable stands for {python}; git is the engine's own (risk assessment reads history with it)
    assert run_command([sys.executable, "-c", "pass"], cwd=tmp_path, timeout=20).exit_code == 0
    assert run_command(["git", "--version"], cwd=tmp_path, timeout=20).exit_code == 0


def test_check_argv_docstring_says_what_it_does_not_stop() -> None:
    from gendev_release.spec_rules import check_argv

    doc = " ".join((check_argv.__doc__ or "").split())
    assert "not a hostile spec author" in doc
    assert "GENDEV_ALLOWED_EXECUTABLES" in doc


# ----------------------------------------------------------------------------------- paths
def _set_list_item(d: dict[str, Any], outer: str, key: str, value: str) -> None:
    d.setdefault(outer, {})[key] = [value]


#: Every path field of the spec: how to set it, and its documented base folder.
PATH_FIELDS: dict[str, Callable[[dict[str, Any], str], None]] = {
    "readiness.runbook": lambda d, v: d["readiness"].update(runbook=v),
    "readiness.rollback_procedure": lambda d, v: d["readiness"].update(rollback_procedure=v),
    "build.config": lambda d, v: d["build"].update(config=v),
    "dependencies.lock_file": lambda d, v: d["dependencies"].update(lock_file=v),
    "dependencies.scan_report": lambda d, v: d["dependencies"].update(scan_report=v),
    "infrastructure.files.0": lambda d, v: _set_list_item(d, "infrastructure", "files", v),
    "security.config_files.0": lambda d, v: _set_list_item(d, "security", "config_files", v),
    "monitoring.dashboard": lambda d, v: d["monitoring"].update(dashboard=v),
    "risk.backup.output": lambda d, v: d["risk"]["backup"].update(output=v),
    "qa.suites.0.junit": lambda d, v: d["qa"]["suites"][0].update(junit=v),
    "qa.coverage_report": lambda d, v: d["qa"].update(coverage_report=v),
    "build.artifacts.0": lambda d, v: d["build"].update(artifacts=[v]),
    "risk.paths.0": lambda d, v: d["risk"].update(paths=[v]),
    "risk.repo": lambda d, v: d["risk"].update(repo=v),
}
ESCAPES = {
    "absolute": "/etc/passwd",
    "dotdot": "../outside",
    "inner-dotdot": "a/../../b",
    "blank": "",
    "spaces": "   ",
    "home": "~/x",
    "windows-absolute": "C:\\x",
    "backslash-dotdot": "..\\x",
    "nul": "a\x00b",
    "escape": "a\x1bb",
    "newline": "a\nb",
}


@pytest.mark.parametrize("kind", sorted(ESCAPES))
@pytest.mark.parametrize("field", sorted(PATH_FIELDS))
def test_every_path_field_refuses_escapes(field: str, kind: str) -> None:
    value = ESCAPES[kind]
    problems = problems_of(mutated(lambda d: PATH_FIELDS[field](d, value)))
    assert [f for f, _ in problems] == [field], problems


@pytest.mark.parametrize("field", sorted(PATH_FIELDS))
def test_path_messages_say_what_and_how(field: str) -> None:
    [(got, absolute)] = problems_of(mutated(lambda d: PATH_FIELDS[field](d, "/etc/passwd")))
    [(_, dotdot)] = problems_of(mutated(lambda d: PATH_FIELDS[field](d, "x/../../y")))
    [(_, blank)] = problems_of(mutated(lambda d: PATH_FIELDS[field](d, "  ")))
    assert got == field
    assert "'/etc/passwd' is absolute; give it relative to " in absolute
    assert "'..'" in dotdot
    assert "must not be empty" in blank


def test_path_base_folders_are_named() -> None:
    def message(field: str) -> str:
        return only_problem(mutated(lambda d: PATH_FIELDS[field](d, "/abs")))[1]

    assert message("readiness.runbook").endswith("give it relative to the spec folder")
    assert message("qa.suites.0.junit").endswith("give it relative to the run's workdir")
    assert message("build.artifacts.0") == "glob '/abs' is absolute; give it relative to {artifacts_dir}"
    assert message("risk.paths.0") == "pathspec '/abs' is absolute; give it relative to the repository root"
    assert message("risk.repo") == "repo '/abs' is absolute; give it relative to the spec folder"
    assert message("risk.backup.output") == "path '/abs' is absolute; give it relative to {workdir}"


@pytest.mark.parametrize("value", ["{workdir}/../x", "{artifacts_dir}/../../x", "{workdir}//etc/passwd",
                                   "{spec_dir}/x", "{workdir}", "backup/{version}.tar", "{home}/x"])
def test_backup_output_allows_only_a_leading_workdir_or_artifacts_dir(value: str) -> None:
    field, _ = only_problem(mutated(lambda d: d["risk"]["backup"].update(output=value)))
    assert field == "risk.backup.output"


@pytest.mark.parametrize(("value", "base", "relative"), [
    ("backup/x.tar.gz", "workdir", "backup/x.tar.gz"),
    ("{workdir}/backup/x.tar.gz", "workdir", "backup/x.tar.gz"),
    ("{artifacts_dir}/x.tar.gz", "artifacts_dir", "x.tar.gz"),
])
def test_backup_output_forms(tmp_path: Path, value: str, base: str, relative: str) -> None:
    spec = parse_spec(mutated(lambda d: d["risk"]["backup"].update(output=value)))
    assert spec.risk.backup.output == value
    folders = {"workdir": tmp_path / "work", "artifacts_dir": tmp_path / "work" / "dist"}
    assert resolve_output(value, field="risk.backup.output", **folders) == folders[base].resolve() / relative


@pytest.mark.parametrize(("repo", "levels"), [(".", 0), ("..", 1), ("../..", 2), ("../../", 2),
                                              ("sub/dir", None)])
def test_risk_repo_is_an_ancestor_or_a_folder_inside(repo: str, levels: int | None) -> None:
    spec = load_spec(DEMO)
    spec = spec.model_copy(update={"risk": parse_spec(mutated(lambda d: d["risk"].update(repo=repo))).risk})
    folder = DEMO.resolve().parent
    expected = folder / "sub" / "dir" if levels is None else ([folder, *folder.parents][levels])
    assert spec.repo_path() == expected


@pytest.mark.parametrize("pathspec", ["gendev_release/demo", "*.py", ":(exclude)docs", "src/**/migrations"])
def test_risk_paths_accept_pathspecs(pathspec: str) -> None:
    assert parse_spec(mutated(lambda d: d["risk"].update(paths=[pathspec]))).risk.paths == [pathspec]


def test_resolve_refuses_absolute_paths_naming_the_field() -> None:
    spec = load_spec(DEMO)
    with pytest.raises(PathEscape) as info:
        spec.resolve("/etc/passwd", "readiness.runbook")
    assert info.value.field == "readiness.runbook"
    assert str(info.value).startswith("readiness.runbook: '/etc/passwd' is refused (path '/etc/passwd' is absolute")
    with pytest.raises(PathEscape) as info:
        spec.input_path("build.config", "../../etc/passwd")
    assert info.value.field == "build.config"


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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", [("(top level)", "spec is empty; expected a mapping")]),
        ("# only a comment\n\n", [("(top level)", "spec is empty; expected a mapping")]),
        ("- service: demo\n- environment: staging\n", [("(top level)", "expected a mapping, got list")]),
        ("just a string\n", [("(top level)", "expected a mapping, got str")]),
        ("service: demo\nstrategy: [1.0\n",
         [("line 3, column 1", "invalid YAML: did not find expected ',' or ']'")]),
        ("service: demo\nstrategy: a: b\n",
         [("line 2, column 12", "invalid YAML: mapping values are not allowed in this context")]),
        ("service: demo\n---\nservice: other\n", [("line 2, column 1", "invalid YAML: but found another document")]),
        ("x: !!python/object/apply:os.system ['id']\n",
         [("line 1, column 4", "invalid YAML: could not determine a constructor for the tag "
                               "'tag:yaml.org,2002:python/object/apply:os.system'")]),
    ],
    ids=["empty", "comment-only", "list", "scalar", "unclosed-flow", "bad-mapping", "two-documents",
         "python-tag"],
)
def test_bad_files_give_spec_errors(tmp_path: Path, text: str, expected: list[tuple[str, str]]) -> None:
    assert load_problems(tmp_path, text) == expected


def test_the_c_loader_is_used_when_libyaml_is_present() -> None:
    assert LOADER.__name__ == ("StrictCSafeLoader" if yaml.__with_libyaml__ else "StrictSafeLoader")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "nope.yaml")
    assert [(p.field, p.message) for p in info.value.problems] == [("(file)", "file not found")]


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path)
    [problem] = info.value.problems
    assert problem.field == "(file)"
    assert problem.message.startswith("cannot read: ")


def test_not_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_bytes(b"\xff\xfeservice: demo\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    [problem] = info.value.problems
    assert problem.field == "(file)"
    assert problem.message.startswith("cannot read: 'utf-8' codec can't decode")


def test_file_over_one_mebibyte_refused_before_parsing(tmp_path: Path) -> None:
    assert MAX_SPEC_BYTES == 1024 * 1024
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# " + b"x" * MAX_SPEC_BYTES + b"\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert [(p.field, p.message) for p in info.value.problems] == [
        ("(file)", "larger than 1,048,576 bytes (1 MiB); a spec is a few KiB: remove generated or pasted content")]


def test_spec_error_renders_one_line_per_problem() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(mutated(lambda d: d.update(bogus=1, version="1.0.0")), source="x.yaml")
    lines = str(info.value).splitlines()
    assert sorted(lines) == sorted([f"x.yaml: bogus: {UNKNOWN_FIELD}", f"x.yaml: version: {VERSION_NOT_IN_SPEC}"])
    assert isinstance(info.value, ValueError)


# ------------------------------------------------------------------------------- hostile YAML
@LOADERS
def test_duplicate_keys_are_refused_with_their_line(tmp_path: Path, loader: Any) -> None:
    assert load_problems(tmp_path, "service: demo\nenvironment: staging\nservice: other\n", loader) == [
        ("line 3, column 1", "duplicate key 'service' (the later value would silently win)")]


@LOADERS
def test_nested_duplicate_keys_are_refused(tmp_path: Path, loader: Any) -> None:
    text = DEMO_TEXT.replace("  start: \"00:00\"\n", "  start: \"00:00\"\n  start: \"01:00\"\n")
    line = demo_line('start: "00:00"') + 1
    assert load_problems(tmp_path, text, loader) == [
        (f"line {line}, column 3", "duplicate key 'start' (the later value would silently win)")]


@LOADERS
@pytest.mark.parametrize(("key", "kind"), [("1", "int"), ("true", "bool"), ("on", "bool"), ("null", "null"),
                                           ("1.5", "float"), ("2024-01-01", "timestamp")])
def test_mapping_keys_must_be_text(tmp_path: Path, loader: Any, key: str, kind: str) -> None:
    line = DEMO_TEXT.count("\n") + 1
    assert load_problems(tmp_path, DEMO_TEXT + f"{key}: x\n", loader) == [
        (f"line {line}, column 1", f"mapping key {key!r} is read as {kind}, not text; quote it")]


@LOADERS
@pytest.mark.parametrize("key", ["? [a, b]\n: 1\n", "? {a: 1}\n: 1\n", "[a, b]: 1\n"])
def test_complex_keys_refused(tmp_path: Path, loader: Any, key: str) -> None:
    [(field, message)] = load_problems(tmp_path, DEMO_TEXT + key, loader)
    assert re.fullmatch(r"line \d+, column \d+", field)
    assert message == "complex mapping key (a list or mapping used as a key); keys must be text"


@LOADERS
def test_merge_keys_refused(tmp_path: Path, loader: Any) -> None:
    assert load_problems(tmp_path, "base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n", loader) == [
        ("line 3, column 3", "merge keys (<<) are not supported: a merged value is silently overridden; write the "
                             "keys out")]


@LOADERS
def test_plain_aliases_still_work(tmp_path: Path, loader: Any) -> None:
    text = DEMO_TEXT.replace("approvers: [release-manager]", "approvers: &people [release-manager]")
    text = text.replace("  required: 1\n", "  required: 1\n") + "training:\n  audiences: *people\n"
    text = text.replace("\ntraining:\n  audiences: [end-users, support, engineering]\n", "\n")
    path = tmp_path / "alias.yaml"
    path.write_text(text, encoding="utf-8")
    assert load_spec(path, loader=loader).training.audiences == ["release-manager"]


def _alias_bomb(levels: int = 9) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, levels):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


@LOADERS
def test_alias_bomb_refused_quickly(tmp_path: Path, loader: Any) -> None:
    # 10**9 values if expanded; the walk stops after MAX_NODES.
    [(field, message)] = load_problems(tmp_path, _alias_bomb(), loader)
    assert re.fullmatch(r"line \d+, column \d+", field)
    assert message == (f"the document expands to more than {MAX_NODES:,} values (aliases used over and over?); "
                       "write a smaller spec")


@LOADERS
@pytest.mark.parametrize("text", ["a: &a [1, *a]\n", "a: &a {b: *a}\n", "a: &a [[[*a]]]\n"])
def test_recursive_alias_refused(tmp_path: Path, loader: Any, text: str) -> None:
    [(field, message)] = load_problems(tmp_path, text, loader)
    assert re.fullmatch(r"line 1, column \d+", field)
    assert message == "recursive alias: a value contains itself; write it out"


@LOADERS
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 600, 100_000])
def test_deep_nesting_refused_with_its_position(tmp_path: Path, loader: Any, depth: int) -> None:
    line = DEMO_TEXT.count("\n") + 1
    [(field, message)] = load_problems(tmp_path, DEMO_TEXT + "deep: " + "[" * depth + "]" * depth + "\n", loader)
    assert re.fullmatch(rf"line {line}, column \d+", field)
    assert message in (f"nested deeper than {MAX_DEPTH} levels; a spec needs far fewer",
                       "invalid YAML: exceeded maximum nesting depth")  # libyaml stops at 1,000 by itself


@LOADERS
def test_nesting_up_to_the_bound_reaches_the_model(tmp_path: Path, loader: Any) -> None:
    depth = MAX_DEPTH - 1  # the document mapping is the first level
    assert load_problems(tmp_path, DEMO_TEXT + "deep: " + "[" * depth + "]" * depth + "\n", loader) == [
        ("deep", UNKNOWN_FIELD)]


@LOADERS
@pytest.mark.parametrize("char", ["\x00", "\x01", "\x07", "\x1b", "\x7f", "\x9f"])
@pytest.mark.parametrize("prefix", ["Demo", "Démo ☃"], ids=["ascii", "non-ascii"])
def test_raw_control_characters_refused_with_line_and_column(
        tmp_path: Path, loader: Any, char: str, prefix: str) -> None:
    line = demo_line("description:")
    text = DEMO_TEXT.replace("description: Demo", f"description: {prefix}{char}")
    column = len("description: ") + len(prefix) + 1
    assert load_problems(tmp_path, text, loader) == [
        (f"line {line}, column {column}",
         f"invalid YAML: character U+{ord(char):04X} is not allowed (a control character); remove it")]


@LOADERS
@pytest.mark.parametrize(("escape", "code"), [("\\0", 0), ("\\e", 0x1B), ("\\x07", 7), ("\\x85x\\x9f", 0x9F)])
def test_escaped_control_characters_refused(tmp_path: Path, loader: Any, escape: str, code: int) -> None:
    line = demo_line("description:")
    text = re.sub(r"^description: .*$", lambda _: f'description: "a{escape}b"', DEMO_TEXT, flags=re.MULTILINE)
    assert load_problems(tmp_path, text, loader) == [
        (f"line {line}, column 14", f"control character U+{code:04X} in a value; remove it")]


@LOADERS
@pytest.mark.parametrize(("value", "kind"), [("!!int abc", "int"), ("!!float x", "float"), ("!!bool maybe", "bool"),
                                             ("2024-13-45", "timestamp"), ("0x_", "int")])
def test_scalars_that_cannot_be_read_as_their_type(tmp_path: Path, loader: Any, value: str, kind: str) -> None:
    line = DEMO_TEXT.count("\n") + 1
    [(field, message)] = load_problems(tmp_path, DEMO_TEXT + f"x: {value}\n", loader)
    assert field == f"line {line}, column 4"
    assert message.startswith("cannot read ") and f" as {kind}: " in message
    assert message.endswith("; quote it if it is text")


@LOADERS
def test_huge_integer_literal_refused(tmp_path: Path, loader: Any) -> None:
    line = demo_line("max_commits:")
    text = DEMO_TEXT.replace("max_commits: 200", "max_commits: " + "9" * 5000)
    assert load_problems(tmp_path, text, loader) == [(f"line {line}, column 16", "a number of 5000 characters; "
                                                                                 "at most 64")]


@LOADERS
def test_the_issues_crashers_are_spec_errors(tmp_path: Path, loader: Any) -> None:
    crashers = {
        "timezone-folder": (DEMO_TEXT.replace("timezone: UTC", "timezone: Europe"), "change_window.timezone"),
        "timezone-300": (DEMO_TEXT.replace("timezone: UTC", "timezone: " + "x" * 300), "change_window.timezone"),
        "complex-key": (DEMO_TEXT + "? [a, b]\n: 1\n", f"line {DEMO_TEXT.count(chr(10)) + 1}, column 3"),
        "deep-600": (DEMO_TEXT + "x: " + "[" * 600 + "]" * 600 + "\n", None),
        "nul": (DEMO_TEXT.replace("service: demo", "service: de\x00mo"), f"line {demo_line('service:')}, column 12"),
    }
    for name, (text, expected) in crashers.items():
        [(field, _)] = load_problems(tmp_path, text, loader, name=f"{name}.yaml")
        assert field == expected or (expected is None and field.startswith("line ")), (name, field)


# -------------------------------------------------------------------------------- run params
@pytest.fixture(scope="module")
def demo_spec() -> ReleaseSpec:
    return parse_spec(demo_data())


def run_problems(spec: ReleaseSpec, overrides: Any, source: str = "params") -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as info:
        run_params(spec, overrides, source=source)
    assert info.value.source == source
    return [(p.field, p.message) for p in info.value.problems]


def test_run_params_need_a_version(demo_spec: ReleaseSpec) -> None:
    for overrides in (None, {}, {"version": None}, {"dry_run": True}):
        assert run_problems(demo_spec, overrides) == [("version", VERSION_REQUIRED)]
    assert VERSION_REQUIRED.startswith('version is required: every run names the version it releases (trigger conf '
                                       '{"version": "1.4.2"} or `--set version=1.4.2`); MAJOR.MINOR.PATCH')


def test_run_params_defaults(demo_spec: ReleaseSpec) -> None:
    for extra in ({}, {"dry_run": None}):
        params = run_params(demo_spec, {"version": "1.0.0", **extra})
        assert (params.version, params.dry_run) == ("1.0.0", False)


def test_run_params_override(demo_spec: ReleaseSpec) -> None:
    params = run_params(demo_spec, {"version": "1.2.0-broken", "dry_run": True})
    assert (params.version, params.dry_run) == ("1.2.0-broken", True)


@pytest.mark.parametrize("version", BAD_VERSIONS, ids=repr)
def test_run_params_bad_version(demo_spec: ReleaseSpec, version: str) -> None:
    assert run_problems(demo_spec, {"version": version}, source="--set") == [("version", f"{version!r} {NOT_SEMVER}")]


def test_run_params_long_version(demo_spec: ReleaseSpec) -> None:
    [(field, message)] = run_problems(demo_spec, {"version": "1.0.0-" + "a" * 4994})
    assert field == "version"
    assert message.endswith(f" is 5000 characters long; use {VERSION_FORMAT}")


@pytest.mark.parametrize("strategy", ["canary", "blue_green"])
def test_run_params_refuse_a_strategy_and_say_where_it_went(demo_spec: ReleaseSpec, strategy: str) -> None:
    assert run_problems(demo_spec, {"version": "1.0.0", "strategy": strategy}) == [
        ("strategy", STRATEGY_NOT_A_PARAMETER.format(kind="blue_green"))]
    assert "it is set in the spec (strategy: {kind: ...}; this spec: blue_green)" in \
        STRATEGY_NOT_A_PARAMETER.format(kind="blue_green")


@pytest.mark.parametrize("key", ["verison", "dry-run", "service", "Version", ""])
def test_run_params_refuse_unknown_keys(demo_spec: ReleaseSpec, key: str) -> None:
    assert run_problems(demo_spec, {"version": "1.0.0", key: "x"}) == [
        (key or '""', "unknown run parameter; allowed: version, dry_run, emergency")]
    assert RUN_PARAMETERS == ("version", "dry_run", "emergency")


def test_run_params_report_every_problem(demo_spec: ReleaseSpec) -> None:
    assert sorted(field for field, _ in run_problems(demo_spec, {"verison": "1.0.0", "dry_run": "yes"})) == [
        "dry_run", "verison", "version"]


@pytest.mark.parametrize("value", ["true", "false", 1, 0, "yes", [True]])
def test_run_params_dry_run_must_be_a_real_boolean(demo_spec: ReleaseSpec, value: Any) -> None:
    assert run_problems(demo_spec, {"version": "1.0.0", "dry_run": value}) == [
        ("dry_run", f"{value!r} is not a boolean; give true or false (a JSON boolean, not text)")]


def test_run_params_take_nothing_from_the_spec(demo_spec: ReleaseSpec) -> None:
    assert run_params(demo_spec, {"version": "2.0.0"}).version == "2.0.0"
    assert run_params(demo_spec, {"version": "3.1.4"}).version == "3.1.4"


# ------------------------------------------------------------------------------------- schema
def test_json_schema_is_json_and_describes_the_spec() -> None:
    schema = json.loads(json.dumps(json_schema()))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "gendev-release spec"
    assert schema["type"] == "object"
    for key in ("service", "strategy", "health", "quality_gates", "build", "qa", "target"):
        assert key in schema["properties"], key
    assert "version" not in schema["properties"]
    assert schema["additionalProperties"] is False
    for required in ("service", "health", "build", "notifications"):
        assert required in schema["required"]
    assert "version" not in schema["required"]

