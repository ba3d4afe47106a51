"""Evidence gathering over HTTP: health checks, metric scrapes and bounded load tests.

Plain synchronous functions (httpx) that the duties, the rollback verifier and the health
trigger's decision logic share. Every result converts to :class:`~gendev_release.report.Evidence`.
"""

from __future__ import annotations

import math
import re
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from gendev_release.gates import check_name, judge_answer
from gendev_release.report import Evidence

_BODY_TAIL = 500


@dataclass(frozen=True)
class HttpResult:
    url: str
    status: int | None
    seconds: float
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    def evidence(self, summary: str = "") -> Evidence:
        return Evidence(kind="http", source=self.url,
                        summary=summary or (f"HTTP {self.status} in {self.seconds * 1000:.1f} ms"
                                            if self.status is not None else f"no answer: {self.error}"),
                        data={"status": self.status, "seconds": round(self.seconds, 4),
                              "body_tail": self.body[-_BODY_TAIL:], "error": self.error,
                              "headers": self.headers})


def http_get(url: str, timeout: float = 2.0, client: httpx.Client | None = None) -> HttpResult:
    started = time.monotonic()
    try:
        if client is not None:
            response = client.get(url, timeout=timeout)
        else:
            response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        return HttpResult(url, None, time.monotonic() - started, error=f"{type(exc).__name__}: {exc}")
    return HttpResult(url, response.status_code, time.monotonic() - started, body=response.text,
                      headers={k.lower(): v for k, v in response.headers.items()})


@dataclass(frozen=True)
class CheckResult:
    name: str
    result: HttpResult
    passed: bool
    reason: str


def run_check(base_url: str, check: Any, client: httpx.Client | None = None) -> CheckResult:
    """Run one spec health check (or endpoint) against ``base_url``; judged by :func:`gates.judge_answer`."""
    result = http_get(base_url.rstrip("/") + check.path, getattr(check, "timeout_seconds", 2.0), client)
    passed, reason = judge_answer(check, result.url, result.status, result.body, result.error)
    return CheckResult(check_name(check), result, passed, reason)


def run_checks(base_url: str, checks: list[Any]) -> list[CheckResult]:
    with httpx.Client() as client:
        return [run_check(base_url, check, client) for check in checks]


# --------------------------------------------------------------------------------- metrics
_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)(?:\s+\d+)?$")


def parse_prometheus_text(text: str) -> dict[str, float]:
    """Parse Prometheus exposition text into ``name{labels} -> value`` (labels kept verbatim)."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE_RE.match(line)
        if not match:
            continue
        name, labels, raw = match.groups()
        try:
            value = float(raw)
        except ValueError:
            continue
        samples[name + (labels or "")] = value
    return samples


def scrape(url: str, timeout: float = 2.0) -> tuple[HttpResult, dict[str, float]]:
    result = http_get(url, timeout)
    if result.status != 200:
        return result, {}
    return result, parse_prometheus_text(result.body)


# ------------------------------------------------------------------------------- load test
@dataclass(frozen=True)
class LoadResult:
    url: str
    requests: int
    errors: int
    latencies_ms: list[float]
    seconds: float
    status_counts: dict[str, int]

    @property
    def error_rate_pct(self) -> float:
        return 100.0 * self.errors / self.requests if self.requests else 100.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return math.inf
        ordered = sorted(self.latencies_ms)
        rank = max(0, math.ceil(q / 100.0 * len(ordered)) - 1)
        return ordered[rank]

    def summary(self) -> dict[str, float]:
        return {"requests": self.requests, "errors": self.errors, "error_rate_pct": round(self.error_rate_pct, 3),
                "p50_ms": round(self.percentile(50), 3), "p95_ms": round(self.percentile(95), 3),
                "p99_ms": round(self.percentile(99), 3),
                "mean_ms": round(statistics.fmean(self.latencies_ms), 3) if self.latencies_ms else math.inf,
                "rps": round(self.requests / self.seconds, 2) if self.seconds else 0.0}

    def evidence(self) -> Evidence:
        summary = self.summary()
        return Evidence(kind="metric", source=self.url,
                        summary=f"{self.requests} requests, p95 {summary['p95_ms']} ms, "
                                f"errors {summary['error_rate_pct']} %",
                        data={**summary, "status_counts": self.status_counts})


def load_test(url: str, requests: int, concurrency: int, timeout: float = 5.0) -> LoadResult:
    """A bounded load test: exactly ``requests`` GETs, ``concurrency`` at a time, loopback only."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors = 0
    started = time.monotonic()
    with httpx.Client(limits=httpx.Limits(max_connections=concurrency)) as client:
        def one(_: int) -> HttpResult:
            return http_get(url, timeout, client)

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for result in pool.map(one, range(requests)):
                key = str(result.status) if result.status is not None else "error"
                statuses[key] = statuses.get(key, 0) + 1
                if result.status is None or result.status >= 500:
                    errors += 1
                else:
                    latencies.append(result.seconds * 1000.0)
    return LoadResult(url, requests, errors, latencies, time.monotonic() - started, statuses)
