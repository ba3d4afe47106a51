"""The GENDEV documentation-generator agent."""

from __future__ import annotations

from gendev_release.operators.base import GendevAgentOperator


class DocumentationGeneratorOperator(GendevAgentOperator):
    """GENDEV agent ``documentation-generator``. Its duties:

    - ``release_notes`` (phase 8, Post-Deployment Activities): Release notes.
    """

    agent = "documentation-generator"
    duties = ("release_notes",)
