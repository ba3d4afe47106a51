"""Notifications: every channel gets the message, a failed one is reported, paths stay in the gendev home."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from gendev_release import notify
from gendev_release.errors import SpecError
from gendev_release.report import sha256_file
from gendev_release.spec import ReleaseSpec, parse_spec

DEMO_SPEC = Path(__file__).resolve().parents[1] / "dags" / "releases" / "demo.yaml"
RECIPIENTS = ["oncall@example.com", "product@example.com", "support@example.com"]


def spec_with(notifications: dict[str, Any]) -> ReleaseSpec:
    data = yaml.safe_load(DEMO_SPEC.read_text(encoding="utf-8"))
    data["notifications"] = {"stakeholders": data["notifications"]["stakeholders"], **notifications}
    return parse_spec(data, str(DEMO_SPEC), DEMO_SPEC)


def channels(*paths: str) -> dict[str, Any]:
    return {"channels": [{"kind": "file", "path": p} for p in paths]}


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ================================================================================== delivery
def test_a_failed_channel_is_reported_and_the_others_still_get_the_message(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "notifications" / "broken.jsonl").mkdir(parents=True)  # a folder where the file should be
    spec = spec_with(channels("notifications/broken.jsonl", "notifications/ops.jsonl"))

    result = notify.send(spec, home, event="release_aborted", severity="warning", subject="demo 1.1.0 aborted",
                         body="Failed: p3_build.build.", run_id="manual__1")

    good = home / "notifications" / "ops.jsonl"
    assert [(m["event"], m["subject"], m["recipients"], m["run_id"]) for m in lines(good)] == [
        ("release_aborted", "demo 1.1.0 aborted", RECIPIENTS, "manual__1")]
    assert not result.ok and result.any_delivered
    assert [(e.source, e.sha256, e.data["field"]) for e in result.delivered] == [
        (str(good.resolve()), sha256_file(good), "notifications.channels[1].path")]
    [failure] = result.failures
    broken = (home / "notifications" / "broken.jsonl").resolve()
    assert (failure.field, failure.channel, failure.path) == (
        "notifications.channels[0].path", "notifications/broken.jsonl", str(broken))
    assert failure.error.startswith("IsADirectoryError: ")
    assert result.summary == ("warning 'demo 1.1.0 aborted' delivered to 3 recipient(s) through 1 of 2 channel(s); "
                              f"failed: notifications.channels[0].path 'notifications/broken.jsonl': {failure.error}")
    assert str(failure) == failure.describe()
    evidence = failure.evidence()
    assert evidence.data["delivered"] is False and evidence.sha256 is None


def test_every_channel_delivers(tmp_path: Path) -> None:
    home = tmp_path / "home"
    spec = spec_with(channels("notifications/ops.jsonl", "audit/releases.jsonl"))
    result = notify.send(spec, home, event="release_succeeded", severity="info", subject="demo 1.1.0 released",
                         body="ok", audiences=["engineering"])
    assert result.ok and result.failures == []
    assert [Path(e.source).name for e in result.delivered] == ["ops.jsonl", "releases.jsonl"]
    assert lines(home / "audit" / "releases.jsonl")[0]["recipients"] == ["oncall@example.com"]
    assert result.summary == "info 'demo 1.1.0 released' delivered to 1 recipient(s) through 2 of 2 channel(s)"


def test_the_single_channel_form_still_works_and_is_named_as_such(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "notifications" / "demo.jsonl").mkdir(parents=True)
    spec = spec_with({"channel": {"kind": "file", "path": "notifications/demo.jsonl"}})
    result = notify.send(spec, home, event="e", severity="info", subject="s", body="b")
    assert not result.any_delivered and [f.field for f in result.failures] == ["notifications.channel.path"]


def test_a_channel_leaving_the_home_through_a_link_is_refused_at_send_time(tmp_path: Path) -> None:
    home, outside = tmp_path / "home", tmp_path / "outside"
    home.mkdir()
    outside.mkdir()
    (home / "notifications").symlink_to(outside, target_is_directory=True)
    spec = spec_with(channels("notifications/demo.jsonl", "ok.jsonl"))

    result = notify.send(spec, home, event="e", severity="info", subject="s", body="b")

    assert list(outside.iterdir()) == []
    [failure] = result.failures
    assert failure.path is None and failure.error.startswith("PathEscape: notifications.channels[0].path: ")
    assert [Path(e.source).name for e in result.delivered] == ["ok.jsonl"]


def test_an_unknown_audience_is_a_callers_bug(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown audience\(s\) \['legal'\]"):
        notify.send(spec_with(channels("n.jsonl")), tmp_path, event="e", severity="info", subject="s", body="b",
                    audiences=["legal"])


# ================================================================================= the spec
def test_channels_and_channel_are_read_as_one_list() -> None:
    assert [c.path for c in spec_with(channels("a.jsonl", "b/c.jsonl")).notifications.all_channels] == [
        "a.jsonl", "b/c.jsonl"]
    assert [c.path for c in spec_with({"channel": {"path": "a.jsonl"}}).notifications.all_channels] == ["a.jsonl"]


@pytest.mark.parametrize(("notifications", "field", "message"), [
    (channels("/var/log/n.jsonl"), "notifications.channels.0.path", "channel path '/var/log/n.jsonl' is absolute"),
    (channels("ok.jsonl", "../n.jsonl"), "notifications.channels.1.path", "climbs out of the gendev home with '..'"),
    (channels(" "), "notifications.channels.0.path", "channel path must not be empty"),
    (channels("n\x1b.jsonl"), "notifications.channels.0.path", "contains a control character"),
    ({"channel": {"path": "~/n.jsonl"}}, "notifications.channel.path", "starts with '~'"),
    (channels(), "notifications.channels", "at least 1 item"),
    (channels("a.jsonl", "a.jsonl"), "notifications.channels", "channels[1] repeats the path 'a.jsonl' of channels[0]"),
    ({"channel": {"path": "a.jsonl"}, **channels("b.jsonl")}, "notifications.channels",
     "give either channel (one) or channels (a list), not both"),
    ({}, "notifications.channel", "no notification channel"),
])
def test_bad_channels_are_refused_at_load_time(notifications: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(SpecError) as raised:
        spec_with(notifications)
    assert [(p.field, message in p.message) for p in raised.value.problems] == [(field, True)], raised.value.problems
