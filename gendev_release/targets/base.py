"""The deployment target interface: where the service runs and how traffic moves.

Kinds: ``local`` today (processes on loopback, blue/green slots behind a small router);
``command`` and ``http`` come later. The interface already speaks of weights so that canary and
rolling strategies can be added without changing it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class SlotInfo:
    """One deployed version: its slot name, version, base URL, process id and the run that deployed it."""

    slot: str
    version: str
    url: str
    pid: int | None = None
    started_at: str | None = None
    run_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ResourceChange:
    """A planned change, shaped like a Terraform plan's ``resource_changes`` entry."""

    address: str
    actions: tuple[str, ...]  # ("create",), ("update",), ("delete",), ("delete", "create"), ("no-op",)
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None

    @property
    def destructive(self) -> bool:
        return "delete" in self.actions

    def as_dict(self) -> dict[str, Any]:
        return {"address": self.address, "change": {"actions": list(self.actions), "before": self.before,
                                                    "after": self.after}}


@dataclass
class TargetStatus:
    """A snapshot of the target: which slot takes traffic, which is kept for rollback."""

    service: str
    router_url: str | None
    active: SlotInfo | None
    previous: SlotInfo | None
    staged: SlotInfo | None
    weights: dict[str, int] = field(default_factory=dict)
    switched_by_run: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


class Target(ABC):
    """Where a service runs. Every method is idempotent per (run, version) where it can be."""

    kind: str = "abstract"

    @abstractmethod
    def status(self) -> TargetStatus:
        """Current state, read from durable storage (never only from memory)."""

    def current_version(self) -> str | None:
        active = self.status().active
        return active.version if active else None

    @abstractmethod
    def url(self) -> str | None:
        """The stable URL clients use (the router); None when nothing is deployed yet."""

    @abstractmethod
    def plan(self, version: str) -> list[ResourceChange]:
        """What :meth:`stage` would change, without changing anything."""

    @abstractmethod
    def stage(self, version: str, run_id: str) -> SlotInfo:
        """Start ``version`` on the idle slot without moving traffic. Re-staging the same version is a no-op."""

    @abstractmethod
    def switch(self, slot: str, run_id: str) -> TargetStatus:
        """Move all traffic to ``slot`` atomically; the old active slot is kept as ``previous``."""

    @abstractmethod
    def rollback(self, run_id: str, to_version: str | None = None) -> TargetStatus:
        """Move traffic back to ``previous``; raises TargetError when there is nothing to go back to.

        :param to_version: the version the previous slot must run (the last verified release); a
            previous slot running anything else is refused rather than given traffic.
        """

    @abstractmethod
    def retire_previous(self, run_id: str) -> str | None:
        """Stop the previous slot (after a verified rollback it holds the failed version); None if none."""

    @abstractmethod
    def withdraw(self, run_id: str) -> TargetStatus:
        """First release failed after traffic moved: stop serving it (there is nothing to go back to)."""

    @abstractmethod
    def discard_staged(self, run_id: str) -> str | None:
        """Stop the slot ``run_id`` staged if it never received traffic (abort path); what was done, or None."""

    @abstractmethod
    def down(self) -> list[str]:
        """Stop every process of this target; returns what was stopped."""
