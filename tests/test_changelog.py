"""The git range and the release-notes and training rules, without Airflow: real temporary repositories."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gendev_release.changelog import (
    BREAKING,
    OTHER,
    ChangeCommit,
    GitRange,
    RangeRead,
    audit_notes,
    audit_summary,
    parse_notes,
    plain_subject,
    read_range,
    render_notes,
)
from gendev_release.training_material import (
    audiences_of,
    audit_audiences,
    audit_entries,
    parse_training,
    render_training,
    user_facing_changes,
)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=T", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false",
                           "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


def _commit(repo: Path, message: str, files: dict[str, str]) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    _git(repo, "add", "--all")
    _git(repo, "commit", "--quiet", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "--quiet", "-b", "main")
    return repo


def _c(sha: str, subject: str, type_: str = "other", breaking: bool = False) -> ChangeCommit:
    return ChangeCommit(sha=sha * 40 if len(sha) == 1 else sha, subject=subject, type=type_, breaking=breaking)


FEAT, FIX, DOCS, PLAIN = _c("a", "feat: add search", "feat"), _c("b", "fix: empty list", "fix"), \
    _c("c", "docs: runbook", "docs"), _c("d", "Tidy the page")


# ==================================================================================== git range
def test_read_range_lists_the_range_limited_to_paths_and_names_user_facing_commits(repo: Path) -> None:
    base = _commit(repo, "chore: start", {"svc/app.py": "0"})
    feat = _commit(repo, "feat(api): search\n\nBREAKING CHANGE: /find is gone", {"svc/app.py": "1"})
    _commit(repo, "chore: other service", {"other/x.py": "1"})
    page = _commit(repo, "Tidy the page", {"svc/ui/page.html": "1"})

    read = read_range(GitRange(repo, page, base, ("svc",)), user_facing_paths=["svc/ui"])

    assert read.ok, read.problem
    assert [c.sha for c in read.commits] == [page, feat]
    assert read.commits[1].breaking and read.commits[1].breaking_note == "/find is gone"
    assert read.commits[0].type == "other" and read.commits[0].section == OTHER
    assert read.touching == {page}
    assert [c.reasons for c in user_facing_changes(read)] == [("touches a user-facing path",),
                                                              ("breaking change", "new feature")]
    assert read.evidence().data["commits"][0] == {"sha": page, "type": "other", "breaking": False,
                                                  "subject": "Tidy the page"}


@pytest.mark.parametrize(("to_sha", "from_sha", "problem"), [
    ("--output=/tmp/x", None, "'--output=/tmp/x' is not a commit hash"),
    ("f" * 40, None, f"the new version's source commit {'f' * 12} is not a commit of"),
])
def test_read_range_refuses_a_sha_that_is_not_a_commit_of_the_repository(repo: Path, to_sha: str,
                                                                           from_sha: str | None, problem: str) -> None:
    _commit(repo, "chore: start", {"a": "0"})
    read = read_range(GitRange(repo, to_sha, from_sha))
    assert not read.ok and problem in (read.problem or "")


def test_read_range_of_a_missing_repository_says_so(tmp_path: Path) -> None:
    read = read_range(GitRange(tmp_path / "nowhere", "a" * 40))
    assert read.problem == f"the repository {tmp_path / 'nowhere'} does not exist or is not a folder"


# ================================================================================ release notes
def _notes(*lines: str) -> str:
    return "\n".join(["# demo 2.0.0", "## Summary", "Version 2.0.0: add search.", "## Technical details", *lines])


def test_generated_notes_pass_their_own_audit_with_tricky_subjects(repo: Path) -> None:
    base = _commit(repo, "chore: start", {"a": "0"})
    first = _commit(repo, "feat(api)!: add | pipe `search`", {"a": "1"})
    _commit(repo, f"fix: follow-up to {first[:7]}", {"a": "2"})
    _commit(repo, "WIP", {"a": "3"})
    read = read_range(GitRange(repo, _git(repo, "rev-parse", "HEAD"), base))

    text = render_notes(service="demo", version="2.0.0", environment="staging", date="2026-01-05", read=read,
                        previous="1.0.0")

    parsed = parse_notes(text)
    assert audit_notes(parsed, read.commits).problems() == []
    assert audit_summary(parsed, read.commits, "2.0.0", (base,)) == []
    assert parsed.summary is not None and first[:7] not in parsed.summary


def test_aliases_and_the_innermost_known_heading_decide_the_section() -> None:
    parsed = parse_notes(_notes("### 🚀 New Features", "#### api", f"- {FEAT.sha[:7]} feat: add search",
                                "### Fixed", f"* `{FIX.sha[:9]}` fix: empty list", "### Misc",
                                f"- {PLAIN.sha[:7]} Tidy the page (after `{FIX.sha[:7]}`)"))
    assert [(e.token, e.section) for e in parsed.entries] == [(FEAT.sha[:7], "Features"), (FIX.sha[:9], "Bug fixes"),
                                                              (PLAIN.sha[:7], None)]
    audit = audit_notes(parsed, [FEAT, FIX, PLAIN])
    assert audit.missing == [f"{PLAIN.short} ('Tidy the page') (found only under 'Misc')"]


def test_an_entry_may_link_its_hash() -> None:
    parsed = parse_notes(_notes("### Features", f"- [{FEAT.sha[:7]}](https://git.example/c/{FEAT.sha}) "
                                                "feat: add search"))
    assert audit_notes(parsed, [FEAT]).problems() == []


def test_a_docs_commit_may_go_under_other_but_a_fix_or_a_plain_commit_may_not_go_elsewhere() -> None:
    parsed = parse_notes(_notes("### Other changes", f"- {DOCS.sha[:7]} docs: runbook",
                                f"- {FIX.sha[:7]} fix: empty list", "### Features", f"- {PLAIN.sha[:7]} Tidy the page"))
    audit = audit_notes(parsed, [DOCS, FIX, PLAIN])
    assert audit.misgrouped == [f"{FIX.label} is under Other changes, expected Bug fixes",
                                f"{PLAIN.label} is under Features, expected Other changes"]


def test_breaking_commits_are_called_out_and_nothing_else_is() -> None:
    breaking = _c("e", "feat!: drop /find", "feat", breaking=True)
    parsed = parse_notes(_notes(f"## {BREAKING}", f"- {FEAT.sha[:7]} not breaking at all", "### Features",
                                f"- {FEAT.sha[:7]} feat: add search", f"- {breaking.sha[:7]} feat!: drop /find"))
    audit = audit_notes(parsed, [FEAT, breaking])
    assert audit.breaking_not_called_out == [breaking.label]
    assert audit.called_breaking == [FEAT.label]


def test_an_entry_needs_the_subject_and_an_unambiguous_hash_of_the_range() -> None:
    twin = ChangeCommit(sha=FEAT.sha[:7] + "f" * 33, subject="feat: twin", type="feat")
    parsed = parse_notes(_notes("### Features", f"- {FEAT.sha[:7]} searching", f"- {'9' * 7} older release",
                                f"- {FEAT.sha[:8]} feat: add search"))
    audit = audit_notes(parsed, [FEAT, twin])
    assert audit.not_in_range[0].startswith(f"{FEAT.sha[:7]} (line 6) is ambiguous")
    assert audit.not_in_range[1].startswith("9999999 (line 7")
    assert audit.without_subject == []  # the 8-digit entry names the subject
    assert audit.missing == [f"{twin.label}"]


def test_the_summary_serves_business_readers() -> None:
    breaking = _c("e", "feat!: drop /find", "feat", breaking=True)
    parsed = parse_notes("# demo 2.0.0\n## Summary\nVersion 2.0 will add search (" + FEAT.sha[:8] + ").\n")
    assert audit_summary(parsed, [FEAT, breaking], "2.0.0") == [
        "the Summary does not name version 2.0.0",
        f"the Summary contains commit hashes ['{FEAT.sha[:8]}']: it is meant for business readers",
        f"the Summary does not mention the breaking change 'Drop /find' ({breaking.short})",
        "no technical section ('Technical details' or 'Changelog' heading) for engineers"]
    assert plain_subject(FEAT) == "Add search"


# ===================================================================================== training
def test_training_audiences_join_the_stakeholders_without_duplicates() -> None:
    assert audiences_of(["End-Users", "support"], ["engineering", "support", "end users"]) == [
        "End-Users", "support", "engineering"]


def test_training_entries_and_audience_sections_are_read_back(repo: Path) -> None:
    base = _commit(repo, "chore: start", {"a": "0"})
    _commit(repo, "feat: add search", {"a": "1"})
    _commit(repo, "docs: notes", {"b": "1"})
    read = read_range(GitRange(repo, _git(repo, "rev-parse", "HEAD"), base))
    changes = user_facing_changes(read)
    text = render_training(service="demo", version="2.0.0", range_text="r", commits=2, changes=changes,
                           audiences=["support", "business"])
    parsed = parse_training(text)

    assert audit_entries(parsed, changes, read.commits, "t.md")[0] == []
    assert audit_audiences(parsed, ["support", "business", "sales"], changes, "t.md")[0] == [
        "t.md has no section for audience 'sales' (a 'For sales' heading)"]
    silent = parse_training(text.replace(f"`{changes[0].commit.short}` Add search: Business", "Business"))
    assert audit_audiences(silent, ["business"], changes, "t.md")[0] == [
        f"t.md: the section for 'business' says nothing about {changes[0].commit.short} (Add search)"]


def test_training_without_a_changes_section_is_named() -> None:
    read = RangeRead(range=GitRange(Path("."), "a" * 40), commits=[FEAT])
    problems, _ = audit_entries(parse_training("# Training demo 2.0.0\n## For support\nx\n"),
                                user_facing_changes(read), [FEAT], "t.md")
    assert problems == ["t.md has no 'Changes' section listing the user-facing changes",
                        f"user-facing change(s) without an entry in t.md: {FEAT.short} (Add search)"]
