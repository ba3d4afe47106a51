"""Canary, rolling and feature-flag releases end to end through ``gendev-release run`` (embedded Airflow).

Each example spec releases a few versions into its own home, as a user would: a first release, a
healthy one that goes through every step, and a failing one that must come back. The three
sequences run side by side (separate homes, services and Airflow databases) to keep the suite
short; everything each run left behind (summary, report, the target's state, what the router
serves) is captured right after it, before the next run changes it.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_cli_run import cli, run

REPO = Path(__file__).resolve().parents[1]
SPECS = {name: REPO / "dags" / "releases" / f"{name}.yaml" for name in ("demo-canary", "demo-rolling", "demo-flags")}
SEQUENCES = {
    "demo-canary": ["1.0.0", "1.1.0", "1.2.0-errors"],
    "demo-rolling": ["1.0.0", "1.1.0", "1.2.0-broken"],
    "demo-flags": ["1.0.0", "1.1.0-errors"],
}


def snapshot(service: str, home: Path, version: str) -> dict[str, Any]:
    result, summary = run(SPECS[service], home, f"version={version}")
    state = json.loads((home / "targets" / service / "state.json").read_text())
    router = state["router"]["url"]
    served = [httpx.get(router + "/version", timeout=5).json().get("version") for _ in range(20)]
    report = json.loads(Path(summary["report"]).with_suffix(".json").read_text()) if summary.get("report") else {}
    flags_file = home / "flags" / f"{service}.json"
    return {"returncode": result.returncode, "stdout": result.stdout[-6000:], "summary": summary, "state": state,
            "served": served, "report": report,
            "flags": json.loads(flags_file.read_text()) if flags_file.exists() else None}


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    homes = {service: tmp_path_factory.mktemp(service) for service in SEQUENCES}

    def sequence(service: str) -> list[dict[str, Any]]:
        return [snapshot(service, homes[service], version) for version in SEQUENCES[service]]

    try:
        with ThreadPoolExecutor(max_workers=len(SEQUENCES)) as pool:
            futures = {service: pool.submit(sequence, service) for service in SEQUENCES}
            return {service: future.result() for service, future in futures.items()}
    finally:
        for service, home in homes.items():
            cli("down", str(SPECS[service]), "--home", str(home))


def steps(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["step"]: row for row in run["report"]["strategy"]["steps"]}


def weights(run: dict[str, Any]) -> dict[str, int]:
    return {slot: pct for slot, pct in run["state"]["weights"].items() if pct}


def version_of(run: dict[str, Any], slot: str) -> str:
    return run["state"]["slots"][slot]["version"]


# ========================================================================================= canary
def test_a_first_canary_release_has_no_baseline_and_promotes(releases: dict[str, Any]) -> None:
    first = releases["demo-canary"][0]
    assert first["returncode"] == 0, first["stdout"]
    assert {s["outcome"] for s in steps(first).values()} == {"not_applicable"}
    assert set(first["served"]) == {"1.0.0"}


def test_a_healthy_canary_goes_through_every_step_to_100(releases: dict[str, Any]) -> None:
    healthy = releases["demo-canary"][1]
    assert healthy["returncode"] == 0, healthy["stdout"]
    assert healthy["summary"]["state"] == "success" and healthy["summary"]["active_version"] == "1.1.0"
    rows = steps(healthy)
    assert [(name, row["percent"], row["outcome"]) for name, row in rows.items()] == [
        ("canary_10", 10, "passed"), ("canary_50", 50, "passed")]
    for row in rows.values():
        analysis = row["analysis"]
        assert analysis["passed"] and analysis["canary"]["samples"] >= 20 and analysis["baseline"]["samples"] >= 20
        assert analysis["p_value"] is not None and analysis["statistic"] is not None
        assert row["router_split"]["served"]["1.1.0"] > 0 and row["router_split"]["served"]["1.0.0"] > 0
    assert [version_of(healthy, slot) for slot in weights(healthy)] == ["1.1.0"]  # 100 %
    assert set(healthy["served"]) == {"1.1.0"}
    assert healthy["report"]["strategy"]["post_promotion"]["status"] == "success"


def test_an_errors_canary_stops_at_its_first_step_back_at_zero(releases: dict[str, Any]) -> None:
    failing = releases["demo-canary"][2]
    assert failing["returncode"] == 1, failing["stdout"]
    summary = failing["summary"]
    assert summary["failed_step"] == "p5_deployment.canary_10" and summary["active_version"] == "1.1.0"
    assert summary["rolled_back"] is True
    rows = steps(failing)
    assert list(rows) == ["canary_10"]  # canary_50 never ran
    row = rows["canary_10"]
    assert row["outcome"] == "failed" and row["undone"].startswith(f"canary {row['new']['id']} set back to 0 %")
    analysis = row["analysis"]
    assert not analysis["passed"] and analysis["canary"]["error_rate_pct"] > 1
    assert analysis["reasons"][0].startswith("canary error rate")
    assert len(analysis["samples"]["canary"]) >= 20 and len(analysis["samples"]["baseline"]) >= 20
    assert analysis["statistic"] is not None and analysis["p_value"] is not None
    # the canary is at 0 % and retired; the old version takes all traffic
    assert [version_of(failing, slot) for slot in weights(failing)] == ["1.1.0"]
    assert set(failing["served"]) == {"1.1.0"}
    assert failing["state"]["slots"].get(row["new"]["id"]) is None
    markdown = Path(summary["report"]).read_text()
    assert "## Progressive delivery (canary)" in markdown and "p-value = " in markdown


# ======================================================================================== rolling
def test_a_rolling_release_replaces_batch_after_batch(releases: dict[str, Any]) -> None:
    first, healthy = releases["demo-rolling"][:2]
    assert first["returncode"] == 0 and healthy["returncode"] == 0, healthy["stdout"]
    rows = steps(healthy)
    assert [(name, row["percent"], row["outcome"]) for name, row in rows.items()] == [
        ("batch_1", 33, "passed"), ("batch_2", 66, "passed")]
    assert all(row["health"]["status"] == "success" for row in rows.values())
    assert set(healthy["served"]) == {"1.1.0"} and healthy["summary"]["active_version"] == "1.1.0"


def test_a_broken_rolling_batch_rolls_back(releases: dict[str, Any]) -> None:
    failing = releases["demo-rolling"][2]
    assert failing["returncode"] == 1, failing["stdout"]
    assert failing["summary"]["failed_step"] == "p5_deployment.batch_1"
    assert failing["summary"]["rolled_back"] is True and failing["summary"]["active_version"] == "1.1.0"
    assert "answered 503" in steps(failing)["batch_1"]["health"]["reason"]
    assert set(failing["served"]) == {"1.1.0"}
    assert [version_of(failing, slot) for slot in weights(failing)] == ["1.1.0"]


# ================================================================================== feature flags
def test_a_flag_release_deploys_dark_then_raises_the_flag(releases: dict[str, Any]) -> None:
    first = releases["demo-flags"][0]
    assert first["returncode"] == 0, first["stdout"]
    rows = steps(first)
    assert [(name, row["flag"]["after"], row["outcome"]) for name, row in rows.items()] == [
        ("flag_50", 50, "passed"), ("flag_100", 100, "passed")]
    assert rows["flag_50"]["exposure"]["on"] > 0 and rows["flag_50"]["exposure"]["off"] > 0
    assert first["flags"] == {"new-items": 100} and set(first["served"]) == {"1.0.0"}


def test_a_failing_flag_step_turns_it_off_and_rolls_back(releases: dict[str, Any]) -> None:
    failing = releases["demo-flags"][1]
    assert failing["returncode"] == 1, failing["stdout"]
    summary = failing["summary"]
    assert summary["failed_step"] == "p5_deployment.flag_50" and summary["rolled_back"] is True
    assert summary["active_version"] == "1.0.0" and set(failing["served"]) == {"1.0.0"}
    row = steps(failing)["flag_50"]
    assert row["outcome"] == "failed" and row["analysis"]["canary"]["errors"] > 0
    assert row["undone"] == "flag new-items turned off (the provider keeps 0 %)"
    assert failing["flags"] == {"new-items": 0}
