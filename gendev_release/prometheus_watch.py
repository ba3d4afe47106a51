"""What the monitoring duties ask the spec's Prometheus, on the spec's terms.

:func:`open_prometheus` turns ``monitoring.prometheus`` into a :class:`PrometheusSource`: a client for
an existing server (``url``) or for the loopback one this run launched or reused (``launch: local``,
:mod:`gendev_release.prometheus_local`), with the ``job`` label of this service's series. The other
helpers wait on conditions, never on fixed sleeps: a scrape target that is up, a counter that moved,
rules evaluated after a given sample. Each wait has a deadline derived from the scrape interval.

The duties (:mod:`gendev_release.duties.monitoring`, :mod:`gendev_release.duties.observability`)
turn these answers into verdicts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from gendev_release.prometheus import request_counter_candidates
from gendev_release.prometheus_api import LoadedRule, PrometheusClient, PrometheusError, ScrapeTarget, rule_selector
from gendev_release.prometheus_local import LocalPrometheus, ensure_local_prometheus
from gendev_release.report import Evidence

if TYPE_CHECKING:
    from gendev_release.context import DutyContext
    from gendev_release.spec import ReleaseSpec

#: Prometheus' default scrape interval, assumed for an existing server that shows no target of the job.
DEFAULT_SCRAPE_INTERVAL = 15.0
#: How long a launched server may take to scrape its target the first time (service discovery
#: hands new targets to the scrape manager every 5 s).
FIRST_SCRAPE_SECONDS = 30.0
POLL_SECONDS = 0.2

T = TypeVar("T")


def prometheus_job(spec: ReleaseSpec) -> str:
    """The ``job`` label of this service's series: ``monitoring.prometheus.job``, else the service name."""
    settings = spec.monitoring.prometheus
    return (settings.job if settings and settings.job else None) or spec.service


def alert_rules_document(spec: ReleaseSpec, job: str) -> dict[str, Any]:
    """The spec's alert rules as a Prometheus rule file, each restricted to this service's ``job``."""
    channels = ", ".join(channel.label for channel in spec.notifications.all_channels)
    rules = [{
        "alert": rule.name,
        "expr": f"{rule_selector(rule.metric, job)} {rule.op} {rule.threshold:g}",
        "for": "0s",
        "labels": {"severity": "critical", "service": spec.service, "environment": spec.environment},
        "annotations": {"summary": f"{spec.service}: {rule.metric} {rule.op} {rule.threshold:g}",
                        "channel": channels},
    } for rule in spec.monitoring.alert_rules]
    return {"groups": [{"name": f"{spec.service}-release", "rules": rules}]}


@dataclass(frozen=True)
class PrometheusSource:
    """The spec's Prometheus: a client, the job of this service's series and where the server came from."""

    client: PrometheusClient
    job: str
    origin: str
    scrape_interval: float | None
    local: LocalPrometheus | None = None

    @property
    def url(self) -> str:
        return self.client.url

    @property
    def selector(self) -> str:
        return f'{{job="{self.job}"}}'

    def evidence(self, summary: str = "") -> Evidence:
        return Evidence(kind="http", source=self.url,
                        summary=summary or f"Prometheus {self.url} ({self.origin}), series of job={self.job}",
                        data={"origin": self.origin, "job": self.job, "scrape_interval": self.scrape_interval,
                              "local": self.local.as_dict() if self.local else None})

    def describe(self) -> str:
        return f"Prometheus {self.url} ({self.origin})"


def open_prometheus(ctx: DutyContext, router: str | None) -> PrometheusSource | None:
    """The spec's Prometheus, launched or reloaded on loopback for ``launch: local``; None without one.

    :param router: the target's router URL (what a launched server scrapes).
    :raises PrometheusError: it cannot be started or reached (the message says why and how to fix it).
    """
    spec = ctx.spec
    settings = spec.monitoring.prometheus
    if settings is None:
        return None
    job = prometheus_job(spec)
    if settings.url is not None:
        return PrometheusSource(PrometheusClient(settings.url, settings.timeout_seconds), job,
                                "an existing server: spec monitoring.prometheus.url", None)
    if router is None:
        raise PrometheusError("monitoring.prometheus.launch: local scrapes the target's router, but the target "
                              "has no router URL (nothing is deployed)")
    local = ensure_local_prometheus(ctx.paths.home, spec.service, job=job,
                                    scrape_url=router + spec.monitoring.metrics_path,
                                    interval=settings.scrape_interval_seconds,
                                    rules=alert_rules_document(spec, job), timeout=settings.timeout_seconds)
    return PrometheusSource(PrometheusClient(local.url, settings.timeout_seconds), job,
                            f"launched on 127.0.0.1 for {spec.service}: {local.action}, pid {local.pid}",
                            settings.scrape_interval_seconds, local)


# ======================================================================================== waits
def wait_until(probe: Callable[[], T], done: Callable[[T], bool], seconds: float) -> tuple[T, bool]:
    """Call ``probe`` until ``done(result)`` or ``seconds`` passed; return the last result and whether it was done."""
    deadline = time.monotonic() + seconds
    while True:
        result = probe()
        if done(result) or time.monotonic() >= deadline:
            return result, done(result)
        time.sleep(POLL_SECONDS)


def scrape_interval(source: PrometheusSource, targets: Sequence[ScrapeTarget]) -> float:
    """The interval this service's series are scraped at: the launched config's, else its targets', else 15 s."""
    if source.scrape_interval:
        return source.scrape_interval
    intervals = [t.scrape_interval for t in targets if t.scrape_interval]
    return max(intervals) if intervals else DEFAULT_SCRAPE_INTERVAL


def job_targets(source: PrometheusSource) -> list[ScrapeTarget]:
    return [target for target in source.client.targets() if target.job == source.job]


def wait_for_target(source: PrometheusSource) -> tuple[list[ScrapeTarget], str | None]:
    """Wait until a scrape target of the job is up; ``(targets, problem)``.

    A target seen down on two different scrapes is down (its last error is the problem). An
    existing server with no target of the job (the series may come by federation or remote write)
    is not a problem here: the samples are judged next.
    """
    launched = source.local is not None
    scrapes_seen: dict[str, set[float]] = {}

    def settled(targets: list[ScrapeTarget]) -> bool:
        if any(t.health == "up" for t in targets):
            return True
        for target in targets:
            if target.last_scrape is not None:
                scrapes_seen.setdefault(target.scrape_url, set()).add(target.last_scrape)
        if targets and all(len(scrapes_seen.get(t.scrape_url, ())) >= 2 for t in targets):
            return True  # every target failed twice: down, not just starting
        return not targets and not launched

    seconds = FIRST_SCRAPE_SECONDS if launched else 3 * DEFAULT_SCRAPE_INTERVAL
    targets, _ = wait_until(lambda: job_targets(source), settled, seconds)
    if any(t.health == "up" for t in targets):
        return targets, None
    if not targets:
        if launched:
            return targets, (f"{source.describe()} has no scrape target with job={source.job} after "
                             f"{seconds:g} s")
        return targets, None
    down = "; ".join(f"{t.scrape_url}: {t.health} ({t.last_error or 'not scraped yet'})" for t in targets)
    return targets, f"{source.describe()} cannot scrape job={source.job}: {down}"


def request_counter_name(source: PrometheusSource) -> str | None:
    """This job's request counter, chosen from Prometheus' metric names and metadata as from an exposition."""
    names = source.client.metric_names(source.selector)
    candidates = request_counter_candidates(names, source.client.metric_types())
    return next((name for name in candidates if name in names), None)


def counter_total(source: PrometheusSource, counter: str) -> tuple[float | None, float | None]:
    """``(sum of the counter over the job's series, time of its newest scrape)`` now, from Prometheus."""
    selector = rule_selector(counter, source.job)
    return (source.client.scalar(f"sum({selector})"),
            source.client.scalar(f"max(timestamp({selector}))"))


def wait_for_rules(source: PrometheusSource, names: Sequence[str], *, after: float | None,
                   seconds: float) -> list[LoadedRule]:
    """Loaded rules, once every rule in ``names`` has been evaluated (after ``after``, a unix time, when given)."""
    wanted = set(names)

    def evaluated(rules: list[LoadedRule]) -> bool:
        # A rule missing from the list stays missing (rules load with the configuration): no reason to wait.
        mine = [r for r in rules if r.name in wanted]
        return all(r.health != "unknown" and r.last_evaluation is not None
                   and (after is None or r.last_evaluation >= after) for r in mine)

    rules, _ = wait_until(source.client.rules, evaluated, seconds)
    return rules
