"""``make test``'s lanes (tests/run_lanes.py) cover every test module exactly once."""

from __future__ import annotations

from pathlib import Path

import run_lanes

TESTS = Path(__file__).resolve().parent


def test_every_e2e_module_runs_in_exactly_one_side_lane_and_the_main_lane_skips_those() -> None:
    main, *side = run_lanes.lanes()
    assert main.paths == ["tests"]
    moved = [path for lane in side for path in lane.paths]
    assert len(set(moved)) == len(moved) and sorted(main.ignore) == sorted(moved)
    assert all((TESTS.parent / path).is_file() for path in moved)
    e2e = {f"tests/{p.name}" for p in TESTS.glob("test_e2e_*.py")}
    assert e2e and e2e <= set(moved)
    assert side[0].paths == ["tests/test_e2e_airflow.py"]  # the longest module has a lane of its own


def test_the_exit_code_is_the_first_failing_lanes(monkeypatch, capsys, tmp_path: Path) -> None:
    class Fake(run_lanes.Lane):
        def argv(self, basetemp: Path, extra: list[str]) -> list[str]:
            code = {"main": 0, "e2e-1": 1, "e2e-2": 0}[self.name]
            return ["python3", "-c", f"print('{self.name} ran'); raise SystemExit({code})"]

    monkeypatch.setattr(run_lanes, "lanes", lambda: [Fake("main", ["tests"]), Fake("e2e-1", ["a"]),
                                                     Fake("e2e-2", ["b"])])
    assert run_lanes.main([]) == 1
    out = capsys.readouterr().out
    assert all(f"{name} ran" in out for name in ("main", "e2e-1", "e2e-2"))
    assert "FAILED (pytest exit 1)" in out and out.count("passed") == 2
