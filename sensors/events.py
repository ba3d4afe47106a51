"""The typed events the triggers send back, and the one check every ``execute_complete`` makes on them.

An event crosses from the triggerer to a worker as JSON. :func:`read_event` validates it against
its ``TypedDict`` (pydantic), so a task never acts on an event of the wrong shape: it fails with a
message naming the trigger and what was wrong.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import TypeAdapter, ValidationError
from typing_extensions import TypedDict  # pydantic validates TypedDicts from typing_extensions on Python < 3.12

from gendev_release.errors import GateFailed

#: Results and samples an event carries at most (the payload is stored in Airflow's database).
MAX_EVENT_ITEMS = 500


class CheckRow(TypedDict):
    name: str
    url: str
    status: int | None
    passed: bool
    seconds: float | None
    reason: str


class HealthEvent(TypedDict):
    status: Literal["success", "failed"]
    url: str
    rounds: int
    reason: str
    last_results: list[CheckRow]


class RoundRow(TypedDict):
    index: int
    at: float
    passed: bool
    failures: list[str]


class BakeEvent(TypedDict):
    status: Literal["success", "failed"]
    url: str
    started_at: float
    until: float
    ended_at: float
    rounds: int
    failure_limit: int
    failed_rounds: list[RoundRow]
    reason: str
    last_results: list[CheckRow]


class SampleRow(TypedDict):
    at: float
    ok: bool
    values: dict[str, float]
    status: int | None
    error: str | None


class SamplingEvent(TypedDict):
    status: Literal["success", "failed"]
    source: Literal["scrape", "prometheus"]
    url: str
    query: str | None
    started_at: float
    until: float
    reason: str
    samples: list[SampleRow]


class RequestRow(TypedDict):
    group: str
    path: str
    status: int | None
    ms: float
    error: str | None


class RequestSamplingEvent(TypedDict):
    status: Literal["success", "failed"]
    urls: dict[str, str]
    started_at: float
    until: float
    ended_at: float
    rounds: int
    reason: str
    samples: list[RequestRow]


class ScrapeRow(TypedDict):
    index: int
    at_seconds: float
    status: int | None
    series: dict[str, float]
    counter: float | None
    counter_name: str | None
    error: str | None


class TrafficWindowEvent(TypedDict):
    status: Literal["success", "failed"]
    started_at: float
    until: float
    ended_at: float
    requests: int
    traffic: list[str]
    scrape_url: str | None
    samples: list[ScrapeRow]
    reason: str


class WindowEvent(TypedDict):
    status: Literal["open", "failed"]
    requested_at: float
    decided_at: float
    waited_seconds: float
    reason: str
    state: dict[str, Any]


E = TypeVar("E")


def read_event(kind: type[E], event: Any, trigger: str) -> E:
    """``event`` validated as ``kind``; :class:`GateFailed` naming ``trigger`` when it is missing or malformed."""
    if event is None:
        raise GateFailed(f"{trigger} ended without an event; the wait cannot be judged")
    try:
        return TypeAdapter(kind).validate_python(event)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(event)"
        raise GateFailed(f"{trigger} sent an event that is not a {kind.__name__}: {where}: {first['msg']} "
                         f"({len(exc.errors())} problem(s))") from None
