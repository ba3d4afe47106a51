"""The GENDEV cicd-builder agent."""

from __future__ import annotations

from gendev_release.operators.base import GendevAgentOperator


class CICDBuilderOperator(GendevAgentOperator):
    """GENDEV agent ``cicd-builder``. Its duties:

    - ``build`` (phase 3, Build & Package Management): Build and packaging.
    """

    agent = "cicd-builder"
    duties = ("build",)
