"""Run a program under a watchdog that honours ``GENDEV_MAX_LIFETIME``: the local target's nginx.

    python -m gendev_release.targets.watchdog [--max-lifetime S] [--stop-signal SIGQUIT] -- PROGRAM ARGS...

The program runs until it exits, the watchdog gets SIGTERM/SIGINT, or the lifetime (the flag, else
``$GENDEV_MAX_LIFETIME``) has passed; then the program gets ``--stop-signal`` (nginx: SIGQUIT, a
graceful shutdown) and SIGKILL 10 s later if it is still running. Started detached by
:func:`gendev_release.targets.processes.start_process`, the watchdog leads its own session, so
stopping its process group stops the program and everything it forked. Build the argv with
:func:`gendev_release.targets.processes.watched`.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

KILL_AFTER_SECONDS = 10.0


def watch(command: list[str], lifetime: float | None, stop_signal: signal.Signals = signal.SIGTERM) -> int:
    """Run ``command`` until it exits, a SIGTERM/SIGINT arrives, or ``lifetime`` seconds passed; its exit code."""
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    name = Path(command[0]).name
    kill_at: list[float] = []

    def stop(_reason: str) -> None:
        if not kill_at:
            kill_at.append(time.monotonic() + KILL_AFTER_SECONDS)
        try:
            child.send_signal(stop_signal)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, lambda signum, _frame: stop(signal.Signals(signum).name))
    signal.signal(signal.SIGINT, lambda signum, _frame: stop(signal.Signals(signum).name))
    deadline = time.monotonic() + lifetime if lifetime else None
    while True:
        try:
            return child.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            pass
        if deadline is not None and time.monotonic() >= deadline and not kill_at:
            print(f"{name} watchdog: max lifetime of {lifetime:g} s reached, stopping pid {child.pid}", flush=True)
            stop("lifetime")
        elif kill_at and time.monotonic() >= kill_at[0]:
            child.kill()
            return child.wait()


def main(argv: list[str] | None = None) -> int:
    from gendev_release.demo.service import lifetime_argument, max_lifetime

    parser = argparse.ArgumentParser(prog="python -m gendev_release.targets.watchdog",
                                     description="Run a program under a watchdog that honours a max lifetime.")
    lifetime_argument(parser)
    parser.add_argument("--stop-signal", default="SIGTERM", choices=["SIGTERM", "SIGQUIT", "SIGINT"],
                        help="the signal the program gets when it is to stop (default SIGTERM)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the program's command line")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the program's command line after --")
    return watch(command, max_lifetime(args.max_lifetime), signal.Signals[args.stop_signal])


if __name__ == "__main__":
    sys.exit(main())
