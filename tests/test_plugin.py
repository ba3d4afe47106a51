"""The plugin is registered exactly once, through the airflow.plugins entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_plugin_is_registered_once_through_its_entry_point(tmp_path: Path) -> None:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(tmp_path / "plugins")}
    airflow = Path(sys.executable).with_name("airflow")
    result = subprocess.run([str(airflow), "plugins", "-o", "json"], capture_output=True, text=True, env=env,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    plugins = [p for p in json.loads(result.stdout) if p["name"] == "gendev_release"]
    assert len(plugins) == 1
    assert "EntryPoint(name='gendev_release'" in plugins[0]["source"]
    assert plugins[0]["macros"] == ["gendev_release.plugins.plugin.gendev_home",
                                    "gendev_release.plugins.plugin.evidence_dir"]
    assert "already registered" not in result.stdout + result.stderr


def test_evidence_macro_follows_the_evidence_url(tmp_path: Path, monkeypatch) -> None:
    from gendev_release.plugins.plugin import evidence_dir

    monkeypatch.setenv("GENDEV_HOME", str(tmp_path))
    monkeypatch.delenv("GENDEV_EVIDENCE_URL", raising=False)
    local = evidence_dir("release__demo", "manual__1")
    assert local == str(tmp_path / "evidence" / "release__demo" / "manual__1")
    monkeypatch.setenv("GENDEV_EVIDENCE_URL", "s3://bucket/gendev/")
    assert evidence_dir("release__demo", "manual__1") == "s3://bucket/gendev/release__demo/manual__1"
