"""Where a release run keeps its files, and what a duty gets to work with.

Layout under the gendev home (``$GENDEV_HOME``, else ``$AIRFLOW_HOME/gendev``, else ``./.gendev``)::

    targets/<service>/state.json           the local target's slots and active version
    targets/<service>/lease.json           who holds the service's release (see gendev_release.lease)
    runs/<dag_id>/<run_id>/record.json     the RunRecord (see gendev_release.run_record)
    runs/<dag_id>/<run_id>/work/           the run's work dir ({workdir}); artifacts in work/dist
    evidence/<dag_id>/<run_id>/<step>.json the latest AgentReport per step, written atomically;
    evidence/<dag_id>/<run_id>/attempts/   every earlier attempt's report, kept when a step re-runs
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

from gendev_release.report import AgentReport
from gendev_release.run_record import safe_name

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
    def history_file(self) -> Path:
        return self.home / "history" / f"{safe_name(self.dag_id)}.jsonl"


class EvidenceStore:
    """Reports of one run, one JSON file per step; a re-run keeps the earlier attempt under ``attempts/``."""

    def __init__(self, paths: RunPaths) -> None:
        self.paths = paths

    def path_for(self, step_id: str) -> Path:
        return self.paths.evidence_dir / f"{safe_name(step_id)}.json"

    @property
    def attempts_dir(self) -> Path:
        return self.paths.evidence_dir / "attempts"

    def keep_earlier(self, path: Path) -> Path | None:
        """Move an existing file aside as ``attempts/<stem>.<n><suffix>`` (n counts from 1); nothing is overwritten."""
        if not path.exists():
            return None
        self.attempts_dir.mkdir(parents=True, exist_ok=True)
        number = 1 + sum(1 for _ in self.attempts_dir.glob(f"{path.stem}.*{path.suffix}"))
        kept = self.attempts_dir / f"{path.stem}.{number}{path.suffix}"
        os.replace(path, kept)
        return kept

    def save(self, report: AgentReport) -> Path:
        path = self.path_for(report.step_id)
        self.keep_earlier(path)
        write_json_atomic(path, report.model_dump(mode="json"))
        return path

    def load(self, step_id: str) -> AgentReport | None:
        path = self.path_for(step_id)
        if not path.exists():
            return None
        return AgentReport.model_validate_json(path.read_text(encoding="utf-8"))

    def save_record(self, name: str, payload: Any, *, keep_earlier: bool = True) -> Path:
        """Write a non-report record (a decision, a health event); an earlier attempt's copy is kept."""
        path = self.paths.evidence_dir / f"{safe_name(name)}.json"
        if keep_earlier:
            self.keep_earlier(path)
        write_json_atomic(path, payload)
        return path

    def all_reports(self) -> list[AgentReport]:
        if not self.paths.evidence_dir.exists():
            return []
        reports = []
        for path in sorted(self.paths.evidence_dir.glob("*.json")):
            try:
                reports.append(AgentReport.model_validate_json(path.read_text(encoding="utf-8")))
            except ValueError:
                continue  # a non-report record (outcome, failure decision)
        return reports


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
