"""Device choice, precision, and the merge call on decoded frames."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hdrmerge.errors import InputError
from hdrmerge.inference import Engine, merge, resolve_precision, select_device
from hdrmerge.models import build_model
from hdrmerge.reading import Frame
from hdrmerge.weights import LoadedWeights
from hdrmerge.weights.store import read_pth
from tests.conftest import FIXTURES, SAFNET_S_PTH, load_golden


def _engine(precision: str = "fp32") -> Engine:
    state = read_pth(SAFNET_S_PTH)
    weights = LoadedWeights(state, "SAFNet-S", "safnet-s", "x", "test", SAFNET_S_PTH)
    return Engine(build_model(state), weights, torch.device("cpu"), precision)


def _golden_frames():
    g = load_golden(FIXTURES / "safnet_s_pingpong_216x384_s050.npz")
    frames = [
        Frame(Path(f"f{i}.png"), (np.clip(g.data[f"ldr{i}"], 0, 1) * 65535 + 0.5).astype(np.uint16), "png")
        for i in range(3)
    ]
    return g, frames


def test_auto_device_prefers_cuda_then_mps(monkeypatch):
    assert select_device("auto").type == "cpu"  # this machine has neither
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert select_device("auto").type == "mps"


def test_exception_unavailable_device():
    with pytest.raises(InputError, match=r"^--device mps: Apple's Metal backend is not available here; use --device auto or cpu$"):
        select_device("mps")


def test_precision_rule():
    assert resolve_precision("auto", torch.device("cuda")) == "fp16"
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    with pytest.raises(InputError, match=r"^--precision fp16 needs a GPU"):
        resolve_precision("fp16", torch.device("cpu"))


def test_merge_matches_the_golden_output_from_16_bit_frames():
    g, frames = _golden_frames()
    result = merge(_engine(), frames, g.data["exposures"].tolist(), flow_scale=0.5, intermediates=True)
    # The frames went through 16-bit quantisation, so allow for that.
    assert np.abs(result.hdr - g.data["hdr_r"]).max() < 2e-3
    assert result.flow0.shape == (216, 384, 2) and result.mask2.shape == (216, 384, 1)


def test_fp16_autocast_path_stays_above_50_db():
    g, frames = _golden_frames()
    exposures = g.data["exposures"].tolist()
    full = merge(_engine("fp32"), frames, exposures).hdr
    half = merge(_engine("fp16"), frames, exposures).hdr
    assert not np.array_equal(full, half)  # the half-precision path really ran
    mu = lambda x: np.log1p(5000 * x) / math.log1p(5000)  # noqa: E731
    psnr = 10 * math.log10(1.0 / float(np.mean((mu(half) - mu(full)) ** 2)))
    assert psnr >= 50.0



_FAULTS = """
import resource, hdrmerge, torch
torch.empty(2**24).fill_(1.0)  # the first 64 MiB block
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    torch.empty(2**24).fill_(1.0)  # made and freed, as activations are
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _thp_available() -> bool:
    try:
        return "[never]" not in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not _thp_available(), reason="needs Linux transparent huge pages")
def test_importing_hdrmerge_backs_large_tensors_with_huge_pages():
    """Five fresh 64 MiB blocks: 5 × 16384 page faults with 4 KiB pages (as a
    user who sets THP_MEM_ALLOC_ENABLE=0 keeps), a few hundred with huge pages."""
    import os
    import subprocess
    import sys

    def faults(env_value: str | None) -> int:
        env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
        if env_value is not None:
            env["THP_MEM_ALLOC_ENABLE"] = env_value
        out = subprocess.run([sys.executable, "-c", _FAULTS], capture_output=True, text=True, env=env, check=True)
        return int(out.stdout)

    assert faults("0") >= 5 * 16384
    assert faults(None) < 5 * 16384 // 8
