"""Notifications to stakeholders through every channel of the spec, with delivery recorded as evidence.

A ``file`` channel appends one JSON line per message to a file inside the gendev home; delivery
is proven by reading the line back and recording the file's digest. :func:`send` delivers to
every channel and never raises for a channel that fails: the failure is part of the returned
:class:`NotificationResult`, so one broken channel neither hides the message from the others
nor turns "tell everyone about the abort" into an exception. HTTP channels through Airflow
Connections come later (ROADMAP 1) behind the same function.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from gendev_release.paths import resolve_inside
from gendev_release.report import Evidence, sha256_file, utcnow
from gendev_release.spec import FileChannel, ReleaseSpec

Severity = Literal["info", "warning", "critical"]


class ChannelFailure(BaseModel):
    """One channel that did not get the message, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str
    """The spec field naming the channel: ``notifications.channels[1].path``."""
    channel: str
    """The channel's path as the spec gives it (relative to the gendev home)."""
    path: str | None
    """The resolved file, when the path resolved inside the gendev home."""
    error: str
    """What went wrong: ``IsADirectoryError: [Errno 21] Is a directory: '...'``."""

    def describe(self) -> str:
        return f"{self.field} {self.channel!r}: {self.error}"

    def __str__(self) -> str:
        return self.describe()

    def evidence(self) -> Evidence:
        """The failed attempt as evidence (no digest: nothing was delivered)."""
        return Evidence(kind="file", source=self.path or self.channel, summary=f"NOT delivered: {self.describe()}",
                        data={"delivered": False, "field": self.field, "channel_path": self.channel,
                              "error": self.error})


class NotificationResult(BaseModel):
    """What :func:`send` achieved, channel by channel."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event: str
    severity: Severity
    subject: str
    recipients: list[str]
    delivered: list[Evidence]
    """One file evidence per channel that delivered (the line was read back; digest of the file)."""
    failures: list[ChannelFailure]
    """One entry per channel that did not deliver."""

    @property
    def ok(self) -> bool:
        """Every channel delivered."""
        return bool(self.delivered) and not self.failures

    @property
    def any_delivered(self) -> bool:
        return bool(self.delivered)

    @property
    def summary(self) -> str:
        """One line: what was sent, to how many recipients, through which channels, what failed."""
        total = len(self.delivered) + len(self.failures)
        text = (f"{self.severity} '{self.subject}' delivered to {len(self.recipients)} recipient(s) through "
                f"{len(self.delivered)} of {total} channel(s)")
        if self.failures:
            text += "; failed: " + "; ".join(f.describe() for f in self.failures)
        return text


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


def send(spec: ReleaseSpec, home: Path, *, event: str, severity: Severity, subject: str, body: str,
         audiences: list[str] | None = None, **extra: Any) -> NotificationResult:
    """Deliver one message to every channel of the spec, for every recipient of ``audiences`` (default: all).

    Never raises for a channel that fails (a path leaving the gendev home, a file that cannot be
    written or read back): the failure is in :attr:`NotificationResult.failures` and the other
    channels still get the message.

    :param spec: the release spec (``notifications.channel`` or ``notifications.channels``).
    :param home: the gendev home; every channel file lies inside it.
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
    line = json.dumps(message, sort_keys=True, default=str)
    delivered: list[Evidence] = []
    failures: list[ChannelFailure] = []
    for field, channel in notifications.channel_fields():
        path: Path | None = None
        try:
            path = channel_path(home, field, channel)
            _deliver(path, line)
            evidence = Evidence(kind="file", source=str(path), sha256=sha256_file(path),
                                summary=f"{severity} '{subject}' delivered to {len(recipients)} recipient(s)",
                                data={"message": message, "channel": channel.kind, "field": field,
                                      "channel_path": channel.path, "delivered": True})
        except (OSError, ValueError) as exc:  # PathEscape is a ValueError; UnicodeDecodeError on read-back too
            failures.append(ChannelFailure(field=field, channel=channel.path, path=str(path) if path else None,
                                           error=f"{type(exc).__name__}: {exc}"))
        else:
            delivered.append(evidence)
    return NotificationResult(event=event, severity=severity, subject=subject, recipients=recipients,
                              delivered=delivered, failures=failures)
