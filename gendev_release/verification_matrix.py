"""The verification matrix: how each of the 64 seed items is decided, and the test that shows it failing.

Each duty module declares, next to the code that decides them, a ``PROOFS`` mapping for the read,
verify and check items of its steps (``"<step>.<kind>" -> ItemProof``). The 16 report items share
one mechanism (:meth:`gendev_release.report.ReportBuilder.finish`: the report is written to the
run's evidence store, read back and checked against the chain and against itself), so their rows
are built here. ``gendev-release items [--json|--markdown]`` prints the matrix; the committed
``docs/verification-items.md`` is its Markdown output (a test keeps the two equal), and
``tests/test_verification_matrix.py`` fails when an item has no test, or when the named test is not
marked for the item and does not show it failing.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass

from gendev_release.catalogue import all_steps

#: Where each step's duty (and so its ``PROOFS``) lives.
DUTY_MODULES: dict[str, str] = {
    "readiness": "gendev_release.duties.preparation", "risk_assessment": "gendev_release.duties.preparation",
    "release_plan": "gendev_release.duties.planning", "notifications": "gendev_release.duties.planning",
    "build": "gendev_release.duties.build", "dependencies": "gendev_release.duties.build",
    "provisioning": "gendev_release.duties.environment", "hardening": "gendev_release.duties.environment",
    "execute_strategy": "gendev_release.duties.deployment", "monitoring_alerts": "gendev_release.duties.monitoring",
    "smoke_tests": "gendev_release.duties.testing", "qa": "gendev_release.duties.testing",
    "observability": "gendev_release.duties.observability", "performance": "gendev_release.duties.observability",
    "release_notes": "gendev_release.duties.post_deployment", "training": "gendev_release.duties.post_deployment",
}

#: The parametrized test that fails every step's report item (one case per step id).
REPORT_ITEM_TEST = "tests/test_report_items.py::test_report_item_fails_when_the_store_does_not_keep_it"


@dataclass(frozen=True)
class ItemProof:
    """How one item is decided.

    :param evidence: what the run gathers for it (a digest, an exit code, an HTTP answer, a sample).
    :param oracle: what the evidence is judged against that the duty did not write itself: the git
        range, the spec, the live service, another tool's output from this run, another step's
        evidence or Airflow's own state.
    :param fails_when: the realistic input that makes the item (and the step's gate) fail.
    :param test: the pytest node id of the test that shows that failure; it carries
        ``@pytest.mark.item("<item id>")`` and asserts the failure with ``assert_item_fails``.
    """

    evidence: str
    oracle: str
    fails_when: str
    test: str


@dataclass(frozen=True)
class MatrixRow:
    item_id: str
    phase: int
    step_id: str
    agent: str
    kind: str
    text: str
    evidence: str
    oracle: str
    fails_when: str
    test: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def report_proof(step_id: str) -> ItemProof:
    return ItemProof(
        evidence="the step's report (items read/verify/check, blockers, deliverables) written to the run's "
                 "evidence store and read back: its sha256 and its position in the hash chain",
        oracle="the evidence store's hash chain (chain.jsonl) and the report's own verifications: every failed "
               "item listed as a blocker, the status following from the items, every deliverable present "
               "with its recorded digest",
        fails_when="the store cannot be written or does not give the report back intact (an unwritable "
                   "evidence folder, a record altered after it was chained, a deliverable changed after it "
                   "was registered)",
        test=f"{REPORT_ITEM_TEST}[{step_id}]",
    )


def declared_proofs() -> dict[str, ItemProof]:
    """Every ``PROOFS`` entry the duty modules declare (read, verify and check items)."""
    proofs: dict[str, ItemProof] = {}
    for module_name in dict.fromkeys(DUTY_MODULES.values()):
        module = importlib.import_module(module_name)
        proofs.update(getattr(module, "PROOFS", {}))
    return proofs


def matrix() -> list[MatrixRow]:
    """The 64 rows in catalogue order; an item without a declared proof has empty fields."""
    proofs = declared_proofs()
    rows = []
    for phase, step in all_steps():
        for item_id, kind, text in zip(step.item_ids(), ("read", "verify", "check", "report"), step.items,
                                       strict=True):
            proof = report_proof(step.id) if kind == "report" else proofs.get(item_id)
            rows.append(MatrixRow(
                item_id=item_id, phase=phase.number, step_id=step.id, agent=step.agent, kind=kind, text=text,
                evidence=proof.evidence if proof else "", oracle=proof.oracle if proof else "",
                fails_when=proof.fails_when if proof else "", test=proof.test if proof else ""))
    return rows


def unknown_proofs() -> list[str]:
    """Declared proofs whose key is not a read/verify/check item of the catalogue (a typo)."""
    known = {row.item_id for row in matrix() if row.kind != "report"}
    return sorted(set(declared_proofs()) - known)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown() -> str:
    """The matrix as the Markdown document committed at ``docs/verification-items.md``."""
    lines = [
        "# Verification matrix",
        "",
        "Generated by `gendev-release items --markdown` (do not edit by hand; "
        "`tests/test_verification_matrix.py` keeps it equal to the code).",
        "",
        "Each of the seed's 64 mandatory verification items, the evidence the run gathers for it, the",
        "independent oracle it is judged against, what makes it fail, and the test that shows it failing",
        "(the test makes the item, and so the step's gate, fail with a realistic input).",
        "",
    ]
    current = None
    for row in matrix():
        if row.step_id != current:
            current = row.step_id
            lines += ["", f"## Phase {row.phase}: {row.step_id} ({row.agent})", "",
                      "| Item | Seed text | Evidence | Oracle | Fails when | Test |",
                      "|---|---|---|---|---|---|"]
        lines.append("| " + " | ".join(_cell(value) for value in (
            f"`{row.item_id}`", row.text, row.evidence, row.oracle, row.fails_when,
            f"`{row.test}`" if row.test else "**none**")) + " |")
    return "\n".join(lines) + "\n"


def text_table() -> str:
    out = []
    for row in matrix():
        out.append(f"{row.item_id:32} {row.text}")
        for label, value in (("evidence", row.evidence), ("oracle", row.oracle), ("fails when", row.fails_when),
                             ("test", row.test or "NONE")):
            out.append(f"    {label:11} {value}")
    return "\n".join(out) + "\n"
