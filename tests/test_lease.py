"""One release per service: the lease, its heartbeat, and how a dead holder is told apart."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from gendev_release.lease import Lease, LeaseHeld, LeaseKeeper, ServiceLease, lease_ttl, utcnow


@pytest.fixture
def lease(tmp_path: Path) -> ServiceLease:
    return ServiceLease(tmp_path / "targets" / "demo", "demo")


def test_a_free_lease_is_taken_and_renewed_by_the_same_run(lease: ServiceLease) -> None:
    first = lease.acquire(dag_id="release__demo", run_id="a", ttl_seconds=60)
    assert first.taken_over is None and first.lease.run_id == "a"
    again = lease.acquire(dag_id="release__demo", run_id="a", ttl_seconds=60)
    assert again.lease.acquired_at == first.lease.acquired_at
    assert again.lease.heartbeat_at >= first.lease.heartbeat_at


def test_a_second_live_release_is_refused_naming_the_holder(lease: ServiceLease) -> None:
    lease.acquire(dag_id="release__demo", run_id="a", ttl_seconds=60)
    with pytest.raises(LeaseHeld) as caught:
        lease.acquire(dag_id="release__demo", run_id="b", ttl_seconds=60)
    assert caught.value.lease.run_id == "a"
    assert "run a of release__demo" in str(caught.value) and "changed nothing" in str(caught.value)
    current = lease.read()
    assert current is not None and current.run_id == "a"


def test_only_the_holder_releases_it(lease: ServiceLease) -> None:
    lease.acquire(dag_id="release__demo", run_id="a", ttl_seconds=60)
    assert lease.release(run_id="b") is False
    assert lease.read() is not None
    assert lease.release(run_id="a") is True
    assert lease.read() is None
    assert lease.acquire(dag_id="release__demo", run_id="b", ttl_seconds=60).lease.run_id == "b"


def test_a_lease_without_heartbeat_is_stale_and_taken_over(lease: ServiceLease) -> None:
    lease.acquire(dag_id="release__demo", run_id="a", ttl_seconds=60)
    current = lease.read()
    assert current is not None
    old = current.model_copy(update={"heartbeat_at": utcnow() - timedelta(seconds=61)})
    lease.path.write_text(old.model_dump_json())
    taken = lease.acquire(dag_id="release__demo", run_id="b", ttl_seconds=60)
    assert taken.taken_over is not None and taken.taken_over.run_id == "a"
    assert taken.stale_reason is not None and "no heartbeat for 61 s" in taken.stale_reason
    assert taken.lease.run_id == "b"


def test_an_embedded_holder_whose_process_died_is_stale(lease: ServiceLease) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = Lease(service="demo", dag_id="release__demo", run_id="a", owner="embedded", token="t", host=_host(),
                 pid=child.pid, pid_start=None, acquired_at=utcnow(), heartbeat_at=utcnow(), ttl_seconds=600)
    lease.folder.mkdir(parents=True)
    lease.path.write_text(dead.model_dump_json())
    taken = lease.acquire(dag_id="release__demo", run_id="b", ttl_seconds=600)
    assert taken.taken_over is not None and "is gone" in (taken.stale_reason or "")


def test_a_reused_pid_does_not_keep_a_dead_holder_alive(lease: ServiceLease) -> None:
    import os

    me = Lease(service="demo", dag_id="release__demo", run_id="a", owner="embedded", token="t", host=_host(),
               pid=os.getpid(), pid_start=1, acquired_at=utcnow(), heartbeat_at=utcnow(), ttl_seconds=600)
    lease.folder.mkdir(parents=True)
    lease.path.write_text(me.model_dump_json())  # our pid, but a different start time: another process
    assert lease.acquire(dag_id="release__demo", run_id="b", ttl_seconds=600).taken_over is not None


def test_a_holder_airflow_reports_finished_is_stale(lease: ServiceLease) -> None:
    lease.acquire(dag_id="release__demo", run_id="a", ttl_seconds=600)
    with pytest.raises(LeaseHeld):
        lease.acquire(dag_id="release__demo", run_id="b", run_state=lambda d, r: "running")
    with pytest.raises(LeaseHeld):  # Airflow cannot answer: no conclusion, the holder may be alive
        lease.acquire(dag_id="release__demo", run_id="b", run_state=_raises)
    taken = lease.acquire(dag_id="release__demo", run_id="b", run_state=lambda d, r: "failed")
    assert taken.taken_over is not None and "Airflow shows the run failed" in (taken.stale_reason or "")


def test_tasks_of_an_embedded_run_adopt_its_lease(lease: ServiceLease) -> None:
    lease.acquire(dag_id="release__demo", run_id=None, owner="embedded", token="tok", ttl_seconds=600)
    adopted = lease.acquire(dag_id="release__demo", run_id="manual__1", token="tok")
    assert adopted.taken_over is None and adopted.lease.run_id == "manual__1" and adopted.lease.owner == "embedded"
    with pytest.raises(LeaseHeld):
        lease.acquire(dag_id="release__demo", run_id="manual__2", token="other")


def test_the_keeper_renews_the_heartbeat_while_a_task_works(lease: ServiceLease) -> None:
    lease.acquire(dag_id="release__demo", run_id="a", ttl_seconds=60)
    before = lease.read()
    assert before is not None
    with LeaseKeeper(lease, "a", interval=1.0):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = lease.read()
            if now is not None and now.heartbeat_at > before.heartbeat_at:
                break
            time.sleep(0.1)
    after = lease.read()
    assert after is not None and after.heartbeat_at > before.heartbeat_at


def test_time_to_live_covers_the_longest_deferred_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GENDEV_LEASE_TTL_SECONDS", raising=False)
    assert lease_ttl(60) == 600
    assert lease_ttl(3600) == 3720
    monkeypatch.setenv("GENDEV_LEASE_TTL_SECONDS", "30")
    assert lease_ttl(5) == 125


def _raises(dag_id: str, run_id: str) -> str:
    raise RuntimeError("no Execution API here")


def _host() -> str:
    import socket

    return socket.gethostname()
