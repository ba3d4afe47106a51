"""The deployment target interface: where the service runs and how traffic moves.

Targets speak **revisions and weights**: :meth:`Target.deploy` starts a version as a new revision
that takes no traffic, :meth:`Target.set_weights` splits traffic between revisions
(``{"blue": 90, "green": 10}``), :meth:`Target.revisions` lists them and :meth:`Target.retire`
stops one that takes no traffic. Blue-green is two revisions, weights 100/0; a canary is the same
two at 90/10, 75/25, ...

The blue/green vocabulary the duties use today (:meth:`~Target.stage`, :meth:`~Target.switch`,
:meth:`~Target.rollback`, ...) is implemented once, in :class:`RevisionTarget`, on top of those
primitives and the one state store every kind shares (:mod:`gendev_release.targets.state`). A
kind implements a handful of hooks: start a revision, route a split, stop a revision, say whether
a revision still runs, and the entry URL. Kinds: ``local`` (processes on loopback behind the
builtin router or nginx), ``command`` (argv templates for helm, kubectl, any CLI) and ``http`` (a
deploy API through an Airflow Connection).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gendev_release.errors import TargetError
from gendev_release.spec_rules import check_version, clip
from gendev_release.targets.state import RevisionRecord, TargetState, TargetStore, check_revision


@dataclass(frozen=True)
class SlotInfo:
    """One deployed version: its slot name, version, base URL, process id and the run that deployed it."""

    slot: str
    version: str
    url: str
    pid: int | None = None
    started_at: str | None = None
    run_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Revision:
    """One deployed revision and the share of traffic it takes.

    :param id: the revision id (``blue``/``green`` on the local target, ``r3`` on others).
    :param weight: its percentage of the traffic (0 to 100).
    :param running: whether it still runs (a local process, or what the platform's status reports).
    """

    id: str
    version: str
    url: str
    weight: int
    running: bool
    run_id: str | None = None
    started_at: str | None = None
    pid: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ResourceChange:
    """A planned change, shaped like a Terraform plan's ``resource_changes`` entry."""

    address: str
    actions: tuple[str, ...]  # ("create",), ("update",), ("delete",), ("delete", "create"), ("no-op",)
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None

    @property
    def destructive(self) -> bool:
        return "delete" in self.actions

    def as_dict(self) -> dict[str, Any]:
        return {"address": self.address, "change": {"actions": list(self.actions), "before": self.before,
                                                    "after": self.after}}


@dataclass
class TargetStatus:
    """A snapshot of the target: which slot takes traffic, which is kept for rollback."""

    service: str
    router_url: str | None
    active: SlotInfo | None
    previous: SlotInfo | None
    staged: SlotInfo | None
    weights: dict[str, int] = field(default_factory=dict)
    switched_by_run: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def check_weights(weights: Mapping[str, int]) -> dict[str, int]:
    """A traffic split: revision id -> whole percent 0..100, summing to 100 (or ``{}``: no traffic).

    Zero entries are dropped. :raises TargetError: naming the bad entry.
    """
    if not isinstance(weights, Mapping):
        raise TargetError(f"weights must be a mapping of revision -> percent, got {type(weights).__name__}")
    split: dict[str, int] = {}
    for revision, percent in weights.items():
        check_revision(revision, "weights key")
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise TargetError(f"weights[{revision!r}] = {clip(percent)}: a weight is a whole percent from 0 to 100")
        if percent:
            split[revision] = percent
    if split and sum(split.values()) != 100:
        raise TargetError(f"weights {split} add up to {sum(split.values())} %; they must add up to 100 "
                          "(or be empty: no revision takes traffic)")
    return split


class Target(ABC):
    """Where a service runs. Every method is idempotent per (run, version) where it can be."""

    kind: str = "abstract"

    # ------------------------------------------------------------------ revisions and weights
    def deploy(self, version: str, run_id: str | None = None) -> Revision:
        """Start ``version`` as a revision that takes no traffic; a running one of the same version is reused."""
        raise TargetError(f"the {self.kind} target does not deploy revisions")

    def set_weights(self, weights: Mapping[str, int], run_id: str | None = None) -> TargetStatus:
        """Split traffic: ``{revision: percent}`` adding up to 100 (``{}``: none); unnamed revisions get 0."""
        raise TargetError(f"the {self.kind} target does not split traffic")

    def revisions(self) -> list[Revision]:
        """Every revision the target records, with its share of traffic."""
        raise TargetError(f"the {self.kind} target does not list revisions")

    def retire(self, revision: str, run_id: str | None = None) -> str | None:
        """Stop ``revision`` (it must take no traffic); what happened, or None when it is not recorded."""
        raise TargetError(f"the {self.kind} target does not retire revisions")

    # ------------------------------------------------------------------ blue/green vocabulary
    @abstractmethod
    def status(self) -> TargetStatus:
        """Current state, read from durable storage (never only from memory)."""

    def current_version(self) -> str | None:
        active = self.status().active
        return active.version if active else None

    def took_traffic(self, run_id: str) -> bool:
        """Whether a revision ``run_id`` deployed takes traffic now or took some during that run (a canary step)."""
        active = self.status().active
        return active is not None and active.run_id == run_id

    @abstractmethod
    def url(self) -> str | None:
        """The stable URL clients use (the router); None when nothing is deployed yet."""

    @abstractmethod
    def plan(self, version: str) -> list[ResourceChange]:
        """What :meth:`stage` would change, without changing anything."""

    @abstractmethod
    def stage(self, version: str, run_id: str) -> SlotInfo:
        """Start ``version`` on the idle slot without moving traffic. Re-staging the same version is a no-op."""

    @abstractmethod
    def switch(self, slot: str, run_id: str) -> TargetStatus:
        """Move all traffic to ``slot`` atomically; the old active slot is kept as ``previous``."""

    @abstractmethod
    def rollback(self, run_id: str, to_version: str | None = None) -> TargetStatus:
        """Move traffic back to ``previous``; raises TargetError when there is nothing to go back to.

        :param to_version: the version the previous slot must run (the last verified release); a
            previous slot running anything else is refused rather than given traffic.
        """

    @abstractmethod
    def retire_previous(self, run_id: str) -> str | None:
        """Stop the previous slot (after a verified rollback it holds the failed version); None if none."""

    @abstractmethod
    def withdraw(self, run_id: str) -> TargetStatus:
        """First release failed after traffic moved: stop serving it (there is nothing to go back to)."""

    @abstractmethod
    def discard_staged(self, run_id: str) -> str | None:
        """Stop the slot ``run_id`` staged if it never received traffic (abort path); what was done, or None."""

    @abstractmethod
    def down(self) -> list[str]:
        """Stop every process of this target; returns what was stopped."""


class RevisionTarget(Target):
    """A target kind built on the shared store: the blue/green vocabulary on revisions and weights.

    Subclasses implement the hooks in the "kind hooks" section. Every change runs under the
    store's lock; a hook gets the locked :class:`TargetState` and changes it in place, and the
    caller saves it. Hooks never take the lock themselves (an flock does not nest).

    :param spec: the spec's ``target`` section.
    :param service: the service name; it names the state folder.
    :param home: the gendev home (see :func:`gendev_release.context.gendev_home`).
    """

    #: Revision ids that always exist as slots (the local target's blue and green); empty: ids are numbered.
    fixed_slots: tuple[str, ...] = ()

    def __init__(self, spec: Any, service: str, home: Path) -> None:
        self.spec = spec
        self.service = service
        self.home = Path(home)
        self.store = TargetStore(self.home, service, kind=self.kind, fixed_slots=self.fixed_slots,
                                 lock_patience=self.lock_patience())
        self.directory = self.store.directory

    @property
    def state_path(self) -> Path:
        return self.store.state_path

    @property
    def lock_path(self) -> Path:
        return self.store.lock_path

    @property
    def log_dir(self) -> Path:
        return self.store.log_dir

    def load_state(self) -> TargetState:
        return self.store.read()

    # =========================================================================== kind hooks
    def lock_patience(self) -> float:
        """How long a change waits for another task's change (which may be starting a revision)."""
        return 120.0

    def observe(self) -> None:
        """Refresh what the platform reports before revisions are judged (one status call per operation)."""

    @abstractmethod
    def running(self, record: RevisionRecord | None) -> bool:
        """Whether the revision still runs (a reused pid or a revision the platform dropped does not)."""

    def serves(self, record: RevisionRecord | None, version: str) -> bool:
        """Whether ``record`` runs ``version`` well enough to be reused instead of deploying again."""
        return record is not None and record.version == version and self.running(record)

    def check_deployable(self, version: str) -> None:
        """Refuse a version this kind cannot start, before anything changes (default: every version)."""

    def prepare(self, state: TargetState) -> bool:
        """Bring up what a deploy needs besides the revision (the local router); whether ``state`` changed."""
        return False

    @abstractmethod
    def new_revision(self, state: TargetState) -> str:
        """The id for the next revision (the local target's idle slot; ``r<N>`` elsewhere)."""

    @abstractmethod
    def start(self, state: TargetState, revision: str, version: str, run_id: str | None) -> RevisionRecord:
        """Start ``version`` as ``revision`` (no traffic); raise :class:`TargetError` when it does not come up."""

    @abstractmethod
    def route(self, state: TargetState, weights: dict[str, int], action: str) -> None:
        """Make traffic follow ``weights`` (already checked; ``{}``: no traffic) and return once it does."""

    def keep_routing(self, state: TargetState, weights: dict[str, int]) -> bool:
        """The split is unchanged: make sure it is still in force (a dead router restarted); whether state changed."""
        return False

    @abstractmethod
    def stop(self, state: TargetState, record: RevisionRecord) -> str:
        """Stop the revision; what happened (for the history and the caller's report)."""

    @abstractmethod
    def entry_url(self, state: TargetState) -> str | None:
        """The stable URL clients use, or None while nothing routes."""

    def stop_infrastructure(self, state: TargetState) -> list[str]:
        """:meth:`down`: stop what serves besides the revisions (the local router); what was stopped."""
        return []

    # ======================================================================= shared helpers
    def _version(self, version: str) -> str:
        try:
            return check_version(version)
        except ValueError as exc:
            raise TargetError(f"refused to deploy version {clip(version)}: {exc}") from None

    def _slot_info(self, state: TargetState, revision: str | None) -> SlotInfo | None:
        record = state.record(revision)
        if record is None or revision is None:
            return None
        running = self.running(record)
        # A dead process is reported with pid None: the slot is recorded but serves nothing.
        return SlotInfo(slot=revision, version=record.version, url=record.url,
                        pid=record.pid if running else None, started_at=record.started_at, run_id=record.run_id)

    def _revision(self, state: TargetState, revision: str) -> Revision:
        record = state.record(revision)
        if record is None:
            raise TargetError(f"{self.service} has no revision {revision!r}")
        running = self.running(record)
        return Revision(id=revision, version=record.version, url=record.url, weight=state.traffic().get(revision, 0),
                        running=running, run_id=record.run_id, started_at=record.started_at,
                        pid=record.pid if running else None)

    def _drop(self, state: TargetState, revision: str, run_id: str | None, action: str) -> str | None:
        """Stop ``revision`` and forget it; what happened (None: nothing recorded there)."""
        record = state.record(revision)
        if record is None:
            return None
        outcome = self.stop(state, record)
        state.forget(revision, keep_key=revision in self.fixed_slots)
        state.log(action, run_id, revision, record.version, outcome=outcome)
        return outcome

    def _deploy(self, state: TargetState, version: str, run_id: str | None, *, replace_idle: bool) -> str:
        """Start (or reuse) a revision of ``version`` that takes no traffic; its id. The caller saves."""
        traffic = state.traffic()
        for revision, record in state.slots.items():
            if record is not None and revision not in traffic and self.serves(record, version):
                if state.staged != revision or record.run_id != run_id:
                    state.staged = revision
                    if record.run_id != run_id:  # the running revision is reused: it is this run's now
                        state.log("stage_reuse", run_id, revision, version, staged_by=record.run_id)
                        record.run_id = run_id
                return revision
        if replace_idle and not self.fixed_slots:
            # Blue-green on a kind with numbered revisions: the new one replaces what waits idle.
            for revision in [r for r, rec in state.slots.items() if rec is not None and r not in traffic]:
                self._drop(state, revision, run_id, "replace")
        revision = self.new_revision(state)
        self._drop(state, revision, run_id, "replace")  # the local target's idle slot may still hold a version
        try:
            record = self.start(state, revision, version, run_id)
        except TargetError as exc:
            state.log("stage_failed", run_id, revision, version, reason=str(exc).splitlines()[0][:500])
            raise
        state.slots[record.slot] = record
        state.staged = record.slot
        state.log("stage", run_id, record.slot, version)
        return record.slot

    def _move(self, state: TargetState, weights: Mapping[str, int], run_id: str | None, action: str) -> bool:
        """Apply a traffic split under the lock; whether ``state`` changed (the caller saves)."""
        wanted = check_weights(weights)
        for revision in wanted:
            record = state.record(revision)
            if record is None:
                known = ", ".join(r for r, rec in state.slots.items() if rec is not None) or "none"
                raise TargetError(f"{self.service} has no revision {revision!r} to give traffic to (revisions: "
                                  f"{known})")
            if not self.running(record):
                raise TargetError(f"cannot give {self.service} revision {revision} traffic: version {record.version} "
                                  "is no longer running")
        if wanted == state.traffic():
            # Already in force: a retried task changes nothing, apart from a restarted router.
            changed = self.keep_routing(state, wanted)
            if state.weights is None:  # a state file from before weights: record the split it meant
                state.weights, changed = dict(wanted), True
            if state.staged in wanted:
                state.staged, changed = None, True
            return changed
        before = state.active
        self.route(state, wanted, action)
        state.weights = dict(wanted)
        top = max(wanted.values(), default=0)
        leaders = sorted(r for r, pct in wanted.items() if pct == top)
        active = before if before in leaders else (leaders[0] if leaders else None)
        if active != before:
            state.previous, state.active = before, active
        if state.staged in wanted:
            state.staged = None
        state.switched_by_run = run_id
        record = state.record(active)
        state.log(action, run_id, active, record.version if record else None, previous=state.previous,
                  weights=dict(wanted))
        return True

    # ============================================================== revisions and weights
    def revisions(self) -> list[Revision]:
        self.observe()
        state = self.store.read()
        return [self._revision(state, revision) for revision, record in state.slots.items() if record is not None]

    def deploy(self, version: str, run_id: str | None = None) -> Revision:
        version = self._version(version)
        self.check_deployable(version)
        with self.store.locked() as state:
            self.observe()
            if self.prepare(state):
                self.store.save(state)  # recorded at once, so down() can stop it even if the revision fails
            try:
                revision = self._deploy(state, version, run_id, replace_idle=False)
            finally:
                self.store.save(state)
            return self._revision(state, revision)

    def set_weights(self, weights: Mapping[str, int], run_id: str | None = None) -> TargetStatus:
        check_weights(weights)  # refused before anything runs
        with self.store.locked() as state:
            self.observe()
            if self._move(state, weights, run_id, "weights"):
                self.store.save(state)
        return self.status()

    def retire(self, revision: str, run_id: str | None = None) -> str | None:
        check_revision(revision)
        with self.store.locked() as state:
            self.observe()
            share = state.traffic().get(revision, 0)
            if share:
                raise TargetError(f"{self.service} revision {revision} takes {share} % of the traffic; move it to "
                                  "other revisions (set_weights) before retiring it")
            outcome = self._drop(state, revision, run_id, "retire")
            if outcome is not None:
                self.store.save(state)
        return outcome

    def took_traffic(self, run_id: str) -> bool:
        self.observe()
        state = self.store.read()
        ours = {revision for revision, record in state.slots.items() if record is not None and record.run_id == run_id}
        if any(state.traffic().get(revision) for revision in ours):
            return True
        return any(entry.get("run_id") == run_id and isinstance(entry.get("weights"), dict)
                   and any(entry["weights"].get(revision) for revision in ours) for entry in state.history)

    # ================================================================= blue/green vocabulary
    def alive(self, slot: str) -> bool:
        """Whether ``slot``'s revision still runs (a reused pid does not count)."""
        self.observe()
        return self.running(self.store.read().record(slot))

    def status(self) -> TargetStatus:
        self.observe()
        state = self.store.read()
        traffic = state.traffic()
        weights = {revision: traffic.get(revision, 0) for revision, record in state.slots.items()
                   if record is not None and self.running(record)}
        return TargetStatus(service=self.service, router_url=self.entry_url(state),
                            active=self._slot_info(state, state.active),
                            previous=self._slot_info(state, state.previous),
                            staged=self._slot_info(state, state.staged), weights=weights,
                            switched_by_run=state.switched_by_run, history=list(state.history))

    def url(self) -> str | None:
        return self.entry_url(self.store.read())

    def stage(self, version: str, run_id: str) -> SlotInfo:
        """Start ``version`` on the idle slot (replacing what waited there); the router comes up too.

        The router starts here rather than at the first switch so that a re-plan right after
        staging has nothing left to do and the stable URL exists before traffic moves to it.
        """
        version = self._version(version)
        self.check_deployable(version)
        with self.store.locked() as state:
            self.observe()
            if self.prepare(state):
                self.store.save(state)
            try:
                revision = self._deploy(state, version, run_id, replace_idle=True)
            finally:
                self.store.save(state)
            info = self._slot_info(state, revision)
        assert info is not None  # _deploy recorded it
        return info

    def switch(self, slot: str, run_id: str) -> TargetStatus:
        with self.store.locked() as state:
            self.observe()
            if slot not in state.slots:
                known = ", ".join(state.slots) or "none yet"
                raise TargetError(f"unknown slot {slot!r}; the {self.kind} target has {known}")
            record = state.record(slot)
            if record is None or not self.running(record):
                what = f"version {record.version} is no longer running" if record else "nothing is staged there"
                raise TargetError(f"cannot switch {self.service} to slot {slot}: {what}")
            if self._move(state, {slot: 100}, run_id, "switch"):
                self.store.save(state)  # the builtin router sees the new active slot from this one os.replace on
        return self.status()

    def rollback(self, run_id: str, to_version: str | None = None) -> TargetStatus:
        with self.store.locked() as state:
            self.observe()
            moves = [h for h in state.history if h.get("action") in ("switch", "rollback", "weights")]
            last = moves[-1] if moves else {}
            if last.get("action") == "rollback" and last.get("run_id") == run_id \
                    and last.get("slot") == state.active:
                return self.status()  # this run's rollback was the last traffic move; repeating it would undo it
            leader = state.active
            active = state.record(leader)
            failed = [r for r, rec in state.slots.items() if rec is not None and rec.run_id == run_id and r != leader]
            if leader is not None and active is not None and active.run_id != run_id and self.running(active) \
                    and failed:
                # This run's revision never led (a canary step, a rolling batch): the version that
                # leads takes all traffic again, and the failed revision becomes "previous" so
                # retire_previous stops it. (A run with no revision of its own, e.g. one restoring
                # an interrupted release, takes the classic path below.)
                if to_version is not None and active.version != to_version:
                    raise TargetError(f"will not roll {self.service} back to slot {leader}: it runs "
                                      f"{active.version}, but the last verified release is {to_version}")
                changed = self._move(state, {leader: 100}, run_id, "rollback")
                if state.previous != failed[0]:
                    state.previous, changed = failed[0], True
                if changed:
                    self.store.save(state)
                return self.status()
            previous = state.previous
            record = state.record(previous)
            if previous is None or record is None:
                raise TargetError(f"nothing to roll back to for {self.service}: no previous slot is recorded")
            if not self.running(record):
                raise TargetError(f"nothing to roll back to for {self.service}: the previous slot {previous} "
                                  f"(version {record.version}) is no longer running")
            if to_version is not None and record.version != to_version:
                raise TargetError(f"will not roll {self.service} back to slot {previous}: it runs {record.version}, "
                                  f"but the last verified release is {to_version}")
            if self._move(state, {previous: 100}, run_id, "rollback"):
                self.store.save(state)
        return self.status()

    def retire_previous(self, run_id: str) -> str | None:
        with self.store.locked() as state:
            self.observe()
            previous = state.previous
            if previous is None or previous == state.active:
                return None
            if state.traffic().get(previous):
                raise TargetError(f"the previous slot {previous} of {self.service} still takes traffic; not retired")
            outcome = self._drop(state, previous, run_id, "retire")
            self.store.save(state)
        return outcome

    def withdraw(self, run_id: str) -> TargetStatus:
        with self.store.locked() as state:
            self.observe()
            active = state.active
            if active is None:
                return self.status()  # already withdrawn (idempotent re-run)
            if state.previous is not None:
                raise TargetError(f"{self.service} has a previous slot ({state.previous}); roll back instead")
            self.route(state, {}, "withdraw")  # no revision takes traffic, then the failed one stops
            state.weights = {}
            self._drop(state, active, run_id, "withdraw")  # clears active and records the history
            state.switched_by_run = run_id
            self.store.save(state)
        return self.status()

    def discard_staged(self, run_id: str) -> str | None:
        with self.store.locked() as state:
            self.observe()
            slot = state.staged
            if slot is None:
                return None
            record = state.record(slot)
            if record is None or record.run_id != run_id:
                return None  # staged by another run: never ours to stop
            if slot == state.active or slot in state.traffic():
                state.staged = None  # it did receive traffic: never stop a serving slot here
                outcome = None
            else:
                outcome = self._drop(state, slot, run_id, "discard")
            self.store.save(state)
            return outcome

    def down(self) -> list[str]:
        """Take traffic away, stop every revision and the router; the loopback Prometheus too."""
        if not self.store.exists():
            return self._stop_monitoring([])
        stopped: list[str] = []
        with self.store.locked() as state:
            self.observe()
            if state.traffic():
                try:
                    self.route(state, {}, "down")
                except TargetError as exc:
                    stopped.append(f"traffic could not be taken away first: {exc}")
            for revision, record in list(state.slots.items()):
                if record is None:
                    continue
                outcome = self.stop(state, record)
                stopped.append(f"revision {revision} ({self.service} {record.version}): {outcome}")
                state.forget(revision, keep_key=revision in self.fixed_slots)
            stopped += self.stop_infrastructure(state)
            state.weights = {}
            state.active = state.previous = state.staged = None
            state.log("down", None, None, None, stopped=stopped)
            self.store.save(state)
        return self._stop_monitoring(stopped)

    def _stop_monitoring(self, stopped: list[str]) -> list[str]:
        """Also stop the loopback Prometheus launched for the service (``monitoring.prometheus.launch: local``)."""
        from gendev_release.prometheus_local import stop_local_prometheus  # it imports the process helpers

        outcome = stop_local_prometheus(self.home, self.service)
        return [*stopped, outcome] if outcome else stopped


__all__ = ["ResourceChange", "Revision", "RevisionTarget", "SlotInfo", "Target", "TargetStatus", "check_weights"]
