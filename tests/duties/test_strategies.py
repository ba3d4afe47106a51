"""Strategies: the plan each kind makes, the canary analysis, and each step's runtime on the real local target.

The steps run as the operator runs them (begin, the trigger's bake on loopback, finish), against
demo-service processes behind the builtin router: a canary of an ``-errors`` version goes back to
0 % with its analysis recorded; a healthy one passes; a ``-broken`` rolling batch fails its health
gate; a flag step measures what the service reports and turns the flag off when it fails.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import httpx
import pytest
from duty_helpers import RUN_ID, make_ctx, save_report
from trigger_run import first_event

from gendev_release.context import DutyContext
from gendev_release.errors import GateFailed
from gendev_release.plan import plan_release
from gendev_release.strategies import plan_strategy
from gendev_release.strategies.analysis import RequestSample, Thresholds, analyse
from gendev_release.strategies.flags import FileFlags, flag_provider
from gendev_release.strategies.steps import begin, finish, record_name
from gendev_release.targets import make_target
from gendev_release.targets.local import LocalTarget

FAST_ANALYSIS = {"interval_seconds": 0.02, "min_samples": 10, "min_latency_shift_ms": 50}
CANARY = {"strategy": {"kind": "canary", "steps": [10, 50, 100], "bake_seconds": 0.6, "analysis": FAST_ANALYSIS}}
ROLLING = {"strategy": {"kind": "rolling", "instances": 4, "batch_size": 1},
           "health": {"timeout_seconds": 2, "interval_seconds": 0.1, "consecutive_successes": 2}}
FLAGS = {"strategy": {"kind": "feature_flags", "flag": "new-items", "provider": {"kind": "file"}, "steps": [50, 100],
                      "bake_seconds": 0.6, "analysis": FAST_ANALYSIS},
         "target": {"kind": "local", "command": ["{python}", "-m", "gendev_release.demo.service", "--port", "{port}",
                                                 "--version", "{version}", "--flags-file", "{flags_file}",
                                                 "--flag", "new-items"]}}


# ========================================================================================= plans
def test_each_kind_plans_its_own_phase5_tasks(tmp_path: Path) -> None:
    def phase5(overrides: dict[str, Any]) -> list[str]:
        spec = make_ctx(tmp_path / str(len(overrides)), overrides=overrides).spec
        return [t.task_id.split(".", 1)[1] for t in plan_release(spec).phases[4].tasks]

    tail = ["post_switch_health", "post_promotion", "monitoring_alerts"]
    assert phase5({}) == ["preview_health", "execute_strategy", *tail]
    assert phase5(CANARY) == ["preview_health", "canary_10", "canary_50", "execute_strategy", *tail]
    assert phase5(ROLLING) == ["preview_health", "batch_1", "batch_2", "batch_3", "execute_strategy", *tail]
    assert phase5(FLAGS) == ["preview_health", "execute_strategy", "post_switch_health", "flag_50", "flag_100",
                             "post_promotion", "monitoring_alerts"]
    no_watch = {"strategy": {"kind": "blue_green", "post_promotion_seconds": 0}}
    assert phase5(no_watch) == ["preview_health", "execute_strategy", "post_switch_health", "monitoring_alerts"]


def test_rolling_batches_are_the_replaced_share_of_instances(tmp_path: Path) -> None:
    spec = make_ctx(tmp_path, overrides={"strategy": {"kind": "rolling", "instances": 3, "batch_size": 2}}).spec
    plan = plan_strategy(spec)
    assert [(s.local_id, s.percent) for s in plan.before_promotion] == [("batch_1", 66)]
    assert "3 instances, 2 per batch (66 %, 100 %)" in plan.summary


# ====================================================================================== analysis
LIMITS = Thresholds(max_error_rate_pct=1.0, p95_latency_ms=250.0, alpha=0.01, min_latency_shift_ms=5.0,
                    min_samples=20)


def samples(group: str, n: int, mean: float, *, error_every: int = 0, seed: int = 1) -> list[RequestSample]:
    rng = random.Random(seed)
    return [RequestSample(group, "/api/items", 500 if error_every and i % error_every == 0 else 200,
                          max(0.1, rng.gauss(mean, 1.0))) for i in range(1, n + 1)]


def test_a_canary_like_its_baseline_passes() -> None:
    result = analyse(samples("canary", 60, 5.0, seed=7), samples("baseline", 60, 5.0, seed=7), LIMITS)
    assert result.passed, result.reasons
    assert result.p_value is not None and result.p_value >= LIMITS.alpha and result.statistic is not None


def test_errors_above_the_threshold_fail_the_canary() -> None:
    result = analyse(samples("canary", 60, 5.0, error_every=4), samples("baseline", 60, 5.0, seed=2), LIMITS)
    assert not result.passed
    assert result.reasons == ["canary error rate 25.00 % is above 1 % (15 of 60 requests failed)"]
    assert len(result.samples["canary"]) == 60 and result.samples["canary"][3]["status"] == 500


def test_a_slower_canary_fails_on_mann_whitney_within_the_p95_threshold() -> None:
    result = analyse(samples("canary", 60, 40.0), samples("baseline", 60, 5.0, seed=2), LIMITS)
    assert not result.passed and result.canary.p95_ms is not None and result.canary.p95_ms < 250
    assert result.p_value is not None and result.p_value < 1e-10
    assert result.reasons[0].startswith("canary is slower than baseline: median +35.")


def test_a_significant_but_tiny_shift_does_not_fail() -> None:
    result = analyse(samples("canary", 200, 5.5), samples("baseline", 200, 5.0, seed=2), LIMITS)
    assert result.p_value is not None and result.p_value < LIMITS.alpha  # significant ...
    assert result.passed  # ... but 0.5 ms is below min_latency_shift_ms


def test_too_few_samples_is_never_a_pass() -> None:
    result = analyse(samples("canary", 5, 5.0), samples("baseline", 60, 5.0), LIMITS)
    assert not result.passed
    assert result.reasons == ["canary has 5 samples, fewer than analysis.min_samples (20): no evidence is not a pass"]


def test_without_a_comparison_only_the_thresholds_judge() -> None:
    result = analyse(samples("on", 60, 5.0), [], LIMITS, compare=False)
    assert result.passed and result.statistic is None and result.test.startswith("thresholds only")
    assert not analyse(samples("on", 60, 300.0), [], LIMITS, compare=False).passed


def test_a_sample_from_a_bad_event_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="sample latency 'fast' is not a finite number"):
        RequestSample.of({"group": "canary", "path": "/", "status": 200, "ms": "fast"})
    with pytest.raises(ValueError, match="sample status '200' is not an integer"):
        RequestSample.of({"group": "canary", "path": "/", "status": "200", "ms": 1.0})


# ================================================================================ on the target
@pytest.fixture
def released(tmp_path: Path):
    """A target serving 1.0.0 (an earlier run) and this run's version staged, as provisioning leaves it."""
    targets: list[LocalTarget] = []

    def make(overrides: dict[str, Any], version: str) -> DutyContext:
        ctx = make_ctx(tmp_path, overrides=overrides, version=version)
        target = make_target(ctx.spec, ctx.paths.home)
        assert isinstance(target, LocalTarget)
        targets.append(target)
        ctx = make_ctx(tmp_path, target, overrides=overrides, version=version)
        old = target.stage("1.0.0", "earlier-run")
        target.switch(old.slot, "earlier-run")
        new = target.stage(version, RUN_ID)
        save_report(ctx, "provisioning", facts={"staged": new.as_dict()})
        return ctx

    yield make
    for target in targets:
        target.down()


def step_of(ctx: DutyContext, local_id: str):
    return plan_strategy(ctx.spec).step(local_id)


def stored(ctx: DutyContext, local_id: str) -> dict[str, Any]:
    return json.loads(ctx.store.read(f"{record_name(step_of(ctx, local_id))}.json"))


def test_a_failing_canary_goes_back_to_zero_with_its_analysis_recorded(released: Any) -> None:
    ctx = released(CANARY, "1.1.0-errors")
    step = step_of(ctx, "canary_10")
    record, deferral = begin(ctx, step)
    assert deferral is not None
    canary = record["new"]["id"]
    assert ctx.target.status().weights[canary] == 10
    assert record["router_split"]["served"] == {"1.0.0": 27, "1.1.0-errors": 3}  # 30 requests at 90/10
    with pytest.raises(GateFailed, match=r"canary_10 analysis failed .*canary error rate"):
        finish(ctx, step, record, first_event(deferral.trigger))
    assert ctx.target.status().weights[canary] == 0  # back to 0 % before the task failed
    saved = stored(ctx, "canary_10")
    assert saved["outcome"] == "failed" and saved["undone"].startswith(f"canary {canary} set back to 0 %")
    analysis = saved["analysis"]
    assert analysis["canary"]["error_rate_pct"] > 1 and analysis["baseline"]["error_rate_pct"] == 0
    assert analysis["statistic"] is not None and analysis["p_value"] is not None
    assert len(analysis["samples"]["canary"]) >= 10 and len(analysis["samples"]["baseline"]) >= 10
    # The failure branch: this run's revision took traffic, so it rolls back; the canary is retired.
    assert ctx.target.took_traffic(ctx.run_id)
    status = ctx.target.rollback(ctx.run_id, to_version="1.0.0")
    assert status.active is not None and status.active.version == "1.0.0" and status.previous is not None
    assert status.previous.slot == canary
    assert ctx.target.retire_previous(ctx.run_id) is not None
    assert [r.version for r in ctx.target.revisions() if r.running] == ["1.0.0"]


def test_a_paused_canary_keeps_its_weight_and_waits_for_people(released: Any) -> None:
    paused = {**CANARY, "strategy": {**CANARY["strategy"], "on_failed_analysis": "pause"},
              "approvals": {"approvers": ["alice", "bob"], "required": 1}}
    ctx = released(paused, "1.1.0-errors")
    step = step_of(ctx, "canary_10")
    assert step.asks_people
    record, deferral = begin(ctx, step)
    assert deferral is not None
    done = finish(ctx, step, record, first_event(deferral.trigger))  # no GateFailed: people decide next
    assert done["outcome"] == "paused" and not done["analysis"]["passed"] and "undone" not in done
    assert ctx.target.status().weights[record["new"]["id"]] == 10


def test_a_healthy_canary_step_passes_and_keeps_its_weight(released: Any) -> None:
    ctx = released(CANARY, "1.1.0")
    step = step_of(ctx, "canary_50")
    record, deferral = begin(ctx, step)
    assert deferral is not None
    done = finish(ctx, step, record, first_event(deferral.trigger))
    assert done["outcome"] == "passed" and done["analysis"]["passed"]
    assert ctx.target.status().weights[record["new"]["id"]] == 50
    assert stored(ctx, "canary_50")["outcome"] == "passed"


def test_a_first_release_has_no_baseline_and_the_step_says_so(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, overrides=CANARY, version="1.0.0")
    target = make_target(ctx.spec, ctx.paths.home)
    ctx = make_ctx(tmp_path, target, overrides=CANARY, version="1.0.0")
    try:
        new = target.stage("1.0.0", RUN_ID)
        save_report(ctx, "provisioning", facts={"staged": new.as_dict()})
        record, deferral = begin(ctx, step_of(ctx, "canary_10"))
        assert deferral is None and record["outcome"] == "not_applicable"
        assert "first release" in record["reason"] and target.status().weights == {"blue": 0}
    finally:
        target.down()


def test_a_canary_whose_revision_is_gone_fails_before_moving_traffic(released: Any) -> None:
    ctx = released(CANARY, "1.1.0")
    staged = ctx.target.status().staged
    assert staged is not None
    ctx.target.discard_staged(ctx.run_id)
    with pytest.raises(GateFailed, match="no longer runs on the target"):
        begin(ctx, step_of(ctx, "canary_10"))
    assert ctx.target.status().weights.get(staged.slot, 0) == 0


def test_a_broken_rolling_batch_fails_its_health_gate_and_rolls_back(released: Any) -> None:
    ctx = released(ROLLING, "1.1.0-broken")
    step = step_of(ctx, "batch_1")
    record, deferral = begin(ctx, step)
    assert deferral is not None and ctx.target.status().weights[record["new"]["id"]] == 25
    with pytest.raises(GateFailed, match=r"batch 1 \(25 %\) failed its health gate .*answered 503"):
        finish(ctx, step, record, first_event(deferral.trigger))
    assert stored(ctx, "batch_1")["outcome"] == "failed"
    assert ctx.target.took_traffic(ctx.run_id)  # what failure.decide asks: this run's revision took traffic
    assert ctx.target.rollback(ctx.run_id, to_version="1.0.0").weights[record["new"]["id"]] == 0


def test_a_healthy_rolling_batch_passes(released: Any) -> None:
    ctx = released(ROLLING, "1.1.0")
    step = step_of(ctx, "batch_2")
    record, deferral = begin(ctx, step)
    assert deferral is not None
    assert finish(ctx, step, record, first_event(deferral.trigger))["outcome"] == "passed"
    assert ctx.target.status().weights[record["new"]["id"]] == 50


def test_the_file_flag_provider_reads_back_what_it_keeps(tmp_path: Path) -> None:
    flags = FileFlags(tmp_path / "flags" / "svc.json")
    assert flags.get("new-items") == 0  # no file yet: off
    assert flags.set("new-items", 40) == 40 and flags.set("other", 5) == 5
    assert json.loads(flags.path.read_text()) == {"new-items": 40, "other": 5}
    flags.path.write_text('{"new-items": "lots"}')
    with pytest.raises(Exception, match="a flag percentage is a whole number from 0 to 100"):
        flags.get("new-items")


def _promote(ctx: DutyContext) -> None:
    """Deploy dark as execute_strategy does: flag off, then all traffic to this run's revision."""
    flag_provider(ctx.spec, ctx.paths.home).set("new-items", 0)
    staged = ctx.target.status().staged
    assert staged is not None
    ctx.target.switch(staged.slot, ctx.run_id)


def test_a_flag_step_exposes_the_share_the_provider_keeps(released: Any) -> None:
    ctx = released(FLAGS, "1.1.0")
    _promote(ctx)
    url = ctx.target.url()
    assert url is not None
    step = step_of(ctx, "flag_50")
    record, deferral = begin(ctx, step)
    assert record["flag"]["after"] == 50 and deferral is not None
    done = finish(ctx, step, record, first_event(deferral.trigger))
    assert done["outcome"] == "passed" and done["exposure"]["on"] > 0 and done["exposure"]["off"] > 0
    answers = [httpx.get(url + "/api/items").headers["x-gendev-flag"] for _ in range(100)]
    assert answers.count("on") == 50  # the service read the provider's file


def test_a_failing_flag_step_turns_the_flag_off_then_rolls_back(released: Any) -> None:
    ctx = released(FLAGS, "1.1.0-errors")
    _promote(ctx)
    step = step_of(ctx, "flag_50")
    record, deferral = begin(ctx, step)
    assert deferral is not None
    with pytest.raises(GateFailed, match="flag_50 analysis failed .*flag new-items turned off"):
        finish(ctx, step, record, first_event(deferral.trigger))
    assert flag_provider(ctx.spec, ctx.paths.home).get("new-items") == 0
    assert stored(ctx, "flag_50")["analysis"]["canary"]["errors"] > 0
    assert ctx.target.took_traffic(ctx.run_id)
    assert ctx.target.rollback(ctx.run_id, to_version="1.0.0").active.version == "1.0.0"  # type: ignore[union-attr]


def test_a_service_that_never_reports_the_flag_fails_the_step(released: Any) -> None:
    overrides = {**FLAGS, "target": {"kind": "local"}}  # the demo service without --flags-file
    ctx = released(overrides, "1.1.0")
    _promote(ctx)
    step = step_of(ctx, "flag_50")
    record, deferral = begin(ctx, step)
    assert deferral is not None
    with pytest.raises(GateFailed, match=r"never reported the flag \(X-Gendev-Flag header\)"):
        finish(ctx, step, record, first_event(deferral.trigger))
