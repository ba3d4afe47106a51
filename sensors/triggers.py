"""Triggers (run in the triggerer; must live in the installed package, never in a DAG file)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, TypedDict

import httpx
from airflow.triggers.base import BaseTrigger, TriggerEvent

from gendev_release.sensors.health import HealthGate


class HealthEvent(TypedDict):
    status: str  # "success" | "failed"
    url: str
    rounds: int
    reason: str
    last_results: list[dict[str, Any]]


async def _check_once(client: httpx.AsyncClient, url: str, check: dict[str, Any]) -> dict[str, Any]:
    target = url.rstrip("/") + check["path"]
    started = time.monotonic()
    try:
        response = await client.get(target, timeout=check.get("timeout_seconds", 2.0))
    except httpx.HTTPError as exc:
        return {"name": check["name"], "url": target, "status": None, "passed": False,
                "reason": f"no answer from {target}: {type(exc).__name__}"}
    seconds = round(time.monotonic() - started, 4)
    if response.status_code != check.get("expect_status", 200):
        return {"name": check["name"], "url": target, "status": response.status_code, "passed": False,
                "seconds": seconds, "reason": f"{target} answered {response.status_code}, "
                                              f"expected {check.get('expect_status', 200)}"}
    needle = check.get("expect_body_contains")
    if needle and needle not in response.text:
        return {"name": check["name"], "url": target, "status": response.status_code, "passed": False,
                "seconds": seconds, "reason": f"{target} body lacks {needle!r}"}
    return {"name": check["name"], "url": target, "status": response.status_code, "passed": True,
            "seconds": seconds, "reason": "ok"}


class HealthCheckTrigger(BaseTrigger):
    """Poll health checks until ``consecutive_successes`` clean rounds, or fail at ``deadline``.

    The deadline is wall-clock (epoch seconds), so it survives a triggerer restart.
    """

    def __init__(self, *, url: str, checks: list[dict[str, Any]], consecutive_successes: int,
                 interval_seconds: float, deadline: float) -> None:
        super().__init__()
        self.url = url
        self.checks = checks
        self.consecutive_successes = consecutive_successes
        self.interval_seconds = interval_seconds
        self.deadline = deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"url": self.url, "checks": self.checks, "consecutive_successes": self.consecutive_successes,
                 "interval_seconds": self.interval_seconds, "deadline": self.deadline})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        gate = HealthGate(self.consecutive_successes)
        results: list[dict[str, Any]] = []
        async with httpx.AsyncClient() as client:
            while True:
                results = [await _check_once(client, self.url, check) for check in self.checks]
                failures = [r["reason"] for r in results if not r["passed"]]
                if gate.observe(failures):
                    yield TriggerEvent(HealthEvent(status="success", url=self.url, rounds=gate.rounds,
                                                   reason=f"{gate.streak} consecutive healthy rounds",
                                                   last_results=results))
                    return
                if time.time() >= self.deadline:
                    reason = "; ".join(gate.last_failures) or "not enough consecutive healthy rounds"
                    yield TriggerEvent(HealthEvent(status="failed", url=self.url, rounds=gate.rounds,
                                                   reason=f"deadline passed after {gate.rounds} rounds: {reason}",
                                                   last_results=results))
                    return
                self.log.info("health round %d: %s", gate.rounds, "; ".join(failures) or "healthy")
                await asyncio.sleep(self.interval_seconds)
