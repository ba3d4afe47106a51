"""Phase 2: release_plan and notifications, and the change-window computation."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from duty_helpers import StubTarget, item, make_ctx, run_step, save_report
from item_proof import assert_item_fails

from gendev_release.catalogue import PHASES
from gendev_release.duties import planning, run_duty
from gendev_release.duties.planning import (
    addressing_problems,
    estimate_phases,
    history_entries,
    is_address,
    next_openings,
    window_end,
)
from gendev_release.report import Evidence, sha256_file
from gendev_release.run_record import HistoryEntry, ReleaseHistory
from gendev_release.spec import ChangeWindow

UTC = timezone.utc
WEDNESDAY_10 = datetime(2026, 1, 7, 10, 0, tzinfo=UTC)  # 2026-01-07 is a Wednesday


def at(now: datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(planning, "utcnow", lambda: now)


# ================================================================================= window_end
def test_window_end_office_hours() -> None:
    window = ChangeWindow(days=["mon", "tue", "wed", "thu", "fri"], start="09:00", end="17:00")
    assert window_end(window, WEDNESDAY_10) == datetime(2026, 1, 7, 17, 1, tzinfo=UTC)
    assert window_end(window, datetime(2026, 1, 7, 17, 0, 59, tzinfo=UTC)) == datetime(2026, 1, 7, 17, 1, tzinfo=UTC)
    assert window_end(window, datetime(2026, 1, 7, 17, 1, tzinfo=UTC)) is None  # closed
    assert window_end(window, datetime(2026, 1, 7, 8, 59, tzinfo=UTC)) is None  # not yet open
    assert window_end(window, datetime(2026, 1, 10, 10, 0, tzinfo=UTC)) is None  # Saturday


def test_window_end_crossing_midnight() -> None:
    window = ChangeWindow(days=["fri"], start="22:00", end="02:00")
    friday_23 = datetime(2026, 1, 9, 23, 0, tzinfo=UTC)
    saturday_end = datetime(2026, 1, 10, 2, 1, tzinfo=UTC)
    assert window_end(window, friday_23) == saturday_end
    assert window_end(window, datetime(2026, 1, 10, 1, 30, tzinfo=UTC)) == saturday_end  # opened on Friday
    assert window_end(window, datetime(2026, 1, 10, 3, 0, tzinfo=UTC)) is None
    assert window_end(window, datetime(2026, 1, 10, 23, 0, tzinfo=UTC)) is None  # Saturday night: no window
    assert window_end(window, datetime(2026, 1, 9, 21, 59, tzinfo=UTC)) is None


def test_window_end_in_another_time_zone() -> None:
    window = ChangeWindow(days=["wed"], start="09:00", end="17:00", timezone="Europe/Berlin")  # UTC+1 in January
    assert window_end(window, datetime(2026, 1, 7, 7, 30, tzinfo=UTC)) is None  # 08:30 in Berlin
    assert window_end(window, datetime(2026, 1, 7, 8, 30, tzinfo=UTC)) == datetime(2026, 1, 7, 16, 1, tzinfo=UTC)


def test_window_end_joins_back_to_back_days() -> None:
    weekdays = ChangeWindow(days=["mon", "tue", "wed", "thu", "fri"], start="00:00", end="23:59")
    assert window_end(weekdays, WEDNESDAY_10) == datetime(2026, 1, 10, 0, 0, tzinfo=UTC)  # Friday's end
    always = ChangeWindow()
    end = window_end(always, WEDNESDAY_10)
    assert end is not None and end - WEDNESDAY_10 > timedelta(days=6)


def test_window_end_takes_naive_now_as_utc() -> None:
    window = ChangeWindow(days=["wed"], start="09:00", end="11:00")
    assert window_end(window, datetime(2026, 1, 7, 10, 0)) == datetime(2026, 1, 7, 11, 1, tzinfo=UTC)


# ================================================================================== estimates
def test_estimate_phases_from_history_else_default() -> None:
    history = [{"phase_seconds": {"p1_pre_deployment": 60, "p3_build": 30}},
               {"phase_seconds": {"p1_pre_deployment": 180, "p3_build": "oops"}},
               {"outcome": "aborted"}]
    estimates = estimate_phases(history, 5.0)
    assert estimates["p1_pre_deployment"] == {"minutes": 2.0, "source": "history", "runs": 2}
    assert estimates["p3_build"] == {"minutes": 0.5, "source": "history", "runs": 1}
    assert estimates["p8_post_deployment"] == {"minutes": 5.0, "source": "default", "runs": 0}
    assert list(estimates) == [p.id for p in PHASES]


def test_history_entries_name_every_line_that_is_not_an_entry(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    good = HistoryEntry(run_id="r1", version="1.0.0", outcome="success", phase_seconds={"p3_build": 12.5})
    path.write_text("\n".join([good.model_dump_json(), "not json", "[1]",
                                json.dumps({"run_id": "r2", "version": "1.0.1", "outcome": "success",
                                            "phase_seconds": {"p3_build": -4}}),
                                json.dumps({"run_id": "r3", "version": "1.0.2", "outcome": "success"}), ""]),
                    encoding="utf-8")
    entries, problems = history_entries(path)
    assert [e.run_id for e in entries] == ["r1", "r3"]
    assert entries[1].verified is True  # an older line without "verified", read as ReleaseHistory reads it
    assert problems[0].startswith("line 2 is not JSON (")
    assert problems[1].startswith("line 3 is not a history entry (")
    assert problems[2] == "line 4 has durations that are not a time: phase_seconds p3_build=-4.0"
    assert history_entries(tmp_path / "missing.jsonl") == ([], [])


# ================================================================================ release_plan
def test_release_plan_passes_and_writes_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at(WEDNESDAY_10, monkeypatch)
    ctx = make_ctx(tmp_path, StubTarget())
    report = run_step(ctx, "release_plan")
    assert report.status == "passed", report.blocking_issues
    plan = json.loads((ctx.paths.workdir / "release-plan.json").read_text(encoding="utf-8"))
    assert [p["id"] for p in plan["phases"]] == [p.id for p in PHASES]
    assert all(p["estimated_minutes"] == 5.0 and p["source"] == "default" for p in plan["phases"])
    assert plan["total_minutes"] == 40.0 and plan["approvers"] == ["release-manager"]
    assert (ctx.paths.workdir / "release-plan.md").read_text(encoding="utf-8").startswith("# Release plan: demo 1.1.0")
    assert [d.name for d in report.deliverables] == ["Release plan", "Deployment schedule"]
    # the plan's phases carry the DAG's own task ids (the health sensor included), scheduled back to back
    deployment = plan["phases"][4]
    assert deployment["tasks"] == ["p5_deployment.preview_health", "p5_deployment.execute_strategy",
                                   "p5_deployment.post_switch_health",
                                   "p5_deployment.post_promotion", "p5_deployment.monitoring_alerts"]
    assert plan["phases"][0]["start"] == "2026-01-07T10:00:00+00:00"
    assert plan["phases"][-1]["end"] == "2026-01-07T10:40:00+00:00"
    check = item(report, "check")
    assert check.evidence[0].data["estimated_end"] == "2026-01-07T10:40:00+00:00"
    assert report.facts["feasible"] is True


def test_release_plan_estimates_from_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at(WEDNESDAY_10, monkeypatch)
    ctx = make_ctx(tmp_path, StubTarget())
    ctx.paths.history_file.parent.mkdir(parents=True, exist_ok=True)
    history = ReleaseHistory(ctx.paths.home, ctx.paths.dag_id)
    assert history.path == ctx.paths.history_file
    for run, factor in (("r1", 60.0), ("r2", 120.0)):
        history.append(HistoryEntry(run_id=run, version="1.0.0", outcome="success",
                                    phase_seconds={p.id: factor * (i + 1) for i, p in enumerate(PHASES)}))
    report = run_step(ctx, "release_plan")
    assert report.status == "passed", report.blocking_issues
    estimates = report.facts["estimates"]
    assert estimates["p1_pre_deployment"] == {"minutes": 1.5, "source": "history", "runs": 2}
    assert estimates["p8_post_deployment"]["minutes"] == 12.0
    assert report.facts["total_minutes"] == 1.5 * 36


@pytest.mark.item("release_plan.read")
def test_release_plan_read_fails_on_a_corrupt_history_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at(WEDNESDAY_10, monkeypatch)
    ctx = make_ctx(tmp_path, StubTarget())
    history = ReleaseHistory(ctx.paths.home, ctx.paths.dag_id)
    history.append(HistoryEntry(run_id="r1", version="1.0.0", outcome="success",
                                phase_seconds={p.id: 30.0 for p in PHASES}))
    with open(history.path, "a", encoding="utf-8") as handle:
        handle.write('{"run_id": "r2", "version": "1.0.1", "outcome": "succ')  # a crash mid-append

    report = run_step(ctx, "release_plan")

    assert_item_fails(report, "release_plan.read", because="line 2 is not JSON")
    read = item(report, "read")
    assert read.detail.startswith(f"release history {history.path} line 2 is not JSON (")
    assert read.detail.endswith("repair or remove those lines")
    assert read.evidence[0].source == str(history.path) and read.evidence[0].data["entries"] == 1


@pytest.mark.item("release_plan.check")
def test_release_plan_fails_when_estimate_ends_after_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at(datetime(2026, 1, 7, 9, 50, tzinfo=UTC), monkeypatch)
    ctx = make_ctx(tmp_path, StubTarget(), {"change_window": {"start": "09:00", "end": "10:00"}})
    report = run_step(ctx, "release_plan")
    assert_item_fails(report, "release_plan.check", because="is after the change window")
    check = item(report, "check")
    assert check.detail == ("estimated end 2026-01-07T10:30:00+00:00 (40.00 min) is after the change window "
                            "mon,tue,wed,thu,fri,sat,sun 09:00-10:00 UTC closes at 2026-01-07T10:01:00+00:00")
    assert report.status == "failed" and report.facts["feasible"] is False


def test_release_plan_fails_outside_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at(datetime(2026, 1, 7, 12, 0, tzinfo=UTC), monkeypatch)
    ctx = make_ctx(tmp_path, StubTarget(), {"change_window": {"start": "09:00", "end": "10:00"}})
    check = item(run_step(ctx, "release_plan"), "check")
    assert not check.passed and check.detail.startswith("now (2026-01-07T12:00:00+00:00) is outside the change window")


def test_release_plan_without_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at(WEDNESDAY_10, monkeypatch)
    staging = make_ctx(tmp_path / "staging", StubTarget(), {"environment": "staging", "change_window": None})
    check = item(run_step(staging, "release_plan"), "check")
    assert check.passed and check.detail == "no change window; allowed for environment staging"
    production = make_ctx(tmp_path / "production", StubTarget())
    production.spec = production.spec.model_copy(update={"change_window": None})  # bypasses the spec's own rule
    check = item(run_step(production, "release_plan"), "check")
    assert not check.passed and check.detail == "production release without a change_window in the spec"


@pytest.mark.item("release_plan.verify")
def test_release_plan_fails_without_approvers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at(WEDNESDAY_10, monkeypatch)
    ctx = make_ctx(tmp_path, StubTarget(), {"environment": "staging", "approvals": None})
    report = run_step(ctx, "release_plan")
    assert_item_fails(report, "release_plan.verify", because="no approvers assigned")
    assert item(report, "verify").detail == "no approvers assigned: add approvals.approvers to the spec"


def test_the_deployment_schedule_is_an_icalendar_file_with_one_event_per_phase(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at(WEDNESDAY_10, monkeypatch)
    ctx = make_ctx(tmp_path, StubTarget(), {"change_window": {"start": "09:00", "end": "11:00"}})
    report = run_step(ctx, "release_plan")
    schedule = next(d for d in report.deliverables if d.name == "Deployment schedule")
    raw = Path(schedule.path).read_bytes()
    assert raw.startswith(b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\n") and raw.endswith(b"END:VCALENDAR\r\n")
    lines = raw.decode("utf-8").split("\r\n")
    assert all(len(line.encode("utf-8")) <= 75 for line in lines)
    unfolded = raw.decode("utf-8").replace("\r\n ", "").split("\r\n")
    starts = [line for line in unfolded if line.startswith("DTSTART:")]
    assert len(starts) == len(PHASES) + 1  # one per phase, and the window's close
    assert starts[0] == "DTSTART:20260107T100000Z" and "DTSTART:20260107T110100Z" in starts
    assert "SUMMARY:demo 1.1.0: phase 3 Build & Package Management" in unfolded


# =============================================================================== notifications
def test_notifications_pass_and_deliver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at(WEDNESDAY_10, monkeypatch)
    ctx = make_ctx(tmp_path, StubTarget())
    report = run_step(ctx, "notifications")
    assert report.status == "passed", report.blocking_issues
    read = item(report, "read")
    assert read.evidence[0].data["stakeholders"]["engineering"] == ["oncall@example.com"]
    channel = ctx.paths.home / "notifications" / "demo.jsonl"
    sent = [json.loads(line) for line in channel.read_text(encoding="utf-8").splitlines()]
    assert [m["event"] for m in sent] == ["release_starting"]
    assert sent[0]["recipients"] == ["oncall@example.com", "product@example.com", "support@example.com"]
    assert sent[0]["audiences"] == ["business", "engineering", "support"]
    verify = item(report, "verify")
    assert verify.evidence[0].source == str(channel) and verify.evidence[0].sha256
    assert [d.name for d in report.deliverables] == ["Stakeholder notifications", "Change windows", "Approval gates"]
    document = (ctx.paths.workdir / "stakeholder-notifications.md").read_text(encoding="utf-8")
    assert "| release_rolled_back |" in document
    assert f"| notifications.channel.path | delivered | file {channel} sha256 {sha256_file(channel)[:12]} |" in document
    assert report.facts["approval"] == {"approvers": ["release-manager"], "required": 1, "gate": "configured"}
    assert report.facts["window_open"] is True


@pytest.mark.item("notifications.check")
def test_notifications_fail_outside_change_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at(datetime(2026, 1, 10, 12, 0, tzinfo=UTC), monkeypatch)  # a Saturday
    ctx = make_ctx(tmp_path, StubTarget(), {"change_window": {"days": ["mon", "tue", "wed", "thu", "fri"]}})
    report = run_step(ctx, "notifications")
    assert_item_fails(report, "notifications.check", because="is outside the change window")
    check = item(report, "check")
    assert check.detail == ("now (2026-01-10T12:00:00+00:00) is outside the change window "
                            "mon,tue,wed,thu,fri 00:00-23:59 UTC")
    assert report.facts["window_open"] is False and report.status == "failed"


def test_notifications_fail_when_production_lacks_approvals(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    at(WEDNESDAY_10, monkeypatch)
    ctx = make_ctx(tmp_path, StubTarget())
    ctx.spec = ctx.spec.model_copy(update={"approvals": None})  # bypasses the spec's own rule
    report = run_step(ctx, "notifications")
    check = item(report, "check")
    assert not check.passed and check.detail == "production release without approvals in the spec"
    assert report.facts["approval"]["gate"] == "none"


@pytest.mark.item("notifications.verify")
def test_notifications_fail_when_channel_cannot_be_written(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    at(WEDNESDAY_10, monkeypatch)
    ctx = make_ctx(tmp_path, StubTarget())
    (ctx.paths.home / "notifications" / "demo.jsonl").mkdir(parents=True)  # a folder where the file should be
    report = run_step(ctx, "notifications")
    assert_item_fails(report, "notifications.verify", because="notification not delivered")
    verify = item(report, "verify")
    assert verify.detail.startswith("release-starting notification not delivered to notifications.channel.path "
                                    "'notifications/demo.jsonl': IsADirectoryError")


def test_notifications_keep_the_other_channels_when_one_fails(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    at(WEDNESDAY_10, monkeypatch)
    two = {"notifications": {"channel": None, "channels": [{"kind": "file", "path": "notifications/broken.jsonl"},
                                                           {"kind": "file", "path": "notifications/ops.jsonl"}]}}
    ctx = make_ctx(tmp_path, StubTarget(), two)
    (ctx.paths.home / "notifications" / "broken.jsonl").mkdir(parents=True)

    report = run_step(ctx, "notifications")

    verify = item(report, "verify")
    assert not verify.passed
    assert verify.detail.startswith("release-starting notification not delivered to notifications.channels[0].path "
                                    "'notifications/broken.jsonl': IsADirectoryError")
    assert verify.detail.endswith("(delivered to notifications/ops.jsonl)")
    good = ctx.paths.home / "notifications" / "ops.jsonl"
    assert [json.loads(line)["event"] for line in good.read_text(encoding="utf-8").splitlines()] == ["release_starting"]
    delivered = [e for e in verify.evidence if e.data.get("delivered") is True]
    assert [(e.source, e.sha256) for e in delivered] == [(str(good.resolve()), sha256_file(good))]
    failed = [e for e in verify.evidence if e.data.get("delivered") is False]
    assert [e.data["field"] for e in failed] == ["notifications.channels[0].path"]
    assert report.facts["notification"]["delivered"] == [str(good.resolve())]
    document = (ctx.paths.workdir / "stakeholder-notifications.md").read_text(encoding="utf-8")
    assert "| notifications.channels[0].path | file | notifications/broken.jsonl |" in document
    assert "| notifications.channels[0].path | FAILED | IsADirectoryError" in document


def test_notifications_staging_without_gates_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at(WEDNESDAY_10, monkeypatch)
    ctx = make_ctx(tmp_path, StubTarget(), {"environment": "staging", "approvals": None, "change_window": None})
    check = item(run_step(ctx, "notifications"), "check")
    assert check.passed and check.detail == "no approval gate or window needed for staging"


def test_millisecond_phases_from_history_still_give_a_positive_estimate() -> None:
    from gendev_release.duties.planning import estimate_phases

    estimates = estimate_phases([{"phase_seconds": {"p2_planning": 0.003}}], default_minutes=5)
    assert 0 < estimates["p2_planning"]["minutes"] < 0.001
    assert estimates["p2_planning"]["source"] == "history"


@pytest.mark.item("notifications.read")
def test_notifications_read_fails_on_a_recipient_that_is_no_address(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    at(WEDNESDAY_10, monkeypatch)
    ctx = make_ctx(tmp_path, StubTarget(), {"notifications": {"stakeholders": {"business": ["product.example.com"]}}})
    report = run_step(ctx, "notifications")
    assert_item_fails(report, "notifications.read", because="is not an e-mail address")
    assert item(report, "read").detail == ("notifications.stakeholders.business[0] 'product.example.com' is not an "
                                           "e-mail address, @handle or #channel")


@pytest.mark.parametrize(("recipient", "ok"), [
    ("oncall@example.com", True), ("first.last+tag@sub.example.org", True), ("@release-bot", True),
    ("#ops", True), ("product.example.com", False), ("oncall@example", False), ("on call@example.com", False),
    ("", False), ("@", False)])
def test_is_address(recipient: str, ok: bool) -> None:
    assert is_address(recipient) is ok


def test_addressing_problems_name_the_audience_a_channel_did_not_get() -> None:
    stakeholders = {"engineering": ["oncall@example.com"], "support": ["support@example.com"]}
    partial = Evidence(kind="file", source="notifications/ops.jsonl", data={"message": {
        "audiences": ["engineering"], "recipients": ["oncall@example.com"]}})
    assert addressing_problems([partial], stakeholders) == [
        "notifications/ops.jsonl: the message leaves out audience(s) ['support'], recipient(s) ['support@example.com']"]


def test_notifications_check_refuses_approvers_listed_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at(WEDNESDAY_10, monkeypatch)
    ctx = make_ctx(tmp_path, StubTarget(), {"approvals": {"approvers": ["release-manager", "release-manager"],
                                                          "required": 2}})
    check = item(run_step(ctx, "notifications"), "check")
    assert not check.passed
    assert check.detail == ("approvals.required=2 but approvals.approvers names only 1 distinct approver(s) "
                            "(release-manager listed more than once)")


def test_notifications_check_needs_the_plans_end_inside_the_window(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    at(WEDNESDAY_10, monkeypatch)
    ctx = make_ctx(tmp_path, StubTarget(), {"change_window": {"start": "09:00", "end": "10:29"}})
    save_report(ctx, "release_plan", {"estimated_end": "2026-01-07T10:40:00+00:00",
                                      "window_end": "2026-01-07T10:30:00+00:00"})
    report = run_step(ctx, "notifications")
    check = item(report, "check")
    assert not check.passed
    assert check.detail == ("the release plan's estimated end 2026-01-07T10:40:00+00:00 is after the change window "
                            "closes at 2026-01-07T10:30:00+00:00")
    assert "estimated end 2026-01-07T10:40:00+00:00" in json.loads(
        (ctx.paths.home / "notifications" / "demo.jsonl").read_text(encoding="utf-8"))["body"]


def test_notifications_check_needs_a_high_risk_approved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at(WEDNESDAY_10, monkeypatch)
    ctx = make_ctx(tmp_path, StubTarget())
    save_report(ctx, "risk_assessment", {"risk_level": "high"})
    report = run_step(ctx, "notifications")
    assert item(report, "check").detail == ("risk_assessment rated this release high risk and nothing stops it "
                                            "for people's approval: add high_risk to approvals.required_for")
    gates = (ctx.paths.workdir / "approval-gates.md").read_text(encoding="utf-8")
    assert "Risk level from risk_assessment: high; high-risk approval: none" in gates
    assert "people approve in Airflow (human-in-the-loop, Required actions) at the approval gate" in gates


def test_next_openings_of_a_weekday_window() -> None:
    window = ChangeWindow(days=["mon", "fri"], start="22:00", end="02:00")
    openings = next_openings(window, WEDNESDAY_10)
    assert openings == [(datetime(2026, 1, 9, 22, 0, tzinfo=UTC), datetime(2026, 1, 10, 2, 1, tzinfo=UTC)),
                        (datetime(2026, 1, 12, 22, 0, tzinfo=UTC), datetime(2026, 1, 13, 2, 1, tzinfo=UTC))]


def test_phase_2_delivers_every_catalogue_deliverable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at(WEDNESDAY_10, monkeypatch)
    ctx = make_ctx(tmp_path, StubTarget())
    reports = [run_duty(ctx, step.id) for step in PHASES[1].steps]
    assert all(r.status == "passed" for r in reports), [r.blocking_issues for r in reports]
    delivered = {d.name: Path(d.path) for r in reports for d in r.deliverables}
    assert set(PHASES[1].deliverables) <= set(delivered)
    assert all(delivered[name].stat().st_size > 0 for name in PHASES[1].deliverables)
    stored = {(line["step"], line["name"]) for line in ctx.store.manifest()}
    assert {name for _, name in stored} >= set(PHASES[1].deliverables)


def test_window_end_knows_freezes_like_the_change_window_gate() -> None:
    """One rule with the gate (change_window.evaluate): a freeze closes the window early, or keeps it shut."""
    window = ChangeWindow(days=["wed"], start="09:00", end="17:00", timezone="UTC",
                          freeze=[{"start": "2026-01-07T12:00:00+00:00", "end": "2026-01-07T13:00:00+00:00",
                                   "reason": "payroll run"}])
    assert window_end(window, WEDNESDAY_10) == datetime(2026, 1, 7, 12, 0, tzinfo=UTC)  # the freeze comes first
    assert window_end(window, datetime(2026, 1, 7, 12, 30, tzinfo=UTC)) is None  # frozen
    assert window_end(window, datetime(2026, 1, 7, 13, 30, tzinfo=UTC)) == datetime(2026, 1, 7, 17, 1, tzinfo=UTC)
    frozen_day = ChangeWindow(days=["wed"], start="09:00", end="17:00", timezone="UTC",
                              freeze=[{"start": "2026-01-14", "end": "2026-01-14", "reason": "audit"}])
    assert [start.date().isoformat() for start, _ in next_openings(frozen_day, WEDNESDAY_10, days=14)] == [
        "2026-01-21"]


def test_ics_folding_counts_the_continuation_space() -> None:
    from gendev_release.duties.phase2_documents import _fold

    for length in range(70, 230):
        parts = _fold("D" * length)
        assert all(len(part.encode()) <= 75 for part in parts), length
        assert "".join(part[1:] if i else part for i, part in enumerate(parts)) == "D" * length


def _gate_record(ctx, status: str) -> None:
    """What the change-window gate writes for this run (sensors/change_window.py), never the duty itself."""
    ctx.store.save_record("change_window", {
        "status": status, "reason": "closed, released by an emergency override approved by bob",
        "state": {"open": False, "reason": "closed: frozen until 2026-02-01: audit"},
        "override": {"approved": True, "approvers": ["bob"], "decided_at": "2026-01-10T11:59:00+00:00",
                     "comment": "outage"} if status == "override" else None})


def test_an_approved_emergency_override_lets_planning_pass_a_closed_window(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at(datetime(2026, 1, 10, 12, 0, tzinfo=UTC), monkeypatch)  # a Saturday
    overrides = {"change_window": {"days": ["mon", "tue", "wed", "thu", "fri"], "emergency_override": True}}
    ctx = make_ctx(tmp_path, StubTarget(), overrides)
    _gate_record(ctx, "failed")  # the gate did not let it through: still outside the window
    assert not item(run_step(ctx, "notifications"), "check").passed
    _gate_record(ctx, "override")
    report = run_step(ctx, "notifications")
    assert item(report, "check").passed, item(report, "check").detail
    assert "outside the change window: closed, released by an emergency override approved by bob" in report.findings
    plan = run_step(ctx, "release_plan")
    assert item(plan, "check").passed and "emergency override approved by bob" in item(plan, "check").detail
