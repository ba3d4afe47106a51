"""Reading and writing JUnit XML, the test-result format every runner speaks, through ``junitparser``.

:func:`parse_junit` accepts both shapes seen in the field: a ``<testsuites>`` root holding one or
more ``<testsuite>`` elements (pytest, Maven Surefire aggregates) and a bare ``<testsuite>`` root
(Surefire, many JS runners). The XML is parsed by :func:`gendev_release.formats.parse_xml`
(defusedxml: an entity-expansion file is refused, never expanded) and handed to junitparser.
Counts come from the ``<testcase>`` elements themselves, so a report whose summary attributes
disagree with its cases cannot hide a failure; a suite that lists no cases and no nested suites
falls back to its attributes. Anything that is not JUnit raises a :class:`ValueError` naming the file.

:func:`write_junit` writes the same format for the suites this package runs itself (smoke tests,
the demo QA checks), so one parser reads both.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import junitparser
from junitparser import Attr, Error, Failure, JUnitXml, Properties, Property, Skipped, TestCase, TestSuite

from gendev_release.formats import FormatError, parse_xml

_MESSAGE_LIMIT = 500

Outcome = Literal["passed", "failure", "error", "skipped"]


@dataclass(frozen=True)
class SuiteCounts:
    """Counts of one ``<testsuite>``."""

    name: str
    tests: int
    failures: int
    errors: int
    skipped: int
    time: float = 0.0

    @property
    def passed(self) -> int:
        return max(0, self.tests - self.failures - self.errors - self.skipped)


@dataclass(frozen=True)
class FailedCase:
    """A test case that failed (an assertion) or errored (the test itself broke)."""

    suite: str
    classname: str
    name: str
    kind: Literal["failure", "error"]
    message: str

    def render(self) -> str:
        qualified = f"{self.classname}.{self.name}" if self.classname else self.name
        return f"{qualified} ({self.kind}): {self.message}"


@dataclass(frozen=True)
class JUnitSummary:
    """Totals over every suite of one JUnit file."""

    tests: int
    failures: int
    errors: int
    skipped: int
    suites: tuple[SuiteCounts, ...] = ()
    failed_cases: tuple[FailedCase, ...] = ()
    case_names: tuple[str, ...] = ()

    @property
    def passed(self) -> int:
        return max(0, self.tests - self.failures - self.errors - self.skipped)

    @property
    def pass_rate_pct(self) -> float:
        """Passed cases over all cases; a skipped case is not a passing one. No cases: 0."""
        return 100.0 * self.passed / self.tests if self.tests else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = self.passed
        data["pass_rate_pct"] = round(self.pass_rate_pct, 3)
        return data


# ------------------------------------------------------------------------------------ parsing
class _SuiteAsWritten(junitparser.Element):
    """A ``<testsuite>``'s summary attributes as the file wrote them.

    junitparser's ``TestSuite`` reads a missing count by recomputing every count from the cases in
    place; for a suite that lists no cases that would turn its summary into zeros.
    """

    _tag = "testsuite"
    name = Attr()
    tests = Attr()
    failures = Attr()
    errors = Attr()
    skipped = Attr()
    time = Attr()


def _count(raw: str | None, attribute: str, suite: str, source: str) -> int:
    if raw is None or raw.strip() == "":
        return 0
    try:
        return int(float(raw))
    except ValueError:
        raise FormatError(f"{source}: <testsuite name={suite!r}> has a non-numeric {attribute}={raw!r}") from None


def _seconds(raw: str | None) -> float:
    try:
        return float((raw or "0").replace(",", ""))
    except ValueError:
        return 0.0


def _message(result: Failure | Error, kind: str) -> str:
    message = result.message or (result.text or "").strip() or result.type or kind
    return str(message)[:_MESSAGE_LIMIT]


def _case_outcome(case: TestCase) -> tuple[Outcome, str]:
    results = case.result
    failures = [r for r in results if isinstance(r, Failure)]
    if failures:
        return "failure", _message(failures[0], "failure")
    errors = [r for r in results if isinstance(r, Error)]
    if errors:
        return "error", _message(errors[0], "error")
    if any(isinstance(r, Skipped) for r in results):
        return "skipped", ""
    return "passed", ""


def _every_suite(suites: Iterable[TestSuite]) -> Iterator[TestSuite]:
    for suite in suites:
        yield suite
        yield from _every_suite(suite.testsuites())


def _suite_counts(suite: TestSuite, source: str, failed: list[FailedCase], names: list[str]) -> SuiteCounts | None:
    """Counts of the suite's own cases; None for a suite that only groups nested suites."""
    written = _SuiteAsWritten.fromelem(suite)
    name = written.name or "(unnamed)"
    cases: list[TestCase] = list(suite.iterchildren(TestCase))
    if not cases:
        if any(True for _ in suite.testsuites()):
            return None  # an aggregate: its nested suites are counted themselves, never twice
        return SuiteCounts(name, tests=_count(written.tests, "tests", name, source),
                           failures=_count(written.failures, "failures", name, source),
                           errors=_count(written.errors, "errors", name, source),
                           skipped=_count(written.skipped, "skipped", name, source), time=_seconds(written.time))
    counts = {"failure": 0, "error": 0, "skipped": 0, "passed": 0}
    for case in cases:
        outcome, message = _case_outcome(case)
        counts[outcome] += 1
        classname, case_name = case.classname or "", case.name or "(unnamed)"
        names.append(f"{classname}.{case_name}" if classname else case_name)
        if outcome == "failure" or outcome == "error":
            failed.append(FailedCase(name, classname, case_name, outcome, message))
    return SuiteCounts(name, len(cases), counts["failure"], counts["error"], counts["skipped"], _seconds(written.time))


def parse_junit_text(text: str | bytes, source: str = "<junit>") -> JUnitSummary:
    """Parse JUnit XML text; raise :class:`ValueError` naming ``source`` when it is not JUnit."""
    root = parse_xml(text, source, "JUnit XML")
    if root.tag not in ("testsuites", "testsuite"):
        raise FormatError(f"{source}: not JUnit XML: root element is <{root.tag}>, expected <testsuites> "
                          f"or <testsuite>")
    top: list[TestSuite] = list(JUnitXml.fromelem(root)) if root.tag == "testsuites" else [TestSuite.fromelem(root)]
    failed: list[FailedCase] = []
    names: list[str] = []
    counts = [c for suite in _every_suite(top) if (c := _suite_counts(suite, source, failed, names)) is not None]
    return JUnitSummary(
        tests=sum(c.tests for c in counts), failures=sum(c.failures for c in counts),
        errors=sum(c.errors for c in counts), skipped=sum(c.skipped for c in counts),
        suites=tuple(counts), failed_cases=tuple(failed), case_names=tuple(names),
    )


def parse_junit(path: str | Path) -> JUnitSummary:
    """Parse a JUnit XML file.

    :param path: the file; ``FileNotFoundError`` when it does not exist.
    :raises ValueError: when the file is not well-formed JUnit XML (the message names the file).
    """
    path = Path(path)
    return parse_junit_text(path.read_bytes(), str(path))


# ------------------------------------------------------------------------------------ writing
@dataclass(frozen=True)
class CaseResult:
    """One test case to write: ``failure`` (the message) is set when it failed."""

    name: str
    classname: str
    seconds: float = 0.0
    failure: str | None = None
    detail: str = ""
    properties: dict[str, str] = field(default_factory=dict)


def _test_case(case: CaseResult) -> TestCase:
    element = TestCase(case.name, case.classname, round(case.seconds, 3))
    if case.properties:
        properties = Properties()
        for key, value in case.properties.items():
            properties.add_property(Property(key, value))
        element.append(properties)
    if case.failure is not None:
        failure = Failure(case.failure[:_MESSAGE_LIMIT] or "failed", "AssertionError")
        failure.text = case.detail or case.failure
        element.result = [failure]
    return element


def write_junit(path: Path, suite_name: str, cases: list[CaseResult]) -> Path:
    """Write one suite as ``<testsuites><testsuite>...`` (the shape pytest writes)."""
    suite = TestSuite(suite_name)
    suite.add_testcases([_test_case(case) for case in cases])
    document = JUnitXml()
    document.add_testsuite(suite)
    document.update_statistics()
    path.parent.mkdir(parents=True, exist_ok=True)
    document.write(str(path))
    return path
