"""How a test shows that a verification item fails: ``@pytest.mark.item(ID)`` plus :func:`assert_item_fails`.

A test marked ``@pytest.mark.item("readiness.read")`` must call ``assert_item_fails(report,
"readiness.read")`` on the report its realistic bad input produced; ``tests/conftest.py`` fails the
test when a marked item was never shown failing, and ``tests/test_verification_matrix.py`` checks
that every item of the matrix names such a test.
"""

from __future__ import annotations

from gendev_release.report import AgentReport

#: Item ids shown failing by the test that is running (reset per test by tests/conftest.py).
PROVEN: set[str] = set()


def assert_item_fails(report: AgentReport, item_id: str, because: str | None = None) -> None:
    """``item_id`` failed in ``report``, the step's gate fails naming it, and (optionally) for the reason given.

    The gate failures are the text of the task error (``GateFailed``: "<step> gate failed: ..."),
    so an item named there is named in the task's error and in the report.
    """
    matches = [v for v in report.verifications if v.item_id == item_id]
    assert matches, f"{item_id} is not in the report of {report.step_id}"
    verification = matches[0]
    assert not verification.passed, f"{item_id} passed: {verification.detail}"
    assert report.status == "failed", f"{report.step_id} has status {report.status!r} although {item_id} failed"
    failures = report.gate_failures()
    assert any(item_id in failure for failure in failures), f"the gate does not name {item_id}: {failures}"
    if because is not None:
        assert because.lower() in verification.detail.lower(), (
            f"{item_id} failed for another reason than {because!r}: {verification.detail}")
    PROVEN.add(item_id)
