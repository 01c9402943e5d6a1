"""Tiled execution: any photo size in bounded memory, same result as whole-image.

Flows and masks are estimated over the whole frame at the flow network's
reduced resolution (global context, so large motions are still found). The
flow network's input is built in bands of rows straight from the 8/16-bit
frames, never as full-size float tensors. Fusion and refinement then run at
full resolution tile by tile, each tile extended by the refinement's reach
(12 px for SAFNet-S, 23 px for SAFNet; spec section 8) of real neighbouring
pixels, and cropped back after. The warps read wherever the flow points: each
tile gathers the bounding box of its sample positions from the full frame.

Warps and resizes (:mod:`hdrmerge.models.layers`) work in absolute pixel
coordinates with per-pixel arithmetic that does not depend on the window, so
a tiled run reproduces the whole-image run; only the convolutions may sum in
another order (differences near 1e-7).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from hdrmerge.errors import InputError

if TYPE_CHECKING:
    import torch

    from hdrmerge.postmerge import Additions

#: Bytes of working memory per output pixel of a tile for float32, with
#: headroom (fp16 autocast needs less). No benchmark isolates this figure;
#: benchmarks/memory_24mp.py checks its effect end to end: the peak memory of
#: 24 MP merges with tiles chosen from 512 MiB and 2 GiB budgets
#: (docs/performance.md).
BYTES_PER_PIXEL = {"SAFNet-S": 900, "SAFNet": 2400}
#: Bytes per pixel (at its input resolution) of one window of the finest
#: decoder step: 126 input and 3×120 live activation channels, float32.
DECODER_BYTES_PER_PIXEL = 2000
MIN_TILE = 64
MAX_TILE = 4096
_UNITS = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "KIB": 2**10, "M": 2**20, "MB": 2**20, "MIB": 2**20,
          "G": 2**30, "GB": 2**30, "GIB": 2**30, "T": 2**40, "TB": 2**40, "TIB": 2**40}


#: Longer side of what the flow network saw in training: Kalantari 2017's
#: 1500×1000 frames at scale 0.5.
TRAINED_FLOW_SIDE = 750


def resolve_flow_scale(scale: float | None, size: tuple[int, int]) -> float:
    """``scale``, or for ``auto`` (None) the one that brings the longer side near 750 px."""
    if scale is not None:
        return scale
    return min(1.0, max(0.0625, TRAINED_FLOW_SIDE / max(size)))


def parse_memory(text: str) -> int:
    """``4GB``, ``512M``, ``1.5GiB`` → bytes (binary units)."""
    t = text.strip().upper().replace(" ", "")
    num = t.rstrip("KMGTIB")
    unit = t[len(num):]
    try:
        value = float(num)
    except ValueError:
        value = -1.0
    if value <= 0 or unit not in _UNITS:
        raise InputError(f"--max-memory {text!r}: give a size such as 4GB or 512MB")
    return int(value * _UNITS[unit])


def available_memory(device_type: str) -> int:
    """Free memory on the device: free GPU memory on CUDA, available RAM otherwise."""
    if device_type == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info()
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


#: On the CPU, tiles larger than this working set only cost memory: the
#: 24 MP benchmark ran as fast with 512 MiB tiles as with 1 GiB ones, and
#: faster than with 11 GiB ones (docs/performance.md).
CPU_BUDGET_CAP = 2**29


def default_budget(device_type: str) -> int:
    """Working memory for tiles: half of what is free (GPU), capped at 512 MiB on the CPU."""
    free = available_memory(device_type) // 2
    return free if device_type == "cuda" else min(free, CPU_BUDGET_CAP)


def choose_tile(arch: str, budget: int, reach: int, size: tuple[int, int]) -> int:
    """Largest even tile core whose extended tile fits ``budget`` bytes."""
    side = int(math.sqrt(max(budget, 1) / BYTES_PER_PIXEL[arch])) - 2 * reach
    side = max(MIN_TILE, min(MAX_TILE, side)) // 2 * 2
    return min(side, max(size) + (max(size) % 2))


def choose_decoder_tile(budget: int) -> int:
    """Window of the finest decoder step whose activations fit ``budget`` bytes."""
    side = int(math.sqrt(max(budget, 1) / DECODER_BYTES_PER_PIXEL)) - 2 * DECODER_REACH
    return max(MIN_TILE, min(MAX_TILE, side)) // 2 * 2


@dataclass(frozen=True)
class Window:
    """Rows ``y0:y1`` and columns ``x0:x1`` of an image."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0

    def grow(self, r: int, h: int, w: int) -> Window:
        return Window(max(0, self.y0 - r), min(h, self.y1 + r), max(0, self.x0 - r), min(w, self.x1 + r))


def plan_tiles(h: int, w: int, tile: int) -> list[Window]:
    """Cores of ``tile``×``tile`` covering H×W (the last row/column may be smaller)."""
    if tile < 2:
        raise InputError(f"--tile {tile}: must be at least 2 pixels")
    return [Window(y, min(h, y + tile), x, min(w, x + tile)) for y in range(0, h, tile) for x in range(0, w, tile)]


# --- building inputs from 8/16-bit frames -------------------------------------------------


def frame_window(frame, exposure: float, win: Window, device) -> torch.Tensor:
    """The 6-channel network input (spec section 1) of one window of a frame.

    1×6×h×w float32, channels_last in memory (built as h×w×6), so that warps
    fetch whole pixels and the convolutions need no layout conversion.
    """
    import torch

    from hdrmerge.reading import GAMMA

    t = torch.from_numpy(np.ascontiguousarray(frame.pixels[win.y0 : win.y1, win.x0 : win.x1]))
    if t.dtype == torch.uint16:
        t = t.to(torch.int32)
    ldr = t.to(device).to(torch.float32) / frame.scale
    return torch.cat((ldr.pow(GAMMA) / exposure, ldr), dim=-1).permute(2, 0, 1).unsqueeze(0)


def flow_input(frame, exposure: float, size: tuple[int, int], device, band: int = 64):
    """One frame at the flow network's size, resized band by band from its 8/16-bit pixels."""
    import torch

    from hdrmerge.models.layers import _source_index, resize

    h, w = frame.size
    fh, fw = size
    if (fh, fw) == (h, w):
        return frame_window(frame, exposure, Window(0, h, 0, w), device)
    bands = []
    for r0 in range(0, fh, band):
        r1 = min(fh, r0 + band)
        i0, i1, _ = _source_index(h, fh, r0, r1, torch.device("cpu"))
        lo, hi = int(i0.min()), int(i1.max()) + 1
        src = frame_window(frame, exposure, Window(lo, hi, 0, w), device)
        bands.append(resize(src, (fh, fw), rows=(r0, r1), full=(h, w), origin=(lo, 0)))
    return torch.cat(bands, dim=2)


def _sample_box(flow: torch.Tensor, win: Window, h: int, w: int) -> Window:
    """Smallest window of the frame holding every bilinear tap of ``win + flow``."""
    import torch

    ys = torch.arange(win.y0, win.y1, dtype=flow.dtype, device=flow.device).view(-1, 1)
    xs = torch.arange(win.x0, win.x1, dtype=flow.dtype, device=flow.device).view(1, -1)
    px = (xs + flow[0, 0]).clamp(0, w - 1)
    py = (ys + flow[0, 1]).clamp(0, h - 1)
    x0, x1 = int(px.min().floor()), int(px.max().floor()) + 2
    y0, y1 = int(py.min().floor()), int(py.max().floor()) + 2
    return Window(max(0, y0), min(h, y1), max(0, x0), min(w, x1))


#: Pixels of context one decoder step needs around a window, at its input
#: resolution: five 3×3 convs (5) and the stride-2 transposed conv (1), +1 spare.
DECODER_REACH = 7


def decoder_step_tiled(decoder, tile: int) -> Callable[..., tuple]:
    """The decoder's step (spec section 4) run window by window.

    Same result as ``decoder(g0, g1, g2, f0, f2, m0, m2)``; the 120-channel
    activations exist for one window at a time instead of the whole level.
    """
    import torch

    from hdrmerge.models.layers import up2, warp

    def step(g0, g1, g2, f0, f2, m0, m2):
        h, w = g1.shape[-2], g1.shape[-1]
        if max(h, w) <= tile:
            return decoder(g0, g1, g2, f0, f2, m0, m2)
        # The carried state, upsampled once for the whole level (6 channels).
        out = torch.cat((2.0 * up2(f0), 2.0 * up2(f2), up2(m0), up2(m2)), dim=1)
        for core in plan_tiles(h, w, tile):
            ext = core.grow(DECODER_REACH, h, w)
            rows, cols = slice(ext.y0, ext.y1), slice(ext.x0, ext.x1)
            f0e, f2e = f0[..., rows, cols], f2[..., rows, cols]
            warped = []
            for g, fe in ((g0, f0e), (g2, f2e)):
                box = _sample_box(fe, ext, h, w)
                warped.append(warp(g[..., box.y0 : box.y1, box.x0 : box.x1], fe,
                                   target_origin=(ext.y0, ext.x0), source_origin=(box.y0, box.x0), full=(h, w)))
            x = torch.cat((warped[0], g1[..., rows, cols], warped[1], f0e, f2e, m0[..., rows, cols], m2[..., rows, cols]), dim=1)
            del warped
            r = decoder.residual(x)
            oy, ox = 2 * (core.y0 - ext.y0), 2 * (core.x0 - ext.x0)
            ch, cw = 2 * core.shape[0], 2 * core.shape[1]
            out[..., 2 * core.y0 : 2 * core.y1, 2 * core.x0 : 2 * core.x1] += r[..., oy : oy + ch, ox : ox + cw].to(out.dtype)
        return out[:, 0:2], out[:, 2:4], out[:, 4:5], out[:, 5:6]

    return step


@dataclass
class Result:
    """One merged bracket, as H×W×C float32 arrays.

    ``hdr``: refined HDR, short-exposure domain, in [0, 1] (with hdrmerge's
    additions when they ran, :mod:`hdrmerge.postmerge`). The rest only with
    ``intermediates=True``: ``hdr_m`` first-stage HDR, ``flow0``/``flow2``
    (H×W×2, pixels), ``mask0``/``mask2`` (H×W×1); ``additions``: where each
    addition acted (name → H×W×1 in [0, 1]; empty when none ran). ``tile``/``tiles``: the
    tile size used and the number of tiles; ``seconds``: time in the network
    (set by :func:`hdrmerge.inference.merge`).
    """

    hdr: np.ndarray
    tile: int
    tiles: int
    hdr_m: np.ndarray | None = None
    flow0: np.ndarray | None = None
    flow2: np.ndarray | None = None
    mask0: np.ndarray | None = None
    mask2: np.ndarray | None = None
    seconds: float = 0.0
    additions: dict[str, np.ndarray] = field(default_factory=dict)


def run_tiled(
    model,
    frames: Sequence,
    exposures: Sequence[float],
    *,
    flow_scale: float,
    tile: int,
    device,
    autocast: Callable[[], object] = nullcontext,
    intermediates: bool = False,
    decoder_tile: int | None = None,
    on_tile: Callable[[int, int], None] | None = None,
    additions: Additions | None = None,
) -> Result:
    """SAFNet on three frames (short → long) in tiles of ``tile`` pixels.

    ``additions``: hdrmerge's guard and shadow merge (:mod:`hdrmerge.postmerge`),
    applied to each tile; None runs the network alone (``--exact``).

    ``frames`` are :class:`hdrmerge.reading.Frame` objects; ``exposures`` their
    relative exposures. The flow network's finest decoder step runs in
    windows of ``decoder_tile`` (default: the tile, at least 256; ``merge``
    derives it from the memory budget). On a CUDA
    out-of-memory error the tile is halved and the merge retried; any other
    error is raised. ``on_tile(done, total)`` is called after each tile of the
    full-resolution stage (and again from 0 if a retry changes the plan); it
    only reports, and changes nothing in the computation.
    """
    import torch

    from hdrmerge.models import explicit_fusion, flow_size
    from hdrmerge.models.layers import warp

    h, w = frames[0].size
    fh, fw = flow_size(h, w, flow_scale)
    with torch.inference_mode(), autocast():
        # Frame by frame: only one frame's flow-size input and activations at a time.
        feats = [model.encoder(flow_input(f, e, (fh, fw), device)) for f, e in zip(frames, exposures)]
        low = model.decode(feats, last_step=decoder_step_tiled(model.decoder, decoder_tile or max(tile, 256)))
        del feats
    reach = model.refinenet.reach
    src_reach = model.refinenet.source_reach
    if additions is not None:
        from hdrmerge import postmerge

        # The additions' windows need the refined output exact REACH px beyond the core.
        reach += postmerge.REACH
    full = (h, w)
    while True:
        try:
            hdr = np.empty((h, w, 3), np.float32)
            hdr_m = np.empty((h, w, 3), np.float32) if intermediates else None
            acted: dict[str, np.ndarray] = {}
            windows = plan_tiles(h, w, tile)
            for done, core in enumerate(windows):
                ext = core.grow(reach, h, w)
                with torch.inference_mode(), autocast():
                    motion = model.motion_window(low, full, (ext.y0, ext.y1), (ext.x0, ext.x1))
                    x1 = frame_window(frames[1], exposures[1], ext, device)
                    origin = (ext.y0, ext.x0)
                    warped = []
                    sources = []
                    for k, flow in ((0, motion.flow0), (2, motion.flow2)):
                        # Every tap of the warp, plus the context SAFNet's
                        # per-frame features need before they are warped.
                        box = _sample_box(flow, ext, h, w).grow(src_reach, h, w)
                        xk = frame_window(frames[k], exposures[k], box, device)
                        at = {"target_origin": origin, "source_origin": (box.y0, box.x0), "full": full}
                        warped.append(warp(xk, flow, **at))
                        if src_reach:
                            sources.append(warp(model.refinenet.source(xk, k), flow, **at))
                    x0w, x2w = warped
                    hm = explicit_fusion(x0w, x1, x2w, motion.mask0, motion.mask2)
                    s0w, s2w = (x0w, x2w) if not src_reach else sources
                    out = torch.clamp(hm + model.refinenet(s0w, x1, s2w, motion, hm), 0.0, 1.0)
                    oy, ox = core.y0 - ext.y0, core.x0 - ext.x0
                    ch, cw = core.shape

                    def core_hwc(t: torch.Tensor) -> np.ndarray:
                        """The core's pixels of a 1×C×H×W window tensor, as H×W×C float32."""
                        return t[0, :, oy : oy + ch, ox : ox + cw].permute(1, 2, 0).float().cpu().numpy()

                    if additions is not None:
                        out, masks = postmerge.apply(x0w, x1, x2w, hm, out, exposures, additions)
                        if intermediates:
                            for name, m in masks.items():
                                acted.setdefault(name, np.empty((h, w, 1), np.float32))
                                acted[name][core.y0 : core.y1, core.x0 : core.x1] = core_hwc(m)
                    hdr[core.y0 : core.y1, core.x0 : core.x1] = core_hwc(out)
                    if hdr_m is not None:
                        hdr_m[core.y0 : core.y1, core.x0 : core.x1] = core_hwc(hm)
                if on_tile is not None:
                    on_tile(done + 1, len(windows))
            break
        except torch.cuda.OutOfMemoryError:
            if tile <= MIN_TILE:
                raise
            tile = max(MIN_TILE, tile // 2 // 2 * 2)
            torch.cuda.empty_cache()
    result = Result(hdr, tile, len(windows), hdr_m, additions=acted)
    if intermediates:
        with torch.inference_mode():
            m = model.motion_window(low, full)
        hwc = lambda t: t[0].permute(1, 2, 0).float().cpu().numpy()  # noqa: E731
        result.flow0, result.flow2, result.mask0, result.mask2 = hwc(m.flow0), hwc(m.flow2), hwc(m.mask0), hwc(m.mask2)
    return result
