"""``hdrmerge synth``: bracket test sets with ground truth from HDR photographs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hdrmerge.cli.common import JsonOpt, QuietOpt, parse_ev, print_json, status
from hdrmerge.errors import InputError


def synth(
    hdr_dir: Annotated[Path, typer.Argument(metavar="HDR_DIR", help="Folder of HDR photographs (.exr, .hdr).", show_default=False)],
    out_dir: Annotated[Path, typer.Argument(metavar="OUT_DIR", help="Where the test set is written (Kalantari layout).", show_default=False)],
    ev: Annotated[str, typer.Option("--ev", metavar="A,B,C", help="Exposure values of the three shots, stops (e.g. --ev=-2,0,2).")] = "-2,0,2",
    noise: Annotated[float, typer.Option("--noise", help="Read-noise sigma in linear units (shot noise scales with it); 0 for none.")] = 0.002,
    shift: Annotated[float, typer.Option("--shift", help="Largest hand-held shift of the outer shots, pixels.")] = 4.0,
    objects: Annotated[int, typer.Option("--objects", help="Moving foreground objects per scene.")] = 2,
    motion: Annotated[float, typer.Option("--motion", help="Largest object movement between shots, pixels.")] = 30.0,
    max_side: Annotated[int, typer.Option("--max-side", help="Downscale photographs so the longer side is at most this.")] = 1000,
    fmt: Annotated[str, typer.Option("--format", help="tif (TIFF, 16 bits unless --bits 8) or jpg (8-bit JPEG), both with EXIF.")] = "tif",
    encoding: Annotated[str, typer.Option("--encoding", help="Transfer curve of the shots: gamma2.2, srgb, camera-mild, camera-strong (sRGB + S-curve) or linear.")] = "gamma2.2",
    bits: Annotated[int | None, typer.Option("--bits", help="Sample depth of TIFF shots: 8 or 16 (default 16).", show_default=False)] = None,
    no_exif: Annotated[bool, typer.Option("--no-exif", help="Write no metadata: exposures only from exposure.txt (--ev), the response only from the pixels.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same set.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Write into an OUT_DIR that is not empty.")] = False,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> None:
    """Make a test set with known ground truth from real HDR photographs."""
    from hdrmerge.testsets import SynthOptions, synthesise

    evs = parse_ev(ev) or []
    if len(evs) != 3:
        raise InputError(f"--ev has {len(evs)} values; give 3, e.g. --ev=-2,0,2")
    for name, value in (("--noise", noise), ("--shift", shift), ("--motion", motion), ("--objects", objects)):
        if value < 0:
            raise InputError(f"{name} {value}: must not be negative")
    if max_side < 32:
        raise InputError(f"--max-side {max_side}: must be at least 32")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} is a file; give a folder for the test set")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise InputError(f"{out_dir} is not empty; pass --overwrite to write into it")
    if fmt == "jpg" and bits not in (None, 8):
        raise InputError(f"--bits {bits}: JPEG holds 8 bits; use --format tif")
    options = SynthOptions((evs[0], evs[1], evs[2]), noise, shift, objects, motion, max_side, fmt, seed, encoding, bits or 16, not no_exif)
    folders = synthesise(hdr_dir, out_dir, options)
    if json_:
        print_json({"scenes": [str(f) for f in folders], "response": str(out_dir / "response.json"), "options": options.__dict__})
    else:
        status(f"{len(folders)} scenes written to {out_dir}", quiet=quiet)
