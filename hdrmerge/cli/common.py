"""Options shared by several commands, as ``Annotated`` aliases, and console helpers.

Nothing here imports torch: ``hdrmerge --help`` imports this module.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

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
