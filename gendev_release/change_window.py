"""Change windows: is a release allowed to change the service now, and when is it next allowed?

Pure functions of the spec's ``change_window`` and an instant; no Airflow, no I/O. The deferred
change-window gate (:mod:`gendev_release.sensors.change_window`) and its trigger decide with them.

Meaning of the fields (the same as :func:`gendev_release.duties.planning.window_end`):

* ``days`` names the local day a window *starts* on; ``start`` and ``end`` are local times in
  ``timezone``; ``end`` is the last minute inside the window (``17:00`` means until 17:00:59).
* An ``end`` at or before ``start`` crosses midnight: ``fri 22:00-02:00`` runs from Friday 22:00
  to Saturday 02:00:59. Back-to-back windows (``00:00-23:59`` on consecutive days) join into one.
* A freeze period closes the window whatever the days say. A date is a whole local day (``start``
  from its 00:00, ``end`` until the end of that day); a date-time is an instant (one without a UTC
  offset is read in the window's time zone). The freeze ends at ``end`` (exclusive).
* Local times are resolved with :mod:`zoneinfo`: a start that does not exist on a spring-forward
  day (02:30 in Europe/Berlin) begins when the clocks have moved on (03:30 local, the UTC instant
  of 02:30 +01:00); an ambiguous time on a fall-back day is its first occurrence.

Every datetime returned is in UTC. Instants are always compared in UTC: two aware datetimes that
share a ``tzinfo`` would otherwise be compared by wall time, which is wrong across a DST change.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Annotated, Any, Protocol
from zoneinfo import ZoneInfo

from pydantic import BeforeValidator, WithJsonSchema

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: How far ahead :func:`evaluate` looks for the next opening (a freeze can last months).
DEFAULT_HORIZON = timedelta(days=400)
#: Steps of the opening search: each moves to the next window start or freeze end.
_MAX_STEPS = 2000


_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_INSTANT_FORMAT = "a date (2026-12-24) or a date-time (2026-12-24T18:00 or 2026-12-24T18:00:00+01:00)"


def parse_freeze_instant(value: Any) -> Any:
    """Text is a date when it is only ``YYYY-MM-DD``, else a date-time; anything else is left to pydantic.

    Without this, pydantic would read ``2026-12-24T00:00:00+01:00`` as a plain date (its time is
    midnight) and lose the offset.
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        return date.fromisoformat(text) if _DATE_RE.fullmatch(text) else datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{text[:60]!r} is not {_INSTANT_FORMAT}: {exc}") from None


#: A freeze period's bound in the spec: a whole local day (date) or an instant (date-time).
FreezeInstant = Annotated[datetime | date, BeforeValidator(parse_freeze_instant),
                          WithJsonSchema({"type": "string", "format": "date or date-time"})]


class FreezeLike(Protocol):
    @property
    def start(self) -> date: ...  # a date or a datetime (datetime is a date)

    @property
    def end(self) -> date: ...

    @property
    def reason(self) -> str: ...


class WindowLike(Protocol):
    """What the spec's ``ChangeWindow`` offers (duck-typed: this module does not import the spec)."""

    @property
    def days(self) -> Sequence[str]: ...

    @property
    def start(self) -> str: ...

    @property
    def end(self) -> str: ...

    @property
    def timezone(self) -> str: ...

    @property
    def freeze(self) -> Sequence[FreezeLike]: ...


@dataclass(frozen=True)
class Freeze:
    """A freeze period resolved to UTC: closed from ``start`` until ``end`` (exclusive)."""

    start: datetime
    end: datetime
    reason: str

    def covers(self, at: datetime) -> bool:
        return self.start <= at < self.end

    def as_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "reason": self.reason}


def utc(at: datetime) -> datetime:
    """``at`` in UTC; a naive datetime is taken as UTC."""
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)


def _instant(value: date, tz: ZoneInfo, *, end: bool) -> datetime:
    if isinstance(value, datetime):
        return utc(value if value.tzinfo is not None else value.replace(tzinfo=tz))
    day = value + timedelta(days=1) if end else value  # an end date is inclusive: the freeze lasts all of it
    return utc(datetime.combine(day, time(0, 0), tzinfo=tz))


def freeze_bounds(start: date, end: date, timezone_name: str) -> tuple[datetime, datetime]:
    """The UTC instants a freeze from ``start`` to ``end`` covers: ``[start, end)``.

    :param start: a date (from that local day's 00:00) or a datetime (naive: local to the window).
    :param end: a date (inclusive: until the end of that local day) or a datetime (exclusive).
    :param timezone_name: the window's IANA time zone.
    """
    tz = ZoneInfo(timezone_name)
    return _instant(start, tz, end=False), _instant(end, tz, end=True)


def freezes(window: WindowLike) -> list[Freeze]:
    """The window's freeze periods in UTC, earliest first."""
    found = [Freeze(*freeze_bounds(f.start, f.end, window.timezone), f.reason) for f in window.freeze]
    return sorted(found, key=lambda f: f.start)


def window_bounds(window: WindowLike, day: date) -> tuple[datetime, datetime]:
    """UTC start and (exclusive) end of the window that starts on local ``day``."""
    tz = ZoneInfo(window.timezone)
    start_t, end_t = time.fromisoformat(window.start), time.fromisoformat(window.end)
    start = datetime.combine(day, start_t, tzinfo=tz)
    end_day = day + timedelta(days=1) if end_t <= start_t else day
    end = datetime.combine(end_day, end_t, tzinfo=tz) + timedelta(minutes=1)
    return utc(start), utc(end)


def _starts_on(window: WindowLike, day: date) -> bool:
    return WEEKDAYS[day.weekday()] in window.days


def _local_day(window: WindowLike, at: datetime) -> date:
    return at.astimezone(ZoneInfo(window.timezone)).date()


def window_close(window: WindowLike, at: datetime) -> datetime | None:
    """When the window open at ``at`` closes, freezes not considered; None when no window covers ``at``."""
    at = utc(at)
    today = _local_day(window, at)
    for offset in (-1, 0):  # a window that started yesterday may still be open (it crosses midnight)
        day = today + timedelta(days=offset)
        if not _starts_on(window, day):
            continue
        start, end = window_bounds(window, day)
        if not start <= at < end:
            continue
        for _ in range(7):  # join back-to-back windows; after a week it is simply always open
            day += timedelta(days=1)
            if not _starts_on(window, day):
                break
            next_start, next_end = window_bounds(window, day)
            if next_start > end:
                break
            end = max(end, next_end)
        return end
    return None


def next_window_start(window: WindowLike, after: datetime) -> datetime | None:
    """The first window start strictly after ``after`` (freezes not considered)."""
    after = utc(after)
    today = _local_day(window, after)
    for offset in range(9):
        day = today + timedelta(days=offset)
        if _starts_on(window, day):
            start, _ = window_bounds(window, day)
            if start > after:
                return start
    return None


def _freeze_at(frozen: Sequence[Freeze], at: datetime) -> Freeze | None:
    return next((f for f in frozen if f.covers(at)), None)


@dataclass(frozen=True)
class WindowState:
    """The change window at one instant.

    :param open: a release may change the service now.
    :param closes_at: when open, when that stops (the window's end or the next freeze, whichever is first).
    :param opens_at: when closed, the next instant it is open; None if not within the horizon searched.
    :param frozen_by: the freeze period that closes it now, if one does.
    """

    at: datetime
    open: bool
    closes_at: datetime | None
    opens_at: datetime | None
    frozen_by: Freeze | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "open": self.open,
                "closes_at": self.closes_at.isoformat() if self.closes_at else None,
                "opens_at": self.opens_at.isoformat() if self.opens_at else None,
                "frozen_by": self.frozen_by.as_dict() if self.frozen_by else None, "reason": self.reason}


def next_opening(window: WindowLike, at: datetime, horizon: timedelta = DEFAULT_HORIZON) -> datetime | None:
    """The first instant at or after ``at`` when the window is open and not frozen (None beyond ``horizon``)."""
    at = utc(at)
    frozen = freezes(window)
    cursor = at
    for _ in range(_MAX_STEPS):
        if cursor > at + horizon:
            return None
        freeze = _freeze_at(frozen, cursor)
        if freeze is not None:
            cursor = freeze.end
            continue
        if window_close(window, cursor) is not None:
            return cursor
        following = next_window_start(window, cursor)
        if following is None:
            return None
        cursor = following
    return None


def describe(window: WindowLike) -> str:
    text = f"{','.join(window.days)} {window.start}-{window.end} {window.timezone}"
    return text + (f" ({len(window.freeze)} freeze period(s))" if window.freeze else "")


def evaluate(window: WindowLike, at: datetime, horizon: timedelta = DEFAULT_HORIZON) -> WindowState:
    """Is the window open at ``at``; until when, or when does it next open?"""
    at = utc(at)
    frozen = freezes(window)
    freeze = _freeze_at(frozen, at)
    close = window_close(window, at)
    if freeze is None and close is not None:
        upcoming = [f.start for f in frozen if at < f.start < close]
        closes_at = min([close, *upcoming])
        return WindowState(at, True, closes_at, None, None,
                           f"open: {describe(window)} until {closes_at.isoformat()}")
    opens_at = next_opening(window, at, horizon)
    why = (f"frozen until {freeze.end.isoformat()}: {freeze.reason}" if freeze is not None
           else f"outside the change window {describe(window)}")
    then = f"next opening {opens_at.isoformat()}" if opens_at else f"no opening within {horizon.days} days"
    return WindowState(at, False, None, opens_at, freeze, f"closed: {why}; {then}")


def is_open(window: WindowLike, at: datetime) -> bool:
    return evaluate(window, at).open


def freeze_problems(periods: Sequence[tuple[str, str, datetime, datetime]]) -> list[tuple[str, str]]:
    """``(field, message)`` for freeze periods that end before they start or overlap another.

    :param periods: ``(field, label, start, end)`` per freeze period: its spec field, how the spec wrote
        it, and its bounds resolved to UTC (:func:`freeze_bounds`).
    """
    problems = [(f"{where}.end", f"the freeze {label} ends before it starts; give an end after the start "
                                 "(an end date counts as the whole day)")
                for where, label, start, end in periods if end <= start]
    ordered = sorted((p for p in periods if p[3] > p[2]), key=lambda p: p[2])
    for before, after in zip(ordered, ordered[1:], strict=False):
        if after[2] < before[3]:
            problems.append((after[0], f"the freeze {after[1]} overlaps {before[0]} ({before[1]}); merge the two "
                                       "periods or move one"))
    return problems
