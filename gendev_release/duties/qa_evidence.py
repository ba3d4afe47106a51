"""Evidence the phase 6 duties gather besides the test results themselves.

* :func:`results_version_problem`: whose results are these? The target's report and the router's
  answers must name this run's version, or the smoke and QA results describe another release.
* :func:`fetch_routes` and :func:`unexercised_routes`: the routes the new version lists itself
  (OpenAPI JSON), which the smoke suite must exercise.
* :func:`run_benchmark`: the QA benchmark through the router against the spec's SLA, and the new
  slot against the previous one, measured now, slot to slot, against the regression tolerance.
* :func:`verify_security`: the live version's security headers through the router on every critical
  endpoint, next to what the hardening step found on the staged slot.

Each returns plain data (and problems as text naming what failed); the duties decide the items.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gendev_release.duties.common import describe_slot
from gendev_release.duties.performance import load_record, paired_load_test, regression_problem
from gendev_release.probes import HttpResult, LoadResult, http_get, load_test
from gendev_release.report import Evidence
from gendev_release.serving import ServingCheck

if TYPE_CHECKING:
    from gendev_release.context import DutyContext

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


# ============================================================================ whose results
def results_version_problem(check: ServingCheck) -> str | None:
    """None when the target's active slot is this run's and the router's answers name this version (and no other).

    Unlike the release gate, an answer without a version (a 5xx of a flaky version) is not held against
    the results here: the results themselves show such failures.
    """
    if not check.target_serves_run:
        return next(iter(check.problems()), "the target does not serve this run's version")
    named = {a.version for a in check.answers if a.version}
    others = sorted(named - {check.expected})
    if others and check.expected in named:
        return (f"{check.url} answered version(s) {', '.join(others)} as well as {check.expected}: the results "
                "would mix releases")
    if others:
        return f"{check.url} answered version(s) {', '.join(others)}, not {check.expected}"
    if check.expected not in named:
        statuses = sorted({str(a.status) if a.status is not None else "no answer" for a in check.answers})
        return f"{check.url} named no version in {len(check.answers)} request(s) ({', '.join(statuses)})"
    return None


# =========================================================================== route listings
@dataclass(frozen=True)
class Route:
    """A GET route the service lists, with the success status it documents."""

    path: str
    expect_status: int = 200

    @property
    def templated(self) -> bool:
        return "{" in self.path

    def matches(self, path: str) -> bool:
        pattern = "".join("[^/]+" if part.startswith("{") else re.escape(part)
                          for part in re.split(r"(\{[^}/]*\})", self.path) if part)
        return re.fullmatch(pattern, path) is not None


def parse_openapi_routes(text: str, source: str) -> list[Route]:
    """The GET routes of an OpenAPI document (JSON); ``ValueError`` naming ``source`` when it is not one."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{source} is not JSON: {exc}") from None
    if not isinstance(document, dict) or not ("openapi" in document or "swagger" in document):
        raise ValueError(f"{source} is not an OpenAPI document: no 'openapi' (or 'swagger') version field")
    paths = document.get("paths")
    if not isinstance(paths, dict):
        raise ValueError(f"{source}: 'paths' is {type(paths).__name__}, expected an object of routes")
    routes = []
    for path, operations in paths.items():
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"{source}: route {path!r} does not start with '/'")
        if not isinstance(operations, dict):
            raise ValueError(f"{source}: route {path} has {type(operations).__name__} operations, expected an object")
        get = operations.get("get")
        if get is None:
            continue
        codes = sorted(int(code) for code in (get.get("responses") or {}) if str(code).isdigit()
                       and 200 <= int(code) < 300) if isinstance(get, dict) else []
        routes.append(Route(path, codes[0] if codes else 200))
    return routes


def fetch_routes(router: str, openapi_path: str) -> tuple[list[Route], str | None, HttpResult]:
    """The routes the live version lists at ``openapi_path``: ``(routes, problem or None, the HTTP answer)``."""
    answer = http_get(router.rstrip("/") + openapi_path, 5.0)
    if answer.status != 200:
        why = f"answered {answer.status}" if answer.status is not None else f"did not answer ({answer.error})"
        return [], f"the route listing {answer.url} (smoke.openapi_path) {why}", answer
    try:
        return parse_openapi_routes(answer.body, answer.url), None, answer
    except ValueError as exc:
        return [], f"the route listing {exc}", answer


def unexercised_routes(routes: list[Route], exercised_paths: set[str]) -> list[Route]:
    """Listed routes that no answered smoke request reached (a template counts when a concrete path matches it)."""
    return [route for route in routes if not any(route.matches(path) for path in exercised_paths)]


# ================================================================================ benchmark
@dataclass
class Benchmark:
    """The QA benchmark: what clients get through the router, and the new slot against the previous one."""

    url: str
    router: LoadResult
    new_direct: LoadResult | None = None
    previous: LoadResult | None = None
    previous_slot: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def record(self, gates: dict[str, float]) -> dict[str, Any]:
        return {"url": self.url, "router": load_record(self.router),
                "active_direct": load_record(self.new_direct) if self.new_direct else None,
                "previous": load_record(self.previous) if self.previous else None,
                "previous_slot": self.previous_slot, "gates": gates, "problems": self.problems, "notes": self.notes}


def run_benchmark(ctx: DutyContext, router: str) -> Benchmark:
    """Benchmark ``load_test.path`` through the router (SLA) and, when a previous slot is kept, both slots directly."""
    settings, gates = ctx.spec.load_test, ctx.spec.quality_gates
    requests = ctx.spec.qa.benchmark_requests
    url = router + settings.path
    bench = Benchmark(url=url, router=load_test(url, requests, settings.concurrency))
    summary = bench.router.summary()
    if not math.isfinite(summary["p95_ms"]) or summary["p95_ms"] > gates.p95_latency_ms:
        bench.problems.append(f"benchmark {url}: p95 {summary['p95_ms']:g} ms > p95_latency_ms "
                              f"{gates.p95_latency_ms:g} ms")
    if summary["error_rate_pct"] > gates.max_error_rate_pct:
        bench.problems.append(f"benchmark {url}: error rate {summary['error_rate_pct']:g} % > max_error_rate_pct "
                              f"{gates.max_error_rate_pct:g} % ({bench.router.status_counts})")
    status = ctx.target.status()
    if status.previous is None or status.active is None:
        bench.notes.append("no previous version is kept: the benchmark is compared with the SLA only")
        return bench
    bench.previous_slot = status.previous.as_dict()
    bench.new_direct, bench.previous = paired_load_test(
        status.active.url.rstrip("/") + settings.path, status.previous.url.rstrip("/") + settings.path,
        requests, settings.concurrency)
    if not bench.previous.latencies_ms:
        bench.notes.append(f"previous slot {describe_slot(status.previous)}: all {bench.previous.requests} requests "
                           f"failed ({bench.previous.status_counts}): no baseline to compare with")
        return bench
    regression = regression_problem(bench.new_direct.percentile(95), bench.previous.percentile(95),
                                    gates.regression_tolerance_pct, gates.regression_min_ms)
    if regression:
        bench.problems.append(f"benchmark against the previous version {status.previous.version} measured in this "
                              f"run: {regression}")
    return bench


# ===================================================================== security verification
def verify_security(ctx: DutyContext, router: str) -> dict[str, Any]:
    """The live version's security headers through the router, next to the hardening step's finding.

    :return: JSON-shaped: ``required_headers``, per critical endpoint the headers seen and missing,
        the hardening report's security controls (or why there is none), and ``problems``.
    """
    security = ctx.spec.security
    required = list(security.required_headers) if "security_headers" in security.required_controls else []
    endpoints = []
    problems = []
    for path in dict.fromkeys(endpoint.path for endpoint in ctx.spec.critical_endpoints):
        answer = http_get(router + path, 5.0)
        missing = [h for h in required if h.lower() not in answer.headers]
        endpoints.append({"path": path, "url": answer.url, "status": answer.status, "error": answer.error,
                          "present": {h: answer.headers.get(h.lower()) for h in required
                                      if h.lower() in answer.headers},
                          "missing": missing})
        if answer.status is None:
            problems.append(f"{answer.url} did not answer: {answer.error}")
        elif missing:
            problems.append(f"{answer.url} lacks security header(s) {', '.join(missing)}")
    hardening = ctx.earlier("hardening")
    earlier: dict[str, Any] = {"found": hardening is not None}
    if hardening is not None:
        controls = hardening.facts.get("controls") or {}
        earlier.update(status=hardening.status, compliance_pct=hardening.facts.get("compliance_pct"),
                       controls=controls)
        seen = (controls.get("security_headers") or {}).get("passed")
        if seen is True and problems:
            problems.append("the hardening step found the headers on the staged slot, so the router or the "
                            "live version lost them since")
    waived = "security_headers" not in security.required_controls
    return {"router": router, "required_headers": required, "security_headers_required": not waived,
            "endpoints": endpoints, "hardening": earlier, "problems": problems}


def security_evidence(record: dict[str, Any]) -> Evidence:
    checked = len(record["endpoints"])
    summary = (f"{checked} critical endpoint(s) through {record['router']}: "
               + ("; ".join(record["problems"]) if record["problems"] else
                  f"every one sends {', '.join(record['required_headers']) or 'no required header'}"))
    return Evidence(kind="http", source=f"{record['router']} security headers", summary=summary, data=record)
