"""Phase 3, build and package management: the build and the dependency validation.

``build`` (cicd-builder) reads the build configuration, runs the build command (exit 0 is the
seed's "build success 100 %") and checks that every artifact glob matched, each artifact's
sha256, and that the version is valid semver and embedded (manifest or file name). Right after
the command, everything in ``{artifacts_dir}`` is scanned for plaintext secrets (text files and
the text members of tar/zip archives); an artifact holding one is removed and fails the check.

``dependencies`` (dependency-manager) parses the scanner's report (pip-audit JSON or SARIF
2.1.0), checks that the lock file pins every requirement (and hashes all of them once any has a
hash) and that critical vulnerabilities stay within ``quality_gates.max_critical_vulns``.
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gendev_release.commands import run_command
from gendev_release.duties.base import duty
from gendev_release.duties.common import command_values, record_input_file, substitute_command
from gendev_release.paths import glob_inside
from gendev_release.report import Evidence, ReportBuilder
from gendev_release.secrets import OutputScan, remove_output, scan_output
from gendev_release.spec_rules import VERSION_RE

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: a TOML build config is digested but not parsed
    tomllib = None

if TYPE_CHECKING:
    from gendev_release.context import DutyContext


# ------------------------------------------------------------------------------------------ build
def embedded_version(artifacts_dir: Path, version: str, artifacts: list[Path]) -> tuple[bool, str, dict[str, Any]]:
    """Is ``version`` embedded? ``manifest.json`` naming it wins; otherwise an artifact's file name must contain it.

    A manifest that names another version is a failure even when a file name matches.
    """
    manifest = artifacts_dir / "manifest.json"
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except ValueError as exc:
            return False, f"{manifest} is not valid JSON: {exc}", {}
        named = data.get("version") if isinstance(data, dict) else None
        if named != version:
            return False, f"{manifest} names version {named!r}, expected {version!r}", {"manifest_version": named}
        return True, f"{manifest.name} names version {version}", {"manifest_version": named}
    carrying = [p.name for p in artifacts if version in p.name]
    if carrying:
        return True, f"version {version} in file name(s): {', '.join(carrying)}", {"file_names": carrying}
    return False, f"no manifest.json in {artifacts_dir} and no artifact name contains {version}", {}


def scan_artifacts(artifacts_dir: Path) -> list[OutputScan]:
    """The secret scan of every file under ``artifacts_dir`` (archives member by member)."""
    if not artifacts_dir.is_dir():
        return []
    return [scan_output(path) for path in sorted(p for p in artifacts_dir.rglob("*") if p.is_file())]


def remove_secret_artifacts(report: ReportBuilder, artifacts_dir: Path) -> list[str]:
    """Scan the build's outputs; remove each one holding a plaintext secret. Return the problems (check item)."""
    problems: list[str] = []
    removed: list[dict[str, Any]] = []
    for scan in scan_artifacts(artifacts_dir):
        report.evidence("check", scan.evidence("build artifact"))
        name = scan.path.relative_to(artifacts_dir).as_posix()
        if scan.hits:
            outcome = remove_output(scan.path, f"holds plaintext secret(s) at {scan.describe_hits()}")
            report.evidence("check", outcome.evidence())
            removed.append({"path": outcome.path, "sha256": outcome.sha256, "removed": outcome.removed,
                            "hits": [h.as_dict() for h in scan.hits]})
            state = "it was removed" if outcome.removed else f"it could NOT be removed ({outcome.error})"
            problems.append(f"artifact {name} holds plaintext secret(s) at {scan.describe_hits()}; {state}: keep "
                            "secrets out of the build's inputs and reference them instead (*_CONN_ID, ${VAR})")
        elif scan.error:
            problems.append(f"artifact {name} cannot be scanned for secrets: {scan.error}")
    if removed:
        report.facts["removed_artifacts"] = removed
    return problems


@duty("build")
def build(ctx: DutyContext, report: ReportBuilder) -> None:
    spec = ctx.spec
    # read: the build configuration
    config = spec.input_path("build.config", spec.build.config)
    problem = record_input_file(report, "read", config, "build.config")
    if problem is None and config.suffix == ".toml" and tomllib is not None:
        try:
            tomllib.loads(config.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            problem = f"build.config {config} is not valid TOML: {exc}"
    report.verdict("read", problem is None, problem or f"build configuration {config.name} read")

    # verify: the build command runs and exits 0
    argv, problem = substitute_command(list(spec.build.command), command_values(ctx))
    ok = False
    if argv is None:
        report.fail("verify", f"build.command: {problem}")
    else:
        ctx.paths.artifacts_dir.mkdir(parents=True, exist_ok=True)
        result = run_command(argv, cwd=spec.spec_dir)
        report.evidence("verify", result.evidence())
        ok = result.ok
        tail = (result.stderr.strip().splitlines() or [""])[-1]
        report.verdict("verify", ok, f"build command exited 0 in {result.seconds:.1f} s" if ok else
                       f"build command exited {result.exit_code}" + (" (timed out)" if result.timed_out else "")
                       + (f": {tail}" if tail else ""))
    report.metrics["build_success_pct"] = 100.0 if ok else 0.0

    # check: no secret in any output, artifacts with sha256, semver version embedded
    problems = remove_secret_artifacts(report, ctx.paths.artifacts_dir)
    found: list[Path] = []
    for pattern in spec.build.artifacts:
        matches = glob_inside(ctx.paths.artifacts_dir, pattern, "build.artifacts")
        if not matches:
            problems.append(f"artifact glob {pattern!r} matched no file in {ctx.paths.artifacts_dir}")
        found.extend(m for m in matches if m not in found)
    artifacts = []
    for path in found:
        evidence = report.evidence("check", Evidence.file(path))
        report.deliver(f"artifact {path.name}", path)
        artifacts.append({"name": path.name, "path": str(path), "sha256": evidence.sha256,
                          "bytes": evidence.data["bytes"]})
    if not VERSION_RE.match(ctx.version):
        problems.append(f"version {ctx.version!r} is not semantic versioning (MAJOR.MINOR.PATCH)")
    elif found:
        embedded, detail, data = embedded_version(ctx.paths.artifacts_dir, ctx.version, found)
        report.evidence("check", Evidence(kind="computed", source="version embedding", summary=detail,
                                          data={"version": ctx.version, **data}))
        if not embedded:
            problems.append(detail)
    report.facts.update(artifacts=artifacts, version=ctx.version)
    report.metrics["artifacts"] = len(artifacts)
    report.verdict("check", not problems, "; ".join(problems) or
                   f"{len(artifacts)} artifact(s) with sha256, version {ctx.version} embedded")


# ---------------------------------------------------------------------------------- dependencies
class ScanReportError(ValueError):
    """The scanner's report is not in the format the spec names."""


@dataclass(frozen=True)
class Vulnerability:
    package: str | None
    version: str | None
    id: str
    severity: str | None
    critical: bool
    fix_versions: tuple[str, ...] = ()
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"package": self.package, "version": self.version, "id": self.id, "severity": self.severity,
                "critical": self.critical, "fix_versions": list(self.fix_versions),
                "description": self.description[:200]}


@dataclass
class ScanResult:
    format: str
    packages: dict[str, str | None] = field(default_factory=dict)  # normalized name -> version (pip-audit)
    vulnerabilities: list[Vulnerability] = field(default_factory=list)

    @property
    def critical(self) -> list[Vulnerability]:
        return [v for v in self.vulnerabilities if v.critical]


def normalize_name(name: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _severity_is_critical(severity: Any) -> tuple[str | None, bool]:
    """``(label, critical)`` for a pip-audit severity value; None label when absent."""
    if severity is None:
        return None, True
    if isinstance(severity, bool):
        raise ScanReportError(f"severity {severity!r} is neither a label nor a score")
    if isinstance(severity, (int, float)):
        return f"{severity:g}", float(severity) >= 9.0
    if isinstance(severity, str):
        try:
            score = float(severity)
        except ValueError:
            return severity, severity.strip().upper() == "CRITICAL"
        return severity, score >= 9.0
    if isinstance(severity, list):  # OSV style: [{"type": "CVSS_V3", "score": "..."}] -> unknown label
        labels = [str(s.get("severity") or s.get("score")) for s in severity if isinstance(s, dict)]
        return ",".join(labels) or None, True
    raise ScanReportError(f"severity {severity!r} is neither a label nor a score")


def parse_pip_audit(data: Any) -> ScanResult:
    """Parse pip-audit JSON (``{"dependencies": [...]}`` or the older top-level list).

    Which vulnerabilities count as critical: pip-audit itself reports no severity, so a vuln
    counts as critical unless it carries a ``severity`` saying otherwise: a label (critical only
    when it is ``CRITICAL``) or a CVSS score (critical at 9.0 or more). Conservative on purpose:
    an unknown severity is never assumed harmless.
    """
    if isinstance(data, dict):
        if "dependencies" not in data:
            raise ScanReportError("pip-audit JSON has no 'dependencies' key")
        dependencies = data["dependencies"]
    else:
        dependencies = data
    if not isinstance(dependencies, list):
        raise ScanReportError(f"pip-audit 'dependencies' is a {type(dependencies).__name__}, expected a list")
    result = ScanResult(format="pip-audit")
    for index, dep in enumerate(dependencies):
        if not isinstance(dep, dict) or not isinstance(dep.get("name"), str):
            raise ScanReportError(f"dependencies[{index}] has no 'name'")
        name = dep["name"]
        version = dep.get("version")
        if "skip_reason" in dep:
            continue  # not audited: not counted as covered
        vulns = dep.get("vulns", [])
        if not isinstance(vulns, list):
            raise ScanReportError(f"dependencies[{index}] ({name}).vulns is not a list")
        result.packages[normalize_name(name)] = version
        for j, vuln in enumerate(vulns):
            if not isinstance(vuln, dict) or not isinstance(vuln.get("id"), str):
                raise ScanReportError(f"dependencies[{index}] ({name}).vulns[{j}] has no 'id'")
            label, critical = _severity_is_critical(vuln.get("severity"))
            fixes = vuln.get("fix_versions") or []
            result.vulnerabilities.append(Vulnerability(
                package=name, version=version, id=vuln["id"], severity=label, critical=critical,
                fix_versions=tuple(str(f) for f in fixes) if isinstance(fixes, list) else (),
                description=str(vuln.get("description") or "")))
    return result


def _security_severity(*bags: Any) -> float | None:
    for bag in bags:
        if isinstance(bag, dict) and bag.get("security-severity") is not None:
            try:
                value = float(bag["security-severity"])
            except (TypeError, ValueError) as exc:
                raise ScanReportError(f"security-severity {bag['security-severity']!r} is not a number") from exc
            if not math.isfinite(value):
                raise ScanReportError(f"security-severity {value} is not finite")
            return value
    return None


def parse_sarif(data: Any) -> ScanResult:
    """Parse SARIF 2.1.0: ``runs[].results[]``.

    A result is critical when its ``properties.security-severity`` (or its rule's, found by
    ``ruleId`` or ``ruleIndex``) is 9.0 or more. A result without any security-severity counts
    as critical when its ``level`` is ``error`` (conservative: unknown severity is not assumed low).
    """
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise ScanReportError("SARIF has no 'runs' list")
    if str(data.get("version", "")) != "2.1.0":
        raise ScanReportError(f"SARIF version {data.get('version')!r} is not 2.1.0")
    result = ScanResult(format="sarif")
    for r_index, run in enumerate(data["runs"]):
        if not isinstance(run, dict):
            raise ScanReportError(f"runs[{r_index}] is not an object")
        driver = (run.get("tool") or {}).get("driver") or {}
        rules = driver.get("rules") or [] if isinstance(driver, dict) else []
        by_id = {rule.get("id"): rule for rule in rules if isinstance(rule, dict)}
        results = run.get("results", [])
        if not isinstance(results, list):
            raise ScanReportError(f"runs[{r_index}].results is not a list")
        for index, item in enumerate(results):
            if not isinstance(item, dict):
                raise ScanReportError(f"runs[{r_index}].results[{index}] is not an object")
            rule_id = item.get("ruleId") or (item.get("rule") or {}).get("id")
            rule = by_id.get(rule_id)
            if rule is None and isinstance(item.get("ruleIndex"), int) and 0 <= item["ruleIndex"] < len(rules):
                rule = rules[item["ruleIndex"]]
                rule_id = rule_id or rule.get("id")
            level = item.get("level") or ((rule or {}).get("defaultConfiguration") or {}).get("level") or "warning"
            score = _security_severity(item.get("properties"), (rule or {}).get("properties"))
            critical = score >= 9.0 if score is not None else level == "error"
            message = item.get("message") or {}
            result.vulnerabilities.append(Vulnerability(
                package=None, version=None, id=str(rule_id or f"result-{r_index}-{index}"),
                severity=f"{score:g}" if score is not None else level, critical=critical,
                description=str(message.get("text", "") if isinstance(message, dict) else message)))
    return result


SCAN_PARSERS = {"pip-audit": parse_pip_audit, "sarif": parse_sarif}


def parse_scan_report(text: str, scan_format: str) -> ScanResult:
    """Parse a scanner report; raises :class:`ScanReportError` with a clear message, never anything else."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ScanReportError(f"not valid JSON: {exc}") from exc
    try:
        return SCAN_PARSERS[scan_format](data)
    except ScanReportError:
        raise
    except (AttributeError, TypeError, KeyError, IndexError) as exc:
        raise ScanReportError(f"unexpected {scan_format} structure: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class LockEntry:
    name: str
    version: str | None
    hashes: tuple[str, ...]
    line: int
    text: str

    @property
    def pinned(self) -> bool:
        return self.version is not None


_PIN_RE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?"  # name[extras]
                     r"\s*===?\s*(?P<version>[^\s;,]+)\s*(?:;.*)?$")  # ==version ; markers
_NAME_RE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)")
_HASH_RE = re.compile(r"--hash[=\s]+(sha256:[0-9a-fA-F]{64})")


def parse_lock_file(text: str) -> list[LockEntry]:
    """Parse a requirements-style lock file (``name==version \\`` ``--hash=sha256:...``).

    Comment and option lines (``--index-url``, ``-r``) are skipped; a requirement without ``==``
    (``name>=1``, a URL, ``-e path``) is returned with ``version=None``, i.e. unpinned.
    """
    entries: list[LockEntry] = []
    logical: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not buffer:
            start = number
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        if buffer.strip():
            logical.append((start, buffer.strip()))
        buffer = ""
    if buffer.strip():
        logical.append((start, buffer.strip()))
    for number, line in logical:
        hashes = tuple(_HASH_RE.findall(line))
        requirement = _HASH_RE.sub("", line).strip()
        if requirement.startswith("-e ") or requirement.startswith("--editable"):
            entries.append(LockEntry(requirement, None, hashes, number, line))
            continue
        if requirement.startswith("-"):
            continue  # an option line: --index-url, -r other.txt, --no-binary ...
        match = _PIN_RE.match(requirement)
        if match:
            entries.append(LockEntry(match["name"], match["version"], hashes, number, line))
        else:
            name = _NAME_RE.match(requirement)
            entries.append(LockEntry(name["name"] if name else requirement, None, hashes, number, line))
    return entries


def lock_problems(entries: list[LockEntry], lock_name: str) -> list[str]:
    """Unpinned entries; and when any entry has a hash, entries without one."""
    problems = []
    if not entries:
        return [f"{lock_name} lists no requirements"]
    unpinned = [e for e in entries if not e.pinned]
    if unpinned:
        problems.append(f"{lock_name}: unpinned " +
                        ", ".join(f"line {e.line} {e.text.split()[0]!r}" for e in unpinned) + " (use name==version)")
    if any(e.hashes for e in entries):
        unhashed = [e for e in entries if not e.hashes]
        if unhashed:
            problems.append(f"{lock_name}: hashes are used but missing for " +
                            ", ".join(f"line {e.line} {e.name}" for e in unhashed))
    return problems


@duty("dependencies")
def dependencies(ctx: DutyContext, report: ReportBuilder) -> None:
    spec = ctx.spec
    deps = spec.dependencies
    # read: the scanner's report
    scan_path = spec.input_path("dependencies.scan_report", deps.scan_report)
    scan: ScanResult | None = None
    problem = record_input_file(report, "read", scan_path, "dependencies.scan_report")
    if problem is None:
        try:
            scan = parse_scan_report(scan_path.read_text(encoding="utf-8"), deps.scan_format)
        except (ScanReportError, UnicodeDecodeError) as exc:
            problem = f"dependencies.scan_report {scan_path} is not valid {deps.scan_format}: {exc}"
    if scan is not None:
        report.evidence("read", Evidence(kind="computed", source=str(scan_path),
                                         summary=f"{deps.scan_format}: {len(scan.packages)} package(s), "
                                                 f"{len(scan.vulnerabilities)} finding(s)",
                                         data={"format": scan.format, "packages": scan.packages,
                                               "vulnerabilities": [v.as_dict() for v in scan.vulnerabilities]}))
    report.verdict("read", problem is None, problem or
                   f"{deps.scan_format} report parsed: {len(scan.vulnerabilities) if scan else 0} finding(s)")

    # verify: lock file pinned (and hashed when hashes are used)
    lock_path = spec.input_path("dependencies.lock_file", deps.lock_file)
    entries: list[LockEntry] = []
    problem = record_input_file(report, "verify", lock_path, "dependencies.lock_file")
    problems = [problem] if problem else []
    if problem is None:
        try:
            entries = parse_lock_file(lock_path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            problems.append(f"dependencies.lock_file {lock_path} is not text: {exc}")
        else:
            problems.extend(lock_problems(entries, lock_path.name))
    pinned = sum(1 for e in entries if e.pinned)
    hashed = sum(1 for e in entries if e.hashes)
    report.metrics.update(pinned=pinned, unpinned=len(entries) - pinned, hashed=hashed)
    report.evidence("verify", Evidence(kind="computed", source=str(lock_path),
                                       summary=f"{pinned} pinned, {len(entries) - pinned} unpinned, {hashed} hashed",
                                       data={"entries": [{"name": e.name, "version": e.version,
                                                          "hashes": len(e.hashes), "line": e.line} for e in entries]}))
    report.verdict("verify", not problems, "; ".join(problems) or
                   f"{pinned} requirement(s) pinned" + (", all with sha256 hashes" if hashed else ""))

    # check: critical vulnerabilities within the gate; scan covers the lock file
    maximum = spec.quality_gates.max_critical_vulns
    if scan is None:
        report.fail("check", "no parsed scan report: critical vulnerabilities unknown")
    else:
        critical = scan.critical
        report.metrics["critical_vulns"] = len(critical)
        report.evidence("check", Evidence(kind="computed", source=f"{scan_path.name} critical findings",
                                          summary=f"{len(critical)} critical, gate max {maximum}",
                                          data={"critical": [v.as_dict() for v in critical], "max": maximum}))
        for vuln in scan.vulnerabilities:
            where = f"{vuln.package} {vuln.version}" if vuln.package else scan_path.name
            fix = f"; fixed in {', '.join(vuln.fix_versions)}" if vuln.fix_versions else ""
            report.findings.append(f"{'CRITICAL ' if vuln.critical else ''}{vuln.id} in {where} "
                                   f"(severity {vuln.severity or 'unknown'}){fix}")
        if scan.format == "pip-audit" and entries:
            missing = [e.name for e in entries if e.pinned and normalize_name(e.name) not in scan.packages]
            mismatched = [f"{e.name} {e.version} (scanned {scan.packages[normalize_name(e.name)]})"
                          for e in entries if e.pinned and normalize_name(e.name) in scan.packages
                          and scan.packages[normalize_name(e.name)] not in (None, e.version)]
            for name in missing:
                report.findings.append(f"{name} is in {lock_path.name} but not in the scan report")
            for text in mismatched:
                report.findings.append(f"scan covers another version: {text}")
            report.facts["scan_coverage"] = {"missing": missing, "version_mismatch": mismatched}
        elif scan.format == "sarif":
            report.findings.append("SARIF lists findings, not the scanned package set: lock-file coverage not "
                                   "cross-checked")
        ids = ", ".join(f"{v.id} ({v.package or scan_path.name})" for v in critical[:10])
        report.verdict("check", len(critical) <= maximum,
                       f"{len(critical)} critical vulnerabilit{'y' if len(critical) == 1 else 'ies'}"
                       + (f": {ids}" if critical else "") + f"; quality_gates.max_critical_vulns={maximum}")
    report.facts.update(pinned=pinned, unpinned=len(entries) - pinned,
                        critical_vulns=len(scan.critical) if scan else None)
