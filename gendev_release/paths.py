"""Paths named by a spec stay inside their documented folder (spec folder, workdir, gendev home).

Two checks, for two moments:

* :func:`check_relative` at load time, without touching the disk: the text is a relative path,
  not blank, without ``..`` components, NUL or control characters.
* :func:`resolve_inside` at run time: the path is joined to its base folder and resolved
  (symlinks followed); it must still lie inside the base, or :class:`PathEscape` is raised naming
  the spec field. :func:`ensure_inside` does the second half for a path that is already joined
  (a glob match).

No Airflow import here: ``gendev-release validate`` uses this module.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from gendev_release.errors import GendevError

#: Longest path text a spec may give (far above any real layout, far below trouble).
MAX_PATH_CHARS = 1024

#: C0 controls, DEL and C1 controls: never part of a path a person typed.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class PathEscape(GendevError, ValueError):
    """A path named by the spec resolves outside the folder it is documented to be in.

    :param field: the spec field, e.g. ``qa.suites.0.junit``.
    :param value: the text the spec gave.
    :param base: the folder the path must stay in.
    :param why: what is wrong, e.g. ``resolves to /etc/passwd (through a symbolic link)``.
    """

    retryable = False

    def __init__(self, field: str, value: str, base: Path, why: str) -> None:
        self.field = field
        self.value = value
        self.base = base
        super().__init__(f"{field}: {value!r} {why}; it must stay inside {base}")


def check_relative(value: str, *, what: str = "path", base: str = "its folder") -> str:
    """Refuse (``ValueError``) a path text that is blank, absolute, climbs with ``..`` or holds control characters.

    :param value: the path text from the spec.
    :param what: how the message names the value (``path``, ``glob``, ``pathspec``).
    :param base: the folder the path is relative to, for the message (``the spec folder``).
    :return: the value unchanged, so the function can serve as a pydantic validator.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must not be empty; give a file relative to {base}")
    if len(value) > MAX_PATH_CHARS:
        raise ValueError(f"{what} is {len(value)} characters long; at most {MAX_PATH_CHARS}")
    if _CONTROL_RE.search(value):
        raise ValueError(f"{what} {value!r} contains a control character; remove it")
    if value != value.strip():
        raise ValueError(f"{what} {value!r} has leading or trailing spaces; remove them")
    if value.startswith(("/", "\\")) or (len(value) > 1 and value[1] == ":" and value[0].isalpha()):
        raise ValueError(f"{what} {value!r} is absolute; give it relative to {base}")
    if value.startswith("~"):
        raise ValueError(f"{what} {value!r} starts with '~' (a home folder); give it relative to {base}")
    if ".." in PurePosixPath(value.replace("\\", "/")).parts:
        raise ValueError(f"{what} {value!r} climbs out of {base} with '..'; name a file inside it")
    return value


def ensure_inside(base: Path, path: Path, field: str, value: str | None = None) -> Path:
    """``path`` with symlinks resolved; :class:`PathEscape` when it lands outside ``base``.

    :param base: the folder the path must stay in (resolved here too).
    :param path: an already joined path, e.g. a glob match under ``base``.
    :param field: the spec field the path comes from, for the message.
    :param value: the spec's text, for the message (default: ``path``).
    """
    root = Path(base).resolve()
    candidate = Path(path).resolve()
    if candidate != root and root not in candidate.parents:
        raise PathEscape(field, value if value is not None else str(path), root,
                         f"resolves to {candidate} (through a symbolic link)")
    return candidate


def resolve_inside(base: Path, relative: str | os.PathLike[str], field: str) -> Path:
    """``base / relative`` with symlinks resolved; :class:`PathEscape` when it lands outside ``base``.

    The text is checked as :func:`check_relative` does first, so an absolute path or ``..`` is
    refused even where the spec was never validated (a model built in code).

    :param base: the documented folder (spec folder, workdir, artifacts dir, gendev home).
    :param relative: the spec's path text.
    :param field: the spec field, named in the message (``readiness.runbook``).
    """
    text = os.fspath(relative)
    try:
        check_relative(text)
    except ValueError as exc:
        raise PathEscape(field, text, Path(base), f"is refused ({exc})") from None
    return ensure_inside(base, Path(base).resolve() / text, field, text)


def glob_inside(base: Path, pattern: str, field: str) -> list[Path]:
    """The regular files under ``base`` matching ``pattern``, sorted; each must resolve inside ``base``.

    The matches keep their names (a symlink inside ``base`` to another file inside it is listed
    under its own name); one that resolves outside raises :class:`PathEscape` naming ``field``.
    """
    try:
        check_relative(pattern, what="glob")
    except ValueError as exc:
        raise PathEscape(field, pattern, Path(base), f"is refused ({exc})") from None
    matches = sorted(path for path in Path(base).glob(pattern) if path.is_file())
    for path in matches:
        ensure_inside(base, path, field, pattern)
    return matches
