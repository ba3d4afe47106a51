"""Agent reports: no item passes without evidence, and the report lists every failure."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gendev_release.catalogue import step_by_id
from gendev_release.report import AgentReport, Evidence, ReportBuilder, Verification, sha256_file

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
