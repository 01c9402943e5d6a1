"""Render the README gallery: what the network adds over a plain merge.

    python docs/make_gallery.py [--photos DIR] [--pingpong DIR]

* From the OpenEXR photographs (BSD-3-Clause, Industrial Light & Magic; in the
  shared test material as ``data/openexr_photos``) it synthesises brackets with
  moving objects (``hdrmerge synth``), merges each with hdrmerge and with the
  plain triangle merge, and writes one strip per scene to ``docs/gallery/``:
  the three shots, hdrmerge's preview, the plain merge's preview. These images
  may be committed: they derive only from BSD-licensed photographs.
* With ``--pingpong DIR`` (the IUS pingpong bracket, which may not be
  redistributed) it renders the same strip for that real bracket into
  ``gallery_local/`` (ignored by git), for local viewing only.

Needs the SAFNet-S checkpoint (HDRMERGE_WEIGHTS_DIR, cache, or download).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

from hdrmerge.evaluate import baselines
from hdrmerge.exposure import derive_exposures
from hdrmerge.inference import Engine, merge
from hdrmerge.reading import read_frame
from hdrmerge.testsets import SynthOptions, synthesise
from hdrmerge.weights import load_weights
from hdrmerge.writing import mu_law, to_u8

from _figure_label import label

REPO = Path(__file__).resolve().parent.parent
SCENES = ("Desk", "MtTamWest", "Tree")
HEIGHT = 220


def _tile(img_rgb_u8: np.ndarray, text: str) -> np.ndarray:
    h, w = img_rgb_u8.shape[:2]
    return label(cv2.resize(img_rgb_u8, (int(round(w * HEIGHT / h)), HEIGHT), interpolation=cv2.INTER_AREA), text)


def strip(paths: list[Path], engine: Engine, ev: list[float] | None = None) -> np.ndarray:
    frames = [read_frame(p) for p in paths]
    ex = derive_exposures(frames, ev)
    frames = [frames[i] for i in ex.order]
    rel = [ex.relative()[i] for i in ex.order]
    hdr = merge(engine, frames, rel).hdr
    plain = baselines(frames, rel)["merge"]
    tiles = [_tile((f.ldr() * 255 + 0.5).astype(np.uint8), name) for f, name in zip(frames, ("short", "reference", "long"))]
    tiles.append(_tile(to_u8(mu_law(hdr)), "hdrmerge (SAFNet-S)"))
    tiles.append(_tile(to_u8(mu_law(plain)), "plain merge"))
    gap = np.full((HEIGHT, 4, 3), 255, np.uint8)
    row = [tiles[0]]
    for t in tiles[1:]:
        row += [gap, t]
    return np.hstack(row)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    shared = Path(os.environ.get("HDRMERGE_SHARED", REPO.parent / "shared"))
    ap.add_argument("--photos", type=Path, default=shared / "data" / "openexr_photos")
    ap.add_argument("--pingpong", type=Path, default=None)
    args = ap.parse_args()
    engine = Engine.load(load_weights("safnet-s"), "auto", "auto")
    out = REPO / "docs" / "gallery"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        for name in SCENES:
            shutil.copy(args.photos / f"{name}.exr", photos)
        scenes = synthesise(photos, Path(tmp) / "set", SynthOptions(max_side=900, motion=40.0, seed=7))
        for folder in scenes:
            img = strip([folder / f"input_{i}.tif" for i in (1, 2, 3)], engine, [-2.0, 0.0, 2.0])
            cv2.imwrite(str(out / f"{folder.name}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 88])
            print(out / f"{folder.name}.jpg")
    if args.pingpong is not None:
        local = REPO / "gallery_local"
        local.mkdir(exist_ok=True)
        img = strip(sorted(args.pingpong.glob("*.JPG")), engine)
        cv2.imwrite(str(local / "pingpong.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        print(local / "pingpong.jpg", "(not for committing)")


if __name__ == "__main__":
    main()
