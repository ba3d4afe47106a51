"""Phase 8 duties: release notes and training material, both generated from the change set.

The risk step recorded the commits between the last successful release and this one
(``facts["commits"]``: sha, subject, type, scope, breaking, files). ``release_notes`` turns them
into notes for mixed audiences (a plain-language summary without hashes, and a technical section
with every commit exactly once, grouped, each found by its own list line); ``training`` writes
one knowledge-base entry per new feature (``<short sha>-<slug>.md``: no subject can make two
entries, or an entry and ``index.md``, share a file) with its scope stated for every audience in
``spec.training.audiences``. Both judge the files read back from disk, not what they meant to
write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gendev_release.context import DutyContext
from gendev_release.duties.base import duty
from gendev_release.facts import ChangeSet, handed_on
from gendev_release.report import Evidence, ReportBuilder, utcnow
from gendev_release.spec import ReleaseSpec

SHORT = 12
GROUPS: tuple[str, ...] = ("Breaking changes", "Features", "Fixes", "Other")
MAX_FILES_LISTED = 20
_PREFIX_RE = re.compile(r"^[A-Za-z]+(?:\([^()]*\))?!?:\s*")
_HEX_RE = re.compile(r"\b[0-9a-f]{7,40}\b")
_CITED_HASH_RE = re.compile(r"`?\b[0-9a-f]{7,40}\b`?")  # with the backticks a subject may quote it in
#: A commit's own line in a grouped section: ``- `<short sha>` ...``; a hash cited later in the line is not it.
_ENTRY_SHA_RE = re.compile(r"^- `([0-9a-f]{7,40})`", re.MULTILINE)
_FEATURE_LINE_RE = re.compile(r"^Feature-Commit:\s*([0-9a-f]{7,40})\s*$", re.MULTILINE)


# ------------------------------------------------------------------------------------- inputs
def change_set(ctx: DutyContext) -> tuple[dict[str, Any] | None, str]:
    """The risk step's change set (commits, from_sha, source_sha), or None and why not."""
    changes, problem = handed_on(ctx, ChangeSet)
    if changes is None:
        return None, f"the commits between versions are unknown: {problem}"
    return changes.model_dump(mode="json"), "ok"


def change_set_or_fail(ctx: DutyContext, report: ReportBuilder, *, verify: str, check: str) -> dict[str, Any] | None:
    """:func:`change_set`, or None after failing every item of the step.

    ``read`` fails with the reason; ``verify`` and ``check`` with their consequence, then the reason.
    """
    changes, problem = change_set(ctx)
    if changes is None:
        report.fail("read", problem)
        report.fail("verify", f"{verify}: {problem}")
        report.fail("check", f"{check}: {problem}")
    return changes


def change_set_evidence(changes: dict[str, Any]) -> Evidence:
    commits = changes["commits"]
    revision = f"{changes['from_sha'] or '(first release)'}..{changes['source_sha'] or '?'}"
    return Evidence(kind="git", source=f"risk_assessment facts.commits {revision}",
                    summary=f"{len(commits)} commit(s) {revision}",
                    data={"from_sha": changes["from_sha"], "source_sha": changes["source_sha"],
                          "commits": [{"sha": c["sha"], "type": c.get("type"), "subject": c.get("subject")}
                                      for c in commits]})


def short(sha: str) -> str:
    return sha[:SHORT]


def plain_subject(commit: dict[str, Any]) -> str:
    """The subject without its Conventional Commits prefix and without hashes, capitalised."""
    text = _PREFIX_RE.sub("", str(commit.get("subject") or "")).strip()
    text = _CITED_HASH_RE.sub("", text).replace("  ", " ").strip() or "(no description)"
    return text[0].upper() + text[1:]


def group_of(commit: dict[str, Any]) -> str:
    if commit.get("breaking"):
        return "Breaking changes"
    return {"feat": "Features", "fix": "Fixes"}.get(str(commit.get("type") or "").lower(), "Other")


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else (plural or word + 's')}"


def sections(text: str) -> dict[str, str]:
    """Markdown split by ``##`` and ``###`` headings: ``"Summary"``, ``"Technical details/Fixes"``."""
    found: dict[str, list[str]] = {}
    h2: str | None = None
    key: str | None = None
    for line in text.splitlines():
        if line.startswith("# "):
            h2 = key = None
        elif line.startswith("## "):
            h2 = key = line[3:].strip()
            found.setdefault(key, [])
        elif line.startswith("### ") and h2 is not None:
            key = f"{h2}/{line[4:].strip()}"
            found.setdefault(key, [])
        elif key is not None:
            found[key].append(line)
    return {name: "\n".join(lines).strip() for name, lines in found.items()}


# ============================================================================== release notes
def render_release_notes(spec: ReleaseSpec, version: str, changes: dict[str, Any]) -> str:
    commits: list[dict[str, Any]] = changes["commits"]
    grouped: dict[str, list[dict[str, Any]]] = {group: [] for group in GROUPS}
    for commit in commits:
        grouped[group_of(commit)].append(commit)
    counts = {group: len(items) for group, items in grouped.items()}
    lines = [f"# {spec.service} {version}: release notes", "",
             f"Released to {spec.environment} on {utcnow():%Y-%m-%d}.", "", "## Summary", ""]
    if commits:
        lines.append(f"Version {version} of {spec.service} contains {_plural(len(commits), 'change')}: "
                     f"{_plural(counts['Features'], 'new feature')}, {_plural(counts['Fixes'], 'fix', 'fixes')}, "
                     f"{_plural(counts['Breaking changes'], 'breaking change')} and "
                     f"{_plural(counts['Other'], 'other change')}.")
        for group, heading in (("Features", "What is new:"), ("Fixes", "What was fixed:"),
                               ("Breaking changes", "Needs attention (may require changes on your side):")):
            if grouped[group]:
                lines += ["", heading] + [f"- {plain_subject(c)}" for c in grouped[group]]
    else:
        lines.append(f"Version {version} of {spec.service} contains no code changes since the previous release "
                     "(0 changes).")
    revision = f"`{short(changes['from_sha'])}`..`{short(changes['source_sha'])}`" if changes.get("from_sha") \
        else f"up to `{short(changes['source_sha'] or '')}` (first release)"
    lines += ["", "## Technical details", "", f"Commits {revision}: {len(commits)}."]
    for group in GROUPS:
        lines += ["", f"### {group}", ""]
        lines += [_commit_line(c) for c in grouped[group]] or ["_none_"]
    return "\n".join(lines) + "\n"


def _commit_line(commit: dict[str, Any]) -> str:
    files = [str(f) for f in commit.get("files") or []]
    shown = ", ".join(f"`{f}`" for f in files[:MAX_FILES_LISTED])
    more = f" (+{len(files) - MAX_FILES_LISTED} more)" if len(files) > MAX_FILES_LISTED else ""
    scope = f" **{commit['scope']}**" if commit.get("scope") else ""
    return (f"- `{short(commit['sha'])}`{scope} {commit.get('subject') or ''} "
            f"(type {commit.get('type') or 'other'}{', breaking' if commit.get('breaking') else ''}); "
            f"files: {shown or 'none'}{more}")


@dataclass
class NotesAudit:
    """Where each commit appears in the notes' grouped sections."""

    missing: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    misgrouped: list[str] = field(default_factory=list)
    found: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.duplicated or self.misgrouped)

    def problems(self) -> list[str]:
        return ([f"commit(s) missing from the notes: {', '.join(self.missing)}"] if self.missing else []) + \
            ([f"commit(s) listed more than once: {', '.join(self.duplicated)}"] if self.duplicated else []) + \
            self.misgrouped


def audit_commits(text: str, commits: list[dict[str, Any]]) -> NotesAudit:
    """Every commit must appear exactly once across the grouped sections, in its own group.

    A commit is found by the sha that opens its own list line (``- `1cbd13b2a9f0` ...``); a hash
    its subject cites (``fix: follow-up to `1cbd13b```) names another commit and is not counted.
    """
    parts = sections(text)
    found = {group: _ENTRY_SHA_RE.findall(parts.get(f"Technical details/{group}", "")) for group in GROUPS}
    audit = NotesAudit(found=found)
    for commit in commits:
        sha = short(commit["sha"])
        places = [group for group, tokens in found.items() for token in tokens if sha.startswith(token)
                  or token.startswith(sha)]
        label = f"{sha} ({commit.get('subject')!r})"
        if not places:
            audit.missing.append(label)
        elif len(places) > 1:
            audit.duplicated.append(f"{label} in {places}")
        elif places[0] != group_of(commit):
            audit.misgrouped.append(f"commit {label} is under {places[0]}, expected {group_of(commit)}")
    return audit


def audit_audiences(text: str, version: str, changes: dict[str, Any]) -> list[str]:
    """Problems with the notes' two audiences: a plain summary and a technical section."""
    commits: list[dict[str, Any]] = changes["commits"]
    parts = sections(text)
    problems = []
    summary = parts.get("Summary")
    if not summary:
        problems.append("no 'Summary' section for business readers")
    else:
        if version not in summary:
            problems.append(f"the Summary does not name version {version}")
        if f"{_plural(len(commits), 'change')}" not in summary:
            problems.append(f"the Summary does not state the number of changes ({_plural(len(commits), 'change')})")
        ends = [changes.get("from_sha"), changes.get("source_sha")]
        known = [str(sha) for sha in [c["sha"] for c in commits] + ends if sha]
        hashes = sorted({token for token in _HEX_RE.findall(summary) if any(k.startswith(token) for k in known)})
        if hashes:
            problems.append(f"the Summary contains commit hashes {hashes}: it is meant for business readers")
    technical = "\n".join(v for k, v in parts.items() if k == "Technical details" or k.startswith("Technical details/"))
    if "Technical details" not in parts:
        problems.append("no 'Technical details' section")
    else:
        for commit in commits:
            line = next((ln for ln in technical.splitlines() if ln.startswith(f"- `{short(commit['sha'])}`")), "")
            if not line:
                continue  # reported by the commit audit
            absent = [f for f in (commit.get("files") or [])[:MAX_FILES_LISTED] if f"`{f}`" not in line]
            if commit.get("scope") and str(commit["scope"]) not in line:
                absent.insert(0, f"scope {commit['scope']}")
            if absent:
                problems.append(f"technical entry of {short(commit['sha'])} lacks {', '.join(map(str, absent))}")
    return problems


@duty("release_notes")
def release_notes(ctx: DutyContext, report: ReportBuilder) -> None:
    """Generate the notes from the change set and judge the file read back."""
    changes = change_set_or_fail(ctx, report, verify="commits cannot be accounted for", check="no notes to judge")
    if changes is None:
        return
    commits = changes["commits"]
    report.evidence("read", change_set_evidence(changes))
    path = ctx.paths.workdir / "docs" / "release-notes.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_release_notes(ctx.spec, ctx.version, changes), encoding="utf-8")
    text = path.read_text(encoding="utf-8")
    report.evidence("read", Evidence.file(path, summary=f"release notes: {len(text.splitlines())} lines"))
    report.deliver("release-notes", path)
    title_ok = text.startswith(f"# {ctx.spec.service} {ctx.version}")
    report.verdict("read", title_ok, f"{path.name} generated from {len(commits)} commit(s) and read back" if title_ok
                   else f"{path} does not start with the title '# {ctx.spec.service} {ctx.version}'")

    audit = audit_commits(text, commits)
    counts = {group: sum(1 for c in commits if group_of(c) == group) for group in GROUPS}
    report.metrics.update({"commits": float(len(commits)), "features": float(counts["Features"]),
                           "fixes": float(counts["Fixes"]), "breaking": float(counts["Breaking changes"]),
                           "other": float(counts["Other"])})
    report.evidence("verify", Evidence(kind="computed", source=f"{path} vs risk_assessment facts.commits",
                                       summary=f"{len(commits)} commit(s): "
                                               + ", ".join(f"{g} {n}" for g, n in counts.items()),
                                       data={"found": audit.found, "missing": audit.missing,
                                             "duplicated": audit.duplicated, "misgrouped": audit.misgrouped}))
    report.verdict("verify", audit.ok, "; ".join(audit.problems()) or
                   f"all {len(commits)} commit(s) listed exactly once: "
                   + ", ".join(f"{g} {n}" for g, n in counts.items()))

    problems = audit_audiences(text, ctx.version, changes)
    report.evidence("check", Evidence(kind="computed", source=str(path),
                                      summary="sections: " + ", ".join(sections(text)), data={"problems": problems}))
    report.verdict("check", not problems, "; ".join(problems) or
                   "plain-language Summary (version, counts, no hashes) and Technical details (hashes, scopes, files)")


# =================================================================================== training
def feature_commits(commits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in commits if str(c.get("type") or "").lower() == "feat"]


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60].strip("-") or "feature"


def kb_slugs(features: list[dict[str, Any]]) -> list[str]:
    """One file name per feature: ``<short sha>-<slug of the subject>``.

    The sha prefix keeps entries apart from each other and from ``index.md`` whatever the subjects
    say (``feat: index``, the same subject twice); two shas sharing their short form get the full sha.
    """
    slugs: list[str] = []
    for commit in features:
        slug = f"{short(commit['sha'])}-{slugify(plain_subject(commit))}"
        if slug in slugs:
            slug = f"{commit['sha']}-{slugify(plain_subject(commit))}"
        slugs.append(slug)
    return slugs


def audience_scope(audience: str, commit: dict[str, Any]) -> str:
    """What one audience needs to know about one feature, in one or two sentences."""
    name, what = audience.lower(), plain_subject(commit)
    area = commit.get("scope") or "the service"
    if any(key in name for key in ("support", "ops", "operation", "helpdesk", "service-desk")):
        return (f"Be ready to answer questions about \"{what}\" in {area}; escalate defects to engineering "
                "with the release version.")
    if any(key in name for key in ("engineer", "develop", "dev", "tech", "sre")):
        files = ", ".join(str(f) for f in (commit.get("files") or [])[:5]) or "no files listed"
        return f"Implementation in {area} (commit {short(commit['sha'])}; files: {files}); review before on-call."
    if any(key in name for key in ("user", "customer", "business", "product", "sales", "client")):
        return f"What changes for you: {what}. Available from this release; no action needed unless you use {area}."
    return f"Awareness: {what} ({area})."


def render_kb_entry(spec: ReleaseSpec, version: str, commit: dict[str, Any], audiences: list[str]) -> str:
    lines = [f"# {plain_subject(commit)}", "", f"Feature-Commit: {commit['sha']}", f"Version: {version}",
             f"Service: {spec.service}", f"Area: {commit.get('scope') or 'general'}", "", "## What it is", "",
             f"{plain_subject(commit)}. Introduced in {spec.service} {version}."]
    if commit.get("breaking"):
        lines += ["", "**This change is breaking**: existing integrations may need changes."]
    for audience in audiences:
        lines += ["", f"## For {audience}", "", audience_scope(audience, commit)]
    lines += ["", "## Technical reference", "", f"- commit `{commit['sha']}`: {commit.get('subject')}",
              *[f"- `{f}`" for f in (commit.get("files") or [])[:MAX_FILES_LISTED]]]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_kb_index(spec: ReleaseSpec, version: str, entries: list[tuple[str, dict[str, Any]]],
                    audiences: list[str], commits: list[dict[str, Any]]) -> str:
    lines = [f"# Knowledge base: {spec.service} {version}", ""]
    if not entries:
        lines += ["No new features: no KB entries needed.", "", "| Audience | Scope |", "| --- | --- |"]
        lines += [f"| {_cell(a)} | no training needed: no new features in this release |" for a in audiences]
        lines += ["", f"Commits in this release ({len(commits)}):", ""]
        lines += [f"- `{short(c['sha'])}` {c.get('type') or 'other'}: {_cell(str(c.get('subject') or ''))}"
                  for c in commits] or ["- none"]
        return "\n".join(lines) + "\n"
    lines += [f"{_plural(len(entries), 'new feature')} in this release; scope per audience:", ""]
    lines.append("| Audience | " + " | ".join(f"[{_cell(plain_subject(c))}]({slug}.md)" for slug, c in entries) + " |")
    lines.append("| --- |" + " --- |" * len(entries))
    for audience in audiences:
        cells = " | ".join(_cell(audience_scope(audience, c)) for _, c in entries)
        lines.append(f"| {_cell(audience)} | {cells} |")
    return "\n".join(lines) + "\n"


def index_rows(text: str) -> dict[str, list[str]]:
    """The index table read back: audience -> its cells (one per entry)."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.startswith("| ") or line.startswith("| Audience") or line.startswith("| ---"):
            continue
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        rows[cells[0]] = cells[1:]
    return rows


def entries_on_disk(kb_dir: Path) -> dict[str, Path]:
    """Feature sha -> entry file, from the ``Feature-Commit:`` line of every entry in ``kb_dir``."""
    found = {}
    for path in sorted(kb_dir.glob("*.md")):
        if path.name == "index.md":
            continue
        match = _FEATURE_LINE_RE.search(path.read_text(encoding="utf-8"))
        if match:
            found[match.group(1)] = path
    return found


def write_kb_entry(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


@duty("training")
def training(ctx: DutyContext, report: ReportBuilder) -> None:
    """One KB entry per new feature, an index, and the scope stated for every audience."""
    changes = change_set_or_fail(ctx, report, verify="new features unknown", check="no training scope to judge")
    if changes is None:
        return
    commits = changes["commits"]
    audiences = list(ctx.spec.training.audiences)
    features = feature_commits(commits)
    kb_dir = ctx.paths.workdir / "docs" / "kb"
    kb_dir.mkdir(parents=True, exist_ok=True)
    for stale in kb_dir.glob("*.md"):  # an earlier attempt's entries must not count for this one
        stale.unlink()
    entries = list(zip(kb_slugs(features), features, strict=True))
    for slug, commit in entries:
        write_kb_entry(kb_dir / f"{slug}.md", render_kb_entry(ctx.spec, ctx.version, commit, audiences))
    index = kb_dir / "index.md"
    index.write_text(render_kb_index(ctx.spec, ctx.version, entries, audiences, commits), encoding="utf-8")

    report.evidence("read", change_set_evidence(changes))
    on_disk = entries_on_disk(kb_dir)
    for path in [index, *on_disk.values()]:
        report.evidence("read", Evidence.file(path))
        report.deliver(f"kb-{path.stem}", path)
    index_text = index.read_text(encoding="utf-8")
    unlisted = [p.name for p in on_disk.values() if f"({p.name})" not in index_text]
    report.verdict("read", not unlisted,
                   f"index.md does not link {', '.join(unlisted)}" if unlisted else
                   f"{_plural(len(on_disk), 'KB entry', 'KB entries')} and index.md written to {kb_dir} and read back")

    _verify_features(report, features, on_disk)
    _check_audience_scope(report, audiences, features, on_disk, index_text)


def _verify_features(report: ReportBuilder, features: list[dict[str, Any]], on_disk: dict[str, Path]) -> None:
    wanted = {c["sha"] for c in features}
    missing = [f"{short(c['sha'])} ({plain_subject(c)})" for c in features if c["sha"] not in on_disk]
    extra = [f"{path.name} ({short(sha)})" for sha, path in on_disk.items() if sha not in wanted]
    report.metrics.update({"features": float(len(features)), "kb_entries": float(len(on_disk))})
    report.evidence("verify", Evidence(kind="computed", source="feat commits vs docs/kb entries",
                                       summary=f"{len(features)} feature(s), {len(on_disk)} entr(ies)",
                                       data={"features": sorted(short(s) for s in wanted),
                                             "entries": {short(s): p.name for s, p in on_disk.items()}}))
    if not features and not on_disk:
        report.verdict("verify", True, "no new features: no KB entries needed")
        return
    problems = ([f"feature(s) without a KB entry: {', '.join(missing)}"] if missing else []) + \
        ([f"KB entr(ies) for no feature of this release: {', '.join(extra)}"] if extra else [])
    report.verdict("verify", not problems, "; ".join(problems) or
                   f"every new feature ({len(features)}) has a KB entry")


def _check_audience_scope(report: ReportBuilder, audiences: list[str], features: list[dict[str, Any]],
                          on_disk: dict[str, Path], index_text: str) -> None:
    problems = []
    rows = index_rows(index_text)
    expected_cells = max(1, len(features))
    for audience in audiences:
        cells = rows.get(audience)
        if cells is None:
            problems.append(f"index.md has no row for audience {audience}")
        elif len(cells) != expected_cells or not all(cells):
            problems.append(f"index.md row {audience} states scope for {sum(1 for c in cells if c)} of "
                            f"{expected_cells} entr(ies)")
    for path in on_disk.values():
        parts = sections(path.read_text(encoding="utf-8"))
        lacking = [a for a in audiences if not parts.get(f"For {a}")]
        if lacking:
            problems.append(f"{path.name} states no scope for {', '.join(lacking)}")
    report.evidence("check", Evidence(kind="computed", source="docs/kb/index.md",
                                      summary=f"{len(rows)} audience row(s) x {expected_cells} column(s)",
                                      data={"rows": rows, "audiences": audiences}))
    report.verdict("check", not problems, "; ".join(problems) or
                   f"scope stated for {', '.join(audiences)} on "
                   + (f"{_plural(len(features), 'feature')}" if features else "the no-new-features release"))
