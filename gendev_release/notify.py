"""Notifications to stakeholders through the spec's channel, with delivery recorded as evidence.

The ``file`` channel appends one JSON line per message under the gendev home; delivery is proven
by reading the line back and recording the file's digest. HTTP channels through Airflow
Connections come later (ROADMAP 1) behind the same :func:`send` function.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from gendev_release.report import Evidence, sha256_file, utcnow
from gendev_release.spec import ReleaseSpec

Severity = Literal["info", "warning", "critical"]


def channel_path(spec: ReleaseSpec, home: Path) -> Path:
    path = Path(spec.notifications.channel.path)
    return path if path.is_absolute() else home / path


def send(spec: ReleaseSpec, home: Path, *, event: str, severity: Severity, subject: str,
         body: str, audiences: list[str] | None = None, **extra: Any) -> Evidence:
    """Deliver one message to every recipient of ``audiences`` (default: all); return the delivery evidence.

    Raises ``OSError`` when the channel cannot be written: a notification that was not delivered
    must never be reported as sent.
    """
    audiences = audiences or sorted(spec.notifications.stakeholders)
    unknown = [a for a in audiences if a not in spec.notifications.stakeholders]
    if unknown:
        raise ValueError(f"unknown audience(s) {unknown}; the spec lists {sorted(spec.notifications.stakeholders)}")
    recipients = sorted({r for a in audiences for r in spec.notifications.stakeholders[a]})
    message = {"sent_at": utcnow().isoformat(), "service": spec.service, "event": event, "severity": severity,
               "subject": subject, "body": body, "audiences": audiences, "recipients": recipients, **extra}
    path = channel_path(spec, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(message, sort_keys=True, default=str)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    delivered = line in path.read_text(encoding="utf-8").splitlines()
    if not delivered:
        raise OSError(f"notification was written to {path} but could not be read back")
    return Evidence(kind="file", source=str(path), sha256=sha256_file(path),
                    summary=f"{severity} '{subject}' delivered to {len(recipients)} recipient(s)",
                    data={"message": message, "channel": "file"})
