"""The typed run record, the release history and the one API that reads them."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from gendev_release.run_record import (
    Attempt,
    HistoryEntry,
    RecordError,
    ReleaseHistory,
    RunRecord,
    RunRecordStore,
    RunState,
    safe_name,
)


def record(**changes: object) -> RunRecord:
    data: dict[str, object] = {"dag_id": "release__demo", "run_id": "manual__2026-01-01T00:00:00+00:00",
                               "service": "demo", "version": "1.2.0"}
    data.update(changes)
    return RunRecord.model_validate(data)


def test_a_record_round_trips_through_the_store(tmp_path: Path) -> None:
    store = RunRecordStore(tmp_path)
    saved = store.save(record(attempts=[Attempt(number=1, first_task="start_release")]))
    path = store.path("release__demo", "manual__2026-01-01T00:00:00+00:00")
    assert path == tmp_path / "runs" / "release__demo" / "manual__2026-01-01T00_00_00+00_00" / "record.json"
    loaded = store.load(saved.dag_id, saved.run_id)
    assert loaded == saved
    assert loaded is not None and loaded.attempt is not None and loaded.attempt.number == 1


def test_unknown_fields_and_bad_states_are_refused_on_read(tmp_path: Path) -> None:
    store = RunRecordStore(tmp_path)
    path = store.path("release__demo", "r1")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({**record(run_id="r1").model_dump(mode="json"), "state": "sort of"}))
    with pytest.raises(RecordError, match="not a valid record"):
        store.load("release__demo", "r1")
    with pytest.raises(ValueError):
        RunRecord.model_validate({**record().model_dump(mode="json"), "outcom": "success"})


def test_update_under_the_lock_never_loses_a_concurrent_change(tmp_path: Path) -> None:
    store = RunRecordStore(tmp_path)
    store.save(record(run_id="r1"))

    def add(n: int) -> None:
        store.update("release__demo", "r1", lambda r: r.notified.append(f"n{n}"))

    threads = [threading.Thread(target=add, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    loaded = store.load("release__demo", "r1")
    assert loaded is not None and sorted(loaded.notified) == sorted(f"n{n}" for n in range(20))


def test_update_without_a_record_needs_a_creator(tmp_path: Path) -> None:
    store = RunRecordStore(tmp_path)
    with pytest.raises(RecordError, match="never started"):
        store.update("release__demo", "nope", lambda r: None)
    created = store.update("release__demo", "new", lambda r: setattr(r, "outcome", "refused"),
                           create=lambda: record(run_id="new", version=None))
    assert created.outcome == "refused" and created.version is None


@pytest.mark.parametrize(("changes", "note"), [
    ({"state": RunState.success, "outcome": "success"}, "demo 1.2.0 released and serving"),
    ({"state": RunState.failed, "outcome": "rolled_back", "active_version": "1.1.0",
      "failed_tasks": ["p5_deployment.execute_strategy"]},
     "rolled back to 1.1.0 after p5_deployment.execute_strategy failed"),
    ({"state": RunState.failed, "outcome": "refused", "reason": "invalid run parameters: verison: unknown"},
     "refused: invalid run parameters: verison: unknown"),
    ({"state": RunState.running}, "demo 1.2.0: running"),
])
def test_the_note_says_what_happened(changes: dict[str, object], note: str) -> None:
    assert record(**changes).note == note


def test_list_returns_every_record_oldest_first(tmp_path: Path) -> None:
    store = RunRecordStore(tmp_path)
    first = store.save(record(run_id="a"))
    second = store.save(record(run_id="b"))
    (tmp_path / "runs" / "release__demo" / "junk").mkdir()
    (tmp_path / "runs" / "release__demo" / "junk" / "record.json").write_text("{not json")
    assert [r.run_id for r in store.list("release__demo")] == [first.run_id, second.run_id]


def test_history_names_the_last_verified_version(tmp_path: Path) -> None:
    history = ReleaseHistory(tmp_path, "release__demo")
    assert history.last_verified_version() is None
    history.append(HistoryEntry(run_id="r1", version="1.1.0", outcome="success", verified=True))
    history.append(HistoryEntry(run_id="r2", version="1.2.0", outcome="rolled_back"))
    history.append(HistoryEntry(run_id="r3", version="1.3.0", outcome="interrupted"))
    assert history.last_verified_version() == "1.1.0"
    # A success line that is not verified (never written by the gate) never becomes a rollback target.
    history.append(HistoryEntry(run_id="r4", version="1.4.0", outcome="success", verified=False))
    assert history.last_verified_version() == "1.1.0"


def test_history_appends_each_attempt_once(tmp_path: Path) -> None:
    history = ReleaseHistory(tmp_path, "release__demo")
    entry = HistoryEntry(run_id="r1", attempt=1, version="1.1.0", outcome="rolled_back")
    history.append(entry)
    history.append(entry)  # a retried watcher
    history.append(HistoryEntry(run_id="r1", attempt=2, version="1.1.0", outcome="success", verified=True))
    assert [(e.attempt, e.outcome) for e in history.entries()] == [(1, "rolled_back"), (2, "success")]


def test_history_reads_lines_of_the_earlier_format(tmp_path: Path) -> None:
    path = tmp_path / "history" / "release__demo.jsonl"
    path.parent.mkdir()
    path.write_text(json.dumps({"outcome": "success", "run_id": "old", "version": "1.0.0", "source_sha": "abc",
                                "finished_at": "2026-01-01T00:00:00+00:00", "phase_seconds": {"p1": 1.0}}) + "\n"
                    + "garbage\n"
                    + json.dumps({"outcome": "rolled_back", "run_id": "old2", "version": "1.0.1",
                                  "failed_tasks": ["x"], "finished_at": "2026-01-02T00:00:00+00:00"}) + "\n")
    history = ReleaseHistory(tmp_path, "release__demo")
    assert [e.run_id for e in history.entries()] == ["old", "old2"]
    assert history.last_verified_version() == "1.0.0"


@pytest.mark.parametrize(("raw", "safe"), [("manual__2026:01", "manual__2026_01"), ("../../etc", ".._.._etc"),
                                           ("..", "_"), ("", "_"), ("a/b", "a_b")])
def test_safe_name_is_one_path_component(raw: str, safe: str) -> None:
    assert safe_name(raw) == safe


def test_the_evidence_store_keeps_every_earlier_attempt(tmp_path: Path) -> None:
    from gendev_release.context import EvidenceStore, RunPaths

    store = EvidenceStore(RunPaths(home=tmp_path, dag_id="release__demo", run_id="r1"))
    report = store.paths.evidence_dir / "release-report.md"
    for attempt in ("first", "second", "third"):
        store.keep_earlier(report)
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(attempt)
    kept = sorted(p.name for p in store.attempts_dir.iterdir())
    assert kept == ["release-report.1.md", "release-report.2.md"]
    assert [(store.attempts_dir / name).read_text() for name in kept] == ["first", "second"]
    assert report.read_text() == "third"
