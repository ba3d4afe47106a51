"""The one gate implementation (gendev_release/gates.py): decisions on a fake clock, one judgement of a check."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timezone

import httpx
import pytest
from loopback import LoopbackServer

from gendev_release.gates import (
    BakeGate,
    Probe,
    Sample,
    SamplingGate,
    StreakGate,
    WindowGate,
    drive,
    judge_answer,
    round_of,
)
from gendev_release.probes import run_check
from gendev_release.sensors.triggers import check_round
from gendev_release.spec import ChangeWindow, HealthCheck

OK = [(True, "ok")]
DOWN = [(False, "healthz answered 503")]


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


def feed(outcomes: list) -> Iterator:
    return iter(outcomes)


# ---------------------------------------------------------------------------------- streak gate
def test_streak_gate_passes_after_the_required_run_of_healthy_rounds() -> None:
    clock = FakeClock()
    rounds = feed([OK, DOWN, OK, OK, OK])
    gate = StreakGate(required=3, interval=1.0, deadline=clock.now + 10)
    verdict = drive(gate, lambda: next(rounds), clock=clock, sleep=clock.sleep)
    assert verdict.passed and verdict.reason == "3 consecutive healthy rounds"
    assert [r.passed for r in gate.rounds] == [True, False, True, True, True]
    assert clock.now == 1004.0  # five rounds, one second apart


def test_streak_gate_stops_when_the_next_round_would_start_after_the_deadline() -> None:
    clock = FakeClock()
    gate = StreakGate(required=2, interval=1.0, deadline=clock.now + 3)
    verdict = drive(gate, lambda: DOWN, clock=clock, sleep=clock.sleep)
    assert not verdict.passed
    assert [r.at - 1000.0 for r in gate.rounds] == [0.0, 1.0, 2.0, 3.0]  # the last round fits, the next would not
    assert verdict.reason == "deadline passed after 4 rounds (0 of 2 in a row): healthz answered 503"


def test_a_round_without_checks_never_counts_as_healthy() -> None:
    assert not round_of(1, 0.0, []).passed
    gate = StreakGate(required=1, interval=1.0, deadline=0.0)
    verdict = gate.observe([], 0.0)
    assert verdict is not None and not verdict.passed
    assert verdict.reason.endswith("not enough consecutive healthy rounds")


# ------------------------------------------------------------------------------------ bake gate
def test_bake_gate_passes_at_the_end_of_a_clean_window() -> None:
    clock = FakeClock()
    gate = BakeGate(until=clock.now + 10, interval=3.0)
    verdict = drive(gate, lambda: OK, clock=clock, sleep=clock.sleep)
    assert verdict.passed
    assert [r.at - 1000.0 for r in gate.rounds] == [0.0, 3.0, 6.0, 9.0, 10.0]  # the last round lands on the end


def test_bake_gate_fails_at_once_past_its_failure_limit() -> None:
    clock = FakeClock()
    rounds = feed([OK, DOWN, OK, DOWN, OK])
    gate = BakeGate(until=clock.now + 100, interval=1.0, failure_limit=1)
    verdict = drive(gate, lambda: next(rounds), clock=clock, sleep=clock.sleep)
    assert not verdict.passed and len(gate.rounds) == 4 and clock.now < gate.until
    assert verdict.reason == ("2 of 4 rounds failed during the window (at most 1 allowed): "
                              "healthz answered 503")


# -------------------------------------------------------------------------------- sampling gate
def test_sampling_gate_needs_enough_usable_samples() -> None:
    clock = FakeClock()
    samples = feed([[Sample(0, True, {"x": 1.0})], [Sample(1, False, error="503")], [Sample(2, True, {"x": 2.0})]])
    gate = SamplingGate(until=clock.now + 2, interval=1.0, min_samples=2)
    verdict = drive(gate, lambda: next(samples), clock=clock, sleep=clock.sleep)
    assert verdict.passed and verdict.reason == "2 usable of 3 samples over the window"

    clock = FakeClock()
    gate = SamplingGate(until=clock.now + 1, interval=1.0, min_samples=2)
    verdict = drive(gate, lambda: [Sample(clock.now, False, error="no answer")], clock=clock, sleep=clock.sleep)
    assert not verdict.passed
    assert verdict.reason == "only 0 usable of 2 samples over the window (at least 2 needed): no answer"


# ---------------------------------------------------------------------------------- window gate
def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def test_window_gate_waits_for_the_opening_and_rechecks_the_clock_at_least_every_minute() -> None:
    window = ChangeWindow(days=["wed"], start="09:00", end="17:00")
    clock = FakeClock(_epoch("2026-01-07T08:55:00"))  # Wednesday, 5 minutes early
    gate = WindowGate(window=window, deadline=clock.now + 3600)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.sleep(seconds)

    verdict = drive(gate, lambda: None, clock=clock, sleep=sleep)
    assert verdict.passed and clock.now == _epoch("2026-01-07T09:00:00")
    assert waits == [60.0] * 5


def test_window_gate_fails_at_once_when_the_opening_is_after_the_longest_wait() -> None:
    window = ChangeWindow(days=["mon"], start="09:00", end="10:00")
    now = _epoch("2026-01-07T12:00:00")  # Wednesday: the next opening is Monday
    verdict = WindowGate(window=window, deadline=now + 3600).observe(None, now)
    assert verdict is not None and not verdict.passed
    assert "next opening 2026-01-12T09:00:00+00:00" in verdict.reason
    assert "after the longest wait allowed (until 2026-01-07T13:00:00+00:00" in verdict.reason


# ------------------------------------------------------------------------------ check judgement
@pytest.mark.parametrize(("status", "body", "error", "expected"), [
    (200, "ok", None, (True, "http://x/healthz answered 200")),
    (503, "down", None, (False, "http://x/healthz answered 503, expected 200")),
    (200, "nope", None, (False, "http://x/healthz body lacks 'ok'")),
    (None, "", "ConnectError: refused", (False, "no answer from http://x/healthz: ConnectError: refused")),
])
def test_judge_answer(status: int | None, body: str, error: str | None, expected: tuple[bool, str]) -> None:
    check = HealthCheck(name="healthz", path="/healthz", expect_body_contains="ok")
    assert judge_answer(check, "http://x/healthz", status, body, error) == expected
    assert judge_answer(Probe.of(check), "http://x/healthz", status, body, error) == expected


def test_the_sync_probe_and_the_trigger_round_judge_alike() -> None:
    """probes.run_check (workers) and check_round (triggerer) reach the same verdict on the same answers."""
    answers = {"/ok": (200, b"status ok"), "/down": (503, b"down"), "/wrong": (200, b"nothing")}
    server = LoopbackServer(lambda path: (answers[path][0], {"Content-Type": "text/plain"}, answers[path][1]))
    checks = [HealthCheck(name=name.strip("/"), path=name, expect_body_contains="ok") for name in answers]
    checks.append(HealthCheck(name="gone", path="/gone"))
    try:
        sync = [(r.name, r.passed, r.reason) for r in (run_check(server.url, c) for c in checks[:3])]

        async def trigger_round() -> list:
            async with httpx.AsyncClient() as client:
                return await check_round(client, server.url, [Probe.of(c) for c in checks[:3]])

        rows = asyncio.run(trigger_round())
    finally:
        server.stop()
    assert [(r["name"], r["passed"], r["reason"]) for r in rows] == sync
    assert [passed for _, passed, _ in sync] == [True, False, False]


def test_no_answer_is_judged_alike_by_both_paths() -> None:
    server = LoopbackServer(lambda path: (200, {}, b""))
    url = server.url
    server.stop()  # nothing listens there any more
    check = HealthCheck(name="healthz", path="/healthz")
    sync = run_check(url, check)

    async def trigger_round() -> list:
        async with httpx.AsyncClient() as client:
            return await check_round(client, url, [Probe.of(check)])

    row = asyncio.run(trigger_round())[0]
    assert (row["passed"], row["status"]) == (sync.passed, sync.result.status) == (False, None)
    assert row["reason"].startswith(f"no answer from {url}/healthz: ConnectError")
    assert sync.reason.startswith(f"no answer from {url}/healthz: ConnectError")
