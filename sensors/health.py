"""Post-switch health: a deferrable sensor that waits until every health check passes N times in a row.

The decision (:class:`gendev_release.gates.StreakGate`) is the one gate shared by the trigger, the
classic poke path and the synchronous pre-switch gate, so the rule is the same whether or not a
triggerer is running.
"""

from __future__ import annotations

import math
import time
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, Context
from airflow.sdk.exceptions import AirflowSkipException

from gendev_release.errors import GateFailed
from gendev_release.gates import StreakGate
from gendev_release.operators.base import ReleaseOperatorMixin, fail_fast
from gendev_release.probes import run_checks
from gendev_release.sensors.events import HealthEvent, read_event


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
    _gate: StreakGate | None = None

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
        policy = ctx.spec.health
        if self._gate is None:  # the sensor's own timeout bounds the poke path
            self._gate = StreakGate(required=policy.consecutive_successes, interval=policy.interval_seconds,
                                    deadline=math.inf)
        results = run_checks(ctx.target.url() or "", list(policy.checks))
        verdict = self._gate.observe([(r.passed, r.reason) for r in results], time.time())
        return verdict is not None and verdict.passed

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        with fail_fast():
            ctx = self.duty_context(context)
            ctx.store.save_record("post_switch_health", event or {"status": "error",
                                                                  "reason": "trigger ended without an event"})
            health = read_event(HealthEvent, event, "the post-switch health trigger")
            if health["status"] != "success":
                raise GateFailed(f"post-switch health failed: {health['reason']}")
            self.log.info("healthy after %s rounds: %s", health["rounds"], health["url"])
            return dict(health)

