"""``hdrmerge synth`` in other encodings: curves, EXIF re-read independently, true response files."""

from __future__ import annotations

import json
import math
import shutil
from fractions import Fraction

import cv2
import exifread
import numpy as np
import pytest
import tifffile
from PIL import Image

from hdrmerge.testsets import SynthOptions, synthesise
from hdrmerge.testset_encodings import ENCODINGS, KNOTS_16, decode, encode, response_document
from tests.conftest import DATA, run_cli, run_cli_in_process

PHOTOS = DATA / "openexr_photos"


@pytest.fixture(scope="module")
def one_photo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photo")
    shutil.copy(PHOTOS / "MtTamWest.exr", folder)
    return folder


# --- the curves ----------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_curve_round_trips_and_is_monotone(encoding):
    x = np.linspace(0.0, 1.0, 100_001, dtype=np.float32)
    v = encode(x, encoding)
    assert v.dtype == np.float32 and v[0] == 0.0 and v[-1] == pytest.approx(1.0, abs=1e-7)
    assert np.all(np.diff(v) >= 0)
    np.testing.assert_allclose(decode(v, encoding), x, atol=2e-6)


def test_srgb_curve_matches_the_standard():
    # IEC 61966-2-1: the two pieces meet at 0.0031308 ↔ 0.04045; 18 % grey encodes to 0.4614.
    assert float(encode(np.float32(0.0031308), "srgb")) == pytest.approx(0.04045, abs=1e-5)
    assert float(encode(np.float32(0.18), "srgb")) == pytest.approx(0.46135, abs=1e-4)
    assert float(decode(1.0, "srgb")) == 1.0 and float(decode(0.5, "srgb")) == pytest.approx(0.21404, abs=1e-5)


def test_camera_curves_are_s_curves_on_top_of_srgb_and_differ_in_strength():
    """Both fix sRGB's 0, ½ and 1; the strong one steepens mid-tones and darkens shadows more."""
    mid = decode(0.5, "srgb")  # linear value whose sRGB code is ½
    for enc in ("camera-mild", "camera-strong"):
        assert float(encode(np.float32(mid), enc)) == pytest.approx(0.5, abs=1e-6)
    u = np.array([0.4, 0.6])  # sRGB codes either side of ½
    lin = decode(u, "srgb").astype(np.float32)
    slopes = {e: float(np.diff(encode(lin, e).astype(np.float64))[0] / 0.2) for e in ("srgb", "camera-mild", "camera-strong")}
    assert slopes["srgb"] == pytest.approx(1.0, abs=1e-5)
    assert 1.1 < slopes["camera-mild"] < slopes["camera-strong"] < 1.5
    shadow = np.float32(decode(0.1, "srgb"))
    assert float(encode(shadow, "camera-strong")) < float(encode(shadow, "camera-mild")) < 0.1


# --- response files ------------------------------------------------------------------------


def _valid_response(doc: dict, bit_depth: int) -> np.ndarray:
    """Check ``doc`` against the version-1 contract; its three inverse curves (3×K)."""
    assert doc["format"] == "hdrmerge-response" and doc["version"] == 1 and doc["bit_depth"] == bit_depth
    curves = np.array([doc["inverse"][c] for c in "rgb"], np.float64)  # fails on ragged channels
    k = curves.shape[1]
    assert k == 256 if bit_depth == 8 else 16 <= k <= 65536
    assert np.all(np.isfinite(curves)) and curves.min() >= 0.0 and np.all(curves[:, -1] == 1.0)
    assert np.all(np.diff(curves, axis=1) >= 0)
    return curves


@pytest.mark.parametrize("bit_depth", [8, 16])
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_response_document_is_valid_and_is_the_inverse_curve(encoding, bit_depth):
    doc = json.loads(json.dumps(response_document(encoding, bit_depth)))
    curves = _valid_response(doc, bit_depth)
    assert curves.shape[1] == (256 if bit_depth == 8 else KNOTS_16)
    # Each knot is the linear value of its code value: encoding it gives the code back.
    codes = np.linspace(0.0, 1.0, curves.shape[1])
    np.testing.assert_allclose(encode(curves[1].astype(np.float32), encoding), codes, atol=2e-5)


@pytest.mark.parametrize(("encoding", "fmt", "bits"), [
    ("gamma2.2", "tif", 16), ("srgb", "tif", 16), ("camera-strong", "tif", 16), ("linear", "tif", 16),
    ("linear", "tif", 8), ("camera-mild", "jpg", 8),
])
def test_true_response_file_linearises_the_shots_to_the_ground_truth(tmp_path, one_photo, encoding, fmt, bits):
    """The written response.json, applied to the written pixels (read by tifffile / PIL), gives the scene."""
    opts = SynthOptions(noise=0.0, shift=0.0, objects=0, max_side=128, encoding=encoding, fmt=fmt, bits=bits)
    folder = synthesise(one_photo, tmp_path / "set", opts)[0]
    doc = json.loads((tmp_path / "set" / "response.json").read_text())
    curves = _valid_response(doc, bits)
    assert doc["encoding"] == encoding
    name = folder / f"input_2.{fmt}"
    pixels = tifffile.imread(name) if fmt == "tif" else np.asarray(Image.open(name))
    assert pixels.dtype == (np.uint16 if bits == 16 else np.uint8)
    code = pixels / (65535.0 if bits == 16 else 255.0)
    lin = np.stack([np.interp(code[..., c], np.linspace(0, 1, curves.shape[1]), curves[c]) for c in range(3)], -1)
    gt = cv2.imread(str(folder / "HDRImg.hdr"), cv2.IMREAD_UNCHANGED)[..., ::-1] * 4.0  # reference = short + 2 EV
    ok = (gt < 0.9) & (gt > 0.02)
    # RGBE stores each channel to 1/128 of the pixel's largest channel; quantisation
    # to 8 bits (linear: steps of 1/255) adds to that. JPEG's chroma subsampling
    # smears edges, so there the typical (median) pixel is held to the bound.
    step = np.broadcast_to(gt.max(axis=2, keepdims=True) / 128.0, gt.shape)
    err = np.abs(lin - gt)[ok] - step[ok]
    quantile, tol = (0.5, 0.005) if fmt == "jpg" else (0.99, {16: 1e-3, 8: 3e-3}[bits])
    assert ok.sum() > 1000 and np.quantile(err, quantile) <= tol
    # The wrong curve (the network's default, gamma 2.2) does not fit unless that is the encoding.
    wrong = code ** 2.2
    if encoding != "gamma2.2":
        assert np.median(np.abs(wrong - gt)[ok]) > 3 * np.median(np.abs(lin - gt)[ok]) + 1e-3


# --- EXIF ----------------------------------------------------------------------------------


def _exif(path):
    with open(path, "rb") as f:
        return exifread.process_file(f, details=False)


@pytest.mark.parametrize(("fmt", "ev", "encoding"), [("jpg", (-3.0, 0.0, 3.0), "camera-mild"), ("tif", (-1.0, 0.0, 1.0), "linear")])
def test_exif_exposure_and_colour_space_read_back_by_exifread(tmp_path, one_photo, fmt, ev, encoding):
    opts = SynthOptions(max_side=64, ev=ev, fmt=fmt, encoding=encoding)
    folder = synthesise(one_photo, tmp_path / "set", opts)[0]
    tags = [_exif(folder / f"input_{i}.{fmt}") for i in (1, 2, 3)]
    times = [Fraction(str(t["EXIF ExposureTime" if fmt == "jpg" else "Image ExposureTime"])) for t in tags]
    assert times[1] == Fraction(1, 60)
    # Nominal shutter times: each step is the requested spacing to within the snapping (< 0.1 stop).
    for a, b, want in zip(times, times[1:], np.diff(ev)):
        assert abs(math.log2(b / a) - want) < 0.1
    key = "EXIF ColorSpace" if fmt == "jpg" else "Image ColorSpace"
    want_cs = "sRGB" if encoding.startswith(("srgb", "camera")) else "Uncalibrated"
    assert all(str(t[key]) == want_cs for t in tags)
    assert all(str(t["EXIF FNumber" if fmt == "jpg" else "Image FNumber"]) == "8" for t in tags)
    # The rest of the shared EXIF table's rows (hdrmerge/exif_tags.py): camera, ISO and capture time, each shot a
    # second after the previous exposure ends (rounded up to whole seconds), so sub-seconds 00. The JPEG keeps the
    # EXIF-IFD tags in its EXIF IFD, the TIFF all in IFD 0.
    ifd = "EXIF" if fmt == "jpg" else "Image"
    assert all((str(t["Image Make"]), str(t["Image Model"]), str(t[f"{ifd} ISOSpeedRatings"])) == ("hdrmerge", "synth", "100")
               for t in tags)
    assert [str(t[f"{ifd} DateTimeOriginal"]) for t in tags] == [f"2026:01:01 12:00:0{s}" for s in (0, 2, 4)]
    assert all(str(t[f"{ifd} SubSecTimeOriginal"]) == "00" for t in tags)


@pytest.mark.parametrize("fmt", ["tif", "jpg"])
def test_no_exif_shots_carry_no_metadata(tmp_path, one_photo, fmt):
    opts = SynthOptions(max_side=64, fmt=fmt, encoding="srgb", exif=False)
    folder = synthesise(one_photo, tmp_path / "set", opts)[0]
    for i in (1, 2, 3):
        tags = _exif(folder / f"input_{i}.{fmt}")
        assert not [k for k in tags if k.endswith(("ExposureTime", "ColorSpace", "FNumber", "Make"))]
    assert (folder / "exposure.txt").read_text() == "-2\n0\n2\n"


# --- CLI -----------------------------------------------------------------------------------


def test_synth_cli_encoding_bits_and_response_path(tmp_path, one_photo):
    r = run_cli_in_process("synth", str(one_photo), str(tmp_path / "o"), "--encoding", "linear", "--bits", "8", "--max-side", "64", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["response"] == str(tmp_path / "o" / "response.json")
    assert data["options"]["encoding"] == "linear" and data["options"]["bits"] == 8
    assert tifffile.imread(tmp_path / "o" / "MtTamWest" / "input_1.tif").dtype == np.uint8
    assert json.loads((tmp_path / "o" / "response.json").read_text())["bit_depth"] == 8


@pytest.mark.parametrize(("args", "message"), [
    (["--encoding", "log"], "error: --encoding log: use one of gamma2.2, srgb, camera-mild, camera-strong, linear"),
    (["--format", "jpg", "--bits", "16"], "error: --bits 16: JPEG holds 8 bits; use --format tif"),
    (["--bits", "12"], "error: --bits 12: use 8 or 16"),
])
def test_exception_synth_bad_encoding_or_depth(tmp_path, one_photo, args, message):
    r = run_cli("synth", str(one_photo), str(tmp_path / "o"), *args)
    assert r.returncode == 2 and r.stderr.strip() == message
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())



@pytest.mark.parametrize(("encoding", "bits"), [("camera-strong", 8), ("srgb", 16), ("linear", 16)])
def test_synth_response_file_is_read_by_hdrmerge_as_the_same_curve(tmp_path, encoding, bits):
    """The product's reader (what --response FILE uses) accepts synth's file and sees the true curve."""
    from hdrmerge.response import load_response_file
    from hdrmerge.testset_encodings import write_response

    write_response(tmp_path / "r.json", encoding, bits)
    r = load_response_file(tmp_path / "r.json")
    assert r.source == "file" and r.bit_depth == bits
    # 8-bit shots only have the 256 code values the knots sit on; 16-bit ones are interpolated.
    x = np.linspace(0.0, 1.0, 256 if bits == 8 else 10_007)
    for c in range(3):
        np.testing.assert_allclose(r.linear(x, c), decode(x, encoding), atol=1e-8 if bits == 8 else 2e-6)
