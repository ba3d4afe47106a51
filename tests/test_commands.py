"""Commands: argv lists, placeholders replaced by whole values, never a shell."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gendev_release.commands import CommandResult, run_command, substitute

PY = sys.executable
ECHO_ARGS = "import json, sys; print(json.dumps(sys.argv[1:]))"


# ---------------------------------------------------------------------------------- substitute
def test_substitute_keeps_one_element_per_template_element() -> None:
    template = ["{python}", "-m", "tool", "--version", "{version}", "--tag=v{version}-{service}", "{workdir}/out"]
    values = {"python": PY, "version": "1.0.0; rm -rf /", "service": "my svc", "workdir": "/tmp/a b"}
    argv = substitute(template, values)
    assert argv == [PY, "-m", "tool", "--version", "1.0.0; rm -rf /", "--tag=v1.0.0; rm -rf /-my svc",
                    "/tmp/a b/out"]
    assert len(argv) == len(template)


def test_substituted_values_are_not_rescanned() -> None:
    # A value that looks like a placeholder or shell syntax is data: it is inserted verbatim.
    argv = substitute(["x", "{version}", "{url}"], {"version": "{workdir}", "url": "$(id) `id` && ;"})
    assert argv == ["x", "{workdir}", "$(id) `id` && ;"]


def test_substitute_refuses_a_bad_template() -> None:
    with pytest.raises(ValueError, match="shell"):
        substitute(["bash", "-c", "{version}"], {"version": "1"})
    with pytest.raises(ValueError, match=r"unknown placeholder \{foo\}"):
        substitute(["x", "{foo}"], {"foo": "1"})


def test_substitute_missing_value_raises_key_error() -> None:
    with pytest.raises(KeyError, match="version"):
        substitute(["x", "{version}"], {})


def test_dangerous_value_reaches_the_program_as_one_argument(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    argv = substitute(["{python}", "-c", ECHO_ARGS, "{version}"],
                      {"python": PY, "version": f"1.0.0; touch {marker}"})
    result = run_command(argv, cwd=tmp_path, timeout=20)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f'["1.0.0; touch {marker}"]'
    assert not marker.exists()


# --------------------------------------------------------------------------------- run_command
def test_exit_codes_and_output(tmp_path: Path) -> None:
    ok = run_command([PY, "-c", "print('out'); import sys; print('err', file=sys.stderr)"], cwd=tmp_path, timeout=20)
    assert (ok.exit_code, ok.ok, ok.timed_out) == (0, True, False)
    assert ok.stdout == "out\n"
    assert ok.stderr == "err\n"
    failed = run_command([PY, "-c", "raise SystemExit(3)"], cwd=tmp_path, timeout=20)
    assert (failed.exit_code, failed.ok) == (3, False)


def test_runs_in_cwd(tmp_path: Path) -> None:
    result = run_command([PY, "-c", "import os; print(os.getcwd())"], cwd=tmp_path, timeout=20)
    assert Path(result.stdout.strip()).resolve() == tmp_path.resolve()


def test_env_is_added(tmp_path: Path) -> None:
    result = run_command([PY, "-c", "import os; print(os.environ['GENDEV_T'])"], cwd=tmp_path, timeout=20,
                         env={"GENDEV_T": "x y"})
    assert result.stdout == "x y\n"


def test_stdin_is_closed(tmp_path: Path) -> None:
    result = run_command([PY, "-c", "import sys; print(repr(sys.stdin.read()))"], cwd=tmp_path, timeout=20)
    assert result.stdout == "''\n"


def test_missing_program_is_127(tmp_path: Path) -> None:
    result = run_command(["gendev-no-such-program-xyz", "--help"], cwd=tmp_path, timeout=20)
    assert (result.exit_code, result.ok, result.timed_out) == (127, False, False)
    assert result.stderr == "program not found: gendev-no-such-program-xyz"


def test_missing_working_directory_is_not_reported_as_missing_program(tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    result = run_command([PY, "-c", "pass"], cwd=missing, timeout=20)
    assert result.exit_code == 127
    assert result.stderr == f"working directory not found: {missing}"


def test_not_executable_is_126(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    result = run_command([str(script)], cwd=tmp_path, timeout=20)
    assert result.exit_code == 126
    assert result.stderr.startswith("not executable: ")


def test_timeout(tmp_path: Path) -> None:
    result = run_command([PY, "-c", "import sys, time; print('started', flush=True); time.sleep(30)"],
                         cwd=tmp_path, timeout=1.0)
    assert result.timed_out is True
    assert result.ok is False
    assert result.exit_code == -1
    assert result.seconds < 10
    assert result.evidence().summary == "exit -1 (timed out)"


def test_run_command_refuses_a_shell(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="runs the shell"):
        run_command(["/bin/sh", "-c", "true"], cwd=tmp_path)
    with pytest.raises(ValueError, match="shell syntax"):
        run_command([PY, "-c", "pass", "&&", "id"], cwd=tmp_path)


def test_literal_braces_in_a_final_argv_are_data(tmp_path: Path) -> None:
    # A final argv is not a template: git's ``SHA^{commit}`` (used by the risk duty) or a path with
    # braces must run, not be refused as an "unknown placeholder".
    result = run_command([PY, "-c", ECHO_ARGS, "abc^{commit}", "/srv/{team}/x"], cwd=tmp_path, timeout=20)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == '["abc^{commit}", "/srv/{team}/x"]'


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_git_commit_peel_runs(tmp_path: Path) -> None:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
           "PATH": "/usr/bin:/bin"}
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, env=env)
    subprocess.run(["git", "-C", str(tmp_path), "commit", "-q", "--allow-empty", "-m", "x"], check=True, env=env)
    result = run_command(["git", "-C", str(tmp_path), "cat-file", "-e", "HEAD^{commit}"], cwd=tmp_path,
                         timeout=20, env=env)
    assert result.exit_code == 0, result.stderr


# ------------------------------------------------------------------------------------ evidence
def test_evidence_records_argv_and_exit_code(tmp_path: Path) -> None:
    result = run_command([PY, "-c", "print('hi'); raise SystemExit(2)"], cwd=tmp_path, timeout=20)
    evidence = result.evidence()
    assert evidence.kind == "command"
    assert evidence.source == " ".join(result.argv)
    assert evidence.summary == "exit 2"
    assert evidence.data["argv"] == [PY, "-c", "print('hi'); raise SystemExit(2)"]
    assert evidence.data["exit_code"] == 2
    assert evidence.data["timed_out"] is False
    assert evidence.data["stdout_tail"] == "hi\n"
    assert isinstance(evidence.data["seconds"], float)
    assert result.evidence("custom").summary == "custom"


def test_evidence_tails_are_bounded() -> None:
    result = CommandResult(["x"], 0, "a" * 10_000 + "END", "", 0.1)
    tail = result.evidence().data["stdout_tail"]
    assert len(tail) == 4000
    assert tail.endswith("END")


def test_a_long_output_is_kept_whole_for_the_caller(tmp_path) -> None:
    """A `git log` of a few hundred commits runs over 16,000 characters: the caller parses every line."""
    import sys

    from gendev_release.commands import run_command

    result = run_command([sys.executable, "-c", "print('\\n'.join(f'line {i:05d} ' + 'x' * 80 for i in range(500)))"],
                         cwd=tmp_path)
    lines = result.stdout.splitlines()
    assert result.ok and len(lines) == 500 and lines[0].startswith("line 00000")
    assert len(result.evidence().data["stdout_tail"]) == 4000  # evidence keeps a tail only
