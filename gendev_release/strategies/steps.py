"""The runtime of one strategy step: the instant work before its bake, and the judgement after it.

:func:`begin` moves traffic (or the flag), asks the router how requests are split now, and returns
the trigger to wait on (deferred: no worker slot during the bake). :func:`finish` judges the
trigger's event. Both write the step's record (``progress-<nn>-<step>.json``) to the run's evidence
store; the release report shows every record (weights, the split clients got, the analysis with its
samples, statistic and p-value, what was undone).

A failed canary analysis puts the canary back to 0 % before the task fails, and a failed flag step
turns the flag off: the failure branch then finds this run's revision took traffic and rolls back
(retiring the canary, or moving traffic back to the previous slot). A failed rolling batch leaves
the split to the failure branch's rollback, which gives the old version all traffic again.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from airflow.triggers.base import BaseTrigger

from gendev_release.errors import GateFailed, GendevError, TargetError
from gendev_release.facts import StagedRevision, handed_on
from gendev_release.report import utcnow
from gendev_release.strategies import STEP_RECORD_PREFIX, PlannedStep
from gendev_release.strategies.analysis import RequestSample, Thresholds, analyse
from gendev_release.strategies.flags import flag_provider

if TYPE_CHECKING:
    from gendev_release.context import DutyContext
    from gendev_release.targets.base import Revision

RECORD_PREFIX = STEP_RECORD_PREFIX
#: The response header the demo service (and any flag-aware service) names a request's flag state in.
FLAG_HEADER = "X-Gendev-Flag"
SLOT_HEADER = "X-Gendev-Slot"


@dataclass
class Deferral:
    """What :func:`begin` hands the operator: the trigger and how long Airflow may wait for it."""

    trigger: BaseTrigger
    seconds: float


def record_name(step: PlannedStep) -> str:
    return f"{RECORD_PREFIX}{step.number:02d}-{step.local_id}"


def _save(ctx: DutyContext, step: PlannedStep, record: dict[str, Any]) -> dict[str, Any]:
    ctx.store.save_record(record_name(step), record, keep_earlier=False)
    return record


def _head(ctx: DutyContext, step: PlannedStep) -> dict[str, Any]:
    return {"step": step.local_id, "role": step.role, "number": step.number, "percent": step.percent,
            "strategy": ctx.spec.strategy.kind, "version": ctx.version, "run_id": ctx.run_id,
            "started_at": utcnow().isoformat()}


# ----------------------------------------------------------------------------------- revisions
def new_and_baseline(ctx: DutyContext) -> tuple[Revision, Revision | None]:
    """This run's revision (provisioning's, still running) and the one serving before it (None: first release)."""
    staged, problem = handed_on(ctx, StagedRevision)
    if staged is None:
        raise GateFailed(f"nothing was staged: {problem}")
    if staged.version != ctx.version:
        raise GateFailed(f"provisioning staged {staged.version}, but this run releases {ctx.version}")
    revisions = {r.id: r for r in ctx.target.revisions()}
    new = revisions.get(staged.slot)
    if new is None or new.version != ctx.version or not new.running:
        raise GateFailed(f"the revision provisioning staged ({staged.slot} {staged.version}) no longer runs on the "
                         f"target (it shows {', '.join(f'{r.id} {r.version}' for r in revisions.values()) or 'none'}); "
                         "clear from p4_environment.provisioning (with downstream) to stage it again")
    active = ctx.target.status().active
    baseline = revisions.get(active.slot) if active is not None and active.slot != new.id else None
    if baseline is not None and not baseline.running:
        raise GateFailed(f"the baseline {baseline.id} {baseline.version} no longer runs: nothing to compare with")
    return new, baseline


def router_split(url: str, requests: int) -> dict[str, Any]:
    """Ask the router ``requests`` times which version answers: the split clients actually get."""
    served: dict[str, int] = {}
    failed = 0
    with httpx.Client(timeout=5.0) as client:
        for _ in range(requests):
            try:
                answer = client.get(url.rstrip("/") + "/version")
                version = str(answer.json().get("version")) if answer.status_code == 200 else None
            except (httpx.HTTPError, ValueError, AttributeError):
                version = None
            if version is None:
                failed += 1
            else:
                served[version] = served.get(version, 0) + 1
    return {"router": url, "requests": requests, "served": served, "unanswered": failed}


def split_requests(percent: int) -> int:
    """Enough requests that a share of ``percent`` is seen about three times (at most 200)."""
    return max(20, min(200, math.ceil(300 / max(1, min(percent, 100 - percent or 100)))))


def _move(ctx: DutyContext, step: PlannedStep, new: Revision, baseline: Revision, record: dict[str, Any]) -> None:
    weights = {baseline.id: 100 - step.percent, new.id: step.percent}
    status = ctx.target.set_weights(weights, ctx.run_id)
    record["weights"] = dict(status.weights)
    if status.weights.get(new.id, 0) != step.percent:
        raise GateFailed(f"asked for {new.id} at {step.percent} %, the target reports {status.weights}")
    url = ctx.target.url()
    if url is None:
        raise GateFailed("the target has no router URL: clients could not reach any revision")
    split = router_split(url, split_requests(step.percent))
    record["router_split"] = split
    seen_new, seen_old = split["served"].get(new.version, 0), split["served"].get(baseline.version, 0)
    ctx.log("%s at %d %%: the router served %s", new.version, step.percent, split["served"])
    if seen_new == 0 or seen_old == 0:
        raise GateFailed(f"the target reports {weights}, but of {split['requests']} requests through {url} the "
                         f"router served {split['served']} ({split['unanswered']} unanswered): the split did not "
                         "reach clients")


# --------------------------------------------------------------------------------------- begin
def begin(ctx: DutyContext, step: PlannedStep) -> tuple[dict[str, Any], Deferral | None]:
    """Move traffic or the flag for ``step``; the record so far and what to wait on (None: nothing to judge)."""
    from gendev_release.sensors.triggers import HealthCheckTrigger, RequestSamplingTrigger

    record = _head(ctx, step)
    strategy = ctx.spec.strategy
    paths = list(dict.fromkeys(e.path for e in ctx.spec.critical_endpoints))
    now = time.time()
    if step.role == "flag_step":
        assert strategy.kind == "feature_flags"
        provider = flag_provider(ctx.spec, ctx.paths.home)
        before = provider.get(strategy.flag)
        kept = provider.set(strategy.flag, step.percent)
        record["flag"] = {"name": strategy.flag, "provider": provider.where, "before": before, "after": kept}
        if kept != step.percent:
            _save(ctx, step, {**record, "outcome": "failed"})
            raise GateFailed(f"flag {strategy.flag} set to {step.percent} %, but {provider.where} keeps {kept} %")
        url = ctx.target.url()
        if url is None:
            raise GateFailed("the target has no router URL: clients could not reach the service")
        trigger: BaseTrigger = RequestSamplingTrigger(
            urls={"router": url}, paths=paths, started_at=now, until=now + strategy.bake_seconds,
            interval_seconds=strategy.analysis.interval_seconds, group_header=FLAG_HEADER)
        _save(ctx, step, {**record, "outcome": "baking"})
        return record, Deferral(trigger, strategy.bake_seconds)
    new, baseline = new_and_baseline(ctx)
    record.update(new=new.as_dict(), baseline=baseline.as_dict() if baseline else None)
    if baseline is None:
        record.update(outcome="not_applicable", reason="first release: nothing serves beside the new version, so "
                      "there is no split to make and no baseline to compare with; promotion moves all traffic")
        return _save(ctx, step, record), None
    _move(ctx, step, new, baseline, record)
    if step.role == "canary_step":
        assert strategy.kind == "canary"
        trigger = RequestSamplingTrigger(urls={"canary": new.url, "baseline": baseline.url}, paths=paths,
                                         started_at=now, until=now + strategy.bake_seconds,
                                         interval_seconds=strategy.analysis.interval_seconds)
        seconds = strategy.bake_seconds
    else:
        health = ctx.spec.health
        trigger = HealthCheckTrigger(url=new.url, checks=[c.model_dump(mode="json") for c in health.checks],
                                     consecutive_successes=health.consecutive_successes,
                                     interval_seconds=health.interval_seconds, deadline=now + health.timeout_seconds)
        seconds = health.timeout_seconds
    _save(ctx, step, {**record, "outcome": "baking"})
    return record, Deferral(trigger, seconds)


# -------------------------------------------------------------------------------------- finish
def thresholds(ctx: DutyContext) -> Thresholds:
    strategy = ctx.spec.strategy
    assert strategy.kind in ("canary", "feature_flags")
    analysis = strategy.analysis
    gates = ctx.spec.quality_gates
    return Thresholds(
        max_error_rate_pct=analysis.max_error_rate_pct if analysis.max_error_rate_pct is not None
        else gates.max_error_rate_pct,
        p95_latency_ms=analysis.p95_latency_ms if analysis.p95_latency_ms is not None else gates.p95_latency_ms,
        alpha=analysis.alpha, min_latency_shift_ms=analysis.min_latency_shift_ms, min_samples=analysis.min_samples)


def _samples(event: dict[str, Any]) -> list[RequestSample]:
    try:
        return [RequestSample.of(row) for row in event.get("samples", [])]
    except ValueError as exc:
        raise GateFailed(f"the sampling trigger's event holds a bad sample: {exc}") from None


def stored_record(ctx: DutyContext, step: PlannedStep) -> dict[str, Any]:
    """The step's record as the evidence store holds it: :func:`begin`'s before deferring (what moved, to which
    revisions) or :func:`finish`'s; {} when there is none."""
    try:
        saved = json.loads(ctx.store.read(f"{record_name(step)}.json"))
    except (GendevError, OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def finish(ctx: DutyContext, step: PlannedStep, record: dict[str, Any], event: dict[str, Any] | None) -> dict[str, Any]:
    """Judge the bake's event; undo this step's exposure on failure; the step's final record.

    :raises GateFailed: naming what failed (after the canary is at 0 % or the flag is off).
    """
    from gendev_release.sensors.events import HealthEvent, RequestSamplingEvent, read_event

    record = {**stored_record(ctx, step), **record}
    if step.role == "rolling_batch":
        health = read_event(HealthEvent, event, "the health-check trigger")
        record.update(health=dict(health), finished_at=utcnow().isoformat())
        passed = health["status"] == "success"
        record["outcome"] = "passed" if passed else "failed"
        _save(ctx, step, record)
        if not passed:
            raise GateFailed(f"batch {step.number} ({step.percent} %) failed its health gate on "
                             f"{health['url']}: {health['reason']}")
        return record
    sampled = read_event(RequestSamplingEvent, event, "the request-sampling trigger")
    samples = _samples(dict(sampled))
    record.update(bake={"started_at": sampled["started_at"], "until": sampled["until"],
                        "ended_at": sampled["ended_at"], "rounds": sampled["rounds"]})
    if step.role == "flag_step":
        on = [s for s in samples if s.group == "on"]
        off = [s for s in samples if s.group == "off"]
        missing = [s for s in samples if s.group not in ("on", "off")]
        result = analyse(on, off, thresholds(ctx), compare=step.percent < 100)
        exposure = {"on": len(on), "off": len(off), "unreported": len(missing)}
        record["exposure"] = exposure
        if missing and not (on or off):
            result.passed = False
            result.reasons.append(f"the service never reported the flag ({FLAG_HEADER} header): the flag's effect "
                                  "cannot be measured")
        elif not on:
            result.passed = False
            result.reasons.append(f"no request saw the flag on at {step.percent} %: the provider's value did not "
                                  "reach the service")
    else:
        result = analyse([s for s in samples if s.group == "canary"], [s for s in samples if s.group == "baseline"],
                         thresholds(ctx))
    record["analysis"] = result.as_dict()
    record["finished_at"] = utcnow().isoformat()
    if result.passed:
        record["outcome"] = "passed"
        ctx.log("step %s passed: %s", step.local_id, result.describe())
        return _save(ctx, step, record)
    if step.asks_people:  # on_failed_analysis: pause: the canary stays where it is; people decide next
        record["outcome"] = "paused"
        ctx.log("step %s analysis failed, paused for people's decision: %s", step.local_id, result.describe())
        return _save(ctx, step, record)
    record["outcome"] = "failed"
    record["undone"] = undo(ctx, step, record)
    _save(ctx, step, record)
    raise GateFailed(f"{step.local_id} analysis failed ({result.describe()}); {record['undone']}")


def decided(ctx: DutyContext, step: PlannedStep, record: dict[str, Any], outcome: str, how: str) -> dict[str, Any]:
    """People decided a paused step: record what they chose (and what was undone) on the step's record."""
    record = {**record, "outcome": outcome, "decision": how}
    return _save(ctx, step, record)


def undo(ctx: DutyContext, step: PlannedStep, record: dict[str, Any]) -> str:
    """Take the exposure back at once (canary to 0 %, flag off); what was done, for the record and the error."""
    strategy = ctx.spec.strategy
    try:
        if step.role == "flag_step":
            assert strategy.kind == "feature_flags"
            kept = flag_provider(ctx.spec, ctx.paths.home).set(strategy.flag, 0)
            return f"flag {strategy.flag} turned off (the provider keeps {kept} %)"
        baseline = record.get("baseline") or {}
        status = ctx.target.set_weights({str(baseline.get("id")): 100}, ctx.run_id)
        new_id = (record.get("new") or {}).get("id")
        return f"canary {new_id} set back to {status.weights.get(str(new_id), 0)} % (weights {status.weights})"
    except (TargetError, GateFailed) as exc:
        return f"could not undo the exposure ({exc}); the failure branch rolls back"

