"""Options shared by several commands, as ``Annotated`` aliases, and console helpers.

Nothing here imports torch: ``hdrmerge --help`` imports this module.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from hdrmerge.errors import InputError

#: Status, progress and warnings go to stderr; stdout is for results (--json).
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
out_console = Console(highlight=False, soft_wrap=True)


class Device(str, Enum):
    """Where the network runs."""

    auto = "auto"
    cuda = "cuda"
    mps = "mps"
    cpu = "cpu"


DebugOpt = Annotated[
    bool,
    typer.Option("--debug", help="Show full tracebacks on errors (also HDRMERGE_DEBUG=1)."),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON object on stdout instead of tables.")
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress or status on stderr; errors only.")
]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="Replace output files that exist already.")
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Registered checkpoint to use (see `hdrmerge weights list`); default safnet-s.",
        show_default=False,
    ),
]
WeightsOpt = Annotated[
    Path | None,
    typer.Option(
        "--weights",
        help="A checkpoint file (.safetensors or .pth) to use instead of a registered one.",
        dir_okay=False,
        show_default=False,
    ),
]
HubRepoOpt = Annotated[
    str | None,
    typer.Option(
        "--hub-repo",
        help="Hugging Face Hub repository to download from (also HDRMERGE_HUB_REPO).",
        show_default=False,
    ),
]
DeviceOpt = Annotated[
    Device,
    typer.Option("--device", help="auto prefers CUDA, then MPS, then the CPU.", case_sensitive=False),
]


class Normalize(str, Enum):
    short = "short"
    reference = "reference"
    absolute = "absolute"


class ExrDtype(str, Enum):
    half = "half"
    float = "float"


class ExrCompression(str, Enum):
    zip = "zip"
    piz = "piz"


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    fp16 = "fp16"


def parse_ev(text: str | None) -> list[float] | None:
    """``"-2,0,2"`` → ``[-2.0, 0.0, 2.0]``; InputError naming the bad part."""
    if text is None:
        return None
    parts = [p.strip() for p in text.replace(" ", ",").split(",") if p.strip()]
    try:
        return [float(p) for p in parts]
    except ValueError:
        raise InputError(f"--ev {text!r}: give numbers separated by commas, e.g. --ev=-2,0,2") from None


def parse_flow_scale(text: str) -> float | None:
    """A scale in [0.0625, 1], or None for ``auto`` (chosen from the frame size)."""
    if text.strip().lower() == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"--flow-scale {text!r}: give a number such as 0.5, or auto") from None
    if not 0.0625 <= value <= 1.0:
        raise InputError(f"--flow-scale {value}: must be between 0.0625 and 1 (0.5 is what the paper uses)")
    return value


def parse_tile(value: int | None) -> int | None:
    if value is not None and value < 64:
        raise InputError(f"--tile {value}: must be at least 64 pixels")
    return value


FlowScaleOpt = Annotated[
    str,
    typer.Option(
        "--flow-scale",
        help="Scale at which flows and masks are estimated: a number (the paper uses 0.5) or auto "
        "(longer side near 750 px, as in training; see docs/performance.md).",
    ),
]
TileOpt = Annotated[
    int | None,
    typer.Option("--tile", help="Tile size in pixels for the full-resolution stage (default: from available memory).", show_default=False),
]
MaxMemoryOpt = Annotated[
    str | None,
    typer.Option("--max-memory", help="Memory the tiles may use, e.g. 4GB (default: half of what is free).", show_default=False),
]
NormalizeOpt = Annotated[
    Normalize,
    typer.Option(
        "--normalize",
        help="Output scale: short (1.0 = short shot's saturation), reference (reference shot's "
        "linear values kept), absolute (approx. cd/m² from EXIF). See docs/radiometry.md.",
        case_sensitive=False,
    ),
]
ExrDtypeOpt = Annotated[ExrDtype, typer.Option("--exr-dtype", help="Sample type of .exr output.", case_sensitive=False)]
ExrCompressionOpt = Annotated[
    ExrCompression, typer.Option("--exr-compression", help="Lossless compression of .exr output.", case_sensitive=False)
]
ResponseOpt = Annotated[
    str,
    typer.Option(
        "--response",
        help="Camera response of JPEG/PNG/TIFF shots: auto (metadata, then the pixels), gamma2.2, srgb, "
        "linear, or a response file from `hdrmerge calibrate`. RAW ignores it. See docs/radiometry.md.",
    ),
]
ExactOpt = Annotated[
    bool,
    typer.Option("--exact", help="The network authors' pipeline exactly: gamma 2.2, no hdrmerge additions (reproduces papers)."),
]
PrecisionOpt = Annotated[
    Precision,
    typer.Option("--precision", help="auto: fp16 on CUDA, fp32 elsewhere.", case_sensitive=False),
]


def fuse_options(
    flow_scale: str,
    normalize: Normalize,
    exr_dtype: ExrDtype,
    exr_compression: ExrCompression,
    no_preview: bool,
    overwrite: bool,
    tile: int | None = None,
    max_memory: str | None = None,
    response: str = "auto",
    exact: bool = False,
    **extra: Any,
) -> Any:
    """The pipeline's FuseOptions from the options fuse and batch share (a response file is read now)."""
    from hdrmerge.pipeline import FuseOptions
    from hdrmerge.response import parse_response_option
    from hdrmerge.tiling import parse_memory

    return FuseOptions(
        response=parse_response_option(response, exact),
        flow_scale=parse_flow_scale(flow_scale),
        tile=parse_tile(tile),
        max_memory=parse_memory(max_memory) if max_memory else None,
        normalize=normalize.value,
        exr_dtype=exr_dtype.value,
        exr_compression=exr_compression.value,
        no_preview=no_preview,
        overwrite=overwrite,
        **extra,
    )


def engine_loader(
    model: str | None,
    weights: Path | None,
    hub_repo: str | None,
    device: Device,
    precision: Precision,
    *,
    chatty: bool,
) -> Callable[[], Any]:
    """A function that loads the network once, on first call, and says which it is."""
    loaded: list[Any] = []

    def get_engine() -> Any:
        if not loaded:
            from hdrmerge.inference import Engine
            from hdrmerge.weights import load_weights

            w = load_weights(model, weights, hub_repo=hub_repo, progress=chatty and err_console.is_terminal)
            loaded.append(Engine.load(w, device.value, precision.value))
            status(f"model: {loaded[0].describe()}", quiet=not chatty)
        return loaded[0]

    return get_engine


def print_json(obj: Any) -> None:
    """Exactly one JSON object, one line, on stdout."""
    sys.stdout.write(json.dumps(obj, separators=(",", ":"), default=str) + "\n")
    sys.stdout.flush()


def status(message: str, *, quiet: bool = False) -> None:
    """A status line on stderr, shown only on a terminal and without --quiet."""
    if not quiet and err_console.is_terminal:
        err_console.print(message)


def warn(message: str, *, quiet: bool = False) -> None:
    """A warning on stderr (also when stderr is not a terminal), unless --quiet."""
    if not quiet:
        err_console.print(f"warning: {message}", markup=False)
