"""The change-window gate: the first task after ``start_release``, before anything changes.

``execute`` looks at the clock: an open window passes at once; a closed one defers to
:class:`~gendev_release.sensors.triggers.ChangeWindowTrigger` (no worker slot while it waits) and
the release continues when the window opens; a window that opens only after
``change_window.max_wait_hours`` (or never) fails the run before anything changed. Freeze periods
keep it closed past the window. Every decision is recorded in the evidence store
(``change_window.json``) and handed on through XCom.

Both the instant decision and the trigger's are :class:`gendev_release.gates.WindowGate`. A dry
run waits too: it should tell what the real run would do, and phase 2 checks the window anyway.
While it waits no task renews the service's lease, so the gate extends the lease's time to live
over the whole wait before it defers.

Emergency override (the hook for the approval gate): when this task has an upstream task
:data:`OVERRIDE_TASK` whose XCom is an approved :class:`WindowOverride`, a closed window is passed
and the override (who, when, why) recorded. The spec refuses ``change_window.emergency_override``
until the approval task exists, so today no DAG has that task.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import BaseOperator, Context
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gendev_release.change_window import WindowState, describe
from gendev_release.context import DutyContext
from gendev_release.errors import GateFailed
from gendev_release.gates import Verdict, WindowGate
from gendev_release.lease import lease_ttl
from gendev_release.operators.base import ReleaseOperatorMixin, airflow_run_state, fail_fast
from gendev_release.release_run import hold_lease, longest_wait, service_lease
from gendev_release.sensors.events import WindowEvent, read_event
from gendev_release.spec import ChangeWindow

#: The approval task whose approved decision lets a release through a closed window.
OVERRIDE_TASK = "change_window_override"
#: The evidence-store record of the gate's decision.
RECORD = "change_window"
#: Airflow's own deferral timeout is this much later than the trigger's deadline (the trigger decides first).
DEFER_GRACE = timedelta(minutes=5)


class WindowOverride(BaseModel):
    """What the approval task hands on (its XCom) when people allow a release outside the change window."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    approved: bool
    approvers: list[str] = Field(min_length=1)
    decided_at: datetime
    comment: str = ""


def approved_override(context: Context) -> WindowOverride | None:
    """The approved override of this run, if the DAG has an approval task for it and it approved."""
    if OVERRIDE_TASK not in context["task"].upstream_task_ids:
        return None
    value = context["ti"].xcom_pull(task_ids=OVERRIDE_TASK, key="return_value")
    if not value:
        return None
    try:
        override = WindowOverride.model_validate(value)
    except ValidationError as exc:
        raise GateFailed(f"{OVERRIDE_TASK} handed on something that is not a WindowOverride: "
                         f"{exc.errors()[0]['msg']}") from None
    return override if override.approved else None


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat()


def decision(status: str, window: ChangeWindow | None, *, requested_at: float, decided_at: float, reason: str,
             state: WindowState | dict[str, Any] | None, deferred: bool,
             override: WindowOverride | None = None) -> dict[str, Any]:
    """The record of one decision of the gate (evidence store and XCom)."""
    return {"status": status, "window": window.model_dump(mode="json") if window else None,
            "window_text": describe(window) if window else None,
            "requested_at": _iso(requested_at), "decided_at": _iso(decided_at),
            "waited_seconds": round(max(0.0, decided_at - requested_at), 3), "deferred": deferred, "reason": reason,
            "state": state.as_dict() if isinstance(state, WindowState) else state,
            "override": override.model_dump(mode="json") if override else None}


class ChangeWindowGateOperator(BaseOperator, ReleaseOperatorMixin):
    """Hold the release, deferred, until its change window is open; built with
    :meth:`~gendev_release.operators.base.ReleaseOperatorMixin.for_release`."""

    ui_color = "#f3e8fd"

    def execute(self, context: Context) -> dict[str, Any]:
        with fail_fast():
            ctx = self.duty_context(context)
            self.enter_run(context, ctx)
            window = ctx.spec.change_window
            now = time.time()
            if window is None:
                return self._finish(ctx, decision("open", None, requested_at=now, decided_at=now, deferred=False,
                                                  reason="the spec has no change window", state=None))
            deadline = now + window.max_wait_hours * 3600.0
            gate = WindowGate(window=window, deadline=deadline)
            verdict = gate.observe(None, now)
            override = approved_override(context) if verdict is None or not verdict.passed else None
            if override is not None:
                return self._finish(ctx, decision(
                    "override", window, requested_at=now, decided_at=now, deferred=False, state=gate.last,
                    reason=f"closed, released by an emergency override approved by {', '.join(override.approvers)}",
                    override=override))
            return self._decide(context, ctx, window, gate, verdict, requested_at=now, deadline=deadline,
                                deferred=False)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None, *, requested_at: float,
                         deadline: float) -> dict[str, Any]:
        with fail_fast():
            ctx = self.duty_context(context)
            window = ctx.spec.change_window
            if window is None:
                raise GateFailed("the change-window gate resumed, but the spec has no change window any more")
            waited = read_event(WindowEvent, event, "the change-window trigger")
            hold_lease(ctx, airflow_run_state(context))
            if waited["status"] != "open":
                self._finish(ctx, decision("failed", window, requested_at=requested_at, decided_at=time.time(),
                                           deferred=True, reason=waited["reason"], state=waited["state"]))
                raise GateFailed(f"change window: {waited['reason']}")
            # The trigger saw it open; this worker's clock decides again (a freeze may have begun meanwhile).
            gate = WindowGate(window=window, deadline=deadline)
            return self._decide(context, ctx, window, gate, gate.observe(None, time.time()),
                                requested_at=requested_at, deadline=deadline, deferred=True)

    def _decide(self, context: Context, ctx: DutyContext, window: ChangeWindow, gate: WindowGate,
                verdict: Verdict | None, *, requested_at: float, deadline: float, deferred: bool) -> dict[str, Any]:
        now = time.time()
        if verdict is not None:
            record = decision("open" if verdict.passed else "failed", window, requested_at=requested_at,
                              decided_at=now, deferred=deferred, reason=verdict.reason, state=gate.last)
            self._finish(ctx, record)
            if not verdict.passed:
                raise GateFailed(f"change window: {verdict.reason}; nothing was changed")
            return record
        self._hold_lease_while_waiting(context, ctx, deadline - now)
        ctx.store.save_record(RECORD, decision("waiting", window, requested_at=requested_at, decided_at=now,
                                               deferred=True, reason=gate.last.reason if gate.last else "closed",
                                               state=gate.last))
        self.log.info("change window %s; deferring (no worker slot) until it opens",
                      gate.last.reason if gate.last else "closed")
        from gendev_release.sensors.triggers import ChangeWindowTrigger

        self.defer(trigger=ChangeWindowTrigger(window=window.model_dump(mode="json"), deadline=deadline,
                                               requested_at=requested_at),
                   method_name="execute_complete", kwargs={"requested_at": requested_at, "deadline": deadline},
                   timeout=timedelta(seconds=max(0.0, deadline - now)) + DEFER_GRACE)

    @staticmethod
    def _hold_lease_while_waiting(context: Context, ctx: DutyContext, seconds: float) -> None:
        """No task renews the service's lease while the gate is deferred: its time to live covers the wait."""
        service_lease(ctx.paths.home, ctx.spec.service).acquire(
            dag_id=ctx.paths.dag_id, run_id=ctx.run_id, ttl_seconds=lease_ttl(seconds + longest_wait(ctx)),
            run_state=airflow_run_state(context))

    def _finish(self, ctx: DutyContext, record: dict[str, Any]) -> dict[str, Any]:
        # A decision after a wait replaces this wait's "waiting" record; an earlier attempt's record is kept.
        ctx.store.save_record(RECORD, record, keep_earlier=not record["deferred"])
        self.log.info("change window %s after %.1f s: %s", record["status"], record["waited_seconds"],
                      record["reason"])
        return record
