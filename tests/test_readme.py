"""The README's spec reference is generated from the models and must stay in step with them."""

from __future__ import annotations

from pathlib import Path

from gendev_release.spec_reference import BEGIN, END, render_reference

README = Path(__file__).resolve().parents[1] / "README.md"


def test_spec_reference_is_current() -> None:
    text = README.read_text()
    block = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert block.strip() == render_reference().strip(), (
        "README spec reference is stale: run `.venv/bin/python -m gendev_release.spec_reference --write README.md`")


def test_readme_shows_the_two_commands() -> None:
    text = README.read_text()
    assert "make demo" in text and "make test" in text
