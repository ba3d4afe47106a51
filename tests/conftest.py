"""Test-wide settings: servers started by tests stop by themselves; Airflow never touches ~/airflow."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

# Demo services and routers started by tests exit on their own after this many seconds.
os.environ.setdefault("GENDEV_MAX_LIFETIME", "900")
# Airflow reads its home when first imported: give the test session its own, empty one.
if "AIRFLOW_HOME" not in os.environ or os.environ.get("CI"):
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="gendev-test-airflow-")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
sys.path.insert(0, str(Path(__file__).parent))
