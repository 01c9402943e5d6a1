"""What hdrmerge adds after SAFNet's merge: a refinement guard and a shadow merge.

Both act per tile of :func:`hdrmerge.tiling.run_tiled`, on what the network
already computed there: the warped outer shots ``x0w``/``x2w``, the reference
``x1`` (each 1×6×h×w: linear ``ldr^2.2 / e`` in channels 0-2, the gamma-2.2
LDR in [0, 1] in channels 3-5), the first-stage merge ``hm`` and the refined
output ``out`` (1×3×h×w, short-exposure linear domain, [0, 1]). Neither
retrains or changes the network; ``--exact`` runs without them. AFUNet has no
first stage and no flows: they apply to SAFNet only.

* **Refinement guard.** Where the reference shot is well exposed it measures
  the scene directly (it needs no alignment), so the refined output must
  agree with it within the reference's noise. Where, averaged over a 5×5
  window, it departs by more than :data:`GUARD_Z` standard deviations, the
  output falls back to the first-stage merge ``hm``, blended smoothly (fully
  at twice that). Where the reference is dark the guard does not act. Where
  it is clipped, each channel the short shot records unclipped moves
  :data:`HIGHLIGHT_STEP` of the way to the median of the refined output, the
  first-stage merge and the warped short shot: a refinement that both depart
  from on one side is pulled back, and a short shot that departs from both
  (misaligned or moving there) is outvoted, so no ghost comes from it.
* **Shadow merge** (with the reference and the short shot too). Each outer
  shot's warped linear value is a second measurement of the scene, with its
  own noise (a long shot has less, in the short-exposure domain) plus the
  error of a sub-pixel misalignment (:data:`ALIGN_PX` times the local
  gradient). Wherever a shot is unclipped and agrees with the output within
  their noise over a 5×5 window, it is averaged into the output with
  inverse-variance weights (the output counting as :data:`OUTPUT_WEIGHT`
  reference shots). Whatever a shot's windowed disagreement with the output
  shows beyond the output's own error (:data:`OUTPUT_ERROR`) counts as the
  shot's variance too. Where motion makes a shot disagree, its weight is
  zero, so no ghost returns. Where the reference is well exposed (LDR above
  :data:`REFERENCE_ABOVE`, fully :data:`REFERENCE_FADE` higher) and
  unclipped, and not a JPEG (whose compression error the noise estimate
  does not see), the reference shot itself takes the output's place in this
  average: there it measures the scene better than the refined output, and
  it needs no alignment.

The noise of each shot is measured once per bracket, on the whole frame
(:func:`estimate_noise`), so tiles all use the same figures. The spatial
windows reach :data:`REACH` pixels; :func:`hdrmerge.tiling.run_tiled` grows
each tile by that much, so a tiled run still equals a whole-image run.

The constants were chosen from measurements on ``hdrmerge synth`` test sets
(``benchmarks/postmerge_choices.py``; docs/quality.md, "How the rules were chosen").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hdrmerge.reading import GAMMA

if TYPE_CHECKING:
    import torch

    from hdrmerge.reading import Frame

#: LDR value (gamma domain, any channel) from which a shot counts as saturated.
SATURATED = 0.98
#: The guard checks the output against the reference where its LDR value is above this
#: (below, the reference is too noisy to judge the refinement's denoising).
GUARD_DARK = 0.2
#: Mean normalised deviation (in standard deviations) where the guard starts to act; full at twice.
GUARD_Z = 2.0
#: Radius of the guard's averaging window (5×5).
GUARD_RADIUS = 2
#: Where the reference is clipped, the share of the way each channel the short shot
#: records unclipped moves to the median of the refined value, the first-stage merge
#: and the warped short shot (all of the way lost PSNR-l on every set: docs/quality.md).
HIGHLIGHT_STEP = 0.5
#: Where the reference's LDR value (brightest channel) is above this, fully at
#: REFERENCE_ABOVE + REFERENCE_FADE, and unclipped, the reference shot replaces the
#: refined output in the merge.
REFERENCE_ABOVE = 0.35
REFERENCE_FADE = 0.15
#: Mean normalised disagreement where a shot's weight starts to fall; zero at twice.
MERGE_Z = 2.0
#: Radius of the merge's consistency window (5×5).
MERGE_RADIUS = 2
#: Misalignment assumed for warped shots, pixels: adds (ALIGN_PX·gradient)² to their variance.
ALIGN_PX = 3.0
#: The refined output counts as this many reference shots. The network denoises, but
#: its output also carries the warped shots' errors: one shot was measured best.
OUTPUT_WEIGHT = 1.0
#: The output's error is taken as at most this many times the reference's variance
#: when a shot's disagreement with it is read as the shot's own error.
OUTPUT_ERROR = 1.0
#: Pixels of context the additions need around a pixel (guard window, then merge window).
REACH = GUARD_RADIUS + MERGE_RADIUS
#: Masks :func:`apply` returns (``--debug-dir`` writes them as PNG).
MASKS = ("guard", "guard_highlights", "merge_reference", "merge_long", "merge_short")


@dataclass(frozen=True)
class Additions:
    """Which additions run, and each shot's noise (short → long).

    ``noise``: standard deviation of each shot's LDR values (gamma domain,
    [0, 1] scale), from :func:`estimate_noise`; ``levels``: each shot's
    number of code values minus one (255 or 65535), for its quantisation noise;
    ``lossy``: the reference shot is a JPEG (it does not take the output's
    place in the merge).
    """

    guard: bool = True
    shadows: bool = True
    noise: tuple[float, float, float] = (0.01, 0.01, 0.01)
    levels: tuple[float, float, float] = (255.0, 255.0, 255.0)
    lossy: bool = False

    @property
    def active(self) -> bool:
        return self.guard or self.shadows


#: Laplacian-difference kernel of Immerkær (1996), "Fast noise variance estimation":
#: blind to linear gradients; its response to white noise of deviation σ has deviation 6σ.
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
#: Quantile of |response| used: low quantiles come from flat areas, not texture;
#: for Gaussian noise the 0.2 quantile of |N(0, 1)| is 0.2533.
_NOISE_QUANTILE, _NOISE_QUANTILE_Z = 0.2, 0.2533
#: Frames larger than this many pixels are measured on every n-th band of rows (the
#: quantile's partition dominates the estimate's cost; half a megapixel is plenty for one number).
_NOISE_MAX_PIXELS = 500_000


def estimate_noise(frame: Frame) -> float:
    """Standard deviation of a frame's noise, in LDR units ([0, 1], gamma domain).

    Immerkær's operator on each channel, over pixels between 0.05 and 0.9
    (away from clipping), the 0.2 quantile of its magnitude scaled to a
    deviation; the median over the channels. Large frames are measured on
    bands of rows (half a megapixel is plenty for one number).
    """
    import cv2

    pixels = frame.pixels
    h = pixels.shape[0]
    step = max(1, int(np.ceil(pixels.shape[0] * pixels.shape[1] / _NOISE_MAX_PIXELS)))
    if step > 1:  # bands of 16 rows, every step-th band
        rows = np.concatenate([np.arange(y, min(h, y + 16)) for y in range(0, h, 16 * step)])
        pixels = pixels[rows]
    values = []
    for c in range(pixels.shape[2]):
        x = pixels[..., c].astype(np.float32) / np.float32(frame.scale)
        r = cv2.filter2D(x, -1, _NOISE_KERNEL, borderType=cv2.BORDER_REFLECT)
        inside = ((x > 0.05) & (x < 0.9)).astype(np.uint8)
        inside = cv2.erode(inside, np.ones((3, 3), np.uint8)).astype(bool)
        if step > 1:  # the band edges are not neighbours in the frame
            inside[np.arange(inside.shape[0]) % 16 == 0] = False
            inside[np.arange(inside.shape[0]) % 16 == 15] = False
        if inside.sum() < 100:
            continue
        values.append(float(np.quantile(np.abs(r[inside]), _NOISE_QUANTILE)) / (6.0 * _NOISE_QUANTILE_Z))
    return float(np.median(values)) if values else 0.01


def settings_for(frames, *, guard: bool, shadows: bool) -> Additions | None:
    """The additions for three frames (short → long), noise measured; None if both are off."""
    if not (guard or shadows):
        return None
    noise = tuple(estimate_noise(f) for f in frames)
    levels = tuple(float(f.scale) for f in frames)
    return Additions(guard, shadows, noise, levels, lossy=frames[1].kind == "jpeg")  # type: ignore[arg-type]


def _smoothstep(t: torch.Tensor) -> torch.Tensor:
    t = t.clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _box(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2r+1)² window of the pixels inside the image (same at image borders tiled or not).

    Sums of shifted slices, rows then columns, divided by the number of the
    window's pixels inside the image (a rectangle, so rows × columns). The
    same as ``avg_pool2d(..., count_include_pad=False)`` to float rounding,
    at a fraction of its CPU time (``benchmarks/postmerge_cost.py``).
    """
    import torch
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    k = 2 * radius + 1
    p = F.pad(x, (radius, radius, 0, 0))
    rows = p[..., :, 0:w].clone()
    for i in range(1, k):
        rows += p[..., :, i : i + w]
    p = F.pad(rows, (0, 0, radius, radius))
    total = p[..., 0:h, :].clone()
    for i in range(1, k):
        total += p[..., i : i + h, :]

    def inside(n: int) -> torch.Tensor:
        i = torch.arange(n, device=x.device)
        return ((i + radius).clamp(max=n - 1) - (i - radius).clamp(min=0) + 1).to(x.dtype)

    return total.div_(inside(h)[:, None] * inside(w)[None, :])


#: Exponent of the variance's dependence on radiance: slope² of ``v^2.2`` at ``v = r^(1/2.2)``.
_VARIANCE_POWER = 2.0 * (GAMMA - 1.0) / GAMMA


def _radiance_power(radiance: torch.Tensor) -> torch.Tensor:
    """``radiance ^`` :data:`_VARIANCE_POWER` (radiance ≥ 0): computed once, shared by every shot's :func:`_variance`."""
    return radiance.clamp(min=0.0).pow(_VARIANCE_POWER)


def _variance(radiance_power: torch.Tensor, exposure: float, noise: float, levels: float) -> torch.Tensor:
    """Variance of a shot's linear value (short-exposure domain) at a radiance.

    ``radiance_power``: :func:`_radiance_power` of the radiance. The LDR
    noise ``noise`` (plus quantisation, step²/12) through the slope of
    ``v^2.2 / e``: ``(2.2·v^1.2 / e)²`` at ``v = (radiance·e)^(1/2.2)``, the
    shot's value clamped to its range [1e-4, 1].
    """
    # slope² = 2.2²·(radiance·e)^(2·1.2/2.2) / e², and (r·e)^p = r^p·e^p: the power
    # of the radiance is shared by all shots; clamping before or after it is the same.
    p = _VARIANCE_POWER
    gain = (noise * noise + 1.0 / (12.0 * levels * levels)) * GAMMA * GAMMA / (exposure * exposure)
    return (radiance_power * exposure**p).clamp_(1e-4**p, 1.0).mul_(gain)


def _gradient2(x: torch.Tensor) -> torch.Tensor:
    """Squared central-difference gradient magnitude per channel (edges replicated)."""
    import torch.nn.functional as F

    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    gx = (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) * 0.5
    gy = (p[..., 2:, 1:-1] - p[..., :-2, 1:-1]) * 0.5
    return gx * gx + gy * gy


def apply(
    x0w: torch.Tensor,
    x1: torch.Tensor,
    x2w: torch.Tensor,
    hm: torch.Tensor,
    out: torch.Tensor,
    exposures: tuple[float, float, float] | list[float],
    settings: Additions,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The output with the additions, and where they acted.

    Inputs as in the module docstring (any h×w window; values within
    :data:`REACH` px of a window edge that is not an image edge are wrong,
    crop them). Returns the new output (1×3×h×w, [0, 1]) and masks
    (1×1×h×w, [0, 1], named in :data:`MASKS`): ``guard`` the share of the
    first-stage merge, ``merge_reference`` / ``merge_long`` / ``merge_short``
    the share of the reference / long / short shot's weight in the final value.
    """
    import torch

    f = torch.float32
    # Plain NCHW float32: the tiles arrive channels_last (for the convolutions),
    # where these per-channel slices and reductions run slower.
    x0w, x1, x2w, hm, out = (t.to(f).contiguous() for t in (x0w, x1, x2w, hm, out))
    e0, e1, e2 = (float(e) for e in exposures)
    n0, n1, n2 = settings.noise
    q0, q1, q2 = settings.levels
    lin1 = x1[:, 0:3]
    ref_level = x1[:, 3:6].amax(1, keepdim=True)
    masks: dict[str, torch.Tensor] = {}
    zero = torch.zeros_like(ref_level)
    if settings.guard:
        var1 = _variance(_radiance_power(out), e1, n1, q1)
        judged = ((ref_level < SATURATED) & (ref_level > GUARD_DARK)).to(f)
        z2 = ((out - lin1) ** 2 / var1).mean(1, keepdim=True) * judged
        # Only where the reference is judged: spread into its clipped
        # neighbours, the fallback cost PSNR-l there (docs/quality.md).
        back = _smoothstep((_box(z2, GUARD_RADIUS).sqrt() - GUARD_Z) / GUARD_Z) * judged
        out = out + back * (hm - out)
        masks["guard"] = back
        # Where the reference is clipped it cannot judge the refinement; there
        # each channel the short shot records unclipped moves HIGHLIGHT_STEP of
        # the way to the median of the refined value, the first-stage merge
        # and the warped short shot: a value the other two both depart from on
        # one side is pulled back, and a warped short shot that departs from
        # both (misaligned, or moving) is outvoted (docs/quality.md, "How the
        # rules were chosen").
        clipped = ref_level >= SATURATED
        if bool(clipped.any()):
            lin0 = x0w[:, 0:3]
            lo, hi = torch.minimum(out, hm), torch.maximum(out, hm)
            median = torch.maximum(lo, torch.minimum(hi, lin0))
            moves = clipped & (x0w[:, 3:6] < SATURATED) & (median != out)
            out = torch.where(moves, out + HIGHLIGHT_STEP * (median - out), out)
            masks["guard_highlights"] = moves.to(f).mean(1, keepdim=True)
    if settings.shadows:
        power = _radiance_power(out)
        var1 = _variance(power, e1, n1, q1)
        # Where the reference is well exposed, the shot alone measures the
        # scene better than the refined output (docs/quality.md, "How the
        # rules were chosen"): there it takes the output's place in the
        # merge, at its own inverse variance. It needs no alignment, so it
        # brings no ghost.
        if settings.lossy:
            # A JPEG's compression error is blocky and smeared around highlights,
            # and the noise estimate (a high-pass measure) does not see it: such
            # a reference is not trusted over the output (docs/quality.md, "JPEG brackets").
            bright = torch.zeros_like(ref_level)
        else:
            bright = _smoothstep((ref_level - REFERENCE_ABOVE) / REFERENCE_FADE) * (ref_level < SATURATED).to(f)
        own = OUTPUT_WEIGHT * (1.0 - bright)
        inv1 = var1.reciprocal()
        num = (own * out + bright * lin1).mul_(inv1)
        den = (own + bright) * inv1
        shares = {"merge_reference": bright * inv1}
        var_out = var1 / OUTPUT_WEIGHT
        mean_var1 = var1.mean(1, keepdim=True)
        for name, xk, ek, nk, qk in (("merge_long", x2w, e2, n2, q2), ("merge_short", x0w, e0, n0, q0)):
            lin = xk[:, 0:3]
            usable = (xk[:, 3:6].amax(1, keepdim=True) < SATURATED).to(f)
            if not bool((usable > 0).any()):  # this shot is clipped all over the window
                continue
            var = _variance(power, ek, nk, qk).add_(_gradient2(lin).mul_(ALIGN_PX * ALIGN_PX))
            d2 = (lin - out).square_()
            # Judged against the output's own (smaller) variance: a shot whose
            # misalignment hides in the reference's noise would still add error.
            z2 = (d2 / (var + var_out)).mean(1, keepdim=True)
            # Clipped pixels count as far off, so that a window touching them is doubted.
            z2 = _box(z2 * usable + (1.0 - usable) * 100.0, MERGE_RADIUS)
            take = (1.0 - _smoothstep((z2.sqrt() - MERGE_Z) / MERGE_Z)) * usable
            # What the shot's disagreement with the output shows beyond the
            # output's own error (misalignment the noise model misses, texture
            # counted as noise) lowers its weight: mean square difference over
            # the window, less OUTPUT_ERROR reference variances.
            excess = _box(d2.mean(1, keepdim=True), MERGE_RADIUS) - OUTPUT_ERROR * mean_var1
            w = take / torch.maximum(var, excess)
            num += w * lin
            den += w
            shares[name] = w
        out = num / den
        for name, w in shares.items():
            masks[name] = (w / den).mean(1, keepdim=True)
    for name in MASKS:
        masks.setdefault(name, zero)
    return out.clamp(0.0, 1.0), masks
