"""Agent reports: one verification per checklist item, each backed by evidence from this run.

The invariant that matters: a :class:`Verification` can only be ``passed`` when it carries at
least one :class:`Evidence` record. The gate (:meth:`AgentReport.gate_failures`) re-checks this, so
neither a builtin nor an AI agent can pass an item without evidence.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gendev_release.catalogue import ITEM_KINDS, Phase, Step

if TYPE_CHECKING:
    from gendev_release.evidence_store import EvidenceStore, RoundTrip

EvidenceKind = Literal["file", "command", "http", "metric", "git", "target", "computed"]
ItemKind = Literal["read", "verify", "check", "report"]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Evidence(BaseModel):
    """One observation made during the run."""

    model_config = ConfigDict(extra="forbid")

    kind: EvidenceKind
    source: str = Field(description="What was observed: a path, an argv, a URL, a metric name.")
    summary: str = ""
    sha256: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    collected_at: datetime = Field(default_factory=utcnow)

    @classmethod
    def file(cls, path: Path, summary: str = "", **data: Any) -> Evidence:
        """Evidence that a file exists, with its digest and size. Raises if it does not exist."""
        stat = path.stat()
        return cls(kind="file", source=str(path), sha256=sha256_file(path),
                   summary=summary or f"{path.name}: {stat.st_size} bytes", data={"bytes": stat.st_size, **data})


class Verification(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_id: str
    kind: ItemKind
    text: str
    passed: bool
    detail: str
    evidence: list[Evidence] = Field(default_factory=list)

    @model_validator(mode="after")
    def _no_pass_without_evidence(self) -> Verification:
        if self.passed and not self.evidence:
            raise ValueError(f"{self.item_id}: an item cannot pass without evidence")
        return self


class Deliverable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    path: str
    sha256: str


class AgentReport(BaseModel):
    """What one agent step found, item by item. Goes to XCom and to the evidence store."""

    model_config = ConfigDict(extra="forbid")

    agent: str
    duty: str
    step_id: str
    phase_id: str
    service: str
    version: str
    run_id: str
    status: Literal["passed", "failed", "skipped"]
    verifications: list[Verification]
    deliverables: list[Deliverable] = Field(default_factory=list)
    findings: list[str] = Field(default_factory=list)
    blocking_issues: list[str] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict)
    facts: dict[str, Any] = Field(default_factory=dict, description="Structured results later steps read.")
    backend: str = "builtin"
    started_at: datetime
    finished_at: datetime

    def gate_failures(self) -> list[str]:
        """Every reason this step must not pass; empty means the gate holds."""
        failures = []
        by_kind: dict[str, Verification] = {v.kind: v for v in self.verifications}
        for kind in ITEM_KINDS:
            verification = by_kind.get(kind)
            if verification is None:
                failures.append(f"{self.step_id}.{kind}: no verification recorded")
            elif not verification.evidence:
                failures.append(f"{verification.item_id}: no evidence gathered ({verification.detail})")
            elif not verification.passed:
                failures.append(f"{verification.item_id}: {verification.detail}")
        failures.extend(f"blocker: {issue}" for issue in self.blocking_issues)
        return failures


class ReportBuilder:
    """Collects evidence and verdicts item by item while a duty runs.

    Items never given a verdict fail with "no verdict". The ``report`` item is completed by
    :meth:`finish`: it lists every failed item as a blocker, then passes only if the report comes
    back intact and consistent from the evidence store.
    """

    def __init__(self, phase: Phase, step: Step, *, service: str, version: str, run_id: str) -> None:
        self.phase = phase
        self.step = step
        self._meta = {"service": service, "version": version, "run_id": run_id}
        self._evidence: dict[str, list[Evidence]] = {kind: [] for kind in ITEM_KINDS}
        self._verdicts: dict[str, tuple[bool, str]] = {}
        self.deliverables: list[Deliverable] = []
        self.findings: list[str] = []
        self.blocking_issues: list[str] = []
        self.metrics: dict[str, float] = {}
        self.facts: dict[str, Any] = {}
        self.started_at = utcnow()

    def evidence(self, kind: ItemKind, evidence: Evidence) -> Evidence:
        self._evidence[kind].append(evidence)
        return evidence

    def verdict(self, kind: ItemKind, passed: bool, detail: str) -> bool:
        """Record the decision for an item; a pass without evidence is turned into a failure."""
        if passed and not self._evidence[kind]:
            passed, detail = False, f"no evidence gathered: {detail}"
        self._verdicts[kind] = (passed, detail)
        return passed

    def fail(self, kind: ItemKind, detail: str) -> bool:
        return self.verdict(kind, False, detail)

    def fail_items(self, kinds: Iterable[ItemKind], detail: str) -> None:
        """Fail each of ``kinds`` for the same reason (a step that cannot go on past a missing source)."""
        for kind in kinds:
            self.fail(kind, detail)

    def passed(self, kind: ItemKind) -> bool:
        return self._verdicts.get(kind, (False, ""))[0]

    def block(self, issue: str) -> None:
        if issue not in self.blocking_issues:
            self.blocking_issues.append(issue)

    def deliver(self, name: str, path: Path) -> Deliverable:
        deliverable = Deliverable(name=name, path=str(path), sha256=sha256_file(path))
        self.deliverables.append(deliverable)
        return deliverable

    def finish(self, status_detail: str = "", *, backend: str = "builtin",
               store: EvidenceStore | None = None) -> AgentReport:
        """The step's report, its ``report`` item decided by a round trip through the evidence store.

        The report of items read, verify and check (with the blockers and deliverables) is written to
        ``store`` (with the deliverables' copies), read back, and checked: the digest read back is
        the chained one, the chain's links hold, and the content read back agrees with itself (every
        failed item listed as a blocker, the status following from the items, every deliverable in the
        store with its recorded digest). Only then does the report item pass; its evidence is the
        stored record's digest and chain position.

        :param store: the run's evidence store (``run_duty`` passes ``ctx.store``); without one, an
            in-memory store is used and discarded, so the check still runs (unit tests).
        """
        texts = dict(zip(ITEM_KINDS, self.step.items, strict=True))
        verifications: list[Verification] = []
        for kind in ITEM_KINDS[:3]:
            passed, detail = self._verdicts.get(kind, (False, "no verdict was reached"))
            if not passed:
                self.block(f"{self.step.id}.{kind}: {detail}")
            verifications.append(Verification(item_id=f"{self.step.id}.{kind}", kind=kind, text=texts[kind],
                                              passed=passed, detail=detail, evidence=self._evidence[kind]))
        draft = self._report(verifications, backend)
        round_trip, where = self._round_trip(draft, store)
        problems = list(round_trip.problems)
        if round_trip.report is not None:
            problems.extend(report_inconsistencies(round_trip.report))
        outcome = {v.kind: v.passed for v in verifications}
        evidence = list(self._evidence["report"])
        if round_trip.entry is not None:
            entry = round_trip.entry
            evidence.append(Evidence(
                kind="file", source=round_trip.location, sha256=entry.sha256,
                summary=f"{entry.name}: {entry.size} bytes, chain seq {entry.seq} (entry {entry.entry_hash[:16]})",
                data={"record": entry.name, "seq": entry.seq, "entry_hash": entry.entry_hash,
                      "prev_hash": entry.prev_hash, "bytes": entry.size, "store": where,
                      "ephemeral": store is None}))
        evidence.append(Evidence(
            kind="computed", source=f"{self.step.id} report read back from {where}",
            summary=f"items: {outcome}; blockers: {len(self.blocking_issues)}; problems: {len(problems)}",
            data={"items": outcome, "blocking_issues": list(self.blocking_issues),
                  "deliverables": [d.name for d in self.deliverables], "problems": problems}))
        report_verdict, report_detail = self._verdicts.get("report", (True, ""))
        detail = status_detail or ("ready" if not self.blocking_issues else
                                   f"{len(self.blocking_issues)} blocking issue(s) listed")
        if not report_verdict:  # an explicit failure of the report item keeps its reason
            detail = report_detail or "the report item failed"
        elif problems:
            detail = "the report did not come back intact from the evidence store: " + "; ".join(problems)
        verifications.append(Verification(item_id=f"{self.step.id}.report", kind="report", text=texts["report"],
                                          passed=report_verdict and not problems, detail=detail,
                                          evidence=evidence))
        return self._report(verifications, backend)

    def _report(self, verifications: list[Verification], backend: str) -> AgentReport:
        failed = bool(self.blocking_issues) or not all(v.passed for v in verifications)
        return AgentReport(
            agent=self.step.agent, duty=self.step.duty, step_id=self.step.id, phase_id=self.phase.id,
            status="failed" if failed else "passed", verifications=list(verifications),
            deliverables=list(self.deliverables), findings=list(self.findings),
            blocking_issues=list(self.blocking_issues), metrics=dict(self.metrics), facts=dict(self.facts),
            backend=backend, started_at=self.started_at, finished_at=utcnow(), **self._meta,
        )

    @staticmethod
    def _round_trip(draft: AgentReport, store: EvidenceStore | None) -> tuple[RoundTrip, str]:
        from gendev_release.evidence_store import EvidenceError, EvidenceStore, RoundTrip

        target = store or EvidenceStore.ephemeral()
        try:
            return target.round_trip(draft), target.location
        except Exception as exc:  # whatever the storage raised, the report survives with this item failed
            message = str(exc) if isinstance(exc, EvidenceError) else f"{type(exc).__name__}: {exc}"
            return RoundTrip(entry=None, location=target.location, report=None, problems=[message]), target.location
        finally:
            if store is None:
                target.discard()


def report_inconsistencies(report: AgentReport) -> list[str]:
    """Where a report contradicts its own verifications (empty when it is consistent)."""
    problems = []
    kinds: list[str] = [v.kind for v in report.verifications]
    for kind in ITEM_KINDS[:3]:
        if kinds.count(kind) != 1:
            problems.append(f"{report.step_id}.{kind}: {kinds.count(kind)} verifications recorded, expected 1")
    failed = [v for v in report.verifications if not v.passed]
    for verification in failed:
        if not any(verification.item_id in issue for issue in report.blocking_issues):
            problems.append(f"{verification.item_id} failed but is not listed as a blocker")
    expected = "failed" if failed or report.blocking_issues else "passed"
    if report.status != expected:
        problems.append(f"status {report.status!r} but its items and blockers say {expected!r}")
    return problems
