"""Transfer curves that ``hdrmerge synth`` encodes its shots with, and their true response files.

A synthetic shot is scene-linear light ``x`` in [0, 1] (1.0 = the sensor's
saturation) turned into a code value ``v`` in [0, 1] by one of these
encodings; ``v`` is then quantised to 8 or 16 bits by the writer.

* ``gamma2.2``: ``v = x^(1/2.2)``, the network's training domain;
* ``srgb``: the IEC 61966-2-1 piecewise curve;
* ``camera-mild``, ``camera-strong``: sRGB followed by a camera-style contrast
  S-curve, as a camera's JPEG engine applies its picture profile after the
  sRGB encoding. The S-curve is ``S(u) = (1 − a)·u + a·(3u² − 2u³)`` on the
  sRGB value ``u``: it fixes 0, ½ and 1, steepens the mid-tones by a factor
  ``1 + a/2`` and flattens shadows and highlights to slope ``1 − a``
  (a = 0.35 and 0.7);
* ``linear``: ``v = x`` (machine-vision cameras, linear TIFF exports).

:func:`response_document` gives the true curve of an encoding as a response
file in hdrmerge's format (version 1, see docs/radiometry.md): per channel,
the relative scene-linear value of ``K`` evenly spaced code values, so that
``--response FILE`` can be given exactly the curve the shots were made with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from hdrmerge.reading import GAMMA
from hdrmerge.response import Response, builtin_curve, linear_to_srgb
from hdrmerge.response import response_document as _document

ENCODINGS = ("gamma2.2", "srgb", "camera-mild", "camera-strong", "linear")
#: Strength ``a`` of the S-curve each camera-style encoding applies on top of sRGB.
S_CURVE_STRENGTH = {"camera-mild": 0.35, "camera-strong": 0.7}
#: Knots of a 16-bit response file (8-bit files have one per code value, 256).
KNOTS_16 = 4096

# The S-curve has no closed-form inverse; a dense table of it is inverted by
# interpolation (error ~1e-10, far below a 16-bit step).
_TABLE_U = np.linspace(0.0, 1.0, 1 << 16)


def _s_curve(u: np.ndarray, a: float) -> np.ndarray:
    return (1.0 - a) * u + a * (u * u * (3.0 - 2.0 * u))


def _check(encoding: str) -> None:
    if encoding not in ENCODINGS:
        from hdrmerge.errors import InputError

        raise InputError(f"--encoding {encoding}: use one of {', '.join(ENCODINGS)}")


def encode(linear: np.ndarray, encoding: str) -> np.ndarray:
    """Code values in [0, 1] (same shape, float32) of linear values ``linear`` (clipped to [0, 1])."""
    _check(encoding)
    x = np.clip(linear, 0.0, 1.0).astype(np.float32, copy=False)
    if encoding == "gamma2.2":
        return x ** (1.0 / GAMMA)  # float32, as synth has always written it
    if encoding == "linear":
        return x
    u = linear_to_srgb(x.astype(np.float64))
    if encoding in S_CURVE_STRENGTH:
        u = _s_curve(u, S_CURVE_STRENGTH[encoding])
    return u.astype(np.float32)


def decode(code: np.ndarray, encoding: str) -> np.ndarray:
    """Relative scene-linear values (float64, [0, 1]) of code values ``code`` in [0, 1]."""
    _check(encoding)
    v = np.clip(np.asarray(code, np.float64), 0.0, 1.0)
    if encoding in S_CURVE_STRENGTH:
        return builtin_curve("srgb", np.interp(v, _s_curve(_TABLE_U, S_CURVE_STRENGTH[encoding]), _TABLE_U))
    return builtin_curve(encoding, v)


def response_document(encoding: str, bit_depth: int, knots: int | None = None) -> dict[str, Any]:
    """The true curve of ``encoding`` for ``bit_depth``-bit files, as a version-1 response document.

    ``knots`` defaults to 256 for 8 bits and :data:`KNOTS_16` for 16 bits.
    The three channels are identical (synth encodes them alike).
    """
    _check(encoding)
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth {bit_depth}: 8 or 16")
    k = knots or (256 if bit_depth == 8 else KNOTS_16)
    curve = np.stack([decode(np.linspace(0.0, 1.0, k), encoding)] * 3)
    doc = _document(
        Response(encoding, "synthetic", curve), bit_depth, knots=k, source="synthetic", camera="hdrmerge synth",
        description=f"true curve of hdrmerge synth's {encoding} encoding ({bit_depth}-bit files)",
    )
    doc["encoding"] = encoding
    return doc


def write_response(path: Path, encoding: str, bit_depth: int, knots: int | None = None) -> None:
    """Write :func:`response_document` to ``path`` (JSON), atomically."""
    from hdrmerge.atomic import atomic_path

    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(response_document(encoding, bit_depth, knots)) + "\n")
