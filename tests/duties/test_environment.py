"""Phase 4: provisioning and hardening."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from duty_helpers import StubService, StubTarget, item, make_ctx, make_spec, run_step, save_report
from item_proof import assert_item_fails

from gendev_release.catalogue import PHASES
from gendev_release.demo import backup as demo_backup
from gendev_release.duties.base import run_duty
from gendev_release.duties.environment import (
    PlanFormatError,
    judge_destructive_changes,
    parse_plan_changes,
    pending_changes,
    summarize_changes,
    writable_by_others,
)
from gendev_release.errors import SpecError
from gendev_release.secrets import scan_secrets
from gendev_release.spec import DestructiveWaiver
from gendev_release.targets.base import ResourceChange

TERRAFORM_PLAN = {
    "format_version": "1.2", "terraform_version": "1.9.0",
    "resource_changes": [
        {"address": "aws_s3_bucket.assets", "type": "aws_s3_bucket", "name": "assets",
         "change": {"actions": ["update"], "before": {}, "after": {}}},
        {"address": "aws_db_instance.main", "type": "aws_db_instance", "name": "main",
         "change": {"actions": ["delete", "create"], "before": {}, "after": {}}},
    ],
}
PLAN_SCRIPT = "import json, pathlib, sys\nsys.stdout.write(pathlib.Path(sys.argv[1]).read_text())\n"


# ================================================================================ pure helpers
def test_parse_plan_changes_reads_terraform_plan() -> None:
    changes = parse_plan_changes(TERRAFORM_PLAN)
    assert [(c.address, c.actions, c.destructive) for c in changes] == [
        ("aws_s3_bucket.assets", ("update",), False), ("aws_db_instance.main", ("delete", "create"), True)]
    assert summarize_changes(changes)["destructive"] == ["aws_db_instance.main (delete/create)"]
    with pytest.raises(PlanFormatError, match="no format_version"):
        parse_plan_changes({"resource_changes": []})
    with pytest.raises(PlanFormatError, match=r"resource_changes\[0\] \(x\) has no change.actions list"):
        parse_plan_changes({"format_version": "1.2", "resource_changes": [{"address": "x", "change": {}}]})


def test_pending_changes_ignores_no_ops() -> None:
    changes = [ResourceChange("a", ("no-op",)), ResourceChange("b", ("read",)), ResourceChange("c", ("update",))]
    assert [c.address for c in pending_changes(changes)] == ["c"]


def test_scan_secrets_still_finds_the_known_forms() -> None:
    # the full table of positives and negatives is in tests/test_secrets.py
    secret_token = "Zx81kQ0vTq9LmN2bW7yR4cHs6JdP3fGa"
    text = "\n".join([
        "DB_PASSWORD=hunter2",                                  # 1 assignment
        "-----BEGIN RSA PRIVATE KEY-----",                      # 2 private key header
        "aws_key: AKIAIOSFODNN7EXAMPLE",                        # 3 AWS key id (assignment key has no secret word)
        f"opaque = {secret_token}",                             # 4 entropy only
        "DATABASE_URL=postgres://app:s3cret@db:5432/app",       # 5 credentials in a URL
        "API_TOKEN_CONN_ID=demo_api",                           # 6 a reference, not a secret
        "SECRET_KEY=${SECRET_KEY}",                             # 7 a reference
        "# password=only-in-a-comment",                         # 8 comment (assignment rule skipped)
        "token_ttl = 3600",                                     # 9 a setting about a token
        'password = ""',                                        # 10 empty
    ])
    hits = scan_secrets(text, "app.env")
    assert [(h.line, h.rule) for h in hits] == [
        (1, "assignment to DB_PASSWORD"), (2, "private_key"), (3, "aws_access_key_id"),
        (4, "high-entropy string (32 chars)"), (5, "url_credentials")]
    rendered = " ".join(str(h) for h in hits)
    assert "hunter2" not in rendered and secret_token not in rendered and "s3cret" not in rendered


def test_writable_by_others() -> None:
    assert writable_by_others(0o100644) == []
    assert writable_by_others(0o100664) == ["group"]
    assert writable_by_others(0o100666) == ["group", "world"]


# ================================================================================ provisioning
def test_provisioning_stages_without_drift(tmp_path: Path, stub_target: StubTarget) -> None:
    ctx = make_ctx(tmp_path, stub_target, {"infrastructure": {"files": ["demo/build.toml"]}})
    report = run_step(ctx, "provisioning")
    assert report.status == "passed", report.blocking_issues
    manifest = json.loads((ctx.paths.workdir / "infra" / "stub-target.json").read_text(encoding="utf-8"))
    assert manifest["resource_changes"] == [{"address": "stub_slot.blue", "change": {
        "actions": ["create"], "before": None, "after": {"version": "1.1.0"}}}]
    read = item(report, "read")
    assert [(e.kind, e.data.get("label")) for e in read.evidence] == [
        ("file", "infrastructure.files"), ("computed", None), ("file", "infrastructure.docs"), ("target", None),
        ("target", None)]
    assert read.evidence[1].data == {"format": "TOML"} and read.evidence[2].data["problems"] == []
    assert read.detail == ("1 IaC file(s) parsed, 1 infrastructure document(s) with substance; the stub target's "
                           "status and plan read")
    staged = report.facts["staged"]
    assert staged["version"] == "1.1.0" and staged["slot"] == "blue" and staged["url"].startswith("http://127.0.0.1:")
    check = item(report, "check")
    assert [e.kind for e in check.evidence] == ["target", "target", "http", "target"]
    assert check.evidence[2].source == staged["url"] + "/version" and check.evidence[2].data["status"] == 200
    assert check.evidence[-1].summary == "0 pending change(s) after apply"
    assert stub_target.stage_calls == [("1.1.0", ctx.run_id)]
    assert item(report, "verify").detail == "no plan_command: the stub target's plan has 1 change(s) {'create': 1}"


def test_provisioning_fails_on_missing_iac_file(tmp_path: Path, stub_target: StubTarget) -> None:
    ctx = make_ctx(tmp_path, stub_target, {"infrastructure": {"files": ["infra/main.tf"]}})
    read = item(run_step(ctx, "provisioning"), "read")
    assert not read.passed
    assert read.detail == f"infrastructure.files {ctx.spec.spec_dir / 'infra' / 'main.tf'} does not exist"


def test_provisioning_blocks_on_deletes_in_the_terraform_plan(tmp_path: Path, stub_target: StubTarget) -> None:
    overrides = {"infrastructure": {"plan_command": ["{python}", "{spec_dir}/plan.py", "{spec_dir}/plan.json"]}}
    ctx = make_ctx(tmp_path, stub_target, overrides)
    (ctx.spec.spec_dir / "plan.py").write_text(PLAN_SCRIPT, encoding="utf-8")
    (ctx.spec.spec_dir / "plan.json").write_text(json.dumps(TERRAFORM_PLAN), encoding="utf-8")
    report = run_step(ctx, "provisioning")
    verify = item(report, "verify")
    assert verify.passed and verify.detail == "plan command exited 0; 2 resource change(s)"
    assert report.facts["command_plan"]["by_action"] == {"delete/create": 1, "update": 1}
    assert report.blocking_issues == [
        "plan_command plan replaces aws_db_instance.main (delete/create) and no infrastructure.destructive_waivers "
        "entry names it: review and apply it outside the release, or add a waiver for exactly aws_db_instance.main",
        "provisioning.check: not applied: destructive change(s) without a waiver: aws_db_instance.main "
        "(delete/create): blocked"]
    assert report.status == "failed" and stub_target.stage_calls == []


@pytest.mark.item("provisioning.read")
def test_provisioning_read_fails_on_a_thin_infrastructure_document(tmp_path: Path, stub_target: StubTarget) -> None:
    ctx = make_ctx(tmp_path, stub_target)
    (ctx.spec.spec_dir / "demo" / "infrastructure.md").write_text("# Slots\n\nTBD\n", encoding="utf-8")
    report = run_step(ctx, "provisioning")
    assert_item_fails(report, "provisioning.read", because="infrastructure.docs: infrastructure.md: ")
    detail = item(report, "read").detail
    assert "at least 200 expected" in detail and "'router'" in detail and "does not name the service 'demo'" in detail


def test_provisioning_read_fails_on_a_malformed_iac_file(tmp_path: Path, stub_target: StubTarget) -> None:
    ctx = make_ctx(tmp_path, stub_target, {"infrastructure": {"files": ["infra/vars.json"]}})
    (ctx.spec.spec_dir / "infra").mkdir()
    (ctx.spec.spec_dir / "infra" / "vars.json").write_text('{"region": "eu-west-1",}', encoding="utf-8")
    read = item(run_step(ctx, "provisioning"), "read")
    assert not read.passed and read.detail.startswith("infrastructure.files vars.json is not valid JSON: ")


@pytest.mark.item("provisioning.verify")
def test_provisioning_verify_fails_when_the_plan_command_fails(tmp_path: Path, stub_target: StubTarget) -> None:
    overrides = {"infrastructure": {"plan_command": ["{python}", "-c", "raise SystemExit('Error: invalid provider')"]}}
    report = run_step(make_ctx(tmp_path, stub_target, overrides), "provisioning")
    assert_item_fails(report, "provisioning.verify", because="plan command exited 1: Error: invalid provider")
    assert item(report, "verify").detail == "plan command exited 1: Error: invalid provider"


def test_provisioning_fails_when_apply_fails_and_stages_nothing(tmp_path: Path, stub_target: StubTarget) -> None:
    overrides = {"infrastructure": {"apply_command": ["{python}", "-c", "raise SystemExit('apply: quota exceeded')"]}}
    report = run_step(make_ctx(tmp_path, stub_target, overrides), "provisioning")
    check = item(report, "check")
    assert not check.passed
    assert check.detail == "apply command exited 1: apply: quota exceeded; nothing was staged"
    assert stub_target.stage_calls == [] and "staged" not in report.facts


@pytest.mark.item("provisioning.check")
def test_provisioning_check_fails_when_the_staged_slot_answers_another_version(tmp_path: Path) -> None:
    local = pytest.importorskip("gendev_release.targets.local")
    # target.command ignores {version}: the target records 1.1.0 as staged, the process serves 1.0.0
    command = ["{python}", "-m", "gendev_release.demo.service", "--port", "{port}", "--version", "1.0.0"]
    ctx = make_ctx(tmp_path, overrides={"target": {"command": command}})
    target = local.LocalTarget(ctx.spec.target, ctx.spec.service, ctx.paths.home)
    ctx.target = target
    try:
        report = run_step(ctx, "provisioning")
        staged = report.facts["staged"]
        assert_item_fails(report, "provisioning.check",
                          because=f"staged slot {staged['slot']} at {staged['url']} answers version '1.0.0' on "
                                  "/version (HTTP 200), expected 1.1.0")
        assert target.status().staged is not None and target.status().staged.version == "1.1.0"  # the state's word
    finally:
        target.down()


def test_provisioning_check_fails_when_the_targets_status_does_not_show_the_staged_slot(
        tmp_path: Path, stub_target: StubTarget) -> None:
    class ForgetfulTarget(StubTarget):
        def status(self):  # the staged slot is not written to the target's durable state
            status = super().status()
            status.staged = None
            return status

    target = ForgetfulTarget()
    try:
        check = item(run_step(make_ctx(tmp_path, target), "provisioning"), "check")
    finally:
        target.down()
    assert not check.passed and check.detail == (
        "the stub target's status shows staged none, not 1.1.0 on slot blue: staging did not stick")


def test_provisioning_fails_on_drift_after_apply(tmp_path: Path, stub_target: StubTarget) -> None:
    stub_target.drift = [ResourceChange("stub_config.env", ("update",))]
    check = item(run_step(make_ctx(tmp_path, stub_target), "provisioning"), "check")
    assert not check.passed and check.detail == "drift after apply: stub_config.env (update)"


def test_provisioning_fails_when_staging_fails(tmp_path: Path, stub_target: StubTarget) -> None:
    stub_target.stage_error = "port 8080 in use"
    check = item(run_step(make_ctx(tmp_path, stub_target), "provisioning"), "check")
    assert not check.passed and check.detail == "staging 1.1.0 failed: TargetError: port 8080 in use"


def test_provisioning_flags_target_deletes_without_blocking(tmp_path: Path, stub_target: StubTarget) -> None:
    stub_target.extra_plan = [ResourceChange("stub_slot.old", ("delete",))]
    report = run_step(make_ctx(tmp_path, stub_target), "provisioning")
    assert "destructive change planned: stub_slot.old (delete)" in report.findings
    assert report.blocking_issues == [] and report.status == "passed"


# ============================================================ provisioning: Terraform plan JSON and waivers
FIXTURES = Path(__file__).parents[1] / "fixtures" / "formats"
#: Prints the plan file, as `terraform show -json tfplan` does; then the apply command leaves a marker.
APPLY_MARKER = "import pathlib, sys; pathlib.Path(sys.argv[1]).write_text('applied')"
DB_WAIVER = {"address": "module.db.aws_db_instance.main", "reason": "postgres 15 -> 16 major upgrade, restored "
             "from the phase 1 backup (CHG-2231)", "approved_by": "dba-oncall"}
SG_WAIVER = {"address": "aws_security_group.legacy_ssh", "reason": "bastion retired in INFRA-88",
             "approved_by": "platform-lead"}


def plan_ctx(tmp_path: Path, target: StubTarget, plan: str | dict, waivers: list[dict] | None = None):
    """A context whose plan_command prints ``plan`` (a fixture name or a plan) and whose apply leaves a marker."""
    spec_dir = tmp_path / "spec"
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "plan.py").write_text(PLAN_SCRIPT, encoding="utf-8")
    text = (FIXTURES / plan).read_text(encoding="utf-8") if isinstance(plan, str) else json.dumps(plan)
    (spec_dir / "plan.json").write_text(text, encoding="utf-8")
    infrastructure = {"plan_command": ["{python}", "{spec_dir}/plan.py", "{spec_dir}/plan.json"],
                      "apply_command": ["{python}", "-c", APPLY_MARKER, "{workdir}/applied"],
                      "destructive_waivers": waivers or []}
    return make_ctx(tmp_path, target, {"infrastructure": infrastructure})


def test_unwaived_deletes_and_replaces_block_and_nothing_is_applied(tmp_path: Path, stub_target: StubTarget) -> None:
    ctx = plan_ctx(tmp_path, stub_target, "terraform-plan.json")

    report = run_step(ctx, "provisioning")

    assert item(report, "verify").detail == "plan command exited 0; 5 resource change(s)"
    assert report.blocking_issues[:2] == [
        "plan_command plan deletes aws_security_group.legacy_ssh (delete) and no infrastructure.destructive_waivers "
        "entry names it: review and apply it outside the release, or add a waiver for exactly "
        "aws_security_group.legacy_ssh",
        "plan_command plan replaces module.db.aws_db_instance.main (delete/create) and no "
        "infrastructure.destructive_waivers entry names it: review and apply it outside the release, or add a waiver "
        "for exactly module.db.aws_db_instance.main"]
    check = item(report, "check")
    assert not check.passed and check.detail == (
        "not applied: destructive change(s) without a waiver: aws_security_group.legacy_ssh (delete): blocked; "
        "module.db.aws_db_instance.main (delete/create): blocked")
    assert not (ctx.paths.workdir / "applied").exists() and stub_target.stage_calls == []
    assert [d["status"] for d in report.facts["destructive_changes"]] == ["blocked", "blocked"]
    assert report.status == "failed"


def test_waived_changes_are_applied_and_shown_as_waived_never_passed(tmp_path: Path,
                                                                     stub_target: StubTarget) -> None:
    ctx = plan_ctx(tmp_path, stub_target, "terraform-plan.json", [SG_WAIVER, DB_WAIVER])

    report = run_step(ctx, "provisioning")

    assert report.status == "passed", report.blocking_issues
    assert (ctx.paths.workdir / "applied").read_text() == "applied"
    db_status = ("waived (postgres 15 -> 16 major upgrade, restored from the phase 1 backup (CHG-2231), "
                 "dba-oncall)")
    assert report.facts["destructive_changes"] == [
        {"address": "aws_security_group.legacy_ssh", "actions": ["delete"],
         "status": "waived (bastion retired in INFRA-88, platform-lead)", "reason": "bastion retired in INFRA-88",
         "approved_by": "platform-lead"},
        {"address": "module.db.aws_db_instance.main", "actions": ["delete", "create"], "status": db_status,
         "reason": DB_WAIVER["reason"], "approved_by": "dba-oncall"}]
    check = item(report, "check")
    assert check.detail.endswith("; destructive change(s) aws_security_group.legacy_ssh (delete): waived (bastion "
                                 f"retired in INFRA-88, platform-lead); module.db.aws_db_instance.main "
                                 f"(delete/create): {db_status}")
    gate = next(e for e in check.evidence if e.source.startswith("plan_command destructive changes"))
    assert gate.summary == "2 destructive change(s): 2 waived, 0 blocked; 0 stale waiver(s)"
    assert "destructive change aws_security_group.legacy_ssh (delete): waived (bastion retired in INFRA-88, " \
           "platform-lead)" in report.findings


def test_waiver_must_name_exactly_the_address(tmp_path: Path, stub_target: StubTarget) -> None:
    # The waiver leaves out the module path: it names a resource the plan does not touch.
    loose = {**DB_WAIVER, "address": "aws_db_instance.main"}
    ctx = plan_ctx(tmp_path, stub_target, "terraform-plan.json", [SG_WAIVER, loose])

    report = run_step(ctx, "provisioning")

    assert [d["status"] for d in report.facts["destructive_changes"]] == [
        "waived (bastion retired in INFRA-88, platform-lead)", "blocked"]
    assert report.blocking_issues[0].startswith("plan_command plan replaces module.db.aws_db_instance.main")
    assert ("stale destructive waiver for aws_db_instance.main (approved by dba-oncall): the plan does not touch it; "
            "remove it from infrastructure.destructive_waivers") in report.findings
    assert not (ctx.paths.workdir / "applied").exists()


def test_waiver_for_a_resource_the_plan_only_updates_is_stale(tmp_path: Path, stub_target: StubTarget) -> None:
    bucket = {"address": "aws_s3_bucket.assets", "reason": "bucket recreated in another region",
              "approved_by": "platform-lead"}
    ctx = plan_ctx(tmp_path, stub_target, "terraform-plan.json", [SG_WAIVER, DB_WAIVER, bucket])

    report = run_step(ctx, "provisioning")

    assert report.status == "passed", report.blocking_issues
    assert ("stale destructive waiver for aws_s3_bucket.assets (approved by platform-lead): the plan only does "
            "update to it; remove it from infrastructure.destructive_waivers") in report.findings
    gate = next(e for e in item(report, "check").evidence if e.source.startswith("plan_command destructive"))
    assert gate.data["stale_waivers"] == [f for f in report.findings if f.startswith("stale destructive waiver")]


def test_plan_without_changes_applies_and_makes_waivers_stale(tmp_path: Path, stub_target: StubTarget) -> None:
    ctx = plan_ctx(tmp_path, stub_target, "terraform-plan-no-changes.json", [SG_WAIVER])

    report = run_step(ctx, "provisioning")

    assert report.status == "passed", report.blocking_issues
    assert item(report, "verify").detail == "plan command exited 0; 0 resource change(s)"
    assert any(f.startswith("stale destructive waiver for aws_security_group.legacy_ssh") for f in report.findings)


@pytest.mark.parametrize(("plan", "expected"), [
    pytest.param("terraform-state.json", "plan command output: this is Terraform state, not a plan: run "
                 "`terraform plan -out=tfplan` then `terraform show -json tfplan`", id="state_instead_of_plan"),
    pytest.param({**json.loads((FIXTURES / "terraform-plan.json").read_text()), "format_version": "2.0"},
                 "plan command output: format_version 2.0 is not supported (majors 0, 1): a new major changes the "
                 "format incompatibly; use a Terraform whose `show -json` writes 1.x", id="unknown_format_major"),
    pytest.param({"format_version": "1.2", "resource_changes": [
        {"address": "aws_db_instance.main", "change": {"actions": ["destroy"]}}]},
                 "plan command output: resource_changes[0] (aws_db_instance.main) has actions ['destroy'], which is "
                 "not Terraform's vocabulary", id="action_not_in_vocabulary"),
])
def test_plan_that_is_not_terraform_plan_json_fails_verify_and_applies_nothing(
        tmp_path: Path, stub_target: StubTarget, plan: str | dict, expected: str) -> None:
    ctx = plan_ctx(tmp_path, stub_target, plan)

    report = run_step(ctx, "provisioning")

    verify = item(report, "verify")
    assert not verify.passed and verify.detail.startswith(expected)
    check = item(report, "check")
    assert not check.passed and check.detail == "not applied: the plan_command's plan was not accepted (see verify)"
    assert not (ctx.paths.workdir / "applied").exists()


def test_judge_destructive_changes_matches_exact_addresses() -> None:
    changes = [ResourceChange("module.db.aws_db_instance.main", ("create", "delete")),
               ResourceChange("aws_s3_bucket.logs", ("forget",)), ResourceChange("aws_iam_role.app", ("no-op",))]
    waivers = [DestructiveWaiver(address="aws_iam_role.app", reason="role rotated by IAM team", approved_by="sec")]

    decisions, stale = judge_destructive_changes(changes, waivers)

    assert [(d.address, d.status) for d in decisions] == [("module.db.aws_db_instance.main", "blocked")]
    assert stale == ["stale destructive waiver for aws_iam_role.app (approved by sec): the plan does not touch it; "
                     "remove it from infrastructure.destructive_waivers"]


@pytest.mark.parametrize(("infrastructure", "field", "message"), [
    pytest.param({"destructive_waivers": [SG_WAIVER]}, "infrastructure.destructive_waivers",
                 "a waiver applies to the Terraform plan plan_command prints; set plan_command", id="no_plan_command"),
    pytest.param({"plan_command": ["terraform", "show", "-json", "tfplan"],
                  "destructive_waivers": [SG_WAIVER, SG_WAIVER]},
                 "infrastructure.destructive_waivers.1.address",
                 "a second waiver for aws_security_group.legacy_ssh; keep one per address", id="duplicate_address"),
    pytest.param({"plan_command": ["terraform", "show", "-json", "tfplan"],
                  "destructive_waivers": [{**SG_WAIVER, "reason": "old"}]},
                 "infrastructure.destructive_waivers.0.reason", "at least 10 characters", id="reason_too_short"),
    pytest.param({"plan_command": ["terraform", "show", "-json", "tfplan"],
                  "destructive_waivers": [{"address": "aws_security_group.legacy_ssh", "reason": "bastion retired"}]},
                 "infrastructure.destructive_waivers.0.approved_by", "required field is missing",
                 id="approved_by_missing"),
])
def test_spec_refuses_destructive_waivers_that_cannot_work(tmp_path: Path, infrastructure: dict, field: str,
                                                           message: str) -> None:
    with pytest.raises(SpecError) as info:
        make_spec(tmp_path / "spec", {"infrastructure": infrastructure})
    [problem] = info.value.problems
    assert problem.field == field and message in problem.message


# =================================================================================== hardening
def staged_ctx(tmp_path: Path, target: StubTarget, overrides: dict[str, object] | None = None):
    """A context whose provisioning report points at a slot staged on ``target``."""
    ctx = make_ctx(tmp_path, target, overrides)
    slot = target.stage(ctx.version, ctx.run_id)
    save_report(ctx, "provisioning", {"staged": slot.as_dict()})
    return ctx


def test_hardening_passes_on_the_demo_config(tmp_path: Path, stub_target: StubTarget) -> None:
    report = run_step(staged_ctx(tmp_path, stub_target), "hardening")
    assert report.status == "passed", report.blocking_issues
    assert report.metrics["compliance_pct"] == 100.0
    assert set(report.facts["controls"]) == {"no_plaintext_secrets", "config_permissions", "security_headers"}
    read = item(report, "read")
    assert read.evidence[-1].data["required_controls"] == ["no_plaintext_secrets", "config_permissions",
                                                           "security_headers"]
    http = [e for e in item(report, "check").evidence if e.kind == "http"]
    assert http and http[0].source.endswith("/healthz") and http[0].data["headers"]["x-frame-options"] == "DENY"


@pytest.mark.item("hardening.verify")
def test_hardening_verify_fails_on_a_secret_in_a_config_file(tmp_path: Path, stub_target: StubTarget) -> None:
    ctx = staged_ctx(tmp_path, stub_target)
    env = ctx.spec.spec_dir / "demo" / "service.env"
    env.write_text(env.read_text(encoding="utf-8") + "DEMO_DB_PASSWORD=correct-horse-battery\n", encoding="utf-8")
    report = run_step(ctx, "hardening")
    assert_item_fails(report, "hardening.verify", because="plaintext secret(s) at service.env:6")
    verify = item(report, "verify")
    assert verify.detail == ("no_plaintext_secrets: plaintext secret(s) at service.env:6 "
                             "(assignment to DEMO_DB_PASSWORD)")
    check = item(report, "check")
    assert not check.passed and check.detail.startswith("compliance 66.7 % < security.min_compliance_pct=100 %")
    assert report.metrics["compliance_pct"] == 66.7
    assert "correct-horse-battery" not in json.dumps(report.model_dump(mode="json"))


def _build_and_back_up(ctx) -> Path:
    """Phase 3's build and phase 1's backup of this run, made from clean config files."""
    build = run_step(ctx, "build")
    assert build.status == "passed", build.blocking_issues
    backup = ctx.paths.workdir / "backup" / "demo-config.tar.gz"
    demo_backup.backup(ctx.spec.spec_dir / "demo", backup)
    save_report(ctx, "risk_assessment", {"backup": {"path": str(backup)}})
    return backup


def test_hardening_purges_this_runs_backup_and_artifacts_on_a_secret(tmp_path: Path,
                                                                       stub_target: StubTarget) -> None:
    ctx = staged_ctx(tmp_path, stub_target)
    backup = _build_and_back_up(ctx)
    artifacts = sorted(ctx.paths.artifacts_dir.iterdir())
    assert [p.name for p in artifacts] == ["demo-1.1.0.tar.gz", "manifest.json"]
    env = ctx.spec.spec_dir / "demo" / "service.env"
    env.write_text(env.read_text(encoding="utf-8") + "DB_PASS=hunter2-very-secret\n", encoding="utf-8")

    report = run_step(ctx, "hardening")

    verify = item(report, "verify")
    assert not verify.passed
    assert verify.detail == ("no_plaintext_secrets: plaintext secret(s) at service.env:6 (assignment to DB_PASS); "
                             "removed this run's backup and build artifacts made from them: demo-config.tar.gz, "
                             "demo-1.1.0.tar.gz, manifest.json")
    assert not backup.exists() and list(ctx.paths.artifacts_dir.iterdir()) == []
    removed = [e for e in verify.evidence if e.data.get("removed")]
    assert [e.source for e in removed] == [str(backup), *(str(p) for p in artifacts)]
    assert all(e.sha256 and e.data["reason"] == "built in this run while config file(s) held plaintext secret(s) "
               "at service.env:6 (assignment to DB_PASS)" for e in removed)
    assert report.facts["purged_outputs"] == [str(backup), *(str(p) for p in artifacts)]
    assert "hunter2" not in json.dumps(report.model_dump(mode="json"))


def test_hardening_purge_leaves_files_outside_the_workdir_and_says_so(tmp_path: Path,
                                                                      stub_target: StubTarget) -> None:
    ctx = staged_ctx(tmp_path, stub_target)
    elsewhere = tmp_path / "shared" / "demo-config.tar.gz"
    demo_backup.backup(ctx.spec.spec_dir / "demo", elsewhere)
    save_report(ctx, "risk_assessment", {"backup": {"path": str(elsewhere)}})
    env = ctx.spec.spec_dir / "demo" / "service.env"
    env.write_text(env.read_text(encoding="utf-8") + "PASSPHRASE='correct horse battery staple'\n", encoding="utf-8")

    report = run_step(ctx, "hardening")

    assert elsewhere.exists()
    expected = f"{elsewhere} is outside the run's workdir {ctx.paths.workdir}: remove it by hand"
    assert f"secret purge: {expected}" in report.findings
    assert item(report, "verify").detail.endswith(f"NOT removed: {expected}")
    assert report.facts["purged_outputs"] == []


def test_hardening_without_secrets_removes_nothing(tmp_path: Path, stub_target: StubTarget) -> None:
    ctx = staged_ctx(tmp_path, stub_target)
    backup = _build_and_back_up(ctx)
    report = run_step(ctx, "hardening")
    assert report.status == "passed", report.blocking_issues
    assert backup.exists() and len(list(ctx.paths.artifacts_dir.iterdir())) == 2
    assert "purged_outputs" not in report.facts


@pytest.mark.item("hardening.check")
def test_hardening_check_fails_on_a_missing_header(tmp_path: Path, stub_target: StubTarget) -> None:
    stub_target.staged_headers = {"X-Content-Type-Options": "nosniff"}
    report = run_step(staged_ctx(tmp_path, stub_target), "hardening")
    assert_item_fails(report, "hardening.check", because="lacks header(s) X-Frame-Options")
    check = item(report, "check")
    assert "security_headers: http://127.0.0.1:" in check.detail
    assert "/healthz lacks header(s) X-Frame-Options" in check.detail
    assert report.facts["controls"]["security_headers"]["passed"] is False
    assert item(report, "verify").passed


@pytest.mark.item("hardening.read")
def test_hardening_read_fails_on_a_thin_security_document(tmp_path: Path, stub_target: StubTarget) -> None:
    ctx = staged_ctx(tmp_path, stub_target)
    (ctx.spec.spec_dir / "demo" / "security.md").write_text("x", encoding="utf-8")
    report = run_step(ctx, "hardening")
    assert_item_fails(report, "hardening.read", because="security.docs: security.md: 1 bytes")
    assert item(report, "verify").passed and item(report, "check").passed  # the controls themselves held


def test_hardening_read_fails_on_a_malformed_env_line(tmp_path: Path, stub_target: StubTarget) -> None:
    ctx = staged_ctx(tmp_path, stub_target)
    env = ctx.spec.spec_dir / "demo" / "service.env"
    env.write_text(env.read_text(encoding="utf-8") + "DEMO_ITEMS 5\n", encoding="utf-8")
    read = item(run_step(ctx, "hardening"), "read")
    assert not read.passed and read.detail == "security.config_files service.env:6 is not a KEY=VALUE line"


def test_hardening_headers_are_read_only_from_the_slot_the_target_stages(tmp_path: Path,
                                                                        stub_target: StubTarget) -> None:
    ctx = staged_ctx(tmp_path, stub_target)
    elsewhere = StubService("1.1.0")  # an old URL handed on: it answers with every header, but is not staged
    try:
        save_report(ctx, "provisioning", {"staged": {"slot": "blue", "version": "1.1.0", "url": elsewhere.url}})
        check = item(run_step(ctx, "hardening"), "check")
    finally:
        elsewhere.stop()
    assert not check.passed
    assert f"security_headers: provisioning handed on the staged slot {elsewhere.url}, but the stub target stages " \
           "blue 1.1.0" in check.detail


def test_hardening_fails_on_group_writable_config(tmp_path: Path, stub_target: StubTarget) -> None:
    ctx = staged_ctx(tmp_path, stub_target)
    (ctx.spec.spec_dir / "demo" / "build.toml").chmod(0o664)
    check = item(run_step(ctx, "hardening"), "check")
    assert not check.passed and "config_permissions: build.toml mode 0o664 is writable by group" in check.detail


def test_hardening_tls_required_without_https_fails(tmp_path: Path, stub_target: StubTarget) -> None:
    overrides = {"security": {"required_controls": ["no_plaintext_secrets", "config_permissions",
                                                    "security_headers", "tls_certificate"]}}
    report = run_step(staged_ctx(tmp_path, stub_target, overrides), "hardening")
    verify = item(report, "verify")
    assert not verify.passed
    assert verify.detail == "tls_certificate: no https endpoint to check (the target serves plain http)"
    assert report.metrics["compliance_pct"] == 75.0 and not item(report, "check").passed


def test_hardening_without_staged_slot_fails_headers(tmp_path: Path, stub_target: StubTarget) -> None:
    check = item(run_step(make_ctx(tmp_path, stub_target), "hardening"), "check")
    assert not check.passed
    assert "security_headers: no staged slot URL: the provisioning report has no facts.staged.url" in check.detail


COMPLIANCE_WAIVER = {"gate": "min_compliance_pct", "reason": "headers come from the CDN, tracked in SEC-9",
                     "approved_by": "security-lead"}


def test_hardening_lower_compliance_minimum(tmp_path: Path, stub_target: StubTarget) -> None:
    stub_target.staged_headers = {}
    overrides = {"security": {"min_compliance_pct": 60}, "quality_gates": {"waivers": [COMPLIANCE_WAIVER]}}
    report = run_step(staged_ctx(tmp_path, stub_target, overrides), "hardening")
    check = item(report, "check")
    assert check.passed and check.detail.startswith("compliance 66.7 % >= 60 %; failed: security_headers")
    assert check.detail.endswith("; leans on waiver(s): min_compliance_pct")
    assert any(f.startswith("control failed: security_headers") for f in report.findings)
    assert report.facts["full_baseline"] is False
    assert report.facts["baseline_waivers"] == [{
        "gate": "min_compliance_pct", "field": "security.min_compliance_pct",
        "problem": "security.min_compliance_pct=60 is below the package default 100",
        "reason": "headers come from the CDN, tracked in SEC-9", "approved_by": "security-lead"}]


def test_hardening_lower_compliance_minimum_needs_a_waiver(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        make_spec(tmp_path / "spec", {"security": {"min_compliance_pct": 60}})
    [problem] = info.value.problems
    assert problem.field == "security.min_compliance_pct"
    assert "add a waiver to quality_gates.waivers with gate: min_compliance_pct" in problem.message


def test_hardening_at_full_compliance_leans_on_no_waiver(tmp_path: Path, stub_target: StubTarget) -> None:
    # the minimum is waived, but every control passed: the full baseline was met
    overrides = {"security": {"min_compliance_pct": 60}, "quality_gates": {"waivers": [COMPLIANCE_WAIVER]}}
    report = run_step(staged_ctx(tmp_path, stub_target, overrides), "hardening")
    assert report.status == "passed" and report.metrics["compliance_pct"] == 100.0
    assert report.facts["baseline_waivers"] == [] and report.facts["full_baseline"] is True


def test_hardening_without_a_default_header_leans_on_its_waiver(tmp_path: Path, stub_target: StubTarget) -> None:
    stub_target.staged_headers = {"X-Content-Type-Options": "nosniff"}
    waiver = {"gate": "required_headers", "reason": "framing is set by the proxy, tracked in SEC-12",
              "approved_by": "security-lead"}
    overrides = {"security": {"required_headers": ["X-Content-Type-Options"]},
                 "quality_gates": {"waivers": [waiver]}}
    report = run_step(staged_ctx(tmp_path, stub_target, overrides), "hardening")
    assert report.status == "passed", report.blocking_issues
    assert [r["gate"] for r in report.facts["baseline_waivers"]] == ["required_headers"]
    assert report.facts["full_baseline"] is False


def test_hardening_missing_config_file(tmp_path: Path, stub_target: StubTarget) -> None:
    ctx = staged_ctx(tmp_path, stub_target, {"security": {"config_files": ["demo/service.env", "demo/app.yaml"]}})
    report = run_step(ctx, "hardening")
    missing = ctx.spec.spec_dir / "demo" / "app.yaml"
    assert item(report, "read").detail == f"security.config_files {missing} does not exist"
    assert not item(report, "verify").passed and not item(report, "check").passed
    assert stat.S_IMODE((ctx.spec.spec_dir / "demo" / "service.env").stat().st_mode) == 0o644


# ============================================================================== real local target
def test_provisioning_and_hardening_with_the_local_target(tmp_path: Path) -> None:
    local = pytest.importorskip("gendev_release.targets.local")
    ctx = make_ctx(tmp_path)
    target = local.LocalTarget(ctx.spec.target, ctx.spec.service, ctx.paths.home)
    ctx.target = target
    try:
        provisioning = run_step(ctx, "provisioning")
        assert provisioning.status == "passed", provisioning.blocking_issues
        assert provisioning.facts["staged"]["version"] == "1.1.0"
        assert (ctx.paths.workdir / "infra" / "local-target.json").is_file()
        hardening = run_step(ctx, "hardening")
        assert hardening.status == "passed", hardening.blocking_issues
        assert hardening.metrics["compliance_pct"] == 100.0
    finally:
        target.down()


def test_phase_4_delivers_every_catalogue_deliverable(tmp_path: Path, stub_target: StubTarget) -> None:
    ctx = make_ctx(tmp_path, stub_target)
    reports = []
    for step in PHASES[3].steps:  # as the operator does: run the duty, then save its report
        reports.append(run_duty(ctx, step.id))
        ctx.store.save(reports[-1])
    assert [r.status for r in reports] == ["passed", "passed"], [r.blocking_issues for r in reports]
    stored = {line["name"]: line for line in ctx.store.manifest() if line.get("current", True)}
    for name in PHASES[3].deliverables:
        assert name in stored, f"{name} not delivered: {sorted(stored)}"
        assert stored[name]["step"] in ("provisioning", "hardening") and stored[name]["size"] > 0
    compliance = json.loads(ctx.store.read(stored["Compliance validation"]["stored"]))
    assert compliance["compliance_pct"] == 100.0 and compliance["failed"] == [] and compliance["full_baseline"]
    hardening = json.loads(ctx.store.read(stored["Security hardening"]["stored"]))
    observed = hardening["controls"]["security_headers"]["observed"]
    assert [o["kind"] for o in observed] == ["target", "http"] and observed[1]["headers"]["x-frame-options"] == "DENY"
    configuration = json.loads(ctx.store.read(stored["Configuration management"]["stored"]))
    assert configuration["target_state"]["staged"]["version"] == "1.1.0"
    assert [Path(f["path"]).name for f in configuration["config_files"]] == ["service.env", "build.toml"]
