"""Benchmark: how much the release factory costs at DAG parse time, as a ratio to a baseline.

Baseline, measured in the same run: a hand-written DAG of the same shape (same task ids, groups,
edges and trigger rules) made of EmptyOperators. The factory's figure includes loading and
validating the YAML spec, planning and rendering. Reports the median of N rounds of each.

    .venv/bin/python benchmarks/dag_build.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="gendev-bench-"))

from airflow.providers.standard.operators.empty import EmptyOperator  # noqa: E402
from airflow.sdk import DAG, TaskGroup  # noqa: E402

from gendev_release.plan import plan_release  # noqa: E402
from gendev_release.render import build_release_dag  # noqa: E402
from gendev_release.spec import load_spec  # noqa: E402

SPEC = Path(__file__).resolve().parents[1] / "dags" / "releases" / "demo.yaml"


def hand_written(plan) -> DAG:  # the same shape, written out with EmptyOperators
    ops = {}
    with DAG(dag_id=f"hand_{plan.dag_id}", schedule=None, max_active_runs=1) as dag:
        ops[plan.start.task_id] = EmptyOperator(task_id=plan.start.task_id)
        for phase in plan.phases:
            with TaskGroup(phase.id):
                for task in phase.tasks:
                    ops[task.task_id] = EmptyOperator(task_id=task.task_id.split(".", 1)[1])
        ops[plan.gate.task_id] = EmptyOperator(task_id=plan.gate.task_id)
        with TaskGroup("failure"):
            for task in plan.failure_branch:
                ops[task.task_id] = EmptyOperator(task_id=task.task_id.split(".", 1)[1],
                                                  trigger_rule=task.trigger_rule)
        ops[plan.watcher.task_id] = EmptyOperator(task_id=plan.watcher.task_id, trigger_rule="all_done")
        for task in plan.all_tasks():
            for upstream in task.upstream:
                ops[upstream] >> ops[task.task_id]
    return dag


def median_seconds(fn, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    plan = plan_release(load_spec(SPEC))
    build_release_dag(load_spec(SPEC))  # warm imports
    hand_written(plan)
    baseline = median_seconds(lambda: hand_written(plan), args.rounds)
    factory = median_seconds(lambda: build_release_dag(load_spec(SPEC)), args.rounds)
    print(json.dumps({"rounds": args.rounds, "baseline_hand_written_ms": round(baseline * 1000, 3),
                      "factory_ms": round(factory * 1000, 3), "ratio": round(factory / baseline, 2)}))


if __name__ == "__main__":
    main()
