"""The GENDEV iac-automation-engineer agent."""

from __future__ import annotations

from gendev_release.operators.base import GendevAgentOperator


class IaCAutomationEngineerOperator(GendevAgentOperator):
    """GENDEV agent ``iac-automation-engineer``. Its duties:

    - ``provisioning`` (phase 4, Environment Configuration): Infrastructure provisioning.
    """

    agent = "iac-automation-engineer"
    duties = ("provisioning",)
