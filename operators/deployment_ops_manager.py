"""The GENDEV deployment-ops-manager agent."""

from __future__ import annotations

from gendev_release.operators.base import GendevAgentOperator


class DeploymentOpsManagerOperator(GendevAgentOperator):
    """GENDEV agent ``deployment-ops-manager``. Its duties:

    - ``readiness`` (phase 1, Pre-Deployment Preparation): Deployment readiness assessment.
    - ``execute_strategy`` (phase 5, Deployment Execution): Execute deployment strategy.
    """

    agent = "deployment-ops-manager"
    duties = ("readiness", "execute_strategy")
