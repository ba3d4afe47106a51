"""Plaintext-secret scanning: of config files (hardening) and of what a release step produced.

* :func:`scan_secrets` reads one text, line by line; a :class:`SecretHit` names file (and
  archive member), line and rule, never the secret itself.
* :func:`scan_output` scans a file a step produced: a plain text file, or the text members of a
  tar or zip archive, each read up to :data:`MAX_MEMBER_BYTES` (the whole output up to
  :data:`MAX_TOTAL_BYTES`); binary and oversized members are listed as skipped.
* :func:`remove_output` deletes an output that holds a secret and returns what was removed and
  why, as evidence.

Standard library only, besides :class:`~gendev_release.report.Evidence`. Hardening (phase 4),
the backup check (phase 1) and the build (phase 3) use the same rules.
"""

from __future__ import annotations

import lzma
import math
import re
import tarfile
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from gendev_release.report import Evidence, sha256_file

# ----------------------------------------------------------------------------------------- rules
#: Patterns whose match is a secret wherever it appears.
SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("private_key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")),
    ("aws_access_key_id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("github_token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b")),
    ("slack_token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    # header.payload.signature, both JSON parts base64url of "{" + '"' (hence "eyJ")
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")),
)
#: ``scheme://user:password@host``; the user may be empty (``redis://:pw@host``).
_URL_CREDENTIALS_RE = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/:@]*:(?P<password>[^\s/@]+)@")
#: ``key = value`` / ``key: value`` where the key may name a secret; :func:`names_secret` decides.
_ASSIGNMENT_RE = re.compile(
    r"""(?ix)(?<![a-z0-9_.-])
    (?P<key>[a-z0-9_.-]*(?:pass|pwd|pw|secret|token|key|credential|creds|auth)[a-z0-9_.-]*)
    ["']?\s*[:=]\s*(?:(?:bearer|basic|token|digest)\s+)?  # an HTTP auth scheme: the credential follows
    (?P<value>"[^"]*"|'[^']*'|\{\{.*?\}\}|\$\{[^}]*\}|[^\s#,;]+)""")
#: Key segments that name a secret on their own (``DB_PASS``, ``redis.pw``, ``basic_auth``).
_SECRET_WORDS = frozenset({"pass", "pw", "pwd", "auth", "creds", "authorization"})
#: Stems that name a secret inside a segment (``dbpassword``, ``PASSPHRASE``, ``clientsecret``).
_SECRET_STEMS = ("password", "passwd", "passphrase", "secret", "token", "credential", "apikey", "accesskey",
                 "privatekey")
#: Two segments that together name a key (``api_key``, ``private.key``).
_KEY_PAIRS = frozenset({("api", "key"), ("access", "key"), ("private", "key"), ("signing", "key"),
                        ("encryption", "key"), ("master", "key")})
#: Key segments (and stems) whose value is a password even when it is only digits (``DB_PASS=123456``).
_PASSWORD_WORDS = frozenset({"pass", "pw", "pwd", "pin"})
_PASSWORD_STEMS = ("password", "passwd", "passphrase")
#: Last segments of a key that names a secret's *reference* or a setting about it, never the secret.
_SETTING_WORDS = frozenset({
    "file", "path", "dir", "env", "var", "name", "id", "ref", "url", "uri", "conn", "connection", "ttl",
    "length", "len", "timeout", "seconds", "minutes", "hours", "days", "interval", "expiry", "expires",
    "enabled", "required", "header", "type", "method", "mode", "provider", "backend", "scheme", "policy",
    "scope", "format", "algorithm", "limit", "size", "count", "min", "max", "retries", "attempts", "rotation",
    "version", "host", "hostname", "port", "server", "endpoint", "domain", "realm", "issuer", "audience",
    "user", "username", "login", "email", "label", "hint"})
_REFERENCE_VALUE_RE = re.compile(
    r"^(?:\$\{[^}]+\}|\$[A-Za-z_][A-Za-z0-9_]*|\{\{.*\}\}|\{[A-Za-z_][A-Za-z0-9_]*\}|%\(.*\)s|<[^>]*>|!\S+)$")
_HARMLESS_VALUES = frozenset({"", "none", "null", "nil", "true", "false", "yes", "no", "on", "off", "~"})
_NUMBER_RE = re.compile(r"^[+-]?\d+(?:\.\d+)?$")
#: Files whose assignments are code: only a quoted literal is a secret (``token = request.token`` is not).
CODE_SUFFIXES = frozenset({".py", ".pyi", ".js", ".mjs", ".cjs", ".ts", ".tsx", ".jsx", ".go", ".java", ".kt",
                           ".rb", ".php", ".cs", ".rs", ".swift", ".scala", ".c", ".h", ".cpp", ".hpp"})
_TOKEN_RE = re.compile(r"[A-Za-z0-9+/_-]{20,}={0,2}")  # base64 padding, but "=" also separates key=value
_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_PART_SPLIT_RE = re.compile(r"[_\-/.+]+")
_ALPHA_RUN_RE = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
_VOWEL_RE = re.compile(r"[aeiouyAEIOUY]")
_HEX_PART_RE = re.compile(r"^[0-9a-fA-F]+$")
ENTROPY_THRESHOLD = 4.0


def shannon_entropy(text: str) -> float:
    """Bits per character of ``text`` (0 for an empty text)."""
    if not text:
        return 0.0
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def looks_random(token: str) -> bool:
    """A candidate for the entropy rule: not made of words or digests, entropy over the threshold.

    The token is split at ``_ - / . +``; when every part is a word or compound word
    (``targets``, ``RemovedInAirflow4Warning``, ``p95``) or hexadecimal (a digest in a URL), the
    token is a path, URL or identifier. Otherwise its Shannon entropy must exceed
    :data:`ENTROPY_THRESHOLD` bits per character.
    """
    if not any(c.isalpha() for c in token):
        return False
    parts = [part for part in _PART_SPLIT_RE.split(token) if part]
    if all(_HEX_PART_RE.match(part) or _wordy(part) for part in parts):
        return False
    return shannon_entropy(token) > ENTROPY_THRESHOLD


def _wordy(part: str) -> bool:
    """Mostly words: ``RemovedInAirflow4Warning``, ``s3api``, ``xchacha20poly1305`` yes; ``Zx81kQ0vTq9L`` no.

    Letters are split into runs at case changes (``Removed``, ``In``, ``SQL``); a word is a run of
    three or more letters holding a vowel. At least 60 % of the letters must sit in words, and
    where upper and lower case mix, runs must average three letters (a random mixed-case string
    changes case every one or two letters).
    """
    letters = [c for c in part if c.isalpha()]
    if len(part) <= 4 or not letters:
        return True
    runs = _ALPHA_RUN_RE.findall(part)
    in_words = sum(len(run) for run in runs if len(run) >= 3 and _VOWEL_RE.search(run))
    mixed_case = any(c.isupper() for c in letters) and any(c.islower() for c in letters)
    return in_words >= 0.6 * len(letters) and (not mixed_case or len(letters) >= 3 * len(runs))


def key_segments(key: str) -> list[str]:
    """``DB_PASS`` -> ``["db", "pass"]``, ``dbPassword`` -> ``["db", "password"]``."""
    return [s for s in re.split(r"[_.\-]+", _CAMEL_RE.sub("_", key).lower()) if s]


def names_secret(key: str) -> bool:
    """Whether a key names a secret value (not a reference to one, not a setting about one)."""
    segments = key_segments(key)
    if not segments or segments[-1] in _SETTING_WORDS or segments[-1].removesuffix("s") in _SETTING_WORDS:
        return False
    if any(s in _SECRET_WORDS for s in segments) or any(stem in s for s in segments for stem in _SECRET_STEMS):
        return True
    return any(pair in _KEY_PAIRS for pair in zip(segments, segments[1:], strict=False))


def is_reference(value: str) -> bool:
    """``${VAR}``, ``$VAR``, ``{{ var }}``, ``{VAR}``, ``%(var)s``, ``<placeholder>``, a YAML tag (``!vault``)."""
    return bool(_REFERENCE_VALUE_RE.match(value.strip()))


def _assignment_is_secret(key: str, raw: str, *, code: bool) -> bool:
    quoted = raw[:1] in "\"'" and raw[-1:] == raw[:1] and len(raw) >= 2
    # unquoted, the value may run into what closes the surrounding text: -H "Authorization: Bearer $T"
    value = raw[1:-1] if quoted else raw.rstrip("\"')]")
    if code and (not quoted or any(c.isspace() for c in value)):
        return False  # an expression (a variable, a call) or a label in prose, not a literal secret
    if value.strip().lower() in _HARMLESS_VALUES or is_reference(value) or not names_secret(key):
        return False
    if _NUMBER_RE.match(value.strip()):  # max_tokens: 4096 is a setting, DB_PASS=123456 a password
        return any(s in _PASSWORD_WORDS or any(stem in s for stem in _PASSWORD_STEMS) for s in key_segments(key))
    return True


@dataclass(frozen=True)
class SecretHit:
    """Where a secret is: file, archive member (when inside an archive), line and rule; never the secret."""

    file: str
    line: int
    rule: str
    member: str | None = None

    @property
    def where(self) -> str:
        return f"{self.file}!{self.member}" if self.member else self.file

    def __str__(self) -> str:
        return f"{self.where}:{self.line} ({self.rule})"

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "member": self.member, "line": self.line, "rule": self.rule}


def scan_secrets(text: str, filename: str, *, member: str | None = None) -> list[SecretHit]:
    """Find plaintext secrets; a hit names file, line and rule, never the secret itself.

    Rules, per line: known token shapes, JWTs and private-key headers (:data:`SECRET_PATTERNS`);
    credentials in a URL (``scheme://user:pw@``, also with an empty user) unless the password is a
    reference; assignments to a key naming a password, passphrase, token, secret, credential or
    API key unless the value is empty, a boolean, a reference (``${VAR}``, ``{{ var }}``) or the
    key names a reference or a setting (``*_CONN_ID``, ``*_FILE``, ``*_TTL``, ...). In source code
    (:data:`CODE_SUFFIXES`) only quoted literals without spaces count. A line without any of these
    is flagged when it holds a token of 20+ characters that :func:`looks_random`.

    :param text: the content to scan.
    :param filename: how hits name the file (a name, not necessarily a path on disk).
    :param member: the archive member ``text`` came from, if any.
    """
    name = member or filename
    code = PurePosixPath(name).suffix.lower() in CODE_SUFFIXES
    hits: list[SecretHit] = []
    for number, line in enumerate(text.splitlines(), 1):
        rules = [rule for rule, pattern in SECRET_PATTERNS if pattern.search(line)]
        if any(not is_reference(m["password"]) for m in _URL_CREDENTIALS_RE.finditer(line)):
            rules.append("url_credentials")
        if not line.strip().startswith(("#", "//", ";")):
            rules.extend(f"assignment to {m['key']}" for m in _ASSIGNMENT_RE.finditer(line)
                         if _assignment_is_secret(m["key"], m["value"], code=code))
        if not rules:
            token = next((t for t in _TOKEN_RE.findall(line) if looks_random(t)), None)
            if token is not None:
                rules.append(f"high-entropy string ({len(token)} chars)")
        hits.extend(SecretHit(filename, number, rule, member) for rule in dict.fromkeys(rules))
    return hits


# ---------------------------------------------------------------------------------- step outputs
#: A member (or plain file) larger than this is not scanned; it is listed as skipped.
MAX_MEMBER_BYTES = 1 << 20
#: Bytes read from one output at most; members after the budget is spent are listed as skipped.
MAX_TOTAL_BYTES = 64 << 20
#: Archive members looked at, at most.
MAX_MEMBERS = 10_000
_SNIFF_BYTES = 8192


@dataclass(frozen=True)
class SkippedMember:
    name: str
    reason: str


@dataclass
class OutputScan:
    """The secret scan of one output file: what was scanned, what was skipped and why, the hits."""

    path: Path
    format: Literal["file", "tar", "zip"]
    scanned: list[str] = field(default_factory=list)
    skipped: list[SkippedMember] = field(default_factory=list)
    hits: list[SecretHit] = field(default_factory=list)
    error: str | None = None

    @property
    def clean(self) -> bool:
        """No secret found and nothing went wrong while reading."""
        return not self.hits and self.error is None

    def describe_hits(self, limit: int = 10) -> str:
        shown = ", ".join(str(h) for h in self.hits[:limit])
        return shown + (f" (+{len(self.hits) - limit} more)" if len(self.hits) > limit else "")

    def evidence(self, label: str = "output") -> Evidence:
        """The scan as evidence: counts, skipped members and hits (file, member, line, rule)."""
        what = "member(s)" if self.format != "file" else "file"
        summary = (f"secret scan of {label} {self.path.name} ({self.format}): {len(self.hits)} hit(s) in "
                   f"{len(self.scanned)} text {what}, {len(self.skipped)} skipped")
        if self.error:
            summary += f"; unreadable: {self.error}"
        return Evidence(kind="computed", source=str(self.path), summary=summary, data={
            "format": self.format, "hits": [h.as_dict() for h in self.hits], "scanned": len(self.scanned),
            "scanned_names": self.scanned[:200], "skipped": [vars(s) for s in self.skipped[:200]],
            "error": self.error, "max_member_bytes": MAX_MEMBER_BYTES})


def _text_of(payload: bytes) -> str | None:
    """The payload as text, or None when it looks binary (a NUL byte near the start)."""
    if b"\x00" in payload[:_SNIFF_BYTES]:
        return None
    return payload.decode("utf-8", errors="replace")


class _Budget:
    def __init__(self, total: int) -> None:
        self.left = total

    def take(self, size: int) -> bool:
        if size > self.left:
            return False
        self.left -= size
        return True


def _scan_payload(scan: OutputScan, name: str, payload: bytes, member: str | None) -> None:
    text = _text_of(payload)
    if text is None:
        scan.skipped.append(SkippedMember(name, "binary"))
        return
    scan.scanned.append(name)
    scan.hits.extend(scan_secrets(text, scan.path.name, member=member))


def _scan_tar(scan: OutputScan, budget: _Budget) -> None:
    with tarfile.open(scan.path, "r:*") as archive:
        for count, info in enumerate(archive, 1):
            if count > MAX_MEMBERS:
                scan.skipped.append(SkippedMember("*", f"more than {MAX_MEMBERS} members"))
                break
            if not info.isfile():
                continue
            if info.size > MAX_MEMBER_BYTES:
                scan.skipped.append(SkippedMember(info.name, f"{info.size} bytes, over {MAX_MEMBER_BYTES}"))
                continue
            if not budget.take(info.size):
                scan.skipped.append(SkippedMember(info.name, f"scan budget of {MAX_TOTAL_BYTES} bytes spent"))
                continue
            handle = archive.extractfile(info)
            if handle is None:
                continue
            with handle:
                _scan_payload(scan, info.name, handle.read(MAX_MEMBER_BYTES + 1), info.name)


def _scan_zip(scan: OutputScan, budget: _Budget) -> None:
    with zipfile.ZipFile(scan.path) as archive:
        for count, info in enumerate(archive.infolist(), 1):
            if count > MAX_MEMBERS:
                scan.skipped.append(SkippedMember("*", f"more than {MAX_MEMBERS} members"))
                break
            if info.is_dir():
                continue
            if info.flag_bits & 0x1:
                scan.skipped.append(SkippedMember(info.filename, "encrypted"))
                continue
            if info.file_size > MAX_MEMBER_BYTES:
                scan.skipped.append(SkippedMember(info.filename, f"{info.file_size} bytes, over {MAX_MEMBER_BYTES}"))
                continue
            if not budget.take(info.file_size):
                scan.skipped.append(SkippedMember(info.filename, f"scan budget of {MAX_TOTAL_BYTES} bytes spent"))
                continue
            with archive.open(info) as handle:  # read bounded: the declared size may lie
                _scan_payload(scan, info.filename, handle.read(MAX_MEMBER_BYTES + 1), info.filename)


_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def output_format(path: Path) -> Literal["file", "tar", "zip"]:
    """How :func:`scan_output` reads ``path``: by its content; the name only breaks a tie.

    A plain tar whose last member is a zip also looks like a zip (the zip's end record sits near
    the end of the file), so a tar name is tried as tar first.
    """
    try:
        if path.name.lower().endswith(_TAR_SUFFIXES) and tarfile.is_tarfile(path):
            return "tar"
        if zipfile.is_zipfile(path):
            return "zip"
        if tarfile.is_tarfile(path):
            return "tar"
    except OSError:
        pass
    return "file"


def scan_output(path: Path) -> OutputScan:
    """Scan one output file: a text file, or every text member of a tar (any compression) or zip archive.

    Never raises for the content: an archive that cannot be read to the end sets ``error``.
    """
    scan = OutputScan(path=path, format=output_format(path))
    budget = _Budget(MAX_TOTAL_BYTES)
    try:
        if scan.format == "tar":
            _scan_tar(scan, budget)
        elif scan.format == "zip":
            _scan_zip(scan, budget)
        else:
            size = path.stat().st_size
            if size > MAX_MEMBER_BYTES:
                scan.skipped.append(SkippedMember(path.name, f"{size} bytes, over {MAX_MEMBER_BYTES}"))
            else:
                with open(path, "rb") as handle:
                    _scan_payload(scan, path.name, handle.read(MAX_MEMBER_BYTES + 1), None)
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile, RuntimeError, zlib.error, lzma.LZMAError) as exc:
        scan.error = f"{type(exc).__name__}: {exc}"
    return scan


@dataclass(frozen=True)
class RemovedOutput:
    """An output deleted because it held a secret: where it was, its digest and size before, and why."""

    path: str
    sha256: str | None
    bytes: int | None
    reason: str
    error: str | None = None

    @property
    def removed(self) -> bool:
        return self.error is None

    def evidence(self) -> Evidence:
        state = "removed" if self.removed else f"could NOT be removed ({self.error})"
        return Evidence(kind="computed", source=self.path, sha256=self.sha256,
                        summary=f"{Path(self.path).name} {state}: {self.reason}",
                        data={"removed": self.removed, "reason": self.reason, "bytes": self.bytes,
                              "error": self.error})


def remove_output(path: Path, reason: str) -> RemovedOutput:
    """Delete ``path`` (a file or a symbolic link), recording its digest first; never raises."""
    digest: str | None = None
    size: int | None = None
    try:
        if path.is_file():
            digest, size = sha256_file(path), path.stat().st_size
        path.unlink()
    except OSError as exc:
        return RemovedOutput(str(path), digest, size, reason, f"{type(exc).__name__}: {exc}")
    return RemovedOutput(str(path), digest, size, reason)
