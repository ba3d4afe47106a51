"""Local processes on loopback: start detached, find out whether they still run, stop them, and a watchdog.

Shared by the ``local`` target (its slots, the builtin router, nginx) and the loopback Prometheus
(:mod:`gendev_release.prometheus_local`). A process is identified by its pid *and* its argv, so a
pid the kernel reused for another program is never mistaken for ours (:func:`runs_command`), and
never stopped (:func:`terminate`).

:func:`watched` is the argv that runs a program which does not honour ``GENDEV_MAX_LIFETIME``
itself (nginx) under the watchdog of :mod:`gendev_release.targets.watchdog`. The watchdog leads its
own session, so stopping it (a signal to its process group) stops the program and everything it
forked too.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from gendev_release.errors import TargetError

LOOPBACK = "127.0.0.1"
STOP_GRACE_SECONDS = 5.0
POLL_SECONDS = 0.05
LOG_TAIL_CHARS = 2000

__all__ = ["LOOPBACK", "children_of", "free_port", "log_tail", "now_iso", "pid_running", "port_answers", "port_free",
           "runs_command", "start_process", "terminate", "wait_gone", "wait_listening", "watched"]

#: Children started by this process, kept so they can be reaped (a dead child would otherwise
#: linger as a zombie that ``kill(pid, 0)`` still reports) and so that no ResourceWarning fires.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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


def children_of(pid: int) -> set[int]:
    """The live child processes of ``pid`` (Linux ``/proc``; empty where there is none)."""
    found: set[int] = set()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if len(fields) > 1 and fields[1] == str(pid) and fields[0] not in ("Z", "X"):
            found.add(int(entry))
    return found


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        # Our processes lead their own session; signalling the group also stops anything they spawned.
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def wait_gone(pid: int, seconds: float) -> bool:
    """Wait until ``pid`` has exited; False when it still runs after ``seconds``."""
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
    if wait_gone(pid, grace):
        return "stopped (SIGTERM)"
    _signal(pid, signal.SIGKILL)
    wait_gone(pid, 2.0)
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
    """Whether a server could listen on loopback ``port`` now.

    SO_REUSEADDR, as every server here sets it: connections a router closed (TIME_WAIT) do not
    keep its port from being listened on again, a listening socket does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def wait_port_free(port: int, seconds: float) -> bool:
    """Whether loopback ``port`` becomes free within ``seconds`` (a killed server's processes may
    still hold its listening socket for a moment after its main pid is gone)."""
    deadline = time.monotonic() + seconds
    while not port_free(port):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def free_port(exclude: set[int] | frozenset[int] = frozenset()) -> int:
    """A loopback port nothing listens on now (the kernel's pick), not in ``exclude``."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = sock.getsockname()[1]
        if port not in exclude:
            return int(port)
    raise TargetError("could not find a free loopback port")


def log_tail(path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return text[-chars:].strip() or "(log is empty)"


def start_process(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` detached (own session, no stdin), stdout and stderr into ``log_path``.

    The environment is passed through, so ``GENDEV_MAX_LIFETIME`` reaches the demo service, the
    router and the watchdog, which read it themselves.
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


def watched(command: list[str], lifetime: float | None = None, stop_signal: str = "SIGTERM") -> list[str]:
    """The argv that runs ``command`` under the watchdog (lifetime None: ``$GENDEV_MAX_LIFETIME``)."""
    limit = [] if lifetime is None else ["--max-lifetime", f"{lifetime:g}"]
    return [sys.executable, "-m", "gendev_release.targets.watchdog", *limit, "--stop-signal", stop_signal,
            "--", *command]


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
