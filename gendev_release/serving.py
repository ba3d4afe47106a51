"""Is the run's version what users get? Asked of the live service, through its entry point.

A release is ``success`` only while the target serves its version. :func:`check_serving` asks two
independent witnesses: the target's own state (which slot takes traffic, deployed by which run)
and the service itself, through the router clients use (several requests to the spec's version
endpoint, every one must name the version). :func:`guidance` turns a failed check into the
sentence a release engineer needs: what is serving, why, and which phase to clear.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from gendev_release.probes import http_get
from gendev_release.report import Evidence
from gendev_release.targets.base import SlotInfo

if TYPE_CHECKING:
    from gendev_release.context import DutyContext
    from gendev_release.run_record import RunRecord

#: Requests sent through the router; with weights in play one lucky answer proves nothing.
SERVING_PROBES = 5
PROVISIONING_TASK = "p4_environment.provisioning"


def version_in(body: str, json_field: str) -> str | None:
    """The version a response body names: the JSON value at the dotted ``json_field``, else None."""
    try:
        value: Any = json.loads(body)
    except ValueError:
        return None
    for part in json_field.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return str(value) if isinstance(value, (str, int, float)) else None


@dataclass(frozen=True)
class ServedAnswer:
    status: int | None
    version: str | None
    error: str | None = None


@dataclass
class ServingCheck:
    """What the target says and what the service answered through its entry point."""

    expected: str
    run_id: str
    url: str | None
    active: SlotInfo | None
    answers: list[ServedAnswer] = field(default_factory=list)

    @property
    def target_serves_run(self) -> bool:
        return self.active is not None and self.active.version == self.expected and self.active.run_id == self.run_id

    @property
    def answers_serve_version(self) -> bool:
        return bool(self.answers) and all(a.status == 200 and a.version == self.expected for a in self.answers)

    @property
    def ok(self) -> bool:
        return self.target_serves_run and self.answers_serve_version

    @property
    def served_versions(self) -> list[str]:
        return sorted({a.version for a in self.answers if a.version} | ({"(no answer)"} if any(
            a.status is None for a in self.answers) else set()))

    def problems(self) -> list[str]:
        problems = []
        if self.active is None:
            problems.append("the target has no active version")
        elif self.active.version != self.expected:
            problems.append(f"the target's active version is {self.active.version}, not {self.expected}")
        elif self.active.run_id != self.run_id:
            problems.append(f"{self.expected} takes traffic from slot {self.active.slot}, deployed by run "
                            f"{self.active.run_id}, not by this run")
        if self.url is None:
            problems.append("there is no entry point (router) to ask")
        elif not self.answers_serve_version:
            problems.append(f"{self.url} answered {', '.join(self.served_versions) or 'nothing'} "
                            f"in {len(self.answers)} request(s), expected {self.expected} every time")
        return problems

    def evidence(self) -> Evidence:
        return Evidence(kind="http", source=self.url or "(no entry point)",
                        summary=("serves " if self.ok else "does not serve ") + self.expected
                        + f": {len(self.answers)} request(s) answered {', '.join(self.served_versions) or 'nothing'}",
                        data={"expected": self.expected, "active": self.active.as_dict() if self.active else None,
                              "answers": [asdict(a) for a in self.answers], "ok": self.ok})


def check_serving(ctx: DutyContext, probes: int = SERVING_PROBES) -> ServingCheck:
    """Ask the target and the live entry point whether this run's version serves users."""
    status = ctx.target.status()
    url = ctx.target.url()
    check = ServingCheck(expected=ctx.version, run_id=ctx.run_id, url=url, active=status.active)
    if url:
        endpoint = ctx.spec.health.version_check
        with httpx.Client() as client:
            for _ in range(probes):
                result = http_get(url.rstrip("/") + endpoint.path, endpoint.timeout_seconds, client)
                check.answers.append(ServedAnswer(result.status, version_in(result.body, endpoint.json_field)
                                                  if result.status == 200 else None, result.error))
    return check


def guidance(ctx: DutyContext, check: ServingCheck, record: RunRecord | None) -> str:
    """Why this run's version is not serving, and what to do about it, in one message."""
    service, version = ctx.spec.service, ctx.version
    active = check.active
    serving = f"{active.version} (slot {active.slot})" if active else "nothing"
    head = f"{service} {version} is not serving: {'; '.join(check.problems())}."
    again = f"clear from {PROVISIONING_TASK} (with downstream) to deploy it again."
    undone = None
    if record is not None:
        undone = next((a for a in reversed(record.attempts) if a.outcome in ("rolled_back", "withdrawn")), None)
    if undone is not None and undone.outcome == "rolled_back":
        failed = ", ".join(undone.failed_tasks) or "a failure"
        return f"{head} {version} was rolled back to {undone.active_version or serving} after {failed}; {again}"
    if undone is not None:
        return f"{head} {version} (a first release) was withdrawn after {', '.join(undone.failed_tasks)}; {again}"
    replaced = active is not None and active.run_id not in (None, ctx.run_id) and (
        record is None or active.version != record.last_verified_version)
    if replaced and active is not None:
        return (f"{head} {serving} was deployed since by run {active.run_id}; this run can no longer complete. "
                "Trigger a new release to ship it.")
    return f"{head} Serving: {serving}; {again}"
