"""Reading bracketed shots: JPEG, PNG, TIFF (8/16 bit) and camera RAW, plus EXIF.

Formats are recognised by content, never by extension (a JPEG stream named
.tif is read as the JPEG it is). What comes out is a :class:`Frame`: the image
as RGB in the network's LDR domain (gamma 2.2 encoded, like the training
data), kept as 8- or 16-bit integers to save memory, with the EXIF orientation
applied and the exposure metadata parsed.

* 8-bit values map to [0, 1] by ÷255, 16-bit by ÷65535. (The network authors'
  scripts divide everything by 65536, which leaves 8-bit inputs nearly black.)
* Greyscale becomes three equal channels; alpha is dropped.
* Camera RAW (anything LibRaw reads) is decoded linearly by rawpy: camera white
  balance, no auto-brightening, 16 bit, sRGB primaries; then encoded with
  gamma 2.2 (spec section 1) so it lives where JPEG and TIFF inputs live.
* Before decoding, the size the header declares is checked
  (:mod:`hdrmerge.frame_size`: plausibility, ``--max-pixels``, memory).
* A decoder's report of damage is an InputError naming the file, and no
  library prints its own lines: JPEG goes through libjpeg-turbo's TurboJPEG
  API (simplejpeg), which returns its warnings ("Corrupt JPEG data: …") to the
  caller, per call, so parallel decodes cannot mix them up; libpng's lines are
  captured from file descriptor 2 (see :class:`_StderrCapture`).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from hdrmerge.errors import InputError
from hdrmerge.frame_size import (
    DEFAULT_MAX_PIXELS,
    DecodeShare,
    check_limits,
    check_plausible,
    decode_share,
    jpeg_header,
    png_header,
    raw_header,
    tiff_header,
)

#: The gamma of the network's LDR domain (spec section 1).
GAMMA = 2.2

_RAW_HINT = "LibRaw could not decode it"


@dataclass(frozen=True)
class Exif:
    """Exposure-relevant metadata of one shot; None where the file has none.

    ``exposure_time`` in seconds; ``shutter_apex`` is APEX Tv = -log2(t);
    ``aperture_apex`` is APEX Av = 2·log2(N); ``exposure_bias`` in EV.
    """

    make: str | None = None
    model: str | None = None
    lens: str | None = None
    exposure_time: float | None = None
    fnumber: float | None = None
    iso: float | None = None
    shutter_apex: float | None = None
    aperture_apex: float | None = None
    exposure_bias: float | None = None
    focal_length: float | None = None
    datetime_original: str | None = None
    subsec: str | None = None
    orientation: int = 1
    exposure_mode: str | None = None  # "Auto Bracket" for a camera's AEB sequence
    body_serial: str | None = None
    #: The Software tag: the camera's firmware, an editor, or ``hdrmerge <version>`` on hdrmerge's own outputs.
    software: str | None = None

    @property
    def capture_time(self) -> datetime | None:
        """DateTimeOriginal with SubSecTimeOriginal, or None."""
        if not self.datetime_original:
            return None
        try:
            t = datetime.strptime(self.datetime_original.strip()[:19], "%Y:%m:%d %H:%M:%S")
        except ValueError:
            return None
        if self.subsec and self.subsec.strip().isdigit():
            digits = self.subsec.strip()
            t = t.replace(microsecond=int(round(int(digits) / 10 ** len(digits) * 1e6)) % 1_000_000)
        return t

    @property
    def camera(self) -> str | None:
        """Make and model as people say them: the make once.

        Many cameras repeat the make in the model tag: Make "Canon", Model
        "Canon EOS 1000D" gives "Canon EOS 1000D"; Make "NIKON CORPORATION",
        Model "NIKON D750" gives "NIKON D750" (the model starts with the
        make's first word). Others do not: "SONY" + "DSC-RX100" gives
        "SONY DSC-RX100".
        """
        make, model = (self.make or "").strip(), (self.model or "").strip()
        if not model:
            return make or None
        first = make.split()[0].lower() if make else ""
        if not make or model.lower().startswith(first):
            return model
        return f"{make} {model}"

    @property
    def has_exposure(self) -> bool:
        return self.exposure_time is not None or self.shutter_apex is not None


@dataclass(frozen=True)
class CameraColour:
    """How LibRaw turned one RAW shot's camera RGB into linear sRGB.

    ``xyz_to_camera``: 3×3, XYZ (D65) → camera RGB, LibRaw's ``rgb_xyz_matrix``
    (Adobe's ColorMatrix for D65). ``camera_to_srgb``: 3×3, white-balanced
    camera RGB → linear sRGB, LibRaw's ``rgb_cam`` (rows sum to 1).
    ``wb``: the R, G, B multipliers LibRaw applied (the camera's white balance).
    """

    xyz_to_camera: np.ndarray
    camera_to_srgb: np.ndarray
    wb: tuple[float, float, float]


@dataclass
class Frame:
    """One decoded shot.

    ``pixels``: H×W×3 RGB, uint8 or uint16, gamma-2.2 encoded LDR (for RAW,
    the linear decode raised to 1/2.2). ``kind``: jpeg, png, tiff or raw.
    ``colour``: for RAW, how LibRaw converted the camera's RGB to sRGB
    (None where it had no colour matrix for the camera, and for other kinds).
    """

    path: Path
    pixels: np.ndarray
    kind: str
    exif: Exif = field(default_factory=Exif)
    colour: CameraColour | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.pixels.shape[0], self.pixels.shape[1]

    @property
    def scale(self) -> float:
        """The integer value of 1.0 (255 or 65535)."""
        return 255.0 if self.pixels.dtype == np.uint8 else 65535.0

    def ldr(self, dtype: Any = np.float32) -> np.ndarray:
        """H×W×3 values in [0, 1] (gamma 2.2 encoded)."""
        return self.pixels.astype(dtype) / dtype(self.scale)


def sniff(head: bytes) -> str | None:
    """Container type from a file's first bytes: jpeg, png, tiff, or None."""
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return None


# --- EXIF -----------------------------------------------------------------


def _num(value: Any) -> float | None:
    """A number from an exifread value (Ratio, int, list of one), or None."""
    if value is None:
        return None
    v = getattr(value, "values", value)
    if isinstance(v, (list, tuple)):
        if not v:
            return None
        v = v[0]
    try:
        if hasattr(v, "numerator") and hasattr(v, "denominator"):
            if v.denominator == 0:
                return None
            return float(Fraction(int(v.numerator), int(v.denominator)))
        f = float(v)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return f if math.isfinite(f) else None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    s = str(value).strip().strip("\x00").strip()
    return s or None


def _pick(tags: dict[str, Any], *names: str) -> Any:
    """The first present tag among ``names``, each tried under EXIF and Image."""
    for name in names:
        for prefix in ("EXIF ", "Image ", "MakerNote "):
            if prefix + name in tags:
                return tags[prefix + name]
    return None


def read_exif(path: Path) -> Exif:
    """Exposure metadata through exifread (JPEG, TIFF, TIFF-based RAW, HEIC…)."""
    import exifread
    import logging

    logging.getLogger("exifread").setLevel(logging.ERROR)
    try:
        with path.open("rb") as f:
            tags = exifread.process_file(f, details=False)
    except Exception:  # exifread raises assorted errors on foreign containers
        return Exif()
    if not tags:
        return Exif()
    orientation = _num(_pick(tags, "Orientation"))
    iso = _num(_pick(tags, "ISOSpeedRatings", "PhotographicSensitivity", "RecommendedExposureIndex"))
    return Exif(
        make=_text(_pick(tags, "Make")),
        model=_text(_pick(tags, "Model")),
        lens=_text(_pick(tags, "LensModel")),
        exposure_time=_positive(_num(_pick(tags, "ExposureTime"))),
        fnumber=_positive(_num(_pick(tags, "FNumber"))),
        iso=_positive(iso),
        shutter_apex=_num(_pick(tags, "ShutterSpeedValue")),
        aperture_apex=_num(_pick(tags, "ApertureValue")),
        exposure_bias=_num(_pick(tags, "ExposureBiasValue")),
        focal_length=_positive(_num(_pick(tags, "FocalLength"))),
        datetime_original=_text(_pick(tags, "DateTimeOriginal", "DateTime")),
        subsec=_text(_pick(tags, "SubSecTimeOriginal", "SubSecTime")),
        orientation=int(orientation) if orientation and 1 <= orientation <= 8 else 1,
        exposure_mode=_text(_pick(tags, "ExposureMode")),
        body_serial=_text(_pick(tags, "BodySerialNumber", "SerialNumber")),
        software=_text(_pick(tags, "Software")),
    )


def _positive(v: float | None) -> float | None:
    return v if v is not None and v > 0 else None


# --- decoding ---------------------------------------------------------------


def _orient(img: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) so the image is shown upright."""
    if orientation == 2:
        return img[:, ::-1]
    if orientation == 3:
        return img[::-1, ::-1]
    if orientation == 4:
        return img[::-1]
    if orientation == 5:
        return img.transpose(1, 0, 2)
    if orientation == 6:
        return img.transpose(1, 0, 2)[:, ::-1]
    if orientation == 7:
        return img.transpose(1, 0, 2)[::-1, ::-1]
    if orientation == 8:
        return img.transpose(1, 0, 2)[::-1]
    return img


def _to_rgb(img: np.ndarray, path: Path, order: str = "bgr") -> np.ndarray:
    """BGR/BGRA (OpenCV's ``order``) or RGB/RGBA, or grey, in 8 or 16 bit → RGB, same depth."""

    if img.dtype not in (np.uint8, np.uint16):
        raise InputError(
            f"{path}: {img.dtype} samples are not supported; give 8- or 16-bit integer images "
            "(a floating-point file is HDR already)"
        )
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    channels = img.shape[2]
    if channels == 1:
        return np.repeat(img, 3, axis=2)
    if channels == 2:  # grey + alpha
        return np.repeat(img[:, :, :1], 3, axis=2)
    if channels in (3, 4):
        if order == "rgb":
            return np.ascontiguousarray(img[:, :, :3])
        cv2 = _cv2()
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB if channels == 3 else cv2.COLOR_BGRA2RGB)
    raise InputError(f"{path}: {channels} colour channels are not supported; give an RGB or greyscale image")


def _cv2() -> Any:
    """OpenCV, with its C-level logging silenced (errors reach the user as one line)."""
    import cv2

    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except AttributeError:  # older builds without the logging module
        pass
    return cv2


def _complete(data: bytes, kind: str) -> bool:
    """Whether a JPEG/PNG stream has its end marker (libpng prints to stderr otherwise)."""
    if kind == "png":
        return b"IEND" in data[-64:]
    if kind == "jpeg":
        # Trailing padding or appended data (MPF, vendor trailers) may follow EOI.
        return b"\xff\xd9" in data[len(data) // 2 :]
    return True


def _damaged_raster(path: Path, kind: str, reason: str | None = None) -> InputError:
    why = f" ({reason})" if reason else ""
    return InputError(f"{path}: damaged or truncated {kind.upper()} file{why}; re-export or copy it again")


def _decode_raster(path: Path, data: bytes, kind: str, max_pixels: int, memory: int | DecodeShare | None) -> np.ndarray:
    """H×W×3 RGB of a JPEG, PNG or TIFF stream, once its declared size has passed the checks."""
    if not _complete(data, kind):
        raise _damaged_raster(path, kind)
    if kind == "jpeg":
        declared, colorspace = jpeg_header(path, data)
        check_plausible(path, kind, declared, data, max_pixels=max_pixels)
        check_limits(path, declared, max_pixels, memory)
        return _decode_jpeg(path, data, colorspace)
    if kind == "png":
        declared, stream = png_header(path, data)
        check_plausible(path, kind, declared, data, png_stream=stream, max_pixels=max_pixels)
        check_limits(path, declared, max_pixels, memory)
        return _decode_png(path, data)
    declared, by_tifffile = tiff_header(path, data)
    if by_tifffile:
        check_limits(path, declared, max_pixels, memory)
        return _decode_deflate_tiff(path, data)
    check_limits(path, declared, max_pixels, memory)
    cv2 = _cv2()
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:  # OpenCV's own checks (sizes, allocation) on a damaged header
        img = None
    if img is None or img.size == 0:
        raise _damaged_raster(path, kind)
    return _to_rgb(img, path)


#: libpng's message for data that ends inside the image, as imagecodecs words it.
_PNG_SHORT = "png_read_data_fn input stream too small"


def _decode_png(path: Path, data: bytes) -> np.ndarray:
    """libpng through imagecodecs, which raises each decode's own error.

    (OpenCV's libpng prints its errors on stderr, where the lines of decodes
    running in parallel mix, so a reason could not always be told apart.)
    libpng's warnings, about an ancillary chunk it skips, are printed by
    imagecodecs on stderr (``PNG warning: tEXt: CRC error``): captured and
    dropped, the image being intact.
    """
    import imagecodecs

    with _captured_c_stderr(path, prefix=b"PNG warning: "):
        try:
            img = imagecodecs.png_decode(data)
        except imagecodecs.PngError as exc:
            reason = " ".join(str(exc).split()) or None
            raise _damaged_raster(path, "png", "the image data ends early" if reason == _PNG_SHORT else reason) from None
    return _to_rgb(img, path, order="rgb")


def _decode_deflate_tiff(path: Path, data: bytes) -> np.ndarray:
    """A deflate-compressed grey or RGB TIFF through tifffile, which checks every strip's checksum."""
    import io

    import tifffile

    try:
        # Closed explicitly, as in hdrmerge.frame_size: tifffile's reference cycles would otherwise
        # keep the file's bytes alive until the next garbage collection.
        with io.BytesIO(data) as buf:
            img = tifffile.imread(buf, key=0, maxworkers=1)
    except Exception:  # zlib.error, imagecodecs' DeflateError, ValueError on short strips
        raise _damaged_raster(path, "tiff", "its deflate-compressed image data is damaged") from None
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[2] <= 2:  # grey, grey + alpha
        return np.repeat(img[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])  # RGB, alpha dropped


def _decode_jpeg(path: Path, data: bytes, colorspace: str) -> np.ndarray:
    """libjpeg-turbo in strict mode: any warning about the data is an error."""
    import simplejpeg

    cmyk = colorspace in ("CMYK", "YCCK")
    try:
        img = simplejpeg.decode_jpeg(data, colorspace="CMYK" if cmyk else "RGB", strict=True)
    except ValueError as exc:
        raise _damaged_raster(path, "jpeg", str(exc).strip() or None) from None
    if cmyk:
        # Adobe CMYK JPEGs store inverted inks: each RGB value is ink × black / 255.
        ink = img.astype(np.uint16)
        img = ((ink[..., :3] * ink[..., 3:4] + 127) // 255).astype(np.uint8)
    return img


def _decode_raw(
    path: Path, max_pixels: int, memory: int | DecodeShare | None
) -> tuple[np.ndarray, Exif | None, CameraColour | None]:
    """Linear 16-bit decode through LibRaw, gamma-encoded; with LibRaw's metadata and colour."""
    import rawpy

    with _captured_c_stderr(path) as printed:
        try:
            raw = rawpy.imread(str(path))  # identifies the file; decodes nothing yet
        except rawpy.LibRawError as exc:
            raise _NotRaw(str(exc)) from exc
        try:
            with raw:
                declared, working = raw_header(raw)
                check_limits(path, declared, max_pixels, memory, extra=working)
                linear = raw.postprocess(
                    gamma=(1, 1),
                    no_auto_bright=True,
                    output_bps=16,
                    use_camera_wb=True,
                    output_color=rawpy.ColorSpace.sRGB,
                    user_flip=None,  # LibRaw applies the camera's orientation itself
                )
                other = getattr(raw, "other", None)
                colour = camera_colour_from_libraw(raw)
        except (rawpy.LibRawError, OSError, ValueError) as exc:
            reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
            raise _DamagedRaw(reason) from exc
    if printed:
        # LibRaw decoded the file but complained (e.g. data cut short): refuse
        # rather than merge an image with missing rows.
        raise _DamagedRaw(printed[-1].replace(f"{path}: ", ""))
    # Linear [0, 1] → the network's gamma-2.2 domain, kept as 16-bit.
    lut = (np.linspace(0.0, 1.0, 65536) ** (1.0 / GAMMA) * 65535.0 + 0.5).astype(np.uint16)
    pixels = lut[linear]
    return np.ascontiguousarray(pixels), exif_from_libraw(other), colour


#: Linear sRGB → XYZ (D65), IEC 61966-2-1; the matrix LibRaw builds its camera → sRGB matrices on.
SRGB_TO_XYZ = np.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)


def camera_colour_from_libraw(raw: Any) -> CameraColour | None:
    """The :class:`CameraColour` of an open ``rawpy.RawPy`` after ``postprocess``, or None.

    None when LibRaw converted nothing (no colour matrix for the camera: its
    RGB went out unconverted, which hdrmerge then takes as sRGB), when the
    sensor is not RGB (CMYG) or when its multipliers are unusable.

    The XYZ → camera matrix is the one consistent with the camera → sRGB
    matrix LibRaw applied: LibRaw's ``rgb_xyz_matrix`` (the camera's Adobe
    matrix) when it produced that conversion; otherwise (a DNG's own
    matrices, which LibRaw uses without reporting them) it is recovered from
    ``rgb_cam = (rows of cam_xyz · SRGB_TO_XYZ scaled to sum 1)⁻¹``, the row
    scales being LibRaw's daylight multipliers ``pre_mul = 1 / row sums``.
    """
    if raw.num_colors != 3 or not bytes(raw.color_desc).startswith(b"RGB"):
        return None
    cam_to_srgb = np.asarray(raw.color_matrix, np.float64)[:, :3]
    if np.allclose(cam_to_srgb, np.eye(3), atol=1e-3) or abs(np.linalg.det(cam_to_srgb)) < 1e-6:
        return None
    wb = [float(v) for v in raw.camera_whitebalance[:3]]
    if not all(math.isfinite(v) and v > 0 for v in wb):
        wb = [float(v) for v in raw.daylight_whitebalance[:3]]  # what LibRaw falls back to
    if not all(math.isfinite(v) and v > 0 for v in wb):
        return None
    xyz_to_cam = np.asarray(raw.rgb_xyz_matrix, np.float64)[:3]
    if np.any(xyz_to_cam):
        cam_rgb = xyz_to_cam @ SRGB_TO_XYZ
        cam_rgb /= cam_rgb.sum(axis=1, keepdims=True)
        if np.allclose(np.linalg.inv(cam_rgb), cam_to_srgb, atol=2e-3):
            return CameraColour(xyz_to_cam, cam_to_srgb, (wb[0], wb[1], wb[2]))
    daylight = np.asarray(raw.daylight_whitebalance[:3], np.float64)
    if not np.all(np.isfinite(daylight) & (daylight > 0)):
        return None
    xyz_to_cam = np.diag(1.0 / daylight) @ np.linalg.inv(cam_to_srgb) @ np.linalg.inv(SRGB_TO_XYZ)
    return CameraColour(xyz_to_cam / np.abs(xyz_to_cam).max(), cam_to_srgb, (wb[0], wb[1], wb[2]))


def exif_from_libraw(other: Any) -> Exif | None:
    """Exposure metadata from LibRaw's ``imgother`` (rawpy's ``raw.other``)."""
    if other is None:
        return None
    stamp = getattr(other, "timestamp", None)
    number = lambda v: _positive(float(v)) if v else None  # noqa: E731
    return Exif(
        exposure_time=number(other.shutter_speed),
        fnumber=number(other.aperture),
        iso=number(other.iso_speed),
        focal_length=number(other.focal_length),
        datetime_original=stamp.strftime("%Y:%m:%d %H:%M:%S") if isinstance(stamp, datetime) else None,
    )


def read_raw_metadata(path: Path, exif: Exif) -> Exif:
    """``exif`` completed from LibRaw's metadata, without decoding any pixels.

    For RAW formats exifread cannot parse (CR3, …); a file LibRaw does not
    open is returned unchanged (reading it for merging will report why).
    """
    import rawpy

    try:
        with _captured_c_stderr(path), rawpy.imread(str(path)) as raw:
            return _merge_exif(exif, exif_from_libraw(raw.other))
    except (rawpy.LibRawError, OSError, ValueError):
        return exif


class _StderrCapture:
    """One redirection of file descriptor 2, shared by concurrent LibRaw and libpng calls.

    LibRaw reports data errors by printing ``<path>: <message>`` on stderr;
    imagecodecs prints libpng's warnings as ``PNG warning: …`` (its errors
    are raised, per call). File
    descriptors are process-wide, so decodes running in parallel threads
    share a single redirection into a temporary file: each takes the lines
    printed since it started that carry its prefix (its path, or ``PNG warning: ``),
    and whatever else was printed meanwhile (another thread's progress
    display, a warning) is passed on to the real stderr when the last of them
    finishes, instead of being lost or mistaken for a decoder's complaint.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._prefixes: list[bytes] = []
        self._sink: Any = None
        self._saved = -1

    def _lines(self, start: int = 0) -> list[bytes]:
        fd = self._sink.fileno()
        if hasattr(os, "pread"):
            # pread leaves the shared file offset, where writers append, alone.
            size = os.fstat(fd).st_size
            return os.pread(fd, max(0, size - start), start).splitlines(keepends=True)
        self._sink.seek(start)  # (Windows) read, then leave the offset at the end
        lines = self._sink.read().splitlines(keepends=True)
        self._sink.seek(0, os.SEEK_END)
        return lines

    @contextlib.contextmanager
    def __call__(self, path: Path | str, *, prefix: bytes | None = None) -> Iterator[list[str]]:
        """Collect the lines printed while the block runs that start with ``prefix``
        (default ``b"<path>: "``, LibRaw's form; libpng's warnings through
        imagecodecs start ``b"PNG warning: "``)."""
        prefix = os.fsencode(f"{path}: ") if prefix is None else prefix
        with self._lock:
            sys.stderr.flush()
            if self._users == 0:
                self._sink = tempfile.TemporaryFile()
                self._saved = os.dup(2)
                os.dup2(self._sink.fileno(), 2)
                self._prefixes = []
            self._users += 1
            self._prefixes.append(prefix)
            start = os.fstat(self._sink.fileno()).st_size
        printed: list[str] = []
        try:
            yield printed
        finally:
            with self._lock:
                sys.stderr.flush()
                self._users -= 1
                last = self._users == 0
                if last:
                    os.dup2(self._saved, 2)  # first, so that nothing more lands in the sink
                mine = self._lines(start)
                printed.extend(t for b in mine if b.startswith(prefix) and (t := b.decode("utf-8", "replace").strip()))
                if last:
                    others = [b for b in self._lines() if not b.startswith(tuple(self._prefixes))]
                    if others:
                        os.write(self._saved, b"".join(others))
                    os.close(self._saved)
                    self._sink.close()


#: ``with _captured_c_stderr(path) as printed:`` collects LibRaw's lines about ``path``.
_captured_c_stderr = _StderrCapture()


class _NotRaw(Exception):
    """LibRaw does not recognise the file as a camera RAW."""


class _DamagedRaw(Exception):
    """LibRaw recognised a camera RAW but could not decode it."""


def _merge_exif(primary: Exif, fallback: Exif | None) -> Exif:
    """``primary`` with its missing fields filled from ``fallback``."""
    if fallback is None:
        return primary
    values = {k: getattr(primary, k) for k in primary.__dataclass_fields__}
    for k, v in values.items():
        if v is None:
            values[k] = getattr(fallback, k)
    return Exif(**values)


def check_shot(path: Path | str) -> None:
    """The cheap checks of :func:`read_frame` (exists, is a file, not empty), without reading."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if path.is_dir():
        raise InputError(f"{path} is a directory; give image files (or use `hdrmerge batch`)")
    if st.st_size == 0:
        raise InputError(f"{path}: empty file")


def read_frames(paths: Sequence[Path | str], *, max_pixels: int = DEFAULT_MAX_PIXELS, jobs: int = 1) -> list[Frame]:
    """Decode several shots at once, one thread each (the decoders release the GIL).

    Each decode may use an equal share of the memory available now, shared
    also with the other ``jobs - 1`` brackets that may be decoding at the
    same time (``batch --jobs``; :func:`hdrmerge.frame_size.decode_share`).
    Errors are raised in input order: the first unusable shot is the one reported.
    """
    memory = decode_share(len(paths), jobs)
    workers = min(len(paths), os.cpu_count() or 1)
    if workers <= 1:
        return [read_frame(p, max_pixels=max_pixels, memory=memory) for p in paths]
    with ThreadPoolExecutor(workers, thread_name_prefix="hdrmerge-read") as pool:
        futures = [pool.submit(read_frame, p, max_pixels=max_pixels, memory=memory) for p in paths]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def read_frame(
    path: Path | str, *, max_pixels: int = DEFAULT_MAX_PIXELS, memory: int | DecodeShare | None = None
) -> Frame:
    """Decode one shot; InputError with a one-line reason if it cannot be used.

    ``max_pixels``: larger frames are refused before decoding. ``memory``:
    bytes the decode may use (None: what is available now).
    """
    path = Path(path)
    check_shot(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    kind = sniff(data[:16])
    exif = read_exif(path)

    if kind in ("jpeg", "png"):
        pixels = _orient(_decode_raster(path, data, kind, max_pixels, memory), exif.orientation)
        return Frame(path, np.ascontiguousarray(pixels), kind, exif)

    # TIFF containers hold both ordinary images and most camera RAW formats
    # (DNG, CR2, NEF, ARW…): LibRaw decides, and refuses ordinary TIFFs.
    try:
        pixels, raw_meta, colour = _decode_raw(path, max_pixels, memory)
        return Frame(path, pixels, "raw", _merge_exif(exif, raw_meta), colour)
    except _NotRaw:
        if kind != "tiff":
            raise InputError(
                f"{path}: not a recognised image (JPEG, PNG, TIFF or camera RAW); check the file"
            ) from None
    except _DamagedRaw as exc:
        # LibRaw recognised a camera RAW but could not decode it: never fall
        # back to reading its TIFF container, which would yield a thumbnail.
        raise InputError(f"{path}: damaged camera RAW file ({_RAW_HINT}: {exc}); copy it again") from None
    pixels = _orient(_decode_raster(path, data, "tiff", max_pixels, memory), exif.orientation)
    return Frame(path, np.ascontiguousarray(pixels), "tiff", exif)
