"""Phase 6 duties: smoke tests generated from the spec, and QA coordination.

``smoke_tests`` generates a suite from the spec's critical endpoints and health checks (and the
GET routes the new version lists itself, when ``smoke.openapi_path`` names its OpenAPI document),
runs it through the router and writes the results as JUnit XML, read back through junitparser.
Its items are judged against what the duty did not write: the target's report and the router's
answers (the results are of this run's version), the spec (every critical endpoint, health check
and listed route exercised and answered live), and the live answers against the spec's expectations.

``qa`` runs the spec's integration and acceptance suites (argv commands), parses the JUnit each one
writes in this run, and gates on the pass rate (strictly above ``test_pass_pct``, the seed's
">90 %"), coverage (Cobertura/coverage.py XML written during this run, parsed by
:mod:`gendev_release.formats`), a benchmark against the SLA and against the previous version
measured now, and the live version's security headers (:mod:`.qa_evidence`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from gendev_release.commands import run_command, substitute
from gendev_release.context import DutyContext, write_json_atomic
from gendev_release.duties.base import duty
from gendev_release.duties.common import router_url
from gendev_release.duties.qa_evidence import (
    Route,
    fetch_routes,
    results_version_problem,
    run_benchmark,
    security_evidence,
    unexercised_routes,
    verify_security,
)
from gendev_release.duties.smoke_suite import (
    SmokeTest,
    build_smoke_suite,
    read_smoke_suite,
    required_endpoints,
)
from gendev_release.formats import parse_coverage_xml, stale_coverage_problem
from gendev_release.junit import CaseResult, JUnitSummary, parse_junit, write_junit
from gendev_release.paths import resolve_inside
from gendev_release.probes import CheckResult, run_check
from gendev_release.report import Evidence, ReportBuilder, sha256_file, utcnow
from gendev_release.run_record import RecordError, RunRecordStore
from gendev_release.serving import check_serving
from gendev_release.verification_matrix import ItemProof

QA_COMMAND_TIMEOUT = 900.0
SMOKE_TESTS = "Smoke tests"
INTEGRATION_VALIDATION = "Integration validation"
USER_ACCEPTANCE = "User acceptance"
PERFORMANCE_BENCHMARKS = "Performance benchmarks"
SECURITY_VERIFICATION = "Security verification"
_TESTS = "tests/duties/test_testing.py"

#: How the read, verify and check items of ``smoke_tests`` and ``qa`` are decided (the verification matrix).
PROOFS: dict[str, ItemProof] = {
    "smoke_tests.read": ItemProof(
        evidence="the generated suite read back from disk, its JUnit results read back through junitparser, the "
                 "target's status and the router's answers to the spec's version endpoint",
        oracle="the target's own state (this run's slot active) and the live router (its answers name this run's "
               "version and no other), so the results are of this release; one JUnit case per suite test",
        fails_when="the router serves another version than the run's (traffic still or again on the previous "
                   "release), or the results lack a case for a test of the suite",
        test=f"{_TESTS}::test_smoke_results_of_another_version_fail_read"),
    "smoke_tests.verify": ItemProof(
        evidence="the JUnit cases read back and the live HTTP answer of each; the new version's own route "
                 "listing (OpenAPI JSON at smoke.openapi_path) when the spec names one",
        oracle="the spec's critical_endpoints and health checks (path and expectation) and the routes the live "
               "version lists itself: each must have a case that the live service answered",
        fails_when="the new version lists a GET route no smoke request reaches (a templated route such as "
                   "/api/items/{item_id} with no matching critical endpoint), its listing does not answer, or a "
                   "critical endpoint gets no answer at all",
        test=f"{_TESTS}::test_listed_route_not_exercised_fails_verify"),
    "smoke_tests.check": ItemProof(
        evidence="the JUnit results read back (failures, errors, skipped) with each live answer's status and body",
        oracle="the live service's answers through the router judged against each critical endpoint's and health "
               "check's expectations in the spec (status, body); 100 % must pass",
        fails_when="a critical endpoint answers otherwise than the spec expects (a -broken version's /healthz "
                   "answers 503)",
        test=f"{_TESTS}::test_failing_smoke_test_is_named_with_its_message"),
    "qa.read": ItemProof(
        evidence="each suite command's exit code and output, and the JUnit XML it wrote in this run (an earlier "
                 "file is deleted first) parsed through junitparser; the target's status and the router's answers",
        oracle="the output of the test tools run in this run (their JUnit and exit codes must agree), the spec's "
               "suite list (at least one acceptance suite) and the live router naming this run's version",
        fails_when="a suite does not write its JUnit (a stale file from an earlier run is left in place), writes "
                   "malformed XML, exits non-zero with a clean report, no acceptance suite ran, or the router "
                   "serves another version",
        test=f"{_TESTS}::test_missing_junit_fails_read_even_when_a_stale_file_was_there"),
    "qa.verify": ItemProof(
        evidence="per-suite counts (tests, failures, errors, skipped) and failed cases from each suite's JUnit",
        oracle="the JUnit of the tools run in this run, one result per suite the spec names, each with at least "
               "one test case",
        fails_when="a suite's run collects no test (its JUnit lists zero cases)",
        test=f"{_TESTS}::test_suite_without_test_cases_fails_verify"),
    "qa.check": ItemProof(
        evidence="the pass rate over all suites' JUnit, the coverage XML written in this run, a bounded benchmark "
                 "through the router and of the new and previous slots directly (interleaved, same request count), "
                 "the live version's security headers through the router",
        oracle="the spec's quality gates (test_pass_pct, min_coverage_pct, p95_latency_ms, max_error_rate_pct, "
               "regression_tolerance_pct / regression_min_ms), the previous version measured in this run, "
               "security.required_headers and the hardening step's report",
        fails_when="the new version is slower than the previous one beyond the tolerance (or the SLA), errors, "
                   "coverage below the minimum or from before the run, pass rate not above the gate, or a "
                   "required security header missing through the router",
        test=f"{_TESTS}::test_benchmark_slower_than_the_previous_version_fails_check"),
}


# ================================================================================ smoke tests
@duty("smoke_tests")
def smoke_tests(ctx: DutyContext, report: ReportBuilder) -> None:
    """Generate, run and record the smoke suite; it must exercise every required endpoint and pass 100 %."""
    spec = ctx.spec
    smoke_dir = ctx.paths.workdir / "smoke"
    suite_path, results_path = smoke_dir / "smoke-suite.json", smoke_dir / "smoke-results.xml"
    router = router_url(ctx)
    if router is None:
        report.fail("read", "the target has no router URL: the smoke suite cannot run")
        return
    serving = check_serving(ctx)
    report.evidence("read", serving.evidence())
    wrong_version = results_version_problem(serving)
    routes: list[Route] = []
    listing_problem: str | None = None
    if spec.smoke.openapi_path:
        routes, listing_problem, answer = fetch_routes(router, spec.smoke.openapi_path)
        report.evidence("verify", answer.evidence(f"route listing: {listing_problem or f'{len(routes)} GET route(s)'}"))
    write_json_atomic(suite_path, build_smoke_suite(spec, ctx.version, routes))
    try:
        tests = read_smoke_suite(suite_path)
    except ValueError as exc:
        report.fail("read", str(exc))
        return
    report.evidence("read", Evidence.file(suite_path, summary=f"smoke suite: {len(tests)} test(s): "
                                          + ", ".join(t.name for t in tests)))
    report.deliver("smoke-suite", suite_path)

    results: list[CheckResult] = [run_check(router, test) for test in tests]
    cases = [CaseResult(name=test.name, classname=f"smoke.{spec.service}", seconds=result.result.seconds,
                        failure=None if result.passed else result.reason,
                        detail=f"{result.reason}\nbody: {result.result.body[:500]}",
                        properties={"path": test.path, "source": test.source,
                                    "status": str(result.result.status) if result.result.status is not None else ""})
             for test, result in zip(tests, results, strict=True)]
    results_path.unlink(missing_ok=True)
    write_junit(results_path, f"{spec.service}-smoke", cases)
    try:
        summary = parse_junit(results_path)
    except ValueError as exc:
        report.fail("read", str(exc))
        return
    report.evidence("read", Evidence.file(results_path, summary=_junit_line(summary), **summary.as_dict()))
    report.deliver(SMOKE_TESTS, results_path)
    ran = set(summary.case_names)
    unrun = [t.name for t in tests if f"smoke.{spec.service}.{t.name}" not in ran]
    read_problems = [p for p in (wrong_version, f"no result for {unrun}" if unrun else None,
                                 f"{summary.tests} results for {len(tests)} tests" if summary.tests != len(tests)
                                 else None) if p]
    report.verdict("read", not read_problems,
                   ("results are not of this release: " if wrong_version else "") + "; ".join(read_problems)
                   if read_problems else
                   f"{suite_path.name} ({len(tests)} tests) run against {router}, which serves {ctx.version} "
                   f"(slot {serving.active.slot if serving.active else '-'}); {results_path.name}: "
                   f"{_junit_line(summary)}")

    report.evidence("verify", Evidence.file(results_path, summary=f"cases run: {len(ran)}"))
    _smoke_verify(ctx, report, tests, results, ran, routes, listing_problem)

    pct = 100.0 * summary.passed / summary.tests if summary.tests else 0.0
    report.metrics.update({"smoke_tests": float(summary.tests),
                           "smoke_failures": float(summary.failures + summary.errors),
                           "smoke_pass_pct": round(pct, 3)})
    report.facts["smoke"] = summary.as_dict()
    for result in results:
        report.evidence("check", result.result.evidence(f"{result.name}: {result.reason}"))
    report.evidence("check", Evidence(kind="computed", source=str(results_path), summary=_junit_line(summary),
                                      data={"failed_cases": [c.render() for c in summary.failed_cases]}))
    failed = summary.failures + summary.errors + summary.skipped
    report.verdict("check", summary.tests > 0 and failed == 0,
                   f"{summary.passed}/{summary.tests} smoke tests passed through {router}" if not failed else
                   f"{pct:.0f} % of smoke tests passed ({summary.passed}/{summary.tests}), 100 % required: "
                   + "; ".join(c.render() for c in summary.failed_cases))


def _smoke_verify(ctx: DutyContext, report: ReportBuilder, tests: list[SmokeTest], results: list[CheckResult],
                  ran: set[str], routes: list[Route], listing_problem: str | None) -> None:
    """Every required endpoint and listed route has a case in the JUnit read back that the live service answered."""
    required = required_endpoints(ctx.spec)
    service = ctx.spec.service
    answered = {test.key: test.path for test, result in zip(tests, results, strict=True)
                if result.result.status is not None and f"smoke.{service}.{test.name}" in ran}
    unanswered = {test.key: result.reason for test, result in zip(tests, results, strict=True)
                  if result.result.status is None}
    missing = [f"{key} ({source})" + (f": {unanswered[key]}" if key in unanswered else ": no smoke case")
               for key, (_, source) in required.items() if key not in answered]
    unreached = unexercised_routes(routes, set(answered.values()))
    report.evidence("verify", Evidence(
        kind="computed", source="JUnit cases and live answers vs spec.critical_endpoints, spec.health.checks"
                                + (f" and {ctx.spec.smoke.openapi_path}" if ctx.spec.smoke.openapi_path else ""),
        summary=f"{len(required)} required endpoint(s), {len(routes)} listed route(s); {len(answered)} exercised "
                f"and answered; {len(missing) + len(unreached)} not",
        data={"required": {key: source for key, (_, source) in required.items()}, "answered": sorted(answered),
              "missing": missing, "listed_routes": [r.path for r in routes],
              "unexercised_routes": [r.path for r in unreached]}))
    problems = []
    if missing:
        problems.append(f"not exercised live: {'; '.join(missing)}")
    if listing_problem:
        problems.append(listing_problem)
    if unreached:
        problems.append(f"route(s) the new version lists but no smoke request reached: "
                        f"{', '.join(r.path for r in unreached)} (add a critical endpoint with a concrete path)")
    report.verdict("verify", not problems, "; ".join(problems) or
                   f"all {len(required)} critical endpoints and health checks"
                   + (f" and {len(routes)} listed route(s)" if routes else "")
                   + " exercised and answered by the live service")


def _junit_line(summary: JUnitSummary) -> str:
    return (f"{summary.tests} tests, {summary.failures} failures, {summary.errors} errors, "
            f"{summary.skipped} skipped")


# ========================================================================================= QA
def run_started_at(ctx: DutyContext) -> datetime | None:
    """When this run started, from its run record; None when the run has no (readable) record."""
    try:
        record = RunRecordStore(ctx.paths.home).load(ctx.paths.dag_id, ctx.run_id)
    except RecordError:
        return None
    return record.started_at if record is not None else None


def pass_rate_problem(passed: int, tests: int, minimum_pct: float) -> str | None:
    """None when the pass rate is strictly above ``minimum_pct`` (the seed's ">90 %")."""
    if tests == 0:
        return "no test results: a pass rate cannot be computed"
    rate = 100.0 * passed / tests
    if rate > minimum_pct:
        return None
    return f"pass rate {rate:.1f} % ({passed}/{tests}) is not above test_pass_pct {minimum_pct:g} %"


@dataclass(frozen=True)
class SuiteRun:
    """One QA suite as it ran in this attempt: its command, exit code and the JUnit it wrote."""

    name: str
    kind: str
    argv: list[str]
    exit_code: int | None
    junit: Path
    sha256: str
    summary: JUnitSummary

    def as_dict(self) -> dict[str, Any]:
        counts = {k: v for k, v in self.summary.as_dict().items()
                  if k in ("tests", "failures", "errors", "skipped", "passed", "pass_rate_pct")}
        return {**counts, "kind": self.kind, "failed_cases": [c.render() for c in self.summary.failed_cases]}


@duty("qa")
def qa(ctx: DutyContext, report: ReportBuilder) -> None:
    """Run the QA suites, record per-suite results, gate on pass rate, coverage, benchmark and security headers."""
    router = router_url(ctx)
    if router is None:
        report.fail("read", "the target has no router URL: QA suites have nothing to test")
        return
    serving = check_serving(ctx)
    report.evidence("read", serving.evidence())
    runs = _run_suites(ctx, report, router, results_version_problem(serving))
    if runs is None:
        return
    per_suite = {name: run.as_dict() for name, run in runs.items()}
    report.facts["suites"] = per_suite
    for kind, name in (("integration", INTEGRATION_VALIDATION), ("acceptance", USER_ACCEPTANCE)):
        _deliver_suites(ctx, report, name, kind, [run for run in runs.values() if run.kind == kind], router)

    expected = [suite.name for suite in ctx.spec.qa.suites]
    empty = [name for name, run in runs.items() if run.summary.tests == 0]
    absent = [name for name in expected if name not in runs]
    report.evidence("verify", Evidence(kind="computed", source="qa suites' JUnit",
                                       summary="; ".join(f"{n}: {s['passed']}/{s['tests']} passed"
                                                         for n, s in per_suite.items()),
                                       data=per_suite))
    problems = ([f"suite(s) with no test results (their JUnit lists no test case): {', '.join(empty)}"] if empty
                else []) + ([f"no results for suite(s) {', '.join(absent)}"] if absent else [])
    report.verdict("verify", not problems, "; ".join(problems) or
                   "per-suite results recorded: " + "; ".join(
                       f"{n} ({s['kind']}) {s['tests']} tests, {s['failures']} failures, {s['errors']} errors, "
                       f"{s['skipped']} skipped" for n, s in per_suite.items()))
    _check_quality(ctx, report, router, runs)


def _run_suites(ctx: DutyContext, report: ReportBuilder, router: str,
                wrong_version: str | None = None) -> dict[str, SuiteRun] | None:
    """Run every suite's command and parse its JUnit; decide the read item. None when results are missing."""
    workdir = ctx.paths.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    values = ctx.placeholders(url=router)
    runs: dict[str, SuiteRun] = {}
    problems: list[str] = []
    for index, suite in enumerate(ctx.spec.qa.suites):
        junit_path = resolve_inside(workdir, suite.junit, f"qa.suites.{index}.junit")  # never a file outside
        junit_path.unlink(missing_ok=True)  # a file left by an earlier attempt must never be read as this one's
        junit_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            argv = substitute(list(suite.command), values)
        except KeyError as exc:
            problems.append(f"suite {suite.name}: placeholder {{{exc.args[0]}}} has no value in a QA command")
            continue
        result = run_command(argv, cwd=workdir, timeout=QA_COMMAND_TIMEOUT)
        report.evidence("read", result.evidence(f"suite {suite.name}: exit {result.exit_code}"
                                                + (" (timed out)" if result.timed_out else "")))
        if not junit_path.exists():
            problems.append(f"suite {suite.name}: {junit_path} was not written (command exit {result.exit_code}: "
                            f"{(result.stderr or result.stdout).strip()[-300:]})")
            continue
        try:
            summary = parse_junit(junit_path)
        except ValueError as exc:
            problems.append(f"suite {suite.name}: {exc}")
            continue
        report.evidence("read", Evidence.file(junit_path, summary=f"suite {suite.name}: {_junit_line(summary)}",
                                              **summary.as_dict()))
        report.deliver(f"qa-{suite.name}-junit", junit_path)
        if not result.ok and summary.failures + summary.errors == 0:
            problems.append(f"suite {suite.name}: command exited {result.exit_code} but {junit_path.name} reports no "
                            "failures: the results cannot be trusted")
            continue
        runs[suite.name] = SuiteRun(suite.name, suite.kind, argv, result.exit_code, junit_path,
                                    sha256_file(junit_path), summary)
    if problems:
        report.fail("read", "; ".join(problems + ([f"results are not of this release: {wrong_version}"]
                                                  if wrong_version else [])))
        report.fail("verify", "per-suite results incomplete: " + "; ".join(problems))
        report.fail("check", "QA gates not evaluated: suite results are missing")
        return None
    acceptance = [name for name, run in runs.items() if run.kind == "acceptance"]
    read_problems = ([f"results are not of this release: {wrong_version}"] if wrong_version else []) + (
        [] if acceptance else ["no user acceptance results: qa.suites has no suite with kind: acceptance"])
    report.verdict("read", not read_problems, "; ".join(read_problems) or
                   f"{ctx.version} served through {router}; "
                   + "; ".join(f"{name} ({run.kind}): {_junit_line(run.summary)}" for name, run in runs.items()))
    return runs


def _deliver_suites(ctx: DutyContext, report: ReportBuilder, name: str, kind: str, runs: list[SuiteRun],
                    router: str) -> None:
    """The ``Integration validation`` or ``User acceptance`` deliverable: the suites of ``kind`` as they ran."""
    if not runs:
        return
    path = ctx.paths.workdir / "qa" / f"{kind}-results.json"
    write_json_atomic(path, {
        "service": ctx.spec.service, "version": ctx.version, "run_id": ctx.run_id, "kind": kind, "router": router,
        "suites": [{"name": run.name, "argv": run.argv, "exit_code": run.exit_code, "junit": str(run.junit),
                    "junit_sha256": run.sha256, **run.as_dict(),
                    "suites": [{"name": s.name, "tests": s.tests, "failures": s.failures, "errors": s.errors,
                                "skipped": s.skipped} for s in run.summary.suites]} for run in runs],
        "tests": sum(run.summary.tests for run in runs), "passed": sum(run.summary.passed for run in runs)})
    report.deliver(name, path)


def _check_quality(ctx: DutyContext, report: ReportBuilder, router: str, runs: dict[str, SuiteRun]) -> None:
    gates = ctx.spec.quality_gates
    problems: list[str] = []
    tests = sum(run.summary.tests for run in runs.values())
    passed = sum(run.summary.passed for run in runs.values())
    rate = 100.0 * passed / tests if tests else 0.0
    report.metrics.update({"qa_tests": float(tests), "qa_passed": float(passed), "qa_pass_rate_pct": round(rate, 3)})
    failed_cases = [c.render() for run in runs.values() for c in run.summary.failed_cases]
    report.evidence("check", Evidence(kind="computed", source="qa junit results",
                                      summary=f"{passed}/{tests} passed ({rate:.1f} %), "
                                              f"gate > {gates.test_pass_pct:g} %",
                                      data={"passed": passed, "tests": tests, "failed_cases": failed_cases}))
    rate_problem = pass_rate_problem(passed, tests, gates.test_pass_pct)
    if rate_problem:
        problems.append(rate_problem + (f"; failed: {'; '.join(failed_cases[:5])}" if failed_cases else ""))

    coverage_note = _check_coverage(ctx, report, problems)
    bench_note = _check_benchmark(ctx, report, router, problems)
    security = verify_security(ctx, router)
    report.evidence("check", security_evidence(security))
    security_path = ctx.paths.workdir / "qa" / "security-verification.json"
    write_json_atomic(security_path, {"service": ctx.spec.service, "version": ctx.version, "run_id": ctx.run_id,
                                      **security})
    report.deliver(SECURITY_VERIFICATION, security_path)
    problems.extend(security["problems"])
    report.verdict("check", not problems, "; ".join(problems) or
                   f"pass rate {rate:.1f} % > {gates.test_pass_pct:g} %; {coverage_note}; {bench_note}; "
                   f"security headers {', '.join(security['required_headers']) or '(none required)'} on every "
                   "critical endpoint")


def _check_benchmark(ctx: DutyContext, report: ReportBuilder, router: str, problems: list[str]) -> str:
    """Benchmark against the SLA and the previous version, deliver the record; return a note for the pass detail."""
    gates = ctx.spec.quality_gates
    bench = run_benchmark(ctx, router)
    for load in (bench.router, bench.new_direct, bench.previous):
        if load is not None:
            report.evidence("check", load.evidence())
    summary = bench.router.summary()
    report.metrics.update({key: float(summary[name]) for key, name in (("benchmark_p95_ms", "p95_ms"),
                                                                       ("benchmark_error_rate_pct", "error_rate_pct"))
                           if math.isfinite(summary[name])})  # JSON has no infinity (all requests failed)
    if bench.previous is not None and bench.previous.latencies_ms and bench.new_direct is not None:
        report.metrics["benchmark_previous_p95_ms"] = round(bench.previous.percentile(95), 3)
    record = bench.record({"p95_latency_ms": gates.p95_latency_ms, "max_error_rate_pct": gates.max_error_rate_pct,
                           "regression_tolerance_pct": gates.regression_tolerance_pct,
                           "regression_min_ms": gates.regression_min_ms})
    report.facts["benchmark"] = {**summary, "url": bench.url, "previous": record["previous"]}
    path = ctx.paths.workdir / "qa" / "performance-benchmarks.json"
    write_json_atomic(path, {"service": ctx.spec.service, "version": ctx.version, "run_id": ctx.run_id, **record})
    report.deliver(PERFORMANCE_BENCHMARKS, path)
    report.findings.extend(bench.notes)
    problems.extend(bench.problems)
    compared = (f"; no slower than the previous version ({bench.previous.percentile(95):g} ms) beyond the tolerance"
                if bench.previous is not None and bench.previous.latencies_ms else "; no previous version to compare")
    return (f"benchmark {bench.url}: p95 {summary['p95_ms']:g} ms <= {gates.p95_latency_ms:g} ms, errors "
            f"{summary['error_rate_pct']:g} % <= {gates.max_error_rate_pct:g} %{compared}")


def _check_coverage(ctx: DutyContext, report: ReportBuilder, problems: list[str]) -> str:
    """Judge coverage into ``problems``; return a note for the pass detail."""
    minimum = ctx.spec.quality_gates.min_coverage_pct
    relative = ctx.spec.qa.coverage_report
    if relative is None:
        if minimum is not None:
            problems.append(f"quality_gates.min_coverage_pct is {minimum:g} % but qa.coverage_report names no report")
        return "no coverage gate configured"
    path = resolve_inside(ctx.paths.workdir, relative, "qa.coverage_report")
    if not path.exists():
        problems.append(f"coverage report {path} does not exist")
        return ""
    try:
        coverage = parse_coverage_xml(path)
    except ValueError as exc:
        problems.append(str(exc))
        return ""
    # Without a run record (a duty run on its own) the QA step's own start is the bound: stricter, never looser.
    started = run_started_at(ctx)
    not_before, basis = (started, "run start") if started is not None else (report.started_at, "QA step start")
    report.evidence("check", Evidence.file(path, summary=coverage.line(), **coverage.as_dict(),
                                           not_before=not_before.isoformat(), not_before_basis=basis))
    stale = stale_coverage_problem(coverage, not_before, utcnow())
    if stale:
        problems.append(stale)
        return ""
    pct = coverage.line_pct
    report.metrics["coverage_pct"] = round(pct, 3)
    if coverage.branch_pct is not None:
        report.metrics["branch_coverage_pct"] = round(coverage.branch_pct, 3)
    report.facts["coverage"] = coverage.as_dict()
    if minimum is None:
        report.findings.append(f"coverage {pct:.1f} % recorded; no quality_gates.min_coverage_pct to judge it")
        return f"coverage {pct:.1f} % (no minimum set)"
    if pct < minimum:
        problems.append(f"coverage {pct:.1f} % < min_coverage_pct {minimum:g} % ({path.name})")
    return f"coverage {pct:.1f} % >= {minimum:g} %"
