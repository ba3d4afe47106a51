"""The catalogue's deliverables are checked against an evidence store's manifest."""

from __future__ import annotations

from gendev_release.catalogue import PHASES, deliverable_gaps


def _full_manifest() -> list[dict[str, object]]:
    return [{"step": phase.steps[0].id, "name": name, "current": True}
            for phase in PHASES for name in phase.deliverables]


def test_the_seed_has_39_phase_deliverables() -> None:
    assert sum(len(phase.deliverables) for phase in PHASES) == 39
    assert deliverable_gaps(_full_manifest()) == []


def test_a_missing_deliverable_is_named_with_its_phase() -> None:
    manifest = [line for line in _full_manifest() if line["name"] != "Lessons learned"]
    assert deliverable_gaps(manifest) == ["phase 8: Lessons learned"]


def test_a_deliverable_of_another_phase_or_an_earlier_attempt_does_not_count() -> None:
    manifest = _full_manifest()
    for line in manifest:
        if line["name"] == "Risk assessment":
            line["step"] = "build"  # stored by a phase-3 step
        if line["name"] == "Release notes":
            line["current"] = False  # only an earlier attempt's copy
    assert deliverable_gaps(manifest) == ["phase 1: Risk assessment", "phase 8: Release notes"]
