"""Notifications to stakeholders through every channel of the spec, with delivery recorded as evidence.

Two kinds of channel, one sender each (:data:`SENDERS`):

* ``file``: one JSON line appended to a file inside the gendev home; delivered when the line reads
  back, recorded with the file's digest. The demo uses it.
* ``webhook``: the same JSON message POSTed through an Airflow HTTP Connection with providers-http's
  ``HttpHook``; delivered only when the receiver's answer confirms it (status 2xx, or the status,
  JSON fields and text the spec expects). The evidence records the HTTP status and the digests of
  the request and of the answer; never the connection's URL, login, password or headers.

Each channel gets the messages at or above its ``min_severity``; a message below it is recorded
as "not sent: below min_severity" (:class:`SkippedChannel`), neither a delivery nor a failure.
:func:`send` never raises for a channel that fails: the failure is part of the returned
:class:`NotificationResult`, so one broken channel neither hides the message from the others nor
turns "tell everyone about the abort" into an exception.

Connections resolve through Airflow's secrets chain (``BaseHook.get_connection``): inside a task,
environment variables ``AIRFLOW_CONN_<ID>``, then the Execution API (connections defined in the
UI or CLI); in a plain process (CLI, tests), environment variables and any configured secrets
backend, but not the metadata database.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gendev_release.paths import PathEscape, resolve_inside
from gendev_release.report import Evidence, sha256_file, utcnow
from gendev_release.spec import FileChannel, ReleaseSpec, WebhookChannel
from gendev_release.webhook_rules import CONNECTION_HINT, Severity, at_least, conn_env_var, judge_answer

__all__ = ["ChannelFailure", "NotificationResult", "Severity", "SkippedChannel", "send"]

ChannelKind = Literal["file", "webhook"]
FailureReason = Literal[
    "path_escape",  # a file channel leaving the gendev home
    "io_error",  # a file that cannot be written or read back
    "connection_not_found",  # no Airflow connection with the channel's conn_id
    "connection_invalid",  # the connection cannot be looked up or has no host
    "unreachable",  # no TCP/TLS connection to the receiver
    "timeout",  # no answer within timeout_seconds
    "request_failed",  # the request could not be sent for another reason
    "http_status",  # the receiver answered with a status that is not the expected one
    "unexpected_answer",  # the answer lacks the JSON fields or text the spec expects
]


class ChannelFailure(BaseModel):
    """One channel that did not get the message, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str
    """The spec field to look at: ``notifications.channels[1].path``, ``notifications.channels[0].conn_id``."""
    channel: str
    """The channel as reports name it: a file channel's path, a webhook's ``conn_id:endpoint``."""
    path: str | None
    """The resolved file, when a file channel's path resolved inside the gendev home."""
    error: str
    """What went wrong: ``IsADirectoryError: [Errno 21] Is a directory: '...'``, ``the receiver answered HTTP 500``."""
    kind: ChannelKind = "file"
    reason: FailureReason = "io_error"
    http_status: int | None = None
    """The receiver's status, when it answered."""
    request_sha256: str | None = None
    """Digest of the request body, when a request was sent."""
    answer_sha256: str | None = None
    """Digest of the answer body, when the receiver answered."""

    def describe(self) -> str:
        return f"{self.field} {self.channel!r}: {self.error}"

    def __str__(self) -> str:
        return self.describe()

    def evidence(self) -> Evidence:
        """The failed attempt as evidence (no ``sha256``: nothing was delivered)."""
        data: dict[str, Any] = {"delivered": False, "field": self.field, "channel": self.kind,
                                "channel_path": self.channel, "error": self.error, "reason": self.reason}
        if self.kind == "webhook":
            data.update(http_status=self.http_status, request_sha256=self.request_sha256,
                        answer_sha256=self.answer_sha256)
            return Evidence(kind="http", source=f"webhook {self.channel}", summary=f"NOT delivered: {self.describe()}",
                            data=data)
        return Evidence(kind="file", source=self.path or self.channel, summary=f"NOT delivered: {self.describe()}",
                        data=data)


class SkippedChannel(BaseModel):
    """A channel the message was not sent to because its severity is below the channel's ``min_severity``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str
    """``notifications.channels[2].min_severity``."""
    channel: str
    kind: ChannelKind
    severity: Severity
    min_severity: Severity

    def describe(self) -> str:
        return (f"{self.field} {self.channel!r}: not sent: below min_severity "
                f"({self.severity} < {self.min_severity})")

    def evidence(self) -> Evidence:
        return Evidence(kind="computed", source=self.channel, summary=self.describe(),
                        data={"delivered": False, "sent": False, "reason": "below_min_severity", "field": self.field,
                              "channel": self.kind, "channel_path": self.channel, "severity": self.severity,
                              "min_severity": self.min_severity})


class NotificationResult(BaseModel):
    """What :func:`send` achieved, channel by channel."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event: str
    severity: Severity
    subject: str
    recipients: list[str]
    delivered: list[Evidence]
    """One evidence per channel that delivered: a file channel's line read back (``kind="file"``, the
    file's digest), or a webhook's confirming answer (``kind="http"``, the answer's digest)."""
    failures: list[ChannelFailure]
    """One entry per channel that did not deliver."""
    skipped: list[SkippedChannel] = Field(default_factory=list)
    """Channels whose ``min_severity`` is above this message's severity: not sent, not failed."""

    @property
    def ok(self) -> bool:
        """Every channel that was due delivered (at least one)."""
        return bool(self.delivered) and not self.failures

    @property
    def any_delivered(self) -> bool:
        return bool(self.delivered)

    @property
    def summary(self) -> str:
        """One line: what was sent, to how many recipients, through which channels, what failed or was not sent."""
        total = len(self.delivered) + len(self.failures)
        text = (f"{self.severity} '{self.subject}' delivered to {len(self.recipients)} recipient(s) through "
                f"{len(self.delivered)} of {total} channel(s)")
        if self.failures:
            text += "; failed: " + "; ".join(f.describe() for f in self.failures)
        if self.skipped:
            text += "; not sent (below min_severity): " + ", ".join(s.channel for s in self.skipped)
        return text


@dataclass(frozen=True)
class Outgoing:
    """One message as every channel gets it."""

    message: dict[str, Any]
    line: str
    """The message as one JSON text: a file channel's line, a webhook's request body."""
    home: Path

    @property
    def headline(self) -> str:
        return f"{self.message['severity']} '{self.message['subject']}'"

    @property
    def recipients(self) -> list[str]:
        return list(self.message["recipients"])


# ------------------------------------------------------------------------------------------- file
def channel_path(home: Path, field: str, channel: FileChannel) -> Path:
    """The channel's file inside ``home``; :class:`~gendev_release.paths.PathEscape` when it would leave it."""
    return resolve_inside(home, channel.path, field)


def _deliver(path: Path, line: str) -> None:
    """Append ``line`` and read it back; ``OSError`` when the file cannot be written or the line is not there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    if line not in path.read_text(encoding="utf-8").splitlines():
        raise OSError(f"notification was written to {path} but could not be read back")


def send_file(place: str, channel: FileChannel, out: Outgoing) -> Evidence | ChannelFailure:
    """Append the message to the channel's file and read it back."""
    field = f"{place}.path"
    path: Path | None = None
    try:
        path = channel_path(out.home, field, channel)
        _deliver(path, out.line)
        return Evidence(kind="file", source=str(path), sha256=sha256_file(path),
                        summary=f"{out.headline} delivered to {len(out.recipients)} recipient(s)",
                        data={"message": out.message, "channel": channel.kind, "field": field,
                              "channel_path": channel.path, "delivered": True})
    except (OSError, ValueError) as exc:  # PathEscape is a ValueError; UnicodeDecodeError on read-back too
        return ChannelFailure(field=field, channel=channel.path, path=str(path) if path else None,
                              error=f"{type(exc).__name__}: {exc}",
                              reason="path_escape" if isinstance(exc, PathEscape) else "io_error")


# ---------------------------------------------------------------------------------------- webhook
_ERRNO_RE = re.compile(r"\[Errno -?\d+\] [^'\")\]]+")


def _socket_error(exc: BaseException) -> str:
    """The operating system's reason (``[Errno 111] Connection refused``), without the URL that requests adds."""
    found = _ERRNO_RE.search(str(exc))
    return found.group(0).strip() if found else type(exc).__name__


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def send_webhook(place: str, channel: WebhookChannel, out: Outgoing) -> Evidence | ChannelFailure:
    """POST the message through the channel's Airflow HTTP connection; delivered when the answer confirms it.

    Never raises for the receiver, the network or the connection: each is a :class:`ChannelFailure`
    naming the spec field to look at. The connection's response check is switched off (the answer
    is judged here, and providers-http would log the answer's body) and redirects are not followed
    (they would carry the connection's headers to another host).
    """
    import requests
    from airflow.providers.http.hooks.http import HttpHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    body = out.line.encode("ascii")  # json.dumps escapes every non-ASCII character: these are the bytes sent
    request_sha256 = _sha256(body)

    def failure(suffix: str, reason: FailureReason, error: str, *, http_status: int | None = None,
                sent: bool = False, answer_sha256: str | None = None) -> ChannelFailure:
        return ChannelFailure(field=f"{place}.{suffix}", channel=channel.label, path=None, error=error,
                              kind="webhook", reason=reason, http_status=http_status,
                              request_sha256=request_sha256 if sent else None, answer_sha256=answer_sha256)

    hook = HttpHook(method="POST", http_conn_id=channel.conn_id)
    try:
        connection = hook.get_connection(channel.conn_id)
    except AirflowNotFoundException:
        return failure("conn_id", "connection_not_found",
                       f"Airflow connection {channel.conn_id!r} is not defined; "
                       + CONNECTION_HINT.format(env=conn_env_var(channel.conn_id)))
    except Exception as exc:  # a secrets backend or the Execution API failing: reported, never raised
        return failure("conn_id", "connection_invalid",
                       f"Airflow connection {channel.conn_id!r} could not be looked up ({type(exc).__name__})")
    if not connection.host:
        return failure("conn_id", "connection_invalid",
                       f"Airflow connection {channel.conn_id!r} has no host; set its host (and port, schema) to the "
                       "receiver's, e.g. " + CONNECTION_HINT.format(env=conn_env_var(channel.conn_id)))
    try:
        response = hook.run(channel.endpoint, data=out.line, headers={"Content-Type": "application/json"},
                            extra_options={"timeout": channel.timeout_seconds, "check_response": False,
                                           "allow_redirects": False})
    except requests.Timeout:  # before ConnectionError: a connect timeout is both
        return failure("timeout_seconds", "timeout", f"no answer from the host of connection {channel.conn_id!r} "
                       f"within {channel.timeout_seconds:g} s", sent=True)
    except requests.ConnectionError as exc:
        return failure("conn_id", "unreachable", f"could not connect to the host of connection "
                       f"{channel.conn_id!r}: {_socket_error(exc)}", sent=True)
    except Exception as exc:  # requests' InvalidURL and the like; the text may hold the URL, so only the type
        return failure("conn_id", "request_failed", f"the request through connection {channel.conn_id!r} could not "
                       f"be sent ({type(exc).__name__})", sent=True)
    with response:
        status, answer = response.status_code, response.content
    answer_sha256 = _sha256(answer)
    problem = judge_answer(status, answer, expect_status=channel.expect_status, expect_json=channel.expect_json,
                           expect_body_contains=channel.expect_body_contains)
    if problem is not None:
        return failure(problem.field, problem.reason, problem.message, http_status=status, sent=True,
                       answer_sha256=answer_sha256)
    expected = {"status": channel.expect_status or "2xx", "json": channel.expect_json,
                "body_contains": channel.expect_body_contains}
    return Evidence(kind="http", source=f"webhook {channel.label}", sha256=answer_sha256,
                    summary=f"{out.headline} acknowledged by webhook {channel.label} (HTTP {status}) for "
                            f"{len(out.recipients)} recipient(s)",
                    data={"message": out.message, "channel": channel.kind, "field": f"{place}.conn_id",
                          "channel_path": channel.label, "conn_id": channel.conn_id, "endpoint": channel.endpoint,
                          "method": "POST", "http_status": status, "request_sha256": request_sha256,
                          "request_bytes": len(body), "answer_sha256": answer_sha256, "answer_bytes": len(answer),
                          "expected": expected, "delivered": True})


# ------------------------------------------------------------------------------------------- send
#: channel model -> its sender; a new kind of channel is a model in the spec and an entry here.
SENDERS: dict[type, Callable[[str, Any, Outgoing], Evidence | ChannelFailure]] = {
    FileChannel: send_file,
    WebhookChannel: send_webhook,
}


def send(spec: ReleaseSpec, home: Path, *, event: str, severity: Severity, subject: str, body: str,
         audiences: list[str] | None = None, **extra: Any) -> NotificationResult:
    """Deliver one message to every channel of the spec, for every recipient of ``audiences`` (default: all).

    Never raises for a channel that fails (a path leaving the gendev home, a file that cannot be
    written or read back, an undefined connection, a receiver that is down or answers 500): the
    failure is in :attr:`NotificationResult.failures` and the other channels still get the message.
    A channel whose ``min_severity`` is above ``severity`` is in :attr:`NotificationResult.skipped`.

    :param spec: the release spec (``notifications.channel`` or ``notifications.channels``).
    :param home: the gendev home; every file channel lies inside it.
    :param extra: more JSON fields of the message (``run_id``, ``version``).
    :raises ValueError: when ``audiences`` names an audience the spec does not list (a caller's bug).
    """
    notifications = spec.notifications
    audiences = audiences or sorted(notifications.stakeholders)
    unknown = [a for a in audiences if a not in notifications.stakeholders]
    if unknown:
        raise ValueError(f"unknown audience(s) {unknown}; the spec lists {sorted(notifications.stakeholders)}")
    recipients = sorted({r for a in audiences for r in notifications.stakeholders[a]})
    message = {"sent_at": utcnow().isoformat(), "service": spec.service, "event": event, "severity": severity,
               "subject": subject, "body": body, "audiences": audiences, "recipients": recipients, **extra}
    out = Outgoing(message=message, line=json.dumps(message, sort_keys=True, default=str), home=home)
    delivered: list[Evidence] = []
    failures: list[ChannelFailure] = []
    skipped: list[SkippedChannel] = []
    for place, channel in notifications.channel_places():
        if not at_least(severity, channel.min_severity):
            skipped.append(SkippedChannel(field=f"{place}.min_severity", channel=channel.label, kind=channel.kind,
                                          severity=severity, min_severity=channel.min_severity))
            continue
        outcome = SENDERS[type(channel)](place, channel, out)
        if isinstance(outcome, ChannelFailure):
            failures.append(outcome)
        else:
            delivered.append(outcome)
    return NotificationResult(event=event, severity=severity, subject=subject, recipients=recipients,
                              delivered=delivered, failures=failures, skipped=skipped)
