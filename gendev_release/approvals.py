"""Approvals by people: who must approve a release, and how each answer is judged.

The approval gate sits after phase 4 (the version is staged and hardened, no traffic moved) and
before phase 5's traffic switch. It is in the DAG only when the spec's ``approvals.required_for``
names something (:func:`gate_tasks`); at run time it stops the release when the run's environment
is listed, or when ``high_risk`` is listed and risk_assessment rated the release high
(:func:`stop_reasons`), and otherwise lets it pass, recording why.

People answer through Airflow's Human-in-the-loop (:mod:`gendev_release.operators.approval`): one
HITL task per required approval (``approval_1`` ... ``approval_N``), each assigned to the approvers
who may still approve, so Airflow itself refuses (403) the user who triggered the run and anyone
who already approved. Airflow keeps one answer per task, so every approval stays in Airflow's own
record (``hitlDetails``) as well as in the run's evidence store. With ``on_timeout: escalate`` one
more task (``approval_escalation``) asks ``escalate_to`` when an approval times out.

The rules, as pure functions (no Airflow import) so they are tested on their own:

* N of M: ``required`` distinct approvers; one Reject from an approver rejects the release.
* The user who triggered the run never approves it; neither does anyone outside the gate's approvers.
* A timeout resolves to ``reject`` or ``escalate``; it never approves (:func:`judge`).
* An answer that does not count (a wrong person, which Airflow lets through only when every user is
  an admin) is recorded and the same approval is asked again until its deadline.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gendev_release.errors import GendevError

if TYPE_CHECKING:
    from gendev_release.evidence_store import EvidenceStore
    from gendev_release.spec import Approvals

APPROVE = "Approve"
REJECT = "Reject"
OPTIONS = (APPROVE, REJECT)
ROLE_PREFIX = "role:"
#: The phase whose end the gate follows (its tasks are the last ones of this TaskGroup).
GATE_PHASE = "p4_environment"
ESCALATION = "escalation"
#: Evidence records: ``approval-1`` ... ``approval-N``, ``approval-escalation``.
RECORD_PREFIX = "approval-"

GateRole = Literal["approval", "escalation", "emergency", "analysis"]
Outcome = Literal["not_required", "waiting", "approved", "rejected", "escalated"]
Verdict = Literal["approve", "reject", "refuse", "escalate"]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class ApprovalError(GendevError):
    """The gate cannot ask anyone (an unresolvable role, too few eligible approvers) or it rejected the release."""

    retryable = False


class ApprovalRejected(ApprovalError):
    """The approval gate rejected the release (a Reject, a timeout, too few people who may approve)."""


# ------------------------------------------------------------------------------------------ plan
def gate_tasks(approvals: Approvals | None) -> list[tuple[str, GateRole, int]]:
    """The gate's tasks, in order, as ``(local task id, role, number)``; empty when the spec asks for no gate.

    One task per required approval, plus ``approval_escalation`` when a timeout escalates.
    """
    if approvals is None or not approvals.required_for:
        return []
    tasks: list[tuple[str, GateRole, int]] = [(f"approval_{n}", "approval", n)
                                              for n in range(1, approvals.required + 1)]
    if approvals.on_timeout == "escalate":
        tasks.append((f"approval_{ESCALATION}", "escalation", approvals.required + 1))
    return tasks


def gate_task_ids(approvals: Approvals | None) -> list[str]:
    """Full task ids of the gate (``p4_environment.approval_1`` ...)."""
    return [f"{GATE_PHASE}.{local}" for local, _, _ in gate_tasks(approvals)]


def high_risk_gate(approvals: Approvals | None, environment: str) -> str | None:
    """How people approve a high-risk release, or None when nothing would stop it for approval.

    The gate stops a high-risk release when ``approvals.required_for`` lists ``high_risk``, or the
    run's environment (every release to it stops). Without either, risk_assessment blocks a high risk.
    """
    if approvals is None or not ({"high_risk", environment} & set(approvals.required_for)):
        return None
    return (f"{approvals.required} of {', '.join(approvals.approvers)} approve in Airflow at "
            f"{', '.join(gate_task_ids(approvals))} before traffic moves (approvals.required_for: "
            f"{', '.join(approvals.required_for)})")


#: The record of the change window's emergency override (``approval-emergency``).
EMERGENCY = "emergency"


#: The records of people's decisions on a paused canary analysis (``approval-analysis-<step number>``).
ANALYSIS = "analysis"


def record_name(role: GateRole, number: int) -> str:
    if role == ANALYSIS:
        return f"{RECORD_PREFIX}{ANALYSIS}-{number}"
    return f"{RECORD_PREFIX}{role if role in (ESCALATION, EMERGENCY) else number}"


# ------------------------------------------------------------------------------------ who, when
def stop_reasons(approvals: Approvals | None, environment: str, risk_level: str | None,
                 risk_score: int | None = None) -> list[str]:
    """Why this run must stop for people's approval; empty: it passes the gate without asking.

    :param risk_level: risk_assessment's level as handed on (None when it handed nothing on).
    """
    if approvals is None:
        return []
    reasons = []
    if environment in approvals.required_for:
        reasons.append(f"every {environment} release needs approval (approvals.required_for lists {environment})")
    if "high_risk" in approvals.required_for:
        if risk_level == "high":
            reasons.append(f"risk_assessment rated this release high risk (score {risk_score}); "
                           "approvals.required_for lists high_risk")
        elif risk_level is None:
            reasons.append("risk_assessment handed on no risk level, so high risk cannot be ruled out "
                           "(approvals.required_for lists high_risk)")
    return reasons


def resolve_approvers(entries: Iterable[str], members_of_role: Callable[[str], list[str]]) -> list[str]:
    """User ids of the entries (a user id, or ``role:<name>`` for every user with that role), in order, once each.

    :param members_of_role: the user ids holding a role, as Airflow's auth manager lists them.
    :raises ApprovalError: when a role cannot be resolved (its message says how to fix it).
    """
    users: list[str] = []
    for entry in entries:
        found = members_of_role(entry[len(ROLE_PREFIX):]) if entry.startswith(ROLE_PREFIX) else [entry]
        for user in found:
            if user not in users:
                users.append(user)
    return users


def same_user(user_id: str, name: str | None, triggered_by: str | None) -> bool:
    """Whether an Airflow user (id and name) is the user who triggered the run (Airflow records the name)."""
    return triggered_by is not None and triggered_by in (user_id, name)


def eligible(approvers: list[str], triggered_by: str | None, approved: Iterable[str] = ()) -> list[str]:
    """The approvers who may still approve: never the triggering user, never one who already approved."""
    done = set(approved)
    return [u for u in approvers if u not in done and not same_user(u, u, triggered_by)]


def shortfall(approvers: list[str], eligible_now: list[str], still_needed: int, triggered_by: str | None,
              approved: list[str], not_users: list[str] | None = None) -> str | None:
    """Why the gate can never be satisfied (fewer people may approve than approvals are needed), or None.

    :param not_users: approvers Airflow does not know as users (they could never log in to answer).
    """
    if len(eligible_now) >= still_needed:
        return None
    why = []
    if triggered_by is not None and any(same_user(u, u, triggered_by) for u in approvers):
        why.append(f"{triggered_by} triggered this run and may not approve it")
    if approved:
        why.append(f"already approved by {', '.join(approved)}")
    if not_users:
        why.append(f"{', '.join(not_users)} " + ("is not an Airflow user" if len(not_users) == 1
                                                  else "are not Airflow users"))
    return (f"only {len(eligible_now)} approver(s) ({', '.join(eligible_now) or 'nobody'}) may give the "
            f"{still_needed} approval(s) still needed" + (f": {'; '.join(why)}" if why else ""))


def deadline_after(opened_at: datetime, minutes: float) -> datetime:
    return opened_at + timedelta(minutes=minutes)


def remaining(deadline: datetime, now: datetime | None = None) -> timedelta:
    """Time left until ``deadline`` (never negative)."""
    return max(deadline - (now or utcnow()), timedelta(0))


# ---------------------------------------------------------------------------------------- answers
class ApprovalUser(BaseModel):
    """An Airflow user as HITL records it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str


class Answer(BaseModel):
    """What Airflow handed the gate when it resumed: a person's answer, or the scheduler's timeout."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timed_out: bool = False
    option: str | None = None
    by: ApprovalUser | None = None
    at: datetime | None = None
    comment: str | None = None
    params_input: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_event(cls, event: dict[str, Any] | None) -> Answer:
        """Read the HITL resume event (``chosen_options``, ``responded_by_user``, ``timedout``, or an ``error``).

        Anything without a responder is a timeout: Airflow's sweep writes the defaults with
        ``responded_by=None``, or sends ``error_type: timeout`` when there are none.
        """
        event = dict(event or {})
        params = event.get("params_input") or {}
        params = params if isinstance(params, dict) else {}
        comment = params.get("comment")
        user = event.get("responded_by_user")
        by = ApprovalUser(id=str(user.get("id")), name=str(user.get("name") or user.get("id"))) \
            if isinstance(user, dict) and user.get("id") not in (None, "") else None
        chosen = event.get("chosen_options") or []
        at = event.get("responded_at")
        if isinstance(at, str):
            at = datetime.fromisoformat(at)
        return cls(timed_out=bool(event.get("timedout")) or event.get("error_type") == "timeout" or by is None,
                   option=str(chosen[0]) if len(chosen) == 1 else (json.dumps(chosen) if chosen else None),
                   by=by, at=at if isinstance(at, datetime) else None,
                   comment=(comment.strip()[:2000] or None) if isinstance(comment, str) else None,
                   params_input={str(k): v for k, v in params.items()})


class Judgement(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    verdict: Verdict
    reason: str


def judge(answer: Answer, *, eligible_now: list[str], triggered_by: str | None, approved: list[str],
          on_timeout: Literal["reject", "escalate"]) -> Judgement:
    """Judge one answer. A timeout rejects or escalates, never approves; only an eligible approver decides.

    :param eligible_now: who this task was assigned to (approvers minus the triggering user and earlier approvers).
    :param approved: who approved at earlier tasks of this gate.
    :param on_timeout: ``reject``, or ``escalate`` (the escalation task itself passes ``reject``).
    """
    if answer.timed_out or answer.by is None:
        if on_timeout == "escalate":
            return Judgement(verdict="escalate", reason="no approver answered before the deadline: escalated")
        return Judgement(verdict="reject", reason="no approver answered before the deadline: a timeout rejects")
    user = answer.by
    if same_user(user.id, user.name, triggered_by):
        return Judgement(verdict="refuse", reason=f"{user.name} triggered this run and may not approve or reject it")
    if user.id in approved or user.name in approved:
        return Judgement(verdict="refuse", reason=f"{user.name} already approved this release; each approval must "
                                                  "come from a different person")
    if user.id not in eligible_now and user.name not in eligible_now:
        return Judgement(verdict="refuse", reason=f"{user.name} is not an approver of this gate "
                                                  f"(it may be answered by {', '.join(eligible_now) or 'nobody'})")
    if answer.option == REJECT:
        return Judgement(verdict="reject", reason=f"rejected by {user.name}"
                                                  + (f": {answer.comment}" if answer.comment else ""))
    if answer.option == APPROVE:
        return Judgement(verdict="approve", reason=f"approved by {user.name}"
                                                   + (f": {answer.comment}" if answer.comment else ""))
    return Judgement(verdict="refuse", reason=f"{user.name} answered {answer.option!r}, which is neither "
                                              f"{APPROVE} nor {REJECT}")


# ----------------------------------------------------------------------------------------- records
class Response(BaseModel):
    """One answer the gate received, and what it made of it."""

    model_config = ConfigDict(extra="forbid")

    option: str | None
    by: ApprovalUser | None
    at: datetime
    comment: str | None = None
    verdict: Verdict
    reason: str


class GateRecord(BaseModel):
    """One approval task of the gate: what it asked, of whom, every answer, and its decision.

    Handed to the gate's later tasks through XCom and written to the evidence store as
    ``approval-<n>`` (``approval-escalation``).
    """

    model_config = ConfigDict(extra="forbid")

    task_id: str
    role: GateRole
    number: int
    required: int
    service: str
    version: str
    stop_reasons: list[str] = Field(default_factory=list)
    approvers: list[str] = Field(default_factory=list, description="Resolved user ids this gate draws from.")
    not_users: list[str] = Field(default_factory=list, description="Approvers Airflow does not list as users.")
    eligible: list[str] = Field(default_factory=list, description="Who this task was assigned to.")
    triggered_by: str | None = None
    approved_before: list[str] = Field(default_factory=list)
    opened_at: datetime | None = None
    deadline: datetime | None = None
    on_timeout: Literal["reject", "escalate"] = "reject"
    responses: list[Response] = Field(default_factory=list)
    outcome: Outcome = "waiting"
    decided_by: ApprovalUser | None = None
    decided_at: datetime | None = None
    comment: str | None = None
    reason: str = ""

    def respond(self, answer: Answer, judgement: Judgement, now: datetime | None = None) -> Response:
        response = Response(option=answer.option, by=answer.by, at=answer.at or now or utcnow(),
                            comment=answer.comment, verdict=judgement.verdict, reason=judgement.reason)
        self.responses.append(response)
        return response

    def decide(self, outcome: Outcome, reason: str, response: Response | None = None) -> GateRecord:
        self.outcome, self.reason = outcome, reason
        self.decided_at = response.at if response is not None else utcnow()
        if response is not None and response.verdict in ("approve", "reject"):
            self.decided_by, self.comment = response.by, response.comment
        return self


def approved_users(records: Iterable[GateRecord]) -> list[str]:
    return [r.decided_by.id for r in records if r.outcome == "approved" and r.decided_by is not None]


# ------------------------------------------------------------------------------------------ report
def gate_records(store: EvidenceStore) -> list[dict[str, Any]]:
    """This run's approval records from the evidence store (the latest copy of each), in gate order."""
    from gendev_release.evidence_store import current_records

    return current_records(store, RECORD_PREFIX, key=lambda n: (ESCALATION in n, len(n), n))


def approvals_markdown(rows: list[dict[str, Any]]) -> list[str]:
    """The release report's ``Approvals`` section (empty when the release had no approval gate)."""
    if not rows:
        return []
    lines = ["## Approvals", ""]
    for row in rows:
        label = {"escalation": "escalation", EMERGENCY: "emergency override of the change window",
                 ANALYSIS: f"failed canary analysis of step {row['number']}"}.get(
            str(row.get("role")), f"approval {row['number']} of {row['required']}")
        who = (row.get("decided_by") or {}).get("name")
        text = f"- {label}: **{row['outcome']}**" + (f" by {who}" if who else "")
        text += f" at {row['decided_at']}" if row.get("decided_at") else ""
        text += f" ({row['comment']})" if row.get("comment") else ""
        lines.append(text + f"; {row.get('reason') or ''}".rstrip("; "))
        for response in row.get("responses", []):
            by = (response.get("by") or {}).get("name") or "nobody (timeout)"
            if response.get("verdict") == "refuse":
                lines.append(f"  - not counted: {by} answered {response.get('option')}: {response.get('reason')}")
    return lines + [""]
