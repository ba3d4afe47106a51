"""Change windows that wait: open now / next opening (DST, midnight, freezes), the spec's rules, the DAG's
gate task, and the gate operator deferring to its trigger."""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from gendev_release.change_window import evaluate, next_opening, window_close
from gendev_release.duties.planning import next_openings, window_end
from gendev_release.errors import SpecError
from gendev_release.lease import ServiceLease
from gendev_release.plan import START_TASK, WINDOW_TASK, plan_release
from gendev_release.sensors.change_window import OVERRIDE_TASK, ChangeWindowGateOperator
from gendev_release.sensors.triggers import ChangeWindowTrigger
from gendev_release.spec import ChangeWindow, load_spec, parse_spec, spec_from_json

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "dags" / "releases" / "demo.yaml"
UTC = timezone.utc
BERLIN = "Europe/Berlin"


def at(text: str) -> datetime:
    """An instant written in UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def window(**fields: Any) -> ChangeWindow:
    return ChangeWindow.model_validate(fields)


# ============================================================================ open now / next opening
def test_office_hours_open_until_the_end_and_closed_over_the_weekend() -> None:
    office = window(days=["mon", "tue", "wed", "thu", "fri"], start="09:00", end="17:00")
    wednesday = evaluate(office, at("2026-01-07T10:00"))
    assert wednesday.open and wednesday.closes_at == at("2026-01-07T17:01")
    friday_evening = evaluate(office, at("2026-01-09T18:00"))
    assert not friday_evening.open and friday_evening.opens_at == at("2026-01-12T09:00")  # Monday
    assert friday_evening.reason == ("closed: outside the change window mon,tue,wed,thu,fri 09:00-17:00 UTC; "
                                     "next opening 2026-01-12T09:00:00+00:00")
    assert next_opening(office, at("2026-01-07T09:00")) == at("2026-01-07T09:00")  # open at its first minute


def test_a_window_across_midnight_belongs_to_the_day_it_starts() -> None:
    night = window(days=["fri"], start="22:00", end="02:00")
    saturday = evaluate(night, at("2026-01-10T01:30"))
    assert saturday.open and saturday.closes_at == at("2026-01-10T02:01")
    later = evaluate(night, at("2026-01-10T03:00"))
    assert not later.open and later.opens_at == at("2026-01-16T22:00")
    assert not evaluate(night, at("2026-01-09T21:59")).open


def test_office_hours_over_the_spring_forward_weekend_keep_local_time() -> None:
    office = window(days=["mon", "tue", "wed", "thu", "fri"], start="09:00", end="17:00", timezone=BERLIN)
    assert evaluate(office, at("2026-03-27T08:00")).open  # Friday 09:00 CET
    friday = evaluate(office, at("2026-03-27T16:30"))  # 17:30 CET
    assert not friday.open and friday.opens_at == at("2026-03-30T07:00")  # Monday 09:00 CEST


def test_a_start_that_does_not_exist_on_spring_forward_day_opens_when_the_clocks_moved_on() -> None:
    early = window(days=["sun"], start="02:30", end="04:00", timezone=BERLIN)
    state = evaluate(early, at("2026-03-29T00:00"))  # 01:00 CET
    assert not state.open and state.opens_at == at("2026-03-29T01:30")  # 02:30 +01:00 = 03:30 CEST
    opened = evaluate(early, state.opens_at)
    assert opened.open and opened.closes_at == at("2026-03-29T02:01")  # 04:00:59 CEST


def test_an_ambiguous_start_on_fall_back_day_is_its_first_occurrence() -> None:
    brief = window(days=["sun"], start="02:30", end="02:45", timezone=BERLIN)
    state = evaluate(brief, at("2026-10-24T22:00"))
    assert state.opens_at == at("2026-10-25T00:30")  # 02:30 CEST, the first 02:30
    assert evaluate(brief, state.opens_at).closes_at == at("2026-10-25T00:46")


def test_a_night_window_across_the_dst_change_is_an_hour_shorter() -> None:
    night = window(days=["sat"], start="22:00", end="04:00", timezone=BERLIN)
    inside = evaluate(night, at("2026-03-28T23:30"))  # Sunday 00:30 CET
    assert inside.open and inside.closes_at == at("2026-03-29T02:01")  # 04:00:59 CEST
    after = evaluate(night, at("2026-03-29T02:30"))
    assert not after.open and after.opens_at == at("2026-04-04T20:00")  # Saturday 22:00 CEST


SWEEP_WINDOWS = [
    {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00", "timezone": BERLIN},
    {"days": ["fri"], "start": "22:00", "end": "02:00"},
    {"days": ["sat"], "start": "22:00", "end": "04:00", "timezone": BERLIN},
    {"days": ["sun"], "start": "02:30", "end": "04:00", "timezone": BERLIN},
    {"days": ["sun"], "start": "02:30", "end": "02:45", "timezone": BERLIN},
    {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00", "end": "23:59"},
    {"days": ["mon", "wed"], "start": "23:00", "end": "23:00", "timezone": "America/New_York"},
]


@pytest.mark.parametrize("fields", SWEEP_WINDOWS, ids=lambda f: f"{','.join(f['days'])}-{f['start']}-{f['end']}")
def test_without_freezes_the_gate_agrees_with_the_planning_duty(fields: dict[str, Any]) -> None:
    """The planning duty's window_end and next_openings are the older implementation of the same rules."""
    spec_window = window(**fields)
    for start in (at("2026-03-20T00:00"), at("2026-10-19T00:00"), at("2026-03-06T00:00")):
        moment = start
        while moment < start + timedelta(days=16):
            state = evaluate(spec_window, moment)
            assert state.closes_at == window_end(spec_window, moment), moment
            assert window_close(spec_window, moment) == window_end(spec_window, moment), moment
            if not state.open:
                assert state.opens_at == next_openings(spec_window, moment, days=8)[0][0], moment
            moment += timedelta(minutes=37)


# ============================================================================================ freezes
def test_a_freeze_of_whole_days_closes_an_always_open_window() -> None:
    always = window(timezone=BERLIN, freeze=[{"start": "2026-12-24", "end": "2026-12-26", "reason": "Christmas"}])
    before = evaluate(always, at("2026-12-23T12:00"))
    assert before.open and before.closes_at == at("2026-12-23T23:00")  # the freeze starts 24th 00:00 CET
    frozen = evaluate(always, at("2026-12-25T12:00"))
    assert not frozen.open and frozen.frozen_by is not None and frozen.frozen_by.reason == "Christmas"
    assert frozen.opens_at == at("2026-12-26T23:00")  # the 26th is frozen all day: 27th 00:00 CET
    assert frozen.reason.startswith("closed: frozen until 2026-12-26T23:00:00+00:00: Christmas; next opening")


def test_a_freeze_keeps_the_release_waiting_past_the_window() -> None:
    office = window(days=["mon", "tue", "wed", "thu", "fri"], start="09:00", end="17:00",
                    freeze=[{"start": "2026-01-12", "end": "2026-01-13", "reason": "quarter-end audit"}])
    friday = evaluate(office, at("2026-01-09T18:00"))
    assert friday.opens_at == at("2026-01-14T09:00")  # Monday and Tuesday frozen: Wednesday


def test_a_freeze_may_end_inside_a_window_at_an_instant() -> None:
    office = window(days=["wed"], start="09:00", end="17:00", timezone=BERLIN,
                    freeze=[{"start": "2026-01-07T08:00", "end": "2026-01-07T11:30", "reason": "incident"},
                            {"start": "2026-01-07T15:00:00+00:00", "end": "2026-01-07T16:00:00+00:00",
                             "reason": "database maintenance"}])
    state = evaluate(office, at("2026-01-07T09:00"))  # 10:00 CET, frozen (naive times are local: until 11:30 CET)
    assert not state.open and state.opens_at == at("2026-01-07T10:30")
    opened = evaluate(office, at("2026-01-07T10:30"))
    assert opened.open and opened.closes_at == at("2026-01-07T15:00")  # the next freeze, given in UTC


def test_no_opening_within_the_horizon() -> None:
    frozen = window(freeze=[{"start": "2026-01-01", "end": "2027-12-31", "reason": "moratorium"}])
    state = evaluate(frozen, at("2026-02-01T00:00"))
    assert not state.open and state.opens_at is None
    assert state.reason.endswith("no opening within 400 days")


# ======================================================================================= spec rules
def demo_data() -> dict[str, Any]:
    return yaml.safe_load(DEMO.read_text(encoding="utf-8"))


def problems(change_window: dict[str, Any]) -> list[tuple[str, str]]:
    data = demo_data()
    data["change_window"].update(change_window)
    with pytest.raises(SpecError) as info:
        parse_spec(data, source="spec.yaml")
    return [(p.field, p.message) for p in info.value.problems]


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"freeze": [{"start": "2026-12-24", "end": "2026-12-20", "reason": "holidays"}]}, "change_window.freeze.0.end",
     "the freeze 2026-12-24 to 2026-12-20 ends before it starts; give an end after the start (an end date counts "
     "as the whole day)"),
    ({"freeze": [{"start": "2026-12-20", "end": "2026-12-27", "reason": "holidays"},
                 {"start": "2026-12-27T10:00", "end": "2026-12-28", "reason": "audit"}]}, "change_window.freeze.1",
     "the freeze 2026-12-27T10:00:00 to 2026-12-28 overlaps freeze.0 (2026-12-20 to 2026-12-27); merge the two "
     "periods or move one"),
    ({"freeze": [{"start": "2026-02-30", "end": "2026-03-02", "reason": "holidays"}]}, "change_window.freeze.0.start",
     "'2026-02-30' is not a date (2026-12-24) or a date-time (2026-12-24T18:00 or 2026-12-24T18:00:00+01:00): "
     "day is out of range for month"),
    ({"freeze": [{"start": "2026-12-20", "end": "2026-12-27"}]}, "change_window.freeze.0.reason",
     "required field is missing"),
    ({"max_wait_hours": -1}, "change_window.max_wait_hours", "Input should be greater than or equal to 0"),
    ({"timezone": "Moon/Base"}, "change_window.timezone",
     "unknown time zone 'Moon/Base'; use an IANA name such as Europe/Berlin"),
])
def test_bad_change_windows_are_refused_naming_the_field(change: dict[str, Any], field: str, message: str) -> None:
    assert problems(change) == [(field, message)]


def test_adjacent_freezes_are_fine_and_the_spec_round_trips(tmp_path: Path) -> None:
    text = DEMO.read_text(encoding="utf-8").replace("  timezone: UTC\n", (
        "  timezone: Europe/Berlin\n"
        "  freeze:\n"
        "    - {start: 2026-12-20, end: 2026-12-27, reason: holidays}\n"
        "    - {start: 2026-12-28, end: 2026-12-28T12:00:00+01:00, reason: inventory}\n"
        "  max_wait_hours: 2.5\n"))
    spec_file = tmp_path / "demo.yaml"
    spec_file.write_text(text, encoding="utf-8")
    shutil_copy_inputs(tmp_path)
    spec = load_spec(spec_file)
    assert spec.change_window is not None and len(spec.change_window.freeze) == 2
    again = spec_from_json(spec.model_dump(mode="json"), str(spec_file))
    assert again.change_window == spec.change_window  # what crosses to a worker reads back the same


def shutil_copy_inputs(folder: Path) -> None:
    import shutil

    shutil.copytree(DEMO.parent / "demo", folder / "demo")


# ==================================================================================== the DAG's gate
def test_the_gate_is_the_first_task_after_start_release() -> None:
    plan = plan_release(load_spec(DEMO))
    assert plan.window_gate is not None and plan.window_gate.task_id == WINDOW_TASK
    assert plan.window_gate.upstream == (START_TASK,)
    first_step = plan.phases[0].tasks[0]
    assert first_step.task_id == "p1_pre_deployment.readiness" and first_step.upstream == (WINDOW_TASK,)
    assert [t.task_id for t in plan.all_tasks()][:3] == [START_TASK, WINDOW_TASK, first_step.task_id]


def test_a_release_without_a_change_window_has_no_gate() -> None:
    data = demo_data()
    data.update(environment="staging")
    data.pop("change_window")
    plan = plan_release(parse_spec(data))
    assert plan.window_gate is None and WINDOW_TASK not in {t.task_id for t in plan.all_tasks()}
    assert plan.phases[0].tasks[0].upstream == (START_TASK,)


def test_the_dag_renders_the_gate_operator() -> None:
    from gendev_release.render import build_release_dag

    dag = build_release_dag(load_spec(DEMO))
    gate = dag.get_task(WINDOW_TASK)
    assert isinstance(gate, ChangeWindowGateOperator)
    assert gate.upstream_task_ids == {START_TASK}
    assert gate.downstream_task_ids == {"p1_pre_deployment.readiness"}


# ======================================================================================== the operator
class FakeTI:
    def __init__(self, xcom: dict[str, Any] | None = None) -> None:
        self.task_id = WINDOW_TASK
        self.xcom = xcom or {}

    def xcom_pull(self, *, task_ids: str, key: str) -> Any:
        return self.xcom.get(task_ids)

    def get_dagrun_state(self, *, dag_id: str, run_id: str) -> str:
        return "running"


def gate_for(change_window: dict[str, Any]) -> ChangeWindowGateOperator:
    data = demo_data()
    data["change_window"] = change_window
    spec = parse_spec(data, str(DEMO), DEMO)
    return ChangeWindowGateOperator.for_release(task_id=WINDOW_TASK, spec_data=spec.model_dump(mode="json"),
                                                spec_path=str(DEMO))


def context_for(operator: ChangeWindowGateOperator, ti: FakeTI | None = None) -> dict[str, Any]:
    dag_run = SimpleNamespace(dag_id="release__demo", run_id="window-run", conf={"version": "1.1.0"},
                              triggering_user_name="admin")
    return {"dag_run": dag_run, "ti": ti or FakeTI(), "params": {}, "task": operator}


def stored(home: Path) -> dict[str, Any]:
    return json.loads((home / "evidence" / "release__demo" / "window-run" / "change_window.json").read_text())


def resume(operator: ChangeWindowGateOperator, context: dict[str, Any], deferred: TaskDeferred) -> dict[str, Any]:
    async def first_event() -> Any:
        async for event in deferred.trigger.run():
            return event.payload

    event = asyncio.run(first_event())
    return operator.execute_complete(context, event=event, **(deferred.kwargs or {}))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GENDEV_HOME", str(tmp_path))
    return tmp_path


def test_an_open_window_passes_at_once(home: Path) -> None:
    operator = gate_for({"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00", "end": "23:59"})
    record = operator.execute(context_for(operator))
    assert (record["status"], record["deferred"], record["waited_seconds"]) == ("open", False, 0.0)
    assert stored(home)["status"] == "open"


def test_a_closed_window_defers_and_the_release_continues_when_it_opens(home: Path) -> None:
    opens = datetime.now(UTC) + timedelta(seconds=1.5)
    operator = gate_for({"freeze": [{"start": later(days=-1), "end": opens.isoformat(), "reason": "release train"}],
                         "max_wait_hours": 1})
    context = context_for(operator)
    with pytest.raises(TaskDeferred) as info:
        operator.execute(context)
    deferred = info.value
    assert isinstance(deferred.trigger, ChangeWindowTrigger) and deferred.method_name == "execute_complete"
    assert set(deferred.kwargs or {}) == {"requested_at", "deadline"}
    waiting = stored(home)
    assert waiting["status"] == "waiting" and waiting["state"]["frozen_by"]["reason"] == "release train"
    assert waiting["state"]["opens_at"] == opens.isoformat()
    lease = ServiceLease(home / "targets" / "demo", "demo").read()
    assert lease is not None and lease.run_id == "window-run" and lease.ttl_seconds >= 3600  # covers the wait

    record = resume(operator, context, deferred)
    assert (record["status"], record["deferred"]) == ("open", True)
    assert datetime.fromisoformat(record["decided_at"]) >= opens and record["waited_seconds"] > 0
    assert stored(home)["status"] == "open"


def later(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


def test_a_window_opening_after_the_longest_wait_fails_before_anything_changes(home: Path) -> None:
    operator = gate_for({"freeze": [{"start": later(days=-1), "end": later(days=3), "reason": "moratorium"}],
                         "max_wait_hours": 2})
    with pytest.raises(AirflowFailException, match="after the longest wait allowed"):
        operator.execute(context_for(operator))
    assert stored(home)["status"] == "failed"
    assert not (home / "targets" / "demo" / "state.json").exists()  # nothing deployed, nothing changed

    operator = gate_for({"freeze": [{"start": later(days=-1), "end": later(days=800), "reason": "moratorium"}]})
    with pytest.raises(AirflowFailException, match="moratorium; no opening within 400 days; nothing was changed"):
        operator.execute(context_for(operator))


def test_a_trigger_event_of_the_wrong_shape_fails_the_gate(home: Path) -> None:
    operator = gate_for({})
    context = context_for(operator)
    with pytest.raises(AirflowFailException,
                       match=r"the change-window trigger sent an event that is not a WindowEvent: status"):
        operator.execute_complete(context, event={"status": "maybe"}, requested_at=0.0, deadline=1.0)
    with pytest.raises(AirflowFailException, match="the change-window trigger ended without an event"):
        operator.execute_complete(context, event=None, requested_at=0.0, deadline=1.0)


def test_a_failed_wait_fails_the_gate_with_the_triggers_reason(home: Path) -> None:
    operator = gate_for({})
    event = {"status": "failed", "requested_at": 0.0, "decided_at": 1.0, "waited_seconds": 1.0,
             "reason": "closed: no opening within 400 days", "state": {}}
    with pytest.raises(AirflowFailException, match="change window: closed: no opening within 400 days"):
        operator.execute_complete(context_for(operator), event=event, requested_at=0.0, deadline=1.0)
    assert stored(home)["status"] == "failed"


def test_an_approved_emergency_override_passes_a_closed_window_and_is_recorded(home: Path) -> None:
    operator = gate_for({"freeze": [{"start": later(days=-1), "end": later(days=30), "reason": "moratorium"}]})
    approval = {"approved": True, "approvers": ["bob", "carol"], "decided_at": "2026-05-01T10:00:00+00:00",
                "comment": "security fix"}
    upstream = copy.copy(operator)
    upstream.upstream_task_ids.add(OVERRIDE_TASK)  # the approval task the hook expects upstream
    record = operator.execute(context_for(upstream, FakeTI({OVERRIDE_TASK: approval})))
    assert record["status"] == "override" and record["override"]["approvers"] == ["bob", "carol"]
    assert stored(home)["override"]["comment"] == "security fix"

    approval["approved"] = False  # a rejected override waits for the window like any release
    with pytest.raises(AirflowFailException, match="after the longest wait allowed"):
        operator.execute(context_for(upstream, FakeTI({OVERRIDE_TASK: approval})))


def test_an_emergency_override_needs_approvers_and_becomes_a_gate_before_the_window() -> None:
    from gendev_release.plan import plan_release

    data = demo_data()
    data["change_window"]["emergency_override"] = True
    data.pop("approvals")
    data["environment"] = "staging"  # production needs approvals anyway; the override needs them too
    with pytest.raises(SpecError) as info:
        parse_spec(data, source="spec.yaml")
    assert [(p.field, p.message) for p in info.value.problems] == [(
        "change_window.emergency_override",
        "people approve an emergency override; give approvals (its approvers decide it)")]
    data = demo_data()
    data["change_window"]["emergency_override"] = True
    plan = plan_release(parse_spec(data, source="spec.yaml"))
    assert [t.task_id for t in plan.gates()] == ["change_window_override", "change_window"]
    assert plan.task("change_window").upstream == ("change_window_override",)
    assert plan.params["emergency"]["default"] is False
    assert "emergency" not in plan_release(parse_spec(demo_data(), source="spec.yaml")).params

