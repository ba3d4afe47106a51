"""The release plan: seed phase order, a strict chain of agent steps, the failure branch, the watcher."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gendev_release.catalogue import AGENTS, DEPLOYMENT_CHECKLIST, ITEM_KINDS, PHASES, all_steps, step_by_id
from gendev_release.plan import (
    ABORT_TASK,
    ALL_DONE,
    ALL_SUCCESS,
    DECIDE_TASK,
    GATE_TASK,
    NOTIFY_TASK,
    ONE_FAILED,
    ROLLBACK_TASK,
    START_TASK,
    VERIFY_TASK,
    WATCHER_TASK,
    ReleasePlan,
    graph_json,
    plan_release,
)
from gendev_release.spec import load_spec
from gendev_release.spec_rules import VERSION_FORMAT, VERSION_MAX_LENGTH, VERSION_PATTERN, check_version

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "dags" / "releases" / "demo.yaml"
SEED = Path("/work/shared/seed/deployment-release-workflow.md")

SEED_PHASES = [
    ("p1_pre_deployment", "Pre-Deployment Preparation"),
    ("p2_planning", "Release Planning & Coordination"),
    ("p3_build", "Build & Package Management"),
    ("p4_environment", "Environment Configuration"),
    ("p5_deployment", "Deployment Execution"),
    ("p6_testing", "Testing & Validation"),
    ("p7_monitoring", "Monitoring & Observability"),
    ("p8_post_deployment", "Post-Deployment Activities"),
]
SEED_AGENTS = [
    "deployment-ops-manager", "risk-manager", "project-planner", "stakeholder-communicator", "cicd-builder",
    "dependency-manager", "iac-automation-engineer", "security-architect", "deployment-ops-manager",
    "resource-monitor", "test-suite-generator", "qa-coordinator", "resource-monitor", "performance-optimizer",
    "documentation-generator", "training-change-manager",
]
SENSOR = "p5_deployment.post_switch_health"


@pytest.fixture(scope="module")
def plan() -> ReleasePlan:
    return plan_release(load_spec(DEMO))


def agent_tasks(plan: ReleasePlan) -> list:
    return [t for phase in plan.phases for t in phase.tasks if t.kind == "agent"]


def main_chain(plan: ReleasePlan) -> list[str]:
    window = [plan.window_gate.task_id] if plan.window_gate else []
    return [plan.start.task_id, *window, *(t.task_id for phase in plan.phases for t in phase.tasks),
            plan.gate.task_id]


# ------------------------------------------------------------------------------------- phases
def test_eight_phases_in_seed_order(plan: ReleasePlan) -> None:
    assert [(p.id, p.title) for p in plan.phases] == SEED_PHASES
    assert [p.number for p in plan.phases] == list(range(1, 9))


def test_sixteen_agent_steps_with_seed_agents(plan: ReleasePlan) -> None:
    steps = agent_tasks(plan)
    assert len(steps) == 16
    assert [t.agent for t in steps] == SEED_AGENTS
    assert all(len([t for t in p.tasks if t.kind == "agent"]) == 2 for p in plan.phases)
    for task in steps:
        assert task.task_id == f"{task.group}.{task.step_id}"
        assert task.duty == task.step_id
        assert task.trigger_rule == ALL_SUCCESS
    assert len(AGENTS) == 14
    assert list(AGENTS) == list(dict.fromkeys(SEED_AGENTS))


def test_every_step_follows_the_previous_task(plan: ReleasePlan) -> None:
    chain = main_chain(plan)
    assert chain[0] == START_TASK and chain[-1] == GATE_TASK
    # start, change window, steps, preview and post-switch sensors, post-promotion watch, observation window, gate
    assert len(chain) == len(set(chain)) == 1 + 1 + 16 + 2 + 1 + 1 + 1
    assert plan.start.upstream == ()
    for previous, current in zip(chain, chain[1:], strict=False):
        assert plan.task(current).upstream == (previous,), current


def test_only_execute_strategy_moves_traffic(plan: ReleasePlan) -> None:
    movers = [t.task_id for t in plan.all_tasks() if t.moves_traffic]
    assert movers == ["p5_deployment.execute_strategy"]


def test_health_sensor_sits_between_execute_strategy_and_monitoring(plan: ReleasePlan) -> None:
    phase5 = plan.phases[4]
    assert [t.task_id for t in phase5.tasks] == [
        "p5_deployment.preview_health", "p5_deployment.execute_strategy", SENSOR, "p5_deployment.post_promotion",
        "p5_deployment.monitoring_alerts"]
    assert plan.task("p5_deployment.execute_strategy").upstream == ("p5_deployment.preview_health",)
    sensor = plan.task(SENSOR)
    assert sensor.kind == "sensor"
    assert sensor.upstream == ("p5_deployment.execute_strategy",)
    assert plan.task("p5_deployment.post_promotion").kind == "watch"
    assert plan.task("p5_deployment.monitoring_alerts").upstream == ("p5_deployment.post_promotion",)
    assert [t.task_id for t in plan.all_tasks() if t.kind == "sensor"] == ["p5_deployment.preview_health", SENSOR]


def test_phase_deliverables_come_from_the_seed(plan: ReleasePlan) -> None:
    assert plan.phases[0].deliverables == ("Deployment readiness", "Risk assessment", "Dependency validation",
                                           "Resource verification", "Backup strategy")
    assert len(plan.phases[3].deliverables) == 4


# ------------------------------------------------------------------------------- failure branch
def test_decide_fires_on_any_main_task_failure(plan: ReleasePlan) -> None:
    """The main path is one chain ending at the gate: any failure reaches it as upstream_failed."""
    decide = plan.task(DECIDE_TASK)
    assert decide.trigger_rule == ONE_FAILED
    assert decide.upstream == (GATE_TASK,)
    chain = main_chain(plan)
    for before, after in zip(chain, chain[1:], strict=False):
        assert plan.task(after).upstream == (before,), after
    assert chain[-1] == GATE_TASK


def test_abort_and_rollback_follow_decide(plan: ReleasePlan) -> None:
    for task_id in (ABORT_TASK, ROLLBACK_TASK):
        task = plan.task(task_id)
        assert task.upstream == (DECIDE_TASK,)
        assert task.trigger_rule == ALL_SUCCESS


def test_verify_restored_follows_rollback(plan: ReleasePlan) -> None:
    verify = plan.task(VERIFY_TASK)
    assert verify.upstream == (ROLLBACK_TASK,)
    assert verify.trigger_rule == ALL_SUCCESS


def test_notify_runs_after_abort_or_restore(plan: ReleasePlan) -> None:
    notify = plan.task(NOTIFY_TASK)
    assert notify.upstream == (ABORT_TASK, VERIFY_TASK)
    assert notify.trigger_rule == ALL_DONE


def test_failure_branch_order_and_group(plan: ReleasePlan) -> None:
    assert [t.task_id for t in plan.failure_branch] == [DECIDE_TASK, ABORT_TASK, ROLLBACK_TASK, VERIFY_TASK,
                                                        NOTIFY_TASK]
    assert all(t.group == "failure" and t.task_id.startswith("failure.") for t in plan.failure_branch)


def test_watcher_waits_for_everything(plan: ReleasePlan) -> None:
    watcher = plan.task(WATCHER_TASK)
    assert watcher.trigger_rule == ALL_DONE
    assert watcher.upstream == (GATE_TASK, NOTIFY_TASK)


def test_task_ids_unique_and_lookup(plan: ReleasePlan) -> None:
    ids = [t.task_id for t in plan.all_tasks()]
    assert len(ids) == len(set(ids)) == 23 + 5 + 1
    with pytest.raises(KeyError):
        plan.task("nope")


def test_every_upstream_exists(plan: ReleasePlan) -> None:
    ids = {t.task_id for t in plan.all_tasks()}
    for task in plan.all_tasks():
        assert set(task.upstream) <= ids, task.task_id


# ------------------------------------------------------------------------------------- params
def test_params(plan: ReleasePlan) -> None:
    assert set(plan.params) == {"version", "dry_run"}  # the strategy is the spec's: it shapes the DAG
    version = plan.params["version"]
    # No default: Airflow's trigger form requires a version and a REST trigger without one gets 400.
    assert version == {
        "type": "string", "pattern": VERSION_PATTERN, "maxLength": VERSION_MAX_LENGTH, "title": "Version",
        "description": "Semantic version MAJOR.MINOR.PATCH with an optional -PRERELEASE and +BUILD, ASCII, at most "
                       "64 characters, e.g. 1.4.2.",
    }
    assert VERSION_FORMAT in version["description"]
    dry_run = plan.params["dry_run"]
    assert dry_run["type"] == "boolean"
    assert dry_run["default"] is False


@pytest.mark.parametrize(("value", "valid"), [
    ("1.0.0", True), ("2.0.0-rc.1+sha.5114f85", True), ("1.0.0-" + "a" * 58, True),
    ("1.0.0-" + "a" * 59, False), ("1.0.0-" + "a" * 4994, False), ("1\u0662.0.0", False), ("1.0.0\n", False),
    (" 1.0.0", False), ("1.0", False), ("v1.0.0", False), (1, False), (None, False),
])
def test_version_param_is_the_same_rule_as_check_version(plan: ReleasePlan, value: object, valid: bool) -> None:
    """The schema Airflow validates the trigger form and REST conf with (jsonschema, as Param.resolve does)."""
    import jsonschema

    schema = {k: v for k, v in plan.params["version"].items() if k not in ("title", "description")}
    errors = list(jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker()).iter_errors(value))
    assert (not errors) is valid, errors
    try:
        check_version(value)
    except ValueError:
        assert not valid
    else:
        assert valid


def test_plan_metadata(plan: ReleasePlan) -> None:
    assert plan.dag_id == "release__demo"
    assert plan.service == "demo"
    assert plan.spec_path == str(DEMO.resolve())
    assert "version" not in plan.spec_data  # every run names its version
    json.dumps(plan.as_dict())  # the plan crosses process boundaries as JSON


# --------------------------------------------------------------------------------- graph JSON
def test_graph_json_contract(plan: ReleasePlan) -> None:
    graph = json.loads(json.dumps(graph_json(plan)))
    assert set(graph) == {"dag_id", "gates", "phases", "failure_branch"}
    assert graph["gates"] == [{"task_id": "change_window", "upstream": ["start_release"]}]
    assert graph["dag_id"] == "release__demo"
    assert [(p["id"], p["title"]) for p in graph["phases"]] == SEED_PHASES
    for phase in graph["phases"]:
        assert set(phase) == {"id", "title", "steps", "sensors", "strategy_steps"}
        assert len(phase["steps"]) == 2
        for step in phase["steps"]:
            assert set(step) == {"task_id", "agent", "duty"}
        for sensor in phase["sensors"]:
            assert set(sensor) == {"task_id", "upstream"}
    assert [s["agent"] for p in graph["phases"] for s in p["steps"]] == SEED_AGENTS
    assert graph["phases"][0]["steps"][0] == {"task_id": "p1_pre_deployment.readiness",
                                              "agent": "deployment-ops-manager", "duty": "readiness"}
    assert [p["sensors"] for p in graph["phases"]] == [
        [], [], [], [], [{"task_id": "p5_deployment.preview_health", "upstream": ["p4_environment.hardening"]},
                         {"task_id": SENSOR, "upstream": ["p5_deployment.execute_strategy"]},
                         {"task_id": "p5_deployment.post_promotion", "upstream": [SENSOR]}], [],
        [{"task_id": "p7_monitoring.observation_window", "upstream": ["p6_testing.qa"]}], []]
    assert all(p["strategy_steps"] == [] for p in graph["phases"])  # blue-green: no steps before promotion
    branch = {t["task_id"]: t for t in graph["failure_branch"]}
    assert list(branch) == [DECIDE_TASK, ABORT_TASK, ROLLBACK_TASK, VERIFY_TASK, NOTIFY_TASK, WATCHER_TASK]
    for task in graph["failure_branch"]:
        assert set(task) == {"task_id", "trigger_rule", "upstream"}
    assert {k: v["trigger_rule"] for k, v in branch.items()} == {
        DECIDE_TASK: "one_failed", ABORT_TASK: "all_success", ROLLBACK_TASK: "all_success",
        VERIFY_TASK: "all_success", NOTIFY_TASK: "all_done", WATCHER_TASK: "all_done"}
    assert branch[NOTIFY_TASK]["upstream"] == [ABORT_TASK, VERIFY_TASK]


# ---------------------------------------------------------------------------------- catalogue
def test_catalogue_has_64_unique_items() -> None:
    items = [(step.item_ids(), step.items) for _, step in all_steps()]
    ids = [i for item_ids, _ in items for i in item_ids]
    texts = [t for _, step_items in items for t in step_items]
    assert len(ids) == len(texts) == 64
    assert len(set(ids)) == 64
    assert len(set(texts)) == 64
    assert ITEM_KINDS == ("read", "verify", "check", "report")
    for _, step in all_steps():
        read, verify, check, report = step.items
        assert (read.split()[0], verify.split()[0], check.split()[0], report.split()[0]) == (
            "Read", "Verify", "Check", "Report"), step.id


def test_step_ids_unique_and_lookup() -> None:
    ids = [step.id for _, step in all_steps()]
    assert len(ids) == len(set(ids)) == 16
    phase, step = step_by_id("execute_strategy")
    assert (phase.id, step.agent) == ("p5_deployment", "deployment-ops-manager")
    with pytest.raises(KeyError, match="unknown step 'nope'"):
        step_by_id("nope")


@pytest.fixture(scope="module")
def seed_text() -> str:
    if not SEED.is_file():
        pytest.skip(f"seed file {SEED} is absent")
    return SEED.read_text(encoding="utf-8")


def test_every_item_is_verbatim_in_the_seed(seed_text: str) -> None:
    seed_items = re.findall(r"^- \[ \] (.+)$", seed_text, flags=re.MULTILINE)
    missing = [text for _, step in all_steps() for text in step.items if f"- [ ] {text}\n" not in seed_text]
    assert missing == []
    # ... and in the seed's order: the 64 verification items, then the deployment checklist.
    catalogue_items = [text for _, step in all_steps() for text in step.items]
    assert seed_items == [*catalogue_items, *DEPLOYMENT_CHECKLIST]


def test_phase_titles_and_deliverables_match_the_seed(seed_text: str) -> None:
    titles = re.findall(r"^### Phase (\d): (.+)$", seed_text, flags=re.MULTILINE)
    assert [(int(n), t) for n, t in titles] == [(p.number, p.title) for p in PHASES]
    deliverables = re.findall(r"^\*\*Deliverables:\*\* (.+)$", seed_text, flags=re.MULTILINE)
    assert len(deliverables) == 8
    for phase, line in zip(PHASES, deliverables, strict=True):
        assert [d.lower() for d in phase.deliverables] == [d.strip().lower() for d in line.split(",")], phase.id


def test_every_agent_is_a_seed_agent(seed_text: str) -> None:
    section = seed_text.split("## Related GENDEV Agents", 1)[1].split("\n## ", 1)[0]
    named = re.findall(r"[a-z]+(?:-[a-z]+)+", section)
    assert sorted(named) == sorted(AGENTS)
