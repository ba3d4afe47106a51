"""The seed's deployment checklist and success criteria, each judged from what this run recorded.

A line is ``done`` only when the thing it names happened in this run, as the reports' evidence
shows it: a delivery read back from a channel, a scan that covered the locked packages, every
critical endpoint answering while traffic moved, the previous slot answering on its own URL after
the switch. A line whose result leans on a waiver is ``waived`` with the waiver's reason and
approver: a third state, never ticked. Any other line is ``not_done`` and says why. Nothing is
typed by hand: every rule is a function of :class:`RunFacts`, registered in :data:`CHECKLIST_RULES`
and :data:`CRITERIA_RULES` with the text that says where it looks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gendev_release.catalogue import all_steps
from gendev_release.report import AgentReport, Evidence, Verification, sha256_file
from gendev_release.spec import ReleaseSpec
from gendev_release.spec_relaxations import DEFAULT_MAX_ERROR_RATE_PCT, DEFAULT_P95_LATENCY_MS, waived_by

State = Literal["done", "waived", "not_done"]
#: At most this many reasons are quoted from a failed step, each cut to about this many characters.
_REASONS = 2
_REASON_CHARS = 240


def _clip(text: str) -> str:
    return text if len(text) <= _REASON_CHARS else text[:_REASON_CHARS].rstrip() + " ..."


@dataclass(frozen=True)
class WaiverNote:
    """The waiver a line leans on."""

    gate: str
    reason: str
    approved_by: str

    def describe(self) -> str:
        return f"{self.reason}, {self.approved_by}"


@dataclass(frozen=True)
class Verdict:
    """One line's judgement: its state and what proved it (done), why not (not done) or what was waived."""

    state: State
    detail: str
    waivers: tuple[WaiverNote, ...] = ()

    def text(self) -> str:
        if self.state == "waived":
            return f"waived ({'; '.join(w.describe() for w in self.waivers)}): {self.detail}"
        return self.detail if self.state == "done" else f"not done: {self.detail}"

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "done": self.state == "done",
                "why": self.detail if self.state == "not_done" else None,
                "waived": [{"gate": w.gate, "reason": w.reason, "approved_by": w.approved_by} for w in self.waivers]
                or None,
                "detail": self.detail}


def done(detail: str) -> Verdict:
    return Verdict("done", detail)


def not_done(why: str) -> Verdict:
    return Verdict("not_done", why)


def combine(*verdicts: Verdict, detail: str = "") -> Verdict:
    """Not done when any is; else waived when any is; else done (``detail`` replaces the joined details)."""
    missing = [v.detail for v in verdicts if v.state == "not_done"]
    if missing:
        return not_done("; ".join(dict.fromkeys(missing)))
    notes = tuple(dict.fromkeys(w for v in verdicts for w in v.waivers))
    if notes:
        return Verdict("waived", "; ".join(dict.fromkeys(v.detail for v in verdicts if v.state == "waived")), notes)
    return done(detail or "; ".join(dict.fromkeys(v.detail for v in verdicts)))


@dataclass(frozen=True)
class RunFacts:
    """What the rules read: this run's reports, the spec, the run record and the release history.

    :param record: the run record as JSON (``rolled_back``, ``restored_healthy``, ``previous_version``).
    :param verified_before: versions earlier runs released and verified (the history, without this run).
    """

    reports: Mapping[str, AgentReport]
    spec: ReleaseSpec
    version: str
    record: Mapping[str, Any] = field(default_factory=dict)
    verified_before: tuple[str, ...] = ()

    def facts(self, step_id: str) -> dict[str, Any]:
        report = self.reports.get(step_id)
        return report.facts if report else {}

    def metrics(self, step_id: str) -> dict[str, float]:
        report = self.reports.get(step_id)
        return report.metrics if report else {}

    def waiver(self, gate: str) -> WaiverNote | None:
        """The waiver of ``gate`` when the spec relaxes that gate (a waiver that covers nothing is not used)."""
        for relaxation, waiver in waived_by(self.spec.relaxations(), self.spec.quality_gates.waivers):
            if relaxation.gate == gate and waiver is not None:
                return WaiverNote(gate, waiver.reason, waiver.approved_by)
        return None


# ------------------------------------------------------------------------------------ helpers
def _verification(report: AgentReport, kind: str) -> Verification | None:
    return next((v for v in report.verifications if v.kind == kind), None)


def step_passed(f: RunFacts, step_id: str) -> Verdict:
    report = f.reports.get(step_id)
    if report is None:
        return not_done(f"{step_id} did not run in this run (no report)")
    if report.status != "passed":
        failures = report.gate_failures()
        reasons = [r for r in failures if not r.startswith("blocker: ")] or failures or [report.status]
        return not_done(f"{step_id} {report.status}: " + "; ".join(_clip(r) for r in reasons[:_REASONS]))
    return done(f"{step_id} passed")


def item_passed(f: RunFacts, item_id: str) -> Verdict:
    step_id, kind = item_id.rsplit(".", 1)
    report = f.reports.get(step_id)
    if report is None:
        return not_done(f"{step_id} did not run in this run (no report)")
    verification = _verification(report, kind)
    if verification is None:
        return not_done(f"{item_id} was not recorded")
    if not verification.passed:
        return not_done(f"{item_id} failed: {_clip(verification.detail)}")
    return done(f"{item_id}: {_clip(verification.detail)}")


def _intact(path_text: str, sha256: str | None) -> str | None:
    """Why a file recorded earlier in the run is not there as recorded; None when it is."""
    path = Path(path_text)
    if not path.is_file():
        return f"{path} no longer exists"
    if sha256 and sha256_file(path) != sha256:
        return f"{path.name} changed since it was recorded (sha256 differs)"
    return None


# ----------------------------------------------------------------------------- checklist lines
def risk_assessment_complete(f: RunFacts) -> Verdict:
    verdict = step_passed(f, "risk_assessment")
    facts = f.facts("risk_assessment")
    if verdict.state != "done":
        return verdict
    if "risk_level" not in facts:
        return not_done("risk_assessment recorded no risk level")
    return done(f"risk level {facts['risk_level']} (score {facts.get('risk_score')}) from "
                f"{len(facts.get('commits') or [])} commit(s)")


def stakeholders_notified(f: RunFacts) -> Verdict:
    verdict = item_passed(f, "notifications.verify")
    if verdict.state != "done":
        return verdict
    verification = _verification(f.reports["notifications"], "verify")

    def confirmed(e: Evidence) -> bool:
        """A file channel's line read back, or a webhook receiver's 2xx answer that met the spec's expectations."""
        if e.data.get("delivered") is not True or not e.sha256:
            return False
        status = e.data.get("http_status")
        return e.kind == "file" or (e.kind == "http" and e.data.get("channel") == "webhook"
                                    and isinstance(status, int) and 200 <= status < 300)

    delivered = [e for e in (verification.evidence if verification else []) if confirmed(e)]
    if not delivered:
        return not_done("no channel recorded a delivery (a message read back from the channel, with its digest)")
    return done(f"delivered through {len(delivered)} channel(s): "
                + ", ".join(str(e.data.get("channel_path") or e.source)
                            + (f" (webhook, HTTP {e.data['http_status']})" if e.kind == "http" else "")
                            for e in delivered))


def backup_created(f: RunFacts) -> Verdict:
    report = f.reports.get("risk_assessment")
    if report is None:
        return not_done("risk_assessment did not run in this run (no report)")
    backup = report.facts.get("backup")
    if isinstance(backup, dict) and "waived" in backup:
        spec_backup = f.spec.risk.backup
        note = WaiverNote("backup", spec_backup.waiver or str(backup["waived"]),
                          spec_backup.approved_by or "approver not recorded")
        return Verdict("waived", "no backup was taken (risk.backup.waiver)", (note,))
    verdict = item_passed(f, "risk_assessment.check")
    if verdict.state != "done":
        return verdict
    if not isinstance(backup, dict) or not backup.get("path") or not backup.get("sha256"):
        return not_done("risk_assessment recorded no backup file with a digest")
    if backup["path"] in (f.facts("hardening").get("purged_outputs") or []):
        return not_done(f"backup {Path(backup['path']).name} was removed by hardening: a config file it was "
                        "made from held a plaintext secret")
    problem = _intact(backup["path"], backup["sha256"])
    if problem:
        return not_done(f"backup {problem}")
    return done(f"backup {Path(backup['path']).name} ({backup.get('bytes')} bytes, sha256 {backup['sha256'][:12]}) "
                "verified and still intact")


def dependencies_validated(f: RunFacts) -> Verdict:
    verdict = step_passed(f, "dependencies")
    metrics = f.metrics("dependencies")
    if verdict.state != "done":
        return verdict
    return done(f"{metrics.get('pinned', 0):g} requirement(s) pinned, {metrics.get('hashed', 0):g} with hashes")


def build_artifacts_ready(f: RunFacts) -> Verdict:
    verdict = item_passed(f, "build.check")
    if verdict.state != "done":
        return verdict
    artifacts = [a for a in f.facts("build").get("artifacts") or [] if isinstance(a, dict)]
    if not artifacts:
        return not_done("build recorded no artifact")
    purged = set(f.facts("hardening").get("purged_outputs") or [])
    gone = []
    for artifact in artifacts:
        problem = ("removed by hardening (a config file held a plaintext secret)" if artifact.get("path") in purged
                   else _intact(str(artifact.get("path")), artifact.get("sha256")))
        if problem:
            gone.append(f"{artifact.get('name')}: {problem}")
    if gone:
        return not_done("artifact(s) not as built: " + "; ".join(gone))
    return done(f"{len(artifacts)} artifact(s) with sha256, version {f.version} embedded: "
                + ", ".join(str(a.get("name")) for a in artifacts))


def _scan_from_facts(f: RunFacts, scan: dict[str, Any]) -> Verdict:
    """The dependencies step's ``facts.security_scan``: where the scan came from, its coverage, the gate."""
    verdict = combine(*(item_passed(f, f"dependencies.{kind}") for kind in ("read", "verify", "check")))
    if verdict.state != "done":
        return verdict
    origin, fresh = scan.get("origin"), scan.get("freshness") or {}
    if origin == "run":
        where = f"scan run in this release ({scan.get('format')})"
    elif origin == "provided" and fresh.get("fresh") is True:
        where = f"provided {scan.get('format')} report, not older than the lock file by {fresh.get('rule')}"
    else:
        return not_done(f"the scan was neither run in this release nor a provided report shown fresh ({origin!r})")
    coverage = scan.get("coverage") or {}
    if coverage.get("complete") is not True:
        return not_done(f"the scan does not cover the lock file: {coverage.get('problem') or coverage}")
    blocking, gate = scan.get("at_or_above_gate"), scan.get("severity_gate")
    if not isinstance(blocking, int):
        return not_done("dependencies recorded no count of findings at or above the severity gate")
    detail = (f"{where}: {coverage.get('audited')} of {coverage.get('locked')} locked package(s) covered by "
              f"{coverage.get('by')}, {blocking} finding(s) at or above {gate}")
    if blocking:
        note = f.waiver("max_critical_vulns")
        return Verdict("waived", detail, (note,)) if note else not_done(detail)
    return done(detail)


def security_scan_passed(f: RunFacts) -> Verdict:
    scan = f.facts("dependencies").get("security_scan")
    if isinstance(scan, dict):  # SARIF counts here when it lists the lock file with its digest (coverage by digest)
        return _scan_from_facts(f, scan)
    verdict = item_passed(f, "dependencies.check")
    if verdict.state != "done":
        return verdict
    report = f.reports["dependencies"]
    read = _verification(report, "read")
    parsed = [e for e in (read.evidence if read else []) if e.kind == "computed" and "packages" in e.data]
    if not parsed:
        return not_done("dependencies.read holds no parsed scan report")
    data = parsed[-1].data
    if data.get("format") == "sarif":
        return not_done("the SARIF report lists findings, not the packages it scanned: its coverage cannot be shown")
    packages = data.get("packages") or {}
    if not packages:
        return not_done(f"the {data.get('format')} report covers no package: an empty scan is not a pass")
    coverage = report.facts.get("scan_coverage") or {}
    uncovered = [*(coverage.get("missing") or []), *(coverage.get("version_mismatch") or [])]
    if uncovered:
        return not_done(f"the scan does not cover the locked {', '.join(map(str, uncovered[:5]))}")
    critical = report.metrics.get("critical_vulns", 0)
    detail = f"{len(packages)} package(s) scanned, {critical:g} critical vulnerabilities"
    if critical:
        note = f.waiver("max_critical_vulns")
        return Verdict("waived", detail, (note,)) if note else not_done(detail)
    return done(detail)


def infrastructure_provisioned(f: RunFacts) -> Verdict:
    verdict = step_passed(f, "provisioning")
    staged = f.facts("provisioning").get("staged") or {}
    if verdict.state != "done":
        return verdict
    if staged.get("version") != f.version:
        return not_done(f"provisioning staged {staged.get('version')!r}, not {f.version}")
    return done(f"{f.version} staged on slot {staged.get('slot')}; re-plan showed no drift")


def configuration_validated(f: RunFacts) -> Verdict:
    verdict = step_passed(f, "hardening")
    facts = f.facts("hardening")
    if verdict.state != "done":
        return verdict
    compliance = facts.get("compliance_pct")
    if compliance is None:
        return not_done("hardening recorded no compliance level")
    leaned = facts.get("baseline_waivers")
    if leaned is None:  # a report without the field: judge the spec's relaxations
        leaned = [{"gate": r.gate, "reason": w.reason, "approved_by": w.approved_by}
                  for r, w in waived_by(f.spec.security.relaxations(), f.spec.quality_gates.waivers)
                  if w is not None and (r.gate != "min_compliance_pct" or compliance < 100)]
    controls = len(facts.get("controls") or {})
    if leaned:
        notes = tuple(WaiverNote(str(r["gate"]), str(r["reason"]), str(r["approved_by"])) for r in leaned)
        return Verdict("waived", f"compliance {compliance:g} % of a relaxed security baseline ({controls} "
                                 "control(s))", notes)
    if compliance < 100:
        return not_done(f"compliance {compliance:g} % < 100 %")
    return done(f"compliance 100 % of {controls} required control(s), no plaintext secret in the config files")


def deployment_executed(f: RunFacts) -> Verdict:
    verdict = step_passed(f, "execute_strategy")
    facts = f.facts("execute_strategy")
    if verdict.state != "done":
        return verdict
    active = facts.get("active") or {}
    if facts.get("traffic_moved") is not True or active.get("version") != f.version:
        return not_done(f"traffic is not on {f.version} (the target shows active {active.get('version')!r})")
    return done(f"traffic moved to {active.get('slot')} {f.version}")


def health_checks_passing(f: RunFacts) -> Verdict:
    pct = f.metrics("execute_strategy").get("health_pass_pct")
    if pct is None:
        return not_done("no health check ran through the router after the switch in this run")
    checks = len(f.spec.health.checks)
    if pct >= 100:
        return done(f"all {checks} health check(s) passed through the router after the switch")
    note = f.waiver("health_pass_pct")
    if note and pct >= f.spec.quality_gates.health_pass_pct:
        return Verdict("waived", f"{pct:g} % of {checks} health check(s) passed after the switch", (note,))
    return not_done(f"{pct:g} % of {checks} health check(s) passed through the router after the switch")


def smoke_tests_passed(f: RunFacts) -> Verdict:
    verdict = step_passed(f, "smoke_tests")
    metrics = f.metrics("smoke_tests")
    if verdict.state != "done":
        return verdict
    tests, failures = metrics.get("smoke_tests", 0), metrics.get("smoke_failures", 0)
    if not tests or failures:
        return not_done(f"{failures:g} of {tests:g} smoke tests failed")
    return done(f"{tests:g}/{tests:g} smoke tests passed, every critical endpoint covered")


def performance_validated(f: RunFacts) -> Verdict:
    verdict = step_passed(f, "performance")
    metrics = f.metrics("performance")
    if verdict.state != "done":
        return verdict
    p95, errors = metrics.get("p95_ms"), metrics.get("error_rate_pct")
    if p95 is None or errors is None:
        return not_done("performance recorded no p95 latency or error rate")
    gates = f.spec.quality_gates
    leaned = [f.waiver("p95_latency_ms") if p95 > DEFAULT_P95_LATENCY_MS else None,
              f.waiver("max_error_rate_pct") if errors > DEFAULT_MAX_ERROR_RATE_PCT else None]
    if "p95_ratio" in metrics:  # a regression was judged, against a relaxed tolerance when one is waived
        leaned += [f.waiver("regression_tolerance_pct"), f.waiver("regression_min_ms")]
    notes = tuple(note for note in leaned if note is not None)
    compared = (f"; p95 {metrics['p95_ratio']:g}x the previous version" if "p95_ratio" in metrics
                else "; no previous version to compare with")
    detail = (f"p95 {p95:g} ms <= {gates.p95_latency_ms:g} ms, errors {errors:g} % <= "
              f"{gates.max_error_rate_pct:g} %{compared}")
    return Verdict("waived", detail, notes) if notes else done(detail)


def monitoring_active(f: RunFacts) -> Verdict:
    verdict = item_passed(f, "observability.verify")
    samples = f.metrics("observability").get("samples", 0)
    if verdict.state != "done":
        return verdict
    if samples < 2:
        return not_done(f"only {samples:g} fresh sample(s) over the observation window")
    return done(f"{samples:g} fresh samples over the observation window, request counter rising")


def alerts_configured(f: RunFacts) -> Verdict:
    verdict = combine(item_passed(f, "monitoring_alerts.read"), item_passed(f, "monitoring_alerts.check"))
    if verdict.state != "done":
        return verdict
    rules = f.metrics("monitoring_alerts").get("alert_rules", 0)
    if f.facts("monitoring_alerts").get("alerts_source") == "prometheus":
        detail = (f"{rules:g} alert rule(s) loaded in Prometheus as the spec gives them, evaluated on fresh samples "
                  "and quiet, test notification delivered")
    else:
        detail = (f"{rules:g} alert rule(s) checked against the live metrics (no Prometheus named), every rule "
                  "metric present and quiet, test notification delivered")
    note = f.waiver("alert_rules")
    return Verdict("waived", detail, (note,)) if note else done(detail)


def documentation_updated(f: RunFacts) -> Verdict:
    verdict = step_passed(f, "release_notes")
    if verdict.state != "done":
        return verdict
    return done(f"release notes account for {f.metrics('release_notes').get('commits', 0):g} commit(s)")


def team_briefed(f: RunFacts) -> Verdict:
    verdict = step_passed(f, "training")
    if verdict.state != "done":
        return verdict
    metrics = f.metrics("training")
    return done(f"training and knowledge-base entries for {metrics.get('kb_entries', 0):g} of "
                f"{metrics.get('user_facing_changes', 0):g} user-facing change(s), a section for each of "
                f"{metrics.get('audiences', 0):g} audience(s)")


def first_release_reason(f: RunFacts) -> str | None:
    """Why there was nothing to roll back to, from what the target showed and the history; None when there was."""
    strategy, readiness = f.facts("execute_strategy"), f.facts("readiness")
    seen = [(strategy.get("active_before") or {}).get("version"), readiness.get("active_version"),
            f.record.get("previous_version")]
    if any(seen):
        return None
    observed = [what for what, known in (("execute_strategy before the switch", "active_before" in strategy),
                                         ("readiness", "first_deployment" in readiness),
                                         ("the run's start", "previous_version" in f.record)) if known]
    where = ", ".join(observed) or "no step"
    if not f.verified_before:
        return (f"first release: no version was active on the target ({where} saw none) and the release history "
                "holds no verified release: nothing to roll back to")
    return (f"no version was active on the target ({where} saw none), although the history's last verified "
            f"release is {f.verified_before[-1]}: nothing to roll back to")


def rollback_tested(f: RunFacts) -> Verdict:
    if f.record.get("outcome") == "rolled_back" and f.record.get("rolled_back"):
        if f.record.get("restored_healthy") is True:
            return done(f"performed: this run rolled back to {f.record.get('active_version')}, which passed its "
                        "health checks afterwards")
        return not_done("this run rolled back, but the restored version did not pass its health checks")
    rehearsal = f.facts("execute_strategy").get("rollback_rehearsal")
    first = first_release_reason(f)
    if not isinstance(rehearsal, dict):
        return not_done(first or "no rollback rehearsal in this run: traffic never moved (execute_strategy did not "
                                 "switch)")
    previous = rehearsal.get("previous")
    if previous is None:
        return not_done(first or "; ".join(rehearsal.get("problems") or ["no previous slot is kept"]))
    if not rehearsal.get("rehearsed"):
        return not_done("rollback rehearsal failed: " + "; ".join(rehearsal.get("problems") or ["unknown"]))
    return done(f"rehearsed: previous slot {previous.get('slot')} ({previous.get('version')}) answered "
                f"{len(rehearsal.get('health') or [])} health check(s) on its own URL after the switch, and the target "
                "confirms it runs and would take traffic back with a switch alone")


# ----------------------------------------------------------------------------- success criteria
def zero_downtime(f: RunFacts) -> Verdict:
    facts = f.facts("execute_strategy")
    observation = facts.get("switch_observation")
    if not isinstance(observation, dict) or not isinstance(observation.get("by_path"), dict):
        return not_done("no switch was observed in this run")
    if facts.get("traffic_moved") is not True:
        return not_done("traffic did not move to the new version")
    if not observation.get("requests"):
        return not_done("strategy.observe_switch_requests is 0: no request was observed during the switch")
    by_path: dict[str, Any] = observation["by_path"]
    endpoints = list(dict.fromkeys(e.path for e in f.spec.critical_endpoints))
    failing = [f"{path} {t.get('failed')} of {t.get('observed')}" for path, t in by_path.items() if t.get("failed")]
    if failing:
        return not_done("requests failed during the switch (no answer or 5xx): " + ", ".join(failing))
    unseen = [path for path in endpoints if not (by_path.get(path) or {}).get("observed")]
    if unseen:
        return not_done(f"critical endpoint(s) {', '.join(unseen)} not observed during the switch")
    total = sum(int(t.get("observed") or 0) for t in by_path.values())
    return done(f"0 of {total} requests to all {len(endpoints)} critical endpoints failed around the switch"
                + (" (after it: a first release)" if observation.get("first_release") else ""))


def all_tests_passing(f: RunFacts) -> Verdict:
    qa = step_passed(f, "qa")
    metrics = f.metrics("qa")
    if qa.state == "done":
        tests, passed = metrics.get("qa_tests", 0), metrics.get("qa_passed", 0)
        if not tests:
            qa = not_done("qa ran no test")
        elif passed < tests:
            note = f.waiver("test_pass_pct")
            detail = f"qa: {passed:g} of {tests:g} tests passed"
            qa = Verdict("waived", detail, (note,)) if note else not_done(f"{detail}; the criterion needs all")
        else:
            qa = done(f"qa: {tests:g}/{tests:g} passed")
    return combine(smoke_tests_passed(f), qa)


def performance_maintained(f: RunFacts) -> Verdict:
    return combine(performance_validated(f), item_passed(f, "observability.check"))


def security_verified(f: RunFacts) -> Verdict:
    return combine(security_scan_passed(f), configuration_validated(f))


def monitoring_operational(f: RunFacts) -> Verdict:
    return combine(monitoring_active(f), alerts_configured(f), step_passed(f, "observability"),
                   step_passed(f, "monitoring_alerts"))


def documentation_complete(f: RunFacts) -> Verdict:
    return combine(documentation_updated(f), team_briefed(f))


Rule = Callable[[RunFacts], Verdict]

#: success criterion -> (where it looks, rule)
CRITERIA_RULES: dict[str, tuple[str, Rule]] = {
    "Zero-downtime deployment": ("execute_strategy facts.switch_observation: every critical endpoint observed "
                                 "around the switch, 0 failed requests on each", zero_downtime),
    "All tests passing": ("smoke tests passed and every QA test passed (qa_passed == qa_tests)", all_tests_passing),
    "Performance maintained": ("performance within the SLA and regression tolerance; observability.check "
                               "(anomalies, SLA compliance)", performance_maintained),
    "Security verified": ("Security scan passed and Configuration validated", security_verified),
    "Monitoring operational": ("Monitoring active and Alerts configured; observability and monitoring_alerts "
                               "passed", monitoring_operational),
    "Documentation complete": ("Documentation updated and Team briefed", documentation_complete),
}


def success_metrics_met(f: RunFacts) -> Verdict:
    criteria = {name: rule(f) for name, (_, rule) in CRITERIA_RULES.items()}
    unmet = [name for name, v in criteria.items() if v.state == "not_done"]
    steps = [step.id for _, step in all_steps() if step.id not in f.reports or f.reports[step.id].status != "passed"]
    if unmet or steps:
        return not_done("; ".join([*([f"criteria not met: {', '.join(unmet)}"] if unmet else []),
                                   *([f"step(s) not passed: {', '.join(steps)}"] if steps else [])]))
    return combine(*criteria.values(), detail=f"all {len(criteria)} success criteria met and all "
                                              f"{len(f.reports)} steps passed")


#: checklist line -> (where it looks, rule), in the seed's order
CHECKLIST_RULES: dict[str, tuple[str, Rule]] = {
    "Risk assessment complete": ("risk_assessment passed with a risk level", risk_assessment_complete),
    "Stakeholders notified": ("notifications.verify: a delivery read back from a file channel or confirmed by a "
                              "webhook receiver's answer", stakeholders_notified),
    "Backup created": ("risk_assessment facts.backup: file with sha256, still intact; or the backup waiver",
                       backup_created),
    "Dependencies validated": ("dependencies passed", dependencies_validated),
    "Build artifacts ready": ("build.check: artifacts with sha256, still intact", build_artifacts_ready),
    "Security scan passed": ("dependencies facts.security_scan: run in this release or a provided report not older "
                             "than the lock file, covering every locked package, nothing at or above the severity "
                             "gate", security_scan_passed),
    "Infrastructure provisioned": ("provisioning passed, this version staged", infrastructure_provisioned),
    "Configuration validated": ("hardening passed at 100 % of the default security baseline",
                                configuration_validated),
    "Deployment executed": ("execute_strategy passed, traffic on this version", deployment_executed),
    "Health checks passing": ("execute_strategy health_pass_pct after the switch", health_checks_passing),
    "Smoke tests passed": ("smoke_tests passed, 0 failures", smoke_tests_passed),
    "Performance validated": ("performance passed within the SLA", performance_validated),
    "Monitoring active": ("observability.verify: fresh samples", monitoring_active),
    "Alerts configured": ("monitoring_alerts read and check", alerts_configured),
    "Documentation updated": ("release_notes passed", documentation_updated),
    "Team briefed": ("training passed", team_briefed),
    "Rollback tested": ("run record: rollback performed and healthy; or execute_strategy facts.rollback_rehearsal",
                        rollback_tested),
    "Success metrics met": ("every success criterion met and every step passed", success_metrics_met),
}


def derive(f: RunFacts) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The checklist and the success criteria as JSON-shaped rows: item or criterion, state, why, waived, detail."""
    checklist = [{"item": name, **rule(f).as_dict(), "derived_from": how}
                 for name, (how, rule) in CHECKLIST_RULES.items()]
    criteria = []
    for name, (how, rule) in CRITERIA_RULES.items():
        row = rule(f).as_dict()
        met = row.pop("done")
        criteria.append({"criterion": name, **row, "met": met, "derived_from": how})
    return checklist, criteria
