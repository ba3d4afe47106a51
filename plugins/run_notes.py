"""Listener: the release's one-line outcome becomes the DAG run's note, shown in the UI without opening XCom.

Tasks cannot set their own DAG run's note (no Execution API route for it); the scheduler can, and
it calls ``on_dag_run_success`` / ``on_dag_run_failed`` with the ORM ``DagRun`` inside its session,
so the note is written with the run's final state. The text comes from the run record
(:attr:`gendev_release.run_record.RunRecord.note`), e.g. "rolled back to 1.1.0 after
p5_deployment.execute_strategy failed". Listener errors are logged, never raised.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.listeners import hookimpl

log = logging.getLogger(__name__)

#: Release DAG ids start with this (``gendev_release.spec.dag_id_for``).
RELEASE_DAG_PREFIX = "release__"
NOTE_LIMIT = 1000


def note_for(dag_id: str, run_id: str) -> str | None:
    """The run record's one-line outcome, or None for other DAGs and runs without a record."""
    if not dag_id.startswith(RELEASE_DAG_PREFIX):
        return None
    from gendev_release.context import gendev_home
    from gendev_release.run_record import RunRecordStore

    record = RunRecordStore(gendev_home()).load(dag_id, run_id)
    return record.note[:NOTE_LIMIT] if record else None


def _set_note(dag_run: Any) -> None:
    try:
        note = note_for(str(dag_run.dag_id), str(dag_run.run_id))
        if note:
            dag_run.note = note
    except Exception:  # a listener must never break the scheduler
        log.exception("gendev-release: could not set the note of %s %s", getattr(dag_run, "dag_id", "?"),
                      getattr(dag_run, "run_id", "?"))


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    _set_note(dag_run)


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    _set_note(dag_run)
