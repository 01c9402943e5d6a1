"""Running the network: device choice, precision, and one bracket through SAFNet.

Input is three decoded frames sorted short → long and their relative exposures;
output is numpy arrays (H×W×C, float32) of the HDR in the short-exposure
linear domain and, on request, the intermediates (flows, masks, first-stage HDR).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hdrmerge.errors import InputError
from hdrmerge.tiling import Result

if TYPE_CHECKING:
    import torch

    from hdrmerge.models import Model
    from hdrmerge.reading import Frame
    from hdrmerge.weights import LoadedWeights

PRECISIONS = ("auto", "fp32", "fp16")

def preload() -> threading.Thread:
    """A thread (not started) that imports torch and the network code.

    Started while the shots decode, it takes the import (~1.5 s) off the
    critical path; a later ``import torch`` waits for it to finish. Not a
    daemon: interpreter shutdown must not interrupt a half-done import of a
    C extension. Import errors are left for the real import to report.
    """

    def work() -> None:
        with contextlib.suppress(Exception):
            import hdrmerge.models  # noqa: F401  (imports torch)

    return threading.Thread(target=work, name="hdrmerge-preload")


def select_device(name: str = "auto") -> torch.device:
    """``auto`` prefers CUDA, then MPS, then the CPU; a named device must exist."""
    import torch

    name = name.lower()
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise InputError("--device cuda: no CUDA device is available to PyTorch here; use --device auto or cpu")
    if name == "mps" and not mps:
        raise InputError("--device mps: Apple's Metal backend is not available here; use --device auto or cpu")
    if name not in ("cuda", "mps", "cpu"):
        raise InputError(f"--device {name}: unknown; use auto, cuda, mps or cpu")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` means fp16 on CUDA (see docs/performance.md) and fp32 elsewhere."""
    if precision not in PRECISIONS:
        raise InputError(f"--precision {precision}: unknown; use {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    if precision == "fp16" and device.type == "cpu":
        raise InputError("--precision fp16 needs a GPU; on the CPU use fp32 (or auto)")
    return precision


@dataclass
class Engine:
    """A loaded network on its device, ready for brackets."""

    model: Model
    weights: LoadedWeights
    device: torch.device
    precision: str

    @classmethod
    def load(cls, weights: LoadedWeights, device: str = "auto", precision: str = "auto") -> Engine:
        import torch

        from hdrmerge.models import build_model

        dev = select_device(device)
        prec = resolve_precision(precision, dev)
        model = build_model(weights.state, weights.arch, source=str(weights.path)).to(dev)
        # channels_last convolutions: 0.75x the time of NCHW on the CPU (docs/performance.md).
        model = model.to(memory_format=torch.channels_last)
        return cls(model, weights, dev, prec)

    def describe(self) -> str:
        return f"{self.model.arch} ({self.weights.name or self.weights.path.name}) on {self.device.type}, {self.precision}"


def merge(
    engine: Engine,
    frames: Sequence[Frame],
    exposures: Sequence[float],
    *,
    flow_scale: float = 0.5,
    intermediates: bool = False,
    tile: int | None = None,
    max_memory: int | None = None,
) -> Result:
    """Run the network on three frames sorted short → long, in tiles.

    ``exposures``: relative exposures ``2 ** (ev − min ev)`` in the same order.
    ``tile``: tile size in pixels (default: the largest that fits
    ``max_memory`` bytes, else :func:`hdrmerge.tiling.default_budget`). The
    result equals a whole-image run (see :mod:`hdrmerge.tiling`).
    """
    import torch

    from hdrmerge.tiling import choose_decoder_tile, choose_tile, default_budget, run_tiled

    if len(frames) != 3:
        raise ValueError(f"merge needs 3 frames, got {len(frames)}")
    dev = engine.device
    h, w = frames[0].size
    budget = max_memory if max_memory is not None else default_budget(dev.type)
    if tile is None:
        tile = choose_tile(engine.model.arch, budget, engine.model.reach, (h, w))
    if engine.precision == "fp16":
        # Convolutions (and the interpolation of their half-precision feature
        # maps) in half precision; sample positions, flows, the decoder's
        # carried state, frame warps and fusion stay float32, since the state
        # starts as float32 and type promotion keeps it there.
        autocast = lambda: torch.autocast(device_type=dev.type, dtype=torch.float16)  # noqa: E731
    else:
        autocast = contextlib.nullcontext
    t0 = time.perf_counter()
    out = run_tiled(
        engine.model, frames, exposures, flow_scale=flow_scale, tile=tile, device=dev,
        autocast=autocast, intermediates=intermediates, decoder_tile=choose_decoder_tile(budget),
    )
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    out.seconds = time.perf_counter() - t0
    return out
