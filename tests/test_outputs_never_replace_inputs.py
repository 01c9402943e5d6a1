"""No output, preview, debug image or temporary may ever be an input file,
whatever the flags (--overwrite included), and two outputs may not be one file
however their paths are spelled. Each refusal happens before any work: exit 2,
one line, no output, the inputs byte for byte as they were."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hdrmerge.errors import InputError
from hdrmerge.pipeline import FuseOptions, prepare
from hdrmerge.demo_scene import write_bracket
from tests.conftest import run_cli


@pytest.fixture
def shots(tmp_path):
    return write_bracket(tmp_path / "in", size=(64, 96))


def _refused(r, message: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0] == "error: " + message, lines[0]
    assert "--overwrite" not in r.stderr
    assert r.stdout == ""


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _spell(kind: str, shot: Path, tmp_path: Path) -> str:
    """Another path that names the file ``shot``."""
    if kind == "same":
        return str(shot)
    if kind == "dotdot":
        return str(tmp_path / "in" / ".." / "in" / shot.name)
    if kind == "symlink":
        link = tmp_path / "link.jpg"
        link.symlink_to(shot)
        return str(link)
    if kind == "hardlink":
        link = tmp_path / "hard.jpg"
        os.link(shot, link)
        return str(link)
    if kind == "symlinked-dir":
        (tmp_path / "alias").symlink_to(shot.parent, target_is_directory=True)
        return str(tmp_path / "alias" / shot.name)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["same", "dotdot", "symlink", "hardlink", "symlinked-dir"])
def test_preview_naming_a_shot_is_refused_even_with_overwrite(env, shots, tmp_path, kind):
    before = _snapshot(tmp_path / "in")
    preview = _spell(kind, shots[1], tmp_path)
    out = tmp_path / "o.exr"
    r = run_cli("fuse", *map(str, shots), "-o", str(out), "--preview", preview, "--overwrite", env=env)
    which = "an input file" if kind == "same" else f"the input file {shots[1]}"
    _refused(r, f"the preview {preview} is {which}; inputs are never overwritten, so choose another path for the preview")
    assert _snapshot(tmp_path / "in") == before
    assert not out.exists()


def test_preview_naming_a_shot_without_overwrite_does_not_suggest_overwrite(env, shots, tmp_path):
    r = run_cli("fuse", *map(str, shots), "-o", str(tmp_path / "o.exr"), "--preview", str(shots[1]), env=env)
    _refused(r, f"the preview {shots[1]} is an input file; inputs are never overwritten, so choose another path for the preview")


def test_output_naming_a_shot_is_refused_even_with_overwrite(env, shots, tmp_path):
    # Shots are recognised by content, so a JPEG may well be called .exr.
    disguised = shots[2].with_suffix(".exr")
    shots[2].rename(disguised)
    before = _snapshot(tmp_path / "in")
    r = run_cli("fuse", str(shots[0]), str(shots[1]), str(disguised), "-o", str(disguised), "--no-preview", "--overwrite", env=env)
    _refused(r, f"the output {disguised} is an input file; inputs are never overwritten, so choose another output path")
    assert _snapshot(tmp_path / "in") == before


@pytest.mark.parametrize("name", ["flow0.png", "mask0.png", "hdr.png"])
def test_debug_dir_in_the_shots_folder_never_replaces_a_shot(env, shots, tmp_path, name):
    """A shot whose name is that of a debug image (the reader goes by content)."""
    clash = shots[1].with_name(name)
    shots[1].rename(clash)
    before = _snapshot(tmp_path / "in")
    r = run_cli(
        "fuse", str(shots[0]), str(clash), str(shots[2]), "-o", str(tmp_path / "o.exr"),
        "--debug-dir", str(tmp_path / "in"), "--overwrite", env=env,
    )
    _refused(r, f"the debug image {clash} is an input file; inputs are never overwritten, so choose another --debug-dir")
    assert _snapshot(tmp_path / "in") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


@pytest.mark.parametrize("kind", ["relative", "symlinked-dir"])
def test_preview_spelling_the_output_path_differently_is_refused(env, shots, tmp_path, kind):
    if kind == "relative":
        output, preview = "./x.exr", str(tmp_path / "x.exr")
    else:
        (tmp_path / "alias").symlink_to(tmp_path, target_is_directory=True)
        output, preview = "x.exr", str(tmp_path / "alias" / "x.exr")
    r = run_cli("fuse", *map(str, shots), "-o", output, "--preview", preview, env=env, cwd=tmp_path)
    # A preview must end in .jpg/.jpeg/.png, so it is refused by its name before the same-file check.
    _refused(r, f"--preview {preview}: a preview is a JPEG or PNG; end its name in .jpg, .jpeg or .png")
    assert not (tmp_path / "x.exr").exists()


def test_symlink_loop_as_a_shot_is_an_input_error(env, shots, tmp_path):
    (tmp_path / "a.jpg").symlink_to(tmp_path / "b.jpg")
    (tmp_path / "b.jpg").symlink_to(tmp_path / "a.jpg")
    r = run_cli("fuse", str(shots[0]), str(tmp_path / "a.jpg"), str(shots[2]), "-o", str(tmp_path / "o.exr"), env=env)
    _refused(r, f"{tmp_path / 'a.jpg'} is a symlink loop; make it point at a file")


def test_symlink_loop_as_the_output_is_an_input_error(env, shots, tmp_path):
    (tmp_path / "a.exr").symlink_to(tmp_path / "b.exr")
    (tmp_path / "b.exr").symlink_to(tmp_path / "a.exr")
    r = run_cli("fuse", *map(str, shots), "-o", str(tmp_path / "a.exr"), env=env)
    _refused(r, f"{tmp_path / 'a.exr'} is a symlink loop; make it point at a file")


def test_prepare_protects_the_shots_of_every_caller(shots, tmp_path):
    """batch reaches the same check through pipeline.prepare, once per bracket."""
    os.link(shots[0], tmp_path / "copy.jpg")
    options = FuseOptions(preview=tmp_path / "copy.jpg", overwrite=True)
    with pytest.raises(InputError, match=r"^the preview .*copy\.jpg is the input file .*shot_01\.jpg; inputs are never overwritten"):
        prepare(shots, tmp_path / "o.hdr", options)
    assert not (tmp_path / "o.hdr").exists()
