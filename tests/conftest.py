"""Test-wide settings: servers started by tests stop by themselves; helpers importable."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Demo services and routers started by tests exit on their own after this many seconds.
os.environ.setdefault("GENDEV_MAX_LIFETIME", "900")
sys.path.insert(0, str(Path(__file__).parent))
