"""Deployment targets: the registry of kinds and the factory the operators use.

Every kind speaks revisions and weights (:class:`~gendev_release.targets.base.Target`) and keeps its
state in the one store of :mod:`gendev_release.targets.state`.
"""

from __future__ import annotations

from pathlib import Path

from gendev_release.errors import TargetError
from gendev_release.spec import LocalTargetSpec, ReleaseSpec
from gendev_release.targets.base import Revision, RevisionTarget, Target
from gendev_release.targets.command import CommandTarget
from gendev_release.targets.http import HttpTarget
from gendev_release.targets.local import LocalTarget
from gendev_release.targets.state import TargetStore

#: Target kinds by the name a spec's ``target.kind`` uses.
TARGETS: dict[str, type[RevisionTarget]] = {"local": LocalTarget, "command": CommandTarget, "http": HttpTarget}


def make_target(spec: ReleaseSpec, home: Path) -> Target:
    """The target a release spec names, keeping its state under ``home``.

    :raises TargetError: when ``spec.target.kind`` is not a registered kind.
    """
    kind = spec.target.kind
    cls = TARGETS.get(kind)
    if cls is None:
        raise TargetError(f"unknown target kind {kind!r}; known kinds: {', '.join(TARGETS)}")
    # Every kind takes (its target spec section, the service name, the gendev home).
    if isinstance(spec.target, LocalTargetSpec):
        from gendev_release.strategies.flags import local_flags_file

        return LocalTarget(spec.target, spec.service, Path(home), flags_file=local_flags_file(spec, Path(home)))
    return cls(spec.target, spec.service, Path(home))


__all__ = ["TARGETS", "CommandTarget", "HttpTarget", "LocalTarget", "Revision", "RevisionTarget", "Target",
           "TargetStore", "make_target"]
