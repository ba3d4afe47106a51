"""The secret scanner: which lines are secrets, which are references, and how outputs are scanned."""

from __future__ import annotations

import io
import json
import random
import tarfile
import zipfile
from pathlib import Path

import pytest

from gendev_release.report import sha256_file
from gendev_release.secrets import (
    MAX_MEMBER_BYTES,
    SecretHit,
    looks_random,
    names_secret,
    remove_output,
    scan_output,
    scan_secrets,
    shannon_entropy,
)

JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkphbmUifQ"
       ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
RANDOM_TOKEN = "Zx81kQ0vTq9LmN2bW7yR4cHs6JdP3fGa"

# (line, file name, expected rules); the secret part of every positive is what must never show up in a hit
POSITIVES: list[tuple[str, str, list[str]]] = [
    ("DB_PASS=hunter2-very-secret", "app.env", ["assignment to DB_PASS"]),
    ('PASSPHRASE="correct horse battery staple"', "app.env", ["assignment to PASSPHRASE"]),
    ("signing_passphrase: tr0ub4dor", "app.yaml", ["assignment to signing_passphrase"]),
    ("dbPass: x9-kf-22", "app.yaml", ["assignment to dbPass"]),
    ("DB_PASS=123456", "app.env", ["assignment to DB_PASS"]),
    ("DB_PASSWORD=hunter2", "app.env", ["assignment to DB_PASSWORD"]),
    ("client_secret: abc-123-def", "app.yaml", ["assignment to client_secret"]),
    ('{"password": "hunter2"}', "app.json", ["assignment to password"]),
    ("api.key = abc123def456", "app.ini", ["assignment to api.key"]),
    ("CACHE_URL=redis://:pw@cache:6379/0", "app.env", ["url_credentials"]),
    ("DATABASE_URL=postgres://app:s3cret@db:5432/app", "app.env", ["url_credentials"]),
    (f"SESSION={JWT}", "app.env", ["jwt"]),
    (f"-H 'Authorization: Bearer {JWT}'", "call.sh", ["jwt", "assignment to Authorization"]),
    ("-----BEGIN RSA PRIVATE KEY-----", "id_rsa", ["private_key"]),
    ("aws_key: AKIAIOSFODNN7EXAMPLE", "app.yaml", ["aws_access_key_id"]),
    ("GH=ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8", "app.env", ["github_token"]),
    (f"opaque = {RANDOM_TOKEN}", "app.ini", ["high-entropy string (32 chars)"]),
    ('API_KEY = "k3j4h5g6f7d8s9a0q1w2"', "settings.py", ["assignment to API_KEY"]),
]

NEGATIVES: list[tuple[str, str]] = [
    ("DEMO_API_TOKEN_CONN_ID=demo_api", "app.env"),
    ("SECRET_KEY=${SECRET_KEY}", "app.env"),
    ("DB_PASS=$DB_PASS", "app.env"),
    ("JWT_SECRET: ${JWT_SECRET:?set JWT_SECRET}", "compose.yml"),
    ("password={{ db_password }}", "app.ini.j2"),
    ('password: "{{ vault_db_password }}"', "app.yaml"),
    ("jwt_secret = {JWT_SECRET_KEY}", "app.cfg"),
    ("DATABASE_URL=postgres://app:${DB_PASSWORD}@db:5432/app", "app.env"),
    ("PASSWORD_FILE=/run/secrets/db", "app.env"),
    ("DB_PASSWORD_PATH: /run/secrets/db", "app.yaml"),
    ('password = ""', "app.ini"),
    ("DB_PASS=", "app.env"),
    ("require_auth = true", "app.ini"),
    ("PASSWORD_REQUIRED=false", "app.env"),
    ("token_ttl = 3600", "app.ini"),
    ("max_tokens: 4096", "app.yaml"),
    ("auth_backends = airflow.api.auth.backend.session", "airflow.cfg"),
    ("author = Jane Doe", "setup.cfg"),
    ("passport_number = X1234", "app.ini"),
    ("bypass_cache = yes", "app.ini"),
    ("# password=only-in-a-comment", "app.ini"),
    ('curl -H "Authorization: Bearer $TOKEN" https://api.example.com', "call.sh"),
    ("1. Find the previous slot in `$GENDEV_HOME/targets/demo/state.json` (`previous`).", "rollback.md"),
    ("raise RemovedInAirflow4Warning_deprecated(url)", "tool.txt"),
    ('token = request.headers["X-Token"]', "app.py"),
    ('password = os.environ["DB_PASSWORD"]', "app.py"),
    ('label = {"password": "Password for the package index"}', "forms.py"),
    ("sha256: 2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", "manifest.yaml"),
]


@pytest.mark.parametrize(("line", "filename", "rules"), POSITIVES, ids=[p[0][:40] for p in POSITIVES])
def test_positive(line: str, filename: str, rules: list[str]) -> None:
    hits = scan_secrets(f"# header\n{line}\n", filename)
    assert [(h.file, h.line, h.rule) for h in hits] == [(filename, 2, rule) for rule in rules]


@pytest.mark.parametrize(("line", "filename"), NEGATIVES, ids=[n[0][:40] for n in NEGATIVES])
def test_negative(line: str, filename: str) -> None:
    assert scan_secrets(line + "\n", filename) == []


def test_a_hit_never_carries_the_secret() -> None:
    secrets = ["hunter2-very-secret", "correct horse", "tr0ub4dor", "s3cret", JWT.split(".")[2], RANDOM_TOKEN,
               "k3j4h5g6f7d8s9a0q1w2", "AKIAIOSFODNN7EXAMPLE"]
    text = "\n".join(line for line, _, _ in POSITIVES)
    hits = scan_secrets(text, "all.env")
    assert len(hits) >= len(POSITIVES)
    rendered = json.dumps([h.as_dict() for h in hits]) + " ".join(str(h) for h in hits)
    assert not [s for s in secrets if s in rendered]
    assert str(SecretHit("app.env", 1, "assignment to DB_PASS")) == "app.env:1 (assignment to DB_PASS)"
    assert str(SecretHit("b.tar.gz", 6, "jwt", "b/service.env")) == "b.tar.gz!b/service.env:6 (jwt)"


def test_the_demo_inputs_are_clean() -> None:
    demo = Path(__file__).resolve().parents[1] / "dags" / "releases" / "demo"
    for path in sorted(p for p in demo.rglob("*") if p.is_file()):
        assert scan_secrets(path.read_text(encoding="utf-8"), path.name) == [], path.name


def test_helpers() -> None:
    assert shannon_entropy("aaaa") == 0.0 and shannon_entropy("ab") == 1.0
    assert names_secret("DB_PASS") and names_secret("dbPassword") and names_secret("private.key")
    assert not names_secret("DB_PASS_FILE") and not names_secret("bypass") and not names_secret("author")
    assert looks_random(RANDOM_TOKEN) and not looks_random("GENDEV_HOME/targets/demo/state")
    assert not looks_random("docs/cli/latest/reference/s3api/upload-part-copy")


# ================================================================================= step outputs
def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    return path


def test_scan_output_reads_text_members_of_a_tarball(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "demo-1.1.0.tar.gz", {
        "demo-1.1.0/VERSION": b"1.1.0\n",
        "demo-1.1.0/service.env": b"DEMO_LOG_LEVEL=info\nDB_PASS=hunter2-very-secret\n",
        "demo-1.1.0/logo.png": b"\x89PNG\r\n\x1a\n\x00\x00DB_PASS=hidden-in-binary",
        "demo-1.1.0/huge.txt": b"x" * (MAX_MEMBER_BYTES + 1),
    })
    scan = scan_output(archive)
    assert scan.format == "tar" and not scan.clean
    assert [str(h) for h in scan.hits] == ["demo-1.1.0.tar.gz!demo-1.1.0/service.env:2 (assignment to DB_PASS)"]
    assert scan.scanned == ["demo-1.1.0/VERSION", "demo-1.1.0/service.env"]
    assert [(s.name, s.reason) for s in scan.skipped] == [
        ("demo-1.1.0/logo.png", "binary"),
        ("demo-1.1.0/huge.txt", f"{MAX_MEMBER_BYTES + 1} bytes, over {MAX_MEMBER_BYTES}")]
    evidence = scan.evidence("build artifact")
    assert evidence.data["hits"] == [{"file": "demo-1.1.0.tar.gz", "member": "demo-1.1.0/service.env", "line": 2,
                                      "rule": "assignment to DB_PASS"}]
    assert "hunter2" not in evidence.model_dump_json()


def test_scan_output_reads_zip_members_and_plain_files(tmp_path: Path) -> None:
    wheel = tmp_path / "demo-1.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("demo/settings.py", 'TOKEN = "ghp_' + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8" + '"\n')
        archive.writestr("demo/app.py", 'token = request.headers["X-Token"]\n')
    zipped = scan_output(wheel)
    assert zipped.format == "zip"
    assert [(h.member, h.line, h.rule) for h in zipped.hits] == [("demo/settings.py", 1, "github_token"),
                                                                 ("demo/settings.py", 1, "assignment to TOKEN")]
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"version": "1.1.0", "files": [{"sha256": "ab" * 32}]}), encoding="utf-8")
    plain = scan_output(manifest)
    assert plain.format == "file" and plain.clean and plain.scanned == ["manifest.json"]


def test_scan_output_reports_a_broken_archive(tmp_path: Path) -> None:
    rng = random.Random(7)
    digests = "".join(f"{rng.getrandbits(256):064x}\n" for _ in range(2000)).encode()
    archive = _tar(tmp_path / "b.tar.gz", {"b/digests.txt": digests})
    archive.write_bytes(archive.read_bytes()[:4000])  # cut off mid-stream
    scan = scan_output(archive)
    assert scan.error is not None and scan.error.startswith(("EOFError", "ReadError")), scan.error
    assert not scan.clean and scan.hits == []


def test_remove_output_records_what_and_why(tmp_path: Path) -> None:
    path = tmp_path / "b.tar.gz"
    path.write_bytes(b"payload")
    digest = sha256_file(path)
    outcome = remove_output(path, "holds plaintext secret(s) at b.tar.gz!b/app.env:1 (assignment to DB_PASS)")
    assert outcome.removed and not path.exists()
    evidence = outcome.evidence()
    assert evidence.sha256 == digest and evidence.source == str(path)
    assert evidence.data == {"removed": True, "reason": outcome.reason, "bytes": 7, "error": None}
    again = remove_output(path, "again")
    assert not again.removed and again.error and again.error.startswith("FileNotFoundError")
