"""Benchmark: time from the first failed health check to restored traffic, as a ratio to a healthy switch.

On the local target, for each router (nginx, builtin) and each round, on loopback:

1. 1.0.0 is staged and switched to (setup, not measured).
2. Baseline, a healthy release: 1.1.0 is staged; a client polls ``/version`` through the router;
   the time from the ``switch()`` call to the first answer from 1.1.0 is the switch time.
3. A broken release: 1.2.0-broken is staged and switched to; then a client polls ``/healthz``
   through the router. The first failed answer (503) triggers ``rollback(to_version="1.1.0")``;
   the time from that failed answer to the first healthy answer from 1.1.0's slot (sent after the
   rollback began) is the rollback time ("restored traffic"), seen by the client.

The ratio is rollback time / switch time, medians of N rounds. This measures the target alone:
in a real release the health sensor's streak, the failure branch and Airflow's scheduling add their
own time before ``rollback()`` is called.

    .venv/bin/python benchmarks/rollback_time.py [--rounds 5] [--routers nginx builtin] [--json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("GENDEV_MAX_LIFETIME", "600")  # anything left behind by a crash stops by itself

from gendev_release.spec import LocalTargetSpec  # noqa: E402
from gendev_release.targets.local import LocalTarget  # noqa: E402


@dataclass(frozen=True)
class Probe:
    sent: float
    at: float
    status: int | None
    slot: str | None
    body: str


class Poller:
    """Polls one path through the router (a new connection per request) until ``until`` holds for a probe."""

    def __init__(self, port: int, path: str, until: Callable[[Probe], bool], on_probe: Callable[[Probe], None]) -> None:
        self.port, self.path, self.until, self.on_probe = port, path, until, on_probe
        self.hit: Probe | None = None
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _probe(self) -> Probe:
        sent = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", self.path)
            response = connection.getresponse()
            body = response.read().decode(errors="replace")
            return Probe(sent, time.monotonic(), response.status, response.getheader("X-Gendev-Slot"), body)
        except (OSError, http.client.HTTPException) as exc:
            return Probe(sent, time.monotonic(), None, None, repr(exc))
        finally:
            connection.close()

    def _run(self) -> None:
        deadline = time.monotonic() + 120
        while not self._stop.is_set() and time.monotonic() < deadline:
            probe = self._probe()
            self.count += 1
            self.on_probe(probe)
            if self.until(probe):
                self.hit = probe
                return

    def start(self) -> Poller:
        self._thread.start()
        return self

    def join(self) -> Probe:
        self._thread.join(130)
        self._stop.set()
        if self.hit is None:
            raise RuntimeError(f"the poller on {self.path} never saw what it waited for")
        return self.hit


@dataclass(frozen=True)
class Round:
    router: str
    switch_seconds: float
    switch_call_seconds: float
    rollback_seconds: float
    rollback_call_seconds: float
    failed_probes: int


def one_round(router: str, home: Path) -> Round:
    target = LocalTarget(LocalTargetSpec.model_validate({"router": router}), "bench", home)
    try:
        target.switch(target.stage("1.0.0", "setup").slot, "setup")
        port = int((target.url() or "").rsplit(":", 1)[1])

        # Baseline: a healthy switch, from the call to the first answer from the new version.
        good = target.stage("1.1.0", "healthy")
        poller = Poller(port, "/version", lambda p: p.status == 200 and '"1.1.0"' in p.body, lambda p: None).start()
        started = time.monotonic()
        target.switch(good.slot, "healthy")
        call = time.monotonic() - started
        switch_seconds = poller.join().at - started

        # A broken release: the first failed health check triggers the rollback.
        broken = target.stage("1.2.0-broken", "broken")
        failed: list[Probe] = []
        first_failure = threading.Event()

        def seen(probe: Probe) -> None:
            if probe.status != 200:
                failed.append(probe)
                first_failure.set()

        rolling_back: list[float] = []

        def restored(probe: Probe) -> bool:
            # Sent once the rollback began (an answer the old slot gave before that is no restore).
            return bool(rolling_back) and probe.sent >= rolling_back[0] and probe.status == 200 \
                and probe.slot == good.slot

        target.switch(broken.slot, "broken")  # as in a release: health is checked once the switch is done
        poller = Poller(port, "/healthz", restored, seen).start()
        if not first_failure.wait(60):
            raise RuntimeError("the broken version never failed a health check through the router")
        rolling_back.append(time.monotonic())
        target.rollback("broken", to_version="1.1.0")
        rollback_call = time.monotonic() - rolling_back[0]
        back = poller.join()
        return Round(router, switch_seconds, call, back.at - failed[0].at, rollback_call, len(failed))
    finally:
        target.down()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--routers", nargs="+", default=["nginx", "builtin"], choices=["nginx", "builtin"])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    rounds: list[Round] = []
    with tempfile.TemporaryDirectory(prefix="gendev-bench-rollback-") as folder:
        for router in args.routers:
            for index in range(args.rounds):
                rounds.append(one_round(router, Path(folder) / f"{router}-{index}"))
    summary = {}
    for router in args.routers:
        mine = [r for r in rounds if r.router == router]
        switch = statistics.median(r.switch_seconds for r in mine)
        rollback = statistics.median(r.rollback_seconds for r in mine)
        call = statistics.median(r.rollback_call_seconds for r in mine)
        summary[router] = {"rounds": len(mine), "switch_ms": round(switch * 1000, 1),
                           "rollback_ms": round(rollback * 1000, 1), "ratio": round(rollback / switch, 2),
                           "rollback_call_ms": round(call * 1000, 1),
                           "failed_probes": statistics.median(r.failed_probes for r in mine)}
    if args.json:
        print(json.dumps({"summary": summary, "rounds": [asdict(r) for r in rounds]}, indent=2))
        return 0
    print("first failed health check -> restored traffic (client's view through the router), local target, "
          f"medians of {args.rounds} rounds")
    print(f"{'router':8} {'switch (baseline)':>18} {'rollback':>10} {'ratio':>6} {'rollback() call':>16} "
          f"{'failed checks':>14}")
    for router, row in summary.items():
        print(f"{router:8} {row['switch_ms']:>15.1f} ms {row['rollback_ms']:>7.1f} ms {row['ratio']:>6.2f} "
              f"{row['rollback_call_ms']:>13.1f} ms {row['failed_probes']:>14g}")
    print("baseline: a healthy switch, from the switch() call to the first answer from the new version. "
          "Not included: the health sensor's streak, the failure branch and Airflow's scheduling.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
