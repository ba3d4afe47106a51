"""Start a real Airflow (api-server, scheduler, dag-processor, triggerer) for end-to-end tests.

One stack is shared by every end-to-end test of a session: it runs on SQLite (or a database URL
given by the caller), on free loopback ports, with the repo's ``dags/`` folder, and is stopped
when the session ends. Every process runs in its own process group so nothing survives the tests.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class AirflowStack:
    root: Path
    dags_folder: Path = REPO / "dags"
    db_url: str | None = None
    executor: str = "LocalExecutor"
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    password: str = "gendev-e2e-password"
    _token: str | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def airflow_home(self) -> Path:
        return self.root / "airflow"

    @property
    def gendev_home(self) -> Path:
        return self.root / "gendev"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "GENDEV_"))}
        bindir = str(Path(sys.executable).parent)
        env.update({
            "PATH": f"{bindir}:{env.get('PATH', '')}",
            "AIRFLOW_HOME": str(self.airflow_home),
            "GENDEV_HOME": str(self.gendev_home),
            # The services a stack's releases start stop by themselves after an hour: one module shares
            # one target for all its tests (its router ran 17 min in a loaded run, past the old 15).
            "GENDEV_MAX_LIFETIME": "3600",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": self.executor,
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.airflow_home / "passwords.json"),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.base_url,
            "AIRFLOW__API_AUTH__JWT_SECRET": "gendev-e2e-jwt-secret-not-for-production",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "300",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            # The worker notices a deferred task's exit within 1 s, not 5 (see sensors/triggers.settle_seconds).
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
        })
        if self.db_url:
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = self.db_url
        env.update(self.extra_env)
        return env

    def airflow(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(Path(sys.executable).parent / "airflow"), *args], env=self.env(),
                              capture_output=True, text=True, timeout=timeout, check=False)

    def start(self) -> AirflowStack:
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        (self.airflow_home / "passwords.json").write_text(json.dumps({"admin": self.password}))
        migrated = self.airflow("db", "migrate")
        if migrated.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{migrated.stdout[-3000:]}\n{migrated.stderr[-3000:]}")
        logs = self.root / "logs"
        logs.mkdir(exist_ok=True)
        for component in COMPONENTS:
            api = ["--port", str(self.port), "--host", "127.0.0.1"] if component == "api-server" else []
            args = [component, *api]
            with open(logs / f"{component}.log", "wb") as out:
                self.processes[component] = subprocess.Popen(
                    [str(Path(sys.executable).parent / "airflow"), *args], env=self.env(), stdout=out,
                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.wait_for_api()
        return self

    def log_tail(self, component: str, chars: int = 4000) -> str:
        path = self.root / "logs" / f"{component}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def _check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise RuntimeError(f"airflow {name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def wait_for_api(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise RuntimeError(f"api-server did not answer in {timeout}s:\n{self.log_tail('api-server')}")

    def token(self) -> str:
        if self._token is None:
            response = httpx.post(f"{self.base_url}/auth/token", json={"username": "admin", "password": self.password},
                                  timeout=10)
            response.raise_for_status()
            self._token = response.json()["access_token"]
        return self._token

    def request(self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        """One REST API call. SQLite allows one writer: a write that waits out the busy timeout while the
        scheduler and tasks write is rolled back and answered 500 "Database error" (seen on CI marking a
        run failed while its task heartbeated); such a call changed nothing and is sent again, up to 3 times."""
        headers = {"Authorization": f"Bearer {self.token()}", **(headers or {})}
        for attempt in range(3):
            response = httpx.request(method, f"{self.base_url}/api/v2{path}", headers=headers, timeout=30, **kwargs)
            if not (response.status_code == 500 and "Database error" in response.text and self.db_url is None):
                break
            time.sleep(1 + attempt)
        return response

    def wait_for_dag(self, dag_id: str, timeout: float = 240) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            response = self.request("GET", f"/dags/{dag_id}")
            if response.status_code == 200:
                return response.json()
            time.sleep(2)
        errors = self.request("GET", "/importErrors").text
        raise RuntimeError(f"DAG {dag_id} was not parsed in {timeout}s; import errors: {errors}\n"
                           f"{self.log_tail('dag-processor')}")

    def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any]) -> httpx.Response:
        return self.request("POST", f"/dags/{dag_id}/dagRuns",
                            json={"logical_date": None, "dag_run_id": run_id, "conf": conf})

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        state = "unknown"
        while time.monotonic() < deadline:
            self._check_alive()
            response = self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            response.raise_for_status()
            state = response.json()["state"]
            if state in ("success", "failed"):
                return state
            time.sleep(2)
        raise RuntimeError(f"run {run_id} still {state} after {timeout}s; task states: "
                           f"{self.task_states(dag_id, run_id)}\n{self.log_tail('scheduler')}")

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        response = self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
        response.raise_for_status()
        return {ti["task_id"]: ti["state"] for ti in response.json()["task_instances"]}

    def task_log(self, dag_id: str, run_id: str, task_id: str) -> str:
        """The latest try's log of a task, as text (structured lines joined)."""
        ti = self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")
        ti.raise_for_status()
        try_number = ti.json()["try_number"]
        response = self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
                                params={"full_content": "true"}, headers={"Accept": "application/json"})
        response.raise_for_status()
        content = response.json().get("content", [])
        if isinstance(content, str):
            return content
        return "\n".join(json.dumps(line) if not isinstance(line, str) else line for line in content)

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 20
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)


@contextmanager
def running_stack(root: Path, dags: Path, dag_ids: Iterable[str], specs: Iterable[Path] = (),
                  extra_env: dict[str, str] | None = None) -> Iterator[AirflowStack]:
    """A started stack with ``dag_ids`` parsed and unpaused; on exit it stops, and each spec's target goes down."""
    stack = AirflowStack(root, dags_folder=dags, extra_env=dict(extra_env or {}))
    try:
        stack.start()
        for dag_id in dag_ids:
            stack.wait_for_dag(dag_id)
            response = stack.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
            assert response.status_code == 200, response.text
        yield stack
    finally:
        stack.stop()
        from gendev_release.spec import load_spec
        from gendev_release.targets import make_target

        for spec in specs:
            make_target(load_spec(spec), stack.gendev_home).down()
