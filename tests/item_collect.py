"""A pytest plugin for ``tests/test_verification_matrix.py``: print each collected test's item marks as JSON."""

from __future__ import annotations

import json

import pytest


def pytest_collection_finish(session: pytest.Session) -> None:
    marks = {item.nodeid: sorted({mark.args[0] for mark in item.iter_markers("item")}) for item in session.items}
    print("ITEM-MARKS " + json.dumps(marks))
