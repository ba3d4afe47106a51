"""Phase 6: smoke_tests (generated from the critical endpoints) and qa (suites, coverage, benchmark)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from duty_helpers import RUN_ID, FakeService, FakeTarget, Response, go_live, item, make_ctx, run_step, save_report
from item_proof import assert_item_fails

from gendev_release.catalogue import step_by_id
from gendev_release.duties import testing
from gendev_release.duties.base import run_duty
from gendev_release.duties.qa_evidence import Route, parse_openapi_routes
from gendev_release.duties.smoke_suite import SmokeTest, required_endpoints, suite_coverage
from gendev_release.duties.testing import pass_rate_problem
from gendev_release.junit import parse_junit
from gendev_release.report import utcnow
from gendev_release.run_record import RunRecord, RunRecordStore

COPY_AND_EXIT = "import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2]); sys.exit(int(sys.argv[3]))"
FIXTURES = Path(__file__).parents[1] / "fixtures" / "formats"
#: A QA suite as pytest with pytest-cov runs it: JUnit and coverage XML written by the same command;
#: ``fresh`` stamps the coverage report with the time it is written (as ``coverage xml`` does).
RUN_SUITE_WITH_COVERAGE = """\
import pathlib, re, shutil, sys, time
junit, junit_out, coverage, coverage_out, stamp = sys.argv[1:6]
shutil.copy(junit, junit_out)
text = pathlib.Path(coverage).read_text(encoding="utf-8")
if stamp == "fresh":
    text = re.sub(r'timestamp="\\d+"', f'timestamp="{int(time.time() * 1000)}"', text, count=1)
pathlib.Path(coverage_out).parent.mkdir(parents=True, exist_ok=True)
pathlib.Path(coverage_out).write_text(text, encoding="utf-8")
"""


def _junit(tests: int, failures: int) -> str:
    cases = "".join(f'<testcase classname="uat" name="case{i}">' + ("<failure message='no'/>" if i < failures else "")
                    + "</testcase>" for i in range(tests))
    return f'<testsuites><testsuite name="uat" tests="{tests}">{cases}</testsuite></testsuites>'


def _copy_suite(tmp_path: Path, content: str, exit_code: int = 0, kind: str = "acceptance") -> dict:
    """A QA suite whose command copies a prepared JUnit file into place, then exits with ``exit_code``."""
    source = tmp_path / "prepared.xml"
    source.write_text(content, encoding="utf-8")
    return {"qa": {"suites": [{"name": "uat", "command": ["{python}", "-c", COPY_AND_EXIT, str(source),
                                                             "{workdir}/qa/uat.xml", str(exit_code)],
                               "junit": "qa/uat.xml", "kind": kind}]}}


def _delivered(report, name: str) -> dict:
    path = next(Path(d.path) for d in report.deliverables if d.name == name)
    return json.loads(path.read_text(encoding="utf-8"))


class ListsItsRoutes(FakeService):
    """A version that lists its GET routes as OpenAPI JSON and serves one item per id under /api/items/{id}."""

    def __init__(self, version: str, routes: dict[str, dict], **knobs) -> None:
        super().__init__(version, **knobs)
        self.routes = routes

    def respond(self, path: str) -> Response:
        if path == "/openapi.json":
            document = {"openapi": "3.1.0", "info": {"title": "demo", "version": self.version}, "paths": self.routes}
            return 200, {"Content-Type": "application/json"}, json.dumps(document).encode()
        if path.startswith("/api/items/") or path == "/api/stats":
            return 200, {"Content-Type": "application/json"}, b'{"id": 1, "name": "alpha"}'
        return super().respond(path)


def _get(*codes: str) -> dict:
    return {"get": {"responses": {code: {"description": "ok"} for code in codes or ("200",)}}}


DEMO_ROUTES = {"/healthz": _get(), "/version": _get(), "/api/items": _get(), "/metrics": {"post": {}}}


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
    assert {d.name for d in report.deliverables} == {"smoke-suite", "Smoke tests"}
    assert item(report, "verify").detail == ("all 3 critical endpoints and health checks exercised and answered by "
                                             "the live service")
    assert "which serves 1.1.0 (slot green)" in item(report, "read").detail


@pytest.mark.item("smoke_tests.read")
def test_smoke_results_of_another_version_fail_read(tmp_path, empty_target: FakeTarget) -> None:
    # Traffic is still on the previous release: its smoke results pass, but they are not results for 1.1.0.
    go_live(empty_target, "green", FakeService("1.0.0"))
    ctx = make_ctx(tmp_path, empty_target, version="1.1.0")

    report = run_step(ctx, "smoke_tests")

    assert_item_fails(report, "smoke_tests.read", because="the target's active version is 1.0.0, not 1.1.0")
    assert item(report, "check").passed  # the suite itself passed: only the read item knows it tested 1.0.0


class AnswersAs(FakeService):
    """A slot the target records as one version whose ``/version`` names another (a stale process on the port)."""

    def __init__(self, version: str, answers_as: str) -> None:
        super().__init__(version)
        self.answers_as = answers_as

    def respond(self, path: str) -> Response:
        if path == "/version":
            return 200, {"Content-Type": "application/json"}, json.dumps({"version": self.answers_as}).encode()
        return super().respond(path)


def test_smoke_results_when_the_router_answers_another_version_fail_read(tmp_path,
                                                                         empty_target: FakeTarget) -> None:
    # The target's record says 1.1.0 is live, but what answers behind the router names 1.0.0.
    go_live(empty_target, "green", AnswersAs("1.1.0", answers_as="1.0.0"))
    ctx = make_ctx(tmp_path, empty_target)

    read = item(run_step(ctx, "smoke_tests"), "read")

    assert not read.passed
    assert read.detail == f"results are not of this release: {empty_target.url()} answered version(s) 1.0.0, not 1.1.0"


@pytest.mark.item("smoke_tests.check")
def test_failing_smoke_test_is_named_with_its_message(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0-broken"))
    ctx = make_ctx(tmp_path, empty_target, version="1.1.0-broken")

    report = run_step(ctx, "smoke_tests")

    assert_item_fails(report, "smoke_tests.check", because="100 % required")
    check = item(report, "check")
    assert "67 % of smoke tests passed (2/3), 100 % required" in check.detail
    assert "smoke.demo.GET /healthz -> 200 containing 'ok' (failure):" in check.detail
    assert "answered 503, expected 200" in check.detail
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

    def forgetful(spec, version, routes=None):
        suite = generate(spec, version, routes)
        suite["tests"] = suite["tests"][:-1]
        return suite

    monkeypatch.setattr(testing, "build_smoke_suite", forgetful)

    report = run_step(ctx, "smoke_tests")

    verify = item(report, "verify")
    assert not verify.passed
    assert verify.detail == "not exercised live: GET /api/items -> 200 (critical_endpoints): no smoke case"


def test_suite_coverage_compares_expectations_too(tmp_path, empty_target: FakeTarget) -> None:
    ctx = make_ctx(tmp_path, empty_target)
    weaker = [SmokeTest("GET /healthz", "/healthz"), SmokeTest("GET /version", "/version"),
              SmokeTest("GET /api/items", "/api/items"), SmokeTest("GET /extra", "/extra")]
    missing, extra = suite_coverage(weaker, list(required_endpoints(ctx.spec)))
    assert missing == ["GET /healthz -> 200 containing 'ok'"]
    assert extra == ["GET /extra -> 200", "GET /healthz -> 200"]


def test_health_checks_join_the_smoke_suite(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    ctx = make_ctx(tmp_path, empty_target, {"critical_endpoints": [{"path": "/api/items"}]})

    report = run_step(ctx, "smoke_tests")

    assert report.status == "passed", report.blocking_issues
    suite = json.loads((ctx.paths.workdir / "smoke" / "smoke-suite.json").read_text())
    assert [(t["path"], t["source"]) for t in suite["tests"]] == [
        ("/api/items", "critical_endpoints"), ("/healthz", "health.checks.healthz"),
        ("/version", "health.checks.version")]


@pytest.mark.item("smoke_tests.verify")
def test_listed_route_not_exercised_fails_verify(tmp_path, empty_target: FakeTarget) -> None:
    # The new version lists /api/items/{item_id}; no critical endpoint reaches it, so no smoke test can.
    routes = {**DEMO_ROUTES, "/api/items/{item_id}": _get()}
    go_live(empty_target, "green", ListsItsRoutes("1.1.0", routes))
    ctx = make_ctx(tmp_path, empty_target, {"smoke": {"openapi_path": "/openapi.json"}})

    report = run_step(ctx, "smoke_tests")

    assert_item_fails(report, "smoke_tests.verify",
                      because="route(s) the new version lists but no smoke request reached: /api/items/{item_id}")
    assert item(report, "check").passed  # every test that ran passed: only verify sees the gap


def test_listed_routes_are_exercised(tmp_path, empty_target: FakeTarget) -> None:
    # A concrete route gets a test of its own; a templated one is reached through a critical endpoint.
    routes = {**DEMO_ROUTES, "/api/items/{item_id}": _get(), "/api/stats": _get("200")}
    go_live(empty_target, "green", ListsItsRoutes("1.1.0", routes))
    endpoints = [{"path": "/healthz", "expect_body_contains": "ok"}, {"path": "/version"}, {"path": "/api/items"},
                 {"path": "/api/items/1"}]
    ctx = make_ctx(tmp_path, empty_target, {"smoke": {"openapi_path": "/openapi.json"},
                                            "critical_endpoints": endpoints})

    report = run_step(ctx, "smoke_tests")

    assert report.status == "passed", report.blocking_issues
    suite = json.loads((ctx.paths.workdir / "smoke" / "smoke-suite.json").read_text())
    assert [t["path"] for t in suite["tests"] if t["source"] == "openapi"] == ["/api/stats"]
    assert "and 5 listed route(s) exercised" in item(report, "verify").detail


def test_route_listing_that_does_not_answer_fails_verify(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))  # no /openapi.json: it answers 404
    ctx = make_ctx(tmp_path, empty_target, {"smoke": {"openapi_path": "/openapi.json"}})

    verify = item(run_step(ctx, "smoke_tests"), "verify")

    assert not verify.passed and "/openapi.json (smoke.openapi_path) answered 404" in verify.detail


def test_openapi_routes_parsing() -> None:
    text = json.dumps({"openapi": "3.0.3", "paths": {"/a": _get("201", "200"), "/b/{id}": _get("404"),
                                                      "/c": {"post": {}}}})
    assert parse_openapi_routes(text, "x") == [Route("/a", 200), Route("/b/{id}", 200)]
    assert Route("/b/{id}").matches("/b/7") and not Route("/b/{id}").matches("/b/7/c")
    with pytest.raises(ValueError, match="x is not an OpenAPI document"):
        parse_openapi_routes('{"paths": {}}', "x")
    with pytest.raises(ValueError, match="route 'a' does not start with '/'"):
        parse_openapi_routes('{"openapi": "3.1.0", "paths": {"a": {}}}', "x")


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
    assert (report.facts["suites"]["uat"]["tests"], report.facts["suites"]["uat"]["kind"]) == (2, "acceptance")
    assert report.metrics["qa_pass_rate_pct"] == 100
    assert "benchmark" in report.facts and report.facts["benchmark"]["requests"] == 20
    assert [d.name for d in report.deliverables] == [
        "qa-integration-junit", "qa-uat-junit", "Integration validation", "User acceptance",
        "Performance benchmarks", "Security verification"]
    assert "integration (integration) 6 tests, 0 failures" in item(report, "verify").detail
    acceptance = _delivered(report, "User acceptance")
    assert [(s["name"], s["tests"], s["passed"]) for s in acceptance["suites"]] == [("uat", 2, 2)]
    security = _delivered(report, "Security verification")
    assert [e["missing"] for e in security["endpoints"]] == [[], [], []]
    assert any(f.startswith("no previous version is kept") for f in report.findings)


def test_demo_checks_fail_on_a_broken_service(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0-broken", security_headers=False, items=[{"name": "no id"}]))
    ctx = make_ctx(tmp_path, empty_target, version="1.1.0-broken")

    report = run_step(ctx, "qa")

    suite = report.facts["suites"]["integration"]
    assert (suite["tests"], suite["failures"]) == (6, 3)
    failed = " ".join(suite["failed_cases"])
    assert "healthz_ok" in failed and "security_headers_present" in failed and "items_listed_with_ids" in failed
    assert (report.facts["suites"]["uat"]["tests"], report.facts["suites"]["uat"]["failures"]) == (2, 0)
    check = item(report, "check")
    assert not check.passed and "pass rate 62.5 % (5/8) is not above test_pass_pct 90 %" in check.detail
    assert "/api/items lacks security header(s) X-Content-Type-Options, X-Frame-Options" in check.detail


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


@pytest.mark.item("qa.read")
def test_missing_junit_fails_read_even_when_a_stale_file_was_there(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    overrides = {"qa": {"suites": [{"name": "uat", "command": ["{python}", "-c", "pass"], "junit": "qa/uat.xml"}]}}
    ctx = make_ctx(tmp_path, empty_target, overrides)
    stale = ctx.paths.workdir / "qa" / "uat.xml"
    stale.parent.mkdir(parents=True)
    stale.write_text(_junit(3, 0), encoding="utf-8")

    report = run_step(ctx, "qa")

    assert_item_fails(report, "qa.read", because="uat.xml was not written (command exit 0")
    assert "suite uat:" in item(report, "read").detail
    assert not item(report, "check").passed


def test_qa_without_an_acceptance_suite_fails_read(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    ctx = make_ctx(tmp_path, empty_target, _copy_suite(tmp_path, _junit(20, 0), kind="integration"))

    report = run_step(ctx, "qa")

    read = item(report, "read")
    assert not read.passed
    assert read.detail == "no user acceptance results: qa.suites has no suite with kind: acceptance"
    assert item(report, "verify").passed and item(report, "check").passed


def test_qa_results_of_another_version_fail_read(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.0.0"))
    ctx = make_ctx(tmp_path, empty_target, _copy_suite(tmp_path, _junit(20, 0)), version="1.1.0")

    read = item(run_step(ctx, "qa"), "read")

    assert not read.passed
    assert read.detail == "results are not of this release: the target's active version is 1.0.0, not 1.1.0"


@pytest.mark.item("qa.verify")
def test_suite_without_test_cases_fails_verify(tmp_path, empty_target: FakeTarget) -> None:
    # The suite ran and wrote JUnit, but collected nothing (pytest writes tests="0" then).
    go_live(empty_target, "green", FakeService("1.1.0"))
    ctx = make_ctx(tmp_path, empty_target, _copy_suite(tmp_path, _junit(0, 0)))

    report = run_step(ctx, "qa")

    assert item(report, "read").passed
    assert_item_fails(report, "qa.verify",
                      because="suite(s) with no test results (their JUnit lists no test case): uat")


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


def _suite_with_coverage(tmp_path: Path, coverage_fixture: str | Path, stamp: str = "fresh",
                         min_coverage_pct: float | None = 70) -> dict:
    """A QA suite that writes 20 passing cases and ``coverage_fixture`` (a fixture name or a path) as
    qa/coverage.xml, stamped with the time it is written (``fresh``) or as it is (``kept``)."""
    script, junit = tmp_path / "run_suite.py", tmp_path / "prepared.xml"
    script.write_text(RUN_SUITE_WITH_COVERAGE, encoding="utf-8")
    junit.write_text(_junit(20, 0), encoding="utf-8")
    command = ["{python}", str(script), str(junit), "{workdir}/qa/uat.xml", str(FIXTURES / coverage_fixture),
               "{workdir}/qa/coverage.xml", stamp]
    overrides: dict = {"qa": {"suites": [{"name": "uat", "command": command, "junit": "qa/uat.xml",
                                          "kind": "acceptance"}],
                              "coverage_report": "qa/coverage.xml"}}
    if min_coverage_pct is not None:
        overrides["quality_gates"] = {"min_coverage_pct": min_coverage_pct}
    return overrides


def test_coverage_written_by_the_suite_passes_the_gate(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    ctx = make_ctx(tmp_path, empty_target, _suite_with_coverage(tmp_path, "coverage-py.xml", min_coverage_pct=70))

    report = run_step(ctx, "qa")

    assert report.status == "passed", report.blocking_issues
    check = item(report, "check")
    assert "coverage 74.3 % >= 70 %" in check.detail
    assert (report.metrics["coverage_pct"], report.metrics["branch_coverage_pct"]) == (74.32, 69.44)
    assert (report.facts["coverage"]["classes"], report.facts["coverage"]["packages"]) == (3, 2)
    evidence = next(e for e in check.evidence if e.source.endswith("coverage.xml"))
    assert evidence.sha256 and evidence.data["not_before_basis"] == "QA step start"


def test_coverage_below_minimum_fails_check_naming_both_figures(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    ctx = make_ctx(tmp_path, empty_target, _suite_with_coverage(tmp_path, "coverage-py.xml", min_coverage_pct=80))

    report = run_step(ctx, "qa")

    check = item(report, "check")
    assert not check.passed and check.detail == "coverage 74.3 % < min_coverage_pct 80 % (coverage.xml)"
    assert report.metrics["coverage_pct"] == 74.32


def test_coverage_report_from_before_the_run_is_refused(tmp_path, empty_target: FakeTarget) -> None:
    # The suite leaves a coverage.xml of an earlier build in place (its timestamp is from 2024).
    go_live(empty_target, "green", FakeService("1.1.0"))
    ctx = make_ctx(tmp_path, empty_target, _suite_with_coverage(tmp_path, "coverage-py.xml", stamp="kept"))

    report = run_step(ctx, "qa")

    check = item(report, "check")
    assert not check.passed
    assert check.detail.startswith(f"coverage report {ctx.paths.workdir / 'qa' / 'coverage.xml'} was written at "
                                   "2024-06-10T14:02:11.482000+00:00, before this run started (")
    assert "coverage_pct" not in report.metrics


def test_coverage_written_earlier_in_this_run_counts_from_the_run_start(tmp_path, empty_target: FakeTarget) -> None:
    # The build step of this run wrote coverage 10 minutes ago; the run record says the run began an hour ago.
    go_live(empty_target, "green", FakeService("1.1.0"))
    written = int((utcnow() - timedelta(minutes=10)).timestamp() * 1000)
    earlier = tmp_path / "coverage-earlier.xml"
    earlier.write_text((FIXTURES / "coverage-py.xml").read_text(encoding="utf-8").replace(
        'timestamp="1718028131482"', f'timestamp="{written}"'), encoding="utf-8")
    ctx = make_ctx(tmp_path, empty_target, _suite_with_coverage(tmp_path, earlier, stamp="kept"))
    RunRecordStore(ctx.paths.home).save(RunRecord(dag_id=ctx.paths.dag_id, run_id=ctx.run_id, service="demo",
                                                  version=ctx.version, started_at=utcnow() - timedelta(hours=1)))

    report = run_step(ctx, "qa")

    check = item(report, "check")
    assert check.passed, check.detail
    evidence = next(e for e in check.evidence if e.source.endswith("coverage.xml"))
    assert evidence.data["not_before_basis"] == "run start"


@pytest.mark.parametrize(("fixture", "expected"), [
    pytest.param("coverage-no-classes.xml", "names 0 package(s) and no class: it measured nothing",
                 id="no_classes"),
    pytest.param("coverage-billion-laughs.xml", "declares the XML entity 'a'", id="billion_laughs"),
    pytest.param("junit-pytest.xml", "not Cobertura/coverage.py XML: root element is <testsuites>",
                 id="junit_named_as_coverage"),
])
def test_unusable_coverage_report_fails_check(tmp_path, empty_target: FakeTarget, fixture: str,
                                              expected: str) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"))
    ctx = make_ctx(tmp_path, empty_target, _suite_with_coverage(tmp_path, fixture, stamp="kept"))

    check = item(run_step(ctx, "qa"), "check")

    assert not check.passed and expected in check.detail


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
    assert "benchmark " + empty_target.url() + "/api/items: p95" in check.detail  # demo.yaml's load_test.path
    assert "> p95_latency_ms 10 ms" in check.detail
    assert report.metrics["benchmark_p95_ms"] >= 30


@pytest.mark.item("qa.check")
def test_benchmark_slower_than_the_previous_version_fails_check(tmp_path, empty_target: FakeTarget) -> None:
    # Within the 250 ms SLA, but 150 ms slower than 1.0.0 measured in the same run, slot to slot.
    go_live(empty_target, "green", FakeService("1.1.0", slow_ms=150), previous=("blue", FakeService("1.0.0")))
    ctx = make_ctx(tmp_path, empty_target, _copy_suite(tmp_path, _junit(20, 0)))

    report = run_step(ctx, "qa")

    assert_item_fails(report, "qa.check", because="benchmark against the previous version 1.0.0 measured in this run: "
                                                  "p95 regression")
    benchmarks = _delivered(report, "Performance benchmarks")
    assert benchmarks["previous_slot"]["version"] == "1.0.0"
    assert benchmarks["active_direct"]["p95_ms"] > benchmarks["previous"]["p95_ms"]
    assert benchmarks["active_direct"]["requests"] == benchmarks["previous"]["requests"] == 20


def test_benchmark_as_fast_as_the_previous_version_passes(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0"), previous=("blue", FakeService("1.0.0")))
    ctx = make_ctx(tmp_path, empty_target, _copy_suite(tmp_path, _junit(20, 0)))

    report = run_step(ctx, "qa")

    assert report.status == "passed", report.blocking_issues
    assert "no slower than the previous version" in item(report, "check").detail
    assert "benchmark_previous_p95_ms" in report.metrics


def test_security_headers_lost_since_hardening_fail_check(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0", security_headers=False))
    ctx = make_ctx(tmp_path, empty_target, _copy_suite(tmp_path, _junit(20, 0)))
    hardening = {"security_headers": {"passed": True, "detail": "the staged slot sends them"}}
    save_report(ctx, "hardening", {"controls": hardening, "compliance_pct": 100.0})

    report = run_step(ctx, "qa")

    check = item(report, "check")
    assert not check.passed
    assert "/healthz lacks security header(s) X-Content-Type-Options, X-Frame-Options" in check.detail
    assert "the hardening step found the headers on the staged slot" in check.detail
    security = _delivered(report, "Security verification")
    assert security["hardening"]["controls"]["security_headers"]["passed"] is True


def test_benchmark_errors_fail_check(tmp_path, empty_target: FakeTarget) -> None:
    go_live(empty_target, "green", FakeService("1.1.0-errors"))
    ctx = make_ctx(tmp_path, empty_target, _copy_suite(tmp_path, _junit(20, 0)), version="1.1.0-errors")

    report = run_step(ctx, "qa")

    check = item(report, "check")
    assert not check.passed and "error rate 25 % > max_error_rate_pct 1 %" in check.detail


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

    uat = ["--suite", "acceptance", "--base-url", empty_target.url() or "", "--junit", str(junit)]
    assert demo_qa.main([*uat, "--expect-version", "1.1.0"]) == 0
    assert parse_junit(junit).tests == 2
    assert demo_qa.main([*uat, "--expect-version", "1.2.0"]) == 1
    assert [c.message.split(",")[0] for c in parse_junit(junit).failed_cases] == [
        "GET /version answered ['1.1.0'"]
    with pytest.raises(SystemExit):
        demo_qa.main(uat)  # acceptance needs the released version


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
    assert qa.facts["suites"]["uat"]["tests"] == 2 and qa.facts["suites"]["uat"]["failures"] == 0
    # the real router and demo service send every required header
    assert _delivered(qa, "Security verification")["problems"] == []


def test_phase_6_deliverables_are_delivered_on_the_demo_spec(tmp_path, empty_target: FakeTarget) -> None:
    """Every seed deliverable of phase 6 is a non-empty file in the evidence store, listed in its manifest."""
    go_live(empty_target, "green", FakeService("1.1.0"), previous=("blue", FakeService("1.0.0")))
    ctx = make_ctx(tmp_path, empty_target)  # the demo spec: its integration and uat suites

    reports = [run_duty(ctx, "smoke_tests"), run_duty(ctx, "qa")]

    assert [r.status for r in reports] == ["passed", "passed"], [r.blocking_issues for r in reports]
    phase, _ = step_by_id("qa")
    stored = {line["name"]: line for line in ctx.store.manifest() if line["step"] in ("smoke_tests", "qa")}
    assert [name for name in phase.deliverables if name not in stored] == []
    for name in phase.deliverables:
        assert stored[name]["size"] > 0 and ctx.store.read(stored[name]["stored"]).strip(), name


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
