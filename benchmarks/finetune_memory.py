"""Memory of one fine-tuning step, per crop pixel (hdrmerge.finetune.TRAIN_BYTES_PER_PIXEL).

For each architecture, a fresh process runs three training steps at a small
and at a large crop and reports the growth of its peak resident memory
(VmHWM) during the run; the difference between the two crops, divided by the
difference of their pixel counts, is the cost of one more crop pixel (the
trained network's activations for the backward pass, the frozen network's
label pass, the labels). SAFNet runs with the random-weight fixture (the
memory does not depend on the values). Linux only (/proc/self/status).

    python benchmarks/finetune_memory.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CROPS = (96, 256)

CHILD = r"""
import sys
from pathlib import Path

import numpy as np
import torch

from hdrmerge.finetune import FinetuneConfig, TrainingBracket, finetune
from hdrmerge.models import build_model
from hdrmerge.reading import Frame
from hdrmerge.testsets import SynthOptions, make_scene, read_hdr_image

torch.set_num_threads(1)
shared, arch, crop = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
brackets = []
for i, name in enumerate(("Desk", "Tree")):
    shots, _ = make_scene(read_hdr_image(shared / "data" / "openexr_photos" / f"{name}.exr"), SynthOptions(max_side=400),
                          np.random.default_rng(i))
    frames = [Frame(Path(f"{name}{k}.tif"), (np.clip(s, 0, 1) * 65535 + 0.5).astype(np.uint16), "tiff") for k, s in enumerate(shots)]
    brackets.append(TrainingBracket(name, frames, [1.0, 4.0, 16.0]))
weights = {"SAFNet-S": shared / "weights" / "SAFNet_S_siggraph17.pth",
           "SAFNet": shared / "fixtures" / "safnet" / "safnet_random_seed2024.pth"}[arch]
model = build_model(torch.load(weights, weights_only=True, map_location="cpu"), arch)


def peak() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))


before = peak()
finetune(model, brackets, FinetuneConfig(steps=3, crop=crop, val_every=100, max_memory=2**40), device=torch.device("cpu"))
print(peak() - before)
"""


def main() -> int:
    shared = os.environ.get("HDRMERGE_SHARED", str(Path(__file__).resolve().parents[2] / "shared"))
    print("| architecture | growth at 96 px | growth at 256 px | bytes per crop pixel |")
    print("|---|---:|---:|---:|")
    for arch in ("SAFNet-S", "SAFNet"):
        growth = [int(subprocess.run([sys.executable, "-c", CHILD, shared, arch, str(c)], check=True,
                                     capture_output=True, text=True).stdout.split()[-1]) for c in CROPS]
        per_pixel = (growth[1] - growth[0]) / (CROPS[1] ** 2 - CROPS[0] ** 2)
        print(f"| {arch} | {growth[0] / 2**20:.0f} MiB | {growth[1] / 2**20:.0f} MiB | {per_pixel:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
