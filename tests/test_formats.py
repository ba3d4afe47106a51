"""Standard formats read strictly: XML through defusedxml, coverage XML, Terraform plan JSON.

Every rule is shown failing on a realistic file (``tests/fixtures/formats``): what coverage.py,
Cobertura and ``terraform show -json`` write, or that file with the one thing the rule refuses.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from gendev_release.formats import (
    CoverageReport,
    Finding,
    FormatError,
    PlanFormatError,
    ScanFormatError,
    coverage_timestamp,
    cvss3_base_score,
    parse_coverage_text,
    parse_coverage_xml,
    parse_osv_record,
    parse_osv_scanner,
    parse_pip_audit,
    parse_sarif,
    parse_scan_report,
    parse_terraform_plan,
    parse_xml,
    severity_of_label,
    severity_of_score,
    stale_coverage_problem,
)

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
WRITTEN = datetime(2024, 6, 10, 14, 2, 11, 482000, tzinfo=timezone.utc)  # timestamp="1718028131482"


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def plan_fixture(name: str = "terraform-plan.json") -> dict:
    return json.loads(fixture_text(name))


# ========================================================================================= XML
@pytest.mark.parametrize(("name", "entity"), [
    ("junit-billion-laughs.xml", "lol"),
    ("coverage-billion-laughs.xml", "a"),
    ("junit-external-entity.xml", "leak"),
])
def test_entity_declarations_are_refused_never_expanded(name: str, entity: str) -> None:
    with pytest.raises(FormatError) as raised:
        parse_xml((FIXTURES / name).read_bytes(), name, "report XML")
    message = str(raised.value)
    assert message.startswith(f"{name}: report XML declares the XML entity {entity!r}")
    assert "refused without expanding it" in message
    assert "lollollol" not in message and "root:" not in message  # neither expanded nor read


def test_external_entity_names_the_file_it_wanted() -> None:
    with pytest.raises(FormatError, match=r"SYSTEM 'file:///etc/passwd'"):
        parse_xml(fixture_text("junit-external-entity.xml"), "uat.xml", "JUnit XML")


def test_a_doctype_without_entities_is_read() -> None:
    # Cobertura (Java) writes <!DOCTYPE coverage SYSTEM "...coverage-04.dtd">: the DTD is never fetched.
    root = parse_xml(fixture_text("cobertura-maven.xml"), "coverage.xml", "coverage XML")
    assert root.tag == "coverage" and root.get("version") == "2.1.1"


def test_malformed_xml_is_a_format_error_naming_the_source() -> None:
    with pytest.raises(FormatError, match=r"^results\.xml: malformed JUnit XML: mismatched tag"):
        parse_xml("<testsuite><testcase></testsuite>", "results.xml", "JUnit XML")


# ================================================================================ coverage XML
def test_coverage_py_report_is_read() -> None:
    report = parse_coverage_xml(FIXTURES / "coverage-py.xml")

    assert report == CoverageReport(source=str(FIXTURES / "coverage-py.xml"), line_pct=pytest.approx(74.32),
                                    branch_pct=pytest.approx(69.44), packages=2, classes=3, timestamp=WRITTEN,
                                    generator_version="7.6.1")
    assert report.line() == "line coverage 74.3 %, branch 69.4 %, 3 class(es) in 2 package(s)"
    assert report.as_dict()["timestamp"] == "2024-06-10T14:02:11.482000+00:00"


def test_cobertura_report_with_doctype_is_read() -> None:
    report = parse_coverage_xml(FIXTURES / "cobertura-maven.xml")
    assert (round(report.line_pct, 2), round(report.branch_pct or 0, 2)) == (91.03, 83.33)
    assert (report.packages, report.classes, report.timestamp) == (1, 1, WRITTEN)


def test_branch_rate_without_branch_measurement_is_not_reported() -> None:
    # coverage.py without --branch writes branch-rate="0" for 0 of 0 branches: no branch figure, not 0 %.
    text = fixture_text("coverage-py.xml").replace('branches-valid="36"', 'branches-valid="0"')
    assert parse_coverage_text(text, "coverage.xml").branch_pct is None


def test_report_that_names_no_class_is_refused() -> None:
    # coverage.py with a source folder that matches nothing: line-rate="1" over nothing measured.
    with pytest.raises(FormatError, match="names 0 package\\(s\\) and no class: it measured nothing"):
        parse_coverage_xml(FIXTURES / "coverage-no-classes.xml")


@pytest.mark.parametrize(("change", "message"), [
    pytest.param(('line-rate="0.7432"', 'line-rate="74.32"'), "line-rate 74.32 is outside 0..1",
                 id="percentage_instead_of_rate"),
    pytest.param(('line-rate="0.7432"', 'line-rate="nan"'), "line-rate nan is outside 0..1", id="nan_rate"),
    pytest.param(('line-rate="0.7432" ', ""), "has no line-rate attribute", id="no_line_rate"),
    pytest.param(('timestamp="1718028131482" ', ""), "has no timestamp", id="no_timestamp"),
    pytest.param(('timestamp="1718028131482"', 'timestamp="yesterday"'), "timestamp 'yesterday' is not a number",
                 id="timestamp_not_a_number"),
])
def test_broken_coverage_py_report_is_refused(change: tuple[str, str], message: str) -> None:
    text = fixture_text("coverage-py.xml")
    assert change[0] in text
    with pytest.raises(FormatError, match=message):
        parse_coverage_text(text.replace(change[0], change[1], 1), "coverage.xml")


def test_junit_file_given_as_coverage_is_refused() -> None:
    with pytest.raises(FormatError, match=r"not Cobertura/coverage.py XML: root element is <testsuites>"):
        parse_coverage_xml(FIXTURES / "junit-pytest.xml")


def test_timestamp_in_seconds_or_milliseconds() -> None:
    assert coverage_timestamp("1718028131482", "c.xml") == WRITTEN
    assert coverage_timestamp("1718028131", "c.xml") == WRITTEN.replace(microsecond=0)  # gcovr writes seconds


def test_report_written_before_the_run_started_is_stale() -> None:
    report = parse_coverage_xml(FIXTURES / "coverage-py.xml")
    run_started = WRITTEN + timedelta(hours=2)

    problem = stale_coverage_problem(report, run_started, run_started + timedelta(minutes=9))

    assert problem == (f"coverage report {report.source} was written at 2024-06-10T14:02:11.482000+00:00, before "
                       "this run started (2024-06-10T16:02:11.482000+00:00): it measures an earlier build; let a QA "
                       "suite write it")


def test_report_from_the_future_is_refused_and_a_fresh_one_accepted() -> None:
    report = parse_coverage_xml(FIXTURES / "coverage-py.xml")
    assert stale_coverage_problem(report, WRITTEN - timedelta(minutes=3), WRITTEN + timedelta(seconds=1)) is None
    # within the same second as the run's start: a timestamp in seconds cannot say more
    assert stale_coverage_problem(report, WRITTEN + timedelta(milliseconds=300), WRITTEN) is None
    problem = stale_coverage_problem(report, WRITTEN - timedelta(hours=1), WRITTEN - timedelta(minutes=30))
    assert problem is not None and "later than now" in problem


# ========================================================================= Terraform plan JSON
def test_terraform_show_json_plan_is_read() -> None:
    plan = parse_terraform_plan(plan_fixture(), "tfplan.json")

    assert (plan.format_version, plan.terraform_version) == ("1.2", "1.9.5")
    assert [(c.address, c.actions, c.destructive) for c in plan.changes] == [
        ("aws_s3_bucket.assets", ("update",), False),
        ("aws_security_group.legacy_ssh", ("delete",), True),
        ("aws_iam_role.app", ("no-op",), False),
        ("data.aws_caller_identity.current", ("read",), False),
        ("module.db.aws_db_instance.main", ("delete", "create"), True),
    ]
    assert plan.changes[1].after is None and plan.changes[4].before == {
        "engine": "postgres", "engine_version": "15.7", "instance_class": "db.t4g.medium"}


def test_plan_without_changes_may_leave_resource_changes_out() -> None:
    assert parse_terraform_plan(plan_fixture("terraform-plan-no-changes.json")).changes == ()


@pytest.mark.parametrize("actions", [["create", "delete"], ["forget"]])
def test_the_rest_of_terraforms_vocabulary_is_accepted(actions: list[str]) -> None:
    plan = plan_fixture()
    plan["resource_changes"][0]["change"]["actions"] = actions
    assert parse_terraform_plan(plan).changes[0].actions == tuple(actions)


def test_state_file_is_refused_with_the_commands_that_make_a_plan() -> None:
    with pytest.raises(PlanFormatError, match=r"^state\.json: this is Terraform state, not a plan: run "
                                              r"`terraform plan -out=tfplan` then `terraform show -json tfplan`$"):
        parse_terraform_plan(plan_fixture("terraform-state.json"), "state.json")


@pytest.mark.parametrize(("change", "message"), [
    pytest.param(lambda p: p.update(format_version="2.0"), r"format_version 2.0 is not supported \(majors 0, 1\)",
                 id="unknown_major"),
    pytest.param(lambda p: p.pop("format_version"), "no format_version: not `terraform show -json` output",
                 id="no_format_version"),
    pytest.param(lambda p: p.update(format_version="1"), "format_version '1' is not MAJOR.MINOR",
                 id="format_version_not_major_minor"),
    pytest.param(lambda p: p["resource_changes"][1]["change"].update(actions=["destroy"]),
                 r"resource_changes\[1\] \(aws_security_group.legacy_ssh\) has actions \['destroy'\], which is not "
                 r"Terraform's vocabulary \(\['no-op'\], \['create'\]", id="action_not_in_vocabulary"),
    pytest.param(lambda p: p["resource_changes"][4]["change"].update(actions=["create", "update"]),
                 r"module.db.aws_db_instance.main\) has actions \['create', 'update'\]", id="unknown_combination"),
    pytest.param(lambda p: p["resource_changes"][0]["change"].pop("actions"),
                 r"resource_changes\[0\] \(aws_s3_bucket.assets\) has no change.actions list", id="no_actions"),
    pytest.param(lambda p: p["resource_changes"][2].pop("address"), r"resource_changes\[2\] has no 'address'",
                 id="no_address"),
    pytest.param(lambda p: p.update(resource_changes={"aws_s3_bucket.assets": "update"}),
                 "no 'resource_changes' list", id="resource_changes_not_a_list"),
    pytest.param(lambda p: (p.pop("resource_changes"), p.pop("planned_values")),
                 "no 'resource_changes' list and no planned_values: not a Terraform plan", id="neither"),
])
def test_plan_that_breaks_the_format_is_refused(change, message: str) -> None:
    plan = plan_fixture()
    change(plan)
    with pytest.raises(PlanFormatError, match=message):
        parse_terraform_plan(plan, "tfplan.json")


def test_plan_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(PlanFormatError, match="a Terraform plan is a JSON object, got list"):
        parse_terraform_plan([plan_fixture()], "tfplan.json")


# ========================================================================= vulnerability scans
#: What ``pip-audit -f json`` writes (pip-audit 2.7): dependencies with vulns, a skipped local package, fixes.
PIP_AUDIT = {
    "dependencies": [
        {"name": "Jinja2", "version": "3.1.2", "vulns": [
            {"id": "GHSA-h5c8-rqwp-cp95", "fix_versions": ["3.1.3"], "aliases": ["CVE-2024-22195"],
             "description": "xmlattr filter allows keys with spaces"}]},
        {"name": "idna", "version": "3.20", "vulns": []},
        {"name": "local-pkg", "skip_reason": "Dependency not found on PyPI and could not be audited: local-pkg (0.1)"},
    ],
    "fixes": [],
}
#: An OSV-Scanner (``--format json --all-packages``) result for a requirements file.
OSV_SCANNER = {
    "results": [{
        "source": {"path": "/src/requirements.txt", "type": "lockfile"},
        "packages": [
            {"package": {"name": "h11", "version": "0.14.0", "ecosystem": "PyPI"},
             "vulnerabilities": [{
                 "id": "GHSA-vqfr-h8mv-ghfj", "modified": "2025-04-25T14:35:00Z", "aliases": ["CVE-2025-43859"],
                 "summary": "h11 accepts some malformed Chunked-Encoding bodies",
                 "affected": [{"package": {"ecosystem": "PyPI", "name": "h11"}, "ranges": [
                     {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "0.16.0"}]}]}],
                 "database_specific": {"severity": "CRITICAL"}}],
             "groups": [{"ids": ["GHSA-vqfr-h8mv-ghfj"], "aliases": ["CVE-2025-43859"], "max_severity": "9.1"}]},
            {"package": {"name": "idna", "version": "3.20", "ecosystem": "PyPI"}, "vulnerabilities": [], "groups": []},
        ]}],
}


@pytest.mark.parametrize(("vector", "score"), [
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8), ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:N", 9.1),
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 7.5), ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
    ("CVSS:3.1/AV:L/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 6.2), ("CVSS:3.0/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.8),
    ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:C/C:H/I:H/A:H", 9.0), ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
])
def test_cvss3_base_scores_match_the_published_ones(vector: str, score: float) -> None:
    assert cvss3_base_score(vector) == score


@pytest.mark.parametrize(("vector", "message"), [
    ("AV:N/AC:L/Au:N/C:P/I:P/A:P", "is not a CVSS v3 vector"),
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H", "base metric A missing"),
    ("CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "base metric AV missing or not in its vocabulary"),
    ("CVSS:3.1/AV:N/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "is not METRIC:VALUE once"),
])
def test_broken_cvss_vectors_are_refused(vector: str, message: str) -> None:
    with pytest.raises(ScanFormatError, match=message):
        cvss3_base_score(vector)


def test_severity_levels() -> None:
    assert [severity_of_score(s) for s in (9.0, 8.9, 7.0, 4.0, 3.9, 0.0)] == [
        "critical", "high", "high", "medium", "low", "none"]
    assert severity_of_label("moderate") == "medium" and severity_of_label("urgent") is None
    unknown = Finding("X", None, None, "unknown")
    assert unknown.at_or_above("critical")  # no severity is never assumed harmless
    assert Finding("X", None, None, "high").at_or_above("high") and not Finding("X", None, None,
                                                                                "high").at_or_above("critical")


def test_pip_audit_json_is_read_and_a_missing_severity_counts_as_critical() -> None:
    report = parse_pip_audit(PIP_AUDIT, "audit.json")
    assert report.packages == {"jinja2": "3.1.2", "idna": "3.20"}
    assert report.skipped == {"local-pkg": "Dependency not found on PyPI and could not be audited: local-pkg (0.1)"}
    [finding] = report.findings
    assert (finding.id, finding.package, finding.severity, finding.aliases, finding.fix_versions) == (
        "GHSA-h5c8-rqwp-cp95", "Jinja2", "unknown", ("CVE-2024-22195",), ("3.1.3",))
    assert [f.id for f in report.at_or_above("critical")] == ["GHSA-h5c8-rqwp-cp95"]
    legacy = parse_pip_audit([{"name": "idna", "version": "3.20", "vulns": []}])
    assert legacy.packages == {"idna": "3.20"} and legacy.findings == ()


def test_pip_audit_severity_labels_and_scores() -> None:
    vulns = [{"id": "A", "severity": "MODERATE"}, {"id": "B", "severity": "critical"}, {"id": "C", "severity": 9.8},
             {"id": "D", "severity": "7.5"}]
    report = parse_pip_audit({"dependencies": [{"name": "x", "version": "1", "vulns": vulns}]})
    assert [(f.id, f.severity, f.rated_by) for f in report.findings] == [
        ("A", "medium", "label MODERATE"), ("B", "critical", "label critical"), ("C", "critical", "score 9.8"),
        ("D", "high", "score 7.5")]


def test_sarif_findings_levels_and_artifacts() -> None:
    data = {"version": "2.1.0", "runs": [{
        "tool": {"driver": {"name": "trivy", "rules": [{"id": "CVE-2", "properties": {"security-severity": "7.5"}},
                                                       {"id": "CVE-3", "properties": {"security-severity": "9.8"}}]}},
        "artifacts": [{"location": {"uri": "requirements.lock"}, "hashes": {"sha-256": "AB" * 32}}],
        "results": [
            {"ruleId": "CVE-1", "level": "error", "message": {"text": "a"}, "properties": {"security-severity": "9.1"}},
            {"ruleId": "CVE-2", "level": "error", "message": {"text": "b"}},
            {"ruleIndex": 1, "level": "warning", "message": {"text": "c"}},
            {"ruleId": "LINT-1", "level": "error", "message": {"text": "no severity at all"}},
            {"ruleId": "LINT-2", "level": "note", "message": {"text": "d"}}]}]}
    report = parse_sarif(data, "scan.sarif")
    assert report.packages is None
    assert [(f.id, f.severity) for f in report.findings] == [
        ("CVE-1", "critical"), ("CVE-2", "high"), ("CVE-3", "critical"), ("LINT-1", "unknown"), ("LINT-2", "low")]
    assert [(a.uri, a.sha256) for a in report.artifacts] == [("requirements.lock", "ab" * 32)]


def test_osv_scanner_json_is_read() -> None:
    report = parse_osv_scanner(OSV_SCANNER, "osv.json")
    assert report.packages == {"h11": "0.14.0", "idna": "3.20"}
    [finding] = report.findings
    assert (finding.id, finding.package, finding.version, finding.severity, finding.score, finding.fix_versions) == (
        "GHSA-vqfr-h8mv-ghfj", "h11", "0.14.0", "critical", 9.1, ("0.16.0",))


def test_osv_record_is_read_with_its_severity() -> None:
    record = json.loads((Path(__file__).parents[1] / "dags" / "releases" / "demo" / "advisories" /
                         "GHSA-h8pj-cxx2-jfg2.json").read_text(encoding="utf-8"))
    advisory = parse_osv_record(record, "GHSA-h8pj-cxx2-jfg2.json")
    assert (advisory.severity, advisory.score, advisory.rated_by) == (
        "critical", 9.1, "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:N")
    [affected] = advisory.affected
    assert (affected.ecosystem, affected.name, affected.fixed_versions()) == ("PyPI", "httpx", ("0.23.0",))
    label_only = parse_osv_record({**record, "severity": []})
    assert (label_only.severity, label_only.rated_by) == ("critical", "label CRITICAL")
    bare = parse_osv_record({"id": "PYSEC-1", "modified": "2024-01-01T00:00:00Z", "affected": []})
    assert bare.severity == "unknown"


@pytest.mark.parametrize(("record", "message"), [
    ({"modified": "x"}, "not an OSV record: no 'id'"),
    ({"id": "A"}, "OSV record A has no 'modified' time"),
    ({"id": "A", "modified": "x", "affected": [{"package": {"name": "x"}}]}, r"A.affected\[0\].package has no "
                                                                            "ecosystem and name"),
    ({"id": "A", "modified": "x", "affected": [{"package": {"ecosystem": "PyPI", "name": "x"},
                                                "ranges": [{"type": "NPM", "events": []}]}]},
     r"ranges\[0\].type is not one of ECOSYSTEM, SEMVER, GIT"),
    ({"id": "A", "modified": "x", "affected": [{"package": {"ecosystem": "PyPI", "name": "x"},
                                                "ranges": [{"type": "ECOSYSTEM", "events": [{"fixed": "1"}]}]}]},
     "events has no 'introduced' event"),
    ({"id": "A", "modified": "x", "affected": [{"package": {"ecosystem": "PyPI", "name": "x"}, "ranges": [
        {"type": "ECOSYSTEM", "events": [{"introduced": "0", "fixed": "1"}]}]}]}, r"events\[0\] is not one of"),
    ({"id": "A", "modified": "x", "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N"}]},
     r"A.severity\[0\]: CVSS vector"),
])
def test_broken_osv_records_are_refused(record: dict, message: str) -> None:
    with pytest.raises(ScanFormatError, match=message):
        parse_osv_record(record, "adv.json")


@pytest.mark.parametrize(("text", "fmt", "message"), [
    ("{not json", "pip-audit", "r.json: not valid JSON"),
    ('{"deps": []}', "pip-audit", "pip-audit JSON has no 'dependencies' key"),
    ('{"dependencies": [{"version": "1"}]}', "pip-audit", r"dependencies\[0\] has no 'name'"),
    ('{"dependencies": [{"name": "x", "vulns": [{"fix_versions": []}]}]}', "pip-audit",
     r"dependencies\[0\] \(x\).vulns\[0\] has no 'id'"),
    ('{"dependencies": [{"name": "x", "vulns": [{"id": "A", "severity": "urgent"}]}]}', "pip-audit",
     "severity 'urgent' is neither a label"),
    ('{"version": "2.1.0"}', "sarif", "SARIF has no 'runs' list"),
    ('{"version": "1.0", "runs": []}', "sarif", "SARIF version '1.0' is not 2.1.0"),
    ('{"version": "2.1.0", "runs": [{"results": [{"properties": {"security-severity": "high"}}]}]}', "sarif",
     "security-severity 'high' is not a number"),
    ('{"version": "2.1.0", "runs": [{"results": [{"level": "fatal"}]}]}', "sarif", "level 'fatal' is not one of"),
    ('{"version": "2.1.0", "runs": [{"artifacts": [{"hashes": {}}]}]}', "sarif", "has no location.uri"),
    ('{"results": {}}', "osv", "OSV-Scanner JSON has no 'results' list"),
    ("[]", "trivy", "unknown scan format 'trivy'"),
])
def test_scan_report_errors_are_clear(text: str, fmt: str, message: str) -> None:
    with pytest.raises(ScanFormatError, match=message):
        parse_scan_report(text, fmt, "r.json")
