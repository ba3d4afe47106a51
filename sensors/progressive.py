"""The strategy's own tasks in phase 5: traffic steps (canary weights, rolling batches, flag steps) and the
post-promotion watch. Both have the HttpOperator shape: ``execute`` does the instant work (move traffic,
ask the router) and defers; ``execute_complete`` checks the typed event and judges it.

The plan of steps comes from :mod:`gendev_release.strategies` (parse time); what a step does and
how it is judged is :mod:`gendev_release.strategies.steps`.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowSkipException

from gendev_release.errors import GateFailed
from gendev_release.operators.base import ReleaseOperatorMixin, fail_fast
from gendev_release.sensors.events import BakeEvent, read_event
from gendev_release.sensors.observation import DEFER_GRACE
from gendev_release.sensors.triggers import ObservationWindowTrigger
from gendev_release.strategies import POST_PROMOTION_RECORD, PlannedStep, plan_strategy
from gendev_release.strategies.steps import begin, finish


class StrategyStepOperator(BaseOperator, ReleaseOperatorMixin):
    """One traffic step of the spec's strategy; build it with :meth:`for_step`."""

    ui_color = "#fce8e6"
    local_step: str = ""

    @classmethod
    def for_step(cls, *, local_step: str, spec_data: dict[str, Any], spec_path: str | None = None,
                 **kwargs: Any) -> StrategyStepOperator:
        operator = cls.for_release(spec_data=spec_data, spec_path=spec_path, **kwargs)
        operator.local_step = local_step
        return operator

    def planned(self) -> PlannedStep:
        try:
            return plan_strategy(self.release_spec()).step(self.local_step)
        except KeyError as exc:
            raise GateFailed(str(exc.args[0])) from None

    def execute(self, context: Context) -> dict[str, Any]:
        with fail_fast():
            ctx = self.duty_context(context)
            if ctx.params.dry_run:
                raise AirflowSkipException("dry run: no traffic moves")
            step = self.planned()
            self.enter_run(context, ctx)
            if step.role == "flag_step":
                self.require_serving(ctx)  # deployed dark: this run's version takes the traffic
            self.log.info("%s: %s", step.local_id, step.doc)
            with self.keep_lease(ctx):
                record, deferral = begin(ctx, step)
            if deferral is None:
                self.log.info("%s: %s", step.local_id, record.get("reason"))
                return record
            self.defer(trigger=deferral.trigger, method_name="execute_complete", kwargs={"record": record},
                       timeout=timedelta(seconds=deferral.seconds) + DEFER_GRACE)
            return record  # not reached: defer() raises

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None,
                         record: dict[str, Any] | None = None) -> dict[str, Any]:
        with fail_fast():
            ctx = self.duty_context(context)
            step = self.planned()
            with self.keep_lease(ctx):
                return finish(ctx, step, dict(record or {}), event)


class PostPromotionOperator(BaseOperator, ReleaseOperatorMixin):
    """After promotion: every health check through the router for ``strategy.post_promotion_seconds``, deferred.

    A failed round fails the task, and the failure branch rolls back at once: no analysis runs again.
    """

    ui_color = "#e6f4ea"

    def execute(self, context: Context) -> None:
        with fail_fast():
            ctx = self.duty_context(context)
            if ctx.params.dry_run:
                raise AirflowSkipException("dry run: nothing was promoted")
            self.enter_run(context, ctx)
            self.require_serving(ctx)
            url = ctx.target.url()
            if not url:
                raise GateFailed("post-promotion watch: the target has no router URL")
            seconds = float(ctx.spec.strategy.post_promotion_seconds)
            now = time.time()
            checks = [check.model_dump(mode="json") for check in ctx.spec.health.checks]
            self.defer(trigger=ObservationWindowTrigger(url=url, checks=checks, started_at=now, until=now + seconds,
                                                        interval_seconds=ctx.spec.health.interval_seconds,
                                                        failure_limit=0),
                       method_name="execute_complete", timeout=timedelta(seconds=seconds) + DEFER_GRACE)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        with fail_fast():
            ctx = self.duty_context(context)
            ctx.store.save_record(POST_PROMOTION_RECORD, event or {"status": "error",
                                                                   "reason": "trigger ended without an event"})
            bake = read_event(BakeEvent, event, "the post-promotion trigger")
            if bake["status"] != "success":
                raise GateFailed(f"post-promotion watch failed on {bake['url']}: {bake['reason']}; rolling back "
                                 "without re-running any analysis")
            self.log.info("post-promotion watch passed: %s", bake["reason"])
            return dict(bake)
