"""The GENDEV risk-manager agent."""

from __future__ import annotations

from gendev_release.operators.base import GendevAgentOperator


class RiskManagerOperator(GendevAgentOperator):
    """GENDEV agent ``risk-manager``. Its duties:

    - ``risk_assessment`` (phase 1, Pre-Deployment Preparation): Deployment risk assessment.
    """

    agent = "risk-manager"
    duties = ("risk_assessment",)
