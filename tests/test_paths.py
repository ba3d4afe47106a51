"""Paths a spec names stay in their folder: lexically at load time, with symlinks resolved at run time."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import cast

import pytest

from gendev_release.catalogue import step_by_id
from gendev_release.context import DutyContext, RunPaths
from gendev_release.paths import PathEscape, check_relative, ensure_inside, glob_inside, resolve_inside
from gendev_release.report import ReportBuilder
from gendev_release.spec import ReleaseSpec, load_spec, run_params
from gendev_release.targets.base import Target

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "dags" / "releases" / "demo.yaml"


# ------------------------------------------------------------------------------ check_relative
@pytest.mark.parametrize("value", ["a", "a/b.txt", ".", "a/./b", "dir/", "a file.txt", "é/ü.txt", "*.tar.gz",
                                   "**/x", "a..b", "..a/b", ":(exclude)docs"])
def test_check_relative_accepts(value: str) -> None:
    assert check_relative(value) == value


@pytest.mark.parametrize(("value", "message"), [
    ("", "path must not be empty; give a file relative to its folder"),
    ("   ", "path must not be empty; give a file relative to its folder"),
    ("/etc/passwd", "path '/etc/passwd' is absolute; give it relative to its folder"),
    ("\\\\server\\share", "path '\\\\\\\\server\\\\share' is absolute; give it relative to its folder"),
    ("C:\\x", "path 'C:\\\\x' is absolute; give it relative to its folder"),
    ("~/x", "path '~/x' starts with '~' (a home folder); give it relative to its folder"),
    ("..", "path '..' climbs out of its folder with '..'; name a file inside it"),
    ("a/../../b", "path 'a/../../b' climbs out of its folder with '..'; name a file inside it"),
    ("a\\..\\..\\b", "path 'a\\\\..\\\\..\\\\b' climbs out of its folder with '..'; name a file inside it"),
    (" a", "path ' a' has leading or trailing spaces; remove them"),
    ("a\x00b", "path 'a\\x00b' contains a control character; remove it"),
    ("a\nb", "path 'a\\nb' contains a control character; remove it"),
    ("a\x85b", "path 'a\\x85b' contains a control character; remove it"),
    ("a" * 1025, "path is 1025 characters long; at most 1024"),
])
def test_check_relative_refuses(value: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        check_relative(value)
    assert str(info.value) == message


def test_check_relative_names_what_and_where() -> None:
    with pytest.raises(ValueError) as info:
        check_relative("/x", what="glob", base="{artifacts_dir}")
    assert str(info.value) == "glob '/x' is absolute; give it relative to {artifacts_dir}"


# ------------------------------------------------------------------------------ resolve_inside
@pytest.fixture()
def base(tmp_path: Path) -> Path:
    folder = tmp_path / "base"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "file.txt").write_text("inside")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("outside")
    return folder


def test_resolve_inside_joins_and_resolves(base: Path) -> None:
    assert resolve_inside(base, "sub/file.txt", "readiness.runbook") == (base / "sub" / "file.txt").resolve()
    assert resolve_inside(base, ".", "risk.repo") == base.resolve()
    assert resolve_inside(base, "not/yet/written.xml", "qa.suites.0.junit") == base.resolve() / "not/yet/written.xml"


@pytest.mark.parametrize("value", ["/etc/passwd", "../outside/secret.txt", "sub/../../outside", "", "  "])
def test_resolve_inside_refuses_escaping_text(base: Path, value: str) -> None:
    with pytest.raises(PathEscape) as info:
        resolve_inside(base, value, "build.config")
    assert (info.value.field, info.value.value, info.value.base) == ("build.config", value, base)
    assert str(info.value).startswith(f"build.config: {value!r} is refused (")
    assert str(info.value).endswith(f"; it must stay inside {base}")


def test_symlink_to_a_file_outside_is_refused(base: Path) -> None:
    (base / "link.txt").symlink_to(base.parent / "outside" / "secret.txt")
    with pytest.raises(PathEscape) as info:
        resolve_inside(base, "link.txt", "readiness.runbook")
    target = (base.parent / "outside" / "secret.txt").resolve()
    assert info.value.field == "readiness.runbook"
    assert str(info.value) == (f"readiness.runbook: 'link.txt' resolves to {target} (through a symbolic link); "
                               f"it must stay inside {base.resolve()}")


def test_symlinked_folder_outside_is_refused(base: Path) -> None:
    (base / "dir").symlink_to(base.parent / "outside", target_is_directory=True)
    with pytest.raises(PathEscape) as info:
        resolve_inside(base, "dir/secret.txt", "security.config_files")
    assert info.value.field == "security.config_files"


def test_symlink_that_stays_inside_is_fine(base: Path) -> None:
    (base / "alias.txt").symlink_to(base / "sub" / "file.txt")
    assert resolve_inside(base, "alias.txt", "build.config") == (base / "sub" / "file.txt").resolve()


def test_a_symlinked_base_is_fine(base: Path, tmp_path: Path) -> None:
    (tmp_path / "base-link").symlink_to(base, target_is_directory=True)
    assert resolve_inside(tmp_path / "base-link", "sub/file.txt", "build.config") == (
        base / "sub" / "file.txt").resolve()


def test_ensure_inside_and_glob_inside(base: Path) -> None:
    (base / "a.tar.gz").write_text("a")
    (base / "b.tar.gz").symlink_to(base / "a.tar.gz")
    assert ensure_inside(base, base / "a.tar.gz", "build.artifacts") == (base / "a.tar.gz").resolve()
    assert [p.name for p in glob_inside(base, "*.tar.gz", "build.artifacts")] == ["a.tar.gz", "b.tar.gz"]
    (base / "c.tar.gz").symlink_to(base.parent / "outside" / "secret.txt")
    with pytest.raises(PathEscape) as info:
        glob_inside(base, "*.tar.gz", "build.artifacts")
    assert (info.value.field, info.value.value) == ("build.artifacts", "*.tar.gz")
    with pytest.raises(PathEscape) as info:
        glob_inside(base, "../*", "build.artifacts")
    assert info.value.field == "build.artifacts"


# ----------------------------------------------------------------------------- the duties
class _QuietTarget:
    """Just enough of a target for a duty's placeholders: nothing is deployed."""

    kind = "local"

    def current_version(self) -> None:
        return None

    def url(self) -> None:
        return None


def _context(tmp_path: Path, spec: ReleaseSpec) -> DutyContext:
    paths = RunPaths(home=tmp_path / "home", dag_id=spec.dag_id, run_id="manual__paths")
    paths.workdir.mkdir(parents=True, exist_ok=True)
    return DutyContext(spec=spec, params=run_params(spec, {"version": "1.0.0"}), paths=paths,
                       target=cast(Target, _QuietTarget()))  # a duck-typed stand-in


def test_qa_never_deletes_a_file_outside_the_workdir(tmp_path: Path) -> None:
    """``qa.suites[].junit: /any/absolute/file`` used to make the QA step delete that file."""
    from gendev_release.duties.testing import _run_suites

    victim = tmp_path / "precious.xml"
    victim.write_text("keep me")
    spec = load_spec(DEMO)
    # Skip validation (model_copy does not validate), as a spec built in code could.
    suite = spec.qa.suites[0].model_copy(update={"junit": str(victim)})
    spec = spec.model_copy(update={"qa": spec.qa.model_copy(update={"suites": [suite]})})
    ctx = _context(tmp_path, spec)
    phase, step = step_by_id("qa")
    report = ReportBuilder(phase, step, service=spec.service, version="1.0.0", run_id=ctx.run_id)
    with pytest.raises(PathEscape) as info:
        _run_suites(ctx, report, "http://127.0.0.1:9")
    assert info.value.field == "qa.suites.0.junit"
    assert victim.read_text() == "keep me"


def test_qa_junit_symlink_out_of_the_workdir_is_refused(tmp_path: Path) -> None:
    from gendev_release.duties.testing import _run_suites

    victim = tmp_path / "precious.xml"
    victim.write_text("keep me")
    spec = load_spec(DEMO)
    ctx = _context(tmp_path, spec)
    junit = ctx.paths.workdir / spec.qa.suites[0].junit
    junit.parent.mkdir(parents=True)
    junit.symlink_to(victim)
    phase, step = step_by_id("qa")
    report = ReportBuilder(phase, step, service=spec.service, version="1.0.0", run_id=ctx.run_id)
    with pytest.raises(PathEscape) as info:
        _run_suites(ctx, report, "http://127.0.0.1:9")
    assert info.value.field == "qa.suites.0.junit"
    assert victim.read_text() == "keep me"


def test_a_spec_input_symlinked_outside_becomes_a_blocker(tmp_path: Path) -> None:
    from gendev_release.duties.base import run_duty

    spec_dir = tmp_path / "spec"
    shutil.copytree(DEMO.parent / "demo", spec_dir / "demo")
    shutil.copy(DEMO, spec_dir / "demo.yaml")
    (spec_dir / "demo" / "runbook.md").unlink()
    (tmp_path / "elsewhere.md").write_text("# not the spec's to read\n")
    os.symlink(tmp_path / "elsewhere.md", spec_dir / "demo" / "runbook.md")
    spec = load_spec(spec_dir / "demo.yaml")  # lexically fine: the link is only seen at run time
    with pytest.raises(PathEscape):
        spec.input_path("readiness.runbook", spec.readiness.runbook)
    report = run_duty(_context(tmp_path, spec), "readiness")
    assert report.status == "failed"
    [blocker] = [b for b in report.blocking_issues if b.startswith("readiness.read")]
    assert blocker.startswith("readiness.read: readiness.runbook: 'demo/runbook.md' resolves to ")
    assert "(through a symbolic link); it must stay inside" in blocker
