"""The duty registry and the runner that turns a duty into an :class:`AgentReport`.

A duty is a plain function ``(ctx: DutyContext, report: ReportBuilder) -> None``: it gathers
evidence with ``report.evidence(kind, ...)``, decides each item with ``report.verdict(kind, ...)``
and lists blockers with ``report.block(...)``. It never decides the step's status itself: the
builder and the gate do that from the evidence.
"""

from __future__ import annotations

import importlib
import traceback
from collections.abc import Callable

from gendev_release.catalogue import step_by_id
from gendev_release.context import DutyContext
from gendev_release.report import AgentReport, ReportBuilder

Duty = Callable[[DutyContext, ReportBuilder], None]

DUTIES: dict[str, Duty] = {}

#: Modules that register duties when imported, in phase order.
_DUTY_MODULES = (
    "gendev_release.duties.preparation",
    "gendev_release.duties.planning",
    "gendev_release.duties.build",
    "gendev_release.duties.environment",
    "gendev_release.duties.deployment",
    "gendev_release.duties.monitoring",
    "gendev_release.duties.testing",
    "gendev_release.duties.observability",
    "gendev_release.duties.post_deployment",
)


def duty(step_id: str) -> Callable[[Duty], Duty]:
    """Register ``fn`` as the builtin duty of catalogue step ``step_id``."""
    step_by_id(step_id)  # fail at import time on a typo

    def register(fn: Duty) -> Duty:
        if step_id in DUTIES and DUTIES[step_id] is not fn:
            raise RuntimeError(f"duty {step_id!r} registered twice")
        DUTIES[step_id] = fn
        return fn

    return register


def load_duties() -> dict[str, Duty]:
    for module in _DUTY_MODULES:
        importlib.import_module(module)
    return DUTIES


def run_duty(ctx: DutyContext, step_id: str) -> AgentReport:
    """Run the builtin duty of ``step_id`` and return its report (never raises for a duty's own failure).

    A duty that crashes still produces a report: the crash is a blocker, so the gate fails and
    the evidence gathered so far is kept. The report item is decided by writing the report (and the
    deliverables) to the run's evidence store and reading it back (:meth:`ReportBuilder.finish`).
    """
    load_duties()
    phase, step = step_by_id(step_id)
    builder = ReportBuilder(phase, step, service=ctx.spec.service, version=ctx.version, run_id=ctx.run_id)
    fn = DUTIES.get(step_id)
    if fn is None:
        builder.block(f"no builtin duty is registered for {step_id}")
    else:
        try:
            fn(ctx, builder)
        except Exception as exc:  # the report must survive a crashing duty
            builder.block(f"duty {step_id} crashed: {type(exc).__name__}: {exc}")
            builder.findings.append(traceback.format_exc(limit=5))
    return builder.finish(store=ctx.store)
