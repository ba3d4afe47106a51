"""Demo scanner: match a lock file against OSV advisories offline and write pip-audit JSON.

``python -m gendev_release.demo.osv_scan --lock requirements.lock --advisories DIR --out report.json``
reads every ``name==version`` pin of the lock file, matches it against each OSV record
(``DIR/*.json``: ``affected[].ranges`` events and ``versions``, compared as PEP 440 versions) and
writes pip-audit's JSON (``{"dependencies": [...], "fixes": []}``), each vulnerability with the
severity its advisory gives (a CVSS v3 vector's base score, else the database's label). An entry
that is not pinned is listed with a ``skip_reason`` (not audited).

Exit codes follow pip-audit: 0 nothing found, 1 vulnerabilities found (the report is written
either way), 2 an input is missing or malformed (no report is written). No network.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from gendev_release.formats import ScanFormatError
from gendev_release.vuln_scan import load_advisories, parse_lock_file, scan_lock


def write_report(path: Path, report: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gendev_release.demo.osv_scan",
                                     description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--lock", required=True, type=Path, help="requirements-style lock file")
    parser.add_argument("--advisories", required=True, type=Path, help="folder of OSV records (*.json)")
    parser.add_argument("--out", required=True, type=Path, help="where to write the pip-audit JSON")
    args = parser.parse_args(argv)
    try:
        entries = parse_lock_file(args.lock.read_text(encoding="utf-8"))
        advisories = load_advisories(args.advisories)
        report = scan_lock(entries, advisories)
    except (OSError, UnicodeDecodeError, ScanFormatError) as exc:
        print(f"osv_scan: {exc}", file=sys.stderr)
        return 2
    write_report(args.out, report)
    dependencies = report["dependencies"]
    found = [(d["name"], v["id"]) for d in dependencies for v in d.get("vulns", [])]
    audited = sum(1 for d in dependencies if "skip_reason" not in d)
    print(f"audited {audited} of {len(dependencies)} locked package(s) against {len(advisories)} advisory(ies): "
          f"{len(found)} vulnerability(ies)" + "".join(f"\n  {name}: {vuln}" for name, vuln in found))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
