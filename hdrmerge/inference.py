"""Running the network: device choice, precision, and one bracket through SAFNet.

Input is three decoded frames sorted short → long and their relative exposures;
output is numpy arrays (H×W×C, float32) of the HDR in the short-exposure
linear domain and, on request, the intermediates (flows, masks, first-stage HDR).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hdrmerge.errors import InputError

if TYPE_CHECKING:
    import torch

    from hdrmerge.models import SAFNetModel
    from hdrmerge.reading import Frame
    from hdrmerge.weights import LoadedWeights

PRECISIONS = ("auto", "fp32", "fp16")


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

    model: SAFNetModel
    weights: LoadedWeights
    device: torch.device
    precision: str

    @classmethod
    def load(cls, weights: LoadedWeights, device: str = "auto", precision: str = "auto") -> Engine:
        from hdrmerge.models import build_model

        dev = select_device(device)
        prec = resolve_precision(precision, dev)
        model = build_model(weights.state, weights.arch, source=str(weights.path)).to(dev)
        return cls(model, weights, dev, prec)

    def describe(self) -> str:
        return f"{self.model.arch} ({self.weights.name or self.weights.path.name}) on {self.device.type}, {self.precision}"


@dataclass
class Result:
    """One merged bracket, as H×W×C float32 arrays.

    ``hdr``: refined HDR, short-exposure domain, in [0, 1]. The rest only with
    ``intermediates=True``: ``hdr_m`` first-stage HDR, ``flow0``/``flow2``
    (H×W×2, pixels), ``mask0``/``mask2`` (H×W×1). ``seconds``: time in the network.
    """

    hdr: np.ndarray
    seconds: float
    hdr_m: np.ndarray | None = None
    flow0: np.ndarray | None = None
    flow2: np.ndarray | None = None
    mask0: np.ndarray | None = None
    mask2: np.ndarray | None = None


def _to_tensor(frame: Frame, device: torch.device) -> torch.Tensor:
    """1×3×H×W float32 LDR in [0, 1], converted on the device (uploads 8/16-bit data)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(frame.pixels))
    if t.dtype == torch.uint16:
        t = t.to(torch.int32)  # uint16 has few kernels; int32 holds it exactly
    t = t.to(device).permute(2, 0, 1).unsqueeze(0).to(torch.float32)
    return t / frame.scale


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t[0].permute(1, 2, 0).float().cpu().numpy()


def merge(
    engine: Engine,
    frames: Sequence[Frame],
    exposures: Sequence[float],
    *,
    flow_scale: float = 0.5,
    intermediates: bool = False,
) -> Result:
    """Run the network on three frames sorted short → long.

    ``exposures``: relative exposures ``2 ** (ev − min ev)`` in the same order.
    """
    import torch

    from hdrmerge.models import make_frames

    if len(frames) != 3:
        raise ValueError(f"merge needs 3 frames, got {len(frames)}")
    dev = engine.device
    t0 = time.perf_counter()
    with torch.inference_mode():
        ldrs = [_to_tensor(f, dev) for f in frames]
        x = make_frames(ldrs, exposures)
        del ldrs
        if engine.precision == "fp16":
            # Convolutions in half precision; the warps, fusion and sums stay in
            # float32 because the flows and the state carried between decoder
            # levels are float32 tensors (type promotion keeps them there).
            with torch.autocast(device_type=dev.type, dtype=torch.float16):
                out = engine.model.run(*x, scale=flow_scale)
        else:
            out = engine.model.run(*x, scale=flow_scale)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds = time.perf_counter() - t0
        result = Result(_hwc(out.hdr.clamp(0, 1)), seconds)
        if intermediates:
            result.hdr_m = _hwc(out.hdr_m)
            result.flow0 = _hwc(out.motion.flow0)
            result.flow2 = _hwc(out.motion.flow2)
            result.mask0 = _hwc(out.motion.mask0)
            result.mask2 = _hwc(out.motion.mask2)
    return result
