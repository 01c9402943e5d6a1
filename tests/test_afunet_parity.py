"""Golden parity: our AFUNet against the authors' own outputs (fixtures/afunet/).

Tolerances from fixtures/afunet/README.md: the input built from the 16-bit
codes within 1e-6; ``output`` and ``output_testpy`` max abs difference
<= 5e-6 and mean <= 5e-7; every intermediate of the debug case within
2e-5 · max(1, max |reference|).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hdrmerge.models import AFUNet, build_model
from hdrmerge.models.afunet import make_input, run_padded
from hdrmerge.weights.store import read_checkpoint_file
from tests.conftest import AFUNET_FIXTURES, AFUNET_WEIGHTS

CASES = sorted(p for p in AFUNET_FIXTURES.glob("afunet_h*.npz"))
DEBUG = AFUNET_FIXTURES / "afunet_debug_h20_w28.npz"


def _load(npz) -> dict[str, np.ndarray]:
    with np.load(npz) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def model() -> AFUNet:
    m = build_model(read_checkpoint_file(AFUNET_WEIGHTS), source=AFUNET_WEIGHTS.name)
    assert isinstance(m, AFUNet) and not m.training
    return m


def _input_from_codes(d: dict[str, np.ndarray]) -> torch.Tensor:
    codes = torch.from_numpy(d["codes"].astype(np.float32))
    ldrs = [(codes[i] / 65536.0).permute(2, 0, 1)[None] for i in range(3)]
    ev = d["ev"]
    return make_input(ldrs, [2.0 ** (e - ev[0]) for e in ev])


def test_fixture_set_covers_padding_cases():
    sizes = {tuple(_load(p)["output"].shape[-2:]) for p in CASES}
    assert len(sizes) == 5
    assert any(h % 8 or w % 8 for h, w in sizes)  # the network's own padding
    assert any(h % 128 or w % 128 for h, w in sizes)  # test.py's padding to 128


@pytest.mark.parametrize("npz", [*CASES, DEBUG], ids=lambda p: p.stem)
def test_input_built_from_codes_matches_authors(npz):
    d = _load(npz)
    x = _input_from_codes(d)
    assert x.shape == d["input"].shape
    assert float((x - torch.from_numpy(d["input"])).abs().max()) <= 1e-6


@pytest.mark.parametrize("npz", CASES, ids=lambda p: p.stem)
def test_golden_output_and_testpy_padding(npz, model):
    d = _load(npz)
    x = torch.from_numpy(d["input"])
    with torch.inference_mode():
        out = model(x).numpy()
        diff = np.abs(out - d["output"])
        assert diff.max() <= 5e-6 and diff.mean() <= 5e-7, (diff.max(), diff.mean())
        if "output_testpy" in d and d["output"].shape[-2:] == (128, 128):
            # test.py pads nothing here, so its output is the network's own.
            np.testing.assert_array_equal(d["output_testpy"], d["output"])
        elif "output_testpy" in d:
            padded = run_padded(model, x).numpy()
            diff = np.abs(padded - d["output_testpy"])
            assert diff.max() <= 5e-6 and diff.mean() <= 5e-7, (diff.max(), diff.mean())
        else:  # 64×64: test.py's reflect pad to 128 is impossible; ours pads only to 8
            assert d["output"].shape[-1] == 64
            np.testing.assert_array_equal(run_padded(model, x).numpy(), out)


def test_debug_case_every_intermediate(model):
    d = _load(DEBUG)
    taps: dict[str, np.ndarray] = {}
    with torch.inference_mode():
        out = model(torch.from_numpy(d["input"]), tap=lambda name, t: taps.__setitem__(name, t.numpy().copy()))
    expected = set(d) - {"codes", "ev", "input", "output"}
    assert set(taps) == expected
    for name in sorted(expected):
        ref = d[name]
        assert taps[name].shape == ref.shape, name
        bound = 2e-5 * max(1.0, float(np.abs(ref).max()))
        assert float(np.abs(taps[name] - ref).max()) <= bound, name
    assert float(np.abs(out.numpy() - d["output"]).max()) <= 5e-6


def test_window_batches_do_not_change_the_result(model, monkeypatch):
    # Attention runs WINDOW_BATCH windows at a time to bound memory; 7 windows
    # per batch (the 80×104 padded map has 130, masks cycling per image) must
    # still reproduce the golden.
    import hdrmerge.models.afunet as afunet

    monkeypatch.setattr(afunet, "WINDOW_BATCH", 7)
    d = _load(AFUNET_FIXTURES / "afunet_h76_w100.npz")
    with torch.inference_mode():
        out = model(torch.from_numpy(d["input"])).numpy()
    assert np.abs(out - d["output"]).max() <= 5e-6
