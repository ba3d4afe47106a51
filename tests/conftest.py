"""Test-wide settings: servers started by tests stop by themselves; Airflow never touches ~/airflow."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

# Demo services and routers started by tests exit on their own after this many seconds.
os.environ.setdefault("GENDEV_MAX_LIFETIME", "900")
# Airflow reads its home when first imported: give the test session its own, empty one.
if "AIRFLOW_HOME" not in os.environ or os.environ.get("CI"):
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="gendev-test-airflow-")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
sys.path.insert(0, str(Path(__file__).parent))


import item_proof  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _marked_items_are_shown_failing(request: pytest.FixtureRequest):
    """A test marked ``@pytest.mark.item(ID)`` must show ``ID`` failing through ``assert_item_fails``."""
    marked = {mark.args[0] for mark in request.node.iter_markers("item")}
    item_proof.PROVEN.clear()
    yield
    missing = marked - item_proof.PROVEN
    if missing:
        pytest.fail(f"marked for {sorted(missing)} but never showed it failing with assert_item_fails")


@pytest.fixture(autouse=True)
def _triggers_run_without_settling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Triggers run in-process here (no scheduler to race), so they need not hold their events 3 s.

    Module-scoped real Airflow stacks start before this and keep the default (see
    ``gendev_release.sensors.triggers.settle_seconds``); ``test_triggers`` checks the hold itself.
    """
    from gendev_release.sensors.triggers import SETTLE_ENV

    monkeypatch.setenv(SETTLE_ENV, "0")
