"""``make test``: the suite in three pytest processes side by side, one exit code.

The real-Airflow modules (``tests/test_e2e_*.py``) spend most of their time waiting on their
stack (the scheduler's loop, deferred waits, the services they release), so on a 2-core machine
they run beside the rest of the suite instead of after it:

- lane ``main``: every other test (``tests/`` without the e2e modules);
- lanes ``e2e-1``, ``e2e-2``: the e2e modules, dealt out in turn (``test_e2e_airflow.py`` alone,
  the longest, then the others together), each module keeping its one shared stack.

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
#: The module that runs longest goes first, alone in its lane.
LONGEST_E2E = "test_e2e_airflow.py"


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
    e2e = sorted(TESTS.glob("test_e2e_*.py"), key=lambda p: (p.name != LONGEST_E2E, p.name))
    rel = [str(path.relative_to(REPO)) for path in e2e]
    result = [Lane("main", ["tests"], ignore=rel)]
    if rel:
        result.append(Lane("e2e-1", rel[:1]))
    if len(rel) > 1:
        result.append(Lane("e2e-2", rel[1:]))
    return result


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
