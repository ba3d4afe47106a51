"""The ``local`` target: two slots (blue, green) of processes on loopback behind a router.

The slots are the target's two revisions: blue-green is weights 100/0 between them, a canary
90/10. The router is either the builtin one (``target.router: builtin``, the default:
:mod:`gendev_release.demo.router`: the split recorded in the state file, by smooth weighted round
robin, changed atomically by the file's ``os.replace``) or this target's own nginx (``target.router: nginx``: weighted
upstreams, each change checked with ``nginx -t`` before ``nginx -s reload``; see
:mod:`gendev_release.targets.nginx`).

State, lock and history live in the shared store (:mod:`gendev_release.targets.state`); the
processes are started detached (own session), so the Airflow task that staged a version may exit
while the version keeps serving, and a later task in another process picks the state up again.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from gendev_release.commands import substitute
from gendev_release.context import safe_name
from gendev_release.errors import TargetError
from gendev_release.spec import LocalTargetSpec
from gendev_release.targets import nginx
from gendev_release.targets.base import ResourceChange, RevisionTarget
from gendev_release.targets.processes import (
    _CHILDREN,
    LOG_TAIL_CHARS,
    LOOPBACK,
    POLL_SECONDS,
    STOP_GRACE_SECONDS,
    free_port,
    log_tail,
    now_iso,
    pid_running,
    port_answers,
    port_free,
    runs_command,
    start_process,
    terminate,
    wait_listening,
    wait_port_free,
    watched,
)
from gendev_release.targets.state import RevisionRecord, RouterRecord, TargetState

SLOTS: tuple[str, str] = ("blue", "green")
ROUTER_MODULE = "gendev_release.demo.router"
#: Seconds a router of ours that just died may take to release its port before another one listens there.
ROUTER_PORT_RELEASE_SECONDS = 5.0

__all__ = ["LOG_TAIL_CHARS", "LOOPBACK", "POLL_SECONDS", "ROUTER_MODULE", "SLOTS", "STOP_GRACE_SECONDS", "_CHILDREN",
           "LocalTarget", "free_port", "log_tail", "pid_running", "port_answers", "port_free", "runs_command",
           "start_process", "terminate", "wait_listening"]


class LocalTarget(RevisionTarget):
    """Blue/green processes on loopback behind the builtin router or nginx.

    :param spec: the spec's ``target`` section (the command, the router and its port, the startup timeout).
    :param service: the service name; it names the state folder.
    :param home: the gendev home (see :func:`gendev_release.context.gendev_home`).
    """

    kind = "local"
    fixed_slots = SLOTS
    spec: LocalTargetSpec

    def __init__(self, spec: LocalTargetSpec, service: str, home: Path, flags_file: Path | None = None) -> None:
        super().__init__(spec, service, home)
        #: The file flag provider's file (strategy feature_flags), offered to the command as ``{flags_file}``.
        self.flags_file = flags_file

    @property
    def router_mode(self) -> str:
        return self.spec.router

    @property
    def nginx_layout(self) -> nginx.NginxLayout:
        return nginx.NginxLayout(self.directory / "nginx")

    def lock_patience(self) -> float:
        # Long enough for another task's stage (which waits for startup) to finish first.
        return 2 * self.spec.startup_timeout_seconds + 4 * STOP_GRACE_SECONDS + 30

    # ============================================================================ kind hooks
    def running(self, record: RevisionRecord | RouterRecord | None) -> bool:
        return record is not None and runs_command(record.pid, record.argv)

    def serves(self, record: RevisionRecord | None, version: str) -> bool:
        return super().serves(record, version) and record is not None and port_answers(record.port)

    def check_deployable(self, version: str) -> None:
        self._argv(version, 0)  # refuse an unusable command before starting anything
        if self.router_mode == "nginx":
            nginx.find_nginx()

    def prepare(self, state: TargetState) -> bool:
        before = state.router.model_copy() if state.router else None
        self._ensure_router(state)
        return state.router != before

    def idle_slot(self, state: TargetState) -> str:
        """The slot that takes no traffic (the staged one first, when nothing takes traffic yet)."""
        traffic = state.traffic()
        idle = [slot for slot in SLOTS if slot not in traffic]
        if not idle:
            raise TargetError(f"both slots of {self.service} take traffic ({traffic}); give one of them all of it "
                              "and retire the other before deploying another version")
        if len(idle) == 1:
            return idle[0]
        return state.staged if state.staged in SLOTS else SLOTS[0]

    def new_revision(self, state: TargetState) -> str:
        return self.idle_slot(state)

    def start(self, state: TargetState, revision: str, version: str, run_id: str | None) -> RevisionRecord:
        taken = {(r.port if r else None) for r in state.slots.values()} | {state.router.port if state.router else None}
        port = free_port({p for p in taken if p})
        argv = self._argv(version, port)
        log = self.log_dir / f"{revision}-{safe_name(version)}.log"
        proc = start_process(argv, log)
        problem = wait_listening(proc, port, self.spec.startup_timeout_seconds)
        if problem is not None:
            terminate(proc.pid, argv, grace=2.0)
            raise TargetError(f"version {version} did not start on slot {revision} of {self.service}: {problem}. "
                              f"Command: {argv}. Last lines of {log}:\n{log_tail(log)}")
        return RevisionRecord(slot=revision, version=version, url=f"http://{LOOPBACK}:{port}", pid=proc.pid,
                              started_at=now_iso(), run_id=run_id, port=port, argv=argv, log=str(log))

    def route(self, state: TargetState, weights: dict[str, int], action: str) -> None:
        if self.router_mode == "builtin":
            if weights:
                self._ensure_router(state)
            return  # the caller's save (one os.replace of state.json) is the switch for the builtin router
        self._ensure_router(state)
        self._apply_nginx(state, weights)

    def keep_routing(self, state: TargetState, weights: dict[str, int]) -> bool:
        before = state.router.model_copy() if state.router else None
        self._ensure_router(state)
        return state.router != before

    def stop(self, state: TargetState, record: RevisionRecord) -> str:
        return terminate(record.pid, record.argv)

    def entry_url(self, state: TargetState) -> str | None:
        router = state.router
        return router.url if router and self.running(router) else None

    def stop_infrastructure(self, state: TargetState) -> list[str]:
        router = state.router
        if not router or not router.pid:
            return []
        outcome = terminate(router.pid, router.argv)
        line = f"{router.mode} router on port {router.port} (pid {router.pid}): {outcome}"
        router.pid = None  # the port stays recorded, so the next switch reuses it
        return [line]

    # ================================================================================ planning
    def plan(self, version: str) -> list[ResourceChange]:
        state = self.load_state()
        slot = self.idle_slot(state)
        record = state.record(slot)
        after: dict[str, Any] | None = {"slot": slot, "version": version, "command": list(self.spec.command)}
        before = None if record is None else {"slot": slot, "version": record.version, "pid": record.pid,
                                              "running": self.running(record)}
        if self.serves(record, version):
            actions: tuple[str, ...] = ("no-op",)
            after = before
        elif before is not None and before["running"]:
            actions = ("delete", "create")
        else:
            actions = ("create",)
        changes = [ResourceChange(f"local_process.{slot}", actions, before, after)]
        router = state.router
        if self.entry_url(state) is None or (router is not None and router.mode != self.router_mode):
            port = self.spec.router_port or (router.port if router else None) or "auto"
            planned: dict[str, Any] = {"port": port, "mode": self.router_mode}
            if self.router_mode == "nginx":
                planned["config"] = str(self.nginx_layout.conf)
            else:
                planned.update({"module": ROUTER_MODULE, "state": str(self.state_path)})
            changes.append(ResourceChange("local_router", ("create",), None, planned))
        return changes

    # ================================================================================ changes
    def _argv(self, version: str, port: int) -> list[str]:
        values = {"python": sys.executable, "port": str(port), "version": version, "service": self.service}
        if self.flags_file is not None:
            values["flags_file"] = str(self.flags_file)
        try:
            return substitute(list(self.spec.command), values)
        except KeyError as exc:
            raise TargetError(f"target.command uses the placeholder {{{exc.args[0]}}}, which the local target "
                              f"cannot fill; it fills {', '.join('{' + k + '}' for k in sorted(values))}") from None

    def _ensure_router(self, state: TargetState) -> RouterRecord:
        """Start the router unless the wanted kind runs on the wanted port; updates ``state.router``."""
        router = state.router
        wanted = self.spec.router_port or (router.port if router else None)
        if router and router.mode == self.router_mode and self.running(router) and router.port == wanted \
                and port_answers(wanted):
            return router
        if router and router.pid:
            terminate(router.pid, router.argv)
            router.pid = None
        # Keep the port once picked: clients hold on to the router URL across releases.
        slot_ports = {(r.port if r else None) for r in state.slots.values()}
        port = wanted or free_port({p for p in slot_ports if p})
        # Our own router that just died may hold its port a moment longer (nginx workers exiting).
        ours = router is not None and router.port == port
        if not wait_port_free(port, ROUTER_PORT_RELEASE_SECONDS if ours else 0.0):
            raise TargetError(f"the {self.service} router cannot listen on {LOOPBACK}:{port}: another program "
                              "uses the port (set target.router_port to a free one)")
        if self.router_mode == "nginx":
            state.router = self._start_nginx(state, port, (router.generation if router else 0) + 1)
            return state.router
        argv = [sys.executable, "-m", ROUTER_MODULE, "--port", str(port), "--state", str(self.state_path)]
        log = self.log_dir / "router.log"
        proc = start_process(argv, log)
        problem = wait_listening(proc, port, self.spec.startup_timeout_seconds)
        if problem is not None:
            terminate(proc.pid, argv, grace=2.0)
            raise TargetError(f"the {self.service} router did not start on port {port}: {problem}. "
                              f"Last lines of {log}:\n{log_tail(log)}")
        state.router = RouterRecord(port=port, pid=proc.pid, url=f"http://{LOOPBACK}:{port}", argv=argv,
                                    started_at=now_iso(), log=str(log))
        return state.router

    # ----------------------------------------------------------------------------------- nginx
    def _nginx_config(self, state: TargetState, weights: dict[str, int], port: int, generation: int) -> str:
        upstreams = []
        for slot, percent in sorted(weights.items()):
            record = state.record(slot)
            if record is None or record.port is None:
                raise TargetError(f"slot {slot} of {self.service} has no port to route to")
            upstreams.append(nginx.Upstream(slot, record.port, percent))
        slot_ports = {slot: record.port for slot, record in state.slots.items() if record and record.port}
        return nginx.render_config(self.nginx_layout, service=self.service, port=port, generation=generation,
                                   upstreams=upstreams, slot_ports=slot_ports)

    def _start_nginx(self, state: TargetState, port: int, generation: int) -> RouterRecord:
        """Start this target's nginx on ``port`` with the split in force (checked with ``nginx -t`` first)."""
        binary = nginx.find_nginx()
        layout = self.nginx_layout
        layout.prepare()
        layout.next_conf.write_text(self._nginx_config(state, state.traffic(), port, generation), encoding="utf-8")
        nginx.check_config(binary, layout, layout.next_conf)
        layout.next_conf.replace(layout.conf)
        layout.pid_file.unlink(missing_ok=True)  # a stale pid file would point a reload at another process
        argv = watched(layout.command(binary), stop_signal="SIGQUIT")
        log = self.log_dir / "nginx-router.log"
        proc = start_process(argv, log)
        problem = wait_listening(proc, port, self.spec.startup_timeout_seconds) \
            or nginx.wait_generation(port, generation, self.spec.startup_timeout_seconds)
        if problem is not None:
            terminate(proc.pid, argv, grace=2.0)
            raise TargetError(f"the {self.service} nginx router did not start on port {port}: {problem}. "
                              f"Last lines of {log}:\n{log_tail(log)}\nLast lines of {layout.error_log}:\n"
                              f"{log_tail(layout.error_log)}")
        return RouterRecord(port=port, pid=proc.pid, url=f"http://{LOOPBACK}:{port}", argv=argv, started_at=now_iso(),
                            log=str(log), mode="nginx", generation=generation, config=str(layout.conf))

    def _apply_nginx(self, state: TargetState, weights: dict[str, int]) -> None:
        router = state.router
        assert router is not None and router.mode == "nginx"  # _ensure_router started it
        generation = router.generation + 1
        text = self._nginx_config(state, weights, router.port, generation)
        nginx.apply_config(nginx.find_nginx(), self.nginx_layout, text, port=router.port, generation=generation,
                           timeout=self.spec.startup_timeout_seconds)
        router.generation = generation

    # ================================================================================== down
    def down(self) -> list[str]:
        """Stop both slots and the router; the records stay (pid None) so the router port is kept."""
        if not self.state_path.exists():
            return self._stop_monitoring([])
        stopped = []
        with self.store.locked() as state:
            for slot in SLOTS:
                record = state.record(slot)
                if record and record.pid:
                    outcome = terminate(record.pid, record.argv)
                    stopped.append(f"slot {slot} ({self.service} {record.version}, pid {record.pid}): {outcome}")
                    record.pid = None
                    record.stopped_at = now_iso()
            stopped += self.stop_infrastructure(state)
            state.active = state.previous = state.staged = None
            state.weights = {}
            state.log("down", None, None, None, stopped=stopped)
            self.store.save(state)
        return self._stop_monitoring(stopped)
