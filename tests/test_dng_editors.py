"""hdrmerge's DNG rendered by real raw editors: darktable and RawTherapee.

Each editor renders the DNG with neutral settings (no tone curve, no
exposure change) to a 16-bit sRGB TIFF. The render is compared with the
preview hdrmerge wrote in the same run, both made linear (sRGB decoding; the
inverse μ-law), after matching exposure: one gain for the whole image, since
the editors do not apply BaselineExposure. What must agree is then the size,
the orientation and the colour of every pixel.

Tolerances against the preview come from the preview, not the editors: one
8-bit μ-law code spans 3.4 % of linear value at the top and 3.7 % at 0.2 % of
white (μ-law is nearly logarithmic there), plus the JPEG's (quality 95, 4:2:0
chroma) error. So both images are averaged over 4×4 pixels, compared where the
preview is between 0.2 % of its white and its white, and the median block must
be within 3 %, nine in ten within 8 %, each channel's gain within 2 % of the
others. The render is also compared pixel by pixel with LibRaw's linear
rendering of the same DNG, within 1 % (median) and 2 % (nine in ten).
Measured: see docs/formats.md.
"""

from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import OpenEXR
import pytest
import tifffile

from hdrmerge.pipeline import FuseOptions, fuse_files
from tests.clients import require
from tests.conftest import DATA, SAFNET_S_PTH, write_rotated_jpeg_bracket
from tests.dng import XYZ_TO_CANON_1000D
from tests.dng import write_dng as write_bayer_dng

MU = 5000.0
#: A warm as-shot light for the camera bracket: the editors must undo it.
NEUTRAL = (0.55, 1.0, 0.75)


def _srgb_to_linear(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _preview_linear(path: Path) -> np.ndarray:
    """hdrmerge's preview (μ-law of the short-exposure domain) back to linear RGB."""
    p = cv2.imread(str(path))[:, :, ::-1].astype(np.float64) / 255.0
    return np.expm1(p * math.log1p(MU)) / MU


def _jpeg_bracket(folder: Path) -> list[Path]:
    """Synthetic JPEGs whose EXIF says "rotate 90° clockwise" (Orientation 6)."""
    return write_rotated_jpeg_bracket(folder, (120, 180))


def _camera_bracket(folder: Path) -> list[Path]:
    """Bayer DNGs of GoldenGate.exr from a Canon EOS 1000D under a warm light."""
    hdr = OpenEXR.File(str(DATA / "openexr_photos" / "GoldenGate.exr")).channels()["RGB"].pixels.astype(np.float32)
    scene = np.maximum(cv2.resize(hdr, (192, 128), interpolation=cv2.INTER_AREA), 0.0) * 0.5
    folder.mkdir(parents=True)
    paths = []
    for i, (ev, t) in enumerate(zip((-2.0, 0.0, 2.0), (1 / 256, 1 / 64, 1 / 16))):
        p = folder / f"IMG_{i}.DNG"
        write_bayer_dng(
            p, scene * 2.0**ev, t, make="Canon", model="Canon EOS 1000D",
            xyz_to_camera=XYZ_TO_CANON_1000D, neutral=NEUTRAL,
        )
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def merged(tmp_path_factory) -> dict[tuple[str, str], tuple[Path, Path]]:
    """(bracket, dtype) → (DNG, preview), merged in this process with one network."""
    from hdrmerge.inference import Engine
    from hdrmerge.weights import load_weights

    root = tmp_path_factory.mktemp("editors")
    engine = Engine.load(load_weights(None, SAFNET_S_PTH, download=False, progress=False), "cpu", "fp32")
    brackets = {"jpeg": _jpeg_bracket(root / "jpeg"), "camera": _camera_bracket(root / "camera")}
    out = {}
    for name, paths in brackets.items():
        for dtype in ("half", "uint16"):
            dng = root / f"{name}-{dtype}.dng"
            report = fuse_files(paths, dng, FuseOptions(dng_dtype=dtype), lambda: engine)
            out[name, dtype] = dng, Path(report["outputs"]["preview"])
    return out


def _darktable(dng: Path, work: Path) -> np.ndarray:
    exe = require("darktable-cli")
    out = work / f"{dng.stem}-darktable.tif"
    r = subprocess.run(
        [
            exe, str(dng), str(out), "--core", "--configdir", str(work / "darktable"), "--cachedir",
            str(work / "darktable-cache"), "--library", ":memory:",
            # No workflow: no filmic or base curve, exposure unchanged.
            "--conf", "plugins/darkroom/workflow=none", "--conf", "plugins/imageio/format/tiff/bpp=16",
        ],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, HOME=str(work)),
    )
    assert r.returncode == 0 and out.is_file(), r.stdout + r.stderr
    return tifffile.imread(out)


def _rawtherapee(dng: Path, work: Path) -> np.ndarray:
    exe = require("rawtherapee-cli")
    out = work / f"{dng.stem}-rawtherapee.tif"
    # No -p/-d: RawTherapee's neutral processing profile.
    r = subprocess.run(
        [exe, "-o", str(out), "-t", "-b16", "-Y", "-c", str(dng)],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, HOME=str(work)),
    )
    assert r.returncode == 0 and out.is_file(), r.stdout + r.stderr
    return tifffile.imread(out)


def _libraw_linear(dng: Path) -> np.ndarray:
    """LibRaw's rendering of the DNG: linear sRGB, the file's white balance, no tone curve."""
    import rawpy

    with rawpy.imread(str(dng)) as raw:
        rgb = raw.postprocess(
            gamma=(1, 1), no_auto_bright=True, output_bps=16, use_camera_wb=True,
            output_color=rawpy.ColorSpace.sRGB, user_flip=None,
        )
    return rgb.astype(np.float64) / 65535.0


def _compare(lin: np.ndarray, ref: np.ndarray, *, shrink: int = 1, floor: float = 0.002) -> dict[str, float]:
    """Errors of ``lin`` (an editor's render, linear) against ``ref`` after one exposure gain.

    Both are first averaged over ``shrink``×``shrink`` blocks; pixels are
    compared where ``ref`` is between ``floor`` and 0.98 of its white and
    ``lin`` below 0.98.
    """
    assert lin.shape == ref.shape, (lin.shape, ref.shape)
    if shrink > 1:
        size = (lin.shape[1] // shrink, lin.shape[0] // shrink)
        lin, ref = (cv2.resize(x, size, interpolation=cv2.INTER_AREA) for x in (lin, ref))
    top = min(1.0, float(ref.max()))

    def usable(r: np.ndarray) -> np.ndarray:
        return (r.min(axis=2) > floor * top) & (r.max(axis=2) < 0.98 * top) & (lin.max(axis=2) < 0.98)

    ok = usable(ref)
    assert ok.mean() > 0.3, ok.mean()
    gains = np.median(lin[ok] / ref[ok], axis=0)  # per channel
    gain = np.median(gains)
    err = np.abs(lin[ok] / (ref[ok] * gain) - 1.0)
    flipped = ref[::-1, ::-1]
    ok_f = ok & usable(flipped)
    return {
        "colour": float(np.abs(gains / gain - 1.0).max()),
        "median": float(np.median(err)),
        "p90": float(np.percentile(err, 90)),
        "median_if_rotated": float(np.median(np.abs(lin[ok_f] / (flipped[ok_f] * gain) - 1.0))),
    }


EDITORS = {"darktable": _darktable, "rawtherapee": _rawtherapee}


@pytest.mark.parametrize("bracket", ["jpeg", "camera"])
@pytest.mark.parametrize("editor, dtype", [("darktable", "half"), ("darktable", "uint16"), ("rawtherapee", "uint16")])
def test_editor_renders_the_dng_like_hdrmerges_preview(merged, tmp_path, editor, dtype, bracket):
    dng, preview = merged[bracket, dtype]
    render = EDITORS[editor](dng, tmp_path)
    # Right size and orientation: the JPEGs were 180×120 with "rotate 90°".
    assert render.shape[:2] == ((180, 120) if bracket == "jpeg" else (128, 192))
    assert render.dtype == np.uint16
    lin = _srgb_to_linear(render.astype(np.float64) / 65535.0)
    # Against hdrmerge's preview, averaged over 4×4 pixels (the preview's 8-bit
    # μ-law and JPEG errors, ±1.7 % and more per pixel, average out).
    e = _compare(lin, _preview_linear(preview), shrink=4)
    print(editor, dtype, bracket, "preview", {k: round(v, 4) for k, v in e.items()})
    assert e["colour"] < 0.02, e  # each channel's gain within 2 % of the others: same colours
    assert e["median"] < 0.03 and e["p90"] < 0.08, e
    assert e["median_if_rotated"] > 3 * e["median"], e  # the comparison does see orientation
    # Against LibRaw's linear rendering of the same file, pixel by pixel (LibRaw
    # keeps 14 bits below the white level: shadows under 1 % of white are left out).
    e = _compare(lin, _libraw_linear(dng), floor=0.01)
    print(editor, dtype, bracket, "libraw", {k: round(v, 4) for k, v in e.items()})
    assert e["colour"] < 0.01 and e["median"] < 0.01 and e["p90"] < 0.02, e


def test_rawtherapee_reads_no_floating_point_linear_dng(merged, tmp_path):
    """Why --dng-dtype uint16 exists: RawTherapee 5.9 refuses float LinearRaw DNGs."""
    exe = require("rawtherapee-cli")
    version = subprocess.run([exe, "-v"], capture_output=True, text=True, timeout=60).stdout
    if "5.9" not in version:
        pytest.skip(f"checked for RawTherapee 5.9, this is {version.strip()!r}")
    dng, _ = merged["camera", "half"]
    out = tmp_path / "r.tif"
    r = subprocess.run(
        [exe, "-o", str(out), "-t", "-b16", "-Y", "-c", str(dng)],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, HOME=str(tmp_path)),
    )
    assert "demosaiced float dng files are not supported" in r.stdout + r.stderr
