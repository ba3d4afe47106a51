"""Demo backup: a tar.gz of one folder, for the risk assessment's backup check.

``python -m gendev_release.demo.backup --source DIR --out FILE.tar.gz`` writes the archive
(creating parent folders; written to a temporary name first, then renamed) and prints
``<sha256>  <path>``. Exits 1 with a message when the source folder is missing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tarfile
from pathlib import Path

from gendev_release.report import sha256_file


def backup(source: Path, out: Path) -> str:
    """Archive ``source`` (as its own folder name) into ``out``; return the archive's sha256."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with tarfile.open(tmp, "w:gz") as archive:
            archive.add(source, arcname=source.name)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return sha256_file(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gendev_release.demo.backup", description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, type=Path, help="folder to back up")
    parser.add_argument("--out", required=True, type=Path, help="archive to write (.tar.gz)")
    args = parser.parse_args(argv)
    if not args.source.is_dir():
        print(f"backup: source folder {args.source} does not exist", file=sys.stderr)
        return 1
    try:
        digest = backup(args.source, args.out)
    except OSError as exc:
        print(f"backup: cannot write {args.out}: {exc}", file=sys.stderr)
        return 1
    print(f"{digest}  {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
