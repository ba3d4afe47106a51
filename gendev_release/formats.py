"""Standard formats other tools write, read strictly: XML through defusedxml, Cobertura /
coverage.py XML, and Terraform plan JSON (``terraform show -json``).

Each parser returns a typed record or raises :class:`FormatError` (a ``ValueError``) whose message
names the file, says what is wrong and how to fix it. The rules that judge a parsed record against
the run (a coverage report older than the run) are separate pure functions, so each rule can be
shown failing on a realistic file. JUnit XML is read by :mod:`gendev_release.junit` through
:func:`parse_xml` too.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import defusedxml
import defusedxml.ElementTree as SafeET

from gendev_release.targets.base import ResourceChange


class FormatError(ValueError):
    """A file is not the format it should be; the message names the file and the fix."""


# ========================================================================================= XML
def parse_xml(data: str | bytes, source: str, what: str) -> ET.Element:
    """Parse XML text through defusedxml: entity declarations and external references are refused, never expanded.

    :param data: the document.
    :param source: where it came from (a path), named in every message.
    :param what: what the document should be (``JUnit XML``), named in every message.
    :raises FormatError: malformed XML, or a document that declares entities (a "billion laughs"
        expansion bomb, an external entity that reads a local file) or references external resources.
    """
    try:
        root: ET.Element = SafeET.fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except defusedxml.EntitiesForbidden as exc:
        raise FormatError(f"{source}: {what} declares the XML entity {exc.name!r}"
                          + (f" (SYSTEM {exc.sysid!r})" if exc.sysid else "")
                          + ": refused without expanding it (entity expansion such as 'billion laughs', or an "
                            "external entity reading local files); report tools never need entities: write the "
                            "file without an inline DTD") from exc
    except defusedxml.ExternalReferenceForbidden as exc:
        raise FormatError(f"{source}: {what} references the external resource {exc.sysid!r}: refused unread") from exc
    except defusedxml.DefusedXmlException as exc:
        raise FormatError(f"{source}: {what} uses a forbidden XML construct: {exc}") from exc
    except ET.ParseError as exc:
        raise FormatError(f"{source}: malformed {what}: {exc}") from exc
    return root


# ============================================================================= coverage XML
#: How far a coverage timestamp may lie ahead of this machine's clock (another machine's clock skew).
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class CoverageReport:
    """A Cobertura / coverage.py ``coverage xml`` report, as its root and class list say."""

    source: str
    line_pct: float
    branch_pct: float | None
    packages: int
    classes: int
    timestamp: datetime
    generator_version: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["timestamp"] = self.timestamp.isoformat()
        data["line_pct"] = round(self.line_pct, 3)
        data["branch_pct"] = None if self.branch_pct is None else round(self.branch_pct, 3)
        return data

    def line(self) -> str:
        """``line coverage 93.1 %, branch 80.0 %, 12 classes in 3 packages``."""
        branch = "" if self.branch_pct is None else f", branch {self.branch_pct:.1f} %"
        return (f"line coverage {self.line_pct:.1f} %{branch}, {self.classes} class(es) in "
                f"{self.packages} package(s)")


def _rate(root: ET.Element, name: str, source: str) -> float:
    raw = root.get(name)
    if raw is None:
        raise FormatError(f"{source}: <coverage> has no {name} attribute: not Cobertura/coverage.py XML")
    try:
        rate = float(raw)
    except ValueError:
        raise FormatError(f"{source}: {name} {raw!r} is not a number") from None
    if not (math.isfinite(rate) and 0.0 <= rate <= 1.0):
        raise FormatError(f"{source}: {name} {raw} is outside 0..1 (a rate, not a percentage)")
    return rate


def coverage_timestamp(raw: str | None, source: str) -> datetime:
    """The report's ``timestamp``: milliseconds since the epoch (coverage.py, Cobertura) or seconds (gcovr)."""
    if raw is None or not raw.strip():
        raise FormatError(f"{source}: <coverage> has no timestamp: nothing shows the report comes from this run; "
                          "let the coverage tool write it (coverage.py and Cobertura always do)")
    try:
        value = float(raw)
    except ValueError:
        raise FormatError(f"{source}: timestamp {raw!r} is not a number of (milli)seconds since the epoch") from None
    if not math.isfinite(value) or value <= 0:
        raise FormatError(f"{source}: timestamp {raw!r} is not a time")
    seconds = value / 1000.0 if value >= 1e11 else value  # 1e11 s is the year 5138; 1e11 ms is 1973
    try:
        return datetime.fromtimestamp(seconds, timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise FormatError(f"{source}: timestamp {raw!r} is out of range") from None


def parse_coverage_text(text: str | bytes, source: str = "<coverage>") -> CoverageReport:
    """Parse Cobertura or coverage.py XML (``<coverage line-rate=".." timestamp=".."><packages>...``).

    :raises FormatError: not coverage XML, a rate outside 0..1, no timestamp, or no class measured.
    """
    root = parse_xml(text, source, "coverage XML")
    if root.tag != "coverage":
        raise FormatError(f"{source}: not Cobertura/coverage.py XML: root element is <{root.tag}>, expected "
                          "<coverage> (write it with `coverage xml` or a Cobertura reporter)")
    line_rate = _rate(root, "line-rate", source)
    branch_pct: float | None = None
    if root.get("branch-rate") is not None and root.get("branches-valid", "").strip() not in ("0", "0.0"):
        branch_pct = 100.0 * _rate(root, "branch-rate", source)  # coverage.py without --branch writes 0 of 0
    packages = root.findall("./packages/package")
    classes = root.findall("./packages/package/classes/class")
    if not classes:
        raise FormatError(f"{source}: the report names {len(packages)} package(s) and no class: it measured "
                          "nothing, so its rate proves nothing; check the coverage run's source/include settings")
    return CoverageReport(source=source, line_pct=100.0 * line_rate, branch_pct=branch_pct, packages=len(packages),
                          classes=len(classes), timestamp=coverage_timestamp(root.get("timestamp"), source),
                          generator_version=root.get("version"))


def parse_coverage_xml(path: str | Path) -> CoverageReport:
    """Parse a Cobertura / coverage.py XML file (``FileNotFoundError`` when absent)."""
    path = Path(path)
    return parse_coverage_text(path.read_bytes(), str(path))


def stale_coverage_problem(report: CoverageReport, not_before: datetime, now: datetime) -> str | None:
    """None when the report was written between ``not_before`` (this run's start) and ``now`` (+ clock skew).

    ``not_before`` is taken to the whole second: a timestamp may be written in seconds (gcovr).
    """
    if report.timestamp < not_before.replace(microsecond=0):
        return (f"coverage report {report.source} was written at {report.timestamp.isoformat()}, before this run "
                f"started ({not_before.isoformat()}): it measures an earlier build; let a QA suite write it")
    if report.timestamp > now + CLOCK_SKEW:
        return (f"coverage report {report.source} claims to be written at {report.timestamp.isoformat()}, later "
                f"than now ({now.isoformat()}): its timestamp cannot be trusted")
    return None


# ======================================================================= Terraform plan JSON
class PlanFormatError(FormatError):
    """A plan is not Terraform plan JSON (``terraform show -json <planfile>``)."""


#: Terraform's action lists (``resource_changes[].change.actions``) and what each means.
TERRAFORM_ACTIONS: dict[tuple[str, ...], str] = {
    ("no-op",): "no-op",
    ("create",): "create",
    ("read",): "read",
    ("update",): "update",
    ("delete",): "delete",
    ("delete", "create"): "replace (delete, then create)",
    ("create", "delete"): "replace (create, then delete)",
    ("forget",): "forget (removed from the state, the object is kept)",
}
#: Plan format majors read here: Terraform promises a new major for any incompatible change
#: (0.x up to Terraform 1.0, 1.x since), and asks readers to refuse a major they do not know.
SUPPORTED_PLAN_MAJORS = (0, 1)
_FORMAT_VERSION = re.compile(r"^(\d+)\.(\d+)$")
_VOCABULARY = ", ".join(str(list(actions)) for actions in TERRAFORM_ACTIONS)


@dataclass(frozen=True)
class TerraformPlan:
    format_version: str
    terraform_version: str | None
    changes: tuple[ResourceChange, ...]


def _plan_format_version(data: dict[str, Any], source: str) -> str:
    version = data.get("format_version")
    if not isinstance(version, str):
        raise PlanFormatError(f"{source}: no format_version: not `terraform show -json` output")
    match = _FORMAT_VERSION.match(version)
    if match is None:
        raise PlanFormatError(f"{source}: format_version {version!r} is not MAJOR.MINOR")
    if int(match.group(1)) not in SUPPORTED_PLAN_MAJORS:
        raise PlanFormatError(f"{source}: format_version {version} is not supported (majors "
                              f"{', '.join(map(str, SUPPORTED_PLAN_MAJORS))}): a new major changes the format "
                              "incompatibly; use a Terraform whose `show -json` writes 1.x")
    return version


def _resource_change(index: int, entry: Any, source: str) -> ResourceChange:
    where = f"{source}: resource_changes[{index}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("address"), str) or not entry["address"]:
        raise PlanFormatError(f"{where} has no 'address'")
    address = entry["address"]
    change = entry.get("change")
    actions = change.get("actions") if isinstance(change, dict) else None
    if not isinstance(change, dict) or not isinstance(actions, list) or not actions \
            or not all(isinstance(a, str) for a in actions):
        raise PlanFormatError(f"{where} ({address}) has no change.actions list")
    if tuple(actions) not in TERRAFORM_ACTIONS:
        raise PlanFormatError(f"{where} ({address}) has actions {actions}, which is not Terraform's vocabulary "
                              f"({_VOCABULARY})")
    before, after = change.get("before"), change.get("after")
    return ResourceChange(address, tuple(actions), before if isinstance(before, dict) else None,
                          after if isinstance(after, dict) else None)


def parse_terraform_plan(data: Any, source: str = "plan") -> TerraformPlan:
    """Read Terraform plan JSON (``terraform show -json <planfile>``), or a manifest in its shape.

    A plan without changes may leave ``resource_changes`` out (Terraform omits an empty list); it
    still has ``planned_values``. A state file (``terraform show -json`` without a plan) is refused.

    :raises PlanFormatError: naming ``source``, the entry and what to fix.
    """
    if not isinstance(data, dict):
        raise PlanFormatError(f"{source}: a Terraform plan is a JSON object, got {type(data).__name__}")
    version = _plan_format_version(data, source)
    if "resource_changes" not in data:
        if "planned_values" in data:
            entries: list[Any] = []
        elif "values" in data:
            raise PlanFormatError(f"{source}: this is Terraform state, not a plan: run `terraform plan -out=tfplan` "
                                  "then `terraform show -json tfplan`")
        else:
            raise PlanFormatError(f"{source}: no 'resource_changes' list and no planned_values: not a Terraform plan")
    elif not isinstance(data["resource_changes"], list):
        raise PlanFormatError(f"{source}: no 'resource_changes' list")
    else:
        entries = data["resource_changes"]
    terraform_version = data.get("terraform_version")
    return TerraformPlan(format_version=version,
                         terraform_version=terraform_version if isinstance(terraform_version, str) else None,
                         changes=tuple(_resource_change(i, entry, source) for i, entry in enumerate(entries)))
