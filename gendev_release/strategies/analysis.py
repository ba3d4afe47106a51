"""Canary analysis: is the new revision worse than the baseline it runs beside? Pure, no I/O.

Samples are single requests (endpoint, status, latency) taken in the same rounds on both sides,
so load and time of day hit both alike. Two kinds of judgement, both recorded:

* **thresholds** on the canary alone: its error share (no answer, or status >= 500) against
  ``max_error_rate_pct`` and its p95 latency against ``p95_latency_ms``;
* **Mann-Whitney U** (``scipy.stats.mannwhitneyu``, one-sided: the canary's latencies are
  stochastically greater than the baseline's). It fails the step only when the p-value is below
  ``alpha`` *and* the canary's median is slower by more than ``min_latency_shift_ms``: on loopback
  a shift of a fraction of a millisecond is significant and meaningless.

Too few samples on either side fails the analysis: no evidence is never a pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from scipy.stats import mannwhitneyu  # type: ignore[import-untyped]


@dataclass(frozen=True)
class RequestSample:
    """One request: which side (canary/baseline, or flag on/off), the path, its status and latency."""

    group: str
    path: str
    status: int | None
    ms: float
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.status is None or self.status >= 500

    @classmethod
    def of(cls, row: Any) -> RequestSample:
        """From an event's JSON row; :class:`ValueError` naming what is wrong."""
        if not isinstance(row, dict):
            raise ValueError(f"a sample is a mapping, got {type(row).__name__}")
        status = row.get("status")
        ms = row.get("ms")
        if status is not None and (isinstance(status, bool) or not isinstance(status, int)):
            raise ValueError(f"sample status {status!r} is not an integer")
        if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not math.isfinite(ms) or ms < 0:
            raise ValueError(f"sample latency {ms!r} is not a finite number of milliseconds >= 0")
        return cls(group=str(row.get("group", "")), path=str(row.get("path", "")), status=status, ms=float(ms),
                   error=str(row["error"])[:300] if row.get("error") else None)


@dataclass(frozen=True)
class Thresholds:
    max_error_rate_pct: float
    p95_latency_ms: float
    alpha: float
    min_latency_shift_ms: float
    min_samples: int


@dataclass
class SideSummary:
    samples: int
    errors: int
    error_rate_pct: float
    p95_ms: float | None
    median_ms: float | None


@dataclass
class Analysis:
    """The verdict and everything it rests on (written as evidence and into the release report)."""

    passed: bool
    reasons: list[str]
    canary: SideSummary
    baseline: SideSummary
    statistic: float | None
    p_value: float | None
    median_shift_ms: float | None
    thresholds: Thresholds
    test: str = "Mann-Whitney U, one-sided (canary latency greater than baseline)"
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        stat = (f"U={self.statistic:.1f}, p={self.p_value:.3g}" if self.statistic is not None and
                self.p_value is not None else "U not computed")
        head = (f"canary {self.canary.samples} samples, {self.canary.error_rate_pct:.1f} % errors, p95 "
                f"{_ms(self.canary.p95_ms)}; baseline {self.baseline.samples} samples, "
                f"{self.baseline.error_rate_pct:.1f} % errors, p95 {_ms(self.baseline.p95_ms)}; {stat}")
        return head + ("" if self.passed else "; failed: " + "; ".join(self.reasons))


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def nearest_rank(values: Sequence[float], q: float) -> float | None:
    """The q-quantile by nearest rank (the same rule the demo service's metrics use)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def summarize(samples: Sequence[RequestSample]) -> SideSummary:
    latencies = [s.ms for s in samples if not s.failed]
    errors = sum(1 for s in samples if s.failed)
    return SideSummary(samples=len(samples), errors=errors,
                       error_rate_pct=round(100.0 * errors / len(samples), 3) if samples else 0.0,
                       p95_ms=nearest_rank(latencies, 0.95), median_ms=nearest_rank(latencies, 0.5))


def analyse(canary: Sequence[RequestSample], baseline: Sequence[RequestSample], limits: Thresholds, *,
            compare: bool = True) -> Analysis:
    """Judge the canary against the baseline and the thresholds.

    :param compare: False when nothing runs beside the canary (a flag at 100 %): thresholds only,
        the record says the comparison was not made.
    """
    ours, theirs = summarize(canary), summarize(baseline)
    reasons: list[str] = []
    for name, side in (("canary", ours), ("baseline", theirs))[:2 if compare else 1]:
        if side.samples < limits.min_samples:
            reasons.append(f"{name} has {side.samples} samples, fewer than analysis.min_samples "
                           f"({limits.min_samples}): no evidence is not a pass")
    if ours.samples and ours.error_rate_pct > limits.max_error_rate_pct:
        reasons.append(f"canary error rate {ours.error_rate_pct:.2f} % is above {limits.max_error_rate_pct:g} % "
                       f"({ours.errors} of {ours.samples} requests failed)")
    if ours.p95_ms is not None and ours.p95_ms > limits.p95_latency_ms:
        reasons.append(f"canary p95 latency {ours.p95_ms:.1f} ms is above {limits.p95_latency_ms:g} ms")
    canary_ms = [s.ms for s in canary if not s.failed]
    baseline_ms = [s.ms for s in baseline if not s.failed]
    statistic = p_value = shift = None
    if not compare:
        pass
    elif canary_ms and baseline_ms:
        result = mannwhitneyu(canary_ms, baseline_ms, alternative="greater", method="auto")
        statistic, p_value = float(result.statistic), float(result.pvalue)
        if ours.median_ms is not None and theirs.median_ms is not None:
            shift = round(ours.median_ms - theirs.median_ms, 3)
        if p_value < limits.alpha and shift is not None and shift > limits.min_latency_shift_ms:
            reasons.append(f"canary is slower than baseline: median +{shift:.1f} ms, Mann-Whitney U={statistic:.1f}, "
                           f"p={p_value:.3g} < alpha {limits.alpha:g}")
    elif ours.samples >= limits.min_samples:
        reasons.append("no successful canary or baseline request to compare latencies")
    return Analysis(passed=not reasons, reasons=reasons, canary=ours, baseline=theirs, statistic=statistic,
                    p_value=p_value, median_shift_ms=shift, thresholds=limits,
                    test=Analysis.test if compare else "thresholds only: nothing runs beside it to compare with",
                    samples={"canary": [asdict(s) for s in canary], "baseline": [asdict(s) for s in baseline]})
