"""The GENDEV resource-monitor agent."""

from __future__ import annotations

from gendev_release.operators.base import GendevAgentOperator


class ResourceMonitorOperator(GendevAgentOperator):
    """GENDEV agent ``resource-monitor``. Its duties:

    - ``monitoring_alerts`` (phase 5, Deployment Execution): Monitoring and alerting.
    - ``observability`` (phase 7, Monitoring & Observability): Observability.
    """

    agent = "resource-monitor"
    duties = ("monitoring_alerts", "observability")
