"""Phase 7, second step: post-deployment performance analysis (``performance``).

A bounded load test through the router, confirmed by the live service's own request counter; the
version the readiness step saw live before the release, still kept in the previous slot, measured
the same way (slot to slot, interleaved); p95, error rate and regression gated by the spec's quality
gates. Registered with the observability duty (:mod:`gendev_release.duties.observability` imports
this module), so the verification matrix finds both phase-7 steps there.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from gendev_release.context import DutyContext, write_json_atomic
from gendev_release.duties.base import duty
from gendev_release.duties.common import describe_slot, router_url, target_evidence
from gendev_release.duties.monitoring import JUDGED_ITEMS
from gendev_release.observation import finite
from gendev_release.probes import LoadResult, http_get, load_test
from gendev_release.prometheus import request_counter, scrape_metrics
from gendev_release.report import Evidence, ReportBuilder
from gendev_release.spec import QualityGates
from gendev_release.verification_matrix import ItemProof

_TESTS = "tests/duties/test_observability.py"
PROOFS: dict[str, ItemProof] = {
    "performance.read": ItemProof(
        evidence="a bounded load test through the router (latencies, status counts) and the service's request "
                 "counter scraped before and after it",
        oracle="the live service's own request counter: it must have counted the requests the load test says "
               "were answered",
        fails_when="the service did not count the load test's requests (they went elsewhere, or its metrics are "
                   "frozen), or no request was answered",
        test=f"{_TESTS}::test_load_the_service_did_not_count_fails_read"),
    "performance.verify": ItemProof(
        evidence="the target's state (previous slot) and a paired load test of the new and the previous slot",
        oracle="the version the readiness step saw live before the release (another step's evidence), measured "
               "again in this run",
        fails_when="readiness saw a version live, but the target no longer keeps it (retired) or it does not "
                   "answer: no baseline for the regression comparison",
        test=f"{_TESTS}::test_previous_version_gone_fails_verify"),
    "performance.check": ItemProof(
        evidence="p95 latency and error rate of the load test, and the p95 ratio to the previous version",
        oracle="the spec's quality gates (p95_latency_ms, max_error_rate_pct, regression_tolerance_pct) and the "
               "previous version measured in this run",
        fails_when="the new version answers 25 % of requests with 5xx (error rate over max_error_rate_pct), p95 "
                   "over the SLA, or a regression beyond the tolerance",
        test=f"{_TESTS}::test_error_rate_over_the_sla_fails_check"),
}

#: Floor for the previous p95 in the regression ratio: loopback latencies of a fraction of a ms are noise.
MIN_BASELINE_P95_MS = 1.0


# ================================================================================ performance
def load_record(result: LoadResult) -> dict[str, Any]:
    """A load result as plain JSON (infinite percentiles, from all requests failing, become null)."""
    summary = {key: finite(float(value)) for key, value in result.summary().items()}
    return {"url": result.url, **summary, "status_counts": result.status_counts, "seconds": round(result.seconds, 3)}


def merge_loads(url: str, parts: list[LoadResult]) -> LoadResult:
    """One result from several chunks of a load test against the same URL."""
    statuses: dict[str, int] = {}
    for part in parts:
        for key, count in part.status_counts.items():
            statuses[key] = statuses.get(key, 0) + count
    return LoadResult(url, sum(p.requests for p in parts), sum(p.errors for p in parts),
                      [ms for p in parts for ms in p.latencies_ms], sum(p.seconds for p in parts), statuses)


def paired_load_test(new_url: str, previous_url: str, requests: int, concurrency: int,
                     rounds: int = 4) -> tuple[LoadResult, LoadResult]:
    """Load-test two slots the same way (``requests`` each), interleaved in ``rounds`` chunks.

    Alternating which slot goes first spreads drift on the machine (other work, CPU clock) over both,
    so the p95 ratio reflects the versions rather than the moment each was measured.
    """
    rounds = max(1, min(rounds, requests))
    sizes = [requests // rounds + (1 if index < requests % rounds else 0) for index in range(rounds)]
    new_parts: list[LoadResult] = []
    previous_parts: list[LoadResult] = []
    for index, size in enumerate(sizes):
        order = [(new_url, new_parts), (previous_url, previous_parts)]
        for url, parts in order if index % 2 == 0 else reversed(order):
            parts.append(load_test(url, size, concurrency))
    return merge_loads(new_url, new_parts), merge_loads(previous_url, previous_parts)


def regression_problem(new_p95: float, previous_p95: float, tolerance_pct: float,
                       min_ms: float = 0.0) -> str | None:
    """None when ``new_p95`` is within ``max(previous, 1 ms) * (1 + tolerance)`` or within ``min_ms`` of it.

    ``min_ms`` (``quality_gates.regression_min_ms``) keeps millisecond noise on a busy machine from
    failing a release: a regression must be both relatively and absolutely large.
    """
    base = max(previous_p95, MIN_BASELINE_P95_MS)
    limit = max(base * (1 + tolerance_pct / 100.0), previous_p95 + min_ms)
    if new_p95 <= limit:
        return None
    return (f"p95 regression: {new_p95:g} ms > {limit:g} ms (previous {previous_p95:g} ms, floor "
            f"{MIN_BASELINE_P95_MS:g} ms, + regression_tolerance_pct {tolerance_pct:g} %, "
            f"at least regression_min_ms {min_ms:g} ms)")


def recommendations(p95: float, error_rate: float, gates: QualityGates, ratio: float | None,
                    status_counts: dict[str, int]) -> list[str]:
    """Plain advice from the numbers; always at least the latency headroom."""
    advice = []
    sla = gates.p95_latency_ms
    if not math.isfinite(p95):
        advice.append("no request succeeded: check the service logs and the router before anything else")
    elif p95 > sla:
        advice.append(f"p95 {p95:g} ms exceeds the SLA of {sla:g} ms by {p95 - sla:g} ms: profile the slowest "
                      "endpoint or roll back")
    elif p95 > 0.8 * sla:
        advice.append(f"p95 {p95:g} ms uses {100 * p95 / sla:.0f} % of the {sla:g} ms SLA: little headroom, "
                      "investigate before traffic grows")
    else:
        advice.append(f"latency headroom: p95 {p95:g} ms leaves {sla - p95:g} ms ({100 * (sla - p95) / sla:.0f} %) "
                      f"under the {sla:g} ms SLA")
    if error_rate > 0:
        failing = {k: v for k, v in status_counts.items() if k == "error" or k.startswith("5")}
        advice.append(f"{error_rate:g} % of requests failed {failing}: inspect the server log for these errors")
    if ratio is not None:
        tolerance = 1 + gates.regression_tolerance_pct / 100.0
        if ratio > tolerance:
            advice.append(f"p95 is {ratio:.2f}x the previous version's: review the change set for slower code paths")
        elif ratio > 1.2:
            advice.append(f"p95 is {ratio:.2f}x the previous version's, within tolerance: watch the trend")
        elif ratio < 0.8:
            advice.append(f"p95 improved to {ratio:.2f}x the previous version's")
    return advice




def _record_path(ctx: DutyContext) -> Path:
    return ctx.paths.workdir / "performance" / "load-test.json"


def version_before_release(ctx: DutyContext) -> tuple[str | None, str | None]:
    """``(version, problem)``: what the readiness step saw live before this release (None: nothing was)."""
    readiness = ctx.earlier("readiness")
    if readiness is None:
        return None, "no readiness report in this run: the version live before the release is unknown"
    if "active_version" not in readiness.facts:
        return None, "the readiness report hands on no facts['active_version']"
    value = readiness.facts["active_version"]
    if value is not None and not isinstance(value, str):
        return None, f"the readiness report's facts['active_version'] is {value!r}, not a version"
    return value, None


def _service_counter(url: str) -> tuple[Any, tuple[str, float] | None]:
    answer, text, _ = scrape_metrics(url)
    return answer, request_counter(text) if text else None


def _read_load(ctx: DutyContext, report: ReportBuilder, router: str) -> LoadResult:
    """The load test through the router, confirmed by the live service's own request counter."""
    settings = ctx.spec.load_test
    metrics_url = router + ctx.spec.monitoring.metrics_path
    before_answer, before = _service_counter(metrics_url)
    live = load_test(router + settings.path, settings.requests, settings.concurrency)
    after_answer, after = _service_counter(metrics_url)
    report.evidence("read", live.evidence())
    report.evidence("read", before_answer.evidence(f"service counter before the load test: {before}"))
    report.evidence("read", after_answer.evidence(f"service counter after the load test: {after}"))
    answered = sum(count for status, count in live.status_counts.items() if status != "error")
    problems = []
    counted: float | None = None
    if answered == 0:
        problems.append(f"none of the {live.requests} requests to {live.url} was answered: {live.status_counts}")
    if before is None or after is None or before[0] != after[0]:
        problems.append(f"{metrics_url} exposes no request counter before and after the load test "
                        f"(HTTP {before_answer.status} / {after_answer.status}): the service cannot confirm the load")
    else:
        counted = after[1] - before[1]
        report.evidence("read", Evidence(kind="metric", source=f"{metrics_url} {after[0]}",
                                         summary=f"{after[0]}: {before[1]:g} -> {after[1]:g} (+{counted:g})",
                                         data={"before": before[1], "after": after[1], "answered": answered}))
        if counted < answered:
            problems.append(f"the service counted {counted:g} of the {answered} requests the load test got an answer "
                            f"to ({after[0]} {before[1]:g} -> {after[1]:g}): the load did not reach it, or its "
                            "metrics do not move")
    summary = live.summary()
    record = {"router": load_record(live), "service_counted": counted, "answered": answered,
              "settings": settings.model_dump()}
    write_json_atomic(_record_path(ctx), record)
    report.verdict("read", not problems, "; ".join(problems) or
                   f"{settings.requests} GETs to {live.url} at concurrency {settings.concurrency}: p95 "
                   f"{summary['p95_ms']:g} ms, p99 {summary['p99_ms']:g} ms, errors {summary['error_rate_pct']:g} %; "
                   f"the service counted {counted:g} request(s) for the {answered} answered")
    return live


def _baseline(ctx: DutyContext, report: ReportBuilder, router: str) -> tuple[Any, LoadResult | None,
                                                                            LoadResult | None, str | None]:
    """The previous version, measured like the new one: ``(status, new_direct, previous, problem)``."""
    settings = ctx.spec.load_test
    status = ctx.target.status()
    report.evidence("verify", target_evidence(ctx, status))
    before, problem = version_before_release(ctx)
    report.evidence("verify", Evidence(kind="computed", source="readiness report facts.active_version",
                                       summary=f"live before the release: {before or 'nothing'}",
                                       data={"active_version": before, "problem": problem}))
    if problem:
        return status, None, None, problem
    kept = status.previous
    if before is not None and before != ctx.version:
        if kept is None:
            return status, None, None, (f"readiness saw {before} live before this release, but the target keeps no "
                                        "previous slot: no baseline for the regression comparison")
        if kept.version != before:
            return status, None, None, (f"readiness saw {before} live before this release, but the previous slot "
                                        f"{describe_slot(kept)} runs {kept.version}: not the baseline")
    if kept is None or not kept.url:
        return status, None, None, None
    probe = http_get(kept.url.rstrip("/") + settings.path)
    report.evidence("verify", probe.evidence(f"previous slot {kept.slot} probe: HTTP {probe.status}"))
    if probe.status is None:
        return status, None, None, (f"previous slot {describe_slot(kept)} is kept for rollback but does not answer "
                                    f"({probe.error}): no baseline for the regression comparison")
    # Like for like: both slots directly (no router hop), interleaved, the same request count.
    new_url = (status.active.url if status.active and status.active.url else router).rstrip("/")
    new_direct, previous = paired_load_test(new_url + settings.path, kept.url.rstrip("/") + settings.path,
                                            settings.requests, settings.concurrency)
    report.evidence("verify", previous.evidence())
    report.evidence("verify", new_direct.evidence())
    if not previous.latencies_ms:
        return status, None, None, (f"previous slot {describe_slot(kept)}: all {previous.requests} requests failed "
                                    f"({previous.status_counts}): no baseline for the regression comparison")
    return status, new_direct, previous, None


@duty("performance")
def performance(ctx: DutyContext, report: ReportBuilder) -> None:
    """Bounded load test through the router, the previous version measured the same way, SLA and regression."""
    gates = ctx.spec.quality_gates
    router = router_url(ctx)
    if router is None:
        report.fail_items(JUDGED_ITEMS, "the target has no router URL: nothing to load-test")
        return
    live = _read_load(ctx, report, router)
    status, new_direct, previous, baseline_problem = _baseline(ctx, report, router)

    ratio: float | None = None
    new_p95 = (new_direct or live).percentile(95)
    if previous is not None:
        prev_p95 = previous.percentile(95)
        ratio = new_p95 / max(prev_p95, MIN_BASELINE_P95_MS)
        report.metrics.update({"baseline_p95_ms": round(prev_p95, 3), "p95_ratio": round(ratio, 3)})
        report.verdict("verify", True, f"compared with previous slot {describe_slot(status.previous)} in this run "
                                       f"({previous.requests} requests each, slot to slot, interleaved): "
                                       f"p95 {new_p95:.3f} ms vs {prev_p95:.3f} ms, ratio {ratio:.2f}; and with the "
                                       "SLA")
    elif baseline_problem:
        report.verdict("verify", False, baseline_problem)
    else:
        report.verdict("verify", True, "no previous version was live before this release (readiness saw none) and "
                                       "the target keeps none: compared with the SLA only")
        report.findings.append("no previous version to compare with: performance compared with the SLA only")

    path = _record_path(ctx)
    record = json.loads(path.read_text(encoding="utf-8"))
    record.update({"active_direct": load_record(new_direct) if new_direct else None,
                   "previous": load_record(previous) if previous else None,
                   "previous_slot": status.previous.as_dict() if status.previous else None,
                   "gates": {"p95_latency_ms": gates.p95_latency_ms, "max_error_rate_pct": gates.max_error_rate_pct,
                             "regression_tolerance_pct": gates.regression_tolerance_pct}})
    write_json_atomic(path, record)
    report.deliver("load-test", path)

    summary = live.summary()
    problems = []
    if not math.isfinite(summary["p95_ms"]) or summary["p95_ms"] > gates.p95_latency_ms:
        problems.append(f"p95 {summary['p95_ms']:g} ms through {live.url} > p95_latency_ms {gates.p95_latency_ms:g} ms")
    if summary["error_rate_pct"] > gates.max_error_rate_pct:
        problems.append(f"error rate {summary['error_rate_pct']:g} % through {live.url} > max_error_rate_pct "
                        f"{gates.max_error_rate_pct:g} % ({live.status_counts})")
    if previous is not None:
        regression = regression_problem(new_p95, previous.percentile(95), gates.regression_tolerance_pct,
                                        gates.regression_min_ms)
        if regression:
            problems.append(regression)
    report.metrics.update({key: float(value) for key, value in summary.items()
                           if key != "requests" and math.isfinite(value)})  # JSON has no infinity
    ratio_text = f"{ratio:.2f}" if ratio is not None else "-"
    report.evidence("check", Evidence(kind="computed", source=str(path),
                                      summary=f"p95 {summary['p95_ms']:g} ms, errors {summary['error_rate_pct']:g} %, "
                                              f"ratio {ratio_text}",
                                      data={"router": load_record(live), "ratio": ratio}))
    advice = recommendations(summary["p95_ms"], summary["error_rate_pct"], gates, ratio, live.status_counts)
    report.findings.extend(f"recommendation: {line}" for line in advice)
    report.facts["recommendations"] = advice
    compared = (f", ratio {ratio:.2f} within {gates.regression_tolerance_pct:g} % tolerance" if ratio is not None
                else ", no previous version to compare")
    report.verdict("check", not problems, "; ".join(problems) or
                   f"p95 {summary['p95_ms']:g} ms <= {gates.p95_latency_ms:g} ms, errors "
                   f"{summary['error_rate_pct']:g} % <= {gates.max_error_rate_pct:g} %{compared}")
