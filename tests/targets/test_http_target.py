"""The http target against a deploy API on loopback, through providers-http's HttpHook and an Airflow Connection.

The API's address and credentials come only from the connection (``AIRFLOW_CONN_DEPLOY_API``);
the spec names the connection id and a path. Every change is confirmed by the API's status.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from deploy_api import DeployApi

from gendev_release.errors import SpecError, TargetError
from gendev_release.spec import HttpTargetSpec, parse_spec
from gendev_release.targets import HttpTarget, make_target

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "dags" / "releases" / "demo.yaml"
SPEC = {"kind": "http", "conn_id": "deploy_api", "endpoint": "/api/v1/services/demo", "startup_timeout_seconds": 2,
        "timeout_seconds": 10}


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[DeployApi]:
    with DeployApi(user="deployer", password="s3cret") as server:
        monkeypatch.setenv("AIRFLOW_CONN_DEPLOY_API", server.connection())
        yield server


@pytest.fixture
def target(tmp_path: Path) -> HttpTarget:
    return HttpTarget(HttpTargetSpec.model_validate(SPEC), "demo", tmp_path)


def test_blue_green_through_the_deploy_api(api: DeployApi, target: HttpTarget) -> None:
    first = target.stage("1.0.0", "run-1")
    assert (first.slot, first.version, first.url) == ("v1", "1.0.0", "http://127.0.0.1:9/demo/v1")  # the API's id
    target.switch(first.slot, "run-1")
    second = target.stage("1.1.0", "run-2")
    status = target.switch(second.slot, "run-2")
    assert api.weights == {"v2": 100} and status.weights == {"v1": 0, "v2": 100}
    assert status.active and status.active.version == "1.1.0" and status.previous and status.previous.slot == "v1"
    assert target.url() == "http://127.0.0.1:9/demo"

    status = target.rollback("run-2", to_version="1.0.0")
    assert api.weights == {"v1": 100} and status.active and status.active.slot == "v1"
    assert target.retire_previous("run-2") == "retired through the deploy API (HTTP 200)"
    assert set(api.revisions) == {"v1"}

    calls = [(method, path) for method, path, _, _ in api.requests if method != "GET"]
    assert calls == [
        ("POST", "/api/v1/services/demo/revisions"), ("PUT", "/api/v1/services/demo/weights"),
        ("POST", "/api/v1/services/demo/revisions"), ("PUT", "/api/v1/services/demo/weights"),
        ("PUT", "/api/v1/services/demo/weights"), ("DELETE", "/api/v1/services/demo/revisions/v2")]
    posted = [body for method, _, _, body in api.requests if method == "POST"]
    assert posted == [{"service": "demo", "version": "1.0.0", "revision": "r1"},
                      {"service": "demo", "version": "1.1.0", "revision": "r2"}]
    # The credentials came from the Airflow connection, on every request (never from the spec).
    assert {auth for _, _, auth, _ in api.requests} == {"Basic ZGVwbG95ZXI6czNjcmV0"}


def test_weights_through_the_api(api: DeployApi, target: HttpTarget) -> None:
    stable = target.deploy("1.0.0", "run-1")
    target.set_weights({stable.id: 100}, "run-1")
    canary = target.deploy("1.1.0", "run-2")
    target.set_weights({stable.id: 90, canary.id: 10}, "run-2")
    assert api.weights == {"v1": 90, "v2": 10}
    assert {(r.id, r.weight) for r in target.revisions()} == {("v1", 90), ("v2", 10)}
    target.set_weights({stable.id: 100, canary.id: 0}, "run-2")
    assert target.retire(canary.id, "run-2") == "retired through the deploy API (HTTP 200)"
    assert list(api.revisions) == ["v1"]


def test_a_missing_connection_says_how_to_define_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_DEPLOY_API", raising=False)
    target = HttpTarget(HttpTargetSpec.model_validate(SPEC), "demo", tmp_path)
    with pytest.raises(TargetError, match="target.conn_id: Airflow connection 'deploy_api' is not defined.*"
                                          "AIRFLOW_CONN_DEPLOY_API"):
        target.status()


def test_wrong_credentials_and_api_errors_are_reported_without_the_secret(
        api: DeployApi, target: HttpTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_DEPLOY_API", f"http://deployer:wrong@127.0.0.1:{api.port}")
    with pytest.raises(TargetError) as raised:
        target.status()
    assert "HTTP 401" in str(raised.value) and "wrong" not in str(raised.value)
    monkeypatch.setenv("AIRFLOW_CONN_DEPLOY_API", api.connection())
    api.fail["POST /revisions"] = 503
    with pytest.raises(TargetError, match="answered POST /api/v1/services/demo/revisions with HTTP 503"):
        target.deploy("1.0.0", "run-1")
    assert [h["action"] for h in target.status().history] == ["stage_failed"]


def test_an_unreachable_api_names_the_connection_not_its_url(target: HttpTarget, monkeypatch: pytest.MonkeyPatch,
                                                             api: DeployApi) -> None:
    api.stop()
    with pytest.raises(TargetError, match="GET /api/v1/services/demo/status through connection 'deploy_api': could "
                                          "not connect") as raised:
        target.status()
    assert "s3cret" not in str(raised.value) and "127.0.0.1" not in str(raised.value)


def test_a_split_the_status_does_not_show_is_not_done(api: DeployApi, target: HttpTarget) -> None:
    first = target.deploy("1.0.0", "run-1")
    api.ignore.add("PUT /weights")  # 200, but nothing changes
    with pytest.raises(TargetError, match=r"the split \{'v1': 100\} did not show in the http target's status"):
        target.set_weights({first.id: 100}, "run-1")
    assert target.status().active is None


def test_a_status_that_is_not_the_contract_is_refused(api: DeployApi, target: HttpTarget) -> None:
    api.revisions["v1"] = {"revision": "v1", "version": "1.0.0", "url": "http://127.0.0.1:9/"}
    api.weights = {"v1": 60}
    with pytest.raises(TargetError, match=r"GET /api/v1/services/demo/status printed a status that is not valid at "
                                          r"\(top level\): weights add up to 60 %"):
        target.status()


def test_the_spec_names_a_connection_never_a_url_or_a_secret() -> None:
    data = yaml.safe_load(DEMO.read_text())

    def problems(**target: object) -> list[tuple[str, str]]:
        data["target"] = {"kind": "http", "conn_id": "deploy_api", **target}
        try:
            parse_spec(data, "spec.yaml", DEMO)
        except SpecError as exc:
            return [(p.field, p.message[:60]) for p in exc.problems]
        return []

    assert problems() == []
    [(field, message)] = problems(conn_id="https://deployer:s3cret@deploy.example.com")
    assert field == "target.conn_id" and message.startswith("conn_id 'https://***@deploy.example.com' is a URL")
    assert problems(endpoint="https://deploy.example.com/api")[0][0] == "target.endpoint"
    assert problems(endpoint="/api?token=ghp_abcdefghijklmnopqrstuvwxyz0123456789")[0][0] == "target.endpoint"
    assert problems(password="s3cret")[0][0] == "target.password"
    spec = parse_spec({**data, "target": {"kind": "http", "conn_id": "deploy_api"}}, "spec.yaml", DEMO)
    assert isinstance(make_target(spec, Path("/nonexistent")), HttpTarget)
