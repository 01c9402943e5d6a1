"""``make install``'s choice of PyTorch build, read from ``make -n`` (which
prints the commands without running them): the machine decides unless
TORCH_SPEC is given, and a changed TORCH_SPEC reinstalls PyTorch."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")

CPU_INDEX = "--index-url https://download.pytorch.org/whl/cpu"


def _plan(venv, *args: str) -> list[str]:
    # Run as a top-level make even under `make test`: no inherited recursion
    # variables (MAKELEVEL makes make print "Entering directory" lines).
    inherited = ("TORCH_SPEC", "TORCH_INDEX", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEFILES", "MAKEOVERRIDES")
    env = {k: v for k, v in os.environ.items() if k not in inherited} | {"LC_ALL": "C"}
    r = subprocess.run(["make", "--no-print-directory", "-n", "install", f"VENV={venv}", *args], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def _installs(lines: list[str]) -> list[str]:
    return [ln.split(" -m pip install -q ", 1)[1] for ln in lines if " -m pip install -q " in ln and "upgrade pip" not in ln]


def test_machine_without_nvidia_driver_gets_the_cpu_wheel(tmp_path):
    lines = _plan(tmp_path / "v", "NVIDIA_SMI=/nonexistent", f"NVIDIA_PROC={tmp_path / 'none'}", "TORCH_CPU_PROBE=true")
    assert _installs(lines) == [f'{CPU_INDEX} "torch"', "-e '.[test]'"]
    assert lines[0] == f'echo "PyTorch: CPU build from the PyTorch CPU index (no NVIDIA driver found): torch {CPU_INDEX}"'


def test_unreachable_cpu_index_falls_back_to_pips_own_sources(tmp_path):
    # The real probe, against an address where nothing listens: it fails at once.
    lines = _plan(tmp_path / "v", "NVIDIA_SMI=/nonexistent", f"NVIDIA_PROC={tmp_path / 'none'}",
                  "TORCH_CPU_INDEX=http://127.0.0.1:9/whl/cpu")
    assert _installs(lines) == [' "torch==2.13.0"', "-e '.[test]'"]
    assert lines[0] == ('echo "PyTorch: no NVIDIA driver found and the PyTorch CPU index does not answer, '
                        'so pip\'s own sources: torch==2.13.0"')


@pytest.mark.parametrize("probe", ["smi", "proc"])
def test_machine_with_nvidia_driver_gets_the_default_cuda_build(tmp_path, probe):
    fake_smi = tmp_path / "nvidia-smi"
    fake_smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA (fake)'\n")
    fake_smi.chmod(0o755)
    (tmp_path / "proc").mkdir()
    args = (f"NVIDIA_SMI={fake_smi}", f"NVIDIA_PROC={tmp_path / 'none'}") if probe == "smi" else (
        "NVIDIA_SMI=/nonexistent", f"NVIDIA_PROC={tmp_path / 'proc'}")
    lines = _plan(tmp_path / "v", *args)
    assert _installs(lines) == [' "torch"', "-e '.[test]'"]
    assert lines[0] == 'echo "PyTorch: CUDA build from PyPI (NVIDIA driver found): torch"'


def _installed_venv(tmp_path, spec: str):
    venv = tmp_path / "v"
    (venv / "bin").mkdir(parents=True)
    (venv / ".torch-spec").write_text(spec + "\n")
    hdrmerge = venv / "bin" / "hdrmerge"
    hdrmerge.touch()
    newest = max(os.stat(REPO / "pyproject.toml").st_mtime, os.stat(venv / ".torch-spec").st_mtime)
    os.utime(hdrmerge, (newest + 10,) * 2)
    return venv


def test_same_torch_spec_installs_nothing(tmp_path):
    venv = _installed_venv(tmp_path, "torch==2.13.0")
    assert _plan(venv, "TORCH_SPEC=torch==2.13.0") == ["make: Nothing to be done for 'install'."]


def test_changed_torch_spec_reinstalls_torch(tmp_path):
    venv = _installed_venv(tmp_path, "torch==2.13.0")
    lines = _plan(venv, "TORCH_SPEC=torch==2.12.0")
    assert f"test ! -f {venv}/.torch-spec || {venv}/bin/python -m pip uninstall -q -y torch" in lines
    assert _installs(lines) == [' "torch==2.12.0"', "-e '.[test]'"]
    assert f"echo 'torch==2.12.0' > {venv}/.torch-spec" in lines
