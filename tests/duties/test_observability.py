"""Phase 7: observability (samples, dashboard, baseline anomalies, SLA compliance) and performance.

Observability reads a real Prometheus (:mod:`prometheus_server`, one per module) unless a test uses
the direct ``/metrics`` fallback (:data:`DIRECT`). The last test runs phases 5 and 7 on the real
local target with the demo spec, which launches its own Prometheus.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from duty_helpers import RUN_ID, FakeService, FakeTarget, go_live, item, make_ctx, run_step, save_report
from item_proof import assert_item_fails
from prometheus_server import JOB, TestPrometheus, running_prometheus

from gendev_release.catalogue import PHASES, deliverable_gaps
from gendev_release.context import DutyContext
from gendev_release.duties.base import run_duty
from gendev_release.duties.monitoring import alert_rules_document
from gendev_release.duties.observability import (
    MetricSample,
    detect_anomalies,
    paired_load_test,
    regression_problem,
    sample_count,
    sla_compliance,
)
from gendev_release.observation import metric_names_in, panel_queries, substitute_variables
from gendev_release.probes import http_get, scrape
from gendev_release.spec import ReleaseSpec

BASELINE = {'demo_http_error_ratio{service="demo"}': 0.0, 'demo_http_request_p95_seconds{service="demo"}': 0.002,
            'demo_http_requests_total{service="demo"}': 120.0}
#: A spec without monitoring.prometheus: the direct scrape fallback.
DIRECT = {"monitoring": {"prometheus": None}}
PHASE_7 = ("Real-time monitoring", "Performance dashboards", "Anomaly detection", "SLA tracking",
           "Alert configuration")


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestPrometheus]:
    with running_prometheus(tmp_path_factory.mktemp("prometheus")) as server:
        yield server


def through(prometheus: TestPrometheus, **monitoring: object) -> dict[str, object]:
    return {"monitoring": {"prometheus": {"launch": None, "url": prometheus.url, "job": JOB}, **monitoring}}


def live(target: FakeTarget, prometheus: TestPrometheus, service: FakeService, spec: ReleaseSpec) -> None:
    """``service`` live behind ``target``, scraped by ``prometheus`` with the spec's rules loaded."""
    go_live(target, "green", service)
    prometheus.load_rules(alert_rules_document(spec, JOB))
    prometheus.scrape(target.url())


# ========================================================================= through Prometheus
def test_observability_passes_through_prometheus(tmp_path: Path, empty_target: FakeTarget,
                                                 prometheus: TestPrometheus) -> None:
    ctx = make_ctx(tmp_path, empty_target, through(prometheus))
    live(empty_target, prometheus, FakeService("1.1.0"), ctx.spec)
    save_report(ctx, "readiness", {"baseline_metrics": BASELINE})

    report = run_step(ctx, "observability")

    assert report.status == "passed", report.blocking_issues
    verify = item(report, "verify")
    assert verify.detail.startswith("Prometheus query_range") and "demo_http_requests_total" in verify.detail
    read = item(report, "read")
    assert f"return data of job={JOB} from Prometheus {prometheus.url}" in read.detail
    assert "every alert rule still loaded as the spec gives it" in read.detail
    panels = json.loads((ctx.paths.workdir / "monitoring" / "dashboard-panels.json").read_text())["panels"]
    assert [p["query"] for p in panels] == ['demo_http_error_ratio{job="demo"}',
                                            'demo_http_request_p95_seconds{job="demo"}',
                                            'sum(rate(demo_http_requests_total{job="demo"}[1m]))']
    assert all(p["series"] >= 1 for p in panels)
    lines = (ctx.paths.workdir / "monitoring" / "samples.jsonl").read_text().splitlines()
    samples = [json.loads(line) for line in lines]
    # a 0.3 s window is widened to three scrape intervals of the test server (0.5 s), one point per 0.5 s
    assert len(samples) >= 3 and all(s["status"] == 200 for s in samples)
    assert any(key.startswith("demo_http_error_ratio{") and 'job="demo"' in key for key in samples[-1]["series"])
    assert report.metrics["sla_compliance_pct"] == 100 and report.metrics["anomalies"] == 0
    assert "no alert fired in Prometheus" in item(report, "check").detail
    assert {d.name for d in report.deliverables} == {*PHASE_7, "dashboard"}
    configuration = json.loads((ctx.paths.workdir / "monitoring" / "alert-configuration.json").read_text())
    assert {r["name"] for r in configuration["loaded_rules"]} == {"error-rate", "latency-p95"}
    assert configuration["in_window"]["error-rate"]["alerts_fired_steps"] == 0


@pytest.mark.item("observability.read")
def test_dashboard_panel_without_data_in_prometheus_fails_read(tmp_path: Path, empty_target: FakeTarget,
                                                               prometheus: TestPrometheus) -> None:
    # The dashboard shows both rule metrics, but one panel's query has a typo: it can display nothing.
    ctx = make_ctx(tmp_path, empty_target, through(prometheus, dashboard="dash.json"))
    dashboard = {"panels": [
        {"title": "errors", "targets": [{"expr": 'demo_http_error_ratio{job="$job"}'}]},
        {"title": "latency", "targets": [{"expr": 'demo_http_request_p95_seconds{job="$job"}'}]},
        {"title": "errors (5m)", "targets": [{"expr": 'avg_over_time(demo_http_eror_ratio{job="$job"}[5m])'}]}]}
    (tmp_path / "spec" / "dash.json").write_text(json.dumps(dashboard))
    live(empty_target, prometheus, FakeService("1.1.0"), ctx.spec)

    report = run_step(ctx, "observability")

    assert_item_fails(report, "observability.read",
                      because="panel 'errors (5m)': avg_over_time(demo_http_eror_ratio{job=\"demo\"}[5m]) returned "
                              "no data from Prometheus")
    assert "panel 'errors':" not in item(report, "read").detail
    assert item(report, "verify").passed and item(report, "check").passed


@pytest.mark.item("observability.verify")
def test_stale_counter_in_prometheus_fails_verify(tmp_path: Path, empty_target: FakeTarget,
                                                  prometheus: TestPrometheus) -> None:
    ctx = make_ctx(tmp_path, empty_target, through(prometheus))
    live(empty_target, prometheus, FakeService("1.1.0", freeze_counter=True), ctx.spec)

    report = run_step(ctx, "observability")

    assert_item_fails(report, "observability.verify", because="demo_http_requests_total did not increase over the "
                                                              "window (5 -> 5)")
    assert f"(as stored in Prometheus {prometheus.url}" in item(report, "verify").detail


@pytest.mark.item("observability.check")
def test_anomaly_against_the_baseline_in_prometheus_fails_check(tmp_path: Path, empty_target: FakeTarget,
                                                                prometheus: TestPrometheus) -> None:
    # p95 0.2 s is under the 0.25 s alert threshold, but 100x the 0.002 s baseline the readiness step saw.
    ctx = make_ctx(tmp_path, empty_target, through(prometheus))
    live(empty_target, prometheus, FakeService("1.1.0", metric_overrides={"demo_http_request_p95_seconds": 0.2}),
         ctx.spec)
    save_report(ctx, "readiness", {"baseline_metrics": BASELINE})

    report = run_step(ctx, "observability")

    assert_item_fails(report, "observability.check",
                      because="anomaly against the pre-release baseline: demo_http_request_p95_seconds: 0.2 vs "
                              "baseline 0.002 (limit 0.028): ANOMALY")
    assert report.metrics["sla_compliance_pct"] == 100
    anomalies = json.loads((ctx.paths.workdir / "monitoring" / "anomalies.json").read_text())
    assert anomalies["anomalies"] == 1 and anomalies["baseline_source"] == "readiness facts.baseline_metrics"


def test_rule_firing_in_the_window_breaks_sla_compliance_through_prometheus(tmp_path: Path, empty_target: FakeTarget,
                                                                            prometheus: TestPrometheus) -> None:
    ctx = make_ctx(tmp_path, empty_target, through(prometheus))
    live(empty_target, prometheus, FakeService("1.1.0", metric_overrides={"demo_http_error_ratio": 0.05}), ctx.spec)

    report = run_step(ctx, "observability")

    check = item(report, "check")
    assert not check.passed and "SLA compliance 0.0 % < 100 %" in check.detail
    assert "rule error-rate: demo_http_error_ratio=0.05 > 0.01 is firing" in check.detail
    assert "Prometheus fired alert error-rate during the window" in check.detail
    sla = json.loads((ctx.paths.workdir / "monitoring" / "sla.json").read_text())
    assert sla["sla_compliance_pct"] == 0 and sla["rules"]["error-rate"]["firing_samples"] == sla["samples"]


# ============================================================================== direct scrape
def test_observability_passes_against_baseline_and_sla(tmp_path: Path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    ctx = make_ctx(tmp_path, empty_target, DIRECT)
    save_report(ctx, "readiness", {"baseline_metrics": BASELINE})

    report = run_step(ctx, "observability")

    assert report.status == "passed", report.blocking_issues
    dashboard = json.loads((ctx.paths.workdir / "monitoring" / "dashboard.json").read_text())
    assert panel_queries(dashboard) == [
        ("error-rate: demo_http_error_ratio", 'demo_http_error_ratio{job="$job"}'),
        ("latency-p95: demo_http_request_p95_seconds", 'demo_http_request_p95_seconds{job="$job"}'),
        ("request rate", 'sum(rate(demo_http_requests_total{job="$job"}[1m]))')]
    samples = (ctx.paths.workdir / "monitoring" / "samples.jsonl").read_text().splitlines()
    assert len(samples) == 4  # 0.3 s window, one scrape every 0.1 s
    assert report.metrics["sla_compliance_pct"] == 100
    assert report.metrics["anomalies"] == 0
    check = item(report, "check")
    assert "baseline comparison: demo_http_error_ratio: 0 vs baseline 0" in check.detail
    assert {d.name for d in report.deliverables} == {*PHASE_7, "dashboard"}
    assert item(report, "verify").detail.startswith("direct scrape (no Prometheus in the spec)")
    assert "demo_http_requests_total" in item(report, "verify").detail


def test_without_baseline_it_says_so_and_compares_with_the_sla(tmp_path: Path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    ctx = make_ctx(tmp_path, empty_target, DIRECT)

    report = run_step(ctx, "observability")

    assert report.status == "passed", report.blocking_issues
    assert "no pre-release baseline (no readiness report in this run" in item(report, "check").detail
    assert "compared against the SLA only" in item(report, "check").detail


def test_firing_rule_on_a_sample_breaks_sla_compliance(tmp_path: Path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0", metric_overrides={"demo_http_error_ratio": 0.05}))
    ctx = make_ctx(tmp_path, empty_target, DIRECT)

    report = run_step(ctx, "observability")

    check = item(report, "check")
    assert not check.passed
    assert "SLA compliance 0.0 % < 100 % over 4 samples" in check.detail
    assert "rule error-rate: demo_http_error_ratio=0.05 > 0.01 is firing" in check.detail
    assert report.metrics["sla_compliance_pct"] == 0


def test_anomaly_against_the_baseline_fails_check_within_sla(tmp_path: Path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0", metric_overrides={"demo_http_request_p95_seconds": 0.2}))
    ctx = make_ctx(tmp_path, empty_target, DIRECT)
    save_report(ctx, "readiness", {"baseline_metrics": BASELINE})

    report = run_step(ctx, "observability")

    check = item(report, "check")
    assert not check.passed
    assert ("anomaly against the pre-release baseline: demo_http_request_p95_seconds: 0.2 vs baseline 0.002 "
            "(limit 0.028): ANOMALY") in check.detail
    assert report.metrics["sla_compliance_pct"] == 100


def test_given_dashboard_must_display_every_rule_metric(tmp_path: Path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    ctx = make_ctx(tmp_path, empty_target, {"monitoring": {"prometheus": None, "dashboard": "dash.json"}})
    dashboard = {"panels": [{"title": "errors", "targets": [{"expr": "demo_http_error_ratio"}]}]}
    (tmp_path / "spec" / "dash.json").write_text(json.dumps(dashboard))

    report = run_step(ctx, "observability")

    read = item(report, "read")
    assert not read.passed
    assert read.detail.endswith("does not display: demo_http_request_p95_seconds (rule latency-p95)")
    assert read.evidence[0].sha256  # the given file's digest was recorded


def test_given_dashboard_panel_on_a_metric_the_service_does_not_expose_fails_read(tmp_path: Path,
                                                                                  empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    ctx = make_ctx(tmp_path, empty_target, {"monitoring": {"prometheus": None, "dashboard": "dash.json"}})
    dashboard = {"panels": [{"title": "all", "targets": [
        {"expr": "demo_http_error_ratio"}, {"expr": "demo_http_request_p95_seconds"}]},
        {"title": "cpu", "targets": [{"expr": "rate(process_cpu_seconds_total[1m])"}]}]}
    (tmp_path / "spec" / "dash.json").write_text(json.dumps(dashboard))

    report = run_step(ctx, "observability")

    read = item(report, "read")
    assert not read.passed
    assert "panel 'cpu': rate(process_cpu_seconds_total[1m]) names no metric the live service exposes" in read.detail


def test_missing_dashboard_file_fails_read(tmp_path: Path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    ctx = make_ctx(tmp_path, empty_target, {"monitoring": {"prometheus": None, "dashboard": "nope.json"}})

    report = run_step(ctx, "observability")

    assert "nope.json named by monitoring.dashboard does not exist" in item(report, "read").detail


def test_stale_counter_fails_verify(tmp_path: Path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0", freeze_counter=True))
    ctx = make_ctx(tmp_path, empty_target, DIRECT)

    report = run_step(ctx, "observability")

    verify = item(report, "verify")
    assert not verify.passed
    assert "demo_http_requests_total did not increase over the window (5 -> 5)" in verify.detail


def test_unreachable_metrics_fail_verify_and_check(tmp_path: Path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0", metrics_status=503))
    ctx = make_ctx(tmp_path, empty_target, DIRECT)

    report = run_step(ctx, "observability")

    assert "only 0 of 4 scrapes" in item(report, "verify").detail and "HTTP 503" in item(report, "verify").detail
    assert not item(report, "check").passed


def test_sample_count_and_pure_judgements(tmp_path: Path, empty_target: FakeTarget) -> None:
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


def test_dashboard_query_helpers() -> None:
    assert substitute_variables('rate(x{job="$job",svc="${service}"}[$__rate_interval])', "demo", "shop") == \
        'rate(x{job="demo",svc="shop"}[1m])'
    assert metric_names_in('sum by (code) (rate(http_requests_total{job="a",path=~"/x"}[5m]))') == {
        "sum", "by", "code", "rate", "http_requests_total"}
    nested = {"panels": [{"type": "row", "panels": [{"title": "t", "targets": [{"expr": "up"}, {"expr": " "}]}]}]}
    assert panel_queries(nested) == [("t", "up")]


# ================================================================================ performance
def before(ctx: DutyContext, version: str | None) -> None:
    """What the readiness step saw live before the release."""
    save_report(ctx, "readiness", {"active_version": version, "first_deployment": version is None})


def test_performance_compares_with_the_previous_slot(tmp_path: Path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"), previous=("blue", FakeService("1.0.0")))
    # Both slots share this test's process (and its GIL), so equal versions still differ by tens of
    # percent; the tolerance is wider here than a real release needs.
    ctx = make_ctx(tmp_path, empty_target, {"load_test": {"requests": 200},
                                            "quality_gates": {"regression_tolerance_pct": 150, "waivers": [
                                                {"gate": "regression_tolerance_pct", "approved_by": "qa",
                                                 "reason": "two slots share one test process"}]}})
    before(ctx, "1.0.0")

    report = run_step(ctx, "performance")

    assert report.status == "passed", report.blocking_issues
    record = json.loads((ctx.paths.workdir / "performance" / "load-test.json").read_text())
    assert record["router"]["requests"] == 200 and record["previous"]["requests"] == 200
    assert record["active_direct"]["requests"] == 200
    assert record["router"]["url"].endswith("/api/items")
    assert record["service_counted"] >= 200 and record["answered"] == 200
    assert "the service counted" in item(report, "read").detail
    assert "compared with previous slot blue 1.0.0" in item(report, "verify").detail
    assert "p95_ratio" in report.metrics and "baseline_p95_ms" in report.metrics
    assert any(f.startswith("recommendation: latency headroom") for f in report.findings)
    assert [d.name for d in report.deliverables] == ["load-test"]


def test_first_release_compares_with_sla_only(tmp_path: Path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    ctx = make_ctx(tmp_path, empty_target)
    before(ctx, None)

    report = run_step(ctx, "performance")

    assert report.status == "passed", report.blocking_issues
    assert item(report, "verify").detail == ("no previous version was live before this release (readiness saw none) "
                                             "and the target keeps none: compared with the SLA only")
    assert json.loads((ctx.paths.workdir / "performance" / "load-test.json").read_text())["previous"] is None


@pytest.mark.item("performance.verify")
def test_previous_version_gone_fails_verify(tmp_path: Path, empty_target: FakeTarget) -> None:
    # readiness saw 1.0.0 serving, but its slot was retired before the analysis: nothing to compare with
    go_live(empty_target, "green", FakeService("1.1.0"))
    ctx = make_ctx(tmp_path, empty_target)
    before(ctx, "1.0.0")

    report = run_step(ctx, "performance")

    assert_item_fails(report, "performance.verify", because="readiness saw 1.0.0 live before this release, but the "
                                                            "target keeps no previous slot")


def test_without_a_readiness_report_the_baseline_is_unknown(tmp_path: Path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    ctx = make_ctx(tmp_path, empty_target)

    report = run_step(ctx, "performance")

    assert item(report, "verify").detail == ("no readiness report in this run: the version live before the release "
                                             "is unknown")


@pytest.mark.item("performance.read")
def test_load_the_service_did_not_count_fails_read(tmp_path: Path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0", freeze_counter=True))
    ctx = make_ctx(tmp_path, empty_target)
    before(ctx, None)

    report = run_step(ctx, "performance")

    assert_item_fails(report, "performance.read", because="the service counted 0 of the 40 requests")


def test_p95_over_the_sla_fails_check(tmp_path: Path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0", slow_ms=30))
    ctx = make_ctx(tmp_path, empty_target, {"quality_gates": {"p95_latency_ms": 10}})
    before(ctx, None)

    report = run_step(ctx, "performance")

    check = item(report, "check")
    assert not check.passed and "/api/items > p95_latency_ms 10 ms" in check.detail
    assert report.metrics["p95_ms"] >= 30
    assert any("exceeds the SLA of 10 ms" in f for f in report.findings)


def test_regression_over_tolerance_fails_check(tmp_path: Path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0", slow_ms=60), previous=("blue", FakeService("1.0.0")))
    # SLA 250 ms: only the regression can fail (60 ms slower: far above the 5 ms noise floor, even on a busy machine)
    ctx = make_ctx(tmp_path, empty_target, {"quality_gates": {"regression_min_ms": 5}})
    before(ctx, "1.0.0")

    report = run_step(ctx, "performance")

    check = item(report, "check")
    assert not check.passed and "p95 regression:" in check.detail and "regression_tolerance_pct 50 %" in check.detail
    assert report.metrics["p95_ratio"] > 1.5
    assert "p95_latency_ms" not in check.detail


@pytest.mark.item("performance.check")
def test_error_rate_over_the_sla_fails_check(tmp_path: Path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0-errors"))
    ctx = make_ctx(tmp_path, empty_target, version="1.1.0-errors")
    before(ctx, None)

    report = run_step(ctx, "performance")

    assert_item_fails(report, "performance.check", because="error rate 25 % through")
    assert "> max_error_rate_pct 1 %" in item(report, "check").detail


def test_dead_previous_slot_fails_verify(tmp_path: Path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"), previous=("blue", FakeService("1.0.0")))
    empty_target.slots["blue"][1].stop()
    ctx = make_ctx(tmp_path, empty_target)
    before(ctx, "1.0.0")

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
def test_real_local_target_phases_5_and_7_with_a_launched_prometheus(tmp_path: Path, local_target) -> None:
    """The demo spec on the real local target: its own Prometheus, every phase 5/7 deliverable in the store."""
    ctx = make_ctx(tmp_path, local_target, {"load_test": {"requests": 200}})
    assert ctx.spec.monitoring.prometheus is not None and ctx.spec.monitoring.prometheus.launch == "local"
    router = local_target.url()
    for _ in range(20):  # the live version serves traffic before the release, as in production
        http_get(router + "/api/items")
    _, baseline = scrape(router + "/metrics")  # what the readiness step records
    save_report(ctx, "readiness", {"baseline_metrics": baseline, "active_version": "1.0.0"})
    staged = local_target.stage("1.1.0", RUN_ID)
    local_target.switch(staged.slot, RUN_ID)

    reports = {step: run_duty(ctx, step) for step in ("monitoring_alerts", "observability", "performance")}

    for step, report in reports.items():
        assert report.status == "passed", (step, report.blocking_issues)
    assert "launched on 127.0.0.1 for demo" in item(reports["monitoring_alerts"], "read").detail
    assert item(reports["observability"], "verify").detail.startswith("Prometheus query_range")
    assert reports["observability"].metrics["sla_compliance_pct"] == 100
    assert "baseline comparison" in item(reports["observability"], "check").detail
    assert "compared with previous slot" in item(reports["performance"], "verify").detail
    assert "1.0.0" in item(reports["performance"], "verify").detail
    manifest = ctx.store.manifest()
    mine = [line for line in manifest if line["step"] in ("monitoring_alerts", "observability", "performance")]
    for phase in (PHASES[4], PHASES[6]):
        stored = {line["name"]: line for line in mine if line["step"] in {s.id for s in phase.steps}}
        wanted = [name for name in phase.deliverables if phase.number == 7 or name == "Monitoring alerts"]
        assert [name for name in wanted if name not in stored] == []
        assert all(stored[name]["size"] > 0 for name in wanted)
    gaps = deliverable_gaps(manifest)
    assert not [gap for gap in gaps if gap.startswith("phase 7") or gap == "phase 5: Monitoring alerts"]


# ============================================================================ the deferred window
def deferred_window(ctx: DutyContext, target: FakeTarget, *, seconds: float = 0.3,
                    scrape: bool = True) -> dict[str, object]:
    """Run the observation window's trigger as the triggerer would and store its event as the task does."""
    import asyncio
    import time

    from gendev_release.observation import WINDOW_RECORD
    from gendev_release.sensors.triggers import TrafficWindowTrigger

    router = str(target.url())
    now = time.time()
    trigger = TrafficWindowTrigger(traffic=[router + e.path for e in ctx.spec.critical_endpoints], started_at=now,
                                   until=now + seconds, interval_seconds=0.1,
                                   scrape_url=router + ctx.spec.monitoring.metrics_path if scrape else None,
                                   series=sorted({r.metric for r in ctx.spec.monitoring.alert_rules}))

    async def first() -> dict[str, object]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    event = asyncio.run(first())
    ctx.store.save_record(WINDOW_RECORD, event, keep_earlier=False)
    return event


def test_the_step_judges_the_deferred_window_instead_of_waiting_itself(tmp_path: Path,
                                                                       empty_target: FakeTarget) -> None:
    service = FakeService("1.1.0")
    go_live(empty_target, "green", service)
    ctx = make_ctx(tmp_path, empty_target, DIRECT)
    event = deferred_window(ctx, empty_target)
    rounds = int(event["requests"]) // len(ctx.spec.critical_endpoints)  # type: ignore[call-overload]
    assert rounds >= 1 and event["requests"] == rounds * len(ctx.spec.critical_endpoints)
    assert len(event["samples"]) == rounds + 1  # type: ignore[arg-type]  # a scrape before and after each round

    report = run_step(ctx, "observability")

    assert report.status == "passed", report.blocking_issues
    verify = item(report, "verify")
    assert verify.detail.startswith("direct scrape (no Prometheus in the spec), deferred window")
    assert not any("observed in this step" in finding for finding in report.findings)


def test_a_frozen_counter_in_the_deferred_window_still_fails_verify(tmp_path: Path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0", freeze_counter=True))
    ctx = make_ctx(tmp_path, empty_target, DIRECT)
    deferred_window(ctx, empty_target)
    verify = item(run_step(ctx, "observability"), "verify")
    assert not verify.passed and "did not increase over the window (5 -> 5) although " in verify.detail


def test_a_stale_window_record_is_not_trusted(tmp_path: Path, empty_target: FakeTarget) -> None:
    from gendev_release.observation import WINDOW_FRESH_SECONDS, DeferredWindow

    record = {"started_at": 1000.0, "ended_at": 1003.0, "requests": 9, "traffic": ["http://x/"], "samples": []}
    assert DeferredWindow.of(record, 1003.0 + WINDOW_FRESH_SECONDS - 1) is not None
    assert DeferredWindow.of(record, 1003.0 + WINDOW_FRESH_SECONDS + 1) is None
    assert DeferredWindow.of({**record, "requests": "many"}, 1004.0) is None


def test_through_prometheus_the_step_queries_the_deferred_windows_span(tmp_path: Path, empty_target: FakeTarget,
                                                                      prometheus: TestPrometheus) -> None:
    ctx = make_ctx(tmp_path, empty_target, through(prometheus))
    live(empty_target, prometheus, FakeService("1.1.0"), ctx.spec)
    event = deferred_window(ctx, empty_target, seconds=1.6, scrape=False)  # three scrape intervals of 0.5 s
    assert event["samples"] == [] and int(event["requests"]) >= 3  # type: ignore[call-overload]

    report = run_step(ctx, "observability")

    assert report.status == "passed", report.blocking_issues
    verify = item(report, "verify")
    assert verify.detail.startswith("Prometheus query_range") and "deferred window" in verify.detail

