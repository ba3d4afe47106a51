"""Demo build: package the demo service for one version.

``python -m gendev_release.demo.build --config build.toml --version V --out DIR`` reads the TOML
configuration (``[package]`` name, module, files), refuses a version that is not semver (exit 2)
and writes ``DIR/<name>-<version>.tar.gz`` (a VERSION file, the service module's source and the
listed files, relative to the config's folder) plus ``DIR/manifest.json`` naming the version and
each packaged file's sha256. Exits 1 with a message when an input is missing.

Standard library only (no Airflow import), so a build starts fast.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import json
import os
import sys
import tarfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import tomllib

from gendev_release.spec_rules import VERSION_RE

DEFAULT_MODULE = "gendev_release.demo.service"


class BuildError(Exception):
    """An input of the build is missing or invalid (exit 1)."""


def module_source(module: str) -> Path:
    """The source file of ``module``, found without importing (running) it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        raise BuildError(f"module {module!r} cannot be found: {exc}") from exc
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        raise BuildError(f"module {module!r} has no source file")
    return Path(spec.origin)


def read_config(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BuildError(f"config {path} does not exist") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BuildError(f"config {path} is not valid TOML: {exc}") from exc
    package = data.get("package")
    if not isinstance(package, dict) or not isinstance(package.get("name"), str):
        raise BuildError(f"config {path} needs a [package] table with a name")
    files = package.get("files", [])
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise BuildError(f"config {path}: package.files must be a list of paths")
    return package


def _add_bytes(archive: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    info.mode = 0o644
    info.mtime = int(datetime.now(timezone.utc).timestamp())
    archive.addfile(info, io.BytesIO(payload))


def build(config: Path, version: str, out: Path) -> dict[str, Any]:
    """Write the archive and the manifest; return the manifest."""
    package = read_config(config)
    name = package["name"]
    contents: dict[str, bytes] = {"VERSION": f"{version}\n".encode()}
    source = module_source(package.get("module", DEFAULT_MODULE))
    contents[f"{source.name}"] = source.read_bytes()
    for relative in package.get("files", []):
        path = config.parent / relative
        if not path.is_file():
            raise BuildError(f"config {config} lists {relative}, which does not exist in {config.parent}")
        contents[relative] = path.read_bytes()
    out.mkdir(parents=True, exist_ok=True)
    archive_path = out / f"{name}-{version}.tar.gz"
    tmp = archive_path.with_name(f".{archive_path.name}.{os.getpid()}.tmp")
    try:
        with tarfile.open(tmp, "w:gz") as archive:
            for member, payload in contents.items():
                _add_bytes(archive, f"{name}-{version}/{member}", payload)
        os.replace(tmp, archive_path)
    finally:
        tmp.unlink(missing_ok=True)
    manifest = {
        "name": name, "version": version, "archive": archive_path.name,
        "archive_sha256": hashlib.sha256(archive_path.read_bytes()).hexdigest(),
        "files": [{"path": member, "sha256": hashlib.sha256(payload).hexdigest()}
                  for member, payload in contents.items()],
        "built_at": datetime.now(timezone.utc).isoformat(),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gendev_release.demo.build", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="build.toml")
    parser.add_argument("--version", required=True, help="semantic version to build")
    parser.add_argument("--out", required=True, type=Path, help="folder for the archive and manifest.json")
    args = parser.parse_args(argv)
    if not VERSION_RE.match(args.version):
        print(f"build: {args.version!r} is not a semantic version (MAJOR.MINOR.PATCH[-PRERELEASE])", file=sys.stderr)
        return 2
    try:
        manifest = build(args.config, args.version, args.out)
    except (BuildError, OSError) as exc:
        print(f"build: {exc}", file=sys.stderr)
        return 1
    print(f"built {manifest['archive']} ({manifest['archive_sha256']}) with {len(manifest['files'])} file(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
