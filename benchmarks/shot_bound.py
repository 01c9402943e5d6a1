"""What the shots of a synthetic set allow: a perfectly aligned, noise-aware merge (issue #15).

An ``hdrmerge synth`` scene is the reference shot's scene (``HDRImg.hdr``,
short-exposure linear domain, clipped to [0, 1]) seen through three
exposures with known noise. This script re-shoots each scene *without* the
hand-held shift and the moving objects: every shot sees exactly the ground
truth, ``x_k = gt · 2^(ev_k − ev_short)``, with synth's noise model
(Gaussian, variance ``noise² + (4·noise)²·x_k``, added before clipping to
[0, 1]), gamma 2.2 and 16-bit quantisation, as ``hdrmerge synth`` writes
its TIFF shots (:mod:`hdrmerge.testsets`). It then merges the three shots
pixel by pixel and channel by channel with inverse-variance weights from the
known noise model (the true value's variance, so the weights do not depend
on the noise drawn), each shot brought to the short-exposure domain and used
only where its true value lies 3 standard deviations below clipping (the
short shot alone where none does), and scores the result against the
ground truth.

That is the best per-pixel merge of these shots: no alignment error, no
ghost, no response error, no clipping bias. It is not a hard ceiling: a
method that also denoises spatially (the network does) may beat it where
the scene is smooth. It tells how much is left for a merge to gain over the
network alone. The noise drawn is new (the set's own noise cannot be
separated from its shift), with a fixed seed, so the figure is repeatable.

    python benchmarks/shot_bound.py SET_FOLDER --noise 0.002   # e.g. a set from beyond_network.py --keep

``benchmarks/beyond_network.py`` reports it per set in the same run as
``--exact`` and the default.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

#: A shot is used where its true linear value lies this many standard deviations below clipping.
CLIP_MARGIN = 3.0
GAMMA = 2.2
LEVELS = 65535.0  # 16-bit TIFF, as the benchmark's sets


def perfect_merge(gt: np.ndarray, ev: list[float], noise: float, rng: np.random.Generator) -> np.ndarray:
    """H×W×3 float32 in [0, 1]: three aligned shots of ``gt`` (short domain) merged with inverse-variance weights.

    ``ev``: the shots' exposure values (any order; the smallest is the
    short-exposure domain); ``noise``: synth's read-noise sigma.
    """
    gt64 = gt.astype(np.float64)
    num = np.zeros_like(gt64)
    den = np.zeros_like(gt64)
    short = None
    for e in sorted(ev):
        ratio = 2.0 ** (e - min(ev))
        x = gt64 * ratio
        sigma = np.sqrt(noise**2 + (4 * noise) ** 2 * np.maximum(x, 0.0))
        y = np.clip(x + rng.standard_normal(x.shape) * sigma, 0.0, 1.0)
        code = np.round(y ** (1.0 / GAMMA) * LEVELS) / LEVELS
        z = code**GAMMA / ratio
        if short is None:
            short = z
        # Variance in the short domain: sensor noise plus the 16-bit step through the curve's slope.
        quant = (GAMMA * np.maximum(code, 1e-6) ** (GAMMA - 1.0)) ** 2 / (12.0 * LEVELS**2)
        var = (sigma**2 + quant) / ratio**2
        w = (x + CLIP_MARGIN * sigma <= 1.0) / var
        num += w * z
        den += w
    assert short is not None
    merged = np.where(den > 0, num / np.maximum(den, 1e-300), short)
    return np.clip(merged, 0.0, 1.0).astype(np.float32)


def scene_bound(scene: Path, noise: float, seed: int = 0) -> dict[str, float]:
    """PSNR-μ and PSNR-l (dB) of :func:`perfect_merge` on one synth scene folder."""
    from hdrmerge.metrics import psnr, psnr_mu
    from hdrmerge.testsets import read_hdr_image

    gt = read_hdr_image(scene / "HDRImg.hdr")
    ev = [float(v) for v in (scene / "exposure.txt").read_text().split()]
    merged = perfect_merge(gt, ev, noise, np.random.default_rng([seed, sum(map(ord, scene.name))]))
    return {"psnr_mu": psnr_mu(merged, gt), "psnr_l": psnr(merged, gt)}


def set_bound(folder: Path, noise: float) -> dict[str, dict[str, float]]:
    """scene name → :func:`scene_bound`, for every scene folder (one with HDRImg.hdr) in ``folder``."""
    return {p.name: scene_bound(p, noise) for p in sorted(folder.iterdir()) if (p / "HDRImg.hdr").is_file()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="an hdrmerge synth set (16-bit TIFF, gamma 2.2)")
    ap.add_argument("--noise", type=float, required=True, help="the set's --noise")
    args = ap.parse_args()
    found = set_bound(args.folder, args.noise)
    for name, s in found.items():
        print(f"{name}: PSNR-μ {s['psnr_mu']:.2f} dB, PSNR-l {s['psnr_l']:.2f} dB")
    mean = {k: float(np.mean([s[k] for s in found.values()])) for k in ("psnr_mu", "psnr_l")}
    print(json.dumps({"mean": {k: round(v, 2) for k, v in mean.items()}}))


if __name__ == "__main__":
    main()
