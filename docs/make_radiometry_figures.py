"""Render docs/radiometry/: before/after crops of the response work on synthetic brackets.

    python docs/make_radiometry_figures.py [--out DIR]

From the OpenEXR photographs (BSD-3-Clause, Industrial Light & Magic; the
shared test material's ``data/openexr_photos``) it synthesises 2-EV brackets
with ``hdrmerge synth`` (moving objects, shift, noise) in two encodings that
gamma 2.2 gets wrong — sRGB with the strong camera S-curve as 8-bit JPEG, and
linear 16-bit TIFF — scores them with ``hdrmerge eval --exact`` (before: every
file taken as gamma 2.2) and ``--response auto`` (after), and writes one strip
per set: the ground truth, ``--exact`` and ``auto``, μ-law tonemapped, cropped
where ``auto`` improves most on ``--exact``. These images may be committed:
they derive only from BSD-licensed photographs. (The real brackets' crops are
local-only: see ``benchmarks/radiometry_real.py --crops``.)

Needs an hdrmerge with ``--response`` and ``--exact``, and the SAFNet-S
checkpoint (HDRMERGE_WEIGHTS_DIR, cache, or download).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from hdrmerge.testsets import read_hdr_image
from hdrmerge.writing import mu_law, to_u8

from _figure_label import label

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
from _cli_runner import hdrmerge, shared_dir  # noqa: E402
PHOTO = "MtTamWest"
SETS = (("camera-strong", "jpg", 8), ("linear", "tif", 16))
CROP = (360, 240)  # w, h of the crop, px at the 640-px scale


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=Path, default=shared_dir() / "data" / "openexr_photos")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "radiometry")
    args = ap.parse_args()
    help_text = hdrmerge("eval", "--help").stdout
    if "--exact" not in help_text or "--response" not in help_text:
        sys.exit("this hdrmerge has no --exact/--response: nothing to compare")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="radfig-") as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        (photos / f"{PHOTO}.exr").symlink_to(args.photos / f"{PHOTO}.exr")
        for encoding, fmt, bits in SETS:
            name = f"{encoding}-{fmt}{bits}"
            sset = Path(tmp) / name
            hdrmerge("synth", str(photos), str(sset), "--encoding", encoding, "--format", fmt,
                     *(["--bits", str(bits)] if fmt == "tif" else []), "--max-side", "640", "--motion", "19", "--shift", "2.5", "--quiet",
                     exit_on_failure=True)
            preds = {}
            for config, flags in (("exact", ["--exact"]), ("auto", ["--response", "auto"])):
                hdrmerge("eval", str(sset), "--save-dir", str(Path(tmp) / f"{name}-{config}"), "--quiet", *flags, exit_on_failure=True)
                preds[config] = mu_law(read_hdr_image(Path(tmp) / f"{name}-{config}" / PHOTO / "hdrmerge.hdr"))
            gt = mu_law(read_hdr_image(sset / PHOTO / "HDRImg.hdr"))
            gain = (np.abs(preds["exact"] - gt) - np.abs(preds["auto"] - gt)).mean(axis=2).astype(np.float32)
            cw, ch = min(CROP[0], gt.shape[1]), min(CROP[1], gt.shape[0])
            ii = cv2.integral(gain)
            score = ii[ch:, cw:] - ii[:-ch, cw:] - ii[ch:, :-cw] + ii[:-ch, :-cw]
            y0, x0 = np.unravel_index(int(np.argmax(score)), score.shape)
            sl = (slice(y0, y0 + ch), slice(x0, x0 + cw))
            tiles = [label(to_u8(gt[sl]), "ground truth"), label(to_u8(preds["exact"][sl]), "--exact (as gamma 2.2)"),
                     label(to_u8(preds["auto"][sl]), "--response auto")]
            gap = np.full((ch, 4, 3), 255, np.uint8)
            strip = np.hstack([tiles[0], gap, tiles[1], gap, tiles[2]])
            cv2.imwrite(str(args.out / f"{PHOTO}-{name}.jpg"), strip, [cv2.IMWRITE_JPEG_QUALITY, 85])
            print(args.out / f"{PHOTO}-{name}.jpg")


if __name__ == "__main__":
    main()
