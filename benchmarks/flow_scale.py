"""Does ``--flow-scale auto`` beat a fixed 0.5 on 24 MP brackets? (docs/performance.md)

For each OpenEXR sample photograph: upsample to 6000×4000, synthesise a
bracket with ground truth (``hdrmerge synth``'s camera model, motion and
hand-held shift scaled ×6 from the 1000-px defaults), merge it with the flow
scale fixed at 0.5 and with ``auto`` (0.125 at this size), and score both
against the ground truth (PSNR-μ, PSNR-l). Fixed 0.5 is the baseline.

    python benchmarks/flow_scale.py [PHOTO ...]   (names in openexr_photos; default: three)
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from hdrmerge.inference import Engine, merge
from hdrmerge.metrics import psnr
from hdrmerge.reading import Frame
from hdrmerge.testsets import SynthOptions, make_scene, read_hdr_image
from hdrmerge.tiling import resolve_flow_scale
from hdrmerge.weights import load_weights
from hdrmerge.writing import mu_law

SIZE = (4000, 6000)


def main() -> None:
    shared = Path(os.environ["HDRMERGE_SHARED"]) / "data" / "openexr_photos"
    names = sys.argv[1:] or ["MtTamWest", "Desk", "Tree"]
    engine = Engine.load(load_weights("safnet-s"), "auto", "auto")
    k = SIZE[1] / 1000
    opts = SynthOptions(max_side=max(SIZE), motion=30 * k, shift=4 * k, noise=0.002)
    rows = []
    for name in names:
        hdr = cv2.resize(read_hdr_image(shared / f"{name}.exr"), (SIZE[1], SIZE[0]), interpolation=cv2.INTER_CUBIC)
        shots, gt = make_scene(hdr, opts, np.random.default_rng(0))
        del hdr
        frames = [Frame(Path(f"{name}_{i}"), (s * 255 + 0.5).astype(np.uint8), "jpeg") for i, s in enumerate(shots)]
        del shots
        row = {"scene": name}
        for label, scale in (("0.5", 0.5), ("auto", resolve_flow_scale(None, SIZE))):
            t = time.perf_counter()
            out = merge(engine, frames, [1.0, 4.0, 16.0], flow_scale=scale, max_memory=2**30).hdr
            row[label] = {"scale": scale, "psnr_mu": round(psnr(mu_law(out), mu_law(gt)), 2), "psnr_l": round(psnr(out, gt), 2),
                          "seconds": round(time.perf_counter() - t, 1)}
            del out
        rows.append(row)
        print(json.dumps(row), flush=True)
    for label in ("0.5", "auto"):
        print(json.dumps({"mean": label, "psnr_mu": round(float(np.mean([r[label]["psnr_mu"] for r in rows])), 2),
                          "psnr_l": round(float(np.mean([r[label]["psnr_l"] for r in rows])), 2),
                          "seconds": round(float(np.mean([r[label]["seconds"] for r in rows])), 1)}))


if __name__ == "__main__":
    main()
