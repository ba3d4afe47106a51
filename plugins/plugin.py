"""``GendevReleasePlugin``: registered once, through the ``airflow.plugins`` entry point.

Never copy this module into ``$AIRFLOW_HOME/plugins``: a plugin registered twice is skipped in
core and silently drops other plugins on workers. It contributes macros and a listener that writes
each release run's outcome as the DAG run's note; the release timetable and the Releases view join
it in later issues (ROADMAP 1).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from gendev_release.plugins import run_notes


def gendev_home() -> str:
    """``{{ macros.gendev_release.gendev_home() }}``: where state and evidence of releases live."""
    from gendev_release.context import gendev_home as _home

    return str(_home())


def evidence_dir(dag_id: str, run_id: str) -> str:
    """``{{ macros.gendev_release.evidence_dir(dag.dag_id, run_id) }}``: one run's evidence store (a folder, or
    ``$GENDEV_EVIDENCE_URL/<dag_id>/<run_id>`` when that is set)."""
    from gendev_release.context import RunPaths
    from gendev_release.context import gendev_home as _home

    return RunPaths(home=_home(), dag_id=dag_id, run_id=run_id).evidence_location


class GendevReleasePlugin(AirflowPlugin):
    name = "gendev_release"
    macros = [gendev_home, evidence_dir]
    listeners = [run_notes]
