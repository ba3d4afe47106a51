"""The ``command`` target: any CLI deploys (helm, kubectl, a script), driven by argv templates.

``target: {kind: command, deploy: [...], set_weights: [...], status: [...], promote: [...],
rollback: [...], retire: [...]}``. Every template is an argv list run without a shell
(:func:`gendev_release.commands.run_command`); a placeholder is replaced inside one argv element
by a value that was checked first, so nothing a user types can add an argument or reach a shell:

==================  ==========================================================================
``{version}``       the run's version, semantic versioning (``1.0;rm -rf /`` is refused)
``{revision}``      a revision id: ``r1``, ``r2``, ... (:data:`~gendev_release.targets.state.REVISION_PATTERN`)
``{weights_json}``  the split as compact JSON written by the target: ``{"r1":90,"r2":10}``
``{service}``       the spec's service name
``{python}``        the interpreter running the release
==================  ==========================================================================

Which command runs for a traffic change: ``rollback`` when traffic goes back wholly to the
previous revision (if set), ``promote`` when one revision takes all the traffic from another (if
set), ``set_weights`` otherwise. After each, the ``status`` command's JSON is read back and must
show what was asked (:mod:`gendev_release.targets.remote`).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from gendev_release.commands import CommandResult, run_command, substitute_text
from gendev_release.errors import TargetError
from gendev_release.spec import CommandTargetSpec
from gendev_release.spec_rules import SERVICE_PATTERN, check_argv, check_version, clip
from gendev_release.targets.base import check_weights
from gendev_release.targets.remote import RemoteTarget, ReportedStatus, parse_status
from gendev_release.targets.state import RevisionRecord, TargetState, check_revision

OUTPUT_TAIL = 2000


def weights_json(weights: dict[str, int]) -> str:
    """The split as the templates get it: compact JSON, keys sorted (``{}``: no traffic)."""
    return json.dumps(check_weights(weights), sort_keys=True, separators=(",", ":"))


def check_value(name: str, value: str, service: str) -> str:
    """A placeholder value, checked by the rule of its name before it reaches an argv.

    :raises TargetError: naming the placeholder and the value; nothing has run.
    """
    try:
        if name == "version":
            check_version(value)
        elif name == "revision":
            check_revision(value)
        elif name == "weights_json":
            parsed = json.loads(value)
            if not isinstance(parsed, dict) or weights_json(parsed) != value:
                raise ValueError("not the compact JSON split the target writes")
        elif name == "service":
            if value != service or not re.fullmatch(SERVICE_PATTERN, value):
                raise ValueError("not this target's service name")
        elif name == "python":
            if value != sys.executable:
                raise ValueError("not the interpreter running the release")
        else:
            raise ValueError("no command target template fills it")
    except (ValueError, TargetError) as exc:
        raise TargetError(f"refused {{{name}}} = {clip(value)}: {exc}; nothing was run") from None
    return value


class CommandTarget(RemoteTarget):
    """Revisions deployed, weighted and retired by the spec's commands; the status command is the truth."""

    kind = "command"
    spec: CommandTargetSpec

    def __init__(self, spec: CommandTargetSpec, service: str, home: Path) -> None:
        super().__init__(spec, service, home)

    def run(self, field: str, **values: str) -> CommandResult:
        """Run the template ``target.<field>`` with checked placeholder values; its result when it exits 0.

        :raises TargetError: a value is refused (nothing runs), the command cannot run, exits
            non-zero or times out (with its stderr's tail).
        """
        template: list[str] | None = getattr(self.spec, field)
        if template is None:
            raise TargetError(f"target.{field} is not set")
        filled = {"python": sys.executable, "service": self.service, **values}
        checked = {name: check_value(name, value, self.service) for name, value in filled.items()}
        try:
            check_argv(list(template), placeholders=False)
            argv = [substitute_text(element, checked) for element in template]
        except KeyError as exc:  # the spec was checked at load time; a template built in code may not be
            raise TargetError(f"target.{field} uses {{{exc.args[0]}}}, which {field} does not fill") from None
        except ValueError as exc:
            raise TargetError(f"target.{field}: {exc}") from None
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            result = run_command(argv, cwd=self.directory, timeout=float(self.spec.timeout_seconds))
        except ValueError as exc:  # reaches for a shell, or not on GENDEV_ALLOWED_EXECUTABLES
            raise TargetError(f"target.{field} refused: {exc}") from None
        if not result.ok:
            why = (f"timed out after {self.spec.timeout_seconds:g} s" if result.timed_out
                   else f"exited with code {result.exit_code}")
            tail = (result.stderr or result.stdout).strip()[-OUTPUT_TAIL:] or "(no output)"
            raise TargetError(f"target.{field} {why}: {argv}\n{tail}")
        return result

    @staticmethod
    def _said(result: CommandResult) -> dict[str, Any]:
        return {"argv": result.argv, "exit_code": result.exit_code, "seconds": round(result.seconds, 3),
                "stdout_tail": result.stdout[-OUTPUT_TAIL:], "stderr_tail": result.stderr[-OUTPUT_TAIL:]}

    # ---------------------------------------------------------------------------- platform calls
    def read_status(self) -> ReportedStatus:
        return parse_status(self.run("status").stdout, "target.status")

    def deploy_call(self, revision: str, version: str) -> tuple[str, dict[str, Any]]:
        return revision, self._said(self.run("deploy", revision=revision, version=version))

    def weights_call(self, state: TargetState, weights: dict[str, int], action: str) -> dict[str, Any]:
        split = weights_json(weights)
        only = next(iter(weights)) if len(weights) == 1 else None
        record = state.record(only)
        if only is not None and record is not None and action == "rollback" and self.spec.rollback:
            result = self.run("rollback", revision=only, version=record.version, weights_json=split)
        elif only is not None and record is not None and state.active not in (None, only) and self.spec.promote \
                and action in ("switch", "weights"):
            result = self.run("promote", revision=only, version=record.version, weights_json=split)
        else:
            result = self.run("set_weights", weights_json=split)
        return self._said(result)

    def retire_call(self, record: RevisionRecord) -> str | None:
        if self.spec.retire is None:
            return None
        result = self.run("retire", revision=record.slot, version=record.version)
        return f"retired by target.retire (exit {result.exit_code})"

    def plan_detail(self, version: str) -> dict[str, Any]:
        return {"deploy": list(self.spec.deploy)}
