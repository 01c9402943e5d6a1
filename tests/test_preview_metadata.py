"""The preview carries the reference shot's EXIF (camera, lens, settings,
capture time, GPS), Orientation 1 (it is written upright) and an sRGB ICC
profile; re-read with exifread and Pillow (issue 13, part 2)."""

from __future__ import annotations

import io
from pathlib import Path

import exifread
import numpy as np
from PIL import Image, ImageCms
from PIL.TiffImagePlugin import IFDRational

from hdrmerge.reading import Exif
from hdrmerge.demo_scene import write_bracket
from hdrmerge.writing import write_preview
from tests.conftest import run_cli

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


def test_fuse_preview_is_upright_with_reference_exif_gps_and_srgb_profile(env, tmp_path):
    shots = write_bracket(tmp_path / "in", size=(64, 96))
    for i, shot in enumerate(shots):  # a camera held upright: rotate 90° on display
        _tag_shot(shot, orientation=6, gps=i == 1)  # GPS on the reference (the middle exposure) only
    out = tmp_path / "x.hdr"
    r = run_cli("fuse", *map(str, shots), "-o", str(out), "--quiet", env=env)
    assert r.returncode == 0, r.stderr
    tags, img = _reread(tmp_path / "x.hdr.preview.jpg")
    assert img.size == (64, 96)  # width × height: the 96×64 shots turned upright
    assert tags["Image Orientation"] == "Horizontal (normal)"
    assert tags["EXIF ExposureTime"] == "1/60"  # the reference shot's, not the short one's (1/250)
    assert tags["GPS GPSLatitude"] == "[48, 51, 603/25]"
    assert _srgb(img) == "sRGB built-in"
