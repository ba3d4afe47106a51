"""Phase 5: monitoring_alerts (alert rules, fresh samples, quiet rules, a channel that delivers)."""

from __future__ import annotations

import json

import pytest
from duty_helpers import (
    FakeService,
    FakeTarget,
    go_live,
    item,
    make_ctx,
    run_step,
)

from gendev_release.duties.common import breaches, evaluate_rules
from gendev_release.duties.monitoring import alert_rules_document, audit_alert_rules
from gendev_release.prometheus import request_counter

ALL_CHECKS = {"blue_green": {"pre_switch_checks": None}}

# ========================================================================= monitoring_alerts
def test_monitoring_alerts_pass_with_fresh_samples_and_quiet_rules(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    ctx = make_ctx(tmp_path, empty_target)

    report = run_step(ctx, "monitoring_alerts")

    assert report.status == "passed", report.blocking_issues
    rules = json.loads((ctx.paths.workdir / "monitoring" / "alert-rules.json").read_text())
    assert [r["expr"] for r in rules["groups"][0]["rules"]] == [
        "demo_http_error_ratio > 0.01", "demo_http_request_p95_seconds > 0.25"]
    assert "demo_http_requests_total" in item(report, "verify").detail
    channel = ctx.paths.home / "notifications" / "demo.jsonl"
    message = json.loads(channel.read_text().splitlines()[-1])
    assert message["severity"] == "info" and message["event"] == "monitoring_test"
    assert report.metrics["alerts_firing"] == 0
    assert [d.name for d in report.deliverables] == ["alert-rules"]


def test_monitoring_test_notification_names_a_failed_channel_and_keeps_the_others(tmp_path,
                                                                                   empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    two = {"notifications": {"channel": None, "channels": [{"kind": "file", "path": "notifications/ops.jsonl"},
                                                           {"kind": "file", "path": "notifications/broken.jsonl"}]}}
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


def test_firing_alert_rule_is_a_blocker(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0", metric_overrides={"demo_http_error_ratio": 0.2}))
    ctx = make_ctx(tmp_path, empty_target)

    report = run_step(ctx, "monitoring_alerts")

    check = item(report, "check")
    assert not check.passed
    assert "rule error-rate: demo_http_error_ratio=0.2 > 0.01 is firing" in check.detail
    assert any("error-rate" in issue and "firing" in issue for issue in report.blocking_issues)
    assert report.metrics["alerts_firing"] == 1


def test_rule_on_a_missing_metric_fails_check(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0", drop_metrics=("demo_http_request_p95_seconds",)))
    ctx = make_ctx(tmp_path, empty_target)

    report = run_step(ctx, "monitoring_alerts")

    check = item(report, "check")
    assert not check.passed
    assert "rule latency-p95: metric demo_http_request_p95_seconds is missing" in check.detail


def test_stale_request_counter_fails_verify(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0", freeze_counter=True))
    ctx = make_ctx(tmp_path, empty_target)

    report = run_step(ctx, "monitoring_alerts")

    verify = item(report, "verify")
    assert not verify.passed and "demo_http_requests_total did not increase between scrapes (5 -> 5)" in verify.detail


def test_metrics_endpoint_error_fails_verify(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0", metrics_status=500))
    ctx = make_ctx(tmp_path, empty_target)

    report = run_step(ctx, "monitoring_alerts")

    verify = item(report, "verify")
    assert not verify.passed and "/metrics answered 500, expected 200" in verify.detail
    assert not item(report, "check").passed


def test_alert_rule_file_read_back_must_match_the_spec(tmp_path, empty_target: FakeTarget) -> None:
    ctx = make_ctx(tmp_path, empty_target)
    document = alert_rules_document(ctx.spec)
    assert audit_alert_rules(document, ctx.spec.monitoring.alert_rules) == []
    document["groups"][0]["rules"][0]["expr"] = "demo_http_error_ratio > 0.5"
    del document["groups"][0]["rules"][1]
    problems = audit_alert_rules(document, ctx.spec.monitoring.alert_rules)
    assert problems == ["rule error-rate: file says demo_http_error_ratio > 0.5, "
                        "spec says demo_http_error_ratio > 0.01",
                        "rule latency-p95 is missing from the rule file"]


def test_request_counter_prefers_requests_total() -> None:
    text = ("# TYPE app_request_errors_total counter\napp_request_errors_total 3\n"
            "# TYPE app_requests_total counter\n"
            'app_requests_total{code="200"} 10\napp_requests_total{code="500"} 2\n')
    assert request_counter(text) == ("app_requests_total", 12.0)
    assert request_counter("up 1\n") is None


def test_evaluate_rules_reports_firing_and_missing(tmp_path, empty_target: FakeTarget) -> None:
    ctx = make_ctx(tmp_path, empty_target)
    evaluations = evaluate_rules(ctx.spec.monitoring.alert_rules, {'demo_http_error_ratio{path="/a"}': 0.0,
                                                                  'demo_http_error_ratio{path="/b"}': 0.5})
    assert evaluations[0].firing and evaluations[0].worst == 0.5
    assert evaluations[1].missing and not evaluations[1].firing


@pytest.mark.parametrize("op,value,fires", [(">", 1.0, False), (">=", 1.0, True), ("<", 0.5, True), ("<=", 2.0, False)])
def test_breaches(op: str, value: float, fires: bool) -> None:
    assert breaches(value, op, 1.0) is fires


