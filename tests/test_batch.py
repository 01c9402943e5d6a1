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
from hdrmerge.demo_scene import write_bracket
from tests.conftest import DATA, run_cli, start_paused_cli

T0 = datetime(2026, 5, 1, 20, 0, 0)


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


def test_name_collision_suggests_the_bracket_number_when_capture_times_coincide(tmp_path):
    from hdrmerge.batch import PlannedBracket, check_names

    # Two cameras fired at the same second, and a third bracket under another name.
    brackets = [PlannedBracket(i, [_shot(f"{cam}_0001.JPG", 0, 0, model=cam)], "merge") for i, cam in enumerate("ABC", start=1)]
    for b, name in zip(brackets, ("x", "y", "x")):
        b.output = tmp_path / f"{name}.exr"
    check_names("{date}", brackets[:2])  # two names: no clash
    with pytest.raises(InputError) as err:
        check_names("{date}", brackets)
    assert str(err.value) == (
        "--name '{date}' gives brackets 1 (A_0001.JPG) and 3 (C_0001.JPG) the same output x.exr; "
        "add {index} (the bracket number) to the name, e.g. --name '{date}_{index}'"
    )


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
    # Every planned status is counted, as docs/batch.md lists them.
    assert rows[-1] == {"summary": {"merge": 2, "done": 0, "single": 3, "incomplete": 1, "unusable": 0, "skipped": 0, "failed": 0}, "dry_run": True}
    assert not (tmp_path / "card" / "hdr").exists()  # a dry run writes nothing


def test_piped_plan_is_tab_separated_and_never_wraps_names(env, tmp_path):
    card = tmp_path / "a folder with a rather long name to force wrapping in an 80 column table"
    shutil.copytree(DATA / "bif_exif_thumbs", card)
    r = run_cli("batch", str(card), "--dry-run", "--name", "{stem}_{date}_{time}_{camera}_merged_hdr", env=env)
    assert r.returncode == 0, r.stderr
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    assert rows[0] == ["#", "shots", "stops", "status", "output / reason"]
    assert all(len(row) == 5 for row in rows) and len(rows) == 7
    assert rows[5][:4] == ["5", "DSC08196.JPG, DSC08197.JPG, DSC08198.JPG, DSC08199.JPG, DSC08200.JPG",
                           "0, -0.67, +0.67, -1.33, +1.33", "merge"]
    # The output name whole, then the reason after "; " (a line break in the table).
    assert rows[5][4].startswith("DSC08196_20190209_003150_DSC-RX100M6_merged_hdr.exr; 5-shot bracket: reference")


def test_bif_thumbs_merge_then_rerun_redoes_nothing(env, tmp_path):
    card = tmp_path / "card"
    shutil.copytree(DATA / "bif_exif_thumbs", card)
    r = run_cli("batch", str(card), "--json", env=env)
    assert r.returncode == 0, r.stderr
    rows = _json_lines(r.stdout)
    assert rows[-1]["summary"] | {"seconds": 0} == {
        "merged": 2, "done": 0, "single": 3, "incomplete": 1, "skipped": 0, "failed": 0, "locked": 0, "not_started": 0, "seconds": 0, "exit_code": 0,
    }
    written = sorted(p.name for p in (card / "hdr").iterdir())
    assert written == ["DSC08196_hdr.exr", "DSC08196_hdr.exr.preview.jpg", "DSC08201_hdr.exr", "DSC08201_hdr.exr.preview.jpg"]
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
    # Exposures as fuse --json gives them: stops from the reference, settings, EV100.
    shots = {Path(i["path"]).name: (i["stops"], i["settings"], i["ev100"]) for i in row["inputs"]}
    assert shots == {"c.jpg": (-2.0, "1/1000 s f/5 ISO 100", 14.6667), "b.jpg": (0.0, "1/250 s f/5 ISO 100", 12.6667),
                     "a.jpg": (2.0, "1/60 s f/5 ISO 100", 10.6667)}


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
        "b1_01_hdr.exr", "b1_01_hdr.exr.preview.jpg", "b3_01_hdr.exr", "b3_01_hdr.exr.preview.jpg",
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
    assert (r.returncode, r.stdout) == (2, "")
    # One line naming the brackets and a name that tells them apart.
    assert r.stderr == (
        f"error: --name '{{camera}}' gives brackets 1 ({card / 'b1_01.jpg'}) and 2 ({card / 'b2_01.jpg'}) the same output "
        "synthetic-camera.exr; add {date}_{time} (the capture time) to the name, e.g. --name '{camera}_{date}_{time}'\n"
    )
    assert not (card / "hdr").exists()
    r = run_cli("batch", str(card), "--name", "{date}", "--dry-run", env=env)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1
    assert r.stderr.endswith("the same output 20260501.exr; add {time} (the capture time) to the name, e.g. --name '{date}_{time}'\n")


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


# --- one bad bracket among many (real Sony EXIF and pixels, cropped to 48x64) ---------------------------

BIF = DATA / "bif_exif_thumbs"
#: The capture time stamped in every EXIF date field of the Sony bracket DSC08196-08198.
_BIF_STAMP = b"2019:02:09 00:31:50"


def _small_with_exif(src: Path, size: tuple[int, int] = (48, 64)) -> bytes:
    """A centre crop of a real shot, re-encoded, with the original EXIF segment (APP1) kept byte for byte."""
    import struct

    import cv2
    import numpy as np

    data = src.read_bytes()
    i, app1 = 2, b""
    while data[i + 1] != 0xDA:  # top-level markers up to the scan
        n = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if data[i + 1] == 0xE1 and data[i + 4 : i + 10] == b"Exif\0\0":
            app1 = data[i : i + 2 + n]
        i += 2 + n
    assert app1
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    h, w = size
    y, x = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    ok, buf = cv2.imencode(".jpg", img[y : y + h, x : x + w], [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    jpeg = buf.tobytes()
    return jpeg[:2] + app1 + jpeg[2:]


def _retimed(data: bytes, dst: Path, when: datetime) -> Path:
    """A copy of a real shot whose EXIF dates say ``when`` (same length, so no offset moves)."""
    assert data.count(_BIF_STAMP) >= 3
    dst.write_bytes(data.replace(_BIF_STAMP, when.strftime("%Y:%m:%d %H:%M:%S").encode()))
    return dst


def _bif_card(folder: Path, n: int) -> list[list[Path]]:
    """``n`` brackets, one minute apart, each a retimed 48x64 crop of the real AEB DSC08196-08198."""
    folder.mkdir(parents=True, exist_ok=True)
    shots = {k: _small_with_exif(BIF / f"DSC0819{k}.JPG") for k in (6, 7, 8)}
    brackets = []
    for i in range(n):
        when = datetime(2019, 2, 9, 1, 0, 0) + timedelta(minutes=i)
        brackets.append([_retimed(shots[k], folder / f"B{i + 1:02d}_DSC0819{k}.JPG", when) for k in (6, 7, 8)])
    return brackets


def _declare_size(path: Path, height: int, width: int) -> None:
    """Rewrite the frame header (SOF) of a JPEG's main image to declare another size."""
    import struct

    data = bytearray(path.read_bytes())
    i = 2
    while data[i + 1] not in (0xC0, 0xC1, 0xC2):  # walk the top-level markers (skips the EXIF thumbnail)
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    data[i + 5 : i + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("bad", [1, 10, 20], ids=["first", "middle", "last"])
def test_one_bad_file_among_20_brackets_leaves_19_merged(env, tmp_path, bad):
    card = tmp_path / "card"
    brackets = _bif_card(card, 20)
    broken = brackets[bad - 1][1]
    _declare_size(broken, 50000, 50000)  # a header that declares 2.5 gigapixels
    r = run_cli("batch", str(card), "--json", "--no-preview", env=env)
    assert r.returncode == 1, r.stderr
    rows = _json_lines(r.stdout)
    assert len(rows) == 21 and "summary" in rows[-1]
    by_index = {row["index"]: row for row in rows[:-1]}
    assert [by_index[i]["status"] for i in range(1, 21)] == ["failed" if i == bad else "merged" for i in range(1, 21)]
    # The reason names the file (a checked input error) or the unforeseen error (any other exception).
    reason = by_index[bad]["reason"]
    assert reason.startswith(f"{broken}: ") or reason.startswith("unexpected "), reason
    assert rows[-1]["summary"] | {"seconds": 0} == {
        "merged": 19, "done": 0, "single": 0, "incomplete": 0, "skipped": 0, "failed": 1, "locked": 0, "not_started": 0, "seconds": 0, "exit_code": 1,
    }
    written = sorted(p.name for p in (card / "hdr").iterdir())
    assert written == sorted(f"B{i:02d}_DSC08196_hdr.exr" for i in range(1, 21) if i != bad)


_FAULTY_BATCH = """
import sys
import hdrmerge.batch, hdrmerge.pipeline
read_shot, run_prepared = hdrmerge.batch.read_shot, hdrmerge.pipeline.run_prepared

def faulty_read_shot(path):
    if path.name == "stray.JPG":
        raise RuntimeError("metadata reader crashed")
    return read_shot(path)

def faulty_run_prepared(prepared, *args, **kwargs):
    if prepared.output.name.startswith("B02"):
        raise ZeroDivisionError("float division by zero")
    return run_prepared(prepared, *args, **kwargs)

hdrmerge.batch.read_shot, hdrmerge.pipeline.run_prepared = faulty_read_shot, faulty_run_prepared
from hdrmerge.cli import run
sys.exit(run(sys.argv[1:]))
"""


def test_unexpected_exceptions_fail_only_their_bracket(env, tmp_path):
    """Errors no check foresaw (here injected: a crash reading one file's metadata, one in the
    network stage of bracket 2) fail that bracket or file alone, with the reason in its row."""
    card = tmp_path / "card"
    _bif_card(card, 3)
    shutil.copy(card / "B01_DSC08196.JPG", card / "stray.JPG")
    r = subprocess.run(
        [sys.executable, "-c", _FAULTY_BATCH, "batch", str(card), "--json", "--no-preview"],
        env=dict(os.environ, **env), capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 1, r.stderr
    rows = _json_lines(r.stdout)
    rows_by_index = sorted(rows[:-1], key=lambda row: row["index"])
    assert [(Path(row["files"][0]).name, row["status"], row["reason"]) for row in rows_by_index] == [
        ("B01_DSC08196.JPG", "merged", ""),
        ("B02_DSC08196.JPG", "failed", "unexpected ZeroDivisionError: float division by zero (run with --debug for the traceback)"),
        ("B03_DSC08196.JPG", "merged", ""),
        ("stray.JPG", "failed", "cannot read its metadata (RuntimeError: metadata reader crashed)"),
    ]
    assert rows[-1]["summary"]["failed"] == 2 and rows[-1]["summary"]["merged"] == 2
    assert sorted(p.name for p in (card / "hdr").iterdir()) == ["B01_DSC08196_hdr.exr", "B03_DSC08196_hdr.exr"]


# --- resuming: output sets that are incomplete, damaged or not hdrmerge's --------------------


def _read_exr_software(path: Path) -> str:
    """The software attribute and pixel shape, read back by the OpenEXR library itself."""
    import OpenEXR

    f = OpenEXR.File(str(path))
    assert f.channels()["RGB"].pixels.shape == (48, 64, 3)
    return f.header()["software"]


def _preview_software(path: Path) -> str:
    from PIL import Image

    with Image.open(path) as im:
        im.load()  # decodes the whole image: a cut-short file raises here
        assert im.size == (64, 48)
        return im.getexif()[0x0131]


_KILL_AFTER_PREVIEW = """
import os, signal, sys
real_replace = os.replace

def replace(src, dst, *args, **kwargs):
    real_replace(src, dst, *args, **kwargs)
    if str(dst).endswith(".preview.jpg"):  # killed between the two renames of one output set
        os.kill(os.getpid(), signal.SIGKILL)

os.replace = replace
from hdrmerge.cli import run
sys.exit(run(sys.argv[1:]))
"""


def test_kill_between_renames_leaves_no_done_looking_set_and_resume_redoes_it(env, tmp_path):
    card = tmp_path / "card"
    _bif_card(card, 1)
    out = card / "hdr"
    r = subprocess.run(
        [sys.executable, "-c", _KILL_AFTER_PREVIEW, "batch", str(card), "--json"],
        env=dict(os.environ, **env), capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == -signal.SIGKILL
    # The preview was renamed first; the HDR, renamed last, is not there: the set does not look done.
    assert (out / "B01_DSC08196_hdr.exr.preview.jpg").is_file()
    assert not (out / "B01_DSC08196_hdr.exr").exists()
    r = run_cli("batch", str(card), "--json", env=env)  # no --overwrite
    assert r.returncode == 0, r.stderr
    row = _json_lines(r.stdout)[0]
    assert row["status"] == "merged"
    assert row["reason"] == "redone: B01_DSC08196_hdr.exr missing (hdrmerge's own files replaced)"
    assert _read_exr_software(out / "B01_DSC08196_hdr.exr") == "hdrmerge 0.1.0"
    assert _preview_software(out / "B01_DSC08196_hdr.exr.preview.jpg") == "hdrmerge 0.1.0"


def test_resume_redoes_each_kind_of_incomplete_set_without_overwrite(env, tmp_path):
    card = tmp_path / "card"
    _bif_card(card, 5)
    out = card / "hdr"
    r = run_cli("batch", str(card), "--json", env=env)
    assert r.returncode == 0, r.stderr
    names = [f"B0{i}_DSC08196_hdr" for i in range(1, 6)]
    (out / f"{names[0]}.exr").unlink()  # the user deleted the HDR
    (out / f"{names[1]}.exr.preview.jpg").unlink()  # ... or the preview
    for name, suffix in ((names[2], ".exr"), (names[3], ".exr.preview.jpg")):  # cut short (a bad copy, a full disk)
        data = (out / f"{name}{suffix}").read_bytes()
        (out / f"{name}{suffix}").write_bytes(data[: len(data) // 2])
    untouched = (out / f"{names[4]}.exr").stat().st_mtime_ns
    r = run_cli("batch", str(card), "--json", env=env)
    assert r.returncode == 0, r.stderr
    rows = {row["index"]: row for row in _json_lines(r.stdout)[:-1]}
    assert [(rows[i]["status"], rows[i]["reason"]) for i in range(1, 6)] == [
        ("merged", f"redone: {names[0]}.exr missing (hdrmerge's own files replaced)"),
        ("merged", f"redone: {names[1]}.exr.preview.jpg missing (hdrmerge's own files replaced)"),
        ("merged", f"redone: {names[2]}.exr incomplete (hdrmerge's own files replaced)"),
        ("merged", f"redone: {names[3]}.exr.preview.jpg incomplete (hdrmerge's own files replaced)"),
        ("done", f"{names[4]}.exr exists (--overwrite to redo)"),
    ]
    for name in names:
        assert _read_exr_software(out / f"{name}.exr") == "hdrmerge 0.1.0"
        assert _preview_software(out / f"{name}.exr.preview.jpg") == "hdrmerge 0.1.0"
    assert (out / f"{names[4]}.exr").stat().st_mtime_ns == untouched
    # Without previews, an HDR on its own is a complete set.
    (out / f"{names[0]}.exr.preview.jpg").unlink()
    r = run_cli("batch", str(card), "--json", "--no-preview", "--dry-run", env=env)
    assert [row["status"] for row in _json_lines(r.stdout)[:-1]] == ["done"] * 5


def test_resume_never_replaces_a_file_hdrmerge_did_not_write(env, tmp_path):
    card = tmp_path / "card"
    _bif_card(card, 2)
    out = card / "hdr"
    out.mkdir()
    # A real EXR from elsewhere where bracket 1's HDR goes; a real photo where bracket 2's preview goes.
    foreign = {out / "B01_DSC08196_hdr.exr": DATA / "openexr_photos" / "Cannon.exr",
               out / "B02_DSC08196_hdr.exr.preview.jpg": BIF / "DSC08191.JPG"}
    for dst, src in foreign.items():
        shutil.copy(src, dst)
    r = run_cli("batch", str(card), "--json", env=env)
    assert r.returncode == 1
    rows = _json_lines(r.stdout)
    assert [(row["status"], row["reason"]) for row in rows[:-1]] == [
        ("failed", f"{dst} exists and was not written by hdrmerge; move it away, or pass --overwrite to replace it")
        for dst in foreign
    ]
    assert all(dst.read_bytes() == src.read_bytes() for dst, src in foreign.items())
    assert sorted(p.name for p in out.iterdir()) == sorted(dst.name for dst in foreign)
    r = run_cli("batch", str(card), "--json", "--overwrite", env=env)
    assert r.returncode == 0, r.stderr
    assert [row["status"] for row in _json_lines(r.stdout)[:-1]] == ["merged", "merged"]
    assert _read_exr_software(out / "B01_DSC08196_hdr.exr") == "hdrmerge 0.1.0"


def test_provenance_tags_and_completeness_of_each_output_format(tmp_path):
    import cv2
    import numpy as np

    from hdrmerge.provenance import FileCheck, check_output
    from hdrmerge.dng import DngMetadata, write_dng
    from hdrmerge.writing import write_exr, write_hdr, write_preview

    rgb = np.random.default_rng(0).random((40, 60, 3), dtype=np.float32) * 4
    write_exr(tmp_path / "a.exr", rgb, {"software": "hdrmerge 0.1.0"})
    write_hdr(tmp_path / "a.hdr", rgb, {"SOFTWARE": "hdrmerge 0.1.0"})
    write_preview(tmp_path / "a.jpg", rgb)
    write_dng(tmp_path / "a.dng", rgb, DngMetadata(Exif(), software="hdrmerge 0.1.0"))
    cv2.imwrite(str(tmp_path / "other.hdr"), rgb)  # a Radiance file from another program
    for name in ("a.exr", "a.hdr", "a.jpg", "a.dng"):
        assert check_output(tmp_path / name) == FileCheck(ours=True, whole=True), name
        data = (tmp_path / name).read_bytes()
        (tmp_path / f"cut_{name}").write_bytes(data[: len(data) - 40])
        assert check_output(tmp_path / f"cut_{name}") == FileCheck(ours=True, whole=False), name
    assert check_output(tmp_path / "other.hdr") == FileCheck(ours=False, whole=True)
    assert check_output(DATA / "openexr_photos" / "Desk.exr").ours is False  # scanline, another writer
    assert check_output(DATA / "openexr_photos" / "GoldenGate.exr") == FileCheck(ours=False, whole=False)  # tiled
    assert check_output(BIF / "DSC08191.JPG") == FileCheck(ours=False, whole=True)
    assert check_output(DATA / "rawpy_kodak_kdc" / "RAW_KODAK_DC50.KDC").ours is False


# --- two runs on one folder ----------------------------------------------------------------

def _start_paused_batch(card: Path, signals: Path, env: dict) -> subprocess.Popen:
    """A batch on ``card`` that holds bracket 1's lock (paused before its network stage)."""
    return start_paused_cli(["batch", str(card), "--json"], signals, env, prefix="B01")


def test_second_run_leaves_brackets_another_run_is_writing(env, tmp_path):
    card = tmp_path / "card"
    _bif_card(card, 3)
    out = card / "hdr"
    first = _start_paused_batch(card, tmp_path / "signals", env)
    try:
        second = run_cli("batch", str(card), "--json", env=env)
        assert second.returncode == 1, second.stderr
        rows = {row["index"]: row for row in _json_lines(second.stdout)[:-1]}
        # The first run holds bracket 1 (paused in the network stage) and bracket 2 (decoded
        # meanwhile); the second leaves both to it, saying so, and merges bracket 3.
        assert [(rows[i]["status"], rows[i]["reason"]) for i in (1, 2)] == [
            ("locked", f"another hdrmerge run (process {first.pid}) is writing B0{i}_DSC08196_hdr.exr; left to it")
            for i in (1, 2)
        ]
        assert "--overwrite" not in second.stdout + second.stderr
        assert rows[3]["status"] == "merged"
        assert _json_lines(second.stdout)[-1]["summary"]["locked"] == 2
        (tmp_path / "signals" / "go").touch()
        stdout, stderr = first.communicate(timeout=300)
    finally:
        first.kill()
    # The first run merges its brackets and finds the last one finished by the second.
    assert first.returncode == 0, stderr
    rows = {row["index"]: row for row in _json_lines(stdout)[:-1]}
    assert [rows[i]["status"] for i in (1, 2, 3)] == ["merged", "merged", "done"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"B0{i}_DSC08196_hdr{ext}" for i in (1, 2, 3) for ext in (".exr", ".exr.preview.jpg")
    )  # no lock file left


def test_lock_of_a_killed_run_is_released_by_the_kernel(env, tmp_path):
    card = tmp_path / "card"
    _bif_card(card, 1)
    first = _start_paused_batch(card, tmp_path / "signals", env)
    assert (card / "hdr" / ".B01_DSC08196_hdr.exr.lock").read_text() == f"{first.pid}\n"
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    r = run_cli("batch", str(card), "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert _json_lines(r.stdout)[0]["status"] == "merged"
    assert sorted(p.name for p in (card / "hdr").iterdir()) == ["B01_DSC08196_hdr.exr", "B01_DSC08196_hdr.exr.preview.jpg"]


# --- memory shared by --jobs ------------------------------------------------------------------

# `hdrmerge` on a machine with MEMORY bytes available (first argument).
_SMALL_MACHINE = """
import sys
import hdrmerge.tiling
memory = int(sys.argv.pop(1))
hdrmerge.tiling.available_memory = lambda device: memory
from hdrmerge.cli import run
sys.exit(run(sys.argv[1:]))
"""


def test_jobs_share_the_decode_memory_check(env, tmp_path):
    """48×64 shots need 28 kB each to decode, three at once per bracket: 100 kB is enough
    for one bracket at a time, not for two brackets' six decodes at once (--jobs 2)."""
    card = tmp_path / "card"
    _bif_card(card, 2)

    def batch(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", _SMALL_MACHINE, "100000", "batch", str(card), "--json", "--max-memory", "256MB", *args],
            env=dict(os.environ, **env), capture_output=True, text=True, timeout=600,
        )

    r = batch("--jobs", "2")
    assert r.returncode == 1, r.stderr
    rows = _json_lines(r.stdout)[:-1]
    assert [(row["status"], row["reason"]) for row in rows] == [
        ("failed", f"{card / f'B0{i}_DSC08197.JPG'}: decoding its 64×48 pixels (0.003 MP) needs about 28 kB of memory, "
                   "but 17 kB is available to each decode while --jobs 2 brackets decode at once; "
                   "lower --jobs, free some memory or use a machine with more")
        for i in (1, 2)
    ]
    assert not (card / "hdr").exists() or not any((card / "hdr").iterdir())
    r = batch("--jobs", "1")
    assert r.returncode == 0, r.stderr
    assert [row["status"] for row in _json_lines(r.stdout)[:-1]] == ["merged", "merged"]


# --- what camera cards really hold: RAW+JPEG pairs, copies, partial copies, backups ------------


def _dng_twin(jpeg: Path, dst: Path) -> Path:
    """A Bayer DNG of a real shot: its pixels (linearised) and its camera, time and exposure."""
    import cv2
    import numpy as np

    from hdrmerge.reading import read_exif
    from tests.dng import write_dng

    exif = read_exif(jpeg)
    rgb = cv2.cvtColor(cv2.imread(str(jpeg)), cv2.COLOR_BGR2RGB)
    linear = (rgb.astype(np.float32) / 255.0) ** 2.2
    write_dng(dst, linear, exif.exposure_time, exif.fnumber, int(exif.iso), when=exif.datetime_original,
              make=exif.make, model=exif.model)
    return dst


def _plan_rows(card: Path, env: dict, *args: str) -> list[dict]:
    r = run_cli("batch", str(card), "--dry-run", "--json", *args, env=env)
    assert r.returncode == 0, r.stderr
    return sorted(_json_lines(r.stdout)[:-1], key=lambda row: row["index"])


def test_raw_jpeg_pairs_are_one_shot_each(env, tmp_path):
    card = tmp_path / "card"
    brackets = _bif_card(card, 2)
    for jpegs in brackets:
        for j in jpegs:
            _dng_twin(j, j.with_suffix(".DNG"))
    rows = _plan_rows(card, env)
    assert [(len(row["files"]), row["status"]) for row in rows] == [(3, "merge"), (3, "merge")]
    assert [Path(f).name for f in rows[0]["chosen"]] == ["B01_DSC08197.DNG", "B01_DSC08196.DNG", "B01_DSC08198.DNG"]
    assert rows[0]["duplicates"] == [
        {"used": str(card / f"B01_DSC0819{k}.DNG"), "others": [str(card / f"B01_DSC0819{k}.JPG")], "why": "RAW preferred"}
        for k in (6, 7, 8)
    ]
    rows = _plan_rows(card, env, "--prefer", "jpeg")
    assert [Path(f).name for f in rows[1]["chosen"]] == ["B02_DSC08197.JPG", "B02_DSC08196.JPG", "B02_DSC08198.JPG"]
    assert {d["why"] for d in rows[1]["duplicates"]} == {"JPEG preferred"}
    # Merging reads the RAW files.
    r = run_cli("batch", str(card), "--json", "--no-preview", env=env)
    assert r.returncode == 0, r.stderr
    assert [row["status"] for row in _json_lines(r.stdout)[:-1]] == ["merged", "merged"]
    import OpenEXR

    header = OpenEXR.File(str(card / "hdr" / "B01_DSC08196_hdr.exr"), header_only=True).header()
    assert list(header["hdrmerge:sources"]) == ["B01_DSC08197.DNG", "B01_DSC08196.DNG", "B01_DSC08198.DNG"]


def test_copies_partial_copies_and_backups_never_split_a_bracket(env, tmp_path):
    card = tmp_path / "card"
    b1, b2, b3 = _bif_card(card, 3)
    shutil.copy(b1[1], card / "B01_DSC08197 (1).JPG")  # a second copy of one shot
    shutil.copy(b2[1], card / "B02_DSC08197 (1).JPG")  # the copy is intact...
    data = b2[1].read_bytes()
    b2[1].write_bytes(data[: len(data) // 2])  # ... the file with the camera's name was cut short
    (card / "backup").mkdir()
    for shot in b3:  # a backup of a whole bracket, found with -r
        shutil.copy(shot, card / "backup" / shot.name)
    rows = _plan_rows(card, env, "-r")
    assert [(len(row["files"]), row["status"]) for row in rows] == [(3, "merge")] * 3
    assert [d | {"used": Path(d["used"]).name, "others": [Path(o).name for o in d["others"]]} for d in rows[0]["duplicates"]] == [
        {"used": "B01_DSC08197.JPG", "others": ["B01_DSC08197 (1).JPG"], "why": "copies of one file"},
    ]
    assert rows[1]["duplicates"] == [{
        "used": str(card / "B02_DSC08197 (1).JPG"), "others": [str(b2[1])],
        "why": "B02_DSC08197.JPG is damaged or a partial copy",
    }]
    assert [Path(f).name for f in rows[1]["chosen"]] == ["B02_DSC08197 (1).JPG", "B02_DSC08196.JPG", "B02_DSC08198.JPG"]
    assert [(d["used"], d["others"]) for d in rows[2]["duplicates"]] == [
        (str(shot), [str(card / "backup" / shot.name)]) for shot in b3
    ]
    # The table names the duplicates too.
    r = run_cli("batch", str(card), "-r", "--dry-run", env=env)
    assert "B01_DSC08197.JPG (+B01_DSC08197 (1).JPG)" in r.stdout
    # And all three merge, from the intact files.
    r = run_cli("batch", str(card), "-r", "--json", "--no-preview", env=env)
    assert r.returncode == 0, r.stderr
    assert [row["status"] for row in _json_lines(r.stdout)[:-1]] == ["merged"] * 3


def test_same_capture_needs_matching_names_unless_subseconds_agree():
    from hdrmerge.renditions import same_capture

    def shot(name: str, subsec: str | None = None, t: float = 0.01) -> Shot:
        exif = Exif(make="M", model="X", exposure_time=t, fnumber=8.0, iso=100, subsec=subsec,
                    datetime_original="2026:05:01 20:00:00")
        return Shot(Path(name), exif, exif.capture_time, None)

    assert same_capture(shot("IMG_1.CR2"), shot("IMG_1.JPG"))
    assert same_capture(shot("card/IMG_1.JPG"), shot("card/backup/IMG_1 (2).jpg"))
    assert same_capture(shot("IMG_1.JPG"), shot("IMG_1 - Copy.JPG"))
    # Two shots of a burst within one second, same settings, no subseconds: two shots.
    assert not same_capture(shot("IMG_1.JPG"), shot("IMG_2.JPG"))
    # Subseconds decide when both files carry them, whatever the names.
    assert same_capture(shot("IMG_1.JPG", "25"), shot("holiday.jpg", "25"))
    assert not same_capture(shot("IMG_1.JPG", "25"), shot("IMG_1 (1).JPG", "50"))
    assert not same_capture(shot("IMG_1.CR2"), shot("IMG_1.JPG", t=0.02))  # another exposure
