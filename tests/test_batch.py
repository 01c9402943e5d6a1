"""``hdrmerge batch``: grouping, choosing three, resuming, failures, Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from hdrmerge.batch import Shot, choose_three, group_shots, render_name, scan
from hdrmerge.errors import InputError
from hdrmerge.reading import Exif
from hdrmerge.synthetic import write_bracket
from tests.conftest import DATA, SHARED, run_cli

T0 = datetime(2026, 5, 1, 20, 0, 0)


@pytest.fixture
def env(isolated_env):
    return dict(isolated_env, HDRMERGE_WEIGHTS_DIR=str(SHARED / "weights"))


def _json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def _shot(name: str, seconds: float, ev: float, *, t: float = 0.01, iso: float = 100, aeb: bool = False, model: str = "X") -> Shot:
    exif = Exif(make="M", model=model, exposure_time=t, fnumber=8.0, iso=iso, exposure_mode="Auto Bracket" if aeb else None)
    return Shot(Path(name), exif, T0 + timedelta(seconds=seconds), ev)


# --- grouping rules on constructed shots -------------------------------------------------


def test_long_exposures_do_not_split_a_bracket():
    shots = [_shot("a", 0, 0, t=30), _shot("b", 31, 1, t=60), _shot("c", 92, 2, t=2)]
    assert [len(g.shots) for g in group_shots(shots)] == [3]
    # The same gaps with short exposures are three separate shots.
    shots = [_shot("a", 0, 0), _shot("b", 31, 1), _shot("c", 92, 2)]
    assert [len(g.shots) for g in group_shots(shots)] == [1, 1, 1]


def test_repeated_exposure_starts_a_new_bracket():
    shots = [_shot(n, i * 0.3, ev) for i, (n, ev) in enumerate(zip("abcdef", (0, -2, 2, 0, -2, 2)))]
    assert [[s.label for s in g.shots] for g in group_shots(shots)] == [["a", "b", "c"], ["d", "e", "f"]]


def test_iso_change_splits_unless_auto_bracket():
    plain = [_shot("a", 0, 0), _shot("b", 0.2, -1, iso=200), _shot("c", 0.4, 1, iso=200)]
    assert [len(g.shots) for g in group_shots(plain)] == [1, 2]
    aeb = [_shot("a", 0, 0, aeb=True), _shot("b", 0.2, -1, iso=200, aeb=True), _shot("c", 0.4, 1, aeb=True)]
    assert [len(g.shots) for g in group_shots(aeb)] == [3]


def test_camera_change_splits():
    shots = [_shot("a", 0, 0), _shot("b", 0.2, -2, model="Y"), _shot("c", 0.4, 2, model="Y")]
    assert [len(g.shots) for g in group_shots(shots)] == [1, 2]


def test_group_size_forces_fixed_groups():
    shots = [_shot(n, i * 100, i) for i, n in enumerate("abcdef")]
    assert [len(g.shots) for g in group_shots(shots, group_size=3)] == [3, 3]


@pytest.mark.parametrize(
    "evs,expected",
    [
        ((0, -1, 1, -2, 2), (-2, 0, 2)),
        ((0, -1, 1, -2, 2, -3, 3), (-3, 0, 3)),
        ((0, -2, 2, -4, 4, -6, 6, -8, 8), (-2, 0, 2)),  # 2-stop steps: the nearest ones are within 3
        ((0, -4, 4), (-4, 0, 4)),  # three shots: all of them
        ((0, -4, 4, -8, 8), (-4, 0, 4)),  # none within 3 stops: the nearest
    ],
)
def test_choose_three(evs, expected):
    shots = [_shot(f"s{i}", i * 0.2, ev) for i, ev in enumerate(evs)]
    c = choose_three(shots)
    assert tuple(s.ev for s in c.shots) == expected


def test_name_template():
    from hdrmerge.batch import PlannedBracket

    b = PlannedBracket(7, [_shot("DSC_0001.NEF", 0, 0)], "merge")
    assert render_name("{stem}_hdr", b) == "DSC_0001_hdr"
    assert render_name("{date}-{time}_{index}_{camera}", b) == "20260501-200000_0007_X"
    with pytest.raises(InputError, match=r"^--name '\{nope\}': unknown field 'nope'"):
        render_name("{nope}", b)


# --- real camera EXIF ----------------------------------------------------------------------


def test_bif_thumbs_exact_groups_dry_run(env, tmp_path):
    shutil.copytree(DATA / "bif_exif_thumbs", tmp_path / "card")
    r = run_cli("batch", str(tmp_path / "card"), "--dry-run", "--json", env=env)
    assert r.returncode == 0, r.stderr
    rows = _json_lines(r.stdout)
    groups = [[Path(f).name for f in row["files"]] for row in rows[:-1]]
    assert groups == [
        ["DSC08191.JPG"],
        ["DSC08192.JPG"],
        ["DSC08193.JPG"],
        ["DSC08194.JPG", "DSC08195.JPG"],
        ["DSC08196.JPG", "DSC08197.JPG", "DSC08198.JPG", "DSC08199.JPG", "DSC08200.JPG"],
        ["DSC08201.JPG", "DSC08202.JPG", "DSC08203.JPG", "DSC08204.JPG", "DSC08205.JPG"],
    ]
    assert [row["status"] for row in rows[:-1]] == ["single", "single", "single", "incomplete", "merge", "merge"]
    assert [Path(f).name for f in rows[4]["chosen"]] == ["DSC08199.JPG", "DSC08196.JPG", "DSC08200.JPG"]
    assert rows[-1] == {"summary": {"single": 3, "incomplete": 1, "merge": 2}, "dry_run": True}
    assert not (tmp_path / "card" / "hdr").exists()  # a dry run writes nothing


def test_bif_thumbs_merge_then_rerun_redoes_nothing(env, tmp_path):
    card = tmp_path / "card"
    shutil.copytree(DATA / "bif_exif_thumbs", card)
    r = run_cli("batch", str(card), "--json", env=env)
    assert r.returncode == 0, r.stderr
    rows = _json_lines(r.stdout)
    assert rows[-1]["summary"] | {"seconds": 0} == {
        "merged": 2, "done": 0, "single": 3, "incomplete": 1, "failed": 0, "not_started": 0, "seconds": 0, "exit_code": 0,
    }
    written = sorted(p.name for p in (card / "hdr").iterdir())
    assert written == ["DSC08196_hdr.exr", "DSC08196_hdr.preview.jpg", "DSC08201_hdr.exr", "DSC08201_hdr.preview.jpg"]
    stamps = {p.name: p.stat().st_mtime_ns for p in (card / "hdr").iterdir()}
    r = run_cli("batch", str(card), "--json", env=env)
    assert r.returncode == 0
    assert _json_lines(r.stdout)[-1]["summary"]["done"] == 2
    assert {p.name: p.stat().st_mtime_ns for p in (card / "hdr").iterdir()} == stamps


def test_pingpong_with_shuffled_names(env, tmp_path):
    card = tmp_path / "card"
    card.mkdir()
    # Name order (a, b, c) is not capture order (Img2 at .03 s, Img1 at .36, Img3 at .69).
    for src, dst in (("Img3.JPG", "a.jpg"), ("Img2.JPG", "b.jpg"), ("Img1.JPG", "c.jpg")):
        shutil.copy(DATA / "ius_pingpong" / src, card / dst)
    r = run_cli("batch", str(card), "--json", "--format", "hdr", "--no-preview", env=env)
    assert r.returncode == 0, r.stderr
    row = _json_lines(r.stdout)[0]
    assert [Path(f).name for f in row["files"]] == ["b.jpg", "c.jpg", "a.jpg"]  # capture order
    assert row["status"] == "merged" and Path(row["output"]).name == "b_hdr.hdr"
    assert sorted(p.name for p in (card / "hdr").iterdir()) == ["b_hdr.hdr"]


# --- synthetic brackets --------------------------------------------------------------------


def _card(tmp_path: Path, n: int, **kw) -> Path:
    card = tmp_path / "card"
    for i in range(n):
        write_bracket(card, size=(64, 96), start=T0 + timedelta(minutes=i), prefix=f"b{i + 1}", **kw)
    return card


def test_corrupt_file_fails_its_bracket_only(env, tmp_path):
    card = _card(tmp_path, 3)
    bad = card / "b2_02.jpg"
    bad.write_bytes(bad.read_bytes()[:500])  # the EXIF survives, the image does not
    r = run_cli("batch", str(card), "--json", env=env)
    assert r.returncode == 1
    rows = _json_lines(r.stdout)
    assert [row["status"] for row in rows[:-1]] == ["merged", "failed", "merged"]
    assert rows[1]["reason"] == f"{bad}: damaged or truncated JPEG file; re-export or copy it again"
    assert rows[-1]["summary"]["failed"] == 1 and rows[-1]["summary"]["exit_code"] == 1
    assert sorted(p.name for p in (card / "hdr").iterdir()) == [
        "b1_01_hdr.exr", "b1_01_hdr.preview.jpg", "b3_01_hdr.exr", "b3_01_hdr.preview.jpg",
    ]


def test_five_shot_bracket_uses_three(env, tmp_path):
    card = tmp_path / "card"
    write_bracket(card, evs=(0.0, -1.0, 1.0, -2.0, 2.0), size=(64, 96), start=T0)
    r = run_cli("batch", str(card), "--json", env=env)
    assert r.returncode == 0, r.stderr
    row = _json_lines(r.stdout)[0]
    assert [Path(f).name for f in row["chosen"]] == ["shot_04.jpg", "shot_01.jpg", "shot_05.jpg"]
    assert row["status"] == "merged" and row["reason"].startswith("5-shot bracket: reference shot_01.jpg")


def test_folder_without_exif_needs_group_size(env, tmp_path):
    card = tmp_path / "card"
    card.mkdir()
    for name in ("OldHouse", "SeaRock"):
        for i in (1, 2, 3):
            shutil.copy(DATA / "merianos_fusion_noexif" / name / f"{name}{i}.jpg", card)
    r = run_cli("batch", str(card), env=env)
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "error: 6 file(s) carry no EXIF capture time (OldHouse1.jpg, OldHouse2.jpg, OldHouse3.jpg …); "
        "pass --group-size N to group them in file-name order"
    )
    r = run_cli("batch", str(card), "--group-size", "3", "--json", "--no-preview", env=env)
    assert r.returncode == 0, r.stderr
    rows = _json_lines(r.stdout)
    assert [[Path(f).name for f in row["files"]] for row in rows[:-1]] == [
        ["OldHouse1.jpg", "OldHouse2.jpg", "OldHouse3.jpg"],
        ["SeaRock1.jpg", "SeaRock2.jpg", "SeaRock3.jpg"],
    ]
    assert all(row["status"] == "merged" for row in rows[:-1])
    assert "exposures estimated from the pixels" in rows[0]["warnings"][0]


def test_name_collision_is_refused_before_any_work(env, tmp_path):
    card = _card(tmp_path, 2)
    r = run_cli("batch", str(card), "--name", "{camera}", env=env)
    assert r.returncode == 2
    assert r.stderr.strip() == "error: --name '{camera}' gives brackets 1 and 2 the same output synthetic-camera.exr; include {stem} or {index}"


def test_empty_folder(env, tmp_path):
    r = run_cli("batch", str(tmp_path), env=env)
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: no photos in {tmp_path} (JPEG, PNG, TIFF or camera RAW); add --recursive for subfolders"


def test_ctrl_c_stops_after_the_current_bracket(env, tmp_path):
    card = tmp_path / "card"
    for i in range(4):
        write_bracket(card, size=(480, 720), start=T0 + timedelta(minutes=i), prefix=f"b{i + 1}")
    out = card / "hdr"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hdrmerge", "batch", str(card), "--json"],
        env=dict(os.environ, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and not (out.exists() and any(p.suffix == ".exr" for p in out.iterdir())):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    assert "stopping after the current bracket" in stderr
    summary = _json_lines(stdout)[-1]["summary"]
    assert 1 <= summary["merged"] <= 3 and summary["not_started"] >= 1
    written = sorted(p.name for p in out.iterdir())
    assert all(not n.startswith(".") for n in written)  # no temporary left behind
    assert len([n for n in written if n.endswith(".exr")]) == summary["merged"]
    # Running again finishes the job.
    r = run_cli("batch", str(card), "--json", env=env)
    assert r.returncode == 0
    final = _json_lines(r.stdout)[-1]["summary"]
    assert final["merged"] + final["done"] == 4 and final["done"] == summary["merged"]


def test_scan_skips_outputs_and_previews(tmp_path):
    (tmp_path / "hdr").mkdir()
    for name in ("a.jpg", "b.CR2", "c.preview.jpg", "notes.txt", ".hidden.jpg", "hdr/x.jpg"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in scan(tmp_path, recursive=True, exclude=[tmp_path / "hdr"])] == ["a.jpg", "b.CR2"]
