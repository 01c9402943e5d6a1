"""``hdrmerge batch`` on folders that are not a clean card: another card's outputs under the
same names, hdrmerge's own results among the shots, byte-identical copies under any name, files
without a capture time, a burst of auto-exposed frames, and output folders that cannot work."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path

from tests.conftest import DATA, run_cli
from tests.test_batch import BIF, _bif_card, _json_lines, _plan_rows, _retimed, _small_with_exif


def _digest(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# --- resuming never takes another bracket's output for this one's --------------------------------


def test_an_output_merged_from_other_shots_is_never_done_redone_or_replaced(env, tmp_path):
    out = tmp_path / "out"
    a = tmp_path / "a"
    _bif_card(a, 1)  # B01_DSC08196-98, captured 2019:02:09 01:00:00
    r = run_cli("batch", str(a), "-o", str(out), "--json", env=env)
    assert r.returncode == 0, r.stderr
    exr, preview = out / "B01_DSC08196_hdr.exr", out / "B01_DSC08196_hdr.exr.preview.jpg"
    # A second card with the same file names, shot another day (same camera numbering).
    b = tmp_path / "b"
    b.mkdir()
    for k in (6, 7, 8):
        _retimed(_small_with_exif(BIF / f"DSC0819{k}.JPG"), b / f"B01_DSC0819{k}.JPG", datetime(2019, 3, 1, 9, 0, 0))
    before = _digest(out)
    r = run_cli("batch", str(b), "-o", str(out), "--json", env=env)
    assert r.returncode == 1
    row = _json_lines(r.stdout)[0]
    assert (row["status"], row["reason"]) == (
        "failed",
        f"{exr} holds another merge (from B01_DSC08197.JPG, B01_DSC08196.JPG, B01_DSC08198.JPG, captured "
        "2019:02:09 01:00:00); pass --overwrite to replace it, or choose another -o or --name",
    )
    assert _digest(out) == before
    # Without its preview (deleted by the user), the other merge is still not this bracket's to redo.
    preview.unlink()
    before = _digest(out)
    r = run_cli("batch", str(b), "-o", str(out), "--json", env=env)
    assert r.returncode == 1
    assert _json_lines(r.stdout)[0]["reason"].startswith(f"{exr} holds another merge (from B01_DSC08197.JPG")
    assert _digest(out) == before
    # Other shots of the same moment (other names), given the same output name by --name.
    c = tmp_path / "c"
    c.mkdir()
    for k in (6, 7, 8):
        shutil.copy(a / f"B01_DSC0819{k}.JPG", c / f"IMG_{k}.JPG")
    r = run_cli("batch", str(c), "-o", str(out), "--name", "B01_DSC08196_hdr", "--no-preview", "--json", env=env)
    assert r.returncode == 1
    assert _json_lines(r.stdout)[0]["reason"].startswith(f"{exr} holds another merge (from B01_DSC08197.JPG")
    assert _digest(out) == before
    # Its own bracket still resumes as before: the HDR alone is done without previews, redone with.
    rows = _plan_rows(a, env, "-o", str(out), "--no-preview")
    assert (rows[0]["status"], rows[0]["reason"]) == ("done", "B01_DSC08196_hdr.exr exists (--overwrite to redo)")
    rows = _plan_rows(a, env, "-o", str(out))
    assert rows[0]["redo"] == "redone: B01_DSC08196_hdr.exr.preview.jpg missing (hdrmerge's own files replaced)"


def test_a_radiance_output_of_another_card_under_index_names_is_not_done(env, tmp_path):
    out = tmp_path / "out"
    a = tmp_path / "a"
    _bif_card(a, 1)
    r = run_cli("batch", str(a), "-o", str(out), "--name", "{index}", "--format", "hdr", "--json", env=env)
    assert r.returncode == 0, r.stderr
    b = tmp_path / "b"
    b.mkdir()
    for k in (6, 7, 8):  # names with spaces: the Radiance header joins the names with spaces
        _retimed(_small_with_exif(BIF / f"DSC0819{k}.JPG"), b / f"shot {k}.JPG", datetime(2019, 3, 1, 9, 0, 0))
    before = _digest(out)
    r = run_cli("batch", str(b), "-o", str(out), "--name", "{index}", "--format", "hdr", "--json", env=env)
    assert r.returncode == 1
    assert _json_lines(r.stdout)[0]["reason"] == (
        f"{out / '0001.hdr'} holds another merge (from B01_DSC08197.JPG B01_DSC08196.JPG B01_DSC08198.JPG, "
        "captured 2019:02:09 01:00:00); pass --overwrite to replace it, or choose another -o or --name"
    )
    assert _digest(out) == before
    rows = _plan_rows(a, env, "-o", str(out), "--name", "{index}", "--format", "hdr")
    assert rows[0]["status"] == "done"


# --- hdrmerge's own results are never shots ---------------------------------------------------------


def test_previews_and_dngs_written_by_hdrmerge_are_skipped_as_shots(env, tmp_path):
    card = tmp_path / "card"
    shots = _bif_card(card, 1)[0]
    r = run_cli("batch", str(card), "--format", "dng", "-o", str(card / "dng"), "--json", env=env)
    assert r.returncode == 0, r.stderr
    # A preview renamed by the user: it carries the reference's EXIF (same camera, capture time, exposure).
    shutil.copy(card / "dng" / "B01_DSC08196_hdr.dng.preview.jpg", card / "HDR_view.jpg")
    rows = _plan_rows(card, env, "-r")
    assert [(Path(row["files"][0]).name, row["status"], row["reason"]) for row in rows[1:]] == [
        ("HDR_view.jpg", "skipped", "written by hdrmerge 0.1.0 (a merged result, not a shot)"),
        ("B01_DSC08196_hdr.dng", "skipped", "written by hdrmerge 0.1.0 (a merged result, not a shot)"),
    ]
    assert rows[0]["status"] == "merge" and rows[0]["duplicates"] == []
    assert [Path(f).name for f in rows[0]["chosen"]] == [shots[1].name, shots[0].name, shots[2].name]
    r = run_cli("batch", str(card), "-r", "--dry-run", env=env)
    assert "HDR_view.jpg\t0\tskipped\twritten by hdrmerge 0.1.0 (a merged result, not a shot)" in r.stdout


# --- byte-identical copies are one shot, whatever their names ----------------------------------------


def test_byte_identical_copies_under_any_name_are_one_shot(env, tmp_path):
    card = tmp_path / "card"
    b1 = _bif_card(card, 1)[0]
    for name in ("B01_DSC08197 (copy).JPG", "B01_DSC08197_1.JPG"):  # GNOME's copy name; a camera app's
        shutil.copy(b1[1], card / name)
    rows = _plan_rows(card, env)
    assert [(len(row["files"]), row["status"]) for row in rows] == [(3, "merge")]
    assert rows[0]["duplicates"] == [{
        "used": str(b1[1]), "others": [str(card / "B01_DSC08197 (copy).JPG"), str(card / "B01_DSC08197_1.JPG")],
        "why": "copies of one file",
    }]
    assert [Path(f).name for f in rows[0]["chosen"]] == ["B01_DSC08197.JPG", "B01_DSC08196.JPG", "B01_DSC08198.JPG"]


# --- a file without a capture time does not hold up the card -----------------------------------------


def test_a_file_without_capture_time_is_skipped_and_the_rest_grouped(env, tmp_path):
    card = tmp_path / "card"
    _bif_card(card, 2)
    shutil.copy(DATA / "merianos_fusion_noexif" / "OldHouse" / "OldHouse1.jpg", card / "screenshot.jpg")
    r = run_cli("batch", str(card), "--dry-run", "--json", env=env)
    assert r.returncode == 0, r.stderr
    rows = _json_lines(r.stdout)
    assert [([Path(f).name for f in row["files"]], row["status"], row["reason"]) for row in rows[:-1]][1:] == [
        (["B02_DSC08196.JPG", "B02_DSC08197.JPG", "B02_DSC08198.JPG"], "merge", "all three"),
        (["screenshot.jpg"], "skipped", "no EXIF capture time, so it cannot be placed in a bracket; merge it with hdrmerge fuse"),
    ]
    assert rows[0]["status"] == "merge"
    assert rows[-1]["summary"] == {"merge": 2, "done": 0, "single": 0, "incomplete": 0, "unusable": 0, "skipped": 1, "failed": 0}
    assert r.stderr == ""  # no --group-size hint: fixed groups would mix the brackets with the screenshot


# --- a burst is not a bracket -------------------------------------------------------------------------


def _burst_frame(src: Path, dst: Path, when: datetime, exposure_time: tuple[int, int], mode: int) -> Path:
    """A real Sony frame with its EXIF shutter time, capture time and ExposureMode (0 auto, 2 bracket) rewritten."""
    from PIL import Image
    from PIL.TiffImagePlugin import IFDRational

    with Image.open(src) as im:
        exif = im.getexif()
        ifd = exif.get_ifd(0x8769)
        ifd[0x829A] = IFDRational(*exposure_time)
        ifd[0x9003] = when.strftime("%Y:%m:%d %H:%M:%S")
        ifd[0xA402] = mode
        im.save(dst, exif=exif, quality=95)
    return dst


def test_a_burst_of_auto_exposed_frames_is_not_merged(env, tmp_path):
    card = tmp_path / "card"
    card.mkdir()
    t0 = datetime(2019, 2, 9, 10, 0, 0)
    times = ((1, 4), (1, 5), (1, 6))  # the camera's metering drifting by 2/3 stop (1/4 to 1/6 s in nominal stops)
    # DSC08191: ExposureMode Auto, ISO 3200, f/2.8, no exposure compensation.
    for i, t in enumerate(times):
        _burst_frame(BIF / "DSC08191.JPG", card / f"F{i}.JPG", t0 + timedelta(seconds=i), t, 0)
    rows = _plan_rows(card, env)
    assert [(row["status"], row["reason"]) for row in rows] == [(
        "unusable",
        "a burst, not a bracket: 3 shots exposed by the camera's auto exposure (ExposureMode Auto, exposure "
        "compensation unchanged), 0.67 stops apart; merge three with hdrmerge fuse if they are a bracket",
    )]
    # The same frames tagged by the camera as its auto-exposure bracket are a bracket.
    for i, t in enumerate(times):
        _burst_frame(BIF / "DSC08191.JPG", card / f"F{i}.JPG", t0 + timedelta(seconds=i), t, 2)
    assert [row["status"] for row in _plan_rows(card, env)] == ["merge"]


# --- output folders that cannot work are refused, by a dry run too ----------------------------------


def test_an_output_folder_holding_the_input_folder_is_refused(env, tmp_path):
    card = tmp_path / "card"
    _bif_card(card, 1)
    for outdir in (card, tmp_path):
        r = run_cli("batch", str(card), "-o", str(outdir), "--dry-run", env=env)
        assert r.returncode == 2
        assert r.stderr.strip() == (
            f"error: the output folder {outdir} contains the input folder {card}, whose shots would be skipped as "
            f"outputs; choose an output folder outside it with -o (the default is {card / 'hdr'})"
        )


def test_a_dry_run_refuses_an_output_folder_the_real_run_cannot_create(env, tmp_path):
    card = tmp_path / "card"
    _bif_card(card, 1)
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    listing = sorted(tmp_path.rglob("*"))
    for outdir, what in ((tmp_path / "notes.txt" / "hdr", "create"), (tmp_path / "notes.txt", "write into")):
        for args in (("--dry-run",), ()):
            r = run_cli("batch", str(card), "-o", str(outdir), *args, env=env)
            assert r.returncode == 2
            assert r.stderr.strip() == f"error: cannot {what} the output folder {outdir} (Not a directory); choose another with -o"
    # A dry run into a folder that can be made leaves no trace of its check.
    assert _plan_rows(card, env, "-o", str(tmp_path / "new" / "hdr"))[0]["status"] == "merge"
    assert sorted(tmp_path.rglob("*")) == listing
