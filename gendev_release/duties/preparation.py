"""Phase 1, pre-deployment preparation: deployment readiness and risk assessment.

``readiness`` (deployment-ops-manager) reads the runbook and rollback procedure, checks that every
value of the spec looser than the standard (the seed's gates, the package defaults, the security
and alert baselines) carries a waiver, and looks at the target: its active version and health,
free disk and a free loopback port. It also scrapes the active version's metrics as the anomaly
baseline later steps compare against (``facts["baseline_metrics"]``).

``risk_assessment`` (risk-manager) reads the git change set since the last successful release,
scores it with :data:`RISK_RULES` and verifies the backup (or its recorded waiver). The backup is
scanned for plaintext secrets right after it was written (text files and the text members of
tar/zip archives); one holding a secret is removed and fails the check.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import socket
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from gendev_release import probes
from gendev_release.commands import run_command
from gendev_release.duties.base import duty
from gendev_release.duties.common import command_values, record_input_file, substitute_command
from gendev_release.report import Evidence, ReportBuilder
from gendev_release.secrets import remove_output, scan_output
from gendev_release.spec import QualityGates
from gendev_release.spec_relaxations import NUMERIC_BOUNDS, Relaxation, waived_by
from gendev_release.spec_rules import resolve_output

if TYPE_CHECKING:
    from gendev_release.context import DutyContext


# ------------------------------------------------------------------------------------ readiness
def review_relaxations(gates: QualityGates, relaxations: list[Relaxation]) -> tuple[dict[str, Any], list[str]]:
    """Every value of the spec looser than the standard, with the waiver that covers it.

    The standard: the seed's quality gates, the package defaults for the SLA and the regression
    tolerance, the security baseline and alert rules no looser than the SLA they protect
    (:mod:`gendev_release.spec_relaxations`). The spec refuses an unwaived relaxation at load time;
    this review repeats the judgement on the spec the run actually holds.

    :param gates: the spec's quality gates (their ``waivers``).
    :param relaxations: :meth:`ReleaseSpec.relaxations` of the same spec.
    :return: ``(table, problems)``: the table lists each relaxation with its waiver (or None), the
        waivers that cover nothing and the standard's numeric bounds; problems name every relaxation
        without a waiver.
    """
    rows = []
    problems = []
    for relaxation, waiver in waived_by(relaxations, gates.waivers):
        rows.append({**relaxation.as_dict(), "waiver": ({"reason": waiver.reason, "approved_by": waiver.approved_by}
                                                        if waiver is not None else None)})
        if waiver is None:
            problems.append(f"{relaxation.field}: {relaxation.problem}, and no waiver covers it")
    relaxed = {r.gate for r in relaxations}
    table = {"relaxations": rows, "unused_waivers": [w.gate for w in gates.waivers if w.gate not in relaxed],
             "standard": {b.gate: {"field": b.field, "limit": b.limit, "upper": b.upper, "origin": b.origin}
                          for b in NUMERIC_BOUNDS}}
    return table, problems


def free_loopback_port() -> int:
    """Bind an ephemeral port on 127.0.0.1 and release it; raises ``OSError`` when none is free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


@duty("readiness")
def readiness(ctx: DutyContext, report: ReportBuilder) -> None:
    spec = ctx.spec
    # read: runbook and rollback procedure
    problems = [problem for problem in (
        record_input_file(report, "read", spec.input_path("readiness.runbook", spec.readiness.runbook),
                          "readiness.runbook"),
        record_input_file(report, "read",
                          spec.input_path("readiness.rollback_procedure", spec.readiness.rollback_procedure),
                          "readiness.rollback_procedure"),
    ) if problem]
    report.verdict("read", not problems, "; ".join(problems) or "runbook and rollback procedure read, digests recorded")

    # verify: the spec's gates and baselines against the standard; every relaxation waived
    table, problems = review_relaxations(spec.quality_gates, spec.relaxations())
    rows = table["relaxations"]
    report.evidence("verify", Evidence(kind="computed", source="spec vs the seed's gates and the package defaults",
                                       summary=f"{len(table['standard'])} gates and the security and alert "
                                               f"baselines compared: {len(rows)} relaxation(s)", data=table))
    for row in rows:
        if row["waiver"]:
            report.findings.append(f"{row['field']} relaxed ({row['problem']}): waived by "
                                   f"{row['waiver']['approved_by']}: {row['waiver']['reason']}")
    for gate in table["unused_waivers"]:
        report.findings.append(f"the waiver for {gate} covers nothing: the spec meets the standard there")
    report.facts["waivers"] = [{"gate": r["gate"], "field": r["field"], "problem": r["problem"], **r["waiver"]}
                               for r in rows if r["waiver"]]
    report.verdict("verify", not problems, "; ".join(problems) or
                   (f"every gate meets the standard or is waived ({len(rows)} waived: "
                    f"{', '.join(r['gate'] for r in rows)})" if rows else "every gate meets the standard"))

    # check: target state, health of the active version, resources
    problems = []
    try:
        status = ctx.target.status()
    except Exception as exc:
        status = None
        problems.append(f"target state unreadable: {type(exc).__name__}: {exc}")
    if status is not None:
        active = status.active
        report.evidence("check", Evidence(
            kind="target", source=f"{ctx.target.kind} target {spec.service}",
            summary=f"active version {active.version}" if active else "first deployment: nothing active",
            data={"active": active.as_dict() if active else None,
                  "previous": status.previous.as_dict() if status.previous else None,
                  "router_url": status.router_url}))
        report.facts["active_version"] = active.version if active else None
        report.facts["first_deployment"] = active is None
        if active is not None:
            problems.extend(_check_active(ctx, report))
    problems.extend(_check_resources(ctx, report))
    report.verdict("check", not problems, "; ".join(problems) or "target readable, resources above thresholds")


def _check_active(ctx: DutyContext, report: ReportBuilder) -> list[str]:
    """Health of the active version through the target's URL, and the metrics baseline."""
    url = ctx.target.url()
    if not url:
        return ["a version is active but the target has no URL to check it"]
    problems = []
    for result in probes.run_checks(url, list(ctx.spec.health.checks)):
        report.evidence("check", result.result.evidence(f"health {result.name}: {result.reason}"))
        if not result.passed:
            problems.append(f"active version health check {result.name} failed: {result.reason}")
    answer, samples = probes.scrape(url.rstrip("/") + ctx.spec.monitoring.metrics_path)
    report.evidence("check", answer.evidence(f"baseline metrics: {len(samples)} samples"))
    report.facts["baseline_metrics"] = samples
    if not samples:
        report.findings.append(f"no metrics baseline: {answer.url} answered {answer.status or answer.error}; "
                               "later anomaly checks have nothing to compare with")
    return problems


def _check_resources(ctx: DutyContext, report: ReportBuilder) -> list[str]:
    problems = []
    where = _existing_ancestor(ctx.paths.home)
    usage = shutil.disk_usage(where)
    free_mb = usage.free / (1024 * 1024)
    minimum = ctx.spec.readiness.min_free_disk_mb
    report.evidence("check", Evidence(kind="metric", source=f"disk_usage({where})",
                                      summary=f"{free_mb:.0f} MB free, {minimum} MB required",
                                      data={"free_mb": round(free_mb, 1), "total_mb": round(usage.total / 2**20, 1),
                                            "min_free_disk_mb": minimum}))
    report.metrics["free_disk_mb"] = round(free_mb, 1)
    if free_mb < minimum:
        problems.append(f"free disk under {where} is {free_mb:.0f} MB, below readiness.min_free_disk_mb={minimum}")
    try:
        port = free_loopback_port()
    except OSError as exc:
        problems.append(f"cannot bind a loopback port: {exc}")
    else:
        report.evidence("check", Evidence(kind="computed", source="bind 127.0.0.1:0",
                                          summary=f"port {port} was free", data={"port": port}))
    return problems


# ------------------------------------------------------------------------------ risk assessment
@dataclass(frozen=True)
class RiskRule:
    id: str
    description: str
    points: int
    cap: int
    mitigation: str


#: The documented risk rules. Score = sum of points of the rules that fired (each up to its cap).
RISK_RULES: tuple[RiskRule, ...] = (
    RiskRule("sensitive_path", "a sensitive path (risk.sensitive_paths) was changed: +3 per file, at most 9",
             3, 9, "review the migration/infra change; the backup is verified before deploying"),
    RiskRule("breaking_change", "a commit declares a breaking change (type! or BREAKING CHANGE:): +4",
             4, 4, "announce the breaking change to stakeholders; keep the previous slot for rollback"),
    RiskRule("dependency_change", "a dependency file (lock, requirements, pyproject) changed: +2",
             2, 2, "dependency scan and lock-file pinning are gated in phase 3"),
    RiskRule("large_change", "more than 50 files changed: +2",
             2, 2, "extended observation window; smoke and QA suites gate the release"),
    RiskRule("first_release", "no earlier successful release is known: +1",
             1, 1, "nothing to roll back to: the abort path stops the staged slot"),
)
RISK_LEVELS: tuple[tuple[int, str], ...] = ((3, "low"), (6, "medium"))  # score < bound -> level; else high
LARGE_CHANGE_FILES = 50

#: Files whose change means the dependency set changed (matched against the file name).
DEPENDENCY_FILE_PATTERNS: tuple[str, ...] = (
    "*.lock", "*requirements*.txt", "*requirements*.in", "pyproject.toml", "Pipfile", "setup.py", "setup.cfg",
    "constraints*.txt", "package.json", "package-lock.json", "go.mod", "go.sum", "Cargo.toml",
)

_FIELD = "\x1f"  # unit separator between the fields of one commit
_RECORD = "\x1e"  # record separator before each commit
GIT_LOG_FORMAT = "%x1e%H%x1f%s%x1f%b%x1f"
# Conventional Commits types are lower-case.
_CONVENTIONAL_RE = re.compile(r"^(?P<type>[a-z]+)(?:\((?P<scope>[^()]*)\))?(?P<bang>!)?:\s*(?P<desc>.+)$")
_BREAKING_RE = re.compile(r"^BREAKING[ -]CHANGE:", re.MULTILINE)


def parse_conventional(subject: str, body: str = "") -> dict[str, Any]:
    """Split a Conventional Commits subject: ``feat(api)!: text`` -> type, scope, breaking, description.

    A subject that does not follow the convention gets type ``other``.
    """
    match = _CONVENTIONAL_RE.match(subject.strip())
    breaking = bool(_BREAKING_RE.search(body))
    if not match:
        return {"type": "other", "scope": None, "breaking": breaking, "description": subject.strip()}
    return {"type": match["type"].lower(), "scope": match["scope"] or None,
            "breaking": breaking or bool(match["bang"]), "description": match["desc"].strip()}


def parse_git_log(text: str) -> list[dict[str, Any]]:
    """Parse ``git log --format=GIT_LOG_FORMAT --name-only`` output into commit records."""
    commits = []
    for chunk in text.split(_RECORD):
        if not chunk.strip():
            continue
        parts = chunk.split(_FIELD)
        if len(parts) < 4:
            raise ValueError(f"unexpected git log record: {chunk[:80]!r}")
        sha, subject, files_text = parts[0].strip(), parts[1], parts[-1]
        body = _FIELD.join(parts[2:-1])
        files = [line for line in files_text.splitlines() if line.strip()]
        parsed = parse_conventional(subject, body)
        commits.append({"sha": sha, "subject": subject, "type": parsed["type"], "scope": parsed["scope"],
                        "breaking": parsed["breaking"], "description": parsed["description"],
                        "body": body.strip(), "files": files})
    return commits


def last_successful_source_sha(history_file: Path) -> str | None:
    """``source_sha`` of the last history line with ``"outcome": "success"``; None when there is none."""
    if not history_file.exists():
        return None
    found = None
    for line in history_file.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("outcome") == "success" and entry.get("source_sha"):
            found = str(entry["source_sha"])
    return found


def path_matches(path: str, patterns: list[str] | tuple[str, ...]) -> bool:
    """Match a repo-relative path; patterns without ``/`` also match the file name in any folder."""
    name = PurePosixPath(path).name
    return any(fnmatch.fnmatchcase(path, p) or ("/" not in p and fnmatch.fnmatchcase(name, p)) for p in patterns)


def changed_files(commits: list[dict[str, Any]]) -> list[str]:
    return sorted({f for commit in commits for f in commit["files"]})


def dependency_changes(files: list[str]) -> list[str]:
    return [f for f in files if path_matches(f, DEPENDENCY_FILE_PATTERNS)]


def score_risk(commits: list[dict[str, Any]], sensitive_paths: list[str],
               first_release: bool) -> tuple[int, str, list[dict[str, Any]]]:
    """Score a change set with :data:`RISK_RULES`; return ``(score, level, fired rules)``."""
    files = changed_files(commits)
    hits: dict[str, tuple[int, list[str]]] = {}
    sensitive = [f for f in files if path_matches(f, sensitive_paths)]
    if sensitive:
        hits["sensitive_path"] = (len(sensitive), sensitive)
    breaking = [c["sha"][:12] for c in commits if c["breaking"]]
    if breaking:
        hits["breaking_change"] = (1, breaking)
    deps = dependency_changes(files)
    if deps:
        hits["dependency_change"] = (1, deps)
    if len(files) > LARGE_CHANGE_FILES:
        hits["large_change"] = (1, [f"{len(files)} files"])
    if first_release:
        hits["first_release"] = (1, ["no successful release in history"])
    fired = []
    score = 0
    for rule in RISK_RULES:
        if rule.id not in hits:
            continue
        count, subjects = hits[rule.id]
        points = min(rule.points * count, rule.cap)
        score += points
        fired.append({"rule": rule.id, "points": points, "description": rule.description,
                      "matched": subjects, "mitigation": rule.mitigation})
    return score, risk_level(score), fired


def risk_level(score: int) -> str:
    for bound, level in RISK_LEVELS:
        if score < bound:
            return level
    return "high"


def verify_backup_file(path: Path) -> tuple[list[str], dict[str, Any]]:
    """A backup must exist, be non-empty and, when it is a tar archive, open with at least one member."""
    if not path.is_file():
        return [f"backup output {path} does not exist"], {}
    size = path.stat().st_size
    if size == 0:
        return [f"backup output {path} is empty"], {"bytes": 0}
    data: dict[str, Any] = {"bytes": size}
    if path.name.endswith((".tar", ".tar.gz", ".tgz")):
        try:
            with tarfile.open(path, "r:*") as archive:
                members = archive.getnames()
        except (tarfile.TarError, OSError, EOFError) as exc:
            return [f"backup output {path} is not a readable tar archive: {exc}"], data
        data["members"] = len(members)
        if not members:
            return [f"backup archive {path} has no members"], data
    return [], data


def _git(repo: Path, *args: str) -> list[str]:
    return ["git", "-c", "core.quotePath=false", "-C", str(repo), *args]


@duty("risk_assessment")
def risk_assessment(ctx: DutyContext, report: ReportBuilder) -> None:
    risk = ctx.spec.risk
    commits = _read_change_set(ctx, report)

    # verify: risk score from the documented rules
    if commits is None:
        report.fail("verify", "no change set to score (risk_assessment.read failed)")
    else:
        first_release = report.facts.get("from_sha") is None
        score, level, fired = score_risk(commits, list(risk.sensitive_paths), first_release)
        report.evidence("verify", Evidence(
            kind="computed", source="RISK_RULES", summary=f"score {score}, level {level}, {len(fired)} rule(s) fired",
            data={"score": score, "level": level, "fired": fired,
                  "rules": [asdict(r) for r in RISK_RULES], "levels": "low < 3 <= medium < 6 <= high"}))
        report.facts.update(risk_score=score, risk_level=level, risk_rules_fired=fired)
        report.metrics["risk_score"] = score
        for rule in fired:
            report.findings.append(f"risk {rule['rule']} (+{rule['points']}): {', '.join(rule['matched'][:10])}; "
                                   f"mitigation: {rule['mitigation']}")
        approval = risk.high_risk_approval
        report.facts["high_risk_approved"] = bool(level == "high" and approval)
        if level == "high" and approval is None:
            # verdict -> blocker: finish() lists every failed item as a blocking issue
            report.fail("verify", f"unmitigated high risk (score {score}: "
                                  f"{', '.join(r['rule'] for r in fired)}): risk.high_risk_approval is required")
        else:
            if level == "high" and approval is not None:
                report.findings.append(f"high risk approved by {approval.approved_by}: {approval.reason}")
            report.verdict("verify", True, f"risk level {level} (score {score}) from {len(fired)} rule(s)")

    # check: dependency changes listed, backup verified or waived
    problems = []
    if commits is not None:
        deps = dependency_changes(changed_files(commits))
        report.evidence("check", Evidence(kind="computed", source="change set dependency files",
                                          summary=f"{len(deps)} dependency file(s) changed",
                                          data={"dependency_files": deps, "patterns": list(DEPENDENCY_FILE_PATTERNS)}))
        report.facts["dependency_changes"] = deps
    else:
        problems.append("dependency changes unknown: no change set")
    problems.extend(_check_backup(ctx, report))
    report.verdict("check", not problems, "; ".join(problems) or "dependency changes listed; backup verified or waived")


def _read_change_set(ctx: DutyContext, report: ReportBuilder) -> list[dict[str, Any]] | None:
    risk = ctx.spec.risk
    repo = ctx.spec.repo_path()
    if not repo.is_dir():
        report.fail("read", f"risk.repo {repo} does not exist or is not a folder")
        return None
    head = run_command(_git(repo, "rev-parse", "--verify", "HEAD"), cwd=repo)
    report.evidence("read", head.evidence())
    if not head.ok:
        report.fail("read", f"risk.repo {repo} is not a git repository with commits: "
                            f"{(head.stderr.strip().splitlines() or ['git failed'])[-1]}")
        return None
    source_sha = head.stdout.strip()
    previous = last_successful_source_sha(ctx.paths.history_file)
    if previous:
        known = run_command(_git(repo, "cat-file", "-e", f"{previous}^{{commit}}"), cwd=repo)
        report.evidence("read", known.evidence(f"previous release commit {previous[:12]}: exit {known.exit_code}"))
        if not known.ok:
            report.findings.append(f"previous release commit {previous} (from {ctx.paths.history_file}) is not in "
                                   f"{repo}; treated as a first release")
            previous = None
    revision = f"{previous}..{source_sha}" if previous else source_sha
    pathspec = ["--", *risk.paths] if risk.paths else []  # a monorepo: only the service's own files
    count = run_command(_git(repo, "rev-list", "--count", revision, *pathspec), cwd=repo)
    log = run_command(_git(repo, "log", f"--max-count={risk.max_commits}", f"--format={GIT_LOG_FORMAT}",
                           "--name-only", revision, *pathspec), cwd=repo)
    report.evidence("read", count.evidence())
    if not log.ok or not count.ok:
        failed = log if not log.ok else count
        report.fail("read", f"git failed in {repo}: {' '.join(failed.argv[5:])}: exit {failed.exit_code}: "
                            f"{failed.stderr.strip()[-300:]}")
        return None
    try:
        commits = parse_git_log(log.stdout)
    except ValueError as exc:
        report.fail("read", f"cannot parse git log of {repo}: {exc}")
        return None
    total = int(count.stdout.strip() or 0)
    report.evidence("read", Evidence(
        kind="git", source=" ".join(log.argv),
        summary=f"{len(commits)} commit(s) {revision}" + (f" touching {', '.join(risk.paths)}" if risk.paths else ""),
        data={"from_sha": previous, "source_sha": source_sha, "commits": len(commits), "total_in_range": total,
              "files": len(changed_files(commits)), "exit_code": log.exit_code}))
    if total > len(commits):
        report.findings.append(f"change set has {total} commits; only the last {len(commits)} (risk.max_commits) "
                               "were assessed")
    report.facts["from_sha"] = previous
    report.facts["source_sha"] = source_sha
    report.facts["commits"] = [{k: c[k] for k in ("sha", "subject", "type", "scope", "breaking", "files")}
                               for c in commits]
    report.verdict("read", True, f"{len(commits)} commit(s) read from {repo} "
                                 f"({'since ' + previous[:12] if previous else 'first release'})")
    return commits


def _check_backup(ctx: DutyContext, report: ReportBuilder) -> list[str]:
    backup = ctx.spec.risk.backup
    if backup.command is None or backup.output is None:
        # The model guarantees a waiver here.
        report.evidence("check", Evidence(kind="computed", source="risk.backup.waiver",
                                          summary=f"backup waived: {backup.waiver}",
                                          data={"waiver": backup.waiver}))
        report.findings.append(f"backup waived: {backup.waiver}")
        report.facts["backup"] = {"waived": backup.waiver}
        return []
    values = command_values(ctx)
    argv, problem = substitute_command(list(backup.command), values)
    if argv is None:
        return [f"risk.backup.command: {problem}"]
    output = resolve_output(backup.output, workdir=ctx.paths.workdir, artifacts_dir=ctx.paths.artifacts_dir,
                            field="risk.backup.output")
    result = run_command(argv, cwd=ctx.spec.spec_dir)
    report.evidence("check", result.evidence())
    if not result.ok:
        tail = (result.stderr.strip().splitlines() or [""])[-1]
        return [f"backup command exited {result.exit_code}" + (f": {tail}" if tail else "")]
    problems, data = verify_backup_file(output)
    if problems:
        return problems
    scan = scan_output(output)
    report.evidence("check", scan.evidence("backup"))
    if scan.hits:
        outcome = remove_output(output, f"holds plaintext secret(s) at {scan.describe_hits()}")
        report.evidence("check", outcome.evidence())
        report.facts["backup"] = {"path": str(output), "removed": outcome.removed, "sha256": outcome.sha256,
                                  "hits": [h.as_dict() for h in scan.hits]}
        state = "it was removed" if outcome.removed else f"it could NOT be removed ({outcome.error})"
        return [f"backup {output.name} holds plaintext secret(s) at {scan.describe_hits()}; {state}: keep "
                "plaintext secrets out of what risk.backup.command archives, or write an encrypted backup"]
    if scan.error:
        return [f"backup {output} cannot be scanned for secrets: {scan.error}"]
    evidence = report.evidence("check", Evidence.file(output, summary=f"backup {output.name}: {data['bytes']} bytes",
                                                      **data))
    report.facts["backup"] = {"path": str(output), "sha256": evidence.sha256, **data}
    return []
