"""Where a release run keeps its files, and what a duty gets to work with.

Layout under the gendev home (``$GENDEV_HOME``, else ``$AIRFLOW_HOME/gendev``, else ``./.gendev``)::

    targets/<service>/state.json           the local target's slots and active version
    targets/<service>/lease.json           who holds the service's release (see gendev_release.lease)
    runs/<dag_id>/<run_id>/record.json     the RunRecord (see gendev_release.run_record)
    runs/<dag_id>/<run_id>/work/           the run's work dir ({workdir}); artifacts in work/dist
    evidence/<dag_id>/<run_id>/            the run's evidence store (see gendev_release.evidence_store):
                                           every record with its sha256 in a hash chain, deliverables,
                                           earlier attempts under attempts/; $GENDEV_EVIDENCE_URL
                                           (any fsspec URL) puts it at <url>/<dag_id>/<run_id>/ instead
    history/<dag_id>.jsonl                 one line per finished attempt (durations, outcome, verified)

Steps hand facts to later steps through Airflow (XCom): :attr:`DutyContext.upstream` is how a
duty reads an earlier step's report; the evidence store is the audit trail, not the transport.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gendev_release.evidence_store import EVIDENCE_URL_ENV, EvidenceStore
from gendev_release.report import AgentReport
from gendev_release.run_record import safe_name

__all__ = ["DutyContext", "EvidenceStore", "RunPaths", "append_jsonl", "gendev_home", "safe_name",
           "write_json_atomic"]

if TYPE_CHECKING:
    from gendev_release.spec import ReleaseSpec, RunParams
    from gendev_release.targets.base import Target

def gendev_home() -> Path:
    if os.environ.get("GENDEV_HOME"):
        return Path(os.environ["GENDEV_HOME"]).resolve()
    if os.environ.get("AIRFLOW_HOME"):
        return (Path(os.environ["AIRFLOW_HOME"]) / "gendev").resolve()
    return Path(".gendev").resolve()


def write_json_atomic(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, path)


def append_jsonl(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(payload, sort_keys=True, default=str) + "\n")


@dataclass(frozen=True)
class RunPaths:
    home: Path
    dag_id: str
    run_id: str

    @property
    def run_dir(self) -> Path:
        return self.home / "runs" / safe_name(self.dag_id) / safe_name(self.run_id)

    @property
    def workdir(self) -> Path:
        return self.run_dir / "work"

    @property
    def artifacts_dir(self) -> Path:
        return self.workdir / "dist"

    @property
    def evidence_dir(self) -> Path:
        return self.home / "evidence" / safe_name(self.dag_id) / safe_name(self.run_id)

    @property
    def evidence_location(self) -> str:
        """The evidence store's place: ``$GENDEV_EVIDENCE_URL/<dag_id>/<run_id>`` if set, else :attr:`evidence_dir`."""
        url = os.environ.get(EVIDENCE_URL_ENV, "").strip()
        if url:
            return f"{url.rstrip('/')}/{safe_name(self.dag_id)}/{safe_name(self.run_id)}"
        return str(self.evidence_dir)

    @property
    def history_file(self) -> Path:
        return self.home / "history" / f"{safe_name(self.dag_id)}.jsonl"


@dataclass
class DutyContext:
    """Everything a duty needs; built by the operator, plain enough to build in a unit test."""

    spec: ReleaseSpec
    params: RunParams
    paths: RunPaths
    target: Target
    logger: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: How a duty reads an earlier step's report: Airflow's XCom in a DAG run (set by the operator);
    #: the evidence store when unset (unit tests).
    upstream: Callable[[str], AgentReport | None] | None = None

    @property
    def version(self) -> str:
        return self.params.version

    @property
    def run_id(self) -> str:
        return self.paths.run_id

    @property
    def store(self) -> EvidenceStore:
        return EvidenceStore(self.paths)

    def earlier(self, step_id: str) -> AgentReport | None:
        """The report an earlier step of this run handed on, if any."""
        if self.upstream is not None:
            return self.upstream(step_id)
        return self.store.load(step_id)

    def placeholders(self, **extra: str) -> dict[str, str]:
        values = {
            "python": sys.executable,
            "version": self.params.version,
            "previous_version": (self.target.current_version() or ""),
            "service": self.spec.service,
            "workdir": str(self.paths.workdir),
            "spec_dir": str(self.spec.spec_dir),
            "artifacts_dir": str(self.paths.artifacts_dir),
            "environment": self.spec.environment,
        }
        values.update(extra)
        return values

    def log(self, message: str, *args: Any) -> None:
        if self.logger is not None:
            self.logger.info(message, *args)
