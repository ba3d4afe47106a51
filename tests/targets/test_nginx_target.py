"""The local target in nginx router mode: real nginx on loopback, weighted upstreams, reloads that lose nothing.

Each test gets its own nginx (own prefix, pid file, logs and free port) started by the target;
it stops with ``down()`` and by itself after ``GENDEV_MAX_LIFETIME`` seconds (its watchdog).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from loadgen import Endpoint, LoadGenerator

from gendev_release.errors import TargetError
from gendev_release.spec import LocalTargetSpec, load_spec
from gendev_release.targets import LocalTarget, make_target, nginx
from gendev_release.targets import local as local_module
from gendev_release.targets.processes import children_of, pid_running

REPO = Path(__file__).resolve().parents[2]
DEMO_NGINX = REPO / "dags" / "releases" / "demo-nginx.yaml"


def require_nginx() -> str:
    """The nginx binary, or skip (fail under CI) saying how to install it."""
    try:
        return nginx.find_nginx()
    except TargetError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture(autouse=True)
def _no_leaks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("GENDEV_MAX_LIFETIME", "300")
    before = set(local_module._CHILDREN)
    yield
    started = set(local_module._CHILDREN) - before
    deadline = time.monotonic() + 10
    while any(pid_running(pid) for pid in started) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in started if pid_running(pid)], "the test left target processes running"


@pytest.fixture
def target(tmp_path: Path) -> Iterator[LocalTarget]:
    require_nginx()
    local = LocalTarget(LocalTargetSpec(router="nginx"), "demo", tmp_path)
    try:
        yield local
    finally:
        local.down()


def get(url: str, path: str) -> httpx.Response:
    return httpx.get(url + path, timeout=10)


def test_blue_green_through_nginx_under_load_loses_no_request(target: LocalTarget) -> None:
    """The Must-show: >= 1,000 requests to every critical endpoint through nginx across a weights 0/100 reload."""
    endpoints = [Endpoint(e.path, e.expect_body_contains, e.expect_status)
                 for e in load_spec(DEMO_NGINX).critical_endpoints]
    assert {e.path for e in endpoints} == {"/healthz", "/version", "/api/items"}
    v1 = target.deploy("1.0.0", "run-1")
    target.set_weights({v1.id: 100}, "run-1")
    router = target.url()
    assert router and get(router, "/version").json()["version"] == "1.0.0"
    generation = nginx.served_generation(int(router.rsplit(":", 1)[1]))

    load = LoadGenerator(router, endpoints, workers=4).start()
    try:
        load.wait_for(lambda counts: min(counts.values()) >= 300)  # v1 serving under load
        v2 = target.deploy("1.1.0", "run-2")  # staged beside v1 while the load runs; no traffic yet
        assert (v2.id, v2.weight, v2.running) == ("green", 0, True)
        switched_at = time.monotonic()
        status = target.set_weights({v1.id: 0, v2.id: 100}, "run-2")  # render, nginx -t, nginx -s reload
        returned_at = time.monotonic()
        load.wait_for(lambda counts: min(counts.values()) >= 300, since=returned_at)
        load.wait_for(lambda counts: min(counts.values()) >= 1000)
    finally:
        answers = load.stop()

    assert load.failures() == [], load.failures()[:5]
    per_path = Counter(a.path for a in answers)
    assert min(per_path.values()) >= 1000, per_path
    versions = Counter(a.version for a in answers if a.version)
    assert set(versions) == {"1.0.0", "1.1.0"}, versions
    # Every request sent after set_weights returned went to the new revision; none before it did.
    assert {a.version for a in answers if a.version and a.sent >= returned_at} == {"1.1.0"}
    assert {a.slot for a in answers if a.answered < switched_at} == {"blue"}
    assert {a.slot for a in answers if a.sent >= returned_at} == {"green"}

    assert status.weights == {"blue": 0, "green": 100} and status.active and status.active.slot == "green"
    assert status.previous and status.previous.slot == "blue"  # kept running: a rollback is a reload away
    assert nginx.served_generation(int(router.rsplit(":", 1)[1])) == (generation or 0) + 1
    access_log = (target.nginx_layout.access_log).read_text()
    assert "slot=blue" in access_log and "slot=green" in access_log


def test_a_broken_release_is_rolled_back_to_the_old_version(target: LocalTarget) -> None:
    good = target.stage("1.1.0", "run-1")
    target.switch(good.slot, "run-1")
    router = target.url() or ""
    broken = target.deploy("1.2.0-broken", "run-2")
    target.set_weights({broken.id: 100}, "run-2")
    health = get(router, "/healthz")
    assert health.status_code == 503 and health.headers["x-gendev-slot"] == broken.id

    status = target.rollback("run-2", to_version="1.1.0")
    assert status.active and (status.active.slot, status.active.version) == (good.slot, "1.1.0")
    assert get(router, "/healthz").status_code == 200
    answer = get(router, "/version")
    assert answer.json()["version"] == "1.1.0" and answer.headers["x-gendev-slot"] == good.slot
    assert "stopped" in (target.retire_previous("run-2") or "")
    assert [r.version for r in target.revisions()] == ["1.1.0"]
    assert [h["action"] for h in target.status().history] == [
        "stage", "switch", "stage", "weights", "rollback", "retire"]


def test_weights_split_traffic_exactly_and_a_third_version_needs_a_free_slot(target: LocalTarget) -> None:
    blue = target.deploy("1.0.0", "run-1")
    target.set_weights({blue.id: 100}, "run-1")
    green = target.deploy("1.1.0", "run-2")
    target.set_weights({blue.id: 75, green.id: 25}, "run-2")
    router = target.url() or ""
    slots = Counter(get(router, "/version").headers["x-gendev-slot"] for _ in range(40))
    assert slots == {"blue": 30, "green": 10}  # smooth weighted round robin: the exact ratio
    assert {(r.id, r.weight) for r in target.revisions()} == {("blue", 75), ("green", 25)}
    active = target.status().active
    assert active and active.slot == "blue"  # the larger share
    with pytest.raises(TargetError, match="both slots of demo take traffic"):
        target.deploy("1.2.0", "run-3")
    with pytest.raises(TargetError, match="takes 25 % of the traffic"):
        target.retire(green.id, "run-2")
    with pytest.raises(TargetError, match="add up to 90"):
        target.set_weights({blue.id: 80, green.id: 10}, "run-2")
    target.set_weights({blue.id: 100}, "run-2")  # the canary goes back to 0 %
    assert "stopped" in (target.retire(green.id, "run-2") or "")
    assert {(r.id, r.weight) for r in target.revisions()} == {("blue", 100)}


def test_a_config_nginx_refuses_changes_nothing(target: LocalTarget) -> None:
    blue = target.stage("1.0.0", "run-1")
    target.switch(blue.slot, "run-1")
    router = target.url() or ""
    port = int(router.rsplit(":", 1)[1])
    layout = target.nginx_layout
    before = layout.conf.read_text()
    generation = nginx.served_generation(port)
    broken = before.replace("worker_processes 1;", "worker_processes 1;\nno_such_directive on;")
    with pytest.raises(TargetError, match=r"nginx -t .*unknown directive \"no_such_directive\""):
        nginx.apply_config(require_nginx(), layout, broken, port=port, generation=(generation or 0) + 1, timeout=10)
    assert layout.conf.read_text() == before  # the refused candidate never replaced the config in force
    assert nginx.served_generation(port) == generation
    assert get(router, "/version").json()["version"] == "1.0.0"


def test_nginx_is_this_targets_own_and_stops_with_down(target: LocalTarget) -> None:
    blue = target.stage("1.0.0", "run-1")
    target.switch(blue.slot, "run-1")
    router = target.load_state().router
    assert router and router.mode == "nginx" and router.pid
    master = nginx.master_pid(target.nginx_layout)
    assert master and children_of(router.pid) == {master}  # the watchdog runs our nginx master
    assert str(target.nginx_layout.prefix) in " ".join(router.argv or [])
    assert target.nginx_layout.pid_file.is_file() and target.nginx_layout.error_log.is_file()
    workers = children_of(master)
    stopped = target.down()
    assert any(line.startswith("nginx router on port") and "stopped" in line for line in stopped), stopped
    assert not pid_running(master) and not any(pid_running(w) for w in workers)
    assert target.url() is None


def test_nginx_stops_by_itself_after_the_max_lifetime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_nginx()
    monkeypatch.setenv("GENDEV_MAX_LIFETIME", "3")
    local = LocalTarget(LocalTargetSpec(router="nginx"), "demo", tmp_path)
    try:
        local.stage("1.0.0", "run-1")
        router = local.load_state().router
        assert router and router.pid
        master = nginx.master_pid(local.nginx_layout)
        assert master
        deadline = time.monotonic() + 60
        while (pid_running(router.pid) or pid_running(master)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pid_running(router.pid) and not pid_running(master), "nginx outlived GENDEV_MAX_LIFETIME"
        log = local.log_dir / "nginx-router.log"
        assert "max lifetime of 3 s reached" in log.read_text()
    finally:
        local.down()


def test_a_dead_nginx_is_restarted_on_the_same_port_with_the_split_in_force(target: LocalTarget) -> None:
    blue = target.stage("1.0.0", "run-1")
    target.switch(blue.slot, "run-1")
    router = target.load_state().router
    assert router and router.pid
    url = target.url()
    os.killpg(router.pid, 9)
    deadline = time.monotonic() + 10
    while target.url() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert target.url() is None
    target.switch(blue.slot, "run-1")  # a retried switch brings the router back, nothing else changes
    assert target.url() == url and get(url or "", "/version").json()["version"] == "1.0.0"


def test_switching_router_modes_keeps_the_port(tmp_path: Path) -> None:
    require_nginx()
    builtin = LocalTarget(LocalTargetSpec(), "demo", tmp_path)
    try:
        blue = builtin.stage("1.0.0", "run-1")
        builtin.switch(blue.slot, "run-1")
        url = builtin.url()
        builtin.deploy("1.1.0", "run-2")
        builtin.set_weights({"blue": 50, "green": 50}, "run-2")  # the builtin router splits too
        served = [get(url or "", "/version").json()["version"] for _ in range(4)]
        assert sorted(served) == ["1.0.0", "1.0.0", "1.1.0", "1.1.0"]
        builtin.set_weights({"blue": 100}, "run-2")
        with_nginx = LocalTarget(LocalTargetSpec(router="nginx"), "demo", tmp_path)
        with_nginx.switch(blue.slot, "run-2")  # the same slot, now behind nginx on the same port
        answer = get(url or "", "/version")
        assert with_nginx.url() == url and answer.json()["version"] == "1.0.0"
        router = with_nginx.load_state().router
        assert answer.headers["x-gendev-slot"] == "blue" and router and router.mode == "nginx"
    finally:
        LocalTarget(LocalTargetSpec(router="nginx"), "demo", tmp_path).down()


def test_demo_nginx_spec_makes_an_nginx_target(tmp_path: Path) -> None:
    local = make_target(load_spec(DEMO_NGINX), tmp_path)
    assert isinstance(local, LocalTarget) and local.router_mode == "nginx"


def test_a_missing_nginx_is_refused_before_anything_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv(nginx.NGINX_ENV, "no-such-nginx")
    local = LocalTarget(LocalTargetSpec(router="nginx"), "demo", tmp_path)
    with pytest.raises(TargetError, match="GENDEV_NGINX='no-such-nginx' is not an executable.*apt-get install nginx"):
        local.stage("1.0.0", "run-1")
    assert not local.state_path.exists()
