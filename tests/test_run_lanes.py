"""``make test``'s lanes (tests/run_lanes.py) cover every test module exactly once."""

from __future__ import annotations

from pathlib import Path

import run_lanes

TESTS = Path(__file__).resolve().parent


def test_every_e2e_module_runs_in_exactly_one_lane_and_the_main_lane_skips_them() -> None:
    lanes = run_lanes.lanes()
    main, *e2e = lanes
    assert main.paths == ["tests"]
    e2e_paths = [path for lane in e2e for path in lane.paths]
    expected = sorted(f"tests/{p.name}" for p in TESTS.glob("test_e2e_*.py"))
    assert sorted(e2e_paths) == expected and len(set(e2e_paths)) == len(e2e_paths)
    assert sorted(main.ignore) == expected
    assert e2e[0].paths == [f"tests/{run_lanes.LONGEST_E2E}"]  # the longest module has a lane of its own


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
