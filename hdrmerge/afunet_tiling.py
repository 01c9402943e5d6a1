"""AFUNet on a bracket: input preparation, overlapping tiles, cost estimate.

Input preparation follows the authors' dataset code and test.py
(docs/afunet-spec.md sections 2-3): per frame ``ldr = code / 65536`` (16-bit;
``257·code / 65536`` for 8-bit frames), ``lin = ldr ** 2.2 / e`` with ``e``
relative to the shortest frame, 18 channels ``[lin0, ldr0, lin1, ldr1, lin2,
ldr2]``; the image is reflect-padded at the bottom and right up to a multiple
of 128 (sides of 64 px or less: to a multiple of 8, where the authors' rule is
impossible), run, and cropped.

AFUNet cannot be tiled exactly: each of its eight CAPO operators normalises
and correlates features over the whole (padded) image, so the output at every
pixel depends on every other one (at the 1e-3 level with the fixture's random
weights). Images whose padded size fits the tile run whole, exactly as the
authors run them. Larger ones run in square tiles whose neighbours overlap by
:data:`CONTEXT` px of context on each side plus :data:`BLEND` px over which
the two outputs cross-fade linearly, so a tile's small global offset turns into
a gradient over 32 px instead of a step: no seam. Tile origins are multiples
of 8, so every tile's attention windows coincide with the whole image's.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING

import numpy as np

from hdrmerge.errors import InputError
from hdrmerge.tiling import Result, Window

if TYPE_CHECKING:
    import torch

#: Pixels at a tile's inner edge that only give context (weight 0).
CONTEXT = 32
#: Pixels over which neighbouring tiles cross-fade.
BLEND = 32
#: Overlap of neighbouring tiles.
OVERLAP = 2 * CONTEXT + BLEND
#: Smallest tile side, and the unit tile sides are rounded to (the authors' padding unit).
MIN_TILE = 256
TILE_UNIT = 128
MAX_TILE = 4096
#: Smallest side AFUNet takes (its reflect padding to a multiple of 8 needs pad < side).
MIN_SIDE = 16
#: Peak working memory per pixel of a tile, float32: the rise of the resident
#: high-water mark during a merge, per padded pixel, measured by
#: ``benchmarks/afunet_cost.py`` at 7,050-9,262 bytes (256² and 384² crops).
BYTES_PER_PIXEL = 9000
#: CPU-seconds per megapixel of padded input, float32, measured by
#: ``benchmarks/afunet_cost.py`` on this project's 2-core machine.
CPU_SECONDS_PER_MP = 280.0
#: A CPU run estimated longer than this gets a warning first.
WARN_AFTER_S = 60.0


def padded_side(n: int) -> int:
    """The side after the authors' padding: next multiple of 128, else (side <= 64) of 8."""
    pad = (-n) % TILE_UNIT
    if pad >= n:
        pad = 0
    return n + pad + (-(n + pad)) % 8


def plan_axis(n: int, tile: int) -> list[tuple[int, int]]:
    """Spans ``(start, stop)`` of tiles along a side of ``n`` px, neighbours overlapping by >= OVERLAP.

    Starts are multiples of 8 except possibly the last, which ends at ``n``.
    """
    if n <= tile:
        return [(0, n)]
    step = (tile - OVERLAP) // 8 * 8
    spans = []
    start = 0
    while start + tile < n:
        spans.append((start, start + tile))
        start += step
    spans.append((n - tile, n))
    return spans


def axis_weights(span: tuple[int, int], n: int) -> np.ndarray:
    """Blending weight along one side of a tile: 0 over CONTEXT px, a ramp over BLEND px, then 1.

    Only inner edges (not the image border) are faded.
    """
    start, stop = span
    x = np.arange(start, stop, dtype=np.float64) + 0.5
    w = np.ones(stop - start)
    if start > 0:
        w = np.minimum(w, np.clip((x - start - CONTEXT) / BLEND, 0.0, 1.0))
    if stop < n:
        w = np.minimum(w, np.clip((stop - x - CONTEXT) / BLEND, 0.0, 1.0))
    return w.astype(np.float32)


def plan_tiles(h: int, w: int, tile: int) -> list[Window]:
    """Every tile of an H×W image (whole image when both sides fit ``tile``)."""
    return [Window(y0, y1, x0, x1) for y0, y1 in plan_axis(h, tile) for x0, x1 in plan_axis(w, tile)]


def choose_tile(budget: int, size: tuple[int, int]) -> int:
    """Largest tile side (a multiple of 128) whose padded run fits ``budget`` bytes.

    An image whose padded size fits the budget runs whole (exactly as the authors run it).
    """
    h, w = size
    if padded_side(h) * padded_side(w) * BYTES_PER_PIXEL <= budget:
        return max(h, w)
    side = int(math.sqrt(max(budget, 1) / BYTES_PER_PIXEL)) // TILE_UNIT * TILE_UNIT
    return max(MIN_TILE, min(MAX_TILE, side))


def padded_pixels(windows: Sequence[Window]) -> int:
    """Pixels the network processes for these tiles (after padding)."""
    return sum(padded_side(win.shape[0]) * padded_side(win.shape[1]) for win in windows)


def cpu_estimate_s(windows: Sequence[Window], threads: int | None = None) -> float:
    """Wall-clock estimate of a CPU run: measured CPU-seconds per MP over the threads used."""
    import torch

    threads = threads or torch.get_num_threads()
    usable = max(1, min(threads, os.cpu_count() or 1))
    return padded_pixels(windows) / 1e6 * CPU_SECONDS_PER_MP / usable


def cpu_warning(size: tuple[int, int], windows: Sequence[Window], threads: int | None = None) -> str | None:
    """The warning printed before a CPU run estimated longer than a minute, else None."""
    seconds = cpu_estimate_s(windows, threads)
    if seconds <= WARN_AFTER_S:
        return None
    h, w = size
    took = f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"
    return (
        f"AFUNet on the CPU will take about {took} for this {w}×{h} bracket "
        f"({CPU_SECONDS_PER_MP:.0f} CPU-seconds per megapixel measured); "
        "a GPU is the way to run it (--device cuda), or use --model safnet-s"
    )


def frame_ldr(frame, win: Window, device) -> torch.Tensor:
    """``ldr`` of one window of a frame as the authors compute it: 1×3×h×w float32.

    16-bit codes / 65536 (not 65535); 8-bit codes · 257 / 65536 (the same
    value as the 16-bit code the 8-bit one stands for). Both are exact in float32.
    """
    import torch

    px = np.ascontiguousarray(frame.pixels[win.y0 : win.y1, win.x0 : win.x1])
    t = torch.from_numpy(px.astype(np.int32)).to(device)
    if px.dtype == np.uint8:
        t = t * 257
    return (t.to(torch.float32) / 65536.0).permute(2, 0, 1).unsqueeze(0)


def afunet_input(frames: Sequence, exposures: Sequence[float], win: Window, device) -> torch.Tensor:
    """The 18-channel input (spec section 2) of one window: 1×18×h×w float32."""
    from hdrmerge.models.afunet import make_input

    return make_input([frame_ldr(f, win, device) for f in frames], exposures)


def run_afunet(
    model,
    frames: Sequence,
    exposures: Sequence[float],
    *,
    tile: int,
    device,
    autocast: Callable[[], object] = nullcontext,
) -> Result:
    """AFUNet on three frames sorted short → long; whole, or in overlapping tiles of ``tile`` px.

    ``frames``: :class:`hdrmerge.reading.Frame` objects (8/16-bit, gamma 2.2
    domain); ``exposures``: relative exposures, shortest = 1. Returns the HDR
    (H×W×3 float32, short-exposure linear domain, in (0, 1)). On a CUDA
    out-of-memory error the tile is halved (not below :data:`MIN_TILE`) and
    the merge retried.
    """
    import torch

    from hdrmerge.models.afunet import run_padded

    h, w = frames[0].size
    if min(h, w) < MIN_SIDE:
        raise InputError(f"the shots are {w}×{h}; AFUNet needs at least {MIN_SIDE}×{MIN_SIDE} pixels (use --model safnet-s)")
    while True:
        try:
            windows = plan_tiles(h, w, tile)
            if len(windows) == 1:
                with torch.inference_mode(), autocast():
                    out = run_padded(model, afunet_input(frames, exposures, windows[0], device))
                hdr = out[0].permute(1, 2, 0).float().cpu().numpy()
                return Result(np.ascontiguousarray(hdr), tile, 1)
            acc = np.zeros((h, w, 3), np.float32)
            total = np.zeros((h, w, 1), np.float32)
            for win in windows:
                with torch.inference_mode(), autocast():
                    out = run_padded(model, afunet_input(frames, exposures, win, device))
                part = out[0].permute(1, 2, 0).float().cpu().numpy()
                wy = axis_weights((win.y0, win.y1), h)
                wx = axis_weights((win.x0, win.x1), w)
                weight = (wy[:, None] * wx[None, :])[..., None]
                acc[win.y0 : win.y1, win.x0 : win.x1] += part * weight
                total[win.y0 : win.y1, win.x0 : win.x1] += weight
            acc /= total
            return Result(acc, tile, len(windows))
        except torch.cuda.OutOfMemoryError:
            if tile <= MIN_TILE:
                raise
            tile = max(MIN_TILE, tile // 2 // 8 * 8)
            torch.cuda.empty_cache()
