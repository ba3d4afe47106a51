"""The one gate implementation: what every wait decides, shared by the triggers and the synchronous paths.

A gate is a pure object. Its driver shows it what one round observed, ``observe(outcome, now)``,
and the gate answers with a :class:`Verdict` once it has decided (None: go on); ``wait(now)`` says
how long to sleep before the next round. Times are seconds on the driver's clock: the triggers use
the wall clock (``time.time()``) with wall-clock deadlines, so a triggerer restart loses no time,
only the rounds a gate had seen; a synchronous path inside a worker may use a monotonic clock.
:func:`drive` (synchronous) and :func:`drive_async` (a trigger's event loop) are the two drivers.

Gates:

* :class:`StreakGate`: ``required`` consecutive healthy rounds before a deadline (health waits);
* :class:`BakeGate`: sample health over a wall-clock window; more failed rounds than allowed fail
  it at once (a bake or observation window);
* :class:`SamplingGate`: collect metric samples over a window; too few usable samples fail it;
* :class:`WindowGate`: wait until the change window is open, or fail when it would open too late.

The per-check judgement lives here too (:func:`judge_answer`): the synchronous probes
(:func:`gendev_release.probes.run_check`) and the health triggers call it with what a check's URL
answered, so one rule decides whether a health check passed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol, TypeVar

from gendev_release.change_window import WindowLike, WindowState, evaluate

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)

#: A change-window gate re-reads the clock at least this often (seconds): a clock that jumps (NTP)
#: or a long sleep that overshoots never delays the opening by more than this.
WINDOW_RECHECK_SECONDS = 60.0


# ================================================================================ check judgement
@dataclass(frozen=True)
class Probe:
    """A health check as plain data (what crosses into the triggerer); duck-types as a spec ``HealthCheck``."""

    name: str
    path: str
    expect_status: int = 200
    expect_body_contains: str | None = None
    timeout_seconds: float = 2.0

    @classmethod
    def of(cls, check: Any) -> Probe:
        """From a spec health check, a critical endpoint, or its JSON (``model_dump(mode="json")``)."""
        def get(key: str, default: Any = None) -> Any:
            return check.get(key, default) if isinstance(check, dict) else getattr(check, key, default)

        path = str(get("path"))
        return cls(name=str(get("name") or path), path=path, expect_status=int(get("expect_status", 200)),
                   expect_body_contains=get("expect_body_contains"),
                   timeout_seconds=float(get("timeout_seconds", 2.0) or 2.0))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_name(check: Any) -> str:
    """How a check is named in results: its ``name``, else its path."""
    return getattr(check, "name", None) or check.path


def judge_answer(check: Any, url: str, status: int | None, body: str, error: str | None) -> tuple[bool, str]:
    """Did ``check`` pass, given what ``url`` answered? Returns ``(passed, reason)``.

    :param check: anything with ``expect_status`` and, optionally, ``expect_body_contains``.
    :param status: the HTTP status, or None when nothing answered (then ``error`` says why).
    """
    if status is None:
        return False, f"no answer from {url}: {error}"
    if status != check.expect_status:
        return False, f"{url} answered {status}, expected {check.expect_status}"
    needle = getattr(check, "expect_body_contains", None)
    if needle and needle not in body:
        return False, f"{url} body lacks {needle!r}"
    return True, f"{url} answered {status}"


# ================================================================================ gate protocol
@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str


class Gate(Protocol[T_contra]):
    def observe(self, outcome: T_contra, now: float) -> Verdict | None: ...

    def wait(self, now: float) -> float: ...


@dataclass(frozen=True)
class Round:
    """One round of checks: when (driver clock), whether every check passed, and what failed."""

    index: int
    at: float
    passed: bool
    failures: list[str]


#: What a round of health checks observed: ``(passed, reason)`` per check.
CheckOutcomes = Sequence[tuple[bool, str]]


def round_of(index: int, now: float, outcomes: CheckOutcomes) -> Round:
    """A round passes when it ran at least one check and every check passed."""
    failures = [reason for passed, reason in outcomes if not passed]
    return Round(index, now, bool(outcomes) and not failures, failures)


def trailing_streak(outcomes: Sequence[bool]) -> int:
    """How many of the last outcomes were successes in a row."""
    streak = 0
    for outcome in reversed(outcomes):
        if not outcome:
            break
        streak += 1
    return streak


@dataclass
class StreakGate:
    """Passes after ``required`` consecutive healthy rounds; fails when the next round would start after ``deadline``.

    There is always at least one round; a failed round resets the streak.
    """

    required: int
    interval: float
    deadline: float
    rounds: list[Round] = field(default_factory=list)

    @property
    def streak(self) -> int:
        return trailing_streak([r.passed for r in self.rounds])

    @property
    def last_failures(self) -> list[str]:
        failing = next((r for r in reversed(self.rounds) if not r.passed), None)
        return failing.failures if failing else []

    def observe(self, outcome: CheckOutcomes, now: float) -> Verdict | None:
        self.rounds.append(round_of(len(self.rounds) + 1, now, outcome))
        if self.streak >= self.required:
            return Verdict(True, f"{self.streak} consecutive healthy rounds")
        if now + self.interval > self.deadline:
            why = "; ".join(self.last_failures) or "not enough consecutive healthy rounds"
            return Verdict(False, f"deadline passed after {len(self.rounds)} rounds "
                                  f"({self.streak} of {self.required} in a row): {why}")
        return None

    def wait(self, now: float) -> float:
        return self.interval


@dataclass
class BakeGate:
    """Sample health until ``until``; passes then unless more than ``failure_limit`` rounds failed (fails at once)."""

    until: float
    interval: float
    failure_limit: int = 0
    rounds: list[Round] = field(default_factory=list)

    @property
    def failed(self) -> list[Round]:
        return [r for r in self.rounds if not r.passed]

    def observe(self, outcome: CheckOutcomes, now: float) -> Verdict | None:
        self.rounds.append(round_of(len(self.rounds) + 1, now, outcome))
        failed = self.failed
        if len(failed) > self.failure_limit:
            last = "; ".join(failed[-1].failures) or "no checks ran"
            return Verdict(False, f"{len(failed)} of {len(self.rounds)} rounds failed during the window "
                                  f"(at most {self.failure_limit} allowed): {last}")
        if now >= self.until:
            return Verdict(True, f"{len(self.rounds)} rounds over the window, {len(failed)} failed "
                                 f"(at most {self.failure_limit} allowed)")
        return None

    def wait(self, now: float) -> float:
        return max(0.0, min(self.interval, self.until - now))


@dataclass(frozen=True)
class Sample:
    """One metric sample: when (driver clock), whether it is usable, its values (``series -> value``)."""

    at: float
    ok: bool
    values: dict[str, float] = field(default_factory=dict)
    status: int | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SamplingGate:
    """Collect samples until ``until``; passes then when at least ``min_samples`` are usable."""

    until: float
    interval: float
    min_samples: int = 2
    samples: list[Sample] = field(default_factory=list)

    def observe(self, outcome: Sequence[Sample], now: float) -> Verdict | None:
        self.samples.extend(outcome)
        if now < self.until:
            return None
        usable = sum(1 for s in self.samples if s.ok)
        if usable >= self.min_samples:
            return Verdict(True, f"{usable} usable of {len(self.samples)} samples over the window")
        errors = sorted({s.error for s in self.samples if s.error})
        return Verdict(False, f"only {usable} usable of {len(self.samples)} samples over the window (at least "
                              f"{self.min_samples} needed)" + (f": {'; '.join(errors)}" if errors else ""))

    def wait(self, now: float) -> float:
        return max(0.0, min(self.interval, self.until - now))


@dataclass
class WindowGate:
    """Passes when the change window is open; fails when its next opening is after ``deadline`` (or never)."""

    window: WindowLike
    deadline: float
    last: WindowState | None = None

    def observe(self, outcome: object, now: float) -> Verdict | None:
        state = self.last = evaluate(self.window, datetime.fromtimestamp(now, timezone.utc))
        if state.open:
            return Verdict(True, state.reason)
        if state.opens_at is None:
            return Verdict(False, state.reason)
        if state.opens_at.timestamp() > self.deadline:
            limit = datetime.fromtimestamp(self.deadline, timezone.utc).isoformat()
            return Verdict(False, f"{state.reason}; that is after the longest wait allowed (until {limit}, "
                                  "change_window.max_wait_hours)")
        return None

    def wait(self, now: float) -> float:
        opens = self.last.opens_at.timestamp() if self.last and self.last.opens_at else now
        return max(0.0, min(WINDOW_RECHECK_SECONDS, opens - now))


# ======================================================================================= drivers
def drive(gate: Gate[T], probe: Callable[[], T], *, clock: Callable[[], float] = time.time,
          sleep: Callable[[float], None] = time.sleep,
          on_round: Callable[[T, Verdict | None], None] | None = None) -> Verdict:
    """Run ``gate`` synchronously: probe, observe, sleep, until it decides."""
    while True:
        outcome = probe()
        verdict = gate.observe(outcome, clock())
        if on_round is not None:
            on_round(outcome, verdict)
        if verdict is not None:
            return verdict
        sleep(gate.wait(clock()))


async def drive_async(gate: Gate[T], probe: Callable[[], Awaitable[T]], *, clock: Callable[[], float] = time.time,
                      on_round: Callable[[T, Verdict | None], None] | None = None) -> Verdict:
    """Run ``gate`` in an event loop (a trigger): the same loop as :func:`drive`, sleeping with asyncio."""
    while True:
        outcome = await probe()
        verdict = gate.observe(outcome, clock())
        if on_round is not None:
            on_round(outcome, verdict)
        if verdict is not None:
            return verdict
        await asyncio.sleep(gate.wait(clock()))

