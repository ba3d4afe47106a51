"""A copy of the demo spec in a folder of its own, for tests that change its inputs or its rules.

The copy is its own git repository (the risk step reads the change set from git, and a spec's
``risk.repo`` must stay inside or above the spec's folder), holding one commit of the demo inputs.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "dags" / "releases" / "demo.yaml"
GIT_ENV = {"GIT_AUTHOR_NAME": "tests", "GIT_AUTHOR_EMAIL": "tests@example.com", "GIT_COMMITTER_NAME": "tests",
           "GIT_COMMITTER_EMAIL": "tests@example.com", "PATH": "/usr/local/bin:/usr/bin:/bin"}


def git(folder: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True, text=True,
                            env={**GIT_ENV, "HOME": str(folder)})
    return result.stdout


def demo_spec_folder(folder: Path, change: Callable[[dict[str, Any]], None] | None = None,
                     name: str = "demo.yaml") -> Path:
    """Copy the demo spec and its inputs into ``folder`` (a new git repository); return the spec path."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(DEMO.parent / "demo", folder / "demo")
    data = yaml.safe_load(DEMO.read_text())
    data["risk"]["repo"] = "."
    data["risk"]["paths"] = ["demo"]
    if change is not None:
        change(data)
    spec = folder / name
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    git(folder, "init", "-q", "-b", "main")
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", "feat: the demo service")
    return spec
