"""Phase 8 duties: release notes (with the deployment documentation) and training (with the knowledge base).

Both steps read the change set from git again: the risk step handed on the range's ends
(``facts["from_sha"]``, ``facts["source_sha"]``, the previous release's commit and the new one),
and :func:`gendev_release.changelog.read_range` asks git for every commit between them, limited to
``risk.paths``. Git's list is the oracle the documents are judged against, whether this step
generated them or a person wrote them (``release_notes.path``, ``training.materials``):

* ``release_notes``: every commit of git's range in the notes once, by short hash and subject, in
  its Conventional Commits section or under "Other changes", breaking ones called out; a plain
  Summary naming the version, every feature and every breaking change, without hashes, and a
  technical section. The deployment documentation is written from the phase 4-5 reports and
  checked against the target's state read again.
* ``training``: every user-facing change (feat, fix, breaking, or touching
  ``training.user_facing_paths``, as git says) has an entry in the training materials and the
  knowledge-base updates; every audience (``training.audiences`` and the
  ``notifications.stakeholders`` keys) has a section covering each of them. Lessons learned come
  from this run's findings, earlier attempts and durations against the history.
"""

from __future__ import annotations

import re
from pathlib import Path

from gendev_release.catalogue import all_steps
from gendev_release.changelog import (
    BREAKING,
    GitRange,
    RangeRead,
    audit_notes,
    audit_summary,
    compare_with_handed_on,
    counts,
    parse_notes,
    read_range,
    render_notes,
)
from gendev_release.context import DutyContext, safe_name
from gendev_release.doc_checks import names_service
from gendev_release.duties.base import duty
from gendev_release.duties.common import record_input_file, target_evidence
from gendev_release.evidence_store import EvidenceError
from gendev_release.facts import ChangeSet, handed_on
from gendev_release.report import AgentReport, Evidence, ReportBuilder, utcnow
from gendev_release.run_documents import (
    DEPLOYMENT_STEPS,
    EarlierAttempt,
    deployment_problems,
    render_deployment,
    render_lessons,
)
from gendev_release.run_record import RecordError, ReleaseHistory, RunRecordStore
from gendev_release.targets.base import TargetStatus
from gendev_release.training_material import (
    UserFacingChange,
    audiences_of,
    audit_audiences,
    audit_entries,
    parse_training,
    render_kb_updates,
    render_training,
    user_facing_changes,
)
from gendev_release.verification_matrix import ItemProof

TEST_FILE = "tests/duties/test_post_deployment.py"
#: The catalogue's phase 8 deliverables, each a file of its own, and the step that delivers it.
DELIVERABLES = {"Release notes": "release_notes", "Deployment documentation": "release_notes",
                "Training materials": "training", "Knowledge base updates": "training",
                "Lessons learned": "training"}
MAX_NOTES = 60

PROOFS: dict[str, ItemProof] = {
    "release_notes.read": ItemProof(
        evidence="git log FROM..TO -- risk.paths run again in this step (both ends checked with git cat-file, "
                 "the commit list); the release notes read back (generated, or release_notes.path) with sha256 "
                 "and title; the deployment documentation written from the phase 4-5 reports and the target's "
                 "state read again",
        oracle="git itself (the range's ends must be commits of risk.repo, the risk step's handed-on commits must "
               "be in git's range), the run's service and version, and the live target against the slot "
               "execute_strategy recorded",
        fails_when="the history was rewritten after the risk step (the new version's commit is gone from the "
                   "repository); release_notes.path missing, empty or titled for another version; the target no "
                   "longer serves the version execute_strategy switched to",
        test=f"{TEST_FILE}::test_history_rewritten_after_the_risk_step_fails_read"),
    "release_notes.verify": ItemProof(
        evidence="the release notes parsed back: each hash-led list item and the section it sits in",
        oracle="git's commit list of the range read in this step: every commit once by short hash and subject, "
               "feat under Features, fix under Bug fixes, other types under their section or Other changes, "
               "non-conventional commits under Other changes, breaking ones also under Breaking changes",
        fails_when="hand-written release notes (release_notes.path) leave out one commit of the range, list one "
                   "twice, file it under the wrong section, or list a commit outside the range",
        test=f"{TEST_FILE}::test_hand_written_notes_missing_one_commit_fail_verify"),
    "release_notes.check": ItemProof(
        evidence="the notes' Summary section and headings, parsed back",
        oracle="git's range (its features and breaking changes, its hashes) and the run's version: the Summary "
               "names the version, each new feature and each breaking change in words, carries no hash; a "
               "technical section exists",
        fails_when="hand-written notes whose Summary does not mention a breaking change of the range (or has no "
                   "Summary, or quotes commit hashes, or there is no technical section)",
        test=f"{TEST_FILE}::test_hand_written_summary_hiding_the_breaking_change_fails_check"),
    "training.read": ItemProof(
        evidence="git's range read again (as for release_notes), the training materials (generated, or "
                  "training.materials) and the knowledge-base updates read back with sha256 and title",
        oracle="git itself, and the run's service and version the documents' titles must name",
        fails_when="training.materials written for an earlier release (its title names another version), "
                   "missing or empty; the range's commits are gone from git",
        test=f"{TEST_FILE}::test_training_materials_of_an_earlier_release_fail_read"),
    "training.verify": ItemProof(
        evidence="the entries of the '## Changes' section of the training materials and of the knowledge-base "
                 "updates, parsed back by short hash",
        oracle="git's range: its feat, fix and breaking commits and those git lists under "
               "training.user_facing_paths; an entry for a commit outside the range is stale material",
        fails_when="hand-written training materials without an entry for one user-facing change of the range",
        test=f"{TEST_FILE}::test_hand_written_training_missing_a_user_facing_change_fails_verify"),
    "training.check": ItemProof(
        evidence="the 'For <audience>' sections of the training materials, parsed back, and the changes each cites",
        oracle="the spec's audiences (training.audiences and notifications.stakeholders keys) and git's "
               "user-facing changes: every audience has a section covering every change",
        fails_when="hand-written training materials with no section for one stakeholder audience (business), or "
                   "a section that says nothing about a user-facing change",
        test=f"{TEST_FILE}::test_hand_written_training_without_the_business_section_fails_check"),
}


# ============================================================================ the range from git
def git_range_of(ctx: DutyContext) -> tuple[GitRange | None, list[str], str]:
    """The range the risk step assessed, as handed on: ``(range, handed-on shas, problem)``."""
    changes, problem = handed_on(ctx, ChangeSet)
    if changes is None:
        return None, [], f"the commits between versions are unknown: {problem}"
    if not changes.source_sha:
        return None, [], "the risk_assessment report names no source_sha: the new version's commit is unknown"
    try:
        repo = ctx.spec.repo_path()
    except Exception as exc:  # PathEscape and friends: a clear message, never a traceback
        return None, [], f"risk.repo {ctx.spec.risk.repo!r} cannot be used: {exc}"
    return (GitRange(repo=repo, to_sha=changes.source_sha, from_sha=changes.from_sha,
                     paths=tuple(ctx.spec.risk.paths)), [c.sha for c in changes.commits], "")


def read_git_range(ctx: DutyContext, report: ReportBuilder) -> tuple[RangeRead | None, list[str]]:
    """Ask git for the range again; record it as ``read`` evidence. Returns the read and the read problems."""
    git_range, handed, problem = git_range_of(ctx)
    if git_range is None:
        return None, [problem]
    read = read_range(git_range, user_facing_paths=list(ctx.spec.training.user_facing_paths))
    report.evidence("read", read.evidence())
    if not read.ok:
        return None, [f"git cannot list the range {git_range.describe()}: {read.problem}"]
    not_in_git, not_handed = compare_with_handed_on(read, handed)
    problems = []
    if not_in_git:
        problems.append(f"the risk step handed on commit(s) that git does not list in {git_range.describe()}: "
                        f"{', '.join(not_in_git)}")
    if not_handed:
        report.findings.append(f"git lists {len(not_handed)} commit(s) the risk step did not assess "
                               f"(risk.max_commits={ctx.spec.risk.max_commits}): {', '.join(not_handed[:10])}")
    return read, problems


def previous_release(ctx: DutyContext, from_sha: str | None) -> str | None:
    """The version released from ``from_sha`` (the history), else the version serving when the run began."""
    if from_sha is None:
        return None
    for entry in reversed(ReleaseHistory(ctx.paths.home, ctx.paths.dag_id).entries()):
        if entry.source_sha == from_sha and entry.version:
            return entry.version
    try:
        record = RunRecordStore(ctx.paths.home).load(ctx.paths.dag_id, ctx.run_id)
    except RecordError:
        return None
    return record.previous_version if record else None


def names_version(text: str, version: str) -> bool:
    """``version`` appears as a whole version (``1.1.0`` is not found in ``1.1.0-rc1`` or ``11.1.0``)."""
    return re.search(rf"(?<![0-9A-Za-z.+-]){re.escape(version)}(?![0-9A-Za-z+-]|\.[0-9A-Za-z])", text) is not None


def title_problem(text: str, *, label: str, service: str, version: str) -> str | None:
    """A document's first ``#`` heading must name the service and this version."""
    title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), None)
    if title is None:
        return f"{label} has no title ('# {service} {version} ...')"
    if not names_service(title, service) or not names_version(title, version):
        return f"{label}: its title {title!r} does not name {service} {version} (written for another release?)"
    return None


def provided_or_generated(ctx: DutyContext, report: ReportBuilder, *, field: str, given: str | None,
                          generated: Path, render: str | None) -> tuple[Path | None, str | None, str]:
    """The document a person provided (``field``), or the one this step writes from ``render``.

    :return: ``(path, problem, origin)``; path is None when there is nothing to read.
    """
    if given:
        try:
            path = ctx.spec.input_path(field, given)
        except Exception as exc:
            return None, f"{field} {given!r} is refused: {exc}", "provided"
        problem = record_input_file(report, "read", path, field)
        return (None if problem else path), problem, "provided"
    if render is None:
        return None, None, "generated"
    generated.parent.mkdir(parents=True, exist_ok=True)
    generated.write_text(render, encoding="utf-8")
    report.evidence("read", Evidence.file(generated, summary=f"{generated.name} generated from git's range"))
    return generated, None, "generated"


# ============================================================================== release notes
def write_deployment_documentation(ctx: DutyContext, report: ReportBuilder) -> list[str]:
    """Document the deployment from the phase 4-6 reports and the target now; return the disagreements."""
    reports = {step: ctx.earlier(step) for step in DEPLOYMENT_STEPS}
    status: TargetStatus | None = None
    error = None
    try:
        status = ctx.target.status()
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    if status is not None:
        report.evidence("read", target_evidence(ctx, status))
    for step, step_report in reports.items():
        if step_report is not None:
            report.evidence("read", Evidence(kind="computed", source=f"{step} report of this run",
                                             summary=f"{step}: {step_report.status}",
                                             data={"facts": sorted(step_report.facts), "metrics": step_report.metrics}))
    problems = deployment_problems(ctx.version, reports, status, error)
    path = ctx.paths.workdir / "docs" / "deployment.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_deployment(
        service=ctx.spec.service, version=ctx.version, environment=ctx.spec.environment,
        strategy=ctx.spec.strategy.kind, run_id=ctx.run_id, target_kind=ctx.target.kind,
        read_at=utcnow().isoformat(timespec="seconds"), reports=reports, status=status, problems=problems),
        encoding="utf-8")
    report.evidence("read", Evidence.file(path, summary=f"deployment documentation: {len(problems)} disagreement(s)"))
    report.deliver("Deployment documentation", path)
    return problems


@duty("release_notes")
def release_notes(ctx: DutyContext, report: ReportBuilder) -> None:
    """Release notes judged against git's range; the deployment documentation against the target."""
    problems = write_deployment_documentation(ctx, report)
    read, range_problems = read_git_range(ctx, report)
    problems += range_problems
    given = ctx.spec.release_notes.path
    rendered = None
    if read is not None and not given:
        rendered = render_notes(service=ctx.spec.service, version=ctx.version, environment=ctx.spec.environment,
                                date=f"{utcnow():%Y-%m-%d}", read=read,
                                previous=previous_release(ctx, read.range.from_sha))
    path, problem, origin = provided_or_generated(ctx, report, field="release_notes.path", given=given,
                                                  generated=ctx.paths.workdir / "docs" / "release-notes.md",
                                                  render=rendered)
    if problem:
        problems.append(problem)
    text = path.read_text(encoding="utf-8", errors="replace") if path is not None else None
    if text is not None and path is not None:
        report.deliver("Release notes", path)
        label = f"release notes {path.name} ({origin})"
        problems += [p for p in [title_problem(text, label=label, service=ctx.spec.service, version=ctx.version)] if p]
    report.verdict("read", not problems, "; ".join(problems) or
                   f"git lists {len(read.commits) if read else 0} commit(s) {read.range.describe() if read else ''}; "
                   f"{origin} release notes read back; deployment documentation agrees with the target")
    if read is None or text is None or path is None:
        report.fail_items(("verify", "check"), "no release notes to judge against git's range: "
                  + "; ".join(problems or ["git's range is unknown"]))
        return

    commits = read.commits
    parsed = parse_notes(text)
    audit = audit_notes(parsed, commits)
    n = counts(commits)
    report.metrics.update({key: float(n[key]) for key in ("commits", "features", "fixes", "breaking", "other")})
    report.facts["release_notes"] = {"path": str(path), "origin": origin, **n}
    report.evidence("verify", Evidence(
        kind="computed", source=f"{path.name} vs git log {read.range.revision}",
        summary=f"{len(parsed.entries)} hash-led entr(ies) against {len(commits)} commit(s)",
        data={"found": audit.found, "missing": audit.missing, "duplicated": audit.duplicated,
              "misgrouped": audit.misgrouped, "without_subject": audit.without_subject,
              "breaking_not_called_out": audit.breaking_not_called_out, "not_in_range": audit.not_in_range}))
    sections = ", ".join(f"{s} {len(v)}" for s, v in audit.found.items() if s != BREAKING)
    report.verdict("verify", audit.ok, "; ".join(audit.problems()) or
                   f"all {len(commits)} commit(s) of git's range listed once by hash and subject"
                   + (f" ({sections}); {n['breaking']} breaking called out" if commits else ""))

    summary_problems = audit_summary(parsed, commits, ctx.version, (read.range.from_sha, read.range.to_sha))
    report.evidence("check", Evidence(kind="computed", source=f"{path.name} Summary and headings",
                                      summary=f"headings: {', '.join(parsed.headings[:12])}",
                                      data={"summary_bytes": len(parsed.summary or ""), "technical": parsed.technical,
                                            "problems": summary_problems}))
    report.verdict("check", not summary_problems, "; ".join(summary_problems) or
                   f"plain-language Summary (version {ctx.version}, {n['features']} feature(s) and {n['breaking']} "
                   "breaking change(s) named, no hashes) and a technical section")


# =================================================================================== training
def earlier_reports(ctx: DutyContext) -> dict[str, AgentReport]:
    """This run's reports of every step before training, in catalogue order."""
    reports = {}
    for _, step in all_steps():
        if step.id == "training":
            break
        found = ctx.earlier(step.id)
        if found is not None:
            reports[step.id] = found
    return reports


def run_notes(reports: dict[str, AgentReport]) -> list[str]:
    """What support and operations should know: each step's findings and blockers, first line each."""
    notes = []
    for step_id, step_report in reports.items():
        for text in [*step_report.blocking_issues, *step_report.findings]:
            first = (text.strip().splitlines() or [""])[0][:300]
            if first and f"{step_id}: {first}" not in notes:
                notes.append(f"{step_id}: {first}")
    return notes[:MAX_NOTES]


def earlier_attempts(ctx: DutyContext) -> list[EarlierAttempt]:
    """Step reports of this run that a re-run moved aside in the evidence store."""
    reports = {f"{safe_name(step.id)}.json": step.id for _, step in all_steps()}
    attempts = []
    try:
        entries = ctx.store.entries()
        for entry in entries:
            if entry.op != "move" or entry.moved_from not in reports:
                continue
            try:
                old = AgentReport.model_validate_json(ctx.store.read(entry.name))
            except (OSError, ValueError):
                attempts.append(EarlierAttempt(reports[entry.moved_from], entry.name, "unreadable"))
                continue
            attempts.append(EarlierAttempt(old.step_id, entry.name, old.status, list(old.blocking_issues[:3])))
    except (EvidenceError, OSError):
        return attempts
    return attempts


def write_lessons(ctx: DutyContext, report: ReportBuilder, reports: dict[str, AgentReport]) -> Path:
    history = [e.model_dump(mode="json") for e in ReleaseHistory(ctx.paths.home, ctx.paths.dag_id).entries()]
    try:
        record = RunRecordStore(ctx.paths.home).load(ctx.paths.dag_id, ctx.run_id)
    except RecordError:
        record = None
    attempts = earlier_attempts(ctx)
    text, follow_ups = render_lessons(
        service=ctx.spec.service, version=ctx.version, run_id=ctx.run_id, reports=reports, history=history,
        history_file=str(ctx.paths.history_file), attempts=attempts,
        run_attempts=[a.model_dump(mode="json") for a in record.attempts] if record else [])
    path = ctx.paths.workdir / "docs" / "lessons-learned.md"
    path.write_text(text, encoding="utf-8")
    report.evidence("read", Evidence.file(path, summary=f"lessons learned: {len(follow_ups)} follow-up(s), "
                                                        f"{len(attempts)} earlier attempt(s), {len(history)} "
                                                        "history entr(ies)"))
    report.facts["follow_ups"] = follow_ups
    report.deliver("Lessons learned", path)
    return path


@duty("training")
def training(ctx: DutyContext, report: ReportBuilder) -> None:
    """Training materials and KB updates judged against git's user-facing changes and the spec's audiences."""
    docs = ctx.paths.workdir / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    reports = earlier_reports(ctx)
    write_lessons(ctx, report, reports)
    read, problems = read_git_range(ctx, report)
    audiences = audiences_of(ctx.spec.training.audiences, ctx.spec.notifications.stakeholders)
    changes: list[UserFacingChange] = user_facing_changes(read) if read is not None else []
    given = ctx.spec.training.materials
    rendered = kb_path = None
    if read is not None:
        range_text = read.range.describe()
        if not given:
            rendered = render_training(service=ctx.spec.service, version=ctx.version, range_text=range_text,
                                       commits=len(read.commits), changes=changes, audiences=audiences)
        kb_path = docs / "knowledge-base-updates.md"
        kb_path.write_text(render_kb_updates(service=ctx.spec.service, version=ctx.version, range_text=range_text,
                                             changes=changes, audiences=audiences, notes=run_notes(reports)),
                           encoding="utf-8")
        report.evidence("read", Evidence.file(kb_path, summary=f"knowledge-base updates: {len(changes)} article(s)"))
        report.deliver("Knowledge base updates", kb_path)
    path, problem, origin = provided_or_generated(ctx, report, field="training.materials", given=given,
                                                  generated=docs / "training.md", render=rendered)
    if problem:
        problems.append(problem)
    text = path.read_text(encoding="utf-8", errors="replace") if path is not None else None
    if text is not None and path is not None:
        report.deliver("Training materials", path)
        problems += [p for p in [title_problem(text, label=f"training materials {path.name} ({origin})",
                                               service=ctx.spec.service, version=ctx.version)] if p]
    kb_text = kb_path.read_text(encoding="utf-8") if kb_path is not None else None
    if kb_text is not None:
        problems += [p for p in [title_problem(kb_text, label="knowledge-base-updates.md", service=ctx.spec.service,
                                               version=ctx.version)] if p]
    report.verdict("read", not problems, "; ".join(problems) or
                   f"{origin} training materials and knowledge-base updates read back for {len(changes)} "
                   f"user-facing change(s) of {len(read.commits) if read else 0} commit(s)")
    if read is None or text is None or kb_text is None or path is None:
        report.fail_items(("verify", "check"), "no training materials to judge against git's range: "
                  + "; ".join(problems or ["git's range is unknown"]))
        return

    parsed = parse_training(text)
    entry_problems, entry_data = audit_entries(parsed, changes, read.commits, f"training materials {path.name}")
    kb_problems, kb_data = audit_entries(parse_training(kb_text), changes, read.commits, "knowledge-base-updates.md")
    report.metrics.update({"features": float(sum(c.commit.type == "feat" for c in changes)),
                           "user_facing_changes": float(len(changes)),
                           "kb_entries": float(sum(1 for line in kb_data["entries"].values() if line is not None)),
                           "audiences": float(len(audiences))})
    report.facts["training"] = {"path": str(path), "origin": origin, "audiences": audiences,
                                "user_facing": [{"sha": c.commit.sha, "reasons": list(c.reasons)} for c in changes]}
    report.evidence("verify", Evidence(
        kind="computed", source=f"{path.name} and knowledge-base-updates.md vs git log {read.range.revision}",
        summary=f"{len(changes)} user-facing change(s) of {len(read.commits)} commit(s)",
        data={"user_facing": {c.commit.short: list(c.reasons) for c in changes}, "training": entry_data,
              "knowledge_base": kb_data}))
    verify_problems = entry_problems + kb_problems
    report.verdict("verify", not verify_problems, "; ".join(verify_problems) or
                   (f"every user-facing change ({len(changes)}: "
                    + ", ".join(f"{c.commit.short} {'/'.join(c.reasons)}" for c in changes)
                    + ") has a training entry and a knowledge-base article" if changes else
                    f"no user-facing change among {len(read.commits)} commit(s): none needs an entry"))

    audience_problems, coverage = audit_audiences(parsed, audiences, changes, f"training materials {path.name}")
    report.evidence("check", Evidence(kind="computed", source=f"{path.name} audience sections",
                                      summary=f"{len(audiences)} audience(s): {', '.join(audiences)}",
                                      data={"coverage": coverage, "audiences": audiences}))
    report.verdict("check", not audience_problems, "; ".join(audience_problems) or
                   f"a section for each of {', '.join(audiences)} covering all {len(changes)} user-facing change(s)")
