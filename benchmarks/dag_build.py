"""Benchmark: how much the release factory costs at DAG parse time, as a ratio to a baseline.

Baseline, measured in the same run: a hand-written DAG of the same shape (same task ids, groups,
edges and trigger rules) made of EmptyOperators, with the same DAG arguments the factory gives
(the trigger form's Params, start date, tags, docs, default args), so the ratio measures only
what the factory adds. The factory's figure includes reading and validating the YAML spec,
planning and rendering. Reports the median of N rounds of each, and the factory's stages.

    .venv/bin/python benchmarks/dag_build.py [--rounds 30] [--profile 20]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="gendev-bench-"))

from airflow.providers.standard.operators.empty import EmptyOperator  # noqa: E402
from airflow.sdk import DAG, BaseOperator, Param, TaskGroup  # noqa: E402

from gendev_release.plan import ReleasePlan, plan_release  # noqa: E402
from gendev_release.render import build_release_dag, render  # noqa: E402
from gendev_release.spec import load_spec  # noqa: E402
from gendev_release.spec_yaml import LOADER  # noqa: E402

SPEC = Path(__file__).resolve().parents[1] / "dags" / "releases" / "demo.yaml"


def hand_written(plan: ReleasePlan) -> DAG:
    """The same shape and DAG arguments as the factory's DAG, written out with EmptyOperators."""
    ops: dict[str, BaseOperator] = {}
    with DAG(dag_id=f"hand_{plan.dag_id}", description=plan.description, schedule=None,
             start_date=datetime(2024, 1, 1, tzinfo=timezone.utc), catchup=False, max_active_runs=1,
             tags=["gendev-release", f"service:{plan.service}"],
             params={name: Param(**schema) for name, schema in plan.params.items()},
             doc_md=f"Release of **{plan.service}** from `{plan.spec_path}`.",
             default_args={"retries": 0, "owner": "gendev-release"}) as dag:
        ops[plan.start.task_id] = EmptyOperator(task_id=plan.start.task_id, doc_md=plan.start.doc)
        for phase in plan.phases:
            with TaskGroup(phase.id, tooltip=f"Phase {phase.number}: {phase.title}",
                           group_display_name=f"{phase.number}. {phase.title}"):
                for task in phase.tasks:
                    ops[task.task_id] = EmptyOperator(task_id=task.task_id.split(".", 1)[1], doc_md=task.doc)
        ops[plan.gate.task_id] = EmptyOperator(task_id=plan.gate.task_id, doc_md=plan.gate.doc)
        with TaskGroup("failure", tooltip="Abort or roll back, verify, notify", group_display_name="On failure"):
            for task in plan.failure_branch:
                ops[task.task_id] = EmptyOperator(task_id=task.task_id.split(".", 1)[1],
                                                  trigger_rule=task.trigger_rule, doc_md=task.doc)
        ops[plan.watcher.task_id] = EmptyOperator(task_id=plan.watcher.task_id, trigger_rule="all_done",
                                                  doc_md=plan.watcher.doc)
        for task in plan.all_tasks():
            for upstream in task.upstream:
                ops[upstream] >> ops[task.task_id]
    return dag


def _timed(fn: Callable[[], Any]) -> float:
    """CPU seconds of one call (this process's CPU time: time the scheduler gives others is not counted)."""
    gc.collect()  # a collection triggered by the previous sample must not land in this one
    started = time.process_time()
    fn()
    return time.process_time() - started


def median_seconds(fn: Callable[[], Any], rounds: int) -> float:
    return statistics.median(_timed(fn) for _ in range(rounds))


def interleaved_medians(first: Callable[[], Any], second: Callable[[], Any],
                        rounds: int) -> tuple[float, float, float]:
    """Medians of both, sampled alternately, and the median of the paired ratios second/first.

    Each pair is timed back to back, so load on a shared machine drifts alike for the two; the
    median of the per-pair ratios is the figure that drift disturbs least.
    """
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        samples[0].append(_timed(first))
        samples[1].append(_timed(second))
    ratios = [b / a for a, b in zip(*samples, strict=True)]
    return statistics.median(samples[0]), statistics.median(samples[1]), statistics.median(ratios)


def profile(fn: Callable[[], Any], rounds: int, top: int) -> str:
    """cProfile of ``rounds`` calls of ``fn``: the ``top`` functions by cumulative and by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(rounds):
        fn()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--profile", type=int, default=0, metavar="TOP",
                        help="also print a cProfile of the factory path (the TOP functions)")
    args = parser.parse_args()
    spec = load_spec(SPEC)
    plan = plan_release(spec)
    build_release_dag(load_spec(SPEC))  # warm imports
    hand_written(plan)
    baseline, factory, ratio = interleaved_medians(lambda: hand_written(plan),
                                                   lambda: build_release_dag(load_spec(SPEC)), args.rounds)
    stages = {
        "load_spec_ms": median_seconds(lambda: load_spec(SPEC), args.rounds),
        "plan_ms": median_seconds(lambda: plan_release(spec), args.rounds),
        "render_ms": median_seconds(lambda: render(plan), args.rounds),
    }
    print(json.dumps({"rounds": args.rounds, "yaml_loader": LOADER.__name__,
                      "baseline_hand_written_ms": round(baseline * 1000, 3), "factory_ms": round(factory * 1000, 3),
                      "ratio": round(ratio, 2), "ratio_of_medians": round(factory / baseline, 2),
                      **{name: round(seconds * 1000, 3) for name, seconds in stages.items()}}))
    if args.profile:
        print(profile(lambda: build_release_dag(load_spec(SPEC)), args.rounds, args.profile))


if __name__ == "__main__":
    main()
