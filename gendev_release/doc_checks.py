"""Substance checks for documents a person provides (runbook, rollback procedure, infrastructure docs).

A document passes when it is at least ``min_bytes`` long, has a Markdown heading for every section
the spec requires (matched case-insensitively, a heading containing the section's words counts), and
names the service it is for. Each problem is one sentence naming the document and what is missing,
so a 1-byte runbook fails with "runbook.md: 1 bytes, at least 200 expected; no section ...".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

_HEADING_RE = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")


@dataclass(frozen=True)
class DocumentFindings:
    """What a document holds: its size, its headings, whether it names the service, and the problems."""

    path: str
    size: int
    headings: list[str]
    names_service: bool
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_data(self) -> dict[str, object]:
        return {"bytes": self.size, "headings": self.headings, "names_service": self.names_service,
                "problems": self.problems}


def headings(text: str) -> list[str]:
    """The Markdown ATX headings of ``text`` (``# Title`` ... ``###### Title``), outside fenced code."""
    found, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        match = None if fenced else _HEADING_RE.match(line)
        if match:
            found.append(match.group(1).strip())
    return found


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def has_section(found: Sequence[str], section: str) -> bool:
    """A heading whose words include every word of ``section`` (``"Rollback steps"`` matches ``"## Rollback: steps"``)."""
    wanted = _words(section)
    return any(all(word in _words(heading) for word in wanted) for heading in found)


def names_service(text: str, service: str) -> bool:
    """``service`` appears as a whole word (case-insensitive; ``demo`` is not found in ``demonstrate``)."""
    return re.search(rf"(?<![A-Za-z0-9_-]){re.escape(service)}(?![A-Za-z0-9_-])", text, re.IGNORECASE) is not None


def check_document(path: Path, *, service: str, sections: Sequence[str] = (), min_bytes: int = 0,
                   label: str | None = None) -> DocumentFindings:
    """Check one provided document for substance; a missing or unreadable file is a problem, not an exception."""
    name = label or path.name
    try:
        data = path.read_bytes()
    except OSError as exc:
        return DocumentFindings(str(path), 0, [], False, [f"{name}: cannot be read ({exc.strerror or exc})"])
    text = data.decode("utf-8", errors="replace")
    found = headings(text)
    named = names_service(text, service)
    problems = []
    if len(data) < min_bytes:
        problems.append(f"{name}: {len(data)} bytes, at least {min_bytes} expected")
    missing = [section for section in sections if not has_section(found, section)]
    if missing:
        problems.append(f"{name}: no section for {', '.join(repr(s) for s in missing)} "
                        f"(headings found: {', '.join(repr(h) for h in found) or 'none'})")
    if not named:
        problems.append(f"{name}: does not name the service {service!r}")
    return DocumentFindings(str(path), len(data), found, named, problems)
