"""The GENDEV security-architect agent."""

from __future__ import annotations

from gendev_release.operators.base import GendevAgentOperator


class SecurityArchitectOperator(GendevAgentOperator):
    """GENDEV agent ``security-architect``. Its duties:

    - ``hardening`` (phase 4, Environment Configuration): Security hardening and compliance.
    """

    agent = "security-architect"
    duties = ("hardening",)
