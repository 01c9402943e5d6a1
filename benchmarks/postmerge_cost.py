"""What hdrmerge's additions to SAFNet cost: merge time with and without them.

Baseline, measured in the same process on the same frames: ``merge`` with
the network alone (what ``--exact`` runs after reading). Candidate: ``merge``
with the refinement guard and the shadow merge (:mod:`hdrmerge.postmerge`),
as the default runs it: the noise measured on the three frames, each tile
grown by the additions' context, the additions applied per tile.

The machine this runs on is shared and loaded, so the figures are built to
be robust to load from other processes:

* one process, one thread (``torch.set_num_threads(1)``), after one warm-up
  run of each;
* ``--repeat`` pairs of runs, interleaved, the order within a pair
  alternating (baseline first, then candidate first), so that a burst of
  load falls on both alike;
* each run's wall time and the process's CPU time (user + system) recorded;
  the figures compared are the **minima** over the runs (load only ever
  adds time, so the fastest run is the one closest to the unloaded cost);
* inside each candidate run, the additions' own functions are timed
  directly: the noise estimate (:func:`hdrmerge.postmerge.settings_for`,
  once per bracket) and :func:`hdrmerge.postmerge.apply` (summed over the
  tiles); the rest of that run is the network and the tiling. Their share
  of the baseline's time is the cost without the extra context the tiles
  are grown by, which the first comparison includes.

    python benchmarks/postmerge_cost.py [--repeat 10] [--device cpu|cuda] [--precision fp32|fp16]

Input: the Kalantari test scene 002 (1500×1000) from HDRMERGE_SHARED, the
tile chosen from the default memory budget as ``fuse`` does. Prints one
JSON object.
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

from hdrmerge import postmerge
from hdrmerge.inference import Engine, merge
from hdrmerge.pipeline import load_bracket
from hdrmerge.weights import load_weights

EV = [0.0, 3.0, 6.0]


class Stopwatch:
    """Wall and CPU seconds spent inside the wrapped functions since the last reset."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def wrap(self, fn):
        def timed(*args, **kwargs):
            t, c = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.wall += time.perf_counter() - t
                self.cpu += time.process_time() - c

        return timed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=10, help="pairs of runs (network alone, with the additions)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--arch", default="safnet-s")
    args = ap.parse_args()
    torch.set_num_threads(1)
    shared = Path(os.environ["HDRMERGE_SHARED"])
    paths = [shared / "data" / "kalantari_test002_jpeg" / f"input_{i}_aligned.tif" for i in (1, 2, 3)]
    engine = Engine.load(load_weights(args.arch), args.device, args.precision)
    bracket = load_bracket(paths, EV)
    frames, exposures = bracket.sorted_frames, bracket.relative_sorted()
    # merge() imports settings_for and run_tiled looks up postmerge.apply at call time.
    noise_clock, apply_clock = Stopwatch(), Stopwatch()
    postmerge.settings_for = noise_clock.wrap(postmerge.settings_for)
    postmerge.apply = apply_clock.wrap(postmerge.apply)

    def run(additions: bool) -> dict[str, float]:
        noise_clock.__init__(), apply_clock.__init__()
        t, c = time.perf_counter(), time.process_time()
        merge(engine, frames, exposures, flow_scale=0.5, guard=additions, shadow_merge=additions)
        if engine.device.type == "cuda":
            torch.cuda.synchronize(engine.device)
        return {"wall": time.perf_counter() - t, "cpu": time.process_time() - c,
                "noise_cpu": noise_clock.cpu, "apply_cpu": apply_clock.cpu, "apply_wall": apply_clock.wall}

    run(False), run(True)  # warm-up
    plain, added = [], []
    for i in range(args.repeat):
        for additions in ((False, True) if i % 2 == 0 else (True, False)):
            (added if additions else plain).append(run(additions))
    best = lambda runs, key: min(r[key] for r in runs)  # noqa: E731
    own = [r["noise_cpu"] + r["apply_cpu"] for r in added]
    print(json.dumps({
        "device": engine.device.type, "threads": torch.get_num_threads(), "arch": engine.model.arch,
        "precision": engine.precision, "size": "1500x1000", "repeat": args.repeat,
        "cpu_min_s": round(best(plain, "cpu"), 3), "cpu_min_with_additions_s": round(best(added, "cpu"), 3),
        "cpu_ratio_of_minima": round(best(added, "cpu") / best(plain, "cpu"), 3),
        "wall_min_s": round(best(plain, "wall"), 3), "wall_min_with_additions_s": round(best(added, "wall"), 3),
        "wall_ratio_of_minima": round(best(added, "wall") / best(plain, "wall"), 3),
        "paired_cpu_ratios_median": round(statistics.median(a["cpu"] / p["cpu"] for p, a in zip(plain, added)), 3),
        "noise_estimate_cpu_min_s": round(best(added, "noise_cpu"), 3),
        "apply_cpu_min_s": round(best(added, "apply_cpu"), 3),
        "additions_own_cpu_min_s": round(min(own), 3),
        "additions_own_share_of_network_alone": round(min(own) / best(plain, "cpu"), 3),
        "runs": {"plain": [[round(r["wall"], 2), round(r["cpu"], 2)] for r in plain],
                 "additions": [[round(r["wall"], 2), round(r["cpu"], 2), round(r["noise_cpu"] + r["apply_cpu"], 3)] for r in added]},
    }))


if __name__ == "__main__":
    main()
