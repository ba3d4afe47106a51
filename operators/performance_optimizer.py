"""The GENDEV performance-optimizer agent."""

from __future__ import annotations

from gendev_release.operators.base import GendevAgentOperator


class PerformanceOptimizerOperator(GendevAgentOperator):
    """GENDEV agent ``performance-optimizer``. Its duties:

    - ``performance`` (phase 7, Monitoring & Observability): Performance analysis.
    """

    agent = "performance-optimizer"
    duties = ("performance",)
