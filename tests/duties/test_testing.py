"""Phase 6: smoke_tests (generated from the critical endpoints) and qa (suites, coverage, benchmark)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from duty_helpers import RUN_ID, FakeService, FakeTarget, go_live, item, make_ctx, run_step

from gendev_release.duties import testing
from gendev_release.duties.testing import SmokeTest, parse_coverage_xml, pass_rate_problem, suite_coverage
from gendev_release.junit import parse_junit

COPY_AND_EXIT = "import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2]); sys.exit(int(sys.argv[3]))"


def _junit(tests: int, failures: int) -> str:
    cases = "".join(f'<testcase classname="uat" name="case{i}">' + ("<failure message='no'/>" if i < failures else "")
                    + "</testcase>" for i in range(tests))
    return f'<testsuites><testsuite name="uat" tests="{tests}">{cases}</testsuite></testsuites>'


def _copy_suite(tmp_path: Path, content: str, exit_code: int = 0) -> dict:
    """A QA suite whose command copies a prepared JUnit file into place, then exits with ``exit_code``."""
    source = tmp_path / "prepared.xml"
    source.write_text(content, encoding="utf-8")
    return {"qa": {"suites": [{"name": "uat", "command": ["{python}", "-c", COPY_AND_EXIT, str(source),
                                                             "{workdir}/qa/uat.xml", str(exit_code)],
                               "junit": "qa/uat.xml"}]}}


# ================================================================================ smoke tests
def test_smoke_suite_generated_run_and_passing(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    ctx = make_ctx(tmp_path, empty_target)

    report = run_step(ctx, "smoke_tests")

    assert report.status == "passed", report.blocking_issues
    suite = json.loads((ctx.paths.workdir / "smoke" / "smoke-suite.json").read_text())
    assert [t["path"] for t in suite["tests"]] == ["/healthz", "/version", "/api/items"]
    results = parse_junit(ctx.paths.workdir / "smoke" / "smoke-results.xml")
    assert results.tests == 3 and results.failures == 0
    assert report.metrics["smoke_pass_pct"] == 100
    assert {d.name for d in report.deliverables} == {"smoke-suite", "smoke-results"}
    assert item(report, "verify").detail == "all 3 critical endpoints covered"


def test_failing_smoke_test_is_named_with_its_message(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0-broken"))
    ctx = make_ctx(tmp_path, empty_target, version="1.1.0-broken")

    report = run_step(ctx, "smoke_tests")

    check = item(report, "check")
    assert not check.passed
    assert "67 % of smoke tests passed (2/3), 100 % required" in check.detail
    assert "smoke.demo.GET /healthz (failure):" in check.detail and "answered 503, expected 200" in check.detail
    junit = (ctx.paths.workdir / "smoke" / "smoke-results.xml").read_text()
    assert 'message="' in junit and "answered 503" in junit
    assert item(report, "read").passed and item(report, "verify").passed


def test_body_expectation_is_part_of_the_smoke_test(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    endpoints = [{"path": "/api/items", "expect_body_contains": "zeta"}]
    ctx = make_ctx(tmp_path, empty_target, {"critical_endpoints": endpoints})

    report = run_step(ctx, "smoke_tests")

    assert not item(report, "check").passed
    assert "body lacks 'zeta'" in item(report, "check").detail


def test_uncovered_critical_endpoint_fails_verify(tmp_path, empty_target: FakeTarget, monkeypatch) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    ctx = make_ctx(tmp_path, empty_target)
    generate = testing.build_smoke_suite

    def forgetful(spec, version):
        suite = generate(spec, version)
        suite["tests"] = suite["tests"][:-1]
        return suite

    monkeypatch.setattr(testing, "build_smoke_suite", forgetful)

    report = run_step(ctx, "smoke_tests")

    verify = item(report, "verify")
    assert not verify.passed
    assert verify.detail == "uncovered critical endpoint(s): GET /api/items -> 200"


def test_suite_coverage_compares_expectations_too(tmp_path, empty_target: FakeTarget) -> None:
    ctx = make_ctx(tmp_path, empty_target)
    weaker = [SmokeTest("GET /healthz", "/healthz"), SmokeTest("GET /version", "/version"),
              SmokeTest("GET /api/items", "/api/items"), SmokeTest("GET /extra", "/extra")]
    missing, extra = suite_coverage(weaker, list(ctx.spec.critical_endpoints))
    assert missing == ["GET /healthz -> 200 containing 'ok'"]
    assert extra == ["GET /extra -> 200", "GET /healthz -> 200"]


def test_smoke_without_router_fails_read(tmp_path, empty_target: FakeTarget) -> None:
    empty_target.router_enabled = False
    ctx = make_ctx(tmp_path, empty_target)
    report = run_step(ctx, "smoke_tests")
    assert not item(report, "read").passed and "no router URL" in item(report, "read").detail


# ========================================================================================= QA
def test_qa_with_the_demo_checks_passes(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    ctx = make_ctx(tmp_path, empty_target)  # demo.yaml's suite: python -m gendev_release.demo.qa

    report = run_step(ctx, "qa")

    assert report.status == "passed", report.blocking_issues
    assert report.facts["suites"]["integration"]["tests"] == 6
    assert report.facts["suites"]["integration"]["failures"] == 0
    assert report.metrics["qa_pass_rate_pct"] == 100
    assert "benchmark" in report.facts and report.facts["benchmark"]["requests"] == 20
    assert [d.name for d in report.deliverables] == ["qa-integration-junit"]
    assert "integration 6 tests, 0 failures" in item(report, "verify").detail


def test_demo_checks_fail_on_a_broken_service(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0-broken", security_headers=False, items=[{"name": "no id"}]))
    ctx = make_ctx(tmp_path, empty_target, version="1.1.0-broken")

    report = run_step(ctx, "qa")

    suite = report.facts["suites"]["integration"]
    assert (suite["tests"], suite["failures"]) == (6, 3)
    failed = " ".join(suite["failed_cases"])
    assert "healthz_ok" in failed and "security_headers_present" in failed and "items_listed_with_ids" in failed
    check = item(report, "check")
    assert not check.passed and "pass rate 50.0 % (3/6) is not above test_pass_pct 90 %" in check.detail


def test_pass_rate_of_exactly_90_percent_fails(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    ctx = make_ctx(tmp_path, empty_target, _copy_suite(tmp_path, _junit(10, 1), exit_code=1))

    report = run_step(ctx, "qa")

    assert item(report, "read").passed and item(report, "verify").passed
    check = item(report, "check")
    assert not check.passed
    assert "pass rate 90.0 % (9/10) is not above test_pass_pct 90 %" in check.detail
    assert "uat.case0 (failure): no" in check.detail


def test_pass_rate_gate_is_strict() -> None:
    assert pass_rate_problem(9, 10, 90.0) is not None
    assert pass_rate_problem(91, 100, 90.0) is None
    assert pass_rate_problem(0, 0, 90.0) == "no test results: a pass rate cannot be computed"


def test_missing_junit_fails_read_even_when_a_stale_file_was_there(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    overrides = {"qa": {"suites": [{"name": "uat", "command": ["{python}", "-c", "pass"], "junit": "qa/uat.xml"}]}}
    ctx = make_ctx(tmp_path, empty_target, overrides)
    stale = ctx.paths.workdir / "qa" / "uat.xml"
    stale.parent.mkdir(parents=True)
    stale.write_text(_junit(3, 0), encoding="utf-8")

    report = run_step(ctx, "qa")

    read = item(report, "read")
    assert not read.passed and "suite uat:" in read.detail and "uat.xml was not written (command exit 0" in read.detail
    assert not item(report, "check").passed


@pytest.mark.parametrize(("junit", "exit_code", "expected"), [
    pytest.param("<testsuite><testcase", 0, "malformed JUnit XML", id="malformed_junit"),
    pytest.param(_junit(5, 0), 2, "command exited 2 but uat.xml reports no failures",
                 id="crashed_command_with_clean_junit_is_not_trusted"),
])
def test_untrustworthy_suite_results_fail_read(tmp_path, empty_target: FakeTarget, junit: str, exit_code: int,
                                               expected: str) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    ctx = make_ctx(tmp_path, empty_target, _copy_suite(tmp_path, junit, exit_code=exit_code))

    report = run_step(ctx, "qa")

    read = item(report, "read")
    assert not read.passed and expected in read.detail


def test_coverage_below_minimum_fails_check(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    overrides = _copy_suite(tmp_path, _junit(20, 0))
    overrides["qa"]["coverage_report"] = "qa/coverage.xml"
    overrides["quality_gates"] = {"min_coverage_pct": 80}
    ctx = make_ctx(tmp_path, empty_target, overrides)
    coverage = ctx.paths.workdir / "qa" / "coverage.xml"
    coverage.parent.mkdir(parents=True)
    coverage.write_text('<?xml version="1.0" ?><coverage version="7.6" line-rate="0.5" branch-rate="0"/>')

    report = run_step(ctx, "qa")

    check = item(report, "check")
    assert not check.passed and "coverage 50.0 % < min_coverage_pct 80 % (coverage.xml)" in check.detail
    assert report.metrics["coverage_pct"] == 50


def test_coverage_gate_without_report_fails(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    overrides = _copy_suite(tmp_path, _junit(20, 0))
    overrides["quality_gates"] = {"min_coverage_pct": 80}
    ctx = make_ctx(tmp_path, empty_target, overrides)

    report = run_step(ctx, "qa")

    assert "min_coverage_pct is 80 % but qa.coverage_report names no report" in item(report, "check").detail


def test_benchmark_over_the_sla_fails_check(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0", slow_ms=30))
    overrides = _copy_suite(tmp_path, _junit(20, 0))
    overrides["quality_gates"] = {"p95_latency_ms": 10}
    ctx = make_ctx(tmp_path, empty_target, overrides)

    report = run_step(ctx, "qa")

    check = item(report, "check")
    assert not check.passed
    assert "/version: p95" in check.detail and "> p95_latency_ms 10 ms" in check.detail
    assert report.metrics["benchmark_p95_ms"] >= 30


def test_benchmark_errors_fail_check(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0-errors"))
    ctx = make_ctx(tmp_path, empty_target, _copy_suite(tmp_path, _junit(20, 0)), version="1.1.0-errors")

    report = run_step(ctx, "qa")

    check = item(report, "check")
    assert not check.passed and "error rate 25 % > max_error_rate_pct 1 %" in check.detail


@pytest.mark.parametrize("text,message", [
    ("<coverage line-rate='0.931'/>", None),
    ("<report/>", "expected <coverage>"),
    ("<coverage/>", "no line-rate"),
    ("<coverage line-rate='1.5'/>", "outside 0..1"),
    ("<coverage", "malformed coverage XML"),
])
def test_parse_coverage_xml(tmp_path: Path, text: str, message: str | None) -> None:
    path = tmp_path / "coverage.xml"
    path.write_text(text)
    if message is None:
        assert parse_coverage_xml(path) == pytest.approx(93.1)
    else:
        with pytest.raises(ValueError, match=message):
            parse_coverage_xml(path)


def test_demo_qa_cli_writes_junit_and_exit_code(tmp_path, empty_target: FakeTarget) -> None:
    from gendev_release.demo import qa as demo_qa

    go_live(empty_target, "green", FakeService("1.1.0"))
    junit = tmp_path / "out" / "qa.xml"
    assert demo_qa.main(["--base-url", empty_target.url() or "", "--junit", str(junit)]) == 0
    assert parse_junit(junit).tests == 6

    empty_target.service_of("green").broken = True
    assert demo_qa.main(["--base-url", empty_target.url() or "", "--junit", str(junit)]) == 1
    summary = parse_junit(junit)
    assert [c.name for c in summary.failed_cases] == ["healthz_ok"]


# ==================================================================== the real local target
def test_real_local_target_smoke_and_qa_pass(tmp_path, local_target) -> None:
    ctx = make_ctx(tmp_path, local_target)
    live = local_target.stage("1.1.0", RUN_ID)
    local_target.switch(live.slot, RUN_ID)

    smoke = run_step(ctx, "smoke_tests")
    qa = run_step(ctx, "qa")  # runs python -m gendev_release.demo.qa against the router

    assert smoke.status == "passed", smoke.blocking_issues
    assert qa.status == "passed", qa.blocking_issues
    assert qa.facts["suites"]["integration"]["tests"] == 6 and qa.facts["suites"]["integration"]["failures"] == 0


def test_real_local_target_errors_version_fails_the_qa_benchmark(tmp_path, local_target) -> None:
    ctx = make_ctx(tmp_path, local_target, version="1.1.0-errors")
    live = local_target.stage("1.1.0-errors", RUN_ID)
    local_target.switch(live.slot, RUN_ID)

    qa = run_step(ctx, "qa")

    check = item(qa, "check")
    assert not check.passed and "error rate 25 % > max_error_rate_pct 1 %" in check.detail


def test_demo_tools_use_the_specs_version_rule() -> None:
    from gendev_release.demo import build as demo_build
    from gendev_release.demo import qa as demo_qa
    from gendev_release.spec_rules import VERSION_RE

    assert demo_qa.VERSION_RE is VERSION_RE and demo_build.VERSION_RE is VERSION_RE
