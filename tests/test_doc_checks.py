"""Substance checks of provided documents: size, required sections with text, the service named."""

from __future__ import annotations

from pathlib import Path

import pytest

from gendev_release.doc_checks import check_document, document_sections, has_section, headings, names_service

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "dags" / "releases" / "demo"

RUNBOOK = """# Payments runbook

Service `payments`, two processes behind the router.

## Deployment
Run the release DAG with the version to ship.

### Before you start
Check the change window.

## Verification
Look at /healthz and the error ratio.

```
## not a heading: inside a fence
```

## Escalation
"""


def write(tmp_path: Path, text: str | bytes, name: str = "runbook.md") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_the_demo_documents_meet_the_spec_defaults() -> None:
    for name, sections in (("runbook.md", ["deploy", "verify", "escalation"]), ("rollback.md", ["manual rollback"])):
        findings = check_document(DEMO / name, service="demo", sections=sections, min_bytes=200)
        assert findings.ok, findings.problems
        assert all(findings.sections.values())


def test_a_one_byte_runbook_fails_on_every_count(tmp_path: Path) -> None:
    findings = check_document(write(tmp_path, "x"), service="demo", sections=["deploy"], min_bytes=200)
    assert not findings.ok and findings.size == 1
    assert findings.problems == ["runbook.md: 1 bytes of text, at least 200 expected",
                                 "runbook.md: no section for 'deploy' (headings found: none)",
                                 "runbook.md: does not name the service 'demo'"]


def test_whitespace_does_not_count_as_substance(tmp_path: Path) -> None:
    findings = check_document(write(tmp_path, "# demo\n" + " " * 500 + "\n" * 50), service="demo", min_bytes=200)
    assert findings.problems == ["runbook.md: 6 bytes of text, at least 200 expected"]
    assert findings.size == 557


def test_sections_match_words_and_their_stems_and_need_text(tmp_path: Path) -> None:
    findings = check_document(write(tmp_path, RUNBOOK), service="payments",
                              sections=["deploy", "verify", "escalation"], min_bytes=10)
    assert findings.sections == {"deploy": "Deployment", "verify": "Verification", "escalation": "Escalation"}
    assert findings.problems == ["runbook.md: section 'escalation' ('Escalation') has no text under its heading"]


def test_headings_skip_fenced_code_and_sections_hold_their_subsections() -> None:
    assert headings(RUNBOOK) == ["Payments runbook", "Deployment", "Before you start", "Verification", "Escalation"]
    deployment = document_sections(RUNBOOK)[1]
    assert deployment.level == 2 and "Check the change window." in deployment.body


@pytest.mark.parametrize(("heading", "section", "ok"), [
    ("Deployment steps", "deploy", True), ("Manual rollback", "manual rollback", True),
    ("Rollback: manual steps", "manual rollback", True), ("Rolling back by hand", "manual rollback", False),
    ("Version check", "verify", False), ("Dependencies", "deploy", False), ("Runbook", "run", False),
])
def test_has_section(heading: str, section: str, ok: bool) -> None:
    assert has_section([heading], section) is ok


def test_the_service_is_named_as_a_whole_word() -> None:
    assert names_service("Service: `demo` on loopback", "demo")
    assert names_service("The Demo service", "demo")
    assert not names_service("we demonstrate the tool", "demo")
    assert not names_service("demo-api runbook", "demo")


def test_binary_and_missing_files_are_problems_not_exceptions(tmp_path: Path) -> None:
    binary = check_document(write(tmp_path, b"\x89PNG\r\n\x1a\n\xff", "runbook.png"), service="demo")
    assert binary.problems == ["runbook.png: not UTF-8 text (byte 0 is 0x89); give a Markdown or plain-text document"]
    assert binary.sha256 is not None
    missing = check_document(tmp_path / "nope.md", service="demo", label="readiness.runbook nope.md")
    assert missing.problems == ["readiness.runbook nope.md: cannot be read (No such file or directory)"]
