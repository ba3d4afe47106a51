"""One Airflow DAG file per release spec, so one bad spec never hides another.

Airflow records import errors per DAG *file*, and a file with an import error loses all of its
DAGs (the dag-processor marks them stale). So every spec ``<name>.yaml`` has a DAG file
``<name>.py`` beside it, written by ``gendev-release dagfile``. The file holds no data at all: it
finds its spec by its own file name, so nothing from a spec (not even its path) is ever written
into code. An invalid spec becomes the import error of its own DAG file, naming the spec file and
field; every other release keeps its DAG.

``dags/releases.py`` calls :func:`check_dag_files` so that a spec dropped into the folder without
its DAG file is reported as an import error instead of being ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gendev_release.errors import GendevError, SpecError
from gendev_release.spec import load_spec

if TYPE_CHECKING:
    from airflow.sdk import DAG

SPEC_SUFFIXES = (".yaml", ".yml")

DAG_FILE = '''"""Airflow DAG of the release spec beside this file (same name, .yaml or .yml).

Written by `gendev-release dagfile`; it holds no data: the spec is found by this file's name.
An invalid spec becomes this file's import error (naming the spec file and field); every other
release keeps its DAG.
"""

from gendev_release.dagfile import release_dag

dag = release_dag(__file__)
'''


class InvalidReleaseSpec(GendevError):
    """Raised at parse time: Airflow shows it as the import error of the spec's DAG file."""

    retryable = False


def spec_beside(dag_file: str | Path) -> Path:
    """The spec a DAG file belongs to: same folder, same name, ``.yaml`` (or ``.yml``)."""
    path = Path(dag_file)
    for suffix in SPEC_SUFFIXES:
        candidate = path.with_suffix(suffix)
        if candidate.exists():
            return candidate
    raise InvalidReleaseSpec(f"{path.name} is a release DAG file, but there is no {path.stem}.yaml beside it "
                             f"in {path.parent}; restore the spec or delete {path.name}")


def release_dag(dag_file: str | Path) -> DAG:
    """The release DAG of the spec beside ``dag_file``; an invalid spec raises :class:`InvalidReleaseSpec`."""
    from gendev_release.render import build_release_dag

    spec_path = spec_beside(dag_file)
    try:
        spec = load_spec(spec_path)
    except SpecError as exc:
        lines = "\n".join(problem.render(str(spec_path)) for problem in exc.problems)
        raise InvalidReleaseSpec(f"invalid release spec {spec_path.name} ({len(exc.problems)} problem(s)); "
                                 f"its DAG is not loaded, the other releases are not affected:\n{lines}") from None
    return build_release_dag(spec)


def dag_file_for(spec_path: Path) -> Path:
    return spec_path.with_suffix(".py")


def write_dag_file(spec_path: str | Path) -> tuple[Path, bool]:
    """Write the DAG file beside ``spec_path``; returns ``(path, written)`` (False: it was already there).

    :raises InvalidReleaseSpec: when a different file already has that name (it is never overwritten).
    """
    spec_path = Path(spec_path)
    if spec_path.suffix not in SPEC_SUFFIXES:
        raise InvalidReleaseSpec(f"{spec_path} is not a .yaml or .yml file")
    target = dag_file_for(spec_path)
    if target.exists():
        if target.read_text(encoding="utf-8") == DAG_FILE:
            return target, False
        raise InvalidReleaseSpec(f"{target} exists and is not a gendev-release DAG file; rename one of them")
    target.write_text(DAG_FILE, encoding="utf-8")
    return target, True


def specs_without_dag_file(folder: Path) -> list[Path]:
    return sorted(p for suffix in SPEC_SUFFIXES for p in Path(folder).glob(f"*{suffix}")
                  if not dag_file_for(p).exists())


def check_dag_files(folder: Path) -> None:
    """Raise (an import error of the calling DAG file) when a spec in ``folder`` has no DAG file."""
    missing = specs_without_dag_file(folder)
    if missing:
        raise InvalidReleaseSpec(
            f"{len(missing)} release spec(s) in {folder} have no DAG file, so Airflow does not load them: "
            + ", ".join(p.name for p in missing)
            + ". Write them with: gendev-release dagfile " + " ".join(str(p) for p in missing))
