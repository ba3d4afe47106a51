"""What a client saw while traffic moved: requests to every critical endpoint through the router.

:class:`SwitchObserver` sends GETs around a switch, cycling through the spec's critical endpoints
(``/healthz`` alone would not show a version that fails a quarter of its API requests);
:func:`tally_by_path` counts, per endpoint, the requests that got no answer or a 5xx. A request
that failed is downtime a client saw; zero-downtime holds only when every critical endpoint was
observed and none of its requests failed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from gendev_release.probes import http_get

PHASES: tuple[str, ...] = ("before", "during", "after")


@dataclass(frozen=True)
class ObservedRequest:
    """One request sent through the router while the switch happened."""

    phase: str  # before | during | after
    at_seconds: float
    status: int | None
    seconds: float
    served_version: str | None
    error: str | None = None
    path: str = ""

    @property
    def failed(self) -> bool:
        return self.status is None or self.status >= 500


@dataclass(frozen=True)
class PathTally:
    """Requests to one endpoint in the counted phases, and how many of them failed."""

    observed: int
    failed: int


def count_failed(requests: Sequence[ObservedRequest], phases: Sequence[str] = PHASES) -> int:
    """Requests of ``phases`` that got no answer or a 5xx: each is downtime a client saw."""
    return sum(1 for request in requests if request.failed and request.phase in phases)


def tally_by_path(requests: Sequence[ObservedRequest], paths: Sequence[str],
                  phases: Sequence[str] = PHASES) -> dict[str, PathTally]:
    """Per endpoint (every one of ``paths``, also those never reached): requests observed and failed."""
    tally = {}
    for path in dict.fromkeys(paths):
        counted = [r for r in requests if r.path == path and r.phase in phases]
        tally[path] = PathTally(observed=len(counted), failed=sum(1 for r in counted if r.failed))
    return tally


def tally_by_phase(requests: Sequence[ObservedRequest]) -> dict[str, dict[str, Any]]:
    """Per phase (before, during, after the switch): requests, failures, and which versions answered.

    The traffic move as a client saw it: the old version's answers before the switch, the new
    one's after it, and any mix in between (``"(no version)"`` counts answers naming none).
    """
    phases: dict[str, dict[str, Any]] = {}
    for phase in PHASES:
        counted = [r for r in requests if r.phase == phase]
        versions: dict[str, int] = {}
        for request in counted:
            key = request.served_version or "(no version)"
            versions[key] = versions.get(key, 0) + 1
        by_path: dict[str, dict[str, int]] = {}
        for request in counted:
            entry = by_path.setdefault(request.path, {"observed": 0, "failed": 0})
            entry["observed"] += 1
            entry["failed"] += int(request.failed)
        phases[phase] = {"requests": len(counted), "failed": sum(1 for r in counted if r.failed),
                         "versions": versions, "by_path": by_path}
    return phases


def served_version(body: str) -> str | None:
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    version = payload.get("version") if isinstance(payload, dict) else None
    return str(version) if version is not None else None


class SwitchObserver:
    """Sends GETs to the router around a switch: a third of ``total`` before it, then during it, the rest after it.

    Each phase cycles through ``paths`` and sends at least one request to each before and after
    the switch, so the phases may hold more than ``total`` requests when there are many endpoints.
    Use: :meth:`start`, :meth:`wait_ready` (the "before" requests were sent), switch,
    :meth:`switch_done`, :meth:`join`. Requests run one at a time from a background thread, so the
    "during" ones overlap the switch call itself.

    :param base_url: the router's URL.
    :param paths: the endpoints to observe (the spec's critical endpoints).
    :param total: requests to send; 0 observes nothing.
    """

    def __init__(self, base_url: str, paths: Sequence[str], total: int, *, pace_seconds: float = 0.005,
                 timeout: float = 2.0) -> None:
        if not paths:
            raise ValueError("SwitchObserver needs at least one path to observe")
        self.base_url = base_url.rstrip("/")
        self.paths = list(dict.fromkeys(paths))
        self.total = total
        edge = max(total // 3, len(self.paths)) if total else 0
        self.before = self.after = edge
        self.during = max(total - 2 * edge, 0)
        self.pace_seconds = pace_seconds
        self.timeout = timeout
        self.requests: list[ObservedRequest] = []
        self._ready = threading.Event()
        self._done = threading.Event()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="gendev-switch-observer", daemon=True)

    def _send(self, client: httpx.Client, phase: str, index: int) -> None:
        path = self.paths[index % len(self.paths)]
        at = time.monotonic() - self._started
        result = http_get(self.base_url + path, self.timeout, client)
        self.requests.append(ObservedRequest(phase, round(at, 4), result.status, round(result.seconds, 4),
                                             served_version(result.body), result.error, path))
        time.sleep(self.pace_seconds)

    def _run(self) -> None:
        try:
            with httpx.Client() as client:
                for index in range(self.before):
                    self._send(client, "before", index)
                self._ready.set()
                index = 0
                while index < self.during and not self._done.is_set():
                    self._send(client, "during", index)
                    index += 1
                self._done.wait(timeout=600)
                for index in range(max(self.after, self.total - len(self.requests))):  # the rest of total
                    self._send(client, "after", index)
        finally:
            self._ready.set()

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread.start()

    def wait_ready(self, timeout: float = 60.0) -> None:
        self._ready.wait(timeout)

    def switch_done(self) -> None:
        self._done.set()

    def join(self, timeout: float = 120.0) -> list[ObservedRequest]:
        self._thread.join(timeout)
        return list(self.requests)
