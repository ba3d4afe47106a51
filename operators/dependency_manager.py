"""The GENDEV dependency-manager agent."""

from __future__ import annotations

from gendev_release.operators.base import GendevAgentOperator


class DependencyManagerOperator(GendevAgentOperator):
    """GENDEV agent ``dependency-manager``. Its duties:

    - ``dependencies`` (phase 3, Build & Package Management): Dependency validation.
    """

    agent = "dependency-manager"
    duties = ("dependencies",)
