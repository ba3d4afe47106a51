"""The command target, driven through a stand-in CLI that records the argv it receives (tests/targets/fake_cli.py).

No shell is involved (the CLI's parent is this test process, and shell syntax in a template
reaches it verbatim), hostile placeholder values are refused before anything runs, and nothing
counts as done until the status command's validated JSON shows it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from gendev_release.errors import SpecError, TargetError
from gendev_release.spec import CommandTargetSpec, parse_spec
from gendev_release.targets import TARGETS, CommandTarget, make_target
from gendev_release.targets.command import check_value, weights_json

FAKE_CLI = str(Path(__file__).with_name("fake_cli.py"))
REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "dags" / "releases" / "demo.yaml"
#: Shell syntax inside one template element: a shell would expand or split it, the CLI must get it as is.
LITERAL = "--label=a b;$HOME *"


class Cli:
    """The fake CLI's platform file and argv record."""

    def __init__(self, folder: Path) -> None:
        self.platform = folder / "platform.json"
        self.record = folder / "argv.jsonl"

    def template(self, verb: str, *args: str) -> list[str]:
        return ["{python}", FAKE_CLI, str(self.platform), str(self.record), verb, *args]

    def calls(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def verbs(self) -> list[str]:
        return [call["argv"][3] for call in self.calls()]

    def state(self) -> dict[str, Any]:
        return json.loads(self.platform.read_text()) if self.platform.exists() else {}

    def set_fault(self, **fault: str) -> None:
        self.platform.write_text(json.dumps({**self.state(), **fault}))


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def spec_for(cli: Cli, **overrides: Any) -> CommandTargetSpec:
    fields: dict[str, Any] = {
        "kind": "command",
        "deploy": cli.template("deploy", "{service}", "{revision}", "image.tag={version}", LITERAL),
        "set_weights": cli.template("set-weights", "{weights_json}"),
        "status": cli.template("status"),
        "promote": cli.template("promote", "{revision}", "{version}", "{weights_json}"),
        "rollback": cli.template("rollback", "{revision}", "{version}", "{weights_json}"),
        "retire": cli.template("retire", "{revision}"),
        "startup_timeout_seconds": 2, "timeout_seconds": 30,
    }
    fields.update(overrides)
    return CommandTargetSpec.model_validate(fields)


@pytest.fixture
def target(cli: Cli, tmp_path: Path) -> CommandTarget:
    return CommandTarget(spec_for(cli), "demo", tmp_path / "home")


def test_revisions_and_weights_through_the_cli(target: CommandTarget, cli: Cli) -> None:
    first = target.deploy("1.0.0", "run-1")
    assert (first.id, first.version, first.weight, first.running) == ("r1", "1.0.0", 0, True)
    assert first.url == "http://127.0.0.1:9/demo/r1"
    deploy = next(call for call in cli.calls() if call["argv"][3] == "deploy")
    # The argv arrived exactly as templated: one element per template element, shell syntax untouched.
    assert deploy["argv"] == [FAKE_CLI, str(cli.platform), str(cli.record), "deploy", "demo", "r1",
                                  "image.tag=1.0.0", LITERAL]
    assert deploy["ppid"] == os.getpid()  # started by this process itself: no shell in between

    target.set_weights({"r1": 100}, "run-1")
    second = target.deploy("1.1.0", "run-2")
    target.set_weights({"r1": 90, "r2": 10}, "run-2")
    assert cli.state()["weights"] == {"r1": 90, "r2": 10}
    assert {(r.id, r.weight) for r in target.revisions()} == {("r1", 90), ("r2", 10)}
    set_weights = [call["argv"][4] for call in cli.calls() if call["argv"][3] == "set-weights"]
    assert set_weights == ['{"r1":100}', '{"r1":90,"r2":10}']

    status = target.switch(second.id, "run-2")  # all traffic to r2: a promotion
    assert cli.state()["moves"] == [["promote", "r2", "1.1.0"]]
    assert status.active and status.active.slot == "r2" and status.previous and status.previous.slot == "r1"
    assert status.weights == {"r1": 0, "r2": 100}

    target.rollback("run-2", to_version="1.0.0")  # all traffic back to r1: the rollback command
    assert cli.state()["moves"][-1] == ["rollback", "r1", "1.0.0"] and cli.state()["weights"] == {"r1": 100}
    assert target.retire_previous("run-2") == "retired by target.retire (exit 0)"
    assert set(cli.state()["revisions"]) == {"r1"} and target.current_version() == "1.0.0"
    assert [h["action"] for h in target.status().history if not h["action"].endswith("_call")] == [
        "stage", "weights", "stage", "weights", "switch", "rollback", "retire"]


def test_hostile_values_are_refused_before_anything_runs(target: CommandTarget, cli: Cli) -> None:
    for version in ("1.0;rm -rf /", "1.0.0 --force", "1.0.0\n", "--version=9.9.9", "$(reboot)", "1.0.0;reboot"):
        with pytest.raises(TargetError, match="refused to deploy version"):
            target.deploy(version, "run-1")
        with pytest.raises(TargetError, match="refused to deploy version"):
            target.stage(version, "run-1")
    with pytest.raises(TargetError, match="weights key 'r1; rm -rf /' is not a revision id"):
        target.set_weights({"r1; rm -rf /": 100}, "run-1")
    with pytest.raises(TargetError, match="is not a revision id"):
        target.retire("r1 --all", "run-1")
    assert cli.calls() == []  # not even the status command ran
    assert not target.state_path.exists()

    # Each placeholder value is checked by its own rule at the last moment, too.
    with pytest.raises(TargetError, match=r"refused \{version\} = '1.0;rm -rf /'.*nothing was run"):
        target.run("deploy", revision="r1", version="1.0;rm -rf /")
    with pytest.raises(TargetError, match=r"refused \{revision\} = 'r1 --all'"):
        target.run("retire", revision="r1 --all")
    with pytest.raises(TargetError, match=r"refused \{weights_json\}"):
        target.run("set_weights", weights_json='{"r1": 100, "x": "; reboot"}')
    assert check_value("weights_json", weights_json({"r2": 10, "r1": 90}), "demo") == '{"r1":90,"r2":10}'
    assert cli.calls() == []


def test_templates_are_checked_when_the_spec_loads(cli: Cli) -> None:
    data = yaml.safe_load(DEMO.read_text())

    def problems(**target: Any) -> list[tuple[str, str]]:
        data["target"] = {"kind": "command", "deploy": ["helm", "install", "{service}-{revision}"],
                          "set_weights": ["kubectl", "apply", "{weights_json}"], "status": ["helm", "status"], **target}
        try:
            parse_spec(data, "spec.yaml", DEMO)
        except SpecError as exc:
            return [(p.field, p.message) for p in exc.problems]
        return []

    assert problems() == []
    assert problems(deploy=["sh", "-c", "helm install {version}"]) == [
        ("target.deploy", "command runs the shell 'sh'; give the program and its arguments directly")]
    assert problems(set_weights=["kubectl", "apply", "{revision}"]) == [
        ("target.set_weights", "element 2 uses {revision}, which set_weights does not fill; it fills {python}, "
                               "{service}, {weights_json}")]
    assert problems(retire=["helm", "uninstall", "$(whoami)"])[0][0] == "target.retire"
    assert problems(status=["helm", "status", "&&", "reboot"])[0][0] == "target.status"
    assert problems(url="http://user:pw@example.com")[0] == (
        "target.url", "the URL holds credentials; clients' stable URL never carries a secret")
    target = {"kind": "command", "deploy": cli.template("deploy"), "set_weights": cli.template("set-weights"),
              "status": cli.template("status")}
    spec = parse_spec({**data, "target": target}, "spec.yaml", DEMO)
    assert isinstance(make_target(spec, cli.platform.parent), CommandTarget) and TARGETS["command"] is CommandTarget


def test_a_failing_command_names_itself_and_its_stderr(target: CommandTarget, cli: Cli) -> None:
    cli.set_fault(fail="deploy")
    with pytest.raises(TargetError, match=r"target.deploy exited with code 3: .*\nfake-cli: deploy failed"):
        target.deploy("1.0.0", "run-1")
    assert target.status().staged is None
    assert [h["action"] for h in target.status().history] == ["stage_failed"]


@pytest.mark.parametrize(("text", "message"), [
    ("not json", r"target.status did not print JSON"),
    ('{"revisions": [], "weights": {"r9": 100}}', r"not valid at \(top level\): weights names 'r9'"),
    ('{"revisions": [{"revision": "r1", "version": "1.0.0", "url": "http://127.0.0.1:9/"}], "weights": {"r1": 50}}',
     r"weights add up to 50 %"),
    ('{"revisions": [{"revision": "R1", "version": "1.0.0", "url": "http://127.0.0.1:9/"}]}',
     r"not valid at revisions.0.revision"),
    ('{"revisions": [{"revision": "r1", "version": "one", "url": "http://127.0.0.1:9/"}]}',
     r"not valid at revisions.0.version: 'one' is not a semantic version"),
    ('{"revisions": [], "weights": {}, "replicas": 3}', r"not valid at replicas: Extra inputs"),
])
def test_the_status_output_is_validated(target: CommandTarget, cli: Cli, text: str, message: str) -> None:
    cli.set_fault(status_text=text)
    with pytest.raises(TargetError, match=message):
        target.status()


def test_a_change_the_status_does_not_show_is_not_done(target: CommandTarget, cli: Cli) -> None:
    first = target.deploy("1.0.0", "run-1")
    cli.set_fault(ignore="set-weights")  # exits 0 but the platform keeps no traffic
    with pytest.raises(TargetError, match=r"the split \{'r1': 100\} did not show .* within 2 s"):
        target.set_weights({first.id: 100}, "run-1")
    assert target.status().active is None and target.status().weights == {"r1": 0}
    cli.set_fault(ignore="deploy")
    with pytest.raises(TargetError, match="revision r2 of version 1.1.0, ready did not show"):
        target.deploy("1.1.0", "run-2")


def test_without_a_retire_command_a_revision_is_reported_left_running(cli: Cli, tmp_path: Path) -> None:
    target = CommandTarget(spec_for(cli, retire=None, promote=None, rollback=None), "demo", tmp_path / "home")
    one = target.deploy("1.0.0", "run-1")
    target.switch(one.id, "run-1")
    two = target.stage("1.1.0", "run-2")
    target.switch(two.slot, "run-2")
    assert "promote" not in cli.verbs() and cli.verbs().count("set-weights") == 2
    outcome = target.retire(one.id, "run-2")
    assert outcome and outcome.startswith("left running on the platform")
    assert "r1" in cli.state()["revisions"] and [r.id for r in target.revisions()] == ["r2"]


def test_stage_replaces_the_idle_revision_and_down_retires_everything(target: CommandTarget, cli: Cli) -> None:
    target.switch(target.stage("1.0.0", "run-1").slot, "run-1")
    target.switch(target.stage("1.1.0", "run-2").slot, "run-2")  # r1 kept as previous
    staged = target.stage("1.2.0", "run-3")  # blue-green: the new revision replaces the idle r1
    assert staged.slot == "r3" and set(cli.state()["revisions"]) == {"r2", "r3"}
    assert target.stage("1.2.0", "run-3") == staged  # a retried stage reuses it
    stopped = target.down()
    assert cli.state()["revisions"] == {} and cli.state()["weights"] == {}
    assert [line.split(":")[0] for line in stopped] == ["revision r2 (demo 1.1.0)", "revision r3 (demo 1.2.0)"]
