"""Running the commands a spec names: argv lists, placeholders as whole values, never a shell."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from gendev_release.report import Evidence
from gendev_release.spec_rules import PLACEHOLDER_RE, check_allowed_program, check_argv

_TAIL = 4000  # what evidence keeps of a command's output
#: What a CommandResult keeps of stdout for its caller to parse (a `git log` of max_commits lines fits).
_KEPT_STDOUT = 8 * 1024 * 1024

#: Programs the engine itself runs (risk assessment reads history with git): always allowed at run
#: time. A spec command naming one is still judged against GENDEV_ALLOWED_EXECUTABLES at load time.
ENGINE_PROGRAMS = frozenset({"git"})


@dataclass(frozen=True)
class CommandResult:
    argv: list[str]
    exit_code: int
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def evidence(self, summary: str = "") -> Evidence:
        return Evidence(
            kind="command", source=" ".join(self.argv),
            summary=summary or f"exit {self.exit_code}" + (" (timed out)" if self.timed_out else ""),
            data={"argv": self.argv, "exit_code": self.exit_code, "seconds": round(self.seconds, 3),
                  "stdout_tail": self.stdout[-_TAIL:], "stderr_tail": self.stderr[-_TAIL:],
                  "timed_out": self.timed_out},
        )


def substitute_text(text: str, values: dict[str, str]) -> str:
    """Replace ``{name}`` placeholders in one string (an argv element, an output path).

    :raises KeyError: naming the first placeholder without a value.
    """
    return PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], text)


def substitute(argv: list[str], values: dict[str, str]) -> list[str]:
    """Replace ``{name}`` placeholders; the result stays one argv element per template element."""
    check_argv(argv)
    return [substitute_text(element, values) for element in argv]


def run_command(argv: list[str], *, cwd: Path, timeout: float = 600.0,
                env: dict[str, str] | None = None) -> CommandResult:
    """Run an argv list (no shell) and capture its exit code and output tails.

    :raises ValueError: when the argv reaches for a shell, or its program is not in
        ``GENDEV_ALLOWED_EXECUTABLES`` (the interpreter running this counts as ``python``; the
        engine's own :data:`ENGINE_PROGRAMS` always pass).
    """
    check_argv(argv, placeholders=False)  # a final argv: literal braces are data, not placeholders
    if argv[0] not in ENGINE_PROGRAMS:
        check_allowed_program(argv, python=sys.executable)
    started = time.monotonic()
    full_env = {**os.environ, **(env or {})}
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              env=full_env, stdin=subprocess.DEVNULL, check=False)
    except FileNotFoundError as exc:
        if not Path(cwd).is_dir():  # subprocess reports a missing cwd as FileNotFoundError too
            return CommandResult(argv, 127, "", f"working directory not found: {cwd}", time.monotonic() - started)
        return CommandResult(argv, 127, "", f"program not found: {exc.filename}", time.monotonic() - started)
    except PermissionError as exc:
        return CommandResult(argv, 126, "", f"not executable: {exc}", time.monotonic() - started)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return CommandResult(argv, -1, out, err, time.monotonic() - started, timed_out=True)
    if len(proc.stdout) > _KEPT_STDOUT:  # a cut output must not parse as a shorter, complete one
        return CommandResult(argv, 1, "", f"output larger than {_KEPT_STDOUT} characters; not kept",
                             time.monotonic() - started)
    return CommandResult(argv, proc.returncode, proc.stdout, proc.stderr[-_TAIL * 4:],
                         time.monotonic() - started)
