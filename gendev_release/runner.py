"""Run a release in-process on the embedded default: SQLite Airflow under the gendev home.

Used by ``gendev-release run``. The environment (``AIRFLOW_HOME`` and friends) must already point
at the home before this module is imported (see :func:`gendev_release.cli._prepare_environment`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from airflow.listeners import hookimpl

from gendev_release.context import RunPaths
from gendev_release.plan import ReleasePlan, plan_release
from gendev_release.spec import ReleaseSpec, RunParams

Emit = Callable[[str], None]

_DAG_FILE = '''"""Written by gendev-release run: the airflow release DAG of {spec_path}."""
from gendev_release.render import build_release_dag
from gendev_release.spec import load_spec

dag = build_release_dag(load_spec({spec_path!r}))
'''


def ensure_database(airflow_home: Path) -> None:
    """Create or upgrade the embedded SQLite metadata DB once per home and Airflow version."""
    import airflow
    from airflow.utils.db import initdb

    marker = airflow_home / ".gendev-db-ready"
    if marker.exists() and marker.read_text(encoding="utf-8").strip() == airflow.__version__:
        return
    initdb()
    marker.write_text(airflow.__version__, encoding="utf-8")


def write_dag_file(spec: ReleaseSpec, dags_folder: Path) -> Path:
    """The DAG file ``dag.test`` needs inside the dags folder (rewritten each run: idempotent)."""
    if spec.source is None:
        raise ValueError("a spec loaded from a file is needed to run it")
    path = dags_folder / f"release_{spec.service.replace('-', '_')}.py"
    content = _DAG_FILE.format(spec_path=str(spec.source))
    if not path.exists() or path.read_text(encoding="utf-8") != content:
        path.write_text(content, encoding="utf-8")
    return path


class ProgressListener:
    """Airflow listener that prints one line per finished task, grouped by phase."""

    def __init__(self, plan: ReleasePlan, emit: Emit) -> None:
        self.emit = emit
        self.labels: dict[str, tuple[str, str]] = {}
        for phase in plan.phases:
            header = f"Phase {phase.number}/8: {phase.title}"
            for task in phase.tasks:
                what = f"{task.agent} ({task.duty})" if task.kind == "agent" else "health checks after the switch"
                self.labels[task.task_id] = (header, what)
        for task in (plan.start, plan.gate, plan.watcher):
            self.labels[task.task_id] = ("Release", task.doc.split(":")[0].rstrip("."))
        for task in plan.failure_branch:
            self.labels[task.task_id] = ("On failure", task.doc.split(":")[0].rstrip("."))
        self._header: str | None = None

    def _line(self, task_id: str, outcome: str) -> None:
        header, what = self.labels.get(task_id, ("", task_id))
        if header != self._header:
            self.emit(header)
            self._header = header
        self.emit(f"  {outcome:<8} {task_id}: {what}")

    @hookimpl
    def on_task_instance_success(self, previous_state: Any, task_instance: Any) -> None:
        self._line(task_instance.task_id, "passed")

    @hookimpl
    def on_task_instance_failed(self, previous_state: Any, task_instance: Any, error: Any) -> None:
        self._line(task_instance.task_id, "FAILED")
        if error:
            self.emit(f"           {str(error).splitlines()[0][:400]}")

    @hookimpl
    def on_task_instance_skipped(self, previous_state: Any, task_instance: Any) -> None:
        self._line(task_instance.task_id, "skipped")


@contextlib.contextmanager
def _airflow_output_to(log_file: Path) -> Iterator[Emit]:
    """Send everything Airflow prints (structlog writes to the process's stdout) to ``log_file``.

    The redirection is at the file-descriptor level, because Airflow's loggers keep their own
    references to the streams; the yielded function writes to the real terminal.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved[0]), "w", buffering=1, encoding="utf-8")
    with open(log_file, "a", encoding="utf-8") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield lambda line: terminal.write(line + "\n")
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            terminal.close()


def run_release(spec: ReleaseSpec, params: RunParams, home: Path, emit: Emit = print) -> dict[str, Any]:
    """Run one release of ``spec`` with ``params``; return the ``--json`` summary."""
    from airflow.sdk.listener import get_listener_manager

    from gendev_release.render import build_release_dag

    airflow_home = home / "airflow"
    plan = plan_release(spec)
    log_file = home / "logs" / "airflow.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    emit(f"Releasing {spec.service} {params.version} ({params.strategy.value}"
         f"{', dry run' if params.dry_run else ''}) on the embedded Airflow in {home}")
    with _airflow_output_to(log_file) as terminal:
        ensure_database(airflow_home)
        write_dag_file(spec, airflow_home / "dags")
        dag = build_release_dag(spec)
        listener = ProgressListener(plan, terminal)
        manager = get_listener_manager()
        manager.add_listener(listener)
        try:
            dag_run = dag.test(run_conf=params.model_dump(mode="json"), logical_date=None)
        finally:
            with contextlib.suppress(Exception):
                manager.pm.unregister(listener)
    return summarize(home, plan.dag_id, dag_run.run_id, str(dag_run.state), emit)


def _router_url(home: Path, service: str | None) -> str | None:
    state_file = home / "targets" / str(service) / "state.json"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    router = state.get("router") or {}
    return router.get("url") if state.get("active") else None


def summarize(home: Path, dag_id: str, run_id: str, state: str, emit: Emit = print) -> dict[str, Any]:
    paths = RunPaths(home=home, dag_id=dag_id, run_id=run_id)
    record_file = paths.run_dir / "record.json"
    record = json.loads(record_file.read_text(encoding="utf-8")) if record_file.exists() else {}
    state = "success" if state.endswith("success") else "failed"
    failed = record.get("failed_tasks") or []
    report = record.get("report") or str(paths.evidence_dir)
    summary = {"dag_id": dag_id, "run_id": run_id, "state": state, "failed_step": failed[0] if failed else None,
               "rolled_back": bool(record.get("rolled_back")), "active_version": record.get("active_version"),
               "report": report}
    emit("")
    if state == "success":
        emit(f"Release succeeded: {record.get('service')} {record.get('version')} is active.")
    else:
        emit(f"Release FAILED at {summary['failed_step']}: outcome {record.get('outcome', 'unknown')}; "
             f"active version: {summary['active_version']}.")
    service_url = _router_url(home, record.get("service"))
    if service_url:
        emit(f"Service: {service_url} (stop it with: gendev-release down SPEC --home {home})")
    emit(f"Report: {report}")
    emit(f"Evidence: {paths.evidence_dir}")
    emit(f"Airflow log: {home / 'logs' / 'airflow.log'}")
    return summary
