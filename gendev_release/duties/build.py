"""Phase 3, build and package management: the build and the dependency validation.

``build`` (cicd-builder) reads the build configuration (it must parse and name the service), runs
the build command after removing whatever an earlier attempt left matching the artifact globs
(exit 0 is the seed's "build success 100 %"), and judges what it produced against sources it did
not write: each artifact's sha256 re-read from disk and compared with what the build's manifest
claims, the version read from inside the artifacts (a ``VERSION`` file, ``PKG-INFO``/``METADATA``,
``package.json``, ``manifest.json``) compared with the run's version, and a git tag for the version,
when one exists, pointing at the commit being released. Right after the command, everything in
``{artifacts_dir}`` is scanned for plaintext secrets; an artifact holding one is removed.

``dependencies`` (dependency-manager) obtains the vulnerability scan (:mod:`gendev_release.vuln_scan`):
the spec's scanner run in this release (``dependencies.scan``; its output removed first, so only this
run's scan is read), or a provided report (``dependencies.scan_report``) that is not older than the
lock file. It then checks the lock file (every requirement pinned, hashed once any is) and that the
scan covers every locked package at its locked version, and that no finding is at or above the
severity gate beyond ``quality_gates.max_critical_vulns``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import yaml
from packaging.version import InvalidVersion, Version

from gendev_release.commands import CommandResult, run_command
from gendev_release.doc_checks import names_service
from gendev_release.duties.base import duty
from gendev_release.duties.common import command_values, record_input_file, substitute_command
from gendev_release.formats import ScanFormatError, ScanReport, normalize_name, parse_scan_report
from gendev_release.paths import PathEscape, glob_inside
from gendev_release.report import Deliverable, Evidence, ReportBuilder, sha256_file
from gendev_release.secrets import OutputScan, remove_output, scan_output
from gendev_release.spec_rules import VERSION_RE, resolve_output
from gendev_release.verification_matrix import ItemProof
from gendev_release.vuln_scan import Coverage, Freshness, LockEntry, coverage, freshness, lock_problems, parse_lock_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: a TOML build config is digested but not parsed
    tomllib = None

if TYPE_CHECKING:
    from gendev_release.context import DutyContext

_TESTS = "tests/duties/test_build.py"
PROOFS: dict[str, ItemProof] = {
    "build.read": ItemProof(
        evidence="build.config's sha256 and size; the file parsed by its suffix (TOML, JSON, YAML); whether it names "
                 "the service",
        oracle="the spec (build.config, service) and the format's own grammar (tomllib, json, yaml)",
        fails_when="build.config is missing, empty, not valid TOML/JSON/YAML, or configures another service",
        test=f"{_TESTS}::test_build_read_fails_on_invalid_toml"),
    "build.verify": ItemProof(
        evidence="the build command's argv, exit code, duration and output tails, run after removing what an earlier "
                 "attempt left matching the artifact globs",
        oracle="the build tool's own exit code in this run",
        fails_when="the build command exits non-zero or times out",
        test=f"{_TESTS}::test_build_verify_fails_when_the_command_exits_1"),
    "build.check": ItemProof(
        evidence="every artifact's sha256 read from disk; the version read from inside each artifact (VERSION, "
                 "PKG-INFO/METADATA, package.json, manifest.json); the build manifest's claimed digests; git HEAD "
                 "and the version's tag; the secret scan of every output",
        oracle="the run's version (Airflow params), the files on disk re-read against the build manifest's claims, "
               "the git repository's tag for the version",
        fails_when="an artifact glob matches nothing, an artifact carries another version inside, the manifest's "
                   "digest differs from the file, the version's tag points at another commit, or an artifact holds "
                   "a plaintext secret",
        test=f"{_TESTS}::test_build_check_fails_when_the_artifact_carries_another_version"),
    "dependencies.read": ItemProof(
        evidence="the scanner's argv, exit code and output file (sha256), removed before it ran; or the provided "
                 "report's sha256 with the commit times (or mtimes) of it and the lock file; the report parsed",
        oracle="the scanner's output in this run (pip-audit JSON, SARIF 2.1.0 or OSV-Scanner JSON grammar); for a "
               "provided report, the git history (or file times) of the lock file",
        fails_when="the scanner fails or writes nothing, its output is malformed, or a provided report is older "
                   "than the lock file",
        test="tests/duties/test_build.py::test_dependencies_read_fails_on_a_scan_older_than_the_lock_file"),
    "dependencies.verify": ItemProof(
        evidence="the lock file's entries (pins, hashes) with its sha256, and the scan's audited package set compared "
                 "with it entry by entry",
        oracle="the lock file (name==version pins) against the scanner's own list of audited packages, or for SARIF "
               "the lock file's digest among the artifacts it analysed",
        fails_when="a requirement is unpinned or unhashed, or the scan misses a locked package, audited another "
                   "version, or is empty ({\"dependencies\": []})",
        test="tests/duties/test_build.py::test_dependencies_verify_fails_when_the_scan_misses_a_locked_package"),
    "dependencies.check": ItemProof(
        evidence="every finding with its severity (CVSS v3 base score, label or SARIF level) and the count at or "
                 "above dependencies.severity_gate",
        oracle="the advisories the scanner matched against the locked versions (OSV ranges compared as PEP 440 "
               "versions), judged against quality_gates.max_critical_vulns",
        fails_when="a critical advisory matches a locked version (httpx==0.22.0 against GHSA-h8pj-cxx2-jfg2)",
        test="tests/duties/test_build.py::test_dependencies_check_fails_on_a_critical_advisory_for_a_locked_version"),
}


# ============================================================================================ build
def _strings_in(data: Any) -> list[str]:
    if isinstance(data, str):
        return [data]
    if isinstance(data, dict):
        return [s for value in data.values() for s in _strings_in(value)]
    if isinstance(data, list):
        return [s for value in data for s in _strings_in(value)]
    return []


def config_problem(path: Path, service: str) -> tuple[str | None, dict[str, Any]]:
    """Why the build configuration at ``path`` cannot be the service's (None when it can).

    A ``.toml``, ``.json``, ``.yaml``/``.yml`` file must parse and hold the service's name as a value (a package or
    project name: ``name = "demo"``; a comment does not count); any other file (a Makefile) must name it in its text.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return f"build.config {path} is not UTF-8 text: {exc}", {}
    parser = {".toml": "TOML", ".json": "JSON", ".yaml": "YAML", ".yml": "YAML"}.get(path.suffix.lower())
    data: Any = None
    try:
        if parser == "TOML" and tomllib is not None:
            data = tomllib.loads(text)
        elif parser == "JSON":
            data = json.loads(text)
        elif parser == "YAML":
            data = yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        return f"build.config {path} is not valid {parser}: {exc}", {"format": parser}
    if parser is None or data is None:
        named = names_service(text, service)
    else:
        named = any(normalize_name(value) == normalize_name(service) for value in _strings_in(data))
    data = {"format": parser or "text", "names_service": named}
    if not named:
        return (f"build.config {path.name} does not name the service {service!r}: it configures another build; "
                "point build.config at this service's configuration"), data
    return None, data


def _read_build_config(ctx: DutyContext, report: ReportBuilder) -> None:
    spec = ctx.spec
    config = spec.input_path("build.config", spec.build.config)
    problem = record_input_file(report, "read", config, "build.config")
    if problem is None:
        problem, data = config_problem(config, spec.service)
        report.evidence("read", Evidence(kind="computed", source=str(config),
                                         summary=f"{data.get('format', '?')} parsed: {problem is None}", data=data))
    report.verdict("read", problem is None, problem or f"build configuration {config.name} read: "
                                                       f"parses and names {spec.service}")


def _stale_outputs(ctx: DutyContext) -> list[Path]:
    """Files matching the artifact globs before the build ran (an earlier attempt's), except the backup."""
    keep: set[Path] = set()
    backup = ctx.spec.risk.backup.output
    if backup is not None:
        try:
            keep.add(resolve_output(backup, workdir=ctx.paths.workdir, artifacts_dir=ctx.paths.artifacts_dir,
                                    field="risk.backup.output"))
        except PathEscape:
            pass
    found: list[Path] = []
    for pattern in ctx.spec.build.artifacts:
        for path in glob_inside(ctx.paths.artifacts_dir, pattern, "build.artifacts"):
            if path not in found and path.resolve() not in keep:
                found.append(path)
    return found


def _run_build(ctx: DutyContext, report: ReportBuilder) -> bool:
    argv, problem = substitute_command(list(ctx.spec.build.command), command_values(ctx))
    if argv is None:
        report.fail("verify", f"build.command: {problem}")
        return False
    ctx.paths.artifacts_dir.mkdir(parents=True, exist_ok=True)
    stale = _stale_outputs(ctx)
    for path in stale:
        path.unlink()
    if stale:
        report.evidence("verify", Evidence(kind="computed", source=str(ctx.paths.artifacts_dir),
                                           summary=f"removed {len(stale)} earlier output(s) before building",
                                           data={"removed": [str(p) for p in stale]}))
    result = run_command(argv, cwd=ctx.spec.spec_dir)
    report.evidence("verify", result.evidence())
    tail = (result.stderr.strip().splitlines() or [""])[-1]
    report.verdict("verify", result.ok, f"build command exited 0 in {result.seconds:.1f} s" if result.ok else
                   f"build command exited {result.exit_code}" + (" (timed out)" if result.timed_out else "")
                   + (f": {tail}" if tail else ""))
    return result.ok


# ------------------------------------------------------------------------------- build: artifacts
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


#: Members that state a package's version, and how to read it.
_VERSION_MEMBERS = ("VERSION", "PKG-INFO", "METADATA", "package.json", "manifest.json")
_MEMBER_LIMIT = 1 << 20


def _version_in(name: str, payload: bytes) -> str | None:
    text = payload.decode("utf-8", errors="replace")
    base = PurePosixPath(name).name
    if base == "VERSION":
        return text.strip() or None
    if base in ("PKG-INFO", "METADATA"):
        for line in text.splitlines():
            if not line.strip():
                break  # the headers end at the first blank line
            if line.lower().startswith("version:"):
                return line.split(":", 1)[1].strip()
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    version = data.get("version") if isinstance(data, dict) else None
    return version if isinstance(version, str) else None


def versions_inside(path: Path) -> list[tuple[str, str]]:
    """``(member, version)`` for every member of ``path`` that states a version: a tar or zip (wheel) archive's
    ``VERSION``, ``PKG-INFO``, ``*.dist-info/METADATA``, ``package.json``, ``manifest.json``; or the file itself
    when it is one of those."""
    found: list[tuple[str, str]] = []
    if PurePosixPath(path.name).name in _VERSION_MEMBERS:
        version = _version_in(path.name, path.read_bytes()[:_MEMBER_LIMIT])
        return [(path.name, version)] if version else []
    try:
        if tarfile.is_tarfile(path):
            with tarfile.open(path) as archive:
                for member in archive.getmembers():
                    if member.isfile() and PurePosixPath(member.name).name in _VERSION_MEMBERS \
                            and member.size <= _MEMBER_LIMIT:
                        handle = archive.extractfile(member)
                        version = _version_in(member.name, handle.read()) if handle else None
                        if version:
                            found.append((member.name, version))
        elif zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    if PurePosixPath(info.filename).name in _VERSION_MEMBERS and info.file_size <= _MEMBER_LIMIT:
                        version = _version_in(info.filename, archive.read(info))
                        if version:
                            found.append((info.filename, version))
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError):
        return found
    return found


def same_version(found: str, wanted: str) -> bool:
    """Equal as text, or as PEP 440 versions (a wheel's ``2.0.0rc1`` is the run's ``2.0.0-rc.1``)."""
    if found == wanted:
        return True
    try:
        return Version(found) == Version(wanted)
    except InvalidVersion:
        return False


def manifest_problems(manifest: Path, artifacts: list[Path]) -> tuple[list[str], dict[str, Any]]:
    """The build manifest's claims (``archive`` + ``archive_sha256``, ``files[].sha256``) re-checked against the files
    on disk and the archive's members. Claims the manifest does not make are not invented."""
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        return [f"{manifest.name} is not valid JSON: {exc}"], {}
    if not isinstance(data, dict):
        return [f"{manifest.name} is not a JSON object"], {}
    by_name = {p.name: p for p in artifacts}
    problems: list[str] = []
    checked: dict[str, Any] = {"archive": None, "files": 0}
    archive_name, claimed = data.get("archive"), data.get("archive_sha256")
    archive = by_name.get(archive_name) if isinstance(archive_name, str) else None
    if isinstance(archive_name, str) and isinstance(claimed, str):
        if archive is None:
            problems.append(f"{manifest.name} names the archive {archive_name}, which the build did not produce")
        else:
            actual = sha256_file(archive)
            checked["archive"] = {"name": archive_name, "claimed": claimed, "actual": actual}
            if actual != claimed:
                problems.append(f"{manifest.name} claims sha256 {claimed[:16]} for {archive_name}, the file has "
                                f"{actual[:16]}")
    files = data.get("files")
    if archive is not None and isinstance(files, list) and tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            for entry in files:
                if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
                    continue
                names = [n for n in members if n == entry["path"] or n.endswith("/" + entry["path"])]
                handle = tar.extractfile(members[names[0]]) if names else None
                if handle is None:
                    problems.append(f"{manifest.name} lists {entry['path']}, which is not in {archive.name}")
                    continue
                actual = hashlib.sha256(handle.read()).hexdigest()
                checked["files"] += 1
                if entry.get("sha256") != actual:
                    problems.append(f"{manifest.name} claims sha256 {str(entry.get('sha256'))[:16]} for "
                                    f"{entry['path']}, {archive.name} holds {actual[:16]}")
    return problems, checked


@dataclass
class VersionTag:
    """The source being released and the version's tag in the service's repository."""

    repo: str
    head: str | None = None
    tag: str | None = None
    tag_commit: str | None = None
    risk_source_sha: str | None = None
    problem: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.head is None:
            return "no git repository"
        if self.tag is None:
            return "untagged"
        return "tag points at the released commit" if self.tag_commit == self.head else "tag points elsewhere"


def _git(repo: Path, *args: str) -> list[str]:
    return ["git", "-c", "core.quotePath=false", "-C", str(repo), *args]


def version_tag(ctx: DutyContext, report: ReportBuilder) -> VersionTag:
    """HEAD of ``risk.repo`` and the tag ``v<version>`` (or ``<version>``); a tag at another commit is a problem."""
    try:
        repo = ctx.spec.repo_path()
    except (ValueError, OSError) as exc:
        return VersionTag(repo=ctx.spec.risk.repo, notes=[f"risk.repo cannot be used: {exc}"])
    tag = VersionTag(repo=str(repo))
    if not repo.is_dir():
        tag.notes.append(f"risk.repo {repo} is not a folder: no git tag checked")
        return tag
    head = run_command(_git(repo, "rev-parse", "--verify", "HEAD"), cwd=repo)
    if not head.ok:
        tag.notes.append(f"{repo} is not a git repository with commits: no tag checked")
        return tag
    report.evidence("check", head.evidence(f"HEAD {head.stdout.strip()[:12]}"))
    tag.head = head.stdout.strip()
    for name in (f"v{ctx.version}", ctx.version):
        found = run_command(_git(repo, "rev-parse", "--verify", "--quiet", f"refs/tags/{name}^{{commit}}"), cwd=repo)
        if found.ok:
            report.evidence("check", found.evidence(f"tag {name} -> {found.stdout.strip()[:12]}"))
            tag.tag, tag.tag_commit = name, found.stdout.strip()
            break
    if tag.tag is not None and tag.tag_commit != tag.head:
        tag.problem = (f"git tag {tag.tag} points at {str(tag.tag_commit)[:12]}, but the build ran at HEAD "
                       f"{tag.head[:12]} of {repo}: release the tagged commit, or move the tag")
    risk = ctx.earlier("risk_assessment")
    source = risk.facts.get("source_sha") if risk else None
    if isinstance(source, str):
        tag.risk_source_sha = source
        if source != tag.head:
            tag.notes.append(f"the repository moved from {source[:12]} (risk_assessment's change set) to "
                             f"{tag.head[:12]} before the build")
    return tag


def _check_artifacts(ctx: DutyContext, report: ReportBuilder) -> tuple[list[dict[str, Any]], VersionTag]:
    problems = remove_secret_artifacts(report, ctx.paths.artifacts_dir)
    found: list[Path] = []
    for pattern in ctx.spec.build.artifacts:
        matches = glob_inside(ctx.paths.artifacts_dir, pattern, "build.artifacts")
        if not matches:
            problems.append(f"artifact glob {pattern!r} matched no file in {ctx.paths.artifacts_dir}")
        found.extend(m for m in matches if m not in found)
    artifacts: list[dict[str, Any]] = []
    embedded: list[dict[str, str]] = []
    for path in found:
        evidence = report.evidence("check", Evidence.file(path))
        report.deliver(f"artifact {path.name}", path)
        inside = versions_inside(path)
        embedded.extend({"artifact": path.name, "member": member, "version": v} for member, v in inside)
        artifacts.append({"name": path.name, "path": str(path), "sha256": evidence.sha256,
                          "bytes": evidence.data["bytes"], "versions_inside": [v for _, v in inside]})
    if not VERSION_RE.match(ctx.version):
        problems.append(f"version {ctx.version!r} is not semantic versioning (MAJOR.MINOR.PATCH)")
    wrong = [e for e in embedded if not same_version(e["version"], ctx.version)]
    report.evidence("check", Evidence(kind="computed", source="versions inside the artifacts",
                                      summary=f"{len(embedded)} version mark(s), {len(wrong)} naming another version",
                                      data={"version": ctx.version, "embedded": embedded}))
    problems.extend(f"{e['artifact']}: {e['member']} says version {e['version']!r}, expected {ctx.version!r}"
                    for e in wrong)
    if found and not embedded:
        problems.append(f"no artifact carries version {ctx.version} inside (a VERSION file, PKG-INFO or METADATA, "
                        "package.json or manifest.json): a file name alone does not embed it")
    for manifest in (p for p in found if p.name == "manifest.json"):
        claims, checked = manifest_problems(manifest, found)
        report.evidence("check", Evidence(kind="computed", source=f"{manifest} claims vs files",
                                          summary=f"{len(claims)} claim(s) not matching the files", data=checked))
        problems.extend(claims)
    tag = version_tag(ctx, report)
    if tag.problem:
        problems.append(tag.problem)
    report.findings.extend(tag.notes)
    report.facts.update(artifacts=artifacts, version=ctx.version, embedded_versions=embedded,
                        version_tag={"status": tag.status, "tag": tag.tag, "head": tag.head})
    report.metrics["artifacts"] = len(artifacts)
    report.verdict("check", not problems, "; ".join(problems) or
                   f"{len(artifacts)} artifact(s) with sha256, version {ctx.version} inside "
                   f"({', '.join(sorted({e['member'].rsplit('/', 1)[-1] for e in embedded}))}); {tag.status}")
    return artifacts, tag


def _write_json(path: Path, payload: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    return path


def _deliver_build(ctx: DutyContext, report: ReportBuilder, artifacts: list[dict[str, Any]], tag: VersionTag) -> None:
    folder = ctx.paths.workdir / "build"
    base = {"service": ctx.spec.service, "version": ctx.version, "run_id": ctx.run_id}
    report.deliver("Build artifacts", _write_json(folder / "build-artifacts.json", {
        **base, "build_success_pct": report.metrics.get("build_success_pct"), "artifacts": artifacts,
        "check": {"passed": report.passed("check")}}))
    match = VERSION_RE.match(ctx.version)
    core, _, build_meta = ctx.version.partition("+")
    numbers, _, prerelease = core.partition("-")
    report.deliver("Version tagging", _write_json(folder / "version-tag.json", {
        **base, "semver": match is not None,
        "parts": dict(zip(("major", "minor", "patch"), numbers.split("."), strict=False)) | {
            "prerelease": prerelease or None, "build": build_meta or None},
        "embedded": report.facts.get("embedded_versions", []),
        "git": {"repo": tag.repo, "head": tag.head, "tag": tag.tag, "tag_commit": tag.tag_commit,
                "status": tag.status, "risk_source_sha": tag.risk_source_sha, "notes": tag.notes}}))
    store = ctx.store
    index = []
    for artifact in artifacts:
        stored = Deliverable(name=f"artifact {artifact['name']}", path=artifact["path"], sha256=artifact["sha256"])
        index.append({"name": artifact["name"], "sha256": artifact["sha256"], "bytes": artifact["bytes"],
                      "stored_as": store.deliverable_name("build", stored)})
    report.deliver("Artifact repository", _write_json(folder / "artifact-repository.json", {
        **base, "repository": store.location, "artifacts": index}))


@duty("build")
def build(ctx: DutyContext, report: ReportBuilder) -> None:
    _read_build_config(ctx, report)
    ok = _run_build(ctx, report)
    report.metrics["build_success_pct"] = 100.0 if ok else 0.0
    artifacts, tag = _check_artifacts(ctx, report)
    _deliver_build(ctx, report, artifacts, tag)


# ===================================================================================== dependencies
@dataclass
class LockRead:
    path: Path
    sha256: str | None = None
    entries: list[LockEntry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class ObtainedScan:
    """The scan the step judges: run in this release, or provided; parsed when ``report`` is set."""

    origin: str  # "run" or "provided"
    format: str
    path: Path | None = None
    report: ScanReport | None = None
    result: CommandResult | None = None
    fresh: Freshness | None = None
    problem: str | None = None

    def describe_origin(self) -> str:
        if self.origin == "run":
            return "written by dependencies.scan in this run"
        return self.fresh.describe(self.path.name, "the lock file") if self.fresh and self.path else "provided"


def _read_lock(ctx: DutyContext, report: ReportBuilder) -> LockRead:
    deps = ctx.spec.dependencies
    lock = LockRead(ctx.spec.input_path("dependencies.lock_file", deps.lock_file))
    problem = record_input_file(report, "verify", lock.path, "dependencies.lock_file")
    if problem:
        lock.problems.append(problem)
        return lock
    lock.sha256 = sha256_file(lock.path)
    try:
        lock.entries = parse_lock_file(lock.path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        lock.problems.append(f"dependencies.lock_file {lock.path} is not text: {exc}")
        return lock
    lock.problems.extend(lock_problems(lock.entries, lock.path.name))
    return lock


def _parse(scan: ObtainedScan, field_name: str) -> None:
    assert scan.path is not None
    try:
        scan.report = parse_scan_report(scan.path.read_bytes(), scan.format, str(scan.path))
    except ScanFormatError as exc:
        scan.problem = f"{field_name} is not valid {scan.format}: {exc}"


def _run_scan(ctx: DutyContext, report: ReportBuilder, lock: LockRead) -> ObtainedScan:
    config = ctx.spec.dependencies.scan
    assert config is not None
    scan = ObtainedScan("run", config.format)
    try:
        scan.path = resolve_output(config.output, workdir=ctx.paths.workdir, artifacts_dir=ctx.paths.artifacts_dir,
                                   field="dependencies.scan.output")
    except PathEscape as exc:
        scan.problem = str(exc)
        return scan
    if scan.path.is_dir():
        scan.problem = f"dependencies.scan.output {scan.path} is a folder; name the file the scanner writes"
        return scan
    scan.path.parent.mkdir(parents=True, exist_ok=True)
    existed = scan.path.exists()
    scan.path.unlink(missing_ok=True)  # only what the scanner writes now is read
    argv, problem = substitute_command(list(config.command), command_values(ctx))
    if argv is None:
        scan.problem = f"dependencies.scan.command: {problem}"
        return scan
    scan.result = result = run_command(argv, cwd=ctx.spec.spec_dir)
    report.evidence("read", result.evidence(f"scanner exit {result.exit_code}"))
    tail = (result.stderr.strip().splitlines() or [""])[-1]
    if result.timed_out or result.exit_code not in (0, 1):
        scan.problem = (f"dependencies.scan.command exited {result.exit_code}"
                        + (" (timed out)" if result.timed_out else "") + (f": {tail}" if tail else ""))
        return scan
    if not scan.path.is_file():
        scan.problem = (f"dependencies.scan.command exited {result.exit_code} but wrote no {scan.path}: make "
                        "dependencies.scan.output name the file the scanner writes")
        return scan
    report.evidence("read", Evidence.file(scan.path, summary=f"scan report written in this run ({scan.format})",
                                          origin="run", replaced_earlier=existed))
    if lock.sha256 is not None and lock.path.is_file() and sha256_file(lock.path) != lock.sha256:
        scan.problem = f"{lock.path.name} changed while the scanner ran: scan it again"
        return scan
    _parse(scan, "dependencies.scan.output")
    return scan


def _provided_scan(ctx: DutyContext, report: ReportBuilder, lock: LockRead) -> ObtainedScan:
    deps = ctx.spec.dependencies
    assert deps.scan_report is not None
    scan = ObtainedScan("provided", deps.scan_format, ctx.spec.input_path("dependencies.scan_report",
                                                                          deps.scan_report))
    assert scan.path is not None
    problem = record_input_file(report, "read", scan.path, "dependencies.scan_report")
    if problem:
        scan.problem = problem
        return scan
    if not lock.path.is_file():
        scan.problem = f"the age of {scan.path.name} cannot be judged: the lock file {lock.path} is missing"
        return scan
    scan.fresh = freshness(scan.path, lock.path)
    report.evidence("read", Evidence(kind="computed", source=f"{scan.path.name} vs {lock.path.name}",
                                     summary=f"{scan.fresh.rule}: report {scan.fresh.report_time}, lock "
                                             f"{scan.fresh.lock_time}", data=scan.fresh.as_dict()))
    if not scan.fresh.fresh:
        scan.problem = scan.fresh.describe(scan.path.name, lock.path.name)
        return scan
    _parse(scan, f"dependencies.scan_report {scan.path}")
    return scan


def _obtain_scan(ctx: DutyContext, report: ReportBuilder, lock: LockRead) -> ObtainedScan:
    """read: the scan, run now or provided and fresh, parsed in its format."""
    scan = _run_scan(ctx, report, lock) if ctx.spec.dependencies.scan else _provided_scan(ctx, report, lock)
    parsed = scan.report
    if parsed is not None:
        report.evidence("read", Evidence(
            kind="computed", source=str(scan.path), summary=f"{parsed.format}: "
            f"{'no package list' if parsed.packages is None else f'{len(parsed.packages)} package(s)'}, "
            f"{len(parsed.findings)} finding(s)",
            data={"format": parsed.format, "origin": scan.origin, "packages": parsed.packages or {},
                  "lists_packages": parsed.packages is not None, "skipped": parsed.skipped,
                  "findings": [f.as_dict() for f in parsed.findings]}))
    report.verdict("read", scan.problem is None and parsed is not None, scan.problem or
                   f"{scan.format} report {scan.describe_origin()}: {len(parsed.findings) if parsed else 0} "
                   "finding(s)")
    return scan


def _verify_dependencies(report: ReportBuilder, lock: LockRead, scan: ObtainedScan) -> Coverage | None:
    """verify: the lock file pins (and hashes) every requirement, and the scan audited each at its locked version."""
    pinned = sum(1 for e in lock.entries if e.pinned)
    hashed = sum(1 for e in lock.entries if e.hashes)
    report.metrics.update(pinned=pinned, unpinned=len(lock.entries) - pinned, hashed=hashed)
    report.evidence("verify", Evidence(
        kind="computed", source=str(lock.path), summary=f"{pinned} pinned, {len(lock.entries) - pinned} unpinned, "
                                                        f"{hashed} hashed",
        data={"sha256": lock.sha256, "entries": [{"name": e.name, "version": e.version, "hashes": len(e.hashes),
                                                  "line": e.line} for e in lock.entries]}))
    problems = list(lock.problems)
    covered: Coverage | None = None
    if scan.report is None:
        problems.append("no parsed scan report: its coverage of the lock file is unknown")
    elif lock.sha256 is not None:
        covered = coverage(scan.report, lock.entries, lock.path, lock.sha256)
        report.evidence("verify", Evidence(kind="computed", source=f"{scan.path} vs {lock.path.name}",
                                           summary=f"coverage by {covered.by}: {covered.audited} of {covered.locked} "
                                                   "locked package(s) audited", data=covered.as_dict()))
        report.facts["scan_coverage"] = {"missing": covered.missing, "version_mismatch": covered.version_mismatch,
                                         "skipped": covered.skipped, "problem": covered.problem}
        if not covered.complete:
            problems.append(f"the scan does not cover {lock.path.name}: {covered.describe()}")
    report.verdict("verify", not problems, "; ".join(problems) or
                   f"{pinned} requirement(s) pinned" + (", all with sha256 hashes" if hashed else "")
                   + f"; {covered.describe() if covered else ''}")
    return covered


def _check_findings(ctx: DutyContext, report: ReportBuilder, scan: ObtainedScan) -> int | None:
    """check: findings at or above the severity gate within quality_gates.max_critical_vulns."""
    maximum = ctx.spec.quality_gates.max_critical_vulns
    gate = ctx.spec.dependencies.severity_gate
    if scan.report is None:
        report.fail("check", "no parsed scan report: vulnerabilities at or above the gate unknown")
        return None
    blocking = scan.report.at_or_above(gate)
    report.metrics["critical_vulns"] = len(blocking)
    report.metrics["findings"] = len(scan.report.findings)
    report.evidence("check", Evidence(kind="computed", source=f"{scan.path} findings at or above {gate}",
                                      summary=f"{len(blocking)} at or above {gate}, gate max {maximum}",
                                      data={"gate": gate, "max": maximum, "blocking": [f.as_dict() for f in blocking]}))
    for finding in scan.report.findings:
        where = f"{finding.package} {finding.version}" if finding.package else str(scan.path.name if scan.path else "")
        fix = f"; fixed in {', '.join(finding.fix_versions)}" if finding.fix_versions else ""
        report.findings.append(f"{finding.severity.upper()} {finding.id} in {where} ({finding.rated_by}){fix}")
    ids = ", ".join(f"{f.id} ({f.package or 'no package'} {f.version or ''}, {f.severity})".replace(" ,", ",")
                    for f in blocking[:10])
    report.verdict("check", len(blocking) <= maximum,
                   f"{len(blocking)} finding(s) at or above {gate}" + (f": {ids}" if blocking else "")
                   + f"; quality_gates.max_critical_vulns={maximum}")
    return len(blocking)


def _deliver_dependencies(ctx: DutyContext, report: ReportBuilder, lock: LockRead, scan: ObtainedScan,
                          covered: Coverage | None, blocking: int | None) -> None:
    folder = ctx.paths.workdir / "dependencies"
    findings = list(scan.report.findings) if scan.report else []
    packages = (scan.report.packages or {}) if scan.report else {}
    rows = []
    for entry in lock.entries:
        key = normalize_name(entry.name)
        mine = [f.id for f in findings if f.package and normalize_name(f.package) == key]
        rows.append({"name": entry.name, "version": entry.version, "hashes": len(entry.hashes), "line": entry.line,
                     "scanned_version": packages.get(key), "findings": mine})
    report.deliver("Dependency validation", _write_json(folder / "dependency-validation.json", {
        "service": ctx.spec.service, "version": ctx.version, "lock_file": str(lock.path), "lock_sha256": lock.sha256,
        "lock_problems": lock.problems, "packages": rows,
        "coverage": covered.as_dict() if covered else None, "verify_passed": report.passed("verify")}))
    summary = {
        "origin": scan.origin, "format": scan.format, "report": str(scan.path) if scan.path else None,
        "report_sha256": sha256_file(scan.path) if scan.path and scan.path.is_file() else None,
        "command": scan.result.argv if scan.result else None,
        "exit_code": scan.result.exit_code if scan.result else None,
        "freshness": scan.fresh.as_dict() if scan.fresh else ({"rule": "written by the scanner in this run"}
                                                              if scan.origin == "run" and scan.report else None),
        "problem": scan.problem, "lock_file": str(lock.path), "lock_sha256": lock.sha256,
        "coverage": covered.as_dict() if covered else None, "severity_gate": ctx.spec.dependencies.severity_gate,
        "at_or_above_gate": blocking, "max_critical_vulns": ctx.spec.quality_gates.max_critical_vulns,
        "findings": [f.as_dict() for f in findings],
        "passed": {kind: report.passed(kind) for kind in ("read", "verify", "check")}}
    report.facts["security_scan"] = {k: summary[k] for k in (
        "origin", "format", "report", "report_sha256", "freshness", "coverage", "severity_gate", "at_or_above_gate",
        "max_critical_vulns")}
    report.deliver("Security scanning", _write_json(folder / "security-scan.json", summary))
    if scan.path is not None and scan.path.is_file():
        report.deliver("scan report", scan.path)


@duty("dependencies")
def dependencies(ctx: DutyContext, report: ReportBuilder) -> None:
    lock = _read_lock(ctx, report)
    scan = _obtain_scan(ctx, report, lock)
    covered = _verify_dependencies(report, lock, scan)
    blocking = _check_findings(ctx, report, scan)
    pinned = sum(1 for e in lock.entries if e.pinned)
    report.facts.update(pinned=pinned, unpinned=len(lock.entries) - pinned, critical_vulns=blocking)
    _deliver_dependencies(ctx, report, lock, scan, covered, blocking)
