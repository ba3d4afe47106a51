"""Standard formats other tools write, read strictly: XML through defusedxml, Cobertura /
coverage.py XML, Terraform plan JSON (``terraform show -json``), and vulnerability scans: pip-audit
JSON, SARIF 2.1.0, OSV-Scanner JSON and OSV advisory records (with CVSS v3 base scores).

Each parser returns a typed record or raises :class:`FormatError` (a ``ValueError``) whose message
names the file, says what is wrong and how to fix it. The rules that judge a parsed record against
the run (a coverage report older than the run) are separate pure functions, so each rule can be
shown failing on a realistic file. JUnit XML is read by :mod:`gendev_release.junit` through
:func:`parse_xml` too.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import defusedxml
import defusedxml.ElementTree as SafeET

from gendev_release.targets.base import ResourceChange


class FormatError(ValueError):
    """A file is not the format it should be; the message names the file and the fix."""


# ========================================================================================= XML
def parse_xml(data: str | bytes, source: str, what: str) -> ET.Element:
    """Parse XML text through defusedxml: entity declarations and external references are refused, never expanded.

    :param data: the document.
    :param source: where it came from (a path), named in every message.
    :param what: what the document should be (``JUnit XML``), named in every message.
    :raises FormatError: malformed XML, or a document that declares entities (a "billion laughs"
        expansion bomb, an external entity that reads a local file) or references external resources.
    """
    try:
        root: ET.Element = SafeET.fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except defusedxml.EntitiesForbidden as exc:
        raise FormatError(f"{source}: {what} declares the XML entity {exc.name!r}"
                          + (f" (SYSTEM {exc.sysid!r})" if exc.sysid else "")
                          + ": refused without expanding it (entity expansion such as 'billion laughs', or an "
                            "external entity reading local files); report tools never need entities: write the "
                            "file without an inline DTD") from exc
    except defusedxml.ExternalReferenceForbidden as exc:
        raise FormatError(f"{source}: {what} references the external resource {exc.sysid!r}: refused unread") from exc
    except defusedxml.DefusedXmlException as exc:
        raise FormatError(f"{source}: {what} uses a forbidden XML construct: {exc}") from exc
    except ET.ParseError as exc:
        raise FormatError(f"{source}: malformed {what}: {exc}") from exc
    return root


# ============================================================================= coverage XML
#: How far a coverage timestamp may lie ahead of this machine's clock (another machine's clock skew).
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class CoverageReport:
    """A Cobertura / coverage.py ``coverage xml`` report, as its root and class list say."""

    source: str
    line_pct: float
    branch_pct: float | None
    packages: int
    classes: int
    timestamp: datetime
    generator_version: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["timestamp"] = self.timestamp.isoformat()
        data["line_pct"] = round(self.line_pct, 3)
        data["branch_pct"] = None if self.branch_pct is None else round(self.branch_pct, 3)
        return data

    def line(self) -> str:
        """``line coverage 93.1 %, branch 80.0 %, 12 classes in 3 packages``."""
        branch = "" if self.branch_pct is None else f", branch {self.branch_pct:.1f} %"
        return (f"line coverage {self.line_pct:.1f} %{branch}, {self.classes} class(es) in "
                f"{self.packages} package(s)")


def _rate(root: ET.Element, name: str, source: str) -> float:
    raw = root.get(name)
    if raw is None:
        raise FormatError(f"{source}: <coverage> has no {name} attribute: not Cobertura/coverage.py XML")
    try:
        rate = float(raw)
    except ValueError:
        raise FormatError(f"{source}: {name} {raw!r} is not a number") from None
    if not (math.isfinite(rate) and 0.0 <= rate <= 1.0):
        raise FormatError(f"{source}: {name} {raw} is outside 0..1 (a rate, not a percentage)")
    return rate


def coverage_timestamp(raw: str | None, source: str) -> datetime:
    """The report's ``timestamp``: milliseconds since the epoch (coverage.py, Cobertura) or seconds (gcovr)."""
    if raw is None or not raw.strip():
        raise FormatError(f"{source}: <coverage> has no timestamp: nothing shows the report comes from this run; "
                          "let the coverage tool write it (coverage.py and Cobertura always do)")
    try:
        value = float(raw)
    except ValueError:
        raise FormatError(f"{source}: timestamp {raw!r} is not a number of (milli)seconds since the epoch") from None
    if not math.isfinite(value) or value <= 0:
        raise FormatError(f"{source}: timestamp {raw!r} is not a time")
    seconds = value / 1000.0 if value >= 1e11 else value  # 1e11 s is the year 5138; 1e11 ms is 1973
    try:
        return datetime.fromtimestamp(seconds, timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise FormatError(f"{source}: timestamp {raw!r} is out of range") from None


def parse_coverage_text(text: str | bytes, source: str = "<coverage>") -> CoverageReport:
    """Parse Cobertura or coverage.py XML (``<coverage line-rate=".." timestamp=".."><packages>...``).

    :raises FormatError: not coverage XML, a rate outside 0..1, no timestamp, or no class measured.
    """
    root = parse_xml(text, source, "coverage XML")
    if root.tag != "coverage":
        raise FormatError(f"{source}: not Cobertura/coverage.py XML: root element is <{root.tag}>, expected "
                          "<coverage> (write it with `coverage xml` or a Cobertura reporter)")
    line_rate = _rate(root, "line-rate", source)
    branch_pct: float | None = None
    if root.get("branch-rate") is not None and root.get("branches-valid", "").strip() not in ("0", "0.0"):
        branch_pct = 100.0 * _rate(root, "branch-rate", source)  # coverage.py without --branch writes 0 of 0
    packages = root.findall("./packages/package")
    classes = root.findall("./packages/package/classes/class")
    if not classes:
        raise FormatError(f"{source}: the report names {len(packages)} package(s) and no class: it measured "
                          "nothing, so its rate proves nothing; check the coverage run's source/include settings")
    return CoverageReport(source=source, line_pct=100.0 * line_rate, branch_pct=branch_pct, packages=len(packages),
                          classes=len(classes), timestamp=coverage_timestamp(root.get("timestamp"), source),
                          generator_version=root.get("version"))


def parse_coverage_xml(path: str | Path) -> CoverageReport:
    """Parse a Cobertura / coverage.py XML file (``FileNotFoundError`` when absent)."""
    path = Path(path)
    return parse_coverage_text(path.read_bytes(), str(path))


def stale_coverage_problem(report: CoverageReport, not_before: datetime, now: datetime) -> str | None:
    """None when the report was written between ``not_before`` (this run's start) and ``now`` (+ clock skew).

    ``not_before`` is taken to the whole second: a timestamp may be written in seconds (gcovr).
    """
    if report.timestamp < not_before.replace(microsecond=0):
        return (f"coverage report {report.source} was written at {report.timestamp.isoformat()}, before this run "
                f"started ({not_before.isoformat()}): it measures an earlier build; let a QA suite write it")
    if report.timestamp > now + CLOCK_SKEW:
        return (f"coverage report {report.source} claims to be written at {report.timestamp.isoformat()}, later "
                f"than now ({now.isoformat()}): its timestamp cannot be trusted")
    return None


# ======================================================================= Terraform plan JSON
class PlanFormatError(FormatError):
    """A plan is not Terraform plan JSON (``terraform show -json <planfile>``)."""


#: Terraform's action lists (``resource_changes[].change.actions``) and what each means.
TERRAFORM_ACTIONS: dict[tuple[str, ...], str] = {
    ("no-op",): "no-op",
    ("create",): "create",
    ("read",): "read",
    ("update",): "update",
    ("delete",): "delete",
    ("delete", "create"): "replace (delete, then create)",
    ("create", "delete"): "replace (create, then delete)",
    ("forget",): "forget (removed from the state, the object is kept)",
}
#: Plan format majors read here: Terraform promises a new major for any incompatible change
#: (0.x up to Terraform 1.0, 1.x since), and asks readers to refuse a major they do not know.
SUPPORTED_PLAN_MAJORS = (0, 1)
_FORMAT_VERSION = re.compile(r"^(\d+)\.(\d+)$")
_VOCABULARY = ", ".join(str(list(actions)) for actions in TERRAFORM_ACTIONS)


@dataclass(frozen=True)
class TerraformPlan:
    format_version: str
    terraform_version: str | None
    changes: tuple[ResourceChange, ...]


def _plan_format_version(data: dict[str, Any], source: str) -> str:
    version = data.get("format_version")
    if not isinstance(version, str):
        raise PlanFormatError(f"{source}: no format_version: not `terraform show -json` output")
    match = _FORMAT_VERSION.match(version)
    if match is None:
        raise PlanFormatError(f"{source}: format_version {version!r} is not MAJOR.MINOR")
    if int(match.group(1)) not in SUPPORTED_PLAN_MAJORS:
        raise PlanFormatError(f"{source}: format_version {version} is not supported (majors "
                              f"{', '.join(map(str, SUPPORTED_PLAN_MAJORS))}): a new major changes the format "
                              "incompatibly; use a Terraform whose `show -json` writes 1.x")
    return version


def _resource_change(index: int, entry: Any, source: str) -> ResourceChange:
    where = f"{source}: resource_changes[{index}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("address"), str) or not entry["address"]:
        raise PlanFormatError(f"{where} has no 'address'")
    address = entry["address"]
    change = entry.get("change")
    actions = change.get("actions") if isinstance(change, dict) else None
    if not isinstance(change, dict) or not isinstance(actions, list) or not actions \
            or not all(isinstance(a, str) for a in actions):
        raise PlanFormatError(f"{where} ({address}) has no change.actions list")
    if tuple(actions) not in TERRAFORM_ACTIONS:
        raise PlanFormatError(f"{where} ({address}) has actions {actions}, which is not Terraform's vocabulary "
                              f"({_VOCABULARY})")
    before, after = change.get("before"), change.get("after")
    return ResourceChange(address, tuple(actions), before if isinstance(before, dict) else None,
                          after if isinstance(after, dict) else None)


def parse_terraform_plan(data: Any, source: str = "plan") -> TerraformPlan:
    """Read Terraform plan JSON (``terraform show -json <planfile>``), or a manifest in its shape.

    A plan without changes may leave ``resource_changes`` out (Terraform omits an empty list); it
    still has ``planned_values``. A state file (``terraform show -json`` without a plan) is refused.

    :raises PlanFormatError: naming ``source``, the entry and what to fix.
    """
    if not isinstance(data, dict):
        raise PlanFormatError(f"{source}: a Terraform plan is a JSON object, got {type(data).__name__}")
    version = _plan_format_version(data, source)
    if "resource_changes" not in data:
        if "planned_values" in data:
            entries: list[Any] = []
        elif "values" in data:
            raise PlanFormatError(f"{source}: this is Terraform state, not a plan: run `terraform plan -out=tfplan` "
                                  "then `terraform show -json tfplan`")
        else:
            raise PlanFormatError(f"{source}: no 'resource_changes' list and no planned_values: not a Terraform plan")
    elif not isinstance(data["resource_changes"], list):
        raise PlanFormatError(f"{source}: no 'resource_changes' list")
    else:
        entries = data["resource_changes"]
    terraform_version = data.get("terraform_version")
    return TerraformPlan(format_version=version,
                         terraform_version=terraform_version if isinstance(terraform_version, str) else None,
                         changes=tuple(_resource_change(i, entry, source) for i, entry in enumerate(entries)))


# ================================================================= vulnerability scan reports
class ScanFormatError(FormatError):
    """A scan report or advisory is not in the format it should be (pip-audit JSON, SARIF 2.1.0, OSV)."""


#: Severity levels, lowest first; ``unknown`` (no severity given) is judged as ``critical``.
SEVERITY_LEVELS: tuple[str, ...] = ("none", "low", "medium", "high", "critical")
_LABELS = {"NONE": "none", "LOW": "low", "MODERATE": "medium", "MEDIUM": "medium", "HIGH": "high",
           "CRITICAL": "critical"}


def severity_of_score(score: float) -> str:
    """CVSS qualitative rating: 9.0-10 critical, 7.0-8.9 high, 4.0-6.9 medium, 0.1-3.9 low, 0 none."""
    if not math.isfinite(score) or not 0.0 <= score <= 10.0:
        raise ScanFormatError(f"severity score {score} is outside 0..10")
    for floor, level in ((9.0, "critical"), (7.0, "high"), (4.0, "medium"), (0.1, "low")):
        if score >= floor:
            return level
    return "none"


def severity_of_label(label: str) -> str | None:
    """``CRITICAL``/``HIGH``/``MODERATE``/``MEDIUM``/``LOW`` (any case) as a level; None for anything else."""
    return _LABELS.get(label.strip().upper())


_CVSS3_WEIGHTS: dict[str, dict[str, float]] = {
    "AV": {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2}, "AC": {"L": 0.77, "H": 0.44},
    "UI": {"N": 0.85, "R": 0.62}, "C": {"H": 0.56, "L": 0.22, "N": 0.0},
    "I": {"H": 0.56, "L": 0.22, "N": 0.0}, "A": {"H": 0.56, "L": 0.22, "N": 0.0},
}


def _roundup(value: float) -> float:
    """CVSS v3.1 Roundup: the smallest number with one decimal that is at least ``value``."""
    scaled = round(value * 100000)
    return scaled / 100000.0 if scaled % 10000 == 0 else (math.floor(scaled / 10000) + 1) / 10.0


def cvss3_base_score(vector: str) -> float:
    """The base score of a CVSS v3.0/v3.1 vector (``CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H`` is 9.8).

    :raises ScanFormatError: not a v3 vector, or a base metric missing or out of its vocabulary.
    """
    parts = vector.strip().split("/")
    if not parts or parts[0] not in ("CVSS:3.0", "CVSS:3.1"):
        raise ScanFormatError(f"{vector!r} is not a CVSS v3 vector (CVSS:3.1/AV:.../...)")
    metrics: dict[str, str] = {}
    for part in parts[1:]:
        key, _, value = part.partition(":")
        if not value or key in metrics:
            raise ScanFormatError(f"CVSS vector {vector!r}: {part!r} is not METRIC:VALUE once")
        metrics[key] = value
    scope = metrics.get("S")
    privileges = {"N": 0.85, "L": 0.68 if scope == "C" else 0.62, "H": 0.5 if scope == "C" else 0.27}
    tables = {"S": {"U": 0.0, "C": 0.0}, "PR": privileges, **_CVSS3_WEIGHTS}
    for name, table in tables.items():
        if metrics.get(name) not in table:
            raise ScanFormatError(f"CVSS vector {vector!r}: base metric {name} missing or not in its vocabulary")
    w = {name: table[metrics[name]] for name, table in _CVSS3_WEIGHTS.items()}
    pr = privileges[metrics["PR"]]
    iss = 1 - (1 - w["C"]) * (1 - w["I"]) * (1 - w["A"])
    impact = 6.42 * iss if scope == "U" else 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15
    exploitability = 8.22 * w["AV"] * w["AC"] * pr * w["UI"]
    if impact <= 0:
        return 0.0
    total = impact + exploitability if scope == "U" else 1.08 * (impact + exploitability)
    return _roundup(min(total, 10.0))


@dataclass(frozen=True)
class Finding:
    """One vulnerability a scanner reported.

    :param severity: a :data:`SEVERITY_LEVELS` value, or ``unknown`` when the report gives none.
    :param rated_by: where the severity came from (a CVSS vector, a label, a SARIF level).
    """

    id: str
    package: str | None
    version: str | None
    severity: str
    score: float | None = None
    rated_by: str = ""
    fix_versions: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    description: str = ""

    def at_or_above(self, gate: str) -> bool:
        """At or above ``gate`` (a severity level); an unknown severity is never assumed below it."""
        if self.severity == "unknown":
            return True
        return SEVERITY_LEVELS.index(self.severity) >= SEVERITY_LEVELS.index(gate)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "package": self.package, "version": self.version, "severity": self.severity,
                "score": self.score, "rated_by": self.rated_by, "fix_versions": list(self.fix_versions),
                "aliases": list(self.aliases), "description": self.description[:200]}


@dataclass(frozen=True)
class ScannedArtifact:
    """A file a SARIF run says it analysed (``runs[].artifacts[]``), with its sha-256 when given."""

    uri: str
    sha256: str | None


@dataclass(frozen=True)
class ScanReport:
    """A scanner's report.

    :param packages: normalized name -> version of every package the report says it audited; None
        when the format lists findings only (SARIF).
    :param skipped: packages the scanner listed but did not audit, with its reason.
    :param artifacts: the files a SARIF run analysed (coverage by the lock file's digest).
    """

    format: str
    source: str
    packages: dict[str, str | None] | None
    findings: tuple[Finding, ...]
    skipped: dict[str, str] = field(default_factory=dict)
    artifacts: tuple[ScannedArtifact, ...] = ()

    def at_or_above(self, gate: str) -> list[Finding]:
        return [f for f in self.findings if f.at_or_above(gate)]


def normalize_name(name: str) -> str:
    """PEP 503 normalized project name (``Typing_Extensions`` -> ``typing-extensions``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ScanFormatError(f"{where} is not a list of strings")
    return tuple(value)


def _pip_audit_severity(value: Any, where: str) -> tuple[str, float | None, str]:
    """pip-audit itself writes no severity; a ``severity`` label or score (as some wrappers add) is read."""
    if value is None:
        return "unknown", None, "no severity given"
    if isinstance(value, bool):
        raise ScanFormatError(f"{where}.severity {value!r} is neither a label nor a score")
    if isinstance(value, (int, float)):
        return severity_of_score(float(value)), float(value), f"score {value:g}"
    if isinstance(value, str):
        level = severity_of_label(value)
        if level is not None:
            return level, None, f"label {value}"
        try:
            score = float(value)
        except ValueError:
            raise ScanFormatError(f"{where}.severity {value!r} is neither a label (CRITICAL, HIGH, MODERATE, "
                                  "LOW) nor a score") from None
        return severity_of_score(score), score, f"score {score:g}"
    raise ScanFormatError(f"{where}.severity {value!r} is neither a label nor a score")


def parse_pip_audit(data: Any, source: str = "pip-audit report") -> ScanReport:
    """pip-audit JSON (``pip-audit -f json``): ``{"dependencies": [{name, version, vulns}], "fixes": []}``
    or the older top-level list. An entry with ``skip_reason`` was not audited and does not count as covered.
    """
    if isinstance(data, dict):
        if "dependencies" not in data:
            raise ScanFormatError(f"{source}: pip-audit JSON has no 'dependencies' key")
        dependencies = data["dependencies"]
    else:
        dependencies = data
    if not isinstance(dependencies, list):
        raise ScanFormatError(f"{source}: pip-audit 'dependencies' is a {type(dependencies).__name__}, "
                              "expected a list")
    packages: dict[str, str | None] = {}
    skipped: dict[str, str] = {}
    findings: list[Finding] = []
    for index, dep in enumerate(dependencies):
        where = f"{source}: dependencies[{index}]"
        if not isinstance(dep, dict) or not isinstance(dep.get("name"), str) or not dep["name"]:
            raise ScanFormatError(f"{where} has no 'name'")
        name, version = dep["name"], dep.get("version")
        if version is not None and not isinstance(version, str):
            raise ScanFormatError(f"{where} ({name}).version is not text")
        if "skip_reason" in dep:
            skipped[normalize_name(name)] = str(dep["skip_reason"])
            continue
        vulns = dep.get("vulns", [])
        if not isinstance(vulns, list):
            raise ScanFormatError(f"{where} ({name}).vulns is not a list")
        packages[normalize_name(name)] = version
        for j, vuln in enumerate(vulns):
            spot = f"{where} ({name}).vulns[{j}]"
            if not isinstance(vuln, dict) or not isinstance(vuln.get("id"), str):
                raise ScanFormatError(f"{spot} has no 'id'")
            level, score, rated_by = _pip_audit_severity(vuln.get("severity"), spot)
            findings.append(Finding(
                id=vuln["id"], package=name, version=version, severity=level, score=score, rated_by=rated_by,
                fix_versions=_strings(vuln.get("fix_versions"), f"{spot}.fix_versions"),
                aliases=_strings(vuln.get("aliases"), f"{spot}.aliases"),
                description=str(vuln.get("description") or "")))
    return ScanReport("pip-audit", source, packages, tuple(findings), skipped)


def _security_severity(*bags: Any) -> float | None:
    for bag in bags:
        if isinstance(bag, dict) and bag.get("security-severity") is not None:
            try:
                value = float(bag["security-severity"])
            except (TypeError, ValueError):
                raise ScanFormatError(f"security-severity {bag['security-severity']!r} is not a number") from None
            if not (math.isfinite(value) and 0.0 <= value <= 10.0):
                raise ScanFormatError(f"security-severity {value} is outside 0..10")
            return value
    return None


#: A SARIF result's ``level`` when no security-severity rates it: ``error`` is not assumed below critical.
_SARIF_LEVELS = {"error": "unknown", "warning": "medium", "note": "low", "none": "none"}


def _sarif_artifacts(run: dict[str, Any], where: str) -> list[ScannedArtifact]:
    artifacts = run.get("artifacts", [])
    if not isinstance(artifacts, list):
        raise ScanFormatError(f"{where}.artifacts is not a list")
    found = []
    for index, artifact in enumerate(artifacts):
        location = artifact.get("location") if isinstance(artifact, dict) else None
        uri = location.get("uri") if isinstance(location, dict) else None
        if not isinstance(uri, str):
            raise ScanFormatError(f"{where}.artifacts[{index}] has no location.uri")
        hashes = artifact.get("hashes") or {}
        digest = hashes.get("sha-256") if isinstance(hashes, dict) else None
        found.append(ScannedArtifact(uri, digest.lower() if isinstance(digest, str) else None))
    return found


def parse_sarif(data: Any, source: str = "SARIF report") -> ScanReport:
    """SARIF 2.1.0: ``runs[].results[]``, rated by ``properties.security-severity`` (the result's, else its
    rule's, found by ``ruleId`` or ``ruleIndex``), else by ``level`` (``error`` counts as unknown, so as
    critical). ``runs[].artifacts[]`` are kept: a run that lists the lock file with its sha-256 shows it
    scanned exactly that file. SARIF names no package set, so ``packages`` is None.
    """
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise ScanFormatError(f"{source}: SARIF has no 'runs' list")
    if str(data.get("version", "")) != "2.1.0":
        raise ScanFormatError(f"{source}: SARIF version {data.get('version')!r} is not 2.1.0")
    findings: list[Finding] = []
    artifacts: list[ScannedArtifact] = []
    for r_index, run in enumerate(data["runs"]):
        where = f"{source}: runs[{r_index}]"
        if not isinstance(run, dict):
            raise ScanFormatError(f"{where} is not an object")
        tool: dict[str, Any] = run["tool"] if isinstance(run.get("tool"), dict) else {}
        driver: dict[str, Any] = tool["driver"] if isinstance(tool.get("driver"), dict) else {}
        rules = driver.get("rules") or []
        if not isinstance(rules, list):
            raise ScanFormatError(f"{where}.tool.driver.rules is not a list")
        by_id = {rule.get("id"): rule for rule in rules if isinstance(rule, dict)}
        artifacts.extend(_sarif_artifacts(run, where))
        results = run.get("results", [])
        if not isinstance(results, list):
            raise ScanFormatError(f"{where}.results is not a list")
        for index, item in enumerate(results):
            if not isinstance(item, dict):
                raise ScanFormatError(f"{where}.results[{index}] is not an object")
            rule_id = item.get("ruleId")
            rule = by_id.get(rule_id)
            if rule is None and isinstance(item.get("ruleIndex"), int) and 0 <= item["ruleIndex"] < len(rules):
                rule = rules[item["ruleIndex"]] if isinstance(rules[item["ruleIndex"]], dict) else None
                rule_id = rule_id or (rule or {}).get("id")
            rule = rule or {}
            configured = rule.get("defaultConfiguration")
            default: dict[str, Any] = configured if isinstance(configured, dict) else {}
            level = item.get("level") or default.get("level") or "warning"
            if level not in _SARIF_LEVELS:
                raise ScanFormatError(f"{where}.results[{index}].level {level!r} is not one of "
                                      f"{', '.join(_SARIF_LEVELS)}")
            try:
                score = _security_severity(item.get("properties"), rule.get("properties"))
            except ScanFormatError as exc:
                raise ScanFormatError(f"{where}.results[{index}]: {exc}") from None
            message = item.get("message")
            findings.append(Finding(
                id=str(rule_id or f"result-{r_index}-{index}"), package=None, version=None,
                severity=severity_of_score(score) if score is not None else _SARIF_LEVELS[level], score=score,
                rated_by="security-severity" if score is not None else f"level {level}",
                description=str(message.get("text", "") if isinstance(message, dict) else message or "")))
    return ScanReport("sarif", source, None, tuple(findings), artifacts=tuple(artifacts))


# ------------------------------------------------------------------------------------------ OSV
#: OSV range types read here; GIT ranges (commit hashes) are kept but never match a released version.
OSV_RANGE_TYPES = ("ECOSYSTEM", "SEMVER", "GIT")
OSV_EVENTS = ("introduced", "fixed", "last_affected", "limit")


@dataclass(frozen=True)
class OsvRange:
    type: str
    events: tuple[tuple[str, str], ...]  # (event kind, version), in the record's order


@dataclass(frozen=True)
class OsvAffected:
    ecosystem: str
    name: str
    ranges: tuple[OsvRange, ...]
    versions: tuple[str, ...]

    def fixed_versions(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v for r in self.ranges for kind, v in r.events if kind == "fixed"))


@dataclass(frozen=True)
class OsvAdvisory:
    """One OSV record (https://ossf.github.io/osv-schema/): what it affects and how severe it is."""

    id: str
    source: str
    summary: str
    aliases: tuple[str, ...]
    affected: tuple[OsvAffected, ...]
    severity: str
    score: float | None
    rated_by: str


def _osv_range(data: Any, where: str) -> OsvRange:
    if not isinstance(data, dict) or data.get("type") not in OSV_RANGE_TYPES:
        raise ScanFormatError(f"{where}.type is not one of {', '.join(OSV_RANGE_TYPES)}")
    events = data.get("events")
    if not isinstance(events, list) or not events:
        raise ScanFormatError(f"{where}.events is not a non-empty list")
    parsed = []
    for index, event in enumerate(events):
        if not isinstance(event, dict) or len(event) != 1:
            raise ScanFormatError(f"{where}.events[{index}] is not one of {{{', '.join(OSV_EVENTS)}: version}}")
        [(kind, version)] = event.items()
        if kind not in OSV_EVENTS or not isinstance(version, str) or not version:
            raise ScanFormatError(f"{where}.events[{index}] is not one of {{{', '.join(OSV_EVENTS)}: version}}")
        parsed.append((kind, version))
    if not any(kind == "introduced" for kind, _ in parsed):
        raise ScanFormatError(f"{where}.events has no 'introduced' event")
    return OsvRange(data["type"], tuple(parsed))


def osv_severity(record: dict[str, Any], where: str) -> tuple[str, float | None, str]:
    """The highest CVSS v3 base score in ``severity[]``; else ``database_specific.severity`` (GHSA's label);
    else ``unknown``. CVSS v2 and v4 vectors are not scored here: the label is used for them.
    """
    scores: list[tuple[float, str]] = []
    entries = record.get("severity") or []
    if not isinstance(entries, list):
        raise ScanFormatError(f"{where}.severity is not a list")
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("type"), str) or \
                not isinstance(entry.get("score"), str):
            raise ScanFormatError(f"{where}.severity[{index}] has no type and score")
        if entry["type"] == "CVSS_V3":
            try:
                scores.append((cvss3_base_score(entry["score"]), entry["score"]))
            except ScanFormatError as exc:
                raise ScanFormatError(f"{where}.severity[{index}]: {exc}") from None
    if scores:
        score, vector = max(scores)
        return severity_of_score(score), score, vector
    specific = record.get("database_specific")
    label = specific.get("severity") if isinstance(specific, dict) else None
    if isinstance(label, str) and severity_of_label(label):
        return severity_of_label(label) or "unknown", None, f"label {label}"
    return "unknown", None, "no severity given"


def parse_osv_record(data: Any, source: str = "OSV record") -> OsvAdvisory:
    """An OSV advisory: ``id``, ``modified``, ``affected[]`` (``package.ecosystem``/``name``, ``ranges``
    with ``introduced``/``fixed``/``last_affected`` events, ``versions``), ``severity[]``.

    :raises ScanFormatError: naming ``source`` and the field that breaks the schema.
    """
    if not isinstance(data, dict):
        raise ScanFormatError(f"{source}: an OSV record is a JSON object, got {type(data).__name__}")
    if not isinstance(data.get("id"), str) or not data["id"]:
        raise ScanFormatError(f"{source}: not an OSV record: no 'id'")
    if not isinstance(data.get("modified"), str):
        raise ScanFormatError(f"{source}: OSV record {data['id']} has no 'modified' time (required by the schema)")
    where = f"{source}: {data['id']}"
    affected = data.get("affected", [])
    if not isinstance(affected, list):
        raise ScanFormatError(f"{where}.affected is not a list")
    parsed = []
    for index, entry in enumerate(affected):
        spot = f"{where}.affected[{index}]"
        package = entry.get("package") if isinstance(entry, dict) else None
        if not isinstance(package, dict) or not isinstance(package.get("ecosystem"), str) or \
                not isinstance(package.get("name"), str):
            raise ScanFormatError(f"{spot}.package has no ecosystem and name")
        ranges = entry.get("ranges", [])
        if not isinstance(ranges, list):
            raise ScanFormatError(f"{spot}.ranges is not a list")
        parsed.append(OsvAffected(package["ecosystem"], package["name"],
                                  tuple(_osv_range(r, f"{spot}.ranges[{i}]") for i, r in enumerate(ranges)),
                                  _strings(entry.get("versions"), f"{spot}.versions")))
    level, score, rated_by = osv_severity(data, where)
    return OsvAdvisory(id=data["id"], source=source, summary=str(data.get("summary") or ""),
                       aliases=_strings(data.get("aliases"), f"{where}.aliases"), affected=tuple(parsed),
                       severity=level, score=score, rated_by=rated_by)


def parse_osv_scanner(data: Any, source: str = "OSV-Scanner report") -> ScanReport:
    """OSV-Scanner JSON (``osv-scanner --format json``): ``results[].packages[]`` with ``package``
    (name, version, ecosystem), ``vulnerabilities`` (OSV records) and ``groups`` (``max_severity``).

    Only the packages listed count as audited: OSV-Scanner lists every package with ``--all-packages``,
    else only the vulnerable ones, and a report without the others does not cover the lock file.
    """
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise ScanFormatError(f"{source}: OSV-Scanner JSON has no 'results' list")
    packages: dict[str, str | None] = {}
    findings: list[Finding] = []
    for r_index, result in enumerate(data["results"]):
        listed = result.get("packages", []) if isinstance(result, dict) else None
        if not isinstance(listed, list):
            raise ScanFormatError(f"{source}: results[{r_index}].packages is not a list")
        for p_index, entry in enumerate(listed):
            where = f"{source}: results[{r_index}].packages[{p_index}]"
            package = entry.get("package") if isinstance(entry, dict) else None
            if not isinstance(package, dict) or not isinstance(package.get("name"), str):
                raise ScanFormatError(f"{where}.package has no name")
            name, version = package["name"], package.get("version")
            packages[normalize_name(name)] = version if isinstance(version, str) else None
            max_severity: dict[str, float] = {}
            for group in entry.get("groups") or []:
                raw = group.get("max_severity") if isinstance(group, dict) else None
                if raw not in (None, ""):
                    try:
                        value = float(raw)
                    except (TypeError, ValueError):
                        raise ScanFormatError(f"{where}.groups: max_severity {raw!r} is not a number") from None
                    for vuln_id in _strings(group.get("ids"), f"{where}.groups.ids"):
                        max_severity[vuln_id] = value
            vulns = entry.get("vulnerabilities") or []
            if not isinstance(vulns, list):
                raise ScanFormatError(f"{where}.vulnerabilities is not a list")
            for v_index, record in enumerate(vulns):
                advisory = parse_osv_record(record, f"{where}.vulnerabilities[{v_index}]")
                level, score, rated_by = advisory.severity, advisory.score, advisory.rated_by
                if advisory.id in max_severity:
                    score = max_severity[advisory.id]
                    level, rated_by = severity_of_score(score), "group max_severity"
                fixes = tuple(v for a in advisory.affected if normalize_name(a.name) == normalize_name(name)
                              for v in a.fixed_versions())
                findings.append(Finding(advisory.id, name, packages[normalize_name(name)], level, score, rated_by,
                                        fixes, advisory.aliases, advisory.summary))
    return ScanReport("osv", source, packages, tuple(findings))


SCAN_PARSERS = {"pip-audit": parse_pip_audit, "sarif": parse_sarif, "osv": parse_osv_scanner}


def parse_scan_report(text: str | bytes, scan_format: str, source: str = "scan report") -> ScanReport:
    """Parse a scanner's report in ``scan_format`` (pip-audit, sarif, osv).

    :raises ScanFormatError: naming ``source``; never another exception for a malformed report.
    """
    if scan_format not in SCAN_PARSERS:
        raise ScanFormatError(f"{source}: unknown scan format {scan_format!r}; use one of {', '.join(SCAN_PARSERS)}")
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ScanFormatError(f"{source}: not valid JSON: {exc}") from None
    try:
        return SCAN_PARSERS[scan_format](data, source)
    except ScanFormatError:
        raise
    except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
        raise ScanFormatError(f"{source}: unexpected {scan_format} structure: {type(exc).__name__}: {exc}") from exc
