"""The documented risk rules and the change-set parsing they score: pure functions, no git call here.

A change set is a list of commit records parsed from ``git log`` (:func:`parse_git_log` with
:data:`GIT_LOG_FORMAT`); :func:`score_risk` applies :data:`RISK_RULES` to it; dependency files are
recognised by name (:data:`DEPENDENCY_FILE_PATTERNS`) and requirement files compared pin by pin
(:func:`pins`, :func:`compare_pins`). The risk step (:mod:`gendev_release.duties.preparation`) runs
git and records the evidence; the release notes read the same commit records.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from gendev_release.formats import normalize_name
from gendev_release.vuln_scan import parse_lock_file  # the dependencies step's parser


@dataclass(frozen=True)
class RiskRule:
    id: str
    description: str
    points: int
    cap: int
    mitigation: str


#: The documented risk rules. Score = sum of points of the rules that fired (each up to its cap).
RISK_RULES: tuple[RiskRule, ...] = (
    RiskRule("sensitive_path", "a sensitive path (risk.sensitive_paths) was changed: +3 per file, at most 9",
             3, 9, "review the migration/infra change; the backup is verified before deploying"),
    RiskRule("breaking_change", "a commit declares a breaking change (type! or BREAKING CHANGE:): +4",
             4, 4, "announce the breaking change to stakeholders; keep the previous slot for rollback"),
    RiskRule("dependency_change", "a dependency file (lock, requirements, pyproject) changed: +2",
             2, 2, "dependency scan and lock-file pinning are gated in phase 3"),
    RiskRule("large_change", "more than 50 files changed: +2",
             2, 2, "extended observation window; smoke and QA suites gate the release"),
    RiskRule("first_release", "no earlier successful release is known: +1",
             1, 1, "nothing to roll back to: the abort path stops the staged slot"),
)
RISK_LEVELS: tuple[tuple[int, str], ...] = ((3, "low"), (6, "medium"))  # score < bound -> level; else high
LARGE_CHANGE_FILES = 50

#: Files whose change means the dependency set changed (matched against the file name).
DEPENDENCY_FILE_PATTERNS: tuple[str, ...] = (
    "*.lock", "*requirements*.txt", "*requirements*.in", "pyproject.toml", "Pipfile", "setup.py", "setup.cfg",
    "constraints*.txt", "package.json", "package-lock.json", "go.mod", "go.sum", "Cargo.toml",
)

_FIELD = "\x1f"  # unit separator between the fields of one commit
_RECORD = "\x1e"  # record separator before each commit
GIT_LOG_FORMAT = "%x1e%H%x1f%s%x1f%b%x1f"
# Conventional Commits types are lower-case.
_CONVENTIONAL_RE = re.compile(r"^(?P<type>[a-z]+)(?:\((?P<scope>[^()]*)\))?(?P<bang>!)?:\s*(?P<desc>.+)$")
_BREAKING_RE = re.compile(r"^BREAKING[ -]CHANGE:", re.MULTILINE)


def parse_conventional(subject: str, body: str = "") -> dict[str, Any]:
    """Split a Conventional Commits subject: ``feat(api)!: text`` -> type, scope, breaking, description.

    A subject that does not follow the convention gets type ``other``.
    """
    match = _CONVENTIONAL_RE.match(subject.strip())
    breaking = bool(_BREAKING_RE.search(body))
    if not match:
        return {"type": "other", "scope": None, "breaking": breaking, "description": subject.strip()}
    return {"type": match["type"].lower(), "scope": match["scope"] or None,
            "breaking": breaking or bool(match["bang"]), "description": match["desc"].strip()}


def parse_git_log(text: str) -> list[dict[str, Any]]:
    """Parse ``git log --format=GIT_LOG_FORMAT --name-only`` output into commit records."""
    commits = []
    for chunk in text.split(_RECORD):
        if not chunk.strip():
            continue
        parts = chunk.split(_FIELD)
        if len(parts) < 4:
            raise ValueError(f"unexpected git log record: {chunk[:80]!r}")
        sha, subject, files_text = parts[0].strip(), parts[1], parts[-1]
        body = _FIELD.join(parts[2:-1])
        files = [line for line in files_text.splitlines() if line.strip()]
        parsed = parse_conventional(subject, body)
        commits.append({"sha": sha, "subject": subject, "type": parsed["type"], "scope": parsed["scope"],
                        "breaking": parsed["breaking"], "description": parsed["description"],
                        "body": body.strip(), "files": files})
    return commits


def last_successful_source_sha(history_file: Path) -> str | None:
    """``source_sha`` of the last history line with ``"outcome": "success"``; None when there is none."""
    if not history_file.exists():
        return None
    found = None
    for line in history_file.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("outcome") == "success" and entry.get("source_sha"):
            found = str(entry["source_sha"])
    return found


def path_matches(path: str, patterns: list[str] | tuple[str, ...]) -> bool:
    """Match a repo-relative path; patterns without ``/`` also match the file name in any folder."""
    name = PurePosixPath(path).name
    return any(fnmatch.fnmatchcase(path, p) or ("/" not in p and fnmatch.fnmatchcase(name, p)) for p in patterns)


def changed_files(commits: list[dict[str, Any]]) -> list[str]:
    return sorted({f for commit in commits for f in commit["files"]})


def dependency_changes(files: list[str]) -> list[str]:
    return [f for f in files if path_matches(f, DEPENDENCY_FILE_PATTERNS)]


def score_risk(commits: list[dict[str, Any]], sensitive_paths: list[str],
               first_release: bool) -> tuple[int, str, list[dict[str, Any]]]:
    """Score a change set with :data:`RISK_RULES`; return ``(score, level, fired rules)``."""
    files = changed_files(commits)
    hits: dict[str, tuple[int, list[str]]] = {}
    sensitive = [f for f in files if path_matches(f, sensitive_paths)]
    if sensitive:
        hits["sensitive_path"] = (len(sensitive), sensitive)
    breaking = [c["sha"][:12] for c in commits if c["breaking"]]
    if breaking:
        hits["breaking_change"] = (1, breaking)
    deps = dependency_changes(files)
    if deps:
        hits["dependency_change"] = (1, deps)
    if len(files) > LARGE_CHANGE_FILES:
        hits["large_change"] = (1, [f"{len(files)} files"])
    if first_release:
        hits["first_release"] = (1, ["no successful release in history"])
    fired = []
    score = 0
    for rule in RISK_RULES:
        if rule.id not in hits:
            continue
        count, subjects = hits[rule.id]
        points = min(rule.points * count, rule.cap)
        score += points
        fired.append({"rule": rule.id, "points": points, "description": rule.description,
                      "matched": subjects, "mitigation": rule.mitigation})
    return score, risk_level(score), fired


def risk_level(score: int) -> str:
    for bound, level in RISK_LEVELS:
        if score < bound:
            return level
    return "high"


#: Dependency files whose lines are requirements (``name==version``), compared pin by pin.
REQUIREMENT_FILE_PATTERNS: tuple[str, ...] = ("*.lock", "*requirements*.txt", "*requirements*.in",
                                              "constraints*.txt")


def pins(text: str) -> dict[str, str | None]:
    """``normalized name -> pinned version`` (None when unpinned) of a requirements-style file."""
    return {normalize_name(entry.name): entry.version for entry in parse_lock_file(text)}


def compare_pins(before: dict[str, str | None], after: dict[str, str | None]) -> dict[str, Any]:
    """What changed between two pin sets: added, removed, changed (``name -> [old, new]``)."""
    return {"added": {n: after[n] for n in sorted(set(after) - set(before))},
            "removed": {n: before[n] for n in sorted(set(before) - set(after))},
            "changed": {n: [before[n], after[n]] for n in sorted(set(before) & set(after)) if before[n] != after[n]}}
