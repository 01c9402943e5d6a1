"""What the CLI tells people and pipelines about a merge (issue 13, parts 1
and 2): a live progress display on a terminal, one plain record line per merge
otherwise, exposures as stops from the reference shot with the camera's
settings, and the absolute EV100 in --json with the photographic sign."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime

import pytest
from rich.console import Console

from hdrmerge.cli import common
from hdrmerge.exposure_text import ev100, settings_text, shutter_text, stops_text
from hdrmerge.reading import Exif, read_exif
from hdrmerge.demo_scene import write_bracket
from tests.conftest import DATA, run_cli, run_cli_in_process


@pytest.mark.parametrize(("seconds", "text"), [(0.001, "1/1000 s"), (1 / 250, "1/250 s"), (0.25, "1/4 s"),
                                               (0.3, "0.3 s"), (1.0, "1 s"), (2.5, "2.5 s"), (30.0, "30 s")])
def test_shutter_times_read_as_cameras_print_them(seconds, text):
    assert shutter_text(seconds) == text


def test_stops_text():
    assert [stops_text(x) for x in (-2.0, 0.0, 2.0, -2 / 3, 4 / 3, 1e-9)] == ["-2", "0", "+2", "-0.67", "+1.33", "0"]


def test_real_camera_settings_and_ev100_sign():
    e = read_exif(DATA / "ius_pingpong" / "Img1.JPG")  # Canon EOS 1000D, 1/1000 s f/5 ISO 100
    assert settings_text(e) == "1/1000 s f/5 ISO 100"
    # EV100 = log2(N²/t) − log2(ISO/100): bright scene, high positive EV (the old display said −14.67).
    assert ev100(e) == pytest.approx(14.6667, abs=1e-3)
    assert ev100(Exif(exposure_time=1 / 125, fnumber=16.0, iso=100.0)) == pytest.approx(15.0)  # sunny 16
    assert ev100(Exif(exposure_time=1 / 125, fnumber=16.0, iso=400.0)) == pytest.approx(13.0)
    assert ev100(Exif(exposure_time=1 / 125, fnumber=16.0)) is None


def test_ev100_and_settings_under_ev_follow_the_values_given():
    from hdrmerge.exposure_text import shot_exposures

    t = [Exif(exposure_time=s, fnumber=8.0, iso=100.0) for s in (1 / 250, 1 / 60, 1 / 15)]  # EV100 14, 12, 10
    # From metadata: each shot's own.
    assert [(round(v, 4), s) for v, s in shot_exposures(t, [-2, 0, 2], 1, "exif")] == [
        (14.0, "1/250 s f/8 ISO 100"), (12.0, "1/60 s f/8 ISO 100"), (10.0, "1/15 s f/8 ISO 100")]
    # --ev: the reference's EV100 minus the stops given; settings only where they agree (within 1/6 stop).
    assert [(round(v, 4), s) for v, s in shot_exposures(t, [-2.1, 0, 1], 1, "--ev")] == [
        (14.1, "1/250 s f/8 ISO 100"), (12.0, "1/60 s f/8 ISO 100"), (11.0, "")]
    # One file three times (a camera that writes one exposure for every frame): only the reference's settings.
    assert [(round(v, 4), s) for v, s in shot_exposures([t[1]] * 3, [-1, 0, 1], 1, "--ev")] == [
        (13.0, ""), (12.0, "1/60 s f/8 ISO 100"), (11.0, "")]
    # No EV100 for the reference: none for any shot, and no settings that cannot be checked.
    t[1] = Exif(exposure_time=1 / 60, fnumber=8.0)
    assert shot_exposures(t, [-2, 0, 2], 1, "--ev") == [(None, ""), (None, "1/60 s f/8"), (None, "")]


def test_progress_shows_stages_then_tiles_done_of_total(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(common, "err_console", Console(file=buf, force_terminal=True, width=100))
    with common.merge_progress(True) as (on_stage, on_tile):
        on_stage("reading")
        on_stage("merging")
        for done in range(1, 7):
            on_tile(done, 6)
    assert "merging" in buf.getvalue() and "6/6 tiles" in buf.getvalue()
    with common.merge_progress(False) as (on_stage, on_tile):
        assert on_tile is None  # nothing for the tiling loop to call when there is no display


_LINE = re.compile(r"wrote (?P<hdr>\S+) \((?P<size>[\d.]+ [kMG]?B)\) and (?P<preview>\S+); exposures (?P<ex>.+) "
                   r"stops from the reference \((?P<source>\w+)\); (?P<s>[\d.]+) s")


def test_fuse_prints_one_record_line_when_stderr_is_not_a_terminal(env, tmp_path):
    shots = write_bracket(tmp_path / "in", size=(64, 96))
    out = tmp_path / "x.exr"
    r = run_cli("fuse", *map(str, shots), "-o", str(out), env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    m = _LINE.fullmatch(lines[0])
    assert m, lines[0]
    assert m["hdr"] == str(out) and m["preview"] == f"{out}.preview.jpg"
    assert m["size"] == f"{out.stat().st_size / 1000:.1f} kB"
    assert m["ex"] == "-2 (1/250 s f/8 ISO 100), 0 (1/60 s f/8 ISO 100), +2 (1/15 s f/8 ISO 100)"
    assert m["source"] == "exif"


def test_fuse_json_has_stops_settings_and_ev100(env, tmp_path):
    shots = write_bracket(tmp_path / "in", size=(64, 96))
    r = run_cli("fuse", *map(str, reversed(shots)), "-o", str(tmp_path / "x.hdr"), "--json", env=env)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["exposures"]["stops_sorted"] == [-2.0, 0.0, 2.0]
    by_name = {i["path"].rsplit("/", 1)[1]: i for i in report["inputs"]}
    assert by_name["shot_01.jpg"]["stops"] == -2.0 and by_name["shot_01.jpg"]["settings"] == "1/250 s f/8 ISO 100"
    # 1/250 s at f/8, ISO 100: EV100 = log2(64 · 250) ≈ 14 (the nominal 2^-8 s gives exactly 14).
    assert by_name["shot_01.jpg"]["ev100"] == pytest.approx(14.0, abs=1e-3)
    assert by_name["shot_03.jpg"]["ev100"] == pytest.approx(10.0, abs=1e-3)
    # The internal "ev" key stays as it was: log2(t·ISO/N²), the negative of EV100.
    assert by_name["shot_01.jpg"]["ev"] == pytest.approx(-14.0, abs=1e-3)


def test_fuse_under_ev_states_ev100_and_settings_consistent_with_the_values_given(env, tmp_path):
    """--json, the record line and the Radiance header agree with --ev, not with EXIF that contradicts it
    (EXR and DNG take the same values: test_dng.py's Kodak case)."""
    shots = write_bracket(tmp_path / "in", size=(64, 96))  # EXIF: 1/250, 1/60, 1/15 s at f/8 ISO 100
    out = tmp_path / "x.hdr"
    r = run_cli_in_process("fuse", *map(str, shots), "--ev=-2,0,1", "-o", str(out), "--json", env=env)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    got = [(i["stops"], i["settings"], i["ev100"], i["exposure_time"]) for i in report["inputs"]]
    # shot_03's EXIF says +2 stops (EV100 10), --ev +1: its EV100 is 11 and its settings are not shown
    # (the raw EXIF fields still are); shot_01 agrees with its EXIF.
    assert got == [(-2.0, "1/250 s f/8 ISO 100", 14.0, 0.004), (0.0, "1/60 s f/8 ISO 100", 12.0, 1 / 60), (1.0, None, 11.0, 1 / 15)]
    shown = "-2 (1/250 s f/8 ISO 100), 0 (1/60 s f/8 ISO 100), +1 stops from the reference (--ev)"
    assert f"; exposures {shown}; " in common.merge_summary(report)  # the record line without --json
    assert f"\n# exposures: {shown}\n" in out.read_bytes()[:800].decode(errors="replace")


def test_batch_prints_one_record_line_per_merge(env, tmp_path):
    card = tmp_path / "card"
    write_bracket(card, size=(64, 96), prefix="a")
    r = run_cli("batch", str(card), "--format", "hdr", env=env)
    assert r.returncode == 0, r.stderr
    records = [ln for ln in r.stderr.splitlines() if ln.startswith("[1/1] ")]
    assert len(records) == 1
    m = _LINE.fullmatch(records[0][len("[1/1] "):])
    assert m and m["hdr"] == str(card / "hdr" / "a_01_hdr.hdr")
    assert m["ex"] == "-2 (1/250 s f/8 ISO 100), 0 (1/60 s f/8 ISO 100), +2 (1/15 s f/8 ISO 100)"
    # The plan shows the same stops from the reference.
    plan = run_cli("batch", str(card), "--dry-run", "--overwrite", env=env).stdout.splitlines()
    assert plan[1].split("\t")[2] == "-2, 0, +2"
    # --quiet, as for fuse: nothing at all on success (the summary table used to be printed) ...
    r = run_cli("batch", str(card), "--format", "hdr", "-q", env=env)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    # ... and one error line per bracket that failed, the reason for exit code 1.
    bad = write_bracket(card, size=(64, 96), prefix="b", start=datetime(2026, 1, 1, 13, 0))[1]
    bad.write_bytes(bad.read_bytes()[:500])
    r = run_cli("batch", str(card), "--format", "hdr", "-q", env=env)
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == f"error: bracket 2 (b_01.jpg…) failed: {bad}: damaged or truncated JPEG file; re-export or copy it again\n"
