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
from gendev_release.operators.base import ReleaseOperatorMixin, fail_fast
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


class HealthCheckSensor(BaseSensorOperator, ReleaseOperatorMixin):
    """Wait, without holding a worker slot, until the service behind the target's router is healthy.

    Built with :meth:`~gendev_release.operators.base.ReleaseOperatorMixin.for_release`.
    ``deferrable`` (default True: waiting for health must never hold a worker slot) defers to
    :class:`~gendev_release.sensors.triggers.HealthCheckTrigger`; set it False for the classic poke path.
    """

    ui_color = "#e6f4ea"
    deferrable: bool = True
    _gate: HealthGate | None = None

    def execute(self, context: Context) -> Any:
        with fail_fast():
            return self._start(context)

    def _start(self, context: Context) -> Any:
        ctx = self.duty_context(context)
        if ctx.params.dry_run:
            raise AirflowSkipException("dry run: no traffic moved, nothing to check")
        self.enter_run(context, ctx)
        self.require_serving(ctx)
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
        with fail_fast():
            ctx = self.duty_context(context)
            event = event or {"status": "error", "reason": "trigger ended without an event"}
            ctx.store.save_record("post_switch_health", event)
            if event.get("status") != "success":
                raise GateFailed(f"post-switch health failed: {event.get('reason')}")
            self.log.info("healthy after %s rounds: %s", event.get("rounds"), event.get("url"))
            return event

