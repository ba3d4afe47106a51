"""Health sensors: deferrable waits until every health check passes N times in a row.

* :class:`HealthCheckSensor` (``post_switch_health``): after the switch, through the router clients use;
* :class:`PreviewHealthSensor` (``preview_health``): before any traffic moves, on the new revision's own
  URL with the strategy's pre-switch checks (blue-green's preview). A revision that never gets healthy
  fails here, deferred, without holding a worker slot, and the release is aborted before traffic moves.

The decision (:class:`gendev_release.gates.StreakGate`) is the one gate shared by the trigger, the
classic poke path and the synchronous pre-switch gate, so the rule is the same whether or not a
triggerer is running.
"""

from __future__ import annotations

import math
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, Context
from airflow.sdk.exceptions import AirflowSkipException

from gendev_release.errors import GateFailed
from gendev_release.gates import StreakGate
from gendev_release.operators.base import ReleaseOperatorMixin, fail_fast
from gendev_release.probes import run_checks
from gendev_release.sensors.events import HealthEvent, read_event

if TYPE_CHECKING:
    from gendev_release.context import DutyContext
    from gendev_release.spec import HealthCheck


class HealthCheckSensor(BaseSensorOperator, ReleaseOperatorMixin):
    """Wait, without holding a worker slot, until the service behind the target's router is healthy.

    Built with :meth:`~gendev_release.operators.base.ReleaseOperatorMixin.for_release`.
    ``deferrable`` (default True: waiting for health must never hold a worker slot) defers to
    :class:`~gendev_release.sensors.triggers.HealthCheckTrigger`; set it False for the classic poke path.
    """

    ui_color = "#e6f4ea"
    deferrable: bool = True
    _gate: StreakGate | None = None
    #: The evidence record the trigger's event is written to, and how the messages name the wait.
    record_name = "post_switch_health"
    what = "post-switch health"

    def probe(self, ctx: DutyContext) -> tuple[str, list[HealthCheck]]:
        """Where to ask and which checks: the router clients use, every health check."""
        self.require_serving(ctx)
        url = ctx.target.url()
        if not url:
            raise GateFailed("post-switch health: the target has no router URL; nothing was deployed")
        return url, list(ctx.spec.health.checks)

    def execute(self, context: Context) -> Any:
        with fail_fast():
            return self._start(context)

    def _start(self, context: Context) -> Any:
        ctx = self.duty_context(context)
        if ctx.params.dry_run:
            raise AirflowSkipException("dry run: no traffic moved, nothing to check")
        self.enter_run(context, ctx)
        url, checks = self.probe(ctx)
        if not checks:
            self.log.info("%s: no checks to wait for", self.what)
            return None
        policy = ctx.spec.health
        if self.deferrable:
            from gendev_release.sensors.triggers import HealthCheckTrigger

            self.defer(
                trigger=HealthCheckTrigger(url=url, checks=[c.model_dump(mode="json") for c in checks],
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
        url, checks = self.probe(ctx)
        results = run_checks(url, checks)
        verdict = self._gate.observe([(r.passed, r.reason) for r in results], time.time())
        return verdict is not None and verdict.passed

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        with fail_fast():
            ctx = self.duty_context(context)
            ctx.store.save_record(self.record_name, event or {"status": "error",
                                                              "reason": "trigger ended without an event"})
            health = read_event(HealthEvent, event, f"the {self.what} trigger")
            if health["status"] != "success":
                raise GateFailed(f"{self.what} failed: {health['reason']}")
            self.log.info("healthy after %s rounds: %s", health["rounds"], health["url"])
            return dict(health)


class PreviewHealthSensor(HealthCheckSensor):
    """Before traffic moves: the new revision's own URL passes the pre-switch checks N times in a row (deferred).

    ``execute_strategy`` judges the pre-switch gate again on the live revision (its verify item);
    after this wait that takes seconds, not a worker slot for the whole ``health.timeout_seconds``.
    """

    record_name = "preview_health"
    what = "preview health (before traffic moves)"

    def probe(self, ctx: DutyContext) -> tuple[str, list[HealthCheck]]:
        from gendev_release.strategies.steps import new_and_baseline

        revision, _ = new_and_baseline(ctx)
        wanted = ctx.spec.strategy.pre_switch_checks
        return revision.url, [c for c in ctx.spec.health.checks if wanted is None or c.name in wanted]

