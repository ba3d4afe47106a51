"""Phase 4, environment configuration: infrastructure provisioning and security hardening.

``provisioning`` (iac-automation-engineer) reads the IaC files (parsed by their suffix), the
infrastructure documents (checked for substance), the target's status and its plan (written as a
Terraform-plan-shaped manifest, a deliverable, never re-read as proof), runs the spec's plan/apply
commands, stages the new version on the idle slot (no traffic), and checks it with two witnesses:
the target's status after staging, and the staged slot itself answering the spec's version endpoint
with this version; then a re-plan must show no drift. The ``plan_command``'s output, when
JSON, must be Terraform plan JSON (:func:`gendev_release.formats.parse_terraform_plan`: format
version and action vocabulary checked). Every delete or replace in it blocks the release, and
nothing is applied, unless ``infrastructure.destructive_waivers`` names exactly its address; a
waived change is shown as ``waived (reason, approved_by)``, never as passed, and a waiver the plan
does not use is a finding. Deletes in the target's own plan are flagged only.

``hardening`` (security-architect) reads the config files (parsed: ``.env`` lines, TOML, JSON, YAML)
and the security documents (substance), scans the config files for plaintext secrets (verify,
always), then runs every required control and computes the compliance level (check); the headers
are fetched live from the slot the target's status confirms is staged. A secret found in a
config file also removes what this run built from those files earlier (the backup of phase 1,
the build artifacts of phase 3, inside the run's workdir): a copy of the secret must not outlive
the refusal. The scanner itself is :mod:`gendev_release.secrets`. A result that leans on a waiver
(a default control or header left out, a compliance minimum under 100 % with compliance under
100 %) names it in ``facts["baseline_waivers"]``; ``facts["full_baseline"]`` is True only without one.
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import stat
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import yaml

from gendev_release import probes
from gendev_release.commands import run_command
from gendev_release.doc_checks import check_document
from gendev_release.duties.base import duty
from gendev_release.duties.common import (
    command_values,
    describe_slot,
    record_input_file,
    substitute_command,
    target_evidence,
)
from gendev_release.facts import StagedRevision, handed_on
from gendev_release.formats import PlanFormatError, parse_terraform_plan
from gendev_release.report import Evidence, ItemKind, ReportBuilder, sha256_file
from gendev_release.secrets import RemovedOutput, SecretHit, remove_output, scan_secrets
from gendev_release.serving import version_in
from gendev_release.spec_relaxations import waived_by
from gendev_release.spec_rules import resolve_output
from gendev_release.targets.base import ResourceChange, SlotInfo
from gendev_release.verification_matrix import ItemProof

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: a TOML file is digested but not parsed
    tomllib = None

if TYPE_CHECKING:
    from gendev_release.context import DutyContext
    from gendev_release.spec import DestructiveWaiver, ProvidedDocument

_TESTS = "tests/duties/test_environment.py"
PROOFS: dict[str, ItemProof] = {
    "provisioning.read": ItemProof(
        evidence="each IaC file's sha256, parsed by its suffix (JSON, YAML, TOML); each infrastructure document's "
                 "size, headings and sections; the target's status and plan as the target answers them",
        oracle="the spec (infrastructure.files, infrastructure.docs with their required sections, service), the "
               "formats' grammars, the target's own state",
        fails_when="an IaC file is missing, empty or malformed, an infrastructure document lacks substance (too "
                   "short, a required section missing, the service not named), or the target cannot be read",
        test=f"{_TESTS}::test_provisioning_read_fails_on_a_thin_infrastructure_document"),
    "provisioning.verify": ItemProof(
        evidence="the plan_command's argv, exit code and output parsed as Terraform plan JSON (format version, "
                 "action vocabulary); else the target's own plan",
        oracle="Terraform's plan JSON (terraform show -json) and its exit code, or the target's plan",
        fails_when="the plan command exits non-zero, prints JSON that is not a Terraform plan (state, unknown "
                   "format major, actions outside the vocabulary)",
        test=f"{_TESTS}::test_provisioning_verify_fails_when_the_plan_command_fails"),
    "provisioning.check": ItemProof(
        evidence="destructive changes vs waivers; the apply command's exit code; the slot stage() returned; the "
                 "target's status after staging; the staged slot's own answer on the spec's version endpoint; the "
                 "re-plan after staging",
        oracle="the target's durable status, the live staged slot (health.version_check), the target's re-plan, "
               "infrastructure.destructive_waivers",
        fails_when="a destructive change has no waiver, apply fails, staging fails, the staged slot answers "
                   "another version (a target.command that ignores {version}), or the re-plan shows drift",
        test=f"{_TESTS}::test_provisioning_check_fails_when_the_staged_slot_answers_another_version"),
    "hardening.read": ItemProof(
        evidence="each config file's sha256, parsed by its suffix (.env KEY=VALUE lines, TOML, JSON, YAML); each "
                 "security document's size, headings and sections; the required controls and headers",
        oracle="the spec (security.config_files, security.docs with their sections, service) and the formats' "
               "grammars",
        fails_when="a config file is missing or malformed, or a security document lacks substance (1 byte, a "
                   "required section missing, the service not named)",
        test=f"{_TESTS}::test_hardening_read_fails_on_a_thin_security_document"),
    "hardening.verify": ItemProof(
        evidence="the secret scan (patterns and entropy) of every config file on disk, and the TLS certificate's "
                 "remaining days where a URL is https",
        oracle="the config files on disk as the user provides them; the live TLS server's certificate",
        fails_when="a config file holds a plaintext secret (DEMO_DB_PASSWORD=...), or a certificate expires within "
                   "security.tls_min_days",
        test=f"{_TESTS}::test_hardening_verify_fails_on_a_secret_in_a_config_file"),
    "hardening.check": ItemProof(
        evidence="the staged slot's response headers fetched live (after the target's status confirmed the slot), "
                 "stat() modes of the config files, the compliance percentage of the required controls",
        oracle="the live staged service, the file system, the target's status, security.min_compliance_pct",
        fails_when="the staged slot does not send a required header, a config file is group/world-writable, or "
                   "compliance falls under the minimum",
        test=f"{_TESTS}::test_hardening_check_fails_on_a_missing_header"),
}


# ----------------------------------------------------------------------------------- provisioning
def parse_plan_changes(data: Any, source: str = "plan") -> list[ResourceChange]:
    """``resource_changes`` of Terraform plan JSON or our manifest (:func:`formats.parse_terraform_plan`)."""
    return list(parse_terraform_plan(data, source).changes)


def summarize_changes(changes: list[ResourceChange]) -> dict[str, Any]:
    counts = Counter("/".join(c.actions) for c in changes)
    return {"total": len(changes), "by_action": dict(sorted(counts.items())),
            "destructive": [f"{c.address} ({'/'.join(c.actions)})" for c in changes if c.destructive]}


def pending_changes(changes: list[ResourceChange]) -> list[ResourceChange]:
    """Changes that are not no-ops (a re-plan after apply must have none)."""
    return [c for c in changes if tuple(c.actions) not in (("no-op",), ("read",))]


@dataclass(frozen=True)
class DestructiveDecision:
    """One delete or replace in the ``plan_command``'s plan, and the waiver that lets it through (if any)."""

    address: str
    actions: tuple[str, ...]
    waiver: DestructiveWaiver | None = None

    @property
    def waived(self) -> bool:
        return self.waiver is not None

    @property
    def status(self) -> str:
        """``blocked``, or ``waived (reason, approved_by)``: a waived change is never shown as passed."""
        return "blocked" if self.waiver is None else f"waived ({self.waiver.reason}, {self.waiver.approved_by})"

    def describe(self) -> str:
        return f"{self.address} ({'/'.join(self.actions)}): {self.status}"

    def as_dict(self) -> dict[str, Any]:
        return {"address": self.address, "actions": list(self.actions), "status": self.status,
                "reason": self.waiver.reason if self.waiver else None,
                "approved_by": self.waiver.approved_by if self.waiver else None}


def judge_destructive_changes(changes: list[ResourceChange], waivers: list[DestructiveWaiver]
                              ) -> tuple[list[DestructiveDecision], list[str]]:
    """Every delete or replace with the waiver naming exactly its address, and a finding per unused waiver.

    :return: ``(decisions, stale waiver findings)``; a decision without a waiver blocks the release.
    """
    by_address = {waiver.address: waiver for waiver in waivers}
    decisions = [DestructiveDecision(c.address, tuple(c.actions), by_address.get(c.address))
                 for c in changes if c.destructive]
    used = {decision.address for decision in decisions}
    planned = {c.address: c for c in changes}
    stale = []
    for waiver in waivers:
        if waiver.address in used:
            continue
        change = planned.get(waiver.address)
        what = ("the plan does not touch it" if change is None or tuple(change.actions) == ("no-op",) else
                f"the plan only does {'/'.join(change.actions)} to it")
        stale.append(f"stale destructive waiver for {waiver.address} (approved by {waiver.approved_by}): {what}; "
                     "remove it from infrastructure.destructive_waivers")
    return decisions, stale


def _blocker(decision: DestructiveDecision) -> str:
    verb = "replaces" if len(decision.actions) > 1 else "deletes"
    return (f"plan_command plan {verb} {decision.address} ({'/'.join(decision.actions)}) and no "
            f"infrastructure.destructive_waivers entry names it: review and apply it outside the release, or add "
            f"a waiver for exactly {decision.address}")


# ---------------------------------------------------------------------- provided files and documents
_ENV_LINE = re.compile(r"^(?:export\s+)?[A-Za-z_][A-Za-z0-9_.-]*\s*=")


def structured_file_problem(path: Path, label: str) -> tuple[str | None, str]:
    """Why a configuration or IaC file does not parse by its suffix (None when it does), and the format read.

    ``.json``, ``.yaml``/``.yml``, ``.toml`` and ``.env`` (``KEY=VALUE`` lines, ``#`` comments) are parsed;
    any other file (``.tf``, a script) only has to be UTF-8 text.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return f"{label} {path.name} is not UTF-8 text: {exc}", "binary"
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            json.loads(text)
            return None, "JSON"
        if suffix in (".yaml", ".yml"):
            yaml.safe_load(text)
            return None, "YAML"
        if suffix == ".toml" and tomllib is not None:
            tomllib.loads(text)
            return None, "TOML"
    except (ValueError, yaml.YAMLError) as exc:
        kind = {".json": "JSON", ".toml": "TOML"}.get(suffix, "YAML")
        return f"{label} {path.name} is not valid {kind}: {exc}", kind
    if suffix == ".env" or path.name.endswith(".env"):
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip() and not line.lstrip().startswith("#") and not _ENV_LINE.match(line.strip()):
                return f"{label} {path.name}:{number} is not a KEY=VALUE line", "env"
        return None, "env"
    return None, "text"


def read_inputs(report: ReportBuilder, kind: ItemKind, paths: list[Path], label: str) -> list[str]:
    """Record each file (sha256) and parse it by its suffix; the problems, one sentence each."""
    problems = []
    for path in paths:
        problem = record_input_file(report, kind, path, label)
        if problem is None:
            problem, parsed_as = structured_file_problem(path, label)
            report.evidence(kind, Evidence(kind="computed", source=str(path), summary=f"parsed as {parsed_as}: "
                                           f"{'ok' if problem is None else 'failed'}", data={"format": parsed_as}))
        if problem:
            problems.append(problem)
    return problems


def read_documents(ctx: DutyContext, report: ReportBuilder, kind: ItemKind, docs: list[ProvidedDocument],
                   label: str) -> list[str]:
    """Each provided document checked for substance (:func:`gendev_release.doc_checks.check_document`)."""
    problems: list[str] = []
    for doc in docs:
        path = ctx.spec.input_path(f"{label}.path", doc.path)
        found = check_document(path, service=ctx.spec.service, sections=doc.sections, min_bytes=doc.min_bytes)
        report.evidence(kind, Evidence(kind="file", source=str(path), sha256=found.sha256,
                                       summary=f"{path.name}: {found.size} bytes, {len(found.problems)} problem(s)",
                                       data={"label": label, **found.as_data()}))
        problems.extend(f"{label}: {problem}" for problem in found.problems)
    return problems


# ----------------------------------------------------------------------------------- provisioning
def _read_infrastructure(ctx: DutyContext, report: ReportBuilder) -> list[ResourceChange] | None:
    """read: the IaC files (parsed), the infrastructure documents (substance), the target's status and plan."""
    spec, infra = ctx.spec, ctx.spec.infrastructure
    problems = read_inputs(report, "read", [spec.input_path("infrastructure.files", f) for f in infra.files],
                           "infrastructure.files")
    problems.extend(read_documents(ctx, report, "read", list(infra.docs), "infrastructure.docs"))
    try:
        status = ctx.target.status()
    except Exception as exc:
        problems.append(f"the {ctx.target.kind} target's status cannot be read: {type(exc).__name__}: {exc}")
    else:
        report.evidence("read", target_evidence(ctx, status))
        report.facts["target_before"] = {"active": status.active.as_dict() if status.active else None,
                                         "staged": status.staged.as_dict() if status.staged else None}
    planned: list[ResourceChange] | None = None
    try:
        planned = list(ctx.target.plan(ctx.version))
    except Exception as exc:
        problems.append(f"target plan for {ctx.version} failed: {type(exc).__name__}: {exc}")
    if planned is not None:
        summary = summarize_changes(planned)
        report.evidence("read", Evidence(kind="target", source=f"{ctx.target.kind} target plan({ctx.version})",
                                         summary=f"{summary['total']} change(s): {summary['by_action']}",
                                         data={**summary, "resource_changes": [c.as_dict() for c in planned]}))
        manifest = ctx.paths.workdir / "infra" / f"{ctx.target.kind}-target.json"
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text(json.dumps({
            "format_version": "1.2", "target": {"kind": ctx.target.kind, "service": spec.service},
            "version": ctx.version, "run_id": ctx.run_id,
            "resource_changes": [c.as_dict() for c in planned]}, indent=2, default=str), encoding="utf-8")
        report.deliver("target manifest", manifest)
    report.verdict("read", not problems, "; ".join(problems) or
                   f"{len(infra.files)} IaC file(s) parsed, {len(infra.docs)} infrastructure document(s) with "
                   f"substance; the {ctx.target.kind} target's status and plan read")
    return planned


@duty("provisioning")
def provisioning(ctx: DutyContext, report: ReportBuilder) -> None:
    infra = ctx.spec.infrastructure
    planned = _read_infrastructure(ctx, report)

    # verify: the plan (the spec's plan command, else the target's own plan)
    command_plan: list[ResourceChange] | None = None
    plan_accepted = True
    values = command_values(ctx)
    if infra.plan_command:
        command_plan, problem = _run_plan_command(ctx, report, list(infra.plan_command), values)
        plan_accepted = problem is None
        report.verdict("verify", problem is None, problem or
                       ("plan command exited 0" + (f"; {len(command_plan)} resource change(s)"
                                                   if command_plan is not None else "")))
    elif planned is not None:
        summary = summarize_changes(planned)
        report.evidence("verify", Evidence(kind="target", source=f"{ctx.target.kind} target plan({ctx.version})",
                                           summary=f"{summary['total']} change(s): {summary['by_action']}",
                                           data={**summary, "resource_changes": [c.as_dict() for c in planned]}))
        report.verdict("verify", True, f"no plan_command: the {ctx.target.kind} target's plan has "
                                       f"{summary['total']} change(s) {summary['by_action']}")
    else:
        report.fail("verify", "no plan: infrastructure.plan_command is not set and the target plan failed")

    # The target's own plan replaces its slots by design: flagged, never gated. The plan_command's plan is gated.
    for change in planned or []:
        if change.destructive:
            report.findings.append(f"destructive change planned: {change.address} ({'/'.join(change.actions)})")
    decisions = _gate_destructive(report, command_plan, list(infra.destructive_waivers), plan_accepted)
    blocked = [d for d in decisions if not d.waived]
    waived = [d for d in decisions if d.waived]

    # check: apply (only an accepted plan with every destructive change waived), stage (no traffic), no drift
    if not plan_accepted:
        report.fail("check", "not applied: the plan_command's plan was not accepted (see verify)")
    elif blocked:
        report.fail("check", "not applied: destructive change(s) without a waiver: "
                             + "; ".join(d.describe() for d in blocked))
    else:
        ok, detail = _apply_and_stage(ctx, report, values)
        report.verdict("check", ok, detail + (f"; destructive change(s) {'; '.join(d.describe() for d in waived)}"
                                              if waived else ""))
    report.facts["planned_changes"] = summarize_changes(planned or [])
    _deliver_provisioning(ctx, report, planned, command_plan, decisions)


def _write_json(path: Path, payload: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    return path


def _file_rows(paths: list[Path]) -> list[dict[str, Any]]:
    rows = []
    for path in paths:
        row: dict[str, Any] = {"path": str(path), "exists": path.is_file()}
        if path.is_file():
            row.update(sha256=sha256_file(path), bytes=path.stat().st_size, mode=oct(stat.S_IMODE(path.stat().st_mode)))
        rows.append(row)
    return rows


def _deliver_provisioning(ctx: DutyContext, report: ReportBuilder, planned: list[ResourceChange] | None,
                          command_plan: list[ResourceChange] | None, decisions: list[DestructiveDecision]) -> None:
    """Infrastructure provisioning (what was planned, applied, staged and re-planned) and Configuration management
    (every configuration input with its digest, and the target's state as it reports it now)."""
    spec, folder = ctx.spec, ctx.paths.workdir / "infra"
    base = {"service": spec.service, "version": ctx.version, "run_id": ctx.run_id, "target": ctx.target.kind}
    outcome = {kind: report.passed(kind) for kind in ("read", "verify", "check")}
    report.deliver("Infrastructure provisioning", _write_json(folder / "provisioning.json", {
        **base, "items": outcome, "target_plan": summarize_changes(planned or []),
        "plan_command": report.facts.get("command_plan"), "destructive_changes": [d.as_dict() for d in decisions],
        "staged": report.facts.get("staged")}))
    try:
        status = ctx.target.status()
        state: dict[str, Any] = {"active": status.active.as_dict() if status.active else None,
                                 "staged": status.staged.as_dict() if status.staged else None,
                                 "previous": status.previous.as_dict() if status.previous else None,
                                 "router_url": status.router_url}
    except Exception as exc:
        state = {"error": f"{type(exc).__name__}: {exc}"}
    inputs = [spec.input_path("infrastructure.files", f) for f in spec.infrastructure.files]
    report.deliver("Configuration management", _write_json(folder / "configuration.json", {
        **base, "iac_files": _file_rows(inputs),
        "config_files": _file_rows([spec.input_path("security.config_files", f) for f in spec.security.config_files]),
        "docs": _file_rows([spec.input_path("infrastructure.docs", d.path) for d in spec.infrastructure.docs]),
        "target_command": list(spec.target.command), "target_state": state}))


def _gate_destructive(report: ReportBuilder, command_plan: list[ResourceChange] | None,
                      waivers: list[DestructiveWaiver], plan_accepted: bool) -> list[DestructiveDecision]:
    """Judge the plan_command plan's deletes and replaces against the waivers; block the unwaived ones."""
    if command_plan is None:
        if waivers and plan_accepted:
            for waiver in waivers:
                report.findings.append(f"stale destructive waiver for {waiver.address} (approved by "
                                       f"{waiver.approved_by}): plan_command printed no Terraform plan JSON")
        return []
    decisions, stale = judge_destructive_changes(command_plan, waivers)
    report.findings.extend(stale)
    if decisions or waivers:
        report.evidence("check", Evidence(
            kind="computed", source="plan_command destructive changes vs infrastructure.destructive_waivers",
            summary=f"{len(decisions)} destructive change(s): {sum(d.waived for d in decisions)} waived, "
                    f"{sum(not d.waived for d in decisions)} blocked; {len(stale)} stale waiver(s)",
            data={"changes": [d.as_dict() for d in decisions], "stale_waivers": stale}))
        report.facts["destructive_changes"] = [d.as_dict() for d in decisions]
    for decision in decisions:
        if decision.waived:
            report.findings.append(f"destructive change {decision.describe()}")
        else:
            report.block(_blocker(decision))
    return decisions


def _run_plan_command(ctx: DutyContext, report: ReportBuilder, template: list[str],
                      values: dict[str, str]) -> tuple[list[ResourceChange] | None, str | None]:
    argv, problem = substitute_command(template, values)
    if argv is None:
        return None, f"infrastructure.plan_command: {problem}"
    result = run_command(argv, cwd=ctx.spec.spec_dir)
    report.evidence("verify", result.evidence())
    if not result.ok:
        return None, f"plan command exited {result.exit_code}: {(result.stderr.strip().splitlines() or [''])[-1]}"
    text = result.stdout.strip()
    if not text.startswith("{"):
        return None, None  # a check-style command (terraform validate, a linter): its exit code is the evidence
    try:
        data = json.loads(text)
    except ValueError as exc:
        return None, f"plan command printed JSON that does not parse (cut off?): {exc}"
    try:
        plan = parse_terraform_plan(data, "plan command output")
    except PlanFormatError as exc:
        return None, str(exc)
    changes = list(plan.changes)
    summary = summarize_changes(changes)
    report.evidence("verify", Evidence(kind="computed", source="plan_command resource_changes",
                                       summary=f"Terraform plan format {plan.format_version}: {summary['total']} "
                                               f"change(s): {summary['by_action']}",
                                       data={**summary, "format_version": plan.format_version,
                                             "terraform_version": plan.terraform_version}))
    report.facts["command_plan"] = summary
    return changes, None


def _apply_and_stage(ctx: DutyContext, report: ReportBuilder, values: dict[str, str]) -> tuple[bool, str]:
    infra = ctx.spec.infrastructure
    if infra.apply_command:
        argv, problem = substitute_command(list(infra.apply_command), values)
        if argv is None:
            return False, f"infrastructure.apply_command: {problem}"
        result = run_command(argv, cwd=ctx.spec.spec_dir)
        report.evidence("check", result.evidence())
        if not result.ok:
            return False, (f"apply command exited {result.exit_code}: "
                           f"{(result.stderr.strip().splitlines() or [''])[-1]}; nothing was staged")
    try:
        slot = ctx.target.stage(ctx.version, ctx.run_id)
    except Exception as exc:
        return False, f"staging {ctx.version} failed: {type(exc).__name__}: {exc}"
    report.evidence("check", Evidence(kind="target", source=f"{ctx.target.kind} target stage({ctx.version})",
                                      summary=f"{ctx.version} staged on slot {slot.slot} at {slot.url} (no traffic)",
                                      data=slot.as_dict()))
    report.facts["staged"] = slot.as_dict()
    if slot.version != ctx.version:
        return False, f"staged slot {slot.slot} runs {slot.version}, expected {ctx.version}"
    slot_problem = staged_slot_problem(ctx, report, slot)
    if slot_problem:
        return False, slot_problem
    try:
        replan = list(ctx.target.plan(ctx.version))
    except Exception as exc:
        return False, f"re-plan after staging failed: {type(exc).__name__}: {exc}"
    drift = pending_changes(replan)
    report.evidence("check", Evidence(kind="target", source=f"{ctx.target.kind} target plan({ctx.version}) after apply",
                                      summary=f"{len(drift)} pending change(s) after apply",
                                      data={"resource_changes": [c.as_dict() for c in replan]}))
    if drift:
        return False, "drift after apply: " + ", ".join(f"{c.address} ({'/'.join(c.actions)})" for c in drift)
    return True, (f"{ctx.version} staged on slot {slot.slot} ({slot.url}), the target's status agrees and the slot "
                  f"answers {ctx.version} on {ctx.spec.health.version_check.path}; re-plan shows no drift")


#: Requests to the staged slot's version endpoint until one is not a 5xx (a flaky version still answers).
VERSION_ATTEMPTS = 3


def staged_slot_problem(ctx: DutyContext, report: ReportBuilder, slot: SlotInfo) -> str | None:
    """The staged slot as two witnesses see it: the target's durable status, and the slot itself answering the
    spec's version endpoint. None when both say this run's version runs there."""
    try:
        status = ctx.target.status()
    except Exception as exc:
        return f"the {ctx.target.kind} target's status cannot be read after staging: {type(exc).__name__}: {exc}"
    report.evidence("check", target_evidence(ctx, status))
    staged = status.staged
    if staged is None or staged.slot != slot.slot or staged.version != ctx.version:
        return (f"the {ctx.target.kind} target's status shows staged {describe_slot(staged)}, not {ctx.version} on "
                f"slot {slot.slot}: staging did not stick")
    check = ctx.spec.health.version_check
    for _ in range(VERSION_ATTEMPTS):  # a 5xx is not an answer about the version: ask again, a few times
        answer = probes.http_get(slot.url.rstrip("/") + check.path, timeout=check.timeout_seconds)
        served = version_in(answer.body, check.json_field) if answer.status == 200 else None
        report.evidence("check", answer.evidence(f"staged slot answers {served!r} (HTTP {answer.status})"))
        if answer.status is not None and answer.status < 500:
            break
    if served != ctx.version:
        got = f"HTTP {answer.status}" if answer.status is not None else f"no answer ({answer.error})"
        return (f"staged slot {slot.slot} at {slot.url} answers version {served!r} on {check.path} ({got}), expected "
                f"{ctx.version}: the slot does not run this release (check target.command passes {{version}})")
    return None


# -------------------------------------------------------------------------------------- hardening
def writable_by_others(mode: int) -> list[str]:
    """Which of group/world may write a file with this mode."""
    return [who for who, bit in (("group", stat.S_IWGRP), ("world", stat.S_IWOTH)) if mode & bit]


def tls_days_remaining(url: str, timeout: float = 5.0) -> float:
    """Days until the certificate served at an https URL expires (verified against the system CAs)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    context = ssl.create_default_context()
    with socket.create_connection((host, port), timeout=timeout) as sock, \
            context.wrap_socket(sock, server_hostname=host) as tls:
        cert = tls.getpeercert()
    not_after = (cert or {}).get("notAfter")
    if not isinstance(not_after, str):
        raise ValueError(f"{url} sent a certificate without notAfter")
    expires = ssl.cert_time_to_seconds(not_after)
    return (expires - datetime.now(timezone.utc).timestamp()) / 86400.0


@dataclass
class ControlResult:
    name: str
    passed: bool
    detail: str
    evidence: list[Evidence] = field(default_factory=list)
    hits: list[SecretHit] = field(default_factory=list)


def _control_secrets(files: list[Path]) -> ControlResult:
    hits: list[SecretHit] = []
    evidence: list[Evidence] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return ControlResult("no_plaintext_secrets", False, f"cannot read {path}: {exc}", evidence, hits)
        found = scan_secrets(text, path.name)
        hits.extend(found)
        evidence.append(Evidence(kind="computed", source=str(path), summary=f"secret scan: {len(found)} hit(s)",
                                 data={"hits": [str(h) for h in found], "lines": len(text.splitlines())}))
    if hits:
        return ControlResult("no_plaintext_secrets", False,
                             "plaintext secret(s) at " + ", ".join(str(h) for h in hits), evidence, hits)
    return ControlResult("no_plaintext_secrets", True, f"no secrets in {len(files)} config file(s)", evidence)


def _inside(path: Path, folder: Path) -> bool:
    """``path`` itself (not what a link at ``path`` points to) lies inside ``folder``."""
    where = path.parent.resolve() / path.name
    root = folder.resolve()
    return root in where.parents


def run_outputs(ctx: DutyContext) -> list[Path]:
    """This run's backup output (as the spec names it and as the risk step recorded it) and build artifacts."""
    found: list[Path] = []
    backup = ctx.spec.risk.backup
    if backup.output is not None:
        # "{workdir}/backup/x.tar.gz", "{artifacts_dir}/x", or relative to the run's workdir
        try:
            found.append(resolve_output(backup.output, workdir=ctx.paths.workdir,
                                        artifacts_dir=ctx.paths.artifacts_dir, field="risk.backup.output"))
        except ValueError:  # PathEscape: it resolves outside the run's folders, so it is not this run's to delete
            pass
    risk = ctx.earlier("risk_assessment")
    recorded = risk.facts.get("backup") if risk else None
    if isinstance(recorded, dict) and isinstance(recorded.get("path"), str):
        found.append(Path(recorded["path"]))
    artifacts = ctx.paths.artifacts_dir
    if artifacts.is_dir():
        found.extend(sorted(p for p in artifacts.rglob("*") if p.is_file() or p.is_symlink()))
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.parent.resolve() / path.name, path)
    return list(unique.values())


def purge_run_outputs(ctx: DutyContext, hits: list[SecretHit]) -> tuple[list[RemovedOutput], list[str]]:
    """Remove this run's backup and build artifacts, built while a config file held a plaintext secret.

    Only files inside the run's workdir are removed; others are returned as problems to act on by hand.

    :return: ``(removed, not removed)``; each removal names its path, digest and reason.
    """
    reason = "built in this run while config file(s) held plaintext secret(s) at " + \
        ", ".join(str(h) for h in hits[:10]) + (f" (+{len(hits) - 10} more)" if len(hits) > 10 else "")
    removed: list[RemovedOutput] = []
    kept: list[str] = []
    for path in run_outputs(ctx):
        if not (path.is_file() or path.is_symlink()):
            continue
        if not _inside(path, ctx.paths.workdir):
            kept.append(f"{path} is outside the run's workdir {ctx.paths.workdir}: remove it by hand")
            continue
        removed.append(remove_output(path, reason))
    return removed, kept


def _control_permissions(files: list[Path]) -> ControlResult:
    modes, problems = {}, []
    for path in files:
        mode = path.stat().st_mode
        modes[str(path)] = oct(stat.S_IMODE(mode))
        who = writable_by_others(mode)
        if who:
            problems.append(f"{path.name} mode {oct(stat.S_IMODE(mode))} is writable by {' and '.join(who)}")
    evidence = [Evidence(kind="computed", source="stat(config_files)", summary=f"{len(modes)} file mode(s)",
                         data={"modes": modes, "uid": os.getuid() if hasattr(os, "getuid") else None})]
    return ControlResult("config_permissions", not problems, "; ".join(problems) or
                         "no config file is group- or world-writable", evidence)


def _staged_url(ctx: DutyContext) -> str | None:
    staged, _ = handed_on(ctx, StagedRevision)
    return staged.url if staged else None


def _control_headers(ctx: DutyContext) -> ControlResult:
    url = _staged_url(ctx)
    if not url:
        return ControlResult("security_headers", False,
                             "no staged slot URL: the provisioning report has no facts.staged.url")
    evidence: list[Evidence] = []
    try:  # the URL provisioning handed on must still be what the target stages
        status = ctx.target.status()
    except Exception as exc:
        return ControlResult("security_headers", False, f"the {ctx.target.kind} target's status cannot be read: "
                                                        f"{type(exc).__name__}: {exc}")
    evidence.append(target_evidence(ctx, status))
    if status.staged is None or status.staged.url.rstrip("/") != url.rstrip("/"):
        return ControlResult("security_headers", False,
                             f"provisioning handed on the staged slot {url}, but the {ctx.target.kind} target "
                             f"stages {describe_slot(status.staged)}", evidence)
    answer = probes.http_get(url.rstrip("/") + "/healthz")
    evidence.append(answer.evidence())
    if answer.status is None:
        return ControlResult("security_headers", False, f"{answer.url} did not answer: {answer.error}", evidence)
    required = list(ctx.spec.security.required_headers)
    missing = [h for h in required if h.lower() not in answer.headers]
    return ControlResult("security_headers", not missing,
                         f"{answer.url} lacks header(s) {', '.join(missing)}" if missing
                         else f"{answer.url} sends {', '.join(required)}", evidence)


def _control_tls(ctx: DutyContext) -> ControlResult:
    urls = [u for u in (_staged_url(ctx), _safe_url(ctx)) if u and u.startswith("https://")]
    evidence = [Evidence(kind="computed", source="https endpoints", summary=f"{len(urls)} https endpoint(s)",
                         data={"urls": urls})]
    if not urls:
        return ControlResult("tls_certificate", False, "no https endpoint to check (the target serves plain http)",
                             evidence)
    minimum = ctx.spec.security.tls_min_days
    problems = []
    for url in dict.fromkeys(urls):
        try:
            days = tls_days_remaining(url)
        except (OSError, ssl.SSLError, ValueError, KeyError) as exc:
            problems.append(f"{url}: TLS handshake failed: {exc}")
            continue
        evidence.append(Evidence(kind="http", source=url, summary=f"certificate valid {days:.1f} more day(s)",
                                 data={"days_remaining": round(days, 2), "min_days": minimum}))
        if days < minimum:
            problems.append(f"{url}: certificate expires in {days:.1f} days, under security.tls_min_days={minimum}")
    return ControlResult("tls_certificate", not problems, "; ".join(problems) or
                         f"certificates valid for at least {minimum} days", evidence)


def _safe_url(ctx: DutyContext) -> str | None:
    try:
        return ctx.target.url()
    except Exception:
        return None


def _purge_after_secrets(ctx: DutyContext, report: ReportBuilder, hits: list[SecretHit]) -> str:
    """After a secret was found in a config file: remove what phases 1 and 3 built from it; describe it."""
    if not hits:
        return ""
    removed, kept = purge_run_outputs(ctx, hits)
    for outcome in removed:
        report.evidence("verify", outcome.evidence())
    failed = [f"{r.path} could not be removed: {r.error}" for r in removed if not r.removed]
    for text in [*kept, *failed]:
        report.findings.append(f"secret purge: {text}")
    done = [r.path for r in removed if r.removed]
    report.facts["purged_outputs"] = done
    parts = [f"removed this run's backup and build artifacts made from them: "
             f"{', '.join(Path(p).name for p in done)}"] if done else []
    if kept or failed:
        parts.append(f"NOT removed: {'; '.join([*kept, *failed])}")
    return "; ".join(parts)


@duty("hardening")
def hardening(ctx: DutyContext, report: ReportBuilder) -> None:
    security = ctx.spec.security
    required = list(dict.fromkeys(security.required_controls))
    # read: config files (parsed), the security documents (substance), and the required controls
    files = [ctx.spec.input_path("security.config_files", f) for f in security.config_files]
    problems = [p for path in files if (p := record_input_file(report, "read", path, "security.config_files"))]
    parse_problems = []
    for path in (p for p in files if p.is_file()):
        problem, parsed_as = structured_file_problem(path, "security.config_files")
        report.evidence("read", Evidence(kind="computed", source=str(path), summary=f"parsed as {parsed_as}: "
                                         f"{'ok' if problem is None else 'failed'}", data={"format": parsed_as}))
        parse_problems.extend([problem] if problem else [])
    doc_problems = read_documents(ctx, report, "read", list(security.docs), "security.docs")
    report.evidence("read", Evidence(kind="computed", source="security.required_controls",
                                     summary=f"required: {', '.join(required)}",
                                     data={"required_controls": required,
                                           "required_headers": list(security.required_headers),
                                           "min_compliance_pct": security.min_compliance_pct}))
    read_problems = [*problems, *parse_problems, *doc_problems]
    report.verdict("read", not read_problems, "; ".join(read_problems) or
                   f"{len(files)} config file(s) read and parsed, {len(security.docs)} security document(s) with "
                   f"substance; {len(required)} control(s) required")
    existing = [p for p in files if p.is_file()]

    # verify: no plaintext secrets (always scanned), TLS where https (when required)
    results: dict[str, ControlResult] = {"no_plaintext_secrets": _control_secrets(existing)}
    if "tls_certificate" in required:
        results["tls_certificate"] = _control_tls(ctx)
    verify_controls = [results[name] for name in ("no_plaintext_secrets", "tls_certificate") if name in results]
    for result in verify_controls:
        for evidence in result.evidence:
            report.evidence("verify", evidence)
    failed = [r for r in verify_controls if not r.passed]
    purged = _purge_after_secrets(ctx, report, results["no_plaintext_secrets"].hits)
    report.verdict("verify", not failed and not problems,
                   "; ".join([*(f"{r.name}: {r.detail}" for r in failed),
                              *(["config files missing: " + "; ".join(problems)] if problems else []),
                              *([purged] if purged else [])])
                   or "; ".join(f"{r.name}: {r.detail}" for r in verify_controls))

    # check: the other required controls, then the compliance level
    if "config_permissions" in required:
        results["config_permissions"] = _control_permissions(existing)
    if "security_headers" in required:
        results["security_headers"] = _control_headers(ctx)
    for name in ("config_permissions", "security_headers"):
        if name in results:
            for evidence in results[name].evidence:
                report.evidence("check", evidence)
    passed = [name for name in required if results[name].passed]
    # a missing config file was never scanned: the file controls cannot count as passed
    if problems:
        passed = [name for name in passed if name not in ("no_plaintext_secrets", "config_permissions")]
    compliance = round(100.0 * len(passed) / len(required), 1)
    report.metrics["compliance_pct"] = compliance
    outcome = {name: {"passed": name in passed, "detail": results[name].detail} for name in required}
    report.evidence("check", Evidence(kind="computed", source="compliance", summary=f"{compliance} % of "
                                      f"{len(required)} required control(s), minimum {security.min_compliance_pct:g} %",
                                      data={"controls": outcome, "compliance_pct": compliance,
                                            "min_compliance_pct": security.min_compliance_pct}))
    report.facts.update(controls=outcome, compliance_pct=compliance)
    failing = [f"{name}: {results[name].detail}" for name in required if name not in passed]
    for text in failing:
        report.findings.append(f"control failed: {text}")
    leaned_on = baseline_waivers(ctx, compliance)
    report.facts.update(baseline_waivers=leaned_on, full_baseline=compliance == 100.0 and not leaned_on)
    for row in leaned_on:
        report.findings.append(f"security baseline relaxed: {row['problem']}; waived by {row['approved_by']}: "
                               f"{row['reason']}")
    _deliver_hardening(ctx, report, required, results, passed, compliance, leaned_on)
    ok = compliance >= security.min_compliance_pct
    report.verdict("check", ok, (f"compliance {compliance:g} % >= {security.min_compliance_pct:g} %" if ok else
                                 f"compliance {compliance:g} % < security.min_compliance_pct="
                                 f"{security.min_compliance_pct:g} %") + (f"; failed: {'; '.join(failing)}"
                                                                          if failing else "")
                   + (f"; leans on waiver(s): {', '.join(r['gate'] for r in leaned_on)}" if ok and leaned_on else ""))


def _deliver_hardening(ctx: DutyContext, report: ReportBuilder, required: Sequence[str],
                       results: dict[str, ControlResult], passed: Sequence[str], compliance: float,
                       leaned_on: list[dict[str, Any]]) -> None:
    """Security hardening (each control with what was observed) and Compliance validation (the level)."""
    folder = ctx.paths.workdir / "hardening"
    base = {"service": ctx.spec.service, "version": ctx.version, "run_id": ctx.run_id}
    controls = {name: {"passed": result.passed, "detail": result.detail,
                       "observed": [{"kind": e.kind, "source": e.source, "summary": e.summary,
                                     **({"headers": e.data.get("headers")} if e.kind == "http" else {}),
                                     **({"modes": e.data.get("modes")} if "modes" in e.data else {}),
                                     **({"hits": e.data.get("hits")} if "hits" in e.data else {})}
                                    for e in result.evidence]}
                for name, result in results.items()}
    report.deliver("Security hardening", _write_json(folder / "security-hardening.json", {
        **base, "controls": controls, "purged_outputs": report.facts.get("purged_outputs", [])}))
    security = ctx.spec.security
    report.deliver("Compliance validation", _write_json(folder / "compliance.json", {
        **base, "required_controls": required, "passed": passed,
        "failed": [name for name in required if name not in passed], "compliance_pct": compliance,
        "min_compliance_pct": security.min_compliance_pct, "meets_minimum": compliance >= security.min_compliance_pct,
        "full_baseline": compliance == 100.0 and not leaned_on, "waivers_leaned_on": leaned_on}))


def baseline_waivers(ctx: DutyContext, compliance: float) -> list[dict[str, Any]]:
    """The waivers this hardening result leans on: default controls or headers left out, and a
    compliance minimum under 100 % when the measured compliance is under 100 % too.

    :return: one row per waiver: gate, field, problem, reason, approved_by.
    """
    rows = []
    for relaxation, waiver in waived_by(ctx.spec.security.relaxations(), ctx.spec.quality_gates.waivers):
        if waiver is None or (relaxation.gate == "min_compliance_pct" and compliance >= 100.0):
            continue
        rows.append({"gate": relaxation.gate, "field": relaxation.field, "problem": relaxation.problem,
                     "reason": waiver.reason, "approved_by": waiver.approved_by})
    return rows
