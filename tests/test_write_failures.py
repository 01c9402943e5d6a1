"""A full disk and a read-only weights cache, made for real with a small tmpfs
(needs root with the right to mount, as in CI), each give one line naming the
file the user knows (never the hidden temporary) and exit 1: the environment,
not the user's input. Nothing partial is left behind."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pytest

from hdrmerge.demo_scene import write_bracket
from tests.conftest import SAFNET_S_PTH, SHARED, run_cli


@pytest.fixture
def tmpfs(tmp_path):
    """``mount(name, size)``: a fresh tmpfs of ``size`` at tmp_path/name."""
    mounted: list[Path] = []

    def mount(name: str, size: str = "256k") -> Path:
        point = tmp_path / name
        point.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(point)], capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs here (needs root with mount rights): {r.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], check=True)


def read_only(point: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)


def fill(folder: Path) -> None:
    """Write a file until the file system is full."""
    with open(folder / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


@pytest.fixture
def shots(tmp_path):
    return write_bracket(tmp_path / "in", size=(64, 96))


def _one_line(r, code: int, message: str) -> None:
    assert r.returncode == code, (r.returncode, r.stderr)
    assert r.stderr.splitlines() == ["error: " + message], r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize(
    "name,extra,failing",
    [("o.exr", ["--no-preview"], "o.exr"), ("o.hdr", [], "o.hdr.preview.jpg")],
)
def test_full_disk_names_the_output_not_its_temporary(isolated_env, shots, tmpfs, name, extra, failing):
    disk = tmpfs("disk")
    fill(disk)
    env = dict(isolated_env, HDRMERGE_WEIGHTS_DIR=str(SHARED / "weights"))
    r = run_cli("fuse", *map(str, shots), "-o", str(disk / name), *extra, env=env)
    _one_line(r, 1, f"cannot write {disk / failing}: no space left on the device; free some space or choose another output folder")
    assert sorted(p.name for p in disk.iterdir()) == ["filler"]


def test_damaged_cache_file_on_a_read_only_cache_is_named(isolated_env, shots, tmpfs, tmp_path):
    cache = tmpfs("cache", "16m")
    env = dict(isolated_env, HDRMERGE_CACHE_DIR=str(cache))
    r = run_cli("weights", "install", "safnet-s", str(SAFNET_S_PTH), env=env)
    assert r.returncode == 0, r.stderr
    cached = cache / "safnet-s.safetensors"
    data = bytearray(cached.read_bytes())
    data[-100:] = bytes(255 - b for b in data[-100:])  # flip the last tensor bytes
    cached.write_bytes(bytes(data))
    read_only(cache)
    r = run_cli("fuse", *map(str, shots), "-o", str(tmp_path / "o.exr"), env=env)
    _one_line(
        r, 1,
        f"cached safnet-s at {cached} is damaged (its tensors do not match their recorded hash) and cannot be "
        "removed (Read-only file system); delete it, or set HDRMERGE_CACHE_DIR to a writable folder, then run "
        "`hdrmerge weights download safnet-s`",
    )
    assert cached.read_bytes() == bytes(data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "in"]


@pytest.mark.parametrize("command", ["install", "download", "fuse"])
def test_read_only_cache_is_an_environment_error(isolated_env, shots, tmpfs, tmp_path, command):
    cache = tmpfs("cache")
    read_only(cache)
    env = dict(isolated_env, HDRMERGE_CACHE_DIR=str(cache))
    if command == "install":
        r = run_cli("weights", "install", "safnet-s", str(SAFNET_S_PTH), env=env)
    elif command == "download":
        r = run_cli("weights", "download", "safnet-s", env=env)
    else:
        r = run_cli("fuse", *map(str, shots), "-o", str(tmp_path / "o.exr"), env=env)
    _one_line(r, 1, f"cannot write to the weights cache {cache} (Read-only file system); "
              "make it writable or set HDRMERGE_CACHE_DIR to a writable folder")
    assert not (tmp_path / "o.exr").exists()
