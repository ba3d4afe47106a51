"""Release DAGs: one per release spec in ``dags/releases/*.yaml``.

Point Airflow's dags folder at this folder (``AIRFLOW__CORE__DAGS_FOLDER=<repo>/dags``). An invalid
spec becomes an import error of this file naming the spec file and field; the other specs'
DAGs still load. Set ``GENDEV_RELEASES_DIR`` to read specs from another folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from gendev_release.dagfile import load_release_dags

SPEC_DIR = Path(os.environ.get("GENDEV_RELEASES_DIR") or Path(__file__).with_name("releases"))

release_dags, spec_errors = load_release_dags(SPEC_DIR)
globals().update({dag_id: dag for dag_id, dag in release_dags.items()})
if spec_errors:
    from gendev_release.dagfile import INVALID_DAG_ID, invalid_specs_dag

    globals()[INVALID_DAG_ID] = invalid_specs_dag(spec_errors)
