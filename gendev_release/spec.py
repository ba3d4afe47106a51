"""The release spec: strict pydantic models loaded from YAML.

Every model forbids unknown keys (a typo is an error, never silently ignored) and is frozen.
Errors are reported as :class:`~gendev_release.errors.SpecProblem` entries naming the field path.
Commands are argv lists, never shell strings; placeholders such as ``{version}`` are replaced by
whole argv elements at run time (see :mod:`gendev_release.commands`).
"""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from gendev_release.errors import SpecError, SpecProblem

#: semver.org's regular expression (2.0.0), anchored.
SEMVER_PATTERN = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
SEMVER_RE = re.compile(SEMVER_PATTERN)
SERVICE_PATTERN = r"^[a-z][a-z0-9-]{0,39}$"

#: Placeholders a command element may contain; each is replaced by one whole value.
PLACEHOLDERS = frozenset({"python", "version", "previous_version", "service", "workdir", "spec_dir",
                          "artifacts_dir", "port", "environment", "url"})
PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")
_SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh", "csh", "tcsh", "fish", "cmd", "cmd.exe",
                     "powershell", "pwsh"})
_EXEC_WRAPPERS = frozenset({"env", "timeout", "nice", "nohup", "sudo", "doas", "xargs", "stdbuf", "setsid",
                            "exec", "command", "chroot", "unshare", "runuser", "su"})
_SHELL_OPERATORS = frozenset({";", "&&", "||", "|", ">", ">>", "<", "<<", "&", "|&"})
_SHELL_SUBST = ("$(", "`", "${")


class Strategy(str, Enum):
    blue_green = "blue_green"
    canary = "canary"
    rolling = "rolling"
    feature_flag = "feature_flag"


#: Strategies the engine can execute today; the others are refused with a clear message.
SUPPORTED_STRATEGIES: tuple[Strategy, ...] = (Strategy.blue_green,)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_argv(argv: list[str], *, placeholders: bool = True) -> list[str]:
    """Refuse a command that tries to reach a shell; return it unchanged otherwise.

    ``placeholders=False`` skips the ``{name}`` check: a final, already substituted argv may hold
    literal braces (``git cat-file -e SHA^{commit}``, a path with braces in a value).
    """
    if not argv:
        raise ValueError("command must not be empty; give the program and its arguments as a list")
    program = Path(argv[0]).name
    if program in _SHELLS:
        raise ValueError(f"command runs the shell {argv[0]!r}; give the program and its arguments directly")
    if program in _EXEC_WRAPPERS:  # env sh -c ..., timeout 5 bash ...: the wrapper would start a shell
        for position, element in enumerate(argv[1:], start=1):
            if Path(element).name in _SHELLS:
                raise ValueError(f"element {position} {element!r} runs a shell through {program!r}; "
                                 "give the program and its arguments directly")
    for index, element in enumerate(argv):
        if element.strip() in _SHELL_OPERATORS:
            raise ValueError(f"element {index} {element!r} is shell syntax; commands never run in a shell")
        if any(token in element for token in _SHELL_SUBST):
            raise ValueError(
                f"element {index} {element!r} contains shell substitution; use a {{placeholder}} instead"
            )
        for name in PLACEHOLDER_RE.findall(element) if placeholders else ():
            if name not in PLACEHOLDERS:
                raise ValueError(
                    f"element {index} uses unknown placeholder {{{name}}}; known: "
                    + ", ".join(sorted(PLACEHOLDERS))
                )
    return argv


Command = Annotated[list[str], Field(min_length=1)]


def _relative_path(value: str) -> str:
    if not value or not value.strip():
        raise ValueError("path must not be empty")
    if "\x00" in value:
        raise ValueError("path must not contain NUL")
    return value


# --------------------------------------------------------------------------------------- gates
GateName = Literal["build_success_pct", "test_pass_pct", "max_critical_vulns", "health_pass_pct",
                   "p95_latency_ms", "max_error_rate_pct"]

#: The seed's quality gates ("Quality Gates" section). Percentages are minimums except where named max.
SEED_MINIMUMS: dict[str, float] = {
    "build_success_pct": 100.0,  # Build success: 100% required
    "test_pass_pct": 90.0,  # Test coverage: >90% passing
    "max_critical_vulns": 0,  # Security scan: zero critical issues
    "health_pass_pct": 100.0,  # Health checks: all passing
}


class Waiver(_Model):
    gate: GateName
    reason: str = Field(min_length=10, description="Why the weaker gate is acceptable (recorded in the report).")
    approved_by: str = Field(min_length=1)


class QualityGates(_Model):
    build_success_pct: float = Field(100.0, ge=0, le=100)
    test_pass_pct: float = Field(90.0, ge=0, le=100, description="Pass rate must be above this (seed: >90%).")
    min_coverage_pct: float | None = Field(None, ge=0, le=100)
    max_critical_vulns: int = Field(0, ge=0)
    health_pass_pct: float = Field(100.0, ge=0, le=100)
    p95_latency_ms: float = Field(500.0, gt=0, description="Performance SLA: p95 latency bound.")
    max_error_rate_pct: float = Field(1.0, ge=0, le=100, description="Performance SLA: error rate bound.")
    regression_tolerance_pct: float = Field(50.0, ge=0, description="Allowed p95 regression against baseline.")
    regression_min_ms: float = Field(
        25.0, ge=0, description="A p95 regression smaller than this many milliseconds is noise, never a failure.")
    waivers: list[Waiver] = Field(default_factory=list)

    def weaker_than_seed(self) -> list[str]:
        weaker = []
        for gate, minimum in SEED_MINIMUMS.items():
            value = getattr(self, gate)
            if (gate.startswith("max_") and value > minimum) or (not gate.startswith("max_") and value < minimum):
                weaker.append(gate)
        return weaker

    @model_validator(mode="after")
    def _weaker_gates_need_waivers(self) -> QualityGates:
        waived = {w.gate for w in self.waivers}
        for gate in self.weaker_than_seed():
            if gate not in waived:
                raise ValueError(
                    f"@{gate}: {gate}={getattr(self, gate):g} is weaker than the seed's minimum "
                    f"{SEED_MINIMUMS[gate]:g}; add a waiver with gate: {gate}, a reason and approved_by"
                )
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

    _check_command = field_validator("command")(lambda cls, v: check_argv(v))


class HealthCheck(_Model):
    name: str = Field(pattern=r"^[a-z0-9_-]+$")
    path: str = Field(pattern=r"^/[^\s]*$")
    expect_status: int = Field(200, ge=100, le=599)
    expect_body_contains: str | None = None
    timeout_seconds: float = Field(2.0, gt=0, le=60)


class HealthPolicy(_Model):
    checks: list[HealthCheck] = Field(min_length=1)
    consecutive_successes: int = Field(3, ge=1, le=100)
    interval_seconds: float = Field(1.0, gt=0, le=300)
    timeout_seconds: float = Field(60.0, gt=0, le=86400)


class Endpoint(_Model):
    path: str = Field(pattern=r"^/[^\s]*$")
    expect_status: int = Field(200, ge=100, le=599)
    expect_body_contains: str | None = None


# ---------------------------------------------------------------------------------- notifications
class FileChannel(_Model):
    kind: Literal["file"] = "file"
    path: str = Field(description="JSON-lines file, relative to the gendev home.")

    _check_path = field_validator("path")(lambda cls, v: _relative_path(v))


class Notifications(_Model):
    channel: FileChannel
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


class ChangeWindow(_Model):
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=lambda: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], min_length=1
    )
    start: str = Field("00:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = Field("23:59", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Berlin") from exc
        return value


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
    runbook: str
    rollback_procedure: str
    min_free_disk_mb: int = Field(100, ge=0)

    _paths = field_validator("runbook", "rollback_procedure")(lambda cls, v: _relative_path(v))


class HighRiskApproval(_Model):
    approved_by: str = Field(min_length=1)
    reason: str = Field(min_length=10)


class BackupInputs(_Model):
    command: Command | None = None
    output: str | None = Field(None, description="File the backup command writes; its sha256 is recorded.")
    waiver: str | None = Field(None, min_length=10, description="Reason no backup is needed.")

    _check_command = field_validator("command")(lambda cls, v: v if v is None else check_argv(v))

    @model_validator(mode="after")
    def _backup_or_waiver(self) -> BackupInputs:
        if self.waiver is None and (self.command is None or self.output is None):
            raise ValueError("give command and output for the backup, or a waiver with a reason")
        return self


class RiskInputs(_Model):
    repo: str = Field(".", description="git repository holding the service's history (relative to the spec).")
    max_commits: int = Field(200, ge=1, le=100000)
    paths: list[str] = Field(default_factory=list,
                             description="Limit the change set to these paths (git pathspecs, relative to the repo "
                                         "root): the service's own folders in a monorepo.")
    sensitive_paths: list[str] = Field(
        default_factory=lambda: ["migrations/*", "*/migrations/*", "infra/*", "*.tf", "*.sql", "Dockerfile",
                                 "docker-compose.yml"],
        description="Paths whose change raises the risk score (dependency files are scored by their own rule).",
    )
    high_risk_approval: HighRiskApproval | None = None
    backup: BackupInputs


class PlanningInputs(_Model):
    default_phase_minutes: float = Field(5.0, gt=0, description="Estimate per phase when no history exists.")


class BuildInputs(_Model):
    config: str = Field(description="Build configuration file (read and digested).")
    command: Command
    artifacts: list[str] = Field(min_length=1, description="Globs, relative to {artifacts_dir}.")

    _check_command = field_validator("command")(lambda cls, v: check_argv(v))


class DependencyInputs(_Model):
    lock_file: str
    scan_report: str
    scan_format: Literal["pip-audit", "sarif"] = "pip-audit"


class InfrastructureInputs(_Model):
    files: list[str] = Field(default_factory=list, description="IaC files to read; the local target adds its manifest.")
    plan_command: Command | None = None
    apply_command: Command | None = None

    _check_commands = field_validator("plan_command", "apply_command")(
        lambda cls, v: v if v is None else check_argv(v)
    )


Control = Literal["no_plaintext_secrets", "config_permissions", "security_headers", "tls_certificate"]


class SecurityInputs(_Model):
    config_files: list[str] = Field(min_length=1)
    required_controls: list[Control] = Field(
        default_factory=lambda: ["no_plaintext_secrets", "config_permissions", "security_headers"], min_length=1
    )
    required_headers: list[str] = Field(default_factory=lambda: ["X-Content-Type-Options", "X-Frame-Options"])
    tls_min_days: int = Field(14, ge=0)
    min_compliance_pct: float = Field(100.0, ge=0, le=100)


class AlertRule(_Model):
    name: str = Field(pattern=r"^[a-z0-9_-]+$")
    metric: str = Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
    op: Literal[">", ">=", "<", "<="]
    threshold: float


class MonitoringInputs(_Model):
    metrics_path: str = Field("/metrics", pattern=r"^/[^\s]*$")
    alert_rules: list[AlertRule] = Field(min_length=1)
    observation_seconds: float = Field(5.0, gt=0, le=3600)
    sample_interval_seconds: float = Field(1.0, gt=0, le=600)
    dashboard: str | None = Field(None, description="Dashboard definition file; generated when absent.")


class TestSuite(_Model):
    name: str = Field(pattern=r"^[a-z0-9_-]+$")
    command: Command
    junit: str = Field(description="JUnit XML the command writes, relative to {workdir}.")

    _check_command = field_validator("command")(lambda cls, v: check_argv(v))


class QAInputs(_Model):
    suites: list[TestSuite] = Field(min_length=1)
    coverage_report: str | None = Field(None, description="Cobertura/coverage.py XML, relative to {workdir}.")
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
    """A release: what to ship, where, how, and what must hold before traffic stays on it."""

    service: str = Field(pattern=SERVICE_PATTERN, description="Lower-case name; the DAG is release__<service>.")
    version: str = Field(pattern=SEMVER_PATTERN, description="Default version (semver); a run may override it.")
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

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_text(cls, value: Any) -> Any:
        if isinstance(value, (int, float)):
            raise ValueError(f"{value!r} was read as a number; quote it in YAML, e.g. version: \"1.0.0\"")
        return value

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

    @property
    def dag_id(self) -> str:
        return dag_id_for(self.service)

    @property
    def source(self) -> Path | None:
        return self._source

    @property
    def spec_dir(self) -> Path:
        return self._source.parent if self._source else Path.cwd()

    def resolve(self, relative: str) -> Path:
        """A path named by the spec, relative to the spec's folder."""
        path = Path(relative)
        return path if path.is_absolute() else (self.spec_dir / path)


def dag_id_for(service: str) -> str:
    return f"release__{service.replace('-', '_')}"


def require_supported_strategy(value: Strategy | str) -> Strategy:
    strategy = Strategy(value)
    if strategy not in SUPPORTED_STRATEGIES:
        supported = ", ".join(s.value for s in SUPPORTED_STRATEGIES)
        raise ValueError(f"strategy {strategy.value!r} is not supported yet; use one of: {supported}")
    return strategy


# ------------------------------------------------------------------------------------- loading
def _problems(exc: ValidationError) -> list[SpecProblem]:
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        if error["type"] == "extra_forbidden":
            message = "unknown field (check the spelling; see `gendev-release schema`)"
        elif error["type"] == "missing":
            message = "required field is missing"
        elif error["type"] == "string_pattern_mismatch":
            message = _pattern_message(error.get("input"), error.get("ctx", {}).get("pattern", ""))
        if message.startswith("@") and ": " in message:  # a cross-field rule naming its field
            sub, message = message[1:].split(": ", 1)
            field = sub if field == "(top level)" else f"{field}.{sub}"
        problems.append(SpecProblem(field, message))
    return problems


def _pattern_message(value: Any, pattern: str) -> str:
    if pattern == SEMVER_PATTERN:
        return f"{value!r} is not a semantic version; use MAJOR.MINOR.PATCH[-PRERELEASE], e.g. 1.4.2"
    if pattern == SERVICE_PATTERN:
        return f"{value!r} is not a valid service name; use lower-case letters, digits and '-', max 40"
    return f"{value!r} does not match the pattern {pattern}"


def parse_spec(data: Any, source: str = "<spec>", path: Path | None = None) -> ReleaseSpec:
    """Validate already-parsed YAML data; raise :class:`SpecError` naming every bad field."""
    if data is None:
        raise SpecError(source, [SpecProblem("(top level)", "spec is empty; expected a mapping")])
    if not isinstance(data, dict):
        raise SpecError(source, [SpecProblem("(top level)", f"expected a mapping, got {type(data).__name__}")])
    try:
        spec = ReleaseSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(source, _problems(exc)) from exc
    spec._source = path.resolve() if path else None
    return spec


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: the second one would silently win."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (the later value would silently win)", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def load_spec(path: str | Path) -> ReleaseSpec:
    """Load and validate a release spec file."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(source, [SpecProblem("(file)", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(source, [SpecProblem("(file)", f"cannot read: {exc}")]) from exc
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(yaml)"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(source, [SpecProblem(where, f"invalid YAML: {problem}")]) from exc
    return parse_spec(data, source, path)


def spec_from_json(data: dict[str, Any], source_path: str | None) -> ReleaseSpec:
    """Rebuild a spec that crossed a process boundary as plain JSON."""
    return parse_spec(data, source_path or "<spec>", Path(source_path) if source_path else None)


def json_schema() -> dict[str, Any]:
    schema = ReleaseSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "gendev-release spec"
    return schema


# ----------------------------------------------------------------------------- run parameters
class RunParams(_Model):
    """What a single run may override (the trigger form's Params)."""

    version: str = Field(pattern=SEMVER_PATTERN)
    strategy: Strategy
    dry_run: bool = False

    @field_validator("strategy")
    @classmethod
    def _strategy_supported(cls, value: Strategy) -> Strategy:
        return require_supported_strategy(value)


def run_params(spec: ReleaseSpec, overrides: dict[str, Any] | None, source: str = "params") -> RunParams:
    """Merge a run's parameters over the spec's defaults; raise :class:`SpecError` on bad values."""
    merged: dict[str, Any] = {"version": spec.version, "strategy": spec.strategy.value, "dry_run": False}
    for key, value in (overrides or {}).items():
        if key in merged and value is not None:
            merged[key] = value
    try:
        return RunParams.model_validate(merged)
    except ValidationError as exc:
        raise SpecError(source, _problems(exc)) from exc
