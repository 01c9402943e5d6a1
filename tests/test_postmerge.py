"""hdrmerge's additions after SAFNet (hdrmerge/postmerge.py): guard, shadow merge, noise, tiling."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from hdrmerge import postmerge
from hdrmerge.models import build_model
from hdrmerge.postmerge import Additions, apply, estimate_noise
from hdrmerge.reading import GAMMA, Frame, read_frame
from hdrmerge.tiling import run_tiled
from hdrmerge.weights.store import read_pth
from tests.conftest import DATA, SAFNET_S_PTH

CPU = torch.device("cpu")
EXPOSURES = (1.0, 4.0, 16.0)
NOISE = 0.01  # LDR units, each shot


def _shot(radiance: torch.Tensor, exposure: float, noise: float = 0.0, seed: int = 0) -> torch.Tensor:
    """1×6×h×w network input of a shot of ``radiance`` (short-exposure domain), with LDR noise."""
    g = torch.Generator().manual_seed(seed)
    ldr = (radiance * exposure).clamp(0, 1) ** (1 / GAMMA)
    ldr = (ldr + noise * torch.randn(ldr.shape, generator=g)).clamp(0, 1)
    return torch.cat((ldr**GAMMA / exposure, ldr), dim=1)


def _settings(guard: bool = True, shadows: bool = True) -> Additions:
    return Additions(guard, shadows, (NOISE, NOISE, NOISE), (65535.0, 65535.0, 65535.0))


def _flat(value: float, h: int = 32, w: int = 32) -> torch.Tensor:
    return torch.full((1, 3, h, w), value)


def test_guard_falls_back_to_the_first_stage_where_the_output_leaves_the_reference():
    truth = _flat(0.05)  # mid-grey in the reference (exposure 4: LDR 0.6)
    x0, x1, x2 = (_shot(truth, e) for e in EXPOSURES)
    hm = truth.clone()
    out = truth.clone()
    out[..., :, 16:] *= 1.5  # the refinement invents light in the right half
    new, masks = apply(x0, x1, x2, hm, out, EXPOSURES, _settings(shadows=False))
    # Right half, away from the 5×5 window's reach of the edge: all first stage.
    assert torch.allclose(new[..., :, 19:], hm[..., :, 19:], atol=1e-6)
    assert masks["guard"][..., :, 19:].min() == 1.0
    # Left half: the output agrees with the reference, nothing changes.
    assert torch.equal(new[..., :, :13], out[..., :, :13])
    assert masks["guard"][..., :, :13].max() == 0.0
    assert masks["merge_long"].max() == 0.0 and masks["merge_short"].max() == 0.0


def test_guard_leaves_saturated_and_dark_reference_regions_to_the_network():
    # Where the reference is clipped (or too dark to judge), it says nothing
    # about the refinement's value: no fallback, however far apart they are.
    # (Where it is clipped and the short shot is not, the highlight rule below acts.)
    for radiance in (1.0, 0.0005):  # every shot clipped; reference LDR 0.08 (below GUARD_DARK)
        truth = _flat(radiance)
        x0, x1, x2 = (_shot(truth, e) for e in EXPOSURES)
        out = truth * 0.7
        new, masks = apply(x0, x1, x2, truth, out, EXPOSURES, _settings(shadows=False))
        assert torch.equal(new, out) and masks["guard"].max() == 0.0 and masks["guard_highlights"].max() == 0.0


def test_guard_pulls_clipped_highlights_halfway_to_the_median_of_refinement_first_stage_and_short_shot():
    # An orange light, clipped in the reference (LDR 1.0 / 1.0 / 0.66) and in the
    # short shot's red channel, recorded unclipped in its green and blue.
    truth = _flat(1.0, 32, 64) * torch.tensor([1.0, 0.3, 0.1]).view(1, 3, 1, 1)
    x0, x1, x2 = (_shot(truth, e) for e in EXPOSURES)
    assert bool((x1[:, 3:6].amax(1) >= postmerge.SATURATED).all()) and bool((x0[:, 4:6] < postmerge.SATURATED).all())
    hm = truth.clone()
    out = truth * 0.8
    out[..., 32:] = truth[..., 32:] * 1.5  # left: a refinement too dark; right: it invents light
    new, masks = apply(x0, x1, x2, hm, out, EXPOSURES, _settings(shadows=False))
    # The first stage and the short shot agree: green and blue move half of the way back to them.
    assert torch.allclose(new[:, 1:3], out[:, 1:3] + postmerge.HIGHLIGHT_STEP * (truth[:, 1:3] - out[:, 1:3]), atol=1e-6)
    # Red is clipped in the short shot too: nothing judges it, it is left as it is (in [0, 1]).
    assert torch.equal(new[:, 0], out[:, 0].clamp(0, 1))
    assert torch.allclose(masks["guard_highlights"], torch.full_like(masks["guard_highlights"], 2 / 3))
    assert masks["guard"].max() == 0.0  # the reference guard does not act where the reference is clipped
    # A warped short shot that departs from both (it moved) is outvoted: the value
    # stays between the refinement and the first stage, never goes towards the shot.
    ghost = _shot(truth * 0.1, EXPOSURES[0])
    new, masks = apply(ghost, x1, x2, hm, out, EXPOSURES, _settings(shadows=False))
    lo, hi = torch.minimum(out, hm), torch.maximum(out, hm)
    assert bool(((new >= lo - 1e-6) & (new <= hi + 1e-6)).all())
    # Left (refinement too dark), the median is the refinement itself: unchanged.
    assert torch.equal(new[..., :32], out[..., :32])
    # Right (too bright), the median is the first stage: halfway back to it.
    assert torch.allclose(new[:, 1:3, :, 32:], 0.5 * (out + hm)[:, 1:3, :, 32:], atol=1e-6)
    # Off (--no-guard): nothing changes.
    new, masks = apply(x0, x1, x2, hm, out, EXPOSURES, _settings(guard=False, shadows=False))
    assert torch.equal(new, out.clamp(0, 1))


def test_shadow_merge_lowers_the_noise_of_dark_regions_towards_the_long_shot():
    truth = _flat(0.002, 64, 64)  # reference LDR ≈ 0.12, long shot ≈ 0.23
    x0, x1, x2 = (_shot(truth, e, NOISE, seed=i) for i, e in enumerate(EXPOSURES))
    out = x1[:, 0:3].clone()  # a refinement that kept the reference's noise
    new, masks = apply(x0, x1, x2, out, out, EXPOSURES, _settings(guard=False))
    err_before = (out - truth).pow(2).mean().sqrt()
    err_after = (new - truth).pow(2).mean().sqrt()
    # The output counts as OUTPUT_WEIGHT reference shot(s); the long shot, 4x
    # the exposure, has ~3.5x less variance here, raised by the misalignment
    # term (the gradient of its own noise) and windowed doubt: ~35% of the weight.
    assert masks["merge_long"].mean() > 0.3
    assert err_after < 0.7 * err_before
    # The short shot, 4x darker, joins too but at the small share its variance allows.
    assert masks["merge_short"].mean() < 0.1
    # The reference is dark: it does not replace the output.
    assert masks["merge_reference"].max() == 0.0


def test_shadow_merge_takes_nothing_where_the_long_shot_shows_something_else():
    # A bright object in the long shot only (it moved): its weight must be zero
    # there, so the output is what it is without the long shot and no ghost appears.
    truth = _flat(0.002, 64, 64)
    x0, x1, x2 = (_shot(truth, e, NOISE, seed=i) for i, e in enumerate(EXPOSURES))
    ghost = truth.clone()
    ghost[..., 20:44, 20:44] = 0.01  # 5x brighter: LDR 0.46 in the long shot
    x2g = _shot(ghost, EXPOSURES[2], NOISE, seed=2)
    out = x1[:, 0:3].clone()
    new, masks = apply(x0, x1, x2g, out, out, EXPOSURES, _settings(guard=False))
    inside = (..., slice(22, 42), slice(22, 42))
    assert masks["merge_long"][inside].max() == 0.0
    clipped = _shot(_flat(1.0, 64, 64), EXPOSURES[2])  # a long shot clipped all over: never used
    without, _ = apply(x0, x1, clipped, out, out, EXPOSURES, _settings(guard=False))
    assert torch.allclose(new[inside], without[inside], rtol=1e-5, atol=0)
    # Away from the object (beyond the window's reach) the long shot is used
    # exactly as it is without the object.
    _, clean = apply(x0, x1, x2, out, out, EXPOSURES, _settings(guard=False))
    assert clean["merge_long"].mean() > 0.25
    assert torch.equal(masks["merge_long"][..., 48:, :], clean["merge_long"][..., 48:, :])


def test_short_shot_joins_in_highlights_only_where_it_agrees():
    truth = _flat(0.2, 48, 96)  # reference LDR ≈ 0.90: near clipping; short shot 0.48
    moved = truth.clone()
    moved[..., :, 48:] = 0.05  # the right half is something else in the short shot
    x1, x2 = (_shot(truth, e, NOISE, seed=i) for i, e in ((1, EXPOSURES[1]), (2, EXPOSURES[2])))
    x0 = _shot(moved, EXPOSURES[0], NOISE, seed=0)
    out = x1[:, 0:3].clone()
    new, masks = apply(x0, x1, x2, out, out, EXPOSURES, _settings(guard=False))
    share = masks["merge_short"]
    # Left: the short shot agrees and takes its inverse-variance share (with
    # equal LDR noise it is the noisier measurement two stops down: a few %).
    assert 0.01 < share[..., :, :44].mean() < 0.3
    assert (new[..., :, :44] - truth[..., :, :44]).pow(2).mean() < (out[..., :, :44] - truth[..., :, :44]).pow(2).mean()
    # Right: it disagrees, so it gets nothing; the long shot is clipped everywhere.
    assert share[..., :, 51:].max() == 0.0
    assert masks["merge_long"].max() == 0.0


def test_reference_replaces_the_output_where_it_is_well_exposed_and_unclipped():
    truth = _flat(0.1, 48, 96)  # reference LDR ≈ 0.66, short shot ≈ 0.35, long shot clipped
    truth[..., :, 48:] = 0.5  # right half: clipped in the reference
    x0, x1, x2 = (_shot(truth, e, NOISE, seed=i) for i, e in enumerate(EXPOSURES))
    out = truth * 1.1  # a smooth refinement, 10% too bright
    new, masks = apply(x0, x1, x2, out, out, EXPOSURES, _settings(guard=False))
    left, right = (..., slice(None), slice(0, 44)), (..., slice(None), slice(52, None))
    # Left: the output has no weight; the reference (far less noisy in linear
    # terms than the short shot) takes almost all of it, and the bias is gone.
    assert masks["merge_reference"][left].mean() > 0.85
    assert abs(float(new[left].mean()) - 0.1) < 0.002
    assert (new[left] - truth[left]).pow(2).mean() < 0.2 * (out[left] - truth[left]).pow(2).mean()  # only its noise is left
    # Right: a clipped reference says nothing; the output keeps its weight.
    assert masks["merge_reference"][right].max() == 0.0
    assert masks["merge_long"].max() == 0.0


def _jpeg_shot(radiance: torch.Tensor, exposure: float) -> torch.Tensor:
    """:func:`_shot` of ``radiance`` through an 8-bit JPEG (quality 95, OpenCV's default 4:2:0 chroma)."""
    ldr = ((radiance * exposure).clamp(0, 1) ** (1 / GAMMA))[0].permute(1, 2, 0).numpy()
    ok, data = cv2.imencode(".jpg", np.round(ldr * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    decoded = torch.from_numpy(cv2.imdecode(data, cv2.IMREAD_UNCHANGED).astype(np.float32) / 255).permute(2, 0, 1)[None]
    return torch.cat((decoded**GAMMA / exposure, decoded), dim=1)


def test_a_jpeg_reference_does_not_replace_the_output():
    # An orange wall (reference LDR up to 0.66) with white stripes 3 px wide that
    # clip in the reference. JPEG smears the stripes' chroma into their
    # neighbours, which decode unclipped but with the wrong colour: an error
    # the noise model knows nothing of.
    truth = _flat(0.1, 64, 64) * torch.tensor([1.0, 0.5, 0.25]).view(1, 3, 1, 1)
    for c in (5, 6, 7):
        truth[..., :, c::11] = 0.5
    x0, x2 = _shot(truth, EXPOSURES[0]), _shot(truth, EXPOSURES[2])
    x1 = _jpeg_shot(truth, EXPOSURES[1])
    stripes = truth[0, 0] > 0.3
    assert bool((x1[0, 3:6].amax(0)[stripes] >= postmerge.SATURATED).all())  # clipped where the stripes are
    near = torch.from_numpy(cv2.dilate(stripes.numpy().astype(np.uint8), np.ones((5, 5), np.uint8)) > 0) & ~stripes
    out = truth.clone()  # a refinement that knows the scene
    results = {}
    for lossy in (False, True):
        settings = Additions(False, True, (0.004,) * 3, (255.0,) * 3, lossy=lossy)
        new, masks = apply(x0, x1, x2, out, out, EXPOSURES, settings)
        results[lossy] = ((new - truth).pow(2).mean(1)[0][near].mean(), masks["merge_reference"][0, 0])
    # Taken as a lossless shot, the smeared neighbours replace the output and are off.
    (err_plain, share_plain), (err_jpeg, share_jpeg) = results[False], results[True]
    assert share_plain[near].min() > 0.5 and err_plain > 1e-5
    # As a JPEG it has no share anywhere, and the output stays.
    assert share_jpeg.max() == 0.0 and err_jpeg < 0.01 * err_plain


def test_settings_mark_a_jpeg_reference_as_lossy():
    pixels = _noisy_frame(0.01).pixels
    for kind, lossy in (("jpeg", True), ("tiff", False), ("png", False)):
        frames = [Frame(DATA / "synthetic", pixels, "tiff"), Frame(DATA / "synthetic", pixels, kind), Frame(DATA / "synthetic", pixels, "tiff")]
        settings = postmerge.settings_for(frames, guard=True, shadows=True)
        assert settings is not None and settings.lossy is lossy


def _noisy_frame(sigma: float, seed: int = 0) -> Frame:
    rng = np.random.default_rng(seed)
    # A smooth gradient with a few hard edges: texture must not count as noise.
    y, x = np.mgrid[0:400, 0:600].astype(np.float32)
    base = 0.2 + 0.5 * x / 600 + 0.1 * (((x // 50) + (y // 50)) % 2)
    img = np.repeat(base[..., None], 3, axis=2) + rng.normal(0, sigma, (400, 600, 3))
    pixels = np.round(np.clip(img, 0, 1) * 65535).astype(np.uint16)
    return Frame(DATA / "synthetic", pixels, "tiff")


@pytest.mark.parametrize("sigma", [0.003, 0.01, 0.03])
def test_noise_estimate_measures_known_noise(sigma):
    assert estimate_noise(_noisy_frame(sigma)) == pytest.approx(sigma, rel=0.15)


def _crop(frame: Frame, h: int, w: int, y: int = 0, x: int = 0) -> Frame:
    return Frame(frame.path, np.ascontiguousarray(frame.pixels[y : y + h, x : x + w]), frame.kind, frame.exif)


def test_tiled_equals_whole_with_the_additions_on():
    frames = [_crop(read_frame(DATA / "kalantari_test002_jpeg" / f"input_{i}_aligned.tif"), 300, 420, 500, 300) for i in (1, 2, 3)]
    model = build_model(read_pth(SAFNET_S_PTH))
    exp = [1.0, 8.0, 64.0]
    settings = postmerge.settings_for(frames, guard=True, shadows=True)
    assert settings is not None
    whole = run_tiled(model, frames, exp, flow_scale=0.5, tile=1024, device=CPU, intermediates=True, additions=settings)
    tiled = run_tiled(model, frames, exp, flow_scale=0.5, tile=96, device=CPU, intermediates=True, additions=settings)
    plain = run_tiled(model, frames, exp, flow_scale=0.5, tile=1024, device=CPU)
    assert whole.tiles == 1 and tiled.tiles == 20  # 300×420 in 96-px tiles: 4×5
    assert np.abs(tiled.hdr - whole.hdr).max() <= 1e-4
    for name in postmerge.MASKS:
        assert np.abs(tiled.additions[name] - whole.additions[name]).max() <= 1e-4
    # Not a vacuous comparison: the additions changed the output here.
    assert np.abs(whole.hdr - plain.hdr).max() > 1e-3
    assert whole.additions["merge_long"].max() > 0.1
