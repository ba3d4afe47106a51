"""A stand-in deployment CLI (think helm or kubectl) for the command target's tests.

    python fake_cli.py PLATFORM.json RECORD.jsonl VERB [ARGS...]

Every call first appends one JSON line to RECORD.jsonl: its argv exactly as received and its
parent's pid and command line (so a test can see that no shell stood between the target and the
CLI). Then it acts on a fake platform kept in PLATFORM.json::

    deploy SERVICE REVISION image.tag=VERSION ...   a revision, ready, on http://127.0.0.1:9/REVISION
    set-weights WEIGHTS_JSON                        the split in force
    promote REVISION VERSION WEIGHTS_JSON           the same, noted as a promotion
    rollback REVISION VERSION WEIGHTS_JSON          the same, noted as a rollback
    retire REVISION                                 the revision is removed
    status                                          prints {"revisions": [...], "weights": {...}, "url": ...}

Faults a test can switch on in PLATFORM.json: ``"fail": "<verb>"`` (exit 3 with a message),
``"ignore": "<verb>"`` (exit 0 but change nothing), ``"status_text": "..."`` (status prints that).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    platform_file, record_file, verb, *args = argv[1:]
    parent = os.getppid()
    try:
        parent_cmdline = Path(f"/proc/{parent}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except OSError:
        parent_cmdline = []
    with open(record_file, "a", encoding="utf-8") as record:
        record.write(json.dumps({"argv": argv, "ppid": parent,
                                 "parent": [part.decode(errors="replace") for part in parent_cmdline]}) + "\n")
    path = Path(platform_file)
    platform = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    platform.setdefault("revisions", {})
    platform.setdefault("weights", {})
    if platform.get("fail") == verb:
        print(f"fake-cli: {verb} failed: the cluster said no", file=sys.stderr)
        return 3
    if verb == "status":
        if "status_text" in platform:
            print(platform["status_text"])
            return 0
        print(json.dumps({"revisions": list(platform["revisions"].values()), "weights": platform["weights"],
                          "url": platform.get("url")}))
        return 0
    if platform.get("ignore") == verb:
        return 0
    if verb == "deploy":
        service, revision, tag = args[:3]
        version = tag.removeprefix("image.tag=")
        platform["revisions"][revision] = {"revision": revision, "version": version,
                                           "url": f"http://127.0.0.1:9/{service}/{revision}", "ready": True}
    elif verb == "set-weights":
        platform["weights"] = json.loads(args[0])
    elif verb in ("promote", "rollback"):
        platform["weights"] = json.loads(args[2])
        platform.setdefault("moves", []).append([verb, args[0], args[1]])
    elif verb == "retire":
        platform["revisions"].pop(args[0], None)
        platform["weights"].pop(args[0], None)
    else:
        print(f"fake-cli: unknown verb {verb!r}", file=sys.stderr)
        return 2
    path.write_text(json.dumps(platform), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
