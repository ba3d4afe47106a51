"""Phase 2: release_plan and notifications, and the change-window computation."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from duty_helpers import StubTarget, item, make_ctx, run_step

from gendev_release.catalogue import PHASES
from gendev_release.duties import planning
from gendev_release.duties.planning import estimate_phases, read_history, window_end
from gendev_release.report import sha256_file
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
def test_estimate_phases_from_history_else_default(tmp_path: Path) -> None:
    history = [{"phase_seconds": {"p1_pre_deployment": 60, "p3_build": 30}},
               {"phase_seconds": {"p1_pre_deployment": 180, "p3_build": "oops"}},
               {"outcome": "aborted"}]
    estimates = estimate_phases(history, 5.0)
    assert estimates["p1_pre_deployment"] == {"minutes": 2.0, "source": "history", "runs": 2}
    assert estimates["p3_build"] == {"minutes": 0.5, "source": "history", "runs": 1}
    assert estimates["p8_post_deployment"] == {"minutes": 5.0, "source": "default", "runs": 0}
    assert list(estimates) == [p.id for p in PHASES]
    path = tmp_path / "h.jsonl"
    path.write_text('{"a": 1}\nnot json\n[1]\n\n', encoding="utf-8")
    assert read_history(path) == ([{"a": 1}], 2)
    assert read_history(tmp_path / "missing.jsonl") == ([], 0)


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
    assert [d.name for d in report.deliverables] == ["release plan", "release plan (Markdown)"]
    check = item(report, "check")
    assert check.evidence[0].data["estimated_end"] == "2026-01-07T10:40:00+00:00"
    assert report.facts["feasible"] is True


def test_release_plan_estimates_from_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at(WEDNESDAY_10, monkeypatch)
    ctx = make_ctx(tmp_path, StubTarget())
    ctx.paths.history_file.parent.mkdir(parents=True, exist_ok=True)
    runs = [{"outcome": "success", "phase_seconds": {p.id: 60.0 * (i + 1) for i, p in enumerate(PHASES)}},
            {"outcome": "success", "phase_seconds": {p.id: 120.0 * (i + 1) for i, p in enumerate(PHASES)}}]
    ctx.paths.history_file.write_text("\n".join(json.dumps(r) for r in runs) + "\n", encoding="utf-8")
    report = run_step(ctx, "release_plan")
    estimates = report.facts["estimates"]
    assert estimates["p1_pre_deployment"] == {"minutes": 1.5, "source": "history", "runs": 2}
    assert estimates["p8_post_deployment"]["minutes"] == 12.0
    assert report.facts["total_minutes"] == 1.5 * 36


def test_release_plan_fails_when_estimate_ends_after_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at(datetime(2026, 1, 7, 9, 50, tzinfo=UTC), monkeypatch)
    ctx = make_ctx(tmp_path, StubTarget(), {"change_window": {"start": "09:00", "end": "10:00"}})
    report = run_step(ctx, "release_plan")
    check = item(report, "check")
    assert not check.passed
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


def test_release_plan_fails_without_approvers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at(WEDNESDAY_10, monkeypatch)
    ctx = make_ctx(tmp_path, StubTarget(), {"environment": "staging", "approvals": None})
    verify = item(run_step(ctx, "release_plan"), "verify")
    assert not verify.passed and verify.detail == "no approvers assigned: add approvals.approvers to the spec"


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
    verify = item(report, "verify")
    assert verify.evidence[0].source == str(channel) and verify.evidence[0].sha256
    assert [d.name for d in report.deliverables] == ["communication plan"]
    assert "| release_rolled_back |" in (ctx.paths.workdir / "communication-plan.md").read_text(encoding="utf-8")
    assert report.facts["approval"] == {"approvers": ["release-manager"], "required": 1, "gate": "configured"}
    assert report.facts["window_open"] is True


def test_notifications_fail_outside_change_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at(datetime(2026, 1, 10, 12, 0, tzinfo=UTC), monkeypatch)  # a Saturday
    ctx = make_ctx(tmp_path, StubTarget(), {"change_window": {"days": ["mon", "tue", "wed", "thu", "fri"]}})
    report = run_step(ctx, "notifications")
    check = item(report, "check")
    assert not check.passed
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


def test_notifications_fail_when_channel_cannot_be_written(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    at(WEDNESDAY_10, monkeypatch)
    ctx = make_ctx(tmp_path, StubTarget())
    (ctx.paths.home / "notifications" / "demo.jsonl").mkdir(parents=True)  # a folder where the file should be
    verify = item(run_step(ctx, "notifications"), "verify")
    assert not verify.passed
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
    assert "Channels: file (notifications/broken.jsonl), file (notifications/ops.jsonl)" in (
        ctx.paths.workdir / "communication-plan.md").read_text(encoding="utf-8")


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
