"""Which spec values relax the package's standard, and the waiver each one needs.

The standard is the seed's quality gates (build 100 %, tests > 90 %, zero critical vulnerabilities,
every health check) and the package's defaults for everything else a spec can loosen: the
performance SLA, the regression tolerance, the security baseline (every default control and
header, 100 % compliance) and alert rules no looser than the SLA they protect. A spec value weaker
than its bound is a *relaxation*; the spec loads only when ``quality_gates.waivers`` names it with
a ``gate``, a ``reason`` and ``approved_by`` (:mod:`gendev_release.spec` refuses it otherwise, the
readiness step re-checks it and the release report shows the line it touches as waived).

Everything here is a plain function of values, so the spec models, the readiness review and the
release report share one judgement. Nothing here imports the models (they import this module).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

#: Every gate a waiver may name. The first six are the seed's gates and the SLA (kept for older specs).
GateName = Literal["build_success_pct", "test_pass_pct", "max_critical_vulns", "health_pass_pct",
                   "p95_latency_ms", "max_error_rate_pct", "regression_tolerance_pct", "regression_min_ms",
                   "min_compliance_pct", "required_controls", "required_headers", "alert_rules",
                   "document_standard"]

#: The seed's quality gates ("Quality Gates" section). Percentages are minimums except where named max.
SEED_MINIMUMS: dict[str, float] = {
    "build_success_pct": 100.0,  # Build success: 100% required
    "test_pass_pct": 90.0,  # Test coverage: >90% passing
    "max_critical_vulns": 0,  # Security scan: zero critical issues
    "health_pass_pct": 100.0,  # Health checks: all passing
}

#: The package's defaults that a spec may tighten freely but loosen only with a waiver.
DEFAULT_P95_LATENCY_MS = 500.0
DEFAULT_MAX_ERROR_RATE_PCT = 1.0
DEFAULT_REGRESSION_TOLERANCE_PCT = 50.0
DEFAULT_REGRESSION_MIN_MS = 25.0
DEFAULT_MIN_COMPLIANCE_PCT = 100.0
Control = Literal["no_plaintext_secrets", "config_permissions", "security_headers", "tls_certificate"]
DEFAULT_CONTROLS: tuple[Control, ...] = ("no_plaintext_secrets", "config_permissions", "security_headers")
DEFAULT_HEADERS: tuple[str, ...] = ("X-Content-Type-Options", "X-Frame-Options")


@dataclass(frozen=True)
class Bound:
    """One numeric value a spec may not loosen without a waiver.

    :param gate: the waiver's ``gate`` name.
    :param field: the spec field (``security.min_compliance_pct``).
    :param limit: the standard's value.
    :param upper: True when the value is a maximum (a larger value is looser).
    :param origin: ``seed`` (the seed's quality gates) or ``default`` (the package's default).
    """

    gate: str
    field: str
    limit: float
    upper: bool
    origin: Literal["seed", "default"]

    def relaxed(self, value: float) -> bool:
        return value > self.limit if self.upper else value < self.limit


#: Every numeric bound, in the order the readiness review lists them.
NUMERIC_BOUNDS: tuple[Bound, ...] = (
    *(Bound(gate, f"quality_gates.{gate}", limit, gate.startswith("max_"), "seed")
      for gate, limit in SEED_MINIMUMS.items()),
    Bound("p95_latency_ms", "quality_gates.p95_latency_ms", DEFAULT_P95_LATENCY_MS, True, "default"),
    Bound("max_error_rate_pct", "quality_gates.max_error_rate_pct", DEFAULT_MAX_ERROR_RATE_PCT, True, "default"),
    Bound("regression_tolerance_pct", "quality_gates.regression_tolerance_pct", DEFAULT_REGRESSION_TOLERANCE_PCT,
          True, "default"),
    Bound("regression_min_ms", "quality_gates.regression_min_ms", DEFAULT_REGRESSION_MIN_MS, True, "default"),
    Bound("min_compliance_pct", "security.min_compliance_pct", DEFAULT_MIN_COMPLIANCE_PCT, False, "default"),
)
BOUNDS_BY_GATE: dict[str, Bound] = {bound.gate: bound for bound in NUMERIC_BOUNDS}


@dataclass(frozen=True)
class Relaxation:
    """One spec value weaker than the standard.

    :param gate: the waiver ``gate`` that covers it.
    :param field: the spec field, as :class:`~gendev_release.errors.SpecProblem` names it.
    :param value: what the spec says (JSON-shaped).
    :param standard: what the standard says (JSON-shaped).
    :param problem: what is weaker, in one sentence (without the fix).
    :param fix: how to meet the standard instead of waiving it.
    """

    gate: str
    field: str
    value: Any
    standard: Any
    problem: str
    fix: str = ""

    def message(self) -> str:
        """The problem and how to fix it: the text of the spec error when no waiver covers it."""
        if self.gate in SEED_MINIMUMS:  # the seed gates keep their original wording
            return f"{self.problem}; add a waiver with gate: {self.gate}, a reason and approved_by"
        return (f"{self.problem}; {self.fix or 'restore it'}, or add a waiver to quality_gates.waivers with gate: "
                f"{self.gate}, a reason and approved_by")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def numeric_relaxation(gate: str, value: float) -> Relaxation | None:
    """The relaxation ``value`` makes of :data:`NUMERIC_BOUNDS` ``gate``, or None when it meets the standard."""
    bound = BOUNDS_BY_GATE[gate]
    if not bound.relaxed(value):
        return None
    if bound.origin == "seed":
        problem = f"{gate}={value:g} is weaker than the seed's minimum {bound.limit:g}"
    else:
        word = "above" if bound.upper else "below"
        problem = f"{bound.field}={value:g} is {word} the package default {bound.limit:g}"
    fix = f"use {bound.limit:g} or {'less' if bound.upper else 'more'}"
    return Relaxation(gate, bound.field, value, bound.limit, problem, fix)


def gate_relaxations(values: Mapping[str, float]) -> list[Relaxation]:
    """Relaxations among the numeric bounds given in ``values`` (gate name -> the spec's value)."""
    found = (numeric_relaxation(bound.gate, values[bound.gate]) for bound in NUMERIC_BOUNDS if bound.gate in values)
    return [relaxation for relaxation in found if relaxation is not None]


def security_relaxations(required_controls: Sequence[str], required_headers: Sequence[str],
                         min_compliance_pct: float) -> list[Relaxation]:
    """Default controls or headers left out, and a compliance minimum under 100 %."""
    found = []
    missing = [c for c in DEFAULT_CONTROLS if c not in required_controls]
    if missing:
        found.append(Relaxation("required_controls", "security.required_controls", list(required_controls),
                                list(DEFAULT_CONTROLS),
                                f"security.required_controls leaves out the default control(s) {', '.join(missing)}",
                                "add them back"))
    given = {header.lower() for header in required_headers}
    dropped = [h for h in DEFAULT_HEADERS if h.lower() not in given]
    if dropped:
        found.append(Relaxation("required_headers", "security.required_headers", list(required_headers),
                                list(DEFAULT_HEADERS),
                                f"security.required_headers leaves out the default header(s) {', '.join(dropped)}",
                                "add them back"))
    compliance = numeric_relaxation("min_compliance_pct", min_compliance_pct)
    if compliance is not None:
        found.append(compliance)
    return found


# ------------------------------------------------------------------------------ provided documents
#: What the readiness step asks of the runbook and the rollback procedure unless a waiver says otherwise.
DEFAULT_RUNBOOK_SECTIONS: tuple[str, ...] = ("deploy", "verify", "escalation")
DEFAULT_ROLLBACK_SECTIONS: tuple[str, ...] = ("manual rollback",)
DEFAULT_MIN_DOCUMENT_BYTES = 200


def document_relaxations(runbook_sections: Sequence[str], rollback_sections: Sequence[str],
                         min_document_bytes: int) -> list[Relaxation]:
    """Default sections left out of the runbook or rollback procedure, or a smaller minimum size."""
    found = []
    for field, given, defaults in (("readiness.runbook_sections", runbook_sections, DEFAULT_RUNBOOK_SECTIONS),
                                   ("readiness.rollback_sections", rollback_sections, DEFAULT_ROLLBACK_SECTIONS)):
        wanted = {section.strip().lower() for section in given}
        dropped = [section for section in defaults if section not in wanted]
        if dropped:
            found.append(Relaxation("document_standard", field, list(given), list(defaults),
                                    f"{field} leaves out the default section(s) {', '.join(dropped)}",
                                    "add them back"))
    if min_document_bytes < DEFAULT_MIN_DOCUMENT_BYTES:
        found.append(Relaxation("document_standard", "readiness.min_document_bytes", min_document_bytes,
                                DEFAULT_MIN_DOCUMENT_BYTES,
                                f"readiness.min_document_bytes={min_document_bytes} is below the package default "
                                f"{DEFAULT_MIN_DOCUMENT_BYTES}", f"use {DEFAULT_MIN_DOCUMENT_BYTES} or more"))
    return found


# ----------------------------------------------------------------------------------- alert rules
#: What an alert rule may protect: the SLA field, the factor from it to the metric's unit, the unit.
Protects = Literal["error_rate", "p95_latency"]
SLA_FOR: dict[str, tuple[str, float, str]] = {
    "error_rate": ("max_error_rate_pct", 0.01, "as a 0-1 ratio"),
    "p95_latency": ("p95_latency_ms", 0.001, "in seconds"),
}
_SLA_DEFAULTS = {"max_error_rate_pct": DEFAULT_MAX_ERROR_RATE_PCT, "p95_latency_ms": DEFAULT_P95_LATENCY_MS}


class RuleLike(Protocol):
    """What :func:`alert_relaxations` reads of an alert rule (the spec's ``AlertRule``)."""

    @property
    def name(self) -> str: ...
    @property
    def metric(self) -> str: ...
    @property
    def op(self) -> str: ...
    @property
    def threshold(self) -> float: ...
    @property
    def protects(self) -> str | None: ...


def sla_threshold(protects: str, p95_latency_ms: float, max_error_rate_pct: float) -> float:
    """The threshold at the SLA itself, in the metric's unit (a ratio, or seconds)."""
    field, factor, _ = SLA_FOR[protects]
    value = p95_latency_ms if field == "p95_latency_ms" else max_error_rate_pct
    return value * factor


def alert_problems(rules: Sequence[RuleLike], p95_latency_ms: float,
                   max_error_rate_pct: float) -> tuple[list[tuple[str, str]], list[Relaxation]]:
    """Judge every rule that declares what it protects.

    :return: ``(errors, relaxations)``. An error is ``(field, message)``: a rule protecting an upper
        bound must fire above its threshold (``>`` or ``>=``); no waiver fixes that. A relaxation is a
        threshold looser than the SLA (it would stay quiet while the SLA is already broken).
    """
    errors: list[tuple[str, str]] = []
    relaxations: list[Relaxation] = []
    for index, rule in enumerate(rules):
        if rule.protects is None:
            continue
        field, _, unit = SLA_FOR[rule.protects]
        if rule.op not in (">", ">="):
            errors.append((f"monitoring.alert_rules.{index}.op",
                           f"rule {rule.name} protects {rule.protects}, an upper bound, so it must fire above its "
                           f"threshold; use op > or >= (not {rule.op})"))
            continue
        bound = sla_threshold(rule.protects, p95_latency_ms, max_error_rate_pct)
        # compared after a division: 0.3 and 300 / 1000 must count as equal
        if rule.threshold > bound and not math.isclose(rule.threshold, bound, rel_tol=1e-9):
            sla = p95_latency_ms if field == "p95_latency_ms" else max_error_rate_pct
            relaxations.append(Relaxation(
                "alert_rules", f"monitoring.alert_rules.{index}.threshold", rule.threshold, bound,
                f"rule {rule.name} fires at {rule.metric} {rule.op} {rule.threshold:g}, looser than the SLA it "
                f"protects (quality_gates.{field}={sla:g} is {bound:g} {unit})",
                f"lower the threshold to {bound:g} or less (or leave it out: a rule that protects an SLA defaults "
                "to it)"))
    return errors, relaxations


def _number(raw: Any) -> float | None:
    """``raw`` as a finite float the way the model would read it, or None."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        return None
    try:
        value = float(raw)
    except (ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None


def fill_alert_thresholds(data: Any) -> Any:
    """Raw spec data with each rule that protects an SLA and names no threshold given the SLA's.

    Runs before validation, on the parsed YAML: the caller's mapping is never changed. A quality
    gate that is missing or unreadable gives the package default here; its own error is reported
    by the model.
    """
    if not isinstance(data, dict):
        return data
    monitoring = data.get("monitoring")
    rules = monitoring.get("alert_rules") if isinstance(monitoring, dict) else None
    if not isinstance(monitoring, dict) or not isinstance(rules, list):
        return data
    wanted = [isinstance(r, dict) and "threshold" not in r and isinstance(r.get("protects"), str)
              and r["protects"] in SLA_FOR for r in rules]
    if not any(wanted):
        return data
    raw_gates = data.get("quality_gates")
    gates: dict[str, Any] = raw_gates if isinstance(raw_gates, dict) else {}
    values: dict[str, float] = {}
    for name, default in _SLA_DEFAULTS.items():
        given = _number(gates[name]) if name in gates else None
        values[name] = default if given is None else given
    filled = [{**rule, "threshold": sla_threshold(rule["protects"], values["p95_latency_ms"],
                                                   values["max_error_rate_pct"])} if want else rule
              for rule, want in zip(rules, wanted, strict=True)]
    return {**data, "monitoring": {**monitoring, "alert_rules": filled}}


# ------------------------------------------------------------------------------------- waivers
def waived_by(relaxations: Iterable[Relaxation], waivers: Iterable[Any]) -> list[tuple[Relaxation, Any]]:
    """Each relaxation with the waiver that covers it (None when none does); waivers are matched by ``gate``."""
    by_gate = {waiver.gate: waiver for waiver in waivers}
    return [(relaxation, by_gate.get(relaxation.gate)) for relaxation in relaxations]
