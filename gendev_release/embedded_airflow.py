"""Run a release in-process on the embedded default: SQLite Airflow under the gendev home.

Used by ``gendev-release run``. The environment (``AIRFLOW_HOME`` and friends) must already point
at the home before this module is imported (see :func:`gendev_release.cli._prepare_environment`).

Before Airflow's database is touched the runner takes the service's lease (one release per service,
whatever starts it) and the home's embedded-Airflow lock (one in-process run per SQLite database;
a second service waits its turn).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from airflow.listeners import hookimpl

from gendev_release.context import RunPaths
from gendev_release.dagfile import write_dag_file as write_spec_dag_file
from gendev_release.lease import OWNER_ENV, lease_ttl
from gendev_release.plan import ReleasePlan, plan_release
from gendev_release.release_run import mark_interrupted, service_lease
from gendev_release.run_record import RunRecordStore
from gendev_release.spec import ReleaseSpec, RunParams

Emit = Callable[[str], None]


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
    """Give ``dag.test`` the spec's DAG inside the dags folder: a link to the spec and the data-free DAG file.

    ``release__<service>.yaml`` links to the spec (so its folder stays the base of relative paths)
    and ``release__<service>.py`` is the same constant file every spec gets: nothing from the spec
    or its path is ever written into code.
    """
    if spec.source is None:
        raise ValueError("a spec loaded from a file is needed to run it")
    link = dags_folder / f"{spec.dag_id}.yaml"
    if link.is_symlink() or link.exists():
        if link.resolve() != Path(spec.source).resolve():
            link.unlink()
    if not link.exists():
        link.symlink_to(spec.source)
    legacy = dags_folder / f"release_{spec.service.replace('-', '_')}.py"  # written by gendev-release 0.1
    if legacy.exists() and legacy.read_text(encoding="utf-8").startswith('"""Written by gendev-release run'):
        legacy.unlink()
    path, _ = write_spec_dag_file(link)
    return path


class ProgressListener:
    """Airflow listener that prints one line per finished task, grouped by phase."""

    def __init__(self, plan: ReleasePlan, emit: Emit) -> None:
        self.emit = emit
        self.labels: dict[str, tuple[str, str]] = {}
        for phase in plan.phases:
            header = f"Phase {phase.number}/8: {phase.title}"
            for task in phase.tasks:
                what = f"{task.agent} ({task.duty})" if task.kind == "agent" else \
                    "health checks after the switch" if task.role == "health" else \
                    task.doc.split(";")[0].split(":")[0].rstrip(".")
                self.labels[task.task_id] = (header, what)
        for task in (plan.start, *plan.gates(), plan.gate, plan.watcher):
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
            def emit(line: str) -> None:
                terminal.write(line + "\n")

            yield emit
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            terminal.close()


class ReleaseHeld(Exception):
    """Another release of the service holds its lease; nothing was started."""


@contextlib.contextmanager
def embedded_lock(airflow_home: Path, emit: Emit) -> Iterator[None]:
    """One in-process run per embedded (SQLite) Airflow; a second one waits for its turn."""
    airflow_home.mkdir(parents=True, exist_ok=True)
    with open(airflow_home / ".embedded.lock", "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            emit(f"Waiting: another gendev-release run uses the embedded Airflow in {airflow_home} ...")
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def set_run_note(dag_id: str, run_id: str) -> None:
    """Put the run record's one-line outcome on the embedded DAG run (the scheduler's listener does it in Airflow)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    from gendev_release.plugins.run_notes import note_for

    note = note_for(dag_id, run_id)
    if not note:
        return
    with create_session() as session:
        dag_run = session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id == run_id).one_or_none()
        if dag_run is not None:
            dag_run.note = note


def run_release(spec: ReleaseSpec, params: RunParams, home: Path, emit: Emit = print) -> dict[str, Any]:
    """Run one release of ``spec`` with ``params``; return the ``--json`` summary.

    :raises ReleaseHeld: when another live release holds the service (checked before anything starts).
    """
    from airflow.sdk.listener import get_listener_manager

    from gendev_release.lease import LeaseHeld
    from gendev_release.render import build_release_dag

    airflow_home = home / "airflow"
    plan = plan_release(spec)
    lease = service_lease(home, spec.service)
    token = f"embedded-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    try:
        acquired = lease.acquire(dag_id=spec.dag_id, run_id=None, owner="embedded", token=token,
                                 ttl_seconds=lease_ttl(float(spec.health.timeout_seconds) + 60.0))
    except LeaseHeld as exc:
        raise ReleaseHeld(str(exc)) from None
    if acquired.taken_over is not None:
        interrupted = mark_interrupted(home, acquired.taken_over, acquired.stale_reason or "its lease went stale")
        emit(f"Found a dead release: {acquired.taken_over.holder()}: {acquired.stale_reason}; "
             + (f"run {interrupted.run_id} ({interrupted.version}) is marked interrupted" if interrupted else
                "it had not started a run yet"))
    os.environ[OWNER_ENV] = token  # the tasks dag.test runs in this process adopt the lease
    # dag.test runs every trigger inline, with no executor to race: a trigger need not hold its event.
    from gendev_release.sensors.triggers import SETTLE_ENV

    os.environ.setdefault(SETTLE_ENV, "0")
    log_file = home / "logs" / "airflow.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    emit(f"Releasing {spec.service} {params.version} ({spec.strategy.kind}"
         f"{', dry run' if params.dry_run else ''}) on the embedded Airflow in {home}")
    try:
        with embedded_lock(airflow_home, emit), _airflow_output_to(log_file) as terminal:
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
            set_run_note(dag_run.dag_id, dag_run.run_id)
    finally:
        lease.release(token=token)  # normally released by release_outcome already
        os.environ.pop(OWNER_ENV, None)
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
    """The ``--json`` summary of a finished run, read through the run-record API."""
    paths = RunPaths(home=home, dag_id=dag_id, run_id=run_id)
    record = RunRecordStore(home).load(dag_id, run_id)
    state = "success" if state.endswith("success") else "failed"
    failed = record.failed_tasks if record else []
    report = (record.report if record else None) or paths.evidence_location
    summary = {"dag_id": dag_id, "run_id": run_id, "state": state, "failed_step": failed[0] if failed else None,
               "rolled_back": bool(record and record.rolled_back),
               "active_version": record.active_version if record else None,
               "outcome": record.outcome if record else None, "report": report}
    emit("")
    if state == "success" and record is not None:
        emit(f"Release succeeded: {record.note}.")
    else:
        emit(f"Release FAILED at {summary['failed_step']}: outcome {summary['outcome'] or 'unknown'}; "
             f"active version: {summary['active_version']}.")
        if record is not None and record.reason:
            emit(f"Reason: {record.reason}")
    service_url = _router_url(home, record.service if record else None)
    if service_url:
        emit(f"Service: {service_url} (stop it with: gendev-release down SPEC --home {home})")
    emit(f"Report: {report}")
    emit(f"Evidence: {paths.evidence_location}")
    emit(f"Airflow log: {home / 'logs' / 'airflow.log'}")
    return summary
