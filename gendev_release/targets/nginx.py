"""The local target's nginx router: weighted upstreams on loopback, checked before every reload.

``target: {kind: local, router: nginx}`` puts Debian's ``nginx`` in front of the slots instead of
the builtin router. It is this target's own nginx, never the system's: its own prefix, config,
pid file and logs under ``<home>/targets/<service>/nginx/``, listening on 127.0.0.1 only, started
under the watchdog of :mod:`gendev_release.targets.processes` (it stops after
``$GENDEV_MAX_LIFETIME`` seconds by itself, and with the target's ``down()``)::

    nginx/nginx.conf          the configuration in force (written by :func:`render_config`)
    nginx/nginx.conf.next     the candidate, checked with ``nginx -t`` before it replaces nginx.conf
    nginx/nginx.pid           the master's pid (what ``nginx -s reload`` signals)
    nginx/logs/error.log      nginx's own log
    nginx/logs/access.log     one line per request: status, path, the slot that answered, upstream, time

A traffic split becomes an ``upstream`` of the revisions with a positive weight
(``server 127.0.0.1:PORT weight=90``; nginx's smooth weighted round robin keeps the exact ratio).
Applying one is: render the candidate, ``nginx -t`` it, move it in place, ``nginx -s reload``,
then wait until the router answers with the new configuration's generation
(``X-Gendev-Router-Generation`` on ``GET /__router/health``) and every worker of the old
configuration has exited, so once :func:`apply_config` returns no request is served by the old
split any more.

Client keep-alive is off (``keepalive_timeout 0``): a reload closes idle keep-alive connections,
and a client that sends a request on one at that moment gets no answer (measured here: 5 of 5,694
requests over 20 reloads failed with keep-alive, 0 of 11,216 over 80 reloads without). Each
request gets its own connection instead, and a reload drops none.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from gendev_release.errors import TargetError
from gendev_release.targets.processes import LOOPBACK, POLL_SECONDS, children_of, pid_running

#: Environment variable naming the nginx binary (default: ``nginx`` on PATH, else /usr/sbin/nginx).
NGINX_ENV = "GENDEV_NGINX"
INSTALL_HINT = (f"install it with `apt-get install nginx` (Debian/Ubuntu), or set {NGINX_ENV} to the binary's "
                "path, or use the builtin router (target.router: builtin)")
HEALTH_PATH = "/__router/health"
SLOT_HEADER = "X-Gendev-Slot"
GENERATION_HEADER = "X-Gendev-Router-Generation"
#: How long workers of a replaced configuration may finish their requests before nginx closes them.
WORKER_SHUTDOWN_SECONDS = 10
CONTROL_TIMEOUT_SECONDS = 30.0
MAX_BODY = "10m"
_UNQUOTABLE = re.compile(r'["\\$\x00-\x1f\x7f]')


def find_nginx() -> str:
    """The nginx binary: ``$GENDEV_NGINX``, else ``nginx`` on PATH, else ``/usr/sbin/nginx``.

    :raises TargetError: none found (the message says how to install it).
    """
    given = os.environ.get(NGINX_ENV, "").strip()
    if given:
        path = shutil.which(given)
        if path is None:
            raise TargetError(f"{NGINX_ENV}={given!r} is not an executable nginx binary; " + INSTALL_HINT)
        return path
    path = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if path is None:
        raise TargetError("target.router: nginx needs the nginx binary, but none is on PATH or in /usr/sbin; "
                          + INSTALL_HINT)
    return path


def quoted(path: Path) -> str:
    """``path`` as a double-quoted nginx string; a path nginx could misread is refused."""
    text = str(path)
    if _UNQUOTABLE.search(text):
        raise TargetError(f"the nginx router cannot use the path {text!r}: it holds a quote, backslash, '$' or a "
                          "control character; use a gendev home without them")
    return f'"{text}"'


@dataclass(frozen=True)
class NginxLayout:
    """The files of one service's nginx, under ``prefix``."""

    prefix: Path

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def next_conf(self) -> Path:
        return self.prefix / "nginx.conf.next"

    @property
    def pid_file(self) -> Path:
        return self.prefix / "nginx.pid"

    @property
    def error_log(self) -> Path:
        return self.prefix / "logs" / "error.log"

    @property
    def access_log(self) -> Path:
        return self.prefix / "logs" / "access.log"

    @property
    def temp(self) -> Path:
        return self.prefix / "tmp"

    def prepare(self) -> None:
        for folder in (self.prefix, self.error_log.parent, self.temp):
            folder.mkdir(parents=True, exist_ok=True)

    def command(self, binary: str, *args: str, conf: Path | None = None) -> list[str]:
        """``nginx -p PREFIX/ -c CONF ARGS...``: always this layout's files, never the system's."""
        return [binary, "-p", f"{self.prefix}/", "-c", str(conf or self.conf), *args]


@dataclass(frozen=True)
class Upstream:
    """One revision in the split: its slot (revision id), loopback port and weight (percent)."""

    slot: str
    port: int
    weight: int


def render_config(layout: NginxLayout, *, service: str, port: int, generation: int, upstreams: list[Upstream],
                  slot_ports: dict[str, int]) -> str:
    """The whole nginx.conf for one split (``upstreams`` empty: every request answers 502 "no active slot").

    :param slot_ports: every running slot's port, so responses name the slot that answered.
    """
    split = ", ".join(f"{u.slot}={u.weight}" for u in upstreams) or "none"
    active = max(upstreams, key=lambda u: u.weight).slot if upstreams else "none"
    slot_map = "".join(f'        "{LOOPBACK}:{p}" {slot};\n' for slot, p in sorted(slot_ports.items()))
    if upstreams:
        servers = "".join(f"        server {LOOPBACK}:{u.port} weight={u.weight} max_fails=0;\n" for u in upstreams)
        upstream_block = f"    upstream gendev_revisions {{\n{servers}    }}\n"
        serve = f"""            proxy_pass http://gendev_revisions;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto http;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_next_upstream off;
            proxy_connect_timeout 5s;
            proxy_read_timeout 30s;
            add_header {SLOT_HEADER} $gendev_slot always;
            add_header {GENERATION_HEADER} {generation} always;"""
    else:
        upstream_block = ""
        serve = f"""            add_header {GENERATION_HEADER} {generation} always;
            return 502 "no active slot\\n";"""
    return f"""# nginx router of service {service}, generation {generation}: weights {split}.
# Written by gendev-release's local target; every change is checked with `nginx -t` before
# `nginx -s reload`. Do not edit: the next traffic change rewrites it.
daemon off;
master_process on;
worker_processes 1;
worker_shutdown_timeout {WORKER_SHUTDOWN_SECONDS}s;
pid {quoted(layout.pid_file)};
error_log {quoted(layout.error_log)} warn;

events {{
    worker_connections 1024;
}}

http {{
    log_format gendev '$time_iso8601 $status $request_method "$request_uri" slot=$gendev_slot '
                      'upstream=$upstream_addr seconds=$request_time';
    access_log {quoted(layout.access_log)} gendev;
    server_tokens off;
    keepalive_timeout 0;
    client_max_body_size {MAX_BODY};
    client_body_buffer_size {MAX_BODY};
    proxy_max_temp_file_size 0;
    client_body_temp_path {quoted(layout.temp / "body")};
    proxy_temp_path {quoted(layout.temp / "proxy")};
    fastcgi_temp_path {quoted(layout.temp / "fastcgi")};
    uwsgi_temp_path {quoted(layout.temp / "uwsgi")};
    scgi_temp_path {quoted(layout.temp / "scgi")};

    map $upstream_addr $gendev_slot {{
        default "";
{slot_map}    }}
{upstream_block}
    server {{
        listen {LOOPBACK}:{port};

        location = {HEALTH_PATH} {{
            add_header {GENERATION_HEADER} {generation} always;
            add_header {SLOT_HEADER} {active} always;
            return 200 "ok, active slot: {active}, weights {split}, generation {generation}\\n";
        }}

        location / {{
{serve}
        }}
    }}
}}
"""


def _run(argv: list[str], what: str) -> None:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=CONTROL_TIMEOUT_SECONDS,
                                stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TargetError(f"{what} failed: {type(exc).__name__}: {exc}") from exc
    if result.returncode != 0:
        output = (result.stderr + result.stdout).strip()[-2000:] or "(no output)"
        raise TargetError(f"{what} failed (exit {result.returncode}): {output}")


def check_config(binary: str, layout: NginxLayout, conf: Path) -> None:
    """``nginx -t`` on ``conf``: nginx's own verdict, before the configuration is used.

    :raises TargetError: with nginx's message (``[emerg] unknown directive ...``).
    """
    _run(layout.command(binary, "-t", "-q", conf=conf), f"nginx -t on {conf}")


def reload(binary: str, layout: NginxLayout) -> None:
    """``nginx -s reload``: the master (found through this layout's pid file) re-reads nginx.conf."""
    _run(layout.command(binary, "-s", "reload"), "nginx -s reload")


def master_pid(layout: NginxLayout) -> int | None:
    try:
        pid = int(layout.pid_file.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None
    return pid if pid_running(pid) else None


def served_generation(port: int, timeout: float = 1.0) -> int | None:
    """The generation the router's health endpoint reports (a new connection each time); None: no answer."""
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        connection.request("GET", HEALTH_PATH)
        response = connection.getresponse()
        response.read()
        value = response.getheader(GENERATION_HEADER)
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def wait_generation(port: int, generation: int, timeout: float) -> str | None:
    """Wait until the router serves ``generation``; the reason it did not, or None."""
    deadline = time.monotonic() + timeout
    seen: int | None = None
    while True:
        seen = served_generation(port)
        if seen == generation:
            return None
        if time.monotonic() >= deadline:
            return (f"the router on {LOOPBACK}:{port} still serves generation {seen} {timeout:g} s after the reload "
                    f"(expected {generation})" if seen is not None else
                    f"the router on {LOOPBACK}:{port} did not answer {HEALTH_PATH} within {timeout:g} s")
        time.sleep(POLL_SECONDS / 5)


def wait_gone(pids: set[int], timeout: float) -> set[int]:
    """Wait until every pid in ``pids`` has exited; the ones still running after ``timeout``."""
    deadline = time.monotonic() + timeout
    remaining = {pid for pid in pids if pid_running(pid)}
    while remaining and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS / 5)
        remaining = {pid for pid in remaining if pid_running(pid)}
    return remaining


def apply_config(binary: str, layout: NginxLayout, text: str, *, port: int, generation: int,
                 timeout: float) -> float:
    """Check ``text`` with ``nginx -t``, put it in place, reload, and wait until it alone serves.

    :returns: seconds from the reload signal until the old workers were gone.
    :raises TargetError: nginx refused the configuration (nothing changed), or the reload did not
        take effect in time (the message has the error log's tail).
    """
    from gendev_release.targets.processes import log_tail

    layout.prepare()
    layout.next_conf.write_text(text, encoding="utf-8")
    check_config(binary, layout, layout.next_conf)
    master = master_pid(layout)
    if master is None:
        raise TargetError(f"the nginx router's master process is not running (no live pid in {layout.pid_file})")
    old_workers = children_of(master)
    os.replace(layout.next_conf, layout.conf)
    started = time.monotonic()
    reload(binary, layout)
    problem = wait_generation(port, generation, timeout)
    if problem is None:
        left = wait_gone(old_workers, WORKER_SHUTDOWN_SECONDS + 5.0)
        if left:
            problem = f"workers {sorted(left)} of the previous configuration are still running"
    if problem is not None:
        raise TargetError(f"nginx reload to generation {generation} did not take effect: {problem}. "
                          f"Last lines of {layout.error_log}:\n{log_tail(layout.error_log)}")
    return time.monotonic() - started


__all__ = ["GENERATION_HEADER", "HEALTH_PATH", "NGINX_ENV", "NginxLayout", "SLOT_HEADER", "Upstream", "apply_config",
           "check_config", "find_nginx", "master_pid", "render_config", "served_generation", "wait_generation"]
