"""The evidence store: every record of a run, written through Airflow's ``ObjectStoragePath`` and hash-chained.

One run's folder is ``$GENDEV_HOME/evidence/<dag_id>/<run_id>/`` (:attr:`RunPaths.evidence_dir`), or
``$GENDEV_EVIDENCE_URL/<dag_id>/<run_id>/`` on any filesystem fsspec and Airflow can reach
(``file:///srv/evidence``, ``s3://aws_default@bucket/evidence``, ...)::

    chain.jsonl                    one ChainEntry per write or move, each hashing the one before it
    <step>.json                    the step's final AgentReport (with its report item)
    drafts/<step>.json             the report the report item read back: items read/verify/check, blockers
    <record>.json                  other records: failure-decision, serving-check, rollback-verification, ...
    release-report.json, .md       the release report
    deliverables/<step>/<name>     a copy of each file a step registered with ``ReportBuilder.deliver``
    manifest.json                  every deliverable: step, name, source, stored path, sha256
    attempts/...                   earlier copies, moved aside when a record is written again

History is never rewritten: a record written again is first moved under ``attempts/`` and the move
is chained as an entry of its own; the chain is only ever extended. :meth:`EvidenceStore.verify`
(``gendev-release verify-evidence RUN_DIR``) re-reads everything and names the first record that
is missing, altered, or not in the chain.

Airflow is imported only when a store is first used (``validate``, ``schema`` and ``graph`` never do).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from gendev_release.errors import GendevError
from gendev_release.report import AgentReport, Deliverable, utcnow
from gendev_release.run_record import safe_name

if TYPE_CHECKING:
    from typing import TypeAlias

    from airflow.sdk import ObjectStoragePath

    from gendev_release.context import RunPaths

    #: Where a record is: a local ``Path`` for a local store (what callers always got), else the object path.
    StoredPath: TypeAlias = Path | ObjectStoragePath

CHAIN = "chain.jsonl"
MANIFEST = "manifest.json"
ATTEMPTS = "attempts"
DRAFTS = "drafts"
DELIVERABLES = "deliverables"
GENESIS = "0" * 64
EVIDENCE_URL_ENV = "GENDEV_EVIDENCE_URL"
_LOCK = ".chain.lock"
_LOCAL_PROTOCOLS = frozenset({"file", "local", ""})
_THREAD_LOCK = threading.Lock()  # for stores without a local lock file (in memory)

ProblemKind = Literal["digest mismatch", "chain link broken", "missing", "not chained"]


class EvidenceError(GendevError):
    """The evidence store cannot be written or read (retrying may help: storage can come back)."""


class NoEvidence(EvidenceError):
    """There is no chain to verify at the given place (bad input, not a damaged run)."""

    retryable = False


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def json_bytes(payload: Any) -> bytes:
    """The exact bytes a JSON record is stored as (and digested over)."""
    return json.dumps(payload, indent=2, sort_keys=True, default=str).encode("utf-8")


class ChainEntry(BaseModel):
    """One line of ``chain.jsonl``: a record written (or moved aside) and the hash linking it to the entry before.

    ``entry_hash`` is the sha256 of every other field as canonical JSON (sorted keys, no spaces), so
    changing any field, or the order of entries, breaks the link to the next entry.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    seq: int
    name: str
    op: Literal["write", "move"]
    sha256: str
    size: int
    moved_from: str | None = None
    at: str
    prev_hash: str
    entry_hash: str

    @staticmethod
    def hash_of(fields: dict[str, Any]) -> str:
        body = {key: value for key, value in fields.items() if key != "entry_hash"}
        return sha256_bytes(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8"))

    @classmethod
    def after(cls, previous: ChainEntry | None, *, name: str, op: Literal["write", "move"], sha256: str,
              size: int, moved_from: str | None = None) -> ChainEntry:
        fields: dict[str, Any] = {
            "seq": previous.seq + 1 if previous else 1, "name": name, "op": op, "sha256": sha256, "size": size,
            "moved_from": moved_from, "at": utcnow().isoformat(),
            "prev_hash": previous.entry_hash if previous else GENESIS}
        return cls(**fields, entry_hash=cls.hash_of(fields))

    def intact(self) -> bool:
        return self.entry_hash == self.hash_of(self.model_dump())


@dataclass(frozen=True)
class ChainProblem:
    """One thing wrong with a run's evidence; ``seq`` is the chain entry it concerns (None: no entry)."""

    name: str
    kind: ProblemKind
    detail: str
    seq: int | None = None

    def render(self) -> str:
        where = f" (chain seq {self.seq})" if self.seq is not None else ""
        return f"{self.name}{where}: {self.kind}: {self.detail}"


@dataclass(frozen=True)
class ChainVerdict:
    """What :meth:`EvidenceStore.verify` found; ``problems`` in chain order, the first one first."""

    location: str
    entries: int
    records: int
    head: str | None
    problems: list[ChainProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.ok:
            return (f"ok: {self.records} record(s) present with their digests, chain of {self.entries} "
                    f"entries intact (head {(self.head or GENESIS)[:16]}) at {self.location}")
        return f"{self.location}: {len(self.problems)} problem(s); first: {self.problems[0].render()}"


@dataclass(frozen=True)
class RoundTrip:
    """A report written to the store and read back: where, under which chain entry, and what went wrong."""

    entry: ChainEntry | None
    location: str
    report: AgentReport | None
    problems: list[str]


def storage_path(location: str) -> ObjectStoragePath:
    """``location`` (a URL, or a local path) as an ``ObjectStoragePath``."""
    from airflow.sdk import ObjectStoragePath

    if "://" in location:
        return ObjectStoragePath(location)
    return ObjectStoragePath(str(Path(location).resolve()), protocol="file")


class EvidenceStore:
    """The records of one run, each stored with its sha256 and appended to the run's hash chain.

    :param paths: the run's paths; the store is at :attr:`RunPaths.evidence_location`.
    :param location: a run folder (URL or local path) instead, e.g. for verifying a finished run.
    """

    def __init__(self, paths: RunPaths | None = None, *, location: str | None = None) -> None:
        if location is None:
            if paths is None:
                raise ValueError("an evidence store needs the run's paths or a location")
            location = paths.evidence_location
        self.paths = paths
        self.location = location

    @classmethod
    def at(cls, location: str) -> EvidenceStore:
        """The store of one run's folder, given as a URL or a local path."""
        return cls(location=location if "://" in location else str(Path(location).resolve()))

    @classmethod
    def ephemeral(cls) -> EvidenceStore:
        """A store in memory, for a report finished outside a run (unit tests); :meth:`discard` it afterwards."""
        return cls(location=f"memory://gendev-evidence/{uuid.uuid4().hex}")

    # ------------------------------------------------------------------------------ locations
    @cached_property
    def root(self) -> ObjectStoragePath:
        try:
            return storage_path(self.location)
        except (ValueError, ImportError) as exc:
            raise NoEvidence(f"{self.location}: not a place evidence can be stored ({exc})") from exc

    @property
    def is_local(self) -> bool:
        return self.root.protocol in _LOCAL_PROTOCOLS

    def _path(self, name: str) -> ObjectStoragePath:
        parts = PurePosixPath(name).parts
        if not parts or name.startswith("/") or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            raise ValueError(f"{name!r} is not a record name inside the evidence store")
        return self.root.joinpath(*parts)

    def _public(self, path: ObjectStoragePath) -> StoredPath:
        return Path(path.path) if self.is_local else path

    def location_of(self, name: str) -> StoredPath:
        """Where record ``name`` is (a local ``Path`` for a local store)."""
        return self._public(self._path(name))

    def name_of(self, path: str | os.PathLike[str] | ObjectStoragePath) -> str:
        """The record name of ``path``: a path inside the run's folder (local or not), or already a name."""
        from airflow.sdk import ObjectStoragePath

        if isinstance(path, ObjectStoragePath):
            return self._relative(path)
        text = os.fspath(path)
        if "://" in text:
            return self._relative(storage_path(text))
        if not os.path.isabs(text):
            return PurePosixPath(text).as_posix()
        local = Path(text).resolve()
        bases = [Path(self.root.path)] if self.is_local else []
        if self.paths is not None:
            bases.append(self.paths.evidence_dir)
        for base in bases:
            try:
                return local.relative_to(base.resolve()).as_posix()
            except ValueError:
                continue
        raise ValueError(f"{path} is not inside the evidence store {self.location}")

    def _relative(self, path: ObjectStoragePath) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError as exc:
            raise ValueError(f"{path} is not inside the evidence store {self.location}") from exc

    def path_for(self, step_id: str) -> StoredPath:
        return self.location_of(f"{safe_name(step_id)}.json")

    @property
    def attempts_dir(self) -> StoredPath:
        return self.location_of(ATTEMPTS)

    # ---------------------------------------------------------------------------- storage layer
    def _read_bytes(self, path: ObjectStoragePath) -> bytes:
        return path.read_bytes()

    def _write_bytes(self, path: ObjectStoragePath, data: bytes) -> None:
        """Write through a temporary sibling renamed into place: a reader never sees half a record."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.write_bytes(data)
        tmp.rename(path)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time extends the chain (tasks of one run may run in parallel on this machine)."""
        lock_file: Path | None = None
        if self.is_local:
            lock_file = Path(self.root.path) / _LOCK
        elif self.paths is not None:
            lock_file = self.paths.run_dir / _LOCK
        if lock_file is None:
            with _THREAD_LOCK:
                yield
            return
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_file, "a+", encoding="utf-8") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    # ------------------------------------------------------------------------------ the chain
    def entries(self) -> list[ChainEntry]:
        """Every chain entry, in order.

        :raises EvidenceError: when a line is not an intact entry (run ``verify`` to see which).
        """
        chain = self._path(CHAIN)
        if not chain.exists():
            return []
        entries: list[ChainEntry] = []
        for number, line in enumerate(self._read_bytes(chain).splitlines(), 1):
            try:
                entries.append(ChainEntry.model_validate_json(line))
            except ValidationError as exc:
                raise EvidenceError(f"{self.location}/{CHAIN} line {number} is not a chain entry; "
                                    "run `gendev-release verify-evidence` on it") from exc
        return entries

    def latest(self, name: str) -> ChainEntry | None:
        """The last entry that put content at ``name``."""
        return next((e for e in reversed(self.entries()) if e.name == name), None)

    def _append(self, name: str, *, op: Literal["write", "move"], data: bytes,
                moved_from: str | None = None) -> ChainEntry:
        """Extend the chain by one entry (the caller holds the lock)."""
        chain = self._path(CHAIN)
        old = self._read_bytes(chain) if chain.exists() else b""
        lines = old.splitlines()
        previous = None
        if lines:
            try:
                previous = ChainEntry.model_validate_json(lines[-1])
            except ValidationError as exc:
                raise EvidenceError(f"the chain at {self.location} ends in a damaged entry; nothing more is "
                                    "added to it (run `gendev-release verify-evidence`)") from exc
            if not previous.intact():
                raise EvidenceError(f"the last chain entry at {self.location} was altered; nothing more is "
                                    "added to it (run `gendev-release verify-evidence`)")
        entry = ChainEntry.after(previous, name=name, op=op, sha256=sha256_bytes(data), size=len(data),
                                 moved_from=moved_from)
        if old and not old.endswith(b"\n"):
            old += b"\n"
        self._write_bytes(chain, old + entry.model_dump_json().encode("utf-8") + b"\n")
        return entry

    def _attempt_name(self, name: str) -> str:
        """``attempts/<folder>/<stem>.<n><suffix>``, n one more than the highest kept so far (from 1)."""
        pure = PurePosixPath(name)
        folder = PurePosixPath(ATTEMPTS, pure.parent)
        pattern = re.compile(rf"{re.escape(pure.stem)}\.(\d+){re.escape(pure.suffix)}")
        taken = [0]
        where = self._path(folder.as_posix())
        if where.exists():
            for kept in where.iterdir():
                match = pattern.fullmatch(kept.name)
                if match:
                    taken.append(int(match.group(1)))
        return (folder / f"{pure.stem}.{max(taken) + 1}{pure.suffix}").as_posix()

    def _move_aside(self, name: str) -> ChainEntry | None:
        """Move an existing record under ``attempts/`` and chain the move (the caller holds the lock)."""
        source = self._path(name)
        if not source.exists():
            return None
        data = self._read_bytes(source)
        target_name = self._attempt_name(name)
        target = self._path(target_name)
        target.parent.mkdir(parents=True, exist_ok=True)
        source.rename(target)
        return self._append(target_name, op="move", data=data, moved_from=name)

    def _put(self, name: str, data: bytes, *, keep_earlier: bool) -> ChainEntry:
        if keep_earlier:
            self._move_aside(name)
        self._write_bytes(self._path(name), data)
        return self._append(name, op="write", data=data)

    # ------------------------------------------------------------------------------- writing
    def put(self, name: str, data: bytes, *, keep_earlier: bool = True) -> ChainEntry:
        """Store ``data`` as record ``name`` and chain it; an earlier copy is moved under ``attempts/`` first.

        :raises EvidenceError: when the store cannot be written.
        """
        try:
            with self._locked():
                return self._put(name, data, keep_earlier=keep_earlier)
        except OSError as exc:
            raise EvidenceError(f"cannot write {name} to the evidence store {self.location}: "
                                f"{type(exc).__name__}: {exc}") from exc

    def keep_earlier(self, path: str | os.PathLike[str] | ObjectStoragePath) -> StoredPath | None:
        """Move a record aside as ``attempts/<stem>.<n><suffix>`` (n from 1) and chain the move; never overwrite."""
        name = self.name_of(path)
        try:
            with self._locked():
                moved = self._move_aside(name)
        except OSError as exc:
            raise EvidenceError(f"cannot keep the earlier {name} in {self.location}: {exc}") from exc
        return self.location_of(moved.name) if moved else None

    def save(self, report: AgentReport) -> StoredPath:
        """Store a step's (final) report as ``<step>.json``; a re-run's earlier report is kept."""
        name = f"{safe_name(report.step_id)}.json"
        self.put(name, json_bytes(report.model_dump(mode="json")))
        return self.location_of(name)

    def save_record(self, name: str, payload: Any, *, keep_earlier: bool = True) -> StoredPath:
        """Write a non-report record (a decision, a health event); an earlier attempt's copy is kept."""
        record = f"{safe_name(name)}.json"
        self.put(record, json_bytes(payload), keep_earlier=keep_earlier)
        return self.location_of(record)

    def save_text(self, name: str, text: str, *, keep_earlier: bool = True) -> StoredPath:
        self.put(name, text.encode("utf-8"), keep_earlier=keep_earlier)
        return self.location_of(name)

    def deliverable_name(self, step_id: str, deliverable: Deliverable) -> str:
        """``deliverables/<step>/<name>``, keeping the source file's suffix."""
        stored = safe_name(deliverable.name)
        suffix = PurePosixPath(deliverable.path).suffix
        if suffix and not stored.endswith(suffix):
            stored += suffix
        return f"{DELIVERABLES}/{safe_name(step_id)}/{stored}"

    def store_deliverable(self, step_id: str, deliverable: Deliverable) -> ChainEntry:
        """Copy a deliverable into the store, chain it, and list it in ``manifest.json``.

        The copy is of the file as it is now; the caller compares its digest with the one recorded
        when the file was registered.
        """
        name = self.deliverable_name(step_id, deliverable)
        try:
            data = Path(deliverable.path).read_bytes()
        except OSError as exc:
            raise EvidenceError(f"deliverable {deliverable.name!r} ({deliverable.path}) cannot be read: {exc}") from exc
        try:
            with self._locked():
                moved = self._move_aside(name)
                entry = self._put(name, data, keep_earlier=False)
                manifest = self._manifest()
                for line in manifest:
                    if moved is not None and line["stored"] == name and line.get("current", True):
                        line.update(stored=moved.name, current=False)
                manifest.append({"step": step_id, "name": deliverable.name, "source": deliverable.path,
                                 "stored": name, "sha256": entry.sha256, "size": entry.size, "seq": entry.seq,
                                 "current": True})
                self._put(MANIFEST, json_bytes(manifest), keep_earlier=False)
        except OSError as exc:
            raise EvidenceError(f"cannot store deliverable {deliverable.name!r} in {self.location}: {exc}") from exc
        return entry

    def _manifest(self) -> list[dict[str, Any]]:
        path = self._path(MANIFEST)
        if not path.exists():
            return []
        loaded = json.loads(self._read_bytes(path))
        return list(loaded) if isinstance(loaded, list) else []

    def manifest(self) -> list[dict[str, Any]]:
        """Every deliverable stored in this run (earlier attempts' copies with ``current: false``)."""
        return self._manifest()

    # ------------------------------------------------------------------------------- reading
    def read(self, name: str) -> bytes:
        return self._read_bytes(self._path(name))

    def load(self, step_id: str) -> AgentReport | None:
        path = self._path(f"{safe_name(step_id)}.json")
        if not path.exists():
            return None
        return AgentReport.model_validate_json(self._read_bytes(path))

    def all_reports(self) -> list[AgentReport]:
        if not self.root.exists():
            return []
        reports = []
        for path in sorted(self.root.glob("*.json"), key=lambda p: p.name):
            try:
                reports.append(AgentReport.model_validate_json(self._read_bytes(path)))
            except ValueError:
                continue  # a non-report record (outcome, failure decision, manifest)
        return reports

    def discard(self) -> None:
        """Remove an in-memory store's records (only an :meth:`ephemeral` store may be discarded)."""
        if self.root.protocol != "memory":
            raise EvidenceError(f"refusing to delete the evidence at {self.location}: only in-memory stores "
                                "are discarded")
        if self.root.exists():
            self.root.rmdir(recursive=True)

    # ---------------------------------------------------------------------- the report round trip
    def round_trip(self, draft: AgentReport) -> RoundTrip:
        """Store a step's deliverables and its report, then read the report back and check it.

        The report must come back byte for byte (its digest equals the chained one), under the chain's
        latest entry for its name, with the whole store intact (every link of the chain, every chained
        record present with its digest: an earlier step's record altered on disk fails this step's
        report item too), and every deliverable must be in the store with the digest recorded when it
        was registered.
        """
        name = f"{DRAFTS}/{safe_name(draft.step_id)}.json"
        problems: list[str] = []
        for deliverable in draft.deliverables:
            try:
                stored = self.store_deliverable(draft.step_id, deliverable)
            except EvidenceError as exc:
                problems.append(str(exc))
                continue
            if stored.sha256 != deliverable.sha256:
                problems.append(f"deliverable {deliverable.name!r} changed after it was registered: "
                                f"sha256 {stored.sha256[:16]} now, {deliverable.sha256[:16]} recorded")
        data = json_bytes(draft.model_dump(mode="json"))
        location = str(self.location_of(name))
        try:
            entry = self.put(name, data)
        except EvidenceError as exc:
            return RoundTrip(entry=None, location=location, report=None, problems=[*problems, str(exc)])
        try:
            back = self.read(name)
            chained = self.latest(name)
            whole = self.verify()
        except (OSError, EvidenceError) as exc:
            return RoundTrip(entry=entry, location=location, report=None,
                             problems=[*problems, f"cannot read {name} back from {self.location}: {exc}"])
        digest = sha256_bytes(back)
        if digest != entry.sha256:
            problems.append(f"{name} read back with sha256 {digest[:16]}, written as {entry.sha256[:16]} "
                            "(digest mismatch)")
        if chained != entry:
            problems.append(f"{name}: the chain's latest entry for it is not the one just written "
                            f"(seq {chained.seq if chained else None}, expected {entry.seq})")
        problems.extend(p.render() for p in whole.problems)
        report: AgentReport | None = None
        try:
            report = AgentReport.model_validate_json(back)
        except ValidationError as exc:
            problems.append(f"{name} read back is not a report: {exc.errors()[0]['msg']}")
        if report is not None:
            problems.extend(self._deliverable_problems(report))
        return RoundTrip(entry=entry, location=location, report=report, problems=problems)

    def _deliverable_problems(self, report: AgentReport) -> list[str]:
        problems = []
        for deliverable in report.deliverables:
            name = self.deliverable_name(report.step_id, deliverable)
            entry = self.latest(name)
            path = self._path(name)
            if entry is None or not path.exists():
                problems.append(f"deliverable {deliverable.name!r} is not in the store ({name})")
            elif not (entry.sha256 == deliverable.sha256 == sha256_bytes(self._read_bytes(path))):
                problems.append(f"deliverable {deliverable.name!r} in the store ({name}) does not have the "
                                f"recorded sha256 {deliverable.sha256[:16]}")
        return problems

    # ------------------------------------------------------------------------------ verifying
    def _walk_chain(self) -> tuple[list[ChainEntry], list[ChainProblem]]:
        """The intact prefix of the chain and the first broken link, if any (nothing after it is trusted)."""
        chain = self._path(CHAIN)
        if not chain.exists():
            raise NoEvidence(f"no chain file at {self.location}/{CHAIN}: not the evidence folder of a run "
                             "(or written before the store was chained)")
        entries: list[ChainEntry] = []
        previous_hash = GENESIS
        for number, line in enumerate(self._read_bytes(chain).split(b"\n"), 1):
            if not line:
                continue  # the final newline
            try:
                entry = ChainEntry.model_validate_json(line)
            except ValidationError:
                return entries, [ChainProblem(f"{CHAIN} line {number}", "chain link broken",
                                              "not a complete chain entry (truncated or edited); nothing after "
                                              f"entry {len(entries)} can be trusted", seq=len(entries) + 1)]
            why = None
            if entry.seq != len(entries) + 1:
                why = f"entry numbered {entry.seq} where {len(entries) + 1} was expected (entries removed or reordered)"
            elif entry.prev_hash != previous_hash:
                why = "its prev_hash does not match the entry before it (an entry before it was removed or altered)"
            elif not entry.intact():
                why = "its entry_hash does not match its fields (the entry was edited)"
            if why:
                return entries, [ChainProblem(entry.name, "chain link broken", why, seq=entry.seq)]
            entries.append(entry)
            previous_hash = entry.entry_hash
        return entries, []

    def verify_links(self) -> list[ChainProblem]:
        """Only the chain's links (cheap: no record is re-read)."""
        return self._walk_chain()[1]

    def verify(self) -> ChainVerdict:
        """Re-read every chained record and check its digest, the chain's links, and that nothing is unchained.

        :raises NoEvidence: when there is no chain at this place.
        """
        entries, problems = self._walk_chain()
        expected: dict[str, ChainEntry] = {}  # record name -> the entry that put its current content there
        for entry in entries:
            if entry.op == "move" and entry.moved_from is not None:
                source = expected.pop(entry.moved_from, None)
                if source is not None and source.sha256 != entry.sha256:
                    problems.append(ChainProblem(
                        entry.moved_from, "digest mismatch",
                        f"moved to {entry.name} with sha256 {entry.sha256[:16]}, but chained as "
                        f"{source.sha256[:16]} at seq {source.seq}: altered before it was moved", seq=source.seq))
            expected[entry.name] = entry
        for name, entry in expected.items():
            path = self._path(name)
            if not path.exists():
                problems.append(ChainProblem(name, "missing", f"chained with sha256 {entry.sha256[:16]} but not "
                                             "in the store", seq=entry.seq))
                continue
            digest = sha256_bytes(self._read_bytes(path))
            if digest != entry.sha256:
                problems.append(ChainProblem(name, "digest mismatch", f"stored content has sha256 {digest[:16]}, "
                                             f"chained as {entry.sha256[:16]}", seq=entry.seq))
        last = entries[-1].seq if entries else 0
        for path in sorted(self.root.rglob("*"), key=str):
            name = str(path.relative_to(self.root))
            if name == CHAIN or any(part.startswith(".") for part in PurePosixPath(name).parts):
                continue
            if name not in expected and path.is_file():
                problems.append(ChainProblem(name, "not chained", f"in the store but not in the chain, which ends "
                                             f"at seq {last} (truncated, or written around the store)"))
        problems.sort(key=lambda p: (p.seq is None, p.seq or 0))  # chain order; unchained records last
        return ChainVerdict(location=self.location, entries=len(entries), records=len(expected),
                            head=entries[-1].entry_hash if entries else None, problems=problems)


def verify_evidence(location: str) -> ChainVerdict:
    """Verify the evidence of one run, given its folder (a local path) or URL."""
    return EvidenceStore.at(location).verify()


def current_records(store: EvidenceStore, prefix: str, key: Callable[[str], Any] = str) -> list[dict[str, Any]]:
    """The records named ``<prefix>...json`` at the store's top level (the latest copy of each), sorted by ``key``.

    A record moved aside by a re-run is not current until written again; a missing or altered one
    is left out here (``verify-evidence`` and the report items name it).
    """
    try:
        entries = store.entries()
    except GendevError:
        return []
    present: dict[str, bool] = {}
    for entry in entries:
        present[entry.name] = entry.op == "write"
        if entry.op == "move" and entry.moved_from:
            present[entry.moved_from] = False
    names = sorted((n for n, here in present.items()
                    if here and n.startswith(prefix) and n.endswith(".json") and "/" not in n), key=key)
    rows = []
    for name in names:
        try:
            rows.append(json.loads(store.read(name)))
        except (GendevError, OSError, ValueError):
            continue
    return rows
