"""Camera response: how a file's code values relate to scene-linear light.

The network was trained on gamma-2.2 shots (spec section 1). Real files are
sRGB, camera JPEGs carry a tone curve on top, TIFFs from raw converters and
machine-vision PNGs are often linear. This module finds each bracket's
*inverse response* ``g`` (code value in [0, 1] → relative linear value in
[0, 1], ``g(1) = 1``, one curve per channel) and rewrites the frames into the
network's domain: ``linear ** (1/2.2)`` as 16-bit codes, so everything
downstream (exposures, tiling, the network) sees what it was trained on.

Where ``g`` comes from (``Response.source``):

* ``user``: a built-in curve named with ``--response gamma2.2|srgb|linear``;
* ``file``: ``--response FILE``, a JSON file written by ``hdrmerge calibrate``
  (format in docs/radiometry.md, checked by :func:`load_response_file`);
* ``metadata``: ``--response auto`` and the files say it: an ICC profile's
  tone curves (rTRC/gTRC/bTRC), a PNG's sRGB or gAMA chunk, a TIFF's
  LinearRaw photometric tag. Camera JPEGs are the exception: the camera's
  tone curve sits on top of what they state, so there the metadata is only
  the prior of the pixel estimate, as EXIF ColorSpace sRGB always is (tools
  write it by default);
* ``estimated``: ``auto`` and the pixels decided (:func:`estimate`);
* ``fallback``: ``auto`` but too little evidence: gamma 2.2, with a warning;
* ``exact``: ``--exact``, the network authors' pipeline (gamma 2.2);
* ``raw``: camera RAW, decoded linearly by LibRaw (``--response`` ignored).

The estimate matches cumulative histograms of the shots (comparametric
matching, which moving objects barely disturb; each pixel counts by how flat
its neighbourhood is in both shots, as a hand-held shot's resampling blur
changes only textured pixels), adds per pair of shots one
clipping anchor (the darker shot's code where the brighter one starts to
clip has the linear value g(clip code)/k: the only match that reaches a camera curve's
shoulder, which the brighter shot clips), then fits a smooth monotone
curve: its local gamma ``d log g / d log x`` is a Bernstein polynomial with
non-negative coefficients (so ``g`` is monotone by construction), pulled
towards a prior curve (sRGB for camera JPEGs and files tagged sRGB, else
gamma 2.2) where the matches say little; below its lowest match the curve
follows a camera-like toe (:func:`fitted_inverse`). Exposure ratios from ``--ev`` or EXIF are used as
known; without them a power law of any exponent fits equally well, so only
gamma 2.2 and sRGB compete, each with its own estimated ratios. The built-in
curves compete with the fitted one and win unless it fits clearly better.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from hdrmerge.errors import InputError
from hdrmerge.reading import GAMMA, Frame

#: Names accepted by ``--response`` besides ``auto`` and a file path.
BUILTIN = ("gamma2.2", "srgb", "linear")
FORMAT = "hdrmerge-response"
VERSION = 1
CHANNELS = ("r", "g", "b")


# --- curves ---------------------------------------------------------------


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 decoding: sRGB code value in [0, 1] → linear in [0, 1]."""
    x = np.asarray(x, np.float64)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(y: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 encoding: linear in [0, 1] → sRGB code value in [0, 1]."""
    y = np.asarray(y, np.float64)
    return np.where(y <= 0.0031308, 12.92 * y, 1.055 * np.maximum(y, 0.0) ** (1.0 / 2.4) - 0.055)


def builtin_curve(name: str, x: np.ndarray) -> np.ndarray:
    """The inverse response ``g(x)`` of a built-in curve (x, g in [0, 1])."""
    x = np.clip(np.asarray(x, np.float64), 0.0, 1.0)
    if name == "gamma2.2":
        return x**GAMMA
    if name == "srgb":
        return srgb_to_linear(x)
    if name == "linear":
        return x
    raise ValueError(name)


@dataclass(frozen=True)
class Response:
    """An inverse camera response and where it came from.

    ``inverse``: 3×K float64 (R, G, B), the relative linear value of code value
    ``k / (K-1)``, non-decreasing, 1.0 at the top; values between knots are
    linearly interpolated. ``name``: ``gamma2.2``, ``srgb``, ``linear`` for a
    built-in curve, else ``estimated``, ``icc`` or the file's name.
    ``bit_depth``: 8 or 16 for a calibrated file, else None (any depth).
    """

    name: str
    source: str
    inverse: np.ndarray
    detail: str = ""
    bit_depth: int | None = None
    warnings: tuple[str, ...] = ()

    @property
    def is_network_domain(self) -> bool:
        """Whether frames are already what the network expects (gamma 2.2): nothing to convert."""
        return self.name == "gamma2.2" or self.source == "raw"

    def linear(self, x: np.ndarray, channel: int) -> np.ndarray:
        """``g(x)`` of one channel at code values ``x`` in [0, 1]."""
        knots = np.linspace(0.0, 1.0, self.inverse.shape[1])
        return np.interp(np.clip(x, 0.0, 1.0), knots, self.inverse[channel])

    def describe(self) -> dict[str, Any]:
        """For --json: name, source, detail, and g at 17 code values per channel."""
        x = np.linspace(0.0, 1.0, 17)
        return {
            "name": self.name,
            "source": self.source,
            "detail": self.detail,
            "bit_depth": self.bit_depth,
            "samples": {c: [round(float(v), 6) for v in self.linear(x, i)] for i, c in enumerate(CHANNELS)},
        }

    def label(self) -> str:
        """One line for headers: ``srgb (metadata: ICC profile "sRGB IEC61966-2.1")``."""
        return f"{self.name} ({self.source}{': ' + self.detail if self.detail else ''})"


def builtin(name: str, source: str = "user", detail: str = "", knots: int = 1024) -> Response:
    """A built-in curve as a :class:`Response`."""
    x = np.linspace(0.0, 1.0, knots)
    return Response(name, source, np.stack([builtin_curve(name, x)] * 3), detail)


def network_lut(response: Response, bits: int) -> np.ndarray:
    """3×2**bits uint16 table: code value → 16-bit gamma-2.2 code of its linear value."""
    n = 1 << bits
    x = np.arange(n, dtype=np.float64) / (n - 1)
    lin = np.stack([response.linear(x, c) for c in range(3)])
    return (np.clip(lin, 0.0, 1.0) ** (1.0 / GAMMA) * 65535.0 + 0.5).astype(np.uint16)


def to_network_domain(frame: Frame, response: Response) -> Frame:
    """``frame`` with its pixels linearised by ``response`` and re-encoded with gamma 2.2.

    8- and 16-bit frames both become 16-bit (an 8-bit code of a steep curve
    needs more than 8 bits once re-encoded). Gamma-2.2 responses and RAW
    frames are returned unchanged.
    """
    if response.is_network_domain or frame.kind == "raw":
        return frame
    bits = 8 if frame.pixels.dtype == np.uint8 else 16
    lut = network_lut(response, bits)
    out = np.empty(frame.pixels.shape, np.uint16)
    if bits == 8:
        import cv2

        # OpenCV's LUT runs in parallel; a 3-channel table maps each channel with its own curve.
        cv2.LUT(frame.pixels, np.ascontiguousarray(lut.T.reshape(256, 1, 3)), dst=out)
    else:
        for c in range(3):
            np.take(lut[c], frame.pixels[..., c], out=out[..., c])
    return replace(frame, pixels=out)


# --- response files ---------------------------------------------------------


def _bad(path: Path, what: str) -> InputError:
    return InputError(f"--response {path}: {what}")


def load_response_file(path: Path) -> Response:
    """Read and check a response file (docs/radiometry.md); InputError saying what is wrong."""
    hint = "write one with `hdrmerge calibrate`"
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise _bad(path, f"no such file; give auto, gamma2.2, srgb, linear or a response file ({hint})") from None
    except IsADirectoryError:
        raise _bad(path, f"is a directory; give a response file ({hint})") from None
    except OSError as exc:
        raise _bad(path, f"cannot read ({exc.strerror}); check its permissions") from None
    except UnicodeDecodeError:
        raise _bad(path, f"not a text file; give a JSON response file ({hint})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _bad(path, f"malformed JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); {hint}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise _bad(path, f'not an hdrmerge response file (no "format": "{FORMAT}"); {hint}')
    version = data.get("version")
    if version != VERSION:
        raise _bad(path, f"version {version!r} is not supported (this hdrmerge reads version {VERSION}); recalibrate with `hdrmerge calibrate`")
    depth = data.get("bit_depth")
    if depth not in (8, 16) or isinstance(depth, bool):
        raise _bad(path, f"bit_depth {depth!r}: must be 8 or 16")
    inverse = data.get("inverse")
    if not isinstance(inverse, dict) or any(c not in inverse for c in CHANNELS):
        raise _bad(path, 'needs "inverse" with the curves "r", "g" and "b"')
    curves = []
    for c in CHANNELS:
        values = inverse[c]
        if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise _bad(path, f"inverse.{c} must be a list of numbers")
        curves.append(np.asarray(values, np.float64))
    lengths = [len(v) for v in curves]
    if len(set(lengths)) != 1:
        raise _bad(path, "channels have different lengths (" + ", ".join(f"{c} {n}" for c, n in zip(CHANNELS, lengths)) + "); each needs the same knots")
    k = lengths[0]
    if depth == 8 and k != 256:
        raise _bad(path, f"an 8-bit response needs 256 values per channel, not {k}")
    if depth == 16 and not 16 <= k <= 65536:
        raise _bad(path, f"a 16-bit response needs 16 to 65536 values per channel, not {k}")
    for c, v in zip(CHANNELS, curves):
        bad = np.flatnonzero(~np.isfinite(v))
        if bad.size:
            raise _bad(path, f"inverse.{c} has a non-finite value ({v[bad[0]]}) at index {bad[0]}")
        out = np.flatnonzero((v < 0.0) | (v > 1.0))
        if out.size:
            raise _bad(path, f"inverse.{c}[{out[0]}] = {v[out[0]]:g} is outside [0, 1]")
        drop = np.flatnonzero(np.diff(v) < 0.0)
        if drop.size:
            i = int(drop[0])
            raise _bad(path, f"inverse.{c} is not monotone: it falls from {v[i]:g} to {v[i + 1]:g} at index {i + 1}")
        if v[-1] != 1.0:
            raise _bad(path, f"inverse.{c} ends at {v[-1]:g}; it must be normalised to 1.0 at the top code value")
    detail = str(data.get("camera") or "").strip()
    return Response(path.name, "file", np.stack(curves), detail=detail or str(path), bit_depth=depth)


def response_document(
    response: Response,
    bit_depth: int,
    *,
    camera: str | None,
    description: str,
    knots: int | None = None,
    source: str = "calibrated",
) -> dict[str, Any]:
    """The version-1 JSON document of ``response`` (format in docs/radiometry.md).

    ``knots`` defaults to 256 for 8 bit and 1024 for 16 bit. Each curve is
    made non-decreasing and normalised to 1.0 at the top code value, as the
    format requires, and written with 9 significant digits, so that the tiny
    values near black (about 1e-8 for gamma 2.2 at a 16-bit code of 1) survive.
    """
    k = knots or (256 if bit_depth == 8 else 1024)
    x = np.linspace(0.0, 1.0, k)
    doc: dict[str, Any] = {"format": FORMAT, "version": VERSION, "bit_depth": bit_depth}
    if camera:
        doc["camera"] = camera
    doc["source"] = source
    doc["description"] = description
    curves = {}
    for i, c in enumerate(CHANNELS):
        v = np.maximum.accumulate(np.clip(response.linear(x, i), 0.0, 1.0))
        v = v / v[-1] if v[-1] > 0 else x
        values = [float(f"{t:.9g}") for t in v]
        values[-1] = 1.0
        curves[c] = values
    doc["inverse"] = curves
    return doc


# --- choosing on the command line --------------------------------------------


@dataclass(frozen=True)
class ResponseChoice:
    """What ``--response`` / ``--exact`` asked for: ``auto``, a built-in, or a loaded file."""

    mode: str = "auto"  # auto | builtin | file | exact
    fixed: Response | None = None

    @property
    def text(self) -> str:
        return "auto" if self.fixed is None else self.fixed.name


def parse_response_option(text: str | None, exact: bool = False) -> ResponseChoice:
    """``--response`` and ``--exact`` → a choice; a file is read and checked now."""
    value = (text or "auto").strip()
    if exact:
        if value.lower() not in ("auto", "gamma2.2"):
            raise InputError(f"--exact runs the network authors' pipeline with gamma 2.2; it cannot be combined with --response {value}")
        return ResponseChoice("exact", builtin("gamma2.2", "exact", "the network authors' pipeline (--exact)"))
    low = value.lower()
    if low == "auto":
        return ResponseChoice()
    if low in BUILTIN:
        return ResponseChoice("builtin", builtin(low, "user", "--response " + low))
    path = Path(value)
    if path.suffix.lower() != ".json" and not path.exists():
        raise InputError(f"--response {value}: give auto, gamma2.2, srgb, linear or a response file (.json) written by `hdrmerge calibrate`")
    return ResponseChoice("file", load_response_file(path))


# --- metadata ---------------------------------------------------------------


def _icc_curve(profile: bytes, offset: int, x: np.ndarray) -> np.ndarray | None:
    """An ICC TRC tag (``curv`` or ``para``) evaluated at ``x``; None if unreadable."""
    kind = profile[offset : offset + 4]
    if kind == b"curv":
        (n,) = struct.unpack_from(">I", profile, offset + 8)
        if n == 0:
            return x.copy()
        if n == 1:
            (g,) = struct.unpack_from(">H", profile, offset + 12)
            return x ** (g / 256.0)
        if offset + 12 + 2 * n > len(profile):
            return None
        table = np.frombuffer(profile, ">u2", n, offset + 12).astype(np.float64) / 65535.0
        return np.interp(x, np.linspace(0.0, 1.0, n), table)
    if kind == b"para":
        (fn,) = struct.unpack_from(">H", profile, offset + 8)
        count = {0: 1, 1: 3, 2: 4, 3: 5, 4: 7}.get(fn)
        if count is None or offset + 12 + 4 * count > len(profile):
            return None
        p = [v / 65536.0 for v in struct.unpack_from(f">{count}i", profile, offset + 12)]
        g, a, b, c, d, e, f = (p + [0.0] * 7)[:7]
        with np.errstate(invalid="ignore", divide="ignore"):
            if fn == 0:
                return x**g
            if fn == 1:
                return np.where(x >= -b / a, np.maximum(a * x + b, 0) ** g, 0.0)
            if fn == 2:
                return np.where(x >= -b / a, np.maximum(a * x + b, 0) ** g + c, c)
            if fn == 3:
                return np.where(x >= d, np.maximum(a * x + b, 0) ** g, c * x)
            return np.where(x >= d, np.maximum(a * x + b, 0) ** g + e, c * x + f)
    return None


def _icc_description(profile: bytes, tags: dict[bytes, tuple[int, int]]) -> str:
    """The profile's ``desc`` text (v2 ``desc`` or v4 ``mluc``), or ''."""
    if b"desc" not in tags:
        return ""
    off, size = tags[b"desc"]
    body = profile[off : off + size]
    try:
        if body[:4] == b"desc":
            (n,) = struct.unpack_from(">I", body, 8)
            return body[12 : 12 + n].split(b"\0")[0].decode("latin-1").strip()
        if body[:4] == b"mluc":
            (count, rec) = struct.unpack_from(">II", body, 8)
            if count:
                length, start = struct.unpack_from(">II", body, 16 + 4)
                return body[start : start + length].decode("utf-16-be", "replace").strip()
    except (struct.error, UnicodeDecodeError):
        pass
    return ""


def icc_response(profile: bytes, knots: int = 1024) -> Response | None:
    """The inverse response an RGB or grey ICC profile declares, or None.

    Reads the tag table directly (ICC.1 section 7.3): ``rTRC``/``gTRC``/``bTRC``
    (``kTRC`` for grey), each a ``curv`` table or gamma, or a ``para``
    parametric curve. A curve that equals a built-in one to 1/1000 takes its name.
    """
    try:
        if len(profile) < 132 or profile[36:40] != b"acsp":
            return None
        (n,) = struct.unpack_from(">I", profile, 128)
        tags: dict[bytes, tuple[int, int]] = {}
        for i in range(min(n, 200)):
            sig, off, size = struct.unpack_from(">4sII", profile, 132 + 12 * i)
            tags[sig] = (off, size)
        x = np.linspace(0.0, 1.0, knots)
        names = (b"rTRC", b"gTRC", b"bTRC") if profile[16:20] == b"RGB " else (b"kTRC",) * 3
        curves = []
        for sig in names:
            if sig not in tags:
                return None
            curve = _icc_curve(profile, tags[sig][0], x)
            if curve is None or not np.all(np.isfinite(curve)):
                return None
            curves.append(np.clip(curve, 0.0, 1.0))
    except struct.error:
        return None
    inverse = np.stack(curves)
    if inverse[:, -1].min() <= 0 or np.any(np.diff(inverse, axis=1) < -1e-6):
        return None
    inverse = np.maximum.accumulate(inverse / inverse[:, -1:], axis=1)
    desc = _icc_description(profile, tags)
    detail = f'ICC profile "{desc}"' if desc else "ICC profile"
    for name in BUILTIN:
        if np.abs(inverse - builtin_curve(name, x)).max() < 1e-3:
            return Response(name, "metadata", builtin_curve(name, np.stack([x] * 3)), detail)
    return Response("icc", "metadata", inverse, detail)


@dataclass(frozen=True)
class Evidence:
    """What one file's metadata says about its encoding.

    ``response``: a curve the metadata states (None if it states none).
    ``camera_jpeg``: made by a camera's JPEG engine, whose tone curve the
    metadata does not describe: the pixels must decide, ``response`` is a prior.
    """

    response: Response | None
    camera_jpeg: bool
    prior: str | None = None


def read_evidence(frame: Frame) -> Evidence:
    """The encoding a file's metadata states: ICC profile, PNG chunks, EXIF ColorSpace, TIFF tags."""
    from hdrmerge.frame_size import pillow_open

    camera = frame.kind == "jpeg" and frame.exif.make is not None
    if frame.kind == "raw":
        return Evidence(None, False)
    try:
        with pillow_open(frame.path) as img:
            info = dict(img.info)
            if frame.kind == "png":
                # Pillow's getexif() on a PNG without an eXIf chunk before the
                # image data decodes every pixel to look for one after it; only
                # the EXIF seen while reading the header is used.
                from PIL import Image

                exif = Image.Exif()
                if info.get("exif"):
                    exif.load(info["exif"])
            else:
                exif = img.getexif()
            photometric = img.tag_v2.get(262) if hasattr(img, "tag_v2") else None
    except Exception:  # Pillow cannot parse it: metadata says nothing
        return Evidence(None, camera)
    icc = info.get("icc_profile")
    if icc:
        found = icc_response(icc)
        if found is not None:
            return Evidence(found, camera)
    if frame.kind == "png":
        if "srgb" in info:
            return Evidence(builtin("srgb", "metadata", "PNG sRGB chunk"), camera)
        gamma = info.get("gamma")
        if isinstance(gamma, (int, float)) and gamma > 0:
            exponent = 1.0 / float(gamma)
            for name, value in (("linear", 1.0), ("gamma2.2", GAMMA)):
                if abs(exponent - value) < 0.02:
                    return Evidence(builtin(name, "metadata", f"PNG gAMA chunk ({gamma:g})"), camera)
            x = np.linspace(0.0, 1.0, 1024)
            return Evidence(Response(f"gamma{exponent:.3g}", "metadata", np.stack([x**exponent] * 3), f"PNG gAMA chunk ({gamma:g})"), camera)
    if photometric == 34892:  # LinearRaw (DNG)
        return Evidence(builtin("linear", "metadata", "TIFF photometric LinearRaw"), camera)
    try:
        color_space = exif.get_ifd(0x8769).get(0xA001)
    except Exception:
        color_space = None
    # EXIF ColorSpace sRGB is only a prior: cameras write it under their tone
    # curve, and tools write it by default (the Kalantari 2017 shots, gamma 2.2
    # by their pixels, carry it).
    return Evidence(None, camera, prior="srgb" if color_space == 1 else None)


# --- estimation from the pixels ----------------------------------------------

#: Longer side of the subsample the estimate reads (every k-th pixel).
SAMPLE_SIDE = 1024
#: Degree of the Bernstein polynomial P in g = P(b(x)).
DEGREE = 10
#: Weight of the rows that keep the local gamma smooth (second differences of its coefficients).
SMOOTHING = 0.01
#: Code values outside this range are too noisy or too clipped to compare.
_USABLE = (0.01, 0.99)
#: Codes at or above this (share of the range) count as near white…
NEAR_WHITE = 0.95
#: …and this many times their share of the brighter shot's top ranks is not matched
#: (on single synthetic JPEG brackets: 0 leaves errors up to 0.65 in log, 1.5 loses
#: the shoulder of good brackets, 1 is the best compromise).
WHITE_MARGIN = 1.0
#: Points whose darker code value is below this linear value (about 6.5 stops
#: below white) are left out: sensor noise there biases histogram matching.
LIN_FLOOR = 0.012
#: Under more sensor noise the floor rises to this many times the darker shot's noise (RMS, linear,
#: measured near the floor): noise spreads the darker shot's histogram more than the brighter
#: one's, which bends the matched curve at its foot (on 16-bit gamma-2.2 TIFF brackets with synth's
#: ``--noise 0.01``, a floor of 0.03 keeps gamma 2.2 on all 12 scenes, 0.012 loses 5).
NOISE_SIGMAS = 3.0
#: The noise is read from this quantile of the adjacent pixels' absolute differences (texture
#: widens their distribution's upper part far more than its lower part); for Gaussian noise of
#: RMS s the difference has RMS s·√2 and this quantile of its size is s·√2·NOISE_QUANTILE_Z.
#: (On the radiometry benchmark's 99 brackets 0.25 and the median choose alike; 0.1 is too
#: coarse on 8-bit files, whose differences are mostly 0 or 1 code.)
NOISE_QUANTILE = 0.25
NOISE_QUANTILE_Z = 0.31864
#: Neighbouring pixels sampled per pair of shots and channel to measure that noise.
NOISE_SAMPLES = 8192
_QUANTILES = np.linspace(0.002, 0.998, 250)
#: An 8-bit JPEG pixel counts as clipped at white from code 255 − this: compression smears
#: a clipped area's edge a few codes down (on synthetic JPEG brackets the share of codes
#: ≥ 252 is within 0.03 of the true clipped share, that of 255 alone up to 0.12 under).
JPEG_CLIP_CODES = 3
#: A clipping anchor needs the brighter shot clipped on this share of pixels, and unclipped on as much.
ANCHOR_SHARE = 0.005
#: Weight of each clipping anchor in the fit, against 1 for each histogram match.
ANCHOR_WEIGHT = 5.0
#: Histograms count each pixel by how flat its neighbourhood is in both shots of a pair
#: (:func:`_flatness_weight`): FLAT_WINDOW² pixels, local range (code units) at which a pixel
#: counts half. A hand-held shift resamples a shot (bilinear in synth, the lens and the sensor's
#: motion in a camera), which smooths it; smoothing moves a shot's values only where the scene
#: has texture or edges, and there it narrows the shot's histogram against the other shot's.
#: On the radiometry benchmark's MtTamWest the true curve's median residual per pair was +0.04
#: (natural log; about 6% in the exposure ratio) with every pixel counted alike, and a free curve
#: absorbed it; weighted, it is within ±0.01 (window 3 or 7, or a range of 0.05-0.2, do about as well).
FLAT_WINDOW = 5
FLAT_RANGE = 0.1
#: Fewer matched points than this per channel (all pairs): too weak.
MIN_POINTS = 40
#: The matched codes of some pair (in its darker or its brighter shot) must span at least this much of the code range.
MIN_SPAN = 0.1


def _histograms(sub: np.ndarray, weight: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """3×B pixel counts of a shot's subsample (h×w×3 uint8 or uint16, contiguous; B = 256, or 1024
    for 16 bit) and each bin's width in code units.

    ``weight``: optional h×w float weights in [0, 1] of the subsample's pixels (each pixel counts
    its weight instead of 1).
    """
    sub = sub.reshape(-1, 3)
    w = None if weight is None else weight.reshape(-1)
    if sub.dtype == np.uint8:
        return np.stack([np.bincount(sub[:, c], w, minlength=256) for c in range(3)]).astype(np.float64), 1.0 / 255.0
    coarse = sub >> 6
    return np.stack([np.bincount(coarse[:, c], w, minlength=1024) for c in range(3)]).astype(np.float64), 64.0 / 65535.0


def _local_range(sub: np.ndarray) -> np.ndarray:
    """h×w float32: the largest over channels of max − min over each pixel's
    :data:`FLAT_WINDOW`² neighbourhood, in code units (0: flat, up to 1).

    ``sub``: h×w×3 uint8 or uint16, a shot's subsample (contiguous).
    """
    import cv2

    kernel = np.ones((FLAT_WINDOW, FLAT_WINDOW), np.uint8)
    spread = cv2.dilate(sub, kernel) - cv2.erode(sub, kernel)  # in codes, never negative
    # Channel by channel: numpy's max over a last axis of 3 is slow (0.2 s on 24 MP's subsample).
    widest = np.maximum(np.maximum(spread[..., 0], spread[..., 1]), spread[..., 2])
    return widest.astype(np.float32) * np.float32(1.0 / (255.0 if sub.dtype == np.uint8 else 65535.0))


def _flatness_weight(range_a: np.ndarray, range_b: np.ndarray) -> np.ndarray:
    """h×w weights in (0, 1] of a pair of shots' pixels: ``1 / (1 + (r / FLAT_RANGE)²)`` of the
    larger of their local ranges ``r`` (:func:`_local_range`), one weight for both shots."""
    r = np.maximum(range_a, range_b) * np.float32(1.0 / FLAT_RANGE)
    return 1.0 / (1.0 + r.astype(np.float64) ** 2)


def _quantiles(hist: np.ndarray, width: float, q: np.ndarray) -> np.ndarray:
    """Code values (in [0, 1]) at cumulative fractions ``q``, each bin's pixels spread over the bin."""
    cdf = np.concatenate(([0.0], np.cumsum(hist))) / hist.sum()
    bins = hist.size
    if width == 1.0 / 255.0:
        edges = (np.arange(bins + 1) - 0.5) * width  # code k covers [k-0.5, k+0.5]
    else:
        edges = np.arange(bins + 1) * width
    # Keep only the edges of non-empty bins, so no mass is spread over empty ones.
    full = hist > 0
    keep = np.concatenate((full, [False])) | np.concatenate(([False], full))
    return np.clip(np.interp(q, cdf[keep], edges[keep]), 0.0, 1.0)


def clip_code(dtype: np.dtype, jpeg: bool) -> float:
    """The brighter shot's code value (in [0, 1]) that a clipping anchor matches: in a 16-bit
    file its top code's lower edge (white, to 1e-5); in a JPEG, which :func:`_clip_threshold`
    counts as clipped from code 255 − :data:`JPEG_CLIP_CODES`, the middle of the codes so
    counted (253.25/255).

    The darker shot's threshold marks where the brighter shot's pixels go from codes
    below 252 to codes at or above it, but compression and noise move a JPEG's top codes
    by a code or two and a camera curve's shoulder is flat there, so the level that
    threshold stands for lies somewhere in [251.5, 255]. Under the true curves, the
    anchors' median residual (natural log) on the radiometry benchmark's six camera JPEG
    sets and on the tests' six camera-mild JPEG brackets at 400 px (the pooled
    calibration's) is -0.001 to -0.031 and -0.046 with the interval's lower edge,
    +0.016 to +0.083 and +0.001 with white, -0.008 to +0.038 and -0.022 with its middle.
    Pooled, the six brackets' curve is 0.0143 off (mean log, codes 0.1-0.98) with the
    lower edge, 0.0046 with the middle.
    """
    top = 255 if dtype == np.uint8 else 65535
    if jpeg:
        return (top - JPEG_CLIP_CODES - 0.5 + top) / (2.0 * top)
    return (top - 0.5) / top


def _clip_threshold(darker: np.ndarray, brighter: np.ndarray, jpeg: bool, weight: np.ndarray | None = None) -> tuple[float, float]:
    """Pixel by pixel: the darker shot's code above which the brighter shot is clipped, and its share.

    ``darker``, ``brighter``: one channel of the same subsample of two shots
    (uint8 or uint16). The threshold (in [0, 1]) is the one that
    misclassifies fewest pixels as clipped or not in the brighter shot
    (computed on a 256- or 1024-bin histogram of the darker codes), so moved
    pixels on both sides of a clipped area's edge cancel out. ``weight``:
    optional h×w weights in [0, 1], how much each pixel counts.
    """
    top = 255 if brighter.dtype == np.uint8 else 65535
    clip = brighter >= (top - JPEG_CLIP_CODES if jpeg else top)
    codes = darker if darker.dtype == np.uint8 else darker >> 6
    bins = 256 if darker.dtype == np.uint8 else 1024
    w_above = None if weight is None else weight[clip]
    w_below = None if weight is None else weight[~clip]
    above = np.bincount(codes[clip], w_above, minlength=bins).astype(np.float64)
    below = np.bincount(codes[~clip], w_below, minlength=bins).astype(np.float64)
    # Misclassified with the threshold at the lower edge of bin i: clipped below it, unclipped at or above it.
    wrong = np.concatenate(([0.0], np.cumsum(above))) + np.concatenate((np.cumsum(below[::-1])[::-1], [0.0]))
    best = np.flatnonzero(wrong == wrong.min())
    edge = 0.5 * (best[0] + best[-1])
    u = (edge - 0.5) / 255.0 if bins == 256 else edge * 64.0 / 65535.0
    return float(np.clip(u, 0.0, 1.0)), float(clip.mean()) if clip.size else 0.0


#: Largest shift (subsample pixels) :func:`_pair_shift` corrects before a 16-bit anchor's threshold.
ANCHOR_MAX_SHIFT = 4


def _pair_shift(darker: np.ndarray, brighter: np.ndarray) -> tuple[int, int]:
    """The whole-pixel translation (dx, dy) that best aligns ``brighter`` with ``darker`` (one
    channel of two shots' subsample), by phase correlation; (0, 0) beyond :data:`ANCHOR_MAX_SHIFT`.

    Only the pixel-by-pixel clipping anchors need it (the histograms do not
    depend on where a pixel is). Phase correlation compares the structure of
    the two images, not their levels, so the exposure difference and the
    brighter shot's clipped areas hardly matter.
    """
    import cv2

    top = 255.0 if darker.dtype == np.uint8 else 65535.0
    a = darker.astype(np.float32) / top
    b = brighter.astype(np.float32) / top
    (dx, dy), _ = cv2.phaseCorrelate(b, a, cv2.createHanningWindow(a.shape[::-1], cv2.CV_32F))
    ix, iy = int(round(dx)), int(round(dy))
    return (ix, iy) if max(abs(ix), abs(iy)) < ANCHOR_MAX_SHIFT else (0, 0)


def _aligned(darker: np.ndarray, brighter: np.ndarray, shift: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The overlapping parts of two h×w images, ``brighter`` moved by ``shift`` (a border of
    :data:`ANCHOR_MAX_SHIFT` pixels left out, so every shift within it keeps the same size)."""
    ix, iy = shift
    m = ANCHOR_MAX_SHIFT
    h, w = darker.shape[:2]
    return (np.ascontiguousarray(darker[m : h - m, m : w - m]),
            np.ascontiguousarray(brighter[m - iy : h - m - iy, m - ix : w - m - ix]))


#: Bins of the darker half of the code range in which :func:`_code_noise` measures the noise.
NOISE_BINS = 64


def _code_noise(frame: Frame, step: int) -> list[np.ndarray]:
    """Per channel, a 3×:data:`NOISE_BINS` table of the noise in code values, by code level.

    Rows: each bin's centre code (in [0, 0.5]), the noise's RMS in code
    units from the sizes of differences between horizontally adjacent
    pixels (their :data:`NOISE_QUANTILE` quantile over
    ``√2·NOISE_QUANTILE_Z``), and its number of pixel pairs. Up to
    :data:`NOISE_SAMPLES` pixels of the subsample whose pair's mean code is in the darker half of
    the range (where any usable curve puts the linear values near the
    floor), evenly thinned. Measured once in code values, so that
    :meth:`Matches.floors` converts it into any curve's linear values cheaply.
    """
    pix = frame.pixels
    top = 255.0 if pix.dtype == np.uint8 else 65535.0
    left = pix[::step, 0:-1:step]
    right = pix[::step, 1::step]
    n = min(left.shape[1], right.shape[1])
    out = []
    for c in range(3):
        # Thin a regular grid first (cheap on 24 MP), then keep the dark pairs.
        a0, b0 = left[:, :n, c], right[:, :n, c]
        thin = max(1, int(math.sqrt(a0.size / (8 * NOISE_SAMPLES))))
        a = a0[::thin, ::thin].ravel().astype(np.float64) / top
        b = b0[::thin, ::thin].ravel().astype(np.float64) / top
        mean = 0.5 * (a + b)
        dark = np.flatnonzero(mean < 0.5)
        dark = dark[:: max(1, dark.size // NOISE_SAMPLES)][:NOISE_SAMPLES]
        bins = np.minimum((mean[dark] * 2 * NOISE_BINS).astype(np.int64), NOISE_BINS - 1)
        diff = np.abs(a[dark] - b[dark])
        table = np.zeros((3, NOISE_BINS))
        table[0] = (np.arange(NOISE_BINS) + 0.5) / (2 * NOISE_BINS)
        order = np.argsort(bins, kind="stable")
        starts = np.searchsorted(bins[order], np.arange(NOISE_BINS + 1))
        for k in range(NOISE_BINS):
            chunk = diff[order[starts[k] : starts[k + 1]]]
            if chunk.size:
                table[1, k] = float(np.quantile(chunk, NOISE_QUANTILE)) / (NOISE_QUANTILE_Z * math.sqrt(2.0))
                table[2, k] = chunk.size
        out.append(table)
    return out


@dataclass
class Matches:
    """Comparametric pairs: code ``u`` in the darker shot ↔ ``v`` in the brighter one.

    For each channel, arrays ``u``, ``v``, ``pair`` (index of the adjacent pair
    of shots, darker first). ``log_ratio``: log of each pair's exposure ratio
    when known (from --ev or EXIF), else None. ``pair_weight``: how much
    each pair counts in a fit (None: all alike). ``point_weight``: per
    channel, how much each point counts (None: 1 each; clipping anchors
    count :data:`ANCHOR_WEIGHT`). ``anchor``: per channel, which points are
    clipping anchors (None: none).
    """

    u: list[np.ndarray]
    v: list[np.ndarray]
    pair: list[np.ndarray]
    log_ratio: np.ndarray | None
    pairs: int
    pair_weight: np.ndarray | None = None
    point_weight: list[np.ndarray] | None = None
    noise: list[list[np.ndarray]] | None = None
    anchor: list[np.ndarray] | None = None

    def weights(self) -> np.ndarray:
        return self.pair_weight if self.pair_weight is not None else np.ones(self.pairs)

    def point_weights(self, c: int) -> np.ndarray:
        return self.point_weight[c] if self.point_weight is not None else np.ones(len(self.u[c]))

    def anchors(self, c: int) -> np.ndarray:
        """Which points of channel ``c`` are clipping anchors (bool), not histogram matches."""
        return self.anchor[c] if self.anchor is not None else np.zeros(len(self.u[c]), bool)

    def extend(self, other: Matches) -> Matches:
        """Two brackets' matches pooled (for calibration); pair indices kept apart."""
        known = self.log_ratio is not None and other.log_ratio is not None
        return Matches(
            [np.concatenate((a, b)) for a, b in zip(self.u, other.u)],
            [np.concatenate((a, b)) for a, b in zip(self.v, other.v)],
            [np.concatenate((a, b + self.pairs)) for a, b in zip(self.pair, other.pair)],
            np.concatenate((self.log_ratio, other.log_ratio)) if known else None,  # type: ignore[arg-type]
            self.pairs + other.pairs,
            np.concatenate((self.weights(), other.weights())),
            [np.concatenate((self.point_weights(c), other.point_weights(c))) for c in range(3)],
            self.noise + other.noise if self.noise is not None and other.noise is not None else None,
            [np.concatenate((self.anchors(c), other.anchors(c))) for c in range(3)],
        )

    def floors(self, curve: Any) -> np.ndarray:
        """pairs×3 lowest linear value ``curve(u, c)`` of the darker shot worth matching.

        :data:`LIN_FLOOR`, raised to :data:`NOISE_SIGMAS` times the darker
        shot's noise where that is larger. The noise is the code-value noise
        of :func:`_code_noise` times the curve's slope, the count-weighted
        lower quartile over the code bins whose linear value lies between
        the floor and 8 times it (texture adds to some bins' figures; the
        median over bins lifted the floor on foliage and cost a camera-curve
        set 1.2 dB); fewer than 200 pixel pairs there: not measured.
        """
        out = np.full((self.pairs, 3), LIN_FLOOR)
        if self.noise is None:
            return out
        h = 0.5 / NOISE_BINS
        for p, per_channel in enumerate(self.noise):
            for c, (centre, sigma_code, count) in enumerate(per_channel):
                g, hi, lo = np.split(curve(np.concatenate((centre, centre + 0.5 * h, centre - 0.5 * h)), c), 3)
                slope = (hi - lo) / h
                sel = (g >= LIN_FLOOR) & (g <= 8.0 * LIN_FLOOR) & (count > 0)
                if count[sel].sum() >= 200:
                    sigma = slope[sel] * sigma_code[sel]
                    order = np.argsort(sigma)
                    cum = np.cumsum(count[sel][order])
                    low = float(sigma[order][np.searchsorted(cum, 0.25 * cum[-1])])
                    out[p, c] = max(LIN_FLOOR, NOISE_SIGMAS * low)
        return out

    def above(self, curve: Any) -> Matches:
        """Only the points whose darker value ``curve(u, c)`` is at least its pair's floor (:meth:`floors`)."""
        floor = self.floors(curve)
        keep = [curve(self.u[c], c) >= floor[self.pair[c], c] for c in range(3)]
        return Matches([u[k] for u, k in zip(self.u, keep)], [v[k] for v, k in zip(self.v, keep)],
                           [p[k] for p, k in zip(self.pair, keep)], self.log_ratio, self.pairs, self.pair_weight,
                       [self.point_weights(c)[k] for c, k in enumerate(keep)], self.noise,
                       [self.anchors(c)[k] for c, k in enumerate(keep)])

    def count(self) -> int:
        """Fewest histogram matches of a channel (clipping anchors not counted)."""
        return min(int(np.count_nonzero(~self.anchors(c))) for c in range(3))

    def span(self) -> float:
        """Range of the matched codes in the darker or the brighter shot (the wider), widest pair,
        narrowest channel (flat scene: ~0). The brighter shot's counts too: in a linear file
        3 EV apart, the darker shot's matched codes span only 1/8 of the range."""
        return min(
            max((max(float(u[sel].max() - u[sel].min()), float(v[sel].max() - v[sel].min()))
                 for k in range(self.pairs) if np.any(sel := (p == k) & ~a)), default=0.0)
            for u, v, p, a in zip(self.u, self.v, self.pair, (self.anchors(c) for c in range(3)))
        )


def match_frames(frames: Sequence[Frame], ev: Sequence[float] | None, *, white_margin: float | None = None) -> Matches:
    """Comparametric matches of adjacent shots (by ``ev`` if given, else by brightness).

    Histogram matches below white, plus per pair and channel one clipping
    anchor ``(u, clip_code)`` (:func:`_clip_threshold`, :func:`clip_code`) weighted
    :data:`ANCHOR_WEIGHT`.
    ``white_margin``: see :data:`WHITE_MARGIN` (calibration passes 0: with
    many pairs, :func:`robust_fit` finds spoilt ones by their disagreement).
    """
    margin = WHITE_MARGIN if white_margin is None else white_margin
    h, w = frames[0].size
    step = max(1, math.ceil(max(h, w) / SAMPLE_SIDE))
    subs = [np.ascontiguousarray(f.pixels[::step, ::step]) for f in frames]
    hists = [_histograms(s) for s in subs]
    ranges = [_local_range(s) if s.shape == subs[0].shape else None for s in subs]
    if ev is not None:
        order = sorted(range(len(frames)), key=lambda i: ev[i])
    else:
        order = sorted(range(len(frames)), key=lambda i: float((hists[i][0] * np.arange(hists[i][0].shape[1])).sum() / hists[i][0].sum()))
    lo, hi = _USABLE
    us, vs, ps, ws, anchor = [[], [], []], [[], [], []], [[], [], []], [[], [], []], [[], [], []]  # type: ignore[var-annotated]
    ratios = []
    noise = []
    for p, (a, b) in enumerate(zip(order, order[1:])):
        if ev is not None:
            ratios.append((ev[b] - ev[a]) * math.log(2.0))
        noise.append(_code_noise(frames[a], step))
        (ha, wa), (hb, wb) = hists[a], hists[b]
        ra, rb = ranges[a], ranges[b]
        flat = None
        shift: tuple[int, int] | None = None
        if ra is not None and rb is not None:
            # The same weight in both shots, so that both histograms still count the same pixels.
            flat = _flatness_weight(ra, rb)
            (ha, wa), (hb, wb) = _histograms(subs[a], flat), _histograms(subs[b], flat)
        for c in range(3):
            # Clipping anchor: the darker shot's code u where the brighter one starts to
            # clip matches the brighter shot's code there, g(u) = g(clip code) / k: white
            # (linear 1) in a 16-bit file, but in a JPEG, counted as clipped from code
            # 252, the middle of codes 252-255 (:func:`clip_code`), which on a camera
            # curve's flat shoulder is below white (0.95-0.98; anchored at 1, the JPEG
            # curves came out 4-7% too bright). It is the one match that reaches the
            # top code values (a camera curve's shoulder), which the histogram matches
            # cannot: the brighter shot is clipped there. In a JPEG the pixels count by
            # flatness, as in the histograms: chroma subsampling and ringing smear the
            # brighter shot's clipped areas at their edges (unweighted, the anchors
            # between the short and the middle shot of some scenes were 0.15-0.43 too
            # low in log); a 16-bit file clips sharply, and weighting there moved
            # MtTamWest's 1-EV anchors the wrong way.
            if subs[a].shape == subs[b].shape:
                jpeg = frames[b].kind == "jpeg"
                if jpeg:
                    uc, share = _clip_threshold(subs[a][..., c], subs[b][..., c], jpeg, flat)
                else:
                    # A 16-bit anchor compares the two shots aligned: a hand-held shift or
                    # the camera's motion moves pixels across a clipped area's edge on one
                    # side only (unaligned, the short/middle anchors of the benchmark's
                    # MtTamWest and Desk pulled the curve up by 0.06-0.10 in log; aligned
                    # they are within 0.05 on every 16-bit camera-curve bracket). JPEG
                    # anchors are not aligned yet: their level (clip_code) was chosen unaligned.
                    if shift is None:
                        shift = _pair_shift(subs[a][..., 1], subs[b][..., 1])
                    uc, share = _clip_threshold(*_aligned(subs[a][..., c], subs[b][..., c], shift), jpeg)
                if ANCHOR_SHARE <= share <= 1.0 - ANCHOR_SHARE and lo < uc < hi:
                    us[c].append(np.array([uc]))
                    vs[c].append(np.array([clip_code(subs[b].dtype, jpeg)]))
                    ps[c].append(np.array([p]))
                    ws[c].append(np.array([ANCHOR_WEIGHT]))
                    anchor[c].append(np.ones(1, bool))
            u = _quantiles(ha[c], wa, _QUANTILES)
            v = _quantiles(hb[c], wb, _QUANTILES)
            # JPEG compression smears clipped highlights a few codes down (ringing,
            # shared chroma): leave out the brighter shot's top ranks as far as
            # a margin beyond its share of near-white pixels.
            bright = hb[c].size * NEAR_WHITE
            near_white = float(hb[c][int(bright):].sum() / hb[c].sum())
            top = 1.0 - margin * near_white
            ok = (u > lo) & (u < hi) & (v > lo) & (v < hi) & (v > u) & (_QUANTILES < top)
            us[c].append(u[ok])
            vs[c].append(v[ok])
            ps[c].append(np.full(int(ok.sum()), p))
            ws[c].append(np.ones(int(ok.sum())))
            anchor[c].append(np.zeros(int(ok.sum()), bool))
    cat = lambda xs: [np.concatenate(x) if x else np.zeros(0) for x in xs]  # noqa: E731
    return Matches(cat(us), cat(vs), cat(ps), np.asarray(ratios) if ev is not None else None, len(frames) - 1,
                   point_weight=cat(ws), noise=noise, anchor=[np.concatenate(x) if x else np.zeros(0, bool) for x in anchor])


def _bernstein(x: np.ndarray, degree: int = DEGREE) -> np.ndarray:
    """N×(degree+1) Bernstein basis polynomials of ``x`` in [0, 1] (non-negative, summing to 1)."""
    x = np.clip(np.asarray(x, np.float64), 0.0, 1.0)[:, None]
    j = np.arange(degree + 1)[None]
    comb = np.array([math.comb(degree, k) for k in range(degree + 1)], np.float64)[None]
    return comb * x**j * (1.0 - x) ** (degree - j)


#: Grid on which the integrals of the local-gamma basis are tabulated (log-spaced: g falls steeply near 0).
_GRID = np.concatenate(([0.0], np.geomspace(1e-7, 1.0, 4000)))


def _integrals() -> np.ndarray:
    """(degree+1)×len(_GRID): ``I_i(x) = ∫_x^1 B_i(s)/s ds`` (∞-free: the grid starts at 1e-7)."""
    s = _GRID[1:]
    f = _bernstein(s).T / s
    steps = 0.5 * (f[:, 1:] + f[:, :-1]) * np.diff(s)
    tail = np.concatenate((np.cumsum(steps[:, ::-1], axis=1)[:, ::-1], np.zeros((f.shape[0], 1))), axis=1)
    return np.concatenate((tail[:, :1] + 50.0, tail), axis=1)  # x = 0: far below any code value


_TABLE = _integrals()


def _integral(x: np.ndarray) -> np.ndarray:
    """N×(degree+1) ``I_i(x)`` by interpolation in the table."""
    return np.stack([np.interp(x, _GRID, row) for row in _TABLE], axis=1)


def local_gamma_curve(coef: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``g(x) = exp(−Σ c_i I_i(x))``: the curve whose local gamma d log g / d log x is Σ c_i B_i(x)."""
    return np.exp(-np.clip(_integral(x) @ coef, 0.0, 700.0))


def prior_coefficients(name: str) -> np.ndarray:
    """Bernstein coefficients of a built-in curve's local gamma (least squares over codes 0.02-1)."""
    x = np.linspace(0.02, 1.0, 400)
    h = 1e-4
    lg = (np.log(builtin_curve(name, x + h)) - np.log(builtin_curve(name, x - h))) / (np.log(x + h) - np.log(x - h))
    coef, *_ = np.linalg.lstsq(_bernstein(x), lg, rcond=None)
    return np.maximum(coef, 0.05)


@dataclass
class Fit:
    """A fitted inverse response: local gamma ``Σ coef[c, i]·B_i(x)`` per channel, g(1) = 1."""

    coef: np.ndarray  # 3×(DEGREE+1), non-negative
    log_ratio: np.ndarray  # per pair of shots
    cost: float = 0.0

    def curve(self, x: np.ndarray, channel: int) -> np.ndarray:
        return local_gamma_curve(self.coef[channel], x)


def _residuals(gu: np.ndarray, gv: np.ndarray, log_k: np.ndarray) -> np.ndarray:
    """Per point: log g(v) − log g(u) − log k (the comparametric equation, in natural log)."""
    return np.log(np.maximum(gv, 1e-12)) - np.log(np.maximum(gu, 1e-12)) - log_k


def _robust_cost(r: np.ndarray) -> float:
    """RMS of residuals, each capped at 0.5 (a moved object cannot dominate)."""
    return float(np.sqrt(np.mean(np.minimum(np.abs(r), 0.5) ** 2))) if r.size else float("inf")


def _pair_ratios(m: Matches, curve: Any) -> np.ndarray:
    """Each pair's log exposure ratio for ``curve(x, c)``: the median over channels and points."""
    out = np.zeros(m.pairs)
    for p in range(m.pairs):
        d = np.concatenate([
            np.log(np.maximum(curve(m.v[c][m.pair[c] == p], c), 1e-12)) - np.log(np.maximum(curve(m.u[c][m.pair[c] == p], c), 1e-12))
            for c in range(3)
        ])
        out[p] = float(np.median(d)) if d.size else 0.0
    return out


def curve_cost(m: Matches, curve: Any) -> tuple[float, np.ndarray]:
    """How well ``curve(x, c)`` explains the matches: robust RMS residual, and the ratios used."""
    m = m.above(curve)
    log_k = m.log_ratio if m.log_ratio is not None else _pair_ratios(m, curve)
    r = np.concatenate([_residuals(curve(m.u[c], c), curve(m.v[c], c), log_k[m.pair[c]]) for c in range(3)])
    return _robust_cost(r), log_k


def fit_curve(m: Matches, prior: str, *, shared: bool = False, iterations: int = 4) -> Fit:
    """Smooth monotone curve through the matches (known exposure ratios), by non-negative least squares.

    The model is the curve's local gamma ``γ(x) = d log g / d log x =
    Σ c_i B_i(x)`` (Bernstein polynomials, ``c_i ≥ 0``, so g is monotone). A
    matched pair (u, v) of exposure ratio k says ``log g(v) − log g(u) =
    ∫_u^v γ(s)/s ds = Σ c_i (I_i(u) − I_i(v)) = log k``: linear in ``c``, and
    its residual is the relative error of the curve. Rows ``λ(c_i − c_prior)``
    pull weakly towards the prior curve, rows on second differences keep γ
    smooth. Huber weights on one scale for all points, recomputed each pass,
    keep moving objects and a channel spoilt by JPEG's coarse chroma from
    dominating. ``shared``: one curve for all three channels.
    """
    if m.log_ratio is None:
        raise ValueError("fit_curve needs known exposure ratios")
    first = _fit(m.above(lambda x, c: builtin_curve(prior, x)), prior, shared, iterations)
    return _fit(m.above(first.curve), prior, shared, iterations)


def pair_residuals(m: Matches, curve: Any) -> np.ndarray:
    """Robust RMS residual of each pair of shots under ``curve(x, c)`` (known ratios)."""
    assert m.log_ratio is not None
    out = np.full(m.pairs, np.inf)
    for p in range(m.pairs):
        r = np.concatenate([
            _residuals(curve(m.u[c][m.pair[c] == p], c), curve(m.v[c][m.pair[c] == p], c), m.log_ratio[p]) for c in range(3)
        ])
        if r.size:
            out[p] = _robust_cost(r)
    return out


def best_fit(m: Matches, prior: str) -> Fit:
    """One curve for all channels, or one per channel where that fits clearly better."""
    shared = fit_curve(m, prior, shared=True)
    separate = fit_curve(m, prior)
    return separate if separate.cost < 0.8 * shared.cost else shared


def robust_fit(m: Matches, prior: str) -> Fit:
    """:func:`best_fit`, refitted with each pair of shots weighted by how well the first fit explains it.

    A pair spoilt by motion or by JPEG's smeared highlights disagrees with
    the others as a whole; its weight falls with the square of its residual
    over the median pair's.
    """
    fit = best_fit(m, prior)
    if m.pairs < 3:
        return fit
    res = pair_residuals(m.above(fit.curve), fit.curve)
    typical = float(np.median(res[np.isfinite(res)])) if np.isfinite(res).any() else 0.0
    weight = np.where(np.isfinite(res), np.minimum(1.0, (max(typical, 0.005) / np.maximum(res, 1e-9)) ** 2), 0.0)
    return best_fit(replace(m, pair_weight=m.weights() * weight), prior)


#: Extra pull towards the prior for a coefficient that the matches hardly involve (its summed
#: share below UNSEEN_SHARE of the best-supported one's).
UNSEEN_PULL = 0.3
UNSEEN_SHARE = 0.1
#: Weight of the rows pulling the local gamma towards the prior curve's.
PRIOR_STRENGTH = 0.002


def _fit(m: Matches, prior: str, shared: bool, iterations: int) -> Fit:
    from scipy.optimize import nnls

    n = DEGREE + 1
    prior_c = prior_coefficients(prior)
    log_k = m.log_ratio
    assert log_k is not None
    curves = 1 if shared else 3
    col = (lambda c: slice(0, n)) if shared else (lambda c: slice(c * n, (c + 1) * n))  # noqa: E731
    du = [_integral(m.u[c]) - _integral(m.v[c]) for c in range(3)]  # du @ coef = log g(v) − log g(u)
    trust = [m.weights()[m.pair[c]] * m.point_weights(c) for c in range(3)]
    weights = list(trust)
    smooth = np.zeros((n - 2, n))
    for i in range(n - 2):
        smooth[i, i : i + 3] = (1.0, -2.0, 1.0)
    coef = np.stack([prior_c] * 3)
    # Where no match reaches (typically the top codes, clipped in the brighter
    # shot), the data cannot place the curve: there it follows the prior's shape,
    # unless a clipping anchor ties the top code to the rest of the curve.
    support = [np.abs(du[c]).sum(axis=0) for c in range(3)]
    anchored = [bool(np.any(m.anchors(c))) for c in range(3)]
    if shared:
        support, anchored = [support[0] + support[1] + support[2]], [all(anchored)]
    pull = [PRIOR_STRENGTH + (0.0 if tied else UNSEEN_PULL) * np.clip(1.0 - sup / (UNSEEN_SHARE * max(sup.max(), 1e-12)), 0.0, 1.0)
            for sup, tied in zip(support, anchored)]
    for _ in range(iterations):
        blocks, rhs = [], []
        for c in range(3):
            a = np.zeros((len(m.u[c]), curves * n))
            a[:, col(c)] = du[c] * weights[c][:, None]
            blocks.append(a)
            rhs.append(log_k[m.pair[c]] * weights[c])
        for k in range(curves):
            npts = sum(len(m.u[c]) for c in range(3)) / curves
            reg = np.zeros((2 * n - 2, curves * n))
            reg[:n, k * n : (k + 1) * n] = np.diag(pull[k]) * math.sqrt(max(npts, 1))
            reg[n:, k * n : (k + 1) * n] = SMOOTHING * math.sqrt(max(npts, 1)) * smooth
            blocks.append(reg)
            rhs.append(np.concatenate((pull[k] * math.sqrt(max(npts, 1)) * prior_c, np.zeros(n - 2))))
        sol, _ = nnls(np.vstack(blocks), np.concatenate(rhs), maxiter=100 * curves * n)
        coef = np.stack([sol[col(c)] for c in range(3)])
        res = [du[c] @ coef[c] - log_k[m.pair[c]] for c in range(3)]
        every = np.concatenate(res)
        cut = 1.5 * max(float(np.median(np.abs(every))) * 1.4826, 0.005) if every.size else 1.0
        weights = [t * np.minimum(1.0, cut / np.maximum(np.abs(r), 1e-12)) for t, r in zip(trust, res)]
    fit = Fit(coef, log_k)
    fit.cost = curve_cost(m, fit.curve)[0]
    return fit


#: The sRGB curve's local gamma at code 1: the steepest a toe of its shape can join a fit with.
_SRGB_TOP_GAMMA = 2.4 / 1.055


def _srgb_toe_scale(gamma: float) -> float:
    """The code ``x*`` (in [0.04045, 1]) at which the sRGB curve's local gamma ``2.4x/(x + 0.055)``
    equals ``gamma`` (clamped to the curve's range, 1 to 2.4/1.055)."""
    if gamma >= _SRGB_TOP_GAMMA:
        return 1.0
    return max(0.04045, 0.055 * gamma / (2.4 - gamma)) if gamma > 1.0 else 0.04045


def fitted_inverse(fit: Fit, m: Matches, knots: int = 1024) -> np.ndarray:
    """3×``knots`` inverse response of a fitted curve, its foot replaced by a camera-like toe.

    Below the lowest code ``x_f`` that a histogram match of the fit reaches
    (the floor, :meth:`Matches.floors`: about code 0.1 on an sRGB-like curve),
    nothing constrains the polynomial, and its local gamma kept rising there:
    every fitted camera curve of the radiometry benchmark came out 0.2-0.7
    (natural log) too dark over codes 0.004-0.1 (up to 1 at code 0.01), which
    PSNR-μ weighs heavily. Real tone curves end in a toe whose local gamma
    falls towards 1 (sRGB's linear segment; a camera's picture profile
    flattens the shadows further). So below ``x_f`` the curve follows the
    sRGB curve's shape, stretched along the code axis so that its local
    gamma joins the fit's at ``x_f``: ``g(x) = g(x_f)·s(a·x)/s(a·x_f)``
    with ``s`` the sRGB decoding and ``a = x*/x_f`` (:func:`_srgb_toe_scale`);
    a fit whose local gamma there is 1 or less continues as that power.
    """
    x = np.linspace(0.0, 1.0, knots)
    inverse = np.stack([fit.curve(x, c) for c in range(3)])
    used = m.above(fit.curve)
    for c in range(3):
        u = used.u[c][~used.anchors(c)]
        if not u.size:
            continue
        xf = float(u.min())
        gamma = float((_bernstein(np.array([xf])) @ fit.coef[c])[0])
        gf = float(fit.curve(np.array([xf]), c)[0])
        low = x < xf
        if gamma <= 1.0:
            inverse[c, low] = gf * (x[low] / xf) ** gamma
        else:
            a = _srgb_toe_scale(gamma) / xf
            inverse[c, low] = gf * srgb_to_linear(a * x[low]) / srgb_to_linear(np.array(a * xf))
    return np.maximum.accumulate(np.clip(inverse, 0.0, 1.0), axis=1)


#: A built-in later in the order of preference replaces an earlier one if its cost is below this share
#: (on synthetic 320 px brackets with motion, the wrong one of gamma 2.2 and sRGB costs ≥ 1.2× the right one).
BUILTIN_ADVANTAGE = 0.9
#: The fitted curve replaces the best built-in if its cost is below this share of the built-in's…
FIT_ADVANTAGE = 0.7
#: …and the built-in misses by more than this RMS (natural log, ~0.17 stop): moving objects
#: and hand-held shifts alone leave up to ~0.1 on synthetic gamma-2.2 brackets…
BUILTIN_TOLERANCE = 0.12
#: …or, whatever the built-in's residual, the fit's is below this share of it. On 1-EV brackets
#: a wrong built-in misses by little (sRGB left 0.10-0.12 on camera-mild brackets, where the
#: fit left 0.02-0.05), while right ones leave at least 0.46 of their residual to a free curve
#: (fitting noise and motion) on the radiometry benchmark and on gamma-2.2 brackets with 5x
#: synth's noise.
FIT_CLEAR_ADVANTAGE = 0.4
#: The same for camera JPEGs (a JPEG whose EXIF names a make), whose prior, sRGB, their
#: metadata already marks as only approximate (a camera's picture profile sits on top): on the
#: radiometry benchmark's camera-mild 1-EV JPEG Desk the fit left 0.42 of sRGB's residual (the
#: true curve 0.46), while on its sRGB, gamma-2.2 and linear JPEG brackets, whose built-in is
#: right, the fit leaves 0.69 or more.
FIT_CLEAR_ADVANTAGE_CAMERA_JPEG = 0.5


def select_response(m: Matches, prior: str, *, camera_jpeg: bool = False) -> tuple[Response, str]:
    """The curve the matches support: the best built-in, or the fit if clearly better.

    Built-ins are tried in order of preference (``prior`` first, then gamma
    2.2, sRGB, linear); a later one must beat an earlier one by the margin
    :data:`BUILTIN_ADVANTAGE`, the free curve the best built-in by
    :data:`FIT_ADVANTAGE` and :data:`BUILTIN_TOLERANCE`, or by
    :data:`FIT_CLEAR_ADVANTAGE` alone (:data:`FIT_CLEAR_ADVANTAGE_CAMERA_JPEG` for
    camera JPEGs, ``camera_jpeg``). Without known exposure
    ratios a power law of any exponent explains the pixels equally well
    (with other ratios), so then only the shapes the pixels can tell apart
    compete: gamma 2.2 and sRGB, no free curve. Returns the response (source
    ``estimated``) and a sentence saying why.
    """
    known = m.log_ratio is not None
    names = BUILTIN if known else ("gamma2.2", "srgb")
    order = [prior] + [b for b in names if b != prior]
    best_name, (best_cost, _) = order[0], curve_cost(m, lambda x, c, n=order[0]: builtin_curve(n, x))
    for name in order[1:]:
        cost, _ = curve_cost(m, lambda x, c, n=name: builtin_curve(n, x))
        if cost < BUILTIN_ADVANTAGE * best_cost:
            best_name, best_cost = name, cost
    if not known:
        why = f"{best_name} fits the pixels best (residual {best_cost:.3f}; exposures unknown, so no free curve)"
        return builtin(best_name, "estimated", why), why
    fit = best_fit(m, prior)
    clear = FIT_CLEAR_ADVANTAGE_CAMERA_JPEG if camera_jpeg else FIT_CLEAR_ADVANTAGE
    if fit.cost < clear * best_cost or (fit.cost < FIT_ADVANTAGE * best_cost and best_cost > BUILTIN_TOLERANCE):
        inverse = fitted_inverse(fit, m)
        why = f"fitted to the pixels (residual {fit.cost:.3f} against {best_cost:.3f} for {best_name})"
        return Response("estimated", "estimated", inverse, why), why
    why = f"{best_name} fits the pixels best (residual {best_cost:.3f}; a free curve {fit.cost:.3f})"
    return builtin(best_name, "estimated", why), why


def fallback(why: str) -> Response:
    """Gamma 2.2 for want of evidence (source ``fallback``), with the warning that says so."""
    warning = f"cannot estimate the camera response ({why}); assuming gamma 2.2 (pass --response to set it)"
    return replace(builtin("gamma2.2", "fallback", why), warnings=(warning,))


def estimate(frames: Sequence[Frame], ev: Sequence[float] | None, prior: str = "gamma2.2", *, camera_jpeg: bool = False) -> Response:
    """The bracket's inverse response from its pixels (see the module docstring).

    ``ev``: exposures in stops when known (--ev or EXIF), used as fixed; else
    estimated with the curve. ``camera_jpeg``: the shots include camera JPEGs
    (see :func:`select_response`). Too little evidence → gamma 2.2, source
    ``fallback``, with a warning.
    """
    m = match_frames(frames, ev)
    if m.count() < MIN_POINTS or m.span() < MIN_SPAN:
        why = "too few well-exposed pixels to compare the shots" if m.count() < MIN_POINTS else "the shots cover too narrow a range of tones"
        return fallback(why)
    response, _ = select_response(m, prior, camera_jpeg=camera_jpeg)
    return response


# --- per bracket ------------------------------------------------------------


def metadata_ev(frames: Sequence[Frame], ev: Sequence[float] | None) -> list[float] | None:
    """Exposures known without the pixels: ``--ev``, else EXIF t·ISO/N² or exposure bias, else None."""
    from hdrmerge.exposure import MAX_SPAN_STOPS, complete_factors, exif_exposure

    if ev is not None:
        return [float(e) for e in ev] if len(ev) == len(frames) else None
    found = [exif_exposure(f.exif) for f in frames]
    evs: list[float] | None = None
    if all(e is not None for e in found):
        filled, _ = complete_factors(found, frames)  # type: ignore[arg-type]
        evs = [e.ev for e in filled] if filled is not None else None
    if evs is None:
        biases = [f.exif.exposure_bias for f in frames]
        evs = [float(b) for b in biases] if all(b is not None for b in biases) else None  # type: ignore[arg-type]
    if evs is None or len({round(e, 2) for e in evs}) != len(evs) or not all(math.isfinite(e) for e in evs):
        return None
    if max(evs) - min(evs) > MAX_SPAN_STOPS:  # broken metadata: derive_exposures reports it
        return None
    return evs


def choose_response(frames: Sequence[Frame], choice: ResponseChoice, ev: Sequence[float] | None = None) -> Response:
    """The response of one bracket: the user's, else metadata, else pixels (see module docstring)."""
    raw = [f for f in frames if f.kind == "raw"]
    if raw and len(raw) == len(frames):
        warnings: tuple[str, ...] = ()
        if choice.mode in ("builtin", "file"):
            warnings = (f"camera RAW files are decoded linearly; --response {choice.text} is ignored",)
        x = np.linspace(0.0, 1.0, 1024)
        return Response("linear", "raw", np.stack([x] * 3), "camera RAW decoded linearly by LibRaw", warnings=warnings)
    if choice.fixed is not None:
        if choice.fixed.bit_depth is not None:
            for f in frames:
                depth = 8 if f.pixels.dtype == np.uint8 else 16
                if f.kind != "raw" and depth != choice.fixed.bit_depth:
                    raise InputError(
                        f"--response {choice.fixed.name} was made for {choice.fixed.bit_depth}-bit shots but "
                        f"{f.path.name} has {depth}-bit samples; calibrate a response from {depth}-bit shots"
                    )
        return choice.fixed
    cooked = [f for f in frames if f.kind != "raw"]
    evidence = [read_evidence(f) for f in cooked]
    stated = [e.response for e in evidence]
    camera = any(e.camera_jpeg for e in evidence)
    if not camera and stated[0] is not None and all(
        s is not None and s.name == stated[0].name and np.abs(s.inverse - stated[0].inverse).max() < 1e-3 for s in stated
    ):
        return stated[0]
    priors = [e.prior or (e.response.name if e.response is not None and e.response.name in BUILTIN else None) for e in evidence]
    prior = "srgb" if camera or (priors and all(p == "srgb" for p in priors)) else "gamma2.2"
    known = metadata_ev(frames, ev)
    if len(cooked) < 2:  # one JPEG/TIFF among RAW files: nothing to compare it with
        return fallback("only one shot is not camera RAW")
    cooked_ev = None if known is None else [e for e, f in zip(known, frames) if f.kind != "raw"]
    return estimate(cooked, cooked_ev, prior, camera_jpeg=camera)
