"""The GENDEV qa-coordinator agent."""

from __future__ import annotations

from gendev_release.operators.base import GendevAgentOperator


class QACoordinatorOperator(GendevAgentOperator):
    """GENDEV agent ``qa-coordinator``. Its duties:

    - ``qa`` (phase 6, Testing & Validation): Quality assurance.
    """

    agent = "qa-coordinator"
    duties = ("qa",)
