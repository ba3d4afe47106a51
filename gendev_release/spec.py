"""The release spec: strict pydantic models loaded from YAML.

Every model forbids unknown keys (a typo is an error, never silently ignored) and is frozen.
Errors are reported as :class:`~gendev_release.errors.SpecProblem` entries naming the field path.
The rules that are not models (the version, commands, output and repo paths, time zones) live in
:mod:`gendev_release.spec_rules`; reading the YAML safely lives in :mod:`gendev_release.spec_yaml`.

Every path is relative to a documented folder (the spec folder, the run's workdir or artifacts
dir, the repository root) and is checked twice: lexically at load time
(:func:`gendev_release.paths.check_relative`), resolved with symlinks at run time
(:meth:`ReleaseSpec.input_path`, :func:`gendev_release.paths.resolve_inside`).

The spec names no version: every run does (:func:`run_params`, one rule in
:func:`gendev_release.spec_rules.check_version`).
Nothing here imports Airflow: ``gendev-release validate``, ``schema`` and ``graph`` stay fast.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from gendev_release.errors import SpecError, SpecProblem
from gendev_release.paths import check_relative, resolve_inside
from gendev_release.spec_relaxations import (
    DEFAULT_CONTROLS,
    DEFAULT_HEADERS,
    DEFAULT_MAX_ERROR_RATE_PCT,
    DEFAULT_MIN_COMPLIANCE_PCT,
    DEFAULT_P95_LATENCY_MS,
    DEFAULT_REGRESSION_MIN_MS,
    DEFAULT_REGRESSION_TOLERANCE_PCT,
    NUMERIC_BOUNDS,
    SEED_MINIMUMS,
    Control,
    GateName,
    Protects,
    Relaxation,
    alert_problems,
    fill_alert_thresholds,
    gate_relaxations,
    security_relaxations,
    waived_by,
)
from gendev_release.spec_rules import (
    SERVICE_PATTERN,
    VERSION_FORMAT,
    check_command,
    check_output_path,
    check_repo,
    check_timezone,
    check_version,
    clip,
    field_name,
    validation_problems,
)
from gendev_release.spec_yaml import LoaderClass, load_document


class Strategy(str, Enum):
    blue_green = "blue_green"
    canary = "canary"
    rolling = "rolling"
    feature_flag = "feature_flag"


#: Strategies the engine can execute today; the others are refused with a clear message.
SUPPORTED_STRATEGIES: tuple[Strategy, ...] = (Strategy.blue_green,)


class _Model(BaseModel):
    # allow_inf_nan=False: .nan and .inf in YAML are floats that slip past every bound and gate.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


Command = Annotated[list[str], Field(min_length=1)]


#: A file the spec names relative to the spec's folder (an input the duties read).
SpecDirPath = Annotated[str, AfterValidator(lambda v: check_relative(v, base="the spec folder"))]
#: A file relative to the run's workdir (``{workdir}``), written by a command of the run.
WorkdirPath = Annotated[str, AfterValidator(lambda v: check_relative(v, base="the run's workdir"))]
#: A glob relative to the run's artifacts dir (``{artifacts_dir}``).
ArtifactGlob = Annotated[str, AfterValidator(lambda v: check_relative(v, what="glob", base="{artifacts_dir}"))]
#: A git pathspec relative to the repository root.
RepoPathspec = Annotated[str, AfterValidator(
    lambda v: check_relative(v, what="pathspec", base="the repository root"))]


# --------------------------------------------------------------------------------------- gates
# Which values relax the standard, and the waiver each needs: gendev_release.spec_relaxations.
WAIVER_HINT = ("Every value looser than the standard needs a waiver here: the seed's gates, the SLA and regression "
               "tolerance above their defaults, security.min_compliance_pct under 100, a default "
               "security.required_controls or required_headers entry left out, an alert rule looser than the "
               "SLA it protects (gate alert_rules).")


class Waiver(_Model):
    """An approved relaxation of one gate; the release report shows what it covers as waived, never as done."""

    gate: GateName = Field(description="The relaxed value: a quality gate, regression_tolerance_pct, "
                                       "regression_min_ms, min_compliance_pct, required_controls, required_headers "
                                       "or alert_rules.")
    reason: str = Field(min_length=10, description="Why the weaker gate is acceptable (recorded in the report).")
    approved_by: str = Field(min_length=1)


class QualityGates(_Model):
    build_success_pct: float = Field(100.0, ge=0, le=100)
    test_pass_pct: float = Field(90.0, ge=0, le=100, description="Pass rate must be above this (seed: >90%).")
    min_coverage_pct: float | None = Field(None, ge=0, le=100)
    max_critical_vulns: int = Field(0, ge=0)
    health_pass_pct: float = Field(100.0, ge=0, le=100)
    p95_latency_ms: float = Field(DEFAULT_P95_LATENCY_MS, gt=0,
                                  description="Performance SLA: p95 latency bound; above the default needs a waiver.")
    max_error_rate_pct: float = Field(DEFAULT_MAX_ERROR_RATE_PCT, ge=0, le=100,
                                      description="Performance SLA: error rate bound; above the default needs a "
                                                  "waiver.")
    regression_tolerance_pct: float = Field(
        DEFAULT_REGRESSION_TOLERANCE_PCT, ge=0,
        description="Allowed p95 regression against baseline; above the default needs a waiver.")
    regression_min_ms: float = Field(
        DEFAULT_REGRESSION_MIN_MS, ge=0,
        description="A p95 regression smaller than this many milliseconds is noise, never a failure; above the "
                    "default needs a waiver.")
    waivers: list[Waiver] = Field(default_factory=list, description=WAIVER_HINT)

    def weaker_than_seed(self) -> list[str]:
        return [r.gate for r in self.relaxations() if r.gate in SEED_MINIMUMS]

    def relaxations(self) -> list[Relaxation]:
        """This section's values that are looser than the seed or the package defaults."""
        return gate_relaxations({bound.gate: getattr(self, bound.gate) for bound in NUMERIC_BOUNDS
                                 if bound.field.startswith("quality_gates.")})

    def waiver_for(self, gate: str) -> Waiver | None:
        return next((w for w in self.waivers if w.gate == gate), None)

    @model_validator(mode="after")
    def _weaker_gates_need_waivers(self) -> QualityGates:
        seen: set[str] = set()
        for index, waiver in enumerate(self.waivers):
            if waiver.gate in seen:
                raise ValueError(f"@waivers.{index}.gate: a second waiver for {waiver.gate}; keep one per gate")
            seen.add(waiver.gate)
        for relaxation, waiver in waived_by(self.relaxations(), self.waivers):
            if waiver is None:
                raise ValueError(f"@{relaxation.gate}: {relaxation.message()}")
        return self


# ---------------------------------------------------------------------------------------- target
DEMO_SERVICE_COMMAND = ["{python}", "-m", "gendev_release.demo.service", "--port", "{port}",
                        "--version", "{version}"]


class LocalTargetSpec(_Model):
    kind: Literal["local"] = "local"
    command: Command = Field(default_factory=lambda: list(DEMO_SERVICE_COMMAND),
                             description="argv that starts one version on {port}; default: the demo service")
    router_port: int = Field(0, ge=0, le=65535, description="Stable front port; 0 picks a free one once.")
    startup_timeout_seconds: float = Field(20.0, gt=0, le=600)

    _check_command = field_validator("command")(lambda cls, v: check_command(v))


class HealthCheck(_Model):
    name: str = Field(pattern=r"^[a-z0-9_-]+$")
    path: str = Field(pattern=r"^/[^\s]*$")
    expect_status: int = Field(200, ge=100, le=599)
    expect_body_contains: str | None = None
    timeout_seconds: float = Field(2.0, gt=0, le=60)


class VersionCheck(_Model):
    """How to ask the live service which version it serves (the release gate's serving check)."""

    path: str = Field("/version", pattern=r"^/[^\s]*$", description="Endpoint that names the served version.")
    json_field: str = Field("version", pattern=r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$",
                            description="Dotted path of the version in the endpoint's JSON answer.")
    timeout_seconds: float = Field(2.0, gt=0, le=60)


class HealthPolicy(_Model):
    checks: list[HealthCheck] = Field(min_length=1)
    consecutive_successes: int = Field(3, ge=1, le=100)
    interval_seconds: float = Field(1.0, gt=0, le=300)
    timeout_seconds: float = Field(60.0, gt=0, le=86400)
    version_check: VersionCheck = Field(
        default_factory=VersionCheck,
        description="A release succeeds only while every answer of this endpoint, through the router, "
                    "names its version.")


class Endpoint(_Model):
    path: str = Field(pattern=r"^/[^\s]*$")
    expect_status: int = Field(200, ge=100, le=599)
    expect_body_contains: str | None = None


# ---------------------------------------------------------------------------------- notifications
class FileChannel(_Model):
    kind: Literal["file"] = "file"
    path: str = Field(description="JSON-lines file, relative to the gendev home (no absolute path, no '..').")

    _check_path = field_validator("path")(
        lambda cls, v: check_relative(v, what="channel path", base="the gendev home"))


class Notifications(_Model):
    """Who is told, and through which channels: ``channel`` (one) or ``channels`` (a list), never both."""

    channel: FileChannel | None = Field(None, description="The one channel; or give channels.")
    channels: list[FileChannel] | None = Field(
        None, min_length=1, description="Every channel gets every message; a failed one does not stop the others.")
    stakeholders: dict[str, list[str]] = Field(
        min_length=1, description="audience -> recipients, e.g. engineering: [oncall@example.com]"
    )

    @field_validator("stakeholders")
    @classmethod
    def _audiences_have_recipients(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for audience, recipients in value.items():
            if not recipients:
                raise ValueError(f"audience {audience!r} has no recipients")
        return value

    @model_validator(mode="after")
    def _one_way_to_name_channels(self) -> Notifications:
        if self.channel is not None and self.channels is not None:
            raise ValueError("@channels: give either channel (one) or channels (a list), not both; "
                             "move the channel into the channels list")
        if self.channel is None and self.channels is None:
            raise ValueError("@channel: no notification channel; give channel: {kind: file, path: ...} "
                             "or a channels list")
        seen: dict[str, int] = {}
        for index, channel in enumerate(self.channels or []):
            if channel.path in seen:
                raise ValueError(f"@channels: channels[{index}] repeats the path {channel.path!r} of "
                                 f"channels[{seen[channel.path]}]; list each file once")
            seen[channel.path] = index
        return self

    @property
    def all_channels(self) -> list[FileChannel]:
        """Every channel, in spec order (``[channel]`` when the spec gives one)."""
        return list(self.channels) if self.channels is not None else [self.channel] if self.channel else []

    def channel_fields(self) -> list[tuple[str, FileChannel]]:
        """``(spec field of the channel's path, channel)``: ``notifications.channels[1].path``."""
        if self.channels is not None:
            return [(f"notifications.channels[{i}].path", c) for i, c in enumerate(self.channels)]
        return [("notifications.channel.path", self.channel)] if self.channel else []


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class ChangeWindow(_Model):
    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS), min_length=1)
    start: str = Field("00:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    end: str = Field("23:59", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        return check_timezone(value)


class Approvals(_Model):
    approvers: list[str] = Field(min_length=1)
    required: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _enough_approvers(self) -> Approvals:
        if self.required > len(self.approvers):
            raise ValueError(f"required={self.required} approvals but only {len(self.approvers)} approvers listed")
        return self


# ------------------------------------------------------------------------------- duty inputs
class ReadinessInputs(_Model):
    runbook: SpecDirPath = Field(description="Runbook file, relative to the spec folder.")
    rollback_procedure: SpecDirPath = Field(description="Rollback procedure file, relative to the spec folder.")
    min_free_disk_mb: int = Field(100, ge=0)


class HighRiskApproval(_Model):
    approved_by: str = Field(min_length=1)
    reason: str = Field(min_length=10)


class BackupInputs(_Model):
    """The backup taken before deploying: ``command`` and ``output``, or a ``waiver`` with ``approved_by``."""

    command: Command | None = None
    output: str | None = Field(
        None, description="File the backup command writes, relative to the run's workdir (a leading {workdir}/ or "
                          "{artifacts_dir}/ is allowed, no other placeholder); its sha256 is recorded.")
    waiver: str | None = Field(None, min_length=10, description="Reason no backup is needed.")
    approved_by: str | None = Field(None, min_length=1, description="Who accepted releasing without a backup "
                                                                    "(required with waiver).")

    _check_command = field_validator("command")(lambda cls, v: v if v is None else check_command(v))
    _check_output = field_validator("output")(lambda cls, v: v if v is None else check_output_path(v))

    @model_validator(mode="after")
    def _backup_or_waiver(self) -> BackupInputs:
        if self.waiver is None and (self.command is None or self.output is None):
            raise ValueError("give command and output for the backup, or a waiver with a reason")
        if self.waiver is not None and self.approved_by is None:
            raise ValueError("@approved_by: a backup waiver needs approved_by: name who accepted releasing without "
                             "a backup")
        if self.waiver is None and self.approved_by is not None:
            raise ValueError("@approved_by: approved_by belongs to a backup waiver; remove it or add waiver")
        return self


class RiskInputs(_Model):
    repo: str = Field(".", description="git repository holding the service's history: the spec folder (.), a "
                                        "folder inside it, or a folder above it given only as '..' components "
                                        "(../.. : the repository holding the spec in a monorepo).")
    max_commits: int = Field(200, ge=1, le=100000)
    paths: list[RepoPathspec] = Field(default_factory=list,
                             description="Limit the change set to these paths (git pathspecs, relative to the repo "
                                         "root): the service's own folders in a monorepo.")
    sensitive_paths: list[str] = Field(
        default_factory=lambda: ["migrations/*", "*/migrations/*", "infra/*", "*.tf", "*.sql", "Dockerfile",
                                 "docker-compose.yml"],
        description="Paths whose change raises the risk score (dependency files are scored by their own rule).",
    )
    high_risk_approval: HighRiskApproval | None = None
    backup: BackupInputs

    _check_repo = field_validator("repo")(lambda cls, v: check_repo(v))


class PlanningInputs(_Model):
    default_phase_minutes: float = Field(5.0, gt=0, description="Estimate per phase when no history exists.")


class BuildInputs(_Model):
    config: SpecDirPath = Field(description="Build configuration file, relative to the spec folder (read and "
                                            "digested).")
    command: Command
    artifacts: list[ArtifactGlob] = Field(min_length=1, description="Globs, relative to {artifacts_dir}.")

    _check_command = field_validator("command")(lambda cls, v: check_command(v))


class DependencyInputs(_Model):
    lock_file: SpecDirPath = Field(description="Lock file, relative to the spec folder.")
    scan_report: SpecDirPath = Field(description="Vulnerability scan report, relative to the spec folder.")
    scan_format: Literal["pip-audit", "sarif"] = "pip-audit"


class DestructiveWaiver(_Model):
    """An approved delete or replace of one resource in the ``plan_command``'s Terraform plan."""

    address: str = Field(min_length=1, description="The resource address exactly as the plan names it "
                                                   "(module.db.aws_db_instance.main); no wildcards.")
    reason: str = Field(min_length=10, description="Why destroying it is acceptable (shown in the evidence).")
    approved_by: str = Field(min_length=1)


class InfrastructureInputs(_Model):
    files: list[SpecDirPath] = Field(default_factory=list, description="IaC files to read, relative to the spec "
                                                                       "folder; the local target adds its manifest.")
    plan_command: Command | None = Field(
        None, description="Runs before apply; when it prints JSON, that is Terraform plan JSON (terraform show "
                          "-json tfplan) and any delete or replace in it blocks the release unless waived.")
    apply_command: Command | None = Field(None, description="Runs only after an accepted plan.")
    destructive_waivers: list[DestructiveWaiver] = Field(
        default_factory=list,
        description="One per resource address the plan may delete or replace; a waiver the plan does not use is "
                    "reported as stale.")

    _check_commands = field_validator("plan_command", "apply_command")(
        lambda cls, v: v if v is None else check_command(v)
    )

    @model_validator(mode="after")
    def _waivers_need_a_plan(self) -> InfrastructureInputs:
        seen: set[str] = set()
        for index, waiver in enumerate(self.destructive_waivers):
            if waiver.address in seen:
                raise ValueError(f"@destructive_waivers.{index}.address: a second waiver for {waiver.address}; keep "
                                 "one per address")
            seen.add(waiver.address)
        if self.destructive_waivers and self.plan_command is None:
            raise ValueError("@destructive_waivers: a waiver applies to the Terraform plan plan_command prints; set "
                             "plan_command (e.g. a script running terraform show -json tfplan) or remove the waivers")
        return self

    def waiver_for(self, address: str) -> DestructiveWaiver | None:
        return next((w for w in self.destructive_waivers if w.address == address), None)


class SecurityInputs(_Model):
    """The security baseline. Leaving out a default control or header, or a compliance minimum under 100 %,
    needs a waiver in ``quality_gates.waivers`` (gate ``required_controls``, ``required_headers`` or
    ``min_compliance_pct``); adding controls (``tls_certificate``) or headers never does."""

    config_files: list[SpecDirPath] = Field(min_length=1, description="Configuration files to audit, relative to "
                                                                      "the spec folder.")
    required_controls: list[Control] = Field(default_factory=lambda: list(DEFAULT_CONTROLS), min_length=1)
    required_headers: list[str] = Field(default_factory=lambda: list(DEFAULT_HEADERS),
                                        description="Response headers the staged slot must send (any letter case).")
    tls_min_days: int = Field(14, ge=0)
    min_compliance_pct: float = Field(DEFAULT_MIN_COMPLIANCE_PCT, ge=0, le=100,
                                      description="Share of the required controls that must pass.")

    def relaxations(self) -> list[Relaxation]:
        """Default controls or headers left out, and a compliance minimum under 100 %."""
        return security_relaxations(self.required_controls, self.required_headers, self.min_compliance_pct)


def _threshold_optional_in_schema(schema: dict[str, Any]) -> None:
    # The spec's loader fills the threshold of a rule that protects an SLA (ReleaseSpec._thresholds_from_sla).
    schema["required"] = [name for name in schema.get("required", []) if name != "threshold"]


class AlertRule(_Model):
    """One alert: it fires while ``metric op threshold`` holds.

    A rule that ``protects`` an SLA may not be looser than it: ``error_rate`` compares a 0-1 ratio
    with ``quality_gates.max_error_rate_pct / 100``, ``p95_latency`` a value in seconds with
    ``quality_gates.p95_latency_ms / 1000``; it must fire above the threshold (``>`` or ``>=``) and its
    threshold defaults to the SLA itself. A looser one needs a waiver with gate ``alert_rules``.
    """

    model_config = ConfigDict(json_schema_extra=_threshold_optional_in_schema)

    name: str = Field(pattern=r"^[a-z0-9_-]+$")
    metric: str = Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
    op: Literal[">", ">=", "<", "<="]
    threshold: float = Field(description="Required, except for a rule that protects an SLA: it defaults to the "
                                         "SLA (max_error_rate_pct / 100, p95_latency_ms / 1000).")
    protects: Protects | None = Field(None, description="The SLA this rule guards: error_rate (the metric is a "
                                                        "0-1 ratio) or p95_latency (the metric is in seconds).")


class MonitoringInputs(_Model):
    metrics_path: str = Field("/metrics", pattern=r"^/[^\s]*$")
    alert_rules: list[AlertRule] = Field(min_length=1)
    observation_seconds: float = Field(5.0, gt=0, le=3600)
    sample_interval_seconds: float = Field(1.0, gt=0, le=600)
    dashboard: SpecDirPath | None = Field(None, description="Dashboard definition file, relative to the spec "
                                                            "folder; generated when absent.")


class TestSuite(_Model):
    name: str = Field(pattern=r"^[a-z0-9_-]+$")
    command: Command
    junit: WorkdirPath = Field(description="JUnit XML the command writes, relative to {workdir}.")

    _check_command = field_validator("command")(lambda cls, v: check_command(v))


class QAInputs(_Model):
    suites: list[TestSuite] = Field(min_length=1)
    coverage_report: WorkdirPath | None = Field(
        None, description="Cobertura/coverage.py XML, relative to {workdir}; it must name at least one class and "
                          "carry a timestamp from this run.")
    benchmark_requests: int = Field(50, ge=1, le=100000)


class LoadTestInputs(_Model):
    requests: int = Field(200, ge=10, le=100000)
    concurrency: int = Field(4, ge=1, le=64)
    path: str = Field("/version", pattern=r"^/[^\s]*$")


class TrainingInputs(_Model):
    audiences: list[str] = Field(default_factory=lambda: ["end-users", "support", "engineering"], min_length=1)


class BlueGreenSettings(_Model):
    pre_switch_checks: list[str] | None = Field(
        None, description="Health checks the staged slot must pass before traffic moves (default: all)."
    )
    observe_switch_requests: int = Field(20, ge=0, le=10000,
                                         description="Requests sent through the router while switching.")


class ReleaseSpec(_Model):
    """A release: what to ship, where, how, and what must hold before traffic stays on it.

    The spec names no version: every run does (trigger conf {"version": "1.4.2"}, the trigger form, or
    `--set version=1.4.2`). Every path is relative to the folder its field names (the spec folder,
    the run's workdir or artifacts dir, the repository root) and may not be absolute or climb out
    with `..`; `risk.repo` alone may be only `..` components. Numbers must be finite (.nan and .inf
    are refused). Commands are argv lists, never run in a shell; when the environment variable
    `GENDEV_ALLOWED_EXECUTABLES` is set (comma-separated program names or absolute paths;
    `{python}` counts as `python`), a command whose program is not listed is refused.
    """

    service: str = Field(pattern=SERVICE_PATTERN, description="Lower-case name; the DAG is release__<service>.")
    environment: Literal["development", "staging", "production"] = "production"
    strategy: Strategy = Strategy.blue_green
    blue_green: BlueGreenSettings = Field(default_factory=BlueGreenSettings)
    description: str = ""
    target: LocalTargetSpec = Field(default_factory=LocalTargetSpec)
    health: HealthPolicy
    critical_endpoints: list[Endpoint] = Field(min_length=1)
    quality_gates: QualityGates = Field(default_factory=QualityGates)
    notifications: Notifications
    approvals: Approvals | None = None
    change_window: ChangeWindow | None = None
    readiness: ReadinessInputs
    risk: RiskInputs
    planning: PlanningInputs = Field(default_factory=PlanningInputs)
    build: BuildInputs
    dependencies: DependencyInputs
    infrastructure: InfrastructureInputs = Field(default_factory=InfrastructureInputs)
    security: SecurityInputs
    monitoring: MonitoringInputs
    qa: QAInputs
    load_test: LoadTestInputs = Field(default_factory=LoadTestInputs)
    training: TrainingInputs = Field(default_factory=TrainingInputs)

    _source: Path | None = PrivateAttr(default=None)

    @field_validator("strategy")
    @classmethod
    def _strategy_supported(cls, value: Strategy) -> Strategy:
        return require_supported_strategy(value)

    @model_validator(mode="after")
    def _production_needs_gates(self) -> ReleaseSpec:
        if self.environment == "production" and (self.approvals is None or self.change_window is None):
            missing = [name for name in ("approvals", "change_window") if getattr(self, name) is None]
            raise ValueError(f"@{missing[0]}: production releases need {' and '.join(missing)}")
        return self

    @model_validator(mode="after")
    def _pre_switch_checks_exist(self) -> ReleaseSpec:
        names = {check.name for check in self.health.checks}
        for name in self.blue_green.pre_switch_checks or []:
            if name not in names:
                raise ValueError(f"@blue_green.pre_switch_checks: names {name!r}, which is not in health.checks "
                                 f"({', '.join(sorted(names))})")
        return self

    @model_validator(mode="before")
    @classmethod
    def _thresholds_from_sla(cls, data: Any) -> Any:
        # A rule that protects an SLA and names no threshold gets the SLA's: one number, not two to keep equal.
        return fill_alert_thresholds(data)

    @model_validator(mode="after")
    def _relaxations_need_waivers(self) -> ReleaseSpec:
        # quality_gates checks its own values; these span sections (the waivers live in quality_gates).
        gates = self.quality_gates
        errors, _ = alert_problems(self.monitoring.alert_rules, gates.p95_latency_ms, gates.max_error_rate_pct)
        for field, message in errors:
            raise ValueError(f"@{field}: {message}")
        for relaxation, waiver in waived_by(self.relaxations(), gates.waivers):
            if waiver is None:
                raise ValueError(f"@{relaxation.field}: {relaxation.message()}")
        return self

    def relaxations(self) -> list[Relaxation]:
        """Every value looser than the standard (each one needs a waiver in ``quality_gates.waivers``)."""
        gates = self.quality_gates
        _, alerts = alert_problems(self.monitoring.alert_rules, gates.p95_latency_ms, gates.max_error_rate_pct)
        return [*gates.relaxations(), *self.security.relaxations(), *alerts]

    @property
    def dag_id(self) -> str:
        return dag_id_for(self.service)

    @property
    def source(self) -> Path | None:
        return self._source

    @property
    def spec_dir(self) -> Path:
        return self._source.parent if self._source else Path.cwd()

    def input_path(self, field: str, value: str) -> Path:
        """A file the spec names relative to its folder, resolved (symlinks followed).

        :param field: the spec field, named when the path is refused (``readiness.runbook``).
        :param value: the field's text.
        :raises gendev_release.paths.PathEscape: when the path is absolute, climbs with ``..`` or
            resolves outside the spec folder.
        """
        return resolve_inside(self.spec_dir, value, field)

    def resolve(self, relative: str, field: str = "path") -> Path:
        """A path relative to the spec's folder; never absolute, never outside it (see :meth:`input_path`)."""
        return self.input_path(field, relative)

    def repo_path(self) -> Path:
        """``risk.repo`` as a folder: an ancestor of the spec folder (only ``..``) or a folder inside it."""
        value = self.risk.repo
        parts = PurePosixPath(value).parts
        if parts and all(part == ".." for part in parts):
            folder = self.spec_dir.resolve()
            return folder.parents[len(parts) - 1] if len(parts) <= len(folder.parents) else Path(folder.anchor)
        return self.input_path("risk.repo", value)


def dag_id_for(service: str) -> str:
    return f"release__{service.replace('-', '_')}"


def require_supported_strategy(value: Strategy | str) -> Strategy:
    strategy = Strategy(value)
    if strategy not in SUPPORTED_STRATEGIES:
        supported = ", ".join(s.value for s in SUPPORTED_STRATEGIES)
        raise ValueError(f"strategy {strategy.value!r} is not supported yet; use one of: {supported}")
    return strategy


# ------------------------------------------------------------------------------------- loading
def parse_spec(data: Any, source: str = "<spec>", path: Path | None = None) -> ReleaseSpec:
    """Validate already-parsed YAML data; raise :class:`SpecError` naming every bad field."""
    if data is None:
        raise SpecError(source, [SpecProblem("(top level)", "spec is empty; expected a mapping")])
    if not isinstance(data, dict):
        raise SpecError(source, [SpecProblem("(top level)", f"expected a mapping, got {type(data).__name__}")])
    try:
        spec = ReleaseSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(source, validation_problems(exc)) from exc
    spec._source = path.resolve() if path else None
    return spec


def load_spec(path: str | Path, *, loader: LoaderClass | None = None) -> ReleaseSpec:
    """Load and validate a release spec file; every problem is a :class:`SpecError`.

    :param path: the YAML file (at most :data:`gendev_release.spec_yaml.MAX_SPEC_BYTES`).
    :param loader: the YAML loader (default :data:`gendev_release.spec_yaml.LOADER`, libyaml's when present).
    """
    path = Path(path)
    source = str(path)
    return parse_spec(load_document(path, source, loader), source, path)


def spec_from_json(data: dict[str, Any], source_path: str | None) -> ReleaseSpec:
    """Rebuild a spec that crossed a process boundary as plain JSON."""
    return parse_spec(data, source_path or "<spec>", Path(source_path) if source_path else None)


def json_schema() -> dict[str, Any]:
    schema = ReleaseSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "gendev-release spec"
    return schema


# ----------------------------------------------------------------------------- run parameters
#: What a run may set: Airflow's trigger form and conf, ``--set`` on the command line.
RUN_PARAMETERS = ("version", "strategy", "dry_run")
VERSION_REQUIRED = ('version is required: every run names the version it releases (trigger conf '
                    '{"version": "1.4.2"} or `--set version=1.4.2`); ' + VERSION_FORMAT)


class RunParams(_Model):
    """One run's parameters (the trigger form's Params), built by :func:`run_params`."""

    version: str
    strategy: Strategy
    dry_run: bool = False

    @field_validator("version", mode="before")
    @classmethod
    def _version_format(cls, value: Any) -> str:
        return check_version(value)

    @field_validator("strategy")
    @classmethod
    def _strategy_supported(cls, value: Strategy) -> Strategy:
        return require_supported_strategy(value)

    @field_validator("dry_run", mode="before")
    @classmethod
    def _dry_run_is_boolean(cls, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"{clip(value)} is not a boolean; give true or false (a JSON boolean, not text)")
        return value


def run_params(spec: ReleaseSpec, overrides: dict[str, Any] | None, source: str = "params") -> RunParams:
    """A run's parameters, validated; raise :class:`SpecError` naming every bad one.

    :param spec: the release spec; it gives the default strategy, never the version.
    :param overrides: the run's values (Airflow's params and trigger conf, or ``--set``). Unknown
        keys are refused; ``version`` is required (:func:`check_version`); ``strategy`` and
        ``dry_run`` may be absent or None (the spec's strategy; no dry run).
    :param source: where the values came from, for the messages (``params``, ``--set``).
    """
    given = dict(overrides or {})
    problems = [SpecProblem(field_name((key,)), f"unknown run parameter; allowed: {', '.join(RUN_PARAMETERS)}")
                for key in given if key not in RUN_PARAMETERS]
    values: dict[str, Any] = {"strategy": spec.strategy.value, "dry_run": False}
    values.update({key: value for key, value in given.items() if key in RUN_PARAMETERS and value is not None})
    if "version" not in values:
        problems.append(SpecProblem("version", VERSION_REQUIRED))
    params = None
    try:
        params = RunParams.model_validate(values)
    except ValidationError as exc:
        problems += [p for p in validation_problems(exc) if p.field != "version" or "version" in values]
    if problems or params is None:
        raise SpecError(source, problems)
    return params
