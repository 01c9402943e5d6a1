"""Synthetic brackets with known ground truth: the project's own example images.

:func:`render_scene` paints a high-dynamic-range scene procedurally (a sky with
a sun far brighter than the rest, a textured wall, a window, coloured objects
in shadow); :func:`expose` renders one shot of it in the network's LDR domain;
:func:`write_jpeg` stores a shot as a JPEG carrying real EXIF exposure tags.
No third-party image is involved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path

import numpy as np

from hdrmerge.reading import GAMMA, Exif


def render_scene(height: int = 480, width: int = 720, seed: int = 0) -> np.ndarray:
    """H×W×3 float32 linear radiance spanning about 14 stops.

    Radiance is scaled so that 1.0 is roughly the saturation level of a shot at
    EV 0 (see :func:`expose`).
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = x / width, y / height
    img = np.zeros((height, width, 3), np.float32)
    # Indoor wall in shadow, with a fine texture so the flow has something to see.
    texture = 0.6 + 0.4 * np.sin(u * 90.0) * np.sin(v * 70.0) + 0.15 * rng.standard_normal((height, width)).astype(np.float32)
    img[:] = (0.02 * texture)[..., None] * np.array([1.0, 0.85, 0.7], np.float32)
    # A window showing a bright sky with a gradient and a sun.
    wy0, wy1, wx0, wx1 = int(0.12 * height), int(0.6 * height), int(0.45 * width), int(0.92 * width)
    sky = np.stack([0.6 + 0.4 * v, 0.75 + 0.25 * v, np.full_like(v, 1.1)], axis=-1) * 2.0
    win = np.zeros((height, width), bool)
    win[wy0:wy1, wx0:wx1] = True
    img[win] = sky[win]
    sun = ((x - 0.75 * width) ** 2 + (y - 0.25 * height) ** 2) < (0.04 * width) ** 2
    img[sun] = np.array([60.0, 55.0, 45.0], np.float32)
    # Hills outside the window.
    hill = win & (v > 0.45 + 0.05 * np.sin(u * 20.0))
    img[hill] = np.array([0.25, 0.45, 0.15], np.float32)[None] * (0.8 + 0.4 * texture[hill, None])
    # Window frame.
    frame = np.zeros_like(win)
    frame[wy0 - 6 : wy1 + 6, wx0 - 6 : wx1 + 6] = True
    frame &= ~win
    img[frame] = 0.05
    # A lamp-lit table and objects in mid-tones.
    table = (v > 0.72) & (u > 0.05) & (u < 0.6)
    img[table] = np.array([0.12, 0.07, 0.04], np.float32) * (0.9 + 0.2 * texture[table, None])
    for cx, cy, r, colour in ((0.15, 0.65, 0.06, (0.5, 0.05, 0.05)), (0.32, 0.66, 0.05, (0.05, 0.3, 0.6))):
        disc = ((x - cx * width) ** 2 + (y - cy * height) ** 2) < (r * width) ** 2
        img[disc] = np.array(colour, np.float32)
    return np.maximum(img, 0.0)


def moving_ball(scene: np.ndarray, shift_px: float, *, seed: int = 0) -> np.ndarray:
    """``scene`` with a yellow ball whose horizontal position depends on ``shift_px``."""
    h, w, _ = scene.shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy, r = 0.3 * w + shift_px, 0.35 * h, 0.07 * min(h, w)
    out = scene.copy()
    disc = (x - cx) ** 2 + (y - cy) ** 2 < r * r
    shade = np.clip(1.0 - ((x - cx + 0.3 * r) ** 2 + (y - cy + 0.3 * r) ** 2) / (2.5 * r * r), 0.2, 1.0)
    out[disc] = (np.array([0.9, 0.7, 0.1], np.float32)[None] * shade[disc, None]) * 0.8
    return out


def expose(radiance: np.ndarray, ev: float, *, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """One 8-bit shot: ``(radiance · 2^ev)`` clipped to [0, 1], gamma 2.2, quantised.

    ``noise`` is the standard deviation of Gaussian read noise in linear units.
    """
    lin = radiance * np.float32(2.0**ev)
    if noise > 0:
        rng = np.random.default_rng(seed)
        lin = lin + rng.normal(0.0, noise, lin.shape).astype(np.float32)
    ldr = np.clip(lin, 0.0, 1.0) ** (1.0 / GAMMA)
    return (ldr * 255.0 + 0.5).astype(np.uint8)


@dataclass(frozen=True)
class ShotInfo:
    """EXIF exposure tags of one synthetic shot."""

    exposure_time: Fraction
    fnumber: float = 8.0
    iso: int = 100
    exposure_bias: float | None = None
    when: datetime = datetime(2026, 1, 1, 12, 0, 0)
    make: str = "hdrmerge"
    model: str = "synthetic camera"
    color_space: int | None = None  # EXIF ColorSpace: 1 = sRGB, 0xFFFF = Uncalibrated; None: not written

    def exif(self) -> Exif:
        """The shot as hdrmerge reads a camera's EXIF, for :func:`hdrmerge.exif_tags.exif_tags`
        (everything here but ColorSpace, which is no field of :class:`Exif`)."""
        return Exif(
            make=self.make, model=self.model, exposure_time=float(self.exposure_time), fnumber=self.fnumber,
            iso=float(self.iso), exposure_bias=self.exposure_bias,
            datetime_original=self.when.strftime("%Y:%m:%d %H:%M:%S"), subsec=f"{self.when.microsecond // 10000:02d}",
        )


def write_jpeg(path: Path, rgb: np.ndarray, info: ShotInfo | None, quality: int = 95) -> None:
    """Save ``rgb`` (H×W×3 uint8) as a JPEG with ``info`` as EXIF (none if None)."""
    from PIL import Image

    from hdrmerge.exif_tags import EXIF_IFD, exif_tags, to_pillow

    img = Image.fromarray(rgb, "RGB")
    if info is None:
        img.save(path, "JPEG", quality=quality)
        return
    shot = info.exif()
    exif = to_pillow(exif_tags(shot))
    exif[0x0132] = shot.datetime_original  # DateTime: a camera writes the capture time here too
    if info.color_space is not None:
        exif.get_ifd(EXIF_IFD)[0xA001] = int(info.color_space)  # ColorSpace
    img.save(path, "JPEG", quality=quality, exif=exif)


def nominal_time(stops: float) -> Fraction:
    """A camera-style nominal shutter time for ``2**stops`` seconds (1/60 for 2⁻⁶)."""
    t = 2.0**stops
    if t >= 1:
        return Fraction(round(t))
    denominators = [8000, 6400, 5000, 4000, 3200, 2500, 2000, 1600, 1250, 1000, 800, 640, 500, 400, 320,
                    250, 200, 160, 125, 100, 80, 60, 50, 40, 30, 25, 20, 15, 13, 10, 8, 6, 5, 4, 3, 2]
    best = min(denominators, key=lambda d: abs(math.log2(1.0 / d) - stops))
    return Fraction(1, best)


def write_bracket(
    folder: Path,
    *,
    evs: tuple[float, ...] = (-2.0, 0.0, 2.0),
    base_stops: float = -6.0,
    size: tuple[int, int] = (480, 720),
    motion_px: float = 24.0,
    seed: int = 0,
    exif: bool = True,
    start: datetime = datetime(2026, 1, 1, 12, 0, 0),
    prefix: str = "shot",
) -> list[Path]:
    """Write a bracket of JPEGs (one per EV) with a ball moving between shots.

    Shot i is exposed at ``base_stops + evs[i]`` stops of shutter time (f/8,
    ISO 100), taken 0.2 s after the previous one. Returns the paths in order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    scene = render_scene(*size, seed=seed)
    paths = []
    for i, ev in enumerate(evs):
        shot = moving_ball(scene, motion_px * (i - (len(evs) - 1) / 2))
        # Scene radiance 1.0 saturates the EV-0 shot; brighter shots clip more.
        rgb = expose(shot, ev, noise=0.002, seed=seed + i)
        path = folder / f"{prefix}_{i + 1:02d}.jpg"
        info = ShotInfo(exposure_time=nominal_time(base_stops + ev), when=start + timedelta(seconds=0.2 * i))
        write_jpeg(path, rgb, info if exif else None)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    """``python -m hdrmerge.demo OUT_DIR``: write the example bracket."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else "example/bracket")
    paths = write_bracket(out)
    print("\n".join(str(p) for p in paths))
