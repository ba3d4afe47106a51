"""The vulnerability scan's rules: the lock file, OSV matching, and when a scan report may be trusted.

* The lock file (:func:`parse_lock_file`, :func:`lock_problems`): requirements-style ``name==version``
  pins with ``--hash=sha256:...``.
* OSV matching (:func:`affected_by`, :func:`scan_lock`): does an OSV advisory's ``affected`` entry
  (``ranges`` of ``introduced``/``fixed``/``last_affected`` events, ``versions``) include a locked
  version? Versions are compared as PEP 440 versions (``packaging``), as the PyPI ecosystem defines them.
  :mod:`gendev_release.demo.osv_scan` is the demo's offline scanner built on it.
* Trust in a report: :func:`coverage` (every locked package at its locked version, or for SARIF the
  lock file's exact digest among the analysed artifacts) and :func:`freshness` (a provided report
  not older than the lock file: git commit times when both files are committed unmodified in one
  repository, else file modification times).

Pure functions except :func:`freshness` (which asks git); nothing here imports Airflow.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from packaging.version import InvalidVersion, Version

from gendev_release.formats import (
    OsvAdvisory,
    OsvAffected,
    OsvRange,
    ScanFormatError,
    ScanReport,
    normalize_name,
    parse_osv_record,
)

__all__ = ["Coverage", "Freshness", "LockEntry", "affected_by", "coverage", "freshness", "load_advisories",
           "lock_problems", "normalize_name", "parse_lock_file", "scan_lock"]


# ==================================================================================== lock file
@dataclass(frozen=True)
class LockEntry:
    name: str
    version: str | None
    hashes: tuple[str, ...]
    line: int
    text: str

    @property
    def pinned(self) -> bool:
        return self.version is not None


_PIN_RE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?"  # name[extras]
                     r"\s*===?\s*(?P<version>[^\s;,]+)\s*(?:;.*)?$")  # ==version ; markers
_NAME_RE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)")
_HASH_RE = re.compile(r"--hash[=\s]+(sha256:[0-9a-fA-F]{64})")


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Lines with ``\\`` continuations joined and comments dropped, with the number of their first line."""
    logical: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not buffer:
            start = number
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        if buffer.strip():
            logical.append((start, buffer.strip()))
        buffer = ""
    if buffer.strip():
        logical.append((start, buffer.strip()))
    return logical


def parse_lock_file(text: str) -> list[LockEntry]:
    """Parse a requirements-style lock file (``name==version \\`` ``--hash=sha256:...``).

    Comment and option lines (``--index-url``, ``-r``) are skipped; a requirement without ``==``
    (``name>=1``, a URL, ``-e path``) is returned with ``version=None``, i.e. unpinned.
    """
    entries: list[LockEntry] = []
    for number, line in _logical_lines(text):
        hashes = tuple(_HASH_RE.findall(line))
        requirement = _HASH_RE.sub("", line).strip()
        if requirement.startswith("-e ") or requirement.startswith("--editable"):
            entries.append(LockEntry(requirement, None, hashes, number, line))
            continue
        if requirement.startswith("-"):
            continue  # an option line: --index-url, -r other.txt, --no-binary ...
        match = _PIN_RE.match(requirement)
        if match:
            entries.append(LockEntry(match["name"], match["version"], hashes, number, line))
        else:
            name = _NAME_RE.match(requirement)
            entries.append(LockEntry(name["name"] if name else requirement, None, hashes, number, line))
    return entries


def lock_problems(entries: list[LockEntry], lock_name: str) -> list[str]:
    """Unpinned entries; and when any entry has a hash, entries without one."""
    problems = []
    if not entries:
        return [f"{lock_name} lists no requirements"]
    unpinned = [e for e in entries if not e.pinned]
    if unpinned:
        problems.append(f"{lock_name}: unpinned " +
                        ", ".join(f"line {e.line} {e.text.split()[0]!r}" for e in unpinned) + " (use name==version)")
    if any(e.hashes for e in entries):
        unhashed = [e for e in entries if not e.hashes]
        if unhashed:
            problems.append(f"{lock_name}: hashes are used but missing for " +
                            ", ".join(f"line {e.line} {e.name}" for e in unhashed))
    return problems


# ================================================================================= OSV matching
def _version(text: str, where: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        raise ScanFormatError(f"{where}: {text!r} is not a PEP 440 version") from None


def _in_range(version: Version, rng: OsvRange, where: str) -> bool:
    """The OSV evaluation of one ECOSYSTEM/SEMVER range: events sorted by version, the last one reached wins."""
    if rng.type == "GIT":
        return False  # commit ranges say nothing about a released version
    events = []
    for kind, text in rng.events:
        if kind == "limit":
            continue  # limit bounds git bisection only
        events.append((Version("0") if kind == "introduced" and text == "0" else _version(text, where), kind))
    affected = False
    for at, kind in sorted(events, key=lambda e: e[0]):
        if kind == "introduced" and version >= at:
            affected = True
        elif kind == "fixed" and version >= at:
            affected = False
        elif kind == "last_affected" and version > at:
            affected = False
    return affected


def affected_by(advisory: OsvAdvisory, name: str, version: str) -> OsvAffected | None:
    """The ``affected`` entry of ``advisory`` that includes PyPI package ``name`` at ``version``, if any.

    :raises ScanFormatError: when a range of the advisory holds a version that is not PEP 440.
    :raises InvalidVersion: when ``version`` itself is not PEP 440 (the caller skips the package).
    """
    wanted = Version(version)
    for index, entry in enumerate(advisory.affected):
        if entry.ecosystem != "PyPI" or normalize_name(entry.name) != normalize_name(name):
            continue
        where = f"{advisory.source}: {advisory.id}.affected[{index}]"
        listed = []
        for text in entry.versions:
            try:
                listed.append(Version(text))
            except InvalidVersion:
                continue  # an enumerated version that is not PEP 440 cannot equal a PEP 440 one
        if wanted in listed or any(_in_range(wanted, rng, f"{where}.ranges[{i}]") for i, rng in
                                   enumerate(entry.ranges)):
            return entry
    return None


def load_advisories(folder: Path) -> list[OsvAdvisory]:
    """Every ``*.json`` OSV record in ``folder`` (sorted by name).

    :raises ScanFormatError: naming the file that is not an OSV record; ``FileNotFoundError`` without ``folder``.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"advisory folder {folder} does not exist")
    advisories = []
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ScanFormatError(f"{path}: not valid JSON: {exc}") from None
        advisories.append(parse_osv_record(data, str(path)))
    return advisories


def scan_lock(entries: list[LockEntry], advisories: list[OsvAdvisory]) -> dict[str, Any]:
    """Match every pinned entry against ``advisories``; the result in pip-audit's JSON shape.

    Each vulnerability carries a ``severity``: the advisory's CVSS v3 base score, else its label (pip-audit
    writes none; :func:`gendev_release.formats.parse_pip_audit` reads it). An
    entry that is not pinned, or whose version is not PEP 440, gets a ``skip_reason``: it was not
    audited, and the dependencies step reports the lock file as not covered.
    """
    dependencies: list[dict[str, Any]] = []
    for entry in entries:
        if entry.version is None:
            dependencies.append({"name": entry.name, "skip_reason": f"line {entry.line} is not pinned (name==version)"})
            continue
        try:
            Version(entry.version)
        except InvalidVersion:
            dependencies.append({"name": entry.name, "skip_reason": f"{entry.version!r} is not a PEP 440 version"})
            continue
        vulns = []
        for advisory in advisories:
            matched = affected_by(advisory, entry.name, entry.version)
            if matched is None:
                continue
            label = advisory.severity.upper() if advisory.severity != "unknown" else None
            vulns.append({"id": advisory.id, "fix_versions": list(matched.fixed_versions()),
                          "aliases": list(advisory.aliases), "description": advisory.summary,
                          "severity": advisory.score if advisory.score is not None else label})
        dependencies.append({"name": entry.name, "version": entry.version, "vulns": vulns})
    return {"dependencies": dependencies, "fixes": []}


# ==================================================================================== coverage
@dataclass(frozen=True)
class Coverage:
    """Whether a scan report covers the lock file, and how that was shown.

    :param by: ``packages`` (every locked name==version audited) or ``lock digest`` (a SARIF run lists
        the lock file with its exact sha-256).
    """

    by: str
    locked: int
    audited: int
    missing: list[str] = field(default_factory=list)
    version_mismatch: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    problem: str | None = None

    @property
    def complete(self) -> bool:
        return self.problem is None and not (self.missing or self.version_mismatch or self.skipped)

    def describe(self) -> str:
        if self.problem:
            return self.problem
        parts = []
        if self.missing:
            parts.append(f"locked but not in the scan: {', '.join(self.missing)}")
        if self.version_mismatch:
            parts.append(f"scanned at another version: {', '.join(self.version_mismatch)}")
        if self.skipped:
            parts.append(f"listed but not audited: {', '.join(self.skipped)}")
        return "; ".join(parts) or (f"all {self.locked} locked package(s) audited at their locked version"
                                    if self.by == "packages" else "the scan analysed this exact lock file")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "complete": self.complete}


def _same_version(scanned: str | None, locked: str) -> bool:
    if scanned is None:
        return False
    try:
        return Version(scanned) == Version(locked)
    except InvalidVersion:
        return scanned == locked


def coverage(report: ScanReport, entries: list[LockEntry], lock_path: Path, lock_sha256: str) -> Coverage:
    """Does ``report`` cover every pinned entry of the lock file?

    A report that lists packages (pip-audit, OSV-Scanner) must list each locked name at its locked
    version; an empty list covers nothing. SARIF lists findings only: it covers the lock file when a
    run's ``artifacts`` names it (same file name) with ``hashes["sha-256"]`` equal to its digest now.
    """
    pinned = [e for e in entries if e.pinned]
    if report.packages is None:
        named = [a for a in report.artifacts if PurePosixPath(a.uri.replace("\\", "/")).name == lock_path.name]
        if not named:
            return Coverage("lock digest", len(pinned), 0, problem=(
                f"the {report.format} report does not show it scanned {lock_path.name}: no runs[].artifacts entry "
                f"names it (SARIF lists findings, not the packages audited); let the scanner list the lock file "
                f"with hashes.sha-256, or use pip-audit JSON or OSV-Scanner JSON with every package"))
        if not any(a.sha256 == lock_sha256 for a in named):
            given = ", ".join(f"{a.uri} sha-256 {a.sha256[:16] if a.sha256 else 'not given'}" for a in named)
            return Coverage("lock digest", len(pinned), 0, problem=(
                f"the {report.format} report scanned another {lock_path.name} ({given}), not the one locked now "
                f"(sha256 {lock_sha256[:16]}): scan the current lock file"))
        return Coverage("lock digest", len(pinned), len(pinned))
    if not report.packages:
        return Coverage("packages", len(pinned), 0, problem=(
            f"the {report.format} report audited no package: an empty scan covers none of the {len(pinned)} "
            f"locked package(s) in {lock_path.name}"))
    missing, mismatch, skipped = [], [], []
    for entry in pinned:
        key = normalize_name(entry.name)
        if key in report.packages:
            if not _same_version(report.packages[key], entry.version or ""):
                mismatch.append(f"{entry.name} {entry.version} (scanned {report.packages[key]})")
        elif key in report.skipped:
            skipped.append(f"{entry.name} ({report.skipped[key]})")
        else:
            missing.append(entry.name)
    audited = len(pinned) - len(missing) - len(mismatch) - len(skipped)
    return Coverage("packages", len(pinned), audited, missing, mismatch, skipped)


# =================================================================================== freshness
@dataclass(frozen=True)
class Freshness:
    """Is a provided report at least as new as the lock file? ``rule`` says which clock decided it."""

    rule: str  # "git commit time" or "file modification time"
    report_time: str
    lock_time: str
    fresh: bool
    why_rule: str

    def describe(self, report_name: str, lock_name: str) -> str:
        if self.fresh:
            return (f"{report_name} ({self.report_time}) is not older than {lock_name} ({self.lock_time}) by "
                    f"{self.rule}")
        return (f"{report_name} is older than the lock file {lock_name} by {self.rule} ({self.report_time} < "
                f"{self.lock_time}): it scanned an earlier lock file; run the scanner again (or use "
                "dependencies.scan to run it in the release)")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _git(folder: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(["git", "-c", "core.quotePath=false", "-C", str(folder), *args], capture_output=True,
                              text=True, timeout=30, stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None


def commit_time(path: Path) -> tuple[int | None, str, str | None]:
    """``(committer time of the last commit touching path, why not, repository root)``.

    None when git is missing, the file is outside a repository, untracked, or modified since its commit.
    """
    found = _git(path.parent, "rev-parse", "--show-toplevel")
    if found is None or found.returncode != 0:
        return None, f"{path.name} is not in a git repository", None
    root = found.stdout.strip()
    status = _git(path.parent, "status", "--porcelain", "--", path.name)
    if status is None or status.returncode != 0:
        return None, f"git status of {path.name} failed", root
    if status.stdout.strip():
        return None, f"{path.name} is untracked or modified since its last commit", root
    log = _git(path.parent, "log", "-1", "--format=%ct", "--", path.name)
    text = log.stdout.strip() if log is not None and log.returncode == 0 else ""
    if not text.isdigit():
        return None, f"{path.name} is not committed", root
    return int(text), "", root


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds")


def freshness(report_path: Path, lock_path: Path) -> Freshness:
    """The freshness rule for a provided report (documented at ``dependencies.scan_report``).

    When both files are committed, unmodified, in the same git repository, their last commit times
    decide (a checkout gives every file the same new modification time, so mtimes say nothing there);
    otherwise their file modification times. Equal times pass: a report committed together with the
    lock file, or written right after it.
    """
    report_commit, report_why, report_root = commit_time(report_path)
    lock_commit, lock_why, lock_root = commit_time(lock_path)
    if report_commit is not None and lock_commit is not None and report_root == lock_root:
        return Freshness("git commit time", _iso(report_commit), _iso(lock_commit), report_commit >= lock_commit,
                         f"both committed unmodified in {report_root}")
    why = ("; ".join(w for w in (report_why, lock_why) if w) or
           f"{report_path.name} and {lock_path.name} are in different repositories")
    report_mtime, lock_mtime = report_path.stat().st_mtime, lock_path.stat().st_mtime
    return Freshness("file modification time", _iso(report_mtime), _iso(lock_mtime), report_mtime >= lock_mtime, why)
