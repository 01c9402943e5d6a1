"""The preview carries the reference shot's EXIF (camera, lens, settings,
capture time, GPS), Orientation 1 (it is written upright) and an sRGB ICC
profile; re-read with exifread and Pillow (issue 13, part 2)."""

from __future__ import annotations

import io
from pathlib import Path

import exifread
import numpy as np
import rawpy
from PIL import Image, ImageCms
from PIL.TiffImagePlugin import IFDRational

from hdrmerge.demo_scene import write_bracket
from hdrmerge.dng import DngMetadata, write_dng
from hdrmerge.reading import Exif, exif_from_libraw
from hdrmerge.writing import write_preview
from tests.conftest import DATA, run_cli, run_cli_in_process

GPS = {1: "N", 2: (IFDRational(48, 1), IFDRational(51, 1), IFDRational(2412, 100)),
       3: "E", 4: (IFDRational(2, 1), IFDRational(21, 1), IFDRational(1, 1))}


def _tag_shot(path: Path, *, orientation: int, gps: bool) -> None:
    """Re-save a shot with a lens, an orientation and (optionally) GPS added to its EXIF."""
    with Image.open(path) as im:
        exif = im.getexif()
        exif.get_ifd(0x8769)[0xA434] = "EF-S 18-55mm"
        exif[0x0112] = orientation
        if gps:
            exif.get_ifd(0x8825).update(GPS)
        pixels = im.copy()
    pixels.save(path, quality=95, exif=exif)


def _reread(path: Path) -> tuple[dict[str, str], Image.Image]:
    with open(path, "rb") as f:
        tags = {k: str(v) for k, v in exifread.process_file(f, details=False).items()}
    return tags, Image.open(path)


def _srgb(img: Image.Image) -> str:
    return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(img.info["icc_profile"]))).strip()


def test_preview_from_a_jpeg_reference_keeps_its_exif_and_gps(tmp_path):
    src = tmp_path / "ref.jpg"
    write_bracket(tmp_path, size=(8, 8), evs=(0.0,), prefix="ref")
    (tmp_path / "ref_01.jpg").rename(src)
    _tag_shot(src, orientation=6, gps=True)
    out = tmp_path / "p.jpg"
    write_preview(out, np.full((10, 12, 3), 0.1, np.float32), source=src)
    tags, img = _reread(out)
    assert tags["Image Orientation"] == "Horizontal (normal)"  # written upright
    assert tags["EXIF LensModel"] == "EF-S 18-55mm" and tags["EXIF ExposureTime"] == "1/60"
    assert tags["EXIF DateTimeOriginal"] == "2026:01:01 12:00:00" and tags["EXIF FNumber"] == "8"
    assert tags["GPS GPSLatitude"] == "[48, 51, 603/25]" and tags["GPS GPSLongitudeRef"] == "E"
    assert tags["EXIF ColorSpace"] == "sRGB" and tags["Image Software"].startswith("hdrmerge ")
    assert _srgb(img) == "sRGB built-in" and img.size == (12, 10)


def test_preview_from_exif_alone_as_for_raw_files(tmp_path):
    out = tmp_path / "p.jpg"
    exif = Exif(make="Kodak", model="Kodak DCS Pro", lens="50mm", exposure_time=1 / 125, fnumber=5.6, iso=200.0,
                datetime_original="2010:05:06 07:08:09")
    write_preview(out, np.full((4, 4, 3), 0.5, np.float32), source=None, exif=exif)
    tags, img = _reread(out)
    assert (tags["Image Make"], tags["Image Model"], tags["EXIF LensModel"]) == ("Kodak", "Kodak DCS Pro", "50mm")
    assert (tags["EXIF ExposureTime"], tags["EXIF FNumber"], tags["EXIF ISOSpeedRatings"]) == ("1/125", "28/5", "200")
    assert tags["Image Orientation"] == "Horizontal (normal)" and not any(k.startswith("GPS") for k in tags)
    assert _srgb(img) == "sRGB built-in"


def test_preview_from_exif_writes_iso_above_65535_as_the_short_maximum(tmp_path):
    # PhotographicSensitivity is a SHORT; the DNG's EXIF IFD and the preview write it the same way.
    out = tmp_path / "p.jpg"
    write_preview(out, np.full((4, 4, 3), 0.5, np.float32), exif=Exif(iso=102400.0, exposure_time=1 / 8000))
    with open(out, "rb") as f:
        iso = exifread.process_file(f, details=False)["EXIF ISOSpeedRatings"]
    assert (iso.field_type, iso.values) == (3, [65535])


def test_dng_and_preview_store_libraws_float_settings_as_the_cameras_fractions(tmp_path):
    """LibRaw gives a RAW file's settings as 32-bit floats (this KDC's f/6.2 is 6.1999998…):
    both writers store the fraction the camera meant, and the same tags, re-read by exifread."""
    with rawpy.imread(str(DATA / "rawpy_kodak_kdc" / "RAW_KODAK_DC50.KDC")) as raw:
        exif = exif_from_libraw(raw.other)
    rgb = np.full((8, 8, 3), 0.5, np.float32)
    write_preview(tmp_path / "p.jpg", rgb, exif=exif)
    write_dng(tmp_path / "x.dng", rgb, DngMetadata(exif))
    reread = {}
    for name in ("p.jpg", "x.dng"):
        with open(tmp_path / name, "rb") as f:
            tags = exifread.process_file(f, details=False)
        reread[name] = {k: str(v) for k, v in tags.items() if k.startswith("EXIF ") and k != "EXIF ColorSpace"}
    expected = {"EXIF ExposureTime": "87/20000", "EXIF FNumber": "31/5", "EXIF ISOSpeedRatings": "84",
                "EXIF FocalLength": "37", "EXIF DateTimeOriginal": "1997:04:23 08:00:47"}
    assert reread["p.jpg"] == expected
    assert reread["x.dng"] == {**expected, "EXIF ExifVersion": "0232"}


def test_fuse_preview_is_upright_with_reference_exif_gps_and_srgb_profile(env, tmp_path):
    shots = write_bracket(tmp_path / "in", size=(64, 96))
    for i, shot in enumerate(shots):  # a camera held upright: rotate 90° on display
        _tag_shot(shot, orientation=6, gps=i == 1)  # GPS on the reference (the middle exposure) only
    out = tmp_path / "x.hdr"
    r = run_cli_in_process("fuse", *map(str, shots), "-o", str(out), "--quiet", env=env)
    assert r.returncode == 0, r.stderr
    tags, img = _reread(tmp_path / "x.hdr.preview.jpg")
    assert img.size == (64, 96)  # width × height: the 96×64 shots turned upright
    assert tags["Image Orientation"] == "Horizontal (normal)"
    assert tags["EXIF ExposureTime"] == "1/60"  # the reference shot's, not the short one's (1/250)
    assert tags["GPS GPSLatitude"] == "[48, 51, 603/25]"
    assert _srgb(img) == "sRGB built-in"
