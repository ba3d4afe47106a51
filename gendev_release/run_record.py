"""The typed record of a release run, the release history, and the one API that reads them.

Layout under the gendev home::

    runs/<dag_id>/<run_id>/record.json   one RunRecord per run (rewritten atomically, under a lock)
    history/<dag_id>.jsonl               one HistoryEntry per finished attempt (append-only)

The CLI, the tests and (later) the UI read records through :class:`RunRecordStore` and the history
through :class:`ReleaseHistory`; nothing else parses these files. No Airflow import here.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gendev_release.errors import GendevError

Outcome = Literal["success", "dry_run", "aborted", "rolled_back", "withdrawn", "refused", "interrupted",
                  "failed"]
Decision = Literal["rollback", "abort"]

_SAFE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.+-")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def safe_name(value: str) -> str:
    """A run id or task id made safe as one path component."""
    cleaned = "".join(ch if ch in _SAFE_CHARS else "_" for ch in value)[:200]
    return cleaned if cleaned.strip(".") else "_"


class RecordError(GendevError):
    """A run record or history file cannot be read back."""

    retryable = False


class RunState(str, Enum):
    running = "running"
    success = "success"
    failed = "failed"
    interrupted = "interrupted"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Attempt(_Record):
    """One pass through the DAG: the first run, or a re-run after tasks were cleared."""

    number: int = Field(ge=1)
    started_at: datetime = Field(default_factory=utcnow)
    first_task: str | None = None
    finished_at: datetime | None = None
    state: RunState = RunState.running
    outcome: Outcome | None = None
    failed_tasks: list[str] = Field(default_factory=list)
    decision: Decision | None = None
    active_version: str | None = None


class RunRecord(_Record):
    """What happened in one release run; the single source the summary, report and UI read."""

    dag_id: str
    run_id: str
    service: str
    version: str | None = Field(None, description="None only when the run was refused before its version was known.")
    strategy: str | None = None
    dry_run: bool = False
    environment: str | None = None
    triggered_by: str | None = None
    state: RunState = RunState.running
    outcome: Outcome | None = None
    reason: str | None = Field(None, description="Why the run was refused or interrupted, in one line.")
    previous_version: str | None = Field(None, description="The version serving when the run started.")
    last_verified_version: str | None = Field(
        None, description="The last version that passed its checks before this run: the rollback target.")
    restored_before_release: dict[str, Any] | None = None
    active_version: str | None = None
    failed_tasks: list[str] = Field(default_factory=list)
    failure_decision: Decision | None = None
    rolled_back: bool = False
    restored_healthy: bool | None = None
    notified: list[str] = Field(default_factory=list)
    notification_failures: list[str] = Field(default_factory=list)
    report: str | None = None
    report_json: str | None = None
    evidence_dir: str | None = None
    """Where the run's evidence store is: a local folder, or a URL when ``$GENDEV_EVIDENCE_URL`` is set."""
    attempts: list[Attempt] = Field(default_factory=list)
    started_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None

    @property
    def attempt(self) -> Attempt | None:
        """The current (latest) attempt."""
        return self.attempts[-1] if self.attempts else None

    @property
    def note(self) -> str:
        """The one-line outcome shown on the DAG run in the UI."""
        version = self.version or "(no version)"
        failed = ", ".join(self.failed_tasks) or "a step"
        if self.state == RunState.running:
            return f"{self.service} {version}: running"
        return {
            "success": f"{self.service} {version} released and serving",
            "dry_run": f"{self.service} {version}: dry run passed, nothing changed",
            "aborted": f"{self.service} {version} aborted after {failed} failed; "
                       f"{self.active_version or 'nothing'} still serving",
            "rolled_back": f"rolled back to {self.active_version} after {failed} failed",
            "withdrawn": f"{self.service} {version} (first release) withdrawn after {failed} failed",
            "refused": f"refused: {self.reason}",
            "interrupted": f"{self.service} {version} interrupted: {self.reason}",
        }.get(self.outcome or "", f"{self.service} {version} failed at {failed}")


class HistoryEntry(_Record):
    """One finished attempt of a release; ``verified`` marks a version that passed every check live."""

    run_id: str
    attempt: int = 1
    version: str | None
    outcome: Outcome
    verified: bool = False
    source_sha: str | None = None
    failed_tasks: list[str] = Field(default_factory=list)
    active_version: str | None = None
    phase_seconds: dict[str, float] = Field(default_factory=dict)
    finished_at: datetime = Field(default_factory=utcnow)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class RunRecordStore:
    """Reads and writes :class:`RunRecord` files under a gendev home."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)

    def path(self, dag_id: str, run_id: str) -> Path:
        return self.home / "runs" / safe_name(dag_id) / safe_name(run_id) / "record.json"

    def load(self, dag_id: str, run_id: str) -> RunRecord | None:
        path = self.path(dag_id, run_id)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            return RunRecord.model_validate_json(text)
        except ValidationError as exc:
            raise RecordError(f"run record {path} is not a valid record: {exc.errors()[0]['msg']}") from exc

    def save(self, record: RunRecord) -> RunRecord:
        record.updated_at = utcnow()
        _write_atomic(self.path(record.dag_id, record.run_id), record.model_dump_json(indent=2))
        return record

    def update(self, dag_id: str, run_id: str, change: Callable[[RunRecord], None],
               create: Callable[[], RunRecord] | None = None) -> RunRecord:
        """Read, change and write one record under a lock (two tasks never lose each other's change)."""
        path = self.path(dag_id, run_id)
        with _file_lock(path.with_name("record.lock")):
            record = self.load(dag_id, run_id)
            if record is None:
                if create is None:
                    raise RecordError(f"no run record at {path}: the run was never started")
                record = create()
            change(record)
            return self.save(record)

    def list(self, dag_id: str) -> list[RunRecord]:
        """Every record of ``dag_id``, oldest first; unreadable ones are skipped."""
        folder = self.home / "runs" / safe_name(dag_id)
        records = []
        for path in folder.glob("*/record.json"):
            try:
                records.append(RunRecord.model_validate_json(path.read_text(encoding="utf-8")))
            except (OSError, ValidationError):
                continue
        return sorted(records, key=lambda r: r.started_at)


class ReleaseHistory:
    """The append-only history of one release DAG: what was released, verified, rolled back."""

    def __init__(self, home: Path, dag_id: str) -> None:
        self.path = Path(home) / "history" / f"{safe_name(dag_id)}.jsonl"

    def append(self, entry: HistoryEntry) -> HistoryEntry:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _file_lock(self.path.with_suffix(".lock")):
            if any(e.run_id == entry.run_id and e.attempt == entry.attempt for e in self.entries()):
                return entry  # this attempt is recorded already (a retried watcher)
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(entry.model_dump_json() + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        return entry

    def entries(self) -> list[HistoryEntry]:
        """Every entry, oldest first. Lines of an older format are read where they carry an outcome."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        entries = []
        for line in lines:
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if isinstance(data, dict) and "verified" not in data and data.get("outcome") == "success":
                    data["verified"] = True  # written by a release gate before the field existed
                entries.append(HistoryEntry.model_validate(data))
            except (ValueError, ValidationError):
                continue
        return entries

    def last_verified(self) -> HistoryEntry | None:
        """The newest release that passed every check while serving: the rollback target."""
        return next((e for e in reversed(self.entries()) if e.verified and e.outcome == "success"), None)

    def last_verified_version(self) -> str | None:
        entry = self.last_verified()
        return entry.version if entry else None
