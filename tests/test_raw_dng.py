"""Camera RAW end to end: DNG brackets made from a real HDR photograph."""

from __future__ import annotations

import math

import cv2
import numpy as np
import OpenEXR
import pytest

from hdrmerge.exposure import derive_exposures
from hdrmerge.reading import read_frame
from tests.conftest import DATA, SHARED, run_cli, run_cli_in_process
from tests.dng import write_dng

EVS = (-2.0, 0.0, 2.0)
TIMES = (1 / 256, 1 / 64, 1 / 16)


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    """GoldenGate.exr (BSD-3, ILM) at 384×256, scaled so the EV-0 shot clips its sky."""
    hdr = OpenEXR.File(str(DATA / "openexr_photos" / "GoldenGate.exr")).channels()["RGB"].pixels.astype(np.float32)
    return cv2.resize(hdr, (384, 256), interpolation=cv2.INTER_AREA) * 0.5


@pytest.fixture
def dng_bracket(tmp_path, scene):
    paths = []
    for i, (ev, t) in enumerate(zip(EVS, TIMES)):
        p = tmp_path / f"IMG_{i}.DNG"
        write_dng(p, scene * 2.0**ev, t)
        paths.append(p)
    return paths


def test_dng_decodes_linearly_with_exif_exposures(dng_bracket, scene):
    frames = [read_frame(p) for p in dng_bracket]
    assert all(f.kind == "raw" and f.pixels.dtype == np.uint16 for f in frames)
    assert [f.exif.exposure_time for f in frames] == pytest.approx(TIMES)
    ex = derive_exposures(frames)
    assert ex.source == "exif" and ex.relative() == [1.0, 4.0, 16.0] and ex.warnings == []
    # Linear decode: (pixels/65535)^2.2 reproduces the scene where it is not clipped.
    lin = (frames[1].pixels.astype(np.float32) / 65535.0) ** 2.2
    ok = (scene.max(axis=2) < 0.9) & (scene.min(axis=2) > 0.02)
    assert np.median(lin[ok] / scene[ok], axis=0) == pytest.approx([1, 1, 1], abs=0.01)


def test_dng_bracket_fuse_recovers_the_photograph(tmp_path, dng_bracket, scene, isolated_env):
    out = tmp_path / "gg.exr"
    env = dict(isolated_env, HDRMERGE_WEIGHTS_DIR=str(SHARED / "weights"))
    shuffled = [dng_bracket[2], dng_bracket[0], dng_bracket[1]]
    r = run_cli_in_process("fuse", *map(str, shuffled), "-o", str(out), "--normalize", "short", "--exr-dtype", "float", env=env)
    assert r.returncode == 0, r.stderr
    hdr = OpenEXR.File(str(out)).channels()["RGB"].pixels
    truth = np.clip(scene * 2.0 ** EVS[0], 0, 1)  # the short shot's linear domain
    mu = lambda x: np.log1p(5000 * np.clip(x, 0, 1)) / math.log1p(5000)  # noqa: E731
    psnr_mu = 10 * math.log10(1.0 / float(np.mean((mu(hdr) - mu(truth)) ** 2)))
    # A static scene from a real photograph: the merge must be close to it.
    assert psnr_mu > 34.0, psnr_mu  # measured: 36.6 dB
