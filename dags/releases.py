"""Release specs without their Airflow DAG file are reported here, never silently ignored.

Each spec ``dags/releases/<name>.yaml`` is loaded by its own DAG file ``<name>.py`` beside it
(written by ``gendev-release dagfile dags/releases/<name>.yaml``), so an invalid spec is the import
error of its own file and never hides another release. This file holds no DAG: it raises (an
import error naming the specs) when a spec in ``releases/`` has no DAG file.
"""

from __future__ import annotations

from pathlib import Path

from gendev_release.dagfile import check_dag_files

check_dag_files(Path(__file__).with_name("releases"))
