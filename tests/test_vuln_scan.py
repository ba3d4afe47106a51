"""The scan's rules: the lock file, OSV matching with PEP 440 versions, coverage and freshness of a report."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from packaging.version import InvalidVersion

from gendev_release.formats import ScanFormatError, ScannedArtifact, ScanReport, parse_osv_record
from gendev_release.vuln_scan import (
    affected_by,
    coverage,
    freshness,
    load_advisories,
    lock_problems,
    parse_lock_file,
    scan_lock,
)

HASH_A = "a" * 64
HASH_B = "b" * 64
ADVISORIES = Path(__file__).resolve().parents[1] / "dags" / "releases" / "demo" / "advisories"


def advisory(*ranges: dict, versions: list[str] | None = None, name: str = "demo-lib"):
    return parse_osv_record({"id": "OSV-TEST-1", "modified": "2024-01-01T00:00:00Z", "affected": [
        {"package": {"ecosystem": "PyPI", "name": name}, "ranges": list(ranges), "versions": versions or []}]})


# ==================================================================================== lock file
def test_parse_lock_file() -> None:
    text = (f"# comment\n--index-url https://pypi.org/simple\nhttpx==0.28.1 \\\n    --hash=sha256:{HASH_A} \\\n"
            f"    --hash=sha256:{HASH_B}\nanyio[trio]==4.16.0 ; python_version >= '3.9' --hash=sha256:{HASH_A}\n"
            "requests>=2.0\n-e ./local\nidna  # trailing comment\n")
    entries = parse_lock_file(text)
    assert [(e.name, e.version, len(e.hashes), e.line) for e in entries] == [
        ("httpx", "0.28.1", 2, 3), ("anyio", "4.16.0", 1, 6), ("requests", None, 0, 7),
        ("-e ./local", None, 0, 8), ("idna", None, 0, 9)]
    problems = lock_problems(entries, "requirements.lock")
    assert problems[0] == ("requirements.lock: unpinned line 7 'requests>=2.0', line 8 '-e', line 9 'idna' "
                           "(use name==version)")
    assert problems[1] == ("requirements.lock: hashes are used but missing for line 7 requests, "
                           "line 8 -e ./local, line 9 idna")
    assert lock_problems([], "x.lock") == ["x.lock lists no requirements"]


# ================================================================================= OSV matching
@pytest.mark.parametrize(("version", "affected"), [
    ("0.9", False), ("1.0", True), ("1.4.2", True), ("1.5", False), ("2.0.0rc1", False), ("2.0", True),
    ("2.1", True), ("2.2", False), ("3.0", False),
])
def test_osv_ranges_are_evaluated_event_by_event(version: str, affected: bool) -> None:
    # [1.0, 1.5) and [2.0, 2.1] (last_affected), compared as PEP 440 versions
    record = advisory({"type": "ECOSYSTEM", "events": [{"introduced": "1.0"}, {"fixed": "1.5"},
                                                       {"introduced": "2.0"}, {"last_affected": "2.1"}]})
    assert (affected_by(record, "Demo_Lib", version) is not None) is affected


def test_osv_introduced_zero_enumerated_versions_and_other_ecosystems() -> None:
    everything_before = advisory({"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "0.23.0"}]})
    assert affected_by(everything_before, "demo-lib", "0.22.0") and not affected_by(everything_before, "demo-lib",
                                                                                     "0.23.0")
    listed = advisory(versions=["1.0", "1.0.post1"])
    assert affected_by(listed, "demo-lib", "1.0.0") and not affected_by(listed, "demo-lib", "1.0.1")
    git_only = advisory({"type": "GIT", "repo": "https://x", "events": [{"introduced": "abc123"}]})
    assert affected_by(git_only, "demo-lib", "1.0") is None
    npm = parse_osv_record({"id": "X", "modified": "x", "affected": [
        {"package": {"ecosystem": "npm", "name": "demo-lib"}, "versions": ["1.0"]}]})
    assert affected_by(npm, "demo-lib", "1.0") is None


def test_a_range_version_that_is_not_pep440_is_an_advisory_error() -> None:
    record = advisory({"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "not a version"}]})
    with pytest.raises(ScanFormatError, match="'not a version' is not a PEP 440 version"):
        affected_by(record, "demo-lib", "1.0")
    with pytest.raises(InvalidVersion):
        affected_by(record, "demo-lib", "banana")


def test_scan_lock_against_the_demo_advisories() -> None:
    entries = parse_lock_file("idna==3.6\ncertifi==2024.7.4\nh11==0.16.0\nweird==banana\nrich\n")
    report = scan_lock(entries, load_advisories(ADVISORIES))
    assert report["dependencies"][0] == {"name": "idna", "version": "3.6", "vulns": [{
        "id": "GHSA-jjg7-2v4v-x38h", "fix_versions": ["3.7"], "aliases": ["CVE-2024-3651", "PYSEC-2024-60"],
        "description": "Internationalized Domain Names in Applications (IDNA) vulnerable to denial of service from "
                       "specially crafted inputs to idna.encode", "severity": 6.2}]}
    assert [d.get("vulns") for d in report["dependencies"][1:3]] == [[], []]  # both at the fixed version
    assert report["dependencies"][3:] == [{"name": "weird", "skip_reason": "'banana' is not a PEP 440 version"},
                                          {"name": "rich", "skip_reason": "line 5 is not pinned (name==version)"}]


def test_load_advisories_names_the_broken_file(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("[]", encoding="utf-8")
    with pytest.raises(ScanFormatError, match=r"a.json: an OSV record is a JSON object, got list"):
        load_advisories(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_advisories(tmp_path / "missing")


# ==================================================================================== coverage
LOCK = parse_lock_file("httpx==0.28.1\nidna==3.20\nsniffio>=1\n")


def report(packages: dict[str, str | None] | None, **kwargs) -> ScanReport:
    return ScanReport("pip-audit" if packages is not None else "sarif", "r.json", packages, (), **kwargs)


def test_coverage_by_packages() -> None:
    lock = Path("requirements.lock")
    full = coverage(report({"httpx": "0.28.1", "idna": "3.20"}), LOCK, lock, "0" * 64)
    assert full.complete and full.describe() == "all 2 locked package(s) audited at their locked version"
    partial = coverage(report({"httpx": "0.28.0"}, skipped={"idna": "not on PyPI"}), LOCK, lock, "0" * 64)
    assert not partial.complete
    assert partial.describe() == ("scanned at another version: httpx 0.28.1 (scanned 0.28.0); listed but not "
                                  "audited: idna (not on PyPI)")
    empty = coverage(report({}), LOCK, lock, "0" * 64)
    assert empty.problem == ("the pip-audit report audited no package: an empty scan covers none of the 2 locked "
                             "package(s) in requirements.lock")


def test_coverage_of_sarif_by_the_lock_files_digest() -> None:
    lock, digest = Path("deps/requirements.lock"), hashlib.sha256(b"lock").hexdigest()
    shown = coverage(report(None, artifacts=(ScannedArtifact("file:///src/deps/requirements.lock", digest),)),
                     LOCK, lock, digest)
    assert shown.complete and shown.by == "lock digest" and shown.audited == 2
    other = coverage(report(None, artifacts=(ScannedArtifact("requirements.lock", "1" * 64),)), LOCK, lock, digest)
    assert "scanned another requirements.lock" in str(other.problem)
    assert "no runs[].artifacts entry names it" in str(coverage(report(None), LOCK, lock, digest).problem)


# =================================================================================== freshness
def test_freshness_by_file_times_outside_git(tmp_path: Path) -> None:
    scan, lock = tmp_path / "scan.json", tmp_path / "requirements.lock"
    scan.write_text("{}", encoding="utf-8")
    lock.write_text("x==1\n", encoding="utf-8")
    os.utime(scan, (1_700_000_000, 1_700_000_000))
    os.utime(lock, (1_700_000_100, 1_700_000_100))
    stale = freshness(scan, lock)
    assert (stale.rule, stale.fresh) == ("file modification time", False)
    assert stale.why_rule == "scan.json is not in a git repository; requirements.lock is not in a git repository"
    os.utime(scan, (1_700_000_100, 1_700_000_100))  # written in the same instant: not older
    assert freshness(scan, lock).fresh


def _commit(repo: Path, when: str, *paths: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}
    subprocess.run(["git", "-C", str(repo), "add", *paths], check=True)
    subprocess.run(["git", "-c", "user.name=T", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false", "-C",
                    str(repo), "commit", "--quiet", "-m", when], check=True, env=env)


def test_freshness_by_commit_times_when_both_are_committed(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "--quiet", "-b", "main", str(tmp_path)], check=True)
    scan, lock = tmp_path / "scan.json", tmp_path / "requirements.lock"
    lock.write_text("x==1\n", encoding="utf-8")
    _commit(tmp_path, "2026-01-01T00:00:00+00:00", "requirements.lock")
    scan.write_text("{}", encoding="utf-8")
    _commit(tmp_path, "2026-01-02T00:00:00+00:00", "scan.json")
    os.utime(lock, (2_000_000_000, 2_000_000_000))  # a checkout's mtimes say nothing
    fresh = freshness(scan, lock)
    assert (fresh.rule, fresh.fresh, fresh.report_time) == ("git commit time", True, "2026-01-02T00:00:00.000+00:00")
    lock.write_text("x==2\n", encoding="utf-8")  # edited, not committed: back to file times
    edited = freshness(scan, lock)
    assert (edited.rule, edited.fresh) == ("file modification time", False)
    assert edited.why_rule == "requirements.lock is untracked or modified since its last commit"
