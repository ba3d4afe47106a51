"""Where a release run keeps its files, and what a duty gets to work with.

Layout under the gendev home (``$GENDEV_HOME``, else ``$AIRFLOW_HOME/gendev``, else ``./.gendev``)::

    targets/<service>/state.json          the local target's slots and active version
    runs/<dag_id>/<run_id>/work/           the run's work dir ({workdir}); artifacts in work/dist
    evidence/<dag_id>/<run_id>/<step>.json one AgentReport per step, written atomically
    history/<dag_id>.jsonl                 one line per finished release (durations, outcome)
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gendev_release.report import AgentReport

if TYPE_CHECKING:
    from gendev_release.spec import ReleaseSpec, RunParams
    from gendev_release.targets.base import Target

_SAFE = re.compile(r"[^A-Za-z0-9_.+-]")


def gendev_home() -> Path:
    if os.environ.get("GENDEV_HOME"):
        return Path(os.environ["GENDEV_HOME"]).resolve()
    if os.environ.get("AIRFLOW_HOME"):
        return (Path(os.environ["AIRFLOW_HOME"]) / "gendev").resolve()
    return Path(".gendev").resolve()


def safe_name(value: str) -> str:
    """A run id or task id made safe as one path component."""
    return _SAFE.sub("_", value)[:200] or "_"


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
    """Reports of one run, one JSON file per step. Re-running a step overwrites its report."""

    def __init__(self, paths: RunPaths) -> None:
        self.paths = paths

    def path_for(self, step_id: str) -> Path:
        return self.paths.evidence_dir / f"{safe_name(step_id)}.json"

    def save(self, report: AgentReport) -> Path:
        path = self.path_for(report.step_id)
        write_json_atomic(path, report.model_dump(mode="json"))
        return path

    def load(self, step_id: str) -> AgentReport | None:
        path = self.path_for(step_id)
        if not path.exists():
            return None
        return AgentReport.model_validate_json(path.read_text(encoding="utf-8"))

    def save_record(self, name: str, payload: Any) -> Path:
        path = self.paths.evidence_dir / f"{safe_name(name)}.json"
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
        """The report an earlier step of this run wrote, if any."""
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
