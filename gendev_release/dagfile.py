"""Loading a folder of release specs into DAGs for a DAG file (``dags/releases.py``).

One bad spec must not hide the other releases. Airflow records import errors per DAG *file*,
and an exception in the module would drop every DAG of the file, so valid specs become DAGs and
the invalid ones are collected into one placeholder DAG whose validation fails: the DagBag then
records an import error for the DAG file that names each bad spec file and field, and keeps the
valid DAGs.
"""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import DAG

from gendev_release.errors import GendevError, SpecError, SpecProblem
from gendev_release.render import build_release_dag
from gendev_release.spec import load_spec

INVALID_DAG_ID = "gendev_release__invalid_specs"


class InvalidSpecsError(GendevError):
    """Recorded by Airflow as the DAG file's import error."""


class InvalidReleaseSpecs(DAG):
    """Placeholder that fails DAG validation with every spec problem (never scheduled)."""

    spec_errors: list[str]

    def validate(self) -> None:  # called by the DagBag before bagging
        raise InvalidSpecsError(f"{len(self.spec_errors)} invalid release spec(s); their DAGs are not loaded:\n"
                                + "\n".join(self.spec_errors))


def load_release_dags(folder: Path) -> tuple[dict[str, DAG], list[SpecError]]:
    """Build one DAG per ``*.yaml``/``*.yml`` spec in ``folder``; return the DAGs and the errors."""
    dags: dict[str, DAG] = {}
    errors: list[SpecError] = []
    seen: dict[str, Path] = {}
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        try:
            spec = load_spec(path)
            if spec.dag_id in seen:
                raise SpecError(str(path), [SpecProblem("service", f"{spec.service!r} is already released by "
                                                                   f"{seen[spec.dag_id]}; one spec per service")])
            seen[spec.dag_id] = path
            dags[spec.dag_id] = build_release_dag(spec)
        except SpecError as exc:
            errors.append(exc)
    return dags, errors


def invalid_specs_dag(errors: list[SpecError]) -> InvalidReleaseSpecs:
    """The placeholder a DAG file exposes (as a module global) when some specs are invalid."""
    placeholder = InvalidReleaseSpecs(dag_id=INVALID_DAG_ID, schedule=None,
                                      description="Collects invalid release specs as an import error")
    placeholder.spec_errors = [str(e) for e in errors]
    return placeholder
