"""What the ``command`` and ``http`` targets share: the platform's status, read back after every change.

Their revisions run elsewhere (a cluster, a PaaS), so the truth is what the platform reports. A
status is one JSON object, validated here (:class:`ReportedStatus`)::

    {"revisions": [{"revision": "r2", "version": "1.1.0", "url": "http://10.0.0.7:8080", "ready": true}, ...],
     "weights": {"r1": 90, "r2": 10},
     "url": "http://app.example" | null}

Nothing is assumed done because a command exited 0 or an API answered 2xx: a deploy counts once the
status lists the revision ready with its version, a split once the status shows exactly that
split, a retire once the status no longer lists the revision (each waited for up to the spec's
``startup_timeout_seconds``).
"""

from __future__ import annotations

import json
import time
from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gendev_release.errors import TargetError
from gendev_release.spec_rules import check_version, clip
from gendev_release.targets.base import ResourceChange, RevisionTarget
from gendev_release.targets.processes import now_iso
from gendev_release.targets.state import REVISION_PATTERN, RevisionRecord, TargetState

POLL_FIRST_SECONDS = 0.1
POLL_MAX_SECONDS = 2.0


def _http_url(value: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{clip(value)} is not an http(s) URL")
    if "@" in parts.netloc:
        raise ValueError("the URL holds credentials")
    return value


class ReportedRevision(BaseModel):
    """One revision as the platform reports it."""

    model_config = ConfigDict(extra="forbid")

    revision: str = Field(pattern=REVISION_PATTERN)
    version: str
    url: str = Field(description="Where the revision answers directly (checked before it takes traffic).")
    ready: bool = True

    _version = field_validator("version")(lambda cls, v: check_version(v))
    _url = field_validator("url")(lambda cls, v: _http_url(v))


class ReportedStatus(BaseModel):
    """The platform's state: its revisions, the split in force and the stable URL."""

    model_config = ConfigDict(extra="forbid")

    revisions: list[ReportedRevision] = Field(default_factory=list)
    weights: dict[str, int] = Field(default_factory=dict)
    url: str | None = None

    _url = field_validator("url")(lambda cls, v: v if v is None else _http_url(v))

    @model_validator(mode="after")
    def _consistent(self) -> ReportedStatus:
        ids = [r.revision for r in self.revisions]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"revisions lists {', '.join(duplicates)} more than once")
        for revision, percent in self.weights.items():
            if revision not in ids:
                raise ValueError(f"weights names {revision!r}, which revisions does not list")
            if isinstance(percent, bool) or not 0 <= percent <= 100:
                raise ValueError(f"weights[{revision!r}] = {percent!r} is not a percent from 0 to 100")
        total = sum(self.weights.values())
        if total not in (0, 100):
            raise ValueError(f"weights add up to {total} %, not 100 (or 0: no traffic)")
        return self

    def find(self, revision: str) -> ReportedRevision | None:
        return next((r for r in self.revisions if r.revision == revision), None)

    def traffic(self) -> dict[str, int]:
        return {revision: percent for revision, percent in self.weights.items() if percent > 0}


def parse_status(text: str | bytes, source: str) -> ReportedStatus:
    """The status JSON ``source`` produced, validated.

    :raises TargetError: naming the source and the first bad field.
    """
    try:
        data = json.loads(text)
    except ValueError as exc:
        shown = text[:200] if isinstance(text, str) else text[:200].decode(errors="replace")
        raise TargetError(f"{source} did not print JSON ({exc}); it printed {shown!r}") from None
    try:
        return ReportedStatus.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise TargetError(f"{source} printed a status that is not valid at {where}: {message}") from None


class RemoteTarget(RevisionTarget):
    """A kind whose revisions run on a platform it talks to; each change is confirmed by the platform's status.

    Subclasses implement :meth:`read_status`, :meth:`deploy_call`, :meth:`weights_call` and
    :meth:`retire_call`.
    """

    def __init__(self, spec: Any, service: str, home: Path) -> None:
        super().__init__(spec, service, home)
        self._report: ReportedStatus | None = None

    # ------------------------------------------------------------------- what a kind implements
    @abstractmethod
    def read_status(self) -> ReportedStatus:
        """Ask the platform for its status (validated)."""

    @abstractmethod
    def deploy_call(self, revision: str, version: str) -> tuple[str, dict[str, Any]]:
        """Ask the platform to start ``version`` as ``revision``; the id it uses and what it said."""

    @abstractmethod
    def weights_call(self, state: TargetState, weights: dict[str, int], action: str) -> dict[str, Any]:
        """Ask the platform for the split ``weights``; what it said."""

    @abstractmethod
    def retire_call(self, record: RevisionRecord) -> str | None:
        """Ask the platform to remove the revision; None when this kind cannot (it keeps running there)."""

    # ------------------------------------------------------------------------------ hooks
    def lock_patience(self) -> float:
        return 2 * float(self.spec.startup_timeout_seconds) + 4 * float(self.spec.timeout_seconds) + 30

    def observe(self) -> None:
        self._report = self.read_status()

    def report(self) -> ReportedStatus:
        if self._report is None:
            self._report = self.read_status()
        return self._report

    def running(self, record: RevisionRecord | None) -> bool:
        if record is None:
            return False
        reported = self.report().find(record.slot)
        return reported is not None and reported.ready and reported.version == record.version

    def new_revision(self, state: TargetState) -> str:
        taken = {r.revision for r in self.report().revisions} | set(state.slots)
        while True:
            state.revision_counter += 1
            revision = f"r{state.revision_counter}"
            if revision not in taken:
                return revision

    def await_status(self, done: Callable[[ReportedStatus], bool], what: str) -> ReportedStatus:
        """Read the status until ``done`` holds; :class:`TargetError` after ``startup_timeout_seconds``."""
        timeout = float(self.spec.startup_timeout_seconds)
        deadline = time.monotonic() + timeout
        pause = POLL_FIRST_SECONDS
        while True:
            report = self._report = self.read_status()
            if done(report):
                return report
            if time.monotonic() >= deadline:
                shown = json.dumps(report.model_dump(mode="json"), sort_keys=True)[:600]
                raise TargetError(f"{self.service}: {what} did not show in the {self.kind} target's status within "
                                  f"{timeout:g} s; the last status was {shown}")
            time.sleep(pause)
            pause = min(pause * 2, POLL_MAX_SECONDS)

    def start(self, state: TargetState, revision: str, version: str, run_id: str | None) -> RevisionRecord:
        revision, said = self.deploy_call(revision, version)

        def ready(report: ReportedStatus) -> bool:
            found = report.find(revision)
            return found is not None and found.ready and found.version == version

        reported = self.await_status(ready, f"revision {revision} of version {version}, ready")
        found = reported.find(revision)
        assert found is not None
        return RevisionRecord(slot=revision, version=version, url=found.url, run_id=run_id, started_at=now_iso(),
                              detail=said)

    def route(self, state: TargetState, weights: dict[str, int], action: str) -> None:
        said = self.weights_call(state, weights, action)
        self.await_status(lambda report: report.traffic() == weights, f"the split {weights or 'no traffic'}")
        state.history.append({"at": now_iso(), "action": f"{action}_call", "run_id": None, "slot": None,
                              "version": None, "weights": dict(weights), **said})

    def keep_routing(self, state: TargetState, weights: dict[str, int]) -> bool:
        if self.report().traffic() == weights:
            return False
        self.route(state, weights, "restore")  # the platform drifted from the recorded split: put it back
        return True

    def stop(self, state: TargetState, record: RevisionRecord) -> str:
        outcome = self.retire_call(record)
        if outcome is None:
            return "left running on the platform: this target has no retire command, so it is only forgotten here"
        self.await_status(lambda report: report.find(record.slot) is None, f"revision {record.slot} gone")
        return outcome

    def entry_url(self, state: TargetState) -> str | None:
        if self.spec.url:
            return str(self.spec.url)
        return self.report().url

    def url(self) -> str | None:
        self.observe()
        return super().url()

    def plan(self, version: str) -> list[ResourceChange]:
        """What :meth:`stage` would do: reuse an idle revision of ``version``, or create one and replace the idle."""
        self.observe()
        state = self.load_state()
        traffic = state.traffic()
        idle = {r: rec for r, rec in state.slots.items() if rec is not None and r not in traffic}
        address = f"{self.kind}_revision"
        for revision, record in idle.items():
            if self.serves(record, version):
                before = {"revision": revision, "version": record.version, "running": True}
                return [ResourceChange(f"{address}.{revision}", ("no-op",), before, before)]
        changes = [ResourceChange(f"{address}.{revision}", ("delete",),
                                  {"revision": revision, "version": record.version, "running": self.running(record)},
                                  None) for revision, record in idle.items()]
        after = {"version": version, "revision": f"r{state.revision_counter + 1}", **self.plan_detail(version)}
        return [*changes, ResourceChange(f"{address}.next", ("create",), None, after)]

    def plan_detail(self, version: str) -> dict[str, Any]:
        """What the plan names besides the version (the deploy argv, the API call)."""
        return {}
