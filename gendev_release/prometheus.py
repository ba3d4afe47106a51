"""What the duties read out of a Prometheus exposition: series by metric, ``# TYPE`` lines, the request counter.

The exposition parser itself is :func:`gendev_release.probes.parse_prometheus_text` (one parser for
the whole package, also used by the readiness baseline and the demo QA suite); the helpers here work
on its ``name{labels} -> value`` result or on the raw text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from gendev_release.probes import HttpResult, parse_prometheus_text, scrape

_TYPE_RE = re.compile(r"^#\s*TYPE\s+([a-zA-Z_:][a-zA-Z0-9_:]*)\s+([a-z]+)\s*$")


def base_name(series: str) -> str:
    """``name{labels}`` -> ``name``."""
    return series.split("{", 1)[0]


def series_of(samples: dict[str, float], metric: str) -> dict[str, float]:
    """Every labelled series of ``metric`` in a parsed exposition."""
    return {key: value for key, value in samples.items() if base_name(key) == metric}


def metric_types(text: str) -> dict[str, str]:
    """``# TYPE`` declarations of an exposition: metric name -> counter/gauge/histogram/..."""
    types = {}
    for line in text.splitlines():
        match = _TYPE_RE.match(line.strip())
        if match:
            types[match.group(1)] = match.group(2)
    return types


def request_counter_candidates(names: Iterable[str], types: dict[str, str]) -> list[str]:
    """Counters whose name mentions requests, best first: ``*requests_total`` before ``*request_errors_total``.

    :param names: the metric names present (an exposition's, or what Prometheus has for a job).
    :param types: declared types (``# TYPE`` lines, or Prometheus' metadata): declared counters win;
        without any, every ``*_total`` name that mentions requests is a candidate.
    """
    present = set(names)
    declared = [name for name, kind in types.items() if kind == "counter" and "request" in name.lower()
                and (name in present or f"{name}_total" in present)]
    candidates = declared or sorted(n for n in present if n.endswith("_total") and "request" in n.lower())

    def rank(name: str) -> tuple[bool, bool, str]:
        lowered = name.lower().removesuffix("_total")
        return (not lowered.endswith("requests"), "error" in lowered or "fail" in lowered, name)

    return sorted(candidates, key=rank)


def request_counter(text: str) -> tuple[str, float] | None:
    """The service's request counter and its total over all label sets, or None.

    A counter whose name mentions requests (declared ``# TYPE ... counter``, else any ``*_total``
    series) is chosen (:func:`request_counter_candidates`).
    """
    samples = parse_prometheus_text(text)
    present = {base_name(key) for key in samples}
    for name in request_counter_candidates(present, metric_types(text)):
        names = {name, f"{name}_total"}
        values = [value for key, value in samples.items() if base_name(key) in names]
        if values:
            return name, sum(values)
    return None


def scrape_metrics(url: str, timeout: float = 2.0) -> tuple[HttpResult, str, dict[str, float]]:
    """One scrape (:func:`gendev_release.probes.scrape`) that also keeps the exposition text.

    :return: the HTTP result, the text (empty unless the answer was 200) and its samples.
    """
    result, samples = scrape(url, timeout)
    return result, result.body if result.status == 200 else "", samples
