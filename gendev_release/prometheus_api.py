"""A small client for the Prometheus HTTP API (``/api/v1``) and the judgements made on its answers.

The monitoring duties read a real Prometheus when the spec names one (``monitoring.prometheus``):
instant queries (``/api/v1/query``), range queries (``/api/v1/query_range``), the rules it loaded
(``/api/v1/rules``), its scrape targets (``/api/v1/targets``) and metric names and types. Every
answer is checked for shape; anything that is not the API's ``{"status": "success", "data": ...}``
becomes a :class:`PrometheusError` naming the URL and what was wrong, never a traceback.

The pure part, :func:`parse_rule_query` and :func:`rule_problems`, compares the rules Prometheus
loaded with the spec's: same alert name, metric, operator and threshold, evaluated without error,
and no looser than the SLA the rule protects (:func:`gendev_release.spec_relaxations.alert_problems`,
the same judgement ``validate`` makes on the spec).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import httpx

from gendev_release.errors import GendevError
from gendev_release.spec_relaxations import alert_problems

#: Body text kept from an answer that is not the API's JSON (enough to show what answered instead).
_BODY_SNIPPET = 200


class PrometheusError(GendevError):
    """Prometheus did not answer, or answered something that is not its HTTP API."""

    retryable = False


# ====================================================================================== answers
@dataclass(frozen=True)
class Series:
    """One time series of a query result: its labels and its ``(unix time, value)`` points."""

    labels: dict[str, str]
    points: tuple[tuple[float, float], ...]

    @property
    def name(self) -> str:
        return self.labels.get("__name__", "")

    @property
    def latest(self) -> float:
        return self.points[-1][1]

    def key(self, metric: str | None = None) -> str:
        """``name{label="value",...}`` (``job`` and ``instance`` included), like an exposition line."""
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(self.labels.items()) if k != "__name__")
        return f"{metric or self.name}{{{labels}}}" if labels else (metric or self.name)


@dataclass(frozen=True)
class LoadedRule:
    """One alerting rule as Prometheus loaded it (``/api/v1/rules``)."""

    group: str
    file: str
    name: str
    query: str
    health: str
    last_error: str
    state: str
    last_evaluation: float | None
    interval: float
    active_alerts: int = 0
    labels: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ScrapeTarget:
    """One active scrape target (``/api/v1/targets``)."""

    job: str
    instance: str
    scrape_url: str
    health: str
    last_error: str
    last_scrape: float | None
    scrape_interval: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_time(value: Any) -> float | None:
    """An RFC 3339 time from the API as unix seconds; None for Prometheus' zero time or anything unreadable."""
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    text = value.replace("Z", "+00:00")
    # Python before 3.11 reads at most 6 fractional digits; Prometheus sends 9.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}


def parse_duration(value: Any) -> float | None:
    """A Prometheus duration (``1s``, ``500ms``, ``1m30s``) in seconds, or None."""
    if not isinstance(value, str) or not value:
        return None
    parts = _DURATION_RE.findall(value)
    if not parts or "".join(number + unit for number, unit in parts) != value:
        return None
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def format_duration(seconds: float) -> str:
    """Seconds as a Prometheus duration in whole milliseconds (``1000ms``)."""
    return f"{max(1, round(seconds * 1000))}ms"


# ======================================================================================= client
class PrometheusClient:
    """Synchronous client for one Prometheus server.

    :param url: the server's base URL (``http://127.0.0.1:9090``).
    :param timeout: seconds per request.
    """

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    # -------------------------------------------------------------------------- plumbing
    def _request(self, method: str, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
        try:
            return httpx.request(method, self.url + path, params=params, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise PrometheusError(f"Prometheus at {self.url} did not answer {path}: "
                                  f"{type(exc).__name__}: {exc}") from exc

    def api(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET ``/api/v1/<path>`` and return its ``data``; :class:`PrometheusError` for anything else."""
        where = f"{self.url}/api/v1/{path}"
        response = self._request("GET", f"/api/v1/{path}", params)
        try:
            body = response.json()
        except ValueError:
            raise PrometheusError(f"{where} answered HTTP {response.status_code} with something that is not JSON "
                                  f"(is this a Prometheus server?): {response.text[:_BODY_SNIPPET]!r}") from None
        if not isinstance(body, dict) or "status" not in body:
            raise PrometheusError(f"{where} answered JSON without a status field (is this a Prometheus server?): "
                                  f"{str(body)[:_BODY_SNIPPET]}")
        if body["status"] != "success":
            raise PrometheusError(f"{where} answered {body.get('errorType') or body['status']}: "
                                  f"{body.get('error') or 'no error message'} (HTTP {response.status_code})")
        if response.status_code != 200:
            raise PrometheusError(f"{where} answered HTTP {response.status_code}")
        return body.get("data")

    def ready(self) -> bool:
        """Whether ``/-/ready`` answers 200 (the server has loaded its config and TSDB)."""
        try:
            return httpx.get(self.url + "/-/ready", timeout=self.timeout).status_code == 200
        except httpx.HTTPError:
            return False

    def reload(self) -> None:
        """``POST /-/reload`` (``--web.enable-lifecycle``): re-read the config and rule files."""
        response = self._request("POST", "/-/reload")
        if response.status_code != 200:
            raise PrometheusError(f"Prometheus at {self.url} refused to reload its configuration "
                                  f"(HTTP {response.status_code}): {response.text.strip()[:500]}")

    # -------------------------------------------------------------------------- queries
    def query(self, expr: str, at: float | None = None) -> list[Series]:
        """An instant query; a scalar result is one series without labels."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return parse_result(self.api("query", params), f"{self.url} query {expr!r}")

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{max(step, 0.001):.3f}"}
        return parse_result(self.api("query_range", params), f"{self.url} query_range {expr!r}")

    def scalar(self, expr: str) -> float | None:
        """The single value of ``expr`` now (``sum(...)``, ``time()``), or None when the result is empty."""
        series = self.query(expr)
        return series[0].latest if series else None

    def server_time(self) -> float:
        value = self.scalar("time()")
        if value is None:
            raise PrometheusError(f"{self.url}: the query time() returned nothing")
        return value

    def rules(self) -> list[LoadedRule]:
        return parse_rules(self.api("rules", {"type": "alert"}), f"{self.url}/api/v1/rules")

    def targets(self) -> list[ScrapeTarget]:
        return parse_targets(self.api("targets", {"state": "active"}), f"{self.url}/api/v1/targets")

    def metric_names(self, selector: str) -> list[str]:
        data = self.api("label/__name__/values", {"match[]": selector})
        if not isinstance(data, list) or not all(isinstance(name, str) for name in data):
            raise PrometheusError(f"{self.url}/api/v1/label/__name__/values: expected a list of names, got "
                                  f"{str(data)[:_BODY_SNIPPET]}")
        return sorted(data)

    def metric_types(self) -> dict[str, str]:
        """``/api/v1/metadata``: metric name -> counter/gauge/... (the first type reported)."""
        data = self.api("metadata")
        if not isinstance(data, dict):
            raise PrometheusError(f"{self.url}/api/v1/metadata: expected an object, got {str(data)[:_BODY_SNIPPET]}")
        types = {}
        for name, entries in data.items():
            if isinstance(entries, list) and entries and isinstance(entries[0], dict):
                types[str(name)] = str(entries[0].get("type", ""))
        return types


# ====================================================================================== parsing
def _value(raw: Any, where: str) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise PrometheusError(f"{where}: {raw!r} is not a sample value") from None


def _point(raw: Any, where: str) -> tuple[float, float]:
    if not isinstance(raw, list) or len(raw) != 2:
        raise PrometheusError(f"{where}: {str(raw)[:_BODY_SNIPPET]} is not a [time, value] pair")
    return _value(raw[0], where), _value(raw[1], where)


def parse_result(data: Any, where: str) -> list[Series]:
    """The ``data`` of a query or query_range answer (vector, matrix or scalar) as series."""
    if not isinstance(data, dict) or "resultType" not in data or "result" not in data:
        raise PrometheusError(f"{where}: the answer has no resultType/result: {str(data)[:_BODY_SNIPPET]}")
    kind, result = data["resultType"], data["result"]
    if kind == "scalar":
        return [Series({}, (_point(result, where),))]
    if kind not in ("vector", "matrix") or not isinstance(result, list):
        raise PrometheusError(f"{where}: unexpected result type {kind!r}")
    series = []
    for entry in result:
        if not isinstance(entry, dict) or not isinstance(entry.get("metric"), dict):
            raise PrometheusError(f"{where}: a result entry has no metric labels: {str(entry)[:_BODY_SNIPPET]}")
        labels = {str(k): str(v) for k, v in entry["metric"].items()}
        if kind == "vector":
            points: tuple[tuple[float, float], ...] = (_point(entry.get("value"), where),)
        else:
            values = entry.get("values")
            if not isinstance(values, list):
                raise PrometheusError(f"{where}: a matrix entry has no values list")
            points = tuple(_point(value, where) for value in values)
        series.append(Series(labels, points))
    return series


def parse_rules(data: Any, where: str) -> list[LoadedRule]:
    """The alerting rules of a ``/api/v1/rules`` answer."""
    groups = data.get("groups") if isinstance(data, dict) else None
    if not isinstance(groups, list):
        raise PrometheusError(f"{where}: the answer has no groups list: {str(data)[:_BODY_SNIPPET]}")
    loaded = []
    for group in groups:
        if not isinstance(group, dict) or not isinstance(group.get("rules"), list):
            raise PrometheusError(f"{where}: a group has no rules list: {str(group)[:_BODY_SNIPPET]}")
        for rule in group["rules"]:
            if not isinstance(rule, dict) or rule.get("type", "alerting") != "alerting":
                continue
            alerts = rule.get("alerts")
            loaded.append(LoadedRule(
                group=str(group.get("name", "")), file=str(group.get("file", "")), name=str(rule.get("name", "")),
                query=str(rule.get("query", "")), health=str(rule.get("health", "unknown")),
                last_error=str(rule.get("lastError") or ""), state=str(rule.get("state", "")),
                last_evaluation=parse_time(rule.get("lastEvaluation")),
                interval=float(group.get("interval") or 0.0),
                active_alerts=len(alerts) if isinstance(alerts, list) else 0,
                labels={str(k): str(v) for k, v in (rule.get("labels") or {}).items()}))
    return loaded


def parse_targets(data: Any, where: str) -> list[ScrapeTarget]:
    active = data.get("activeTargets") if isinstance(data, dict) else None
    if not isinstance(active, list):
        raise PrometheusError(f"{where}: the answer has no activeTargets list: {str(data)[:_BODY_SNIPPET]}")
    targets = []
    for entry in active:
        if not isinstance(entry, dict):
            continue
        raw_labels = entry.get("labels")
        labels: dict[str, Any] = raw_labels if isinstance(raw_labels, dict) else {}
        targets.append(ScrapeTarget(
            job=str(labels.get("job", entry.get("scrapePool", ""))), instance=str(labels.get("instance", "")),
            scrape_url=str(entry.get("scrapeUrl", "")), health=str(entry.get("health", "unknown")),
            last_error=str(entry.get("lastError") or ""), last_scrape=parse_time(entry.get("lastScrape")),
            scrape_interval=parse_duration(entry.get("scrapeInterval"))))
    return targets


# ================================================================================= rule queries
_NUMBER = r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|Inf|NaN)"
_RULE_RE = re.compile(r"^\s*(?P<metric>[a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?P<matchers>\{[^}]*\})?\s*"
                      rf"(?P<op>>=|<=|>|<)\s*(?P<threshold>{_NUMBER})\s*$")
_MATCHER_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?')


@dataclass(frozen=True)
class RuleQuery:
    """``metric{matchers} op threshold``: the shape of a spec alert rule in PromQL."""

    metric: str
    matchers: dict[str, tuple[str, str]]
    op: str
    threshold: float

    def describe(self) -> str:
        labels = ",".join(f'{k}{op}"{v}"' for k, (op, v) in sorted(self.matchers.items()))
        return f"{self.metric}{{{labels}}} {self.op} {self.threshold:g}" if labels else \
            f"{self.metric} {self.op} {self.threshold:g}"


def parse_rule_query(query: str) -> RuleQuery:
    """A loaded rule's PromQL as :class:`RuleQuery`; ``ValueError`` for any other shape."""
    match = _RULE_RE.match(query)
    if not match:
        raise ValueError(f"expression {query!r} is not '<metric>{{labels}} <op> <threshold>'")
    matchers: dict[str, tuple[str, str]] = {}
    inner = (match.group("matchers") or "{}")[1:-1]
    position = 0
    while position < len(inner):
        found = _MATCHER_RE.match(inner, position)
        if not found or found.end() == position:
            raise ValueError(f"expression {query!r} has label matchers that cannot be read: {inner!r}")
        matchers[found.group(1)] = (found.group(2), found.group(3))
        position = found.end()
    return RuleQuery(match.group("metric"), matchers, match.group("op"), float(match.group("threshold")))


def rule_selector(metric: str, job: str) -> str:
    """``metric{job="<job>"}``: the spec's metric restricted to this service's series."""
    return f'{metric}{{job="{job}"}}'


@dataclass(frozen=True)
class _Loaded:
    """A loaded rule read as the spec's shape, with what :func:`alert_problems` needs."""

    name: str
    metric: str
    op: str
    threshold: float
    protects: str | None


def rule_problems(spec_rules: Sequence[Any], loaded: Sequence[LoadedRule], *, job: str, p95_latency_ms: float,
                  max_error_rate_pct: float, alert_rules_waived: bool) -> tuple[dict[str, LoadedRule], list[str]]:
    """Compare the rules Prometheus loaded with the spec's.

    :param spec_rules: the spec's ``monitoring.alert_rules``.
    :param loaded: what ``/api/v1/rules`` lists.
    :param job: this service's ``job`` label; a loaded rule that selects another job does not count.
    :param alert_rules_waived: whether ``quality_gates.waivers`` covers gate ``alert_rules``.
    :return: ``(matched, problems)``: the loaded rule matched to each spec rule name, and every
        difference (missing rule, other metric, operator or threshold, another job, an evaluation
        error, a threshold looser than the SLA it protects).
    """
    matched: dict[str, LoadedRule] = {}
    problems: list[str] = []
    for rule in spec_rules:
        wanted = f"{rule.metric} {rule.op} {rule.threshold:g}"
        candidates = [r for r in loaded if r.name == rule.name]
        if not candidates:
            problems.append(f"rule {rule.name} is not loaded in Prometheus: no alerting rule named {rule.name} "
                            f"(the spec wants {wanted})")
            continue
        differences = []
        for candidate in candidates:
            try:
                parsed = parse_rule_query(candidate.query)
            except ValueError as exc:
                differences.append(f"rule {rule.name} in {candidate.file or candidate.group}: {exc}")
                continue
            job_matcher = parsed.matchers.get("job")
            if job_matcher is not None and job_matcher != ("=", job):
                differences.append(f"rule {rule.name}: Prometheus loaded {parsed.describe()}, which selects "
                                   f'job{job_matcher[0]}"{job_matcher[1]}" instead of this service\'s job="{job}"')
                continue
            same = (parsed.metric, parsed.op) == (rule.metric, rule.op) and math.isclose(
                parsed.threshold, rule.threshold, rel_tol=1e-9, abs_tol=1e-12)
            if not same:
                differences.append(f"rule {rule.name}: Prometheus loaded {parsed.describe()}, the spec says {wanted}")
                sla = _looser_than_sla(rule, parsed, p95_latency_ms, max_error_rate_pct)
                if sla:
                    differences.append(sla)
                continue
            matched[rule.name] = candidate
            break
        if rule.name not in matched:
            problems.extend(differences)
            continue
        found = matched[rule.name]
        if found.health == "err":
            problems.append(f"rule {rule.name} is loaded but Prometheus cannot evaluate it: {found.last_error}")
        if not alert_rules_waived:
            sla = _looser_than_sla(rule, parse_rule_query(found.query), p95_latency_ms, max_error_rate_pct)
            if sla:
                problems.append(sla)
    return matched, problems


def _looser_than_sla(rule: Any, parsed: RuleQuery, p95_latency_ms: float, max_error_rate_pct: float) -> str | None:
    if rule.protects is None:
        return None
    loaded = _Loaded(rule.name, parsed.metric, parsed.op, parsed.threshold, rule.protects)
    errors, relaxations = alert_problems([loaded], p95_latency_ms, max_error_rate_pct)
    if errors:
        return f"as loaded in Prometheus, {errors[0][1]}"
    if relaxations:
        return f"as loaded in Prometheus, {relaxations[0].problem}"
    return None
