"""The report item of every one of the 16 steps fails when the evidence store does not keep the report.

The report item is decided the same way for every step (:meth:`ReportBuilder.finish` writes the report
to the run's evidence store, reads it back and checks it against the chain and itself), so one case per
step shows it failing for a realistic reason: an earlier record of the run was altered on disk after it
was chained, so the chain the new report joins no longer holds. A step whose own items all passed must
still stop at its gate.
"""

from __future__ import annotations

import pytest
from item_proof import assert_item_fails

from gendev_release.catalogue import all_steps, step_by_id
from gendev_release.context import RunPaths
from gendev_release.evidence_store import EvidenceStore
from gendev_release.report import Evidence, ReportBuilder

RUN_ID = "manual__2026-01-05T10:00:00+00:00"


def _passing_builder(step_id: str) -> ReportBuilder:
    phase, step = step_by_id(step_id)
    builder = ReportBuilder(phase, step, service="demo", version="1.0.0", run_id=RUN_ID)
    for kind in ("read", "verify", "check"):
        builder.evidence(kind, Evidence(kind="computed", source=f"{step_id} {kind}", summary="observed"))
        builder.verdict(kind, True, f"{kind} ok")
    return builder


@pytest.fixture(autouse=True)
def _local_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GENDEV_EVIDENCE_URL", raising=False)


@pytest.mark.parametrize("step_id", [
    pytest.param(step.id, marks=pytest.mark.item(f"{step.id}.report")) for _, step in all_steps()])
def test_report_item_fails_when_the_store_does_not_keep_it(step_id: str, tmp_path) -> None:
    paths = RunPaths(home=tmp_path, dag_id="release__demo", run_id=RUN_ID)
    store = EvidenceStore(paths)
    earlier = store.save_record("failure-decision", {"decision": "continue"})
    assert earlier  # an earlier record of this run, chained
    record = paths.evidence_dir / "failure-decision.json"
    record.write_bytes(record.read_bytes().replace(b"continue", b"rollback"))  # altered after it was chained

    report = _passing_builder(step_id).finish(store=store)

    assert all(v.passed for v in report.verifications if v.kind != "report")
    assert_item_fails(report, f"{step_id}.report", because="did not come back intact from the evidence store")
    item = next(v for v in report.verifications if v.kind == "report")
    assert "failure-decision" in item.detail


def test_the_same_step_passes_its_report_item_with_an_intact_store(tmp_path) -> None:
    report = _passing_builder("readiness").finish(store=EvidenceStore(RunPaths(tmp_path, "release__demo", RUN_ID)))
    assert report.status == "passed", report.gate_failures()
