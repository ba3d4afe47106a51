"""Typed hand-offs between steps: read from the earlier step's report, refused clearly when malformed."""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from gendev_release.facts import Baseline, ChangeSet, PlanEstimate, StagedRevision, handed_on


def ctx_with(step: str | None, facts: dict[str, Any]) -> Any:
    """A stand-in context whose ``earlier()`` hands on one report (the Airflow path is XCom)."""
    report = SimpleNamespace(facts=facts)
    return SimpleNamespace(earlier=lambda step_id: report if step_id == step else None)


def test_a_staged_revision_is_read_typed() -> None:
    ctx = ctx_with("provisioning", {"staged": {"slot": "green", "version": "1.2.0", "url": "http://127.0.0.1:1",
                                               "pid": 42, "run_id": "r1", "extra": "ignored"}})
    staged, problem = handed_on(ctx, StagedRevision)
    assert problem == "ok" and staged == StagedRevision(slot="green", version="1.2.0", url="http://127.0.0.1:1",
                                                        pid=42, run_id="r1")


@pytest.mark.parametrize(("step", "facts", "problem"), [
    (None, {}, "no provisioning report in this run"),
    ("provisioning", {}, "hands on no facts['staged']"),
    ("provisioning", {"staged": None}, "hands on no facts['staged']"),
    ("provisioning", {"staged": {"slot": "green", "version": "1.2.0"}},
     "facts['staged'] is not a StagedRevision: url: Field required"),
    ("provisioning", {"staged": {"slot": "", "version": "1.2.0", "url": "u"}},
     "facts['staged'] is not a StagedRevision: slot: String should have at least 1 character"),
])
def test_a_missing_or_malformed_fact_is_a_clear_problem(step: str | None, facts: dict[str, Any],
                                                        problem: str) -> None:
    staged, why = handed_on(ctx_with(step, facts), StagedRevision)
    assert staged is None and problem in why


def test_the_change_set_is_read_from_the_risk_steps_facts() -> None:
    ctx = ctx_with("risk_assessment", {"from_sha": None, "source_sha": "a" * 40,
                                       "commits": [{"sha": "b" * 40, "subject": "feat: x", "type": "feat"}]})
    changes, _ = handed_on(ctx, ChangeSet)
    assert changes is not None and changes.commits[0].type == "feat" and changes.from_sha is None
    bad, why = handed_on(ctx_with("risk_assessment", {"commits": [{"subject": "no sha"}]}), ChangeSet)
    assert bad is None and "commits.0.sha: Field required" in why


def test_baseline_and_plan_estimate() -> None:
    baseline, _ = handed_on(ctx_with("readiness", {"baseline_metrics": {"m": 1.0}}), Baseline)
    assert baseline is not None and baseline.samples == {"m": 1.0}
    wrong, why = handed_on(ctx_with("readiness", {"baseline_metrics": {"m": "high"}}), Baseline)
    assert wrong is None and "samples.m" in why
    estimate, _ = handed_on(ctx_with("release_plan", {"estimated_end": "2026-01-07T10:40:00+00:00"}), PlanEstimate)
    assert estimate is not None and estimate.estimated_end == datetime(2026, 1, 7, 10, 40, tzinfo=timezone.utc)
