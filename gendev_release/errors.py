"""One exception family for the package (no Airflow import: ``validate``, ``schema`` and ``graph`` stay fast).

Errors that retrying cannot fix are marked ``retryable = False``; the operators turn them into
Airflow's ``AirflowFailException`` (see :func:`gendev_release.operators.base.fail_fast`) so that a
task raising them fails at once instead of burning its retries.
"""

from __future__ import annotations

from dataclasses import dataclass


class GendevError(Exception):
    """Base class of every error this package raises on purpose."""

    #: Whether running the task again could help (a network blip) or not (a failed gate).
    retryable: bool = True


@dataclass(frozen=True)
class SpecProblem:
    """One problem in a release spec: where it is and what is wrong."""

    field: str
    message: str

    def render(self, source: str) -> str:
        return f"{source}: {self.field}: {self.message}"


class SpecError(GendevError, ValueError):
    """A release spec (or a trigger parameter) is invalid.

    :param source: the file (or ``params``) the problems were found in.
    :param problems: one entry per bad field.
    """

    retryable = False

    def __init__(self, source: str, problems: list[SpecProblem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(p.render(source) for p in problems))


class GateFailed(GendevError):
    """A step's gate failed: a verification item lacked evidence or a threshold failed."""

    retryable = False


class TargetError(GendevError):
    """The deployment target could not do what was asked."""

    retryable = False


class ReleaseFailed(GendevError):
    """Raised by the watcher so that a release with a failed step ends ``failed``."""

    retryable = False
