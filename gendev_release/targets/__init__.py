"""Deployment targets: the registry of kinds and the factory the operators use."""

from __future__ import annotations

from pathlib import Path

from gendev_release.errors import TargetError
from gendev_release.spec import ReleaseSpec
from gendev_release.targets.base import Target
from gendev_release.targets.local import LocalTarget

#: Target kinds by the name a spec's ``target.kind`` uses.
TARGETS: dict[str, type[Target]] = {"local": LocalTarget}


def make_target(spec: ReleaseSpec, home: Path) -> Target:
    """The target a release spec names, keeping its state under ``home``.

    :raises TargetError: when ``spec.target.kind`` is not a registered kind.
    """
    kind = spec.target.kind
    cls = TARGETS.get(kind)
    if cls is None:
        raise TargetError(f"unknown target kind {kind!r}; known kinds: {', '.join(sorted(TARGETS))}")
    # Every kind takes (its target spec section, the service name, the gendev home).
    return cls(spec.target, spec.service, Path(home))  # type: ignore[call-arg]


__all__ = ["TARGETS", "LocalTarget", "Target", "make_target"]
