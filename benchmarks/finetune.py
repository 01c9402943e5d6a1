"""Does self-supervised fine-tuning adapt SAFNet-S to a camera? (docs/finetune.md, issue #16)

Bracket sets with ground truth are synthesised from the OpenEXR photographs in
HDRMERGE_SHARED (:mod:`hdrmerge.testsets`: moving objects, hand-held shift,
sensor noise, 2 EV spacing) in six configurations of the camera:

* ``in-domain``: base noise (synth's default), gamma 2.2: what SAFNet-S was
  trained on;
* ``iso-4x``, ``iso-8x``: high ISO, 4× and 8× the base noise;
* ``camera-strong``: base noise, sRGB with synth's strong camera S-curve,
  16-bit TIFF (the response step, ``--response auto``, estimates the curve as
  ``fuse`` does);
* ``camera-strong-jpg8``, ``camera-mild-jpg8``: base noise, the strong and
  the mild camera S-curves, written as 8-bit JPEGs (quality 95, as synth
  writes them) and read with their true curve as a response file: the
  camera-JPEG case, where 8-bit quantisation and JPEG compression after the
  S-curve are amplified by linearising (the curve is right, so only this is
  off-domain).

The gamma-2.2 configurations are read with ``--response gamma2.2`` (their
true curve), so that they measure the noise alone: ``auto`` fits a curve of
its own to some noisy gamma-2.2 brackets.

The photographs are split: brackets to fine-tune on come from four of them
(GoldenGate, MtTamWest, StillLife, Tree; 5 scenes each = 20 brackets), the
held-out brackets with ground truth from the other two (Cannon, Desk; 3 scenes
each), so no held-out scene shares a photograph with training. Each scene is
a random crop (60-100 % of each side) of its photograph, downscaled to
``--max-side`` px, with its own objects, motion, shift and noise (seeded; the
same geometry in every configuration). The shots are written as 16-bit TIFFs
(JPEGs for the ``-jpg8`` sets; synth's files) and read back through :func:`hdrmerge.pipeline.load_bracket`
(response and exposures as ``fuse`` finds them), then fine-tuned with
:func:`hdrmerge.finetune.finetune` at its default settings. Each training
bracket's session is its photograph (what the CLI would find for one shoot of
one subject, by folder and capture time), so the fine-tune holds out the
brackets of one of the four photographs; ``--split-by-bracket`` gives no
sessions (brackets held out one by one, as before sessions existed).

Figures per configuration: mean PSNR-μ and PSNR-l on the held-out brackets of
the starting checkpoint and of the fine-tuned one (and the plain merge of
``hdrmerge eval``, for scale), the fine-tune's wall time, seconds per step,
its best step, and a curve of held-out PSNR-μ against steps (every
other validation, as the fine-tune's own state there). Targets (issue #16): ≥ +1 dB PSNR-μ off-domain, no loss beyond
0.1 dB in-domain, a 20-bracket fine-tune under 15 minutes.

    python benchmarks/finetune.py [--configs iso-8x,...] [--threads N] [--json FILE] [--plot FILE]

``--true-response``: the configurations read with ``--response auto``
(``camera-strong``) are read with their set's true curve instead (a response
file, as ``hdrmerge synth`` writes ``response.json``): how much is left to
gain once the response is right.

``--quick``: 2 training photos × 2 scenes, 1 held-out scene per photo, 40
steps at a 128 px crop, 256 px scenes (a smoke test, ~3 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

#: "response": how the shots are read: a built-in name, ``auto`` (estimated, as fuse does by default)
#: or ``true`` (the set's true curve as a response file, as `hdrmerge synth` writes response.json).
CONFIGS: dict[str, dict[str, object]] = {
    "in-domain": {"noise": 0.002, "encoding": "gamma2.2", "fmt": "tif", "response": "gamma2.2"},
    "iso-4x": {"noise": 0.008, "encoding": "gamma2.2", "fmt": "tif", "response": "gamma2.2"},
    "iso-8x": {"noise": 0.016, "encoding": "gamma2.2", "fmt": "tif", "response": "gamma2.2"},
    "camera-strong": {"noise": 0.002, "encoding": "camera-strong", "fmt": "tif", "response": "auto"},
    "camera-strong-jpg8": {"noise": 0.002, "encoding": "camera-strong", "fmt": "jpg", "response": "true"},
    "camera-mild-jpg8": {"noise": 0.002, "encoding": "camera-mild", "fmt": "jpg", "response": "true"},
}
OFF_DOMAIN = ("iso-4x", "iso-8x", "camera-strong", "camera-strong-jpg8", "camera-mild-jpg8")
TRAIN_PHOTOS = ("GoldenGate", "MtTamWest", "StillLife", "Tree")
HELD_OUT_PHOTOS = ("Cannon", "Desk")
#: Targets of issue #16.
GAIN_DB = 1.0
IN_DOMAIN_LOSS_DB = 0.1
WALL_LIMIT_S = 15 * 60


@dataclass
class Held:
    name: str
    frames: list
    exposures: list[float]
    gt: np.ndarray


@dataclass
class ConfigResult:
    config: str
    start: dict[str, float]
    tuned: dict[str, float]
    plain_merge: dict[str, float]
    curve: list[tuple[int, float]] = field(default_factory=list)
    #: (step, held-out self-supervised loss) of every validation, step 0 the start: the weights a
    #: run of ``--steps N`` keeps are those of the lowest loss at steps ≤ N.
    val_losses: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0  # the fine-tune itself, without the benchmark's curve evaluations
    load_seconds: float = 0.0  # reading the 20 brackets (response, exposures)
    seconds_per_step: float = 0.0  # mean over steps without a validation
    steps_done: int = 0
    best_step: int = 0
    stopped_early: bool = False
    start_val_loss: float = 0.0
    best_val_loss: float = 0.0
    n_train: int = 0
    n_val: int = 0
    response: str = ""
    crop: int = 0


def scene_source(hdr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random crop of 60-100 % of each side of a photograph."""
    h, w = hdr.shape[:2]
    ch, cw = int(h * rng.uniform(0.6, 1.0)), int(w * rng.uniform(0.6, 1.0))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return hdr[y : y + ch, x : x + cw]


def make_scenes(photos: dict[str, np.ndarray], names: tuple[str, ...], count: int, config: str, max_side: int,
                root: Path, first_seed: int):
    """Write ``count`` scenes per photograph; yield (photograph, name, folder, options, ground truth)."""
    from hdrmerge.testsets import SynthOptions, make_scene, write_scene

    spec = CONFIGS[config]
    for p, name in enumerate(names):
        for j in range(count):
            seed = first_seed + 100 * p + j
            geometry = np.random.default_rng([seed, 1])
            src = scene_source(photos[name], geometry)
            options = SynthOptions(max_side=max_side, noise=float(spec["noise"]), encoding=str(spec["encoding"]),
                                   fmt=str(spec["fmt"]), seed=seed)
            shots, gt = make_scene(src, options, np.random.default_rng([seed, 2]))
            folder = root / config / f"{name}-{j}"
            write_scene(folder, shots, gt, options)
            yield name, f"{name}-{j}", folder, options, gt


def read_scene(folder: Path, options, response: str) -> tuple[list, list[float], str]:
    """Frames (short → long, network domain), relative exposures and the response's name, as fuse reads them."""
    from hdrmerge.pipeline import load_bracket
    from hdrmerge.response import parse_response_option

    paths = sorted(folder.glob(f"input_*.{options.fmt}"))
    bracket = load_bracket(paths, list(options.ev), response=parse_response_option(response))
    return bracket.sorted_frames, bracket.relative_sorted(), bracket.response.name


def score(model, held: list[Held]) -> dict[str, float]:
    """Mean PSNR-μ and PSNR-l of the network on the held-out brackets (tiled run, as fuse merges)."""
    import torch

    from hdrmerge.metrics import psnr
    from hdrmerge.tiling import run_tiled
    from hdrmerge.writing import mu_law

    mu, lin = [], []
    model.eval()
    for h in held:
        out = run_tiled(model, h.frames, h.exposures, flow_scale=0.5, tile=1024, device=torch.device("cpu")).hdr
        mu.append(psnr(mu_law(out), mu_law(h.gt)))
        lin.append(psnr(out, h.gt))
    return {"psnr_mu": float(np.mean(mu)), "psnr_l": float(np.mean(lin))}


def plain_merge(held: list[Held]) -> dict[str, float]:
    from hdrmerge.evaluate import baselines
    from hdrmerge.metrics import psnr
    from hdrmerge.writing import mu_law

    mu, lin = [], []
    for h in held:
        out = baselines(h.frames, h.exposures)["merge"]
        mu.append(psnr(mu_law(out), mu_law(h.gt)))
        lin.append(psnr(out, h.gt))
    return {"psnr_mu": float(np.mean(mu)), "psnr_l": float(np.mean(lin))}


def run_config(config: str, photos: dict[str, np.ndarray], state: dict, args, root: Path) -> ConfigResult:
    import torch

    from hdrmerge.finetune import FinetuneConfig, TrainingBracket, finetune, fit_crop
    from hdrmerge.models import build_model

    t0 = time.perf_counter()
    train, responses = [], []
    how = str(CONFIGS[config]["response"])
    if how == "true" or (args.true_response and how == "auto"):
        # The set's true curve as a response file (as `hdrmerge synth` writes it), instead of the estimate.
        from hdrmerge.testset_encodings import write_response

        (root / config).mkdir(parents=True, exist_ok=True)
        how = str(root / config / "response.json")
        write_response(Path(how), str(CONFIGS[config]["encoding"]), 8 if CONFIGS[config]["fmt"] == "jpg" else 16)
    for photo, name, folder, options, _gt in make_scenes(photos, args.train_photos, args.train_scenes, config,
                                                         args.max_side, root, 0):
        frames, rel, response = read_scene(folder, options, how)
        responses.append(response)
        # One session per photograph: its scenes are what one shoot of one subject gives (the
        # CLI finds sessions by folder and capture time), so the fine-tune holds photographs out.
        train.append(TrainingBracket(name, frames, rel, session="" if args.split_by_bracket else photo))
    load_seconds = time.perf_counter() - t0
    held = []
    for _photo, name, folder, options, gt in make_scenes(photos, args.held_photos, args.held_scenes, config, args.max_side, root, 10_000):
        frames, rel, response = read_scene(folder, options, how)
        responses.append(response)
        held.append(Held(name, frames, rel, gt))

    start_model = build_model(state, "SAFNet-S")
    start = score(start_model, held)
    result = ConfigResult(config, start, {}, plain_merge(held), response=", ".join(f"{n} ×{responses.count(n)}" for n in sorted(set(responses))))
    result.curve.append((0, start["psnr_mu"]))
    print(f"[{config}] {len(train)} training brackets, {len(held)} held-out; start {start['psnr_mu']:.2f} dB PSNR-μ", flush=True)

    cfg = FinetuneConfig(seed=args.seed)
    if args.steps is not None:
        cfg.steps = args.steps
    if args.crop is not None:
        cfg.crop = args.crop
    if args.ema is not None:
        cfg.ema = args.ema
    curve_every = args.curve_every or 2 * cfg.val_every
    result.crop = fit_crop(cfg, "SAFNet-S", (min(b.frames[0].size[0] for b in train), min(b.frames[0].size[1] for b in train)), torch.device("cpu"))
    probe = build_model(state, "SAFNet-S")
    spent = [0.0]
    step_seconds: list[float] = []

    def on_step(report) -> None:
        if report.val_loss is None:
            step_seconds.append(report.seconds)
        if report.step % 50 == 0 or report.val_loss is not None:
            print(f"[{config}] step {report.step}/{report.steps} loss {report.loss:.4f}"
                  + (f" val {report.val_loss:.4f}" if report.val_loss is not None else ""), flush=True)

    def on_checkpoint(training_state) -> None:
        if training_state.step % curve_every and training_state.step != cfg.steps:
            return  # the curve every other validation: each point costs a held-out evaluation
        t = time.perf_counter()
        probe.load_state_dict(training_state.averaged or training_state.model)  # the weights validated and kept
        result.curve.append((training_state.step, score(probe, held)["psnr_mu"]))
        spent[0] += time.perf_counter() - t

    model = build_model(state, "SAFNet-S")
    t1 = time.perf_counter()
    outcome, _ = finetune(model, train, cfg, device=torch.device("cpu"), on_step=on_step, checkpoint_every=on_checkpoint)
    result.seconds = time.perf_counter() - t1 - spent[0]
    result.load_seconds = load_seconds
    result.seconds_per_step = float(np.mean(step_seconds)) if step_seconds else 0.0
    result.tuned = score(model, held)
    result.steps_done, result.best_step, result.stopped_early = outcome.steps_done, outcome.best_step, outcome.stopped_early
    result.start_val_loss, result.best_val_loss = outcome.start_val_loss, outcome.best_val_loss
    result.n_train, result.n_val = outcome.n_train, outcome.n_val
    result.val_losses = [(0, outcome.start_val_loss)] + [(s, v) for s, _, v in outcome.history if v is not None]
    print(f"[{config}] tuned {result.tuned['psnr_mu']:.2f} dB PSNR-μ (start {start['psnr_mu']:.2f}); best step "
          f"{outcome.best_step} of {outcome.steps_done}; {result.seconds:.0f} s", flush=True)
    return result


def plot(results: list[ConfigResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for r in results:
        steps, values = zip(*r.curve)
        ax.plot(steps, [v - r.start["psnr_mu"] for v in values], marker="o", ms=3,
                label=f"{r.config} (start {r.start['psnr_mu']:.1f} dB)")
        if r.best_step:
            ax.axvline(r.best_step, color=ax.lines[-1].get_color(), lw=0.6, ls=":")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("fine-tuning step")
    ax.set_ylabel("held-out PSNR-μ − start (dB)")
    ax.set_title("SAFNet-S fine-tuned on 20 own brackets (dotted: chosen step)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--steps", type=int, default=None, help="override FinetuneConfig.steps")
    ap.add_argument("--crop", type=int, default=None, help="override FinetuneConfig.crop")
    ap.add_argument("--max-side", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--ema", type=float, default=None, help="override FinetuneConfig.ema")
    ap.add_argument("--true-response", action="store_true",
                    help="read the configurations that use --response auto with their set's true curve instead")
    ap.add_argument("--split-by-bracket", action="store_true",
                    help="give the fine-tune no sessions, so it holds brackets out one by one (the split before sessions)")
    ap.add_argument("--curve-every", type=int, default=None, help="steps between curve points (default: every other validation)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--plot", type=Path)
    args = ap.parse_args()

    import torch

    from hdrmerge.testsets import read_hdr_image

    if args.threads:
        torch.set_num_threads(args.threads)
    shared = Path(os.environ.get("HDRMERGE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    args.train_photos, args.held_photos, args.train_scenes, args.held_scenes = TRAIN_PHOTOS, HELD_OUT_PHOTOS, 5, 3
    if args.quick:
        args.train_photos, args.held_photos, args.train_scenes, args.held_scenes = TRAIN_PHOTOS[:2], HELD_OUT_PHOTOS, 2, 1
        args.steps, args.crop, args.max_side = args.steps or 40, args.crop or 128, 256
    photos = {n: read_hdr_image(shared / "data" / "openexr_photos" / f"{n}.exr") for n in args.train_photos + args.held_photos}
    state = torch.load(shared / "weights" / "SAFNet_S_siggraph17.pth", weights_only=True, map_location="cpu")
    load_before = os.getloadavg()
    started = datetime.now(timezone.utc)
    results = []
    with tempfile.TemporaryDirectory(prefix="hdrmerge-finetune-bench-") as tmp:
        for config in args.configs.split(","):
            results.append(run_config(config, photos, state, args, Path(tmp)))
    load_after = os.getloadavg()

    print()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}; load average before {load_before[0]:.1f}, after {load_after[0]:.1f} "
          f"(1 min); started {started:%Y-%m-%d %H:%M} UTC")
    print("| configuration | response | start PSNR-μ | tuned PSNR-μ | gain | start PSNR-l | tuned PSNR-l | plain merge PSNR-μ | best step / done | fine-tune s | s/step | crop |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    for r in results:
        print(f"| {r.config} | {r.response} | {r.start['psnr_mu']:.2f} | {r.tuned['psnr_mu']:.2f} | "
              f"{r.tuned['psnr_mu'] - r.start['psnr_mu']:+.2f} | {r.start['psnr_l']:.2f} | {r.tuned['psnr_l']:.2f} | "
              f"{r.plain_merge['psnr_mu']:.2f} | {r.best_step} / {r.steps_done}{' (early stop)' if r.stopped_early else ''} | "
              f"{r.seconds:.0f} | {r.seconds_per_step:.2f} | {r.crop} |")
    print()
    for r in results:
        # The weights a run of --steps N would keep (lowest held-out loss at steps <= N; early
        # stopping aside), and their held-out PSNR-μ where the curve has that step.
        at = dict(r.curve)
        kept = []
        for n, _ in r.curve[1:]:
            best = min((v, s) for s, v in r.val_losses if s <= n)[1]
            if best in at:
                kept.append(f"{n}: step {best} {at[best] - r.start['psnr_mu']:+.2f}")
        print(f"{r.config}: kept for --steps N (N: step kept, held-out PSNR-μ − start): {'; '.join(kept)}")
    print()
    for r in results:
        gain = r.tuned["psnr_mu"] - r.start["psnr_mu"]
        if r.config in OFF_DOMAIN:
            verdict = "MET" if gain >= GAIN_DB else "MISSED"
            print(f"target {r.config}: gain ≥ +{GAIN_DB:g} dB PSNR-μ: {verdict} ({gain:+.2f} dB)")
        elif r.config == "in-domain":
            verdict = "MET" if gain >= -IN_DOMAIN_LOSS_DB else "MISSED"
            print(f"target in-domain: loss ≤ {IN_DOMAIN_LOSS_DB:g} dB PSNR-μ: {verdict} ({gain:+.2f} dB)")
        total = r.seconds + r.load_seconds
        print(f"target {r.config}: {r.n_train + r.n_val} brackets in < 15 min: {'MET' if total < WALL_LIMIT_S else 'MISSED'} "
              f"({total:.0f} s: {r.load_seconds:.0f} s reading, {r.seconds:.0f} s fine-tuning)")
    if args.json:
        args.json.write_text(json.dumps({
            "started": started.isoformat(), "load_before": load_before, "load_after": load_after,
            "threads": torch.get_num_threads(), "results": [asdict(r) for r in results]}, indent=1) + "\n")
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
