"""Phase 5: monitoring_alerts (alert rules in Prometheus, fresh samples, quiet rules, a channel that delivers).

Most tests read a real Prometheus (:mod:`prometheus_server`: one per module, scraping each test's
service); the direct ``/metrics`` fallback (a spec without ``monitoring.prometheus``) has its own tests.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from duty_helpers import FakeService, FakeTarget, go_live, item, make_ctx, run_step
from item_proof import assert_item_fails
from prometheus_server import JOB, TestPrometheus, running_prometheus

from gendev_release.duties.common import breaches, evaluate_rules
from gendev_release.duties.monitoring import alert_rules_document
from gendev_release.prometheus import request_counter
from gendev_release.prometheus_api import LoadedRule, parse_rule_query, rule_problems
from gendev_release.prometheus_local import server_dir, stop_local_prometheus
from gendev_release.spec import ReleaseSpec

#: A spec without monitoring.prometheus: the direct scrape fallback.
DIRECT = {"monitoring": {"prometheus": None}}


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestPrometheus]:
    with running_prometheus(tmp_path_factory.mktemp("prometheus")) as server:
        yield server


def through(prometheus: TestPrometheus) -> dict[str, object]:
    """Spec overrides that name the test's Prometheus as an existing server."""
    return {"monitoring": {"prometheus": {"launch": None, "url": prometheus.url, "job": JOB}}}


def live(target: FakeTarget, prometheus: TestPrometheus, service: FakeService, spec: ReleaseSpec,
         rules: dict[str, object] | None = None) -> None:
    """``service`` live behind ``target``, scraped by ``prometheus`` with ``rules`` (default: the spec's) loaded."""
    go_live(target, "green", service)
    prometheus.load_rules(rules if rules is not None else alert_rules_document(spec, JOB))
    prometheus.scrape(target.url())


# ================================================================================ through Prometheus
def test_monitoring_alerts_pass_through_prometheus(tmp_path: Path, empty_target: FakeTarget,
                                                   prometheus: TestPrometheus) -> None:
    ctx = make_ctx(tmp_path, empty_target, through(prometheus))
    live(empty_target, prometheus, FakeService("1.1.0"), ctx.spec)

    report = run_step(ctx, "monitoring_alerts")

    assert report.status == "passed", report.blocking_issues
    assert f"loaded in Prometheus {prometheus.url}" in item(report, "read").detail
    assert 'error-rate: demo_http_error_ratio{job="demo"} > 0.01' in item(report, "read").detail
    assert "demo_http_requests_total rose" in item(report, "verify").detail
    assert "rules evaluated by Prometheus" in item(report, "check").detail
    summary = json.loads((ctx.paths.workdir / "monitoring" / "monitoring-alerts.json").read_text())
    assert summary["source"]["kind"] == "prometheus" and summary["source"]["url"] == prometheus.url
    assert {r["name"]: r["health"] for r in summary["loaded_rules"]} == {"error-rate": "ok", "latency-p95": "ok"}
    assert [e["state"] for e in summary["evaluations"]] == ["inactive", "inactive"]
    assert [d.name for d in report.deliverables] == ["alert-rules", "Monitoring alerts"]


@pytest.mark.item("monitoring_alerts.read")
def test_rule_loaded_in_prometheus_with_another_threshold_fails_read(tmp_path: Path, empty_target: FakeTarget,
                                                                      prometheus: TestPrometheus) -> None:
    # The ops team's rule file says 5 % errors (the SLA is 1 %) and has no latency rule.
    ctx = make_ctx(tmp_path, empty_target, through(prometheus))
    rules = alert_rules_document(ctx.spec, JOB)
    error_rate, _latency = rules["groups"][0]["rules"]
    error_rate["expr"] = 'demo_http_error_ratio{job="demo"} > 0.05'
    rules["groups"][0]["rules"] = [error_rate]
    live(empty_target, prometheus, FakeService("1.1.0"), ctx.spec, rules)

    report = run_step(ctx, "monitoring_alerts")

    assert_item_fails(report, "monitoring_alerts.read",
                      because='rule error-rate: Prometheus loaded demo_http_error_ratio{job="demo"} > 0.05, the '
                              "spec says demo_http_error_ratio > 0.01")
    read = item(report, "read")
    assert "looser than the SLA it protects" in read.detail
    assert "rule latency-p95 is not loaded in Prometheus" in read.detail
    assert item(report, "verify").passed  # the service itself is scraped fine


@pytest.mark.item("monitoring_alerts.verify")
def test_stale_counter_in_prometheus_fails_verify(tmp_path: Path, empty_target: FakeTarget,
                                                  prometheus: TestPrometheus) -> None:
    ctx = make_ctx(tmp_path, empty_target, through(prometheus))
    live(empty_target, prometheus, FakeService("1.1.0", freeze_counter=True), ctx.spec)

    report = run_step(ctx, "monitoring_alerts")

    assert_item_fails(report, "monitoring_alerts.verify", because="did not increase within")
    assert "although a request was sent: stale samples" in item(report, "verify").detail


def test_unscrapable_metrics_fail_verify_through_prometheus(tmp_path: Path, empty_target: FakeTarget,
                                                            prometheus: TestPrometheus) -> None:
    ctx = make_ctx(tmp_path, empty_target, through(prometheus))
    live(empty_target, prometheus, FakeService("1.1.0", metrics_status=500), ctx.spec)

    report = run_step(ctx, "monitoring_alerts")

    verify = item(report, "verify")
    assert not verify.passed and f"cannot scrape job={JOB}" in verify.detail and "500" in verify.detail


@pytest.mark.item("monitoring_alerts.check")
def test_alert_firing_in_prometheus_is_a_blocker(tmp_path: Path, empty_target: FakeTarget,
                                                 prometheus: TestPrometheus) -> None:
    ctx = make_ctx(tmp_path, empty_target, through(prometheus))
    live(empty_target, prometheus, FakeService("1.1.0", metric_overrides={"demo_http_error_ratio": 0.2}), ctx.spec)

    report = run_step(ctx, "monitoring_alerts")

    assert_item_fails(report, "monitoring_alerts.check", because="alert error-rate is firing in Prometheus")
    assert any("error-rate is firing" in issue and "=0.2" in issue for issue in report.blocking_issues)
    assert report.metrics["alerts_firing"] == 1
    assert item(report, "read").passed and item(report, "verify").passed


def test_rule_on_a_metric_prometheus_does_not_have_fails_check(tmp_path: Path, empty_target: FakeTarget,
                                                               prometheus: TestPrometheus) -> None:
    ctx = make_ctx(tmp_path, empty_target, through(prometheus))
    live(empty_target, prometheus, FakeService("1.1.0", drop_metrics=("demo_http_request_p95_seconds",)), ctx.spec)

    report = run_step(ctx, "monitoring_alerts")

    check = item(report, "check")
    assert not check.passed
    assert f"has no demo_http_request_p95_seconds series for job={JOB}" in check.detail


def test_monitoring_alerts_launch_a_local_prometheus_with_the_spec_rules(tmp_path: Path,
                                                                         empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    ctx = make_ctx(tmp_path, empty_target)  # the demo spec: monitoring.prometheus.launch: local
    assert ctx.spec.monitoring.prometheus is not None and ctx.spec.monitoring.prometheus.launch == "local"
    try:
        first = run_step(ctx, "monitoring_alerts")
        second = run_step(ctx, "monitoring_alerts")
    finally:
        stopped = stop_local_prometheus(ctx.paths.home, "demo")

    assert first.status == "passed", first.blocking_issues
    assert second.status == "passed", second.blocking_issues
    launched = [e for e in item(first, "read").evidence if e.data.get("local")]
    assert "launched on 127.0.0.1 for demo: started" in launched[0].data["origin"]
    assert "reused" in [e for e in item(second, "read").evidence if e.data.get("local")][0].data["origin"]
    config = json.loads((server_dir(ctx.paths.home, "demo") / "prometheus.json").read_text())
    assert config["scrape_configs"][0]["static_configs"] == [{"targets": [empty_target.url().split("//")[1]]}]
    assert stopped is not None and "stopped" in stopped


def test_missing_prometheus_binary_says_how_to_install_it(tmp_path: Path, empty_target: FakeTarget,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENDEV_PROMETHEUS", str(tmp_path / "no-such-prometheus"))
    go_live(empty_target, "green", FakeService("1.1.0"))
    ctx = make_ctx(tmp_path, empty_target)

    report = run_step(ctx, "monitoring_alerts")

    for kind in ("read", "verify", "check"):
        detail = item(report, kind).detail
        assert not item(report, kind).passed and "apt-get install prometheus" in detail, detail


def test_unreachable_prometheus_fails_every_item_naming_it(tmp_path: Path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    ctx = make_ctx(tmp_path, empty_target, {"monitoring": {"prometheus": {"launch": None, "url": empty_target.url()}}})

    report = run_step(ctx, "monitoring_alerts")

    # the router answers, but not as Prometheus does
    assert "is this a Prometheus server?" in item(report, "read").detail
    assert not item(report, "verify").passed and not item(report, "check").passed


# ===================================================================================== direct scrape
def test_monitoring_alerts_pass_with_a_direct_scrape(tmp_path: Path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    ctx = make_ctx(tmp_path, empty_target, DIRECT)

    report = run_step(ctx, "monitoring_alerts")

    assert report.status == "passed", report.blocking_issues
    rules = json.loads((ctx.paths.workdir / "monitoring" / "alert-rules.json").read_text())
    assert [r["expr"] for r in rules["groups"][0]["rules"]] == [
        'demo_http_error_ratio{job="demo"} > 0.01', 'demo_http_request_p95_seconds{job="demo"} > 0.25']
    assert "direct scrape" in item(report, "read").detail and "direct scrape" in item(report, "verify").detail
    assert "demo_http_requests_total" in item(report, "verify").detail
    channel = ctx.paths.home / "notifications" / "demo.jsonl"
    message = json.loads(channel.read_text().splitlines()[-1])
    assert message["severity"] == "info" and message["event"] == "monitoring_test"
    assert report.metrics["alerts_firing"] == 0
    assert [d.name for d in report.deliverables] == ["alert-rules", "Monitoring alerts"]


def test_monitoring_test_notification_names_a_failed_channel_and_keeps_the_others(tmp_path: Path,
                                                                                   empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    two = {**DIRECT, "notifications": {"channel": None, "channels": [
        {"kind": "file", "path": "notifications/ops.jsonl"}, {"kind": "file", "path": "notifications/broken.jsonl"}]}}
    ctx = make_ctx(tmp_path, empty_target, two)
    (ctx.paths.home / "notifications" / "broken.jsonl").mkdir(parents=True)

    report = run_step(ctx, "monitoring_alerts")

    check = item(report, "check")
    assert not check.passed
    assert check.detail.startswith("notification channel notifications.channels[1].path "
                                   "'notifications/broken.jsonl': IsADirectoryError")
    good = ctx.paths.home / "notifications" / "ops.jsonl"
    assert json.loads(good.read_text().splitlines()[-1])["event"] == "monitoring_test"
    assert [e.source for e in check.evidence if e.data.get("delivered") is True] == [str(good.resolve())]
    assert report.facts["notification_channels"] == [str(good.resolve())]
    assert item(report, "verify").passed  # the metrics themselves were fine


def test_firing_alert_rule_on_a_direct_scrape_is_a_blocker(tmp_path: Path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0", metric_overrides={"demo_http_error_ratio": 0.2}))
    ctx = make_ctx(tmp_path, empty_target, DIRECT)

    report = run_step(ctx, "monitoring_alerts")

    check = item(report, "check")
    assert not check.passed
    assert "rule error-rate: demo_http_error_ratio=0.2 > 0.01 is firing" in check.detail
    assert any("error-rate" in issue and "firing" in issue for issue in report.blocking_issues)
    assert report.metrics["alerts_firing"] == 1


def test_rule_on_a_metric_the_service_does_not_export_fails_read_and_check(tmp_path: Path,
                                                                           empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0", drop_metrics=("demo_http_request_p95_seconds",)))
    ctx = make_ctx(tmp_path, empty_target, DIRECT)

    report = run_step(ctx, "monitoring_alerts")

    assert "rule latency-p95: the live service at" in item(report, "read").detail
    check = item(report, "check")
    assert not check.passed
    assert "rule latency-p95: metric demo_http_request_p95_seconds is missing" in check.detail


def test_stale_request_counter_fails_verify(tmp_path: Path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0", freeze_counter=True))
    ctx = make_ctx(tmp_path, empty_target, DIRECT)

    report = run_step(ctx, "monitoring_alerts")

    verify = item(report, "verify")
    assert not verify.passed and "demo_http_requests_total did not increase between scrapes (5 -> 5)" in verify.detail


def test_metrics_endpoint_error_fails_verify(tmp_path: Path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0", metrics_status=500))
    ctx = make_ctx(tmp_path, empty_target, DIRECT)

    report = run_step(ctx, "monitoring_alerts")

    verify = item(report, "verify")
    assert not verify.passed and "/metrics answered 500, expected 200" in verify.detail
    assert not item(report, "check").passed


# ====================================================================================== judgements
def _loaded(name: str, query: str, health: str = "ok", error: str = "") -> LoadedRule:
    return LoadedRule(group="g", file="rules.yml", name=name, query=query, health=health, last_error=error,
                      state="inactive", last_evaluation=1.0, interval=1.0)


def test_rule_problems_compare_loaded_rules_with_the_spec(tmp_path: Path, empty_target: FakeTarget) -> None:
    spec = make_ctx(tmp_path, empty_target).spec
    rules = spec.monitoring.alert_rules

    def problems(*loaded: LoadedRule, waived: bool = False) -> list[str]:
        return rule_problems(rules, loaded, job="demo", p95_latency_ms=250, max_error_rate_pct=1,
                             alert_rules_waived=waived)[1]

    good = [_loaded("error-rate", 'demo_http_error_ratio{job="demo"} > 0.01'),
            _loaded("latency-p95", "demo_http_request_p95_seconds > 0.25")]  # no job matcher: every job
    assert problems(*good) == []
    assert problems(good[0]) == ["rule latency-p95 is not loaded in Prometheus: no alerting rule named latency-p95 "
                                 "(the spec wants demo_http_request_p95_seconds > 0.25)"]
    assert problems(_loaded("error-rate", 'demo_http_error_ratio{job="other"} > 0.01'), good[1]) == [
        'rule error-rate: Prometheus loaded demo_http_error_ratio{job="other"} > 0.01, which selects job="other" '
        'instead of this service\'s job="demo"']
    assert problems(good[0], _loaded("latency-p95", "demo_http_request_p95_seconds < 0.25")) == [
        "rule latency-p95: Prometheus loaded demo_http_request_p95_seconds < 0.25, the spec says "
        "demo_http_request_p95_seconds > 0.25",
        "as loaded in Prometheus, rule latency-p95 protects p95_latency, an upper bound, so it must fire above its "
        "threshold; use op > or >= (not <)"]
    broken = _loaded("error-rate", 'demo_http_error_ratio{job="demo"} > 0.01', "err", "many-to-many matching")
    assert problems(broken, good[1]) == ["rule error-rate is loaded but Prometheus cannot evaluate it: "
                                         "many-to-many matching"]
    # of two rules with the name, the one that agrees with the spec counts
    assert problems(_loaded("error-rate", "rate(x[5m]) > 1"), *good) == []


def test_parse_rule_query_reads_prometheus_formatting() -> None:
    parsed = parse_rule_query('demo_http_error_ratio{job="demo",path=~"/api.*"} >= 1e-05')
    assert (parsed.metric, parsed.op, parsed.threshold) == ("demo_http_error_ratio", ">=", 1e-05)
    assert parsed.matchers == {"job": ("=", "demo"), "path": ("=~", "/api.*")}
    with pytest.raises(ValueError, match="is not '<metric>"):
        parse_rule_query("sum(rate(x[5m])) > 1")


def test_request_counter_prefers_requests_total() -> None:
    text = ("# TYPE app_request_errors_total counter\napp_request_errors_total 3\n"
            "# TYPE app_requests_total counter\n"
            'app_requests_total{code="200"} 10\napp_requests_total{code="500"} 2\n')
    assert request_counter(text) == ("app_requests_total", 12.0)
    assert request_counter("up 1\n") is None


def test_evaluate_rules_reports_firing_and_missing(tmp_path: Path, empty_target: FakeTarget) -> None:
    ctx = make_ctx(tmp_path, empty_target)
    evaluations = evaluate_rules(ctx.spec.monitoring.alert_rules, {'demo_http_error_ratio{path="/a"}': 0.0,
                                                                  'demo_http_error_ratio{path="/b"}': 0.5})
    assert evaluations[0].firing and evaluations[0].worst == 0.5
    assert evaluations[1].missing and not evaluations[1].firing


@pytest.mark.parametrize("op,value,fires", [(">", 1.0, False), (">=", 1.0, True), ("<", 0.5, True), ("<=", 2.0, False)])
def test_breaches(op: str, value: float, fires: bool) -> None:
    assert breaches(value, op, 1.0) is fires
