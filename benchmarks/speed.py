"""Model time per bracket against the straightforward run, in one process.

Baseline ("straightforward"): the network as the spec describes it, float32,
NCHW, whole image, ``torch.no_grad()``, default threads — the shape of the
authors' own code. Candidates: hdrmerge's own path (``hdrmerge.inference.
merge``: channels_last weights, tiled full-resolution stage, ``inference_mode``,
inputs built from the 8-bit frames on the fly), and the same forced back to
NCHW to show what channels_last contributes.
Warm-up runs are excluded, the device is synchronised, and the median of
``--repeat`` runs is reported, each as a ratio to the baseline.

    python benchmarks/speed.py [--repeat 5] [--device cpu|cuda] [--arch safnet-s]

Input: the Kalantari test scene 002 (1500×1000) from HDRMERGE_SHARED.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from hdrmerge.inference import Engine, merge
from hdrmerge.models import make_frames
from hdrmerge.reading import read_frame
from hdrmerge.weights import load_weights


def timed(fn, repeat: int, device: torch.device) -> list[float]:
    fn()  # warm-up: allocator pools, kernel selection
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--arch", default="safnet-s")
    ap.add_argument("--precision", default="fp32")
    args = ap.parse_args()
    shared = Path(os.environ["HDRMERGE_SHARED"])
    frames = [read_frame(shared / "data" / "kalantari_test002_jpeg" / f"input_{i}_aligned.tif") for i in (1, 2, 3)]
    exp = [1.0, 8.0, 64.0]
    weights = load_weights(args.arch)
    engine = Engine.load(weights, args.device, args.precision)  # hdrmerge's own setup (channels_last)
    dev = engine.device
    from hdrmerge.models import build_model

    model = build_model(weights.state, weights.arch).to(dev)  # plain NCHW for the baseline

    ldrs = [torch.from_numpy(f.pixels.astype(np.float32) / 255.0).permute(2, 0, 1)[None].to(dev) for f in frames]

    def straightforward():
        with torch.no_grad():
            return model(*make_frames(ldrs, exp), scale=0.5)

    def ours():
        return merge(engine, frames, exp, flow_scale=0.5)

    results = {"straightforward": timed(straightforward, args.repeat, dev), "hdrmerge": timed(ours, args.repeat, dev)}
    engine.model.to(memory_format=torch.contiguous_format)
    results["hdrmerge, NCHW"] = timed(ours, args.repeat, dev)
    base = statistics.median(results["straightforward"])
    info = {"device": dev.type, "threads": torch.get_num_threads(), "arch": model.arch, "size": "1500x1000", "repeat": args.repeat}
    print(json.dumps(info))
    for name, ts in results.items():
        med = statistics.median(ts)
        print(json.dumps({"variant": name, "median_s": round(med, 3), "min_s": round(min(ts), 3), "ratio": round(med / base, 3)}))


if __name__ == "__main__":
    main()
