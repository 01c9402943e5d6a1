"""``hdrmerge fuse``: three bracketed shots → one HDR file and a preview."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from hdrmerge.cli.common import (
    DebugOpt,
    Device,
    DeviceOpt,
    DngDtype,
    DngDtypeOpt,
    ExrCompression,
    ExrCompressionOpt,
    ExrDtype,
    ExrDtypeOpt,
    FlowScaleOpt,
    MAX_PIXELS_DEFAULT,
    MaxMemoryOpt,
    MaxPixelsOpt,
    TileOpt,
    HubRepoOpt,
    JsonOpt,
    ModelOpt,
    Normalize,
    NormalizeOpt,
    OverwriteOpt,
    Precision,
    PrecisionOpt,
    QuietOpt,
    ResponseOpt,
    ExactOpt,
    NoGuardOpt,
    NoShadowMergeOpt,
    WeightsOpt,
    engine_loader,
    err_console,
    fuse_options,
    merge_progress,
    merge_summary,
    nonempty_path,
    parse_ev,
    preview_target,
    print_json,
    status,
    warn,
)
from hdrmerge.errors import InputError


def fuse(
    inputs: Annotated[
        list[Path],
        typer.Argument(metavar="IN1 IN2 IN3", help="The three shots of the bracket, in any order (JPEG, PNG, TIFF or camera RAW).", show_default=False),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", metavar="PATH", help="Output file; .hdr (Radiance), .exr (OpenEXR) or .dng (linear DNG for raw editors).",
            show_default=False, parser=nonempty_path("--output", "give the file to write, e.g. -o merged.exr"),
        ),
    ],
    ev: Annotated[
        str | None,
        typer.Option("--ev", metavar="A,B,C", help="Exposure values in stops, in input order, overriding metadata (e.g. --ev=-2,0,2).", show_default=False),
    ] = None,
    response: ResponseOpt = "auto",
    exact: ExactOpt = False,
    no_guard: NoGuardOpt = False,
    no_shadow_merge: NoShadowMergeOpt = False,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    hub_repo: HubRepoOpt = None,
    device: DeviceOpt = Device.auto,
    precision: PrecisionOpt = Precision.auto,
    flow_scale: FlowScaleOpt = "0.5",
    tile: TileOpt = None,
    max_memory: MaxMemoryOpt = None,
    max_pixels: MaxPixelsOpt = MAX_PIXELS_DEFAULT,
    normalize: NormalizeOpt = Normalize.reference,
    exr_dtype: ExrDtypeOpt = ExrDtype.half,
    exr_compression: ExrCompressionOpt = ExrCompression.zip,
    dng_dtype: DngDtypeOpt = DngDtype.half,
    preview: Annotated[
        str | None,
        typer.Option(
            "--preview", metavar="PATH",
            help="Where to write the preview: a .jpg or .png file, or a folder for the default name "
            "(default: <output file name>.preview.jpg, e.g. out.exr.preview.jpg).",
            show_default=False,
        ),
    ] = None,
    no_preview: Annotated[bool, typer.Option("--no-preview", help="Write no preview.")] = False,
    debug_dir: Annotated[
        Path | None,
        typer.Option(
            "--debug-dir", metavar="DIR",
            help="Also write flows, masks, the first-stage and the final HDR, and where the guard and shadow merge acted, as PNGs here (SAFNet only).",
            show_default=False, parser=nonempty_path("--debug-dir", "give a folder for the debug images, e.g. --debug-dir debug"),
        ),
    ] = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Merge three bracketed shots into one ghost-free HDR image.

    Exit codes: 0 success, 2 bad usage or input, 1 any other failure
    (another run writing the same output included).
    """
    from hdrmerge import preflight
    from hdrmerge.locking import locked_output
    from hdrmerge.pipeline import check_shot_count, fuse_files

    check_shot_count(inputs)  # before any check on options or outputs: the first thing to put right
    if preview is not None and no_preview:
        raise InputError("--preview and --no-preview contradict each other; give one")
    preview_file = None if preview is None else preview_target(preview, output)
    if debug_dir is not None and model is not None:
        from hdrmerge.inference import NO_AFUNET_INTERMEDIATES
        from hdrmerge.weights import model_arch

        if model_arch(model) == "AFUNet":  # known before any file is read
            raise InputError(NO_AFUNET_INTERMEDIATES)
    options = fuse_options(
        flow_scale, normalize, exr_dtype, exr_compression, no_preview, overwrite, tile, max_memory,
        response, exact, max_pixels=max_pixels, no_guard=no_guard, no_shadow_merge=no_shadow_merge, ev=parse_ev(ev), preview=preview_file, debug_dir=debug_dir, dng_dtype=dng_dtype.value,
    )
    # Options that cannot work here fail now, before any decoding or torch import.
    preflight.check_device(device.value, precision.value)
    preflight.check_weights(model, weights)
    chatty = not (quiet or json_)
    started = time.perf_counter()
    get_engine = engine_loader(model, weights, hub_repo, device, precision, chatty=chatty, quiet=quiet)

    # Held from decoding to the last rename, as batch holds a bracket's: a
    # second run to the same output stops at once instead of interleaving.
    with locked_output(output), merge_progress(chatty and err_console.is_terminal) as (on_stage, on_tile):
        report = fuse_files(inputs, output, options, get_engine, on_stage=on_stage, on_tile=on_tile)
    report["timings_s"]["total"] = round(time.perf_counter() - started, 4)

    for w in report["warnings"]:  # on stderr with --json too (and in the report)
        warn(w, quiet=quiet)
    if json_:
        print_json(report)
        return
    resp = report["response"]
    status(f"response: {resp['name']} ({resp['source']})", quiet=quiet)
    # The record of the merge: on a terminal and off it (cron, CI, make).
    if not quiet:
        err_console.print(merge_summary(report), markup=False)
