"""Helpers the builtin duties share; no duty is registered here.

* Spec commands and input files (phases 1-4): :func:`command_values`, :func:`substitute_text`,
  :func:`substitute_command`, :func:`record_input_file`.
* The target (phases 5-7): :func:`router_url`, :func:`describe_slot`, :func:`target_evidence`.
* Alert rules on scraped samples (phases 5 and 7): :func:`breaches`, :class:`RuleEvaluation`,
  :func:`evaluate_rules`. Reading the exposition itself is :mod:`gendev_release.prometheus`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gendev_release.commands import substitute, substitute_text  # noqa: F401 (re-exported for the duties)
from gendev_release.prometheus import series_of
from gendev_release.report import Evidence, ReportBuilder
from gendev_release.spec import AlertRule
from gendev_release.targets.base import SlotInfo, TargetStatus

if TYPE_CHECKING:
    from gendev_release.context import DutyContext


# ================================================================== spec commands and input files
def command_values(ctx: DutyContext) -> dict[str, str]:
    """Placeholder values for the commands a spec names; ``{url}`` is the target's URL or empty."""
    url = ""
    try:
        url = ctx.target.url() or ""
    except Exception:
        url = ""
    return ctx.placeholders(url=url)


def substitute_command(argv: list[str], values: dict[str, str]) -> tuple[list[str] | None, str]:
    """Substitute a spec command; return ``(argv, "")`` or ``(None, problem)``."""
    try:
        return substitute(argv, values), ""
    except KeyError as exc:
        return None, f"command {argv} uses {{{exc.args[0]}}}, which has no value in this step"
    except ValueError as exc:
        return None, f"command {argv} refused: {exc}"


def record_input_file(report: ReportBuilder, kind: Any, path: Path, label: str) -> str | None:
    """Record a required input file as evidence; return a problem text when it is missing or empty."""
    if not path.exists():
        return f"{label} {path} does not exist"
    if not path.is_file():
        return f"{label} {path} is not a regular file"
    try:
        evidence = report.evidence(kind, Evidence.file(path, label=label))
    except OSError as exc:
        return f"{label} {path} cannot be read: {exc}"
    if evidence.data["bytes"] == 0:
        return f"{label} {path} is empty"
    return None


# ===================================================================================== the target
def router_url(ctx: DutyContext) -> str | None:
    """The stable URL clients use: the target's router, or None when nothing is deployed."""
    url = ctx.target.url()
    if not url:
        url = ctx.target.status().router_url
    return url.rstrip("/") if url else None


def describe_slot(slot: SlotInfo | None) -> str:
    return f"{slot.slot} {slot.version} ({slot.url})" if slot else "none"


def target_evidence(ctx: DutyContext, status: TargetStatus, summary: str = "") -> Evidence:
    """The target's state as evidence (which slot takes traffic, which is kept for rollback)."""
    default = (f"active {describe_slot(status.active)}; previous {describe_slot(status.previous)}; "
               f"staged {describe_slot(status.staged)}; switched by {status.switched_by_run or '-'}")
    return Evidence(kind="target", source=f"{ctx.target.kind} target {status.service}",
                    summary=summary or default, data=asdict(status))


# ==================================================================================== alert rules
def breaches(value: float, op: str, threshold: float) -> bool:
    """Whether ``value op threshold`` holds (the rule's firing condition). NaN never fires."""
    if math.isnan(value):
        return False
    return {">": value > threshold, ">=": value >= threshold,
            "<": value < threshold, "<=": value <= threshold}[op]


@dataclass(frozen=True)
class RuleEvaluation:
    """One alert rule evaluated on one set of samples."""

    rule: str
    metric: str
    op: str
    threshold: float
    values: dict[str, float]

    @property
    def missing(self) -> bool:
        return not self.values

    @property
    def firing(self) -> bool:
        return any(breaches(v, self.op, self.threshold) for v in self.values.values())

    @property
    def worst(self) -> float | None:
        """The value closest to (or furthest past) the threshold: max for > rules, min for < rules."""
        values = [v for v in self.values.values() if not math.isnan(v)]
        if not values:
            return None
        return max(values) if self.op.startswith(">") else min(values)

    def describe(self) -> str:
        if self.missing:
            return f"rule {self.rule}: metric {self.metric} is missing from the samples"
        state = "firing" if self.firing else "quiet"
        return f"rule {self.rule}: {self.metric}={self.worst:g} {self.op} {self.threshold:g} is {state}"


def evaluate_rules(rules: Sequence[AlertRule], samples: dict[str, float]) -> list[RuleEvaluation]:
    return [RuleEvaluation(rule.name, rule.metric, rule.op, rule.threshold, series_of(samples, rule.metric))
            for rule in rules]
