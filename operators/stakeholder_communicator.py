"""The GENDEV stakeholder-communicator agent."""

from __future__ import annotations

from gendev_release.operators.base import GendevAgentOperator


class StakeholderCommunicatorOperator(GendevAgentOperator):
    """GENDEV agent ``stakeholder-communicator``. Its duties:

    - ``notifications`` (phase 2, Release Planning & Coordination): Stakeholder notifications.
    """

    agent = "stakeholder-communicator"
    duties = ("notifications",)
