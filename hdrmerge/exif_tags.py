"""The EXIF tags hdrmerge writes from a shot's :class:`hdrmerge.reading.Exif`.

One table, read by every writer that carries the reference shot's camera,
settings and capture time into an output: the DNG's EXIF IFD
(:mod:`hdrmerge.dng`, which needs each tag's TIFF type) and the preview
JPEG's EXIF when no file EXIF can be copied, as for a RAW reference
(:func:`hdrmerge.writing.preview_exif`); and by ``hdrmerge synth``'s
synthetic camera (:mod:`hdrmerge.demo_scene`'s JPEGs, :mod:`hdrmerge.testsets`'
TIFFs). Each writer picks the rows it writes; the values are Pillow's
(``IFDRational``, ``int``, ``str``), which Pillow serialises
(:func:`to_pillow`) and tifffile too (:func:`tifffile_tag`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hdrmerge.reading import Exif

#: Where a tag lives: IFD 0 (the image's) or the EXIF IFD (its pointer tag).
IFD0 = 0
EXIF_IFD = 0x8769
#: TIFF field types (TIFF 6.0, section 2).
ASCII, SHORT, RATIONAL, UNDEFINED, SRATIONAL = 2, 3, 5, 7, 10
#: ExifVersion (UNDEFINED, 4 bytes): the EXIF version a writer declares.
EXIF_VERSION = 0x9000
_SHORT_MAX = 65535


@dataclass(frozen=True)
class ExifTag:
    """One EXIF entry: ``ifd`` (:data:`IFD0` or :data:`EXIF_IFD`), tag number, TIFF type and value."""

    ifd: int
    tag: int
    type: int
    value: Any


def _simplest_between(lo: Fraction, hi: Fraction) -> Fraction:
    """The fraction with the smallest denominator in [lo, hi] (0 < lo ≤ hi), by continued fractions."""
    whole = lo.numerator // lo.denominator
    if whole == lo or whole + 1 <= hi:
        return Fraction(whole if whole == lo else whole + 1)
    return whole + 1 / _simplest_between(1 / (hi - whole), 1 / (lo - whole))


def exif_fraction(x: float, max_denominator: int = 1_000_000) -> Fraction:
    """The short fraction a camera value ``x`` (> 0) stands for.

    Values read from EXIF rationals arrive as the float of p/q: the nearest
    fraction with a denominator ≤ ``max_denominator`` is p/q again. LibRaw
    gives RAW files' values as 32-bit floats (f/7.1 is 7.0999999046…), whose
    nearest such fraction is 7099936/999991: a value that is exactly a
    32-bit float is taken as the simplest fraction that rounds to it (71/10).
    """
    import numpy as np

    single = np.float32(x)
    if x > 0 and float(single) == x:
        below = Fraction(float(np.nextafter(single, np.float32(0))))
        above = Fraction(float(np.nextafter(single, np.float32(np.inf))))
        exact = Fraction(x)
        simplest = _simplest_between((below + exact) / 2, (exact + above) / 2)
        if simplest.denominator <= max_denominator:
            return simplest
    return Fraction(x).limit_denominator(max_denominator)


def _rational(x: float, max_denominator: int = 1_000_000) -> Any:
    """``x`` as a Pillow rational: :func:`exif_fraction`, signed."""
    from PIL.TiffImagePlugin import IFDRational

    f = exif_fraction(abs(x), max_denominator) * (1 if x >= 0 else -1) if x else Fraction(0)
    return IFDRational(f.numerator, f.denominator)


def _subsec(exif: Exif) -> str | None:
    # EXIF's SubSecTime is ASCII digits; anything else would not be read as a fraction of a second.
    digits = (exif.subsec or "").strip()
    return digits if exif.datetime_original and digits.isdigit() else None


#: (ifd, tag, type, value from an Exif or None to leave the tag out), in tag order.
_TABLE: tuple[tuple[int, int, int, Callable[[Exif], Any]], ...] = (
    (IFD0, 0x010F, ASCII, lambda e: e.make or None),  # Make
    (IFD0, 0x0110, ASCII, lambda e: e.model or None),  # Model
    (EXIF_IFD, 0x829A, RATIONAL, lambda e: _rational(e.exposure_time) if e.exposure_time else None),  # ExposureTime, s
    (EXIF_IFD, 0x829D, RATIONAL, lambda e: _rational(e.fnumber) if e.fnumber else None),  # FNumber
    # PhotographicSensitivity is a SHORT: higher ISOs are written as 65535, as cameras do.
    (EXIF_IFD, 0x8827, SHORT, lambda e: min(_SHORT_MAX, int(round(e.iso))) if e.iso else None),
    (EXIF_IFD, 0x9003, ASCII, lambda e: e.datetime_original or None),  # DateTimeOriginal
    # ExposureBiasValue in EV; cameras step in thirds or halves, hence a small denominator.
    (EXIF_IFD, 0x9204, SRATIONAL, lambda e: None if e.exposure_bias is None else _rational(e.exposure_bias, 100)),
    (EXIF_IFD, 0x920A, RATIONAL, lambda e: _rational(e.focal_length) if e.focal_length else None),  # FocalLength, mm
    (EXIF_IFD, 0x9291, ASCII, _subsec),  # SubSecTimeOriginal
    (EXIF_IFD, 0xA434, ASCII, lambda e: e.lens or None),  # LensModel
)


def exif_tags(exif: Exif) -> list[ExifTag]:
    """The tags ``exif`` fills in, from :data:`_TABLE` (Make, Model, exposure, lens, capture time)."""
    rows = ((ifd, tag, typ, build(exif)) for ifd, tag, typ, build in _TABLE)
    return [ExifTag(ifd, tag, typ, value) for ifd, tag, typ, value in rows if value is not None]


def to_pillow(tags: Iterable[ExifTag], out: Any = None) -> Any:
    """``tags`` in a ``PIL.Image.Exif`` (``out``, or a new one): IFD-0 rows in it, the others in its EXIF IFD."""
    from PIL import Image

    out = Image.Exif() if out is None else out
    sub = out.get_ifd(EXIF_IFD)
    for entry in tags:
        (out if entry.ifd == IFD0 else sub)[entry.tag] = entry.value
    return out


def tifffile_tag(entry: ExifTag) -> tuple[int, int, int, Any, bool]:
    """``entry`` as an item of tifffile's ``extratags`` (tag, type, count, value, write once),
    for the IFD it is given to whatever ``entry.ifd`` says."""
    if entry.type in (RATIONAL, SRATIONAL):
        return entry.tag, entry.type, 1, (entry.value.numerator, entry.value.denominator), True
    return entry.tag, entry.type, 0 if entry.type == ASCII else 1, entry.value, True
