"""Integration and user-acceptance checks for the demo service, written as JUnit XML.

Run it as ``python -m gendev_release.demo.qa --base-url URL --junit FILE [--suite integration|acceptance]
[--expect-version VERSION]``. Each check is one real HTTP exchange with the running service
(through the router in a release) and becomes one ``<testcase>``; a failed check carries a
``<failure>`` whose message says what was expected and what came back. Exit code 1 when any check
failed, 0 otherwise (2 for bad arguments), like pytest.

The ``integration`` suite checks the service's contracts (status codes, JSON shapes, headers,
metrics); the ``acceptance`` suite walks what a user does (browse the items, get the release they
were promised) and needs ``--expect-version``, the version the release ships.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from gendev_release.junit import CaseResult, write_junit
from gendev_release.probes import HttpResult, http_get, parse_prometheus_text
from gendev_release.spec_rules import VERSION_RE

SUITE = "demo-integration"
CLASSNAME = "gendev_release.demo.qa"
REQUIRED_HEADERS: dict[str, str | None] = {"x-content-type-options": "nosniff", "x-frame-options": None}
UNKNOWN_PATH = "/__gendev_qa_no_such_page__"


class CheckFailed(AssertionError):
    """A check's expectation did not hold; the message is the JUnit failure message."""


@dataclass(frozen=True)
class QACheck:
    name: str
    run: Callable[[str, httpx.Client], str]  # returns a short note on success, raises CheckFailed


def _get(base: str, path: str, client: httpx.Client) -> HttpResult:
    result = http_get(base.rstrip("/") + path, 5.0, client)
    if result.status is None:
        raise CheckFailed(f"GET {path}: no answer: {result.error}")
    return result


def _expect_status(result: HttpResult, path: str, status: int) -> None:
    if result.status != status:
        raise CheckFailed(f"GET {path} answered {result.status}, expected {status}: {result.body[:200]!r}")


def _json(result: HttpResult, path: str) -> Any:
    try:
        return json.loads(result.body)
    except ValueError as exc:
        raise CheckFailed(f"GET {path} did not answer JSON: {exc}: {result.body[:200]!r}") from None


def check_healthz(base: str, client: httpx.Client) -> str:
    result = _get(base, "/healthz", client)
    _expect_status(result, "/healthz", 200)
    if "ok" not in result.body:
        raise CheckFailed(f"GET /healthz body lacks 'ok': {result.body[:200]!r}")
    return "healthz ok"


def check_version(base: str, client: httpx.Client) -> str:
    result = _get(base, "/version", client)
    _expect_status(result, "/version", 200)
    payload = _json(result, "/version")
    version = payload.get("version") if isinstance(payload, dict) else None
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise CheckFailed(f"GET /version: 'version' is {version!r}, not a semantic version")
    return f"version {version}"


def check_items(base: str, client: httpx.Client) -> str:
    result = _get(base, "/api/items", client)
    _expect_status(result, "/api/items", 200)
    payload = _json(result, "/api/items")
    items = payload.get("items") if isinstance(payload, dict) else payload
    if not isinstance(items, list) or not items:
        raise CheckFailed(f"GET /api/items: expected a non-empty list of items, got {str(payload)[:200]}")
    without_id = [index for index, entry in enumerate(items) if not isinstance(entry, dict) or "id" not in entry]
    if without_id:
        raise CheckFailed(f"GET /api/items: item(s) at index {without_id} have no 'id'")
    ids = [entry["id"] for entry in items]
    if len(set(map(str, ids))) != len(ids):
        raise CheckFailed(f"GET /api/items: duplicate ids {ids}")
    return f"{len(items)} items"


def check_unknown_path(base: str, client: httpx.Client) -> str:
    result = _get(base, UNKNOWN_PATH, client)
    _expect_status(result, UNKNOWN_PATH, 404)
    return "unknown path answers 404"


def check_security_headers(base: str, client: httpx.Client) -> str:
    result = _get(base, "/version", client)
    problems = []
    for header, expected in REQUIRED_HEADERS.items():
        value = result.headers.get(header)
        if value is None:
            problems.append(f"{header} missing")
        elif expected is not None and value.lower() != expected:
            problems.append(f"{header} is {value!r}, expected {expected!r}")
    if problems:
        raise CheckFailed("GET /version security headers: " + "; ".join(problems))
    return "security headers present"


def check_metrics(base: str, client: httpx.Client) -> str:
    result = _get(base, "/metrics", client)
    _expect_status(result, "/metrics", 200)
    samples = parse_prometheus_text(result.body)
    if not samples:
        raise CheckFailed("GET /metrics: no Prometheus samples in the exposition")
    return f"{len(samples)} samples"


CHECKS: tuple[QACheck, ...] = (
    QACheck("healthz_ok", check_healthz),
    QACheck("version_is_semver_json", check_version),
    QACheck("items_listed_with_ids", check_items),
    QACheck("unknown_path_is_404", check_unknown_path),
    QACheck("security_headers_present", check_security_headers),
    QACheck("metrics_exposition_parses", check_metrics),
)


# ------------------------------------------------------------------------------ user acceptance
def check_items_browsable(base: str, client: httpx.Client) -> str:
    """A user opens the item list: every item has a name to show, none is listed twice."""
    result = _get(base, "/api/items", client)
    _expect_status(result, "/api/items", 200)
    content_type = result.headers.get("content-type", "")
    if not content_type.startswith("application/json"):
        raise CheckFailed(f"GET /api/items answered Content-Type {content_type!r}, expected application/json")
    payload = _json(result, "/api/items")
    items = payload.get("items") if isinstance(payload, dict) else payload
    if not isinstance(items, list) or not items:
        raise CheckFailed(f"GET /api/items: a user sees no items ({str(payload)[:200]})")
    unnamed = [index for index, entry in enumerate(items)
               if not isinstance(entry, dict) or not str(entry.get("name") or "").strip()]
    if unnamed:
        raise CheckFailed(f"GET /api/items: item(s) at index {unnamed} have no name to show")
    names = [str(entry["name"]) for entry in items]
    if len(set(names)) != len(names):
        raise CheckFailed(f"GET /api/items: items listed twice: {sorted(n for n in set(names) if names.count(n) > 1)}")
    return f"{len(items)} named items"


def release_served(expected: str) -> QACheck:
    """A user gets the version the release promised, on every one of a few requests."""

    def check(base: str, client: httpx.Client) -> str:
        seen = []
        for _ in range(3):
            result = _get(base, "/version", client)
            _expect_status(result, "/version", 200)
            payload = _json(result, "/version")
            seen.append(payload.get("version") if isinstance(payload, dict) else None)
        wrong = [version for version in seen if version != expected]
        if wrong:
            raise CheckFailed(f"GET /version answered {seen}, expected the released version {expected!r} every time")
        return f"version {expected} served"

    return QACheck("released_version_served", check)


def acceptance_checks(expected_version: str) -> tuple[QACheck, ...]:
    return (QACheck("items_browsable", check_items_browsable), release_served(expected_version))


SUITES: dict[str, str] = {"integration": SUITE, "acceptance": "demo-acceptance"}


def run_checks(base_url: str, checks: tuple[QACheck, ...] = CHECKS) -> list[CaseResult]:
    """Run every check once against ``base_url``; a check never stops the others."""
    cases = []
    with httpx.Client() as client:
        for check in checks:
            started = time.monotonic()
            failure: str | None = None
            try:
                note = check.run(base_url, client)
            except CheckFailed as exc:
                failure, note = str(exc), ""
            except Exception as exc:  # a check that crashes is a failed check, with the reason
                failure, note = f"{type(exc).__name__}: {exc}", ""
            cases.append(CaseResult(name=check.name, classname=CLASSNAME, seconds=time.monotonic() - started,
                                    failure=failure, properties={"note": note} if note else {}))
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gendev_release.demo.qa", description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True, help="the service's URL, e.g. the router's")
    parser.add_argument("--junit", required=True, type=Path, help="JUnit XML file to write")
    parser.add_argument("--suite", choices=sorted(SUITES), default="integration", help="which checks to run")
    parser.add_argument("--expect-version", default=None, help="the released version (required by acceptance)")
    args = parser.parse_args(argv)
    if args.suite == "acceptance" and not args.expect_version:
        parser.error("--suite acceptance needs --expect-version (the version the release ships)")
    checks = acceptance_checks(args.expect_version) if args.suite == "acceptance" else CHECKS
    cases = run_checks(args.base_url, checks)
    write_junit(args.junit, SUITES[args.suite], cases)
    failed = [case for case in cases if case.failure is not None]
    for case in cases:
        print(f"{'FAIL' if case.failure else 'ok  '} {case.name}" + (f": {case.failure}" if case.failure else ""))
    print(f"{len(cases) - len(failed)}/{len(cases)} passed; JUnit written to {args.junit}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
