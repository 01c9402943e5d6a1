"""``hdrmerge calibrate``: a camera's response from brackets, as a file for ``--response``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hdrmerge.cli.common import JsonOpt, OverwriteOpt, QuietOpt, nonempty_path, parse_ev, print_json, status
from hdrmerge.errors import InputError


def calibrate(
    inputs: Annotated[list[Path], typer.Argument(metavar="INPUTS...", help="Bracketed shots, or folders of them (split into brackets as batch does).", show_default=False)],
    output: Annotated[Path, typer.Option(
            "--output", "-o", metavar="FILE.json", help="Response file to write (.json).", show_default=False,
            parser=nonempty_path("--output", "give the response file to write, e.g. -o camera.json"),
        )],
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot", metavar="PATH", help="Where to write the plot (default: <output stem>.png).", show_default=False,
            parser=nonempty_path("--plot", "give the plot's file, e.g. --plot camera.png, or --no-plot"),
        ),
    ] = None,
    no_plot: Annotated[bool, typer.Option("--no-plot", help="Write no plot.")] = False,
    ev: Annotated[
        str | None,
        typer.Option("--ev", metavar="A,B,C", help="Exposure values in stops of a single bracket without EXIF, in input order.", show_default=False),
    ] = None,
    group_size: Annotated[
        int | None,
        typer.Option("--group-size", metavar="N", help="Fixed groups of N shots in capture (or file-name) order.", show_default=False),
    ] = None,
    gap: Annotated[float, typer.Option("--gap", metavar="SECONDS", help="Seconds between shots of one bracket, as for batch.")] = 3.0,
    camera: Annotated[
        str | None,
        typer.Option("--camera", metavar="NAME", help="Camera name stored in the file (default: EXIF make and model).", show_default=False),
    ] = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Estimate a camera's response from one or more brackets; write it for --response FILE.

    Exit codes: 0 success, 2 bad usage or input, 1 any other failure.
    """
    from hdrmerge.atomic import StagedOutputs, same_file
    from hdrmerge.batch import scan
    from hdrmerge.calibrate import calibrate as fit, find_brackets, plot_response
    from hdrmerge.response import response_document
    from hdrmerge.writing import write_png

    if output.suffix.lower() != ".json":
        raise InputError(f"--output {output}: a response file ends in .json")
    if plot is not None and no_plot:
        raise InputError("--plot and --no-plot contradict each other; give one")
    plot_path = None if no_plot else plot or output.with_suffix(".png")
    if plot_path is not None and plot_path.suffix.lower() != ".png":
        raise InputError(f"--plot {plot_path}: the plot is a PNG; end its name in .png")
    if plot_path is not None and same_file(output, plot_path):
        raise InputError(f"the plot {plot_path} is the same file as the response file {output}; choose another --plot")
    # No output may be a photo given, or one in a folder given, even with --overwrite (as fuse).
    shots = [f for p in inputs for f in (scan(p) if p.is_dir() else [p])]
    staged = StagedOutputs(overwrite=overwrite, protect=shots)
    for dest, what in ((output, "the response file"), (plot_path, "the plot")):
        if dest is not None:
            staged.check(dest, what)
    brackets = find_brackets(inputs, group_size=group_size, gap_s=gap, as_given=ev is not None and not any(p.is_dir() for p in inputs))
    result = fit(brackets, parse_ev(ev), mixed_cameras=camera is not None)
    name = camera or result.camera
    description = (
        f"hdrmerge calibrate: {result.response.detail}; comparametric histogram matching, "
        f"monotone local-gamma fit (residual {result.residual:.4f})"
    )
    doc = response_document(result.response, result.bit_depth, camera=name, description=description)
    with staged:
        staged.stage(output).write_text(json.dumps(doc) + "\n")
        if plot_path is not None:
            write_png(staged.stage(plot_path), plot_response(result.response))
        staged.commit()
    report = {
        "output": str(output),
        "plot": str(plot_path) if plot_path else None,
        "brackets": [[str(p) for p in b] for b in result.brackets],
        "bit_depth": result.bit_depth,
        "camera": name,
        "residual": round(result.residual, 5),
    }
    if json_:
        print_json(report)
        return
    status(f"{len(brackets)} bracket(s), residual {result.residual:.4f}; wrote {output}" + (f" and {plot_path}" if plot_path else ""), quiet=quiet)
