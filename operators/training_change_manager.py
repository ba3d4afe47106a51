"""The GENDEV training-change-manager agent."""

from __future__ import annotations

from gendev_release.operators.base import GendevAgentOperator


class TrainingChangeManagerOperator(GendevAgentOperator):
    """GENDEV agent ``training-change-manager``. Its duties:

    - ``training`` (phase 8, Post-Deployment Activities): Training and change management.
    """

    agent = "training-change-manager"
    duties = ("training",)
