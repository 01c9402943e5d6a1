"""Options shared by several commands, as ``Annotated`` aliases, and console helpers.

Nothing here imports torch: ``hdrmerge --help`` imports this module.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand

from hdrmerge.errors import InputError
from hdrmerge.frame_size import DEFAULT_MAX_PIXELS

#: Status, progress and warnings go to stderr; stdout is for results (--json).
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
out_console = Console(highlight=False, soft_wrap=True)


class ReadmeCommand(TyperCommand):
    """A command whose usage line reads like the README: ``IN1 IN2 IN3``, ``FOLDER``.

    Typer writes an argument as ``{inputs}...`` in the usage line and adds
    its Python type (``<list[Path]>``) in the argument list; every argument
    here has a metavar, and it is shown as written, alone. Options without a
    metavar show their choices (``auto|cuda|mps|cpu``) or their name in
    capitals (``--seed SEED``), not a Python type (``<int>``).
    """

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                pieces.append(param.metavar or param.name.upper())  # type: ignore[union-attr]
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        for param in self.params:
            if param.param_type_name == "argument" and param.metavar:
                param.display_type_rich = lambda ctx=None: ""  # type: ignore[method-assign,attr-defined]
            elif param.param_type_name == "option" and param.metavar is None and not getattr(param, "is_flag", False):
                # Typer keeps the choices on its type descriptor (newer) or click type (older).
                desc = getattr(param, "type_descriptor", None)
                choices = desc.choices if desc is not None and desc.is_choice else getattr(getattr(param, "type", None), "choices", None)
                param.metavar = (
                    "|".join(str(getattr(c, "value", c)) for c in choices) if choices else (param.name or "").upper()
                )
        super().format_help(ctx, formatter)


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
        metavar="NAME",
        show_default=False,
    ),
]
WeightsOpt = Annotated[
    Path | None,
    typer.Option(
        "--weights",
        help="A checkpoint file (.safetensors or .pth) to use instead of a registered one.",
        metavar="PATH",
        dir_okay=False,
        show_default=False,
    ),
]
HubRepoOpt = Annotated[
    str | None,
    typer.Option(
        "--hub-repo",
        help="Hugging Face Hub repository to download from (also HDRMERGE_HUB_REPO).",
        metavar="ID",
        show_default=False,
    ),
]
DeviceOpt = Annotated[
    Device,
    typer.Option("--device", help="auto prefers CUDA, then MPS, then the CPU.", case_sensitive=False),
]


class Prefer(str, Enum):
    raw = "raw"
    jpeg = "jpeg"


# Finding brackets in a folder (batch, finetune; hdrmerge/batch.py).
RecursiveOpt = Annotated[bool, typer.Option("--recursive", "-r", help="Also look in subfolders.")]
GroupSizeOpt = Annotated[
    int | None,
    typer.Option("--group-size", metavar="N", help="Fixed groups of N shots in capture (or file-name) order.", show_default=False),
]
GapOpt = Annotated[
    float, typer.Option("--gap", metavar="SECONDS", help="Seconds between shots of one bracket, plus the previous shot's exposure time.")
]
PreferOpt = Annotated[
    Prefer,
    typer.Option("--prefer", help="Which file of a RAW+JPEG pair to merge from.", case_sensitive=False),
]


def nonempty_path(option: str, fix: str) -> Callable[[str], Path]:
    """A ``parser`` for a path option that refuses an empty value (InputError, exit 2).

    An unset shell variable (``-o "$OUT"``) gives ``''``, which pathlib reads
    as the current folder: files would land there, or a confusing error follow.
    ``fix``: what to give instead, e.g. ``give the file to write, e.g. -o out.exr``.
    """

    def parse(value: str) -> Path:
        if not value.strip():
            raise InputError(f"{option} is empty (an unset variable?); {fix}")
        return Path(value)

    return parse


def preview_target(text: str, output: Path) -> Path:
    """``--preview``'s value as the file to write.

    A folder (one that exists, or any value ending in ``/``) gets the default
    name inside it: ``--preview views/`` with ``-o out.exr`` is
    ``views/out.exr.preview.jpg``. The extension chooses the format (JPEG or
    PNG); any other is refused, as is an empty value.
    """
    from hdrmerge.writing import preview_format, preview_path

    if not text.strip():
        raise InputError("--preview is empty (an unset variable?); give the preview's file, e.g. --preview view.jpg, or --no-preview")
    path = Path(text)
    if text.endswith(("/", os.sep)) or path.is_dir():
        path = path / preview_path(output).name
    try:
        preview_format(path)
    except InputError:
        raise InputError(f"--preview {path}: a preview is a JPEG or PNG; end its name in .jpg, .jpeg or .png") from None
    return path


def check_gap(gap: float) -> None:
    if gap < 0:
        raise InputError(f"--gap {gap}: must not be negative")


class StopFlag:
    """First Ctrl-C: finish the current ``what`` (bracket, step), then stop. Second: abort now.

    Installed in the main thread only (where Python delivers signals); the
    previous handler comes back on exit.
    """

    def __init__(self, what: str, *, quiet: bool) -> None:
        self.event = threading.Event()
        self.what = what
        self.quiet = quiet
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()
        if not self.quiet:
            # Straight to the file descriptor: the signal may land while the console is
            # printing a progress line, and rich's console (like Python's buffered
            # stderr) is not reentrant: a print from here lost this line and doubled that one.
            os.write(2, f"warning: stopping after the current {self.what} (Ctrl-C again to abort at once)\n".encode())

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class Normalize(str, Enum):
    short = "short"
    reference = "reference"
    absolute = "absolute"


class ExrDtype(str, Enum):
    half = "half"
    float = "float"


class DngDtype(str, Enum):
    half = "half"
    float = "float"
    uint16 = "uint16"


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


def parse_max_pixels(text: str) -> int:
    """``"200M"`` / ``"200MP"`` → 200_000_000, ``"5e7"`` → 50_000_000; InputError otherwise."""
    t = text.strip().upper().removesuffix("P")
    scale = 1_000_000 if t.endswith("M") else 1
    try:
        value = float(t.removesuffix("M")) * scale
    except ValueError:
        value = -1.0
    if not value >= 1:
        raise InputError(f"--max-pixels {text!r}: give a pixel count such as 200M (megapixels) or 50000000")
    return int(value)


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
        metavar="S|auto",
    ),
]
TileOpt = Annotated[
    int | None,
    typer.Option("--tile", metavar="N", help="Tile size in pixels for the full-resolution stage (default: from available memory).", show_default=False),
]
MaxMemoryOpt = Annotated[
    str | None,
    typer.Option("--max-memory", metavar="SIZE", help="Memory the tiles may use, e.g. 4GB (default: half of what is free on CUDA; elsewhere at most 512MiB, 16GiB for AFUNet).", show_default=False),
]
MaxPixelsOpt = Annotated[
    str,
    typer.Option(
        "--max-pixels",
        metavar="N",
        help="Refuse shots larger than this many pixels before decoding them (e.g. 200M); "
        "a guard against decompression bombs. See docs/formats.md.",
    ),
]
#: The default of --max-pixels as the option spells it.
MAX_PIXELS_DEFAULT = f"{DEFAULT_MAX_PIXELS // 1_000_000}M"
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
DngDtypeOpt = Annotated[
    DngDtype,
    typer.Option("--dng-dtype", help="Sample type of .dng output: half or float (compressed), or uint16 for RawTherapee 5.9 (see docs/formats.md).", case_sensitive=False),
]
ExrCompressionOpt = Annotated[
    ExrCompression, typer.Option("--exr-compression", help="Lossless compression of .exr output.", case_sensitive=False)
]
ResponseOpt = Annotated[
    str,
    typer.Option(
        "--response",
        metavar="auto|gamma2.2|srgb|linear|FILE",
        help="Camera response of JPEG/PNG/TIFF shots: auto (metadata, then the pixels), gamma2.2, srgb, "
        "linear, or a response file from `hdrmerge calibrate`. RAW ignores it. See docs/radiometry.md.",
    ),
]
ExactOpt = Annotated[
    bool,
    typer.Option("--exact", help="The network authors' pipeline exactly: gamma 2.2, no hdrmerge additions (reproduces papers)."),
]
NoGuardOpt = Annotated[
    bool,
    typer.Option(
        "--no-guard",
        help="Keep SAFNet's refined output where it leaves what the reference shot allows, instead of "
        "falling back to its first-stage merge, and where the reference is clipped (SAFNet only; off under --exact). "
        "See docs/quality.md.",
    ),
]
NoShadowMergeOpt = Annotated[
    bool,
    typer.Option(
        "--no-shadow-merge",
        help="Do not average the shots into the output: the long shot's cleaner shadows and the short shot's "
        "highlights where they agree with it, the reference where it is well exposed (SAFNet only; off under "
        "--exact). See docs/quality.md.",
    ),
]
PrecisionOpt = Annotated[
    Precision,
    typer.Option("--precision", help="auto: fp16 on CUDA for SAFNet, fp32 elsewhere and for AFUNet.", case_sensitive=False),
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
    max_pixels: str = MAX_PIXELS_DEFAULT,
    no_guard: bool = False,
    no_shadow_merge: bool = False,
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
        max_pixels=parse_max_pixels(max_pixels),
        normalize=normalize.value,
        exr_dtype=exr_dtype.value,
        exr_compression=exr_compression.value,
        no_preview=no_preview,
        overwrite=overwrite,
        guard=not no_guard,
        shadow_merge=not no_shadow_merge,
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
    quiet: bool = False,
) -> Callable[[], Any]:
    """A function that loads the network once, on first call, and says which it is.

    The engine's notices (AFUNet's time estimate before a long CPU run) go to
    stderr as warnings unless ``quiet``.
    """
    loaded: list[Any] = []

    def get_engine() -> Any:
        if not loaded:
            from hdrmerge.inference import Engine
            from hdrmerge.weights import load_weights

            w = load_weights(model, weights, hub_repo=hub_repo, progress=chatty and err_console.is_terminal)
            engine = Engine.load(w, device.value, precision.value)
            engine.notice = lambda message: warn(message, quiet=quiet)
            loaded.append(engine)
            status(f"model: {loaded[0].describe()}", quiet=not chatty)
        return loaded[0]

    return get_engine


def print_json(obj: Any) -> None:
    """Exactly one JSON object, one line, on stdout."""
    sys.stdout.write(json.dumps(obj, separators=(",", ":"), default=str) + "\n")
    sys.stdout.flush()


def print_table(table: Table) -> None:
    """A table on stdout: drawn with a border on a terminal, tab-separated otherwise.

    Piped or redirected, a table is one header line and one line per row,
    cells separated by tabs and never wrapped or cut, so names, paths and
    hashes stay whole for ``cut``, ``awk`` or a spreadsheet; a line break
    inside a cell becomes ``; ``. The title is left out (see :func:`print_note`).
    """
    if out_console.is_terminal:
        out_console.print(table)
        return

    def cell(value: Any) -> str:
        text = value.plain if isinstance(value, Text) else str(value)
        return "; ".join(text.splitlines()).replace("\t", " ")

    lines = ["\t".join(cell(c.header) for c in table.columns)]
    lines += ["\t".join(cell(v) for v in row) for row in zip(*(list(c.cells) for c in table.columns))]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def print_note(message: str) -> None:
    """A line that goes with a table: on stdout on a terminal, else on stderr,
    so that piped stdout holds the table's tab-separated lines only."""
    (out_console if out_console.is_terminal else err_console).print(message, markup=False)


@contextmanager
def merge_progress(enabled: bool, label: str = "") -> Iterator[tuple[Callable[[str], None], Callable[[int, int], None] | None]]:
    """``(on_stage, on_tile)`` for one merge, shown live on stderr when ``enabled``.

    The stages (reading, loading model, merging, writing) with a spinner,
    then, while the full-resolution stage runs, a bar of tiles done out of
    the total with the time left. The display goes when the merge ends.
    Disabled: callbacks that do nothing (``on_tile`` None, so the tiling loop
    does not even call it).
    """
    if not enabled:
        yield (lambda stage: None), None
        return
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeRemainingColumn

    prefix = f"{label} " if label else ""
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[count]}"),
        TimeRemainingColumn(), console=err_console, transient=True,
    ) as progress:
        task = progress.add_task(prefix + "starting", total=None, count="")

        def on_stage(stage: str) -> None:
            progress.update(task, description=prefix + stage, completed=0, count="")
            progress.tasks[0].total = None  # back to a pulsing bar without a count

        def on_tile(done: int, total: int) -> None:
            progress.update(task, description=prefix + "merging", total=total, completed=done, count=f"{done}/{total} tiles")

        yield on_stage, on_tile


def merge_summary(report: dict[str, Any]) -> str:
    """One plain line for a finished merge: the files written, the HDR's size,
    the exposures in stops from the reference with their settings, the time."""
    from hdrmerge.exposure_text import exposures_text, shot_settings_text, size_text

    outputs = report["outputs"]
    hdr = Path(outputs["hdr"])
    try:
        size = f" ({size_text(hdr.stat().st_size)})"
    except OSError:
        size = ""
    shots = sorted(report["inputs"], key=lambda i: i["stops"])
    source = report["exposures"]["source"]
    settings = [shot_settings_text(i.get("settings"), i.get("ev_source", source), source) for i in shots]
    exposures = exposures_text([i["stops"] for i in shots], settings, source)
    timings = report["timings_s"]
    seconds = timings.get("total", sum(v for k, v in timings.items() if k != "total"))
    debug = [Path(v) for k, v in outputs.items() if k.startswith("debug_")]
    written = [f" and {outputs['preview']}"] if "preview" in outputs else []
    if debug:
        written.append(f" and {len(debug)} debug images in {debug[0].parent}")
    return f"wrote {hdr}{size}" + ",".join(written) + f"; exposures {exposures}; {seconds:.1f} s"


def status(message: str, *, quiet: bool = False) -> None:
    """A status line on stderr, shown only on a terminal and without --quiet."""
    if not quiet and err_console.is_terminal:
        err_console.print(message)


def warn(message: str, *, quiet: bool = False) -> None:
    """A warning on stderr (also when stderr is not a terminal), unless --quiet."""
    if not quiet:
        err_console.print(f"warning: {message}", markup=False)
