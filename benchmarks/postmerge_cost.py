"""What hdrmerge's additions to SAFNet cost: merge time with and without them.

Baseline, measured in the same process on the same frames: ``merge`` with
the network alone (what ``--exact`` runs after reading). Candidate: ``merge``
with the refinement guard and the shadow merge (:mod:`hdrmerge.postmerge`),
as the default runs it: the noise measured on the three frames, each tile
grown by the additions' 4 px of context, the additions applied per tile.
Runs alternate (baseline, candidate, baseline, ...) after one warm-up of
each, so that load from other processes falls on both alike. Each run's
wall time and the process's CPU time (user + system, all threads) are
recorded; on a shared machine the CPU time is the steadier figure (other
processes stretch the wall time, not the work done). Reported: the median
CPU time and the fastest wall time of ``--repeat`` runs of each, with their
ratios. The noise estimate is also timed alone.

    python benchmarks/postmerge_cost.py [--repeat 5] [--device cpu|cuda] [--precision fp32|fp16]

Input: the Kalantari test scene 002 (1500×1000) from HDRMERGE_SHARED, the
tile chosen from the default memory budget as ``fuse`` does.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import hdrmerge  # noqa: F401  (first: sets the allocator variable before torch loads)
import torch

from hdrmerge.inference import Engine, merge
from hdrmerge.pipeline import load_bracket
from hdrmerge.postmerge import estimate_noise
from hdrmerge.weights import load_weights

EV = [0.0, 3.0, 6.0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--arch", default="safnet-s")
    args = ap.parse_args()
    shared = Path(os.environ["HDRMERGE_SHARED"])
    paths = [shared / "data" / "kalantari_test002_jpeg" / f"input_{i}_aligned.tif" for i in (1, 2, 3)]
    engine = Engine.load(load_weights(args.arch), args.device, args.precision)
    bracket = load_bracket(paths, EV)
    frames, exposures = bracket.sorted_frames, bracket.relative_sorted()

    def run(additions: bool) -> tuple[float, float]:
        t, c = time.perf_counter(), time.process_time()
        merge(engine, frames, exposures, flow_scale=0.5, guard=additions, shadow_merge=additions)
        if engine.device.type == "cuda":
            torch.cuda.synchronize(engine.device)
        return time.perf_counter() - t, time.process_time() - c

    run(False), run(True)  # warm-up
    plain, added = [], []
    for _ in range(args.repeat):
        plain.append(run(False))
        added.append(run(True))
    noise = []
    for _ in range(args.repeat):
        c = time.process_time()
        for f in frames:
            estimate_noise(f)
        noise.append(time.process_time() - c)
    cpu_base, cpu_cand = statistics.median(p[1] for p in plain), statistics.median(a[1] for a in added)
    wall_base, wall_cand = min(p[0] for p in plain), min(a[0] for a in added)
    print(json.dumps({
        "device": engine.device.type, "threads": torch.get_num_threads(), "arch": engine.model.arch,
        "precision": engine.precision, "size": "1500x1000", "repeat": args.repeat,
        "cpu_s": round(cpu_base, 3), "cpu_with_additions_s": round(cpu_cand, 3), "cpu_ratio": round(cpu_cand / cpu_base, 3),
        "wall_min_s": round(wall_base, 3), "wall_min_with_additions_s": round(wall_cand, 3),
        "wall_ratio": round(wall_cand / wall_base, 3), "noise_estimate_cpu_s": round(statistics.median(noise), 3),
        "runs": {"plain": [[round(w, 2), round(c, 2)] for w, c in plain],
                 "additions": [[round(w, 2), round(c, 2)] for w, c in added]},
    }))


if __name__ == "__main__":
    main()
