"""``hdrmerge fuse`` end to end on real brackets; outputs re-read independently."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import OpenEXR
import pytest
import torch

from hdrmerge.models import build_model, make_frames
from hdrmerge.weights.store import read_pth
from tests.conftest import DATA, SAFNET_S_PTH, run_cli, run_cli_in_process

PINGPONG = [DATA / "ius_pingpong" / n for n in ("Img3.JPG", "Img1.JPG", "Img2.JPG")]  # shuffled on purpose
KALANTARI = [DATA / "kalantari_test002_jpeg" / f"input_{i}_aligned.tif" for i in (1, 2, 3)]
FROBISHER = [DATA / "colour_hdri_frobisher" / f"IMG_260{i}.jpg" for i in range(3)]


def _exr(path):
    f = OpenEXR.File(str(path))
    return f.header(), f.channels()["RGB"].pixels


def test_pingpong_exr_values_size_and_metadata(env, tmp_path):
    out = tmp_path / "pp.exr"
    r = run_cli("fuse", *map(str, PINGPONG), "-o", str(out), "--json", env=env)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)  # exactly one JSON object on stdout
    assert {k: report["exposures"][k] for k in ("source", "stops_sorted", "ev_sorted", "relative")} == {
        "source": "exif", "stops_sorted": [-2.0, 0.0, 2.0], "ev_sorted": [-14.6667, -12.6667, -10.6667], "relative": [1.0, 4.0, 16.0]}
    # The camera's absolute exposure value, with the photographic sign: 1/1000 s f/5 ISO 100 is EV100 14.67.
    assert sorted(i["ev100"] for i in report["inputs"]) == [10.6667, 12.6667, 14.6667]
    assert [i["role"] for i in report["inputs"]] == ["long", "short", "reference"]
    assert report["model"]["name"] == "safnet-s" and report["device"] == "cpu"
    assert set(report["timings_s"]) >= {"read", "load_model", "network", "write", "total"}

    header, rgb = _exr(out)
    assert rgb.shape == (1080, 1920, 3) and rgb.dtype == np.float16
    assert header["compression"] == OpenEXR.ZIP_COMPRESSION
    assert header["hdrmerge:sources"] == ["Img1.JPG", "Img2.JPG", "Img3.JPG"]
    # Exposures in photographers' words, short → long like the sources: stops from the reference, EV100.
    assert list(header["hdrmerge:stops"]) == [-2.0, 0.0, 2.0]
    assert header["hdrmerge:ev100"] == pytest.approx([14.6667, 12.6667, 10.6667], abs=1e-3)
    assert header["hdrmerge:ev"] == pytest.approx([-14.6667, -12.6667, -10.6667], abs=1e-3)  # internal, kept for old readers
    assert header["hdrmerge:evSource"] == "exif"
    assert header["hdrmerge:weightsSha256"] == "9d4e18199fb7dd990ec9ca94e706b823c2eb0c451e514fc403103e86d69bd5fe"
    assert header["hdrmerge:model"] == "SAFNet-S"
    assert (header["cameraMake"], header["cameraModel"], header["capDate"]) == ("Canon", "Canon EOS 1000D", "2013:02:10 14:06:05")
    assert header["expTime"] == pytest.approx(1 / 256)  # the reference's 1/250 s, as the nominal 2^-8
    # --normalize reference (default): where the reference shot is well exposed,
    # the HDR keeps its linear values: the camera response estimated from the
    # pixels (recorded in the report and header) applied to its codes.
    assert (report["response"]["name"], report["response"]["source"]) == ("estimated", "estimated")
    assert (header["hdrmerge:response"], header["hdrmerge:responseSource"]) == ("estimated", "estimated")
    ref = cv2.imread(str(DATA / "ius_pingpong" / "Img2.JPG"))[:, :, ::-1].astype(np.float32) / 255.0
    well = (ref.min(axis=2) > 0.2) & (ref.max(axis=2) < 0.8)
    knots = np.linspace(0.0, 1.0, 17)
    linear = np.stack([np.interp(ref[..., c], knots, report["response"]["samples"][k]) for c, k in enumerate("rgb")], axis=-1)
    ratio = np.median(rgb.astype(np.float32)[well].mean(axis=1) / linear[well].mean(axis=1))
    assert ratio == pytest.approx(1.0, abs=0.05)
    # The window behind the player is saturated in the reference but not in the HDR.
    assert rgb.astype(np.float32).max() > 1.5
    preview = cv2.imread(str(tmp_path / "pp.exr.preview.jpg"))
    assert preview.shape == (1080, 1920, 3)


def test_kalantari_end_to_end_equals_the_network_run_directly(env, tmp_path):
    # The middle 760×500 of the bracket (people who moved), saved losslessly as
    # TIFFs again: no multiple of 16 at flow scale 0.5, so the flow input is resized.
    shots = []
    for p in KALANTARI:
        shots.append(tmp_path / p.name)
        assert cv2.imwrite(str(shots[-1]), cv2.imread(str(p), cv2.IMREAD_UNCHANGED)[250:750, 370:1130])
    out = tmp_path / "k.exr"
    r = run_cli_in_process("fuse", *map(str, shots), "-o", str(out), "--ev=0,3,6", "--exact", "--normalize", "short", "--exr-dtype", "float", "--no-preview", env=env)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "k.exr.preview.jpg").exists()
    header, rgb = _exr(out)
    assert rgb.dtype == np.float32 and header["hdrmerge:normalize"] == "short"
    # The same frames decoded by OpenCV, the network called directly.
    ldrs = [torch.from_numpy(cv2.imread(str(p))[:, :, ::-1].astype(np.float32) / 255.0).permute(2, 0, 1)[None] for p in shots]
    assert ldrs[0].shape == (1, 3, 500, 760)
    model = build_model(read_pth(SAFNET_S_PTH))
    with torch.inference_mode():
        direct = model(*make_frames(ldrs, [1.0, 8.0, 64.0]), scale=0.5)[0].permute(1, 2, 0).numpy()
    # hdrmerge runs the convolutions channels_last (another float32 summation
    # order than the direct NCHW call): identical but for rounding.
    diff = np.abs(rgb - direct)
    assert diff.max() <= 1e-4
    assert np.percentile(diff, 99.9) <= 1e-6


def test_frobisher_hdr_radiance_file(env, tmp_path):
    out = tmp_path / "f.hdr"
    r = run_cli_in_process("fuse", *map(str, FROBISHER), "-o", str(out), "--normalize", "short", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["exposures"]["relative"] == [1.0, 8.0, 64.0]
    head = out.read_bytes()[:600].split(b"\n\n")[0].decode()
    assert head.startswith("#?RADIANCE\n") and "SOFTWARE=hdrmerge " in head
    assert "# sources: IMG_2600.jpg IMG_2601.jpg IMG_2602.jpg" in head
    # Exposures as stops from the reference with the camera's settings (the internal EV is not shown).
    assert "\n# exposures: -3 (1/8 s f/8 ISO 100), 0 (1 s f/8 ISO 100), +3 (8 s f/8 ISO 100) stops from the reference (exif)\n" in head
    assert "\n# camera: Canon EOS 5D Mark II\n" in head  # the make once, not "Canon Canon EOS ..."
    assert "\n# response: estimated (estimated: fitted to the pixels (residual " in head
    img = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)  # OpenCV's own Radiance reader
    assert img.shape == (426, 640, 3) and img.dtype == np.float32
    assert 0.0 <= img.min() and img.max() <= 1.0 + 1e-6  # short domain: clamped to [0, 1]
    # mu-law preview is the tonemap of exactly this image (to JPEG precision).
    preview = cv2.imread(str(tmp_path / "f.hdr.preview.jpg")).astype(np.float32) / 255.0
    expected = np.log1p(5000 * img) / math.log1p(5000)
    assert np.abs(preview - expected).mean() < 0.01


def test_merianos_without_exif_estimates_from_pixels(env, tmp_path):
    files = [DATA / "merianos_fusion_noexif" / "SeaRock" / f"SeaRock{i}.jpg" for i in (1, 2, 3)]
    r = run_cli("fuse", *map(str, files), "-o", str(tmp_path / "s.exr"), env=env)
    assert r.returncode == 0, r.stderr
    # The warning, then the one record line every merge ends with (its format: test_cli_output.py).
    warning, record = r.stderr.splitlines()
    assert warning == "warning: no exposure metadata; exposures estimated from the pixels (pass --ev to set them)"
    assert record.startswith(f"wrote {tmp_path / 's.exr'} (") and "stops from the reference (pixels);" in record
    header, _ = _exr(tmp_path / "s.exr")
    assert header["hdrmerge:evSource"] == "pixels"
    # No EXIF: stops from the reference (estimated, so only the reference's 0 is exact), no EV100.
    stops = list(header["hdrmerge:stops"])
    assert stops[1] == 0.0 and stops[0] < -0.5 and stops[2] > 0.5 and "hdrmerge:ev100" not in header


def test_debug_dir_writes_flows_masks_first_stage_and_where_the_additions_acted(env, tmp_path):
    from hdrmerge.demo_scene import write_bracket

    paths = write_bracket(tmp_path / "in", size=(96, 144))
    r = run_cli_in_process("fuse", *map(str, paths), "-o", str(tmp_path / "o.hdr"), "--debug-dir", str(tmp_path / "dbg"), "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["additions"] == {"guard": True, "shadow_merge": True}
    names = sorted(p.name for p in (tmp_path / "dbg").iterdir())
    assert names == ["flow0.png", "flow2.png", "guard.png", "guard_highlights.png", "hdr.png", "hdr_m.png", "mask0.png", "mask2.png",
                     "merge_long.png", "merge_reference.png", "merge_short.png"]
    for name in names:
        assert cv2.imread(str(tmp_path / "dbg" / name)).shape[:2] == (96, 144)
    # The demo bracket's shadows are merged from its long shot somewhere.
    assert cv2.imread(str(tmp_path / "dbg" / "merge_long.png"), cv2.IMREAD_UNCHANGED).max() > 0


@pytest.mark.parametrize("flags,names", [
    (["--exact"], []),
    (["--no-guard"], ["merge_long.png", "merge_reference.png", "merge_short.png"]),
    (["--no-shadow-merge"], ["guard.png", "guard_highlights.png"]),
    (["--no-guard", "--no-shadow-merge"], []),
])
def test_debug_dir_shows_only_the_additions_that_ran(env, tmp_path, flags, names):
    from hdrmerge.demo_scene import write_bracket

    paths = write_bracket(tmp_path / "in", size=(64, 96))
    r = run_cli_in_process("fuse", *map(str, paths), "-o", str(tmp_path / "o.hdr"), "--debug-dir", str(tmp_path / "dbg"), "--json", *flags, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["additions"] == {"guard": "guard.png" in names, "shadow_merge": "merge_long.png" in names}
    written = sorted(p.name for p in (tmp_path / "dbg").iterdir())
    assert written == sorted(["flow0.png", "flow2.png", "hdr.png", "hdr_m.png", "mask0.png", "mask2.png", *names])


def test_absolute_normalisation_agrees_across_settings(env, tmp_path):
    # The same scene bracketed one stop longer (1/256, 1/64, 1/16 s against
    # 1/128, 1/32, 1/8 s): absolute values agree, reference-normalised ones
    # differ by the 2x between the two reference shots.
    from hdrmerge.demo_scene import write_bracket

    a = write_bracket(tmp_path / "a", size=(96, 144), motion_px=0, evs=(-2.0, 0.0, 2.0))
    b = write_bracket(tmp_path / "b", size=(96, 144), motion_px=0, evs=(-1.0, 1.0, 3.0))
    wall = (slice(20, 70), slice(10, 60))
    for mode, expected in (("absolute", 1.0), ("reference", 0.5)):
        outs = []
        for name, paths in (("a", a), ("b", b)):
            out = tmp_path / f"{name}-{mode}.exr"
            r = run_cli_in_process("fuse", *map(str, paths), "-o", str(out), "--normalize", mode, "--exr-dtype", "float", "--no-preview", env=env)
            assert r.returncode == 0, r.stderr
            outs.append(_exr(out)[1][wall])
        assert np.median(outs[0] / np.maximum(outs[1], 1e-6)) == pytest.approx(expected, rel=0.03)


def test_frobisher_with_one_shot_exported_without_exif_keeps_the_others_exif(env, tmp_path):
    from PIL import Image

    middle = tmp_path / "IMG_2601.png"  # an editor's export: no metadata
    with Image.open(FROBISHER[1]) as img:
        img.save(middle)
    files = [FROBISHER[0], middle, FROBISHER[2]]
    r = run_cli_in_process("fuse", *map(str, files), "-o", str(tmp_path / "f.exr"), "--json", env=env)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["exposures"]["source"] == "exif+pixels"
    assert [i["ev_source"] for i in report["inputs"]] == ["exif", "pixels", "exif"]
    # 1/8 s and 8 s at f/8 ISO 100 stay exactly 6 stops apart; the PNG lands within a quarter stop of its 1 s.
    short, middle_stops, long = report["exposures"]["stops_sorted"]
    assert long - short == 6.0 and middle_stops == 0.0 and short == pytest.approx(-3.0, abs=0.25)
    assert report["warnings"] == [
        "no exposure metadata in IMG_2601.png; its exposure estimated from the pixels relative to "
        "IMG_2600.jpg and IMG_2602.jpg (pass --ev to set it)"
    ]
    header, _ = _exr(tmp_path / "f.exr")
    assert header["hdrmerge:evSource"] == "exif+pixels"
    # The record line (what fuse prints without --json) says which exposure the pixels gave.
    from hdrmerge.cli.common import merge_summary

    record = merge_summary(report)
    assert " (1/8 s f/8 ISO 100), 0 (from the pixels), +" in record and "stops from the reference (exif+pixels);" in record
