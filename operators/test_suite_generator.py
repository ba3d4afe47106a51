"""The GENDEV test-suite-generator agent."""

from __future__ import annotations

from gendev_release.operators.base import GendevAgentOperator


class TestSuiteGeneratorOperator(GendevAgentOperator):
    """GENDEV agent ``test-suite-generator``. Its duties:

    - ``smoke_tests`` (phase 6, Testing & Validation): Smoke tests.
    """

    agent = "test-suite-generator"
    duties = ("smoke_tests",)
