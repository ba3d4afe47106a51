"""The evidence store: every record hash-chained, `verify-evidence` names the first record that does not hold,
and the report item passes only when the report comes back intact from the store."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gendev_release.catalogue import step_by_id
from gendev_release.cli import EXIT_FAILED, EXIT_INVALID, EXIT_OK, main
from gendev_release.context import EvidenceStore as ReExported
from gendev_release.context import RunPaths
from gendev_release.evidence_store import (
    CHAIN,
    GENESIS,
    ChainEntry,
    EvidenceStore,
    sha256_bytes,
)
from gendev_release.release_report import write_release_report
from gendev_release.report import AgentReport, Evidence, ReportBuilder, Verification, sha256_file

DAG_ID, RUN_ID = "release__demo", "manual__2026-01-05T10:00:00+00:00"
RUN_FOLDER = "manual__2026-01-05T10_00_00+00_00"
ARTIFACT = "deliverables/build/artifact_demo-1.0.0.tar.gz"


@pytest.fixture(autouse=True)
def _local_store_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GENDEV_EVIDENCE_URL", raising=False)


@dataclass
class _Ctx:
    """What ``write_release_report`` uses of a DutyContext."""

    store: EvidenceStore


def _store(home: Path) -> EvidenceStore:
    return EvidenceStore(RunPaths(home=home, dag_id=DAG_ID, run_id=RUN_ID))


def _builder(step_id: str, *, passed: bool = True) -> ReportBuilder:
    phase, step = step_by_id(step_id)
    builder = ReportBuilder(phase, step, service="demo", version="1.0.0", run_id=RUN_ID)
    for kind in ("read", "verify", "check"):
        builder.evidence(kind, Evidence(kind="computed", source=f"{step_id} {kind}", summary="observed"))
        builder.verdict(kind, passed or kind != "check", f"{kind} {'ok' if passed or kind != 'check' else 'failed'}")
    return builder


def _step(store: EvidenceStore, step_id: str, deliverable: Path | None = None, *, passed: bool = True) -> AgentReport:
    """Finish a step's report through the store and save it, as run_duty and the operator do."""
    builder = _builder(step_id, passed=passed)
    if deliverable is not None:
        builder.deliver("artifact demo-1.0.0.tar.gz", deliverable)
    report = builder.finish(store=store)
    store.save(report)
    return report


def _entry(store: EvidenceStore, name: str) -> ChainEntry:
    entry = store.latest(name)
    assert entry is not None, f"{name} is not chained"
    return entry


def _report_item(report: AgentReport) -> Verification:
    return next(v for v in report.verifications if v.kind == "report")


def _verify(location: Path | str, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    status = main(["verify-evidence", str(location)])
    return status, capsys.readouterr().out.splitlines()


@pytest.fixture
def run(tmp_path: Path) -> EvidenceStore:
    """A small synthetic run: two step reports (one with a deliverable), a plain record, the release report."""
    store = _store(tmp_path / "home")
    artifact = tmp_path / "work" / "demo-1.0.0.tar.gz"
    artifact.parent.mkdir(parents=True)
    artifact.write_bytes(b"the artifact's bytes\n")
    _step(store, "build", artifact)
    _step(store, "dependencies", passed=False)
    store.save_record("failure-decision", {"decision": "abort", "failed_tasks": ["p3_build.dependencies"]})
    write_release_report(_Ctx(store), {
        "service": "demo", "version": "1.0.0", "run_id": RUN_ID, "outcome": "aborted", "previous_version": None,
        "generated_at": "2026-01-05T10:30:00+00:00", "checklist": [], "success_criteria": [], "steps": []})
    return store


def _folder(store: EvidenceStore) -> Path:
    assert store.paths is not None
    return store.paths.evidence_dir


# ------------------------------------------------------------------------------------ round trip
def test_round_trip_and_layout(run: EvidenceStore, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _folder(run)
    assert str(folder).endswith(f"/home/evidence/{DAG_ID}/{RUN_FOLDER}")
    assert run.load("build") == run.all_reports()[0]
    assert [r.step_id for r in run.all_reports()] == ["build", "dependencies"]
    assert run.path_for("build") == folder / "build.json"
    assert json.loads((folder / "failure-decision.json").read_text())["decision"] == "abort"
    assert (folder / "release-report.md").read_text().startswith("# Release report: demo 1.0.0")
    # Every record is chained with the digest of its bytes, each entry linked to the one before.
    entries = run.entries()
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert entries[0].prev_hash == GENESIS
    assert all(later.prev_hash == earlier.entry_hash for earlier, later in zip(entries, entries[1:], strict=False))
    assert all(e.intact() for e in entries)
    for name in ("build.json", "drafts/build.json", "dependencies.json", ARTIFACT, "manifest.json",
                 "failure-decision.json", "release-report.json", "release-report.md"):
        assert _entry(run, name).sha256 == sha256_file(folder / name), name
    assert set(ChainEntry.model_fields) == {"seq", "name", "op", "sha256", "size", "moved_from", "at", "prev_hash",
                                            "entry_hash"}
    # The deliverable is copied in, with its digest, and listed in the manifest.
    [listed] = run.manifest()
    assert listed["step"] == "build" and listed["stored"] == ARTIFACT and listed["current"] is True
    assert listed["sha256"] == sha256_file(folder / ARTIFACT) == run.all_reports()[0].deliverables[0].sha256
    status, out = _verify(folder, capsys)
    assert status == EXIT_OK and len(out) == 1
    assert out[0].startswith("ok: 9 record(s) present with their digests, chain of 9 entries intact (head ")


def test_context_still_exports_the_store() -> None:
    assert ReExported is EvidenceStore


def test_the_report_item_is_the_stored_reports_digest_and_chain_position(run: EvidenceStore) -> None:
    build = run.load("build")
    assert build is not None and build.status == "passed"
    item = _report_item(build)
    assert item.passed and item.detail == "ready"
    stored, summary = item.evidence
    draft = _entry(run, "drafts/build.json")
    assert (stored.kind, stored.sha256) == ("file", draft.sha256)
    assert (stored.data["seq"], stored.data["entry_hash"]) == (draft.seq, draft.entry_hash)
    assert stored.source == str(_folder(run) / "drafts" / "build.json")
    assert summary.kind == "computed" and summary.data["problems"] == []
    # What was read back is the duty's report: items read/verify/check, its blockers and deliverables.
    read_back = AgentReport.model_validate_json(run.read("drafts/build.json"))
    assert [v.kind for v in read_back.verifications] == ["read", "verify", "check"]
    assert read_back.verifications == build.verifications[:3]
    assert read_back.deliverables == build.deliverables
    # A failed step: its report item still passes (the failure is listed), the step fails.
    dependencies = run.load("dependencies")
    assert dependencies is not None and dependencies.status == "failed"
    assert _report_item(dependencies).passed
    assert dependencies.blocking_issues == ["dependencies.check: check failed"]


# ------------------------------------------------------------------------------ verify-evidence
RECORDS = ["build.json", "dependencies.json", "drafts/build.json", ARTIFACT, "manifest.json",
           "failure-decision.json", "release-report.json", "release-report.md"]


@pytest.mark.parametrize("name", RECORDS)
def test_one_flipped_byte_is_named(run: EvidenceStore, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = _folder(run) / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    status, out = _verify(_folder(run), capsys)
    assert status == EXIT_FAILED
    assert out[0].startswith(f"{name} (chain seq {_entry(run, name).seq}): digest mismatch: ")
    assert len(out) == 1  # nothing else is wrong


@pytest.mark.parametrize("name", RECORDS)
def test_a_deleted_record_is_named(run: EvidenceStore, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    (_folder(run) / name).unlink()
    status, out = _verify(_folder(run), capsys)
    assert status == EXIT_FAILED
    entry = _entry(run, name)
    assert out == [f"{name} (chain seq {entry.seq}): missing: chained with sha256 {entry.sha256[:16]} but not in "
                   "the store"]


def test_a_truncated_chain_names_the_broken_link(run: EvidenceStore, capsys: pytest.CaptureFixture[str]) -> None:
    chain = _folder(run) / CHAIN
    lines = chain.read_bytes().splitlines(keepends=True)
    cut = len(lines) - 3
    chain.write_bytes(b"".join(lines[:cut]) + lines[cut][:40])  # cut in the middle of entry cut + 1
    status, out = _verify(_folder(run), capsys)
    assert status == EXIT_FAILED
    assert out[0].startswith(f"{CHAIN} line {cut + 1} (chain seq {cut + 1}): chain link broken: "
                             "not a complete chain entry")


def test_a_removed_chain_entry_breaks_the_next_link(run: EvidenceStore, capsys: pytest.CaptureFixture[str]) -> None:
    chain = _folder(run) / CHAIN
    lines = chain.read_bytes().splitlines(keepends=True)
    after = ChainEntry.model_validate_json(lines[4])
    chain.write_bytes(b"".join(lines[:3] + lines[4:]))  # entry 4 is gone
    status, out = _verify(_folder(run), capsys)
    assert status == EXIT_FAILED
    assert out[0].startswith(f"{after.name} (chain seq 5): chain link broken: entry numbered 5 where 4 was expected")


def test_an_edited_chain_entry_is_named(run: EvidenceStore, capsys: pytest.CaptureFixture[str]) -> None:
    chain = _folder(run) / CHAIN
    lines = chain.read_text().splitlines(keepends=True)
    entry = json.loads(lines[2])
    forged = {**entry, "sha256": sha256_bytes(b"something else")}  # the digest of a swapped record
    lines[2] = json.dumps(forged, separators=(",", ":")) + "\n"
    chain.write_text("".join(lines))
    status, out = _verify(_folder(run), capsys)
    assert status == EXIT_FAILED
    assert out[0].startswith(f"{entry['name']} (chain seq 3): chain link broken: its entry_hash does not match")


def test_cutting_the_chains_tail_leaves_records_unchained(run: EvidenceStore,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    chain = _folder(run) / CHAIN
    lines = chain.read_bytes().splitlines(keepends=True)
    chain.write_bytes(b"".join(lines[:-1]))  # a clean cut: the chain itself still holds
    status, out = _verify(_folder(run), capsys)
    assert status == EXIT_FAILED
    assert out == [f"release-report.md: not chained: in the store but not in the chain, which ends at seq "
                   f"{len(lines) - 1} (truncated, or written around the store)"]


def test_verify_evidence_without_a_chain_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify-evidence", str(tmp_path)]) == EXIT_INVALID
    assert main(["verify-evidence", str(tmp_path / "nowhere")]) == EXIT_INVALID
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"gendev-release: no chain file at {tmp_path}/{CHAIN}: not the evidence folder of a run " \
                     "(or written before the store was chained)"


# ------------------------------------------------------------------------------------- re-runs
def test_a_rerun_keeps_both_attempts_and_the_chain_holds(run: EvidenceStore, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    folder = _folder(run)
    first = (folder / "build.json").read_bytes()
    artifact = tmp_path / "work" / "demo-1.0.0.tar.gz"
    artifact.write_bytes(b"rebuilt\n")
    before = len(run.entries())
    again = _step(run, "build", artifact)
    assert _report_item(again).passed
    assert (folder / "attempts" / "build.1.json").read_bytes() == first
    assert (folder / "attempts" / "drafts" / "build.1.json").exists()
    assert (folder / "attempts" / "deliverables" / "build" / "artifact_demo-1.0.0.tar.1.gz").read_bytes() == \
        b"the artifact's bytes\n"
    assert (folder / ARTIFACT).read_bytes() == b"rebuilt\n"
    # The moves are new entries: history is extended, never rewritten.
    added = run.entries()[before:]
    moves = [(e.moved_from, e.name) for e in added if e.op == "move"]
    assert moves == [(ARTIFACT, "attempts/deliverables/build/artifact_demo-1.0.0.tar.1.gz"),
                     ("drafts/build.json", "attempts/drafts/build.1.json"), ("build.json", "attempts/build.1.json")]
    assert [(m["stored"], m["current"]) for m in run.manifest()] == [
        ("attempts/deliverables/build/artifact_demo-1.0.0.tar.1.gz", False), (ARTIFACT, True)]
    status, out = _verify(folder, capsys)
    assert status == EXIT_OK, out


def test_a_record_altered_before_a_rerun_moved_it_is_named(run: EvidenceStore,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = _folder(run) / "dependencies.json"
    path.write_bytes(path.read_bytes().replace(b'"failed"', b'"passed"'))
    seq = _entry(run, "dependencies.json").seq
    _step(run, "dependencies")  # the re-run moves the altered report aside; the move must not launder it
    status, out = _verify(_folder(run), capsys)
    assert status == EXIT_FAILED
    assert out[0].startswith(f"dependencies.json (chain seq {seq}): digest mismatch: moved to "
                             "attempts/dependencies.1.json")


def test_keep_earlier_still_takes_a_local_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = _store(tmp_path)
    store.save_text("notes.md", "first")
    kept = store.keep_earlier(_folder(store) / "notes.md")
    assert kept == _folder(store) / "attempts" / "notes.1.md" and kept.read_text() == "first"
    assert store.keep_earlier(_folder(store) / "notes.md") is None
    assert _verify(_folder(store), capsys)[0] == EXIT_OK


# ----------------------------------------------------------------------------- GENDEV_EVIDENCE_URL
def test_evidence_url_stores_outside_the_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    elsewhere = tmp_path / "srv" / "evidence"
    monkeypatch.setenv("GENDEV_EVIDENCE_URL", f"file://{elsewhere}/")
    store = _store(tmp_path / "home")
    assert store.location == f"file://{elsewhere}/{DAG_ID}/{RUN_FOLDER}"
    report = _step(store, "build")
    assert _report_item(report).passed
    assert store.path_for("build") == elsewhere / DAG_ID / RUN_FOLDER / "build.json"
    assert (elsewhere / DAG_ID / RUN_FOLDER / "drafts" / "build.json").exists()
    assert not (tmp_path / "home" / "evidence").exists()
    assert _report_item(report).evidence[0].data["store"] == store.location
    assert _verify(store.location, capsys)[0] == EXIT_OK
    assert _verify(elsewhere / DAG_ID / RUN_FOLDER, capsys)[0] == EXIT_OK


# ----------------------------------------------------------------------------- the report item
def test_report_item_fails_when_the_read_back_differs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The storage layer hands back other bytes than it was given (a corrupting store, or a write in between)."""
    store = _store(tmp_path)
    honest = EvidenceStore._read_bytes

    def corrupting(self: EvidenceStore, path: Any) -> bytes:
        data = honest(self, path)
        return data.replace(b'"check ok"', b'"check OK"') if "drafts" in str(path) else data

    monkeypatch.setattr(EvidenceStore, "_read_bytes", corrupting)
    report = _builder("build").finish(store=store)
    item = _report_item(report)
    assert not item.passed and report.status == "failed"
    assert item.detail.startswith("the report did not come back intact from the evidence store: drafts/build.json "
                                  "read back with sha256 ")
    assert "(digest mismatch)" in item.detail
    assert report.gate_failures() == [f"build.report: {item.detail}"]
    assert item.evidence[0].sha256 == sha256_file(_folder(store) / "drafts" / "build.json")  # what was written


def test_report_item_fails_when_the_read_back_contradicts_itself(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Written and read back as chained, but its status does not follow from its items: not a pass."""
    store = _store(tmp_path)
    honest = EvidenceStore._write_bytes

    def flattering(self: EvidenceStore, path: Any, data: bytes) -> None:
        if "drafts" in str(path) and not path.name.startswith("."):
            data = data.replace(b'"status": "failed"', b'"status": "passed"')
        honest(self, path, data)

    monkeypatch.setattr(EvidenceStore, "_write_bytes", flattering)
    report = _builder("build", passed=False).finish(store=store)
    item = _report_item(report)
    assert not item.passed
    assert "(digest mismatch)" in item.detail
    assert "status 'passed' but its items and blockers say 'failed'" in item.detail


def test_report_item_fails_when_the_store_cannot_be_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store should be")
    monkeypatch.setenv("GENDEV_EVIDENCE_URL", f"file://{blocker}")
    report = _builder("build").finish(store=_store(tmp_path / "home"))
    item = _report_item(report)
    assert not item.passed and report.status == "failed"
    assert item.detail.startswith("the report did not come back intact from the evidence store: cannot write "
                                  "drafts/build.json to the evidence store")
    assert [e.kind for e in item.evidence] == ["computed"]  # nothing stored, so no digest to show


def test_report_item_fails_when_a_deliverable_changed_after_it_was_registered(tmp_path: Path) -> None:
    artifact = tmp_path / "demo.tar.gz"
    artifact.write_bytes(b"built")
    builder = _builder("build")
    builder.deliver("artifact", artifact)
    artifact.write_bytes(b"swapped after the build")
    report = builder.finish(store=_store(tmp_path / "home"))
    item = _report_item(report)
    assert not item.passed
    assert "deliverable 'artifact' changed after it was registered" in item.detail
    assert "deliverable 'artifact' in the store (deliverables/build/artifact.gz) does not have the recorded sha256" \
        in item.detail


def test_without_a_store_the_report_goes_through_memory_and_is_discarded() -> None:
    report = _builder("build").finish()
    item = _report_item(report)
    assert item.passed
    stored = item.evidence[0]
    assert stored.data["ephemeral"] is True and stored.data["store"].startswith("memory://gendev-evidence/")
    assert not EvidenceStore.at(stored.data["store"]).root.exists()


def test_run_duty_decides_the_report_item_through_the_runs_store(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from duties.duty_helpers import StubTarget, make_ctx

    from gendev_release.duties import run_duty

    ctx = make_ctx(tmp_path, StubTarget())
    report = run_duty(ctx, "release_plan")  # a real duty: it writes and delivers the release plan
    item = _report_item(report)
    assert item.passed, item.detail
    assert item.evidence[0].source == str(ctx.paths.evidence_dir / "drafts" / "release_plan.json")
    assert [m["name"] for m in ctx.store.manifest()] == ["Release plan", "Deployment schedule"]
    ctx.store.save(report)
    assert _verify(ctx.paths.evidence_dir, capsys)[0] == EXIT_OK
