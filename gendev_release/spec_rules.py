"""The spec's rules that are not models: the run's version, the service name, commands, output and
repo paths, time zones; and the messages a broken rule gives.

Each rule is a plain function that returns its value unchanged or raises ``ValueError`` with a
message that says how to fix it; the models in :mod:`gendev_release.spec` call them from their
validators, and the run-time paths (``--set``, the trigger form, :mod:`gendev_release.commands`)
call the same functions.

Commands are argv lists, never shell strings; placeholders such as ``{version}`` are replaced by
whole argv elements at run time (see :mod:`gendev_release.commands`). An operator may restrict the
programs they name with ``GENDEV_ALLOWED_EXECUTABLES`` (:func:`check_allowed_program`).
The last section turns pydantic's errors into :class:`~gendev_release.errors.SpecProblem` entries
whose messages say how to fix them. Nothing here imports Airflow.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import ValidationError

from gendev_release.errors import SpecProblem
from gendev_release.paths import check_relative, resolve_inside


def clip(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to about ``limit`` characters: a 5,000-character value stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


_NUMBER = r"(?:0|[1-9][0-9]*)"
_PRERELEASE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)"
_BUILD_ID = r"[0-9a-zA-Z-]+"
#: A run's version: semantic versioning in ASCII (``[0-9]``, never ``\d``). ``(?!\n)`` before ``$``
#: stops Python's ``re.search`` (Airflow validates Params with it) from accepting a trailing
#: newline; JavaScript reads the pattern the same way.
VERSION_PATTERN = (
    rf"^{_NUMBER}\.{_NUMBER}\.{_NUMBER}"
    rf"(?:-{_PRERELEASE_ID}(?:\.{_PRERELEASE_ID})*)?"
    rf"(?:\+{_BUILD_ID}(?:\.{_BUILD_ID})*)?(?!\n)$"
)
VERSION_RE = re.compile(VERSION_PATTERN)
#: Longest version a run may name.
VERSION_MAX_LENGTH = 64
#: The version rule in words (messages, the trigger form's description).
VERSION_FORMAT = (f"MAJOR.MINOR.PATCH with an optional -PRERELEASE and +BUILD, ASCII, at most "
                  f"{VERSION_MAX_LENGTH} characters, e.g. 1.4.2")
#: A service name (the DAG id is ``release__<service>``).
SERVICE_PATTERN = r"^[a-z][a-z0-9-]{0,39}$"

#: Placeholders a command element may contain; each is replaced by one whole value.
PLACEHOLDERS = frozenset({"python", "version", "previous_version", "service", "workdir", "spec_dir",
                          "artifacts_dir", "port", "environment", "url", "flags_file"})
PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")
_SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh", "csh", "tcsh", "fish", "cmd", "cmd.exe",
                     "powershell", "pwsh"})
_EXEC_WRAPPERS = frozenset({"env", "timeout", "nice", "nohup", "sudo", "doas", "xargs", "stdbuf", "setsid",
                            "exec", "command", "chroot", "unshare", "runuser", "su"})
_SHELL_OPERATORS = frozenset({";", "&&", "||", "|", ">", ">>", "<", "<<", "&", "|&"})
_SHELL_SUBST = ("$(", "`", "${")


def check_version(value: Any) -> str:
    """The one version rule, on every path (``--set``, the trigger form and REST,
    :func:`gendev_release.spec.run_params`).

    :param value: the version as given; it must be text, not a YAML or JSON number.
    :return: the value unchanged (never stripped: ``" 1.0.0"`` and ``"1.0.0\\n"`` are refused).
    :raises ValueError: with a message that states the format (:data:`VERSION_FORMAT`).
    """
    if not isinstance(value, str):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError(f"{value!r} is a number, not text; quote it, e.g. \"1.4.2\" ({VERSION_FORMAT})")
        raise ValueError(f"version must be text, not {type(value).__name__}; use {VERSION_FORMAT}")
    if len(value) > VERSION_MAX_LENGTH:
        raise ValueError(f"{clip(value)} is {len(value)} characters long; use {VERSION_FORMAT}")
    if not VERSION_RE.fullmatch(value):
        raise ValueError(f"{clip(value)} is not a semantic version; use {VERSION_FORMAT}")
    return value


def check_argv(argv: list[str], *, placeholders: bool = True) -> list[str]:
    """Refuse a command that tries to reach a shell; return it unchanged otherwise.

    This stops accidental shell use (``make build && deploy`` written as one string), not a hostile
    spec author: ``python -c ...``, ``git -c core.pager=...`` or any program that runs code still
    passes. An operator who must restrict what specs run sets ``GENDEV_ALLOWED_EXECUTABLES``
    (:func:`check_allowed_program`).

    ``placeholders=False`` skips the ``{name}`` check: a final, already substituted argv may hold
    literal braces (``git cat-file -e SHA^{commit}``, a path with braces in a value).
    """
    if not argv:
        raise ValueError("command must not be empty; give the program and its arguments as a list")
    program = Path(argv[0]).name
    if program in _SHELLS:
        raise ValueError(f"command runs the shell {argv[0]!r}; give the program and its arguments directly")
    if program in _EXEC_WRAPPERS:  # env sh -c ..., timeout 5 bash ...: the wrapper would start a shell
        for position, element in enumerate(argv[1:], start=1):
            if Path(element).name in _SHELLS:
                raise ValueError(f"element {position} {element!r} runs a shell through {program!r}; "
                                 "give the program and its arguments directly")
    for index, element in enumerate(argv):
        if element.strip() in _SHELL_OPERATORS:
            raise ValueError(f"element {index} {element!r} is shell syntax; commands never run in a shell")
        if any(token in element for token in _SHELL_SUBST):
            raise ValueError(
                f"element {index} {element!r} contains shell substitution; use a {{placeholder}} instead"
            )
        for name in PLACEHOLDER_RE.findall(element) if placeholders else ():
            if name not in PLACEHOLDERS:
                raise ValueError(
                    f"element {index} uses unknown placeholder {{{name}}}; known: "
                    + ", ".join(sorted(PLACEHOLDERS))
                )
    return argv


#: Comma-separated program names or absolute paths; when set, spec commands may run only these.
ALLOWED_EXECUTABLES_ENV = "GENDEV_ALLOWED_EXECUTABLES"


def allowed_executables() -> tuple[str, ...] | None:
    """The operator's allowlist (``GENDEV_ALLOWED_EXECUTABLES``); ``None`` when unset: no allowlist.

    Set but empty, nothing may run.
    """
    raw = os.environ.get(ALLOWED_EXECUTABLES_ENV)
    if raw is None:
        return None
    return tuple(dict.fromkeys(entry.strip() for entry in raw.split(",") if entry.strip()))


def check_allowed_program(argv: list[str], *, python: str | None = None) -> list[str]:
    """Refuse a command whose program is not on the operator's allowlist; return it unchanged otherwise.

    A name on the list (``git``) allows that bare name, found on ``PATH``; an absolute path on the
    list (``/usr/bin/git``) allows exactly that path, and a name never allows a path. ``{python}``
    in a spec command counts as the name ``python``, and so does ``python`` (the interpreter that
    replaced ``{python}``) in a final argv. Without ``GENDEV_ALLOWED_EXECUTABLES`` every program
    passes.

    :param argv: a spec command (placeholders unsubstituted) or a final argv.
    :param python: the interpreter path that stands for ``{python}`` in a final argv.
    :raises ValueError: naming the program and the list.
    """
    allowed = allowed_executables()
    if allowed is None or not argv:
        return argv
    program = argv[0]
    name = "python" if program == "{python}" or (python is not None and program == python) else program
    if name not in allowed:
        listed = ", ".join(allowed) or "empty: nothing may run"
        raise ValueError(f"program {program!r} is not in {ALLOWED_EXECUTABLES_ENV} ({listed}); "
                         "use a listed program or ask the operator to add it")
    return argv


def check_command(argv: list[str]) -> list[str]:
    """The load-time rule for every spec command: no shell (:func:`check_argv`), an allowed program."""
    return check_allowed_program(check_argv(argv))


#: Folders ``risk.backup.output`` may start with; without one it is relative to ``{workdir}``.
OUTPUT_BASES = ("workdir", "artifacts_dir")


def split_output(value: str) -> tuple[str, str]:
    """``risk.backup.output`` as ``(base, relative)``, base ``workdir`` or ``artifacts_dir``."""
    for base in OUTPUT_BASES:
        prefix = f"{{{base}}}/"
        if value.startswith(prefix):
            return base, value[len(prefix):]
    return "workdir", value


def check_output_path(value: str) -> str:
    """A file a run writes: relative to the workdir, optionally written ``{workdir}/...`` or ``{artifacts_dir}/...``."""
    base, relative = split_output(value)
    if "{" in relative or "}" in relative:
        raise ValueError(f"{clip(value)} uses a placeholder other than a leading {{workdir}}/ or "
                         "{artifacts_dir}/; give a path relative to the run's workdir")
    check_relative(relative, base=f"{{{base}}}")
    return value


def resolve_output(value: str, *, workdir: Path, artifacts_dir: Path, field: str) -> Path:
    """A :func:`check_output_path` value as a path inside the run's workdir or artifacts dir.

    :raises gendev_release.paths.PathEscape: naming ``field`` when it resolves outside.
    """
    base, relative = split_output(value)
    return resolve_inside(workdir if base == "workdir" else artifacts_dir, relative, field)


def check_repo(value: str) -> str:
    """``risk.repo``: only ``..`` components (a folder above the spec) or a plain folder inside the spec folder."""
    parts = PurePosixPath(value).parts if value else ()
    if parts and all(part == ".." for part in parts):
        return value
    if ".." in PurePosixPath(value.replace("\\", "/")).parts and not value.startswith(("/", "\\")):
        raise ValueError(f"{clip(value)} mixes '..' with folder names; give only '..' components (a folder "
                         "above the spec, e.g. ../..) or a folder inside the spec folder")
    return check_relative(value, what="repo", base="the spec folder")


#: IANA names are ASCII words joined by '/' ("America/Argentina/Buenos_Aires" is 30 characters).
_TIMEZONE_RE = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*")
_TIMEZONE_MAX_LENGTH = 64


def check_timezone(value: str) -> str:
    """An IANA time zone name; refused (``ValueError``) before the tz database is asked about odd text.

    The name becomes a file name inside the tz database: a folder (``Europe``), a 300-character
    name or a NUL would otherwise surface as ``IsADirectoryError``, ``OSError`` or ``ValueError``.
    """
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    unknown = f"unknown time zone {clip(value)}; use an IANA name such as Europe/Berlin"
    if len(value) > _TIMEZONE_MAX_LENGTH or not _TIMEZONE_RE.fullmatch(value):
        raise ValueError(unknown)
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # IsADirectoryError is an OSError
        raise ValueError(unknown) from exc
    return value


# ------------------------------------------------------------------- messages of broken rules
#: Why ``version`` is no longer a spec field (reported where a spec still has it).
VERSION_NOT_IN_SPEC = ('no longer part of the spec: every run names its version (trigger conf {"version": "1.4.2"} '
                       "or `--set version=1.4.2`); remove this line")


def field_name(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as the spec's dotted field path (``risk.backup.output``)."""
    return ".".join(str(part) if str(part) else '""' for part in loc) or "(top level)"


def validation_problems(exc: ValidationError) -> list[SpecProblem]:
    """pydantic's errors as :class:`SpecProblem` entries: the field's dotted path and a message that
    says how to fix it (a cross-field rule's ``@field: message`` names its own field).
    """
    problems = []
    for error in exc.errors():
        field = field_name(tuple(error["loc"]))
        message = error["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        if error["type"] == "extra_forbidden":
            message = (VERSION_NOT_IN_SPEC if tuple(error["loc"]) == ("version",) else
                       "unknown field (check the spelling; see `gendev-release schema`)")
        elif error["type"] == "missing":
            message = "required field is missing"
        elif error["type"] == "finite_number":
            message = f"{clip(error.get('input'))} is not a finite number; .nan and .inf are refused, give a value"
        elif error["type"] == "string_pattern_mismatch":
            message = _pattern_message(error.get("input"), error.get("ctx", {}).get("pattern", ""))
        if message.startswith("@") and ": " in message:  # a cross-field rule naming its field
            sub, message = message[1:].split(": ", 1)
            field = sub if field == "(top level)" else f"{field}.{sub}"
        problems.append(SpecProblem(field, message))
    return problems


def _pattern_message(value: Any, pattern: str) -> str:
    if pattern == SERVICE_PATTERN:
        return f"{clip(value)} is not a valid service name; use lower-case letters, digits and '-', max 40"
    return f"{clip(value)} does not match the pattern {pattern}"
