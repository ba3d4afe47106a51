"""Strategies as a registry: each one plans its own tasks at parse time (no Airflow here).

A strategy's plan is the traffic steps around the one promotion step every release has
(``p5_deployment.execute_strategy``, which moves the last share of traffic while observing every
critical endpoint, and is followed by the deferred post-switch health sensor):

* ``blue_green``: no step before promotion; all traffic moves at once.
* ``canary``: one task per weight below 100 *before* promotion: set the canary's weight, bake
  (deferred) while sampling canary and baseline, analyse (:mod:`.analysis`); a failed analysis puts
  the canary back to 0 % and the release rolls back.
* ``rolling``: one task per batch below the last *before* promotion: the replaced instances' share of
  traffic, each batch health-gated on the new revision (deferred).
* ``feature_flags``: promotion deploys dark (all traffic on the new revision, its flag at 0 %), then
  one task per flag percentage *after* promotion, each baked and analysed (flag on against off);
  a failure turns the flag off and the release rolls back.

Every strategy ends with a post-promotion watch (``post_promotion``, deferred): a failure there rolls
back at once, without running any analysis again. The runtime of a step is :mod:`.steps`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from gendev_release.spec import ReleaseSpec

StepRole = Literal["canary_step", "rolling_batch", "flag_step"]
#: The task after a canary step that asks people when its analysis failed (on_failed_analysis: pause).
DECISION_SUFFIX = "_decision"
#: The post-promotion watch's task (in phase 5, after the post-switch health sensor and any flag step).
POST_PROMOTION_TASK = "post_promotion"
#: Evidence-store records: one per strategy step (``progress-<nn>-<step>.json``) and the watch's.
STEP_RECORD_PREFIX = "progress-"
POST_PROMOTION_RECORD = "post-promotion"


@dataclass(frozen=True)
class PlannedStep:
    """One traffic step of a strategy: its task id (local to phase 5), role, number and percentage."""

    local_id: str
    role: StepRole
    number: int
    percent: int
    doc: str
    #: A decision task follows the step (a paused canary analysis asks people).
    asks_people: bool = False


@dataclass(frozen=True)
class StrategyPlan:
    kind: str
    before_promotion: tuple[PlannedStep, ...]
    after_promotion: tuple[PlannedStep, ...]
    #: Length of the post-promotion watch; 0: no watch task.
    post_promotion_seconds: float
    summary: str

    @property
    def steps(self) -> tuple[PlannedStep, ...]:
        return (*self.before_promotion, *self.after_promotion)

    def step(self, local_id: str) -> PlannedStep:
        """The step ``local_id`` names (its decision task ``<step>_decision`` names the step too)."""
        local_id = local_id.removesuffix(DECISION_SUFFIX)
        for step in self.steps:
            if step.local_id == local_id:
                return step
        raise KeyError(f"strategy {self.kind} plans no step {local_id!r}; it plans "
                       f"{', '.join(s.local_id for s in self.steps) or 'none'}")


def _blue_green(spec: ReleaseSpec) -> StrategyPlan:
    return StrategyPlan("blue_green", (), (), spec.strategy.post_promotion_seconds,
                        "blue-green: the staged slot takes all traffic at once; the old slot stays for a switch back")


def _canary(spec: ReleaseSpec) -> StrategyPlan:
    strategy = spec.strategy
    assert strategy.kind == "canary"
    pause = strategy.on_failed_analysis == "pause"
    then = ("a failure pauses for people's decision" if pause else "a failure sets the canary back to 0 %")
    steps = tuple(PlannedStep(f"canary_{pct}", "canary_step", n, pct,
                              f"Canary at {pct} %: bake {strategy.bake_seconds:g} s (deferred) sampling canary and "
                              f"baseline, then the analysis (thresholds, Mann-Whitney U); {then}.", asks_people=pause)
                  for n, pct in enumerate(strategy.steps[:-1], 1))
    return StrategyPlan("canary", steps, (), strategy.post_promotion_seconds,
                        f"canary: {', '.join(f'{p} %' for p in strategy.steps)}")


def _rolling(spec: ReleaseSpec) -> StrategyPlan:
    strategy = spec.strategy
    assert strategy.kind == "rolling"
    weights = strategy.batch_weights()
    steps = tuple(PlannedStep(f"batch_{n}", "rolling_batch", n, pct,
                              f"Batch {n} of {len(weights)}: the new version takes {pct} % (its share of the "
                              f"{strategy.instances} instances), gated on health (deferred).")
                  for n, pct in enumerate(weights[:-1], 1))
    return StrategyPlan("rolling", steps, (), strategy.post_promotion_seconds,
                        f"rolling: {strategy.instances} instances, {strategy.batch_size} per batch "
                        f"({', '.join(f'{p} %' for p in weights)})")


def _feature_flags(spec: ReleaseSpec) -> StrategyPlan:
    strategy = spec.strategy
    assert strategy.kind == "feature_flags"
    steps = tuple(PlannedStep(f"flag_{pct}", "flag_step", n, pct,
                              f"Flag {strategy.flag} at {pct} % through the {strategy.provider.kind} provider: bake "
                              f"{strategy.bake_seconds:g} s (deferred), flag on against off; a failure turns it off.")
                  for n, pct in enumerate(strategy.steps, 1))
    return StrategyPlan("feature_flags", (), steps, strategy.post_promotion_seconds,
                        f"feature flags: deploy dark, then {strategy.flag} at "
                        f"{', '.join(f'{p} %' for p in strategy.steps)}")


#: The registry: strategy kind -> its planner.
STRATEGIES = {"blue_green": _blue_green, "canary": _canary, "rolling": _rolling, "feature_flags": _feature_flags}


def plan_strategy(spec: ReleaseSpec) -> StrategyPlan:
    """The traffic steps of ``spec.strategy``, planned at parse time."""
    return STRATEGIES[spec.strategy.kind](spec)


__all__ = ["DECISION_SUFFIX", "POST_PROMOTION_RECORD", "POST_PROMOTION_TASK", "STEP_RECORD_PREFIX", "STRATEGIES",
           "PlannedStep", "StrategyPlan", "plan_strategy"]
