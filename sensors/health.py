"""Post-switch health: a deferrable sensor that waits until every health check passes N times in a row.

The decision (:class:`HealthGate`) is a pure class shared by the trigger and the classic poke
path, so the rule is the same whether or not a triggerer is running.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, Context
from airflow.sdk.exceptions import AirflowSkipException

from gendev_release.errors import GateFailed
from gendev_release.operators.base import ReleaseOperatorMixin
from gendev_release.probes import run_checks


@dataclass
class HealthGate:
    """Passes after ``required`` consecutive rounds in which every check passed; any failure resets."""

    required: int
    streak: int = 0
    rounds: int = 0
    last_failures: list[str] = field(default_factory=list)

    def observe(self, failures: list[str]) -> bool:
        self.rounds += 1
        self.last_failures = list(failures)
        self.streak = 0 if failures else self.streak + 1
        return self.passed

    @property
    def passed(self) -> bool:
        return self.streak >= self.required


def checks_payload(spec: Any) -> list[dict[str, Any]]:
    return [check.model_dump(mode="json") for check in spec.health.checks]


class HealthCheckSensor(ReleaseOperatorMixin, BaseSensorOperator):
    """Wait, without holding a worker slot, until the service behind the target's router is healthy.

    :param spec_data: the release spec as JSON.
    :param spec_path: the spec file.
    :param deferrable: defer to :class:`~gendev_release.sensors.triggers.HealthCheckTrigger` (default
        True: waiting for health must never hold a worker slot).
    """

    ui_color = "#e6f4ea"

    def __init__(self, *, spec_data: dict[str, Any], spec_path: str | None = None,
                 deferrable: bool = True,
                 **kwargs: Any) -> None:
        kwargs.setdefault("poke_interval", 1.0)
        super().__init__(**kwargs)
        self.spec_data = spec_data
        self.spec_path = spec_path
        self.deferrable = deferrable
        self._gate: HealthGate | None = None

    def execute(self, context: Context) -> Any:
        ctx = self.duty_context(context)
        if ctx.params.dry_run:
            raise AirflowSkipException("dry run: no traffic moved, nothing to check")
        url = ctx.target.url()
        if not url:
            raise GateFailed("post-switch health: the target has no router URL; nothing was deployed")
        policy = ctx.spec.health
        if self.deferrable:
            from gendev_release.sensors.triggers import HealthCheckTrigger

            self.defer(
                trigger=HealthCheckTrigger(url=url, checks=checks_payload(ctx.spec),
                                           consecutive_successes=policy.consecutive_successes,
                                           interval_seconds=policy.interval_seconds,
                                           deadline=time.time() + policy.timeout_seconds),
                method_name="execute_complete",
                timeout=timedelta(seconds=policy.timeout_seconds + 60),
            )
        self.timeout = policy.timeout_seconds
        self.poke_interval = policy.interval_seconds
        return super().execute(context)

    def poke(self, context: Context) -> bool:
        ctx = self.duty_context(context)
        if self._gate is None:
            self._gate = HealthGate(ctx.spec.health.consecutive_successes)
        results = run_checks(ctx.target.url() or "", list(ctx.spec.health.checks))
        return self._gate.observe([r.reason for r in results if not r.passed])

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        ctx = self.duty_context(context)
        event = event or {"status": "error", "reason": "trigger ended without an event"}
        ctx.store.save_record("post_switch_health", event)
        if event.get("status") != "success":
            raise GateFailed(f"post-switch health failed: {event.get('reason')}")
        self.log.info("healthy after %s rounds: %s", event.get("rounds"), event.get("url"))
        return event

