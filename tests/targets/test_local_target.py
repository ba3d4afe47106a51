"""The local target with real processes on loopback: stage, switch, rollback, discard, down."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from gendev_release.context import write_json_atomic
from gendev_release.errors import TargetError
from gendev_release.spec import LocalTargetSpec, load_spec
from gendev_release.targets import TARGETS, LocalTarget, make_target
from gendev_release.targets import local as local_module
from gendev_release.targets.local import free_port, pid_running

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_leaks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Passed through to every slot and router: a leaked process dies within 5 minutes anyway.
    monkeypatch.setenv("GENDEV_MAX_LIFETIME", "300")
    before = set(local_module._CHILDREN)
    yield
    started = set(local_module._CHILDREN) - before
    deadline = time.monotonic() + 3
    while any(pid_running(pid) for pid in started) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in started if pid_running(pid)], "the test left target processes running"


@pytest.fixture
def target(tmp_path: Path) -> Iterator[LocalTarget]:
    local = LocalTarget(LocalTargetSpec(), "demo", tmp_path)
    try:
        yield local
    finally:
        local.down()


def version_at(url: str) -> tuple[str, str | None]:
    response = httpx.get(url + "/version", timeout=5)
    assert response.status_code == 200, response.text
    return response.json()["version"], response.headers.get("x-gendev-slot")


def test_nothing_deployed(target: LocalTarget) -> None:
    status = target.status()
    assert (status.active, status.previous, status.staged, status.router_url) == (None, None, None, None)
    assert target.url() is None and target.current_version() is None
    changes = {c.address: c.actions for c in target.plan("1.0.0")}
    assert changes == {"local_process.blue": ("create",), "local_router": ("create",)}
    assert not target.state_path.exists()  # planning changes nothing
    with pytest.raises(TargetError, match="nothing to roll back to"):
        target.rollback("run-1")
    assert target.down() == []


def test_a_canary_that_never_led_rolls_back_and_a_later_run_restores_a_dead_runs_switch(
        target: LocalTarget) -> None:
    """Two rollbacks by one rule: a run whose revision only had a canary share gives the leader all traffic
    (its revision becomes 'previous' to retire); a run with no revision of its own, restoring another
    run's unverified switch, goes back to the previous slot (start_release after a dead runner)."""
    blue = target.stage("1.0.0", "run-1")
    target.switch(blue.slot, "run-1")
    green = target.deploy("1.1.0", "run-2")
    target.set_weights({blue.slot: 90, green.id: 10}, "run-2")
    assert target.took_traffic("run-2") and not target.took_traffic("run-3")
    restored = target.rollback("run-2", to_version="1.0.0")
    assert restored.weights == {"blue": 100, "green": 0} and restored.previous and restored.previous.slot == "green"
    assert target.took_traffic("run-2")  # it did take traffic during the run: the failure branch rolls back
    target.switch(green.id, "run-4")  # another run switched to 1.1.0 and died before verifying it
    back = target.rollback("run-5", to_version="1.0.0")
    assert back.active is not None and back.active.version == "1.0.0" and back.weights["green"] == 0


def test_blue_green_release_and_rollback(target: LocalTarget, tmp_path: Path) -> None:
    blue = target.stage("1.0.0", "run-1")
    assert blue.slot == "blue" and blue.pid and target.status().staged == blue
    assert version_at(blue.url) == ("1.0.0", None)
    assert all(c.actions == ("no-op",) for c in target.plan("1.0.0"))  # a re-plan after staging finds no drift
    router = target.url()  # the router is up before the first switch, routing nothing yet
    assert router and target.status().active is None
    idle = httpx.get(router + "/version")
    assert idle.status_code == 502 and "no active slot" in idle.text

    status = target.switch("blue", "run-1")
    assert status.active == blue and status.staged is None and status.switched_by_run == "run-1"
    assert status.router_url == router == target.url()
    assert version_at(router) == ("1.0.0", "blue")

    assert {c.address: c.actions for c in target.plan("2.0.0")} == {"local_process.green": ("create",)}
    green = target.stage("2.0.0", "run-2")
    assert green.slot == "green" and version_at(router) == ("1.0.0", "blue")  # staging moves no traffic
    assert target.stage("2.0.0", "run-2") == green  # a retried stage reuses the running process
    assert [c.actions for c in target.plan("2.0.0")] == [("no-op",)]

    # A client keeps calling through the switch: every answer is whole, and it flips exactly once.
    seen: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=router, timeout=5) as http:
            while not stop.is_set():
                response = http.get("/version")
                seen.append((response.status_code, response.headers.get("x-gendev-slot")))

    thread = threading.Thread(target=client)
    thread.start()
    time.sleep(0.3)
    target.switch("green", "run-2")
    time.sleep(0.3)
    stop.set()
    thread.join()
    assert {code for code, _ in seen} == {200}
    slots = [slot for _, slot in seen]
    assert slots[0] == "blue" and slots[-1] == "green"
    assert slots == sorted(slots)  # "blue" < "green": never back to blue once green answered

    status = target.status()
    assert status.active and status.active.version == "2.0.0"
    assert status.previous and status.previous.version == "1.0.0" and status.previous.pid == blue.pid
    assert status.weights == {"blue": 0, "green": 100}
    assert target.alive("blue") and version_at(blue.url) == ("1.0.0", None)  # the previous slot keeps running
    assert target.url() == router  # the router URL is stable

    history = len(target.status().history)
    target.switch("green", "run-2")  # a retried switch changes nothing
    assert len(target.status().history) == history

    status = target.rollback("run-2")
    assert status.active and status.active.slot == "blue" and status.previous and status.previous.slot == "green"
    assert version_at(router) == ("1.0.0", "blue")
    target.rollback("run-2")  # a retried rollback must not swap back
    assert version_at(router) == ("1.0.0", "blue")
    assert [h["action"] for h in target.status().history] == ["stage", "switch", "stage", "switch", "rollback"]

    # The state is durable: a new instance (another task process) sees the same target.
    again = LocalTarget(LocalTargetSpec(), "demo", tmp_path)
    assert again.status() == target.status()
    assert again.url() == router and again.current_version() == "1.0.0"
    state = json.loads(target.state_path.read_text())
    assert state["router"]["url"] == router and state["slots"]["green"]["run_id"] == "run-2"


def test_discard_staged_stops_only_the_staged_slot(target: LocalTarget) -> None:
    blue = target.stage("1.0.0", "run-1")
    target.switch("blue", "run-1")
    green = target.stage("2.0.0", "run-2")
    target.discard_staged("run-2")
    status = target.status()
    assert status.staged is None and status.active == blue
    assert not pid_running(green.pid) and not target.alive("green")
    assert json.loads(target.state_path.read_text())["slots"]["green"] is None
    target.discard_staged("run-2")  # nothing staged: no-op
    assert target.alive("blue") and version_at(target.url() or "") == ("1.0.0", "blue")


def test_withdraw_takes_a_failed_first_release_out_of_service(target: LocalTarget) -> None:
    blue = target.stage("1.0.0-broken", "run-1")
    target.switch("blue", "run-1")
    with_previous = target.status()
    assert with_previous.previous is None
    status = target.withdraw("run-1")
    assert status.active is None and status.switched_by_run == "run-1"
    assert not pid_running(blue.pid)
    assert httpx.get((target.url() or "") + "/version", timeout=5).status_code == 502
    assert target.withdraw("run-1").active is None  # idempotent
    assert [h["action"] for h in json.loads(target.state_path.read_text())["history"]][-1] == "withdraw"


def test_retire_previous_stops_only_the_previous_slot(target: LocalTarget) -> None:
    blue = target.stage("1.0.0", "run-1")
    target.switch("blue", "run-1")
    green = target.stage("2.0.0-broken", "run-2")
    target.switch("green", "run-2")
    target.rollback("run-2")  # blue active again, the broken green is previous
    assert "stopped" in (target.retire_previous("run-2") or "")
    status = target.status()
    assert status.active and status.active.version == "1.0.0" and status.previous is None
    assert pid_running(blue.pid) and not pid_running(green.pid)
    assert target.retire_previous("run-2") is None  # nothing left to retire


def test_withdraw_refuses_when_a_previous_version_exists(target: LocalTarget) -> None:
    target.stage("1.0.0", "run-1")
    target.switch("blue", "run-1")
    target.stage("2.0.0", "run-2")
    target.switch("green", "run-2")
    with pytest.raises(TargetError, match="roll back instead"):
        target.withdraw("run-2")


def test_dead_previous_slot_is_reported_and_cannot_be_rolled_back_to(target: LocalTarget) -> None:
    blue = target.stage("1.0.0", "run-1")
    target.switch("blue", "run-1")
    target.stage("2.0.0", "run-2")
    target.switch("green", "run-2")
    subprocess.run(["kill", "-KILL", str(blue.pid)], check=True)
    deadline = time.monotonic() + 5
    while target.alive("blue") and time.monotonic() < deadline:
        time.sleep(0.05)
    previous = target.status().previous
    assert previous and previous.version == "1.0.0" and previous.pid is None
    with pytest.raises(TargetError, match="nothing to roll back to.*no longer running"):
        target.rollback("run-2")
    with pytest.raises(TargetError, match="no longer running"):
        target.switch("blue", "run-3")


def test_concurrent_stages_start_one_process(target: LocalTarget) -> None:
    results: list[object] = []

    def stage() -> None:
        results.append(target.stage("1.0.0", "run-1"))

    threads = [threading.Thread(target=stage) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3 and len({r.pid for r in results}) == 1  # type: ignore[attr-defined]


def test_failing_start_names_version_slot_and_log_tail(tmp_path: Path) -> None:
    spec = LocalTargetSpec(command=["{python}", "-c", "import sys; print('boom-marker', file=sys.stderr); sys.exit(3)"],
                           startup_timeout_seconds=10)
    local = LocalTarget(spec, "demo", tmp_path)
    try:
        with pytest.raises(TargetError) as raised:
            local.stage("9.9.9", "run-1")
        message = str(raised.value)
        assert "9.9.9" in message and "slot blue" in message and "exited with code 3" in message
        assert "boom-marker" in message
        assert local.status().staged is None
    finally:
        local.down()


def test_start_timeout_stops_the_process(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    spec = LocalTargetSpec(command=["{python}", "-c", f"import os, time; open({str(pid_file)!r}, 'w')"
                                    ".write(str(os.getpid())); time.sleep(60)"], startup_timeout_seconds=1)
    local = LocalTarget(spec, "demo", tmp_path)
    try:
        with pytest.raises(TargetError, match="within 1 s"):
            local.stage("1.0.0", "run-1")
        assert not pid_running(int(pid_file.read_text()))
    finally:
        local.down()


def test_down_stops_everything_and_keeps_the_router_port(tmp_path: Path) -> None:
    port = free_port()
    local = LocalTarget(LocalTargetSpec(router_port=port), "demo", tmp_path)
    try:
        blue = local.stage("1.0.0", "run-1")
        local.switch("blue", "run-1")
        assert local.url() == f"http://127.0.0.1:{port}"
        stopped = local.down()
        assert len(stopped) == 2 and all("stopped (SIGTERM)" in line for line in stopped)
        assert not pid_running(blue.pid) and local.url() is None
        status = local.status()
        assert status.active is None and status.weights == {}
        state = json.loads(local.state_path.read_text())
        assert state["slots"]["blue"]["version"] == "1.0.0" and state["slots"]["blue"]["pid"] is None
        with pytest.raises(TargetError, match="no longer running"):
            local.switch("blue", "run-2")
        local.stage("1.0.0", "run-2")
        local.switch("blue", "run-2")
        assert local.url() == f"http://127.0.0.1:{port}"
        assert version_at(local.url() or "") == ("1.0.0", "blue")
    finally:
        local.down()


def test_a_dead_routers_port_is_waited_for_and_a_strangers_port_is_refused(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A router killed with its process group may hold its port a moment longer (an nginx worker still
    exiting): the restart waits for it. A port another program listens on is refused, naming it."""
    import socket

    port = free_port()
    local = LocalTarget(LocalTargetSpec(router_port=port), "demo", tmp_path)

    def listen() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()
        return sock

    try:
        local.stage("1.0.0", "run-1")
        local.switch("blue", "run-1")
        router = local.load_state().router
        assert router and router.pid
        local_module.terminate(router.pid, router.argv)
        lingering = listen()  # what is left of the dead router, gone a second later
        threading.Timer(1.0, lingering.close).start()
        local.switch("blue", "run-1")
        assert version_at(local.url() or "") == ("1.0.0", "blue")

        router = local.load_state().router
        assert router and router.pid
        local_module.terminate(router.pid, router.argv)
        monkeypatch.setattr(local_module, "ROUTER_PORT_RELEASE_SECONDS", 0.5)
        stranger = listen()
        try:
            with pytest.raises(TargetError, match=f"cannot listen on 127.0.0.1:{port}: another program"):
                local.switch("blue", "run-1")
        finally:
            stranger.close()
    finally:
        local.down()


def test_down_never_kills_an_unrelated_pid(target: LocalTarget) -> None:
    blue = target.stage("1.0.0", "run-1")
    unrelated = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # The slot's pid was reused by another program (simulated by rewriting the state).
        state = json.loads(target.state_path.read_text())
        state["slots"]["blue"]["pid"] = unrelated.pid
        write_json_atomic(target.state_path, state)
        assert not target.alive("blue")
        stopped = target.down()
        assert any("left alone" in line for line in stopped)
        time.sleep(0.2)
        assert unrelated.poll() is None
    finally:
        unrelated.kill()
        unrelated.wait()
        subprocess.run(["kill", "-TERM", str(blue.pid)], check=False)


def test_make_target(tmp_path: Path) -> None:
    spec = load_spec(REPO / "dags" / "releases" / "demo.yaml")
    local = make_target(spec, tmp_path)
    assert isinstance(local, LocalTarget) and local.kind == "local" and TARGETS["local"] is LocalTarget
    assert local.state_path == tmp_path / "targets" / "demo" / "state.json"
    odd = spec.model_copy(update={"target": SimpleNamespace(kind="nomad")})
    with pytest.raises(TargetError, match="'nomad'.*known kinds: local"):
        make_target(odd, tmp_path)


def test_unknown_placeholder_is_refused(tmp_path: Path) -> None:
    local = LocalTarget(LocalTargetSpec(command=["{python}", "-m", "x", "{workdir}"]), "demo", tmp_path)
    try:
        with pytest.raises(TargetError, match=r"\{workdir\}"):
            local.stage("1.0.0", "run-1")
        assert not local.state_path.exists()  # refused before anything started
    finally:
        local.down()

