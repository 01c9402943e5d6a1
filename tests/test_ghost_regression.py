"""Ghosts must not come back: the default merge against ``--exact`` where things move (issue #15).

The default pipeline adds to the network's output (a guard on the refinement
stage, a shadow merge from the long shot); ``--exact`` is the network alone,
whose flows and masks remove ghosts. On synthetic brackets with known motion
(:func:`hdrmerge.testsets.make_scene` with ``motion_mask``: every pixel a
moving disc covers in any shot) both are merged through the same entry point
``hdrmerge fuse`` uses, read back from the written EXR, and compared with the
ground truth in PSNR-μ:

* in every moving object's region (each connected part of the mask), the
  default may not be worse than ``--exact`` by more than MOVING_TOL_DB;
* in the static rest, not worse by more than STATIC_TOL_DB (the issue's
  "no scene worse than --exact by more than 0.2 dB").

The check itself is shown to fail on a deliberately ghosting result (the
plain unaligned merge pasted into the moving region) and on a static region
made worse, so a passing run means something.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from hdrmerge.metrics import psnr_mu
from hdrmerge.testsets import SynthOptions, make_scene, read_hdr_image, write_scene
from tests.conftest import DATA, SAFNET_S_PTH

#: PSNR-μ (dB) the default may lose against --exact inside one moving object's region.
MOVING_TOL_DB = 0.5
#: ... and over the static rest of the frame (issue #15: no scene worse by more than 0.2 dB).
STATIC_TOL_DB = 0.2
SIDE = 256  # px, longer side: the network runs in well under a second per merge


@dataclass(frozen=True)
class Case:
    """One synthetic bracket: a photograph, the EV spacing, the noise level, the seed of its discs."""

    photo: str
    spacing: int
    noise: float
    seed: int

    @property
    def id(self) -> str:
        return f"{self.photo}-{self.spacing}ev-noise{self.noise:g}"


#: Seeds chosen so that the moving discs cross both shadows and clipped highlights of the reference.
CASES = (Case("Tree", 2, 0.002, 2), Case("MtTamWest", 3, 0.01, 0))


@dataclass
class Merged:
    """A bracket on disk, its ground truth and motion mask, and both merges (H×W×3, short domain)."""

    paths: list[Path]
    gt: np.ndarray
    moving: np.ndarray  # H×W bool
    exact: np.ndarray
    default: np.ndarray
    debug: Path  # the default merge's --debug-dir: where each addition acted


@pytest.fixture(scope="module")
def engine():
    import torch

    from hdrmerge.inference import Engine
    from hdrmerge.models import build_model
    from hdrmerge.weights import LoadedWeights
    from hdrmerge.weights.store import read_pth

    torch.set_num_threads(1)
    state = read_pth(SAFNET_S_PTH)
    weights = LoadedWeights(state, "SAFNet-S", "safnet-s", "x", "test", SAFNET_S_PTH)
    return Engine(build_model(state), weights, torch.device("cpu"), "fp32")


def fuse(paths: list[Path], output: Path, engine, *, exact: bool, debug_dir: Path | None = None) -> np.ndarray:
    """``hdrmerge fuse [--exact] --normalize short --exr-dtype float [--debug-dir]`` in-process; the EXR read back."""
    from hdrmerge.cli.common import ExrCompression, ExrDtype, Normalize, fuse_options
    from hdrmerge.pipeline import fuse_files

    options = fuse_options("0.5", Normalize.short, ExrDtype.float, ExrCompression.zip, True, False, exact=exact,
                           debug_dir=debug_dir)
    fuse_files(paths, output, options, lambda: engine)
    return read_hdr_image(output)


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.id)
def merged(request, engine, tmp_path_factory) -> Merged:
    case: Case = request.param
    folder = tmp_path_factory.mktemp(case.id)
    # No hand-held shift: the static region is then truly static, and the mask is the objects' motion alone.
    options = SynthOptions(ev=(-case.spacing, 0, case.spacing), noise=case.noise, shift=0.0, objects=3, motion=16.0,
                           max_side=SIDE, seed=case.seed)
    hdr = read_hdr_image(DATA / "openexr_photos" / f"{case.photo}.exr")
    shots, gt, moving = make_scene(hdr, options, np.random.default_rng([case.seed, 0]), motion_mask=True)
    write_scene(folder / "set", shots, gt, options)
    paths = [folder / "set" / f"input_{i}.tif" for i in (1, 2, 3)]
    exact = fuse(paths, folder / "exact.exr", engine, exact=True)
    default = fuse(paths, folder / "default.exr", engine, exact=False, debug_dir=folder / "debug")
    return Merged(paths, gt, moving, exact, default, folder / "debug")


def ghost_findings(out: np.ndarray, exact: np.ndarray, gt: np.ndarray, moving: np.ndarray) -> list[str]:
    """Where ``out`` is worse than ``exact`` against ``gt`` beyond the tolerances; empty if nowhere."""
    findings = []
    count, labels = cv2.connectedComponents(moving.astype(np.uint8), connectivity=8)
    for k in range(1, count):
        part = labels == k
        got, base = psnr_mu(out[part], gt[part]), psnr_mu(exact[part], gt[part])
        if got < base - MOVING_TOL_DB:
            ys, xs = np.nonzero(part)
            findings.append(f"moving region {k} (x {xs.min()}–{xs.max()}, y {ys.min()}–{ys.max()}): "
                            f"PSNR-μ {got:.2f} dB against {base:.2f} dB for --exact")
    got, base = psnr_mu(out[~moving], gt[~moving]), psnr_mu(exact[~moving], gt[~moving])
    if got < base - STATIC_TOL_DB:
        findings.append(f"static region: PSNR-μ {got:.2f} dB against {base:.2f} dB for --exact")
    return findings


def test_motion_mask_marks_exactly_where_the_shots_disagree():
    """Outside the mask the three shots (no noise, no shift) record one scene; inside they do not."""
    hdr = read_hdr_image(DATA / "openexr_photos" / "Tree.exr")
    options = SynthOptions(ev=(-2, 0, 2), noise=0.0, shift=0.0, objects=3, motion=16.0, max_side=SIDE, encoding="linear")
    plain = make_scene(hdr, options, np.random.default_rng(5))
    shots, gt, moving = make_scene(hdr, options, np.random.default_rng(5), motion_mask=True)
    # The mask changes nothing else.
    assert all(np.array_equal(a, b) for a, b in zip(plain[0], shots)) and np.array_equal(plain[1], gt)
    assert moving.dtype == bool and moving.shape == gt.shape[:2] and 0.02 < moving.mean() < 0.3
    # Linear shots brought to the reference's exposure, where neither is clipped.
    short, ref, long = shots[0] * 4.0, shots[1], shots[2] / 4.0
    unclipped = (shots[0] < 0.99).all(-1) & (shots[1] < 0.99).all(-1) & (shots[2] < 0.99).all(-1) & (ref > 0.02).all(-1)
    differs = (np.abs(short - ref).max(-1) > 1e-3) | (np.abs(long - ref).max(-1) > 1e-3)
    assert not np.any(differs & unclipped & ~moving)
    assert np.mean(differs[unclipped & moving]) > 0.5


def test_moving_discs_cross_shadows_and_highlights(merged):
    """The cases exercise both additions: inside the moving region the long shot is well exposed
    somewhere (shadow merge) and the reference is clipped somewhere (the highlight guard)."""
    from hdrmerge.reading import read_frame

    ref, long = (read_frame(p).ldr() for p in merged.paths[1:])
    assert np.mean((long[merged.moving] < 0.9).all(-1)) > 0.1
    assert np.mean((ref[merged.moving] > 0.95).any(-1)) > 0.1


@pytest.mark.parametrize("mask", ["merge_long", "guard_highlights"])
def test_additions_act_inside_the_moving_regions(merged, mask):
    """The ghost check below covers each rule: the shadow merge and the guard's highlight rule
    (reference clipped, short shot not) both change the output inside the moving objects."""
    acted = cv2.imread(str(merged.debug / f"{mask}.png"), cv2.IMREAD_UNCHANGED)
    assert acted.shape[:2] == merged.moving.shape and np.mean(acted[merged.moving] > 0) > 0.02


def test_default_merge_brings_no_ghost_back_and_keeps_static_regions(merged):
    assert ghost_findings(merged.default, merged.exact, merged.gt, merged.moving) == []


def _plain_merge(paths: list[Path]) -> np.ndarray:
    """The unaligned triangle-weighted merge (eval's ``merge`` baseline): ghosts wherever things move."""
    from hdrmerge.evaluate import baselines
    from hdrmerge.pipeline import load_bracket
    from hdrmerge.response import parse_response_option

    bracket = load_bracket(paths, response=parse_response_option("auto", exact=True))
    return baselines(bracket.sorted_frames, bracket.relative_sorted())["merge"]


def test_ghost_check_fails_on_an_unaligned_merge_pasted_into_the_moving_region(merged):
    ghosted = merged.exact.copy()
    ghosted[merged.moving] = _plain_merge(merged.paths)[merged.moving]
    findings = ghost_findings(ghosted, merged.exact, merged.gt, merged.moving)
    assert findings and all(f.startswith("moving region") for f in findings)


def test_ghost_check_fails_on_a_static_region_made_worse(merged):
    worse = merged.exact.copy()
    static = ~merged.moving
    worse[static] = np.clip(worse[static] * 1.1, 0, 1)  # a 10% exposure error outside the moving objects
    findings = ghost_findings(worse, merged.exact, merged.gt, merged.moving)
    assert findings == [f for f in findings if f.startswith("static region")] and findings
