"""Fixtures for the builtin duties' tests; the doubles and plain helpers they use are in ``duty_helpers.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from duty_helpers import FakeService, FakeTarget, StubService, StubTarget, commit, git, make_spec

from gendev_release.targets.base import Target


# ================================================================================= phases 1-4
@pytest.fixture
def stub_target() -> Iterator[StubTarget]:
    """Nothing deployed yet (first deployment)."""
    target = StubTarget()
    try:
        yield target
    finally:
        target.down()


@pytest.fixture
def live_target() -> Iterator[StubTarget]:
    """1.0.0 active and healthy on the blue slot."""
    target = StubTarget(StubService("1.0.0"))
    try:
        yield target
    finally:
        target.down()


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A repository with two conventional commits: ``feat(api): ...`` and ``fix: ...``.

    It lies inside the spec folder :func:`duty_helpers.make_ctx` uses (``risk.repo: repo``): the
    spec refuses an absolute ``risk.repo``.
    """
    repo = tmp_path / "spec" / "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "--quiet", "-b", "main")
    commit(repo, "feat(api): add items endpoint\n\nLists items.", {"src/app.py": "print('v1')\n"})
    commit(repo, "fix: handle empty list", {"src/app.py": "print('v2')\n", "README.md": "demo\n"})
    return repo


# ================================================================================= phases 5-8
@pytest.fixture
def fake_target() -> Iterator[FakeTarget]:
    """Blue (1.0.0) takes traffic, switched by an earlier run; nothing staged."""
    target = FakeTarget()
    target.add_slot("blue", FakeService("1.0.0"), "manual__earlier")
    target.active = "blue"
    target.switched_by_run = "manual__earlier"
    try:
        yield target
    finally:
        target.close()


@pytest.fixture
def empty_target() -> Iterator[FakeTarget]:
    target = FakeTarget()
    try:
        yield target
    finally:
        target.close()


@pytest.fixture
def local_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Target]:
    """The real LocalTarget with the demo service: 1.0.0 live on loopback, switched by an earlier run.

    Its home is ``tmp_path / "home"``, the one :func:`duty_helpers.make_ctx` uses. Every process it
    started is stopped afterwards (and dies by itself after GENDEV_MAX_LIFETIME anyway).
    """
    local = pytest.importorskip("gendev_release.targets.local")
    pytest.importorskip("gendev_release.demo.service")
    pytest.importorskip("gendev_release.demo.router")
    monkeypatch.setenv("GENDEV_MAX_LIFETIME", "300")
    spec = make_spec(tmp_path / "spec")
    target = local.LocalTarget(spec.target, spec.service, tmp_path / "home")
    try:
        first = target.stage("1.0.0", "manual__earlier")
        target.switch(first.slot, "manual__earlier")
        yield target
    finally:
        target.down()
