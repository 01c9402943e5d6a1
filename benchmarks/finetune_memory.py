"""Memory of `hdrmerge finetune`: per crop pixel of a step, and against the number of 24 MP brackets.

``step`` (hdrmerge.finetune.TRAIN_BYTES_PER_PIXEL): for each architecture, a
fresh process runs three training steps at a small and at a large crop and
reports the growth of its peak resident memory (VmHWM) during the run; the
difference between the two crops, divided by the difference of their pixel
counts, is the cost of one more crop pixel (the trained network's
activations for the backward pass, the frozen network's label pass, the
labels). SAFNet runs with the random-weight fixture (the memory does not
depend on the values).

``brackets``: synthesises four 6000×4000 (24 MP) brackets of 16-bit TIFFs
with hdrmerge's own tools (hdrmerge.testsets: four OpenEXR photographs
upsampled, motion and shift scaled, base noise), then runs ``hdrmerge
finetune`` on the first 1, 2 and 4 of them (``--steps 2 --response
gamma2.2``, default crop) in a child process that reports its own peak
resident memory (VmHWM) as it exits; as the baseline in the same run, the
same fine-tune with the decoded frames held in memory (what ``finetune`` did
before the frames were kept on disk: hdrmerge.finetune_inputs without a
cache). All files are made in one temporary folder and deleted at the end.
Linux only (/proc/self/status).

    nice -n 5 python benchmarks/finetune_memory.py [step] [brackets]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
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


#: The 24 MP brackets: photograph, seed.
BRACKETS = (("MtTamWest", 0), ("GoldenGate", 1), ("StillLife", 2), ("Tree", 3))
COUNTS = (1, 2, 4)
SIZE = (4000, 6000)

# Reports the process's own peak (VmHWM) as it exits: ru_maxrss would inherit this parent's.
PEAK = (
    "import atexit, sys\n"
    "def _peak():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            sys.stderr.write('PEAK_KIB ' + line.split()[1] + '\\n')\n"
    "atexit.register(_peak)\n"
)
CLI = PEAK + "import runpy\nsys.argv = ['hdrmerge'] + sys.argv[1:]\nrunpy.run_module('hdrmerge', run_name='__main__')\n"
# The same fine-tune with every decoded frame held in memory (no cache), through the same functions.
IN_MEMORY = PEAK + r"""
from pathlib import Path
import torch
from hdrmerge.finetune import FinetuneConfig, finetune
from hdrmerge.finetune_inputs import find_brackets, load_training_brackets
from hdrmerge.models import build_model
from hdrmerge.response import parse_response_option
torch.set_num_threads(1)
shared, folders = Path(sys.argv[1]), [Path(a) for a in sys.argv[2:]]
brackets, _ = load_training_brackets(find_brackets(folders).brackets, parse_response_option("gamma2.2"))
model = build_model(torch.load(shared / "weights" / "SAFNet_S_siggraph17.pth", weights_only=True, map_location="cpu"), "SAFNet-S")
finetune(model, brackets, FinetuneConfig(steps=2), device=torch.device("cpu"))
"""


def make_bracket(folder: Path, photo: Path, seed: int) -> None:
    """A 24 MP bracket of 16-bit TIFFs with EXIF in ``folder`` (hdrmerge.testsets.write_scene's layout)."""
    import cv2
    import numpy as np

    from hdrmerge.testsets import SynthOptions, make_scene, read_hdr_image, write_scene

    big = cv2.resize(read_hdr_image(photo), (SIZE[1], SIZE[0]), interpolation=cv2.INTER_CUBIC)
    k = SIZE[1] / 1000  # motion and shift as for a 1000-px set, scaled
    options = SynthOptions(max_side=max(SIZE), motion=30 * k, shift=4 * k, noise=0.002)
    shots, gt = make_scene(big, options, np.random.default_rng(seed))
    write_scene(folder, shots, gt, options)


def peak_gib(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(peak RSS in GiB, wall seconds) of a child that prints PEAK_KIB as it exits."""
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd[3:6])}…: {proc.stderr.strip()[-2000:]}")
    kib = int(next(line for line in proc.stderr.splitlines() if line.startswith("PEAK_KIB")).split()[1])
    return kib / 2**20, wall


def brackets(shared: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env.setdefault("HDRMERGE_WEIGHTS_DIR", str(shared / "weights"))
    with tempfile.TemporaryDirectory(prefix="hdrmerge-finetune-memory-") as tmp:
        root = Path(tmp)
        env["TMPDIR"] = str(root)  # finetune's cache of decoded frames goes here, and is deleted with it
        folders = []
        for i, (photo, seed) in enumerate(BRACKETS):
            folders.append(root / f"bracket{i + 1}")
            make_bracket(folders[-1], shared / "data" / "openexr_photos" / f"{photo}.exr", seed)
        print(f"| 24 MP brackets | decoded frames | peak RSS, frames on disk (`hdrmerge finetune`) | wall | "
              "peak RSS, frames in memory (before) | wall |")
        print("|---:|---:|---:|---:|---:|---:|")
        for n in COUNTS:
            given = [str(f) for f in folders[:n]]
            out = root / f"n{n}.safetensors"
            disk = peak_gib([sys.executable, "-c", CLI, "finetune", *given, "-o", str(out), "--steps", "2",
                             "--response", "gamma2.2", "--quiet"], env)
            memory = peak_gib([sys.executable, "-c", IN_MEMORY, str(shared), *given], env)
            decoded = n * 3 * SIZE[0] * SIZE[1] * 3 * 2
            print(f"| {n} | {decoded / 2**30:.2f} GiB | **{disk[0]:.2f} GiB** | {disk[1]:.0f} s | {memory[0]:.2f} GiB | "
                  f"{memory[1]:.0f} s |", flush=True)
            leftover = sorted(p.name for p in root.glob("hdrmerge-finetune-*"))
            if leftover:
                raise SystemExit(f"finetune left its cache behind: {leftover}")


def step(shared: Path) -> None:
    print("| architecture | growth at 96 px | growth at 256 px | bytes per crop pixel |")
    print("|---|---:|---:|---:|")
    for arch in ("SAFNet-S", "SAFNet"):
        growth = [int(subprocess.run([sys.executable, "-c", CHILD, str(shared), arch, str(c)], check=True,
                                     capture_output=True, text=True).stdout.split()[-1]) for c in CROPS]
        per_pixel = (growth[1] - growth[0]) / (CROPS[1] ** 2 - CROPS[0] ** 2)
        print(f"| {arch} | {growth[0] / 2**20:.0f} MiB | {growth[1] / 2**20:.0f} MiB | {per_pixel:.0f} |")


def main() -> int:
    shared = Path(os.environ.get("HDRMERGE_SHARED", str(Path(__file__).resolve().parents[2] / "shared")))
    parts = sys.argv[1:] or ["step", "brackets"]
    for part in parts:
        {"step": step, "brackets": brackets}[part](shared)
    return 0


if __name__ == "__main__":
    sys.exit(main())
