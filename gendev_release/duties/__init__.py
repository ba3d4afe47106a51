"""Builtin duties: one function per agent step, registered by step id.

Importing this package registers all 16 duties (see :data:`gendev_release.duties.base.DUTIES`).
"""

from __future__ import annotations

from gendev_release.duties.base import DUTIES, run_duty

__all__ = ["DUTIES", "run_duty"]
