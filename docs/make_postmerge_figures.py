"""Render docs/postmerge/: where hdrmerge's additions to SAFNet act, on synthetic brackets.

    python docs/make_postmerge_figures.py [--out DIR]

From the OpenEXR photographs (BSD-3-Clause, Industrial Light & Magic; the
shared test material's ``data/openexr_photos``) it synthesises brackets with
``hdrmerge synth`` (moving objects, hand-held shift, 512 px), merges each
with ``hdrmerge fuse --exact`` (the network alone) and with the default (the
refinement guard and the shadow merge, ``--debug-dir`` for their masks), and
writes one strip per bracket: the ground truth, ``--exact``, the default,
all μ-law tonemapped, then the guard's masks (white: the output fell back to
the first-stage merge; where the reference is clipped, the share of channels
pulled halfway to the median of the refined output, the first-stage merge and
the warped short shot) and the long shot's share of the final value (white:
all of it), cropped where the default gains most on ``--exact`` (PSNR-μ over
the crop in the labels). These images may be committed: they derive only
from BSD-licensed photographs.

Needs the SAFNet-S checkpoint (HDRMERGE_WEIGHTS_DIR, cache, or download).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from hdrmerge.metrics import psnr_mu
from hdrmerge.testsets import read_hdr_image
from hdrmerge.writing import mu_law, to_u8

from _figure_label import label as caption

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
from _cli_runner import hdrmerge, shared_dir  # noqa: E402
#: (photograph, EV spacing, --noise): the guard shows best at base noise, the shadow merge at high noise.
SETS = (("Desk", 2, 0.002), ("MtTamWest", 3, 0.01))
CROP = (200, 150)  # w, h of the crop, px at the 512-px scale
SCALE = 2  # crops are shown at twice their size


def label(img: np.ndarray, text: str) -> np.ndarray:
    """RGB u8 → BGR u8 with ``text`` in a black band on top."""
    return caption(img, text, font_scale=0.45)


def best_crop(gt: np.ndarray, exact: np.ndarray, default: np.ndarray) -> tuple[int, int]:
    """Top-left corner of the CROP window where the default's μ-law error falls most below --exact's."""
    gain = ((mu_law(exact) - mu_law(gt)) ** 2 - (mu_law(default) - mu_law(gt)) ** 2).mean(axis=2)
    w, h = CROP
    box = cv2.blur(gain.astype(np.float32), (w, h), borderType=cv2.BORDER_CONSTANT)
    cy, cx = np.unravel_index(np.argmax(box[h // 2 : gain.shape[0] - h // 2, w // 2 : gain.shape[1] - w // 2]), (gain.shape[0] - h, gain.shape[1] - w))
    return int(cy), int(cx)


def read_exr_or_hdr(path: Path) -> np.ndarray:
    return read_hdr_image(path).astype(np.float32)


def strip(folder: Path, photo: str, ev: int, noise: float, tmp: Path) -> None:
    hdr_dir = tmp / f"src-{photo}"
    hdr_dir.mkdir()
    os.symlink(shared_dir() / "data" / "openexr_photos" / f"{photo}.exr", hdr_dir / f"{photo}.exr")
    sset = tmp / f"set-{photo}"
    hdrmerge("synth", str(hdr_dir), str(sset), f"--ev=-{ev},0,{ev}", "--noise", str(noise), "--max-side", "512", "-q",
             exit_on_failure=True)
    scene = sset / photo
    shots = sorted(str(p) for p in scene.glob("input_*.tif"))
    outs = {}
    for name, extra in (("exact", ["--exact"]), ("default", ["--debug-dir", str(tmp / f"dbg-{photo}")])):
        out = tmp / f"{photo}-{name}.hdr"
        hdrmerge("fuse", *shots, "-o", str(out), "--normalize", "short", "--no-preview", "-q", *extra, exit_on_failure=True)
        outs[name] = read_exr_or_hdr(out)
    gt = read_hdr_image(scene / "HDRImg.hdr")
    y, x = best_crop(gt, outs["exact"], outs["default"])
    w, h = CROP
    win = (slice(y, y + h), slice(x, x + w))

    def show(img: np.ndarray) -> np.ndarray:
        return cv2.resize(img, (w * SCALE, h * SCALE), interpolation=cv2.INTER_NEAREST)

    def mask(name: str) -> np.ndarray:
        m = cv2.imread(str(tmp / f"dbg-{photo}" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
        return np.repeat(m[win][..., None], 3, axis=2)

    tiles = [
        label(show(to_u8(mu_law(gt[win]))), "ground truth"),
        label(show(to_u8(mu_law(outs["exact"][win]))), f"--exact  {psnr_mu(outs['exact'][win], gt[win]):.1f} dB"),
        label(show(to_u8(mu_law(outs["default"][win]))), f"default  {psnr_mu(outs['default'][win], gt[win]):.1f} dB"),
        label(show(mask("guard")), "guard: first stage used"),
        label(show(mask("guard_highlights")), "guard: highlights pulled"),
        label(show(mask("merge_long")), "long shot's share"),
    ]
    name = f"{photo}-{ev}ev-noise{noise:g}.jpg"
    cv2.imwrite(str(folder / name), np.concatenate(tiles, axis=1), [cv2.IMWRITE_JPEG_QUALITY, 90])
    whole = f"whole {psnr_mu(outs['exact'], gt):.2f} → {psnr_mu(outs['default'], gt):.2f} dB"
    print(f"{folder / name}: crop at x={x} y={y}; {whole}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "postmerge")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hdrmerge-postmerge-") as t:
        for photo, ev, noise in SETS:
            strip(args.out, photo, ev, noise, Path(t))


if __name__ == "__main__":
    main()
