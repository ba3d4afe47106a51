"""Phase 1: readiness and risk_assessment."""

from __future__ import annotations

import json
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml
from duty_helpers import StubService, StubTarget, commit, git, item, make_ctx, run_step
from item_proof import assert_item_fails

from gendev_release.catalogue import PHASES
from gendev_release.duties import run_duty
from gendev_release.duties.common import substitute_text
from gendev_release.duties.preparation import (
    GIT_LOG_FORMAT,
    RISK_RULES,
    compare_pins,
    last_successful_source_sha,
    parse_conventional,
    parse_git_log,
    path_matches,
    pins,
    review_relaxations,
    risk_level,
    score_risk,
    standards_differences,
    verify_backup_file,
)
from gendev_release.report import sha256_file
from gendev_release.spec import QualityGates, Waiver


# ================================================================================ pure helpers
def test_review_relaxations_flags_weaker_gate_without_waiver() -> None:
    gates = QualityGates.model_construct(**{**QualityGates().model_dump(), "build_success_pct": 95.0,
                                            "max_critical_vulns": 2, "regression_min_ms": 100.0, "waivers": []})
    table, problems = review_relaxations(gates, gates.relaxations())
    assert table["relaxations"][0] == {
        "gate": "build_success_pct", "field": "quality_gates.build_success_pct", "value": 95.0, "standard": 100.0,
        "problem": "build_success_pct=95 is weaker than the seed's minimum 100", "fix": "use 100 or more",
        "waiver": None}
    assert problems == [
        "quality_gates.build_success_pct: build_success_pct=95 is weaker than the seed's minimum 100, and no "
        "waiver covers it",
        "quality_gates.max_critical_vulns: max_critical_vulns=2 is weaker than the seed's minimum 0, and no "
        "waiver covers it",
        "quality_gates.regression_min_ms: quality_gates.regression_min_ms=100 is above the package default 25, "
        "and no waiver covers it",
    ]
    assert table["standard"]["min_compliance_pct"] == {"field": "security.min_compliance_pct", "limit": 100.0,
                                                       "upper": False, "origin": "default"}


def test_review_relaxations_accepts_recorded_waiver_and_names_unused_ones() -> None:
    gates = QualityGates(test_pass_pct=80, waivers=[
        Waiver(gate="test_pass_pct", reason="legacy suite is flaky", approved_by="qa-lead"),
        Waiver(gate="alert_rules", reason="prepared for the next release", approved_by="sre-lead")])
    table, problems = review_relaxations(gates, gates.relaxations())
    assert problems == []
    assert table["relaxations"][0]["waiver"] == {"reason": "legacy suite is flaky", "approved_by": "qa-lead"}
    assert table["unused_waivers"] == ["alert_rules"]


@pytest.mark.parametrize(("subject", "body", "expected"), [
    ("feat(api)!: drop v1", "", {"type": "feat", "scope": "api", "breaking": True, "description": "drop v1"}),
    ("fix: handle empty list", "", {"type": "fix", "scope": None, "breaking": False,
                                    "description": "handle empty list"}),
    ("refactor(core): split", "Details.\n\nBREAKING CHANGE: config renamed",
     {"type": "refactor", "scope": "core", "breaking": True, "description": "split"}),
    ("Update README", "", {"type": "other", "scope": None, "breaking": False, "description": "Update README"}),
])
def test_parse_conventional(subject: str, body: str, expected: dict[str, object]) -> None:
    assert parse_conventional(subject, body) == expected


def test_parse_git_log_reads_fields_and_files() -> None:
    text = ("\x1eaaa111\x1ffeat(ui): add page\x1fbody line\nBREAKING CHANGE: x\x1f\n\nsrc/a.py\nsrc/b.py\n"
            "\x1ebbb222\x1fchore: tidy\x1f\x1f\n\nREADME.md\n")
    commits = parse_git_log(text)
    assert [c["sha"] for c in commits] == ["aaa111", "bbb222"]
    assert commits[0]["files"] == ["src/a.py", "src/b.py"]
    assert commits[0]["breaking"] and commits[0]["scope"] == "ui"
    assert commits[1] == {"sha": "bbb222", "subject": "chore: tidy", "type": "chore", "scope": None,
                          "breaking": False, "description": "tidy", "body": "", "files": ["README.md"]}
    assert "%x1e" in GIT_LOG_FORMAT and "%x1f" in GIT_LOG_FORMAT


def test_last_successful_source_sha(tmp_path: Path) -> None:
    history = tmp_path / "h.jsonl"
    assert last_successful_source_sha(history) is None
    history.write_text("\n".join([
        json.dumps({"outcome": "success", "source_sha": "aaa"}),
        json.dumps({"outcome": "success", "source_sha": "bbb"}),
        json.dumps({"outcome": "rolled_back", "source_sha": "ccc"}),
        "not json",
    ]) + "\n", encoding="utf-8")
    assert last_successful_source_sha(history) == "bbb"


def test_path_matches_patterns_without_slash_in_any_folder() -> None:
    assert path_matches("svc/Dockerfile", ["Dockerfile"])
    assert path_matches("db/migrations/001.sql", ["*/migrations/*"])
    assert path_matches("infra/main.tf", ["*.tf"])
    assert not path_matches("src/app.py", ["Dockerfile", "*.sql", "infra/*"])


def test_score_risk_rules_and_levels() -> None:
    commits = [{"sha": "a" * 40, "breaking": True, "files": ["migrations/1.sql", "migrations/2.sql",
                                                             "migrations/3.sql", "migrations/4.sql"]},
               {"sha": "b" * 40, "breaking": False, "files": ["requirements.txt", "src/x.py"]}]
    score, level, fired = score_risk(commits, ["migrations/*", "*.sql"], first_release=True)
    points = {rule["rule"]: rule["points"] for rule in fired}
    # 4 sensitive files would be 12, capped at 9; breaking +4; requirements.txt +2; first release +1
    assert points == {"sensitive_path": 9, "breaking_change": 4, "dependency_change": 2, "first_release": 1}
    assert (score, level) == (16, "high")
    assert all(rule["mitigation"] for rule in fired)
    assert score_risk([{"sha": "c" * 40, "breaking": False, "files": ["src/x.py"]}], [], False) == (0, "low", [])
    assert [risk_level(s) for s in (0, 2, 3, 5, 6)] == ["low", "low", "medium", "medium", "high"]
    assert {r.id for r in RISK_RULES} == {"sensitive_path", "breaking_change", "dependency_change",
                                          "large_change", "first_release"}


def test_large_change_rule() -> None:
    commits = [{"sha": "d" * 40, "breaking": False, "files": [f"src/m{i}.py" for i in range(51)]}]
    _, _, fired = score_risk(commits, [], first_release=False)
    assert [r["rule"] for r in fired] == ["large_change"]


def test_verify_backup_file(tmp_path: Path) -> None:
    missing = tmp_path / "none.tar.gz"
    assert verify_backup_file(missing)[0] == [f"backup output {missing} does not exist"]
    empty = tmp_path / "empty.tar.gz"
    empty.write_bytes(b"")
    assert verify_backup_file(empty)[0] == [f"backup output {empty} is empty"]
    bogus = tmp_path / "bogus.tar.gz"
    bogus.write_bytes(b"this is not a tar archive at all")
    assert "is not a readable tar archive" in verify_backup_file(bogus)[0][0]
    good = tmp_path / "good.tar.gz"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.txt").write_text("x", encoding="utf-8")
    with tarfile.open(good, "w:gz") as archive:
        archive.add(tmp_path / "data", arcname="data")
    problems, data = verify_backup_file(good)
    assert problems == [] and data["members"] == 2 and data["restored_bytes"] == 1
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(good.read_bytes()[:-12])  # the gzip trailer (CRC, size) cut off
    assert "is not a readable tar archive" in verify_backup_file(truncated)[0][0]
    zipped = tmp_path / "good.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("data/x.txt", "x")
    assert verify_backup_file(zipped) == ([], {"bytes": zipped.stat().st_size, "members": 1, "restored_bytes": 1})
    dump = tmp_path / "db.sql"
    dump.write_text("create table items();\n", encoding="utf-8")
    assert verify_backup_file(dump) == ([], {"bytes": 22})


def test_pins_and_their_changes() -> None:
    before = pins("httpx==0.27.0 \\\n    --hash=sha256:" + "a" * 64 + "\nIdna==3.6\n# comment\n")
    after = pins("httpx==0.28.1\nanyio>=4\nrich==13.7.0\n")
    assert before == {"httpx": "0.27.0", "idna": "3.6"}
    assert compare_pins(before, after) == {"added": {"anyio": None, "rich": "13.7.0"}, "removed": {"idna": "3.6"},
                                           "changed": {"httpx": ["0.27.0", "0.28.1"]}}


def test_standards_differences_name_each_changed_field() -> None:
    held = {"quality_gates": {"test_pass_pct": 90.0, "waivers": []}, "approvals": {"approvers": ["a"]},
            "description": "x"}
    stated = {"quality_gates": {"test_pass_pct": 95.0, "waivers": []}, "approvals": {"approvers": ["a"]},
              "description": "y"}
    assert standards_differences(held, stated) == ["quality_gates.test_pass_pct is 90.0 in this run, 95.0 in the file"]


def test_substitute_text() -> None:
    assert substitute_text("{workdir}/b.tgz", {"workdir": "/w"}) == "/w/b.tgz"
    with pytest.raises(KeyError):
        substitute_text("{nope}/b.tgz", {"workdir": "/w"})


# ==================================================================================== readiness
def test_readiness_first_deployment_passes(tmp_path: Path, stub_target: StubTarget) -> None:
    ctx = make_ctx(tmp_path, stub_target)
    report = run_step(ctx, "readiness")
    assert report.status == "passed", report.blocking_issues
    read = item(report, "read")
    assert [e.data["label"] for e in read.evidence] == ["readiness.runbook", "readiness.rollback_procedure"]
    assert all(e.sha256 and len(e.sha256) == 64 for e in read.evidence)
    check = item(report, "check")
    assert check.evidence[0].kind == "target" and check.evidence[0].summary == "first deployment: nothing active"
    assert report.facts["first_deployment"] is True
    assert report.metrics["free_disk_mb"] > 0
    assert any(e.source == "bind 127.0.0.1:0" and e.data["port"] > 0 for e in check.evidence)


def test_readiness_with_active_version_checks_health_and_keeps_baseline(tmp_path: Path,
                                                                        live_target: StubTarget) -> None:
    report = run_step(make_ctx(tmp_path, live_target), "readiness")
    assert report.status == "passed", report.blocking_issues
    http = [e for e in item(report, "check").evidence if e.kind == "http"]
    assert [e.source.rsplit("/", 1)[1] for e in http] == ["healthz", "version", "metrics"]
    assert report.facts["active_version"] == "1.0.0"
    assert report.facts["baseline_metrics"]["demo_http_error_ratio"] == 0.0
    assert report.facts["baseline_metrics"]['demo_http_requests_total{code="200"}'] == 42.0


@pytest.mark.item("readiness.check")
def test_readiness_fails_on_unhealthy_active_version(tmp_path: Path) -> None:
    target = StubTarget(StubService("1.0.0", healthz_status=503))
    try:
        report = run_step(make_ctx(tmp_path, target), "readiness")
    finally:
        target.down()
    assert_item_fails(report, "readiness.check", because="active version health check healthz failed")
    check = item(report, "check")
    assert "active version health check healthz failed" in check.detail and "answered 503" in check.detail
    assert report.status == "failed"
    assert any(b.startswith("readiness.check:") for b in report.blocking_issues)


def test_readiness_fails_on_missing_runbook(tmp_path: Path, stub_target: StubTarget) -> None:
    ctx = make_ctx(tmp_path, stub_target, {"readiness": {"runbook": "demo/missing-runbook.md"}})
    report = run_step(ctx, "readiness")
    read = item(report, "read")
    assert not read.passed
    assert read.detail == f"readiness.runbook {tmp_path / 'spec' / 'demo' / 'missing-runbook.md'} does not exist"
    assert report.status == "failed"


@pytest.mark.item("readiness.read")
def test_readiness_read_fails_on_a_one_byte_runbook(tmp_path: Path, stub_target: StubTarget) -> None:
    ctx = make_ctx(tmp_path, stub_target)
    runbook = ctx.spec.spec_dir / "demo" / "runbook.md"
    runbook.write_text("x", encoding="utf-8")

    report = run_step(ctx, "readiness")

    assert_item_fails(report, "readiness.read", because="1 bytes of text, at least 200 expected")
    read = item(report, "read")
    assert read.detail == (
        "readiness.runbook runbook.md: 1 bytes of text, at least 200 expected; "
        "readiness.runbook runbook.md: no section for 'deploy', 'verify', 'escalation' (headings found: none); "
        "readiness.runbook runbook.md: does not name the service 'demo'")
    evidence = read.evidence[0]
    assert evidence.sha256 == sha256_file(runbook) and evidence.data["bytes"] == 1
    document = (ctx.paths.workdir / "deployment-readiness.md").read_text(encoding="utf-8")
    assert "- readiness.read: FAIL: readiness.runbook runbook.md: 1 bytes of text" in document


def test_readiness_read_fails_on_a_rollback_procedure_without_manual_steps(tmp_path: Path,
                                                                           stub_target: StubTarget) -> None:
    ctx = make_ctx(tmp_path, stub_target)
    rollback = ctx.spec.spec_dir / "demo" / "rollback.md"
    text = rollback.read_text(encoding="utf-8")
    rollback.write_text(text.split("## Manual rollback")[0] + "## Manual rollback\n\n## Contacts\nops\n",
                        encoding="utf-8")
    read = item(run_step(ctx, "readiness"), "read")
    assert not read.passed
    assert read.detail == ("readiness.rollback_procedure rollback.md: section 'manual rollback' ('Manual rollback') "
                           "has no text under its heading")


def test_readiness_reads_further_documents_the_spec_names(tmp_path: Path, stub_target: StubTarget) -> None:
    documents = [{"path": "demo/infrastructure.md", "sections": ["capacity"], "min_bytes": 50}]
    ctx = make_ctx(tmp_path, stub_target, {"readiness": {"documents": documents}})
    (ctx.spec.spec_dir / "demo" / "infrastructure.md").write_text(
        "# Infrastructure assessment of another-service\n\n## Network\nloopback only, one router port\n",
        encoding="utf-8")
    read = item(run_step(ctx, "readiness"), "read")
    assert not read.passed
    label = "readiness.documents[0].path infrastructure.md"
    assert read.detail == (f"{label}: no section for 'capacity' (headings found: 'Infrastructure assessment of "
                           f"another-service', 'Network'); {label}: does not name the service 'demo'")
    assert [e.data["label"] for e in read.evidence] == ["readiness.runbook", "readiness.rollback_procedure",
                                                        "readiness.documents[0].path"]


@pytest.mark.item("readiness.verify")
def test_readiness_verify_fails_when_the_spec_file_changed_after_parsing(tmp_path: Path,
                                                                          stub_target: StubTarget) -> None:
    waiver = {"gate": "test_pass_pct", "reason": "legacy suite is flaky", "approved_by": "qa-lead"}
    ctx = make_ctx(tmp_path, stub_target, {"quality_gates": {"test_pass_pct": 85, "waivers": [waiver]}})
    # after the DAG was parsed, the waiver is withdrawn and the gate restored in the file
    spec_file = ctx.spec.source
    assert spec_file is not None
    data = yaml.safe_load(spec_file.read_text(encoding="utf-8"))
    data["quality_gates"].update(test_pass_pct=90, waivers=[])
    spec_file.write_text(yaml.safe_dump(data), encoding="utf-8")

    report = run_step(ctx, "readiness")

    assert_item_fails(report, "readiness.verify", because="changed after this run's DAG was parsed")
    verify = item(report, "verify")
    assert verify.detail == (
        "the spec file demo.yaml changed after this run's DAG was parsed: quality_gates.test_pass_pct is 85.0 in "
        "this run, 90.0 in the file; quality_gates.waivers is [{\"approved_by\": \"qa-lead\", \"gate\": "
        "\"test_pass_pct\", \"reason\": \"legacy suite is flaky\"}] in this run, [] in the file; trigger the release "
        "again once Airflow has parsed the new spec")
    reread = next(e for e in verify.evidence if e.source == str(spec_file))
    assert reread.sha256 == sha256_file(spec_file) and len(reread.data["differences"]) == 2


def test_readiness_verify_fails_when_the_spec_file_no_longer_loads(tmp_path: Path, stub_target: StubTarget) -> None:
    ctx = make_ctx(tmp_path, stub_target)
    assert ctx.spec.source is not None
    ctx.spec.source.write_text("service: [not, a, name]\n", encoding="utf-8")
    verify = item(run_step(ctx, "readiness"), "verify")
    assert not verify.passed
    assert verify.detail.startswith(f"the spec file {ctx.spec.source} no longer loads (")


def test_readiness_fails_on_empty_rollback_procedure(tmp_path: Path, stub_target: StubTarget) -> None:
    ctx = make_ctx(tmp_path, stub_target)
    (ctx.spec.spec_dir / "demo" / "rollback.md").write_text("", encoding="utf-8")
    read = item(run_step(ctx, "readiness"), "read")
    assert not read.passed and read.detail.endswith("rollback.md is empty")


def test_readiness_fails_on_weaker_gate_without_waiver(tmp_path: Path, stub_target: StubTarget) -> None:
    ctx = make_ctx(tmp_path, stub_target)
    # The spec model refuses this at load time; the duty must still catch it (e.g. a spec built in code).
    weak = QualityGates.model_construct(**{**ctx.spec.quality_gates.model_dump(), "test_pass_pct": 70.0,
                                           "waivers": []})
    ctx.spec = ctx.spec.model_copy(update={"quality_gates": weak})
    report = run_step(ctx, "readiness")
    verify = item(report, "verify")
    assert not verify.passed
    assert verify.detail.startswith("quality_gates.test_pass_pct: test_pass_pct=70 is weaker than the seed's minimum "
                                    "90, and no waiver covers it; ")
    assert [r["gate"] for r in verify.evidence[0].data["relaxations"]] == ["test_pass_pct"]


def test_readiness_fails_on_a_relaxed_security_baseline_without_waiver(tmp_path: Path,
                                                                        stub_target: StubTarget) -> None:
    ctx = make_ctx(tmp_path, stub_target)
    # Refused at load time; a spec changed in code (model_copy skips validation) must still be caught by the duty.
    security = ctx.spec.security.model_copy(update={"required_controls": ["no_plaintext_secrets"]})
    ctx.spec = ctx.spec.model_copy(update={"security": security})
    verify = item(run_step(ctx, "readiness"), "verify")
    assert not verify.passed
    assert verify.detail.startswith("security.required_controls: security.required_controls leaves out the default "
                                    "control(s) config_permissions, security_headers, and no waiver covers it; ")


def test_readiness_records_waiver(tmp_path: Path, stub_target: StubTarget) -> None:
    waiver = {"gate": "test_pass_pct", "reason": "legacy suite is flaky", "approved_by": "qa-lead"}
    ctx = make_ctx(tmp_path, stub_target, {"quality_gates": {"test_pass_pct": 85, "waivers": [waiver]}})
    report = run_step(ctx, "readiness")
    verify = item(report, "verify")
    assert verify.passed and verify.detail == ("every gate meets the standard or is waived (1 waived: test_pass_pct); "
                                               "the spec file states the same standards")
    assert ("quality_gates.test_pass_pct relaxed (test_pass_pct=85 is weaker than the seed's minimum 90): waived by "
            "qa-lead: legacy suite is flaky") in report.findings
    assert report.facts["waivers"] == [{"gate": "test_pass_pct", "field": "quality_gates.test_pass_pct",
                                        "problem": "test_pass_pct=85 is weaker than the seed's minimum 90",
                                        "reason": "legacy suite is flaky", "approved_by": "qa-lead"}]


def test_readiness_fails_below_disk_threshold(tmp_path: Path, stub_target: StubTarget) -> None:
    ctx = make_ctx(tmp_path, stub_target, {"readiness": {"min_free_disk_mb": 10**12}})
    check = item(run_step(ctx, "readiness"), "check")
    assert not check.passed and "below readiness.min_free_disk_mb=1000000000000" in check.detail


def test_readiness_fails_when_target_state_is_unreadable(tmp_path: Path, stub_target: StubTarget) -> None:
    stub_target.fail_status = "state.json is corrupt"
    check = item(run_step(make_ctx(tmp_path, stub_target), "readiness"), "check")
    assert not check.passed and "target state unreadable: TargetError: state.json is corrupt" in check.detail


# =============================================================================== risk assessment
def risk_ctx(tmp_path: Path, repo: Path, risk: dict[str, object] | None = None, target: StubTarget | None = None):
    """A context whose ``risk.repo`` names ``repo``, a folder inside the spec folder ``tmp_path / "spec"``."""
    relative = repo.relative_to(tmp_path / "spec").as_posix()
    return make_ctx(tmp_path, target, {"risk": {"repo": relative, "paths": [], **(risk or {})}})


def test_risk_assessment_limits_the_change_set_to_the_service_paths(tmp_path: Path, git_repo: Path) -> None:
    ctx = risk_ctx(tmp_path, git_repo, {"paths": ["src"]})
    report = run_step(ctx, "risk_assessment")
    commits = report.facts["commits"]
    assert commits
    assert all(f.startswith("src/") for c in commits for f in c["files"])
    assert "touching src" in next(e for e in item(report, "read").evidence if e.kind == "git").summary


def test_risk_assessment_low_risk_with_backup_passes(tmp_path: Path, git_repo: Path) -> None:
    ctx = risk_ctx(tmp_path, git_repo)
    report = run_step(ctx, "risk_assessment")
    assert report.status == "passed", report.blocking_issues
    head = git(git_repo, "rev-parse", "HEAD")
    assert report.facts["source_sha"] == head and report.facts["from_sha"] is None
    commits = report.facts["commits"]
    assert [(c["type"], c["scope"]) for c in commits] == [("fix", None), ("feat", "api")]
    assert commits[0]["files"] == ["README.md", "src/app.py"]
    assert report.facts["risk_level"] == "low" and report.facts["risk_score"] == 1  # first release only
    assert any(e.kind == "git" for e in item(report, "read").evidence)
    check = item(report, "check")
    backup = [e for e in check.evidence if e.kind == "file"]
    assert backup and backup[0].source.endswith("backup/demo-config.tar.gz") and backup[0].data["members"] >= 2
    assert report.facts["backup"]["sha256"] == backup[0].sha256
    assert [e.data["exit_code"] for e in check.evidence if e.kind == "command"] == [0]


def test_risk_assessment_reads_only_commits_since_last_success(tmp_path: Path, git_repo: Path) -> None:
    ctx = risk_ctx(tmp_path, git_repo)
    released = git(git_repo, "rev-parse", "HEAD")
    ctx.paths.history_file.parent.mkdir(parents=True, exist_ok=True)
    ctx.paths.history_file.write_text(json.dumps({"outcome": "success", "source_sha": released}) + "\n"
                                      + json.dumps({"outcome": "rolled_back", "source_sha": "f" * 40}) + "\n",
                                      encoding="utf-8")
    commit(git_repo, "docs: explain", {"docs/guide.md": "guide\n"})
    report = run_step(ctx, "risk_assessment")
    assert report.facts["from_sha"] == released
    assert [c["subject"] for c in report.facts["commits"]] == ["docs: explain"]
    assert report.facts["risk_score"] == 0 and report.status == "passed"


@pytest.mark.item("risk_assessment.verify")
def test_risk_assessment_high_risk_without_approval_blocks(tmp_path: Path, git_repo: Path) -> None:
    commit(git_repo, "feat(db)!: new schema", {"migrations/002_items.sql": "create table items();\n",
                                               "requirements.txt": "httpx==0.28.1\n"})
    report = run_step(risk_ctx(tmp_path, git_repo), "risk_assessment")
    assert_item_fails(report, "risk_assessment.verify", because="unmitigated high risk")
    verify = item(report, "verify")
    assert verify.detail.startswith("unmitigated high risk (score")
    assert "add high_risk to approvals.required_for" in verify.detail
    assert report.facts["approval_required"] is False and report.facts["approval_gate"] == []
    fired = {r["rule"] for r in verify.evidence[0].data["fired"]}
    assert fired == {"sensitive_path", "breaking_change", "dependency_change", "first_release"}
    assert report.status == "failed"
    assert any("unmitigated high risk" in b for b in report.blocking_issues)
    assert report.facts["dependency_changes"] == ["requirements.txt"]
    assert report.facts["dependency_diff"] == [{"file": "requirements.txt", "added": {"httpx": "0.28.1"},
                                                "removed": {}, "changed": {}, "pinned": 1, "unpinned": []}]


@pytest.mark.parametrize("required_for", [["high_risk"], ["production"]])
def test_risk_assessment_high_risk_passes_to_the_approval_gate(tmp_path: Path, git_repo: Path,
                                                               required_for: list[str]) -> None:
    """A high risk is not approved by text in the spec: it passes here only because people approve it in Airflow."""
    commit(git_repo, "feat(db)!: new schema", {"migrations/002_items.sql": "create table items();\n"})
    relative = git_repo.relative_to(tmp_path / "spec").as_posix()
    ctx = make_ctx(tmp_path, None, {"risk": {"repo": relative, "paths": []},
                                    "approvals": {"approvers": ["alice", "bob"], "required": 2,
                                                  "required_for": required_for}})
    report = run_step(ctx, "risk_assessment")
    assert report.status == "passed", report.blocking_issues
    assert report.facts["risk_level"] == "high" and report.facts["approval_required"] is True
    assert report.facts["approval_gate"] == ["p4_environment.approval_1", "p4_environment.approval_2"]
    finding = next(f for f in report.findings if f.startswith("high risk (score"))
    assert finding.endswith("the release stops for approval: 2 of alice, bob approve in Airflow at "
                            "p4_environment.approval_1, p4_environment.approval_2 before traffic moves "
                            f"(approvals.required_for: {required_for[0]})")


def test_risk_assessment_missing_repo_fails_read(tmp_path: Path) -> None:
    ctx = risk_ctx(tmp_path, tmp_path / "spec" / "nowhere")
    report = run_step(ctx, "risk_assessment")
    read = item(report, "read")
    assert not read.passed
    assert read.detail == f"risk.repo {ctx.spec.spec_dir / 'nowhere'} does not exist or is not a folder"
    assert not item(report, "verify").passed and report.status == "failed"


@pytest.mark.item("risk_assessment.read")
def test_risk_assessment_not_a_git_repo_fails_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = tmp_path / "spec" / "plain"
    plain.mkdir(parents=True)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # never find a repository above tmp_path
    report = run_step(risk_ctx(tmp_path, plain), "risk_assessment")
    assert_item_fails(report, "risk_assessment.read", because="is not a git repository")
    read = item(report, "read")
    assert read.detail.startswith(f"risk.repo {plain} is not a git repository with commits:")
    assert read.evidence and read.evidence[0].kind == "command" and read.evidence[0].data["exit_code"] != 0


def test_risk_assessment_backup_output_missing_fails_check(tmp_path: Path, git_repo: Path) -> None:
    backup = {"command": ["{python}", "-c", "print('pretending to back up')"],
              "output": "{workdir}/backup/never-written.tar.gz"}
    ctx = risk_ctx(tmp_path, git_repo, {"backup": backup})
    check = item(run_step(ctx, "risk_assessment"), "check")
    assert not check.passed
    assert check.detail == f"backup output {ctx.paths.workdir / 'backup' / 'never-written.tar.gz'} does not exist"


def test_risk_assessment_backup_command_failure_fails_check(tmp_path: Path, git_repo: Path) -> None:
    backup = {"command": ["{python}", "-m", "gendev_release.demo.backup", "--source", "{spec_dir}/no-such-dir",
                          "--out", "{workdir}/backup/b.tar.gz"], "output": "{workdir}/backup/b.tar.gz"}
    check = item(run_step(risk_ctx(tmp_path, git_repo, {"backup": backup}), "risk_assessment"), "check")
    assert not check.passed
    assert check.detail.startswith("backup command exited 1: backup: source folder")
    assert check.detail.endswith("no-such-dir does not exist")


def test_risk_assessment_removes_a_backup_holding_a_plaintext_secret(tmp_path: Path, git_repo: Path) -> None:
    ctx = risk_ctx(tmp_path, git_repo)
    env = ctx.spec.spec_dir / "demo" / "service.env"  # inside the folder the demo backup archives
    env.write_text(env.read_text(encoding="utf-8") + "DB_PASS=hunter2-very-secret\n", encoding="utf-8")

    report = run_step(ctx, "risk_assessment")

    check = item(report, "check")
    output = ctx.paths.workdir / "backup" / "demo-config.tar.gz"
    assert not check.passed and not output.exists()
    where = "demo-config.tar.gz!demo/service.env:6 (assignment to DB_PASS)"
    assert check.detail == (f"backup demo-config.tar.gz holds plaintext secret(s) at {where}; it was removed: keep "
                            "plaintext secrets out of what risk.backup.command archives, or write an encrypted backup")
    scan = next(e for e in check.evidence if e.summary.startswith("secret scan of backup"))
    assert scan.data["hits"] == [{"file": "demo-config.tar.gz", "member": "demo/service.env", "line": 6,
                                  "rule": "assignment to DB_PASS"}]
    removal = next(e for e in check.evidence if e.data.get("removed"))
    assert removal.source == str(output) and removal.sha256 and where in removal.data["reason"]
    assert report.facts["backup"]["removed"] is True and report.facts["backup"]["path"] == str(output)
    assert "hunter2" not in json.dumps(report.model_dump(mode="json"))


def test_risk_assessment_backup_waiver_passes_with_reason(tmp_path: Path, git_repo: Path) -> None:
    waiver = {"waiver": "stateless service: nothing to back up", "approved_by": "ops-lead", "command": None,
              "output": None, "contents": []}
    ctx = risk_ctx(tmp_path, git_repo, {"backup": waiver})
    report = run_step(ctx, "risk_assessment")
    check = item(report, "check")
    assert check.passed
    waiver = [e for e in check.evidence if e.source == "risk.backup.waiver"]
    assert waiver and waiver[0].data["waiver"] == "stateless service: nothing to back up"
    assert report.facts["backup"] == {"waived": "stateless service: nothing to back up"}


def test_risk_verify_fails_when_the_range_is_longer_than_max_commits(tmp_path: Path, git_repo: Path) -> None:
    ctx = risk_ctx(tmp_path, git_repo, {"max_commits": 1})
    released = git(git_repo, "rev-parse", "HEAD")
    ctx.paths.history_file.parent.mkdir(parents=True, exist_ok=True)
    ctx.paths.history_file.write_text(json.dumps({"outcome": "success", "source_sha": released}) + "\n",
                                      encoding="utf-8")
    commit(git_repo, "docs: one", {"docs/a.md": "a\n"})
    commit(git_repo, "docs: two", {"docs/b.md": "b\n"})
    verify = item(run_step(ctx, "risk_assessment"), "verify")
    assert not verify.passed
    assert verify.detail == ("only 1 of the 2 commits since the last release were scored (risk.max_commits=1): "
                             "raise risk.max_commits to at least 2")


def test_risk_check_lists_dependency_changes_pin_by_pin_since_the_last_release(tmp_path: Path,
                                                                               git_repo: Path) -> None:
    commit(git_repo, "build: pin", {"requirements.lock": "httpx==0.27.0\nidna==3.6\n"})
    ctx = risk_ctx(tmp_path, git_repo)
    released = git(git_repo, "rev-parse", "HEAD")
    ctx.paths.history_file.parent.mkdir(parents=True, exist_ok=True)
    ctx.paths.history_file.write_text(json.dumps({"outcome": "success", "source_sha": released}) + "\n",
                                      encoding="utf-8")
    commit(git_repo, "build: bump httpx", {"requirements.lock": "httpx==0.28.1\nidna==3.6\nanyio==4.4.0\n"})
    report = run_step(ctx, "risk_assessment")
    assert report.facts["dependency_diff"] == [{"file": "requirements.lock", "added": {"anyio": "4.4.0"},
                                                "removed": {}, "changed": {"httpx": ["0.27.0", "0.28.1"]},
                                                "pinned": 3, "unpinned": []}]
    delivered = next(d for d in report.deliverables if d.name == "Dependency validation")
    assert json.loads(Path(delivered.path).read_text(encoding="utf-8"))["dependency_files"] == \
        report.facts["dependency_diff"]


@pytest.mark.item("risk_assessment.check")
def test_risk_assessment_check_fails_when_the_backup_misses_a_file_it_must_restore(tmp_path: Path,
                                                                                   git_repo: Path) -> None:
    backup = {"command": ["{python}", "-m", "gendev_release.demo.backup", "--source", "{spec_dir}/partial",
                          "--out", "{workdir}/backup/config.tar.gz"], "output": "{workdir}/backup/config.tar.gz"}
    ctx = risk_ctx(tmp_path, git_repo, {"backup": backup})  # contents: the demo's [demo/service.env, demo/build.toml]
    partial = ctx.spec.spec_dir / "partial"  # a backup command pointed at the wrong folder
    partial.mkdir()
    (partial / "service.env").write_bytes((ctx.spec.spec_dir / "demo" / "service.env").read_bytes())

    report = run_step(ctx, "risk_assessment")

    assert_item_fails(report, "risk_assessment.check", because="does not hold demo/build.toml")
    check = item(report, "check")
    assert check.detail == "backup config.tar.gz does not hold demo/build.toml"
    rows = next(e for e in check.evidence if e.source.endswith("members vs risk.backup.contents")).data["contents"]
    assert [(r["file"], r["member"]) for r in rows] == [("demo/service.env", "partial/service.env"),
                                                        ("demo/build.toml", None)]
    strategy = (ctx.paths.workdir / "backup-strategy.md").read_text(encoding="utf-8")
    assert "- demo/service.env: restored byte for byte from partial/service.env" in strategy
    assert "- demo/build.toml: NOT restored (no such member)" in strategy


def test_risk_check_fails_when_a_file_changed_since_the_backup_holds_it(tmp_path: Path, git_repo: Path) -> None:
    backup = {"command": ["{python}", "-m", "gendev_release.demo.backup", "--source", "{spec_dir}/snapshot",
                          "--out", "{workdir}/b.tar.gz"], "output": "{workdir}/b.tar.gz",
              "contents": ["demo/runbook.md"]}
    ctx = risk_ctx(tmp_path, git_repo, {"backup": backup})
    runbook = ctx.spec.spec_dir / "demo" / "runbook.md"
    snapshot = ctx.spec.spec_dir / "snapshot"  # an old copy of the runbook, not the current one
    snapshot.mkdir()
    (snapshot / "runbook.md").write_text("an older runbook\n", encoding="utf-8")
    check = item(run_step(ctx, "risk_assessment"), "check")
    assert not check.passed
    assert check.detail.startswith("backup b.tar.gz holds snapshot/runbook.md with sha256 ")
    assert check.detail.endswith(f"but demo/runbook.md now has {sha256_file(runbook)[:12]}: restoring it would not "
                                 "give the current file back")


def test_risk_check_fails_when_the_backup_is_not_the_file_the_tool_reported(tmp_path: Path, git_repo: Path) -> None:
    code = ("import sys, tarfile, pathlib; out = pathlib.Path(sys.argv[1]); out.parent.mkdir(parents=True, "
            "exist_ok=True); t = tarfile.open(out, 'w:gz'); t.add(sys.argv[2], arcname='demo'); t.close(); "
            "print('0' * 64 + '  ' + str(out))")
    backup = {"command": ["{python}", "-c", code, "{workdir}/b.tar.gz", "{spec_dir}/demo"],
              "output": "{workdir}/b.tar.gz"}
    ctx = risk_ctx(tmp_path, git_repo, {"backup": backup})
    check = item(run_step(ctx, "risk_assessment"), "check")
    output = ctx.paths.workdir / "b.tar.gz"
    assert not check.passed
    assert check.detail == (f"backup b.tar.gz has sha256 {sha256_file(output)[:12]}, but the backup command reported "
                            "000000000000: the file changed after it was written")


def test_the_demo_backup_restores_its_config_files_and_reports_its_digest(tmp_path: Path, git_repo: Path) -> None:
    ctx = risk_ctx(tmp_path, git_repo)
    report = run_step(ctx, "risk_assessment")
    assert report.status == "passed", report.blocking_issues
    check = item(report, "check")
    rows = next(e for e in check.evidence if e.source.endswith("members vs risk.backup.contents")).data["contents"]
    assert [(r["file"], r["member"], r["file_sha256"] == r["member_sha256"]) for r in rows] == [
        ("demo/service.env", "demo/service.env", True), ("demo/build.toml", "demo/build.toml", True)]
    strategy = (ctx.paths.workdir / "backup-strategy.md").read_text(encoding="utf-8")
    assert f"(the command reported {report.facts['backup']['sha256']})" in strategy


def test_phase_1_delivers_every_catalogue_deliverable(tmp_path: Path, git_repo: Path,
                                                      live_target: StubTarget) -> None:
    ctx = risk_ctx(tmp_path, git_repo, target=live_target)
    reports = [run_duty(ctx, step.id) for step in PHASES[0].steps]
    assert all(r.status == "passed" for r in reports), [r.blocking_issues for r in reports]
    delivered = {d.name: Path(d.path) for r in reports for d in r.deliverables}
    assert set(PHASES[0].deliverables) <= set(delivered)
    assert all(delivered[name].stat().st_size > 0 for name in PHASES[0].deliverables)
    assert {line["name"] for line in ctx.store.manifest()} >= set(PHASES[0].deliverables)
    resources = json.loads(delivered["Resource verification"].read_text(encoding="utf-8"))
    assert resources["active_health"][0]["check"] == "healthz" and resources["disk"]["passed"] is True
