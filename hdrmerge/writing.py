"""Writing results: Radiance .hdr, OpenEXR, the μ-law preview and debug images.

Every writer takes an already-staged temporary path (see
:class:`hdrmerge.atomic.StagedOutputs`); the caller renames all outputs into
place together once every one of them has been written.

Arrays are H×W×3 float32 RGB, linear, in whatever radiometric scale the caller
chose (see :func:`hdrmerge.pipeline.normalisation_gain`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hdrmerge.errors import InputError, OutputError

if TYPE_CHECKING:
    from hdrmerge.reading import Exif

#: μ of the μ-law tonemap used by the papers and the preview (spec section 9).
MU = 5000.0
FORMATS = {".hdr": "hdr", ".exr": "exr", ".dng": "dng"}
#: Preview formats by extension (Pillow's names); the default preview is a JPEG.
PREVIEW_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}
EXR_COMPRESSIONS = ("zip", "piz")
#: Mid-grey reflectance and the reflected-light meter constant (ISO 2720) used
#: by ``--normalize absolute`` to put values near luminance in cd/m².
_MID_GREY = 0.18
_METER_K = 12.5


def output_format(path: Path) -> str:
    """``hdr``, ``exr`` or ``dng`` from the output's extension; InputError otherwise."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: the output must end in .hdr (Radiance), .exr (OpenEXR) or .dng (DNG)")
    return fmt


def preview_format(path: Path) -> str:
    """``JPEG`` or ``PNG`` from a preview's extension; InputError otherwise.

    Staged temporaries keep the extension (``.x.part.png``), so this reads
    the format from them too.
    """
    fmt = PREVIEW_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: the preview must end in .jpg or .jpeg (JPEG) or .png (PNG)")
    return fmt


def preview_path(output: Path) -> Path:
    """Default preview of ``output``: its full file name plus ``.preview.jpg``.

    ``pp.exr`` → ``pp.exr.preview.jpg``, ``pp.hdr`` → ``pp.hdr.preview.jpg``:
    merges of one bracket into two formats never share (or refuse over) a
    preview, and the name depends on nothing but the output's (as photo
    tools name sidecars, e.g. ``IMG_1.CR2.xmp``). ``fuse`` and ``batch`` (whose
    resuming looks for it) both name previews through this function.
    """
    return output.with_name(f"{output.name}.preview.jpg")


def mu_law(hdr: np.ndarray, mu: float = MU) -> np.ndarray:
    """``log(1 + μ·H) / log(1 + μ)`` of H in [0, 1] (values clipped to [0, 1] first)."""
    return np.log1p(mu * np.clip(hdr, 0.0, 1.0)) / math.log1p(mu)


def to_u8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _imwrite(path: Path, rgb_or_grey: np.ndarray, params: list[int] | None = None, *, ext: str | None = None) -> None:
    import cv2

    img = rgb_or_grey
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(ext or path.suffix, img, params or [])
    if not ok:
        raise OutputError(f"could not encode {path.name}")
    try:
        path.write_bytes(buf.tobytes())
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}") from exc


def write_hdr(tmp: Path, rgb: np.ndarray, header: Mapping[str, str]) -> None:
    """Radiance RGBE (run-length encoded), with ``SOFTWARE=`` and comment lines.

    ``header`` entries become ``# key: value`` lines after the magic line;
    Radiance readers skip any header line they do not know.
    """
    import cv2

    data = np.ascontiguousarray(np.maximum(rgb, 0.0).astype(np.float32))
    ok, buf = cv2.imencode(".hdr", cv2.cvtColor(data, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OutputError("could not encode the Radiance image")
    raw = buf.tobytes()
    magic, _, rest = raw.partition(b"\n")
    lines = [magic]
    for key, value in header.items():
        text = " ".join(str(value).split())  # one line each, whatever the value
        lines.append((f"SOFTWARE={text}" if key == "SOFTWARE" else f"# {key}: {text}").encode("utf-8", "replace"))
    try:
        tmp.write_bytes(b"\n".join(lines) + b"\n" + rest)
    except OSError as exc:
        raise OutputError(f"cannot write {tmp}: {exc.strerror}") from exc


def write_exr(
    tmp: Path,
    rgb: np.ndarray,
    attributes: Mapping[str, Any],
    *,
    dtype: str = "half",
    compression: str = "zip",
) -> None:
    """OpenEXR through its own bindings: R, G, B channels, half or float, ZIP or PIZ."""
    import OpenEXR

    if dtype not in ("half", "float"):
        raise InputError(f"--exr-dtype {dtype}: use half or float")
    if compression not in EXR_COMPRESSIONS:
        raise InputError(f"--exr-compression {compression}: use {' or '.join(EXR_COMPRESSIONS)}")
    # The network's output is non-negative already; clip in the target type
    # so a 24 MP image is copied once, not twice.
    # Values beyond the half range become inf, reported below as one line:
    # numpy's own overflow warning would only add noise on stderr.
    with np.errstate(over="ignore"):
        data = rgb.astype(np.float16 if dtype == "half" else np.float32, copy=dtype == "half")
    np.maximum(data, 0, out=data)
    if dtype == "half" and np.isinf(data).any():
        raise OutputError("values exceed the half-float range; use --exr-dtype float")
    header: dict[str, Any] = {
        "compression": OpenEXR.ZIP_COMPRESSION if compression == "zip" else OpenEXR.PIZ_COMPRESSION,
        "type": OpenEXR.scanlineimage,
    }
    header.update({k: v for k, v in attributes.items() if v is not None})
    try:
        OpenEXR.File(header, {"RGB": np.ascontiguousarray(data)}).write(str(tmp))
    except Exception as exc:  # the bindings raise RuntimeError/TypeError with C++ text
        raise OutputError(f"cannot write OpenEXR file {tmp.name}: {exc}") from exc


def tonemap_u8(hdr_short: np.ndarray, band: int = 256) -> np.ndarray:
    """μ-law tonemap as 8-bit values, computed in bands of rows.

    The float temporaries of a whole 24 MP image would be about a gigabyte;
    band by band they stay a few megabytes.
    """
    out = np.empty(hdr_short.shape, np.uint8)
    for r in range(0, hdr_short.shape[0], band):
        out[r : r + band] = to_u8(mu_law(hdr_short[r : r + band]))
    return out


#: EXIF tags a preview takes over from the reference shot, by IFD: what was
#: shot (camera, lens, settings), when and by whom. Orientation is not among
#: them: previews are written upright (Orientation 1), since shots are turned
#: upright when they are read. Maker notes and thumbnails are left out.
_PREVIEW_IFD0 = (0x010F, 0x0110, 0x0132, 0x013B, 0x8298)  # Make, Model, DateTime, Artist, Copyright
_PREVIEW_EXIF_IFD = (
    0x829A, 0x829D, 0x8827, 0x9003, 0x9004, 0x9010, 0x9011, 0x9291, 0x9292, 0x920A,  # t, N, ISO, times, focal length
    0xA405, 0xA431, 0xA432, 0xA433, 0xA434,  # 35 mm focal length, body serial, lens spec, make, model
)


def preview_exif(source: Path | None = None, exif: Exif | None = None) -> Any:
    """The preview's EXIF (a ``PIL.Image.Exif``): the reference shot's camera,
    lens, settings, capture time and GPS; Orientation 1; ColorSpace sRGB; and
    Software ``hdrmerge <version>`` (so a later batch knows the file as its
    own, see :mod:`hdrmerge.provenance`).

    Tags are copied from ``source`` where Pillow reads its EXIF (JPEG, TIFF,
    PNG), else built from ``exif`` (what hdrmerge read, e.g. from a RAW file
    through LibRaw; no GPS then) by :func:`hdrmerge.exif_tags.exif_tags`,
    the same tags.
    """
    from PIL import Image

    from hdrmerge import __version__
    from hdrmerge.exif_tags import IFD0, exif_tags, to_pillow
    from hdrmerge.frame_size import pillow_open

    out = Image.Exif()
    sub = out.get_ifd(0x8769)
    src = None
    if source is not None:
        try:
            with pillow_open(source) as im:  # reads the header only, no pixels
                src = im.getexif()
                src_sub, src_gps = dict(src.get_ifd(0x8769)), dict(src.get_ifd(0x8825))
        except Exception:  # not a format Pillow reads (RAW): fall back to ``exif``
            src = None
    if src is not None:
        out.update({t: src[t] for t in _PREVIEW_IFD0 if t in src})
        sub.update({t: src_sub[t] for t in _PREVIEW_EXIF_IFD if t in src_sub})
        if src_gps:
            out.get_ifd(0x8825).update(src_gps)
    elif exif is not None:
        # The same tags as from a file, built from what hdrmerge read.
        to_pillow((e for e in exif_tags(exif) if e.tag in (_PREVIEW_IFD0 if e.ifd == IFD0 else _PREVIEW_EXIF_IFD)), out)
    out[0x0112] = 1  # Orientation: the preview's pixels are upright
    out[0x0131] = f"hdrmerge {__version__}"  # Software
    sub[0xA001] = 1  # ColorSpace: sRGB (the embedded ICC profile says the same)
    return out


def srgb_icc() -> bytes:
    """An sRGB ICC profile (Little CMS's built-in one, through Pillow)."""
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def write_preview(
    tmp: Path, hdr_short: np.ndarray, quality: int = 95, *, source: Path | None = None, exif: Exif | None = None
) -> None:
    """8-bit sRGB JPEG (or PNG, by ``tmp``'s extension) of the μ-law tonemap of the short-normalised HDR.

    It carries an sRGB ICC profile and the EXIF of :func:`preview_exif`
    (the reference shot's, given as ``source`` and/or ``exif``; without
    either, only Orientation, ColorSpace and Software); ``quality`` is the JPEG's.
    """
    from PIL import Image

    fmt = preview_format(tmp)
    img = Image.fromarray(np.ascontiguousarray(tonemap_u8(hdr_short)), "RGB")
    extra = {"quality": quality} if fmt == "JPEG" else {}
    try:
        img.save(tmp, fmt, exif=preview_exif(source, exif), icc_profile=srgb_icc(), **extra)
    except OSError as exc:
        raise OutputError(f"cannot write {tmp}: {exc.strerror or exc}") from exc


def flow_to_rgb(flow: np.ndarray, max_px: float | None = None) -> np.ndarray:
    """Colour-code an H×W×2 flow: hue = direction, brightness = length.

    Lengths are scaled by ``max_px`` (default: the largest length in the flow).
    """
    import cv2

    fx, fy = flow[..., 0], flow[..., 1]
    mag = np.hypot(fx, fy)
    scale = max_px or float(mag.max()) or 1.0
    hsv = np.zeros(flow.shape[:2] + (3,), np.uint8)
    hsv[..., 0] = ((np.degrees(np.arctan2(fy, fx)) % 360.0) / 2.0).astype(np.uint8)
    hsv[..., 1] = 255
    hsv[..., 2] = to_u8(mag / scale)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def write_png(tmp: Path, image: np.ndarray) -> None:
    """An 8-bit PNG from [0, 1] floats or uint8 (grey or RGB)."""
    img = image if image.dtype == np.uint8 else to_u8(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    _imwrite(tmp, img, ext=".png")


def absolute_gain(exposure_time: float, fnumber: float, iso: float) -> float:
    """Factor from the short-exposure domain to approximate luminance (cd/m²).

    A pixel of linear value 0.18 (mid-grey) in a frame exposed at ``t``, ``N``,
    ``S`` corresponds to ``K·N²/(t·S)`` cd/m² by the reflected-light exposure
    equation with K = 12.5; so luminance ≈ value · K·N²/(0.18·t·S).
    """
    return _METER_K * fnumber**2 / (_MID_GREY * exposure_time * iso)
