"""How the constants of hdrmerge's additions were chosen (docs/quality.md).

For each scene of four ``hdrmerge synth`` sets (−2/0/+2 and −3/0/+3 EV, read
noise 0.002 and 0.01, the six OpenEXR photographs at ``--max-side``, 384 px
by default) the network runs twice: once as ``--exact`` (the baseline) and
once as the default pipeline (``--response auto``), whole image, keeping what
the additions see (warped shots, reference, first-stage merge, refined
output). The additions are then applied to the kept tensors with each
variant of :mod:`hdrmerge.postmerge`'s constants, and every variant is scored
against the ground truth, as the difference to ``--exact`` in the same run:
mean and worst-scene ΔPSNR-μ per set, and mean ΔPSNR-l.

``none`` is the default pipeline without additions (what the response
estimate alone changes); ``chosen`` the constants as committed.

    python benchmarks/postmerge_choices.py [--max-side 384] [--keep DIR]

The sets are built in a temporary folder, removed at the end however the
run ends; ``--keep DIR`` builds them there instead, keeps them, and reuses
them on the next run. The data and the checkpoint come from HDRMERGE_SHARED
(default ../shared) and its ``weights/`` unless HDRMERGE_WEIGHTS_DIR is set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hdrmerge import postmerge
from hdrmerge.datasets import discover
from hdrmerge.metrics import psnr
from hdrmerge.models import build_model
from hdrmerge.pipeline import load_bracket
from hdrmerge.response import parse_response_option
from hdrmerge.testsets import read_hdr_image
from hdrmerge.tiling import run_tiled
from hdrmerge.weights import load_weights
from hdrmerge.writing import mu_law

from _cli_runner import hdrmerge, shared_dir, use_shared_weights

SETS = {"2ev-base": (2, 0.002), "2ev-high": (2, 0.01), "3ev-base": (3, 0.002), "3ev-high": (3, 0.01)}

#: name → (guard, shadows, constants changed from the committed ones)
VARIANTS: dict[str, tuple[bool, bool, dict[str, float]]] = {
    "chosen": (True, True, {}),
    "guard only": (True, False, {}),
    "shadow merge only": (False, True, {}),
    "no highlight rule (HIGHLIGHT_STEP=0)": (True, True, {"HIGHLIGHT_STEP": 0.0}),
    "HIGHLIGHT_STEP=0.25": (True, True, {"HIGHLIGHT_STEP": 0.25}),
    "HIGHLIGHT_STEP=1": (True, True, {"HIGHLIGHT_STEP": 1.0}),
    "no reference in the merge (REFERENCE_ABOVE=2)": (True, True, {"REFERENCE_ABOVE": 2.0}),
    "REFERENCE_ABOVE=0.2": (True, True, {"REFERENCE_ABOVE": 0.2}),
    "REFERENCE_ABOVE=0.5": (True, True, {"REFERENCE_ABOVE": 0.5}),
    "REFERENCE_FADE=0.3": (True, True, {"REFERENCE_FADE": 0.3}),
    "GUARD_Z=3": (True, True, {"GUARD_Z": 3.0}),
    "OUTPUT_ERROR=2": (True, True, {"OUTPUT_ERROR": 2.0}),
    "OUTPUT_ERROR=0.5": (True, True, {"OUTPUT_ERROR": 0.5}),
    "OUTPUT_WEIGHT=1": (True, True, {"OUTPUT_WEIGHT": 1.0}),
    "OUTPUT_WEIGHT=4": (True, True, {"OUTPUT_WEIGHT": 4.0}),
    "MERGE_Z=1.5": (True, True, {"MERGE_Z": 1.5}),
    "MERGE_Z=3": (True, True, {"MERGE_Z": 3.0}),
    "ALIGN_PX=0.5": (True, True, {"ALIGN_PX": 0.5}),
    "ALIGN_PX=2": (True, True, {"ALIGN_PX": 2.0}),
}


@contextmanager
def constants(changes: dict[str, float]):
    old = {k: getattr(postmerge, k) for k in changes}
    try:
        for k, v in changes.items():
            setattr(postmerge, k, v)
        yield
    finally:
        for k, v in old.items():
            setattr(postmerge, k, v)


def run_scene(model, scene, exact: bool) -> dict[str, Any]:
    """The network on one scene (whole image), with what the additions see when not exact."""
    bracket = load_bracket(scene.ldrs, scene.ev, response=parse_response_option("auto", exact))
    frames, rel = bracket.sorted_frames, bracket.relative_sorted()
    kept: dict[str, Any] = {}
    real_apply = postmerge.apply

    def keep(x0w, x1, x2w, hm, out, exposures, settings):
        kept.update(x0w=x0w.clone(), x1=x1.clone(), x2w=x2w.clone(), hm=hm.clone(), out=out.clone(), exposures=list(exposures))
        return real_apply(x0w, x1, x2w, hm, out, exposures, settings)

    settings = None if exact else postmerge.settings_for(frames, guard=True, shadows=True)
    postmerge.apply = keep  # run_tiled looks it up at call time
    try:
        h, w = frames[0].size
        result = run_tiled(model, frames, rel, flow_scale=0.5, tile=max(h, w) + 2, device=torch.device("cpu"), additions=settings)
    finally:
        postmerge.apply = real_apply
    return {"hdr": result.hdr, "kept": kept, "settings": settings}


def score(img: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    return psnr(mu_law(img), mu_law(gt)), psnr(img, gt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-side", type=int, default=384)
    ap.add_argument("--keep", type=Path, help="build the synthetic sets here and keep them (default: a temporary folder, removed at the end)")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = ap.parse_args()
    if args.keep is not None:
        run(args, args.keep)
        return
    # The four synthetic sets go however the run ends (an error, Ctrl-C).
    with tempfile.TemporaryDirectory(prefix="hdrmerge-choices-") as tmp:
        run(args, Path(tmp))


def run(args: argparse.Namespace, work: Path) -> None:
    """Every set and variant, the sets built in (or, with ``--keep``, reused from) ``work``."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    photos = shared_dir() / "data" / "openexr_photos"
    use_shared_weights(os.environ)  # load_weights below, in this process
    model = build_model(load_weights("safnet-s").state).eval()
    table: dict[str, dict[str, dict[str, float]]] = {}
    for set_name, (ev, noise) in SETS.items():
        folder = work / set_name
        if not folder.exists():
            hdrmerge("synth", str(photos), str(folder), f"--ev=-{ev},0,{ev}", "--noise", str(noise),
                     "--max-side", str(args.max_side), "-q", exit_on_failure=True, one_thread=False)
        _, scenes = discover(folder)
        deltas: dict[str, list[tuple[float, float]]] = {name: [] for name in ("none", *VARIANTS)}
        for scene in scenes:
            gt = read_hdr_image(scene.gt)
            base_mu, base_l = score(run_scene(model, scene, exact=True)["hdr"], gt)
            run = run_scene(model, scene, exact=False)
            k = run["kept"]
            plain = k["out"][0].permute(1, 2, 0).numpy()
            mu, lin = score(np.clip(plain, 0, 1), gt)
            deltas["none"].append((mu - base_mu, lin - base_l))
            for name, (guard, shadows, changes) in VARIANTS.items():
                settings = postmerge.Additions(guard, shadows, run["settings"].noise, run["settings"].levels, run["settings"].lossy)
                with constants(changes), torch.inference_mode():
                    out, _ = postmerge.apply(k["x0w"], k["x1"], k["x2w"], k["hm"], k["out"], k["exposures"], settings)
                mu, lin = score(out[0].permute(1, 2, 0).numpy(), gt)
                deltas[name].append((mu - base_mu, lin - base_l))
            print(f"{set_name} {scene.name}: chosen ΔPSNR-μ {deltas['chosen'][-1][0]:+.2f} dB", file=sys.stderr, flush=True)
        table[set_name] = {
            name: {"mean_mu": float(np.mean([d[0] for d in ds])), "worst_mu": float(np.min([d[0] for d in ds])),
                   "mean_l": float(np.mean([d[1] for d in ds]))}
            for name, ds in deltas.items()
        }
    print("| variant | " + " | ".join(f"{s}: ΔPSNR-μ mean / worst, ΔPSNR-l" for s in SETS) + " |")
    print("|---|" + "---:|" * len(SETS))
    for name in ("none", *VARIANTS):
        cells = [f"{table[s][name]['mean_mu']:+.2f} / {table[s][name]['worst_mu']:+.2f}, {table[s][name]['mean_l']:+.2f}" for s in SETS]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    main()
