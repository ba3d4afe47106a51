"""A bounded load generator for loopback tests: worker threads cycle through endpoints and record every answer.

    load = LoadGenerator("http://127.0.0.1:41000", [Endpoint("/healthz", "ok"), Endpoint("/version")])
    load.start()
    load.wait_for(lambda counts: min(counts.values()) >= 1000)
    load.stop()
    load.failures()          # no answer, an unexpected status or a body without the expected text

It only ever talks to the base URL it is given (the tests give it a router on 127.0.0.1), and it
stops by itself after ``max_requests`` requests or ``max_seconds`` seconds, whichever comes first.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx


@dataclass(frozen=True)
class Endpoint:
    path: str
    expect_body_contains: str | None = None
    expect_status: int = 200


@dataclass(frozen=True)
class Answer:
    """One request: when it was sent and answered (monotonic), what came back."""

    path: str
    sent: float
    answered: float
    status: int | None
    version: str | None
    slot: str | None
    error: str | None
    ok: bool


class LoadGenerator:
    def __init__(self, base_url: str, endpoints: Sequence[Endpoint], *, workers: int = 4, max_requests: int = 50_000,
                 max_seconds: float = 300.0, timeout: float = 10.0) -> None:
        if urlsplit(base_url).hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"load is only ever sent to loopback, not {base_url}")
        self.base_url = base_url.rstrip("/")
        self.endpoints = list(endpoints)
        self.workers = workers
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.timeout = timeout
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(workers)]

    def _one(self, client: httpx.Client, endpoint: Endpoint) -> Answer:
        sent = time.monotonic()
        try:
            response = client.get(self.base_url + endpoint.path)
        except httpx.HTTPError as exc:
            return Answer(endpoint.path, sent, time.monotonic(), None, None, None, f"{type(exc).__name__}: {exc}",
                          False)
        answered = time.monotonic()
        version = None
        if endpoint.path == "/version" and response.status_code == 200:
            try:
                version = str(response.json()["version"])
            except (ValueError, KeyError, TypeError):
                version = None
        ok = response.status_code == endpoint.expect_status and (
            endpoint.expect_body_contains is None or endpoint.expect_body_contains in response.text)
        return Answer(endpoint.path, sent, answered, response.status_code, version,
                      response.headers.get("x-gendev-slot"), None, ok)

    def _run(self, offset: int) -> None:
        deadline = time.monotonic() + self.max_seconds
        index = offset
        with httpx.Client(timeout=self.timeout) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                with self._lock:
                    if len(self.answers) >= self.max_requests:
                        return
                answer = self._one(client, self.endpoints[index % len(self.endpoints)])
                index += 1
                with self._lock:
                    self.answers.append(answer)

    def start(self) -> LoadGenerator:
        for thread in self._threads:
            thread.start()
        return self

    def counts(self, since: float | None = None) -> Counter[str]:
        """Requests per path (optionally only those sent at or after ``since``)."""
        with self._lock:
            answers = list(self.answers)
        counts: Counter[str] = Counter({e.path: 0 for e in self.endpoints})
        counts.update(a.path for a in answers if since is None or a.sent >= since)
        return counts

    def wait_for(self, condition: Callable[[Counter[str]], bool], since: float | None = None) -> None:
        """Block until ``condition(counts)`` holds; AssertionError when the generator stopped first."""
        while not condition(self.counts(since)):
            if not any(thread.is_alive() for thread in self._threads):
                raise AssertionError(f"the load generator stopped before the condition held: {self.counts(since)}")
            time.sleep(0.02)

    def stop(self) -> list[Answer]:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        return list(self.answers)

    def failures(self) -> list[Answer]:
        return [a for a in self.answers if not a.ok]
