"""One exception family for the package.

Errors that retrying cannot fix also subclass :class:`AirflowFailException` so that a task
raising them fails at once instead of burning its retries.
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow.sdk.exceptions import AirflowFailException


class GendevError(Exception):
    """Base class of every error this package raises on purpose."""


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

    def __init__(self, source: str, problems: list[SpecProblem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(p.render(source) for p in problems))


class GateFailed(GendevError, AirflowFailException):
    """A step's gate failed: a verification item lacked evidence or a threshold failed."""


class TargetError(GendevError, AirflowFailException):
    """The deployment target could not do what was asked."""


class ReleaseFailed(GendevError, AirflowFailException):
    """Raised by the watcher so that a release with a failed step ends ``failed``."""
