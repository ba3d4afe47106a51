"""Substance checks for documents a person provides (runbook, rollback procedure, infrastructure docs).

A document passes when it is UTF-8 text of at least ``min_bytes`` (not counting surrounding
whitespace), has a Markdown heading with text under it for every section the spec requires, and
names the service it is for. Each problem is one sentence naming the document and what is missing,
so a 1-byte runbook fails with "runbook.md: 1 bytes of text, at least 200 expected; ...".

A required section matches a heading when every word of the section matches a word of the heading,
case-insensitively; two words match when one starts with the other (at least four letters) or
they share a stem of at least five letters: ``deploy`` matches "Deployment", ``verify`` matches
"Verification", ``manual rollback`` matches "Manual rollback steps" but not "Rolling back by hand".
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

_HEADING_RE = re.compile(r"^\s{0,3}(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE_RE = re.compile(r"^\s{0,3}(```|~~~)")
#: Shortest common beginning that makes two different words the same word ("verif" in verify/verification).
_STEM = 5


@dataclass(frozen=True)
class Section:
    """One heading of a document and the text under it (up to the next heading of the same or a higher level)."""

    title: str
    level: int
    body: str


@dataclass(frozen=True)
class DocumentFindings:
    """What a document holds: its size, its headings, whether it names the service, and the problems."""

    path: str
    size: int
    headings: list[str]
    names_service: bool
    problems: list[str] = field(default_factory=list)
    sha256: str | None = None
    sections: dict[str, str | None] = field(default_factory=dict)
    """Each required section -> the heading that holds it, or None."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_data(self) -> dict[str, object]:
        return {"bytes": self.size, "headings": self.headings, "names_service": self.names_service,
                "sections": self.sections, "problems": self.problems}


def document_sections(text: str) -> list[Section]:
    """The Markdown ATX headings of ``text`` (``# Title`` ... ``###### Title``) outside fenced code, each with the
    text under it: the lines that are not headings, up to the next heading of the same or a higher level."""
    lines = text.splitlines()
    marks: list[tuple[int, str, int]] = []  # (line index, title, level)
    fenced = False
    for index, line in enumerate(lines):
        if _FENCE_RE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else _HEADING_RE.match(line)
        if match:
            marks.append((index, match.group(2).strip(), len(match.group(1))))
    heading_lines = {index for index, _, _ in marks}
    found = []
    for position, (index, title, level) in enumerate(marks):
        end = next((later for later, _, later_level in marks[position + 1:] if later_level <= level), len(lines))
        body = [lines[i] for i in range(index + 1, end) if i not in heading_lines]
        found.append(Section(title, level, "\n".join(body).strip()))
    return found


def headings(text: str) -> list[str]:
    """The titles of :func:`document_sections`, in document order."""
    return [section.title for section in document_sections(text)]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _same_word(wanted: str, found: str) -> bool:
    """Equal, one a prefix of the other of at least four letters (test/testing), or a shared stem of five."""
    if wanted == found:
        return True
    shorter, longer = sorted((wanted, found), key=len)
    if len(shorter) >= 4 and longer.startswith(shorter):
        return True
    common = 0
    for a, b in zip(wanted, found, strict=False):
        if a != b:
            break
        common += 1
    return common >= _STEM


def heading_matches(heading: str, section: str) -> bool:
    """Every word of ``section`` matches a word of ``heading`` (see the module's docstring)."""
    have = _words(heading)
    return all(any(_same_word(word, other) for other in have) for word in _words(section))


def has_section(found: Sequence[str], section: str) -> bool:
    """A heading among ``found`` that holds ``section`` (``"Rollback steps"`` matches ``"## Rollback: steps"``)."""
    return any(heading_matches(heading, section) for heading in found)


def names_service(text: str, service: str) -> bool:
    """``service`` appears as a whole word (case-insensitive; ``demo`` is not found in ``demonstrate``)."""
    return re.search(rf"(?<![A-Za-z0-9_-]){re.escape(service)}(?![A-Za-z0-9_-])", text, re.IGNORECASE) is not None


def check_document(path: Path, *, service: str, sections: Sequence[str] = (), min_bytes: int = 0,
                   label: str | None = None) -> DocumentFindings:
    """Check one provided document for substance; a missing or unreadable file is a problem, not an exception.

    :param path: the document.
    :param service: the service it must name (the spec's ``service``).
    :param sections: headings it must have, each with text under it.
    :param min_bytes: smallest size in bytes, not counting whitespace around the text.
    :param label: how problems name the document (default: its file name).
    """
    name = label or path.name
    try:
        data = path.read_bytes()
    except OSError as exc:
        return DocumentFindings(str(path), 0, [], False, [f"{name}: cannot be read ({exc.strerror or exc})"])
    digest = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return DocumentFindings(str(path), len(data), [], False,
                                [f"{name}: not UTF-8 text (byte {exc.start} is {data[exc.start]:#04x}); "
                                 "give a Markdown or plain-text document"], digest)
    found = document_sections(text)
    titles = [s.title for s in found]
    named = names_service(text, service)
    problems = []
    substance = len(text.strip().encode("utf-8"))
    if substance < min_bytes:
        problems.append(f"{name}: {substance} bytes of text, at least {min_bytes} expected")
    held: dict[str, str | None] = {}
    missing, empty = [], []
    for wanted in sections:
        matches = [s for s in found if heading_matches(s.title, wanted)]
        with_text = [s for s in matches if s.body]
        held[wanted] = (with_text or matches)[0].title if matches else None
        if not matches:
            missing.append(wanted)
        elif not with_text:
            empty.append(f"{wanted!r} ({matches[0].title!r})")
    if missing:
        problems.append(f"{name}: no section for {', '.join(repr(s) for s in missing)} "
                        f"(headings found: {', '.join(repr(t) for t in titles) or 'none'})")
    if empty:
        problems.append(f"{name}: section {', '.join(empty)} has no text under its heading")
    if not named:
        problems.append(f"{name}: does not name the service {service!r}")
    return DocumentFindings(str(path), len(data), titles, named, problems, digest, held)

