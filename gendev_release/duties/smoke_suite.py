"""The smoke suite: generated from the spec (and the routes the new version lists), stored as JSON.

One test per critical endpoint and health check, with the endpoint's own expectation, then one per
listed GET route without parameters that none of those reaches. Tests are named by their
expectation (:func:`endpoint_key`), so the JUnit results say what each case required.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gendev_release.duties.qa_evidence import Route
from gendev_release.spec import ReleaseSpec


@dataclass(frozen=True)
class SmokeTest:
    """One generated smoke test; duck-types as a health check for :func:`probes.run_check`."""

    name: str
    path: str
    expect_status: int = 200
    expect_body_contains: str | None = None
    timeout_seconds: float = 5.0
    method: str = "GET"
    source: str = "critical_endpoints"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SmokeTest:
        return cls(name=str(data["name"]), path=str(data["path"]), expect_status=int(data.get("expect_status", 200)),
                   expect_body_contains=data.get("expect_body_contains"),
                   timeout_seconds=float(data.get("timeout_seconds", 5.0)), method=str(data.get("method", "GET")),
                   source=str(data.get("source", "critical_endpoints")))

    @property
    def key(self) -> str:
        return endpoint_key(self.path, self.expect_status, self.expect_body_contains)


def endpoint_key(path: str, expect_status: int, expect_body_contains: str | None) -> str:
    """How an endpoint's expectation is named (and its smoke case): ``GET /healthz -> 200 containing 'ok'``."""
    text = f"GET {path} -> {expect_status}"
    return text + (f" containing {expect_body_contains!r}" if expect_body_contains else "")


def required_endpoints(spec: ReleaseSpec) -> dict[str, tuple[str, str]]:
    """Every endpoint the spec says must answer: ``key -> (path, source)``, critical endpoints first."""
    required: dict[str, tuple[str, str]] = {}
    for endpoint in spec.critical_endpoints:
        required.setdefault(endpoint_key(endpoint.path, endpoint.expect_status, endpoint.expect_body_contains),
                            (endpoint.path, "critical_endpoints"))
    for check in spec.health.checks:
        required.setdefault(endpoint_key(check.path, check.expect_status, check.expect_body_contains),
                            (check.path, f"health.checks.{check.name}"))
    return required


def build_smoke_suite(spec: ReleaseSpec, version: str, routes: list[Route] | None = None) -> dict[str, Any]:
    """One smoke test per critical endpoint and health check (with its own expectations), then one per listed
    GET route without parameters that no such test reaches."""
    sources: list[tuple[Any, str, float]] = [(e, "critical_endpoints", 5.0) for e in spec.critical_endpoints]
    sources += [(c, f"health.checks.{c.name}", c.timeout_seconds) for c in spec.health.checks]
    tests: list[dict[str, Any]] = []
    paths = set()
    for endpoint, source, timeout in sources:
        key = endpoint_key(endpoint.path, endpoint.expect_status, endpoint.expect_body_contains)
        if any(t["name"] == key for t in tests):
            continue
        tests.append({"name": key, "method": "GET", "path": endpoint.path, "expect_status": endpoint.expect_status,
                      "expect_body_contains": endpoint.expect_body_contains, "timeout_seconds": timeout,
                      "source": source})
        paths.add(endpoint.path)
    for route in routes or []:
        if route.templated or route.path in paths:
            continue
        paths.add(route.path)
        tests.append({"name": endpoint_key(route.path, route.expect_status, None), "method": "GET",
                      "path": route.path, "expect_status": route.expect_status, "expect_body_contains": None,
                      "timeout_seconds": 5.0, "source": "openapi"})
    return {"suite": f"{spec.service}-smoke", "service": spec.service, "version": version,
            "generated_from": "spec.critical_endpoints, spec.health.checks"
                              + (", the version's route listing" if routes else ""), "tests": tests}


def suite_coverage(tests: list[SmokeTest], required: list[str]) -> tuple[list[str], list[str]]:
    """(required endpoint keys no test covers with the same expectation, test keys for no required endpoint)."""
    have = {t.key for t in tests}
    return sorted(set(required) - have), sorted(have - set(required))


def read_smoke_suite(path: Path) -> list[SmokeTest]:
    """The suite as stored on disk; ``ValueError`` when it is not a suite file."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return [SmokeTest.from_dict(entry) for entry in document["tests"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path} is not a smoke suite: {type(exc).__name__}: {exc}") from exc
