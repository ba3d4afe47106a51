"""Agent reports (no item passes without evidence, every failure listed) and the release checklist
(ticked only on evidence from this run; waived lines never ticked; every other line says why)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from gendev_release.catalogue import DEPLOYMENT_CHECKLIST, step_by_id
from gendev_release.context import DutyContext, RunPaths
from gendev_release.release_checklist import CHECKLIST_RULES, CRITERIA_RULES, RunFacts, derive
from gendev_release.release_report import _line, build_release_report, render_markdown
from gendev_release.report import AgentReport, Evidence, ReportBuilder, Verification, sha256_file
from gendev_release.run_record import HistoryEntry, ReleaseHistory
from gendev_release.spec import ReleaseSpec, parse_spec, run_params

PHASE, STEP = step_by_id("build")


def builder() -> ReportBuilder:
    return ReportBuilder(PHASE, STEP, service="demo", version="1.0.0", run_id="run-1")


def computed(source: str = "observation") -> Evidence:
    return Evidence(kind="computed", source=source, summary="observed")


def by_id(report: AgentReport) -> dict[str, Verification]:
    return {v.item_id: v for v in report.verifications}


def all_good() -> ReportBuilder:
    rb = builder()
    for kind in ("read", "verify", "check"):
        rb.evidence(kind, computed(kind))
        assert rb.verdict(kind, True, f"{kind} ok") is True
    return rb


# -------------------------------------------------------------------------------- Verification
def test_verification_cannot_pass_without_evidence() -> None:
    with pytest.raises(ValidationError, match="build.read: an item cannot pass without evidence"):
        Verification(item_id="build.read", kind="read", text="t", passed=True, detail="d", evidence=[])


def test_verification_may_fail_without_evidence() -> None:
    v = Verification(item_id="build.read", kind="read", text="t", passed=False, detail="d")
    assert v.passed is False and v.evidence == []


def test_verification_passes_with_evidence() -> None:
    v = Verification(item_id="build.read", kind="read", text="t", passed=True, detail="d", evidence=[computed()])
    assert v.passed is True


def test_evidence_refuses_unknown_fields_and_kinds() -> None:
    with pytest.raises(ValidationError):
        Evidence(kind="computed", source="x", bogus=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        Evidence(kind="rumour", source="x")  # type: ignore[arg-type]


def test_file_evidence_digests_the_file(tmp_path: Path) -> None:
    path = tmp_path / "artifact.txt"
    path.write_bytes(b"hello")
    evidence = Evidence.file(path)
    assert evidence.kind == "file"
    assert evidence.sha256 == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert evidence.sha256 == sha256_file(path)
    assert evidence.data["bytes"] == 5
    assert evidence.summary == "artifact.txt: 5 bytes"
    with pytest.raises(FileNotFoundError):
        Evidence.file(tmp_path / "missing")


# ------------------------------------------------------------------------------- ReportBuilder
def test_all_items_pass_with_evidence() -> None:
    report = all_good().finish()
    assert report.status == "passed"
    assert report.gate_failures() == []
    assert report.blocking_issues == []
    assert [v.item_id for v in report.verifications] == ["build.read", "build.verify", "build.check", "build.report"]
    assert all(v.passed for v in report.verifications)
    assert [v.text for v in report.verifications] == list(STEP.items)
    assert (report.agent, report.duty, report.step_id, report.phase_id) == (
        "cicd-builder", "build", "build", "p3_build")
    assert (report.service, report.version, report.run_id) == ("demo", "1.0.0", "run-1")
    assert by_id(report)["build.report"].detail == "ready"
    assert report.started_at <= report.finished_at


def test_pass_without_evidence_becomes_a_failure() -> None:
    rb = all_good()
    rb._evidence["check"].clear()  # as if the check item never gathered anything
    assert rb.verdict("check", True, "looks fine") is False
    assert rb.passed("check") is False
    report = rb.finish()
    check = by_id(report)["build.check"]
    assert check.passed is False
    assert check.detail == "no evidence gathered: looks fine"
    assert report.status == "failed"
    assert "build.check: no evidence gathered: looks fine" in report.blocking_issues


def test_fresh_builder_pass_without_evidence_is_refused() -> None:
    rb = builder()
    assert rb.verdict("read", True, "trust me") is False
    report = rb.finish()
    assert by_id(report)["build.read"].detail == "no evidence gathered: trust me"
    assert "build.read: no evidence gathered (no evidence gathered: trust me)" in report.gate_failures()


def test_items_without_verdict_fail() -> None:
    rb = builder()
    rb.evidence("read", computed())
    rb.verdict("read", True, "read ok")
    report = rb.finish()
    items = by_id(report)
    assert items["build.read"].passed is True
    for kind in ("verify", "check"):
        assert items[f"build.{kind}"].passed is False
        assert items[f"build.{kind}"].detail == "no verdict was reached"
    assert report.status == "failed"
    assert report.blocking_issues == ["build.verify: no verdict was reached", "build.check: no verdict was reached"]


def test_finish_lists_every_failed_item_as_blocker() -> None:
    rb = builder()
    rb.evidence("read", computed())
    rb.fail("read", "runbook missing")
    rb.evidence("verify", computed())
    rb.verdict("verify", True, "configured")
    rb.evidence("check", computed())
    rb.verdict("check", False, "artifact unversioned")
    report = rb.finish()
    assert report.status == "failed"
    assert report.blocking_issues == ["build.read: runbook missing", "build.check: artifact unversioned"]
    report_item = by_id(report)["build.report"]
    # The report item itself is complete and honest: every failure is listed, so it passes.
    assert report_item.passed is True
    assert report_item.detail == "2 blocking issue(s) listed"
    summary = report_item.evidence[-1]
    assert summary.kind == "computed"
    assert summary.data["items"] == {"read": False, "verify": True, "check": False}
    assert summary.data["blocking_issues"] == report.blocking_issues
    assert report.gate_failures() == [
        "build.read: runbook missing",
        "build.check: artifact unversioned",
        "blocker: build.read: runbook missing",
        "blocker: build.check: artifact unversioned",
    ]


def test_failed_item_without_evidence_is_named_as_such() -> None:
    rb = all_good()
    rb._evidence["verify"].clear()
    rb.fail("verify", "pipeline not configured")
    report = rb.finish()
    assert "build.verify: no evidence gathered (pipeline not configured)" in report.gate_failures()


def test_blocker_alone_fails_the_gate() -> None:
    rb = all_good()
    rb.block("artifact repository unreachable")
    rb.block("artifact repository unreachable")  # listed once
    report = rb.finish()
    assert all(v.passed for v in report.verifications)
    assert report.status == "failed"
    assert report.blocking_issues == ["artifact repository unreachable"]
    assert report.gate_failures() == ["blocker: artifact repository unreachable"]


def test_explicit_report_failure_fails() -> None:
    rb = all_good()
    rb.evidence("report", computed())
    rb.verdict("report", False, "report incomplete")
    report = rb.finish()
    assert by_id(report)["build.report"].passed is False
    assert by_id(report)["build.report"].detail == "report incomplete"  # not "ready"
    assert report.status == "failed"
    assert report.gate_failures() == ["build.report: report incomplete"]


def test_status_detail_overrides_report_detail() -> None:
    report = all_good().finish("artifacts ready: 2")
    assert by_id(report)["build.report"].detail == "artifacts ready: 2"


def test_deliverables_are_digested(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text("{}")
    rb = all_good()
    deliverable = rb.deliver("manifest", path)
    report = rb.finish()
    assert report.deliverables == [deliverable]
    assert deliverable.sha256 == sha256_file(path)
    assert by_id(report)["build.report"].evidence[-1].data["deliverables"] == ["manifest"]


# --------------------------------------------------------------------------- AgentReport gate
def _report(verifications: list[Verification], blockers: list[str] | None = None) -> AgentReport:
    now = all_good().started_at
    return AgentReport(agent="cicd-builder", duty="build", step_id="build", phase_id="p3_build", service="demo",
                       version="1.0.0", run_id="r", status="passed", verifications=verifications,
                       blocking_issues=blockers or [], started_at=now, finished_at=now)


def _v(kind: str, passed: bool, evidence: bool = True, detail: str = "d") -> Verification:
    return Verification(item_id=f"build.{kind}", kind=kind, text="t", passed=passed, detail=detail,
                        evidence=[computed()] if evidence else [])


def test_gate_names_missing_items() -> None:
    # A report that claims "passed" but lacks items is still caught by the gate.
    report = _report([_v("read", True), _v("report", True)])
    assert report.gate_failures() == ["build.verify: no verification recorded", "build.check: no verification recorded"]


def test_gate_names_failed_item_ids() -> None:
    report = _report([_v("read", True), _v("verify", False, detail="not functional"),
                      _v("check", False, evidence=False, detail="no scan"), _v("report", True)],
                     blockers=["scan missing"])
    assert report.gate_failures() == [
        "build.verify: not functional",
        "build.check: no evidence gathered (no scan)",
        "blocker: scan missing",
    ]


def test_gate_holds_for_a_complete_report() -> None:
    assert _report([_v(k, True) for k in ("read", "verify", "check", "report")]).gate_failures() == []


def test_report_round_trips_as_json() -> None:
    report = all_good().finish()
    again = AgentReport.model_validate_json(report.model_dump_json())
    assert again == report
    assert again.gate_failures() == []


# =========================================================================== release checklist
# A run whose every step recorded what the builtin duties record; each test breaks one thing a
# realistic run can get wrong and asserts the line's state and why.
DEMO = Path(__file__).resolve().parents[1] / "dags" / "releases" / "demo.yaml"
PREVIOUS = {"slot": "blue", "version": "1.0.0", "url": "http://127.0.0.1:9001"}
ENDPOINTS = ("/healthz", "/version", "/api/items")


def demo_spec(**changes: Any) -> ReleaseSpec:
    """The demo spec with top-level sections replaced (``quality_gates={...}``)."""
    data = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    for key, value in changes.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_spec(data, str(DEMO), DEMO)


def step_report(step_id: str, *, facts: dict[str, Any] | None = None, metrics: dict[str, float] | None = None,
                 evidence: dict[str, list[Evidence]] | None = None,
                 failed: dict[str, str] | None = None) -> AgentReport:
    phase, step = step_by_id(step_id)
    rb = ReportBuilder(phase, step, service="demo", version="1.1.0", run_id="run-1")
    for kind in ("read", "verify", "check"):
        for item in (evidence or {}).get(kind) or [computed(f"{step_id}.{kind}")]:
            rb.evidence(kind, item)
        rb.verdict(kind, kind not in (failed or {}), (failed or {}).get(kind, f"{kind} ok"))
    rb.facts.update(facts or {})
    rb.metrics.update(metrics or {})
    return rb.finish()


def delivered(path: Path) -> Evidence:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"event": "release_starting"}\n', encoding="utf-8")
    return Evidence(kind="file", source=str(path), sha256=sha256_file(path), summary="delivered",
                    data={"delivered": True, "channel_path": "notifications/demo.jsonl"})


def scan_read(packages: dict[str, str], scan_format: str = "pip-audit") -> Evidence:
    return Evidence(kind="computed", source="pip-audit.json", summary="scan",
                    data={"format": scan_format, "packages": packages, "vulnerabilities": []})


def observation(failed: dict[str, int] | None = None, observed: int = 6) -> dict[str, Any]:
    by_path = {path: {"observed": observed, "failed": (failed or {}).get(path, 0)} for path in ENDPOINTS}
    return {"router": "http://127.0.0.1:9000", "paths": list(ENDPOINTS),
            "counted_phases": ["before", "during", "after"], "requests": observed * len(ENDPOINTS),
            "failed": sum((failed or {}).values()), "by_path": by_path, "first_release": False}


def rehearsal(**changes: Any) -> dict[str, Any]:
    return {"expected": PREVIOUS, "previous": PREVIOUS, "problems": [], "rehearsed": True, "health_ok": True,
            "target_confirms": True,
            "health": [{"name": "healthz", "passed": True}, {"name": "version", "passed": True}], **changes}


def good_reports(tmp_path: Path) -> dict[str, AgentReport]:
    backup = tmp_path / "backup" / "demo-config.tar.gz"
    artifact = tmp_path / "artifacts" / "demo-1.1.0.tar.gz"
    for path, body in ((backup, b"backup"), (artifact, b"artifact")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    backup_file = Evidence.file(backup)
    reports = {
        "readiness": step_report("readiness", facts={"active_version": "1.0.0", "first_deployment": False}),
        "risk_assessment": step_report("risk_assessment", evidence={"check": [backup_file]}, facts={
            "risk_level": "low", "risk_score": 1, "commits": [{"sha": "a"}, {"sha": "b"}],
            "backup": {"path": str(backup), "sha256": backup_file.sha256, "bytes": 6}}),
        "release_plan": step_report("release_plan"),
        "notifications": step_report("notifications", evidence={
            "verify": [delivered(tmp_path / "home" / "notifications" / "demo.jsonl")]}),
        "build": step_report("build", facts={"artifacts": [{"name": artifact.name, "path": str(artifact),
                                                            "sha256": sha256_file(artifact), "bytes": 8}]}),
        "dependencies": step_report("dependencies", evidence={"read": [scan_read({"httpx": "0.28.1"})]},
                                    facts={"scan_coverage": {"missing": [], "version_mismatch": []}},
                                    metrics={"critical_vulns": 0, "pinned": 1, "hashed": 1}),
        "provisioning": step_report("provisioning", facts={"staged": {"slot": "green", "version": "1.1.0"}}),
        "hardening": step_report("hardening", facts={
            "compliance_pct": 100.0, "controls": {"no_plaintext_secrets": {}, "config_permissions": {},
                                                  "security_headers": {}},
            "baseline_waivers": [], "full_baseline": True}, metrics={"compliance_pct": 100.0}),
        "execute_strategy": step_report("execute_strategy", facts={
            "traffic_moved": True, "active": {"slot": "green", "version": "1.1.0"}, "active_before": PREVIOUS,
            "switch_observation": observation(), "rollback_rehearsal": rehearsal()},
            metrics={"health_pass_pct": 100.0, "failed_switch_requests": 0}),
        "monitoring_alerts": step_report("monitoring_alerts", metrics={"alert_rules": 2}),
        "smoke_tests": step_report("smoke_tests", metrics={"smoke_tests": 3, "smoke_failures": 0}),
        "qa": step_report("qa", metrics={"qa_tests": 20, "qa_passed": 20}),
        "observability": step_report("observability", metrics={"samples": 6}),
        "performance": step_report("performance", metrics={"p95_ms": 12.0, "error_rate_pct": 0.0,
                                                           "p95_ratio": 1.1}),
        "release_notes": step_report("release_notes", metrics={"commits": 2}),
        "training": step_report("training", metrics={"features": 1, "kb_entries": 1}),
    }
    assert [r.status for r in reports.values()] == ["passed"] * 16
    return reports


def judge(reports: dict[str, AgentReport], spec: ReleaseSpec | None = None, record: dict[str, Any] | None = None,
          verified_before: tuple[str, ...] = ("1.0.0",)) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    facts = RunFacts(reports=reports, spec=spec or demo_spec(), version="1.1.0",
                     record=record if record is not None else {"previous_version": "1.0.0"},
                     verified_before=verified_before)
    checklist, criteria = derive(facts)
    return {row["item"]: row for row in checklist}, {row["criterion"]: row for row in criteria}


def with_facts(report: AgentReport, **facts: Any) -> AgentReport:
    return report.model_copy(update={"facts": {**report.facts, **facts}})


def with_metrics(report: AgentReport, **metrics: float) -> AgentReport:
    return report.model_copy(update={"metrics": {**report.metrics, **metrics}})


def test_a_clean_run_ticks_every_line_and_criterion(tmp_path: Path) -> None:
    checklist, criteria = judge(good_reports(tmp_path))
    assert list(checklist) == list(DEPLOYMENT_CHECKLIST)
    assert {name: row["state"] for name, row in checklist.items() if row["state"] != "done"} == {}
    assert all(row["done"] and row["why"] is None and row["waived"] is None for row in checklist.values())
    assert {name: row["why"] for name, row in criteria.items() if not row["met"]} == {}
    assert checklist["Rollback tested"]["detail"].startswith("rehearsed: previous slot blue (1.0.0) answered 2")
    assert criteria["Zero-downtime deployment"]["detail"] == (
        "0 of 18 requests to all 3 critical endpoints failed around the switch")


def test_backup_waiver_shows_waived_never_done(tmp_path: Path) -> None:
    reports = good_reports(tmp_path)
    reports["risk_assessment"] = with_facts(reports["risk_assessment"],
                                            backup={"waived": "stateless service: nothing to back up"})
    spec = demo_spec(risk={"backup": {"waiver": "stateless service: nothing to back up", "approved_by": "ops-lead"}})
    checklist, _ = judge(reports, spec)
    backup = checklist["Backup created"]
    assert (backup["state"], backup["done"], backup["why"]) == ("waived", False, None)
    assert backup["waived"] == [{"gate": "backup", "reason": "stateless service: nothing to back up",
                                 "approved_by": "ops-lead"}]
    line = _line("Backup created", backup)
    assert line.startswith("- [ ] Backup created: waived (stateless service: nothing to back up, ops-lead)")


def test_backup_removed_after_it_was_verified_is_not_created(tmp_path: Path) -> None:
    reports = good_reports(tmp_path)
    backup = reports["risk_assessment"].facts["backup"]["path"]
    reports["hardening"] = with_facts(reports["hardening"], purged_outputs=[backup])
    checklist, _ = judge(reports)
    assert checklist["Backup created"]["why"] == ("backup demo-config.tar.gz was removed by hardening: a config file "
                                                 "it was made from held a plaintext secret")
    Path(backup).write_bytes(b"tampered")
    reports["hardening"] = with_facts(reports["hardening"], purged_outputs=[])
    assert judge(reports)[0]["Backup created"]["why"] == (
        "backup demo-config.tar.gz changed since it was recorded (sha256 differs)")


def test_empty_scan_report_is_not_a_passed_security_scan(tmp_path: Path) -> None:
    reports = good_reports(tmp_path)
    # pip-audit's {"dependencies": []}: no package, no finding, and the check item passed (0 critical)
    reports["dependencies"] = step_report("dependencies", evidence={"read": [scan_read({})]},
                                          metrics={"critical_vulns": 0})
    checklist, criteria = judge(reports)
    assert checklist["Security scan passed"]["why"] == (
        "the pip-audit report covers no package: an empty scan is not a pass")
    assert not criteria["Security verified"]["met"]
    assert checklist["Success metrics met"]["why"] == "criteria not met: Security verified"


def test_scan_missing_a_locked_package_is_not_a_passed_security_scan(tmp_path: Path) -> None:
    reports = good_reports(tmp_path)
    reports["dependencies"] = with_facts(reports["dependencies"], scan_coverage={"missing": ["idna"],
                                                                                 "version_mismatch": []})
    assert judge(reports)[0]["Security scan passed"]["why"] == "the scan does not cover the locked idna"


def test_stakeholders_notified_needs_a_delivery_from_a_channel(tmp_path: Path) -> None:
    reports = good_reports(tmp_path)
    # the item passed on the communication plan alone (e.g. an agent's claim): no channel delivered anything
    reports["notifications"] = step_report("notifications", evidence={"verify": [Evidence.file(DEMO)]})
    assert judge(reports)[0]["Stakeholders notified"]["why"] == (
        "no channel recorded a delivery (a message read back from the channel, with its digest)")


def test_one_failing_endpoint_during_the_switch_is_not_zero_downtime(tmp_path: Path) -> None:
    reports = good_reports(tmp_path)
    reports["execute_strategy"] = with_facts(reports["execute_strategy"],
                                             switch_observation=observation({"/api/items": 2}))
    _, criteria = judge(reports)
    assert criteria["Zero-downtime deployment"]["why"] == (
        "requests failed during the switch (no answer or 5xx): /api/items 2 of 6")
    unseen = observation()
    unseen["by_path"]["/version"]["observed"] = 0
    reports["execute_strategy"] = with_facts(reports["execute_strategy"], switch_observation=unseen)
    assert judge(reports)[1]["Zero-downtime deployment"]["why"] == (
        "critical endpoint(s) /version not observed during the switch")


def test_rollback_not_tested_when_the_previous_slot_failed_its_checks(tmp_path: Path) -> None:
    reports = good_reports(tmp_path)
    failed = rehearsal(rehearsed=False, health_ok=False,
                       problems=["previous slot blue healthz: /healthz answered 503, expected 200"])
    reports["execute_strategy"] = with_facts(reports["execute_strategy"], rollback_rehearsal=failed)
    row = judge(reports)[0]["Rollback tested"]
    assert (row["state"], row["why"]) == (
        "not_done", "rollback rehearsal failed: previous slot blue healthz: /healthz answered 503, expected 200")


def test_rollback_performed_in_this_run_counts_as_tested(tmp_path: Path) -> None:
    reports = good_reports(tmp_path)
    reports["execute_strategy"] = with_facts(reports["execute_strategy"], rollback_rehearsal=rehearsal(
        rehearsed=False, problems=["x"]))
    record = {"previous_version": "1.0.0", "outcome": "rolled_back", "rolled_back": True, "restored_healthy": True,
              "active_version": "1.0.0"}
    assert judge(reports, record=record)[0]["Rollback tested"]["detail"] == (
        "performed: this run rolled back to 1.0.0, which passed its health checks afterwards")
    record["restored_healthy"] = False
    assert judge(reports, record=record)[0]["Rollback tested"]["why"] == (
        "this run rolled back, but the restored version did not pass its health checks")


def test_first_release_note_is_computed_from_the_target_and_history(tmp_path: Path) -> None:
    reports = good_reports(tmp_path)
    reports["readiness"] = with_facts(reports["readiness"], active_version=None, first_deployment=True)
    reports["execute_strategy"] = with_facts(reports["execute_strategy"], active_before=None, rollback_rehearsal=(
        rehearsal(previous=None, expected=None, rehearsed=False, problems=["the target keeps no previous slot"])))
    row = judge(reports, record={"previous_version": None}, verified_before=())[0]["Rollback tested"]
    assert row["why"] == ("first release: no version was active on the target (execute_strategy before the switch, "
                          "readiness, the run's start saw none) and the release history holds no verified release: "
                          "nothing to roll back to")
    # the target is empty but the history knows a verified release: not a first release, and it says so
    row = judge(reports, record={"previous_version": None}, verified_before=("0.9.0",))[0]["Rollback tested"]
    assert row["why"].endswith("although the history's last verified release is 0.9.0: nothing to roll back to")


def test_relaxed_security_baseline_shows_configuration_waived(tmp_path: Path) -> None:
    reports = good_reports(tmp_path)
    reports["hardening"] = with_facts(reports["hardening"], compliance_pct=66.7, full_baseline=False,
                                      baseline_waivers=[{"gate": "min_compliance_pct", "reason": "CDN sets headers",
                                                         "approved_by": "security-lead"}])
    checklist, criteria = judge(reports)
    assert checklist["Configuration validated"]["state"] == "waived"
    assert criteria["Security verified"]["state"] == "waived" and not criteria["Security verified"]["met"]
    assert checklist["Success metrics met"]["state"] == "waived"


def test_qa_above_the_gate_but_not_all_passing_is_not_all_tests_passing(tmp_path: Path) -> None:
    reports = good_reports(tmp_path)
    reports["qa"] = with_metrics(reports["qa"], qa_tests=20, qa_passed=19)  # 95 %: the gate (>90 %) passed
    _, criteria = judge(reports)
    assert criteria["All tests passing"]["why"] == "qa: 19 of 20 tests passed; the criterion needs all"


def test_looser_sla_waived_and_used_shows_performance_waived(tmp_path: Path) -> None:
    reports = good_reports(tmp_path)
    reports["performance"] = with_metrics(reports["performance"], p95_ms=700.0)
    waiver = {"gate": "p95_latency_ms", "reason": "batch endpoint, tracked in PERF-3", "approved_by": "cto"}
    spec = demo_spec(quality_gates={"p95_latency_ms": 800, "waivers": [waiver]},
                     monitoring={"alert_rules": [{"name": "latency-p95", "metric": "demo_http_request_p95_seconds",
                                                  "op": ">", "protects": "p95_latency"}]})
    checklist, _ = judge(reports, spec)
    assert checklist["Performance validated"]["state"] == "waived"
    assert checklist["Performance validated"]["waived"][0]["approved_by"] == "cto"
    # within the package default after all: the waiver was not needed, the line is done
    reports["performance"] = with_metrics(reports["performance"], p95_ms=120.0)
    assert judge(reports, spec)[0]["Performance validated"]["state"] == "done"


def test_removed_artifact_is_not_ready(tmp_path: Path) -> None:
    reports = good_reports(tmp_path)
    Path(reports["build"].facts["artifacts"][0]["path"]).unlink()
    assert judge(reports)[0]["Build artifacts ready"]["why"].startswith("artifact(s) not as built: demo-1.1.0.tar.gz:")


def test_failed_step_says_why(tmp_path: Path) -> None:
    reports = good_reports(tmp_path)
    reports["training"] = step_report("training", failed={"verify": "feature feat(api) has no KB entry"})
    checklist, criteria = judge(reports)
    assert checklist["Team briefed"]["why"] == "training failed: training.verify: feature feat(api) has no KB entry"
    assert checklist["Success metrics met"]["why"] == ("criteria not met: Documentation complete; "
                                                      "step(s) not passed: training")


def test_checklist_rules_follow_the_seed() -> None:
    assert tuple(CHECKLIST_RULES) == DEPLOYMENT_CHECKLIST and len(CRITERIA_RULES) == 6


def test_markdown_ticks_only_done_lines(tmp_path: Path) -> None:
    reports = good_reports(tmp_path)
    reports["risk_assessment"] = with_facts(reports["risk_assessment"], backup={"waived": "stateless service here"})
    spec = demo_spec(risk={"backup": {"waiver": "stateless service here", "approved_by": "ops-lead"}})
    checklist, criteria = judge(reports, spec)
    text = render_markdown({"service": "demo", "version": "1.1.0", "run_id": "run-1", "outcome": "success",
                            "previous_version": "1.0.0", "generated_at": "now", "steps": [],
                            "checklist": list(checklist.values()), "success_criteria": list(criteria.values())})
    ticked = [line for line in text.splitlines() if line.startswith("- [x]")]
    assert len(ticked) == 17 + 6  # every line but the waived backup, and the 6 criteria (backup is not one)
    assert "- [ ] Backup created: waived (stateless service here, ops-lead)" in text


def test_release_report_reads_the_history_for_the_first_release_note(tmp_path: Path) -> None:
    spec = demo_spec()
    paths = RunPaths(home=tmp_path / "home", dag_id=spec.dag_id, run_id="run-1")
    ctx = DutyContext(spec=spec, params=run_params(spec, {"version": "1.1.0"}), paths=paths,
                      target=None)  # the release report never asks the target
    reports = good_reports(tmp_path)
    reports["readiness"] = with_facts(reports["readiness"], active_version=None, first_deployment=True)
    reports["execute_strategy"] = with_facts(reports["execute_strategy"], active_before=None,
                                             rollback_rehearsal=rehearsal(previous=None, rehearsed=False))
    report = build_release_report(ctx, reports, outcome="success", record={"previous_version": None})
    assert report["first_release"].startswith("first release: no version was active on the target")
    assert "- Previous version: none (first release: no version was active" in render_markdown(report)

    # an earlier run verified 1.0.0 (this run's own entry does not count): not a first release any more
    history = ReleaseHistory(paths.home, spec.dag_id)
    history.append(HistoryEntry(run_id="run-0", version="1.0.0", outcome="success", verified=True))
    history.append(HistoryEntry(run_id="run-1", version="1.1.0", outcome="success", verified=True))
    report = build_release_report(ctx, reports, outcome="success", record={"previous_version": None})
    assert report["first_release"].endswith("although the history's last verified release is 1.0.0: nothing to "
                                            "roll back to")
    rollback = next(row for row in report["checklist"] if row["item"] == "Rollback tested")
    assert rollback["state"] == "not_done" and rollback["why"] == report["first_release"]
