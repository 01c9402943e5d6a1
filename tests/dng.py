"""Minimal Bayer DNG files made from linear RGB, for testing the RAW path.

The sensor data is an RGGB mosaic of the linear image, 16 bit, white level
65535, with a colour matrix that makes the camera space linear sRGB and a
neutral as-shot white balance, so LibRaw's linear decode returns the image
itself (up to demosaicing). EXIF exposure tags go into IFD 0, as DNG allows.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import tifffile

# XYZ (D65) → linear sRGB: DNG's ColorMatrix1 maps XYZ to camera space.
_XYZ_TO_SRGB = ((3.2406, -1.5372, -0.4986), (-0.9689, 1.8758, 0.0415), (0.0557, -0.2040, 1.0570))


def _srational(x: float, d: int = 10000) -> tuple[int, int]:
    return int(round(x * d)), d


#: Canon EOS 1000D's XYZ (D65) → camera matrix as LibRaw (and Adobe) have it:
#: a real camera's colour space, unlike sRGB.
XYZ_TO_CANON_1000D = ((0.6771, -0.1139, -0.0977), (-0.7818, 1.5123, 0.2928), (-0.1244, 0.1437, 0.7533))
#: Linear sRGB → XYZ (D65), IEC 61966-2-1.
_SRGB_TO_XYZ = ((0.412453, 0.357580, 0.180423), (0.212671, 0.715160, 0.072169), (0.019334, 0.119193, 0.950227))


def mosaic(linear: np.ndarray) -> np.ndarray:
    """RGGB Bayer samples of an H×W×3 linear image (H, W even)."""
    h, w, _ = linear.shape
    out = np.empty((h, w), np.float32)
    out[0::2, 0::2] = linear[0::2, 0::2, 0]
    out[0::2, 1::2] = linear[0::2, 1::2, 1]
    out[1::2, 0::2] = linear[1::2, 0::2, 1]
    out[1::2, 1::2] = linear[1::2, 1::2, 2]
    return out


def write_dng(
    path: Path,
    linear: np.ndarray,
    exposure_time: float,
    fnumber: float = 8.0,
    iso: int = 100,
    *,
    when: str = "2026:01:01 12:00:00",
    make: str = "hdrmerge",
    model: str = "synthetic DNG",
    xyz_to_camera: tuple = _XYZ_TO_SRGB,
    neutral: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> None:
    """Write ``linear`` (H×W×3 linear sRGB, 1.0 = sensor saturation) as a Bayer DNG.

    ``xyz_to_camera`` is the ColorMatrix1; the samples are ``linear`` in that
    camera's RGB (rows of XYZ → camera · sRGB → XYZ scaled to sum 1, as LibRaw
    normalises them) times the as-shot ``neutral`` (a white object's camera
    RGB), so that LibRaw's sRGB decode with the camera's white balance gives
    ``linear`` back.
    ``when`` is the DateTimeOriginal (``YYYY:MM:DD HH:MM:SS``).
    With the ``make`` and ``model`` of a camera LibRaw knows, LibRaw uses its
    own colour matrix for that camera instead of the file's.
    """
    cam_rgb = np.asarray(xyz_to_camera) @ np.asarray(_SRGB_TO_XYZ)
    cam_rgb /= cam_rgb.sum(axis=1, keepdims=True)
    camera = (linear @ cam_rgb.T.astype(np.float32)) * np.asarray(neutral, np.float32)
    data = (np.clip(mosaic(camera), 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)
    t = Fraction(exposure_time).limit_denominator(100000)
    matrix = tuple(v for row in xyz_to_camera for x in row for v in _srational(x))
    tags = [
        (33421, 3, 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, 1, 4, (0, 1, 1, 2), True),  # CFAPattern RGGB
        (50706, 1, 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, 1, 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (50708, 2, 0, "hdrmerge synthetic", True),  # UniqueCameraModel
        (50721, 10, 9, matrix, True),  # ColorMatrix1
        (50778, 3, 1, 21, True),  # CalibrationIlluminant1 = D65
        (50728, 5, 3, tuple(v for x in neutral for v in (int(round(x * 10000)), 10000)), True),  # AsShotNeutral
        (50714, 4, 1, 0, True),  # BlackLevel
        (50717, 4, 1, 65535, True),  # WhiteLevel
        (271, 2, 0, make, True),  # Make
        (272, 2, 0, model, True),  # Model
        (33434, 5, 1, (t.numerator, t.denominator), True),  # ExposureTime
        (33437, 5, 1, (int(round(fnumber * 10)), 10), True),  # FNumber
        (34855, 3, 1, iso, True),  # ISOSpeedRatings
        (36867, 2, 0, when, True),  # DateTimeOriginal
    ]
    tifffile.imwrite(path, data, photometric=32803, extratags=tags, subfiletype=0)
