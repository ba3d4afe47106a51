"""The README's spec reference is generated from the models and must stay in step with them."""

from __future__ import annotations

from pathlib import Path

from gendev_release.spec_reference import BEGIN, END, render_reference

README = Path(__file__).resolve().parents[1] / "README.md"


def test_spec_reference_is_current() -> None:
    text = README.read_text()
    block = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert block.strip() == render_reference().strip(), (
        "README spec reference is stale: run `.venv/bin/python -m gendev_release.spec_reference --write README.md`")


def test_readme_shows_the_two_commands() -> None:
    text = README.read_text()
    assert "make demo" in text and "make test" in text


def _reference_rows() -> dict[tuple[str, str], str]:
    """``(model, field) -> description`` from the README's generated reference."""
    text = README.read_text()
    block = text.split(BEGIN, 1)[1].split(END, 1)[0]
    rows: dict[tuple[str, str], str] = {}
    model = ""
    for line in block.splitlines():
        if line.startswith("### `"):
            model = line[5:].split("`", 1)[0]
        elif line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip("|").split(" | ")]
            rows[(model, cells[0].strip("`"))] = cells[-1]
    return rows


def test_reference_names_the_folder_of_every_path_field() -> None:
    rows = _reference_rows()
    folders = {
        ("ReadinessInputs", "runbook"): "relative to the spec folder",
        ("ReadinessInputs", "rollback_procedure"): "relative to the spec folder",
        ("BuildInputs", "config"): "relative to the spec folder",
        ("BuildInputs", "artifacts"): "relative to {artifacts_dir}",
        ("DependencyInputs", "lock_file"): "relative to the spec folder",
        ("DependencyInputs", "scan_report"): "relative to the spec folder",
        ("InfrastructureInputs", "files"): "relative to the spec folder",
        ("SecurityInputs", "config_files"): "relative to the spec folder",
        ("MonitoringInputs", "dashboard"): "relative to the spec folder",
        ("BackupInputs", "output"): "relative to the run's workdir",
        ("TestSuite", "junit"): "relative to {workdir}",
        ("QAInputs", "coverage_report"): "relative to {workdir}",
        ("RiskInputs", "paths"): "relative to the repo root",
        ("RiskInputs", "repo"): "given only as '..' components",
        ("FileChannel", "path"): "relative to the gendev home",
    }
    assert {key: folder for key, folder in folders.items() if folder not in rows.get(key, "")} == {}


def test_reference_states_the_run_version_and_allowlist_rules() -> None:
    rows = _reference_rows()
    assert ("ReleaseSpec (top level)", "version") not in rows
    intro = README.read_text().split(BEGIN, 1)[1].split("| field |", 1)[0]
    assert "The spec names no version: every run does" in intro
    assert "`GENDEV_ALLOWED_EXECUTABLES`" in intro
