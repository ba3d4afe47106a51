"""The verification matrix is complete: 64 items, each with a test that shows it failing for a real reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gendev_release.catalogue import all_steps
from gendev_release.verification_matrix import markdown, matrix, unknown_proofs

REPO = Path(__file__).resolve().parents[1]


def test_the_matrix_has_the_64_items_of_the_catalogue_in_order() -> None:
    rows = matrix()
    assert len(rows) == 64
    assert [row.item_id for row in rows] == [item for _, step in all_steps() for item in step.item_ids()]
    assert unknown_proofs() == []


def test_every_item_says_how_it_is_decided_and_names_a_test() -> None:
    incomplete = [row.item_id for row in matrix()
                  if not (row.evidence and row.oracle and row.fails_when and row.test)]
    assert incomplete == [], f"items without a complete proof: {incomplete}"


@pytest.fixture(scope="module")
def collected_marks() -> dict[str, list[str]]:
    files = sorted({row.test.split("::", 1)[0] for row in matrix() if row.test})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "item_collect", "-p", "no:cacheprovider",
         *files], cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("ITEM-MARKS ")), None)
    assert line is not None, f"collection failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return json.loads(line.removeprefix("ITEM-MARKS "))


def test_every_items_test_exists_and_is_marked_for_it(collected_marks: dict[str, list[str]]) -> None:
    problems = []
    for row in matrix():
        if not row.test:
            continue
        if row.test not in collected_marks:
            problems.append(f"{row.item_id}: no test {row.test}")
        elif row.item_id not in collected_marks[row.test]:
            problems.append(f"{row.item_id}: {row.test} is not marked @pytest.mark.item({row.item_id!r})")
    assert problems == []


def test_the_committed_document_is_the_generated_one() -> None:
    document = REPO / "docs" / "verification-items.md"
    assert document.read_text(encoding="utf-8") == markdown(), (
        "docs/verification-items.md is stale: run "
        ".venv/bin/gendev-release items --markdown > docs/verification-items.md")
