"""The ``gendev-release`` command line: validate, schema, graph, run, dagfile, down, verify-evidence, items.

Exit codes: 0 success, 1 the release failed (aborted or rolled back), 2 invalid input, 3 refused
(another release of the service is in progress; nothing was started). Errors are
one line per problem (``FILE: field.path: message``), never a traceback.

Airflow reads ``AIRFLOW_HOME`` when it is first imported, so ``run`` and ``down`` set up the
environment before anything that imports Airflow is imported.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_REFUSED = 0, 1, 2, 3
SETTABLE = ("version", "dry_run", "emergency")
#: How ``gendev-release graph`` labels a task that is not an agent step (by its plan kind).
GRAPH_KINDS = {"sensor": "deferred health wait", "watch": "deferred window", "strategy": "strategy step",
               "approval": "people decide", "control": "gate"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse exits 2 too, but with our wording
        self.print_usage(sys.stderr)
        print(f"gendev-release: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_INVALID)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gendev-release", description="Evidence-gated releases on Apache Airflow 3.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    validate = sub.add_parser("validate", help="check release specs; exit 2 with one line per problem")
    validate.add_argument("specs", nargs="+", metavar="SPEC")
    sub.add_parser("schema", help="print the release spec's JSON Schema")
    graph = sub.add_parser("graph", help="show the phases, steps and failure branch a spec becomes")
    graph.add_argument("spec", metavar="SPEC")
    graph.add_argument("--json", action="store_true", help="machine-readable output")
    run = sub.add_parser("run", help="run a release in-process on the embedded Airflow (SQLite)")
    run.add_argument("spec", metavar="SPEC")
    run.add_argument("--home", default=".gendev", help="state, evidence and Airflow home (default ./.gendev)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                     help=f"override a run parameter ({', '.join(SETTABLE)})")
    run.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    dagfile = sub.add_parser("dagfile", help="write the Airflow DAG file beside each spec (SPEC.py)")
    dagfile.add_argument("specs", nargs="+", metavar="SPEC")
    down = sub.add_parser("down", help="stop the local target's processes")
    down.add_argument("spec", metavar="SPEC")
    down.add_argument("--home", default=".gendev")
    verify = sub.add_parser("verify-evidence", help="check a run's evidence: every chained record present, its "
                            "digest and the hash chain intact; exit 1 naming the first one that is not")
    verify.add_argument("run_dir", metavar="RUN_DIR",
                        help="the run's evidence folder (evidence/<dag_id>/<run_id>) or its URL (file://, s3://, ...)")
    items = sub.add_parser("items", help="the verification matrix: each of the 64 items, its evidence, oracle, "
                           "what makes it fail and the test that shows it")
    shape = items.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="machine-readable output")
    shape.add_argument("--markdown", action="store_true", help="the document docs/verification-items.md")
    return parser


def _print_spec_error(exc: Exception) -> None:
    from gendev_release.errors import SpecError

    if isinstance(exc, SpecError):
        for problem in exc.problems:
            print(problem.render(exc.source))
    else:
        print(str(exc))


def cmd_validate(args: argparse.Namespace) -> int:
    """Check each spec; one ``FILE: field: message`` line per problem on stdout, exit 2 if any.

    Imports no Airflow (a test keeps it so): validating is quick and works without a database.
    """
    from gendev_release.errors import SpecError
    from gendev_release.spec import load_spec

    status = EXIT_OK
    for path in args.specs:
        try:
            load_spec(path)
        except SpecError as exc:
            _print_spec_error(exc)
            status = EXIT_INVALID
        except Exception as exc:  # a bug, not the spec's fault: still one line, and the next file is checked
            if os.environ.get("GENDEV_DEBUG"):
                raise
            print(f"{path}: (internal error): {type(exc).__name__}: {exc}; please report it "
                  "(set GENDEV_DEBUG=1 for the traceback)")
            status = EXIT_INVALID
        else:
            print(f"{path}: ok", file=sys.stderr)  # stdout carries only problems, one line each
    return status


def cmd_schema(_: argparse.Namespace) -> int:
    from gendev_release.spec import json_schema

    print(json.dumps(json_schema(), indent=2, sort_keys=True))
    return EXIT_OK


def cmd_graph(args: argparse.Namespace) -> int:
    from gendev_release.errors import SpecError
    from gendev_release.plan import graph_json, plan_release
    from gendev_release.spec import load_spec

    try:
        plan = plan_release(load_spec(args.spec))
    except SpecError as exc:
        _print_spec_error(exc)
        return EXIT_INVALID
    graph = graph_json(plan)
    if args.json:
        print(json.dumps(graph))
        return EXIT_OK
    print(graph["dag_id"])
    for gate in plan.gates():
        print(f"  {gate.task_id}  [{GRAPH_KINDS[gate.kind]}]")
    for phase in plan.phases:  # every task in the order it runs
        print(f"  {phase.id}: {phase.title}")
        for task in phase.tasks:
            what = f"{task.agent} / {task.duty}" if task.kind == "agent" else GRAPH_KINDS[task.kind]
            print(f"    {task.task_id}  [{what}]")
    print("  on failure:")
    for task in graph["failure_branch"]:
        print(f"    {task['task_id']}  (trigger rule {task['trigger_rule']})")
    return EXIT_OK


def _parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``--set NAME=VALUE`` pairs as :func:`~gendev_release.spec.run_params` input.

    Values are taken exactly as typed (``" 1.0.0"`` and ``"1.0.0\\n"`` reach the version rule and
    are refused there, as on the Airflow path); only ``dry_run`` and ``emergency`` are converted, from
    text to a boolean.
    """
    from gendev_release.errors import SpecError, SpecProblem

    overrides: dict[str, Any] = {}
    problems = []
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            problems.append(SpecProblem(pair or '""', "expected NAME=VALUE"))
        elif name == "strategy":
            problems.append(SpecProblem(name, "cannot be set: a strategy shapes the release DAG, so it lives in "
                                              "the spec (strategy: {kind: canary, ...})"))
        elif name not in SETTABLE:
            problems.append(SpecProblem(name or '""', f"cannot be set; settable: {', '.join(SETTABLE)}"))
        elif name in overrides:
            problems.append(SpecProblem(name, "set twice; give it once"))
        elif name in ("dry_run", "emergency"):
            if value.lower() not in {"true", "false", "1", "0", "yes", "no"}:
                problems.append(SpecProblem(name, f"{value!r} is not a boolean; use true or false"))
            else:
                overrides[name] = value.lower() in {"true", "1", "yes"}
        else:
            overrides[name] = value
    if problems:
        raise SpecError("--set", problems)
    return overrides


def _prepare_environment(home: Path) -> None:
    """Point an in-process, embedded Airflow (SQLite) at ``home`` before Airflow is imported."""
    airflow_home = home / "airflow"
    (airflow_home / "dags").mkdir(parents=True, exist_ok=True)
    os.environ["GENDEV_HOME"] = str(home)
    os.environ["AIRFLOW_HOME"] = str(airflow_home)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(airflow_home / "dags")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{airflow_home / 'airflow.db'}"
    os.environ.setdefault("AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES", r"airflow.* gendev_release.*")
    os.environ["AIRFLOW__LOGGING__BASE_LOG_FOLDER"] = str(airflow_home / "logs")


def cmd_run(args: argparse.Namespace) -> int:
    home = Path(args.home).resolve()
    _prepare_environment(home)  # before the first Airflow import (the spec module imports it)
    # Validate everything a user typed before the database is touched or anything is started.
    from gendev_release.errors import SpecError
    from gendev_release.spec import load_spec, run_params

    try:
        spec = load_spec(args.spec)
        params = run_params(spec, _parse_overrides(args.overrides), source="--set")
    except SpecError as exc:
        _print_spec_error(exc)
        return EXIT_INVALID
    from gendev_release.embedded_airflow import ReleaseHeld, run_release

    try:
        summary = run_release(spec, params, home, emit=lambda line: print(line, flush=True))
    except ReleaseHeld as exc:
        print(f"gendev-release: refused: {exc}", file=sys.stderr)
        if args.json:
            print(json.dumps({"dag_id": spec.dag_id, "run_id": None, "state": "refused", "failed_step": None,
                              "rolled_back": False, "active_version": None, "outcome": "refused",
                              "report": None}, sort_keys=True))
        return EXIT_REFUSED
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    return EXIT_OK if summary["state"] == "success" else EXIT_FAILED


def cmd_dagfile(args: argparse.Namespace) -> int:
    """Write the Airflow DAG file beside each spec (validating the spec first)."""
    from gendev_release.dagfile import InvalidReleaseSpec, write_dag_file
    from gendev_release.errors import SpecError
    from gendev_release.spec import load_spec

    status = EXIT_OK
    for path in args.specs:
        try:
            load_spec(path)
            written, changed = write_dag_file(path)
        except SpecError as exc:
            _print_spec_error(exc)
            status = EXIT_INVALID
        except InvalidReleaseSpec as exc:
            print(f"{path}: {exc}")
            status = EXIT_INVALID
        else:
            print(f"{written}: {'written' if changed else 'already up to date'}", file=sys.stderr)
    return status


def cmd_down(args: argparse.Namespace) -> int:
    home = Path(args.home).resolve()
    _prepare_environment(home)
    from gendev_release.errors import SpecError
    from gendev_release.spec import load_spec

    try:
        spec = load_spec(args.spec)
    except SpecError as exc:
        _print_spec_error(exc)
        return EXIT_INVALID
    from gendev_release.targets import make_target

    stopped = make_target(spec, home).down()
    for line in stopped:
        print(f"stopped {line}")
    if not stopped:
        print(f"nothing running for {spec.service} under {home}")
    return EXIT_OK


def cmd_verify_evidence(args: argparse.Namespace) -> int:
    """Exit 0 with a one-line summary; 1 with one line per problem, the first altered or missing record first;
    2 when there is no chain to verify there."""
    from gendev_release.evidence_store import NoEvidence, verify_evidence

    try:
        verdict = verify_evidence(args.run_dir)
    except NoEvidence as exc:
        print(f"gendev-release: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if verdict.ok:
        print(verdict.summary())
        return EXIT_OK
    for problem in verdict.problems:
        print(problem.render())
    print(f"gendev-release: evidence at {verdict.location} does not hold: {len(verdict.problems)} problem(s) "
          f"in a chain of {verdict.entries} entries", file=sys.stderr)
    return EXIT_FAILED


def cmd_items(args: argparse.Namespace) -> int:
    from gendev_release import verification_matrix

    if args.json:
        print(json.dumps([row.as_dict() for row in verification_matrix.matrix()], indent=2))
    elif args.markdown:
        sys.stdout.write(verification_matrix.markdown())
    else:
        sys.stdout.write(verification_matrix.text_table())
    return EXIT_OK


COMMANDS = {"validate": cmd_validate, "schema": cmd_schema, "graph": cmd_graph, "run": cmd_run,
            "dagfile": cmd_dagfile, "down": cmd_down, "verify-evidence": cmd_verify_evidence,
            "items": cmd_items}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # last line of defence: one clear line, the traceback only on request
        if os.environ.get("GENDEV_DEBUG"):
            raise
        print(f"gendev-release: {type(exc).__name__}: {exc} (set GENDEV_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
