"""Phase 7: observability (samples, baseline anomalies, SLA compliance) and performance (load test, regression)."""

from __future__ import annotations

import json

from duty_helpers import RUN_ID, FakeService, FakeTarget, go_live, item, make_ctx, run_step, save_report

from gendev_release.duties.observability import (
    MetricSample,
    detect_anomalies,
    paired_load_test,
    regression_problem,
    sample_count,
    sla_compliance,
)
from gendev_release.probes import http_get, scrape

BASELINE = {'demo_http_error_ratio{service="demo"}': 0.0, 'demo_http_request_p95_seconds{service="demo"}': 0.002,
            'demo_http_requests_total{service="demo"}': 120.0}


# ============================================================================== observability
def test_observability_passes_against_baseline_and_sla(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    ctx = make_ctx(tmp_path, empty_target)
    save_report(ctx, "readiness", {"baseline_metrics": BASELINE})

    report = run_step(ctx, "observability")

    assert report.status == "passed", report.blocking_issues
    dashboard = json.loads((ctx.paths.workdir / "monitoring" / "dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert exprs == ["demo_http_error_ratio", "demo_http_request_p95_seconds",
                     "sum(rate(demo_http_requests_total[1m]))"]
    samples = (ctx.paths.workdir / "monitoring" / "samples.jsonl").read_text().splitlines()
    assert len(samples) == 4  # 0.3 s window, one scrape every 0.1 s
    assert report.metrics["sla_compliance_pct"] == 100
    assert report.metrics["anomalies"] == 0
    check = item(report, "check")
    assert "baseline comparison: demo_http_error_ratio: 0 vs baseline 0" in check.detail
    assert {d.name for d in report.deliverables} == {"metric-samples", "dashboard"}
    assert "demo_http_requests_total" in item(report, "verify").detail


def test_without_baseline_it_says_so_and_compares_with_the_sla(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    ctx = make_ctx(tmp_path, empty_target)

    report = run_step(ctx, "observability")

    assert report.status == "passed", report.blocking_issues
    assert "no pre-release baseline" in item(report, "check").detail
    assert "compared against the SLA only" in item(report, "check").detail


def test_firing_rule_on_a_sample_breaks_sla_compliance(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0", metric_overrides={"demo_http_error_ratio": 0.05}))
    ctx = make_ctx(tmp_path, empty_target)

    report = run_step(ctx, "observability")

    check = item(report, "check")
    assert not check.passed
    assert "SLA compliance 0.0 % < 100 % over 4 samples" in check.detail
    assert "rule error-rate: demo_http_error_ratio=0.05 > 0.01 is firing" in check.detail
    assert report.metrics["sla_compliance_pct"] == 0


def test_anomaly_against_the_baseline_fails_check_within_sla(tmp_path, empty_target: FakeTarget) -> None:
    # p95 0.2 s is under the 0.25 s alert threshold, but 100x the 0.002 s baseline.
    go_live(empty_target, "green", FakeService("1.1.0", metric_overrides={"demo_http_request_p95_seconds": 0.2}))
    ctx = make_ctx(tmp_path, empty_target)
    save_report(ctx, "readiness", {"baseline_metrics": BASELINE})

    report = run_step(ctx, "observability")

    check = item(report, "check")
    assert not check.passed
    assert ("anomaly against the pre-release baseline: demo_http_request_p95_seconds: 0.2 vs baseline 0.002 "
            "(limit 0.028): ANOMALY") in check.detail
    assert report.metrics["sla_compliance_pct"] == 100


def test_given_dashboard_must_display_every_rule_metric(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    ctx = make_ctx(tmp_path, empty_target, {"monitoring": {"dashboard": "dash.json"}})
    dashboard = {"panels": [{"targets": [{"expr": "demo_http_error_ratio"}]}]}
    (tmp_path / "spec" / "dash.json").write_text(json.dumps(dashboard))

    report = run_step(ctx, "observability")

    read = item(report, "read")
    assert not read.passed
    assert read.detail.endswith("does not display: demo_http_request_p95_seconds (rule latency-p95)")
    assert read.evidence[0].sha256  # the given file's digest was recorded


def test_missing_dashboard_file_fails_read(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    ctx = make_ctx(tmp_path, empty_target, {"monitoring": {"dashboard": "nope.json"}})

    report = run_step(ctx, "observability")

    assert "nope.json named by monitoring.dashboard does not exist" in item(report, "read").detail


def test_stale_counter_fails_verify(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0", freeze_counter=True))
    ctx = make_ctx(tmp_path, empty_target)

    report = run_step(ctx, "observability")

    verify = item(report, "verify")
    assert not verify.passed
    assert "demo_http_requests_total did not increase over the window (5 -> 5)" in verify.detail


def test_unreachable_metrics_fail_verify_and_check(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0", metrics_status=503))
    ctx = make_ctx(tmp_path, empty_target)

    report = run_step(ctx, "observability")

    assert "only 0 of 4 scrapes" in item(report, "verify").detail and "HTTP 503" in item(report, "verify").detail
    assert not item(report, "check").passed


def test_sample_count_and_pure_judgements(tmp_path, empty_target: FakeTarget) -> None:
    assert sample_count(3.0, 0.5) == 7 and sample_count(0.1, 1.0) == 2 and sample_count(0.3, 0.1) == 4
    ctx = make_ctx(tmp_path, empty_target, {"monitoring": {"alert_rules": [
        {"name": "throughput", "metric": "rps", "op": "<", "threshold": 10}]}})
    rules = list(ctx.spec.monitoring.alert_rules)
    samples = [MetricSample(0, 0.0, 200, {"rps": 50.0}), MetricSample(1, 0.1, 200, {"rps": 12.0})]
    # lower is worse: limit = 100 * 0.5 - 1 = 49; the window's worst (12) is below it.
    [comparison] = detect_anomalies(rules, samples, {"rps": 100.0}, 50.0)
    assert comparison.anomaly and comparison.observed == 12.0 and comparison.limit == 49.0
    assert sla_compliance(rules, samples) == (100.0, [])
    pct, breaches = sla_compliance(rules, samples + [MetricSample(2, 0.2, 200, {"other": 1.0})])
    assert round(pct, 1) == 66.7
    assert breaches == ["sample 2 (t=0.2s): rule throughput: metric rps is missing from the samples"]


# ================================================================================ performance
def test_performance_compares_with_the_previous_slot(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"), previous=("blue", FakeService("1.0.0")))
    # Both slots share this test's process (and its GIL), so equal versions still differ by tens of
    # percent; the tolerance is wider here than a real release needs.
    ctx = make_ctx(tmp_path, empty_target, {"load_test": {"requests": 200},
                                            "quality_gates": {"regression_tolerance_pct": 150, "waivers": [
                                                {"gate": "regression_tolerance_pct", "approved_by": "qa",
                                                 "reason": "two slots share one test process"}]}})

    report = run_step(ctx, "performance")

    assert report.status == "passed", report.blocking_issues
    record = json.loads((ctx.paths.workdir / "performance" / "load-test.json").read_text())
    assert record["router"]["requests"] == 200 and record["previous"]["requests"] == 200
    assert record["active_direct"]["requests"] == 200
    assert record["router"]["url"].endswith("/api/items")
    assert "compared with previous slot blue 1.0.0" in item(report, "verify").detail
    assert "p95_ratio" in report.metrics and "baseline_p95_ms" in report.metrics
    assert any(f.startswith("recommendation: latency headroom") for f in report.findings)
    assert [d.name for d in report.deliverables] == ["load-test"]


def test_first_release_compares_with_sla_only(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    ctx = make_ctx(tmp_path, empty_target)

    report = run_step(ctx, "performance")

    assert report.status == "passed", report.blocking_issues
    assert item(report, "verify").detail == "no previous slot is kept (first release): compared with the SLA only"
    assert json.loads((ctx.paths.workdir / "performance" / "load-test.json").read_text())["previous"] is None


def test_p95_over_the_sla_fails_check(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0", slow_ms=30))
    ctx = make_ctx(tmp_path, empty_target, {"quality_gates": {"p95_latency_ms": 10}})

    report = run_step(ctx, "performance")

    check = item(report, "check")
    assert not check.passed and "/api/items > p95_latency_ms 10 ms" in check.detail
    assert report.metrics["p95_ms"] >= 30
    assert any("exceeds the SLA of 10 ms" in f for f in report.findings)


def test_regression_over_tolerance_fails_check(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0", slow_ms=20), previous=("blue", FakeService("1.0.0")))
    # SLA 250 ms: only the regression can fail (20 ms slower: above a 5 ms noise floor)
    ctx = make_ctx(tmp_path, empty_target, {"quality_gates": {"regression_min_ms": 5}})

    report = run_step(ctx, "performance")

    check = item(report, "check")
    assert not check.passed and "p95 regression:" in check.detail and "regression_tolerance_pct 50 %" in check.detail
    assert report.metrics["p95_ratio"] > 1.5
    assert "p95_latency_ms" not in check.detail


def test_error_rate_over_the_sla_fails_check(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0-errors"))
    ctx = make_ctx(tmp_path, empty_target, version="1.1.0-errors")

    report = run_step(ctx, "performance")

    check = item(report, "check")
    assert not check.passed and "error rate 25 % through" in check.detail and "> max_error_rate_pct 1 %" in check.detail


def test_dead_previous_slot_fails_verify(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"), previous=("blue", FakeService("1.0.0")))
    empty_target.slots["blue"][1].stop()
    ctx = make_ctx(tmp_path, empty_target)

    report = run_step(ctx, "performance")

    verify = item(report, "verify")
    assert not verify.passed and "previous slot blue 1.0.0" in verify.detail and "does not answer" in verify.detail


def test_paired_load_test_interleaves_the_same_request_count(empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"), previous=("blue", FakeService("1.0.0")))
    new, previous = paired_load_test(empty_target.slot_url("green") + "/version",
                                     empty_target.slot_url("blue") + "/version", 10, 2)
    assert (new.requests, previous.requests) == (10, 10)
    assert empty_target.service_of("green").requests_total == 10
    assert empty_target.service_of("blue").requests_total == 10
    assert len(new.latencies_ms) == 10 and new.status_counts == {"200": 10}


def test_regression_problem_uses_a_one_millisecond_floor() -> None:
    assert regression_problem(1.4, 0.2, 50.0) is None  # 0.2 ms previous is noise: floor 1 ms, limit 1.5 ms
    problem = regression_problem(3.0, 1.0, 50.0)
    assert problem == ("p95 regression: 3 ms > 1.5 ms (previous 1 ms, floor 1 ms, + regression_tolerance_pct 50 %, "
                       "at least regression_min_ms 0 ms)")


def test_regression_smaller_than_the_absolute_minimum_is_noise() -> None:
    assert regression_problem(10.0, 5.7, 50.0, min_ms=25.0) is None  # 75 % slower, but only 4.3 ms
    assert regression_problem(40.0, 5.0, 50.0, min_ms=25.0) == (
        "p95 regression: 40 ms > 30 ms (previous 5 ms, floor 1 ms, + regression_tolerance_pct 50 %, "
        "at least regression_min_ms 25 ms)")


# ==================================================================== the real local target
def test_real_local_target_observability_and_performance(tmp_path, local_target) -> None:
    ctx = make_ctx(tmp_path, local_target, {"load_test": {"requests": 200}})
    router = local_target.url()
    for _ in range(20):  # the live version serves traffic before the release, as in production
        http_get(router + "/api/items")
    _, baseline = scrape(router + "/metrics")  # what the readiness step records
    save_report(ctx, "readiness", {"baseline_metrics": baseline})
    live = local_target.stage("1.1.0", RUN_ID)
    local_target.switch(live.slot, RUN_ID)

    observed = run_step(ctx, "observability")
    performance = run_step(ctx, "performance")

    assert observed.status == "passed", observed.blocking_issues
    assert observed.metrics["sla_compliance_pct"] == 100
    assert "baseline comparison" in item(observed, "check").detail
    assert performance.status == "passed", performance.blocking_issues
    assert "compared with previous slot" in item(performance, "verify").detail
    assert "1.0.0" in item(performance, "verify").detail
