"""Phase 3: build and dependencies, the demo build/backup/scan tools they run, and the phase's deliverables."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
from duty_helpers import DEMO_INPUTS, git, item, make_ctx, make_spec, run_step
from item_proof import assert_item_fails

from gendev_release.catalogue import PHASES
from gendev_release.context import DutyContext
from gendev_release.demo import backup as demo_backup
from gendev_release.demo import build as demo_build
from gendev_release.demo import osv_scan
from gendev_release.duties.base import run_duty
from gendev_release.duties.build import config_problem, same_version, versions_inside
from gendev_release.errors import SpecError
from gendev_release.release_checklist import RunFacts, security_scan_passed
from gendev_release.report import AgentReport, sha256_file
from gendev_release.vuln_scan import load_advisories, parse_lock_file, scan_lock

BUILD_SCRIPT = """\
import json, pathlib, subprocess, sys
out = pathlib.Path(sys.argv[2])
subprocess.run([sys.executable, "-m", "gendev_release.demo.build", "--config", sys.argv[1], "--version", sys.argv[3],
                "--out", str(out)], check=True)
archive = out / f"demo-{sys.argv[3]}.tar.gz"
archive.write_bytes(archive.read_bytes() + b"appended after the manifest was written")
"""


def sarif(results: list[dict[str, Any]], rules: list[dict[str, Any]] | None = None,
          artifacts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    run: dict[str, Any] = {"tool": {"driver": {"name": "trivy", "rules": rules or []}}, "results": results}
    if artifacts is not None:
        run["artifacts"] = artifacts
    return {"version": "2.1.0", "$schema": "https://json.schemastore.org/sarif-2.1.0.json", "runs": [run]}


# ================================================================================== demo tools
def test_demo_build_writes_archive_and_manifest(tmp_path: Path) -> None:
    out = tmp_path / "dist"
    proc = subprocess.run([sys.executable, "-m", "gendev_release.demo.build", "--config",
                           str(DEMO_INPUTS / "build.toml"), "--version", "2.0.0-rc.1", "--out", str(out)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["name"] == "demo" and manifest["version"] == "2.0.0-rc.1" and manifest["built_at"]
    assert [f["path"] for f in manifest["files"]] == ["VERSION", "service.py", "runbook.md", "rollback.md",
                                                      "service.env"]
    with tarfile.open(out / "demo-2.0.0-rc.1.tar.gz") as archive:
        version = archive.extractfile("demo-2.0.0-rc.1/VERSION")
        assert version is not None and version.read() == b"2.0.0-rc.1\n"
        assert "demo-2.0.0-rc.1/service.py" in archive.getnames()


def test_demo_build_refuses_bad_version_and_missing_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert demo_build.main(["--config", str(DEMO_INPUTS / "build.toml"), "--version", "1.0", "--out",
                            str(tmp_path)]) == 2
    assert "'1.0' is not a semantic version" in capsys.readouterr().err
    assert demo_build.main(["--config", str(tmp_path / "none.toml"), "--version", "1.0.0", "--out",
                            str(tmp_path)]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "manifest.json").exists()


def test_demo_backup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "deep" / "folder" / "b.tar.gz"
    assert demo_backup.main(["--source", str(DEMO_INPUTS), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed[0] == sha256_file(out) and printed[1] == str(out)
    with tarfile.open(out) as archive:
        assert "demo/runbook.md" in archive.getnames()
    assert demo_backup.main(["--source", str(tmp_path / "missing"), "--out", str(out)]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_demo_scanner_finds_nothing_in_the_demo_lock_and_a_critical_in_an_old_pin(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "scan" / "pip-audit.json"
    args = ["--advisories", str(DEMO_INPUTS / "advisories"), "--out", str(out)]
    assert osv_scan.main(["--lock", str(DEMO_INPUTS / "requirements.lock"), *args]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert [(d["name"], d["version"], d["vulns"]) for d in report["dependencies"]][:2] == [
        ("anyio", "4.16.0", []), ("certifi", "2026.10.19.post1", [])]
    assert "audited 7 of 7 locked package(s) against 4 advisory(ies): 0 vulnerability(ies)" in capsys.readouterr().out
    old = tmp_path / "old.lock"
    old.write_text("h11==0.14.0\nhttpx==0.28.1\nrich>=13\n", encoding="utf-8")
    assert osv_scan.main(["--lock", str(old), *args]) == 1  # pip-audit's exit code for "found"
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["dependencies"] == [
        {"name": "h11", "version": "0.14.0", "vulns": [{
            "id": "GHSA-vqfr-h8mv-ghfj", "fix_versions": ["0.16.0"], "aliases": ["CVE-2025-43859"],
            "description": "h11 accepts some malformed Chunked-Encoding bodies", "severity": "CRITICAL"}]},
        {"name": "httpx", "version": "0.28.1", "vulns": []},
        {"name": "rich", "skip_reason": "line 3 is not pinned (name==version)"}]


def test_demo_scanner_refuses_a_broken_advisory_without_writing(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    advisories = tmp_path / "advisories"
    advisories.mkdir()
    (advisories / "bad.json").write_text(json.dumps({"id": "GHSA-x", "modified": "2024-01-01T00:00:00Z",
                                                     "affected": [{"package": {"ecosystem": "PyPI"}}]}))
    out = tmp_path / "out.json"
    assert osv_scan.main(["--lock", str(DEMO_INPUTS / "requirements.lock"), "--advisories", str(advisories),
                          "--out", str(out)]) == 2
    assert f"osv_scan: {advisories / 'bad.json'}: GHSA-x.affected[0].package has no ecosystem and name" in \
        capsys.readouterr().err
    assert not out.exists()


# ======================================================================================= build
def test_build_passes_on_the_demo(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    report = run_step(ctx, "build")
    assert report.status == "passed", report.blocking_issues
    assert report.metrics["build_success_pct"] == 100.0
    names = sorted(a["name"] for a in report.facts["artifacts"])
    assert names == ["demo-1.1.0.tar.gz", "manifest.json"]
    assert all(len(a["sha256"]) == 64 for a in report.facts["artifacts"])
    assert [d.name for d in report.deliverables] == ["artifact demo-1.1.0.tar.gz", "artifact manifest.json",
                                                     "Build artifacts", "Version tagging", "Artifact repository"]
    verify = item(report, "verify")
    assert verify.evidence[0].kind == "command" and verify.evidence[0].data["exit_code"] == 0
    assert report.facts["embedded_versions"] == [
        {"artifact": "demo-1.1.0.tar.gz", "member": "demo-1.1.0/VERSION", "version": "1.1.0"},
        {"artifact": "manifest.json", "member": "manifest.json", "version": "1.1.0"}]
    claims = next(e for e in item(report, "check").evidence if e.source.endswith("manifest.json claims vs files"))
    assert claims.data["files"] == 5 and claims.data["archive"]["claimed"] == claims.data["archive"]["actual"]


@pytest.mark.item("build.read")
def test_build_read_fails_on_invalid_toml(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    (ctx.spec.spec_dir / "demo" / "build.toml").write_text("[package\nname = 1\n", encoding="utf-8")
    report = run_step(ctx, "build")
    assert_item_fails(report, "build.read", because="is not valid TOML")


def test_build_read_fails_when_the_config_is_another_services(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    config = ctx.spec.spec_dir / "demo" / "build.toml"
    config.write_text(config.read_text(encoding="utf-8").replace('"demo"', '"shop"'), encoding="utf-8")
    read = item(run_step(ctx, "build"), "read")
    assert not read.passed and read.detail == (
        "build.config build.toml does not name the service 'demo': it configures another build; point build.config "
        "at this service's configuration")


def test_build_fails_on_missing_config(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, overrides={"build": {"config": "demo/missing.toml"}})
    read = item(run_step(ctx, "build"), "read")
    assert not read.passed
    assert read.detail == f"build.config {ctx.spec.spec_dir / 'demo' / 'missing.toml'} does not exist"


def test_config_problem_parses_by_suffix(tmp_path: Path) -> None:
    for name, text, expected in (("a.json", '{"name": "demo"', "is not valid JSON"),
                                 ("a.yaml", "name: [demo", "is not valid YAML"),
                                 ("a.json", '{"name": "demo"}', None), ("Makefile", "image: demo\n", None)):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        problem, _ = config_problem(path, "demo")
        assert (problem is None) if expected is None else (expected in str(problem)), (name, problem)


@pytest.mark.item("build.verify")
def test_build_verify_fails_when_the_command_exits_1(tmp_path: Path) -> None:
    command = ["{python}", "-c", "raise SystemExit('compiler exploded')"]
    ctx = make_ctx(tmp_path, overrides={"build": {"command": command}})
    report = run_step(ctx, "build")
    assert_item_fails(report, "build.verify", because="build command exited 1: compiler exploded")
    assert report.metrics["build_success_pct"] == 0.0
    check = item(report, "check")
    assert not check.passed and "artifact glob 'demo-*.tar.gz' matched no file" in check.detail


def test_a_failed_build_cannot_pass_on_an_earlier_attempts_artifacts(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    assert run_step(ctx, "build").status == "passed"  # the first attempt leaves demo-1.1.0.tar.gz behind
    retry = make_ctx(tmp_path, overrides={"build": {"command": ["{python}", "-c", "raise SystemExit(3)"]}},
                     spec=None)
    report = run_step(retry, "build")
    check = item(report, "check")
    assert not check.passed and "artifact glob 'demo-*.tar.gz' matched no file" in check.detail
    removed = next(e for e in item(report, "verify").evidence if e.summary.startswith("removed"))
    assert sorted(Path(p).name for p in removed.data["removed"]) == ["demo-1.1.0.tar.gz", "manifest.json"]


def test_build_fails_on_missing_artifact(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, overrides={"build": {"artifacts": ["demo-*.tar.gz", "demo-*.whl"]}})
    check = item(run_step(ctx, "build"), "check")
    assert not check.passed
    assert check.detail == f"artifact glob 'demo-*.whl' matched no file in {ctx.paths.artifacts_dir}"


@pytest.mark.item("build.check")
def test_build_check_fails_when_the_artifact_carries_another_version(tmp_path: Path) -> None:
    # The build command hard-codes a version: the archive's VERSION and the manifest say 9.9.9, the run 1.1.0.
    command = ["{python}", "-m", "gendev_release.demo.build", "--config", "{spec_dir}/demo/build.toml",
               "--version", "9.9.9", "--out", "{artifacts_dir}"]
    report = run_step(make_ctx(tmp_path, overrides={"build": {"command": command}}), "build")
    assert_item_fails(report, "build.check",
                      because="demo-9.9.9.tar.gz: demo-9.9.9/VERSION says version '9.9.9', expected '1.1.0'")
    assert "manifest.json: manifest.json says version '9.9.9', expected '1.1.0'" in item(report, "check").detail


def test_build_check_fails_when_the_archive_differs_from_its_manifest(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, overrides={"build": {"command": [
        "{python}", "{spec_dir}/build.py", "{spec_dir}/demo/build.toml", "{artifacts_dir}", "{version}"]}})
    (ctx.spec.spec_dir / "build.py").write_text(BUILD_SCRIPT, encoding="utf-8")
    report = run_step(ctx, "build")
    archive = ctx.paths.artifacts_dir / "demo-1.1.0.tar.gz"
    check = item(report, "check")
    assert not check.passed
    assert f"the file has {sha256_file(archive)[:16]}" in check.detail
    assert check.detail.startswith("manifest.json claims sha256 ")


def test_build_check_fails_when_the_version_tag_points_at_another_commit(tmp_path: Path, git_repo: Path) -> None:
    first = git(git_repo, "rev-list", "--max-parents=0", "HEAD")
    git(git_repo, "tag", "v1.1.0", first)
    ctx = make_ctx(tmp_path, overrides={"risk": {"repo": "repo"}})
    check = item(run_step(ctx, "build"), "check")
    head = git(git_repo, "rev-parse", "HEAD")
    assert not check.passed
    assert check.detail == (f"git tag v1.1.0 points at {first[:12]}, but the build ran at HEAD {head[:12]} of "
                            f"{git_repo}: release the tagged commit, or move the tag")
    git(git_repo, "tag", "-f", "v1.1.0", head)
    report = run_step(make_ctx(tmp_path, overrides={"risk": {"repo": "repo"}}), "build")
    assert report.status == "passed" and report.facts["version_tag"] == {
        "status": "tag points at the released commit", "tag": "v1.1.0", "head": head}


def test_build_removes_a_tarball_that_packed_a_plaintext_secret(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    env = ctx.spec.spec_dir / "demo" / "service.env"  # packed by build.toml's files list
    env.write_text(env.read_text(encoding="utf-8") + "DB_PASS=hunter2-very-secret\n", encoding="utf-8")

    report = run_step(ctx, "build")

    assert item(report, "verify").passed  # the command itself succeeded
    check = item(report, "check")
    tarball = ctx.paths.artifacts_dir / "demo-1.1.0.tar.gz"
    assert not check.passed and not tarball.exists()
    where = "demo-1.1.0.tar.gz!demo-1.1.0/service.env:6 (assignment to DB_PASS)"
    assert check.detail.startswith(f"artifact demo-1.1.0.tar.gz holds plaintext secret(s) at {where}; it was "
                                   "removed: keep secrets out of the build's inputs")
    assert f"artifact glob 'demo-*.tar.gz' matched no file in {ctx.paths.artifacts_dir}" in check.detail
    scans = {e.source: e for e in check.evidence if e.summary.startswith("secret scan of build artifact")}
    assert scans[str(tarball)].data["hits"] == [{"file": "demo-1.1.0.tar.gz", "member": "demo-1.1.0/service.env",
                                                 "line": 6, "rule": "assignment to DB_PASS"}]
    assert scans[str(ctx.paths.artifacts_dir / "manifest.json")].data["hits"] == []
    removal = next(e for e in check.evidence if e.data.get("removed"))
    assert removal.source == str(tarball) and removal.sha256 and where in removal.data["reason"]
    assert [a["removed"] for a in report.facts["removed_artifacts"]] == [True]
    assert [d.name for d in report.deliverables][0] == "artifact manifest.json"
    assert "hunter2" not in json.dumps(report.model_dump(mode="json"))


def test_build_keeps_clean_artifacts_and_records_their_scan(tmp_path: Path) -> None:
    report = run_step(make_ctx(tmp_path), "build")
    scans = [e for e in item(report, "check").evidence if e.summary.startswith("secret scan of build artifact")]
    assert [(e.data["format"], e.data["hits"]) for e in scans] == [("tar", []), ("file", [])]
    assert scans[0].data["scanned_names"] == ["demo-1.1.0/VERSION", "demo-1.1.0/service.py", "demo-1.1.0/runbook.md",
                                              "demo-1.1.0/rollback.md", "demo-1.1.0/service.env"]
    assert "removed_artifacts" not in report.facts


def test_versions_inside_a_wheel_and_a_bare_file(tmp_path: Path) -> None:
    wheel = tmp_path / "demo-2.0.0rc1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("demo-2.0.0rc1.dist-info/METADATA", "Metadata-Version: 2.1\nName: demo\nVersion: 2.0.0rc1\n"
                                                             "\nVersion: not a header any more\n")
    assert versions_inside(wheel) == [("demo-2.0.0rc1.dist-info/METADATA", "2.0.0rc1")]
    assert same_version("2.0.0rc1", "2.0.0-rc.1") and not same_version("2.0.0", "2.0.1")
    bare = tmp_path / "demo-1.2.3.bin"
    bare.write_bytes(b"\x00binary")
    assert versions_inside(bare) == []


def test_phase_3_delivers_every_catalogue_deliverable(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    reports = []
    for step in PHASES[2].steps:  # as the operator does: run the duty, then save its report
        reports.append(run_duty(ctx, step.id))
        ctx.store.save(reports[-1])
    assert [r.status for r in reports] == ["passed", "passed"], [r.blocking_issues for r in reports]
    stored = {line["name"]: line for line in ctx.store.manifest() if line.get("current", True)}
    for name in PHASES[2].deliverables:
        assert name in stored, f"{name} not delivered: {sorted(stored)}"
        assert stored[name]["step"] in ("build", "dependencies") and stored[name]["size"] > 0
        assert ctx.store.read(stored[name]["stored"]), name
    scan = json.loads(ctx.store.read(stored["Security scanning"]["stored"]))
    assert scan["origin"] == "run" and scan["coverage"]["complete"] and scan["at_or_above_gate"] == 0
    repository = json.loads(ctx.store.read(stored["Artifact repository"]["stored"]))
    assert {a["stored_as"] for a in repository["artifacts"]} == {
        stored["artifact demo-1.1.0.tar.gz"]["stored"], stored["artifact manifest.json"]["stored"]}


# ================================================================================ dependencies
def provided_report(ctx: DutyContext, change: Any = None, name: str = "pip-audit.json") -> Path:
    """A pip-audit report of the spec's lock file, written by the demo scanner "elsewhere" and given as
    dependencies.scan_report; ``change(report)`` edits it first."""
    spec_dir = ctx.spec.spec_dir
    entries = parse_lock_file((spec_dir / "demo" / "requirements.lock").read_text(encoding="utf-8"))
    report = scan_lock(entries, load_advisories(spec_dir / "demo" / "advisories"))
    if change is not None:
        change(report)
    path = spec_dir / "demo" / name
    path.write_text(json.dumps(report), encoding="utf-8")
    return path


PROVIDED = {"dependencies": {"scan": None, "scan_report": "demo/pip-audit.json"}}


def provided_ctx(tmp_path: Path, change: Any = None) -> DutyContext:
    ctx = make_ctx(tmp_path, overrides=PROVIDED)
    provided_report(ctx, change)
    return ctx


def scan_verdict(ctx: DutyContext, report: AgentReport) -> dict[str, Any]:
    verdict = security_scan_passed(RunFacts(reports={"dependencies": report}, spec=ctx.spec, version=ctx.version))
    return verdict.as_dict()


def test_dependencies_pass_on_the_demo_with_the_scan_run_in_the_release(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    stale = ctx.paths.workdir / "scan" / "pip-audit.json"
    stale.parent.mkdir(parents=True)
    stale.write_text('{"dependencies": []}', encoding="utf-8")  # an earlier attempt's output is never read
    report = run_step(ctx, "dependencies")
    assert report.status == "passed", report.blocking_issues
    assert report.metrics["critical_vulns"] == 0
    assert report.metrics["pinned"] == 7 and report.metrics["unpinned"] == 0 and report.metrics["hashed"] == 7
    assert report.facts["scan_coverage"] == {"missing": [], "version_mismatch": [], "skipped": [], "problem": None}
    read = item(report, "read")
    assert read.evidence[0].kind == "command" and read.evidence[0].data["exit_code"] == 0
    assert read.evidence[1].data["replaced_earlier"] is True
    assert read.detail == "pip-audit report written by dependencies.scan in this run: 0 finding(s)"
    assert report.facts["security_scan"]["coverage"]["by"] == "packages"
    verdict = scan_verdict(ctx, report)
    assert verdict["state"] == "done" and verdict["detail"] == (
        "scan run in this release (pip-audit): 7 of 7 locked package(s) covered by packages, 0 finding(s) at or "
        "above critical")


@pytest.mark.item("dependencies.check")
def test_dependencies_check_fails_on_a_critical_advisory_for_a_locked_version(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    lock = ctx.spec.spec_dir / "demo" / "requirements.lock"
    lock.write_text(lock.read_text(encoding="utf-8").replace("httpx==0.28.1", "httpx==0.22.0"), encoding="utf-8")
    report = run_step(ctx, "dependencies")
    assert_item_fails(report, "dependencies.check",
                      because="1 finding(s) at or above critical: GHSA-h8pj-cxx2-jfg2 (httpx 0.22.0, critical)")
    assert item(report, "read").passed and item(report, "verify").passed  # exit 1 = findings, not a failed scan
    assert "CRITICAL GHSA-h8pj-cxx2-jfg2 in httpx 0.22.0 (score 9.1); fixed in 0.23.0" in report.findings
    assert scan_verdict(ctx, report)["state"] == "not_done"


def test_dependencies_severity_gate_high_counts_a_high_finding(tmp_path: Path) -> None:
    def high(report: dict[str, Any]) -> None:
        report["dependencies"][5]["vulns"] = [{"id": "GHSA-test-high", "fix_versions": [], "severity": "HIGH"}]

    ctx = make_ctx(tmp_path, overrides={**PROVIDED, "dependencies": {**PROVIDED["dependencies"],
                                                                     "severity_gate": "high"}})
    provided_report(ctx, high)
    check = item(run_step(ctx, "dependencies"), "check")
    assert not check.passed and check.detail.startswith("1 finding(s) at or above high: GHSA-test-high (idna 3.20")
    low = make_ctx(tmp_path / "default", overrides=PROVIDED)
    provided_report(low, high)
    assert item(run_step(low, "dependencies"), "check").passed  # the seed's gate: critical only


@pytest.mark.item("dependencies.read")
def test_dependencies_read_fails_on_a_scan_older_than_the_lock_file(tmp_path: Path) -> None:
    ctx = provided_ctx(tmp_path)
    lock = ctx.spec.spec_dir / "demo" / "requirements.lock"
    scanned = lock.stat().st_mtime
    os.utime(ctx.spec.spec_dir / "demo" / "pip-audit.json", (scanned - 3600, scanned - 3600))  # scanned an hour
    report = run_step(ctx, "dependencies")  # before the lock file was last written
    assert_item_fails(report, "dependencies.read", because="pip-audit.json is older than the lock file "
                                                           "requirements.lock by file modification time")
    assert not item(report, "check").passed


def _commit_at(repo: Path, when: str, *paths: str) -> None:
    """Commit ``paths`` (all changes when none) with author and committer date ``when``."""
    env = {**os.environ, "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}
    git(repo, "add", *(paths or ("--all",)))
    subprocess.run(["git", "-c", "user.name=T", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false",
                    "-C", str(repo), "commit", "--quiet", "-m", f"at {when}"], check=True, env=env)


def test_dependencies_read_judges_a_committed_report_by_commit_times(tmp_path: Path) -> None:
    ctx = provided_ctx(tmp_path)
    repo = ctx.spec.spec_dir
    git(repo, "init", "--quiet", "-b", "main")
    _commit_at(repo, "2026-01-01T10:00:00+00:00", "demo/pip-audit.json")  # the scan ...
    _commit_at(repo, "2026-01-02T10:00:00+00:00")
    lock = repo / "demo" / "requirements.lock"
    lock.write_text(lock.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    _commit_at(repo, "2026-01-03T10:00:00+00:00", "demo/requirements.lock")  # ... is older than the lock file
    later = lock.stat().st_mtime + 60
    os.utime(repo / "demo" / "pip-audit.json", (later, later))  # while its mtime (a checkout's) looks newer
    read = item(run_step(ctx, "dependencies"), "read")
    assert not read.passed and read.detail.startswith(
        "pip-audit.json is older than the lock file requirements.lock by git commit time "
        "(2026-01-01T10:00:00.000+00:00 < 2026-01-03T10:00:00.000+00:00)")


def test_a_fresh_provided_report_is_accepted_and_ticks_the_checklist(tmp_path: Path) -> None:
    ctx = provided_ctx(tmp_path)
    report = run_step(ctx, "dependencies")
    assert report.status == "passed", report.blocking_issues
    assert item(report, "read").detail.startswith("pip-audit report pip-audit.json (")
    fresh = next(e for e in item(report, "read").evidence if e.source == "pip-audit.json vs requirements.lock")
    assert fresh.data["rule"] == "file modification time" and fresh.data["fresh"] is True
    assert scan_verdict(ctx, report)["detail"].startswith(
        "provided pip-audit report, not older than the lock file by file modification time: 7 of 7")


@pytest.mark.item("dependencies.verify")
def test_dependencies_verify_fails_when_the_scan_misses_a_locked_package(tmp_path: Path) -> None:
    ctx = provided_ctx(tmp_path, lambda r: r["dependencies"].pop(5))  # idna left out
    report = run_step(ctx, "dependencies")
    assert_item_fails(report, "dependencies.verify", because="the scan does not cover requirements.lock: locked "
                                                             "but not in the scan: idna")
    assert scan_verdict(ctx, report)["state"] == "not_done"


def test_dependencies_fail_on_an_empty_scan_report(tmp_path: Path) -> None:
    ctx = provided_ctx(tmp_path, lambda r: r["dependencies"].clear())  # {"dependencies": [], "fixes": []}
    report = run_step(ctx, "dependencies")
    verify = item(report, "verify")
    assert not verify.passed and verify.detail == (
        "the scan does not cover requirements.lock: the pip-audit report audited no package: an empty scan covers "
        "none of the 7 locked package(s) in requirements.lock")
    assert item(report, "check").passed  # 0 critical of nothing: the check alone would have passed
    assert report.status == "failed" and scan_verdict(ctx, report)["state"] == "not_done"


def test_dependencies_fail_when_the_scan_audited_another_version(tmp_path: Path) -> None:
    ctx = provided_ctx(tmp_path, lambda r: r["dependencies"][4].update(version="0.27.0"))
    verify = item(run_step(ctx, "dependencies"), "verify")
    assert not verify.passed and verify.detail.endswith("scanned at another version: httpx 0.28.1 (scanned 0.27.0)")


def test_dependencies_fail_when_the_scanner_fails_or_writes_nothing(tmp_path: Path) -> None:
    advisories = "{spec_dir}/demo/advisories"
    broken = make_ctx(tmp_path / "a")
    (broken.spec.spec_dir / "demo" / "advisories" / "broken.json").write_text("{", encoding="utf-8")
    read = item(run_step(broken, "dependencies"), "read")
    assert not read.passed and read.detail.startswith("dependencies.scan.command exited 2: osv_scan: ")
    command = ["{python}", "-m", "gendev_release.demo.osv_scan", "--lock", "{spec_dir}/demo/requirements.lock",
               "--advisories", advisories, "--out", "{workdir}/elsewhere.json"]
    silent = make_ctx(tmp_path / "b", overrides={"dependencies": {"scan": {"command": command}}})
    read = item(run_step(silent, "dependencies"), "read")
    assert not read.passed and read.detail == (
        f"dependencies.scan.command exited 0 but wrote no {silent.paths.workdir / 'scan' / 'pip-audit.json'}: make "
        "dependencies.scan.output name the file the scanner writes")


def test_dependencies_fail_on_critical_sarif_finding_covering_the_lock_file(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, overrides={"dependencies": {"scan": None, "scan_report": "demo/scan.sarif",
                                                         "scan_format": "sarif"}})
    lock = ctx.spec.spec_dir / "demo" / "requirements.lock"
    artifacts = [{"location": {"uri": "demo/requirements.lock"}, "hashes": {"sha-256": sha256_file(lock)},
                  "roles": ["analysisTarget"]}]
    results = [{"ruleId": "CVE-2024-0001", "level": "error", "message": {"text": "heap overflow in libfoo"},
                "properties": {"security-severity": "9.8"}},
               {"ruleId": "CVE-2024-0002", "level": "warning", "message": {"text": "minor"},
                "properties": {"security-severity": "4.3"}}]
    path = ctx.spec.spec_dir / "demo" / "scan.sarif"
    path.write_text(json.dumps(sarif(results, artifacts=artifacts)), encoding="utf-8")
    report = run_step(ctx, "dependencies")
    assert item(report, "verify").passed, item(report, "verify").detail
    check = item(report, "check")
    assert not check.passed and check.detail == (
        "1 finding(s) at or above critical: CVE-2024-0001 (no package, critical); quality_gates.max_critical_vulns=0")
    assert "CRITICAL CVE-2024-0001 in scan.sarif (security-severity)" in report.findings
    # Without the critical one, the SARIF scan counts for the checklist: it analysed this exact lock file.
    path.write_text(json.dumps(sarif(results[1:], artifacts=artifacts)), encoding="utf-8")
    passed = run_step(ctx, "dependencies")
    assert passed.status == "passed", passed.blocking_issues
    assert scan_verdict(ctx, passed)["detail"].endswith("7 of 7 locked package(s) covered by lock digest, 0 "
                                                        "finding(s) at or above critical")


def test_a_sarif_report_that_does_not_show_the_lock_file_is_not_coverage(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, overrides={"dependencies": {"scan": None, "scan_report": "demo/scan.sarif",
                                                         "scan_format": "sarif"}})
    path = ctx.spec.spec_dir / "demo" / "scan.sarif"
    path.write_text(json.dumps(sarif([])), encoding="utf-8")
    verify = item(run_step(ctx, "dependencies"), "verify")
    assert not verify.passed and "does not show it scanned requirements.lock" in verify.detail
    old = hashlib.sha256(b"an earlier lock file").hexdigest()
    stale_digest = [{"location": {"uri": "requirements.lock"}, "hashes": {"sha-256": old}}]
    path.write_text(json.dumps(sarif([], artifacts=stale_digest)), encoding="utf-8")
    verify = item(run_step(ctx, "dependencies"), "verify")
    assert not verify.passed and "scanned another requirements.lock" in verify.detail


def test_dependencies_fail_on_unpinned_lock_entry(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    lock = ctx.spec.spec_dir / "demo" / "requirements.lock"
    lock.write_text(lock.read_text(encoding="utf-8") + "rich>=13\n", encoding="utf-8")
    report = run_step(ctx, "dependencies")
    verify = item(report, "verify")
    assert not verify.passed
    line = len(lock.read_text(encoding="utf-8").splitlines())
    assert verify.detail == (f"requirements.lock: unpinned line {line} 'rich>=13' (use name==version); "
                             f"requirements.lock: hashes are used but missing for line {line} rich")
    assert report.metrics["unpinned"] == 1


def test_dependencies_fail_on_missing_hash(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    lock = ctx.spec.spec_dir / "demo" / "requirements.lock"
    lock.write_text(lock.read_text(encoding="utf-8") + "sniffio==1.3.1\n", encoding="utf-8")
    verify = item(run_step(ctx, "dependencies"), "verify")
    assert not verify.passed and verify.detail.endswith("hashes are used but missing for line 18 sniffio")


def test_dependencies_malformed_report_fails_read_without_traceback(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, overrides=PROVIDED)
    (ctx.spec.spec_dir / "demo" / "pip-audit.json").write_text('{"dependencies": {"name": "x"}}', encoding="utf-8")
    report = run_step(ctx, "dependencies")
    read = item(report, "read")
    assert not read.passed
    assert read.detail.endswith("pip-audit.json: pip-audit 'dependencies' is a dict, expected a list")
    assert "Traceback" not in json.dumps(report.model_dump(mode="json"))
    assert item(report, "check").detail == "no parsed scan report: vulnerabilities at or above the gate unknown"


def test_the_demo_spec_runs_its_scanner_and_ships_no_scan_report() -> None:
    demo = (DEMO_INPUTS.parent / "demo.yaml").read_text(encoding="utf-8")
    assert "gendev_release.demo.osv_scan" in demo and "scan_report:" not in demo.split("\ndependencies:", 1)[1][:900]
    assert not (DEMO_INPUTS / "pip-audit.json").exists()


@pytest.mark.parametrize(("dependencies", "field", "message"), [
    pytest.param({"scan": None}, "dependencies.scan", "no vulnerability scan; give scan: {command: [...], output: ...",
                 id="neither"),
    pytest.param({"scan_report": "demo/pip-audit.json"}, "dependencies.scan_report",
                 "give scan (run in the release) or scan_report (provided), not both", id="both"),
    pytest.param({"scan": {"output": "{spec_dir}/scan.json"}}, "dependencies.scan.output",
                 "uses a placeholder other than a leading {workdir}/", id="output_outside_the_run"),
    pytest.param({"scan": {"command": ["sh", "-c", "pip-audit > x"]}}, "dependencies.scan.command",
                 "command runs the shell 'sh'", id="shell"),
    pytest.param({"scan": {"format": "trivy"}}, "dependencies.scan.format", "'pip-audit', 'sarif' or 'osv'",
                 id="unknown_format"),
])
def test_the_spec_refuses_a_scan_that_cannot_work(tmp_path: Path, dependencies: dict[str, Any], field: str,
                                                  message: str) -> None:
    with pytest.raises(SpecError) as info:
        make_spec(tmp_path / "spec", {"dependencies": dependencies})
    [problem] = info.value.problems
    assert problem.field == field and message in problem.message, problem
