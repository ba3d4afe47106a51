"""Is a backup restorable, complete, and the file its tool wrote? Pure checks, no duty here.

* :func:`restore_rehearsal` opens a tar (any compression) or zip archive and reads every member to
  the end, so the compressor's own checksums (gzip CRC, zip CRC-32) and the member sizes are
  verified, and records each member's sha256: what a restore would give back.
* :func:`missing_contents` compares those member digests with the files the spec says the backup
  must restore (``risk.backup.contents``), as they are on disk now.
* :func:`reported_digest` reads the ``<sha256>  <path>`` line a backup tool prints (``sha256sum``'s
  format), so the archive the step verified is shown to be the one the tool wrote.
"""

from __future__ import annotations

import hashlib
import lzma
import re
import tarfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

ARCHIVE_SUFFIXES: tuple[str, ...] = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip")
_DIGEST_LINE = re.compile(r"^([0-9a-fA-F]{64})\s+\*?(.+?)\s*$")


@dataclass(frozen=True)
class Rehearsal:
    """What reading a backup back gave: problems (empty when it restores), members and their digests."""

    problems: list[str]
    archive: bool
    members: int = 0
    restored_bytes: int = 0
    member_sha256: dict[str, str] = field(default_factory=dict)

    def as_data(self) -> dict[str, object]:
        return {"archive": self.archive, "members": self.members, "restored_bytes": self.restored_bytes}


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _digest(handle: IO[bytes]) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    for chunk in iter(lambda: handle.read(1 << 16), b""):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _tar_members(path: Path) -> Iterator[tuple[str, str | None, int]]:
    with tarfile.open(path, "r:*") as archive:
        for member in archive:
            if not member.isfile():
                yield member.name, None, 0
                continue
            handle = archive.extractfile(member)
            if handle is None:
                raise tarfile.TarError(f"member {member.name} cannot be read")
            with handle:
                digest, size = _digest(handle)
            if size != member.size:
                raise tarfile.TarError(f"member {member.name} gave {size} of {member.size} bytes")
            yield member.name, digest, size
        # read the stream to its end: a compressor checks its own trailer (gzip CRC and length) only there
        stream = archive.fileobj
        if stream is not None:
            while stream.read(1 << 16):
                pass


def _zip_members(path: Path) -> Iterator[tuple[str, str | None, int]]:
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.is_dir():
                yield info.filename, None, 0
                continue
            with archive.open(info) as handle:  # reading to the end checks the member's CRC-32
                digest, size = _digest(handle)
            yield info.filename, digest, size


def restore_rehearsal(path: Path) -> Rehearsal:
    """Read the backup back; an archive is read member by member to the end (its checksums verified).

    A file that is not an archive (a database dump) is only required to exist and not be empty.
    """
    if not path.is_file():
        return Rehearsal([f"backup output {path} does not exist"], False)
    if path.stat().st_size == 0:
        return Rehearsal([f"backup output {path} is empty"], False)
    if not is_archive(path):
        return Rehearsal([], False)
    reader = _zip_members if path.name.lower().endswith(".zip") else _tar_members
    digests: dict[str, str] = {}
    members = restored = 0
    try:
        for name, digest, size in reader(path):
            members += 1
            restored += size
            if digest is not None:
                digests[name.removeprefix("./")] = digest
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as exc:
        kind = "zip" if reader is _zip_members else "tar"
        return Rehearsal([f"backup output {path} is not a readable {kind} archive: {exc}"], True, members, restored,
                         digests)
    if not members:
        return Rehearsal([f"backup archive {path} has no members"], True)
    return Rehearsal([], True, members, restored, digests)


def find_member(member_sha256: Mapping[str, str], relative: str) -> str | None:
    """The archive member holding spec-relative ``relative``: the same path, a path ending in it, else the one
    member with the same file name."""
    wanted = PurePosixPath(relative).as_posix().removeprefix("./")
    for name in member_sha256:
        if name == wanted or name.endswith("/" + wanted):
            return name
    same_name = [name for name in member_sha256 if PurePosixPath(name).name == PurePosixPath(wanted).name]
    return same_name[0] if len(same_name) == 1 else None


def missing_contents(rehearsal: Rehearsal, required: Mapping[str, str],
                     backup_name: str) -> tuple[list[str], list[dict[str, str | None]]]:
    """Which required files the backup would not restore byte for byte.

    :param rehearsal: :func:`restore_rehearsal` of the backup.
    :param required: spec-relative path -> the file's sha256 now.
    :param backup_name: the backup's file name, for the messages.
    :return: ``(problems, rows)``; each row names the file, the member found and both digests.
    """
    problems, rows = [], []
    for relative, expected in required.items():
        member = find_member(rehearsal.member_sha256, relative)
        held = rehearsal.member_sha256.get(member) if member else None
        rows.append({"file": relative, "member": member, "file_sha256": expected, "member_sha256": held})
        if member is None:
            problems.append(f"backup {backup_name} does not hold {relative}")
        elif held != expected:
            problems.append(f"backup {backup_name} holds {member} with sha256 {str(held)[:12]}, but {relative} now "
                            f"has {expected[:12]}: restoring it would not give the current file back")
    return problems, rows


def reported_digest(stdout: str, output: Path) -> str | None:
    """The sha256 a backup tool printed for ``output`` (``<sha256>  <path>``), or None when it printed none."""
    target = output.resolve()
    for line in stdout.splitlines():
        match = _DIGEST_LINE.match(line.strip())
        if match and Path(match.group(2)).resolve() == target:
            return match.group(1).lower()
    return None
