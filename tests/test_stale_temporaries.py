"""Temporaries left by a killed run (kill -9) are recognised by their owner's
PID and start time and removed by the next run that writes the same output,
with one warning line; a live process's temporary is never touched."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hdrmerge.atomic import owner_tag
from hdrmerge.demo_scene import write_bracket
from tests.conftest import REPO, run_cli
from tests.test_ctrl_c import start_fuse, wait_for_temporaries

# A real process stages the output through hdrmerge's own code, writes part of
# it, says so, and waits to be killed.
_STAGER = """
import sys, time
from pathlib import Path
from hdrmerge.atomic import StagedOutputs
staged = StagedOutputs()
tmp = staged.stage(Path(sys.argv[1]))
tmp.write_bytes(b"half an EXR")
print(tmp, flush=True)
time.sleep(600)
"""


@pytest.fixture
def shots(tmp_path):
    return write_bracket(tmp_path / "in", size=(64, 96))


def _stage_in_child(dest: Path) -> tuple[subprocess.Popen, Path]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen([sys.executable, "-c", _STAGER, str(dest)], stdout=subprocess.PIPE, text=True, env=env)
    tmp = Path(child.stdout.readline().strip())
    assert tmp.is_file(), tmp
    return child, tmp


def test_temporary_names_its_owner_process(tmp_path):
    child, tmp = _stage_in_child(tmp_path / "o.exr")
    try:
        stat = Path(f"/proc/{child.pid}/stat").read_bytes()
        start = stat[stat.rfind(b")") + 2 :].split()[19].decode()
        assert re.fullmatch(rf"\.o\.hdrmerge-[0-9a-f]{{8}}-{child.pid}-{start}-[a-z0-9_]+\.part\.exr", tmp.name), tmp.name
    finally:
        child.kill()
        child.wait()


def warnings_before_the_record(r: subprocess.CompletedProcess) -> list[str]:
    """stderr's lines before the one record line every successful merge ends with."""
    *lines, record = r.stderr.splitlines()
    assert record.startswith("wrote "), r.stderr
    return lines


def test_temporaries_of_a_killed_run_are_removed_by_the_next(env, shots, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    child, tmp = _stage_in_child(out / "o.exr")
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert tmp.exists()  # kill -9 gives no chance to clean up
    r = run_cli("fuse", *map(str, shots), "-o", str(out / "o.exr"), env=env)
    assert r.returncode == 0, r.stderr
    assert warnings_before_the_record(r) == [
        f"warning: removed 1 temporary file left by a killed run (process {child.pid}): {tmp}"
    ]
    assert sorted(p.name for p in out.iterdir()) == ["o.exr", "o.exr.preview.jpg"]


def test_temporary_of_a_live_run_is_left_alone(env, shots, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    child, tmp = _stage_in_child(out / "o.exr")
    try:
        r = run_cli("fuse", *map(str, shots), "-o", str(out / "o.exr"), env=env)
        assert r.returncode == 0, r.stderr
        assert warnings_before_the_record(r) == []
        assert tmp.read_bytes() == b"half an EXR"
    finally:
        child.kill()
        child.wait()


def test_temporary_whose_pid_now_belongs_to_another_process_is_removed(env, shots, tmp_path):
    """PID reuse: the PID runs, but it started at another time than the owner."""
    out = tmp_path / "out"
    out.mkdir()
    where = owner_tag().split("-")[0]
    reused = out / f".o.hdrmerge-{where}-{os.getpid()}-1-abcd1234.part.exr"  # this test runs, but did not start at tick 1
    reused.write_bytes(b"left behind")
    foreign = out / ".o.hdrmerge-00000000-1-1-abcd1234.part.exr"  # another host or container: not ours to judge
    foreign.write_bytes(b"someone else's")
    r = run_cli("fuse", *map(str, shots), "-o", str(out / "o.exr"), "--no-preview", env=env)
    assert r.returncode == 0, r.stderr
    assert warnings_before_the_record(r) == [
        f"warning: removed 1 temporary file left by a killed run (process {os.getpid()}): {reused}"
    ]
    assert sorted(p.name for p in out.iterdir()) == [foreign.name, "o.exr"]


def test_kill_9_of_a_running_fuse_then_the_same_command_cleans_up(env, tmp_path):
    """The real thing: SIGKILL while ``hdrmerge fuse`` writes, then run it again."""
    shots = write_bracket(tmp_path / "in", size=(96, 128))
    out = tmp_path / "out"
    args = ("--debug-dir", str(out / "debug"))
    for _attempt in range(3):  # the kill must land while temporaries exist
        out.mkdir()
        proc = start_fuse(shots, out, env, *args)
        if wait_for_temporaries(proc, out):
            proc.kill()
            proc.communicate()
            break
        proc.communicate()
        shutil.rmtree(out)
    else:
        pytest.fail("never caught the writing stage in three runs")
    # The killed run's lock file stays (the kernel dropped its lock): the
    # next run takes it over and removes it like its own.
    lock = out / ".o.exr.lock"
    assert lock.read_text() == f"{proc.pid}\n"
    left = sorted(p for p in out.rglob("*") if p.is_file() and p != lock)
    assert left and all(f"-{proc.pid}-" in p.name and ".part" in p.name for p in left), left
    r = run_cli("fuse", *map(str, shots), "-o", str(out / "o.exr"), *args, env=env)
    assert r.returncode == 0, r.stderr
    [line] = warnings_before_the_record(r)
    assert line.startswith(f"warning: removed {len(left)} temporary file{'s' if len(left) > 1 else ''} left by a killed run (process {proc.pid}): ")
    assert sorted(line.split("): ", 1)[1].split(", ")) == sorted(map(str, left))
    assert not any(p.exists() for p in left)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "debug/flow0.png", "debug/flow2.png", "debug/guard.png", "debug/guard_highlights.png", "debug/hdr.png", "debug/hdr_m.png", "debug/mask0.png",
        "debug/mask2.png", "debug/merge_long.png", "debug/merge_reference.png", "debug/merge_short.png", "o.exr", "o.exr.preview.jpg",
    ]
