"""One release per service at a time: a lease held in the target's state folder.

The lease names the run that holds it (``dag_id``, ``run_id``), the process that renews it and
when it last did (a heartbeat). Every task of a release takes or renews it before it touches the
target, so a second release (from the CLI, another Airflow, or a cleared run) is refused while the
first is alive. A lease whose holder died is *stale* and may be taken over; the caller then marks
the dead run ``interrupted``. Staleness is decided from facts, never guessed:

* the heartbeat is older than the lease's time to live;
* the holder is an embedded (CLI) run and its process is gone (same host, pid and start time);
* Airflow says the holder's DAG run has ended (``run_state`` callback) while the lease is still held.

No Airflow import here; the operators pass Airflow's answer in as ``run_state``.
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gendev_release.errors import GendevError

DEFAULT_TTL_SECONDS = 600.0
#: The embedded runner sets this to its token, so the tasks it runs adopt the lease it took.
OWNER_ENV = "GENDEV_LEASE_OWNER"
TERMINAL_RUN_STATES = frozenset({"success", "failed"})

RunStateLookup = Callable[[str, str], "str | None"]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def process_start_ticks(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    try:
        return int(fields[19])  # field 22 of stat; fields[0] is field 3 (state)
    except (IndexError, ValueError):
        return None


def process_alive(pid: int, start_ticks: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    now_ticks = process_start_ticks(pid)
    if now_ticks is None:
        return Path("/proc").is_dir() is False  # no /proc: kill(pid, 0) is all we know
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    if state in ("Z", "X"):
        return False
    return start_ticks is None or now_ticks == start_ticks


class Lease(BaseModel):
    """Who holds the release of a service, and since when."""

    model_config = ConfigDict(extra="forbid")

    service: str
    dag_id: str | None = None
    run_id: str | None = Field(None, description="None while an embedded run has not created its DAG run yet.")
    owner: Literal["embedded", "airflow"] = "airflow"
    token: str | None = None
    host: str
    pid: int
    pid_start: int | None = None
    acquired_at: datetime
    heartbeat_at: datetime
    ttl_seconds: float = Field(gt=0)

    def holder(self) -> str:
        run = f"run {self.run_id} of {self.dag_id}" if self.run_id else "an embedded run that is starting"
        return f"{run} (pid {self.pid} on {self.host}, heartbeat {self.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC)"

    def stale_reason(self, run_state: RunStateLookup | None = None, now: datetime | None = None) -> str | None:
        """Why the holder is known to be gone, or None while it may be alive."""
        now = now or utcnow()
        silent = (now - self.heartbeat_at).total_seconds()
        if silent > self.ttl_seconds:
            return f"no heartbeat for {silent:.0f} s (time to live {self.ttl_seconds:.0f} s)"
        if self.owner == "embedded" and self.host == socket.gethostname() \
                and not process_alive(self.pid, self.pid_start):
            return f"the embedded run's process (pid {self.pid}) is gone"
        if run_state is not None and self.dag_id and self.run_id:
            try:
                state = run_state(self.dag_id, self.run_id)
            except Exception:  # Airflow could not answer: no conclusion either way
                state = None
            if state in TERMINAL_RUN_STATES:
                return f"Airflow shows the run {state} while it still held the lease"
        return None


class LeaseHeld(GendevError):
    """Another live release holds the service."""

    retryable = False

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        super().__init__(f"another release of {lease.service} is in progress: {lease.holder()}; "
                         "this release was refused and changed nothing. Trigger it again when that one has finished.")


@dataclass(frozen=True)
class Acquired:
    lease: Lease
    #: The stale lease this acquisition replaced (its run died), and why it was stale.
    taken_over: Lease | None = None
    stale_reason: str | None = None


class ServiceLease:
    """The lease file of one service: ``<folder>/lease.json``, changed only under ``lease.lock``."""

    def __init__(self, folder: Path, service: str) -> None:
        self.folder = Path(folder)
        self.service = service

    @property
    def path(self) -> Path:
        return self.folder / "lease.json"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "lease.lock", "a+", encoding="utf-8") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def read(self) -> Lease | None:
        try:
            return Lease.model_validate_json(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValidationError, ValueError):
            return None  # an unreadable lease protects nothing; it is replaced on the next acquire

    def _write(self, lease: Lease) -> Lease:
        tmp = self.path.with_name(f".lease.{os.getpid()}.tmp")
        tmp.write_text(lease.model_dump_json(indent=2), encoding="utf-8")
        os.replace(tmp, self.path)
        return lease

    def acquire(self, *, dag_id: str | None, run_id: str | None, ttl_seconds: float = DEFAULT_TTL_SECONDS,
                owner: Literal["embedded", "airflow"] = "airflow", token: str | None = None,
                run_state: RunStateLookup | None = None) -> Acquired:
        """Take the lease, renew it (same run), adopt it (same embedded runner) or take over a stale one.

        :raises LeaseHeld: while another live release holds it.
        """
        token = token if token is not None else os.environ.get(OWNER_ENV) or None
        now = utcnow()
        with self._locked():
            current = self.read()
            mine = current is not None and (
                (run_id is not None and current.run_id == run_id and current.dag_id == dag_id)
                or (token is not None and current.token == token))
            taken_over, reason = None, None
            if current is not None and not mine:
                reason = current.stale_reason(run_state, now)
                if reason is None:
                    raise LeaseHeld(current)
                taken_over = current
            if mine and current is not None:
                lease = current.model_copy(update={
                    "dag_id": dag_id or current.dag_id, "run_id": run_id or current.run_id,
                    "heartbeat_at": now, "ttl_seconds": max(ttl_seconds, current.ttl_seconds),
                    **({} if current.owner == "embedded" else {"pid": os.getpid(),
                                                               "pid_start": process_start_ticks(os.getpid())}),
                })
            else:
                lease = Lease(service=self.service, dag_id=dag_id, run_id=run_id, owner=owner, token=token,
                              host=socket.gethostname(), pid=os.getpid(),
                              pid_start=process_start_ticks(os.getpid()), acquired_at=now, heartbeat_at=now,
                              ttl_seconds=ttl_seconds)
            return Acquired(self._write(lease), taken_over, reason)

    def heartbeat(self, *, run_id: str | None = None, token: str | None = None) -> bool:
        """Renew the holder's heartbeat; False when the lease is no longer this holder's."""
        with self._locked():
            current = self.read()
            if current is None or not ((run_id and current.run_id == run_id) or (token and current.token == token)):
                return False
            self._write(current.model_copy(update={"heartbeat_at": utcnow()}))
            return True

    def release(self, *, run_id: str | None = None, token: str | None = None) -> bool:
        """Give the lease up; only its holder can. Returns whether it was released."""
        with self._locked():
            current = self.read()
            if current is None or not ((run_id and current.run_id == run_id) or (token and current.token == token)):
                return False
            self.path.unlink(missing_ok=True)
            return True


class LeaseKeeper:
    """Renews a lease from a background thread while a task works (a long duty keeps the lease fresh)."""

    def __init__(self, lease: ServiceLease, run_id: str, interval: float) -> None:
        self.lease = lease
        self.run_id = run_id
        self.interval = max(1.0, interval)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gendev-lease-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if not self.lease.heartbeat(run_id=self.run_id):
                    return
            except OSError:
                continue

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def lease_ttl(wait_seconds: float) -> float:
    """Time to live for a release whose longest unattended wait is ``wait_seconds``.

    ``GENDEV_LEASE_TTL_SECONDS`` overrides the default floor (600 s); a deferred wait (no process
    renews the lease then) always fits inside the time to live.
    """
    floor = DEFAULT_TTL_SECONDS
    raw = os.environ.get("GENDEV_LEASE_TTL_SECONDS")
    if raw:
        try:
            floor = max(1.0, float(raw))
        except ValueError:
            pass
    return max(floor, wait_seconds + 120.0)


__all__ = ["OWNER_ENV", "Acquired", "Lease", "LeaseHeld", "LeaseKeeper", "ServiceLease", "lease_ttl"]
