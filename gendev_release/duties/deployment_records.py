"""The records of a blue-green execution: the strategy log, and the phase 5 deliverables.

:class:`StrategyLog` is the step log ``execute_strategy`` writes as it goes; :func:`log_disagreements`
holds it against the target's own report (the read item's oracle).

:class:`ExecutionRecord` collects, while the duty runs, what the target reported before and after,
what the gates measured on the live slots, and what clients saw through the router during the
switch; :meth:`ExecutionRecord.deliver` writes one file per seed deliverable of phase 5 (monitoring
alerts excepted: :mod:`.monitoring` delivers it) and registers each with the report:

* ``Blue-green deployment``: the target's slots before and after, the staged slot provisioning
  handed on, the switch call, the rollback rehearsal and the strategy log;
* ``Progressive rollout``: the traffic moves observed (weights before and after, requests per
  phase and per endpoint, which version answered them). Blue-green moves all traffic in one step;
  canary and rolling steps would add rows here;
* ``Health checks``: every health check of the gate on the staged slot, after the switch through
  the router, the critical endpoints through the router and the previous slot's own answers;
* ``Validation gates``: each gate with its threshold from the spec, what was measured and the decision.

Nothing here decides an item; the files are the record of what was decided and on what.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from gendev_release.duties.common import describe_slot
from gendev_release.probes import CheckResult
from gendev_release.report import ReportBuilder, utcnow
from gendev_release.targets.base import SlotInfo, TargetStatus

BLUE_GREEN = "Blue-green deployment"
PROGRESSIVE_ROLLOUT = "Progressive rollout"
HEALTH_CHECKS = "Health checks"
VALIDATION_GATES = "Validation gates"
#: Deliverable name -> file name under ``{workdir}/deploy``.
FILES: dict[str, str] = {BLUE_GREEN: "blue-green.json", PROGRESSIVE_ROLLOUT: "progressive-rollout.json",
                         HEALTH_CHECKS: "health-checks.json", VALIDATION_GATES: "validation-gates.json"}

GateState = Literal["passed", "failed", "not_run"]


class StrategyLog:
    """The strategy step log: one JSON line per strategy step, rewritten by every attempt."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("", encoding="utf-8")

    def record(self, step: str, status: str, detail: str, **data: Any) -> None:
        line = {"step": step, "status": status, "detail": detail, "run_id": self.run_id,
                "at": utcnow().isoformat(), **data}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line, sort_keys=True, default=str) + "\n")

    def read_back(self) -> list[dict[str, Any]]:
        """The log as written on disk; ``ValueError`` on a line that is not a JSON object."""
        entries = []
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            entry = json.loads(line)
            if not isinstance(entry, dict) or "step" not in entry:
                raise ValueError(f"{self.path}:{number}: not a strategy log entry")
            entries.append(entry)
        return entries


def log_disagreements(entries: list[dict[str, Any]], before: TargetStatus, after: TargetStatus, staged: SlotInfo,
                      run_id: str, rerun: bool) -> list[str]:
    """Where the strategy log's account of the switch contradicts the target's own report (empty: they agree).

    A logged switch must show on the target: the staged slot active, moved by this run, and (when the
    target keeps a history) a switch entry of this run for that slot. A switch not made must have
    left the active slot as it was.
    """
    switch = next((entry for entry in entries if entry.get("step") == "switch"), None)
    if switch is None:
        return ["the strategy log has no switch step"]
    moved = after.active is not None and (after.active.slot, after.active.version) == (staged.slot, staged.version)
    if switch.get("switched") or rerun:
        claim = f"the strategy log says traffic moved to {staged.slot} {staged.version}"
        if not moved:
            return [f"{claim}, but the target reports active {describe_slot(after.active)}"]
        if after.switched_by_run != run_id:
            return [f"{claim}, but the target reports the switch was made by run {after.switched_by_run}"]
        if after.history and not any(h.get("action") == "switch" and h.get("run_id") == run_id
                                     and h.get("slot") == staged.slot for h in after.history):
            return [f"{claim}, but the target's history records no switch to {staged.slot} by this run"]
        return []
    was = (before.active.slot, before.active.version) if before.active else None
    now = (after.active.slot, after.active.version) if after.active else None
    if was != now:
        return [f"the strategy log says traffic was not moved ({switch.get('detail')}), but the target went from "
                f"active {describe_slot(before.active)} to {describe_slot(after.active)}"]
    return []


def status_snapshot(status: TargetStatus | None, run_id: str) -> dict[str, Any] | None:
    """The target's report as JSON, with only this run's history entries (the rest is other runs' business)."""
    if status is None:
        return None
    data = asdict(status)
    data["history"] = [entry for entry in status.history if entry.get("run_id") == run_id]
    return data


def check_rows(results: list[CheckResult]) -> list[dict[str, Any]]:
    return [{"name": c.name, "url": c.result.url, "status": c.result.status, "passed": c.passed, "reason": c.reason,
             "seconds": round(c.result.seconds, 4)} for c in results]


@dataclass
class Gate:
    """One validation gate: what the spec demands, what this run measured, and the decision."""

    name: str
    threshold: str
    state: GateState
    measured: Any = None
    detail: str = ""
    blocking: bool = True


@dataclass
class ExecutionRecord:
    """What one attempt of ``execute_strategy`` saw, filled in as it goes."""

    service: str
    version: str
    run_id: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    staged: dict[str, Any] | None = None
    not_run: str | None = None
    rerun: bool = False
    pre_switch: dict[str, Any] | None = None
    switch: dict[str, Any] | None = None
    observation: dict[str, Any] | None = None
    post_switch: dict[str, Any] | None = None
    endpoints: list[dict[str, Any]] | None = None
    serving: dict[str, Any] | None = None
    rehearsal: dict[str, Any] | None = None
    gates: list[Gate] = field(default_factory=list)

    def gate(self, name: str, threshold: str, state: GateState, measured: Any = None, detail: str = "",
             blocking: bool = True) -> None:
        self.gates.append(Gate(name, threshold, state, measured, detail, blocking))

    # ------------------------------------------------------------------------------- documents
    def _head(self) -> dict[str, Any]:
        return {"service": self.service, "version": self.version, "run_id": self.run_id, "strategy": "blue_green"}

    def blue_green(self, log: list[dict[str, Any]]) -> dict[str, Any]:
        return {**self._head(), "not_run": self.not_run, "rerun": self.rerun, "staged": self.staged,
                "target_before": self.before, "target_after": self.after, "switch": self.switch,
                "rollback_rehearsal": self.rehearsal, "strategy_log": log}

    def progressive_rollout(self) -> dict[str, Any]:
        steps = [{"at": at, "active": (snapshot or {}).get("active"), "weights": (snapshot or {}).get("weights")}
                 for at, snapshot in (("before the switch", self.before), ("after the switch", self.after))]
        observation = self.observation or {}
        return {**self._head(), "traffic_steps": steps,
                "moved": bool(self.switch and self.switch.get("traffic_moved")),
                "observed": {key: observation.get(key) for key in (
                    "router", "paths", "requests", "failed", "counted_phases", "by_path", "by_phase",
                    "first_release", "measured_by")} if observation else None,
                "note": "blue-green moves all traffic in one step; the observation shows what clients got on "
                        "each critical endpoint before, during and after it"}

    def health_checks(self) -> dict[str, Any]:
        previous = (self.rehearsal or {}).get("previous")
        return {**self._head(), "pre_switch": self.pre_switch, "post_switch": self.post_switch,
                "critical_endpoints": self.endpoints, "serving": self.serving,
                "previous_slot": {"slot": previous, "health": (self.rehearsal or {}).get("health")}
                if previous else None}

    def validation_gates(self) -> dict[str, Any]:
        blocking = [g for g in self.gates if g.blocking]
        return {**self._head(), "gates": [asdict(g) for g in self.gates],
                "passed": bool(blocking) and all(g.state == "passed" for g in blocking),
                "failed": [g.name for g in self.gates if g.state == "failed"],
                "not_run": [g.name for g in self.gates if g.state == "not_run"]}

    def deliver(self, folder: Path, report: ReportBuilder, log: list[dict[str, Any]]) -> list[Path]:
        """Write the four files under ``folder`` and register each with ``report``; return their paths."""
        folder.mkdir(parents=True, exist_ok=True)
        documents = {BLUE_GREEN: self.blue_green(log), PROGRESSIVE_ROLLOUT: self.progressive_rollout(),
                     HEALTH_CHECKS: self.health_checks(), VALIDATION_GATES: self.validation_gates()}
        paths = []
        for name, document in documents.items():
            path = folder / FILES[name]
            path.write_text(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
            report.deliver(name, path)
            paths.append(path)
        return paths
