"""DNG output: tags checked by exiftool, samples re-read by tifffile and LibRaw, end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import OpenEXR
import pytest
import rawpy
import tifffile

from hdrmerge.dng import SRGB_MODEL, THUMBNAIL_SIZE, XMP_NS, DngMetadata, white_level, write_dng
from hdrmerge.errors import OutputError
from hdrmerge.reading import Exif, read_frame
from tests.clients import exiftool_json, exiftool_validate
from tests.conftest import DATA, run_cli, run_cli_in_process, write_rotated_jpeg_bracket
from tests.dng import XYZ_TO_CANON_1000D
from tests.dng import write_dng as write_bayer_dng

EXIF = Exif(
    make="Canon", model="Canon EOS 1000D", lens="EF-S18-55mm f/3.5-5.6", exposure_time=1 / 250, fnumber=5.0,
    iso=200.0, datetime_original="2013:02:10 14:06:05", subsec="36", exposure_bias=-2 / 3, focal_length=24.0,
)
PROVENANCE = {"sources": ["a.jpg", "b.jpg", "c.jpg"], "stops": [-2.0, 0.0, 2.0], "ev100": [14.6667, 12.6667, 10.6667],
              "model": "SAFNet-S", "normalize": "reference"}


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    """GoldenGate.exr (BSD-3, ILM) at 384×256, linear sRGB; its sun goes far above 1."""
    hdr = OpenEXR.File(str(DATA / "openexr_photos" / "GoldenGate.exr")).channels()["RGB"].pixels.astype(np.float32)
    return np.maximum(cv2.resize(hdr, (384, 256), interpolation=cv2.INTER_AREA), 0.0)


def _raw_ifd(path: Path) -> tuple[np.ndarray, int]:
    """The DNG's image (SubIFD 0) as tifffile reads it, and its tile width (0: strips)."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0].pages[0]
        return page.asarray(), page.tilewidth


@pytest.mark.parametrize("dtype, bits", [("half", 16), ("float", 32)])
def test_dng_tags_pass_exiftool_validation_and_say_what_the_spec_needs(tmp_path, scene, dtype, bits):
    out = tmp_path / "x.dng"
    write_dng(out, scene, DngMetadata(EXIF, None, PROVENANCE, 0.25, "hdrmerge 9.9"), dtype=dtype)
    assert exiftool_validate(out) == "OK"
    t = exiftool_json(out)
    # IFD 0: the thumbnail and the file-wide DNG tags.
    assert t["IFD0:SubfileType"] == 1 and t["IFD0:PhotometricInterpretation"] == 2
    assert max(t["IFD0:ImageWidth"], t["IFD0:ImageHeight"]) == THUMBNAIL_SIZE
    assert t["IFD0:DNGVersion"] == "1 4 0 0" and t["IFD0:DNGBackwardVersion"] == "1 4 0 0"
    assert t["IFD0:UniqueCameraModel"] == SRGB_MODEL
    assert (t["IFD0:Make"], t["IFD0:Model"]) == ("hdrmerge", "linear sRGB")  # sRGB samples: no camera named
    assert t["IFD0:ColorMatrix1"] == "3.2406 -1.5372 -0.4986 -0.9689 1.8758 0.0415 0.0557 -0.204 1.057"
    assert t["IFD0:CalibrationIlluminant1"] == 21 and t["IFD0:AsShotNeutral"] == "1 1 1"
    assert t["IFD0:Orientation"] == 1 and t["IFD0:Software"] == "hdrmerge 9.9"
    # SubIFD: the image, floating point, tiled, Deflate with the floating-point predictor.
    assert t["SubIFD:SubfileType"] == 0 and t["SubIFD:PhotometricInterpretation"] == 34892
    assert (t["SubIFD:ImageWidth"], t["SubIFD:ImageHeight"], t["SubIFD:SamplesPerPixel"]) == (384, 256, 3)
    assert t["SubIFD:BitsPerSample"] == f"{bits} {bits} {bits}" and t["SubIFD:SampleFormat"] == "3 3 3"
    assert (t["SubIFD:Compression"], t["SubIFD:Predictor"], t["SubIFD:TileWidth"]) == (8, 3, 256)
    # White level: the power of two above the image's peak; BaselineExposure brings 1.0 back to white.
    peak = float(scene.max())
    assert t["SubIFD:WhiteLevel"] == white_level(peak) and white_level(peak) / 2 < peak <= white_level(peak)
    assert t["IFD0:BaselineExposure"] == pytest.approx(math.log2(white_level(peak)))
    # The reference shot's EXIF, in the EXIF IFD.
    assert (t["ExifIFD:ExposureTime"], t["ExifIFD:FNumber"], t["ExifIFD:ISO"]) == (0.004, 5, 200)
    assert (t["ExifIFD:DateTimeOriginal"], t["ExifIFD:SubSecTimeOriginal"]) == ("2013:02:10 14:06:05", 36)
    assert (t["ExifIFD:LensModel"], t["ExifIFD:FocalLength"]) == ("EF-S18-55mm f/3.5-5.6", 24)
    assert t["ExifIFD:ExposureCompensation"] == pytest.approx(-2 / 3, abs=0.01)
    # Provenance, in XMP; the camera of sRGB samples is named there.
    assert t["XMP-hdrmerge:Sources"] == ["a.jpg", "b.jpg", "c.jpg"] and t["XMP-hdrmerge:Stops"] == [-2, 0, 2]
    assert t["XMP-hdrmerge:Ev100"] == [14.6667, 12.6667, 10.6667]
    assert (t["XMP-hdrmerge:Model"], t["XMP-xmp:CreatorTool"]) == ("SAFNet-S", "hdrmerge 9.9")
    assert XMP_NS.encode() in out.read_bytes()


def test_uint16_dng_spans_the_white_level_uncompressed_and_libraw_reads_it_exactly(tmp_path, scene):
    out = tmp_path / "x.dng"
    write_dng(out, scene, DngMetadata(EXIF, None, PROVENANCE, 0.25), dtype="uint16")
    assert exiftool_validate(out) == "OK"
    t = exiftool_json(out)
    level = white_level(float(scene.max()))
    assert t["SubIFD:BitsPerSample"] == "16 16 16" and t["SubIFD:Compression"] == 1 and "SubIFD:TileWidth" not in t
    assert t["SubIFD:WhiteLevel"] == 65535 and t["IFD0:BaselineExposure"] == pytest.approx(math.log2(level))
    assert t["IFD0:DNGBackwardVersion"] == "1 1 0 0"  # integer LinearRaw: no DNG 1.4 reader needed
    stored, _ = _raw_ifd(out)
    expected = np.rint(np.minimum(scene.astype(np.float64) * 65535 / level, 65535))
    assert stored.dtype == np.uint16 and np.abs(stored - expected).max() <= 1  # (float32 scaling)
    with rawpy.imread(str(out)) as raw:
        assert np.array_equal(raw.raw_image.reshape(256, 384, -1)[..., :3], stored) and raw.white_level == 65535


@pytest.mark.parametrize("dtype", ["half", "float"])
def test_dng_samples_and_thumbnail_read_back_with_tifffile(tmp_path, scene, dtype):
    out = tmp_path / "x.dng"
    write_dng(out, scene, DngMetadata(EXIF, None, {}, 0.25), dtype=dtype)
    with tifffile.TiffFile(out) as tif:
        thumb = tif.pages[0].asarray()
        image = tif.pages[0].pages[0].asarray()
    expected = scene.astype(np.float16 if dtype == "half" else np.float32)
    assert image.dtype == expected.dtype and np.array_equal(image, expected)  # lossless
    # The thumbnail is hdrmerge's μ-law preview of the short-exposure domain (gain 0.25), downsized.
    small = cv2.resize(scene, thumb.shape[1::-1], interpolation=cv2.INTER_AREA) * 0.25
    mu = np.log1p(5000 * np.clip(small, 0, 1)) / math.log1p(5000) * 255
    assert thumb.shape == (171, 256, 3) and np.abs(thumb - mu).max() <= 1.0


@pytest.mark.parametrize("dtype", ["half", "float"])
def test_libraw_reads_back_the_linear_values(tmp_path, scene, dtype):
    image = np.minimum(scene, 3.0)  # white level 4: many values in LibRaw's top three stops
    out = tmp_path / "x.dng"
    write_dng(out, image, DngMetadata(EXIF, None, {}, 0.25), dtype=dtype)
    stored = image.astype(np.float16 if dtype == "half" else np.float32).astype(np.float64)
    with rawpy.imread(str(out)) as raw:
        assert raw.raw_type == rawpy.RawType.Stack and (raw.sizes.height, raw.sizes.width) == (256, 384)
        values = raw.raw_image.reshape(256, 384, -1)[..., :3].astype(np.float64)
        assert raw.white_level == 16383
    # LibRaw turns floating-point samples into 14-bit integers, value · 16383 / WhiteLevel
    # truncated: the values come back within that step, and the stored half floats are the
    # values within half-float precision (2⁻¹¹ relative).
    expected = stored * 16383 / 4
    lost = expected - values
    assert lost.min() > -1e-3 and lost.max() < 1.0  # (LibRaw multiplies in float32)
    original = image.astype(np.float64) * 16383 / 4
    assert np.all(np.abs(values - original) < 1.0 + original * 2.0**-11)
    bright = original >= 2048  # where the integer step is below half-float precision
    assert bright.sum() > 100 and np.all(np.abs(values - original)[bright] <= original[bright] * 2.0**-10)


@pytest.mark.parametrize("size", [(120, 180), (256, 200), (300, 384), (530, 790)])
@pytest.mark.parametrize("dtype", ["half", "float", "uint16"])
def test_libraw_decodes_every_image_size(tmp_path, scene, size, dtype):
    """Tiles for images of 256 pixels both ways, strips below: LibRaw 0.22 fails on tiles larger than the image."""
    image = cv2.resize(np.minimum(scene, 3.0), size[::-1], interpolation=cv2.INTER_AREA)
    out = tmp_path / "x.dng"
    write_dng(out, image, DngMetadata(EXIF), dtype=dtype)
    assert (_raw_ifd(out)[1] == 256) == (dtype != "uint16" and min(size) >= 256)
    with rawpy.imread(str(out)) as raw:
        rgb = raw.postprocess(gamma=(1, 1), no_auto_bright=True, output_bps=16, user_flip=None)
    assert rgb.shape == (*size, 3)
    ok = image.min(axis=2) > 0.05
    ratio = rgb[ok] / image[ok]
    assert np.abs(ratio / np.median(ratio) - 1).max() < 0.02


def test_half_floats_that_overflow_are_refused(tmp_path, scene):
    with pytest.raises(OutputError, match=r"^values exceed the half-float range; use --dng-dtype float$"):
        write_dng(tmp_path / "x.dng", scene * 1000.0, DngMetadata(EXIF), dtype="half")


@pytest.mark.parametrize("make, model", [("Canon", "Canon EOS 1000D"), ("hdrmerge", "synthetic DNG")])
def test_camera_raw_is_stored_in_camera_rgb_and_libraw_renders_the_same_colours(tmp_path, scene, make, model):
    """A RAW's merge goes back to the camera's RGB, with its matrix and white balance.

    Canon EOS 1000D: LibRaw knows the camera and uses its own matrix. The
    unknown camera: LibRaw uses the file's ColorMatrix without reporting it,
    and hdrmerge recovers it from the conversion LibRaw applied.
    """
    src = tmp_path / "in.dng"
    neutral = (0.5, 1.0, 0.7)  # a warm light: red and blue weaker than green
    write_bayer_dng(src, scene / 300.0, 1 / 60, make=make, model=model, xyz_to_camera=XYZ_TO_CANON_1000D, neutral=neutral)
    frame = read_frame(src)
    assert frame.colour is not None
    linear = (frame.pixels.astype(np.float32) / 65535.0) ** 2.2  # what hdrmerge merges: linear sRGB
    out = tmp_path / "out.dng"
    write_dng(out, linear, DngMetadata(frame.exif, frame.colour, {}, 1.0), dtype="float")
    assert exiftool_validate(out) == "OK"
    t = exiftool_json(out)
    assert t["IFD0:UniqueCameraModel"] == f"{make} {model}" and (t["IFD0:Make"], t["IFD0:Model"]) == (make, model)
    assert [float(x) for x in t["IFD0:AsShotNeutral"].split()] == pytest.approx(neutral, abs=1e-3)
    matrix = np.array([float(x) for x in t["IFD0:ColorMatrix1"].split()]).reshape(3, 3)
    # The camera's matrix, up to a scale (the unknown camera's is recovered normalised).
    assert matrix / np.abs(matrix).max() == pytest.approx(np.array(XYZ_TO_CANON_1000D) / 1.5123, abs=2e-3)
    with rawpy.imread(str(out)) as raw:
        rendered = raw.postprocess(
            gamma=(1, 1), no_auto_bright=True, output_bps=16, use_camera_wb=True,
            output_color=rawpy.ColorSpace.sRGB, user_flip=None,
        ).astype(np.float64) / 65535.0
    ok = (linear.max(axis=2) < 0.9) & (linear.min(axis=2) > 0.02)
    ratio = rendered[ok] / linear[ok]
    # Same colours through the camera matrix and white balance: every channel, every pixel within 1%.
    assert np.abs(ratio / np.median(ratio) - 1).max() < 0.01


# --- end to end -------------------------------------------------------------------


def _jpeg_bracket(folder: Path) -> list[Path]:
    """A synthetic JPEG bracket whose EXIF says "rotate 90° clockwise" (Orientation 6)."""
    return write_rotated_jpeg_bracket(folder, (96, 144))


def _converted(folder: Path, kind: str) -> list[Path]:
    """The synthetic bracket as 16-bit TIFF or 8-bit PNG (no EXIF: --ev gives the exposures)."""
    from hdrmerge.demo_scene import write_bracket

    out = []
    for p in write_bracket(folder, size=(96, 144), motion_px=0):
        rgb = cv2.imread(str(p))
        if kind == "tiff":
            q = p.with_suffix(".tif")
            cv2.imwrite(str(q), (rgb.astype(np.uint16) * 257))
        else:
            q = p.with_suffix(".png")
            cv2.imwrite(str(q), rgb)
        out.append(q)
    return out


def _dng_bracket(folder: Path, scene: np.ndarray) -> list[Path]:
    folder.mkdir()
    small = cv2.resize(scene, (144, 96), interpolation=cv2.INTER_AREA) * 0.5
    paths = []
    for i, (ev, t) in enumerate(zip((-2.0, 0.0, 2.0), (1 / 256, 1 / 64, 1 / 16))):
        p = folder / f"IMG_{i}.DNG"
        write_bayer_dng(p, small * 2.0**ev, t, make="Canon", model="Canon EOS 1000D", xyz_to_camera=XYZ_TO_CANON_1000D)
        paths.append(p)
    return paths


def _kdc_bracket(folder: Path) -> list[Path]:
    """The real Kodak DC50 file three times; --ev gives the exposures."""
    folder.mkdir()
    data = (DATA / "rawpy_kodak_kdc" / "RAW_KODAK_DC50.KDC").read_bytes()
    paths = [folder / f"k{i}.kdc" for i in range(3)]
    for p in paths:
        p.write_bytes(data)
    return paths


@pytest.mark.parametrize("kind, dtype", [("jpeg", "half"), ("png", "float"), ("tiff", "uint16"), ("dng", "half"), ("kdc", "half")])
def test_fuse_writes_a_valid_dng_from_every_input_kind(env, tmp_path, scene, kind, dtype):
    folder = tmp_path / "in"
    extra: list[str] = []
    if kind == "jpeg":
        paths, size, camera = _jpeg_bracket(folder), (144, 96), False  # upright: 96 wide, 144 high
    elif kind in ("png", "tiff"):
        paths, size, camera = _converted(folder, kind), (96, 144), False
        extra = ["--ev=-2,0,2"]
    elif kind == "dng":
        paths, size, camera = _dng_bracket(folder, scene), (96, 144), True
    else:
        paths, size, camera = _kdc_bracket(folder), (512, 768), False  # LibRaw has no matrix for the DC50
        extra = ["--ev=-1,0,1"]
    out = tmp_path / "merged.dng"
    r = run_cli_in_process("fuse", *map(str, paths), "-o", str(out), "--json", "--dng-dtype", dtype, *extra, env=env)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["outputs"]["hdr"] == str(out) and Path(report["outputs"]["preview"]).is_file()
    assert exiftool_validate(out) == "OK"
    t = exiftool_json(out)
    assert (t["SubIFD:ImageHeight"], t["SubIFD:ImageWidth"]) == size and t["IFD0:Orientation"] == 1
    assert t["XMP-hdrmerge:Sources"] == [p.name for p in paths]  # short → long, as given
    # Exposures as photographers read them: stops from the reference; EV100 where the EXIF has t, N and ISO:
    # the JPEGs' and DNGs' 1/250, 1/60, 1/15 s or 1/256, 1/64, 1/16 s at f/8 ISO 100. The one Kodak file
    # three times: --ev's -1, 0, +1 from the reference's own EV100 (13.51), not its settings three times over.
    assert t["XMP-hdrmerge:Stops"] == ([-1, 0, 1] if kind == "kdc" else [-2, 0, 2])
    ev100 = {"jpeg": [14, 12, 10], "dng": [14, 12, 10], "kdc": [14.5114, 13.5114, 12.5114]}.get(kind)
    assert t.get("XMP-hdrmerge:Ev100") == ev100
    assert ev100 is None or sorted(ev100) == sorted(i["ev100"] for i in report["inputs"])  # as --json says
    if kind == "kdc":  # the settings of the reference only: the others' contradict --ev
        assert [i["settings"] is None for i in report["inputs"]] == [True, False, True]
    assert t["XMP-hdrmerge:WeightsSha256"] == report["model"]["sha256"]
    assert t["XMP-hdrmerge:Normalize"] == "reference"
    assert t["IFD0:UniqueCameraModel"] == ("Canon Canon EOS 1000D" if camera else SRGB_MODEL)
    assert t["SubIFD:BitsPerSample"] == ("32 32 32" if dtype == "float" else "16 16 16")
    with rawpy.imread(str(out)) as raw:
        assert (raw.sizes.height, raw.sizes.width) == size
        assert raw.raw_image.reshape(*size, -1).max() > 0  # decodes


def test_batch_format_dng_merges_each_bracket_into_a_valid_dng(env, tmp_path):
    from datetime import datetime, timedelta

    from hdrmerge.demo_scene import write_bracket

    card = tmp_path / "card"
    start = datetime(2026, 1, 1, 12, 0, 0)
    for i in range(2):
        write_bracket(card, size=(64, 96), motion_px=0, start=start + timedelta(minutes=i), prefix=f"b{i + 1}")
    r = run_cli("batch", str(card), "--format", "dng", "--dng-dtype", "float", "--json", env=env)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["status"] for row in rows[:-1]] == ["merged", "merged"]
    outputs = sorted((card / "hdr").glob("*.dng"))
    assert [p.name for p in outputs] == ["b1_01_hdr.dng", "b2_01_hdr.dng"]
    for p in outputs:
        assert exiftool_validate(p) == "OK"
        t = exiftool_json(p)
        assert t["SubIFD:BitsPerSample"] == "32 32 32" and t["XMP-hdrmerge:Sources"][0] == p.name.replace("_hdr.dng", ".jpg")
    # Re-running skips what is done: the DNGs count as outputs like any other.
    r = run_cli("batch", str(card), "--format", "dng", "--json", env=env)
    assert [json.loads(line)["status"] for line in r.stdout.splitlines()[:-1]] == ["done", "done"]
