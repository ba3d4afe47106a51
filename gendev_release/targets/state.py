"""The one state store of a service's target, whatever its kind: revisions, weights, router, history.

Everything durable lives in ``<home>/targets/<service>/``::

    state.json   the TargetState below (every target kind writes the same model)
    state.lock   held (flock) for every read-modify-write of state.json
    lease.json   who holds the service's release (gendev_release.lease; same folder, its own lock)
    logs/        output of the processes the local target starts

Every write is an atomic ``os.replace``, which is also what makes a traffic move atomic for the
builtin router: it reads ``slots[active].url`` and re-reads the file when it is replaced.

State layout (JSON)::

    {"service": "demo", "kind": "local",
     "router": {"port", "pid", "url", "argv", "mode": "builtin" | "nginx", "generation", ...} | null,
     "slots": {"<revision>": {"slot": "<revision>", "version", "url", "pid", "run_id", ...} | null, ...},
     "weights": {"<revision>": <percent>, ...},           # the traffic split in force; {} = no traffic
     "active": "<revision>" | null,                       # the revision with the largest share
     "previous": "<revision>" | null,                     # the one that had it before (rollback goes there)
     "staged": "<revision>" | null,                       # deployed by a run, no traffic yet
     "switched_by_run": "<run id>" | null, "revision_counter": 3,
     "history": [{"at", "action", "run_id", "slot", "version", ...}, ...]}

``slots`` is keyed by revision id: the name is kept because the builtin router and older readers
look revisions up there. The local target's revision ids are its two slot names, ``blue`` and
``green``; other kinds number their revisions ``r1``, ``r2``, ... (or take the id their platform
gives, within :data:`REVISION_PATTERN`). A state file written before revisions had weights (no
``weights`` key) reads as ``{active: 100}``.
"""

from __future__ import annotations

import fcntl
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gendev_release.context import safe_name, write_json_atomic
from gendev_release.errors import TargetError
from gendev_release.lease import ServiceLease
from gendev_release.targets.processes import POLL_SECONDS, now_iso

#: A revision id: what command templates get as ``{revision}`` and what a deploy API may return.
REVISION_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
REVISION_RE = re.compile(REVISION_PATTERN)
HISTORY_LIMIT = 500


def check_revision(value: object, what: str = "revision") -> str:
    """A revision id, or :class:`TargetError` naming the value (it may reach an argv or a URL path)."""
    if not isinstance(value, str) or not REVISION_RE.fullmatch(value):
        shown = repr(value)[:80]
        raise TargetError(f"{what} {shown} is not a revision id: use lower-case letters, digits and '-', starting "
                          "with a letter, at most 63 characters (e.g. r3, blue)")
    return value


class RevisionRecord(BaseModel):
    """One revision as the store keeps it. ``slot`` is its id (the key in ``slots``)."""

    model_config = ConfigDict(extra="forbid")

    slot: str = Field(description="The revision id (the local target's slot name).")
    version: str
    url: str = Field(description="Where the revision answers directly (health checks before it takes traffic).")
    run_id: str | None = None
    started_at: str | None = None
    stopped_at: str | None = None
    # The local target's process; None for kinds whose revisions run elsewhere.
    pid: int | None = None
    port: int | None = None
    argv: list[str] | None = None
    log: str | None = None
    #: What the platform said when the revision was deployed (command output tail, API answer).
    detail: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return self.slot


class RouterRecord(BaseModel):
    """The local target's router process (builtin or nginx)."""

    model_config = ConfigDict(extra="forbid")

    port: int
    pid: int | None = None
    url: str
    argv: list[str] | None = None
    started_at: str | None = None
    log: str | None = None
    mode: Literal["builtin", "nginx"] = "builtin"
    #: nginx: how many configurations were applied; the router reports it in a response header.
    generation: int = 0
    config: str | None = None


class TargetState(BaseModel):
    """Everything the store keeps for one service (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    service: str
    kind: str = "local"
    router: RouterRecord | None = None
    slots: dict[str, RevisionRecord | None] = Field(default_factory=dict)
    weights: dict[str, int] | None = None
    active: str | None = None
    previous: str | None = None
    staged: str | None = None
    switched_by_run: str | None = None
    revision_counter: int = 0
    history: list[dict[str, Any]] = Field(default_factory=list)

    def record(self, revision: str | None) -> RevisionRecord | None:
        return self.slots.get(revision) if revision else None

    def traffic(self) -> dict[str, int]:
        """The split in force: revisions with a positive share (``{active: 100}`` for an older file)."""
        if self.weights is None:
            return {self.active: 100} if self.active and self.record(self.active) else {}
        return {rev: pct for rev, pct in self.weights.items() if pct > 0}

    def log(self, action: str, run_id: str | None, revision: str | None, version: str | None,
            **detail: Any) -> None:
        self.history.append({"at": now_iso(), "action": action, "run_id": run_id, "slot": revision,
                             "version": version, **detail})

    def forget(self, revision: str, keep_key: bool) -> None:
        """Drop ``revision``: no record, no traffic, no role (the local target keeps its slot key, as None)."""
        if keep_key:
            self.slots[revision] = None
        else:
            self.slots.pop(revision, None)
        if self.weights is not None:
            self.weights.pop(revision, None)
        for role in ("active", "previous", "staged"):
            if getattr(self, role) == revision:
                setattr(self, role, None)


class TargetStore:
    """The state file of one service's target and the lock that guards it.

    :param kind: the target kind using it; a state written by another kind while it still records
        revisions is refused (their processes or deployments would be orphaned).
    :param fixed_slots: revision ids that always appear in ``slots`` (the local target's blue and green).
    :param lock_patience: seconds to wait for the lock before giving up with a clear error.
    """

    def __init__(self, home: Path, service: str, *, kind: str, fixed_slots: tuple[str, ...] = (),
                 lock_patience: float = 120.0) -> None:
        self.home = Path(home)
        self.service = service
        self.kind = kind
        self.fixed_slots = fixed_slots
        self.lock_patience = lock_patience
        self.directory = self.home / "targets" / safe_name(service)

    @property
    def state_path(self) -> Path:
        return self.directory / "state.json"

    @property
    def lock_path(self) -> Path:
        return self.directory / "state.lock"

    @property
    def log_dir(self) -> Path:
        return self.directory / "logs"

    def lease(self) -> ServiceLease:
        """The service's release lease, kept beside the state (one folder per service for every kind)."""
        return ServiceLease(self.directory, self.service)

    def empty(self) -> TargetState:
        return TargetState(service=self.service, kind=self.kind, slots={slot: None for slot in self.fixed_slots})

    def exists(self) -> bool:
        return self.state_path.exists()

    def read(self) -> TargetState:
        """The stored state; a missing file is the empty state (nothing deployed).

        :raises TargetError: the file cannot be read, is not the state model (naming the field), or
            was written by another target kind that still records revisions.
        """
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return self.empty()
        except (OSError, ValueError) as exc:
            raise TargetError(f"cannot read the {self.service} target state {self.state_path}: {exc}; "
                              "fix or remove the file (processes it names may need stopping by hand)") from exc
        if not isinstance(data, dict):
            raise TargetError(f"{self.state_path} does not hold a JSON object")
        data.setdefault("service", self.service)
        try:
            state = TargetState.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(top level)"
            raise TargetError(f"the {self.service} target state {self.state_path} is not valid at {where}: "
                              f"{first['msg']}; fix or remove the file") from None
        for slot in self.fixed_slots:
            state.slots.setdefault(slot, None)
        if state.kind != self.kind:
            if any(record is not None for record in state.slots.values()):
                raise TargetError(f"the {self.service} target state {self.state_path} was written by the "
                                  f"{state.kind} target and still records revisions; stop them with the spec that "
                                  f"deployed them (gendev-release down) before switching target.kind to {self.kind}")
            state = self.empty().model_copy(update={"history": state.history, "router": state.router})
        return state

    def save(self, state: TargetState) -> None:
        state.history = state.history[-HISTORY_LIMIT:]
        write_json_atomic(self.state_path, state.model_dump(mode="json"))

    @contextmanager
    def locked(self) -> Iterator[TargetState]:
        """Hold the state lock and yield the current state (callers :meth:`save` what they change).

        The lock is an ``flock`` on its own open file: never nest two ``locked()`` blocks in one process.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_patience
        with open(self.lock_path, "a+") as handle:
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise TargetError(f"the {self.service} target is locked by another task for over "
                                          f"{self.lock_patience:g} s ({self.lock_path})") from None
                    time.sleep(POLL_SECONDS)
            try:
                yield self.read()
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


__all__ = ["REVISION_PATTERN", "RevisionRecord", "RouterRecord", "TargetState", "TargetStore", "check_revision"]
