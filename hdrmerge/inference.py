"""Running the network: device choice, precision, and one bracket through it.

Both engines take the same input, three decoded frames sorted short → long
(:class:`hdrmerge.reading.Frame`, in the network's gamma-2.2 domain) and their
relative exposures, and give the same output: numpy arrays (H×W×C, float32)
of the HDR in the short-exposure linear domain. SAFNet runs through
:mod:`hdrmerge.tiling` and can also return its intermediates (flows, masks,
first-stage HDR); AFUNet runs through :mod:`hdrmerge.afunet_tiling` and has
no such intermediates.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hdrmerge.errors import InputError
from hdrmerge.tiling import Result

if TYPE_CHECKING:
    import torch

    from hdrmerge.models import Model
    from hdrmerge.reading import Frame
    from hdrmerge.weights import LoadedWeights

PRECISIONS = ("auto", "fp32", "fp16")
NO_AFUNET_INTERMEDIATES = "--debug-dir shows SAFNet's flows and masks; AFUNet has none: drop --debug-dir or use --model safnet-s"

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


#: Architectures whose fp16 output has been measured against fp32 (docs/performance.md);
#: ``auto`` picks fp16 on CUDA only for these. AFUNet's has not been (no GPU was
#: available), so it runs fp32 unless fp16 is asked for.
FP16_MEASURED = ("SAFNet", "SAFNet-S")


def resolve_precision(precision: str, device: torch.device, arch: str = "SAFNet-S") -> str:
    """``auto`` means fp16 on CUDA for a measured architecture (docs/performance.md), fp32 elsewhere."""
    if precision not in PRECISIONS:
        raise InputError(f"--precision {precision}: unknown; use {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "fp16" if device.type == "cuda" and arch in FP16_MEASURED else "fp32"
    if precision == "fp16" and device.type == "cpu":
        raise InputError("--precision fp16 needs a GPU; on the CPU use fp32 (or auto)")
    return precision


@dataclass
class Engine:
    """A loaded network on its device, ready for brackets.

    ``notice`` receives one-line notices meant for the user before a long run
    (the CLI prints them on stderr unless --quiet).
    """

    model: Model
    weights: LoadedWeights
    device: torch.device
    precision: str
    notice: Callable[[str], None] = field(default=lambda message: None, repr=False)

    @classmethod
    def load(cls, weights: LoadedWeights, device: str = "auto", precision: str = "auto") -> Engine:
        import torch

        from hdrmerge.models import build_model

        dev = select_device(device)
        prec = resolve_precision(precision, dev, weights.arch)
        model = build_model(weights.state, weights.arch, source=str(weights.path)).to(dev)
        if model.arch != "AFUNet":
            # channels_last convolutions: 0.75x the time of NCHW on the CPU (docs/performance.md).
            # AFUNet works on token maps (B×N×C) between its convolutions; it stays NCHW.
            model = model.to(memory_format=torch.channels_last)
        return cls(model, weights, dev, prec)

    @property
    def has_intermediates(self) -> bool:
        """Whether the network has flows, masks and a first-stage HDR to show (SAFNet only)."""
        return self.model.arch != "AFUNet"

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
    on_tile: Callable[[int, int], None] | None = None,
    guard: bool = False,
    shadow_merge: bool = False,
) -> Result:
    """Run the network on three frames sorted short → long, in tiles.

    ``exposures``: relative exposures ``2 ** (ev − min ev)`` in the same order.
    ``tile``: tile size in pixels (default: the largest that fits
    ``max_memory`` bytes, else :func:`hdrmerge.tiling.default_budget`). The
    result equals a whole-image run (see :mod:`hdrmerge.tiling`).
    ``on_tile(done, total)``: progress of SAFNet's full-resolution tiles
    (not called for AFUNet, whose tiles overlap and are blended).
    ``guard``, ``shadow_merge``: hdrmerge's additions to SAFNet's output
    (:mod:`hdrmerge.postmerge`); AFUNet has no first stage to fall back to
    and no flows, so they do not apply to it.
    """
    import torch

    from hdrmerge.tiling import choose_decoder_tile, choose_tile, default_budget, run_tiled

    if len(frames) != 3:
        raise ValueError(f"merge needs 3 frames, got {len(frames)}")
    dev = engine.device
    h, w = frames[0].size
    if engine.model.arch == "AFUNet":
        return _merge_afunet(engine, frames, exposures, intermediates=intermediates, tile=tile, max_memory=max_memory)
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
    from hdrmerge.postmerge import settings_for

    additions = settings_for(frames, guard=guard, shadows=shadow_merge)
    out = run_tiled(
        engine.model, frames, exposures, flow_scale=flow_scale, tile=tile, device=dev,
        autocast=autocast, intermediates=intermediates, decoder_tile=choose_decoder_tile(budget), on_tile=on_tile,
        additions=additions,
    )
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    out.seconds = time.perf_counter() - t0
    return out


#: On the CPU, AFUNet's tiles may use up to this much memory (and at most half
#: the available RAM): larger tiles mean less overlap to recompute and outputs
#: closer to a whole-image run (its CAPO statistics are global), unlike
#: SAFNet's, whose tiles only cost memory. 16 GiB holds a 1500×1000 photo
#: whole (padded to 1536×1024: ~13 GiB at the measured 9 KB per pixel).
AFUNET_CPU_BUDGET_CAP = 16 * 2**30


def _merge_afunet(
    engine: Engine,
    frames: Sequence[Frame],
    exposures: Sequence[float],
    *,
    intermediates: bool,
    tile: int | None,
    max_memory: int | None,
) -> Result:
    """AFUNet on the bracket (:mod:`hdrmerge.afunet_tiling`), with a warning before a long CPU run."""
    import torch

    from hdrmerge import afunet_tiling
    from hdrmerge.tiling import available_memory

    if intermediates:
        raise InputError(NO_AFUNET_INTERMEDIATES)
    dev = engine.device
    size = frames[0].size
    if tile is None:
        if max_memory is not None:
            budget = max_memory
        else:
            free = available_memory(dev.type) // 2
            budget = free if dev.type == "cuda" else min(free, AFUNET_CPU_BUDGET_CAP)
        tile = afunet_tiling.choose_tile(budget, size)
    elif tile < afunet_tiling.MIN_TILE:
        raise InputError(
            f"--tile {tile}: AFUNet's tiles must be at least {afunet_tiling.MIN_TILE} px "
            f"(neighbours overlap by {afunet_tiling.OVERLAP} px)"
        )
    if dev.type == "cpu":
        warning = afunet_tiling.cpu_warning(size, afunet_tiling.plan_tiles(*size, tile))
        if warning:
            engine.notice(warning)
    if engine.precision == "fp16":
        # Code path only: AFUNet's fp16 output has not been measured against fp32 here.
        autocast = lambda: torch.autocast(device_type=dev.type, dtype=torch.float16)  # noqa: E731
    else:
        autocast = contextlib.nullcontext
    t0 = time.perf_counter()
    out = afunet_tiling.run_afunet(engine.model, frames, exposures, tile=tile, device=dev, autocast=autocast)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    out.seconds = time.perf_counter() - t0
    return out
