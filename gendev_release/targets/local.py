"""The ``local`` target: two slots (blue, green) of processes on loopback behind a small router.

Everything durable lives in ``<home>/targets/<service>/state.json``; the processes are started
detached (own session), so the Airflow task that staged a version may exit while the version
keeps serving, and a later task in another process picks the state up again. Read-modify-write
of the state is guarded by an ``flock`` on a sibling lock file; every write is an atomic
``os.replace``, which is also what makes a switch atomic for the router (it re-reads the file
when the file is replaced).

State layout::

    {"service": "demo",
     "router": {"port": 41000, "pid": 123, "url": "http://127.0.0.1:41000", ...} | null,
     "slots": {"blue": {"slot", "version", "url", "pid", "started_at", "run_id", ...} | null,
               "green": ... | null},
     "active": "blue" | null, "previous": ... | null, "staged": ... | null,
     "switched_by_run": "<run id>" | null,
     "history": [{"at", "action", "run_id", "slot", "version"}, ...]}
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gendev_release.commands import substitute
from gendev_release.context import safe_name, write_json_atomic
from gendev_release.errors import TargetError
from gendev_release.spec import LocalTargetSpec
from gendev_release.targets.base import ResourceChange, SlotInfo, Target, TargetStatus

SLOTS: tuple[str, str] = ("blue", "green")
ROUTER_MODULE = "gendev_release.demo.router"
LOOPBACK = "127.0.0.1"
STOP_GRACE_SECONDS = 5.0
POLL_SECONDS = 0.05
HISTORY_LIMIT = 500
LOG_TAIL_CHARS = 2000

#: Children started by this process, kept so they can be reaped (a dead child would otherwise
#: linger as a zombie that ``kill(pid, 0)`` still reports) and so that no ResourceWarning fires.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------- process helpers
def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]


def pid_running(pid: int | None) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as dead)."""
    if not pid:
        return False
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else; the command-line check will leave it alone
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc (not Linux): kill(pid, 0) is all we know
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _cmdline(pid: int) -> list[str] | None:
    """The argv of ``pid``, or None when it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        if Path("/proc/self/cmdline").exists():
            return None  # /proc works, the process is gone
        # No /proc (macOS): ps gives one string; split it, which is enough for a containment check.
        result = subprocess.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, check=False)
        return result.stdout.split() if result.returncode == 0 and result.stdout.strip() else None
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.rstrip(b"\0").split(b"\0")] if raw else None


def runs_command(pid: int | None, argv: list[str] | None) -> bool:
    """Whether ``pid`` is alive and still runs ``argv`` (so a reused pid is never mistaken for ours)."""
    if not pid or not argv or not pid_running(pid):
        return False
    cmdline = _cmdline(pid)
    if not cmdline:
        return False
    return all(element in cmdline for element in argv)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        # Our processes lead their own session; signalling the group also stops anything they spawned.
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while pid_running(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)
    return True


def terminate(pid: int | None, argv: list[str] | None, grace: float = STOP_GRACE_SECONDS) -> str:
    """Stop ``pid`` if it still runs ``argv``: SIGTERM, then SIGKILL after ``grace`` seconds.

    :returns: what happened, for the caller's report.
    """
    if not pid or not pid_running(pid):
        return "already exited"
    if not runs_command(pid, argv):
        return "left alone: its command line no longer matches (the pid now belongs to another program)"
    _signal(pid, signal.SIGTERM)
    if _wait_gone(pid, grace):
        return "stopped (SIGTERM)"
    _signal(pid, signal.SIGKILL)
    _wait_gone(pid, 2.0)
    return f"killed (SIGKILL after {grace:g} s)"


def port_answers(port: int | None, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on loopback ``port``."""
    if not port:
        return False
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_port(exclude: set[int] | frozenset[int] = frozenset()) -> int:
    """A loopback port nothing listens on now (the kernel's pick), not in ``exclude``."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = sock.getsockname()[1]
        if port not in exclude:
            return port
    raise TargetError("could not find a free loopback port")


def log_tail(path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return text[-chars:].strip() or "(log is empty)"


def start_process(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` detached (own session, no stdin), stdout and stderr into ``log_path``.

    The environment is passed through, so ``GENDEV_MAX_LIFETIME`` reaches the demo service and
    the router, which read it themselves.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, env=env, close_fds=True)
        except OSError as exc:
            raise TargetError(f"cannot start {argv[0]!r}: {exc}") from exc
    _CHILDREN[proc.pid] = proc
    return proc


def wait_listening(proc: subprocess.Popen[bytes], port: int, timeout: float) -> str | None:
    """Poll until ``port`` accepts connections; the reason it did not, or None when it does."""
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None:
            return f"the process exited with code {code}"
        if port_answers(port, timeout=0.2):
            # Connected; make sure it is our process that listens, not one that won a port race.
            return None if proc.poll() is None else f"the process exited with code {proc.returncode}"
        if time.monotonic() >= deadline:
            return f"nothing listened on {LOOPBACK}:{port} within {timeout:g} s"
        time.sleep(POLL_SECONDS)


# ----------------------------------------------------------------------------------- the target
class LocalTarget(Target):
    """Blue/green processes on loopback behind a router.

    :param spec: the spec's ``target`` section (the command, the router port, the startup timeout).
    :param service: the service name; it names the state folder.
    :param home: the gendev home (see :func:`gendev_release.context.gendev_home`).
    """

    kind = "local"

    def __init__(self, spec: LocalTargetSpec, service: str, home: Path) -> None:
        self.spec = spec
        self.service = service
        self.home = Path(home)
        self.directory = self.home / "targets" / safe_name(service)

    @property
    def state_path(self) -> Path:
        return self.directory / "state.json"

    @property
    def lock_path(self) -> Path:
        return self.directory / "state.lock"

    @property
    def log_dir(self) -> Path:
        return self.directory / "logs"

    # --------------------------------------------------------------------------- state storage
    def _empty_state(self) -> dict[str, Any]:
        return {"service": self.service, "router": None, "slots": {slot: None for slot in SLOTS},
                "active": None, "previous": None, "staged": None, "switched_by_run": None, "history": []}

    def load_state(self) -> dict[str, Any]:
        """The state file's content; a missing file is the empty state (nothing deployed)."""
        state = self._empty_state()
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return state
        except (OSError, ValueError) as exc:
            raise TargetError(f"cannot read the {self.service} target state {self.state_path}: {exc}; "
                              "fix or remove the file (processes it names may need stopping by hand)") from exc
        if not isinstance(data, dict):
            raise TargetError(f"{self.state_path} does not hold a JSON object")
        state.update(data)
        state["slots"] = {slot: (data.get("slots") or {}).get(slot) for slot in SLOTS}
        return state

    def _save(self, state: dict[str, Any]) -> None:
        state["history"] = state["history"][-HISTORY_LIMIT:]
        write_json_atomic(self.state_path, state)

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """Hold the state lock and yield the current state (callers save what they change)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        # Long enough for another task's stage (which waits for startup) to finish first.
        patience = 2 * self.spec.startup_timeout_seconds + 4 * STOP_GRACE_SECONDS + 30
        deadline = time.monotonic() + patience
        with open(self.lock_path, "a+") as handle:
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise TargetError(f"the {self.service} target is locked by another task for over "
                                          f"{patience:g} s ({self.lock_path})") from None
                    time.sleep(POLL_SECONDS)
            try:
                yield self.load_state()
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    @staticmethod
    def _history(state: dict[str, Any], action: str, run_id: str | None, slot: str | None,
                 version: str | None, **detail: Any) -> None:
        state["history"].append({"at": _now(), "action": action, "run_id": run_id, "slot": slot,
                                 "version": version, **detail})

    # ----------------------------------------------------------------------------- inspection
    @staticmethod
    def _running(record: dict[str, Any] | None) -> bool:
        return record is not None and runs_command(record.get("pid"), record.get("argv"))

    def alive(self, slot: str) -> bool:
        """Whether ``slot``'s recorded process still runs (a reused pid does not count)."""
        return self._running(self.load_state()["slots"].get(slot))

    def _slot_info(self, state: dict[str, Any], slot: str | None) -> SlotInfo | None:
        record = state["slots"].get(slot) if slot else None
        if not record or slot is None:
            return None
        # A dead process is reported with pid None: the slot is recorded but serves nothing.
        return SlotInfo(slot=slot, version=record["version"], url=record["url"],
                        pid=record.get("pid") if self._running(record) else None,
                        started_at=record.get("started_at"), run_id=record.get("run_id"))

    def _router_url(self, state: dict[str, Any]) -> str | None:
        router = state.get("router")
        return router["url"] if router and self._running(router) else None

    def status(self) -> TargetStatus:
        state = self.load_state()
        active = self._slot_info(state, state["active"])
        weights = {slot: (100 if slot == state["active"] else 0)
                   for slot in SLOTS if self._running(state["slots"][slot])}
        return TargetStatus(service=self.service, router_url=self._router_url(state), active=active,
                            previous=self._slot_info(state, state["previous"]),
                            staged=self._slot_info(state, state["staged"]), weights=weights,
                            switched_by_run=state.get("switched_by_run"), history=list(state["history"]))

    def url(self) -> str | None:
        return self._router_url(self.load_state())

    @staticmethod
    def idle_slot(state: dict[str, Any]) -> str:
        """The slot that does not take traffic (the staged one first, when nothing is active yet)."""
        active = state.get("active")
        if active in SLOTS:
            return SLOTS[1 - SLOTS.index(active)]
        return state["staged"] if state.get("staged") in SLOTS else SLOTS[0]

    def _healthy(self, record: dict[str, Any] | None, version: str) -> bool:
        return record is not None and record.get("version") == version and self._running(record) \
            and port_answers(record.get("port"))

    def plan(self, version: str) -> list[ResourceChange]:
        state = self.load_state()
        slot = self.idle_slot(state)
        record = state["slots"][slot]
        after: dict[str, Any] | None = {"slot": slot, "version": version, "command": list(self.spec.command)}
        before = None if record is None else {"slot": slot, "version": record.get("version"),
                                              "pid": record.get("pid"), "running": self._running(record)}
        if self._healthy(record, version):
            actions: tuple[str, ...] = ("no-op",)
            after = before
        elif before is not None and before["running"]:
            actions = ("delete", "create")
        else:
            actions = ("create",)
        changes = [ResourceChange(f"local_process.{slot}", actions, before, after)]
        if self._router_url(state) is None:
            port = self.spec.router_port or (state.get("router") or {}).get("port") or "auto"
            changes.append(ResourceChange("local_router", ("create",), None,
                                          {"port": port, "module": ROUTER_MODULE, "state": str(self.state_path)}))
        return changes

    # ------------------------------------------------------------------------------- changes
    def _argv(self, version: str, port: int) -> list[str]:
        values = {"python": sys.executable, "port": str(port), "version": version, "service": self.service}
        try:
            return substitute(list(self.spec.command), values)
        except KeyError as exc:
            raise TargetError(f"target.command uses the placeholder {{{exc.args[0]}}}, which the local target "
                              f"cannot fill; it fills {', '.join('{' + k + '}' for k in sorted(values))}") from None

    def _stop_slot(self, state: dict[str, Any], slot: str, run_id: str | None, action: str) -> str | None:
        """Stop ``slot``'s process and forget the slot; returns what happened (None: nothing there)."""
        record = state["slots"][slot]
        if record is None:
            return None
        outcome = terminate(record.get("pid"), record.get("argv"))
        state["slots"][slot] = None
        for key in ("active", "previous", "staged"):
            if state[key] == slot:
                state[key] = None
        self._history(state, action, run_id, slot, record.get("version"), outcome=outcome)
        return outcome

    def stage(self, version: str, run_id: str) -> SlotInfo:
        """Start ``version`` on the idle slot; the router is brought up too (it routes nothing yet).

        The router starts here rather than at the first switch so that a re-plan right after
        staging has nothing left to do and the stable URL exists before traffic moves to it.
        """
        self._argv(version, 0)  # refuse an unusable command before starting anything
        with self._locked() as state:
            router_before = dict(state.get("router") or {})
            self._ensure_router(state)
            if state["router"] != router_before:
                self._save(state)  # recorded at once, so down() can stop it even if the slot fails
            slot = self.idle_slot(state)
            record = state["slots"][slot]
            if self._healthy(record, version):
                if state["staged"] != slot or record.get("run_id") != run_id:
                    state["staged"] = slot
                    if record.get("run_id") != run_id:  # the running slot is reused: it is this run's now
                        self._history(state, "stage_reuse", run_id, slot, version, staged_by=record.get("run_id"))
                        record["run_id"] = run_id
                    self._save(state)
                return self._slot_info(state, slot)  # type: ignore[return-value]
            self._stop_slot(state, slot, run_id, "replace")
            taken = {(r or {}).get("port") for r in state["slots"].values()} | {(state["router"] or {}).get("port")}
            port = free_port({p for p in taken if p})
            argv = self._argv(version, port)
            log = self.log_dir / f"{slot}-{safe_name(version)}.log"
            proc = start_process(argv, log)
            problem = wait_listening(proc, port, self.spec.startup_timeout_seconds)
            if problem is not None:
                terminate(proc.pid, argv, grace=2.0)
                self._history(state, "stage_failed", run_id, slot, version, reason=problem)
                self._save(state)
                raise TargetError(f"version {version} did not start on slot {slot} of {self.service}: {problem}. "
                                  f"Command: {argv}. Last lines of {log}:\n{log_tail(log)}")
            state["slots"][slot] = {"slot": slot, "version": version, "url": f"http://{LOOPBACK}:{port}",
                                    "pid": proc.pid, "started_at": _now(), "run_id": run_id, "port": port,
                                    "argv": argv, "log": str(log)}
            state["staged"] = slot
            self._history(state, "stage", run_id, slot, version)
            self._save(state)
            return self._slot_info(state, slot)  # type: ignore[return-value]

    def _ensure_router(self, state: dict[str, Any]) -> dict[str, Any]:
        """Start the router unless it runs on the wanted port; updates ``state['router']``."""
        router = state.get("router") or {}
        wanted = self.spec.router_port or router.get("port")
        if self._running(router) and router.get("port") == wanted and port_answers(wanted):
            return router
        if router:
            terminate(router.get("pid"), router.get("argv"))
        # Keep the port once picked: clients hold on to the router URL across releases.
        slot_ports = {(r or {}).get("port") for r in state["slots"].values()}
        port = wanted or free_port({p for p in slot_ports if p})
        if not port_free(port):
            raise TargetError(f"the {self.service} router cannot listen on {LOOPBACK}:{port}: another program "
                              "uses the port (set target.router_port to a free one)")
        argv = [sys.executable, "-m", ROUTER_MODULE, "--port", str(port), "--state", str(self.state_path)]
        log = self.log_dir / "router.log"
        proc = start_process(argv, log)
        problem = wait_listening(proc, port, self.spec.startup_timeout_seconds)
        if problem is not None:
            terminate(proc.pid, argv, grace=2.0)
            raise TargetError(f"the {self.service} router did not start on port {port}: {problem}. "
                              f"Last lines of {log}:\n{log_tail(log)}")
        state["router"] = {"port": port, "pid": proc.pid, "url": f"http://{LOOPBACK}:{port}", "argv": argv,
                           "started_at": _now(), "log": str(log)}
        return state["router"]

    def switch(self, slot: str, run_id: str) -> TargetStatus:
        if slot not in SLOTS:
            raise TargetError(f"unknown slot {slot!r}; the local target has {', '.join(SLOTS)}")
        with self._locked() as state:
            record = state["slots"][slot]
            if not self._running(record):
                what = f"version {record['version']} is no longer running" if record else "nothing is staged there"
                raise TargetError(f"cannot switch {self.service} to slot {slot}: {what}")
            router_before = dict(state.get("router") or {})
            self._ensure_router(state)
            if state["active"] == slot:
                # Already taking traffic: a retried task (same run) or a re-release changes nothing,
                # apart from clearing the staged mark and recording a restarted router.
                if state["staged"] == slot or state["router"] != router_before:
                    state["staged"] = None if state["staged"] == slot else state["staged"]
                    self._save(state)
            else:
                state["previous"], state["active"] = state["active"], slot
                state["staged"] = None
                state["switched_by_run"] = run_id
                self._history(state, "switch", run_id, slot, record["version"], previous=state["previous"])
                self._save(state)  # the router sees the new active slot from this one os.replace on
        return self.status()

    def rollback(self, run_id: str, to_version: str | None = None) -> TargetStatus:
        with self._locked() as state:
            moves = [h for h in state["history"] if h.get("action") in ("switch", "rollback")]
            last = moves[-1] if moves else {}
            if last.get("action") == "rollback" and last.get("run_id") == run_id \
                    and last.get("slot") == state["active"]:
                return self.status()  # this run's rollback was the last traffic move; repeating it would undo it
            previous = state["previous"]
            record = state["slots"].get(previous) if previous else None
            if record is None:
                raise TargetError(f"nothing to roll back to for {self.service}: no previous slot is recorded")
            if not self._running(record):
                raise TargetError(f"nothing to roll back to for {self.service}: the previous slot {previous} "
                                  f"(version {record['version']}) is no longer running")
            if to_version is not None and record["version"] != to_version:
                raise TargetError(f"will not roll {self.service} back to slot {previous}: it runs {record['version']}, "
                                  f"but the last verified release is {to_version}")
            self._ensure_router(state)
            state["previous"], state["active"] = state["active"], previous
            if state["staged"] == previous:
                state["staged"] = None
            state["switched_by_run"] = run_id
            self._history(state, "rollback", run_id, previous, record["version"], previous=state["previous"])
            self._save(state)
        return self.status()

    def retire_previous(self, run_id: str) -> str | None:
        with self._locked() as state:
            previous = state["previous"]
            if previous is None or previous == state["active"]:
                return None
            outcome = self._stop_slot(state, previous, run_id, "retire")
            self._save(state)
        return outcome

    def withdraw(self, run_id: str) -> TargetStatus:
        with self._locked() as state:
            active = state["active"]
            if active is None:
                return self.status()  # already withdrawn (idempotent re-run)
            if state["previous"] is not None:
                raise TargetError(f"{self.service} has a previous slot ({state['previous']}); roll back instead")
            self._stop_slot(state, active, run_id, "withdraw")  # clears active and records the history
            state["switched_by_run"] = run_id
            self._save(state)
        return self.status()

    def discard_staged(self, run_id: str) -> str | None:
        with self._locked() as state:
            slot = state["staged"]
            if slot is None:
                return None
            record = state["slots"].get(slot) or {}
            if record.get("run_id") != run_id:
                return None  # staged by another run: never ours to stop
            if slot == state["active"]:
                state["staged"] = None  # it did receive traffic: never stop a serving slot here
                outcome = None
            else:
                outcome = self._stop_slot(state, slot, run_id, "discard")
            self._save(state)
            return outcome

    def down(self) -> list[str]:
        if not self.state_path.exists():
            return self._stop_monitoring([])
        stopped = []
        with self._locked() as state:
            for slot in SLOTS:
                record = state["slots"][slot]
                if record and record.get("pid"):
                    outcome = terminate(record["pid"], record.get("argv"))
                    stopped.append(f"slot {slot} ({self.service} {record['version']}, pid {record['pid']}): {outcome}")
                    record["pid"] = None
                    record["stopped_at"] = _now()
            router = state.get("router")
            if router and router.get("pid"):
                outcome = terminate(router["pid"], router.get("argv"))
                stopped.append(f"router on port {router['port']} (pid {router['pid']}): {outcome}")
                router["pid"] = None  # the port stays recorded, so the next switch reuses it
            state["active"] = state["previous"] = state["staged"] = None
            self._history(state, "down", None, None, None, stopped=stopped)
            self._save(state)
        return self._stop_monitoring(stopped)

    def _stop_monitoring(self, stopped: list[str]) -> list[str]:
        """Also stop the loopback Prometheus launched for the service (``monitoring.prometheus.launch: local``)."""
        from gendev_release.prometheus_local import stop_local_prometheus  # it imports this module's helpers

        outcome = stop_local_prometheus(self.home, self.service)
        return [*stopped, outcome] if outcome else stopped
