"""JUnit XML parsing (shared by the smoke and QA duties) and writing, through junitparser and defusedxml."""

from __future__ import annotations

from pathlib import Path

import pytest

from gendev_release.formats import FormatError
from gendev_release.junit import CaseResult, parse_junit, parse_junit_text, write_junit

FIXTURES = Path(__file__).parent / "fixtures" / "formats"

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


# ============================================================== files as the tools write them
def test_pytest_junitxml_file() -> None:
    summary = parse_junit(FIXTURES / "junit-pytest.xml")

    assert (summary.tests, summary.passed, summary.failures, summary.errors, summary.skipped) == (6, 3, 1, 1, 1)
    assert [(c.name, c.kind) for c in summary.failed_cases] == [("test_cancel_order", "failure"),
                                                                 ("test_refund", "error")]
    assert summary.failed_cases[0].message.startswith("AssertionError: assert 409 == 200")
    assert summary.failed_cases[1].message == 'failed on setup with "ConnectionRefusedError: [Errno 111] ' \
                                              'Connection refused"'
    assert summary.suites[0].time == pytest.approx(2.914)


def test_maven_surefire_file_with_a_bare_testsuite_root() -> None:
    summary = parse_junit(FIXTURES / "junit-surefire.xml")

    assert (summary.tests, summary.passed, summary.failures, summary.skipped) == (4, 2, 1, 1)
    assert [s.name for s in summary.suites] == ["com.example.shop.OrderServiceTest"]
    assert summary.failed_cases[0].render() == ("com.example.shop.OrderServiceTest.appliesDiscount (failure): "
                                                "expected: <90.00> but was: <100.00>")


@pytest.mark.parametrize(("name", "message"), [
    pytest.param("junit-billion-laughs.xml", "declares the XML entity 'lol'", id="billion_laughs"),
    pytest.param("junit-external-entity.xml", "declares the XML entity 'leak' (SYSTEM 'file:///etc/passwd')",
                 id="external_entity"),
    pytest.param("checkstyle-result.xml", "not JUnit XML: root element is <checkstyle>", id="checkstyle_report"),
])
def test_files_that_are_not_safe_junit_are_refused(name: str, message: str) -> None:
    with pytest.raises(FormatError) as raised:
        parse_junit(FIXTURES / name)
    assert str(raised.value).startswith(f"{FIXTURES / name}: ") and message in str(raised.value)


def test_suite_with_own_cases_and_nested_suites_counts_each_case_once() -> None:
    mixed = ('<testsuites><testsuite name="outer"><testcase name="a"/><testsuite name="inner">'
             '<testcase name="b"><failure message="no"/></testcase></testsuite></testsuite></testsuites>')
    summary = parse_junit_text(mixed)
    assert [(s.name, s.tests, s.failures) for s in summary.suites] == [("outer", 1, 0), ("inner", 1, 1)]


def test_written_file_is_what_junitparser_and_pytest_write(tmp_path: Path) -> None:
    path = write_junit(tmp_path / "r.xml", "demo-integration", [
        CaseResult("healthz_ok", "gendev_release.demo.qa", 0.01234, properties={"note": "healthz ok"}),
        CaseResult("items_listed_with_ids", "gendev_release.demo.qa", 0.2, failure="GET /api/items: 500",
                   detail="body: boom")])
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<?xml version='1.0' encoding='utf-8'?>\n<testsuites ")
    assert '<property name="note" value="healthz ok" />' in text
    assert '<failure message="GET /api/items: 500" type="AssertionError">body: boom</failure>' in text
    summary = parse_junit(path)
    assert (summary.tests, summary.failures, summary.suites[0].time) == (2, 1, pytest.approx(0.212))
