"""Tiled execution equals whole-image execution; tiles, memory, OOM retry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hdrmerge.errors import InputError
from hdrmerge.models import build_model, make_frames
from hdrmerge.reading import Frame, read_frame
from hdrmerge.tiling import choose_tile, parse_memory, plan_tiles, resolve_flow_scale, run_tiled
from hdrmerge.weights.store import read_pth
from tests.conftest import DATA, RANDOM_SAFNET_PTH, SAFNET_S_PTH

CPU = torch.device("cpu")


def _whole(model, frames, exposures, scale):
    ldrs = [torch.from_numpy(f.pixels.astype(np.float32) / f.scale).permute(2, 0, 1)[None] for f in frames]
    with torch.inference_mode():
        out = model.run(*make_frames(ldrs, exposures), scale=scale)
    return out.hdr[0].permute(1, 2, 0).numpy(), out.hdr_m[0].permute(1, 2, 0).numpy()


def _crop(frame: Frame, h: int, w: int, y: int = 0, x: int = 0) -> Frame:
    return Frame(frame.path, np.ascontiguousarray(frame.pixels[y : y + h, x : x + w]), frame.kind, frame.exif)


@pytest.fixture(scope="module")
def kalantari():
    return [read_frame(DATA / "kalantari_test002_jpeg" / f"input_{i}_aligned.tif") for i in (1, 2, 3)]


def test_tiled_equals_whole_safnet_s_real_bracket(kalantari):
    # The middle of the photograph (people who moved between the shots), at a
    # size that is no multiple of 16 at flow scale 0.5, so the flow input is resized.
    frames = [_crop(f, 500, 760, 250, 370) for f in kalantari]
    model = build_model(read_pth(SAFNET_S_PTH))
    exp = [1.0, 8.0, 64.0]
    whole, whole_m = _whole(model, frames, exp, 0.5)
    tiled = run_tiled(model, frames, exp, flow_scale=0.5, tile=192, device=CPU, intermediates=True)
    assert tiled.tiles == 12  # 760×500 in 192-px tiles: 4×3, the last ones partial
    assert np.abs(tiled.hdr - whole).max() <= 1e-4
    assert np.abs(tiled.hdr_m - whole_m).max() <= 1e-4


def test_tiled_equals_whole_safnet_large_motion():
    # Pingpong: a paddle swung across the frame, flows of 100+ px reaching
    # far outside each tile; SAFNet warps features that need context too.
    frames = [_crop(read_frame(DATA / "ius_pingpong" / n), 400, 608, 300, 500) for n in ("Img1.JPG", "Img2.JPG", "Img3.JPG")]
    model = build_model(read_pth(RANDOM_SAFNET_PTH))
    exp = [1.0, 4.0, 16.0]
    whole, _ = _whole(model, frames, exp, 0.5)
    tiled = run_tiled(model, frames, exp, flow_scale=0.5, tile=160, device=CPU)
    assert tiled.tiles == 12  # 4×3, uneven
    assert np.abs(tiled.hdr - whole).max() <= 1e-4


def test_tiled_equals_whole_when_no_resize_is_needed(kalantari):
    frames = [_crop(f, 256, 320) for f in kalantari]  # multiples of 16 at scale 1
    model = build_model(read_pth(SAFNET_S_PTH))
    whole, _ = _whole(model, frames, [1.0, 8.0, 64.0], 1.0)
    tiled = run_tiled(model, frames, [1.0, 8.0, 64.0], flow_scale=1.0, tile=100, device=CPU)
    assert np.abs(tiled.hdr - whole).max() <= 1e-4


def test_tiled_decoder_step_equals_whole(kalantari):
    # At scale 1 the finest decoder step sees 304×208 features; 96-px windows split it 4×3.
    frames = [_crop(f, 400, 600, 300, 400) for f in kalantari]
    model = build_model(read_pth(SAFNET_S_PTH))
    exp = [1.0, 8.0, 64.0]
    whole, _ = _whole(model, frames, exp, 1.0)
    tiled = run_tiled(model, frames, exp, flow_scale=1.0, tile=256, device=CPU, decoder_tile=96, intermediates=True)
    with torch.inference_mode():
        ldrs = [torch.from_numpy(f.pixels.astype(np.float32) / 255.0).permute(2, 0, 1)[None] for f in frames]
        motion = model.estimate_motion(*make_frames(ldrs, exp), scale=1.0)
    assert np.abs(tiled.flow0 - motion.flow0[0].permute(1, 2, 0).numpy()).max() <= 5e-3
    assert np.abs(tiled.mask2 - motion.mask2[0].permute(1, 2, 0).numpy()).max() <= 1e-4
    assert np.abs(tiled.hdr - whole).max() <= 1e-4


@pytest.mark.parametrize("h,w,tile", [(1000, 1500, 384), (7, 9, 64), (512, 512, 256), (4000, 6000, 1000)])
def test_tiles_cover_the_image_exactly_once(h, w, tile):
    cover = np.zeros((h, w), np.int32)
    for win in plan_tiles(h, w, tile):
        cover[win.y0 : win.y1, win.x0 : win.x1] += 1
        assert win.shape[0] <= tile and win.shape[1] <= tile
    assert (cover == 1).all()


def test_choose_tile_grows_with_budget_and_is_even():
    small = choose_tile("SAFNet-S", 256 * 2**20, 12, (4000, 6000))
    large = choose_tile("SAFNet-S", 4 * 2**30, 12, (4000, 6000))
    assert small % 2 == 0 and large % 2 == 0 and 64 <= small < large <= 4096
    assert choose_tile("SAFNet", 4 * 2**30, 23, (4000, 6000)) < large  # the big model needs more per pixel
    assert choose_tile("SAFNet-S", 64 * 2**30, 12, (200, 300)) == 300  # never larger than the image


def test_decoder_window_follows_the_budget():
    from hdrmerge.tiling import DECODER_BYTES_PER_PIXEL, DECODER_REACH, choose_decoder_tile

    for budget in (2**28, 2**29, 2**30):
        side = choose_decoder_tile(budget)
        assert side % 2 == 0 and (side + 2 * DECODER_REACH) ** 2 * DECODER_BYTES_PER_PIXEL <= budget
    assert choose_decoder_tile(2**28) < choose_decoder_tile(2**30)


def test_parse_memory():
    assert parse_memory("4GB") == 4 * 2**30
    assert parse_memory("512M") == 512 * 2**20
    assert parse_memory("1.5GiB") == int(1.5 * 2**30)
    with pytest.raises(InputError, match=r"^--max-memory 'lots': give a size such as 4GB or 512MB$"):
        parse_memory("lots")


def test_auto_flow_scale_matches_training_resolution():
    assert resolve_flow_scale(None, (1000, 1500)) == 0.5  # what the network was trained with
    assert resolve_flow_scale(None, (4000, 6000)) == 0.125
    assert resolve_flow_scale(None, (400, 600)) == 1.0
    assert resolve_flow_scale(0.5, (4000, 6000)) == 0.5


def test_out_of_memory_halves_the_tile_and_retries(kalantari, monkeypatch):
    frames = [_crop(f, 300, 400) for f in kalantari]
    model = build_model(read_pth(SAFNET_S_PTH))
    exp = [1.0, 8.0, 64.0]
    whole, _ = _whole(model, frames, exp, 0.5)
    real_forward = type(model.refinenet).forward
    seen = []

    def picky(self, s0w, x1, s2w, motion, hdr_m):
        seen.append(x1.shape[-1])
        if x1.shape[-1] > 150:  # pretend wide tiles do not fit on the GPU
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_forward(self, s0w, x1, s2w, motion, hdr_m)

    monkeypatch.setattr(type(model.refinenet), "forward", picky)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    out = run_tiled(model, frames, exp, flow_scale=0.5, tile=400, device=CPU)
    assert out.tile == 100 and seen[0] == 400  # 400 → 200 → 100 (+ 12-px margins)
    assert np.abs(out.hdr - whole).max() <= 1e-4


def test_other_errors_are_raised_not_retried(kalantari, monkeypatch):
    model = build_model(read_pth(SAFNET_S_PTH))

    def broken(*a, **k):
        raise RuntimeError("something else")

    monkeypatch.setattr(type(model.refinenet), "forward", broken)
    with pytest.raises(RuntimeError, match="something else"):
        run_tiled(model, [_crop(f, 64, 64) for f in kalantari], [1.0, 8.0, 64.0], flow_scale=0.5, tile=64, device=CPU)


def test_tile_progress_counts_every_tile_and_changes_nothing(kalantari):
    """The progress callback (the CLI's tile bar) sees done/total after each
    tile, in order, and the result is bitwise the one without it."""
    model = build_model(read_pth(SAFNET_S_PTH))
    frames = [_crop(f, 150, 200) for f in kalantari]
    seen: list[tuple[int, int]] = []
    quiet = run_tiled(model, frames, [1.0, 8.0, 64.0], flow_scale=0.5, tile=64, device=CPU)
    told = run_tiled(model, frames, [1.0, 8.0, 64.0], flow_scale=0.5, tile=64, device=CPU,
                     on_tile=lambda done, total: seen.append((done, total)))
    assert quiet.tiles == 12 and seen == [(i, 12) for i in range(1, 13)]
    assert np.array_equal(quiet.hdr, told.hdr)
