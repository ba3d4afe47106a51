"""Phase 8: release_notes and training, judged against the git range read again and the spec's audiences.

Every test works on a real temporary git repository (``risk.repo: repo`` inside the spec folder):
the real risk step reads the change set since the previous release (named by the history file) and
hands on the range; the phase 8 duties ask git again. Documents a person would write are given
through ``release_notes.path`` and ``training.materials``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from duty_helpers import FakeService, FakeTarget, commit, git, go_live, item, make_ctx, merge, run_step, save_report
from item_proof import assert_item_fails

from gendev_release.catalogue import PHASES, deliverable_gaps
from gendev_release.changelog import parse_notes
from gendev_release.context import DutyContext
from gendev_release.duties.base import run_duty
from gendev_release.run_record import HistoryEntry, ReleaseHistory
from gendev_release.training_material import parse_training

NOTES_PATH = "notes/1.1.0.md"
TRAINING_PATH = "training/1.1.0.md"


# ======================================================================================= setup
def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "spec" / "repo"  # inside the spec folder: risk.repo is "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "--quiet", "-b", "main")
    return repo


def _history(repo: Path) -> dict[str, str]:
    """The previous release (``base``) and five commits after it, one of them not conventional."""
    shas = {"base": commit(repo, "feat: first release of the service", {"src/app.py": "v1\n"})}
    shas["search"] = commit(repo, "feat(api): add item search", {"src/search.py": "v1\n"})
    shas["empty"] = commit(repo, "fix(api): handle an empty item list", {"src/app.py": "v2\n"})
    shas["checkout"] = commit(repo, "feat(ui)!: new checkout flow", {"ui/checkout.js": "v2\n"})
    shas["docs"] = commit(repo, "docs: update the runbook", {"docs/runbook.md": "v2\n"})
    shas["plain"] = commit(repo, "Tidy the item list page", {"ui/items.html": "v2\n"})
    return shas


def _released(ctx: DutyContext, sha: str, version: str = "1.0.0", **phase_seconds: float) -> None:
    ReleaseHistory(ctx.paths.home, ctx.paths.dag_id).append(HistoryEntry(
        run_id="manual__earlier", version=version, outcome="success", verified=True, source_sha=sha,
        phase_seconds=phase_seconds))


def _deploy(ctx: DutyContext, target: FakeTarget) -> None:
    """1.1.0 live on green, 1.0.0 kept on blue, recorded by phases 4-5 as their duties do."""
    go_live(target, "green", FakeService(ctx.version), previous=("blue", FakeService("1.0.0")))
    status = target.status()
    assert status.active is not None and status.previous is not None
    save_report(ctx, "provisioning", {"staged": status.active.as_dict(),
                                      "planned_changes": {"total": 1, "by_action": {"create": 1}, "destructive": []}})
    save_report(ctx, "hardening", {"controls": {"security_headers": {"passed": True, "detail": "2 headers"}},
                                   "compliance_pct": 100.0}, metrics={"compliance_pct": 100.0})
    save_report(ctx, "execute_strategy",
                {"active": status.active.as_dict(), "previous": status.previous.as_dict(),
                 "active_before": status.previous.as_dict(), "traffic_moved": True,
                 "rollback_rehearsal": {"rehearsed": True, "problems": []},
                 "failed_switch_requests_by_path": {"/healthz": 0}},
                metrics={"health_pass_pct": 100.0, "failed_switch_requests": 0.0})


def _after_risk(tmp_path: Path, target: FakeTarget, overrides: dict[str, Any] | None = None,
                previous: str | None = None, deploy: bool = True, **phase_seconds: float) -> DutyContext:
    """A context whose risk_assessment read the repository's history since ``previous``, as in a run."""
    ctx = make_ctx(tmp_path, target, merge({"risk": {"repo": "repo", "paths": []}}, overrides or {}))
    if previous is not None:
        _released(ctx, previous, **phase_seconds)
    risk = run_step(ctx, "risk_assessment")
    assert item(risk, "read").passed, item(risk, "read").detail
    if deploy:
        _deploy(ctx, target)
    return ctx


def _write(tmp_path: Path, relative: str, text: str) -> None:
    path = tmp_path / "spec" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _notes(ctx: DutyContext) -> str:
    return (ctx.paths.workdir / "docs" / "release-notes.md").read_text(encoding="utf-8")


def _hand_notes(shas: dict[str, str], *, skip: tuple[str, ...] = (), version: str = "1.1.0",
                summary: str = "Version 1.1.0 brings Add item search and a New checkout flow (breaking: old "
                               "checkout links stop working).") -> str:
    """Release notes as a person writes them: 7-digit hashes, their own headings."""
    entries = {"search": "feat(api): add item search", "empty": "fix(api): handle an empty item list",
               "checkout": "feat(ui)!: new checkout flow", "docs": "docs: update the runbook",
               "plain": "Tidy the item list page"}

    def line(name: str) -> list[str]:
        return [] if name in skip else [f"- `{shas[name][:7]}` {entries[name]}"]

    return "\n".join([f"# demo {version} release notes", "", "## Highlights", "", summary, "",
                      "## Breaking changes", "", f"- `{shas['checkout'][:7]}` the old /checkout links stop working",
                      "", "## Changelog", "", "### New features", *line("search"), *line("checkout"), "",
                      "### Fixed", *line("empty"), "", "### Other", *line("docs"), *line("plain"), ""])


# ============================================================================== release notes
def test_generated_notes_list_every_commit_of_the_git_range_in_its_section(tmp_path, empty_target) -> None:
    shas = _history(_repo(tmp_path))
    ctx = _after_risk(tmp_path, empty_target, previous=shas["base"])

    report = run_step(ctx, "release_notes")

    assert report.status == "passed", report.blocking_issues
    verify = item(report, "verify")
    assert verify.evidence[0].data["found"] == {
        "Breaking changes": [shas["checkout"][:12]], "Other changes": [shas["plain"][:12]],
        "Documentation": [shas["docs"][:12]], "Features": [shas["checkout"][:12], shas["search"][:12]],
        "Bug fixes": [shas["empty"][:12]]}
    assert verify.detail.startswith("all 5 commit(s) of git's range listed once by hash and subject")
    text = _notes(ctx)
    parsed = parse_notes(text)
    assert parsed.summary is not None and parsed.summary.startswith(
        "Version 1.1.0 of demo contains 5 changes: 2 new features, 1 fix and 2 other changes; 1 of them is breaking.")
    assert "Changes since 1.0.0" in text  # the previous version, named from the history
    assert f"- `{shas['base'][:12]}`" not in text  # the previous release's commit is not in the range
    git_list = next(e for e in item(report, "read").evidence if e.kind == "git")
    assert [c["sha"] for c in git_list.data["commits"]] == [shas[n] for n in ("plain", "docs", "checkout", "empty",
                                                                              "search")]
    assert report.metrics == {"commits": 5.0, "features": 2.0, "fixes": 1.0, "breaking": 1.0, "other": 2.0}
    assert [d.name for d in report.deliverables] == ["Deployment documentation", "Release notes"]


def test_a_non_conventional_commit_is_listed_under_other_changes(tmp_path, empty_target) -> None:
    repo = _repo(tmp_path)
    base = commit(repo, "Foundation: package layout", {"src/app.py": "v1\n"})
    ordinary = commit(repo, "Builtin duties for phases 5-8 (strategy, monitoring)", {"src/duties.py": "v1\n"})
    fix = commit(repo, "fix: handle an empty list", {"src/app.py": "v2\n"})
    ctx = _after_risk(tmp_path, empty_target, previous=base)

    report = run_step(ctx, "release_notes")

    assert report.status == "passed", report.blocking_issues
    found = item(report, "verify").evidence[0].data["found"]
    assert found == {"Bug fixes": [fix[:12]], "Other changes": [ordinary[:12]]}
    other = _notes(ctx).split("### Other changes", 1)[1]
    assert f"- `{ordinary[:12]}` Builtin duties for phases 5-8 (strategy, monitoring)" in other
    assert report.metrics["other"] == 1 and report.metrics["features"] == 0


@pytest.mark.item("release_notes.read")
def test_history_rewritten_after_the_risk_step_fails_read(tmp_path, empty_target) -> None:
    repo = _repo(tmp_path)
    shas = _history(repo)
    ctx = _after_risk(tmp_path, empty_target, previous=shas["base"])
    # someone force-pushes a history without the newest commit; it is gone from the repository
    git(repo, "reset", "--hard", "--quiet", shas["docs"])
    git(repo, "reflog", "expire", "--expire=now", "--all")
    git(repo, "gc", "--prune=now", "--quiet")

    report = run_step(ctx, "release_notes")

    assert_item_fails(report, "release_notes.read", because=f"source commit {shas['plain'][:12]} is not a commit of")
    assert not item(report, "verify").passed and not item(report, "check").passed


def test_a_target_no_longer_serving_the_version_fails_read(tmp_path, empty_target) -> None:
    shas = _history(_repo(tmp_path))
    ctx = _after_risk(tmp_path, empty_target, previous=shas["base"])
    empty_target.rollback("manual__someone-else")  # 1.0.0 serves again

    report = run_step(ctx, "release_notes")

    assert_item_fails(report, "release_notes.read", because="the target serves 1.0.0 on slot blue now, not 1.1.0")
    documentation = next(d for d in report.deliverables if d.name == "Deployment documentation")
    assert "- PROBLEM: the target serves 1.0.0" in Path(documentation.path).read_text()


def test_deployment_documentation_comes_from_the_phase_4_5_reports(tmp_path, empty_target) -> None:
    shas = _history(_repo(tmp_path))
    ctx = _after_risk(tmp_path, empty_target, previous=shas["base"])

    report = run_step(ctx, "release_notes")

    text = (ctx.paths.workdir / "docs" / "deployment.md").read_text()
    green = empty_target.slot_url("green")
    assert f"- Active: slot green version 1.1.0 at {green}" in text
    assert f"- Serving before: slot blue version 1.0.0 at {empty_target.slot_url('blue')}" in text
    assert "- Health checks after the switch: 100.0 % passing" in text
    assert "- Control security_headers: passed (2 headers)" in text
    assert "- the target serves 1.1.0 on the slot the deployment step recorded" in text
    assert item(report, "read").passed


def test_deployment_without_an_execute_strategy_report_fails_read(tmp_path, empty_target) -> None:
    shas = _history(_repo(tmp_path))
    ctx = _after_risk(tmp_path, empty_target, previous=shas["base"], deploy=False)

    report = run_step(ctx, "release_notes")

    assert_item_fails(report, "release_notes.read", because="no execute_strategy report in this run")


@pytest.mark.item("release_notes.verify")
def test_hand_written_notes_missing_one_commit_fail_verify(tmp_path, empty_target) -> None:
    shas = _history(_repo(tmp_path))
    _write(tmp_path, NOTES_PATH, _hand_notes(shas, skip=("empty",)))
    ctx = _after_risk(tmp_path, empty_target, {"release_notes": {"path": NOTES_PATH}}, previous=shas["base"])

    report = run_step(ctx, "release_notes")

    assert_item_fails(report, "release_notes.verify",
                      because=f"missing from the notes: {shas['empty'][:12]} ('fix(api): handle an empty item list')")
    assert item(report, "read").passed and item(report, "check").passed


def test_hand_written_notes_listing_every_commit_pass(tmp_path, empty_target) -> None:
    shas = _history(_repo(tmp_path))
    _write(tmp_path, NOTES_PATH, _hand_notes(shas))
    ctx = _after_risk(tmp_path, empty_target, {"release_notes": {"path": NOTES_PATH}}, previous=shas["base"])

    report = run_step(ctx, "release_notes")

    assert report.status == "passed", report.blocking_issues
    notes = next(d for d in report.deliverables if d.name == "Release notes")
    assert notes.path == str((tmp_path / "spec" / NOTES_PATH).resolve())
    assert not (ctx.paths.workdir / "docs" / "release-notes.md").exists()  # nothing generated over it
    assert item(report, "verify").evidence[0].data["found"]["Other changes"] == [shas["docs"][:12], shas["plain"][:12]]


def test_hand_written_notes_filing_a_commit_wrongly_or_naming_an_old_one_fail_verify(tmp_path, empty_target) -> None:
    shas = _history(_repo(tmp_path))
    text = _hand_notes(shas).replace("### Fixed\n", "### Fixed\n" + f"- `{shas['base'][:7]}` first release\n")
    text = text.replace(f"- `{shas['plain'][:7]}` Tidy", "- placeholder").replace(
        "### New features\n", f"### New features\n- `{shas['plain'][:7]}` Tidy the item list page\n")
    _write(tmp_path, NOTES_PATH, text)
    ctx = _after_risk(tmp_path, empty_target, {"release_notes": {"path": NOTES_PATH}}, previous=shas["base"])

    report = run_step(ctx, "release_notes")

    detail = item(report, "verify").detail
    assert f"{shas['plain'][:12]} ('Tidy the item list page') is under Features, expected Other changes" in detail
    assert f"entries naming no commit of the range: {shas['base'][:7]}" in detail


@pytest.mark.item("release_notes.check")
def test_hand_written_summary_hiding_the_breaking_change_fails_check(tmp_path, empty_target) -> None:
    shas = _history(_repo(tmp_path))
    _write(tmp_path, NOTES_PATH, _hand_notes(shas, summary="Version 1.1.0 brings Add item search."))
    ctx = _after_risk(tmp_path, empty_target, {"release_notes": {"path": NOTES_PATH}}, previous=shas["base"])

    report = run_step(ctx, "release_notes")

    assert_item_fails(report, "release_notes.check",
                      because=f"does not mention the breaking change 'New checkout flow' ({shas['checkout'][:12]})")
    assert item(report, "verify").passed


def test_hand_written_notes_with_hashes_in_the_summary_or_no_technical_section_fail_check(
        tmp_path, empty_target) -> None:
    shas = _history(_repo(tmp_path))
    text = _hand_notes(shas, summary=f"Version 1.1.0 ({shas['plain'][:10]}): Add item search, New checkout flow.")
    _write(tmp_path, NOTES_PATH, text.replace("## Changelog", "## Details"))
    ctx = _after_risk(tmp_path, empty_target, {"release_notes": {"path": NOTES_PATH}}, previous=shas["base"])

    report = run_step(ctx, "release_notes")

    detail = item(report, "check").detail
    assert f"the Summary contains commit hashes ['{shas['plain'][:10]}']" in detail
    assert "no technical section" in detail


def test_hand_written_notes_of_another_release_or_missing_fail_read(tmp_path, empty_target) -> None:
    shas = _history(_repo(tmp_path))
    _write(tmp_path, NOTES_PATH, _hand_notes(shas, version="1.0.0"))
    ctx = _after_risk(tmp_path, empty_target, {"release_notes": {"path": NOTES_PATH}}, previous=shas["base"])
    assert_item_fails(run_step(ctx, "release_notes"), "release_notes.read",
                      because="its title 'demo 1.0.0 release notes' does not name demo 1.1.0")

    other = make_ctx(tmp_path / "second", empty_target, {"release_notes": {"path": "notes/none.md"}})
    save_report(other, "risk_assessment", {"commits": [], "from_sha": None, "source_sha": shas["plain"]})
    assert "release_notes.path" in item(run_step(other, "release_notes"), "read").detail


def test_missing_risk_report_fails_read(tmp_path, empty_target) -> None:
    ctx = make_ctx(tmp_path, empty_target)

    report = run_step(ctx, "release_notes")

    assert not item(report, "read").passed
    assert "no risk_assessment report in this run" in item(report, "read").detail
    assert not (ctx.paths.workdir / "docs" / "release-notes.md").exists()


def test_release_without_commits_says_so(tmp_path, empty_target) -> None:
    shas = _history(_repo(tmp_path))
    ctx = _after_risk(tmp_path, empty_target, previous=shas["plain"])

    report = run_step(ctx, "release_notes")

    assert report.status == "passed", report.blocking_issues
    assert "contains no code changes since the previous release (0 changes)" in _notes(ctx)


def test_first_release_notes_list_every_commit_up_to_the_new_one(tmp_path, empty_target) -> None:
    shas = _history(_repo(tmp_path))
    ctx = _after_risk(tmp_path, empty_target)

    report = run_step(ctx, "release_notes")

    assert report.status == "passed", report.blocking_issues
    assert f"First release: up to {shas['plain'][:12]} (first release)." in _notes(ctx)
    assert report.metrics["commits"] == 6


def test_a_subject_citing_another_commit_does_not_count_that_commit_twice(tmp_path, empty_target) -> None:
    repo = _repo(tmp_path)
    base = commit(repo, "chore: start", {"src/items.py": "v0\n"})
    first = commit(repo, "feat(api): add items endpoint", {"src/items.py": "v1\n"})
    quoted = commit(repo, f"fix: follow-up to `{first[:7]}`", {"src/items.py": "v2\n"})
    plain = commit(repo, f"fix: follow-up to {first[:7]} for empty lists", {"src/items.py": "v3\n"})
    ctx = _after_risk(tmp_path, empty_target, previous=base)

    report = run_step(ctx, "release_notes")

    assert report.status == "passed", report.blocking_issues
    verify = item(report, "verify")
    assert verify.evidence[0].data["found"] == {"Features": [first[:12]], "Bug fixes": [plain[:12], quoted[:12]]}
    summary = parse_notes(_notes(ctx)).summary or ""
    assert first[:7] not in summary and "``" not in summary and "- Follow-up to for empty lists" in summary


# =================================================================================== training
def _hand_training(shas: dict[str, str], *, version: str = "1.1.0", skip_entry: tuple[str, ...] = (),
                   audiences: tuple[str, ...] = ("end-users", "support", "engineering", "business"),
                   extra_entries: tuple[str, ...] = ()) -> str:
    changes = ("search", "empty", "checkout", "plain")
    lines = [f"# Training for demo {version}", "", "## Changes", ""]
    lines += [f"### `{shas[n][:7]}` {n}" for n in changes if n not in skip_entry]
    lines += [f"### `{sha[:7]}` old" for sha in extra_entries]
    for audience in audiences:
        lines += ["", f"## For {audience}", ""]
        lines += [f"- `{shas[n][:7]}`: what {n} means for {audience}" for n in changes]
    return "\n".join(lines) + "\n"


def test_generated_training_covers_every_user_facing_change_for_every_audience(tmp_path, empty_target) -> None:
    shas = _history(_repo(tmp_path))
    ctx = _after_risk(tmp_path, empty_target, {"training": {"user_facing_paths": ["ui"]}}, previous=shas["base"])

    report = run_step(ctx, "training")

    assert report.status == "passed", report.blocking_issues
    user_facing = {entry["sha"]: entry["reasons"] for entry in report.facts["training"]["user_facing"]}
    assert user_facing == {shas["plain"]: ["touches a user-facing path"],
                           shas["checkout"]: ["breaking change", "new feature", "touches a user-facing path"],
                           shas["empty"]: ["fix"], shas["search"]: ["new feature"]}  # not docs
    # the spec's training audiences and the stakeholders' (business) each get a section covering all four
    assert report.facts["training"]["audiences"] == ["end-users", "support", "engineering", "business"]
    parsed = parse_training((ctx.paths.workdir / "docs" / "training.md").read_text())
    for audience in ("end-users", "support", "engineering", "business"):
        section = parsed.section_for(audience) or ""
        assert all(shas[n][:12] in section for n in ("plain", "checkout", "empty", "search")), audience
    kb = parse_training((ctx.paths.workdir / "docs" / "knowledge-base-updates.md").read_text())
    assert sorted(token for token, _ in kb.entries) == sorted(shas[n][:12] for n in ("plain", "checkout", "empty",
                                                                                    "search"))
    assert "risk_assessment: risk breaking_change" in kb.sections["known issues and operational notes"]
    assert report.metrics["user_facing_changes"] == 4 and report.metrics["kb_entries"] == 4
    assert sorted(d.name for d in report.deliverables) == ["Knowledge base updates", "Lessons learned",
                                                           "Training materials"]


@pytest.mark.item("training.read")
def test_training_materials_of_an_earlier_release_fail_read(tmp_path, empty_target) -> None:
    repo = _repo(tmp_path)
    shas = _history(repo)
    _write(tmp_path, TRAINING_PATH, _hand_training(shas, version="1.0.0"))
    ctx = _after_risk(tmp_path, empty_target, {"training": {"user_facing_paths": ["ui"],
                                                            "materials": TRAINING_PATH}}, previous=shas["base"])

    report = run_step(ctx, "training")

    assert_item_fails(report, "training.read", because="its title 'Training for demo 1.0.0' does not name demo 1.1.0")


@pytest.mark.item("training.verify")
def test_hand_written_training_missing_a_user_facing_change_fails_verify(tmp_path, empty_target) -> None:
    shas = _history(_repo(tmp_path))
    _write(tmp_path, TRAINING_PATH, _hand_training(shas, skip_entry=("empty",)))
    ctx = _after_risk(tmp_path, empty_target, {"training": {"user_facing_paths": ["ui"],
                                                            "materials": TRAINING_PATH}}, previous=shas["base"])

    report = run_step(ctx, "training")

    assert_item_fails(report, "training.verify",
                      because=f"user-facing change(s) without an entry in training materials 1.1.0.md: "
                              f"{shas['empty'][:12]} (Handle an empty item list)")
    assert item(report, "read").passed and item(report, "check").passed


def test_hand_written_training_with_material_of_an_earlier_release_fails_verify(tmp_path, empty_target) -> None:
    shas = _history(_repo(tmp_path))
    _write(tmp_path, TRAINING_PATH, _hand_training(shas, extra_entries=(shas["base"],)))
    ctx = _after_risk(tmp_path, empty_target, {"training": {"user_facing_paths": ["ui"],
                                                            "materials": TRAINING_PATH}}, previous=shas["base"])

    report = run_step(ctx, "training")

    assert f"entries for commits outside this release's range (an earlier release's material?): {shas['base'][:7]}" \
        in item(report, "verify").detail


def test_hand_written_training_complete_passes(tmp_path, empty_target) -> None:
    shas = _history(_repo(tmp_path))
    _write(tmp_path, TRAINING_PATH, _hand_training(shas))
    ctx = _after_risk(tmp_path, empty_target, {"training": {"user_facing_paths": ["ui"],
                                                            "materials": TRAINING_PATH}}, previous=shas["base"])

    report = run_step(ctx, "training")

    assert report.status == "passed", report.blocking_issues
    assert not (ctx.paths.workdir / "docs" / "training.md").exists()


@pytest.mark.item("training.check")
def test_hand_written_training_without_the_business_section_fails_check(tmp_path, empty_target) -> None:
    shas = _history(_repo(tmp_path))
    _write(tmp_path, TRAINING_PATH, _hand_training(shas, audiences=("end-users", "support", "engineering")))
    ctx = _after_risk(tmp_path, empty_target, {"training": {"user_facing_paths": ["ui"],
                                                            "materials": TRAINING_PATH}}, previous=shas["base"])

    report = run_step(ctx, "training")

    assert_item_fails(report, "training.check", because="has no section for audience 'business'")
    assert item(report, "verify").passed


def test_an_audience_section_silent_on_a_change_fails_check(tmp_path, empty_target) -> None:
    shas = _history(_repo(tmp_path))
    text = _hand_training(shas).replace(f"- `{shas['plain'][:7]}`: what plain means for support\n", "")
    _write(tmp_path, TRAINING_PATH, text)
    ctx = _after_risk(tmp_path, empty_target, {"training": {"user_facing_paths": ["ui"],
                                                            "materials": TRAINING_PATH}}, previous=shas["base"])

    report = run_step(ctx, "training")

    assert f"the section for 'support' says nothing about {shas['plain'][:12]} (Tidy the item list page)" \
        in item(report, "check").detail


def test_release_without_user_facing_changes_needs_no_entries(tmp_path, empty_target) -> None:
    repo = _repo(tmp_path)
    base = commit(repo, "chore: start", {"src/app.py": "v0\n"})
    commit(repo, "docs: explain the items page", {"docs/items.md": "v1\n"})
    commit(repo, "Refresh the build scripts", {"build.sh": "v1\n"})
    ctx = _after_risk(tmp_path, empty_target, previous=base)

    report = run_step(ctx, "training")

    assert report.status == "passed", report.blocking_issues
    assert item(report, "verify").detail == "no user-facing change among 2 commit(s): none needs an entry"
    assert "No user-facing change in this release" in (ctx.paths.workdir / "docs" / "training.md").read_text()


def test_training_without_risk_report_fails_read(tmp_path, empty_target) -> None:
    ctx = make_ctx(tmp_path, empty_target)

    report = run_step(ctx, "training")

    assert "no risk_assessment report in this run" in item(report, "read").detail
    assert [d.name for d in report.deliverables] == ["Lessons learned"]


def test_two_features_with_one_subject_keep_an_entry_each(tmp_path, empty_target) -> None:
    repo = _repo(tmp_path)
    base = commit(repo, "chore: start", {"src/items.py": "v0\n"})
    one = commit(repo, "feat(api): add items endpoint", {"src/items.py": "v1\n"})
    two = commit(repo, "feat(api): add items endpoint", {"src/items.py": "v2\n"})
    ctx = _after_risk(tmp_path, empty_target, previous=base)

    report = run_step(ctx, "training")

    assert report.status == "passed", report.blocking_issues
    assert item(report, "verify").evidence[0].data["training"]["entries"] == {one[:12]: 15, two[:12]: 7}


# ============================================================================ lessons learned
def test_lessons_learned_name_an_earlier_failed_attempt_and_compare_durations(tmp_path, empty_target) -> None:
    shas = _history(_repo(tmp_path))
    first = _after_risk(tmp_path, empty_target, {"release_notes": {"path": "notes/missing.md"}}, previous=shas["base"],
                        p1_pre_deployment=2.5)
    assert not item(run_step(first, "release_notes"), "read").passed
    ctx = make_ctx(tmp_path, empty_target, {"risk": {"repo": "repo", "paths": []}})  # the notes path fixed
    assert run_step(ctx, "release_notes").status == "passed"

    report = run_step(ctx, "training")

    text = (ctx.paths.workdir / "docs" / "lessons-learned.md").read_text()
    failed = text.split("## Failed attempts", 1)[1].split("##", 1)[0]
    assert "- earlier attempt of release_notes (`attempts/release_notes.1.json`): failed: release_notes.read:" in failed
    assert "notes/missing.md does not exist" in failed
    assert "against a mean of 2.50 s over 1 earlier run(s)" in text
    assert any(f.startswith("release_notes needed a re-run in this release") for f in report.facts["follow_ups"])


# ==================================================================================== deliverables
def test_phase_8_delivers_every_catalogue_deliverable_as_a_file_of_its_own(tmp_path, empty_target) -> None:
    shas = _history(_repo(tmp_path))
    ctx = _after_risk(tmp_path, empty_target, previous=shas["base"])

    reports = [run_duty(ctx, "release_notes"), run_duty(ctx, "training")]

    assert all(r.status == "passed" for r in reports), [r.blocking_issues for r in reports]
    phase = next(p for p in PHASES if p.number == 8)
    delivered = {d.name: Path(d.path) for r in reports for d in r.deliverables}
    assert set(phase.deliverables) <= set(delivered)
    assert len({delivered[name] for name in phase.deliverables}) == len(phase.deliverables)  # a file each
    assert all(delivered[name].stat().st_size > 0 for name in phase.deliverables)
    manifest = ctx.store.manifest()
    assert [gap for gap in deliverable_gaps(manifest) if gap.startswith("phase 8:")] == []
