"""JUnit XML parsing (shared by the smoke and QA duties) and writing."""

from __future__ import annotations

from pathlib import Path

import pytest

from gendev_release.junit import CaseResult, parse_junit, parse_junit_text, write_junit

PYTEST_STYLE = """<?xml version="1.0" encoding="utf-8"?>
<testsuites name="pytest tests">
  <testsuite name="integration" errors="1" failures="1" skipped="1" tests="5" time="0.5">
    <testcase classname="tests.test_api" name="test_ok" time="0.1"/>
    <testcase classname="tests.test_api" name="test_ok_too" time="0.1"/>
    <testcase classname="tests.test_api" name="test_broken" time="0.1">
      <failure message="assert 500 == 200">AssertionError: assert 500 == 200</failure>
    </testcase>
    <testcase classname="tests.test_api" name="test_setup" time="0.1"><error message="fixture crashed"/></testcase>
    <testcase classname="tests.test_api" name="test_later" time="0.1"><skipped message="not today"/></testcase>
  </testsuite>
  <testsuite name="uat" tests="2" failures="0" errors="0" skipped="0">
    <testcase classname="uat" name="login"/>
    <testcase classname="uat" name="checkout"/>
  </testsuite>
</testsuites>
"""

BARE_SUITE = """<testsuite name="surefire" tests="3" failures="1">
  <testcase classname="com.example.AppTest" name="one"/>
  <testcase classname="com.example.AppTest" name="two"/>
  <testcase classname="com.example.AppTest" name="three">
    <failure type="java.lang.AssertionError">expected 1</failure>
  </testcase>
</testsuite>
"""


def test_testsuites_root_is_summed_per_suite(tmp_path: Path) -> None:
    path = tmp_path / "results.xml"
    path.write_text(PYTEST_STYLE, encoding="utf-8")

    summary = parse_junit(path)

    assert (summary.tests, summary.failures, summary.errors, summary.skipped, summary.passed) == (7, 1, 1, 1, 4)
    assert [(s.name, s.tests, s.failures, s.errors, s.skipped) for s in summary.suites] == [
        ("integration", 5, 1, 1, 1), ("uat", 2, 0, 0, 0)]
    assert [c.render() for c in summary.failed_cases] == [
        "tests.test_api.test_broken (failure): assert 500 == 200",
        "tests.test_api.test_setup (error): fixture crashed"]
    assert summary.pass_rate_pct == pytest.approx(100 * 4 / 7)
    assert "uat.checkout" in summary.case_names


def test_bare_testsuite_root_and_failure_text_as_message() -> None:
    summary = parse_junit_text(BARE_SUITE, "surefire.xml")
    assert (summary.tests, summary.failures, summary.passed) == (3, 1, 2)
    assert summary.failed_cases[0].message == "expected 1"


def test_counts_come_from_cases_not_from_attributes() -> None:
    lying = ('<testsuite name="s" tests="2" failures="0">'
             '<testcase name="a"/><testcase name="b"><failure/></testcase></testsuite>')
    summary = parse_junit_text(lying)
    assert summary.failures == 1 and summary.failed_cases[0].message == "failure"


def test_suite_without_cases_falls_back_to_attributes() -> None:
    summary = parse_junit_text('<testsuites><testsuite name="agg" tests="10" failures="2" errors="1" skipped="0"/>'
                               "</testsuites>")
    assert (summary.tests, summary.failures, summary.errors, summary.passed) == (10, 2, 1, 7)


def test_nested_suites_are_not_counted_twice() -> None:
    nested = ('<testsuites><testsuite name="outer" tests="2"><testsuite name="inner" tests="2">'
              '<testcase name="a"/><testcase name="b"/></testsuite></testsuite></testsuites>')
    summary = parse_junit_text(nested)
    assert summary.tests == 2 and [s.name for s in summary.suites] == ["inner"]


def test_empty_testsuites_has_no_tests_and_zero_pass_rate() -> None:
    summary = parse_junit_text("<testsuites/>")
    assert summary.tests == 0 and summary.pass_rate_pct == 0.0


@pytest.mark.parametrize("text,message", [
    ("<testsuite name='x'><testcase name='a'>", "malformed JUnit XML"),
    ("not xml at all", "malformed JUnit XML"),
    ("<coverage line-rate='0.9'/>", "root element is <coverage>"),
    ("<testsuite name='x' tests='many'/>", "non-numeric tests='many'"),
])
def test_bad_input_raises_a_clear_value_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.xml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as raised:
        parse_junit(path)
    assert str(path) in str(raised.value)


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        parse_junit(tmp_path / "absent.xml")


def test_write_then_parse_round_trip(tmp_path: Path) -> None:
    path = write_junit(tmp_path / "out" / "r.xml", "smoke", [
        CaseResult("GET /healthz", "smoke.demo", 0.01),
        CaseResult("GET /api/items", "smoke.demo", 0.02, failure="answered 500, expected 200", detail="body: boom"),
    ])
    summary = parse_junit(path)
    assert (summary.tests, summary.failures, summary.passed) == (2, 1, 1)
    assert summary.failed_cases[0].render() == "smoke.demo.GET /api/items (failure): answered 500, expected 200"
    assert summary.suites[0].name == "smoke"
