"""Bracket test sets with known ground truth, made from real HDR photographs.

For each HDR photograph (.hdr or .exr) :func:`make_scene` renders what a
hand-held camera would have recorded in three exposures, with the things a
merge must cope with:

* the exposure spacing (``ev``, stops relative to the reference shot);
* sensor noise: Gaussian with variance ``noise² + (4·noise)²·x`` at linear
  value ``x`` (read noise plus shot noise), added before clipping;
* a hand-held global shift: each non-reference shot is translated by up to
  ``shift`` pixels (sub-pixel, bilinear, edges replicated);
* moving foreground objects: ``objects`` textured discs, cut from the
  photograph itself, that move by up to ``motion`` pixels between shots
  (``make_scene(..., motion_mask=True)`` also returns where they lie in any
  shot, for tests of ghosting).

Each shot is clipped to [0, 1], encoded with a transfer curve
(``encoding``: gamma 2.2 by default, sRGB, sRGB with a camera-style S-curve,
or linear; see :mod:`hdrmerge.testset_encodings`) and stored as 16- or 8-bit TIFF
or 8-bit JPEG, with EXIF tags: exposure (shutter time, f/8, ISO 100), capture
time (a bracket's shots a second apart, scenes ten minutes apart) and
ColorSpace as a camera writes it (sRGB for the sRGB-based encodings, camera
curves included; Uncalibrated for gamma 2.2 and linear). The set's folder
also gets ``response.json``, the encoding's true curve as a response file
(``--response FILE``). With ``exif=False`` the shots carry no metadata at
all, so exposures come only from exposure.txt (``--ev``) and the response
only from the pixels. The ground truth is the reference shot's scene (objects where the reference shows
them, no shift) in the short-exposure linear domain, clipped to [0, 1] like
the network's output, written as Radiance ``HDRImg.hdr``. The layout is
Kalantari 2017's, so ``hdrmerge eval`` reads it directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal, overload

import numpy as np

from hdrmerge.errors import InputError
from hdrmerge.testset_encodings import ENCODINGS, encode, write_response
from hdrmerge.demo_scene import ShotInfo, nominal_time, write_jpeg


#: Capture times (DateTimeOriginal) of the shots: the first scene's first shot, the
#: pause between a bracket's shots and the pause between scenes (far above
#: batch's grouping gap, :data:`hdrmerge.batch.DEFAULT_GAP_S`). Fixed, so a seed
#: gives the same files.
FIRST_SHOT = datetime(2026, 1, 1, 12, 0, 0)
SHOT_PAUSE = timedelta(seconds=1)
SCENE_PAUSE = timedelta(minutes=10)


@dataclass(frozen=True)
class SynthOptions:
    """Parameters of a synthetic test set (see the module docstring)."""

    ev: tuple[float, float, float] = (-2.0, 0.0, 2.0)
    noise: float = 0.002
    shift: float = 4.0
    objects: int = 2
    motion: float = 30.0
    max_side: int = 1000
    fmt: str = "tif"  # "tif" or "jpg" (8 bit)
    seed: int = 0
    encoding: str = "gamma2.2"  # one of hdrmerge.testset_encodings.ENCODINGS
    bits: int = 16  # sample depth of TIFF shots: 8 or 16 (JPEG is always 8)
    exif: bool = True  # False: no metadata at all; exposures only from exposure.txt (--ev)

    @property
    def bit_depth(self) -> int:
        """Sample depth of the files written: 8 for JPEG, ``bits`` for TIFF."""
        return 8 if self.fmt == "jpg" else self.bits

    @property
    def color_space(self) -> int:
        """EXIF ColorSpace a camera would write: 1 (sRGB) or 0xFFFF (Uncalibrated)."""
        return 1 if self.encoding in ("srgb", "camera-mild", "camera-strong") else 0xFFFF


def read_hdr_image(path: Path) -> np.ndarray:
    """H×W×3 float32 linear RGB from .exr (OpenEXR) or .hdr (Radiance)."""
    suffix = path.suffix.lower()
    if suffix == ".exr":
        import OpenEXR

        try:
            channels = OpenEXR.File(str(path)).channels()
        except Exception as exc:
            raise InputError(f"{path}: not a readable OpenEXR file ({exc})") from None
        for key in ("RGB", "RGBA"):
            if key in channels:
                return np.ascontiguousarray(channels[key].pixels[..., :3].astype(np.float32))
        if all(k in channels for k in "RGB"):
            return np.stack([channels[k].pixels.astype(np.float32) for k in "RGB"], axis=-1)
        raise InputError(f"{path}: no R, G, B channels (has {', '.join(channels)})")
    if suffix == ".hdr":
        import cv2

        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise InputError(f"{path}: not a readable Radiance file")
        return np.ascontiguousarray(img[..., ::-1].astype(np.float32))
    raise InputError(f"{path}: give .exr or .hdr photographs")


def _fit(img: np.ndarray, max_side: int) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    # Even sizes keep later 2x2 operations (Bayer mosaics, resizes) simple.
    nh, nw = max(2, int(h * scale) // 2 * 2), max(2, int(w * scale) // 2 * 2)
    if (nh, nw) == (h, w):
        return img
    return cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)


def _shifted(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    import cv2

    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@dataclass(frozen=True)
class _Disc:
    cx: float
    cy: float
    r: float
    sx: float  # texture source centre
    sy: float
    vx: float  # displacement per shot step
    vy: float


def _disc_mask(xx: np.ndarray, yy: np.ndarray, d: _Disc, step: int) -> tuple[np.ndarray, float, float]:
    """Where disc ``d`` lies in shot ``step`` (−1, 0, +1) on the pixel grid ``xx``, ``yy``, and its centre."""
    cx, cy = d.cx + d.vx * step, d.cy + d.vy * step
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= d.r * d.r, cx, cy


def _paste(img: np.ndarray, discs: list[_Disc], step: int, radiance_gain: float) -> np.ndarray:
    """``img`` with each disc at its position for shot ``step`` (−1, 0, +1)."""
    h, w = img.shape[:2]
    out = img.copy()
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for d in discs:
        mask, cx, cy = _disc_mask(xx, yy, d, step)
        sy = np.clip((yy[mask] - cy + d.sy).astype(int), 0, h - 1)
        sx = np.clip((xx[mask] - cx + d.sx).astype(int), 0, w - 1)
        out[mask] = img[sy, sx] * radiance_gain
    return out


def _footprint(h: int, w: int, discs: list[_Disc], step: int) -> np.ndarray:
    """H×W float32: 1 where any disc lies in shot ``step``, as :func:`_paste` places it, else 0."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.zeros((h, w), np.float32)
    for d in discs:
        out[_disc_mask(xx, yy, d, step)[0]] = 1.0
    return out


@overload
def make_scene(
    hdr: np.ndarray, options: SynthOptions, rng: np.random.Generator, *, motion_mask: Literal[False] = False
) -> tuple[list[np.ndarray], np.ndarray]: ...


@overload
def make_scene(
    hdr: np.ndarray, options: SynthOptions, rng: np.random.Generator, *, motion_mask: Literal[True]
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]: ...


def make_scene(
    hdr: np.ndarray, options: SynthOptions, rng: np.random.Generator, *, motion_mask: bool = False
) -> tuple[list[np.ndarray], np.ndarray] | tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Three LDR shots (float code values in [0, 1], ``options.encoding``) and the ground truth (short domain).

    With ``motion_mask`` also an H×W bool mask of the moving objects: every
    pixel that a disc covers in any of the three shots (at that shot's
    position and hand-held shift), i.e. where the shots differ because
    something moved. The shots and ground truth are the same either way.
    """
    img = _fit(np.maximum(hdr, 0.0), options.max_side)
    h, w = img.shape[:2]
    # Expose the reference so that the median luminance sits at mid-grey.
    lum = img @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    median = float(np.median(lum[lum > 0])) if np.any(lum > 0) else 1.0
    base = 0.18 / max(median, 1e-8)
    discs = []
    for _ in range(options.objects):
        r = rng.uniform(0.05, 0.1) * min(h, w)
        angle = rng.uniform(0, 2 * math.pi)
        speed = rng.uniform(0.5, 1.0) * options.motion
        discs.append(
            _Disc(
                cx=rng.uniform(r, w - r), cy=rng.uniform(r, h - r), r=r,
                sx=rng.uniform(r, w - r), sy=rng.uniform(r, h - r),
                vx=speed * math.cos(angle), vy=speed * math.sin(angle),
            )
        )
    ref_ev = options.ev[1]
    shots = []
    moving = np.zeros((h, w), bool)
    for step, ev in zip((-1, 0, 1), options.ev):
        scene = _paste(img, discs, step, 1.0)
        footprint = _footprint(h, w, discs, step) if motion_mask else None
        if step != 0 and options.shift > 0:
            dx, dy = rng.uniform(-options.shift, options.shift, 2)
            scene = _shifted(scene, dx, dy)
            if footprint is not None:
                footprint = _shifted(footprint, dx, dy)
        if footprint is not None:
            moving |= footprint > 0
        lin = scene * np.float32(base * 2.0 ** (ev - ref_ev))
        if options.noise > 0:
            sigma = np.sqrt(options.noise**2 + (4 * options.noise) ** 2 * np.maximum(lin, 0))
            lin = lin + rng.standard_normal(lin.shape).astype(np.float32) * sigma
        shots.append(encode(lin, options.encoding))
    short_gain = base * 2.0 ** (min(options.ev) - ref_ev)
    gt = np.clip(_paste(img, discs, 0, 1.0) * np.float32(short_gain), 0.0, 1.0)
    if motion_mask:
        return shots, gt.astype(np.float32), moving
    return shots, gt.astype(np.float32)


def _write_tiff(path: Path, ldr: np.ndarray, info: ShotInfo | None, bits: int = 16) -> None:
    """``ldr`` (H×W×3 code values in [0, 1]) as a ``bits``-bit RGB TIFF, with ``info`` as tags (none if None)."""
    import tifffile

    from hdrmerge.exif_tags import SHORT, exif_tags, tifffile_tag

    top, dtype = (65535.0, np.uint16) if bits == 16 else (255.0, np.uint8)
    data = (np.clip(ldr, 0, 1) * top + 0.5).astype(dtype)
    if info is None:
        tifffile.imwrite(path, data, photometric="rgb")
        return
    # All in IFD 0, the EXIF-IFD rows too: hdrmerge, exifread and exiftool read them there.
    tags = [tifffile_tag(entry) for entry in exif_tags(info.exif())]
    if info.color_space is not None:
        tags.append((0xA001, SHORT, 1, int(info.color_space), True))  # ColorSpace
    tifffile.imwrite(path, data, photometric="rgb", extratags=tags)


def write_scene(
    folder: Path, shots: list[np.ndarray], gt: np.ndarray, options: SynthOptions, start: datetime = FIRST_SHOT
) -> datetime:
    """Kalantari layout: input_1..3 (short → long), exposure.txt, HDRImg.hdr.

    ``shots`` are code values in [0, 1] (``options.encoding``), ``gt`` is
    H×W×3 linear (short-exposure domain). The first shot is taken at
    ``start`` and each next one :data:`SHOT_PAUSE` after the previous
    exposure ends (in whole seconds).
    Returns when the last exposure ends.

    The scene's files appear together or not at all (:class:`hdrmerge.atomic.StagedOutputs`):
    Ctrl-C, a full disk or a failed write leaves no truncated file, and the error names the file.
    """
    from hdrmerge.atomic import StagedOutputs
    from hdrmerge.writing import write_hdr

    folder.mkdir(parents=True, exist_ok=True)
    ref_ev = options.ev[1]
    when = start
    with StagedOutputs(overwrite=True) as staged:  # synth's --overwrite has allowed writing into OUT_DIR
        for i, (ldr, ev) in enumerate(zip(shots, options.ev), start=1):
            info = ShotInfo(exposure_time=nominal_time(-6.0 + ev - ref_ev), make="hdrmerge", model="synth",
                            color_space=options.color_space, when=when)
            end = when + timedelta(seconds=math.ceil(info.exposure_time))
            when = end + SHOT_PAUSE
            if options.fmt == "jpg":
                write_jpeg(staged.stage(folder / f"input_{i}.jpg"), (ldr * 255.0 + 0.5).astype(np.uint8), info if options.exif else None)
            else:
                _write_tiff(staged.stage(folder / f"input_{i}.tif"), ldr, info if options.exif else None, options.bits)
        staged.stage(folder / "exposure.txt").write_text("\n".join(f"{e:g}" for e in options.ev) + "\n")
        write_hdr(staged.stage(folder / "HDRImg.hdr"), gt, {})  # checks the encoding, unlike cv2.imwrite
        staged.commit()
    return end


def synthesise(hdr_dir: Path, out_dir: Path, options: SynthOptions) -> list[Path]:
    """A test set from every .hdr/.exr in ``hdr_dir``; returns the scene folders.

    Also writes ``out_dir/response.json``, the true curve of the set's encoding.
    """
    if not hdr_dir.is_dir():
        raise InputError(f"{hdr_dir}: not a folder of HDR photographs")
    sources = sorted(p for p in hdr_dir.iterdir() if p.suffix.lower() in (".hdr", ".exr"))
    if not sources:
        raise InputError(f"{hdr_dir}: no .hdr or .exr files")
    # Each photograph's scene folder is named by its stem: two of one stem would share it.
    seen: dict[str, Path] = {}
    for src in sources:
        if (first := seen.setdefault(src.stem.casefold(), src)) is not src:
            raise InputError(
                f"{first.name} and {src.name} in {hdr_dir} would both become the scene {out_dir / src.stem}; "
                "keep one of them, or rename one"
            )
    if not (options.ev[0] < options.ev[1] < options.ev[2]):
        raise InputError(f"--ev {','.join(f'{e:g}' for e in options.ev)}: give three increasing values, e.g. -2,0,2")
    if options.fmt not in ("tif", "jpg"):
        raise InputError(f"--format {options.fmt}: use tif (8 or 16 bit) or jpg (8 bit)")
    if options.encoding not in ENCODINGS:
        raise InputError(f"--encoding {options.encoding}: use one of {', '.join(ENCODINGS)}")
    if options.bits not in (8, 16):
        raise InputError(f"--bits {options.bits}: use 8 or 16")
    try:  # a folder that cannot be made is the user's to fix, named as such
        out_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(f"{out_dir} is a file; give a folder for the test set") from None
    except OSError as exc:
        raise InputError(f"cannot create the folder {out_dir} ({exc.strerror}); choose another OUT_DIR") from None
    out = []
    start = FIRST_SHOT
    for k, src in enumerate(sources):
        rng = np.random.default_rng([options.seed, k])
        shots, gt = make_scene(read_hdr_image(src), options, rng)
        folder = out_dir / src.stem
        # Each scene its own capture times, well apart, so that batch and
        # calibrate group a folder of scenes as one bracket per scene.
        start = write_scene(folder, shots, gt, options, start) + SCENE_PAUSE
        out.append(folder)
    write_response(out_dir / "response.json", options.encoding, options.bit_depth)
    return out


