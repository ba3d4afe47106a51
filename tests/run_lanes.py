"""``make test``: the suite in three pytest processes side by side, one exit code.

The real-Airflow modules (``tests/test_e2e_*.py``) spend most of their time waiting on their
stack (the scheduler's loop, deferred waits, the services they release), so on a 2-core machine
they run beside the rest of the suite instead of after it:

- lane ``main``: every test but those of the side lanes;
- lanes ``e2e-1``, ``e2e-2`` (:data:`SIDE_LANES`): the e2e modules, ``test_e2e_airflow.py`` (the
  longest) alone, then the others with ``test_cli_strategies.py`` (three embedded releases side by
  side); each module keeps its one shared stack.

Each lane has its own ``--basetemp``; its output is printed whole when it ends, then a summary.
The exit code is the first non-zero lane's (pytest's: 1 tests failed, 2 interrupted, ...), else 0.
Arguments are passed to every lane (``make test PYTEST_ARGS='-x'``); ``--serial`` runs the lanes
one after the other instead.

    .venv/bin/python tests/run_lanes.py [--serial] [pytest args...]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
#: The side lanes, by module, balanced by measured durations (CI, unloaded: test_e2e_airflow 12 min;
#: test_e2e_approvals + test_e2e_waits 8 min; test_cli_strategies 5 min; the rest about 14 min).
#: An e2e module not listed here joins the last side lane.
SIDE_LANES: dict[str, list[str]] = {
    "e2e-1": ["test_e2e_airflow.py"],
    "e2e-2": ["test_e2e_approvals.py", "test_e2e_waits.py", "test_cli_strategies.py"],
}


@dataclass
class Lane:
    name: str
    paths: list[str]
    ignore: list[str] = field(default_factory=list)
    log: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    seconds: float = 0.0
    code: int | None = None

    def argv(self, basetemp: Path, extra: list[str]) -> list[str]:
        return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={basetemp}",
                *[f"--ignore={path}" for path in self.ignore], *extra, *self.paths]


def lanes() -> list[Lane]:
    side = {name: [f"tests/{module}" for module in modules if (TESTS / module).exists()]
            for name, modules in SIDE_LANES.items()}
    placed = {path for paths in side.values() for path in paths}
    last = list(side)[-1]
    side[last] += [f"tests/{p.name}" for p in sorted(TESTS.glob("test_e2e_*.py")) if f"tests/{p.name}" not in placed]
    moved = [path for paths in side.values() for path in paths]
    return [Lane("main", ["tests"], ignore=moved)] + [Lane(name, paths) for name, paths in side.items() if paths]


def main(argv: list[str]) -> int:
    serial = "--serial" in argv
    extra = [arg for arg in argv if arg != "--serial"]
    planned = lanes()
    with tempfile.TemporaryDirectory(prefix="gendev-test-lanes-") as tmp:
        root = Path(tmp)
        for lane in planned:
            lane.log = root / f"{lane.name}.log"
        print("make test: " + ("one lane after the other" if serial else f"{len(planned)} lanes side by side")
              + ": " + "; ".join(f"{lane.name} = {' '.join(lane.paths)}" for lane in planned), flush=True)
        running: list[Lane] = []
        for lane in planned:
            assert lane.log is not None
            with lane.log.open("wb") as out:
                lane.started = time.monotonic()
                lane.proc = subprocess.Popen(lane.argv(root / f"tmp-{lane.name}", extra), cwd=REPO,
                                             stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
            running.append(lane)
            if serial:
                finish(lane)
                running.remove(lane)
        try:
            while running:
                for lane in list(running):
                    if lane.proc is not None and lane.proc.poll() is not None:
                        finish(lane)
                        running.remove(lane)
                time.sleep(0.5)
        except KeyboardInterrupt:
            for lane in running:
                if lane.proc is not None:
                    lane.proc.terminate()
            raise
        print("\n== make test: lanes ==")
        for lane in planned:
            verdict = "passed" if lane.code == 0 else f"FAILED (pytest exit {lane.code})"
            print(f"  {lane.name:6} {verdict:24} {lane.seconds / 60:5.1f} min  {' '.join(lane.paths)}")
        return next((lane.code for lane in planned if lane.code), 0) or 0


def finish(lane: Lane) -> None:
    assert lane.proc is not None and lane.log is not None
    lane.code = lane.proc.wait()
    lane.seconds = time.monotonic() - lane.started
    print(f"\n== lane {lane.name} ({' '.join(lane.paths)}): exit {lane.code} after {lane.seconds / 60:.1f} min ==",
          flush=True)
    sys.stdout.write(lane.log.read_text(encoding="utf-8", errors="replace"))
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
