"""Fuzzing the spec loader: every mutated spec is either accepted or refused with a SpecError.

Seeded and deterministic (``random.Random``), no extra dependency. Each case is derived from
``dags/releases/demo.yaml`` by one mutation (wrong types, unknown and duplicate keys, huge strings,
deep nesting, non-finite numbers, control characters, path escapes, complex keys, aliases,
truncated text, byte flips ...), written to a file and loaded with :func:`load_spec`. The only
exception allowed out is :class:`SpecError`, and every problem it carries names where it is.
"""

from __future__ import annotations

import copy
import math
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gendev_release.errors import SpecError
from gendev_release.spec import ReleaseSpec, load_spec, run_params
from gendev_release.spec_yaml import LOADER, StrictSafeLoader

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "dags" / "releases" / "demo.yaml"
DEMO_TEXT = DEMO.read_text(encoding="utf-8")
DEMO_DATA: dict[str, Any] = yaml.safe_load(DEMO_TEXT)
SEED = 20_240_505
CASES = 1_200

Location = tuple[Any, Any]  # (container, key or index)

PATH_FIELDS = [
    ("readiness", "runbook"), ("readiness", "rollback_procedure"), ("build", "config"),
    ("dependencies", "lock_file"), ("dependencies", "scan_report"), ("monitoring", "dashboard"),
    ("qa", "coverage_report"), ("risk", "repo"),
]
PATH_ESCAPES = ["/etc/passwd", "../../etc/passwd", "a/../../b", "", "   ", "~/.ssh/id_rsa", "C:\\Windows",
                "..\\..\\x", "a\x00b", "x\x1by", "x/\n", "{workdir}/../x"]
CONTROL = [chr(c) for c in (*range(0, 9), 11, 12, *range(14, 32), 127, 0x80, 0x9F)]
WEIRD_VALUES: list[Any] = [
    None, True, False, 0, -1, 2**70, 1.5, math.nan, math.inf, -math.inf, "", " ", "x" * 300, [], {}, [1, "a"],
    {"a": 1}, {"nested": {"deeper": [None]}}, "1\u0662.0.0", "\u202e", "\ufeff",
]


def locations(node: Any) -> list[Location]:
    """Every (container, key) pair in ``node``: where a mutation can land."""
    found: list[Location] = []
    stack = [node]
    while stack:
        current = stack.pop()
        items = current.items() if isinstance(current, dict) else enumerate(current) if isinstance(current, list) \
            else ()
        for key, value in items:
            found.append((current, key))
            stack.append(value)
    return found


def containers(node: Any, kind: type) -> list[Any]:
    found = [node] if isinstance(node, kind) else []
    for container, key in locations(node):
        if isinstance(container[key], kind):
            found.append(container[key])
    return found


def dumped(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=10_000)


# ------------------------------------------------------------------------------- data mutations
def wrong_type(rng: random.Random) -> str:
    data = copy.deepcopy(DEMO_DATA)
    container, key = rng.choice(locations(data))
    container[key] = copy.deepcopy(rng.choice(WEIRD_VALUES))
    return dumped(data)


def unknown_key(rng: random.Random) -> str:
    data = copy.deepcopy(DEMO_DATA)
    mapping = rng.choice(containers(data, dict))
    mapping[rng.choice(["bogus", "verison", "dry-run", "Service", "", " ", "\u00e9", "x" * 200])] = rng.choice(
        [1, "x", None, [1]])
    return dumped(data)


def missing_key(rng: random.Random) -> str:
    data = copy.deepcopy(DEMO_DATA)
    mapping = rng.choice([m for m in containers(data, dict) if m])
    mapping.pop(rng.choice(list(mapping)))
    return dumped(data)


def huge_string(rng: random.Random) -> str:
    if rng.random() < 0.1:  # written into the text: dumping a huge value is the slow part
        line = rng.choice([line for line in DEMO_TEXT.splitlines() if line.startswith("  ") and ": " in line
                           and not line.rstrip().endswith(("[", "{"))])
        key = line.split(": ", 1)[0]
        return DEMO_TEXT.replace(line, f"{key}: {'y' * rng.randint(100_000, 900_000)}", 1)
    data = copy.deepcopy(DEMO_DATA)
    container, key = rng.choice([loc for loc in locations(data) if isinstance(loc[0][loc[1]], str)])
    container[key] = rng.choice("ab/.-_ ") * rng.randint(1_000, 20_000)
    return dumped(data)


def deep_nesting(rng: random.Random) -> str:
    depth = rng.randint(30, 300)
    nested: Any = "leaf"
    for level in range(depth):
        nested = [nested] if level % 2 else {"k": nested}
    data = copy.deepcopy(DEMO_DATA)
    container, key = rng.choice(locations(data))
    container[key] = nested
    return dumped(data)


def non_finite(rng: random.Random) -> str:
    data = copy.deepcopy(DEMO_DATA)
    data.setdefault("planning", {})["default_phase_minutes"] = 5.0
    numbers = [loc for loc in locations(data)
               if isinstance(loc[0][loc[1]], (int, float)) and not isinstance(loc[0][loc[1]], bool)]
    container, key = rng.choice(numbers)
    container[key] = rng.choice([math.nan, math.inf, -math.inf])
    return dumped(data)


def control_in_value(rng: random.Random) -> str:
    data = copy.deepcopy(DEMO_DATA)
    container, key = rng.choice([loc for loc in locations(data) if isinstance(loc[0][loc[1]], str)])
    value = container[key]
    at = rng.randint(0, len(value))
    container[key] = value[:at] + rng.choice(CONTROL) + value[at:]
    return dumped(data)


def path_escape(rng: random.Random) -> str:
    data = copy.deepcopy(DEMO_DATA)
    escape = rng.choice(PATH_ESCAPES)
    choice = rng.randrange(len(PATH_FIELDS) + 6)
    if choice < len(PATH_FIELDS):
        section, field = PATH_FIELDS[choice]
        data[section][field] = escape
    elif choice == len(PATH_FIELDS):
        data["risk"]["backup"]["output"] = rng.choice(
            [escape, "{spec_dir}/x", "{home}/x", "{workdir}", "{artifacts_dir}//etc/passwd"])
    elif choice == len(PATH_FIELDS) + 1:
        data["qa"]["suites"][0]["junit"] = escape
    elif choice == len(PATH_FIELDS) + 2:
        data["build"]["artifacts"] = [escape]
    elif choice == len(PATH_FIELDS) + 3:
        data["risk"]["paths"] = [escape]
    elif choice == len(PATH_FIELDS) + 4:
        data["security"]["config_files"] = [escape]
    else:
        data.setdefault("infrastructure", {})["files"] = [escape]
    return dumped(data)


def spec_version(rng: random.Random) -> str:
    data = copy.deepcopy(DEMO_DATA)
    data["version"] = rng.choice(["1.0.0", "1\u0662.0.0", 1.0, "1.0.0-" + "a" * 5000, None])
    return dumped(data)


# ------------------------------------------------------------------------------- text mutations
def _lines() -> list[str]:
    return DEMO_TEXT.splitlines(keepends=True)


def duplicate_key(rng: random.Random) -> str:
    lines = _lines()
    keyed = [i for i, line in enumerate(lines) if ":" in line and not line.lstrip().startswith(("#", "-"))
             and not line.rstrip().endswith(":")]
    at = rng.choice(keyed)
    lines.insert(at + 1, lines[at])
    return "".join(lines)


def complex_key(rng: random.Random) -> str:
    return DEMO_TEXT + rng.choice(["? [a, b]\n: 1\n", "? {a: 1}\n: 2\n", "[x]: 3\n", "{y: 1}: 4\n",
                                   "? - a\n  - b\n: 5\n"])


def non_text_key(rng: random.Random) -> str:
    return DEMO_TEXT + rng.choice(["1: one\n", "on: yes\n", "null: x\n", "~: x\n", "2024-01-01: x\n",
                                   "1.5: x\n", "!!binary aGk=: x\n", "<<: {a: 1}\n"])


def aliases(rng: random.Random) -> str:
    kind = rng.randrange(4)
    if kind == 0:  # an alias bomb of random width and depth
        width, depth = rng.randint(5, 12), rng.randint(5, 9)
        lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
        lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, depth)]
        return "\n".join(lines) + "\n"
    if kind == 1:  # recursive
        return rng.choice(["a: &a [1, *a]\n", "a: &a {b: *a}\n", "a: &a [[[*a]]]\n", "x: &x\n  y: *x\n"])
    if kind == 2:  # an undefined alias
        return DEMO_TEXT.replace("approvers: [release-manager]", "approvers: *nobody")
    # a harmless alias: the spec stays valid
    text = DEMO_TEXT.replace("approvers: [release-manager]", "approvers: &people [release-manager]")
    return text.replace("audiences: [end-users, support, engineering]", "audiences: *people")


def truncated(rng: random.Random) -> str:
    return DEMO_TEXT[:rng.randint(0, len(DEMO_TEXT))]


def raw_control(rng: random.Random) -> str:
    at = rng.randint(0, len(DEMO_TEXT))
    return DEMO_TEXT[:at] + rng.choice(CONTROL + ["\ud7ff", "\ufffe", "\t", "\r"]) + DEMO_TEXT[at:]


def huge_number(rng: random.Random) -> str:
    digits = "9" * rng.randint(65, 6_000)
    return DEMO_TEXT.replace("max_commits: 200", f"max_commits: {digits}").replace(
        "p95_latency_ms: 250", f"p95_latency_ms: {rng.choice([digits, digits + '.0', '1e999', '.nan', '-.inf'])}")


def odd_scalars(rng: random.Random) -> str:
    value = rng.choice(["!!int abc", "!!float x", "!!bool maybe", "2024-13-45", "0x_", "0b2", "!!binary ***",
                        "!!timestamp nope", "!!python/object:os.system x", "!!set {a, b}", "!!omap [a: 1]",
                        "!!str [1]", "!local x", "=", "<<"])
    return DEMO_TEXT.replace("timezone: UTC", f"timezone: {value}")


def indentation(rng: random.Random) -> str:
    lines = _lines()
    at = rng.randrange(len(lines))
    lines[at] = rng.choice(["\t", " ", "   ", ""]) + lines[at]
    return "".join(lines)


TEXT_MUTATIONS: dict[str, Callable[[random.Random], str]] = {
    "wrong_type": wrong_type, "unknown_key": unknown_key, "missing_key": missing_key, "huge_string": huge_string,
    "deep_nesting": deep_nesting, "non_finite": non_finite, "control_in_value": control_in_value,
    "path_escape": path_escape, "spec_version": spec_version, "duplicate_key": duplicate_key,
    "complex_key": complex_key, "non_text_key": non_text_key, "aliases": aliases, "truncated": truncated,
    "raw_control": raw_control, "huge_number": huge_number, "odd_scalars": odd_scalars, "indentation": indentation,
}


def byte_flips(rng: random.Random) -> bytes:
    raw = bytearray(DEMO_TEXT.encode("utf-8"))
    for _ in range(rng.randint(1, 8)):
        raw[rng.randrange(len(raw))] = rng.randrange(256)
    return bytes(raw)


#: Mutations that always make the spec invalid (others may leave a valid spec: a truncation at the
#: very end, a long description, a wrong type the model converts, such as 1 for 1.0).
ALWAYS_REFUSED = {"unknown_key", "deep_nesting", "non_finite", "control_in_value", "path_escape",
                  "spec_version", "duplicate_key", "complex_key", "non_text_key", "huge_number", "odd_scalars"}


def test_mutated_specs_are_accepted_or_refused_with_spec_errors(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    names = [*TEXT_MUTATIONS, "byte_flips"]
    outcomes: Counter[tuple[str, str]] = Counter()
    crashes: list[str] = []
    blank_fields: list[str] = []
    for case in range(CASES):
        name = names[case % len(names)]
        path = tmp_path / f"case-{case}.yaml"
        if name == "byte_flips":
            path.write_bytes(byte_flips(rng))
        else:
            path.write_text(TEXT_MUTATIONS[name](rng), encoding="utf-8", errors="surrogatepass")
        loader = StrictSafeLoader if case % 7 == 0 else LOADER  # the pure-Python fallback too
        try:
            spec = load_spec(path, loader=loader)
        except SpecError as exc:
            outcomes[(name, "refused")] += 1
            if not exc.problems or any(not p.field.strip() or not p.message.strip() for p in exc.problems):
                blank_fields.append(f"{name} #{case}: {exc.problems!r}"[:300])
        except BaseException as exc:  # noqa: BLE001 - exactly what the test looks for
            crashes.append(f"{name} #{case} ({loader.__name__}): {type(exc).__name__}: {exc}"[:300])
        else:
            assert isinstance(spec, ReleaseSpec)
            outcomes[(name, "accepted")] += 1
        path.unlink()
    assert crashes == []
    assert blank_fields == []
    refused = sum(n for (_, outcome), n in outcomes.items() if outcome == "refused")
    assert sum(outcomes.values()) == CASES >= 1_000
    assert refused >= 900, outcomes
    for name in ALWAYS_REFUSED:
        assert outcomes[(name, "accepted")] == 0, (name, outcomes)
        assert outcomes[(name, "refused")] >= CASES // len(names) - 1, (name, outcomes)
    assert outcomes[("aliases", "accepted")] >= 1  # a plain alias is still fine


def test_mutated_run_parameters_are_accepted_or_refused_with_spec_errors() -> None:
    rng = random.Random(SEED)
    spec = load_spec(DEMO)
    keys = ["version", "strategy", "dry_run", "verison", "dry-run", "", "Version"]
    values: list[Any] = [*WEIRD_VALUES, "1.0.0", "1.2.3-rc.1+b.5", "blue_green", "canary", True, False,
                         "1.0.0\n", " 1.0.0", "1.0.0-" + "a" * 5000]
    accepted = refused = 0
    for _ in range(600):
        overrides = {rng.choice(keys): rng.choice(values) for _ in range(rng.randint(0, 4))}
        try:
            run_params(spec, overrides)
        except SpecError as exc:
            refused += 1
            assert exc.problems and all(p.field.strip() and p.message.strip() for p in exc.problems)
        else:
            accepted += 1
    assert refused >= 400
    assert accepted >= 1


@pytest.mark.parametrize("loader", [LOADER, StrictSafeLoader], ids=lambda c: c.__name__)
def test_the_unmutated_demo_is_accepted_by_both_loaders(loader: Any) -> None:
    assert load_spec(DEMO, loader=loader).service == "demo"
