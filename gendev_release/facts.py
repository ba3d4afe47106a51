"""Typed facts one step hands to a later one.

A step's :class:`~gendev_release.report.AgentReport` travels through Airflow (XCom) to the steps
after it (:attr:`~gendev_release.context.DutyContext.upstream`); the facts a later step relies on
are read from it through these models, never as loose dict lookups or files re-read from disk. A
fact that is missing or malformed is a clear problem naming the step and the field, never a
``KeyError`` deep inside a duty.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

if TYPE_CHECKING:
    from gendev_release.context import DutyContext

F = TypeVar("F", bound="Handoff")


class Handoff(BaseModel):
    """A fact handed on by ``step``; :meth:`from_facts` reads it out of that step's ``facts``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    step: ClassVar[str]
    key: ClassVar[str]

    @classmethod
    def from_facts(cls: type[F], facts: dict[str, Any]) -> F:
        if cls.key not in facts or facts[cls.key] is None:
            raise KeyError(cls.key)
        return cls.model_validate(facts[cls.key])


class StagedRevision(Handoff):
    """The slot provisioning started the new version on (no traffic yet)."""

    step: ClassVar[str] = "provisioning"
    key: ClassVar[str] = "staged"

    slot: str = Field(min_length=1)
    version: str = Field(min_length=1)
    url: str = Field(min_length=1)
    pid: int | None = None
    started_at: str | None = None
    run_id: str | None = None


class Commit(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    sha: str = Field(min_length=7)
    subject: str = ""
    type: str | None = None
    scope: str | None = None
    breaking: bool = False
    files: list[str] = Field(default_factory=list)


class ChangeSet(Handoff):
    """The commits between the last successful release and this one, from the risk step's git read."""

    step: ClassVar[str] = "risk_assessment"
    key: ClassVar[str] = "commits"

    from_sha: str | None = None
    source_sha: str | None = None
    commits: list[Commit]

    @classmethod
    def from_facts(cls, facts: dict[str, Any]) -> ChangeSet:
        if facts.get("commits") is None:
            raise KeyError("commits")
        return cls.model_validate({"commits": facts["commits"], "from_sha": facts.get("from_sha"),
                                   "source_sha": facts.get("source_sha")})


class Baseline(Handoff):
    """The active version's metric samples before the release (the anomaly baseline)."""

    step: ClassVar[str] = "readiness"
    key: ClassVar[str] = "baseline_metrics"

    samples: dict[str, float]

    @classmethod
    def from_facts(cls, facts: dict[str, Any]) -> Baseline:
        if facts.get(cls.key) is None:
            raise KeyError(cls.key)
        return cls.model_validate({"samples": facts[cls.key]})


class PlanEstimate(Handoff):
    """When the release plan expects the release to end, and when the change window closes."""

    step: ClassVar[str] = "release_plan"
    key: ClassVar[str] = "estimated_end"

    estimated_end: datetime
    window_end: datetime | None = None

    @classmethod
    def from_facts(cls, facts: dict[str, Any]) -> PlanEstimate:
        if facts.get(cls.key) is None:
            raise KeyError(cls.key)
        return cls.model_validate({"estimated_end": facts[cls.key], "window_end": facts.get("window_end")})


def handed_on(ctx: DutyContext, model: type[F]) -> tuple[F | None, str]:
    """The fact ``model`` from this run's ``model.step`` report, or ``(None, why not)``."""
    report = ctx.earlier(model.step)
    if report is None:
        return None, f"no {model.step} report in this run (it did not run or handed nothing on)"
    try:
        return model.from_facts(report.facts), "ok"
    except KeyError:
        return None, f"the {model.step} report hands on no facts['{model.key}']"
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        return None, (f"the {model.step} report's facts['{model.key}'] is not a {model.__name__}: "
                      f"{where}: {error['msg']}")
