"""The failure branch and the serving check judge this attempt from durable facts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gendev_release.context import DutyContext, RunPaths
from gendev_release.recovery import abort, decide, failure_message
from gendev_release.release_run import open_run, update_record
from gendev_release.run_record import Attempt, RunRecordStore, RunState
from gendev_release.serving import ServedAnswer, ServingCheck, guidance, version_in
from gendev_release.spec import parse_spec, run_params
from gendev_release.targets.base import ResourceChange, SlotInfo, Target, TargetStatus

REPO = Path(__file__).resolve().parents[1]
RUN = "run-under-test"


class StateTarget(Target):
    """A target that is only its state: which slot is active, previous and staged, deployed by which run."""

    kind = "state"

    def __init__(self) -> None:
        self.active: SlotInfo | None = None
        self.previous: SlotInfo | None = None
        self.staged: SlotInfo | None = None
        self.discarded: list[str] = []

    def status(self) -> TargetStatus:
        return TargetStatus(service="demo", router_url=None, active=self.active, previous=self.previous,
                            staged=self.staged)

    def url(self) -> str | None:
        return None

    def plan(self, version: str) -> list[ResourceChange]:
        return []

    def stage(self, version: str, run_id: str) -> SlotInfo:
        raise NotImplementedError

    def switch(self, slot: str, run_id: str) -> TargetStatus:
        raise NotImplementedError

    def rollback(self, run_id: str, to_version: str | None = None) -> TargetStatus:
        raise NotImplementedError

    def retire_previous(self, run_id: str) -> str | None:
        return None

    def withdraw(self, run_id: str) -> TargetStatus:
        raise NotImplementedError

    def discard_staged(self, run_id: str) -> str | None:
        if self.staged is not None and self.staged.run_id == run_id:
            self.discarded.append(self.staged.version)
            self.staged = None
            return "stopped"
        return None

    def down(self) -> list[str]:
        return []


def slot(name: str, version: str, run_id: str) -> SlotInfo:
    return SlotInfo(slot=name, version=version, url=f"http://127.0.0.1:1/{name}", pid=1, run_id=run_id)


@pytest.fixture
def ctx(tmp_path: Path) -> DutyContext:
    data = yaml.safe_load((REPO / "dags" / "releases" / "demo.yaml").read_text())
    spec = parse_spec(data, str(REPO / "dags" / "releases" / "demo.yaml"), REPO / "dags" / "releases" / "demo.yaml")
    paths = RunPaths(home=tmp_path, dag_id=spec.dag_id, run_id=RUN)
    return DutyContext(spec=spec, params=run_params(spec, {"version": "1.3.0"}), paths=paths, target=StateTarget())


def test_version_in_reads_the_dotted_field() -> None:
    assert version_in('{"version": "1.2.0"}', "version") == "1.2.0"
    assert version_in('{"build": {"version": "1.2.0"}}', "build.version") == "1.2.0"
    assert version_in('{"build": {"version": ["1"]}}', "build.version") is None
    assert version_in("<html>1.2.0</html>", "version") is None


def test_serving_needs_the_target_and_every_answer_to_agree() -> None:
    ours = slot("green", "1.3.0", RUN)
    good = [ServedAnswer(200, "1.3.0")] * 5
    assert ServingCheck("1.3.0", RUN, "http://r", ours, good).ok
    mixed = ServingCheck("1.3.0", RUN, "http://r", ours, [*good[:4], ServedAnswer(200, "1.1.0")])
    assert not mixed.ok and "answered 1.1.0, 1.3.0 in 5 request(s)" in mixed.problems()[0]
    other_run = ServingCheck("1.3.0", RUN, "http://r", slot("green", "1.3.0", "another-run"), good)
    assert not other_run.ok and "deployed by run another-run" in other_run.problems()[0]
    assert not ServingCheck("1.3.0", RUN, "http://r", ours, []).ok  # no answer proves nothing


def test_guidance_after_a_rollback_names_the_phase_to_clear(ctx: DutyContext) -> None:
    record = open_run(ctx)
    record.attempts = [Attempt(number=1, outcome="rolled_back", state=RunState.failed,
                               failed_tasks=["p6_testing.qa"], active_version="1.1.0"),
                       Attempt(number=2, first_task="p6_testing.qa")]
    check = ServingCheck("1.3.0", RUN, "http://r", slot("blue", "1.1.0", "earlier-run"),
                         [ServedAnswer(200, "1.1.0")])
    text = guidance(ctx, check, record)
    assert "1.3.0 was rolled back to 1.1.0 after p6_testing.qa" in text
    assert "clear from p4_environment.provisioning (with downstream)" in text


def test_guidance_when_another_release_replaced_this_one(ctx: DutyContext) -> None:
    record = open_run(ctx)
    check = ServingCheck("1.3.0", RUN, "http://r", slot("blue", "1.4.0", "newer-run"), [ServedAnswer(200, "1.4.0")])
    assert "was deployed since by run newer-run" in guidance(ctx, check, record)


def test_decide_rolls_back_only_when_this_runs_version_takes_traffic(ctx: DutyContext) -> None:
    target = ctx.target
    assert isinstance(target, StateTarget)
    open_run(ctx)
    target.active = slot("green", "1.3.0", RUN)
    assert decide(ctx, ["p6_testing.qa"]) == "rollback"
    # After a rollback the old version serves: a failure of a re-run rolls nothing back again.
    target.active = slot("blue", "1.1.0", "earlier-run")
    assert decide(ctx, ["p6_testing.qa"]) == "abort"
    record = RunRecordStore(ctx.paths.home).load(ctx.paths.dag_id, RUN)
    assert record is not None and record.failure_decision == "abort"


def test_abort_stops_only_what_this_run_staged(ctx: DutyContext) -> None:
    target = ctx.target
    assert isinstance(target, StateTarget)
    open_run(ctx)
    target.active = slot("blue", "1.1.0", "earlier-run")
    target.staged = slot("green", "1.4.0", "another-run")  # another release's slot: never ours to stop
    abort(ctx)
    assert target.discarded == [] and target.staged is not None
    target.staged = slot("green", "1.3.0", RUN)
    record = abort(ctx)
    assert target.discarded == ["1.3.0"] and record.outcome == "aborted" and record.active_version == "1.1.0"


def test_a_refused_run_is_never_rolled_back_or_told_about(ctx: DutyContext) -> None:
    target = ctx.target
    assert isinstance(target, StateTarget)
    open_run(ctx)
    update_record(ctx, outcome="refused", reason="another release holds the service")
    target.active = slot("green", "1.3.0", RUN)
    assert decide(ctx, ["start_release"]) == "abort"


def test_failure_message_of_a_rerun_says_the_version_is_still_rolled_back(ctx: DutyContext) -> None:
    record = open_run(ctx)
    record.attempts = [Attempt(number=1, outcome="rolled_back"), Attempt(number=2)]
    record.outcome, record.active_version, record.failed_tasks = "aborted", "1.1.0", ["p6_testing.qa"]
    message = failure_message(ctx, record)
    assert message["severity"] == "warning"
    assert message["subject"] == "demo 1.3.0: re-run failed at p6_testing.qa; still rolled back (1.1.0 serving)"
