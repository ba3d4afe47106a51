"""A Prometheus server on loopback for one service (``monitoring.prometheus: {launch: local}``).

The monitoring step starts it (or reuses the one already running) with a configuration that
scrapes the target's router at ``monitoring.metrics_path`` and loads the spec's alert rules; the
observability step reuses it. Everything lives in ``<home>/monitoring/<service>/prometheus/``::

    prometheus.json        the configuration (JSON is YAML: Prometheus reads it as is)
    rules/alert-rules.json the alert rules, in Prometheus' rule file format
    data/                  the TSDB
    state.json             pid, port, URL and argv of the running server
    prometheus.log         its output

The server runs under a watchdog (``python -m gendev_release.prometheus_local --max-lifetime S --
prometheus ...``) that leads its own session: :func:`stop_local_prometheus` (and ``gendev-release
down``, through the local target) stops both, and the watchdog stops Prometheus by itself after
``$GENDEV_MAX_LIFETIME`` seconds, as the demo service and router do. Only 127.0.0.1 is bound.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from gendev_release.context import safe_name, write_json_atomic
from gendev_release.prometheus_api import PrometheusClient, PrometheusError, format_duration

#: Environment variable naming the Prometheus binary (default: ``prometheus`` on PATH).
PROMETHEUS_ENV = "GENDEV_PROMETHEUS"
INSTALL_HINT = ("install it with `apt-get install prometheus` (Debian/Ubuntu; the package also ships promtool), "
                f"or set {PROMETHEUS_ENV} to the binary's path, or remove monitoring.prometheus to scrape the "
                "metrics path directly")
STARTUP_TIMEOUT_SECONDS = 30.0
RETENTION = "1d"
LOOPBACK = "127.0.0.1"


class PrometheusNotInstalled(PrometheusError):
    """``launch: local`` was asked for, but there is no Prometheus binary to start."""


def find_binary() -> str:
    """The Prometheus server binary: ``$GENDEV_PROMETHEUS``, else ``prometheus`` on PATH."""
    given = os.environ.get(PROMETHEUS_ENV, "").strip()
    if given:
        path = shutil.which(given)
        if path is None:
            raise PrometheusNotInstalled(f"{PROMETHEUS_ENV}={given!r} is not an executable Prometheus binary; "
                                         + INSTALL_HINT)
        return path
    path = shutil.which("prometheus")
    if path is None:
        raise PrometheusNotInstalled("monitoring.prometheus.launch: local needs the Prometheus server, but no "
                                     "`prometheus` binary is on PATH; " + INSTALL_HINT)
    return path


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ================================================================================ configuration
def scrape_config(job: str, scrape_url: str, interval: float) -> dict[str, Any]:
    """One ``scrape_configs`` entry for ``scrape_url`` (scheme, host:port, path and query taken apart)."""
    parts = urlsplit(scrape_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PrometheusError(f"cannot scrape {scrape_url!r}: not an http(s) URL")
    entry: dict[str, Any] = {
        "job_name": job, "scheme": parts.scheme, "metrics_path": parts.path or "/metrics",
        "scrape_interval": format_duration(interval), "scrape_timeout": format_duration(min(interval, 10.0)),
        "static_configs": [{"targets": [parts.netloc]}],
    }
    if parts.query:
        entry["params"] = parse_qs(parts.query)
    return entry


def server_config(job: str, scrape_url: str, interval: float, rules_file: Path) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": format_duration(interval), "evaluation_interval": format_duration(interval),
                   "scrape_timeout": format_duration(min(interval, 10.0))},
        "rule_files": [str(rules_file)],
        "scrape_configs": [scrape_config(job, scrape_url, interval)],
    }


@dataclass(frozen=True)
class LocalPrometheus:
    """A running loopback Prometheus, as :func:`ensure_local_prometheus` left it."""

    url: str
    pid: int
    port: int
    argv: list[str]
    directory: str
    config_file: str
    rules_file: str
    started_at: str
    log: str
    #: ``started`` (this call launched it), ``reused`` or ``reloaded`` (it was running already).
    action: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _from_state(state: dict[str, Any], action: str) -> LocalPrometheus:
    return LocalPrometheus(url=str(state["url"]), pid=int(state["pid"]), port=int(state["port"]),
                           argv=[str(part) for part in state["argv"]], directory=str(state["directory"]),
                           config_file=str(state["config_file"]), rules_file=str(state["rules_file"]),
                           started_at=str(state["started_at"]), log=str(state["log"]), action=action)


def server_dir(home: Path, service: str) -> Path:
    return Path(home) / "monitoring" / safe_name(service) / "prometheus"


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "state.lock", "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _read_state(directory: Path) -> dict[str, Any]:
    try:
        state = json.loads((directory / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _write_if_changed(path: Path, payload: Any) -> bool:
    text = json.dumps(payload, indent=2, sort_keys=True) + "\n"
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return True


def ensure_local_prometheus(home: Path, service: str, *, job: str, scrape_url: str, interval: float,
                            rules: dict[str, Any], timeout: float = 5.0) -> LocalPrometheus:
    """Start the service's loopback Prometheus, or reuse the running one (reloaded if its files changed).

    :param scrape_url: what it scrapes (the router's metrics URL).
    :param rules: the alert rules as a Prometheus rule file (``{"groups": [...]}``).
    :raises PrometheusNotInstalled: no binary (the message says how to install it).
    :raises PrometheusError: it did not start, or refused the configuration or the rules (its own message).
    """
    from gendev_release.targets.local import runs_command  # the target's process helpers, imported late

    directory = server_dir(home, service)
    with _locked(directory):
        rules_file = directory / "rules" / "alert-rules.json"
        config_file = directory / "prometheus.json"
        changed = _write_if_changed(rules_file, rules)
        changed = _write_if_changed(config_file, server_config(job, scrape_url, interval, rules_file)) or changed
        state = _read_state(directory)
        if state and runs_command(state.get("pid"), state.get("argv")):
            client = PrometheusClient(state["url"], timeout)
            if client.ready():
                if changed:
                    try:
                        client.reload()  # Prometheus' own verdict on the new files: a bad rule is refused here
                    except PrometheusError as exc:
                        from gendev_release.targets.local import log_tail

                        rules_file.unlink(missing_ok=True)  # so that the next call writes and reloads again
                        raise PrometheusError(f"{exc}. Last lines of {state.get('log')}:\n"
                                              f"{log_tail(Path(str(state.get('log'))))}") from exc
                return _from_state(state, "reloaded" if changed else "reused")
            stop_local_prometheus(home, service)
        launched = start_prometheus(directory, config_file, rules_file, timeout)
        write_json_atomic(directory / "state.json", {k: v for k, v in launched.as_dict().items() if k != "action"})
        return launched


def start_prometheus(directory: Path, config_file: Path, rules_file: Path, timeout: float = 5.0) -> LocalPrometheus:
    """Start Prometheus on a free loopback port under the watchdog, with ``config_file``; wait until it is ready.

    :raises PrometheusNotInstalled: no binary.
    :raises PrometheusError: it exited or was not ready in time (the message has its log tail).
    """
    from gendev_release.targets.local import free_port, log_tail, start_process, terminate

    binary = find_binary()
    port = free_port()
    prometheus = [binary, f"--config.file={config_file}", f"--storage.tsdb.path={directory / 'data'}",
                  f"--storage.tsdb.retention.time={RETENTION}", f"--web.listen-address={LOOPBACK}:{port}",
                  "--web.enable-lifecycle", "--log.level=warn"]
    argv = [sys.executable, "-m", "gendev_release.prometheus_local", "--", *prometheus]
    log = directory / "prometheus.log"
    proc = start_process(argv, log)
    url = f"http://{LOOPBACK}:{port}"
    client = PrometheusClient(url, timeout)
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not client.ready():
        code = proc.poll()
        if code is not None or time.monotonic() >= deadline:
            terminate(proc.pid, argv, grace=2.0)
            why = f"it exited with code {code}" if code is not None else \
                f"it was not ready within {STARTUP_TIMEOUT_SECONDS:g} s"
            raise PrometheusError(f"Prometheus ({binary}) did not start on {url}: {why}. Configuration "
                                  f"{config_file}, rules {rules_file}. Last lines of {log}:\n{log_tail(log)}")
        time.sleep(0.1)
    return LocalPrometheus(url=url, pid=proc.pid, port=port, argv=argv, directory=str(directory),
                           config_file=str(config_file), rules_file=str(rules_file), started_at=_now(),
                           log=str(log), action="started")


def stop_local_prometheus(home: Path, service: str) -> str | None:
    """Stop the service's loopback Prometheus (and its watchdog); None when none was recorded."""
    from gendev_release.targets.local import terminate

    directory = server_dir(home, service)
    state = _read_state(directory)
    if not state.get("pid"):
        return None
    outcome = terminate(state["pid"], state.get("argv"))
    write_json_atomic(directory / "state.json", {**state, "pid": None, "stopped_at": _now()})
    return f"prometheus on {state.get('url')} (pid {state['pid']}): {outcome}"


# ===================================================================================== watchdog
def watch(command: list[str], lifetime: float | None) -> int:
    """Run ``command`` (Prometheus) until it exits, a SIGTERM/SIGINT arrives, or ``lifetime`` seconds passed."""
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    stopping: list[str] = []

    def stop(signum: int, _frame: Any) -> None:
        stopping.append(signal.Signals(signum).name)
        child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    deadline = time.monotonic() + lifetime if lifetime else None
    while True:
        try:
            return child.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
        if deadline is not None and time.monotonic() >= deadline and not stopping:
            print(f"prometheus watchdog: max lifetime of {lifetime:g} s reached, stopping pid {child.pid}", flush=True)
            stopping.append("lifetime")
            child.terminate()
            deadline = time.monotonic() + 10.0  # then SIGKILL if it does not go
        elif deadline is not None and time.monotonic() >= deadline:
            child.kill()
            return child.wait()


def main(argv: list[str] | None = None) -> int:
    from gendev_release.demo.service import lifetime_argument, max_lifetime

    parser = argparse.ArgumentParser(prog="python -m gendev_release.prometheus_local",
                                     description="Run Prometheus under a watchdog that honours a max lifetime.")
    lifetime_argument(parser)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the prometheus command line")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the prometheus command line after --")
    return watch(command, max_lifetime(args.max_lifetime))


if __name__ == "__main__":
    sys.exit(main())
