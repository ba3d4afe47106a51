"""Shared test doubles for the phase 1-4 duties (preparation, planning, build, environment).

:class:`StubService` is a tiny demo-like HTTP service on a free loopback port; :class:`StubTarget`
implements the :class:`~gendev_release.targets.base.Target` interface in process, with knobs for
the failures the duties must catch. :func:`make_ctx` builds a :class:`DutyContext` from the demo
spec written into ``tmp_path`` together with a copy of its input folder, so a test can change a
spec field or an input file without touching the repository.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from gendev_release.catalogue import step_by_id
from gendev_release.context import DutyContext, RunPaths
from gendev_release.duties.base import DUTIES
from gendev_release.errors import TargetError
from gendev_release.report import AgentReport, ReportBuilder, Verification
from gendev_release.spec import ReleaseSpec, parse_spec, run_params
from gendev_release.targets.base import ResourceChange, SlotInfo, Target, TargetStatus

REPO = Path(__file__).resolve().parents[2]
DEMO_SPEC = REPO / "dags" / "releases" / "demo.yaml"
DEMO_INPUTS = REPO / "dags" / "releases" / "demo"
RUN_ID_EARLY = "manual__2026-01-07T10:00:00+00:00"
DEFAULT_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"}

_MODULES = {
    "readiness": "gendev_release.duties.preparation", "risk_assessment": "gendev_release.duties.preparation",
    "release_plan": "gendev_release.duties.planning", "notifications": "gendev_release.duties.planning",
    "build": "gendev_release.duties.build", "dependencies": "gendev_release.duties.build",
    "provisioning": "gendev_release.duties.environment", "hardening": "gendev_release.duties.environment",
}


# =============================================================================== stub service
class StubService:
    """A demo-like service: ``/healthz`` (``ok``), ``/version`` (JSON) and ``/metrics`` (Prometheus text)."""

    def __init__(self, version: str, *, healthz_status: int = 200, headers: dict[str, str] | None = None,
                 metrics_status: int = 200) -> None:
        self.version = version
        self.healthz_status = healthz_status
        self.headers = dict(DEFAULT_HEADERS if headers is None else headers)
        self.metrics_status = metrics_status
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body, ctype = stub.respond(self.path)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for name, value in stub.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def respond(self, path: str) -> tuple[int, bytes, str]:
        if path == "/healthz":
            ok = self.healthz_status == 200
            return self.healthz_status, (b"ok" if ok else b"unhealthy"), "text/plain"
        if path == "/version":
            return 200, json.dumps({"version": self.version}).encode(), "application/json"
        if path == "/metrics":
            text = ("# TYPE demo_http_requests_total counter\n"
                    'demo_http_requests_total{code="200"} 42\n'
                    "demo_http_error_ratio 0.0\n"
                    "demo_http_request_p95_seconds 0.012\n")
            return self.metrics_status, text.encode(), "text/plain; version=0.0.4"
        return 404, b"not found", "text/plain"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


# ================================================================================ stub target
class StubTarget(Target):
    """Blue/green in process. ``plan`` answers "create the idle slot" until the version is staged.

    Knobs: ``active_service`` (a running version or None = first deployment), ``fail_status``,
    ``stage_error``, ``drift`` (changes a re-plan after staging still shows), ``extra_plan`` (more
    changes before staging), ``staged_headers`` (headers the staged slot sends).
    """

    kind = "stub"

    def __init__(self, active_service: StubService | None = None) -> None:
        self.active_service = active_service
        self.staged_service: StubService | None = None
        self.fail_status: str | None = None
        self.stage_error: str | None = None
        self.drift: list[ResourceChange] = []
        self.extra_plan: list[ResourceChange] = []
        self.staged_headers: dict[str, str] | None = None
        self.stage_calls: list[tuple[str, str]] = []

    def _slot(self, name: str, service: StubService | None) -> SlotInfo | None:
        return SlotInfo(slot=name, version=service.version, url=service.url, pid=os.getpid()) if service else None

    @property
    def idle_slot(self) -> str:
        return "green" if self.active_service else "blue"

    def status(self) -> TargetStatus:
        if self.fail_status:
            raise TargetError(self.fail_status)
        return TargetStatus(service="demo", router_url=self.url(), active=self._slot("blue", self.active_service),
                            previous=None, staged=self._slot(self.idle_slot, self.staged_service))

    def url(self) -> str | None:
        return self.active_service.url if self.active_service else None

    def plan(self, version: str) -> list[ResourceChange]:
        address = f"stub_slot.{self.idle_slot}"
        if self.staged_service is not None and self.staged_service.version == version:
            return [ResourceChange(address, ("no-op",)), *self.drift]  # applied: only drift is left
        return [ResourceChange(address, ("create",), None, {"version": version}), *self.extra_plan]

    def stage(self, version: str, run_id: str) -> SlotInfo:
        self.stage_calls.append((version, run_id))
        if self.stage_error:
            raise TargetError(self.stage_error)
        if self.staged_service is None or self.staged_service.version != version:
            if self.staged_service:
                self.staged_service.stop()
            self.staged_service = StubService(version, headers=self.staged_headers)
        slot = self._slot(self.idle_slot, self.staged_service)
        assert slot is not None
        return slot

    def switch(self, slot: str, run_id: str) -> TargetStatus:
        raise TargetError("phase 1-4 duties never move traffic")

    def rollback(self, run_id: str) -> TargetStatus:
        raise TargetError("phase 1-4 duties never roll back")

    def withdraw(self, run_id: str) -> TargetStatus:
        raise TargetError("phase 1-4 duties never withdraw")

    def discard_staged(self, run_id: str) -> None:
        if self.staged_service:
            self.staged_service.stop()
        self.staged_service = None

    def down(self) -> list[str]:
        stopped = []
        for service in (self.active_service, self.staged_service):
            if service:
                service.stop()
                stopped.append(service.version)
        return stopped


# ====================================================================== spec, context, running
def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def make_spec(spec_dir: Path, overrides: dict[str, Any] | None = None) -> ReleaseSpec:
    """The demo spec (with ``overrides`` merged in) and a copy of its inputs, written to ``spec_dir``."""
    data = merge(yaml.safe_load(DEMO_SPEC.read_text(encoding="utf-8")), overrides or {})
    if not (spec_dir / "demo").exists():
        shutil.copytree(DEMO_INPUTS, spec_dir / "demo")
        for path in (spec_dir / "demo").rglob("*"):
            # the permissions control must not depend on the checkout's umask
            path.chmod(0o644 if path.is_file() else 0o755)
    path = spec_dir / "demo.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return parse_spec(data, str(path), path)


def make_ctx(tmp_path: Path, target: Target | None = None, overrides: dict[str, Any] | None = None, *,
             version: str = "1.1.0", spec: ReleaseSpec | None = None) -> DutyContext:
    spec = spec or make_spec(tmp_path / "spec", overrides)
    paths = RunPaths(home=tmp_path / "home", dag_id=spec.dag_id, run_id=RUN_ID_EARLY)
    paths.workdir.mkdir(parents=True, exist_ok=True)
    return DutyContext(spec=spec, params=run_params(spec, {"version": version}), paths=paths,
                       target=target or StubTarget())


def run_step(ctx: DutyContext, step_id: str) -> AgentReport:
    """Run one builtin duty as ``run_duty`` does, but let a crash surface in the test; save its report."""
    importlib.import_module(_MODULES[step_id])
    phase, step = step_by_id(step_id)
    builder = ReportBuilder(phase, step, service=ctx.spec.service, version=ctx.version, run_id=ctx.run_id)
    DUTIES[step_id](ctx, builder)
    report = builder.finish()
    ctx.store.save(report)
    return report


def save_facts(ctx: DutyContext, step_id: str, facts: dict[str, Any]) -> AgentReport:
    """Store an earlier step's report of this run, with only ``facts`` filled in."""
    phase, step = step_by_id(step_id)
    builder = ReportBuilder(phase, step, service=ctx.spec.service, version=ctx.version, run_id=ctx.run_id)
    builder.facts.update(facts)
    report = builder.finish()
    ctx.store.save(report)
    return report


def item(report: AgentReport, kind: str) -> Verification:
    found = [v for v in report.verifications if v.kind == kind]
    assert found, f"no {kind} item in {report.step_id}"
    return found[0]


# ========================================================================================= git
def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", "-c", "user.name=Test", "-c", "user.email=test@example.com",
                             "-c", "commit.gpgsign=false", "-C", str(repo), *args],
                            capture_output=True, text=True, check=True)
    return result.stdout.strip()


def commit(repo: Path, message: str, files: dict[str, str]) -> str:
    """Write ``files`` (path -> text) and commit them; return the new sha."""
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", message)
    return git(repo, "rev-parse", "HEAD")


# ==================================================================================== fixtures
@pytest.fixture
def stub_target() -> Iterator[StubTarget]:
    """Nothing deployed yet (first deployment)."""
    target = StubTarget()
    try:
        yield target
    finally:
        target.down()


@pytest.fixture
def live_target() -> Iterator[StubTarget]:
    """1.0.0 active and healthy on the blue slot."""
    target = StubTarget(StubService("1.0.0"))
    try:
        yield target
    finally:
        target.down()


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A repository with two conventional commits: ``feat(api): ...`` and ``fix: ...``."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "--quiet", "-b", "main")
    commit(repo, "feat(api): add items endpoint\n\nLists items.", {"src/app.py": "print('v1')\n"})
    commit(repo, "fix: handle empty list", {"src/app.py": "print('v2')\n", "README.md": "demo\n"})
    return repo
