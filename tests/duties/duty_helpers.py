"""Test doubles and helpers for the builtin duties' tests; the fixtures built on them are in ``conftest.py``.

Import what a test needs with one plain line, ``from duty_helpers import ...`` (pytest's default
``prepend`` import mode puts ``tests/duties`` on ``sys.path``).

There are two pairs of doubles because the two halves of a release ask different things of a target:

* phases 1-4 (preparation, planning, build, environment): :class:`StubService` and
  :class:`StubTarget`, which plans and stages slots but never moves traffic;
* phases 5-8 (deployment, testing, observability, post-deployment): :class:`FakeService` and
  :class:`FakeTarget`, slots behind a router that switches, rolls back and withdraws.

Every server binds 127.0.0.1 on a free port (:class:`LoopbackServer`). :func:`make_ctx` builds a
:class:`DutyContext` from the demo spec written into ``tmp_path`` together with a copy of its input
folder, so a test can change a spec field or an input file without touching the repository.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import shutil
import subprocess
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import yaml
from loopback import LoopbackServer, Response  # noqa: F401 (re-exported for the duty tests)

from gendev_release.catalogue import step_by_id
from gendev_release.context import DutyContext, RunPaths
from gendev_release.duties.base import DUTIES
from gendev_release.errors import TargetError
from gendev_release.report import AgentReport, ReportBuilder, Verification
from gendev_release.spec import ReleaseSpec, parse_spec, run_params
from gendev_release.targets.base import ResourceChange, SlotInfo, Target, TargetStatus
from gendev_release.verification_matrix import DUTY_MODULES

os.environ.setdefault("GENDEV_MAX_LIFETIME", "300")

REPO = Path(__file__).resolve().parents[2]
DEMO_SPEC = REPO / "dags" / "releases" / "demo.yaml"
DEMO_INPUTS = REPO / "dags" / "releases" / "demo"
RUN_ID = "manual__2026-01-05T10:00:00+00:00"
DEFAULT_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"}
STEP_MODULES = DUTY_MODULES



# ======================================================================= phases 1-4 doubles
class StubService:
    """A fixed demo-like service for phases 1-4: ``/healthz`` (``ok``), ``/version`` (JSON), ``/metrics``.

    Its ``/metrics`` never changes (the readiness baseline), and every response carries ``headers``
    (the hardening step's security-headers control). :class:`FakeService` is the phase 5-8 service.
    """

    def __init__(self, version: str, *, healthz_status: int = 200, headers: dict[str, str] | None = None,
                 metrics_status: int = 200) -> None:
        self.version = version
        self.healthz_status = healthz_status
        self.headers = dict(DEFAULT_HEADERS if headers is None else headers)
        self.metrics_status = metrics_status
        self.server = LoopbackServer(self._answer)

    @property
    def url(self) -> str:
        return self.server.url

    def _answer(self, path: str) -> Response:
        status, body, ctype = self.respond(path)
        return status, {"Content-Type": ctype, **self.headers}, body

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
        self.server.stop()


class StubTarget(Target):
    """The target phases 1-4 see: ``plan`` and ``stage`` work, traffic never moves.

    ``plan`` answers "create the idle slot" until the version is staged, ``stage`` starts a
    :class:`StubService`; there is no router (``url()`` is the active service itself) and
    ``switch``/``rollback``/``withdraw``/``retire_previous`` raise: a phase 1-4 duty that moved traffic fails.
    :class:`FakeTarget` is the opposite double (router and switches, no ``stage``) for phases 5-8.

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

    def retire_previous(self, run_id: str) -> str | None:
        raise TargetError("phase 1-4 duties never retire a slot")

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


# ======================================================================= phases 5-8 doubles
class FakeService:
    """One version of a demo-like service for phases 5-8, with knobs for the failures the duties must catch.

    Unlike :class:`StubService` it counts the requests it serves, so its metrics move with traffic.

    :param broken: ``/healthz`` answers 503 (also when the version ends ``-broken``, as in the demo).
    :param flap: ``/healthz`` alternates 200 and 503.
    :param slow_ms: added latency on every non-metrics request (like ``-slow``).
    :param error_every: every n-th ``/api`` or ``/version`` request answers 500 (4 for ``-errors``).
    :param metric_overrides: fixed values for exposed metrics (name -> value).
    :param drop_metrics: metric names left out of ``/metrics``.
    :param freeze_counter: the request counter never moves (stale samples).
    :param metrics_status: status of ``/metrics``.
    """

    def __init__(self, version: str, *, broken: bool = False, flap: bool = False, slow_ms: float = 0.0,
                 error_every: int = 0, metric_overrides: dict[str, float] | None = None,
                 drop_metrics: tuple[str, ...] = (), freeze_counter: bool = False, metrics_status: int = 200,
                 security_headers: bool = True, items: list[dict[str, Any]] | None = None) -> None:
        self.version = version
        self.broken = broken or version.endswith("-broken")  # as the demo service does
        self.flap = flap
        self.slow_ms = slow_ms
        self.error_every = error_every or (4 if version.endswith("-errors") else 0)
        self.metric_overrides = dict(metric_overrides or {})
        self.drop_metrics = drop_metrics
        self.freeze_counter = freeze_counter
        self.metrics_status = metrics_status
        self.security_headers = security_headers
        self.items = items if items is not None else [{"id": 1, "name": "alpha"}, {"id": 2, "name": "beta"}]
        self.requests_total = 0
        self.errors_total = 0
        self.counted = 0
        self.health_calls = 0
        self.latencies: deque[float] = deque(maxlen=200)
        self.lock = threading.Lock()

    def respond(self, path: str) -> Response:
        started = time.monotonic()
        path = path.split("?", 1)[0]
        if path == "/metrics":
            return self._metrics()
        if self.slow_ms:
            time.sleep(self.slow_ms / 1000.0)
        status, body, ctype = self._route(path)
        with self.lock:
            self.requests_total += 1
            if status >= 500:
                self.errors_total += 1
            self.latencies.append(time.monotonic() - started)
        headers = {"Content-Type": ctype}
        if self.security_headers:
            headers.update({"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"})
        return status, headers, body

    def _route(self, path: str) -> tuple[int, bytes, str]:
        if path == "/healthz":
            with self.lock:
                self.health_calls += 1
                flapped = self.flap and self.health_calls % 2 == 0
            if self.broken or flapped:
                return 503, b"unhealthy", "text/plain"
            return 200, b"ok", "text/plain"
        if path == "/version" or path.startswith("/api/"):
            if self.error_every:
                with self.lock:
                    self.counted += 1
                    fail = self.counted % self.error_every == 0
                if fail:
                    return 500, b'{"error": "injected"}', "application/json"
            if path == "/version":
                return 200, json.dumps({"service": "demo", "version": self.version}).encode(), "application/json"
            if path == "/api/items":
                return 200, json.dumps(self.items).encode(), "application/json"  # a bare list, as the demo
        return 404, b'{"error": "not found"}', "application/json"

    def metric_values(self) -> dict[str, float]:
        with self.lock:
            latencies = sorted(self.latencies)
            requests = 5.0 if self.freeze_counter else float(self.requests_total)
            ratio = self.errors_total / self.requests_total if self.requests_total else 0.0
        p95 = latencies[max(0, int(0.95 * len(latencies) + 0.999) - 1)] if latencies else 0.0
        values = {"demo_http_requests_total": requests, "demo_http_error_ratio": ratio,
                  "demo_http_request_p95_seconds": p95, **self.metric_overrides}
        return {name: value for name, value in values.items() if name not in self.drop_metrics}

    def _metrics(self) -> Response:
        if self.metrics_status != 200:
            return self.metrics_status, {"Content-Type": "text/plain"}, b"unavailable"
        lines = []
        for name, value in self.metric_values().items():
            kind = "counter" if name.endswith("_total") else "gauge"
            lines += [f"# HELP {name} {name}", f"# TYPE {name} {kind}", f'{name}{{service="demo"}} {value}']
        return 200, {"Content-Type": "text/plain; version=0.0.4"}, ("\n".join(lines) + "\n").encode()


class FakeTarget(Target):
    """The target phases 5-8 see: blue/green slots behind a router, in process. Records every switch.

    Tests put slots in place with :meth:`add_slot` (:func:`stage_new`, :func:`go_live`), as if
    provisioning had run, so ``stage`` is not implemented and ``plan`` is empty; the router, the
    switch (with an optional gap and error) and rollback/withdraw are what these phases exercise.
    :class:`StubTarget` is the phase 1-4 double.
    """

    kind = "fake"

    def __init__(self, service: str = "demo") -> None:
        self.service = service
        self.slots: dict[str, tuple[FakeService, LoopbackServer]] = {}
        self.active: str | None = None
        self.previous: str | None = None
        self.staged: str | None = None
        self.switched_by_run: str | None = None
        self.slot_runs: dict[str, str | None] = {}  # slot -> the run that staged it (SlotInfo.run_id)
        self.switch_calls: list[tuple[str, str]] = []
        self.switch_gap_seconds = 0.0
        self.switch_error: str | None = None
        self.router_enabled = True
        self._gap = False
        self.router = LoopbackServer(self._route)

    # -- setup helpers
    def add_slot(self, slot: str, service: FakeService, run_id: str | None = None) -> SlotInfo:
        """Serve ``service`` on ``slot``, as staged by run ``run_id``."""
        if slot in self.slots:
            self.slots[slot][1].stop()
        self.slots[slot] = (service, LoopbackServer(service.respond))
        self.slot_runs[slot] = run_id
        info = self._info(slot)
        assert info is not None
        return info

    def service_of(self, slot: str) -> FakeService:
        return self.slots[slot][0]

    def slot_url(self, slot: str) -> str:
        return self.slots[slot][1].url

    def _info(self, slot: str | None) -> SlotInfo | None:
        if slot is None or slot not in self.slots:
            return None
        return SlotInfo(slot=slot, version=self.slots[slot][0].version, url=self.slots[slot][1].url, pid=os.getpid(),
                        run_id=self.slot_runs.get(slot))

    def _route(self, path: str) -> Response:
        if self._gap:
            return 503, {"Content-Type": "text/plain"}, b"switching"
        if self.active is None:
            return 502, {"Content-Type": "text/plain"}, b"no active slot"
        return self.slots[self.active][0].respond(path)

    # -- Target interface
    def status(self) -> TargetStatus:
        return TargetStatus(service=self.service, router_url=self.url(), active=self._info(self.active),
                            previous=self._info(self.previous), staged=self._info(self.staged),
                            weights={self.active: 100} if self.active else {}, switched_by_run=self.switched_by_run)

    def url(self) -> str | None:
        return self.router.url if self.router_enabled else None

    def plan(self, version: str) -> list[ResourceChange]:
        return []

    def stage(self, version: str, run_id: str) -> SlotInfo:
        raise NotImplementedError("tests stage slots with add_slot()")

    def switch(self, slot: str, run_id: str) -> TargetStatus:
        self.switch_calls.append((slot, run_id))
        if self.switch_error:
            raise TargetError(self.switch_error)
        if self.switch_gap_seconds:
            self._gap = True
            time.sleep(self.switch_gap_seconds)
        self.previous, self.active, self.staged = self.active, slot, None
        self.switched_by_run = run_id
        self._gap = False
        return self.status()

    def rollback(self, run_id: str) -> TargetStatus:
        if self.previous is None:
            raise TargetError("nothing to roll back to")
        self.active, self.previous = self.previous, self.active
        self.switched_by_run = run_id
        return self.status()

    def retire_previous(self, run_id: str) -> str | None:
        raise TargetError("no duty retires a slot (the failure branch does, after a verified rollback)")

    def withdraw(self, run_id: str) -> TargetStatus:
        self.active = None
        self.switched_by_run = run_id
        return self.status()

    def discard_staged(self, run_id: str) -> None:
        self.staged = None

    def down(self) -> list[str]:
        stopped = list(self.slots)
        self.close()
        return stopped

    def close(self) -> None:
        for _, server in self.slots.values():
            server.stop()
        self.slots.clear()
        self.router.stop()


# ============================================================================ spec and context
#: Short health, monitoring, load-test and QA timings (the phase 1-4 duties read none of these).
FAST_SPEC: dict[str, Any] = {
    "health": {"consecutive_successes": 3, "interval_seconds": 0.05, "timeout_seconds": 1.5},
    "monitoring": {"observation_seconds": 0.3, "sample_interval_seconds": 0.1},
    "load_test": {"requests": 40, "concurrency": 4},
    "qa": {"benchmark_requests": 20},
}


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def make_spec(spec_dir: Path, overrides: dict[str, Any] | None = None) -> ReleaseSpec:
    """The demo spec with :data:`FAST_SPEC` and ``overrides`` merged in, and a copy of its inputs, in ``spec_dir``."""
    data = merge(merge(yaml.safe_load(DEMO_SPEC.read_text(encoding="utf-8")), FAST_SPEC), overrides or {})
    spec_dir.mkdir(parents=True, exist_ok=True)
    if not (spec_dir / "demo").exists():
        shutil.copytree(DEMO_INPUTS, spec_dir / "demo")
        for path in (spec_dir / "demo").rglob("*"):
            # the permissions control must not depend on the checkout's umask
            path.chmod(0o644 if path.is_file() else 0o755)
    path = spec_dir / "demo.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return parse_spec(data, str(path), path)


def make_ctx(tmp_path: Path, target: Target | None = None, overrides: dict[str, Any] | None = None,
             version: str = "1.1.0", *, spec: ReleaseSpec | None = None) -> DutyContext:
    """A context for run :data:`RUN_ID` with its home in ``tmp_path / "home"`` (a :class:`StubTarget` by default)."""
    spec = spec or make_spec(tmp_path / "spec", overrides)
    paths = RunPaths(home=tmp_path / "home", dag_id=spec.dag_id, run_id=RUN_ID)
    paths.workdir.mkdir(parents=True, exist_ok=True)
    return DutyContext(spec=spec, params=run_params(spec, {"version": version}), paths=paths,
                       target=target or StubTarget())


# ==================================================================================== running
def run_step(ctx: DutyContext, step_id: str) -> AgentReport:
    """Run one builtin duty as ``run_duty`` does, but let a crash surface in the test; save its report."""
    importlib.import_module(STEP_MODULES[step_id])
    phase, step = step_by_id(step_id)
    builder = ReportBuilder(phase, step, service=ctx.spec.service, version=ctx.version, run_id=ctx.run_id)
    DUTIES[step_id](ctx, builder)
    report = builder.finish()
    ctx.store.save(report)
    return report


def save_report(ctx: DutyContext, step_id: str, facts: dict[str, Any] | None = None,
                metrics: dict[str, float] | None = None) -> AgentReport:
    """Store an earlier step's report of this run (only its facts and metrics matter here)."""
    phase, step = step_by_id(step_id)
    builder = ReportBuilder(phase, step, service=ctx.spec.service, version=ctx.version, run_id=ctx.run_id)
    builder.facts.update(facts or {})
    builder.metrics.update(metrics or {})
    report = builder.finish()
    ctx.store.save(report)
    return report


def item(report: AgentReport, kind: str) -> Verification:
    found = [v for v in report.verifications if v.kind == kind]
    assert found, f"no {kind} item in {report.step_id}"
    return found[0]


def items(report: AgentReport) -> dict[str, bool]:
    return {v.item_id: v.passed for v in report.verifications}


def stage_new(ctx: DutyContext, target: FakeTarget, service: FakeService, slot: str = "green") -> SlotInfo:
    """Stage ``service`` on ``slot`` and record it as the provisioning step would."""
    info = target.add_slot(slot, service, ctx.run_id)
    target.staged = slot
    save_report(ctx, "provisioning", {"staged": info.as_dict()})
    return info


def go_live(target: FakeTarget, slot: str, service: FakeService, previous: tuple[str, FakeService] | None = None,
            run_id: str = RUN_ID) -> None:
    """Put ``service`` live on ``slot`` (optionally with a previous slot kept), as after a switch."""
    if previous is not None:
        target.add_slot(previous[0], previous[1])
        target.previous = previous[0]
    target.add_slot(slot, service, run_id)
    target.active = slot
    target.switched_by_run = run_id


def stage_real(ctx: DutyContext, target: Target) -> SlotInfo:
    """Stage this run's version on the real target and record it as the provisioning step does."""
    info = target.stage(ctx.version, ctx.run_id)
    save_report(ctx, "provisioning", {"staged": info.as_dict()})
    return info


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
