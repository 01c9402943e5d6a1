"""Writing the merged HDR as a LinearRaw DNG that raw editors open.

The DNG holds demosaiced, scene-linear RGB as 16- or 32-bit floating-point
samples (DNG 1.4), in 256×256 tiles (strips for images under 256 pixels)
compressed with Deflate and the floating-point predictor; or, for readers
without floating-point LinearRaw (RawTherapee 5.9), as uncompressed 16-bit
integers spanning 0 to the white level, in strips. Layout, as the DNG
specification recommends:

* IFD 0: a small 8-bit RGB thumbnail (NewSubFileType 1) and the tags that
  describe the whole file: DNGVersion, UniqueCameraModel, ColorMatrix1,
  CalibrationIlluminant1, AsShotNeutral, BaselineExposure, Make/Model,
  Orientation, XMP (hdrmerge's provenance) and a pointer to the EXIF IFD.
* SubIFD 0: the full-resolution image (NewSubFileType 0, PhotometricInterpretation
  LinearRaw, 3 samples), with WhiteLevel.
* EXIF IFD: the reference shot's exposure, lens and capture time
  (:mod:`hdrmerge.exif_tags`).

Colour. hdrmerge merges in linear sRGB primaries whatever the input. For a
camera RAW whose colour matrix LibRaw knows, the image is turned back into
the camera's own RGB (undoing LibRaw's camera → sRGB matrix and its white
balance), so that the camera's ColorMatrix and AsShotNeutral describe it and an
editor's white balance and camera profiles work as on the original raw file.
Otherwise (JPEG, PNG, TIFF, or a RAW without a known matrix) the samples stay
linear sRGB and the DNG says so: ColorMatrix1 is the XYZ → linear sRGB matrix
(D65), AsShotNeutral is (1, 1, 1) and UniqueCameraModel names no camera, so no
editor applies a profile made for a camera's native RGB.

White level. Floating-point DNG samples are divided by WhiteLevel to get
values where 1.0 is white; an HDR holds values above the reference shot's
white. The white level W is therefore the smallest power of two ≥ the image's
largest value (at least 1): WhiteLevel is W for floating-point samples, and
65535 = W for integer ones. Nothing is clipped by an editor's highlight handling,
and BaselineExposure = log2(W) tells the editor to brighten by as much
by default, which shows stored value 1.0 as white again.

Writing uses tifffile (tiles, Deflate, predictor, SubIFDs); the EXIF IFD,
which tifffile does not write, is serialised by Pillow and appended.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np

from hdrmerge.errors import InputError, OutputError
from hdrmerge.reading import CameraColour

DTYPES = ("half", "float", "uint16")
#: Sample encoding of each ``--dng-dtype``: numpy type, compression, predictor, DNGBackwardVersion.
#: RawTherapee 5.9 reads LinearRaw DNGs only as uncompressed integers ("demosaiced
#: float dng files are not supported"), hence uint16, uncompressed.
_ENCODINGS: dict[str, tuple[Any, str | None, int | None, tuple[int, int, int, int]]] = {
    "half": (np.float16, "adobe_deflate", 3, (1, 4, 0, 0)),  # floating point: DNG 1.4
    "float": (np.float32, "adobe_deflate", 3, (1, 4, 0, 0)),
    "uint16": (np.uint16, None, None, (1, 1, 0, 0)),
}
_UINT16_WHITE = 65535
#: Long side of the embedded thumbnail, in pixels (what Adobe's converter writes).
THUMBNAIL_SIZE = 256
#: Tile side in pixels; readers decode tiles independently (and in parallel).
TILE = 256
#: TIFF/DNG tag numbers (DNG specification 1.4, TIFF 6.0, EXIF 2.32).
_TAG = {
    "Make": 271,
    "Model": 272,
    "Orientation": 274,
    "DateTime": 306,
    "XMP": 700,
    "ExifIFD": 34665,
    "DNGVersion": 50706,
    "DNGBackwardVersion": 50707,
    "UniqueCameraModel": 50708,
    "WhiteLevel": 50717,
    "ColorMatrix1": 50721,
    "AsShotNeutral": 50728,
    "BaselineExposure": 50730,
    "CalibrationIlluminant1": 50778,
}
#: CalibrationIlluminant value for D65 (EXIF LightSource).
D65 = 21
#: XYZ (D65) → linear sRGB, IEC 61966-2-1: the "camera" matrix of sRGB data.
XYZ_TO_SRGB = np.array(
    [[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]]
)
#: UniqueCameraModel of a DNG whose samples are linear sRGB, not a camera's RGB.
SRGB_MODEL = "hdrmerge linear sRGB"
XMP_NS = "http://ns.hdrmerge.invalid/1.0/"
_HALF_MAX = 65504.0
#: tifffile refuses to write the ExifIFD pointer (34665) itself, so IFD 0 gets
#: this unassigned neighbour instead, renumbered once the EXIF IFD exists; no
#: tag lies between the two, so IFD 0 stays sorted.
_EXIF_PLACEHOLDER = 34664
_SUBIFDS = 330


@dataclass
class DngMetadata:
    """What the DNG says besides its pixels.

    ``exif``: the reference shot's :class:`hdrmerge.reading.Exif`.
    ``colour``: the reference shot's camera colour (RAW input whose matrix
    LibRaw knows), or None: the samples are then written as linear sRGB.
    ``provenance``: hdrmerge's own fields for the XMP packet (name → str,
    number or list of them). ``preview_gain``: factor from the image's values
    to the short-exposure domain that hdrmerge's μ-law preview uses.
    """

    exif: Any
    colour: CameraColour | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)
    preview_gain: float = 1.0
    software: str = "hdrmerge"


def dng_metadata(bracket: Any, report: Mapping[str, Any]) -> DngMetadata:
    """The DNG's metadata for a merged :class:`hdrmerge.pipeline.Bracket` and its run report."""
    from hdrmerge import __version__
    from hdrmerge.header_fields import merge_fields

    ref = bracket.reference
    provenance = merge_fields(bracket, report)
    if ref.colour is None:
        # IFD 0 names no camera then (see the module docstring); keep it here.
        provenance["cameraMake"] = ref.exif.make
        provenance["cameraModel"] = ref.exif.model
    return DngMetadata(
        exif=ref.exif,
        colour=ref.colour,
        provenance=provenance,
        preview_gain=1.0 / float(report["normalize_gain"]),
        software=f"hdrmerge {__version__}",
    )


def _srgb_to_camera(colour: CameraColour) -> tuple[np.ndarray, np.ndarray]:
    """(3×3 matrix, per-channel neutral): linear sRGB → camera RGB, and the camera's white.

    Inverts LibRaw's ``sRGB = camera_to_srgb · (wb ⊙ camera)`` with ``wb``
    scaled so that its smallest multiplier is 1 (as LibRaw scales it): a white
    object (sRGB 1, 1, 1) becomes ``min(wb) / wb``, the AsShotNeutral.
    """
    wb = np.asarray(colour.wb, np.float64)
    neutral = wb.min() / wb
    matrix = np.diag(neutral) @ np.linalg.inv(colour.camera_to_srgb)
    return matrix, neutral


def white_level(peak: float) -> int:
    """The smallest power of two ≥ ``peak`` and ≥ 1 (the DNG WhiteLevel of float data)."""
    if not math.isfinite(peak) or peak <= 1.0:
        return 1
    return 1 << max(0, math.ceil(math.log2(peak)))


def _srational(x: float, denominator: int = 10000) -> tuple[int, int]:
    return int(round(x * denominator)), denominator


def _thumbnail(rgb: np.ndarray, gain: float) -> np.ndarray:
    """8-bit μ-law thumbnail, longer side :data:`THUMBNAIL_SIZE`, like hdrmerge's preview."""
    import cv2

    from hdrmerge.writing import tonemap_u8

    h, w = rgb.shape[:2]
    scale = min(1.0, THUMBNAIL_SIZE / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(np.ascontiguousarray(rgb, np.float32), size, interpolation=cv2.INTER_AREA)
    return tonemap_u8(np.maximum(small, 0.0) * np.float32(gain))


def _xmp(provenance: Mapping[str, Any], software: str) -> bytes:
    """An XMP packet with hdrmerge's provenance in the ``hdrmerge:`` namespace."""

    def value(v: Any) -> str:
        if isinstance(v, (list, tuple)):
            items = "".join(f"<rdf:li>{escape(str(x))}</rdf:li>" for x in v)
            return f"<rdf:Seq>{items}</rdf:Seq>"
        return escape(str(v))

    props = "".join(
        f"\n   <hdrmerge:{name}>{value(v)}</hdrmerge:{name}>" for name, v in provenance.items() if v is not None
    )
    text = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about=""\n'
        '    xmlns:xmp="http://ns.adobe.com/xap/1.0/"\n'
        f'    xmlns:hdrmerge="{XMP_NS}">\n'
        f"   <xmp:CreatorTool>{escape(software)}</xmp:CreatorTool>{props}\n"
        "  </rdf:Description>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    )
    return text.encode("utf-8")


def _exif_ifd(exif: Any, offset: int) -> bytes:
    """The EXIF IFD of the reference shot, serialised for file offset ``offset`` (little-endian).

    Its tags are :func:`hdrmerge.exif_tags.exif_tags`'s EXIF-IFD rows (Make and
    Model go in IFD 0, see :func:`_ifd0_tags`), with their TIFF types.
    """
    from PIL.TiffImagePlugin import ImageFileDirectory_v2

    from hdrmerge.exif_tags import EXIF_IFD, EXIF_VERSION, UNDEFINED, exif_tags

    ifd = ImageFileDirectory_v2(prefix=b"II")
    ifd.tagtype[EXIF_VERSION] = UNDEFINED
    ifd[EXIF_VERSION] = b"0232"
    for entry in exif_tags(exif):
        if entry.ifd == EXIF_IFD:
            ifd.tagtype[entry.tag] = entry.type
            ifd[entry.tag] = entry.value
    return ifd.tobytes(offset)


def _camera_samples(rgb: np.ndarray, matrix: np.ndarray | None, dtype: Any, band: int = 256) -> np.ndarray:
    """``rgb`` (H×W×3 linear sRGB) as H×W×3 ``dtype`` samples, through ``matrix`` if given.

    Negative results (a colour outside the camera's gamut after the matrix)
    are clipped to 0. Done in bands of rows so that a 24 MP image needs no
    float64 or second float32 copy.
    """
    out = np.empty(rgb.shape, dtype)
    m = None if matrix is None else matrix.T.astype(np.float32)
    for r in range(0, rgb.shape[0], band):
        part = rgb[r : r + band]
        if m is not None:
            part = part @ m
        out[r : r + band] = np.maximum(part, 0.0)
    return out


def _ifd0_tags(
    meta: DngMetadata,
    neutral: Sequence[float],
    xyz_to_camera: np.ndarray,
    baseline: float,
    backward: tuple[int, int, int, int],
) -> list[tuple]:
    exif = meta.exif
    tags: list[tuple] = [
        (_TAG["DNGVersion"], 1, 4, (1, 4, 0, 0), True),
        # The oldest specification a reader must know: 1.4 for floating-point samples.
        (_TAG["DNGBackwardVersion"], 1, 4, backward, True),
        (_TAG["Orientation"], 3, 1, 1, True),  # hdrmerge's frames are upright already
        (_EXIF_PLACEHOLDER, 4, 1, 0, True),  # becomes the ExifIFD pointer, see _finish_ifd0
    ]
    if meta.colour is not None:
        model = " ".join(x for x in (exif.make, exif.model) if x) or "unknown camera"
    else:
        model = SRGB_MODEL
    tags += [
        (_TAG["UniqueCameraModel"], 2, 0, model, True),
        (_TAG["ColorMatrix1"], 10, 9, tuple(v for x in np.asarray(xyz_to_camera).ravel() for v in _srational(float(x))), True),
        (_TAG["CalibrationIlluminant1"], 3, 1, D65, True),
        (_TAG["AsShotNeutral"], 5, 3, tuple(v for x in neutral for v in _srational(float(x), 1_000_000)), True),
        (_TAG["BaselineExposure"], 10, 1, _srational(baseline, 100), True),
        (_TAG["XMP"], 1, 0, _xmp(meta.provenance, meta.software), True),
    ]
    if meta.colour is not None:
        make, camera = exif.make, exif.model
    else:
        # LibRaw replaces a DNG's ColorMatrix by its own table's for a camera
        # it knows by Make and Model, which is wrong for sRGB samples: name
        # hdrmerge instead (the camera goes in the XMP).
        make, camera = "hdrmerge", "linear sRGB"
    if make:
        tags.append((_TAG["Make"], 2, 0, make, True))
    if camera:
        tags.append((_TAG["Model"], 2, 0, camera, True))
    return tags


def _layout(size: tuple[int, int], *, compressed: bool) -> dict[str, Any]:
    """tifffile's tile or strip arguments for an image of ``size`` (height, width).

    Compressed data goes in :data:`TILE`-pixel square tiles when the image is
    at least that large both ways. LibRaw 0.22 fails on tiled floating-point
    DNGs whose tiles are larger than the image, and on some with small tiles
    ("unexpected end of file"), but reads every size tried (100 to 1920
    pixels) as 256-pixel tiles or as strips; so smaller images, and
    uncompressed data, go in strips of up to TILE rows.
    """
    if compressed and min(size) >= TILE:
        return {"tile": (TILE, TILE)}
    return {"rowsperstrip": TILE}


def write_dng(tmp: Path, rgb: np.ndarray, meta: DngMetadata, *, dtype: str = "half") -> None:
    """Write ``rgb`` (H×W×3 float32, linear sRGB, ≥ 0) as a LinearRaw DNG at ``tmp``.

    ``dtype``: ``half`` (16-bit float samples, Deflate), ``float`` (32-bit,
    Deflate) or ``uint16`` (16-bit integers spanning 0 to the white level,
    uncompressed). OutputError if the values do not fit in half floats or the
    file cannot be written.
    """
    import tifffile

    if dtype not in DTYPES:
        raise InputError(f"--dng-dtype {dtype}: use half, float or uint16")
    _, compression, predictor, backward = _ENCODINGS[dtype]
    thumb = _thumbnail(rgb, meta.preview_gain)
    if meta.colour is not None:
        matrix, neutral = _srgb_to_camera(meta.colour)
        xyz_to_camera = meta.colour.xyz_to_camera
    else:
        matrix, neutral = None, np.ones(3)
        xyz_to_camera = XYZ_TO_SRGB
    samples = _camera_samples(rgb, matrix, np.float32)
    peak = float(samples.max(initial=0.0))
    if not math.isfinite(peak):
        raise OutputError("the merged image has non-finite values; cannot write a DNG")
    level = white_level(peak)
    stored_white = level
    if dtype == "half":
        if peak > _HALF_MAX:
            raise OutputError("values exceed the half-float range; use --dng-dtype float")
        samples = samples.astype(np.float16)
    elif dtype == "uint16":
        # 0..65535 spans 0..level: 16 linear bits below the brightest value.
        np.multiply(samples, np.float32(_UINT16_WHITE / level), out=samples)
        np.rint(samples, out=samples)
        samples = np.minimum(samples, _UINT16_WHITE).astype(np.uint16)
        stored_white = _UINT16_WHITE
    tags0 = _ifd0_tags(meta, neutral, xyz_to_camera, math.log2(level), backward)
    try:
        with tifffile.TiffWriter(tmp, byteorder="<") as tif:
            tif.write(
                thumb, photometric="rgb", subfiletype=1, subifds=1, extratags=tags0,
                software=meta.software, metadata=None, datetime=True,
            )
            layout = _layout(samples.shape[:2], compressed=compression is not None)
            tif.write(
                samples, photometric=34892, subfiletype=0, **layout,
                compression=compression, predictor=predictor, metadata=None, software=False,
                extratags=[(_TAG["WhiteLevel"], 4, 1, stored_white, True)],
            )
        _finish_ifd0(tmp, meta.exif)
    except OSError as exc:
        raise OutputError(f"cannot write {tmp}: {exc.strerror or exc}") from exc


def _finish_ifd0(path: Path, exif: Any) -> None:
    """Two edits tifffile cannot make: append the EXIF IFD and point IFD 0 at it, and
    declare the SubIFDs pointer as LONG (tifffile writes the TIFF-PM6 type IFD,
    which exiftool flags in a DNG; the four bytes are the same).
    """
    import tifffile

    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        placeholder, subifds = tags[_EXIF_PLACEHOLDER], tags[_SUBIFDS]
        entry_at, value_at, subifds_at = placeholder.offset, placeholder.valueoffset, subifds.offset
        if subifds.count != 1:  # the one value sits in the entry itself only when count is 1
            raise OutputError(f"unexpected DNG layout: {subifds.count} SubIFDs")
    with path.open("r+b") as f:
        end = f.seek(0, 2)
        if end % 2:  # IFDs start on a word boundary
            f.write(b"\0")
            end += 1
        f.write(_exif_ifd(exif, end))
        f.seek(entry_at)
        f.write(struct.pack("<H", _TAG["ExifIFD"]))
        f.seek(value_at)
        f.write(struct.pack("<I", end))
        f.seek(subifds_at + 2)
        f.write(struct.pack("<H", 4))  # LONG
