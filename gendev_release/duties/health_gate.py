"""The health gate before a switch: consecutive successful rounds of health checks, bounded in time.

:func:`wait_for_streak` probes until ``required`` rounds in a row pass or the timeout is used up;
it takes the clock and sleep as parameters, so its decision is tested without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gendev_release.probes import CheckResult


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


def trailing_streak(outcomes: Sequence[bool]) -> int:
    """How many of the last outcomes were successes in a row."""
    streak = 0
    for outcome in reversed(outcomes):
        if not outcome:
            break
        streak += 1
    return streak


def wait_for_streak(probe: Callable[[], list[CheckResult]], *, required: int, interval: float, timeout: float,
                    clock: Callable[[], float] = time.monotonic,
                    sleep: Callable[[float], None] = time.sleep) -> GateResult:
    """Probe until ``required`` consecutive rounds pass, or until ``timeout`` seconds are used up.

    A round passes when every check in it passes. There is always at least one round.
    """
    started = clock()
    attempts: list[GateAttempt] = []
    last: list[CheckResult] = []
    while True:
        last = probe()
        ok = bool(last) and all(check.passed for check in last)
        attempts.append(GateAttempt(len(attempts) + 1, round(clock() - started, 3), ok,
                                    [f"{c.name}: {c.reason}" for c in last if not c.passed]))
        streak = trailing_streak([a.passed for a in attempts])
        if streak >= required:
            return GateResult(True, streak, required, clock() - started, attempts, last)
        if clock() - started + interval > timeout:
            return GateResult(False, streak, required, clock() - started, attempts, last)
        sleep(interval)
