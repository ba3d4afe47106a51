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

import json
import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)

from gendev_release.change_window import FreezeInstant, freeze_bounds, freeze_problems
from gendev_release.errors import SpecError, SpecProblem
from gendev_release.paths import check_relative, resolve_inside
from gendev_release.spec_relaxations import (
    DEFAULT_CONTROLS,
    DEFAULT_HEADERS,
    DEFAULT_MAX_ERROR_RATE_PCT,
    DEFAULT_MIN_COMPLIANCE_PCT,
    DEFAULT_MIN_DOCUMENT_BYTES,
    DEFAULT_P95_LATENCY_MS,
    DEFAULT_REGRESSION_MIN_MS,
    DEFAULT_REGRESSION_TOLERANCE_PCT,
    DEFAULT_ROLLBACK_SECTIONS,
    DEFAULT_RUNBOOK_SECTIONS,
    NUMERIC_BOUNDS,
    SEED_MINIMUMS,
    Control,
    GateName,
    Protects,
    Relaxation,
    alert_problems,
    document_relaxations,
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
from gendev_release.webhook_rules import (
    JsonScalar,
    Severity,
    check_conn_id,
    check_endpoint,
    refuse_secret,
)


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
    router: Literal["builtin", "nginx"] = Field(
        "builtin", description="What routes traffic to the slots. builtin: the small Python router (weighted "
                               "round robin over the recorded split); "
                               "nginx: this target's own nginx on loopback (Debian package nginx) "
                               "with weighted upstreams, each change checked with nginx -t before nginx -s reload.")
    router_port: int = Field(0, ge=0, le=65535, description="Stable front port; 0 picks a free one once.")
    startup_timeout_seconds: float = Field(20.0, gt=0, le=600)

    _check_command = field_validator("command")(lambda cls, v: check_command(v))


#: Placeholders each ``command`` target template fills; ``{python}`` and ``{service}`` fill every one.
#: Every value is checked before it is substituted (a version is semver, a revision an id, the
#: weights JSON is written by the target), and each lands inside one argv element: never a shell.
COMMAND_TARGET_PLACEHOLDERS: dict[str, tuple[str, ...]] = {
    "deploy": ("version", "revision"),
    "set_weights": ("weights_json",),
    "promote": ("revision", "version", "weights_json"),
    "rollback": ("revision", "version", "weights_json"),
    "retire": ("revision", "version"),
    "status": (),
}


def _target_template(value: list[str], field: str) -> list[str]:
    """A command target's argv template: no shell, only the placeholders ``field`` fills, an allowed program."""
    from gendev_release.spec_rules import PLACEHOLDER_RE, check_allowed_program, check_argv

    check_argv(value, placeholders=False)
    fills = ("python", "service", *COMMAND_TARGET_PLACEHOLDERS[field])
    for index, element in enumerate(value):
        for name in PLACEHOLDER_RE.findall(element):
            if name not in fills:
                raise ValueError(f"element {index} uses {{{name}}}, which {field} does not fill; it fills "
                                 + ", ".join("{" + n + "}" for n in fills))
    return check_allowed_program(value)


def _check_stable_url(value: str | None) -> str | None:
    if value is None:
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{clip(value)} is not an http(s) URL such as http://127.0.0.1:8080")
    if "@" in parts.netloc:
        raise ValueError("the URL holds credentials; clients' stable URL never carries a secret")
    return value


class CommandTargetSpec(_Model):
    """Any CLI deploys (helm, kubectl, a script): argv templates, each run without a shell.

    Placeholders: ``{python}`` and ``{service}`` everywhere; deploy ``{version}`` ``{revision}``;
    set_weights ``{weights_json}`` (``{"r1": 90, "r2": 10}``, ``{}`` = no traffic); promote and
    rollback ``{revision}`` ``{version}`` ``{weights_json}``; retire ``{revision}`` ``{version}``.
    Revisions are numbered ``r1``, ``r2``, ... After every command the status command's JSON is
    read back and must show what was asked (the revision ready, the split in force).
    """

    kind: Literal["command"]
    deploy: Command = Field(description="Starts {version} as revision {revision}, taking no traffic, e.g. [helm, "
                                        "upgrade, --install, '{service}-{revision}', ./chart, --set, "
                                        "'image.tag={version}'].")
    set_weights: Command = Field(description="Applies the traffic split {weights_json}.")
    status: Command = Field(description="Prints the platform's state as one JSON object: {\"revisions\": "
                                        "[{\"revision\", \"version\", \"url\", \"ready\"}], \"weights\": {revision: "
                                        "percent}, \"url\": stable URL or null}; anything else is refused.")
    promote: Command | None = Field(None, description="Run instead of set_weights when {revision} takes all the "
                                                      "traffic from another revision (default: set_weights).")
    rollback: Command | None = Field(None, description="Run instead of set_weights when the traffic goes back "
                                                       "wholly to the previous revision {revision}.")
    retire: Command | None = Field(None, description="Removes revision {revision}; without it a retired revision "
                                                     "keeps running on the platform and is only forgotten here.")
    url: str | None = Field(None, description="The stable URL clients use; default: the status output's url.")
    timeout_seconds: float = Field(300.0, gt=0, le=3600, description="Longest run of one command.")
    startup_timeout_seconds: float = Field(300.0, gt=0, le=3600,
                                           description="How long the status may take to show a deployed revision "
                                                       "ready or a split in force.")

    _check_templates = field_validator(*COMMAND_TARGET_PLACEHOLDERS)(
        lambda cls, v, info: v if v is None else _target_template(v, info.field_name))
    _check_url = field_validator("url")(lambda cls, v: _check_stable_url(v))

    @property
    def command(self) -> list[str]:
        """The argv template that starts a version (what rollback documents record)."""
        return list(self.deploy)


def _api_prefix(value: str) -> str:
    if "?" in value:
        raise ValueError(f"endpoint {value[:120]!r} has a query ('?'); give the API's path prefix, e.g. /api/v1")
    return value


class HttpTargetSpec(_Model):
    """A deploy API, called through providers-http's HttpHook and an Airflow HTTP Connection.

    The API's host, credentials and headers live in the connection (Airflow UI, or the environment
    variable ``AIRFLOW_CONN_<CONN_ID>``), never in the spec. Calls, relative to ``endpoint``:
    ``POST /revisions`` ``{"service", "version"}`` answers ``{"revision", "version"}``;
    ``PUT /weights`` ``{"weights": {revision: percent}}``; ``GET /status`` answers the same JSON as
    a command target's status command; ``DELETE /revisions/<revision>``. After every call the
    status is read back and must show what was asked.
    """

    kind: Literal["http"]
    conn_id: str = Field(description="Airflow HTTP connection of the deploy API (host, credentials, headers); an "
                                     "id, never a URL.")
    endpoint: str = Field("", description="Path prefix of the API on the connection's host, e.g. "
                                          "/api/v1/services/demo ('' = the connection's URL).")
    url: str | None = Field(None, description="The stable URL clients use; default: the status answer's url.")
    timeout_seconds: float = Field(30.0, gt=0, le=600, description="How long to wait for one answer.")
    startup_timeout_seconds: float = Field(300.0, gt=0, le=3600,
                                           description="How long the status may take to show a deployed revision "
                                                       "ready or a split in force.")

    _check_conn_id = field_validator("conn_id")(lambda cls, v: check_conn_id(v))
    _check_endpoint = field_validator("endpoint")(lambda cls, v: _api_prefix(check_endpoint(v)))
    _check_url = field_validator("url")(lambda cls, v: _check_stable_url(v))

    @property
    def command(self) -> list[str]:
        """No local command starts a version: the deploy API does."""
        return []


TARGET_KINDS: dict[str, type[LocalTargetSpec] | type[CommandTargetSpec] | type[HttpTargetSpec]] = {
    "local": LocalTargetSpec, "command": CommandTargetSpec, "http": HttpTargetSpec}


def one_of_kinds(kinds: dict[str, Any], default: str | None, noun: str, shape: str) -> Callable[..., Any]:
    """A wrap validator choosing the model by ``kind`` (``default`` when absent; None: required).

    Done here rather than by a pydantic discriminator, whose errors would name the tag
    (``channels.0.webhook.conn_id``) instead of the spec's field (``channels.0.conn_id``).
    :param shape: how the message describes the value, e.g. ``target is a mapping such as {kind: local}``.
    """
    models = tuple(kinds.values())

    def validate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        if isinstance(value, models):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"{shape}, got {type(value).__name__}")
        kind = value.get("kind", default)
        if kind is None:
            raise ValueError(f"{noun} kind is required; use one of: {', '.join(kinds)}")
        model = kinds.get(kind) if isinstance(kind, str) else None
        if model is None:
            raise ValueError(f"unknown {noun} kind {clip(kind)}; use one of: {', '.join(kinds)}")
        return model.model_validate(value)

    return validate


#: Where the service runs, chosen by ``kind``.
TargetSpec = Annotated[LocalTargetSpec | CommandTargetSpec | HttpTargetSpec,
                       WrapValidator(one_of_kinds(TARGET_KINDS, "local", "target",
                                                  "target is a mapping such as {kind: local}"))]


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
    """A JSON line appended to a file inside the gendev home; delivered when the line reads back."""

    kind: Literal["file"] = "file"
    path: str = Field(description="JSON-lines file, relative to the gendev home (no absolute path, no '..').")
    min_severity: Severity = Field("info", description="Only messages at or above it (info < warning < critical) "
                                                       "are written; the others are recorded as not sent.")

    _check_path = field_validator("path")(
        lambda cls, v: check_relative(v, what="channel path", base="the gendev home"))

    @property
    def label(self) -> str:
        """How reports name the channel: its path."""
        return self.path


class WebhookChannel(_Model):
    """A JSON POST through an Airflow HTTP connection; delivered when the receiver's answer confirms it.

    The receiver's URL, credentials and headers live in the connection (Airflow UI, or the environment
    variable ``AIRFLOW_CONN_<CONN_ID>``), never in the spec.
    """

    kind: Literal["webhook"]
    conn_id: str = Field(description="Airflow HTTP connection holding the receiver's host, credentials and headers "
                                     "(Airflow UI, or env var AIRFLOW_CONN_<CONN_ID>); an id, never a URL.")
    endpoint: str = Field("", description="Path posted to on the connection's host, e.g. /hooks/release ('' posts "
                                          "to the connection's URL); no URL, no token.")
    min_severity: Severity = Field("info", description="Only messages at or above it (info < warning < critical) "
                                                       "are posted; the others are recorded as not sent.")
    timeout_seconds: float = Field(10.0, gt=0, le=120, description="How long to wait for the receiver's answer.")
    expect_status: int | None = Field(None, ge=200, le=299,
                                      description="The status the receiver must answer; default: any 2xx.")
    expect_json: dict[str, JsonScalar] | None = Field(
        None, min_length=1, description="Dotted field -> value the receiver's JSON answer must hold, e.g. {ok: true}.")
    expect_body_contains: str | None = Field(None, min_length=1,
                                             description="A text the receiver's answer must contain.")

    _check_conn_id = field_validator("conn_id")(lambda cls, v: check_conn_id(v))
    _check_endpoint = field_validator("endpoint")(lambda cls, v: check_endpoint(v))
    _check_body = field_validator("expect_body_contains")(
        lambda cls, v: v if v is None else refuse_secret(v, "expect_body_contains"))

    @field_validator("expect_json")
    @classmethod
    def _no_secret_expected(cls, value: dict[str, JsonScalar] | None) -> dict[str, JsonScalar] | None:
        for key, expected in (value or {}).items():
            refuse_secret(key, "expect_json field")
            if isinstance(expected, str):
                refuse_secret(expected, f"expect_json[{key!r}]")
        return value

    @property
    def label(self) -> str:
        """How reports name the channel: ``release_hook:/hooks/release`` (never the connection's URL)."""
        return f"{self.conn_id}:{self.endpoint}" if self.endpoint else self.conn_id

    @property
    def path(self) -> str:
        """The :attr:`label`, for code that lists channels by path."""
        return self.label


CHANNEL_KINDS: dict[str, type[FileChannel] | type[WebhookChannel]] = {"file": FileChannel, "webhook": WebhookChannel}


#: A notification channel, chosen by ``kind``.
Channel = Annotated[FileChannel | WebhookChannel, WrapValidator(one_of_kinds(
    CHANNEL_KINDS, "file", "channel", "a channel is a mapping such as {kind: file, path: ...}"))]


class Notifications(_Model):
    """Who is told, and through which channels: ``channel`` (one) or ``channels`` (a list), never both."""

    channel: Channel | None = Field(None, description="The one channel; or give channels.")
    channels: list[Channel] | None = Field(
        None, min_length=1, description="Every channel gets every message at or above its min_severity; a failed "
                                        "one does not stop the others.")
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
        seen: dict[tuple[str, str], int] = {}
        for index, channel in enumerate(self.channels or []):
            key = (channel.kind, channel.label)
            if key in seen:
                what = "path" if channel.kind == "file" else "webhook"
                raise ValueError(f"@channels: channels[{index}] repeats the {what} {channel.label!r} of "
                                 f"channels[{seen[key]}]; list each {'file' if channel.kind == 'file' else what} "
                                 "once")
            seen[key] = index
        if all(channel.min_severity != "info" for channel in self.all_channels):
            where = "channels" if self.channels is not None else "channel"
            raise ValueError(f"@{where}: no channel takes info messages (every min_severity is above info), so the "
                             "release-starting and monitoring test notifications would reach no one; set "
                             "min_severity: info on one channel")
        return self

    @property
    def all_channels(self) -> list[FileChannel | WebhookChannel]:
        """Every channel, in spec order (``[channel]`` when the spec gives one)."""
        return list(self.channels) if self.channels is not None else [self.channel] if self.channel else []

    def channel_places(self) -> list[tuple[str, FileChannel | WebhookChannel]]:
        """``(spec field of the channel, channel)``: ``notifications.channels[1]``, ``notifications.channel``."""
        if self.channels is not None:
            return [(f"notifications.channels[{i}]", c) for i, c in enumerate(self.channels)]
        return [("notifications.channel", self.channel)] if self.channel else []

    def channel_fields(self) -> list[tuple[str, FileChannel | WebhookChannel]]:
        """``(spec field naming the channel, channel)``: ``notifications.channels[1].path`` or ``...conn_id``."""
        return [(f"{place}.{'path' if c.kind == 'file' else 'conn_id'}", c) for place, c in self.channel_places()]


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class FreezePeriod(_Model):
    """A period when nothing may change (a holiday freeze, an audit): the change window stays closed."""

    start: FreezeInstant = Field(description="First frozen day (a date: from its 00:00 in the window's time zone) "
                                             "or instant (a date-time; one without an offset is local to the window).")
    end: FreezeInstant = Field(description="Last frozen day (a date: all of it is frozen) or the instant the freeze "
                                           "ends (a date-time, exclusive).")
    reason: str = Field(min_length=3, max_length=500, description="Why; recorded with the gate's decision.")


class ChangeWindow(_Model):
    """When a release may change the service. The change-window gate, the first task after start_release (before
    any backup or deployment), waits deferred (no worker slot) until the window is open and no freeze holds it."""

    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS), min_length=1,
                                description="The days a window starts on (local to timezone).")
    start: str = Field("00:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", description="Local opening time, HH:MM.")
    end: str = Field("23:59", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
                     description="Last local minute inside the window, HH:MM; at or before start, the window crosses "
                                 "midnight (22:00-02:00 ends the next day at 02:00:59).")
    timezone: str = "UTC"
    freeze: list[FreezePeriod] = Field(default_factory=list, max_length=200,
                                       description="Freeze periods: closed whatever the days say; none may overlap.")
    max_wait_hours: float = Field(168.0, ge=0, le=8784,
                                  description="Longest a run waits for the window to open; a window that opens later "
                                              "fails the run before anything changed (0: a closed window fails it "
                                              "at once).")
    emergency_override: bool = Field(
        False, description="Let a run triggered with emergency: true pass a closed window once one person of "
                           "approvals.approvers (not the one who triggered it) approves, in Airflow's Required "
                           "actions (task change_window_override); a reject or a timeout aborts before anything "
                           "changed, and the decision is recorded.")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        return check_timezone(value)

    @model_validator(mode="after")
    def _freezes_in_order(self) -> ChangeWindow:
        periods = [(f"freeze.{i}", f"{f.start.isoformat()} to {f.end.isoformat()}",
                    *freeze_bounds(f.start, f.end, self.timezone)) for i, f in enumerate(self.freeze)]
        for field, message in freeze_problems(periods):
            raise ValueError(f"@{field}: {message}")
        return self


#: An approver: an Airflow user id (with SimpleAuthManager, the user name), or ``role:<name>`` for every user
#: holding that role (resolved through SimpleAuthManager's user list when the gate opens).
APPROVER_PATTERN = r"^(role:)?[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$"


def _check_approver(value: str) -> str:
    if not re.fullmatch(APPROVER_PATTERN, value):
        raise ValueError(f"{clip(value)} is not an Airflow user id or role:<name>; use letters, digits and . _ @ + - "
                         "(at most 100, no spaces), e.g. alice or role:op")
    return value


Approver = Annotated[str, AfterValidator(_check_approver)]
ApprovalStop = Literal["development", "staging", "production", "high_risk"]


class Approvals(_Model):
    """People who approve a release in Airflow before traffic moves (Human-in-the-loop).

    The approval gate is part of the release DAG only when ``required_for`` names something: it
    follows phase 4 (the version is staged and hardened, no traffic moved) and precedes phase 5's
    traffic switch, and is listed under Required actions in the Airflow UI (or answered through the
    REST API, ``PATCH .../hitlDetails``). It stops the release when the run's environment is listed,
    or when ``high_risk`` is listed and risk_assessment rated the release high; otherwise the run
    passes it, recording why. ``required`` distinct approvers must approve, the user who triggered
    the run never counts, one Reject rejects; a Reject or a timeout aborts the release before
    traffic moves (a timeout never approves). Every answer is kept in the run's evidence.
    """

    approvers: list[Approver] = Field(min_length=1, description="Airflow user ids (SimpleAuthManager: user "
                                                                "names), or role:<name> for every user with "
                                                                "that role.")
    required: int = Field(1, ge=1, description="Distinct approvals needed (N of the approvers).")
    required_for: list[ApprovalStop] = Field(
        default_factory=list, description="When the gate stops the release: an environment (every release to "
                                          "it) and/or high_risk (risk_assessment's level is high). Empty: no "
                                          "gate; a high-risk release is then blocked at risk_assessment.")
    timeout_minutes: float = Field(240.0, gt=0, le=10080, description="How long the approvers have, from the "
                                                                      "gate's opening, for all approvals.")
    on_timeout: Literal["reject", "escalate"] = Field(
        "reject", description="reject: the release is aborted; escalate: one person of escalate_to decides "
                              "within escalation_timeout_minutes (silence then rejects). Never approve.")
    escalate_to: list[Approver] = Field(default_factory=list, description="Who decides after a timeout "
                                                                         "(on_timeout: escalate).")
    escalation_timeout_minutes: float = Field(60.0, gt=0, le=10080, description="How long escalate_to has "
                                                                               "after the escalation.")

    @model_validator(mode="after")
    def _enough_approvers(self) -> Approvals:
        if self.required > len(self.approvers) and not any(a.startswith("role:") for a in self.approvers):
            raise ValueError(f"required={self.required} approvals but only {len(self.approvers)} approvers listed")
        if self.on_timeout == "escalate" and not self.escalate_to:
            raise ValueError("@escalate_to: on_timeout: escalate needs escalate_to (who decides when the approvers "
                             "stay silent); or use on_timeout: reject")
        if self.escalate_to and self.on_timeout != "escalate":
            raise ValueError("@escalate_to: escalate_to is asked only with on_timeout: escalate; set it or remove "
                             "escalate_to")
        twice = sorted({s for s in self.required_for if self.required_for.count(s) > 1})
        if twice:
            raise ValueError(f"@required_for: {', '.join(twice)} listed more than once")
        return self


# ------------------------------------------------------------------------------- duty inputs
class ProvidedDocument(_Model):
    """A document a person provides (a readiness report, an infrastructure or security document), read for substance."""

    path: SpecDirPath = Field(description="The document, relative to the spec folder.")
    sections: list[str] = Field(default_factory=list, description="Headings it must have, each with text under it.")
    min_bytes: int = Field(200, ge=1, description="Smallest size (bytes of text without surrounding whitespace).")


class ReadinessInputs(_Model):
    """The runbook and rollback procedure (and further documents) are read for substance: each must have a
    heading with text for every required section, at least ``min_document_bytes`` and name the service."""

    runbook: SpecDirPath = Field(description="Runbook file, relative to the spec folder.")
    rollback_procedure: SpecDirPath = Field(description="Rollback procedure file, relative to the spec folder.")
    runbook_sections: list[str] = Field(default_factory=lambda: list(DEFAULT_RUNBOOK_SECTIONS),
                                        description="Headings the runbook must have (a heading containing the "
                                                    "words, or words starting alike: 'deploy' matches 'Deployment').")
    rollback_sections: list[str] = Field(default_factory=lambda: list(DEFAULT_ROLLBACK_SECTIONS),
                                         description="Headings the rollback procedure must have.")
    min_document_bytes: int = Field(DEFAULT_MIN_DOCUMENT_BYTES, ge=1,
                                    description="Smallest size of the runbook and the rollback procedure (bytes of "
                                                "text); below the default needs a document_standard waiver.")
    documents: list[ProvidedDocument] = Field(
        default_factory=list, description="Further documents read the same way: readiness reports, "
                                          "infrastructure assessments.")
    min_free_disk_mb: int = Field(100, ge=0)

    def relaxations(self) -> list[Relaxation]:
        """Default sections dropped or a smaller minimum size (each needs a ``document_standard`` waiver)."""
        return document_relaxations(self.runbook_sections, self.rollback_sections, self.min_document_bytes)


class BackupInputs(_Model):
    """The backup taken before deploying: ``command`` and ``output``, or a ``waiver`` with ``approved_by``."""

    command: Command | None = None
    output: str | None = Field(
        None, description="File the backup command writes, relative to the run's workdir (a leading {workdir}/ or "
                          "{artifacts_dir}/ is allowed, no other placeholder); its sha256 is recorded.")
    waiver: str | None = Field(None, min_length=10, description="Reason no backup is needed.")
    approved_by: str | None = Field(None, min_length=1, description="Who accepted releasing without a backup "
                                                                    "(required with waiver).")
    contents: list[SpecDirPath] = Field(
        default_factory=list, description="Files, relative to the spec folder, the backup must restore byte for "
                                          "byte: the archive is opened and each must be a member (by its path or "
                                          "name) with the file's current sha256.")

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
        if self.waiver is not None and self.contents:
            raise ValueError("@contents: a waived backup restores nothing; remove contents or give command and output")
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
    backup: BackupInputs

    _check_repo = field_validator("repo")(lambda cls, v: check_repo(v))

    @model_validator(mode="before")
    @classmethod
    def _no_typed_approval(cls, data: Any) -> Any:
        if isinstance(data, dict) and "high_risk_approval" in data:
            raise ValueError("@high_risk_approval: a typed-in approval no longer lets a high-risk release through; "
                             "people approve it in Airflow: remove risk.high_risk_approval and add high_risk to "
                             "approvals.required_for (approvals: {approvers: [<airflow user>], required_for: "
                             "[high_risk]}); the release then stops at the approval gate before traffic moves")
        return data


class PlanningInputs(_Model):
    default_phase_minutes: float = Field(5.0, gt=0, description="Estimate per phase when no history exists.")


class BuildInputs(_Model):
    config: SpecDirPath = Field(description="Build configuration file, relative to the spec folder (read and "
                                            "digested).")
    command: Command
    artifacts: list[ArtifactGlob] = Field(min_length=1, description="Globs, relative to {artifacts_dir}.")

    _check_command = field_validator("command")(lambda cls, v: check_command(v))


ScanFormat = Literal["pip-audit", "sarif", "osv"]


class ScanCommand(_Model):
    """The vulnerability scanner the dependencies step runs in the release."""

    command: Command = Field(description="argv of the scanner (placeholders as in every command: {python}, "
                                         "{spec_dir}, {workdir}, ...); it scans the lock file and writes output. Exit "
                                         "0 (nothing found) or 1 (findings, as pip-audit and osv-scanner signal them) "
                                         "with output written counts as a completed scan.")
    output: str = Field(description="File the scanner writes, relative to the run's workdir (a leading {workdir}/ or "
                                    "{artifacts_dir}/ is allowed, no other placeholder); removed before the scanner "
                                    "starts, so only this run's scan is read.")
    format: ScanFormat = Field("pip-audit", description="pip-audit JSON, SARIF 2.1.0, or osv (OSV-Scanner JSON).")

    _check_command = field_validator("command")(lambda cls, v: check_command(v))
    _check_output = field_validator("output")(lambda cls, v: check_output_path(v))


class DependencyInputs(_Model):
    """The lock file and the vulnerability scan: ``scan`` (run in the release) or ``scan_report`` (provided)."""

    lock_file: SpecDirPath = Field(description="Lock file, relative to the spec folder.")
    scan: ScanCommand | None = Field(None, description="The scanner, run in this release; give this or "
                                                       "scan_report.")
    scan_report: SpecDirPath | None = Field(
        None, description="A vulnerability scan report provided instead of scan, relative to the spec folder. "
                          "Refused when it is older than the lock file (by the last commit time of both when both "
                          "are committed unmodified in the same git repository, else by their file modification "
                          "times) or does not cover every locked package at its locked version.")
    scan_format: ScanFormat = Field("pip-audit", description="Format of scan_report (ignored with scan, which names "
                                                             "its own in scan.format).")
    severity_gate: Literal["critical", "high", "medium", "low"] = Field(
        "critical", description="Findings at or above this severity count against quality_gates.max_critical_vulns "
                                "(CVSS >= 9.0 critical, >= 7.0 high, >= 4.0 medium; a finding without a severity "
                                "counts as critical).")

    @model_validator(mode="after")
    def _one_scan(self) -> DependencyInputs:
        if self.scan is None and self.scan_report is None:
            raise ValueError("@scan: no vulnerability scan; give scan: {command: [...], output: ..., format: ...} to "
                             "run the scanner in the release, or scan_report: a report it wrote")
        if self.scan is not None and self.scan_report is not None:
            raise ValueError("@scan_report: give scan (run in the release) or scan_report (provided), not both; "
                             "remove one")
        return self


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
    docs: list[ProvidedDocument] = Field(
        default_factory=list, description="Infrastructure documents (a provisioning guide, the environment's "
                                          "description) read for substance: size, required sections, the service's "
                                          "name.")
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
    docs: list[ProvidedDocument] = Field(
        default_factory=list, description="Security hardening and compliance documents (the security policy, its "
                                          "exceptions) read for substance: size, required sections, the service's "
                                          "name.")

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


class PrometheusInputs(_Model):
    """The Prometheus server monitoring reads through its HTTP API (``/api/v1``): an existing one
    (``url``) or one started on 127.0.0.1 for the service (``launch: local``, the Debian package
    ``prometheus``) that scrapes the target's router at ``monitoring.metrics_path`` with the spec's
    alert rules loaded. Give exactly one of the two."""

    url: str | None = Field(None, description="Base URL of an existing Prometheus, e.g. http://prometheus:9090 "
                                              "(http or https, no credentials); its rule files must hold every "
                                              "spec alert rule.")
    launch: Literal["local"] | None = Field(None, description="local: start Prometheus on 127.0.0.1 for this "
                                                              "service (apt-get install prometheus).")
    job: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:-]+$",
                            description="The job label of this service's series (default: the service name).")
    scrape_interval_seconds: float = Field(1.0, ge=0.1, le=300,
                                           description="Scrape and rule evaluation interval of the launched "
                                                       "Prometheus (launch: local only).")
    timeout_seconds: float = Field(5.0, gt=0, le=120, description="Timeout of each HTTP API request.")

    @field_validator("url")
    @classmethod
    def _plain_http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL with a host; e.g. http://127.0.0.1:9090")
        if parts.username or parts.password:
            raise ValueError("credentials in the URL are not supported; use a Prometheus reachable without them")
        if parts.query or parts.fragment:
            raise ValueError(f"{value!r} has a query or fragment; give the server's base URL only")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_server(self) -> PrometheusInputs:
        if (self.url is None) == (self.launch is None):
            raise ValueError("@url: give either url (an existing Prometheus) or launch: local (one started on "
                             "127.0.0.1), not both and not neither")
        if self.url is not None and "scrape_interval_seconds" in self.model_fields_set:
            raise ValueError("@scrape_interval_seconds: applies to launch: local only; an existing Prometheus "
                             "keeps its own scrape interval")
        return self


class MonitoringInputs(_Model):
    metrics_path: str = Field("/metrics", pattern=r"^/[^\s]*$")
    alert_rules: list[AlertRule] = Field(min_length=1)
    prometheus: PrometheusInputs | None = Field(
        None, description="The Prometheus monitoring reads (url or launch: local); without it the metrics path is "
                          "scraped directly.")
    observation_seconds: float = Field(5.0, gt=0, le=3600)
    sample_interval_seconds: float = Field(1.0, gt=0, le=600)
    dashboard: SpecDirPath | None = Field(None, description="Dashboard definition file, relative to the spec "
                                                            "folder; generated when absent.")


class TestSuite(_Model):
    name: str = Field(pattern=r"^[a-z0-9_-]+$")
    command: Command
    junit: WorkdirPath = Field(description="JUnit XML the command writes, relative to {workdir}.")
    kind: Literal["integration", "acceptance"] = Field(
        "integration", description="What the suite validates: integration (the service's contracts) or acceptance "
                                   "(user acceptance tests); QA needs the results of at least one acceptance suite.")

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


class SmokeInputs(_Model):
    openapi_path: str | None = Field(
        None, pattern=r"^/[^\s]*$",
        description="Where the new version lists its routes (OpenAPI JSON, e.g. /openapi.json); when set, every GET "
                    "route it lists must be exercised by the smoke suite (a route with {parameters} through a "
                    "critical endpoint that matches it).")


class TrainingInputs(_Model):
    audiences: list[str] = Field(
        default_factory=lambda: ["end-users", "support", "engineering"], min_length=1,
        description="Who is trained; each one (and each notifications.stakeholders audience) needs a 'For <audience>' "
                    "section in the training materials that covers every user-facing change.")
    materials: SpecDirPath | None = Field(
        None, description="Training materials written by a person (Markdown), relative to the spec folder: a '## "
                          "Changes' section with one entry per user-facing change (its short hash) and a 'For "
                          "<audience>' section per audience. Generated from the git range when absent.")
    user_facing_paths: list[RepoPathspec] = Field(
        default_factory=list,
        description="Paths (git pathspecs, relative to the repo root) whose change is user-facing: a commit touching "
                    "one needs training even when it is not a feat, fix or breaking commit.")


class ReleaseNotesInputs(_Model):
    path: SpecDirPath | None = Field(
        None, description="Release notes written by a person (Markdown), relative to the spec folder: every commit of "
                          "the range by short hash and subject under its section (Features, Bug fixes, ... or Other "
                          "changes), breaking ones under 'Breaking changes', a plain-language Summary naming the "
                          "version, every new feature and every breaking change (no hashes), and a 'Technical "
                          "details' or 'Changelog' section. Generated from the git range when absent.")


# ------------------------------------------------------------------------------- strategies
#: What ``strategy`` was before it became a mapping; :func:`_old_strategy_form` says how to rewrite it.
STRATEGY_KINDS = ("blue_green", "canary", "rolling", "feature_flags")


class _StrategyBase(_Model):
    pre_switch_checks: list[str] | None = Field(
        None, description="Health checks the new revision must pass on its own URL before traffic moves to it "
                          "(default: all).")
    observe_switch_requests: int = Field(20, ge=0, le=10000,
                                         description="Requests sent through the router while the last step moves "
                                                     "all traffic (zero-downtime evidence).")
    post_promotion_seconds: float = Field(
        5.0, ge=0, le=86400,
        description="After promotion: watch every health check through the router for this long (deferred); a "
                    "failure rolls back at once, without re-running any analysis. 0 skips the watch.")


class BlueGreenStrategy(_StrategyBase):
    """Deploy the idle slot, check it, move all traffic at once; the old slot stays for a switch back."""

    kind: Literal["blue_green"]
    scale_down_delay_seconds: float = Field(
        30.0, ge=0, le=86400,
        description="The old slot keeps running at least this long after promotion (Argo's scaleDownDelay); this "
                    "engine keeps it until the next release replaces it, so a rollback is always a switch back.")


class CanaryAnalysis(_Model):
    """How each canary step is judged: canary against baseline, sampled directly on both revisions."""

    interval_seconds: float = Field(0.2, gt=0, le=60,
                                    description="Time between sampling rounds (each round asks every critical "
                                                "endpoint on the canary and on the baseline).")
    min_samples: int = Field(20, ge=5, le=100000, description="Samples each side needs, else the analysis fails.")
    max_error_rate_pct: float | None = Field(
        None, ge=0, le=100,
        description="Canary 5xx/no-answer share allowed (default: quality_gates.max_error_rate_pct).")
    p95_latency_ms: float | None = Field(
        None, gt=0, description="Canary p95 latency allowed (default: quality_gates.p95_latency_ms).")
    alpha: float = Field(0.01, gt=0, lt=0.5,
                         description="Mann-Whitney U (one-sided: canary slower than baseline) fails the step when "
                                     "its p-value is below alpha and the canary's median is slower by more than "
                                     "min_latency_shift_ms.")
    min_latency_shift_ms: float = Field(
        5.0, ge=0, description="A slower canary median that matters; smaller shifts never fail (loopback jitter).")


class CanaryStrategy(_StrategyBase):
    """Weighted steps; after each one a bake and an analysis; a failed analysis takes the canary back to 0 %."""

    kind: Literal["canary"]
    steps: list[int] = Field(default_factory=lambda: [10, 25, 50, 100], min_length=1, max_length=20,
                             description="Canary weights in percent, rising, ending at 100 (the promotion).")
    bake_seconds: float = Field(10.0, gt=0, le=86400,
                                description="How long each step bakes (deferred) while samples are taken.")
    analysis: CanaryAnalysis = Field(default_factory=CanaryAnalysis)
    on_failed_analysis: Literal["rollback", "pause"] = Field(
        "rollback", description="rollback: the canary goes back to 0 % and the release rolls back. pause: the canary "
                                "stays at its weight and one person of approvals.approvers decides in Airflow's "
                                "Required actions (task canary_<pct>_decision): Approve continues, Reject or a "
                                "timeout takes the canary back to 0 % and rolls back.")

    @field_validator("steps")
    @classmethod
    def _rising_to_100(cls, value: list[int]) -> list[int]:
        return check_steps(value, "steps")


class RollingStrategy(_StrategyBase):
    """Replace the instances a batch at a time, each batch health-gated (deferred)."""

    kind: Literal["rolling"]
    instances: int = Field(4, ge=1, le=1000, description="Instances serving the service.")
    batch_size: int = Field(1, ge=1, le=1000, description="Instances replaced per batch.")

    @model_validator(mode="after")
    def _batch_fits(self) -> RollingStrategy:
        if self.batch_size > self.instances:
            raise ValueError(f"@batch_size: {self.batch_size} is more than instances ({self.instances})")
        return self

    def batch_weights(self) -> list[int]:
        """The new version's share of traffic after each batch (the last is 100)."""
        counts = list(range(self.batch_size, self.instances, self.batch_size)) + [self.instances]
        return [count * 100 // self.instances for count in counts]


class FileFlagProvider(_Model):
    kind: Literal["file"]
    path: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*\.json$",
        description="A JSON file {flag: percent} under $GENDEV_HOME/flags/ (default: <service>.json); the service "
                    "reads it (the local target's command can name it as {flags_file}).")


class HttpFlagProvider(_Model):
    """A flag service: ``PUT <endpoint>/<flag>`` with ``{"percent": n}``; ``GET`` answers ``{"percent": n}``."""

    kind: Literal["http"]
    conn_id: str = Field(description="Airflow HTTP connection of the flag service (host, credentials).")
    endpoint: str = Field("/flags", description="Path of the flags collection on the connection's host.")

    _check_conn_id = field_validator("conn_id")(lambda cls, v: check_conn_id(v))
    _check_endpoint = field_validator("endpoint")(lambda cls, v: check_endpoint(v))


FlagProvider = Annotated[FileFlagProvider | HttpFlagProvider, WrapValidator(one_of_kinds(
    {"file": FileFlagProvider, "http": HttpFlagProvider}, None, "flag provider",
    "a flag provider is a mapping such as {kind: file}"))]


class FeatureFlagStrategy(_StrategyBase):
    """Deploy dark (all traffic, flag off), then raise the flag's percentage in steps; rollback turns it off."""

    kind: Literal["feature_flags"]
    flag: str = Field(pattern=r"^[a-z][a-z0-9_.-]{0,62}$", description="The flag that guards the new behaviour.")
    provider: FlagProvider = Field(description="Where the flag lives: file or http.")
    steps: list[int] = Field(default_factory=lambda: [10, 50, 100], min_length=1, max_length=20,
                             description="Flag percentages, rising, ending at 100.")
    bake_seconds: float = Field(10.0, gt=0, le=86400, description="How long each step bakes (deferred).")
    analysis: CanaryAnalysis = Field(default_factory=CanaryAnalysis)

    @field_validator("steps")
    @classmethod
    def _rising_to_100(cls, value: list[int]) -> list[int]:
        return check_steps(value, "steps")


def check_steps(value: list[int], field: str) -> list[int]:
    """Percentages 1..100, strictly rising, the last one 100."""
    for index, percent in enumerate(value):
        if not 0 < percent <= 100:
            raise ValueError(f"{field}[{index}] = {percent}: a step is a percent from 1 to 100")
        if index and percent <= value[index - 1]:
            raise ValueError(f"{field} must rise: {value[index - 1]} then {percent}")
    if value[-1] != 100:
        raise ValueError(f"{field} must end at 100 (the promotion), got {value}")
    return value


STRATEGY_MODELS = {"blue_green": BlueGreenStrategy, "canary": CanaryStrategy, "rolling": RollingStrategy,
                   "feature_flags": FeatureFlagStrategy}
StrategySettings = Annotated[BlueGreenStrategy | CanaryStrategy | RollingStrategy | FeatureFlagStrategy,
                             WrapValidator(one_of_kinds(STRATEGY_MODELS, "blue_green", "strategy",
                                                        "strategy is a mapping such as {kind: canary, steps: [10, "
                                                        "50, 100]}"))]


def _old_strategy_form(data: Any) -> Any:
    """Refuse the pre-registry form (``strategy: blue_green`` plus a ``blue_green:`` block) with the rewrite."""
    if not isinstance(data, dict):
        return data
    value = data.get("strategy")
    if isinstance(value, str) or "blue_green" in data:
        kind = value if isinstance(value, str) else "blue_green"
        block = data.get("blue_green")
        settings: dict[str, Any] = block if isinstance(block, dict) else {}
        inner = ", ".join([f"kind: {kind}", *(f"{k}: {json.dumps(v)}" for k, v in settings.items())])
        where = "@strategy" if isinstance(value, str) else "@blue_green"
        raise ValueError(f"{where}: the strategy is now one mapping with its settings (and no longer a trigger "
                         f"parameter); rewrite it as  strategy: {{{inner}}}  and drop the blue_green block "
                         f"(kinds: {', '.join(STRATEGY_KINDS)})")
    return data


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
    strategy: StrategySettings = Field(
        default_factory=lambda: BlueGreenStrategy(kind="blue_green"),
        description="How traffic moves: a mapping with kind blue_green (default), canary, rolling or feature_flags "
                    "and that kind's settings.")
    description: str = ""
    target: TargetSpec = Field(default_factory=LocalTargetSpec)
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
    smoke: SmokeInputs = Field(default_factory=SmokeInputs)
    release_notes: ReleaseNotesInputs = Field(default_factory=ReleaseNotesInputs)
    training: TrainingInputs = Field(default_factory=TrainingInputs)

    _source: Path | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _strategy_mapping(cls, data: Any) -> Any:
        return _old_strategy_form(data)

    @model_validator(mode="after")
    def _production_needs_gates(self) -> ReleaseSpec:
        if self.environment == "production" and (self.approvals is None or self.change_window is None):
            missing = [name for name in ("approvals", "change_window") if getattr(self, name) is None]
            raise ValueError(f"@{missing[0]}: production releases need {' and '.join(missing)}")
        return self

    @model_validator(mode="after")
    def _pause_needs_approvers(self) -> ReleaseSpec:
        if getattr(self.strategy, "on_failed_analysis", "rollback") == "pause" and self.approvals is None:
            raise ValueError("@strategy.on_failed_analysis: pause asks people to decide; give approvals (its "
                             "approvers decide a failed analysis)")
        return self

    @model_validator(mode="after")
    def _override_needs_approvers(self) -> ReleaseSpec:
        if self.change_window is not None and self.change_window.emergency_override and self.approvals is None:
            raise ValueError("@change_window.emergency_override: people approve an emergency override; give "
                             "approvals (its approvers decide it)")
        return self

    @model_validator(mode="after")
    def _flags_file_needs_a_file_provider(self) -> ReleaseSpec:
        command = getattr(self.target, "command", None) or []
        if any("{flags_file}" in element for element in command) and not (
                self.strategy.kind == "feature_flags" and self.strategy.provider.kind == "file"):
            raise ValueError("@target.command: uses {flags_file}, which only a feature_flags strategy with a file "
                             "provider fills")
        return self

    @model_validator(mode="after")
    def _pre_switch_checks_exist(self) -> ReleaseSpec:
        names = {check.name for check in self.health.checks}
        for name in self.strategy.pre_switch_checks or []:
            if name not in names:
                raise ValueError(f"@strategy.pre_switch_checks: names {name!r}, which is not in health.checks "
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
        return [*gates.relaxations(), *self.security.relaxations(), *self.readiness.relaxations(), *alerts]

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
RUN_PARAMETERS = ("version", "dry_run", "emergency")
STRATEGY_NOT_A_PARAMETER = ("strategy is no longer a run parameter: a canary or a rolling release needs its own "
                            "DAG shape, so it is set in the spec (strategy: {{kind: ...}}; this spec: {kind})")
VERSION_REQUIRED = ('version is required: every run names the version it releases (trigger conf '
                    '{"version": "1.4.2"} or `--set version=1.4.2`); ' + VERSION_FORMAT)


class RunParams(_Model):
    """One run's parameters (the trigger form's Params), built by :func:`run_params`."""

    version: str
    dry_run: bool = False
    emergency: bool = False

    @field_validator("version", mode="before")
    @classmethod
    def _version_format(cls, value: Any) -> str:
        return check_version(value)

    @field_validator("dry_run", "emergency", mode="before")
    @classmethod
    def _dry_run_is_boolean(cls, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"{clip(value)} is not a boolean; give true or false (a JSON boolean, not text)")
        return value


def run_params(spec: ReleaseSpec, overrides: dict[str, Any] | None, source: str = "params") -> RunParams:
    """A run's parameters, validated; raise :class:`SpecError` naming every bad one.

    :param spec: the release spec; it never gives the version.
    :param overrides: the run's values (Airflow's params and trigger conf, or ``--set``). Unknown
        keys are refused (``strategy`` with the advice to set it in the spec); ``version`` is
        required (:func:`check_version`); ``dry_run`` may be absent or None (no dry run).
    :param source: where the values came from, for the messages (``params``, ``--set``).
    """
    given = dict(overrides or {})
    problems = [SpecProblem(field_name((key,)), STRATEGY_NOT_A_PARAMETER.format(kind=spec.strategy.kind)
                            if key == "strategy" else
                            f"unknown run parameter; allowed: {', '.join(RUN_PARAMETERS)}")
                for key in given if key not in RUN_PARAMETERS]
    values: dict[str, Any] = {"dry_run": False, "emergency": False}
    values.update({key: value for key, value in given.items() if key in RUN_PARAMETERS and value is not None})
    if "version" not in values:
        problems.append(SpecProblem("version", VERSION_REQUIRED))
    window = spec.change_window
    if values.get("emergency") is True and not (window is not None and window.emergency_override):
        problems.append(SpecProblem("emergency", "this release does not allow an emergency override "
                                                 "(change_window.emergency_override is not set in its spec)"))
    params = None
    try:
        params = RunParams.model_validate(values)
    except ValidationError as exc:
        problems += [p for p in validation_problems(exc) if p.field != "version" or "version" in values]
    if problems or params is None:
        raise SpecError(source, problems)
    return params
