"""Phase 1, pre-deployment preparation: deployment readiness and risk assessment.

``readiness`` (deployment-ops-manager) reads the runbook, the rollback procedure and any further
readiness documents for substance (:mod:`gendev_release.doc_checks`: the sections the spec requires,
a minimum size, the service named), checks that every value of the spec looser than the standard
carries a waiver and that the spec file on disk still states the standards this run holds, and
looks at the target: its active version and health, free disk and a free loopback port. It also
scrapes the active version's metrics as the anomaly baseline later steps compare against
(``facts["baseline_metrics"]``). It delivers the readiness report and the resource verification.

``risk_assessment`` (risk-manager) reads the git change set since the last successful release,
scores it with :data:`RISK_RULES`, lists the dependency changes of the range pin by pin (from git)
and verifies the backup (or its recorded waiver): the backup tool's exit code and printed digest,
a restore rehearsal that reads the archive to the end, and the files the spec says it must restore
(``risk.backup.contents``) compared byte for byte. The backup is scanned for plaintext secrets right
after it was written; one holding a secret is removed and fails the check. It delivers the risk
assessment, the dependency validation and the backup strategy.
"""

from __future__ import annotations

import json
import shutil
import socket
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gendev_release import probes
from gendev_release.approvals import gate_task_ids, high_risk_gate
from gendev_release.backup_checks import missing_contents, reported_digest, restore_rehearsal
from gendev_release.commands import run_command
from gendev_release.doc_checks import DocumentFindings, check_document
from gendev_release.duties.base import duty
from gendev_release.duties.common import command_values, substitute_command
from gendev_release.duties.phase1_documents import Outcomes, backup_markdown, decide, readiness_markdown, risk_markdown
from gendev_release.errors import SpecError
from gendev_release.report import Evidence, ReportBuilder, sha256_file, utcnow
from gendev_release.risk_rules import (  # noqa: F401 (GIT_LOG_FORMAT, parse_git_log ... are imported from here)
    DEPENDENCY_FILE_PATTERNS,
    GIT_LOG_FORMAT,
    REQUIREMENT_FILE_PATTERNS,
    RISK_RULES,
    changed_files,
    compare_pins,
    dependency_changes,
    last_successful_source_sha,
    parse_conventional,
    parse_git_log,
    path_matches,
    pins,
    risk_level,
    score_risk,
)
from gendev_release.secrets import remove_output, scan_output
from gendev_release.spec import QualityGates, ReleaseSpec, load_spec
from gendev_release.spec_relaxations import NUMERIC_BOUNDS, Relaxation, waived_by
from gendev_release.spec_rules import resolve_output
from gendev_release.verification_matrix import ItemProof

if TYPE_CHECKING:
    from gendev_release.context import DutyContext

TEST_FILE = "tests/duties/test_preparation.py"


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


#: The parts of a spec that set the standard a release is held to; readiness re-reads them from the spec file.
STANDARD_FIELDS: tuple[str, ...] = (
    "quality_gates", "security", "health", "critical_endpoints", "monitoring.alert_rules", "approvals",
    "change_window", "readiness", "risk.backup",
)


def _at(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _leaves(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_leaves(item, f"{prefix}.{key}"))
        return flat
    return {prefix: value}


def standards_differences(held: dict[str, Any], stated: dict[str, Any]) -> list[str]:
    """Where two specs (as JSON) set different standards (:data:`STANDARD_FIELDS`), one line per field."""
    lines = []
    for name in STANDARD_FIELDS:
        mine, theirs = _leaves(_at(held, name), name), _leaves(_at(stated, name), name)
        for key in sorted(set(mine) | set(theirs)):
            if mine.get(key) != theirs.get(key):
                lines.append(f"{key} is {json.dumps(mine.get(key), sort_keys=True)} in this run, "
                             f"{json.dumps(theirs.get(key), sort_keys=True)} in the file")
    return lines


def spec_drift(held: ReleaseSpec) -> tuple[list[str], dict[str, Any]]:
    """Whether the spec file on disk still states the standards this run holds.

    In Airflow a run executes the spec as it was when its DAG was parsed; an edit to the file after
    that (a gate raised, a waiver withdrawn) would otherwise release against standards nobody states
    any more. A spec built in code has no file: nothing to compare, no problem.

    :return: ``(problems, data)``; data names the file and the differing fields.
    """
    source = held.source
    if source is None:
        return [], {"source": None, "differences": []}
    try:
        stated = load_spec(source)
    except SpecError as exc:
        problems = "; ".join(f"{p.field}: {p.message}" for p in exc.problems[:3])
        return [f"the spec file {source} no longer loads ({problems}): this run holds standards the file does not "
                "state; fix the file and trigger the release again"], {"source": str(source), "error": str(exc)}
    differences = standards_differences(held.model_dump(mode="json"), stated.model_dump(mode="json"))
    data = {"source": str(source), "sha256": sha256_file(source), "differences": differences}
    if not differences:
        return [], data
    shown = "; ".join(differences[:5]) + (f" (+{len(differences) - 5} more)" if len(differences) > 5 else "")
    return [f"the spec file {source.name} changed after this run's DAG was parsed: {shown}; trigger the release "
            "again once Airflow has parsed the new spec"], data


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


def provided_documents(spec: ReleaseSpec) -> list[tuple[str, str, list[str], int]]:
    """``(spec field, path, required sections, minimum bytes)`` of every document readiness reads."""
    readiness = spec.readiness
    documents = [("readiness.runbook", readiness.runbook, list(readiness.runbook_sections),
                  readiness.min_document_bytes),
                 ("readiness.rollback_procedure", readiness.rollback_procedure, list(readiness.rollback_sections),
                  readiness.min_document_bytes)]
    documents += [(f"readiness.documents[{i}].path", d.path, list(d.sections), d.min_bytes)
                  for i, d in enumerate(readiness.documents)]
    return documents


def _read_document(ctx: DutyContext, report: ReportBuilder, field: str, value: str, sections: list[str],
                   min_bytes: int) -> tuple[list[str], DocumentFindings | None]:
    try:
        path = ctx.spec.input_path(field, value)
    except ValueError as exc:  # PathEscape: a symlink leading out of the spec folder
        return [str(exc)], None
    if not path.exists():
        return [f"{field} {path} does not exist"], None
    if not path.is_file():
        return [f"{field} {path} is not a regular file"], None
    findings = check_document(path, service=ctx.spec.service, sections=sections, min_bytes=min_bytes,
                              label=f"{field} {path.name}")
    if findings.sha256 is not None:
        report.evidence("read", Evidence(
            kind="file", source=str(path), sha256=findings.sha256,
            summary=f"{path.name}: {findings.size} bytes, {len(findings.headings)} heading(s), "
                    f"{'names' if findings.names_service else 'does not name'} {ctx.spec.service}",
            data={"label": field, "required_sections": sections, "min_bytes": min_bytes, **findings.as_data()}))
    if findings.size == 0:
        return [f"{field} {path} is empty"], findings
    return findings.problems, findings


@duty("readiness")
def readiness(ctx: DutyContext, report: ReportBuilder) -> None:
    spec = ctx.spec
    outcomes: Outcomes = {}
    # read: the runbook, the rollback procedure and further documents, for substance
    documents: list[dict[str, Any]] = []
    problems: list[str] = []
    for field, value, sections, min_bytes in provided_documents(spec):
        found, findings = _read_document(ctx, report, field, value, sections, min_bytes)
        problems.extend(found)
        documents.append({"field": field, "path": value, "sha256": findings.sha256 if findings else None,
                          "bytes": findings.size if findings else None,
                          "sections": findings.sections if findings else {}, "problems": found})
    decide(report, "read", problems, f"{len(documents)} document(s) read: each has its required sections, at "
                                      f"least its minimum size and names {spec.service}", outcomes)

    # verify: the spec's gates and baselines against the standard, and against the spec file as it is now
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
    drift, drift_data = spec_drift(spec)
    if drift_data["source"] is not None:
        report.evidence("verify", Evidence(
            kind="file" if "sha256" in drift_data else "computed", source=drift_data["source"],
            sha256=drift_data.get("sha256"),
            summary=f"spec file re-read: {len(drift_data.get('differences', []))} standard(s) differ from this run's",
            data=drift_data))
    else:
        report.findings.append("the spec was built in code (no file): its standards were not compared with a file")
    waived = (f"every gate meets the standard or is waived ({len(rows)} waived: "
              f"{', '.join(r['gate'] for r in rows)})" if rows else "every gate meets the standard")
    decide(report, "verify", problems + drift,
            waived + ("; the spec file states the same standards" if drift_data["source"] else ""), outcomes)

    # check: target state, health of the active version, resources
    problems = []
    resources: dict[str, Any] = {"checked_at": utcnow().isoformat(), "target": None, "active_health": []}
    try:
        status = ctx.target.status()
    except Exception as exc:
        status = None
        problems.append(f"target state unreadable: {type(exc).__name__}: {exc}")
        resources["target"] = {"error": f"{type(exc).__name__}: {exc}"}
    if status is not None:
        active = status.active
        resources["target"] = {"kind": ctx.target.kind, "active": active.as_dict() if active else None,
                               "previous": status.previous.as_dict() if status.previous else None}
        report.evidence("check", Evidence(
            kind="target", source=f"{ctx.target.kind} target {spec.service}",
            summary=f"active version {active.version}" if active else "first deployment: nothing active",
            data={"active": active.as_dict() if active else None,
                  "previous": status.previous.as_dict() if status.previous else None,
                  "router_url": status.router_url}))
        report.facts["active_version"] = active.version if active else None
        report.facts["first_deployment"] = active is None
        if active is not None:
            problems.extend(_check_active(ctx, report, resources))
    problems.extend(_check_resources(ctx, report, resources))
    passed = decide(report, "check", problems, "target readable, resources above thresholds", outcomes)

    # deliverables: from what this step observed
    workdir = ctx.paths.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    head = {"service": spec.service, "version": ctx.version, "run_id": ctx.run_id, "environment": spec.environment,
            "active_version": report.facts.get("active_version")}
    resources_path = workdir / "resource-verification.json"
    resources_path.write_text(json.dumps({**head, "passed": passed, "problems": problems, **resources}, indent=2,
                                         default=str), encoding="utf-8")
    readiness_path = workdir / "deployment-readiness.md"
    readiness_path.write_text(readiness_markdown(head, documents, table, drift, resources, outcomes),
                              encoding="utf-8")
    report.deliver("Deployment readiness", readiness_path)
    report.deliver("Resource verification", resources_path)


def _check_active(ctx: DutyContext, report: ReportBuilder, resources: dict[str, Any]) -> list[str]:
    """Health of the active version through the target's URL, and the metrics baseline."""
    url = ctx.target.url()
    if not url:
        return ["a version is active but the target has no URL to check it"]
    problems = []
    for result in probes.run_checks(url, list(ctx.spec.health.checks)):
        report.evidence("check", result.result.evidence(f"health {result.name}: {result.reason}"))
        resources["active_health"].append({"check": result.name, "url": result.result.url,
                                           "status": result.result.status, "passed": result.passed,
                                           "reason": result.reason})
        if not result.passed:
            problems.append(f"active version health check {result.name} failed: {result.reason}")
    answer, samples = probes.scrape(url.rstrip("/") + ctx.spec.monitoring.metrics_path)
    report.evidence("check", answer.evidence(f"baseline metrics: {len(samples)} samples"))
    report.facts["baseline_metrics"] = samples
    resources["baseline_metrics"] = {"url": answer.url, "status": answer.status, "samples": len(samples)}
    if not samples:
        report.findings.append(f"no metrics baseline: {answer.url} answered {answer.status or answer.error}; "
                               "later anomaly checks have nothing to compare with")
    return problems


def _check_resources(ctx: DutyContext, report: ReportBuilder, resources: dict[str, Any]) -> list[str]:
    problems = []
    where = _existing_ancestor(ctx.paths.home)
    usage = shutil.disk_usage(where)
    free_mb = usage.free / (1024 * 1024)
    minimum = ctx.spec.readiness.min_free_disk_mb
    disk = {"path": str(where), "free_mb": round(free_mb, 1), "total_mb": round(usage.total / 2**20, 1),
            "min_free_disk_mb": minimum}
    report.evidence("check", Evidence(kind="metric", source=f"disk_usage({where})",
                                      summary=f"{free_mb:.0f} MB free, {minimum} MB required", data=disk))
    resources["disk"] = {**disk, "passed": free_mb >= minimum}
    report.metrics["free_disk_mb"] = round(free_mb, 1)
    if free_mb < minimum:
        problems.append(f"free disk under {where} is {free_mb:.0f} MB, below readiness.min_free_disk_mb={minimum}")
    try:
        port = free_loopback_port()
    except OSError as exc:
        problems.append(f"cannot bind a loopback port: {exc}")
        resources["loopback_port"] = {"error": str(exc), "passed": False}
    else:
        report.evidence("check", Evidence(kind="computed", source="bind 127.0.0.1:0",
                                          summary=f"port {port} was free", data={"port": port}))
        resources["loopback_port"] = {"port": port, "passed": True}
    return problems


# ------------------------------------------------------------------------------ risk assessment
def verify_backup_file(path: Path) -> tuple[list[str], dict[str, Any]]:
    """A backup must exist and not be empty; an archive (tar, zip) must read back to the end with members.

    :return: ``(problems, data)``; data holds ``bytes`` and, for an archive, ``members`` and ``restored_bytes``.
    """
    rehearsal = restore_rehearsal(path)
    data: dict[str, Any] = {"bytes": path.stat().st_size} if path.is_file() else {}
    if rehearsal.archive:
        data.update(members=rehearsal.members, restored_bytes=rehearsal.restored_bytes)
    return rehearsal.problems, data


def _git(repo: Path, *args: str) -> list[str]:
    return ["git", "-c", "core.quotePath=false", "-C", str(repo), *args]


def dependency_diff(repo: Path, from_sha: str | None, source_sha: str, files: list[str]) -> list[dict[str, Any]]:
    """Each changed dependency file of the range, as git has it at both ends; requirement files pin by pin."""
    rows = []
    for name in files:
        row: dict[str, Any] = {"file": name}
        if path_matches(name, REQUIREMENT_FILE_PATTERNS):
            ends = []
            for rev in (from_sha, source_sha):
                shown = run_command(_git(repo, "show", f"{rev}:{name}"), cwd=repo) if rev else None
                ends.append(pins(shown.stdout) if shown is not None and shown.ok else {})
            row.update(compare_pins(ends[0], ends[1]), pinned=sum(1 for v in ends[1].values() if v),
                       unpinned=sorted(n for n, v in ends[1].items() if v is None))
        else:
            revision = [f"{from_sha}..{source_sha}"] if from_sha else [source_sha, "--root"]
            stat = run_command(_git(repo, "diff-tree", "-r", "--numstat", *revision, "--", name)
                               if not from_sha else _git(repo, "diff", "--numstat", *revision, "--", name), cwd=repo)
            numbers = stat.stdout.split()[:2] if stat.ok else []
            row.update(lines_added=numbers[0] if numbers else None, lines_removed=numbers[1] if numbers else None)
        rows.append(row)
    return rows


@duty("risk_assessment")
def risk_assessment(ctx: DutyContext, report: ReportBuilder) -> None:
    risk = ctx.spec.risk
    outcomes: Outcomes = {}
    commits = _read_change_set(ctx, report, outcomes)
    gate = high_risk_gate(ctx.spec.approvals, ctx.spec.environment)
    assessment: dict[str, Any] = {"approval": gate}

    # verify: risk score from the documented rules, over the whole range
    problems, ok = [], ""
    if commits is None:
        problems.append("no change set to score (risk_assessment.read failed)")
    else:
        first_release = report.facts.get("from_sha") is None
        score, level, fired = score_risk(commits, list(risk.sensitive_paths), first_release)
        report.evidence("verify", Evidence(
            kind="computed", source="RISK_RULES", summary=f"score {score}, level {level}, {len(fired)} rule(s) fired",
            data={"score": score, "level": level, "fired": fired,
                  "rules": [asdict(r) for r in RISK_RULES], "levels": "low < 3 <= medium < 6 <= high"}))
        report.facts.update(risk_score=score, risk_level=level, risk_rules_fired=fired)
        report.metrics["risk_score"] = score
        assessment.update(score=score, level=level, fired=fired)
        for rule in fired:
            report.findings.append(f"risk {rule['rule']} (+{rule['points']}): {', '.join(rule['matched'][:10])}; "
                                   f"mitigation: {rule['mitigation']}")
        # Approval is people's, in Airflow: a high risk passes here only when the approval gate will stop it.
        report.facts["approval_required"] = bool(level == "high" and gate)
        report.facts["approval_gate"] = gate_task_ids(ctx.spec.approvals) if gate else []
        total = int(report.facts.get("total_in_range") or 0)
        if level == "high" and gate is None:
            # verdict -> blocker: finish() lists every failed item as a blocking issue
            problems.append(f"unmitigated high risk (score {score}: {', '.join(r['rule'] for r in fired)}): nobody "
                            "would approve it before traffic moves: add high_risk to approvals.required_for (people "
                            "then approve it in Airflow at the approval gate after phase 4)")
        elif level == "high":
            report.findings.append(f"high risk (score {score}): the release stops for approval: {gate}")
        if not first_release and total > len(commits):
            problems.append(f"only {len(commits)} of the {total} commits since the last release were scored "
                            f"(risk.max_commits={risk.max_commits}): raise risk.max_commits to at least {total}")
        ok = f"risk level {level} (score {score}) from {len(fired)} rule(s) over {len(commits)} commit(s)"
    decide(report, "verify", problems, ok, outcomes)

    # check: dependency changes listed pin by pin, backup verified or waived
    problems = []
    dependencies: list[dict[str, Any]] = []
    if commits is not None:
        deps = dependency_changes(changed_files(commits))
        dependencies = dependency_diff(ctx.spec.repo_path(), report.facts.get("from_sha"),
                                       str(report.facts["source_sha"]), deps)
        report.evidence("check", Evidence(kind="git", source="git show <from>:<file> and <to>:<file>",
                                          summary=f"{len(deps)} dependency file(s) changed in the range",
                                          data={"dependency_files": deps, "changes": dependencies,
                                                "patterns": list(DEPENDENCY_FILE_PATTERNS)}))
        report.facts["dependency_changes"] = deps
        report.facts["dependency_diff"] = dependencies
    else:
        problems.append("dependency changes unknown: no change set")
    backup: dict[str, Any] = {}
    problems.extend(_check_backup(ctx, report, backup))
    decide(report, "check", problems, "dependency changes listed; backup verified or waived", outcomes)

    # deliverables: from what this step observed
    spec, facts, workdir = ctx.spec, report.facts, ctx.paths.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    head = {"service": spec.service, "version": ctx.version, "run_id": ctx.run_id}
    change = {"repo": risk.repo, "paths": list(risk.paths), "from_sha": facts.get("from_sha"),
              "source_sha": facts.get("source_sha"), "commits": None if commits is None else len(commits),
              "total": facts.get("total_in_range", "unknown"), "files": len(changed_files(commits or []))}
    documents = {
        "Risk assessment": ("risk-assessment.md", risk_markdown(head, change, assessment, outcomes)),
        "Dependency validation": ("dependency-validation.json", json.dumps(
            {**head, "from_sha": change["from_sha"], "source_sha": change["source_sha"],
             "change_set_known": commits is not None, "dependency_files": dependencies}, indent=2)),
        "Backup strategy": ("backup-strategy.md", backup_markdown(head, backup, outcomes["check"])),
    }
    for name, (file_name, text) in documents.items():
        path = workdir / file_name
        path.write_text(text, encoding="utf-8")
        report.deliver(name, path)


def _read_change_set(ctx: DutyContext, report: ReportBuilder,
                     outcomes: Outcomes) -> list[dict[str, Any]] | None:
    risk = ctx.spec.risk
    try:
        repo = ctx.spec.repo_path()
    except ValueError as exc:  # PathEscape: a symlink leading out of the spec folder
        decide(report, "read", [str(exc)], "", outcomes)
        return None
    if not repo.is_dir():
        decide(report, "read", [f"risk.repo {repo} does not exist or is not a folder"], "", outcomes)
        return None
    head = run_command(_git(repo, "rev-parse", "--verify", "HEAD"), cwd=repo)
    report.evidence("read", head.evidence())
    if not head.ok:
        decide(report, "read", [f"risk.repo {repo} is not a git repository with commits: "
                                 f"{(head.stderr.strip().splitlines() or ['git failed'])[-1]}"], "", outcomes)
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
        decide(report, "read", [f"git failed in {repo}: {' '.join(failed.argv[5:])}: exit {failed.exit_code}: "
                                 f"{failed.stderr.strip()[-300:]}"], "", outcomes)
        return None
    try:
        commits = parse_git_log(log.stdout)
    except ValueError as exc:
        decide(report, "read", [f"cannot parse git log of {repo}: {exc}"], "", outcomes)
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
    report.facts["total_in_range"] = total
    report.facts["commits"] = [{k: c[k] for k in ("sha", "subject", "type", "scope", "breaking", "files")}
                               for c in commits]
    decide(report, "read", [], f"{len(commits)} commit(s) read from {repo} "
                                f"({'since ' + previous[:12] if previous else 'first release'})", outcomes)
    return commits


def _check_backup(ctx: DutyContext, report: ReportBuilder, record: dict[str, Any]) -> list[str]:
    """Run the backup and verify it; ``record`` collects what the backup strategy document shows."""
    backup = ctx.spec.risk.backup
    if backup.command is None or backup.output is None:
        # The model guarantees a waiver (with approved_by) here.
        report.evidence("check", Evidence(kind="computed", source="risk.backup.waiver",
                                          summary=f"backup waived by {backup.approved_by}: {backup.waiver}",
                                          data={"waiver": backup.waiver, "approved_by": backup.approved_by}))
        report.findings.append(f"backup waived by {backup.approved_by}: {backup.waiver}")
        report.facts["backup"] = {"waived": backup.waiver}
        record.update(waived=backup.waiver, approved_by=backup.approved_by)
        return []
    values = command_values(ctx)
    argv, problem = substitute_command(list(backup.command), values)
    record["command"] = argv or list(backup.command)
    if argv is None:
        return [f"risk.backup.command: {problem}"]
    output = resolve_output(backup.output, workdir=ctx.paths.workdir, artifacts_dir=ctx.paths.artifacts_dir,
                            field="risk.backup.output")
    record["output"] = str(output)
    result = run_command(argv, cwd=ctx.spec.spec_dir)
    report.evidence("check", result.evidence())
    record["exit_code"] = result.exit_code
    if not result.ok:
        tail = (result.stderr.strip().splitlines() or [""])[-1]
        return [f"backup command exited {result.exit_code}" + (f": {tail}" if tail else "")]
    rehearsal = restore_rehearsal(output)
    record["rehearsal"] = {**rehearsal.as_data(), "problems": rehearsal.problems}
    if rehearsal.problems:
        return rehearsal.problems
    scan = scan_output(output)
    report.evidence("check", scan.evidence("backup"))
    record["secret_scan"] = {"hits": len(scan.hits), "error": scan.error}
    if scan.hits:
        outcome = remove_output(output, f"holds plaintext secret(s) at {scan.describe_hits()}")
        report.evidence("check", outcome.evidence())
        report.facts["backup"] = {"path": str(output), "removed": outcome.removed, "sha256": outcome.sha256,
                                  "hits": [h.as_dict() for h in scan.hits]}
        record["removed"] = outcome.removed
        state = "it was removed" if outcome.removed else f"it could NOT be removed ({outcome.error})"
        return [f"backup {output.name} holds plaintext secret(s) at {scan.describe_hits()}; {state}: keep "
                "plaintext secrets out of what risk.backup.command archives, or write an encrypted backup"]
    if scan.error:
        return [f"backup {output} cannot be scanned for secrets: {scan.error}"]
    problems = []
    data = {"bytes": output.stat().st_size, **({"members": rehearsal.members, "restored_bytes":
                                                 rehearsal.restored_bytes} if rehearsal.archive else {})}
    evidence = report.evidence("check", Evidence.file(output, summary=f"backup {output.name}: {data['bytes']} bytes"
                                                      + (f", {rehearsal.members} member(s) read back"
                                                         if rehearsal.archive else ""), **data))
    # the tool's own word on what it wrote (sha256sum format on stdout) against the file read now
    told = reported_digest(result.stdout, output)
    record.update(sha256=evidence.sha256, tool_sha256=told, **data)
    if told is not None and told != evidence.sha256:
        problems.append(f"backup {output.name} has sha256 {str(evidence.sha256)[:12]}, but the backup command "
                        f"reported {told[:12]}: the file changed after it was written")
    # completeness: every file the spec names comes back byte for byte
    required: dict[str, str] = {}
    for index, relative in enumerate(backup.contents):
        field = f"risk.backup.contents[{index}]"
        try:
            path = ctx.spec.input_path(field, relative)
            required[relative] = sha256_file(path)
        except (OSError, ValueError) as exc:
            problems.append(f"{field} {relative}: cannot be read to compare with the backup ({exc})")
    if required and not rehearsal.archive:
        problems.append(f"risk.backup.contents names {len(required)} file(s), but {output.name} is not a tar or zip "
                        "archive to look into")
    elif required:
        missing, rows = missing_contents(rehearsal, required, output.name)
        problems.extend(missing)
        record["contents"] = rows
        report.evidence("check", Evidence(kind="computed", source=f"{output.name} members vs risk.backup.contents",
                                          summary=f"{len(rows) - len(missing)} of {len(rows)} required file(s) "
                                                  "restored byte for byte", data={"contents": rows}))
    report.facts["backup"] = {"path": str(output), "sha256": evidence.sha256, **data}
    return problems


# ------------------------------------------------------------------------------ verification matrix
PROOFS: dict[str, ItemProof] = {
    "readiness.read": ItemProof(
        evidence="each provided document (runbook, rollback procedure, readiness.documents): its sha256, size, "
                 "headings with the text under them, and whether it names the service",
        oracle="the spec: the sections it requires per document (readiness.runbook_sections, rollback_sections, "
               "documents[].sections), the minimum size (min_document_bytes, min_bytes) and the service name",
        fails_when="the runbook is 1 byte long (no sections, the service not named)",
        test=f"{TEST_FILE}::test_readiness_read_fails_on_a_one_byte_runbook"),
    "readiness.verify": ItemProof(
        evidence="every spec value looser than the standard with the waiver covering it, and the spec file re-read "
                 "from disk (sha256, the standards that differ from the run's)",
        oracle="the package's standard (the seed's minimum gates and the package defaults in spec_relaxations) with "
               "the spec's waivers, and the spec file as it is on disk now (a run executes the spec its DAG was "
               "parsed from)",
        fails_when="the spec file is changed after the run's DAG was parsed (a waiver withdrawn, a gate raised): "
                   "the run would hold the release to standards the spec no longer states",
        test=f"{TEST_FILE}::test_readiness_verify_fails_when_the_spec_file_changed_after_parsing"),
    "readiness.check": ItemProof(
        evidence="the target's state, the active version's health checks answered live, its metrics, free disk, "
                 "a loopback port bound",
        oracle="the live target and its service (HTTP answers), the operating system (disk usage, bind)",
        fails_when="the active version answers its health check with 503",
        test=f"{TEST_FILE}::test_readiness_fails_on_unhealthy_active_version"),
    "risk_assessment.read": ItemProof(
        evidence="git rev-parse, rev-list --count and log --name-only of the range since the last successful "
                 "release: commits, files, exit codes",
        oracle="the git history of risk.repo (git, not the duty, lists the change set)",
        fails_when="risk.repo is not a git repository",
        test=f"{TEST_FILE}::test_risk_assessment_not_a_git_repo_fails_read"),
    "risk_assessment.verify": ItemProof(
        evidence="the score and level from RISK_RULES over every commit of the range, the rules fired with their "
                 "matches and mitigations",
        oracle="the git range (commit subjects, bodies and files) scored by the documented rules, the spec's "
               "approval gate (approvals.required_for: a high risk passes only when people approve it in Airflow "
               "before traffic moves) and risk.max_commits",
        fails_when="a breaking migration commit in the range with no approval gate for it (or a range longer "
                   "than risk.max_commits)",
        test=f"{TEST_FILE}::test_risk_assessment_high_risk_without_approval_blocks"),
    "risk_assessment.check": ItemProof(
        evidence="the dependency files of the range pin by pin (git show at both ends); the backup command's exit "
                 "code and printed sha256, the archive read back to the end, the files it must restore compared by "
                 "sha256, the secret scan",
        oracle="git, the backup tool's exit code and its own digest, the archive's checksums (gzip/zip CRC), and "
               "the files risk.backup.contents names as they are on disk now",
        fails_when="the backup does not hold a file the spec says it must restore (or the command fails, the "
                   "archive is corrupt or holds a plaintext secret)",
        test=f"{TEST_FILE}::test_risk_assessment_check_fails_when_the_backup_misses_a_file_it_must_restore"),
}
