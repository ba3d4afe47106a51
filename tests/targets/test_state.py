"""The one state store every target kind shares, and the traffic-split rule."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from gendev_release.errors import TargetError
from gendev_release.lease import ServiceLease
from gendev_release.targets.base import check_weights
from gendev_release.targets.state import TargetStore, check_revision

#: A state.json as the local target wrote it before revisions had weights.
OLDER_STATE = {
    "service": "demo", "router": {"port": 41000, "pid": None, "url": "http://127.0.0.1:41000", "argv": ["x"]},
    "slots": {"blue": {"slot": "blue", "version": "1.0.0", "url": "http://127.0.0.1:41001", "pid": None,
                       "started_at": "2026-01-01T00:00:00+00:00", "run_id": "run-1", "port": 41001,
                       "argv": ["python", "-m", "gendev_release.demo.service"], "log": "/tmp/blue.log"},
              "green": None},
    "active": "blue", "previous": None, "staged": None, "switched_by_run": "run-1",
    "history": [{"at": "2026-01-01T00:00:00+00:00", "action": "switch", "run_id": "run-1", "slot": "blue",
                 "version": "1.0.0"}],
}


def store(home: Path, kind: str = "local") -> TargetStore:
    return TargetStore(home, "demo", kind=kind, fixed_slots=("blue", "green") if kind == "local" else ())


def test_an_older_state_file_reads_as_all_traffic_on_the_active_slot(tmp_path: Path) -> None:
    local = store(tmp_path)
    local.state_path.parent.mkdir(parents=True)
    local.state_path.write_text(json.dumps(OLDER_STATE))
    state = local.read()
    assert state.weights is None and state.traffic() == {"blue": 100}
    assert state.kind == "local" and state.record("blue") and state.record("green") is None
    local.save(state)
    assert json.loads(local.state_path.read_text())["slots"]["blue"]["url"] == "http://127.0.0.1:41001"


def test_a_fresh_store_is_empty_and_shares_its_folder_with_the_lease(tmp_path: Path) -> None:
    local = store(tmp_path)
    state = local.read()
    assert state.slots == {"blue": None, "green": None} and state.traffic() == {} and not local.exists()
    lease = local.lease()
    assert isinstance(lease, ServiceLease) and lease.path == local.directory / "lease.json"
    assert local.state_path == tmp_path / "targets" / "demo" / "state.json"


def test_an_invalid_state_names_the_field(tmp_path: Path) -> None:
    local = store(tmp_path)
    local.state_path.parent.mkdir(parents=True)
    local.state_path.write_text(json.dumps({**OLDER_STATE, "weights": {"blue": "all"}}))
    with pytest.raises(TargetError, match=r"state.json is not valid at weights.blue: Input should be a valid integer"):
        local.read()
    local.state_path.write_text("{not json")
    with pytest.raises(TargetError, match="cannot read the demo target state"):
        local.read()


def test_another_kind_may_not_take_over_live_revisions(tmp_path: Path) -> None:
    local = store(tmp_path)
    local.state_path.parent.mkdir(parents=True)
    local.state_path.write_text(json.dumps(OLDER_STATE))
    with pytest.raises(TargetError, match="written by the local target and still records revisions.*gendev-release "
                                          "down"):
        store(tmp_path, "command").read()
    emptied = {**OLDER_STATE, "slots": {"blue": None, "green": None}, "active": None}
    local.state_path.write_text(json.dumps(emptied))
    taken = store(tmp_path, "command").read()
    assert taken.kind == "command" and taken.slots == {} and len(taken.history) == 1


def test_the_lock_serialises_changes(tmp_path: Path) -> None:
    local = store(tmp_path, "command")

    def bump() -> None:
        for _ in range(20):
            with local.locked() as state:
                state.revision_counter += 1
                local.save(state)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert local.read().revision_counter == 80


@pytest.mark.parametrize(("weights", "message"), [
    ({"blue": 60, "green": 30}, "add up to 90 %"),
    ({"blue": 101}, "a weight is a whole percent from 0 to 100"),
    ({"blue": 50.5, "green": 49.5}, "a weight is a whole percent"),
    ({"blue": True}, "a weight is a whole percent"),
    ({"Blue!": 100}, "weights key 'Blue!' is not a revision id"),
])
def test_a_split_must_be_whole_percents_adding_up_to_100(weights: dict, message: str) -> None:
    with pytest.raises(TargetError, match=message):
        check_weights(weights)


def test_a_valid_split_drops_zero_shares() -> None:
    assert check_weights({"blue": 0, "green": 100}) == {"green": 100}
    assert check_weights({}) == {}
    assert check_revision("r12") == "r12"
    with pytest.raises(TargetError, match="is not a revision id"):
        check_revision("r1\n")
