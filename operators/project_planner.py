"""The GENDEV project-planner agent."""

from __future__ import annotations

from gendev_release.operators.base import GendevAgentOperator


class ProjectPlannerOperator(GendevAgentOperator):
    """GENDEV agent ``project-planner``. Its duties:

    - ``release_plan`` (phase 2, Release Planning & Coordination): Release planning.
    """

    agent = "project-planner"
    duties = ("release_plan",)
