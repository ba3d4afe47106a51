"""Reading and writing JUnit XML, the test-result format every runner speaks.

:func:`parse_junit` accepts both shapes seen in the field: a ``<testsuites>`` root holding one or
more ``<testsuite>`` elements (pytest, Maven Surefire aggregates) and a bare ``<testsuite>`` root
(Surefire, many JS runners). Counts come from the ``<testcase>`` elements themselves, so a report
whose summary attributes disagree with its cases cannot hide a failure; a suite that lists no
cases falls back to its attributes. Malformed XML raises a :class:`ValueError` naming the file.

:func:`write_junit` writes the same format for the suites this package runs itself (smoke tests,
the demo QA checks), so one parser reads both.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

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
def _int_attr(element: ET.Element, name: str, source: str) -> int:
    raw = element.get(name)
    if raw is None or raw.strip() == "":
        return 0
    try:
        return int(float(raw))
    except ValueError:
        raise ValueError(f"{source}: <{element.tag} name={element.get('name')!r}> has a non-numeric "
                         f"{name}={raw!r}") from None


def _float_attr(element: ET.Element, name: str) -> float:
    try:
        return float(element.get(name) or 0.0)
    except ValueError:
        return 0.0


def _message(child: ET.Element) -> str:
    message = child.get("message") or (child.text or "").strip() or child.get("type") or child.tag
    return message[:_MESSAGE_LIMIT]


def _case_outcome(case: ET.Element) -> tuple[Outcome, str]:
    failure, error = case.find("failure"), case.find("error")
    if failure is not None:
        return "failure", _message(failure)
    if error is not None:
        return "error", _message(error)
    if case.find("skipped") is not None:
        return "skipped", ""
    return "passed", ""


def _suite_counts(suite: ET.Element, source: str, failed: list[FailedCase], names: list[str]) -> SuiteCounts:
    name = suite.get("name") or "(unnamed)"
    cases = suite.findall("testcase")
    if not cases:
        return SuiteCounts(name, _int_attr(suite, "tests", source), _int_attr(suite, "failures", source),
                           _int_attr(suite, "errors", source), _int_attr(suite, "skipped", source),
                           _float_attr(suite, "time"))
    counts = {"failure": 0, "error": 0, "skipped": 0, "passed": 0}
    for case in cases:
        outcome, message = _case_outcome(case)
        counts[outcome] += 1
        classname, case_name = case.get("classname") or "", case.get("name") or "(unnamed)"
        names.append(f"{classname}.{case_name}" if classname else case_name)
        if outcome == "failure" or outcome == "error":
            failed.append(FailedCase(name, classname, case_name, outcome, message))
    return SuiteCounts(name, len(cases), counts["failure"], counts["error"], counts["skipped"],
                       _float_attr(suite, "time"))


def parse_junit_text(text: str | bytes, source: str = "<junit>") -> JUnitSummary:
    """Parse JUnit XML text; raise :class:`ValueError` naming ``source`` when it is not JUnit."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ValueError(f"{source}: malformed JUnit XML: {exc}") from exc
    if root.tag not in ("testsuites", "testsuite"):
        raise ValueError(f"{source}: not JUnit XML: root element is <{root.tag}>, expected <testsuites> "
                         f"or <testsuite>")
    # Leaf suites only: a suite that aggregates nested suites would count their cases twice.
    suites = [suite for suite in root.iter("testsuite") if suite.find("testsuite") is None]
    failed: list[FailedCase] = []
    names: list[str] = []
    counts = [_suite_counts(suite, source, failed, names) for suite in suites]
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
    """One test case to write: ``message`` is set when it failed."""

    name: str
    classname: str
    seconds: float = 0.0
    failure: str | None = None
    detail: str = ""
    properties: dict[str, str] = field(default_factory=dict)


def write_junit(path: Path, suite_name: str, cases: list[CaseResult]) -> Path:
    """Write one suite as ``<testsuites><testsuite>...`` (the shape pytest writes)."""
    failures = sum(1 for c in cases if c.failure is not None)
    total_time = sum(c.seconds for c in cases)
    root = ET.Element("testsuites", tests=str(len(cases)), failures=str(failures), errors="0",
                      skipped="0", time=f"{total_time:.3f}")
    suite = ET.SubElement(root, "testsuite", name=suite_name, tests=str(len(cases)), failures=str(failures),
                          errors="0", skipped="0", time=f"{total_time:.3f}")
    for case in cases:
        element = ET.SubElement(suite, "testcase", classname=case.classname, name=case.name,
                                time=f"{case.seconds:.3f}")
        if case.properties:
            props = ET.SubElement(element, "properties")
            for key, value in case.properties.items():
                ET.SubElement(props, "property", name=key, value=value)
        if case.failure is not None:
            failure = ET.SubElement(element, "failure", message=case.failure[:_MESSAGE_LIMIT], type="AssertionError")
            failure.text = case.detail or case.failure
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path
