"""Feature-flag providers: where a ``feature_flags`` release sets the share of requests that see the new code.

* ``file``: a JSON object ``{flag: percent}`` under ``$GENDEV_HOME/flags/`` (default ``<service>.json``),
  replaced atomically; a service reads it per request (the demo service with ``--flags-file``).
* ``http``: a flag service behind an Airflow HTTP connection: ``PUT <endpoint>/<flag>`` with
  ``{"percent": n}``, and ``GET <endpoint>/<flag>`` answering ``{"percent": n}``.

Every write is read back: a provider that accepts a value and keeps another fails the step.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gendev_release.context import write_json_atomic
from gendev_release.errors import TargetError
from gendev_release.targets.http import connection_call

if TYPE_CHECKING:
    from gendev_release.spec import FileFlagProvider, HttpFlagProvider, ReleaseSpec


class FlagProvider(Protocol):
    where: str

    def get(self, flag: str) -> int: ...

    def set(self, flag: str, percent: int) -> int: ...


def check_percent(value: Any, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 <= value <= 100 or int(value) != value:
        raise TargetError(f"{source}: a flag percentage is a whole number from 0 to 100, got {str(value)[:80]!r}")
    return int(value)


class FileFlags:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = f"file {path}"

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise TargetError(f"flag file {self.path} cannot be read: {exc}") from None
        if not isinstance(data, dict):
            raise TargetError(f"flag file {self.path} does not hold a JSON object")
        return data

    def get(self, flag: str) -> int:
        return check_percent(self._read().get(flag, 0), f"flag file {self.path} [{flag}]")

    def set(self, flag: str, percent: int) -> int:
        data = self._read()
        data[flag] = check_percent(percent, f"flag {flag}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, data)
        return self.get(flag)


class HttpFlags:
    def __init__(self, spec: HttpFlagProvider, timeout: float = 10.0) -> None:
        self.spec = spec
        self.timeout = timeout
        self.where = f"flag service through connection {spec.conn_id!r}"

    def _call(self, method: str, flag: str, payload: dict[str, Any] | None) -> int:
        endpoint = f"{self.spec.endpoint.rstrip('/')}/{flag}"
        status, body = connection_call(self.spec.conn_id, "strategy.provider.conn_id", endpoint, method, payload,
                                       self.timeout, "the flag service")
        if not 200 <= status < 300:
            raise TargetError(f"the flag service answered {method} {endpoint} with HTTP {status}: "
                              f"{body[:200].decode(errors='replace')!r}")
        try:
            answer = json.loads(body)
        except ValueError:
            raise TargetError(f"the flag service's answer to {method} {endpoint} is not JSON: {body[:200]!r}") from None
        if not isinstance(answer, dict) or "percent" not in answer:
            raise TargetError(f"the flag service's answer to {method} {endpoint} has no 'percent': {body[:200]!r}")
        return check_percent(answer["percent"], f"the flag service's answer to {method} {endpoint}")

    def get(self, flag: str) -> int:
        return self._call("GET", flag, None)

    def set(self, flag: str, percent: int) -> int:
        self._call("PUT", flag, {"percent": check_percent(percent, f"flag {flag}")})
        return self.get(flag)  # read back: what the provider keeps, not what it said


def file_flags_path(spec: ReleaseSpec, provider: FileFlagProvider, home: Path) -> Path:
    return Path(home) / "flags" / (provider.path or f"{spec.service}.json")


def local_flags_file(spec: ReleaseSpec, home: Path) -> Path | None:
    """The file a local target's command may name as ``{flags_file}`` (file provider only)."""
    strategy = spec.strategy
    if strategy.kind == "feature_flags" and strategy.provider.kind == "file":
        return file_flags_path(spec, strategy.provider, home)
    return None


def flag_provider(spec: ReleaseSpec, home: Path) -> FlagProvider:
    strategy = spec.strategy
    if strategy.kind != "feature_flags":
        raise TargetError(f"strategy {strategy.kind} has no feature flag")
    if strategy.provider.kind == "file":
        return FileFlags(file_flags_path(spec, strategy.provider, home))
    return HttpFlags(strategy.provider)
