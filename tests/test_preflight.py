"""Fail fast: options, checkpoints and metadata that cannot work are refused
before any shot is decoded and before torch is imported (issue 13, part 3).

Each case runs the CLI in a fresh interpreter and reports, besides the exit
code and the error line, whether ``torch`` or ``cv2`` (the decoder) was ever
imported: neither may be."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hdrmerge import preflight
from hdrmerge.demo_scene import write_bracket
from tests.conftest import DATA

_PROBE = """
import json, sys
from hdrmerge.cli import run
code = run(sys.argv[1:])
print(json.dumps({"code": code, "torch": "torch" in sys.modules, "cv2": "cv2" in sys.modules}))
"""


def _run(*args: str, env: dict[str, str]) -> tuple[dict, list[str]]:
    r = subprocess.run([sys.executable, "-c", _PROBE, *args], env=dict(os.environ) | env,
                       capture_output=True, text=True, timeout=120)
    return json.loads(r.stdout.splitlines()[-1]), r.stderr.strip().splitlines()


@pytest.fixture
def bracket(tmp_path):
    return [str(p) for p in write_bracket(tmp_path / "in", size=(64, 96))]


def _refused_early(result: tuple[dict, list[str]], code: int, message: str) -> None:
    seen, lines = result
    assert lines == ["error: " + message]
    assert seen == {"code": code, "torch": False, "cv2": False}


def test_unknown_model(env, bracket, tmp_path):
    from hdrmerge.weights import CHECKPOINTS

    _refused_early(_run("fuse", *bracket, "-o", str(tmp_path / "x.exr"), "--model", "nope", env=env), 2,
                   f"unknown model 'nope'; known: {', '.join(CHECKPOINTS)} (see `hdrmerge weights list`)")


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_fp16_on_the_cpu(env, bracket, tmp_path, device):
    if device == "auto" and preflight.cuda_possible() is not False:
        pytest.skip("CUDA may be available here")
    _refused_early(_run("fuse", *bracket, "-o", str(tmp_path / "x.exr"), "--device", device, "--precision", "fp16", env=env),
                   2, "--precision fp16 needs a GPU; on the CPU use fp32 (or auto)")


def test_cuda_without_cuda(env, bracket, tmp_path):
    if preflight.cuda_possible() is not False:
        pytest.skip("CUDA may be available here")
    _refused_early(_run("fuse", *bracket, "-o", str(tmp_path / "x.exr"), "--device", "cuda", env=env),
                   2, "--device cuda: no CUDA device is available to PyTorch here; use --device auto or cpu")


def test_cuda_hidden_by_cuda_visible_devices(env, bracket, tmp_path):
    _refused_early(_run("batch", str(tmp_path / "in"), "--device", "cuda", env=dict(env, CUDA_VISIBLE_DEVICES="")),
                   2, "--device cuda: no CUDA device is available to PyTorch here; use --device auto or cpu")


def test_absolute_without_exif(env, tmp_path):
    shots = [str(DATA / "merianos_fusion_noexif" / "SeaRock" / f"SeaRock{i}.jpg") for i in (1, 2, 3)]
    _refused_early(_run("fuse", *shots, "-o", str(tmp_path / "x.exr"), "--normalize", "absolute", env=env), 2,
                   "--normalize absolute needs ExposureTime, FNumber and ISO in the EXIF of the shortest shot, "
                   "and no shot has all three; use --normalize reference")
    # With --ev the shortest shot is known, and named.
    _refused_early(_run("fuse", *shots, "-o", str(tmp_path / "x.exr"), "--normalize", "absolute", "--ev=2,0,-2", env=env), 2,
                   "--normalize absolute needs ExposureTime, FNumber and ISO in the EXIF of the shortest shot "
                   "(SeaRock3.jpg); use --normalize reference")


def test_missing_weights_offline(isolated_env, bracket, tmp_path):
    _refused_early(_run("fuse", *bracket, "-o", str(tmp_path / "x.exr"), env=dict(isolated_env, HF_HUB_OFFLINE="1")), 1,
                   "safnet-s is not cached and HF_HUB_OFFLINE is set, so it cannot be downloaded; unset HF_HUB_OFFLINE, "
                   "or fetch SAFNet_S_siggraph17.pth elsewhere and run `hdrmerge weights install safnet-s PATH`, "
                   "or put it in a folder named by HDRMERGE_WEIGHTS_DIR")


def test_torch_version_file_tells_a_cpu_build(tmp_path, monkeypatch):
    """The CUDA probe reads torch/version.py: `cuda = None` is a CPU build."""
    import importlib.util

    pkg = tmp_path / "torch"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: importlib.machinery.ModuleSpec(
        name, None, origin=str(pkg / "__init__.py")))
    (pkg / "version.py").write_text("__version__ = '2.13.0+cpu'\ncuda: Optional[str] = None\n")
    assert preflight.torch_cuda_build() is False
    (pkg / "version.py").write_text("__version__ = '2.13.0'\ncuda: Optional[str] = '12.8'\n")
    assert preflight.torch_cuda_build() is True
    (pkg / "version.py").write_text("__version__ = '2.13.0'\n")
    assert preflight.torch_cuda_build() is None
