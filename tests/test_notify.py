"""Notifications: every channel gets the message, a failed one is reported, paths stay in the gendev home;
webhooks post through an Airflow HTTP connection to a loopback receiver and count only what it confirmed."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from webhook_receiver import WebhookReceiver

from gendev_release import notify
from gendev_release.catalogue import step_by_id
from gendev_release.errors import SpecError
from gendev_release.release_checklist import RunFacts, stakeholders_notified
from gendev_release.report import AgentReport, Evidence, ReportBuilder, sha256_file
from gendev_release.spec import ReleaseSpec, parse_spec
from gendev_release.webhook_rules import conn_env_var

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


# ================================================================================== webhooks
HOOK = "release_hook"
PASSWORD = "pw-Zk3v9QxL2mR8tY4w"  # what the connection holds; it must never leave the request
TOKEN = "tok-Hq7Ns2Wd5Vb1Jc6X"
BASIC_AUTH = "Basic " + base64.b64encode(f"notifier:{PASSWORD}".encode()).decode()


def webhook(**fields: Any) -> dict[str, Any]:
    return {"kind": "webhook", "conn_id": HOOK, "endpoint": "/hooks/release", **fields}


def send(spec: ReleaseSpec, home: Path, severity: notify.Severity = "warning") -> notify.NotificationResult:
    return notify.send(spec, home, event="release_aborted", severity=severity, subject="demo 1.1.0 aborted",
                       body="Failed: p3_build.build.", run_id="manual__1")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[WebhookReceiver]:
    """A receiver answering ``{"ok": true, "id": "m-1"}``, reached through the connection ``release_hook``."""
    with WebhookReceiver(body=b'{"ok": true, "id": "m-1"}') as running:
        monkeypatch.setenv(conn_env_var(HOOK), running.connection(
            login="notifier", password=PASSWORD, headers={"X-Receiver-Token": TOKEN}))
        yield running


def test_a_webhook_delivery_is_confirmed_by_the_receivers_answer(tmp_path: Path, receiver: WebhookReceiver) -> None:
    spec = spec_with({"channels": [webhook(expect_json={"ok": True}, expect_body_contains="m-1")]})

    result = send(spec, tmp_path)

    [request] = receiver.requests
    assert (request.method, request.path, request.headers["Content-Type"]) == (
        "POST", "/hooks/release", "application/json")
    # the connection's credentials and extra headers were used
    assert (request.headers["Authorization"], request.headers["X-Receiver-Token"]) == (BASIC_AUTH, TOKEN)
    message = request.json()
    assert (message["event"], message["severity"], message["subject"], message["recipients"], message["run_id"]) == (
        "release_aborted", "warning", "demo 1.1.0 aborted", RECIPIENTS, "manual__1")
    assert result.ok and result.failures == [] and result.skipped == []
    [evidence] = result.delivered
    answer = b'{"ok": true, "id": "m-1"}'
    assert (evidence.kind, evidence.source, evidence.sha256) == ("http", "webhook release_hook:/hooks/release",
                                                                 sha256(answer))
    data = evidence.data
    assert (data["delivered"], data["channel"], data["field"], data["http_status"]) == (
        True, "webhook", "notifications.channels[0].conn_id", 200)
    assert (data["request_sha256"], data["answer_sha256"], data["answer_bytes"]) == (
        sha256(request.body), sha256(answer), len(answer))
    assert data["message"] == message
    assert data["expected"] == {"status": "2xx", "json": {"ok": True}, "body_contains": "m-1"}


def test_no_secret_of_the_connection_reaches_the_result_the_evidence_or_the_logs(
        tmp_path: Path, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    with WebhookReceiver(status=500, body=f"internal error; you sent {TOKEN}".encode()) as failing:
        monkeypatch.setenv(conn_env_var("failing_hook"), failing.connection(
            login="notifier", password=PASSWORD, headers={"X-Receiver-Token": TOKEN}))
        spec = spec_with({"channels": [webhook(), webhook(conn_id="failing_hook"),
                                       webhook(conn_id="failing_hook", endpoint="/critical", min_severity="critical"),
                                       webhook(conn_id="undefined_hook")]})
        result = send(spec, tmp_path)

    assert [(r.headers["Authorization"], r.headers["X-Receiver-Token"])
            for r in [*receiver.requests, *failing.requests]] == [(BASIC_AUTH, TOKEN)] * 2
    assert [len(result.delivered), len(result.failures), len(result.skipped)] == [1, 2, 1]
    recorded = [result.model_dump_json(), result.summary,
                *(e.model_dump_json() for e in [*(f.evidence() for f in result.failures),
                                                 *(s.evidence() for s in result.skipped)])]
    logged = capfd.readouterr()
    for secret in (PASSWORD, TOKEN, BASIC_AUTH, "127.0.0.1"):  # not even the connection's host
        assert [secret in text for text in recorded] == [False] * len(recorded), secret
    for secret in (PASSWORD, TOKEN, BASIC_AUTH):
        assert secret not in logged.out + logged.err + caplog.text


def test_a_receiver_answering_500_is_a_named_failure_and_the_file_channel_still_delivers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with WebhookReceiver(status=500, body=b"boom") as failing:
        monkeypatch.setenv(conn_env_var(HOOK), failing.connection())
        spec = spec_with({"channels": [webhook(), {"kind": "file", "path": "notifications/ops.jsonl"}]})
        result = send(spec, tmp_path)

    assert not result.ok and result.any_delivered
    assert [Path(e.source).name for e in result.delivered] == ["ops.jsonl"]
    [failure] = result.failures
    assert (failure.field, failure.channel, failure.kind, failure.reason, failure.http_status) == (
        "notifications.channels[0].endpoint", "release_hook:/hooks/release", "webhook", "http_status", 500)
    assert (failure.request_sha256, failure.answer_sha256) == (sha256(failing.requests[0].body), sha256(b"boom"))
    assert failure.error == "the receiver answered HTTP 500 (expected 2xx)"
    evidence = failure.evidence()
    assert (evidence.kind, evidence.sha256, evidence.data["delivered"], evidence.data["http_status"]) == (
        "http", None, False, 500)
    assert result.summary.endswith("through 1 of 2 channel(s); failed: notifications.channels[0].endpoint "
                                   "'release_hook:/hooks/release': the receiver answered HTTP 500 (expected 2xx)")


@pytest.mark.parametrize(("expect", "status", "answer", "field", "error"), [
    ({"expect_json": {"ok": True}}, 200, b'{"ok": false}', "expect_json", "the answer's 'ok' is false, expected true"),
    ({"expect_json": {"ok": True}}, 200, b'{"ok": 1}', "expect_json", "the answer's 'ok' is 1, expected true"),
    ({"expect_json": {"result.id": "m-1"}}, 200, b'{"result": {}}', "expect_json",
     "the answer has no field 'result.id'"),
    ({"expect_json": {"ok": True}}, 200, b"OK", "expect_json",
     'the answer (2 bytes) is not JSON; expected {"ok": true}'),
    ({"expect_body_contains": "queued"}, 200, b"dropped", "expect_body_contains",
     "the answer (7 bytes) does not contain 'queued'"),
    ({"expect_status": 202}, 200, b"", "expect_status", "the receiver answered HTTP 200 (expected 202)"),
    ({}, 302, b"", "endpoint", "the receiver answered HTTP 302 (expected 2xx)"),  # a redirect is not followed
])
def test_an_answer_without_the_expected_acknowledgement_is_not_a_delivery(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, expect: dict[str, Any], status: int, answer: bytes,
        field: str, error: str) -> None:
    with WebhookReceiver(status=status, body=answer) as running:
        monkeypatch.setenv(conn_env_var(HOOK), running.connection())
        result = send(spec_with({"channels": [webhook(**expect)]}), tmp_path)
    assert result.delivered == []
    assert [(f.field, f.reason, f.http_status, f.error) for f in result.failures] == [
        (f"notifications.channels[0].{field}", "unexpected_answer" if field.startswith("expect_j") or
         field == "expect_body_contains" else "http_status", status, error)]


def test_a_channel_gets_only_messages_at_or_above_its_min_severity(tmp_path: Path, receiver: WebhookReceiver) -> None:
    spec = spec_with({"channels": [{"kind": "file", "path": "notifications/all.jsonl"},
                                   webhook(min_severity="critical")]})

    warning = send(spec, tmp_path, severity="warning")

    assert receiver.requests == []
    assert warning.ok and warning.failures == [] and [Path(e.source).name for e in warning.delivered] == ["all.jsonl"]
    [skipped] = warning.skipped
    assert (skipped.field, skipped.channel, skipped.severity, skipped.min_severity) == (
        "notifications.channels[1].min_severity", "release_hook:/hooks/release", "warning", "critical")
    assert {k: skipped.evidence().data[k] for k in ("delivered", "sent", "reason")} == {
        "delivered": False, "sent": False, "reason": "below_min_severity"}
    assert "not sent: below min_severity (warning < critical)" in skipped.describe()
    assert warning.summary.endswith("through 1 of 1 channel(s); not sent (below min_severity): "
                                    "release_hook:/hooks/release")

    critical = send(spec, tmp_path, severity="critical")

    assert [r.json()["severity"] for r in receiver.requests] == ["critical"]
    assert critical.ok and critical.skipped == [] and [e.kind for e in critical.delivered] == ["file", "http"]


def test_an_undefined_connection_is_a_failure_that_says_how_to_define_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_NO_SUCH_HOOK", raising=False)
    spec = spec_with({"channels": [webhook(conn_id="no_such_hook"), {"kind": "file", "path": "n.jsonl"}]})

    result = send(spec, tmp_path)

    [failure] = result.failures
    assert (failure.field, failure.reason, failure.request_sha256) == (
        "notifications.channels[0].conn_id", "connection_not_found", None)
    assert failure.error.startswith("Airflow connection 'no_such_hook' is not defined; define it in the Airflow UI "
                                    "(Admin > Connections")
    assert "or as the environment variable AIRFLOW_CONN_NO_SUCH_HOOK (outside a task" in failure.error
    assert [e.kind for e in result.delivered] == ["file"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_receiver_a_silent_one_and_a_connection_without_host_are_failures(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(conn_env_var("down_hook"), json.dumps(
        {"conn_type": "http", "host": "127.0.0.1", "port": free_port(), "schema": "http"}))
    monkeypatch.setenv(conn_env_var("hostless_hook"), json.dumps({"conn_type": "http", "password": PASSWORD}))
    with WebhookReceiver(hold=True) as silent:  # takes the request, never answers until it stops
        monkeypatch.setenv(conn_env_var("silent_hook"), silent.connection())
        spec = spec_with({"channels": [webhook(conn_id="down_hook"),
                                       webhook(conn_id="silent_hook", timeout_seconds=0.5),
                                       webhook(conn_id="hostless_hook"), {"kind": "file", "path": "n.jsonl"}]})
        result = send(spec, tmp_path)

    assert [(f.field, f.reason) for f in result.failures] == [
        ("notifications.channels[0].conn_id", "unreachable"),
        ("notifications.channels[1].timeout_seconds", "timeout"),
        ("notifications.channels[2].conn_id", "connection_invalid")]
    down, silent_failure, hostless = result.failures
    assert down.error == "could not connect to the host of connection 'down_hook': [Errno 111] Connection refused"
    assert silent_failure.error == "no answer from the host of connection 'silent_hook' within 0.5 s"
    assert hostless.error.startswith("Airflow connection 'hostless_hook' has no host; set its host")
    assert [e.kind for e in result.delivered] == ["file"]


# ---------------------------------------------------------------------------- the checklist line
def notifications_report(result: notify.NotificationResult) -> AgentReport:
    phase, step = step_by_id("notifications")
    builder = ReportBuilder(phase, step, service="demo", version="1.1.0", run_id="run-1")
    for kind in ("read", "check"):
        builder.evidence(kind, Evidence(kind="computed", source="test"))
        builder.verdict(kind, True, "ok")
    for evidence in [*result.delivered, *(f.evidence() for f in result.failures)]:
        builder.evidence("verify", evidence)
    builder.verdict("verify", True, result.summary)  # as if the duty had passed it: the line looks for itself
    return builder.finish()


def test_the_checklist_counts_a_webhook_delivery_only_when_the_receiver_confirmed_it(
        tmp_path: Path, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_with({"channels": [webhook()]})
    confirmed = stakeholders_notified(RunFacts(reports={"notifications": notifications_report(send(spec, tmp_path))},
                                               spec=spec, version="1.1.0"))
    assert (confirmed.state, confirmed.detail) == (
        "done", "delivered through 1 channel(s): release_hook:/hooks/release (webhook, HTTP 200)")

    receiver.answer.status = 500
    refused = stakeholders_notified(RunFacts(reports={"notifications": notifications_report(send(spec, tmp_path))},
                                             spec=spec, version="1.1.0"))
    assert (refused.state, refused.detail) == (
        "not_done", "no channel recorded a delivery (a message read back from the channel, with its digest)")


# ======================================================================= webhook fields in the spec
@pytest.mark.parametrize(("channel", "field", "message"), [
    (webhook(endpoint="https://notifier:hunter2secret@hooks.example.com/release"), "notifications.channels.0.endpoint",
     "endpoint holds a secret ('https://***@hooks.example.com/release'): url_credentials; secrets never go in "
     "the spec"),
    (webhook(conn_id="https://notifier:hunter2secret@hooks.example.com"), "notifications.channels.0.conn_id",
     "conn_id 'https://***@hooks.example.com' is a URL; give the id of an Airflow HTTP connection"),
    (webhook(endpoint="/hooks/release?token=hunter2secret"), "notifications.channels.0.endpoint",
     "endpoint holds a secret: assignment to token; secrets never go in the spec"),
    (webhook(endpoint="/services/T0AB12CD3/B0EF45GH6/q8Xz2LmP9vR4sT7wK1nY3bC6"), "notifications.channels.0.endpoint",
     "endpoint holds a secret: high-entropy string"),
    (webhook(expect_body_contains="https://:hunter2secret@hooks.example.com"),
     "notifications.channels.0.expect_body_contains", "expect_body_contains holds a secret ('https://***@"),
    (webhook(endpoint="https://hooks.example.com/release"), "notifications.channels.0.endpoint",
     "endpoint 'https://hooks.example.com/release' is a URL; give only the path (e.g. '/release') and put the "
     "scheme and host (https://hooks.example.com) in the Airflow connection named by conn_id"),
    (webhook(conn_id="release hook"), "notifications.channels.0.conn_id",
     "conn_id 'release hook' is not an Airflow connection id"),
    ({"kind": "webhook", "endpoint": "/x"}, "notifications.channels.0.conn_id", "required field is missing"),
    (webhook(expect_status=500), "notifications.channels.0.expect_status", "less than or equal to 299"),
    (webhook(min_severity="debug"), "notifications.channels.0.min_severity", "'info', 'warning' or 'critical'"),
    (webhook(url="https://hooks.example.com"), "notifications.channels.0.url", "unknown field"),
    ({"kind": "slack", "channel": "#releases"}, "notifications.channels.0",
     "unknown channel kind 'slack'; use one of: file, webhook"),
])
def test_bad_webhook_channels_are_refused_at_load_time_without_echoing_a_secret(
        channel: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(SpecError) as raised:
        spec_with({"channels": [{"kind": "file", "path": "n.jsonl"}, channel][1:]})
    assert [(p.field, message in p.message) for p in raised.value.problems] == [(field, True)], raised.value.problems
    assert "hunter2secret" not in str(raised.value)


def test_a_spec_whose_channels_all_filter_out_info_is_refused() -> None:
    with pytest.raises(SpecError) as raised:
        spec_with({"channels": [webhook(min_severity="warning"),
                                {"kind": "file", "path": "n.jsonl", "min_severity": "critical"}]})
    [problem] = raised.value.problems
    assert problem.field == "notifications.channels"
    assert problem.message.startswith("no channel takes info messages (every min_severity is above info)")


def test_the_same_webhook_twice_is_refused_and_webhooks_list_with_their_label() -> None:
    with pytest.raises(SpecError) as raised:
        spec_with({"channels": [webhook(), webhook(min_severity="critical")]})
    assert [(p.field, p.message) for p in raised.value.problems] == [
        ("notifications.channels", "channels[1] repeats the webhook 'release_hook:/hooks/release' of channels[0]; "
                                   "list each webhook once")]
    spec = spec_with({"channels": [webhook(), webhook(endpoint="")]})
    assert [(c.kind, c.label) for c in spec.notifications.all_channels] == [
        ("webhook", "release_hook:/hooks/release"), ("webhook", "release_hook")]
    assert [f for f, _ in spec.notifications.channel_fields()] == [
        "notifications.channels[0].conn_id", "notifications.channels[1].conn_id"]
