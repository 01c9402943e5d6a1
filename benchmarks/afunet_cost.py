"""AFUNet's cost beside SAFNet-S and SAFNet, and how close its tiles come to a whole-image run.

Part 1, cost: each engine merges the same crop of a real bracket (Kalantari
test scene 002, 8-bit) through ``hdrmerge.inference.merge`` on the CPU, one
fresh child process per (engine, size), after a small warm-up run. Reported:
CPU-seconds and wall seconds of the merge, CPU-seconds per megapixel (of the
crop for SAFNet; of the padded input for AFUNet, as ``afunet_tiling`` counts
it) and the rise of the process's resident high-water mark (VmHWM) during the
merge. SAFNet-S, the default engine, is the baseline in the same run.
Weights: SAFNet-S the authors' checkpoint; SAFNet and AFUNet the seeded random
fixture weights (speed and memory do not depend on the values).

Part 2, tiles: AFUNet (fixture weights) on one real crop, whole (as the
authors run it: reflect-padded to a multiple of 128) and in tiles of 256 px.
Reported: max and mean |tiled − whole| and PSNR-μ of tiled against whole. The
baseline, computed in the same run, is what the authors' own procedure
changes by itself: the whole crop with 128 more rows and columns of reflect
padding (CAPO's global statistics make the output depend on the padding).

    nice python benchmarks/afunet_cost.py [--sizes 256,384] [--tile-crop 384] [--skip-tiles]

Needs HDRMERGE_SHARED. Takes several CPU-minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SHARED = Path(os.environ.get("HDRMERGE_SHARED", "../shared"))
SCENE = SHARED / "data" / "kalantari_test002_jpeg"
WEIGHTS = {
    "SAFNet-S": SHARED / "weights" / "SAFNet_S_siggraph17.pth",
    "SAFNet": SHARED / "fixtures" / "safnet" / "safnet_random_seed2024.pth",
    "AFUNet": SHARED / "fixtures" / "afunet" / "weights.safetensors",
}
EXPOSURES = [1.0, 8.0, 64.0]
#: Top-left corner of the crops: the moving man and the bright window.
ORIGIN = (300, 500)


def crop_frames(size: int, origin: tuple[int, int] = ORIGIN):
    import cv2

    from hdrmerge.reading import Frame

    y, x = origin
    return [
        Frame(p, cv2.imread(str(p))[y : y + size, x : x + size, ::-1].copy(), "tiff")
        for p in (SCENE / f"input_{i}_aligned.tif" for i in (1, 2, 3))
    ]


def vm_hwm() -> int:
    """Resident high-water mark of this process in bytes (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def engine_for(arch: str):
    from hdrmerge.inference import Engine
    from hdrmerge.weights import load_weights

    return Engine.load(load_weights(weights=WEIGHTS[arch]), "cpu", "fp32")


def child(arch: str, size: int) -> dict:
    """One measurement, in this (fresh) process."""
    from hdrmerge import afunet_tiling
    from hdrmerge.inference import merge

    engine = engine_for(arch)
    merge(engine, crop_frames(64), EXPOSURES, tile=4096)  # warm-up
    frames = crop_frames(size)
    before = vm_hwm()
    c0, t0 = time.process_time(), time.perf_counter()
    merge(engine, frames, EXPOSURES, tile=4096)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    px = size * size
    if arch == "AFUNet":
        px = afunet_tiling.padded_side(size) ** 2
    return {
        "arch": arch, "size": size, "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
        "cpu_s_per_MP": round(cpu / (px / 1e6), 1), "counted_px": px,
        "peak_rise_MiB": round((vm_hwm() - before) / 2**20, 1),
        "peak_rise_bytes_per_px": round((vm_hwm() - before) / px),
        "threads": __import__("torch").get_num_threads(),
    }


def mu(x: np.ndarray) -> np.ndarray:
    return np.log1p(5000.0 * x) / math.log1p(5000.0)


def tiles(size: int) -> dict:
    import torch
    import torch.nn.functional as F

    from hdrmerge import afunet_tiling
    from hdrmerge.tiling import Window

    engine = engine_for("AFUNet")
    frames = crop_frames(size)
    t0 = time.perf_counter()
    whole = afunet_tiling.run_afunet(engine.model, frames, EXPOSURES, tile=4096, device="cpu")
    t1 = time.perf_counter()
    tiled = afunet_tiling.run_afunet(engine.model, frames, EXPOSURES, tile=256, device="cpu")
    t2 = time.perf_counter()
    # Baseline: the authors' whole-image run with 128 more rows and columns of
    # reflect padding (how much the padding alone moves the output; padding to
    # 8 instead of 128, as first written, changes nothing at multiples of 128).
    x = afunet_tiling.afunet_input(frames, EXPOSURES, Window(0, size, 0, size), "cpu")
    extra = afunet_tiling.padded_side(size) - size + 128
    with torch.inference_mode():
        pad8 = engine.model(F.pad(x, (0, extra, 0, extra), mode="reflect"))[0, :, :size, :size].permute(1, 2, 0).numpy()
    d = np.abs(tiled.hdr - whole.hdr)
    b = np.abs(pad8 - whole.hdr)
    mse = float(np.mean((mu(tiled.hdr) - mu(whole.hdr)) ** 2))
    mse_b = float(np.mean((mu(pad8) - mu(whole.hdr)) ** 2))
    return {
        "crop": size, "tiles": tiled.tiles, "whole_wall_s": round(t1 - t0, 1), "tiled_wall_s": round(t2 - t1, 1),
        "tiled_vs_whole": {"max_abs": float(d.max()), "mean_abs": float(d.mean()),
                           "psnr_mu_dB": round(10 * math.log10(1 / max(mse, 1e-20)), 1)},
        "baseline_more_padding_vs_whole": {"max_abs": float(b.max()), "mean_abs": float(b.mean()),
                                    "psnr_mu_dB": round(10 * math.log10(1 / max(mse_b, 1e-20)), 1)},
        "output_range": [float(whole.hdr.min()), float(whole.hdr.max())],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="256,384")
    ap.add_argument("--archs", default="SAFNet-S,SAFNet,AFUNet")
    ap.add_argument("--tile-crop", type=int, default=384)
    ap.add_argument("--skip-tiles", action="store_true")
    ap.add_argument("--child", nargs=2, metavar=("ARCH", "SIZE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return
    print(f"load average before: {os.getloadavg()}")
    rows = []
    for size in map(int, args.sizes.split(",")):
        for arch in args.archs.split(","):
            r = subprocess.run([sys.executable, __file__, "--child", arch, str(size)], capture_output=True, text=True)
            if r.returncode:
                sys.exit(r.stderr)
            rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    base = {r["size"]: r["cpu_s_per_MP"] for r in rows if r["arch"] == "SAFNet-S"}
    print("\nengine     size  CPU-s/MP  × SAFNet-S  peak rise MiB  bytes/px")
    for r in rows:
        ratio = r["cpu_s_per_MP"] / base[r["size"]] if r["size"] in base else float("nan")
        print(f"{r['arch']:<9} {r['size']:>5} {r['cpu_s_per_MP']:>9.1f} {ratio:>11.1f} {r['peak_rise_MiB']:>14.1f} {r['peak_rise_bytes_per_px']:>9}")
    if not args.skip_tiles:
        print(json.dumps({"tiles": tiles(args.tile_crop)}))
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
