"""Phase 5: execute_strategy (blue-green, the only traffic move; monitoring_alerts is in test_monitoring.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from duty_helpers import (
    RUN_ID,
    FakeService,
    FakeTarget,
    Response,
    item,
    items,
    make_ctx,
    run_step,
    stage_new,
    stage_real,
)
from item_proof import assert_item_fails

from gendev_release.catalogue import step_by_id
from gendev_release.duties.base import run_duty
from gendev_release.duties.deployment import observation_problems
from gendev_release.duties.deployment_records import FILES
from gendev_release.duties.health_gate import trailing_streak, wait_for_streak
from gendev_release.duties.switch_watch import ObservedRequest, SwitchObserver, count_failed, tally_by_path
from gendev_release.probes import CheckResult, HttpResult
from gendev_release.targets.base import ResourceChange

ALL_CHECKS = {"strategy": {"kind": "blue_green", "pre_switch_checks": None}}


def _log(ctx) -> list[dict]:
    path = ctx.paths.workdir / "deploy" / "strategy-log.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _delivered(report, name: str) -> dict:
    """The JSON document ``report`` delivered as ``name``."""
    path = next(Path(d.path) for d in report.deliverables if d.name == name)
    return json.loads(path.read_text(encoding="utf-8"))


# ========================================================================== execute_strategy
def test_blue_green_switch_with_zero_failed_requests_passes(tmp_path, fake_target: FakeTarget) -> None:
    ctx = make_ctx(tmp_path, fake_target)
    stage_new(ctx, fake_target, FakeService("1.1.0"))

    report = run_step(ctx, "execute_strategy")

    assert report.status == "passed", report.blocking_issues
    assert all(items(report).values())
    assert fake_target.switch_calls == [("green", RUN_ID)]
    assert fake_target.active == "green" and fake_target.previous == "blue"
    assert report.facts["traffic_moved"] is True
    assert report.facts["active"]["version"] == "1.1.0"
    assert report.facts["previous"]["slot"] == "blue"
    assert report.metrics["failed_switch_requests"] == 0
    assert report.metrics["switch_requests_observed"] == 20
    assert report.metrics["health_pass_pct"] == 100
    # The observer sent to every critical endpoint; /version showed the old version before the switch, the new after.
    observed = next(e for e in item(report, "check").evidence if e.kind == "http" and "around the switch" in e.summary)
    assert {r["path"] for r in observed.data["requests"]} == {"/healthz", "/version", "/api/items"}
    served = [r["served_version"] for r in observed.data["requests"] if r["path"] == "/version"]
    assert served[0] == "1.0.0" and served[-1] == "1.1.0"
    assert report.facts["failed_switch_requests_by_path"] == {"/healthz": 0, "/version": 0, "/api/items": 0}
    assert report.metrics['failed_switch_requests{path="/api/items"}'] == 0
    assert all(t["observed"] > 0 for t in report.facts["switch_observation"]["by_path"].values())
    # After the switch the previous slot answered on its own URL and the target would take it back.
    rehearsal = report.facts["rollback_rehearsal"]
    assert rehearsal["rehearsed"] is True and rehearsal["health_ok"] and rehearsal["target_confirms"]
    assert (rehearsal["previous"]["slot"], rehearsal["previous"]["version"]) == ("blue", "1.0.0")
    assert [h["url"] for h in rehearsal["health"]] == [fake_target.slot_url("blue") + "/healthz",
                                                       fake_target.slot_url("blue") + "/version"]
    assert report.facts["active_before"]["slot"] == "blue"
    assert fake_target.switch_calls == [("green", RUN_ID)]  # rehearsing moved no traffic
    assert [(e["step"], e["status"]) for e in _log(ctx)] == [
        ("pre_switch_gate", "passed"), ("switch", "passed"), ("post_switch_checks", "passed"),
        ("rollback_rehearsal", "passed")]
    assert [d.name for d in report.deliverables] == ["strategy-log", *FILES]
    gate = item(report, "verify")
    assert "3 of 3 consecutive successes" in gate.detail and "version" in gate.detail
    # read: the target's own report agrees with the log (green active, moved by this run)
    assert "the target's report agrees with the strategy log" in item(report, "read").detail
    # The deliverables are what was observed: the traffic move, the gates with their thresholds.
    rollout = _delivered(report, "Progressive rollout")
    assert [step["weights"] for step in rollout["traffic_steps"]] == [{"blue": 100}, {"green": 100}]
    phases = rollout["observed"]["by_phase"]
    assert set(phases["before"]["versions"]) == {"1.0.0", "(no version)"}  # /healthz and /api/items name none
    assert "1.1.0" in phases["after"]["versions"] and "1.0.0" not in phases["after"]["versions"]
    gates = _delivered(report, "Validation gates")
    assert gates["passed"] is True and gates["failed"] == []
    assert {g["name"] for g in gates["gates"]} == {"pre_switch_health", "zero_downtime", "post_switch_health",
                                                   "critical_endpoints", "serving_version", "target_active",
                                                   "rollback_rehearsal"}
    health = _delivered(report, "Health checks")
    assert [r["name"] for r in health["critical_endpoints"]] == ["/healthz", "/version", "/api/items"]
    assert health["serving"]["ok"] is True and health["pre_switch"]["streak"] == 3
    blue_green = _delivered(report, "Blue-green deployment")
    assert (blue_green["target_before"]["active"]["slot"], blue_green["target_after"]["active"]["slot"]) == (
        "blue", "green")


@pytest.mark.item("execute_strategy.verify")
def test_failed_pre_switch_gate_never_moves_traffic(tmp_path, fake_target: FakeTarget) -> None:
    ctx = make_ctx(tmp_path, fake_target, ALL_CHECKS)
    stage_new(ctx, fake_target, FakeService("1.1.0", broken=True))

    report = run_step(ctx, "execute_strategy")

    assert_item_fails(report, "execute_strategy.verify", because="pre-switch gate failed")
    assert fake_target.switch_calls == []
    assert fake_target.active == "blue"
    assert report.facts["traffic_moved"] is False
    verify = item(report, "verify")
    assert not verify.passed
    assert "/healthz answered 503, expected 200" in verify.detail
    assert "0 of 3 consecutive successes" in verify.detail
    check = item(report, "check")
    assert not check.passed and "switch not attempted" in check.detail
    assert any("traffic was not moved" in issue for issue in report.blocking_issues)
    assert [(e["step"], e["status"]) for e in _log(ctx)] == [
        ("pre_switch_gate", "failed"), ("switch", "skipped"), ("post_switch_checks", "skipped"),
        ("rollback_rehearsal", "skipped")]
    assert item(report, "read").passed  # the target still shows blue active, as the log says
    gates = _delivered(report, "Validation gates")
    assert gates["failed"] == ["pre_switch_health"] and gates["passed"] is False


def test_pre_switch_gate_needs_consecutive_successes(tmp_path, fake_target: FakeTarget) -> None:
    ctx = make_ctx(tmp_path, fake_target, ALL_CHECKS)
    stage_new(ctx, fake_target, FakeService("1.1.0", flap=True))  # /healthz: ok, 503, ok, 503, ...

    report = run_step(ctx, "execute_strategy")

    verify = item(report, "verify")
    assert not verify.passed
    assert "1 of 3 consecutive successes" in verify.detail or "0 of 3 consecutive successes" in verify.detail
    assert fake_target.switch_calls == []
    assert report.facts["traffic_moved"] is False


def test_broken_version_fails_after_traffic_moved(tmp_path, fake_target: FakeTarget) -> None:
    # demo.yaml gates the switch on /version only, so a -broken version reaches the router.
    ctx = make_ctx(tmp_path, fake_target, version="1.1.0-broken")
    stage_new(ctx, fake_target, FakeService("1.1.0-broken"), slot="green")

    report = run_step(ctx, "execute_strategy")

    assert item(report, "verify").passed
    check = item(report, "check")
    assert not check.passed
    assert "post-switch health 50 % < health_pass_pct 100 %" in check.detail
    assert "healthz" in check.detail and "503" in check.detail
    assert report.status == "failed"
    assert report.facts["traffic_moved"] is True
    assert report.facts["active"]["slot"] == "green"
    assert (report.facts["previous"]["slot"], report.facts["previous"]["version"]) == ("blue", "1.0.0")
    assert report.metrics["health_pass_pct"] == 50
    assert [e["status"] for e in _log(ctx)][-2:] == ["failed", "passed"]  # post-switch failed, rollback ready
    assert report.facts["rollback_rehearsal"]["rehearsed"] is True


def test_requests_failing_during_the_switch_block_the_step(tmp_path, fake_target: FakeTarget) -> None:
    fake_target.switch_gap_seconds = 0.2  # the router answers 503 while it switches
    ctx = make_ctx(tmp_path, fake_target)
    stage_new(ctx, fake_target, FakeService("1.1.0"))

    report = run_step(ctx, "execute_strategy")

    failed = report.metrics["failed_switch_requests"]
    assert failed > 0
    check = item(report, "check")
    assert not check.passed and "zero-downtime not met" in check.detail
    assert any("failed during the switch" in issue for issue in report.blocking_issues)
    assert report.facts["traffic_moved"] is True  # the switch itself did happen


@pytest.mark.item("execute_strategy.check")
def test_api_errors_behind_a_passing_healthz_fail_zero_downtime(tmp_path, fake_target: FakeTarget) -> None:
    # The gate and /healthz pass, but every 4th /version or /api request of the new version answers 500:
    # observing only the health path would have called this switch zero-downtime.
    ctx = make_ctx(tmp_path, fake_target, {"strategy": {"kind": "blue_green", "pre_switch_checks": ["healthz"]}},
                   version="1.1.0-errors")
    stage_new(ctx, fake_target, FakeService("1.1.0-errors"))

    report = run_step(ctx, "execute_strategy")

    assert item(report, "verify").passed  # the pre-switch gate (healthz) passed
    assert_item_fails(report, "execute_strategy.check", because="zero-downtime not met on")
    by_path = report.facts["failed_switch_requests_by_path"]
    assert by_path["/healthz"] == 0 and by_path["/version"] + by_path["/api/items"] > 0
    assert report.metrics['failed_switch_requests{path="/healthz"}'] == 0
    assert report.metrics["failed_switch_requests"] == by_path["/version"] + by_path["/api/items"]
    check = item(report, "check")
    assert not check.passed and "zero-downtime not met on" in check.detail and "/healthz (" not in check.detail
    assert any("zero-downtime not met" in issue for issue in report.blocking_issues)
    assert report.status == "failed"
    assert _log(ctx)[1]["status"] == "failed" and _log(ctx)[1]["failed_by_path"]["/healthz"] == 0
    rollout = _delivered(report, "Progressive rollout")["observed"]
    assert sum(phase["by_path"].get("/api/items", {}).get("failed", 0) for phase in rollout["by_phase"].values()) \
        == by_path["/api/items"]


class WithoutItems(FakeService):
    """A version that dropped ``/api/items``: it answers 404 there, everything else as before."""

    def respond(self, path: str) -> Response:
        if path.startswith("/api/items"):
            return 404, {"Content-Type": "application/json"}, b'{"error": "not found"}'
        return super().respond(path)


def test_critical_endpoint_missing_after_the_switch_fails_check(tmp_path, fake_target: FakeTarget) -> None:
    # No request fails (a 404 is an answer) and the health checks pass: only asking every critical
    # endpoint as the spec expects shows that users lost the item list.
    ctx = make_ctx(tmp_path, fake_target)
    stage_new(ctx, fake_target, WithoutItems("1.1.0"))

    report = run_step(ctx, "execute_strategy")

    assert report.metrics["failed_switch_requests"] == 0 and report.metrics["health_pass_pct"] == 100
    check = item(report, "check")
    assert not check.passed
    assert "critical endpoint(s) failing through" in check.detail and "/api/items answered 404" in check.detail
    assert _delivered(report, "Validation gates")["failed"] == ["critical_endpoints"]


def test_target_that_acknowledges_a_switch_it_did_not_make_fails_read(tmp_path, fake_target: FakeTarget,
                                                                       monkeypatch) -> None:
    # The switch call returns without error, but the target's own report still shows blue active.
    monkeypatch.setattr(fake_target, "switch", lambda slot, run_id: fake_target.status())
    ctx = make_ctx(tmp_path, fake_target)
    stage_new(ctx, fake_target, FakeService("1.1.0"))

    report = run_step(ctx, "execute_strategy")

    read = item(report, "read")
    assert not read.passed
    assert read.detail == ("the strategy log says traffic moved to green 1.1.0, but the target reports active "
                           f"blue 1.0.0 ({fake_target.slot_url('blue')})")
    assert "clients do not get 1.1.0" in item(report, "check").detail


def test_previous_slot_failing_after_the_switch_is_not_a_rehearsed_rollback(tmp_path, fake_target: FakeTarget,
                                                                             monkeypatch) -> None:
    switch = fake_target.switch

    def switch_then_break_blue(slot: str, run_id: str):
        status = switch(slot, run_id)
        fake_target.service_of("blue").broken = True  # the kept slot dies right after traffic left it
        return status

    monkeypatch.setattr(fake_target, "switch", switch_then_break_blue)
    ctx = make_ctx(tmp_path, fake_target)
    stage_new(ctx, fake_target, FakeService("1.1.0"))

    report = run_step(ctx, "execute_strategy")

    assert report.status == "passed", report.blocking_issues  # the new version is fine; the rollback path is not
    rehearsal = report.facts["rollback_rehearsal"]
    assert rehearsal["rehearsed"] is False and rehearsal["health_ok"] is False and rehearsal["target_confirms"]
    blue = fake_target.slot_url("blue")
    assert rehearsal["problems"] == [f"previous slot blue healthz: {blue}/healthz answered 503, expected 200"]
    assert any(f.startswith("rollback not rehearsable: previous slot blue healthz") for f in report.findings)
    assert (_log(ctx)[-1]["step"], _log(ctx)[-1]["status"]) == ("rollback_rehearsal", "failed")


def test_rollback_needing_more_than_a_traffic_move_is_not_confirmed(tmp_path, fake_target: FakeTarget,
                                                                    monkeypatch) -> None:
    monkeypatch.setattr(fake_target, "plan", lambda version: [
        ResourceChange("fake_slot.blue", ("delete", "create"), {"version": "0.9.0"}, {"version": version})])
    ctx = make_ctx(tmp_path, fake_target)
    stage_new(ctx, fake_target, FakeService("1.1.0"))

    rehearsal = run_step(ctx, "execute_strategy").facts["rollback_rehearsal"]

    assert rehearsal["health_ok"] is True and rehearsal["target_confirms"] is False
    assert rehearsal["problems"] == ["rolling back to 1.0.0 needs more than a traffic move: "
                                     "fake_slot.blue (delete/create)"]


def test_target_refusing_the_switch_fails_the_check(tmp_path, fake_target: FakeTarget) -> None:
    fake_target.switch_error = "router config could not be written"
    ctx = make_ctx(tmp_path, fake_target)
    stage_new(ctx, fake_target, FakeService("1.1.0"))

    report = run_step(ctx, "execute_strategy")

    check = item(report, "check")
    assert not check.passed
    assert "switch to green failed: TargetError: router config could not be written" in check.detail
    assert "target shows active blue 1.0.0" in check.detail
    assert report.facts["traffic_moved"] is False


def test_rerun_by_the_same_run_does_not_switch_again(tmp_path, fake_target: FakeTarget) -> None:
    ctx = make_ctx(tmp_path, fake_target)
    stage_new(ctx, fake_target, FakeService("1.1.0"))
    first = run_step(ctx, "execute_strategy")
    assert first.status == "passed", first.blocking_issues

    second = run_step(ctx, "execute_strategy")

    assert second.status == "passed", second.blocking_issues
    assert fake_target.switch_calls == [("green", RUN_ID)]
    assert second.facts["rerun"] is True and second.facts["traffic_moved"] is True
    assert second.metrics["failed_switch_requests"] == 0  # carried over from the first attempt
    assert any("re-run" in finding for finding in second.findings)
    assert [(e["step"], e["status"]) for e in _log(ctx)][1] == ("switch", "skipped")


def test_first_release_counts_only_requests_after_the_switch(tmp_path, empty_target: FakeTarget) -> None:
    ctx = make_ctx(tmp_path, empty_target)
    stage_new(ctx, empty_target, FakeService("1.0.0"), slot="blue")
    ctx = make_ctx(tmp_path, empty_target, version="1.0.0")

    report = run_step(ctx, "execute_strategy")

    assert report.status == "passed", report.blocking_issues
    assert report.metrics["failed_switch_requests"] == 0  # the router's 502s before the switch are not downtime
    assert any(f.startswith("first release: nothing served before the switch") for f in report.findings)
    assert report.facts["previous"] is None and report.facts["active"]["slot"] == "blue"


def test_first_release_still_counts_failures_after_the_switch(tmp_path, empty_target: FakeTarget) -> None:
    # Every 4th /version answers 500: the gate's three pass, then the observer's requests hit failures.
    ctx = make_ctx(tmp_path, empty_target, version="1.0.0-errors")
    stage_new(ctx, empty_target, FakeService("1.0.0-errors"), slot="blue")

    report = run_step(ctx, "execute_strategy")

    assert report.metrics["failed_switch_requests"] > 0
    detail = item(report, "check").detail
    assert "zero-downtime not met on /version" in detail and "[after@" in detail
    assert report.facts["rollback_rehearsal"]["previous"] is None  # nothing to roll back to
    assert _log(ctx)[-1]["step"] == "rollback_rehearsal" and _log(ctx)[-1]["status"] == "skipped"


def test_empty_pre_switch_checks_never_switch(tmp_path, fake_target: FakeTarget) -> None:
    ctx = make_ctx(tmp_path, fake_target, {"strategy": {"kind": "blue_green", "pre_switch_checks": []}})
    stage_new(ctx, fake_target, FakeService("1.1.0"))

    report = run_step(ctx, "execute_strategy")

    assert "strategy.pre_switch_checks is empty" in item(report, "verify").detail
    assert fake_target.switch_calls == [] and report.facts["traffic_moved"] is False


def test_missing_provisioning_report_fails_read_without_switching(tmp_path, fake_target: FakeTarget) -> None:
    ctx = make_ctx(tmp_path, fake_target)

    report = run_step(ctx, "execute_strategy")

    read = item(report, "read")
    assert not read.passed and "no provisioning report" in read.detail
    assert not item(report, "verify").passed and not item(report, "check").passed
    assert fake_target.switch_calls == [] and report.facts["traffic_moved"] is False


def test_provisioning_of_another_version_fails_read(tmp_path, fake_target: FakeTarget) -> None:
    ctx = make_ctx(tmp_path, fake_target)
    stage_new(ctx, fake_target, FakeService("1.1.0"))
    ctx = make_ctx(tmp_path, fake_target, version="1.2.0")

    report = run_step(ctx, "execute_strategy")

    read = item(report, "read")
    assert not read.passed and "provisioning staged version '1.1.0'" in read.detail and "1.2.0" in read.detail
    assert fake_target.switch_calls == []


@pytest.mark.item("execute_strategy.read")
def test_staged_slot_gone_from_target_fails_read(tmp_path, fake_target: FakeTarget) -> None:
    ctx = make_ctx(tmp_path, fake_target)
    stage_new(ctx, fake_target, FakeService("1.1.0"))
    fake_target.staged = None  # discarded since provisioning

    report = run_step(ctx, "execute_strategy")

    assert_item_fails(report, "execute_strategy.read", because="target shows staged none")
    assert fake_target.switch_calls == []


def test_phase_5_deliverables_are_delivered_on_the_demo_spec(tmp_path, fake_target: FakeTarget) -> None:
    """Every seed deliverable of phase 5 that execute_strategy owns is a non-empty file in the evidence store."""
    ctx = make_ctx(tmp_path, fake_target)  # the demo spec
    stage_new(ctx, fake_target, FakeService("1.1.0"))

    report = run_duty(ctx, "execute_strategy")

    assert report.status == "passed", report.blocking_issues
    phase, _ = step_by_id("execute_strategy")
    wanted = [name for name in phase.deliverables if name != "Monitoring alerts"]  # monitoring_alerts delivers it
    stored = {line["name"]: line for line in ctx.store.manifest() if line["step"] == "execute_strategy"}
    assert [name for name in wanted if name not in stored] == []
    for name in wanted:
        assert stored[name]["size"] > 0
        assert ctx.store.read(stored[name]["stored"]).strip(), name


# --------------------------------------------------------------------------------- pure parts
def test_tally_by_path_counts_every_endpoint_in_the_counted_phases() -> None:
    requests = [ObservedRequest("before", 0, 200, 0.001, None, path="/healthz"),
                ObservedRequest("before", 0.01, 500, 0.001, None, path="/api/items"),
                ObservedRequest("after", 0.02, 500, 0.001, None, path="/api/items"),
                ObservedRequest("after", 0.03, 200, 0.001, None, path="/api/items")]
    tally = tally_by_path(requests, ["/healthz", "/api/items", "/version"], phases=("after",))
    assert {p: (t.observed, t.failed) for p, t in tally.items()} == {
        "/healthz": (0, 0), "/api/items": (2, 1), "/version": (0, 0)}
    assert observation_problems(tally, total=20) == [
        "zero-downtime not met on /api/items (1 of 2)",
        "critical endpoint(s) /healthz, /version were not observed during the switch"]
    assert observation_problems(tally, total=0) == []


def test_switch_observer_sends_to_every_endpoint_before_and_after() -> None:
    observer = SwitchObserver("http://127.0.0.1:9", ["/a", "/b", "/c", "/d"], total=6)
    assert (observer.before, observer.during, observer.after) == (4, 0, 4)  # at least one per endpoint
    assert (SwitchObserver("http://x", ["/a"], 20).before, SwitchObserver("http://x", ["/a"], 0).after) == (6, 0)

def _check(passed: bool) -> CheckResult:
    return CheckResult("healthz", HttpResult("http://x/healthz", 200 if passed else 503, 0.001), passed,
                       "ok" if passed else "answered 503")


def test_trailing_streak() -> None:
    assert trailing_streak([]) == 0
    assert trailing_streak([True, False, True, True]) == 2
    assert trailing_streak([True, True, False]) == 0


def test_wait_for_streak_is_bounded_by_the_timeout() -> None:
    now = [0.0]
    outcomes = iter([True, True, False, True, True, True])
    gate = wait_for_streak(lambda: [_check(next(outcomes))], required=3, interval=1.0, timeout=10.0,
                           clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert gate.passed and len(gate.attempts) == 6 and gate.streak == 3

    now[0] = 0.0
    failing = wait_for_streak(lambda: [_check(False)], required=2, interval=1.0, timeout=3.0,
                              clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert not failing.passed and len(failing.attempts) == 4 and failing.elapsed <= 3.0  # t = 0, 1, 2, 3
    assert "0 of 2 consecutive successes" in failing.describe("slot green")


def test_count_failed_counts_no_answer_and_5xx_only() -> None:
    requests = [ObservedRequest("before", 0, 200, 0.001, "1.0.0"),
                ObservedRequest("during", 0.01, None, 0.0, None, "refused"),
                ObservedRequest("during", 0.02, 502, 0.001, None), ObservedRequest("after", 0.03, 404, 0.001, None)]
    assert count_failed(requests) == 2


# ==================================================================== the real local target
def test_real_local_target_switches_without_downtime(tmp_path, local_target) -> None:
    ctx = make_ctx(tmp_path, local_target)
    staged = stage_real(ctx, local_target)

    report = run_step(ctx, "execute_strategy")

    assert report.status == "passed", report.blocking_issues
    status = local_target.status()
    assert (status.active.slot, status.active.version) == (staged.slot, "1.1.0")
    assert status.previous.version == "1.0.0" and status.switched_by_run == RUN_ID
    assert report.metrics["failed_switch_requests"] == 0 and report.metrics["switch_requests_observed"] == 20
    # The real target: the kept slot answers on its own URL and re-planning its version changes nothing.
    rehearsal = report.facts["rollback_rehearsal"]
    assert rehearsal["rehearsed"] is True, rehearsal["problems"]
    assert rehearsal["previous"]["version"] == "1.0.0" and rehearsal["target"]["plan_pending"] == []
    assert local_target.status().active.version == "1.1.0"  # the rehearsal moved nothing

    monitoring = run_step(ctx, "monitoring_alerts")
    assert monitoring.status == "passed", monitoring.blocking_issues

    again = run_step(ctx, "execute_strategy")  # a retried task: no second switch
    assert again.status == "passed" and again.facts["rerun"] is True
    assert [h["action"] for h in local_target.status().history].count("switch") == 2  # 1.0.0 and 1.1.0


def test_real_local_target_broken_version_fails_after_the_switch(tmp_path, local_target) -> None:
    ctx = make_ctx(tmp_path, local_target, version="1.1.0-broken")
    stage_real(ctx, local_target)

    report = run_step(ctx, "execute_strategy")

    assert item(report, "verify").passed  # demo.yaml gates the switch on /version only
    check = item(report, "check")
    assert not check.passed and "healthz" in check.detail and "answered 503, expected 200" in check.detail
    assert report.facts["traffic_moved"] is True
    assert local_target.status().active.version == "1.1.0-broken"
    assert report.facts["previous"]["version"] == "1.0.0"
