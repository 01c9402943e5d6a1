"""Model time, end-to-end time and peak memory per bracket against the straightforward run.

Baseline ("straightforward"), measured in the same process: the network as the
spec describes it, float32, NCHW, whole image, ``torch.no_grad()``, default
threads — the shape of the authors' own code — fed by ``cv2.imread`` and
written with ``cv2.imwrite``. Candidates:

* ``hdrmerge``: hdrmerge's own path (``hdrmerge.inference.merge``:
  channels_last weights, channels_last warps and shuffles, tiled full-resolution
  stage, ``inference_mode``, inputs built from the 8-bit frames on the fly);
  end to end it is ``prepare`` + ``run_prepared`` of :mod:`hdrmerge.pipeline`
  (reading by content, EXIF, exposure checks, the network, an atomic .hdr);
* ``hdrmerge, NCHW``: the same forced back to NCHW weights, to show what
  channels_last contributes.

Warm-up runs are excluded, the device is synchronised, and the median of
``--repeat`` runs is reported, each as a ratio to the baseline. Peak memory is
the process's resident high-water mark over each variant's runs (reset before
each variant through /proc/self/clear_refs; Linux only), so it includes the
interpreter, torch and the weights that every variant shares.

The allocator matters as much as the network here: importing hdrmerge sets
``THP_MEM_ALLOC_ENABLE=1`` (huge pages for large tensors) for the whole
process, baseline included. Run with ``THP_MEM_ALLOC_ENABLE=0`` to measure
both with 4 KiB pages, as the authors' code runs by default.

    python benchmarks/speed.py [--repeat 5] [--device cpu|cuda] [--arch safnet-s] [--precision fp32|fp16]

Input: the Kalantari test scene 002 (1500×1000) from HDRMERGE_SHARED.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import hdrmerge  # noqa: F401  (first: sets the allocator variable before torch loads)
import cv2
import numpy as np
import torch

from hdrmerge.inference import Engine, merge
from hdrmerge.models import build_model, make_frames
from hdrmerge.pipeline import FuseOptions, prepare, run_prepared
from hdrmerge.weights import load_weights

EV = [0.0, 3.0, 6.0]
EXPOSURES = [1.0, 8.0, 64.0]


def timed(fn: Callable[[], object], repeat: int, device: torch.device) -> list[float]:
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


def reset_peak(device: torch.device) -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak(device: torch.device) -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                out["peak_rss_gib"] = round(int(line.split()[1]) / 2**20, 3)
    except OSError:
        pass
    if device.type == "cuda":
        out["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--arch", default="safnet-s")
    ap.add_argument("--precision", default="fp32")
    args = ap.parse_args()
    shared = Path(os.environ["HDRMERGE_SHARED"])
    paths = [shared / "data" / "kalantari_test002_jpeg" / f"input_{i}_aligned.tif" for i in (1, 2, 3)]
    weights = load_weights(args.arch)
    engine = Engine.load(weights, args.device, args.precision)  # hdrmerge's own setup (channels_last)
    dev = engine.device
    model = build_model(weights.state, weights.arch).to(dev)  # plain NCHW for the baseline
    out_dir = Path(tempfile.mkdtemp(prefix="hdrmerge-speed-"))
    options = FuseOptions(ev=EV, no_preview=True, overwrite=True)

    # --- the straightforward run -----------------------------------------------------
    def read_plain() -> list[torch.Tensor]:
        imgs = [cv2.imread(str(p), cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255.0 for p in paths]
        return [torch.from_numpy(np.ascontiguousarray(i)).permute(2, 0, 1)[None].to(dev) for i in imgs]

    ldrs = read_plain()

    def plain_model() -> torch.Tensor:
        with torch.no_grad():
            return model(*make_frames(ldrs, EXPOSURES), scale=0.5)

    def plain_e2e() -> None:
        with torch.no_grad():
            hdr = model(*make_frames(read_plain(), EXPOSURES), scale=0.5)
        cv2.imwrite(str(out_dir / "plain.hdr"), hdr[0].permute(1, 2, 0).cpu().numpy()[..., ::-1])

    # --- hdrmerge ----------------------------------------------------------------------
    prepared = prepare(paths, out_dir / "ours.hdr", options)
    frames = prepared.bracket.sorted_frames

    def ours_model() -> object:
        return merge(engine, frames, EXPOSURES, flow_scale=0.5)

    def ours_e2e() -> None:
        run_prepared(prepare(paths, out_dir / "ours.hdr", options), options, engine)

    rows: list[dict[str, object]] = []

    def measure(name: str, model_fn: Callable[[], object], e2e_fn: Callable[[], object]) -> None:
        reset_peak(dev)
        model_t = timed(model_fn, args.repeat, dev)
        e2e_t = timed(e2e_fn, args.repeat, dev)
        rows.append({"variant": name, "model_s": statistics.median(model_t), "model_min_s": min(model_t),
                     "e2e_s": statistics.median(e2e_t), **peak(dev)})

    measure("straightforward", plain_model, plain_e2e)
    measure("hdrmerge", ours_model, ours_e2e)
    engine.model.to(memory_format=torch.contiguous_format)
    measure("hdrmerge, NCHW", ours_model, ours_e2e)

    base = rows[0]
    info = {"device": dev.type, "threads": torch.get_num_threads(), "arch": model.arch, "precision": engine.precision,
            "size": "1500x1000", "repeat": args.repeat, "THP_MEM_ALLOC_ENABLE": os.environ.get("THP_MEM_ALLOC_ENABLE")}
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    print(json.dumps(info))
    for r in rows:
        r["model_ratio"] = round(r["model_s"] / base["model_s"], 3)  # type: ignore[operator]
        r["e2e_ratio"] = round(r["e2e_s"] / base["e2e_s"], 3)  # type: ignore[operator]
        for k in ("model_s", "model_min_s", "e2e_s"):
            r[k] = round(r[k], 4)  # type: ignore[call-overload]
        print(json.dumps(r))


if __name__ == "__main__":
    main()
