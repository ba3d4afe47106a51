"""Phase 6 duties: smoke tests generated from the critical endpoints, and QA coordination.

``smoke_tests`` generates a suite from ``spec.critical_endpoints``, writes it to a file, runs it
through the router and writes the results as JUnit XML; every verdict is taken from the files
read back, never from memory. ``qa`` runs the spec's integration/UAT commands, parses the JUnit
each one writes, and gates on the pass rate (strictly above ``test_pass_pct``, the seed's
">90 %"), coverage (Cobertura/coverage.py XML written during this run, parsed by
:mod:`gendev_release.formats`) and a benchmark against the SLA.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from gendev_release.commands import run_command, substitute
from gendev_release.context import DutyContext, write_json_atomic
from gendev_release.duties.base import duty
from gendev_release.duties.common import router_url
from gendev_release.formats import parse_coverage_xml, stale_coverage_problem
from gendev_release.junit import CaseResult, JUnitSummary, parse_junit, write_junit
from gendev_release.paths import resolve_inside
from gendev_release.probes import load_test, run_check
from gendev_release.report import Evidence, ReportBuilder, utcnow
from gendev_release.run_record import RecordError, RunRecordStore
from gendev_release.spec import Endpoint, ReleaseSpec

QA_COMMAND_TIMEOUT = 900.0


# ================================================================================ smoke tests
@dataclass(frozen=True)
class SmokeTest:
    """One generated smoke test; duck-types as a health check for :func:`probes.run_check`."""

    name: str
    path: str
    expect_status: int = 200
    expect_body_contains: str | None = None
    timeout_seconds: float = 5.0
    method: str = "GET"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SmokeTest:
        return cls(name=str(data["name"]), path=str(data["path"]), expect_status=int(data.get("expect_status", 200)),
                   expect_body_contains=data.get("expect_body_contains"),
                   timeout_seconds=float(data.get("timeout_seconds", 5.0)), method=str(data.get("method", "GET")))


def endpoint_key(path: str, expect_status: int, expect_body_contains: str | None) -> str:
    """How an endpoint's expectation is named in details: ``GET /healthz -> 200 containing 'ok'``."""
    text = f"GET {path} -> {expect_status}"
    return text + (f" containing {expect_body_contains!r}" if expect_body_contains else "")


def build_smoke_suite(spec: ReleaseSpec, version: str) -> dict[str, Any]:
    """One smoke test per critical endpoint, with the endpoint's own expectations."""
    tests = [{"name": f"GET {endpoint.path}", "method": "GET", "path": endpoint.path,
              "expect_status": endpoint.expect_status, "expect_body_contains": endpoint.expect_body_contains,
              "timeout_seconds": 5.0}
             for endpoint in spec.critical_endpoints]
    return {"suite": f"{spec.service}-smoke", "service": spec.service, "version": version,
            "generated_from": "spec.critical_endpoints", "tests": tests}


def suite_coverage(tests: list[SmokeTest], endpoints: list[Endpoint]) -> tuple[list[str], list[str]]:
    """(critical endpoints no test covers with the same expectation, tests for no critical endpoint)."""
    wanted = {endpoint_key(e.path, e.expect_status, e.expect_body_contains) for e in endpoints}
    have = {endpoint_key(t.path, t.expect_status, t.expect_body_contains) for t in tests}
    return sorted(wanted - have), sorted(have - wanted)


def read_smoke_suite(path: Path) -> list[SmokeTest]:
    """The suite as stored on disk; ``ValueError`` when it is not a suite file."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return [SmokeTest.from_dict(entry) for entry in document["tests"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path} is not a smoke suite: {type(exc).__name__}: {exc}") from exc


@duty("smoke_tests")
def smoke_tests(ctx: DutyContext, report: ReportBuilder) -> None:
    """Generate, run and record the smoke suite; it must cover every critical endpoint and pass 100 %."""
    spec = ctx.spec
    smoke_dir = ctx.paths.workdir / "smoke"
    suite_path, results_path = smoke_dir / "smoke-suite.json", smoke_dir / "smoke-results.xml"
    write_json_atomic(suite_path, build_smoke_suite(spec, ctx.version))
    router = router_url(ctx)
    try:
        tests = read_smoke_suite(suite_path)
    except ValueError as exc:
        report.fail("read", str(exc))
        return
    report.evidence("read", Evidence.file(suite_path, summary=f"smoke suite: {len(tests)} test(s): "
                                          + ", ".join(t.name for t in tests)))
    report.deliver("smoke-suite", suite_path)
    if router is None:
        report.fail("read", "the target has no router URL: the smoke suite cannot run")
        return

    cases = []
    for test in tests:
        result = run_check(router, test)
        cases.append(CaseResult(name=test.name, classname=f"smoke.{spec.service}", seconds=result.result.seconds,
                                failure=None if result.passed else result.reason,
                                detail=f"{result.reason}\nbody: {result.result.body[:500]}"))
    results_path.unlink(missing_ok=True)
    write_junit(results_path, f"{spec.service}-smoke", cases)
    try:
        summary = parse_junit(results_path)
    except ValueError as exc:
        report.fail("read", str(exc))
        return
    report.evidence("read", Evidence.file(results_path, summary=_junit_line(summary), **summary.as_dict()))
    report.deliver("smoke-results", results_path)
    ran = set(summary.case_names)
    unrun = [t.name for t in tests if f"smoke.{spec.service}.{t.name}" not in ran]
    report.verdict("read", not unrun and summary.tests == len(tests),
                   f"{suite_path.name} ({len(tests)} tests) run against {router}; {results_path.name}: "
                   f"{_junit_line(summary)}" + (f"; no result for {unrun}" if unrun else ""))

    missing, extra = suite_coverage(tests, list(spec.critical_endpoints))
    report.evidence("verify", Evidence(kind="computed", source=f"{suite_path} vs spec.critical_endpoints",
                                       summary=f"{len(spec.critical_endpoints)} critical endpoint(s), "
                                               f"{len(tests)} test(s), {len(missing)} uncovered",
                                       data={"missing": missing, "extra": extra}))
    report.verdict("verify", not missing,
                   f"uncovered critical endpoint(s): {'; '.join(missing)}" if missing else
                   f"all {len(spec.critical_endpoints)} critical endpoints covered"
                   + (f" (extra tests: {'; '.join(extra)})" if extra else ""))

    pct = 100.0 * summary.passed / summary.tests if summary.tests else 0.0
    report.metrics.update({"smoke_tests": float(summary.tests),
                           "smoke_failures": float(summary.failures + summary.errors),
                           "smoke_pass_pct": round(pct, 3)})
    report.facts["smoke"] = summary.as_dict()
    report.evidence("check", Evidence(kind="computed", source=str(results_path), summary=_junit_line(summary),
                                      data={"failed_cases": [c.render() for c in summary.failed_cases]}))
    failed = summary.failures + summary.errors + summary.skipped
    report.verdict("check", summary.tests > 0 and failed == 0,
                   f"{summary.passed}/{summary.tests} smoke tests passed through {router}" if not failed else
                   f"{pct:.0f} % of smoke tests passed ({summary.passed}/{summary.tests}), 100 % required: "
                   + "; ".join(c.render() for c in summary.failed_cases))


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


@duty("qa")
def qa(ctx: DutyContext, report: ReportBuilder) -> None:
    """Run the QA suites, record per-suite results, gate on pass rate, coverage and a benchmark."""
    router = router_url(ctx)
    if router is None:
        report.fail("read", "the target has no router URL: QA suites have nothing to test")
        return
    results = _run_suites(ctx, report, router)
    if results is None:
        return

    per_suite = {name: {**{k: v for k, v in summary.as_dict().items() if k in ("tests", "failures", "errors",
                                                                             "skipped", "passed", "pass_rate_pct")},
                        "failed_cases": [c.render() for c in summary.failed_cases]}
                 for name, summary in results.items()}
    report.facts["suites"] = per_suite
    empty = [name for name, summary in results.items() if summary.tests == 0]
    report.evidence("verify", Evidence(kind="computed", source="qa suites",
                                       summary="; ".join(f"{n}: {s['passed']}/{s['tests']} passed"
                                                         for n, s in per_suite.items()),
                                       data=per_suite))
    report.verdict("verify", not empty,
                   f"suite(s) with no test results: {', '.join(empty)}" if empty else
                   "per-suite results recorded: " + "; ".join(
                       f"{n} {s['tests']} tests, {s['failures']} failures, {s['errors']} errors, {s['skipped']} skipped"
                       for n, s in per_suite.items()))
    _check_quality(ctx, report, router, results)


def _run_suites(ctx: DutyContext, report: ReportBuilder, router: str) -> dict[str, JUnitSummary] | None:
    """Run every suite's command and parse its JUnit; decide the read item. None when read failed."""
    workdir = ctx.paths.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    values = ctx.placeholders(url=router)
    results: dict[str, JUnitSummary] = {}
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
        results[suite.name] = summary
    if problems:
        report.fail("read", "; ".join(problems))
        report.fail("verify", "per-suite results incomplete: " + "; ".join(problems))
        report.fail("check", "QA gates not evaluated: suite results are missing")
        return None
    report.verdict("read", True, "; ".join(f"{name}: {_junit_line(s)}" for name, s in results.items()))
    return results


def _check_quality(ctx: DutyContext, report: ReportBuilder, router: str, results: dict[str, JUnitSummary]) -> None:
    gates = ctx.spec.quality_gates
    problems: list[str] = []
    tests = sum(s.tests for s in results.values())
    passed = sum(s.passed for s in results.values())
    rate = 100.0 * passed / tests if tests else 0.0
    report.metrics.update({"qa_tests": float(tests), "qa_passed": float(passed), "qa_pass_rate_pct": round(rate, 3)})
    failed_cases = [c.render() for s in results.values() for c in s.failed_cases]
    report.evidence("check", Evidence(kind="computed", source="qa junit results",
                                      summary=f"{passed}/{tests} passed ({rate:.1f} %), "
                                              f"gate > {gates.test_pass_pct:g} %",
                                      data={"passed": passed, "tests": tests, "failed_cases": failed_cases}))
    rate_problem = pass_rate_problem(passed, tests, gates.test_pass_pct)
    if rate_problem:
        problems.append(rate_problem + (f"; failed: {'; '.join(failed_cases[:5])}" if failed_cases else ""))

    coverage_note = _check_coverage(ctx, report, problems)

    url = router + "/version"
    load = load_test(url, ctx.spec.qa.benchmark_requests, ctx.spec.load_test.concurrency)
    report.evidence("check", load.evidence())
    bench = load.summary()
    report.metrics.update({key: float(bench[name]) for key, name in (("benchmark_p95_ms", "p95_ms"),
                                                                     ("benchmark_error_rate_pct", "error_rate_pct"))
                           if math.isfinite(bench[name])})  # JSON has no infinity (all requests failed)
    report.facts["benchmark"] = {**bench, "url": url}
    if not math.isfinite(bench["p95_ms"]) or bench["p95_ms"] > gates.p95_latency_ms:
        problems.append(f"benchmark {url}: p95 {bench['p95_ms']:g} ms > p95_latency_ms {gates.p95_latency_ms:g} ms")
    if bench["error_rate_pct"] > gates.max_error_rate_pct:
        problems.append(f"benchmark {url}: error rate {bench['error_rate_pct']:g} % > max_error_rate_pct "
                        f"{gates.max_error_rate_pct:g} % ({load.status_counts})")
    report.verdict("check", not problems, "; ".join(problems) or
                   f"pass rate {rate:.1f} % > {gates.test_pass_pct:g} %; {coverage_note}; benchmark {url}: "
                   f"p95 {bench['p95_ms']:g} ms <= {gates.p95_latency_ms:g} ms, errors {bench['error_rate_pct']:g} % "
                   f"<= {gates.max_error_rate_pct:g} %")


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
