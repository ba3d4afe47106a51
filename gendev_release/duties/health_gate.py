"""The health gate before a switch: consecutive successful rounds of health checks, bounded in time.

:func:`wait_for_streak` is the synchronous driver of :class:`gendev_release.gates.StreakGate`, the
same gate the deferred health triggers use. It probes until ``required`` rounds in a row pass, or
until the next round would start after the timeout; it takes the clock and sleep as parameters, so
its decision is tested without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gendev_release.gates import CheckOutcomes, StreakGate, drive, trailing_streak
from gendev_release.probes import CheckResult

__all__ = ["GateAttempt", "GateResult", "trailing_streak", "wait_for_streak"]


@dataclass(frozen=True)
class GateAttempt:
    index: int
    at_seconds: float
    passed: bool
    failures: list[str]


@dataclass
class GateResult:
    passed: bool
    streak: int
    required: int
    elapsed: float
    attempts: list[GateAttempt] = field(default_factory=list)
    last: list[CheckResult] = field(default_factory=list)

    def describe(self, where: str) -> str:
        head = (f"{self.streak} of {self.required} consecutive successes on {where} "
                f"after {len(self.attempts)} attempt(s) in {self.elapsed:.1f} s")
        failing = next((a for a in reversed(self.attempts) if not a.passed), None)
        return head if failing is None else f"{head}; last failure: {'; '.join(failing.failures)}"


def wait_for_streak(probe: Callable[[], list[CheckResult]], *, required: int, interval: float, timeout: float,
                    clock: Callable[[], float] = time.monotonic,
                    sleep: Callable[[float], None] = time.sleep) -> GateResult:
    """Probe until ``required`` consecutive rounds pass, or until ``timeout`` seconds are used up.

    A round passes when it has checks and every check in it passes. There is always at least one round.
    """
    started = clock()
    gate = StreakGate(required=required, interval=interval, deadline=started + timeout)
    last: list[CheckResult] = []

    def one_round() -> CheckOutcomes:
        nonlocal last
        last = probe()
        return [(check.passed, f"{check.name}: {check.reason}") for check in last]

    verdict = drive(gate, one_round, clock=clock, sleep=sleep)
    attempts = [GateAttempt(r.index, round(r.at - started, 3), r.passed, r.failures) for r in gate.rounds]
    return GateResult(verdict.passed, gate.streak, required, clock() - started, attempts, last)
