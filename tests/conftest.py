"""Shared test fixtures.

Real data and the authors' checkpoint are read from the folder named by
``HDRMERGE_SHARED`` (set by .ci/run and the Makefile); nothing from it is ever
copied into the repository.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


def _shared() -> Path:
    value = os.environ.get("HDRMERGE_SHARED")
    if not value:
        raise pytest.UsageError(
            "HDRMERGE_SHARED is not set: point it at the shared/ folder (make test does this)"
        )
    path = Path(value)
    if not (path / "fixtures" / "safnet").is_dir():
        raise pytest.UsageError(f"HDRMERGE_SHARED={path} does not hold fixtures/safnet")
    return path


SHARED = _shared()
DATA = SHARED / "data"
FIXTURES = SHARED / "fixtures" / "safnet"
SAFNET_S_PTH = SHARED / "weights" / "SAFNet_S_siggraph17.pth"
RANDOM_SAFNET_PTH = FIXTURES / "safnet_random_seed2024.pth"
#: AFUNet goldens (the authors' code, seeded random weights; fixtures/afunet/README.md).
AFUNET_FIXTURES = SHARED / "fixtures" / "afunet"
AFUNET_WEIGHTS = AFUNET_FIXTURES / "weights.safetensors"


@dataclass(frozen=True)
class Golden:
    """One golden run of the authors' code."""

    name: str
    arch: str
    weights: Path
    data: dict[str, np.ndarray]


def golden_files() -> list[Path]:
    return sorted(FIXTURES.glob("*.npz"))


def load_golden(npz: Path) -> Golden:
    meta = json.loads(npz.with_suffix(".json").read_text())
    weights = SHARED / "weights" / meta["weights"]
    if not weights.is_file():
        weights = FIXTURES / meta["weights"]
    with np.load(npz) as z:
        data = {k: z[k] for k in z.files}
    return Golden(npz.stem, meta["arch"], weights, data)


@pytest.fixture(scope="session")
def safnet_s_state():
    import torch

    return torch.load(SAFNET_S_PTH, weights_only=True, map_location="cpu")


@pytest.fixture(scope="session")
def random_safnet_state():
    import torch

    return torch.load(RANDOM_SAFNET_PTH, weights_only=True, map_location="cpu")


@pytest.fixture(scope="session")
def random_afunet_state():
    """The AFUNet fixture's state dict, keys with the ``module.`` prefix as the authors save them."""
    from safetensors.torch import load_file

    return load_file(AFUNET_WEIGHTS)


@pytest.fixture
def isolated_env(tmp_path, monkeypatch):
    """An environment with an empty cache, no weights dir and no network."""
    env = {
        "HDRMERGE_CACHE_DIR": str(tmp_path / "cache"),
        "HF_HOME": str(tmp_path / "hf"),
        "HF_ENDPOINT": "http://127.0.0.1:9",  # discard port: nothing listens
        "HDRMERGE_FALLBACK_URL": "http://127.0.0.1:9/raw",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    for key in ("HDRMERGE_WEIGHTS_DIR", "HF_HUB_OFFLINE", "HDRMERGE_HUB_REPO", "HDRMERGE_DEBUG"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # huggingface_hub reads HF_ENDPOINT once, at import: code run in this
    # process (not in a fresh `hdrmerge`) must not reach the real Hub either.
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "ENDPOINT", env["HF_ENDPOINT"])
    monkeypatch.setattr(
        hub_constants, "HUGGINGFACE_CO_URL_TEMPLATE", env["HF_ENDPOINT"] + "/{repo_id}/resolve/{revision}/{filename}"
    )
    return env


@pytest.fixture
def env(isolated_env):
    """:func:`isolated_env` with the authors' SAFNet-S checkpoint from the shared folder."""
    return dict(isolated_env, HDRMERGE_WEIGHTS_DIR=str(SHARED / "weights"))


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``hdrmerge`` in a fresh interpreter, as a user's shell would."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "hdrmerge", *args],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def run_cli_in_process(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the CLI in this process (``hdrmerge.cli.run``), captured as :func:`run_cli` captures a child.

    The same entry point, exit codes and output streams as ``python -m hdrmerge``,
    without a fresh interpreter importing PyTorch (2–3 s per run on the CI
    machine). Only for claims a process boundary does not change: signals, a
    killed process, a traceback-free stderr of a real process and the like
    need :func:`run_cli`. ``env`` is applied to ``os.environ`` for the call
    and restored after; stderr is not a terminal, as under ``run_cli``.
    """
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from hdrmerge.cli import run

    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    try:
        os.environ.update(env or {})
        if cwd is not None:
            os.chdir(cwd)
        with redirect_stdout(out), redirect_stderr(err):
            code = run(list(args))
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(["hdrmerge", *args], code, out.getvalue(), err.getvalue())


# `hdrmerge` run from `python -c`: when the network stage is reached for an
# output whose name starts with $TEST_PAUSE_PREFIX, it touches $TEST_SIGNALS/holding
# and waits for $TEST_SIGNALS/go (the run holds that output's lock meanwhile).
_PAUSED_CLI = """
import os, sys, time
from pathlib import Path
import hdrmerge.pipeline
run_prepared = hdrmerge.pipeline.run_prepared
signals = Path(os.environ["TEST_SIGNALS"])

def paused(prepared, *args, **kwargs):
    if prepared.output.name.startswith(os.environ["TEST_PAUSE_PREFIX"]):
        (signals / "holding").touch()
        while not (signals / "go").exists():
            time.sleep(0.05)
    return run_prepared(prepared, *args, **kwargs)

hdrmerge.pipeline.run_prepared = paused
from hdrmerge.cli import run
sys.exit(run(sys.argv[1:]))
"""


def start_paused_cli(args: list[str], signals: Path, env: dict[str, str], prefix: str = "") -> subprocess.Popen:
    """A real ``hdrmerge ARGS`` paused before the network runs on an output named ``prefix…``
    (see ``_PAUSED_CLI``); returns once it is paused. Touch ``signals / "go"`` to let it go on."""
    signals.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", _PAUSED_CLI, *args],
        env=dict(os.environ, **env, TEST_SIGNALS=str(signals), TEST_PAUSE_PREFIX=prefix),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 300
    while not (signals / "holding").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1] if proc.poll() is not None else "timeout"
        time.sleep(0.05)
    return proc


def write_rotated_jpeg_bracket(folder: Path, size: tuple[int, int]) -> list[Path]:
    """A synthetic JPEG bracket (``size`` = height, width) whose EXIF says "rotate 90° clockwise" (Orientation 6)."""
    from PIL import Image

    from hdrmerge.demo_scene import write_bracket

    paths = write_bracket(folder, size=size, motion_px=0)
    for p in paths:
        with Image.open(p) as img:
            exif = img.getexif()
            exif[0x0112] = 6
            img.load()
            img.save(p, "JPEG", quality=95, exif=exif)
    return paths
