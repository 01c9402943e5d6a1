"""``hdrmerge fuse``: three bracketed shots → one HDR file and a preview."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from hdrmerge.cli.common import (
    DebugOpt,
    Device,
    DeviceOpt,
    HubRepoOpt,
    JsonOpt,
    ModelOpt,
    OverwriteOpt,
    QuietOpt,
    WeightsOpt,
    err_console,
    print_json,
    status,
    warn,
)
from hdrmerge.errors import InputError


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


def parse_flow_scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"--flow-scale {text!r}: give a number such as 0.5") from None
    if not 0.0625 <= value <= 1.0:
        raise InputError(f"--flow-scale {value}: must be between 0.0625 and 1 (0.5 is what the paper uses)")
    return value


FlowScaleOpt = Annotated[
    str,
    typer.Option("--flow-scale", help="Scale at which flows and masks are estimated (the paper uses 0.5)."),
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
PrecisionOpt = Annotated[
    Precision,
    typer.Option("--precision", help="auto: fp16 on CUDA, fp32 elsewhere.", case_sensitive=False),
]


def fuse(
    inputs: Annotated[
        list[Path],
        typer.Argument(help="The three shots of the bracket, in any order (JPEG, PNG, TIFF or camera RAW).", show_default=False),
    ],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="Output file; .hdr (Radiance) or .exr (OpenEXR).", show_default=False),
    ],
    ev: Annotated[
        str | None,
        typer.Option("--ev", help="Exposure values in stops, in input order, overriding metadata (e.g. --ev=-2,0,2).", show_default=False),
    ] = None,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    hub_repo: HubRepoOpt = None,
    device: DeviceOpt = Device.auto,
    precision: PrecisionOpt = Precision.auto,
    flow_scale: FlowScaleOpt = "0.5",
    normalize: NormalizeOpt = Normalize.reference,
    exr_dtype: ExrDtypeOpt = ExrDtype.half,
    exr_compression: ExrCompressionOpt = ExrCompression.zip,
    preview: Annotated[
        Path | None,
        typer.Option("--preview", help="Where to write the preview (default: <output stem>.preview.jpg).", show_default=False),
    ] = None,
    no_preview: Annotated[bool, typer.Option("--no-preview", help="Write no preview.")] = False,
    debug_dir: Annotated[
        Path | None,
        typer.Option("--debug-dir", help="Also write flows, masks and the first-stage HDR as PNGs here.", show_default=False),
    ] = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Merge three bracketed shots into one ghost-free HDR image.

    Exit codes: 0 success, 2 bad usage or input, 1 any other failure.
    """
    from hdrmerge.pipeline import FuseOptions, fuse_files

    if preview is not None and no_preview:
        raise InputError("--preview and --no-preview contradict each other; give one")
    options = FuseOptions(
        ev=parse_ev(ev),
        flow_scale=parse_flow_scale(flow_scale),
        normalize=normalize.value,
        exr_dtype=exr_dtype.value,
        exr_compression=exr_compression.value,
        preview=preview,
        no_preview=no_preview,
        debug_dir=debug_dir,
        overwrite=overwrite,
    )
    chatty = not (quiet or json_)
    started = time.perf_counter()

    def get_engine():
        from hdrmerge.inference import Engine
        from hdrmerge.weights import load_weights

        loaded = load_weights(model, weights, hub_repo=hub_repo, progress=chatty and err_console.is_terminal)
        engine = Engine.load(loaded, device.value, precision.value)
        status(f"model: {engine.describe()}", quiet=not chatty)
        return engine

    if chatty and err_console.is_terminal:
        with err_console.status("starting") as spinner:
            report = fuse_files(inputs, output, options, get_engine, on_stage=lambda s: spinner.update(s))
    else:
        report = fuse_files(inputs, output, options, get_engine)
    report["timings_s"]["total"] = round(time.perf_counter() - started, 4)

    if json_:
        print_json(report)
        return
    for w in report["warnings"]:
        warn(w, quiet=quiet)
    ex = report["exposures"]
    status(
        f"exposures ({ex['source']}): " + ", ".join(f"{e:+.2f}" for e in ex["ev_sorted"]) + " EV; "
        f"wrote {report['outputs']['hdr']}"
        + (f" and {report['outputs']['preview']}" if "preview" in report["outputs"] else "")
        + f" in {report['timings_s']['total']:.1f} s",
        quiet=quiet,
    )
