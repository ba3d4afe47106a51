"""Phase 8: release_notes (every commit once, two audiences) and training (a KB entry per feature)."""

from __future__ import annotations

import hashlib
from typing import Any

from duty_helpers import FakeTarget, commit, git, item, make_ctx, run_step, save_report

from gendev_release.duties import post_deployment
from gendev_release.duties.post_deployment import audit_commits, index_rows, render_release_notes, sections


def _sha(n: int) -> str:
    return hashlib.sha1(str(n).encode()).hexdigest()


COMMITS: list[dict[str, Any]] = [
    {"sha": _sha(1), "subject": "feat(api): add item search", "type": "feat", "scope": "api", "breaking": False,
     "files": ["gendev_release/demo/search.py", "tests/test_search.py"]},
    {"sha": _sha(2), "subject": "fix(api): handle an empty item list", "type": "fix", "scope": "api",
     "breaking": False, "files": ["gendev_release/demo/service.py"]},
    {"sha": _sha(3), "subject": "feat(ui)!: new checkout flow", "type": "feat", "scope": "ui", "breaking": True,
     "files": ["ui/checkout.js"]},
    {"sha": _sha(4), "subject": "docs: update the runbook", "type": "docs", "scope": None, "breaking": False,
     "files": ["dags/releases/demo/runbook.md"]},
    {"sha": _sha(5), "subject": f"Revert {_sha(9)[:7]} by hand", "type": "other", "scope": None, "breaking": False,
     "files": []},
]
FROM_SHA, SOURCE_SHA = _sha(100), _sha(5)


def _ctx(tmp_path, target, commits: list[dict[str, Any]] | None = None):
    ctx = make_ctx(tmp_path, target)
    save_report(ctx, "risk_assessment", {"commits": COMMITS if commits is None else commits,
                                         "from_sha": FROM_SHA, "source_sha": SOURCE_SHA})
    return ctx


def _notes(ctx) -> str:
    return (ctx.paths.workdir / "docs" / "release-notes.md").read_text(encoding="utf-8")


# ============================================================================== release notes
def test_release_notes_account_for_every_commit_for_two_audiences(tmp_path, empty_target: FakeTarget) -> None:
    ctx = _ctx(tmp_path, empty_target)

    report = run_step(ctx, "release_notes")

    assert report.status == "passed", report.blocking_issues
    text = _notes(ctx)
    parts = sections(text)
    assert parts["Summary"].startswith("Version 1.1.0 of demo contains 5 changes: 1 new feature, 1 fix, "
                                       "1 breaking change and 2 other changes.")
    assert "- New checkout flow" in parts["Summary"] and "- Add item search" in parts["Summary"]
    grouped = "\n".join(parts[f"Technical details/{group}"] for group in post_deployment.GROUPS)
    for entry in COMMITS:
        assert grouped.count(f"`{entry['sha'][:12]}`") == 1
        assert entry["sha"][:7] not in parts["Summary"]
    assert f"`{_sha(3)[:12]}` **ui**" in parts["Technical details/Breaking changes"]
    assert "`ui/checkout.js`" in parts["Technical details/Breaking changes"]
    assert parts["Technical details/Fixes"].count("`") == 4  # one sha and one file
    assert item(report, "verify").detail == ("all 5 commit(s) listed exactly once: Breaking changes 1, Features 1, "
                                             "Fixes 1, Other 2")
    assert report.metrics["breaking"] == 1
    assert [d.name for d in report.deliverables] == ["release-notes"]


def test_missing_risk_report_fails_read(tmp_path, empty_target: FakeTarget) -> None:
    ctx = make_ctx(tmp_path, empty_target)

    report = run_step(ctx, "release_notes")

    assert not item(report, "read").passed
    assert "no risk_assessment report in this run" in item(report, "read").detail
    assert not (ctx.paths.workdir / "docs" / "release-notes.md").exists()


def test_commit_missing_from_the_notes_fails_verify(tmp_path, empty_target: FakeTarget, monkeypatch) -> None:
    ctx = _ctx(tmp_path, empty_target)
    render = post_deployment.render_release_notes

    def lossy(spec, version, changes):
        return "\n".join(ln for ln in render(spec, version, changes).splitlines() if _sha(2)[:12] not in ln) + "\n"

    monkeypatch.setattr(post_deployment, "render_release_notes", lossy)

    report = run_step(ctx, "release_notes")

    verify = item(report, "verify")
    assert not verify.passed
    assert verify.detail == f"commit(s) missing from the notes: {_sha(2)[:12]} ('fix(api): handle an empty item list')"


def test_commit_listed_twice_fails_verify(tmp_path, empty_target: FakeTarget, monkeypatch) -> None:
    ctx = _ctx(tmp_path, empty_target)
    render = post_deployment.render_release_notes

    def doubled(spec, version, changes):
        text = render(spec, version, changes)
        line = next(ln for ln in text.splitlines() if _sha(1)[:12] in ln)
        return text.replace("### Other\n", f"### Other\n\n{line}\n")

    monkeypatch.setattr(post_deployment, "render_release_notes", doubled)

    report = run_step(ctx, "release_notes")

    assert "listed more than once" in item(report, "verify").detail
    assert "['Features', 'Other']" in item(report, "verify").detail


def test_misgrouped_commit_is_named() -> None:
    text = f"## Technical details\n### Features\n- `{_sha(2)[:12]}` fix\n### Fixes\n_none_\n"
    audit = audit_commits(text, COMMITS[1:2])
    assert audit.misgrouped == [f"commit {_sha(2)[:12]} ('fix(api): handle an empty item list') is under Features, "
                                "expected Fixes"]


def test_hashes_in_the_summary_fail_check(tmp_path, empty_target: FakeTarget, monkeypatch) -> None:
    ctx = _ctx(tmp_path, empty_target)
    render = post_deployment.render_release_notes
    monkeypatch.setattr(post_deployment, "render_release_notes",
                        lambda spec, version, changes: render(spec, version, changes).replace(
                            "## Summary\n", f"## Summary\n\nBuilt from {SOURCE_SHA[:10]}.\n"))

    report = run_step(ctx, "release_notes")

    check = item(report, "check")
    assert not check.passed
    assert f"the Summary contains commit hashes ['{SOURCE_SHA[:10]}']" in check.detail


def test_notes_without_a_technical_section_fail_check(tmp_path, empty_target: FakeTarget, monkeypatch) -> None:
    ctx = _ctx(tmp_path, empty_target)
    render = post_deployment.render_release_notes
    monkeypatch.setattr(post_deployment, "render_release_notes",
                        lambda spec, version, changes: render(spec, version, changes).split("## Technical details")[0])

    report = run_step(ctx, "release_notes")

    assert "no 'Technical details' section" in item(report, "check").detail
    assert not item(report, "verify").passed


def test_technical_entry_must_name_scope_and_files(tmp_path, empty_target: FakeTarget, monkeypatch) -> None:
    ctx = _ctx(tmp_path, empty_target)
    render = post_deployment.render_release_notes
    monkeypatch.setattr(post_deployment, "render_release_notes",
                        lambda spec, version, changes: render(spec, version, changes).replace("`ui/checkout.js`", ""))

    report = run_step(ctx, "release_notes")

    assert f"technical entry of {_sha(3)[:12]} lacks ui/checkout.js" in item(report, "check").detail


def test_release_without_commits_says_so(tmp_path, empty_target: FakeTarget) -> None:
    ctx = _ctx(tmp_path, empty_target, commits=[])

    report = run_step(ctx, "release_notes")

    assert report.status == "passed", report.blocking_issues
    assert "contains no code changes since the previous release (0 changes)" in _notes(ctx)


def test_first_release_notes_name_the_range(tmp_path, empty_target: FakeTarget) -> None:
    ctx = make_ctx(tmp_path, empty_target)
    changes = {"commits": COMMITS, "from_sha": None, "source_sha": SOURCE_SHA}
    text = render_release_notes(ctx.spec, "1.1.0", changes)
    assert f"up to `{SOURCE_SHA[:12]}` (first release)" in text


# =================================================================================== training
SEARCH_MD = f"{_sha(1)[:12]}-add-item-search.md"
CHECKOUT_MD = f"{_sha(3)[:12]}-new-checkout-flow.md"


def _kb(ctx):
    return ctx.paths.workdir / "docs" / "kb"


def test_training_writes_an_entry_per_feature_with_scope_per_audience(tmp_path, empty_target: FakeTarget) -> None:
    ctx = _ctx(tmp_path, empty_target)

    report = run_step(ctx, "training")

    assert report.status == "passed", report.blocking_issues
    assert sorted(p.name for p in _kb(ctx).glob("*.md")) == sorted([SEARCH_MD, "index.md", CHECKOUT_MD])
    entry = sections((_kb(ctx) / CHECKOUT_MD).read_text())
    assert set(entry) >= {"What it is", "For end-users", "For support", "For engineering", "Technical reference"}
    rows = index_rows((_kb(ctx) / "index.md").read_text())
    assert list(rows) == ["end-users", "support", "engineering"]
    assert all(len(cells) == 2 and all(cells) for cells in rows.values())
    assert item(report, "verify").detail == "every new feature (2) has a KB entry"
    assert {d.name for d in report.deliverables} == {"kb-index", f"kb-{SEARCH_MD[:-3]}", f"kb-{CHECKOUT_MD[:-3]}"}


def test_release_without_features_needs_no_entries(tmp_path, empty_target: FakeTarget) -> None:
    ctx = _ctx(tmp_path, empty_target, commits=[c for c in COMMITS if c["type"] != "feat"])

    report = run_step(ctx, "training")

    assert report.status == "passed", report.blocking_issues
    verify = item(report, "verify")
    assert verify.detail == "no new features: no KB entries needed"
    commit_list = next(e for e in item(report, "read").evidence if e.kind == "git")
    assert [c["sha"] for c in commit_list.data["commits"]] == [_sha(2), _sha(4), _sha(5)]
    index = (_kb(ctx) / "index.md").read_text()
    assert "No new features: no KB entries needed." in index
    assert list(index_rows(index)) == ["end-users", "support", "engineering"]


def test_feature_without_entry_fails_verify(tmp_path, empty_target: FakeTarget, monkeypatch) -> None:
    ctx = _ctx(tmp_path, empty_target)
    write = post_deployment.write_kb_entry
    monkeypatch.setattr(post_deployment, "write_kb_entry",
                        lambda path, text: None if path.name == CHECKOUT_MD else write(path, text))

    report = run_step(ctx, "training")

    verify = item(report, "verify")
    assert not verify.passed
    assert verify.detail == f"feature(s) without a KB entry: {_sha(3)[:12]} (New checkout flow)"


def test_entry_without_an_audience_fails_check(tmp_path, empty_target: FakeTarget, monkeypatch) -> None:
    ctx = _ctx(tmp_path, empty_target)
    render = post_deployment.render_kb_entry

    def no_support(spec, version, commit, audiences):
        return render(spec, version, commit, [a for a in audiences if a != "support"])

    monkeypatch.setattr(post_deployment, "render_kb_entry", no_support)

    report = run_step(ctx, "training")

    check = item(report, "check")
    assert not check.passed
    assert f"{SEARCH_MD} states no scope for support" in check.detail
    assert f"{CHECKOUT_MD} states no scope for support" in check.detail


def test_index_missing_an_audience_row_fails_check(tmp_path, empty_target: FakeTarget, monkeypatch) -> None:
    ctx = _ctx(tmp_path, empty_target, commits=[])
    render = post_deployment.render_kb_index
    monkeypatch.setattr(post_deployment, "render_kb_index",
                        lambda spec, version, entries, audiences, commits: render(spec, version, entries,
                                                                                  audiences[:-1], commits))

    report = run_step(ctx, "training")

    assert "index.md has no row for audience engineering" in item(report, "check").detail


def test_stale_entries_of_an_earlier_attempt_are_removed(tmp_path, empty_target: FakeTarget) -> None:
    ctx = _ctx(tmp_path, empty_target)
    _kb(ctx).mkdir(parents=True)
    (_kb(ctx) / "old-feature.md").write_text(f"# Old\n\nFeature-Commit: {_sha(77)}\n")

    report = run_step(ctx, "training")

    assert report.status == "passed", report.blocking_issues
    assert not (_kb(ctx) / "old-feature.md").exists()


def test_training_without_risk_report_fails_read(tmp_path, empty_target: FakeTarget) -> None:
    ctx = make_ctx(tmp_path, empty_target)

    report = run_step(ctx, "training")

    assert "no risk_assessment report in this run" in item(report, "read").detail


def test_newest_commit_is_found_by_its_entry_not_by_the_range_header(tmp_path, empty_target: FakeTarget) -> None:
    # The range header names the source commit too; the entry check must read the commit's own line.
    newest = {"sha": _sha(7), "subject": "fix(api): retry", "type": "fix", "scope": "api", "breaking": False,
              "files": ["gendev_release/demo/service.py"]}
    ctx = make_ctx(tmp_path, empty_target)
    save_report(ctx, "risk_assessment", {"commits": [newest, *COMMITS[:2]], "from_sha": None,
                                         "source_sha": newest["sha"]})
    report = run_step(ctx, "release_notes")
    assert report.status == "passed", report.blocking_issues


# ====================================================== ordinary commits from a real git history
def _repo(tmp_path):
    repo = tmp_path / "spec" / "repo"  # inside the spec folder: risk.repo is "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "--quiet", "-b", "main")
    return repo


def _after_risk_step(tmp_path, target):
    """A context whose risk_assessment read the repository's history, as in a run."""
    ctx = make_ctx(tmp_path, target, {"risk": {"repo": "repo", "paths": []}})
    risk = run_step(ctx, "risk_assessment")
    assert item(risk, "read").passed, item(risk, "read").detail
    return ctx


def test_a_subject_citing_another_commit_does_not_count_that_commit_twice(tmp_path, empty_target: FakeTarget) -> None:
    repo = _repo(tmp_path)
    first = commit(repo, "feat(api): add items endpoint", {"src/items.py": "v1\n"})
    quoted = commit(repo, f"fix: follow-up to `{first[:7]}`", {"src/items.py": "v2\n"})
    plain = commit(repo, f"fix: follow-up to {first[:7]} for empty lists", {"src/items.py": "v3\n"})
    ctx = _after_risk_step(tmp_path, empty_target)

    report = run_step(ctx, "release_notes")

    assert report.status == "passed", report.blocking_issues
    verify = item(report, "verify")
    assert verify.detail == "all 3 commit(s) listed exactly once: Breaking changes 0, Features 1, Fixes 2, Other 0"
    assert verify.evidence[0].data["found"] == {"Breaking changes": [], "Features": [first[:12]],
                                                "Fixes": [plain[:12], quoted[:12]], "Other": []}
    summary = sections(_notes(ctx))["Summary"]
    assert first[:7] not in summary and "``" not in summary and "- Follow-up to for empty lists" in summary


def test_features_named_like_the_index_or_each_other_keep_their_entries(tmp_path, empty_target: FakeTarget) -> None:
    repo = _repo(tmp_path)
    index = commit(repo, "feat: index", {"src/search_index.py": "v1\n"})
    items = commit(repo, "feat(api): add items endpoint", {"src/items.py": "v1\n"})
    again = commit(repo, "feat(api): add items endpoint", {"src/items.py": "v2\n"})
    ctx = _after_risk_step(tmp_path, empty_target)

    report = run_step(ctx, "training")

    assert report.status == "passed", report.blocking_issues
    assert item(report, "verify").detail == "every new feature (3) has a KB entry"
    assert sorted(p.name for p in _kb(ctx).glob("*.md")) == sorted([
        "index.md", f"{index[:12]}-index.md", f"{items[:12]}-add-items-endpoint.md",
        f"{again[:12]}-add-items-endpoint.md"])
    index_text = (_kb(ctx) / "index.md").read_text()
    assert index_text.startswith("# Knowledge base: demo 1.1.0")
    assert f"]({index[:12]}-index.md)" in index_text
    assert (_kb(ctx) / f"{index[:12]}-index.md").read_text().startswith("# Index\n\nFeature-Commit: " + index)

