"""Phase 3: build and dependencies, and the demo build/backup tools they run."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from duty_helpers import DEMO_INPUTS, item, make_ctx, run_step

from gendev_release.demo import backup as demo_backup
from gendev_release.demo import build as demo_build
from gendev_release.duties.build import (
    ScanReportError,
    embedded_version,
    lock_problems,
    parse_lock_file,
    parse_pip_audit,
    parse_sarif,
    parse_scan_report,
)
from gendev_release.report import sha256_file

HASH_A = "a" * 64
HASH_B = "b" * 64


def sarif(results: list[dict[str, object]], rules: list[dict[str, object]] | None = None) -> dict[str, object]:
    return {"version": "2.1.0", "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "runs": [{"tool": {"driver": {"name": "trivy", "rules": rules or []}}, "results": results}]}


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


# ======================================================================================= build
def test_build_passes_on_the_demo(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    report = run_step(ctx, "build")
    assert report.status == "passed", report.blocking_issues
    assert report.metrics["build_success_pct"] == 100.0
    names = sorted(a["name"] for a in report.facts["artifacts"])
    assert names == ["demo-1.1.0.tar.gz", "manifest.json"]
    assert all(len(a["sha256"]) == 64 for a in report.facts["artifacts"])
    assert sorted(d.name for d in report.deliverables) == ["artifact demo-1.1.0.tar.gz", "artifact manifest.json"]
    verify = item(report, "verify")
    assert verify.evidence[0].kind == "command" and verify.evidence[0].data["exit_code"] == 0
    assert "manifest.json names version 1.1.0" in [e.summary for e in item(report, "check").evidence]


def test_build_fails_when_command_exits_1(tmp_path: Path) -> None:
    command = ["{python}", "-c", "raise SystemExit('compiler exploded')"]
    ctx = make_ctx(tmp_path, overrides={"build": {"command": command}})
    report = run_step(ctx, "build")
    verify = item(report, "verify")
    assert not verify.passed and verify.detail == "build command exited 1: compiler exploded"
    assert report.metrics["build_success_pct"] == 0.0
    check = item(report, "check")
    assert not check.passed and "artifact glob 'demo-*.tar.gz' matched no file" in check.detail


def test_build_fails_on_missing_artifact(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, overrides={"build": {"artifacts": ["demo-*.tar.gz", "demo-*.whl"]}})
    check = item(run_step(ctx, "build"), "check")
    assert not check.passed
    assert check.detail == f"artifact glob 'demo-*.whl' matched no file in {ctx.paths.artifacts_dir}"


def test_build_fails_when_manifest_names_another_version(tmp_path: Path) -> None:
    command = ["{python}", "-m", "gendev_release.demo.build", "--config", "{spec_dir}/demo/build.toml",
               "--version", "9.9.9", "--out", "{artifacts_dir}"]
    check = item(run_step(make_ctx(tmp_path, overrides={"build": {"command": command}}), "build"), "check")
    assert not check.passed
    assert check.detail.endswith("manifest.json names version '9.9.9', expected '1.1.0'")


def test_build_fails_on_missing_config(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, overrides={"build": {"config": "demo/missing.toml"}})
    read = item(run_step(ctx, "build"), "read")
    assert not read.passed
    assert read.detail == f"build.config {ctx.spec.spec_dir / 'demo' / 'missing.toml'} does not exist"


def test_build_fails_on_invalid_toml(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    (ctx.spec.spec_dir / "demo" / "build.toml").write_text("[package\nname = 1\n", encoding="utf-8")
    read = item(run_step(ctx, "build"), "read")
    assert not read.passed and "is not valid TOML" in read.detail


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
    assert [d.name for d in report.deliverables] == ["artifact manifest.json"]
    assert "hunter2" not in json.dumps(report.model_dump(mode="json"))


def test_build_keeps_clean_artifacts_and_records_their_scan(tmp_path: Path) -> None:
    report = run_step(make_ctx(tmp_path), "build")
    scans = [e for e in item(report, "check").evidence if e.summary.startswith("secret scan of build artifact")]
    assert [(e.data["format"], e.data["hits"]) for e in scans] == [("tar", []), ("file", [])]
    assert scans[0].data["scanned_names"] == ["demo-1.1.0/VERSION", "demo-1.1.0/service.py", "demo-1.1.0/runbook.md",
                                              "demo-1.1.0/rollback.md", "demo-1.1.0/service.env"]
    assert "removed_artifacts" not in report.facts


def test_embedded_version_by_file_name(tmp_path: Path) -> None:
    wheel = tmp_path / "demo-1.2.3-py3-none-any.whl"
    wheel.write_bytes(b"x")
    assert embedded_version(tmp_path, "1.2.3", [wheel])[0]
    ok, detail, _ = embedded_version(tmp_path, "1.2.4", [wheel])
    assert not ok and detail == f"no manifest.json in {tmp_path} and no artifact name contains 1.2.4"


# ================================================================================ dependencies
def test_parse_pip_audit_both_forms_and_severity_rule() -> None:
    current = {"dependencies": [
        {"name": "Jinja2", "version": "3.1.2", "vulns": [
            {"id": "GHSA-1", "fix_versions": ["3.1.3"], "description": "xss"},  # no severity: counts as critical
            {"id": "GHSA-2", "fix_versions": [], "description": "dos", "severity": "MODERATE"},
            {"id": "GHSA-3", "fix_versions": [], "description": "rce", "severity": "critical"},
            {"id": "GHSA-4", "fix_versions": [], "description": "x", "severity": 9.8}]},
        {"name": "local-pkg", "skip_reason": "not on PyPI"}], "fixes": []}
    result = parse_pip_audit(current)
    assert result.packages == {"jinja2": "3.1.2"}
    assert [v.id for v in result.critical] == ["GHSA-1", "GHSA-3", "GHSA-4"]
    legacy = parse_pip_audit([{"name": "idna", "version": "3.20", "vulns": []}])
    assert legacy.packages == {"idna": "3.20"} and legacy.vulnerabilities == []


def test_parse_sarif_critical_rules() -> None:
    data = sarif([
        {"ruleId": "CVE-1", "level": "error", "message": {"text": "a"}, "properties": {"security-severity": "9.1"}},
        {"ruleId": "CVE-2", "level": "error", "message": {"text": "b"}},  # severity on the rule: 7.5
        {"ruleId": "CVE-3", "level": "warning", "message": {"text": "c"}},  # rule says 9.8
        {"ruleId": "LINT-1", "level": "error", "message": {"text": "no severity at all"}},
        {"ruleId": "LINT-2", "level": "note", "message": {"text": "d"}},
    ], rules=[{"id": "CVE-2", "properties": {"security-severity": "7.5"}},
              {"id": "CVE-3", "properties": {"security-severity": "9.8"}}])
    result = parse_sarif(data)
    assert [(v.id, v.critical) for v in result.vulnerabilities] == [
        ("CVE-1", True), ("CVE-2", False), ("CVE-3", True), ("LINT-1", True), ("LINT-2", False)]


@pytest.mark.parametrize(("text", "fmt", "message"), [
    ("{not json", "pip-audit", "not valid JSON"),
    ('{"deps": []}', "pip-audit", "pip-audit JSON has no 'dependencies' key"),
    ('{"dependencies": [{"version": "1"}]}', "pip-audit", "dependencies[0] has no 'name'"),
    ('{"dependencies": [{"name": "x", "vulns": [{"fix_versions": []}]}]}', "pip-audit",
     "dependencies[0] (x).vulns[0] has no 'id'"),
    ('{"version": "2.1.0"}', "sarif", "SARIF has no 'runs' list"),
    ('{"version": "1.0", "runs": []}', "sarif", "SARIF version '1.0' is not 2.1.0"),
    ('{"version": "2.1.0", "runs": [{"results": [{"properties": {"security-severity": "high"}}]}]}', "sarif",
     "security-severity 'high' is not a number"),
    ('{"version": "2.1.0", "runs": [{"tool": 3, "results": []}]}', "sarif", "unexpected sarif structure"),
])
def test_parse_scan_report_errors_are_clear(text: str, fmt: str, message: str) -> None:
    with pytest.raises(ScanReportError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        parse_scan_report(text, fmt)


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


def test_dependencies_pass_on_the_demo(tmp_path: Path) -> None:
    report = run_step(make_ctx(tmp_path), "dependencies")
    assert report.status == "passed", report.blocking_issues
    assert report.metrics["critical_vulns"] == 0
    assert report.metrics["pinned"] == 7 and report.metrics["unpinned"] == 0 and report.metrics["hashed"] == 7
    assert report.facts["scan_coverage"] == {"missing": [], "version_mismatch": []}
    assert item(report, "read").evidence[0].kind == "file"


def test_dependencies_fail_on_critical_sarif_finding(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, overrides={"dependencies": {"scan_report": "demo/scan.sarif", "scan_format": "sarif"}})
    (ctx.spec.spec_dir / "demo" / "scan.sarif").write_text(json.dumps(sarif([
        {"ruleId": "CVE-2024-0001", "level": "error", "message": {"text": "heap overflow in libfoo"},
         "properties": {"security-severity": "9.8"}},
        {"ruleId": "CVE-2024-0002", "level": "warning", "message": {"text": "minor"},
         "properties": {"security-severity": "4.3"}}])), encoding="utf-8")
    report = run_step(ctx, "dependencies")
    check = item(report, "check")
    assert not check.passed
    assert check.detail == "1 critical vulnerability: CVE-2024-0001 (scan.sarif); quality_gates.max_critical_vulns=0"
    assert report.metrics["critical_vulns"] == 1
    assert any(f.startswith("CRITICAL CVE-2024-0001") for f in report.findings)
    assert report.status == "failed"


def test_dependencies_fail_on_critical_pip_audit_vuln(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    audit_path = ctx.spec.spec_dir / "demo" / "pip-audit.json"
    audit = json.loads(audit_path.read_text(encoding="utf-8"))
    audit["dependencies"][0]["vulns"] = [{"id": "PYSEC-2099-1", "fix_versions": ["9.0"], "description": "bad"}]
    audit_path.write_text(json.dumps(audit), encoding="utf-8")
    check = item(run_step(ctx, "dependencies"), "check")
    assert not check.passed and check.detail.startswith("1 critical vulnerability: PYSEC-2099-1 (anyio)")


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
    report = run_step(ctx, "dependencies")
    verify = item(report, "verify")
    assert not verify.passed and verify.detail.endswith("hashes are used but missing for line 18 sniffio")
    assert "sniffio is in requirements.lock but not in the scan report" in report.findings


def test_dependencies_malformed_report_fails_read_without_traceback(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    (ctx.spec.spec_dir / "demo" / "pip-audit.json").write_text('{"dependencies": {"name": "x"}}', encoding="utf-8")
    report = run_step(ctx, "dependencies")
    read = item(report, "read")
    assert not read.passed
    assert read.detail.endswith("pip-audit.json is not valid pip-audit: pip-audit 'dependencies' is a dict, "
                                "expected a list")
    assert "Traceback" not in json.dumps(report.model_dump(mode="json"))
    assert item(report, "check").detail == "no parsed scan report: critical vulnerabilities unknown"
