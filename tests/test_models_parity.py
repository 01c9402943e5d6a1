"""Golden parity: our SAFNet/SAFNet-S against the authors' own outputs.

Tolerances from fixtures/safnet/README.md: hdr_r and hdr_m max abs difference
<= 1e-4, masks <= 1e-4, flows <= 5e-3 px, PSNR-mu of hdr_r >= 90 dB.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hdrmerge.models import build_model, make_frames
from hdrmerge.weights.store import read_pth
from tests.conftest import golden_files, load_golden

MU = 5000.0


def _mu(x: np.ndarray) -> np.ndarray:
    return np.log1p(MU * x) / math.log1p(MU)


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t[0].permute(1, 2, 0).numpy()


def _chw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None]


def test_fixture_set_covers_both_architectures_and_scales():
    goldens = [load_golden(p) for p in golden_files()]
    assert {g.arch for g in goldens} == {"SAFNet", "SAFNet-S"}
    assert {float(g.data["scale"]) for g in goldens} >= {0.25, 0.5, 1.0}
    # Sizes that are not multiples of 16 are among them.
    assert any(g.data["ldr0"].shape[0] % 16 for g in goldens)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("npz", golden_files(), ids=lambda p: p.stem)
def test_golden_parity(npz, layout):
    g = load_golden(npz)
    model = build_model(read_pth(g.weights)).to(memory_format=layout)
    assert model.arch == g.arch
    d = g.data
    frames = make_frames([_chw(d["ldr0"]), _chw(d["ldr1"]), _chw(d["ldr2"])], d["exposures"].tolist())
    with torch.inference_mode():
        out = model.run(*frames, scale=float(d["scale"]))
    hdr, hdr_m = _hwc(out.hdr), _hwc(out.hdr_m)
    assert hdr.shape == d["hdr_r"].shape
    assert np.abs(hdr - d["hdr_r"]).max() <= 1e-4
    assert np.abs(hdr_m - d["hdr_m"]).max() <= 1e-4
    assert np.abs(_hwc(out.motion.mask0) - d["mask0"]).max() <= 1e-4
    assert np.abs(_hwc(out.motion.mask2) - d["mask2"]).max() <= 1e-4
    assert np.abs(_hwc(out.motion.flow0) - d["flow0"]).max() <= 5e-3
    assert np.abs(_hwc(out.motion.flow2) - d["flow2"]).max() <= 5e-3
    mse = float(np.mean((_mu(hdr) - _mu(d["hdr_r"])) ** 2))
    assert 10 * math.log10(1.0 / max(mse, 1e-20)) >= 90.0
