"""``hdrmerge calibrate``: one camera's response from one or more brackets.

Every bracket is split off by :mod:`hdrmerge.batch`'s planning (capture time,
camera, settings), its shots matched comparametrically as in
:func:`hdrmerge.response.estimate`, and one smooth monotone curve is fitted
to the matches of all brackets together. More brackets cover more tones and
average out moving objects and noise, so the curve beats any single-bracket
estimate. The result is written as a version-1 response file
(docs/radiometry.md) for ``--response FILE``, with a PNG plot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hdrmerge.errors import InputError
from hdrmerge.response import (
    CHANNELS,
    Matches,
    Response,
    builtin_curve,
    fitted_inverse,
    match_frames,
    metadata_ev,
    read_evidence,
    robust_fit,
)


@dataclass
class Calibration:
    """A fitted response, the brackets it rests on and the depth of their samples."""

    response: Response
    brackets: list[list[Path]]
    bit_depth: int
    camera: str | None
    residual: float


def find_brackets(
    inputs: Sequence[Path], *, group_size: int | None = None, gap_s: float = 3.0, as_given: bool = False
) -> list[list[Path]]:
    """Brackets (two or more shots each) among files and folders, split as ``hdrmerge batch`` does.

    ``as_given``: files only, one bracket in the order given (``--ev`` names their
    exposures in that order, and such shots often carry no capture time to group by).
    """
    from hdrmerge.batch import group_shots, read_shot, scan
    from hdrmerge.reading import check_shot

    if as_given:
        for p in inputs:
            check_shot(p)
        return [list(inputs)]

    files: list[Path] = []
    for p in inputs:
        if p.is_dir():
            files.extend(scan(p))
        else:
            check_shot(p)
            files.append(p)
    if not files:
        raise InputError("no photos given; pass bracketed shots or folders of them")
    groups = group_shots([read_shot(f) for f in files], gap_s=gap_s, group_size=group_size)
    brackets = [[s.path for s in g.shots] for g in groups if len(g.shots) >= 2]
    if not brackets:
        raise InputError("no bracket among the inputs (every group has a single shot); check --gap or pass --group-size")
    return brackets


def calibrate(brackets: Sequence[Sequence[Path]], ev: Sequence[float] | None = None, *, mixed_cameras: bool = False) -> Calibration:
    """Fit one response to all ``brackets`` (exposures from EXIF, or ``ev`` for a single bracket).

    A response is one camera's: brackets whose EXIF names different cameras are
    refused (InputError) unless ``mixed_cameras`` (the user named the result).
    """
    from hdrmerge.reading import read_exif, read_frames

    if ev is not None and len(brackets) != 1:
        raise InputError(f"--ev applies to a single bracket, but the inputs hold {len(brackets)}; let EXIF give the exposures")
    cameras = {}  # camera → the first bracket's first shot; from the EXIF alone, before any decoding
    for paths in brackets:
        if (name := read_exif(paths[0]).camera) is not None:
            cameras.setdefault(name, paths[0])
    if len(cameras) > 1 and not mixed_cameras:
        shown = " and ".join(f"{name} ({path.name}…)" for name, path in list(cameras.items())[:2])
        more = f" and {len(cameras) - 2} more" if len(cameras) > 2 else ""
        raise InputError(
            f"the brackets come from different cameras: {shown}{more}; a response is one camera's, so calibrate "
            "each camera's brackets on their own (or name the result with --camera to pool them on purpose)"
        )
    pooled: Matches | None = None
    depth: int | None = None
    camera_jpeg = False
    camera: str | None = None
    for paths in brackets:
        frames = read_frames(paths)
        names = ", ".join(p.name for p in paths)
        if any(f.kind == "raw" for f in frames):
            raise InputError(f"{frames[0].path.name}…: camera RAW files are decoded linearly and need no response; calibrate from JPEG, PNG or TIFF shots")
        if len({f.size for f in frames}) != 1:
            raise InputError(f"the shots {names} differ in size; a bracket's shots must have the same size")
        depths = {8 if f.pixels.dtype == np.uint8 else 16 for f in frames}
        if depth is None and len(depths) == 1:
            depth = depths.pop()
        elif depths != {depth}:
            raise InputError(f"{names}: 8- and 16-bit shots mixed; a response file is made for one bit depth")
        known = metadata_ev(frames, ev)
        if known is None:
            raise InputError(f"{names}: no exposure times in the EXIF; calibrating needs the exposures (pass --ev for a single bracket)")
        if len(paths) != len(known):
            raise InputError(f"--ev has {len(known)} values for {len(paths)} shots")
        camera_jpeg = camera_jpeg or any(read_evidence(f).camera_jpeg for f in frames)
        exif = frames[0].exif
        camera = camera or exif.camera  # the make once: "Canon EOS 1000D", not "Canon Canon EOS 1000D"
        m = match_frames(frames, known, white_margin=0.0)
        pooled = m if pooled is None else pooled.extend(m)
    assert pooled is not None and depth is not None
    if pooled.count() < 20:
        raise InputError("too few well-exposed pixels shared by the shots to calibrate; use brackets with more mid-tones")
    fit = robust_fit(pooled, "srgb" if camera_jpeg else "gamma2.2")
    inverse = fitted_inverse(fit, pooled)
    detail = f"calibrated from {len(brackets)} bracket(s), {sum(len(b) for b in brackets)} shots"
    return Calibration(Response("calibrated", "file", inverse, detail, bit_depth=depth), [list(b) for b in brackets], depth, camera, fit.cost)


def plot_response(response: Response, size: int = 320) -> np.ndarray:
    """An RGB image (uint8): one panel per channel, the curve against gamma 2.2 and sRGB.

    Each panel plots linear value (up) against code value (right), both 0-1;
    grey: gamma 2.2 (solid) and sRGB (dotted); colour: the response.
    """
    import cv2

    pad, gap = 36, 12
    width = 3 * size + 2 * gap + 2 * pad
    img = np.full((size + 2 * pad, width, 3), 255, np.uint8)
    x = np.linspace(0.0, 1.0, 256)
    colours = ((200, 30, 30), (30, 150, 30), (30, 60, 210))

    def points(x0: int, y: np.ndarray) -> np.ndarray:
        px = x0 + x * (size - 1)
        py = pad + (1.0 - np.clip(y, 0.0, 1.0)) * (size - 1)
        return np.round(np.stack((px, py), axis=1)).astype(np.int32).reshape(-1, 1, 2)

    for c, name in enumerate(CHANNELS):
        x0 = pad + c * (size + gap)
        cv2.rectangle(img, (x0, pad), (x0 + size - 1, pad + size - 1), (0, 0, 0), 1)
        for t in (0.25, 0.5, 0.75):
            k = int(round(t * (size - 1)))
            cv2.line(img, (x0 + k, pad), (x0 + k, pad + size - 1), (225, 225, 225), 1)
            cv2.line(img, (x0, pad + k), (x0 + size - 1, pad + k), (225, 225, 225), 1)
        cv2.polylines(img, [points(x0, builtin_curve("gamma2.2", x))], False, (120, 120, 120), 1, cv2.LINE_AA)
        srgb = points(x0, builtin_curve("srgb", x))
        for i in range(0, len(srgb) - 1, 6):  # dotted
            cv2.line(img, tuple(srgb[i, 0]), tuple(srgb[i + 1, 0]), (120, 120, 120), 1, cv2.LINE_AA)
        cv2.polylines(img, [points(x0, response.linear(x, c))], False, colours[c], 2, cv2.LINE_AA)
        cv2.putText(img, f"{name}: {response.name}", (x0 + 4, pad - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colours[c], 1, cv2.LINE_AA)
    cv2.putText(img, "code value ->   grey: gamma 2.2 (solid), sRGB (dotted)", (pad, size + pad + 24),
                cv2.FONT_HERSHEY_SIMPLEX, 0.45, (60, 60, 60), 1, cv2.LINE_AA)
    return img
