"""Render before/after crops of issue #15's additions: ``--exact`` (the network alone) vs the default.

    python docs/make_beyond_figures.py [--out DIR] [--local DIR] [--no-real]

For each bracket it runs ``hdrmerge fuse --normalize short`` three times
(below) and writes one strip per bracket: three rows of crops, chosen
automatically,

* **shadows**: the window with the most dark reference pixels (code < 0.15),
  shown 3 stops brighter;
* **highlights**: the same for clipped reference pixels (code > 0.95),
  shown 3 stops darker;
* **moving**: the window with the most moving pixels (the known motion mask
  for the synthetic brackets; for real ones, where a neighbouring shot
  disagrees with the reference: benchmarks/beyond_network.py's rule),

and in each row the reference shot, ``--exact``, the default (what users
get: the response estimate and the additions), the default with
``--response gamma2.2`` (``--exact``'s own curve: it differs from ``--exact``
only by the additions), all μ-law tonemapped, the difference between that
run and ``--exact`` in μ-law ×8 (white = 1/8 or more), and any mask that
run's ``--debug-dir`` holds beyond the network's own flows, masks and HDRs
(the additions' masks, where this hdrmerge writes them). Synthetic rows
start with the ground truth. The windows are weighted by that difference,
so they show where the additions act.

Two sources:

* the OpenEXR photographs (BSD-3-Clause, Industrial Light & Magic; the shared
  test material's ``data/openexr_photos``), as brackets made with
  :func:`hdrmerge.testsets.make_scene` (−3/0/+3 EV, read noise 0.01, three
  moving discs, 512 px): written to ``docs/beyond/`` (``--out``) and may be
  committed;
* the real brackets of the shared test material (IUS pingpong, Kalantari
  2017 scene 002, colour-hdri Frobisher, Merianos SeaRock): none of their
  licences allows redistribution, so they go to ``beyond_local/``
  (``--local``, ignored by git) for local viewing only.

Needs the SAFNet-S checkpoint (HDRMERGE_WEIGHTS_DIR, by default the shared
material's ``weights/``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from hdrmerge.reading import read_frame
from hdrmerge.testsets import SynthOptions, make_scene, read_hdr_image, write_scene
from hdrmerge.writing import mu_law, to_u8

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
from _cli_runner import hdrmerge  # noqa: E402
from _figure_label import label as caption  # noqa: E402
from beyond_network import moving_region  # noqa: E402  (the benchmark's rule for real brackets)

SYNTH_PHOTOS = ("MtTamWest", "Tree", "Desk")
SYNTH = SynthOptions(ev=(-3.0, 0.0, 3.0), noise=0.01, shift=0.0, objects=3, motion=16.0, max_side=512, seed=3)
#: The network's own debug images; anything else in --debug-dir is an addition's mask.
NETWORK_DEBUG = {"flow0", "flow2", "mask0", "mask2", "hdr_m", "hdr"}
DARK, BRIGHT = 0.15, 0.95  # reference code values
#: Display exposure of the shadow and highlight rows, stops (μ-law alone leaves both hard to see).
SHADOW_STOPS, HIGHLIGHT_STOPS = 3, -3
CROP = 160  # px, square


def fuse_runs(shots: list[Path], extra: list[str], tmp: Path, curve: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict]:
    """The three runs' HDRs by name, the additions' masks by name, the default run's fuse report.

    ``exact``: ``--exact``; ``default``: what users get; ``additions``: the
    default with ``--response curve`` (gamma 2.2, the curve ``--exact``
    assumes), so that it differs from ``--exact`` only by the additions. Its
    ``--debug-dir`` gives the masks.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    common = ["--normalize", "short", "--exr-dtype", "float", "--no-preview", "--overwrite", "--json", *extra]
    runs = {"exact": ["--exact"], "default": [], "additions": ["--response", curve, "--debug-dir", str(tmp / "debug")]}
    reports = {name: hdrmerge("fuse", *map(str, shots), "-o", str(tmp / f"{name}.exr"), *flags, *common,
                              exit_on_failure=True, shared_weights=True).stdout for name, flags in runs.items()}
    masks = {p.stem: cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted((tmp / "debug").glob("*.png")) if p.stem not in NETWORK_DEBUG}
    hdrs = {name: read_hdr_image(tmp / f"{name}.exr") for name in runs}
    return hdrs, masks, json.loads(reports["default"].strip().splitlines()[-1])


def best_window(weight: np.ndarray, side: int) -> tuple[slice, slice]:
    """The side×side window with the largest sum of ``weight`` (H×W)."""
    ii = cv2.integral(weight.astype(np.float64))
    score = ii[side:, side:] - ii[:-side, side:] - ii[side:, :-side] + ii[:-side, :-side]
    y0, x0 = np.unravel_index(int(np.argmax(score)), score.shape)
    return slice(y0, y0 + side), slice(x0, x0 + side)


def label(img: np.ndarray, text: str) -> np.ndarray:
    """RGB u8 → BGR u8 with ``text`` in a black band on top (a thin one: the crops are small)."""
    return caption(img, text, band_px=16, font_scale=0.38, text_at=(4, 12))


def strip(ref_ldr: np.ndarray, runs: dict[str, np.ndarray], masks: dict[str, np.ndarray],
          moving: np.ndarray, gt: np.ndarray | None, curve_label: str) -> np.ndarray:
    """Three rows (shadows, highlights, moving) of labelled crops, as one BGR u8 image."""
    side = min(CROP, *ref_ldr.shape[:2])
    exact, default, additions = runs["exact"], runs["default"], runs["additions"]
    diff = np.abs(mu_law(additions) - mu_law(exact)).max(axis=2)
    ref_max = ref_ldr.max(axis=2)
    # The weight's constant part picks the darkest/brightest window while the runs do not differ.
    rows_spec = [("shadows", (ref_max < DARK) * (diff + 1e-3), SHADOW_STOPS),
                 ("highlights", (ref_max > BRIGHT) * (diff + 1e-3), HIGHLIGHT_STOPS),
                 ("moving", moving * (diff + 1e-3), 0)]
    rows = []
    for name, weight, stops in rows_spec:
        sl = best_window(weight, side)
        gain, g = 2.0**stops, f" {stops:+d} EV" if stops else ""
        tiles = [] if gt is None else [label(to_u8(mu_law(gt[sl] * gain)), f"{name}: ground truth{g}")]
        tiles += [label(to_u8(ref_ldr[sl]), "reference shot" if gt is not None else f"{name}: reference shot"),
                  label(to_u8(mu_law(exact[sl] * gain)), f"--exact{g}"),
                  label(to_u8(mu_law(default[sl] * gain)), f"default{g}"),
                  label(to_u8(mu_law(additions[sl] * gain)), f"--response {curve_label}{g}"),
                  label(to_u8(np.repeat(np.clip(diff[sl] * 8, 0, 1)[..., None], 3, axis=2)), "|that - exact| x8")]
        for mname, m in masks.items():
            tiles.append(label(np.repeat(m[sl][..., None], 3, axis=2), f"mask: {mname}"))
        gap = np.full((side, 3, 3), 255, np.uint8)
        row = [tiles[0]]
        for t in tiles[1:]:
            row += [gap, t]
        rows.append(np.hstack(row))
    gap = np.full((3, rows[0].shape[1], 3), 255, np.uint8)
    return np.vstack([rows[0], gap, rows[1], gap, rows[2]])


def real_brackets(data: Path) -> list[tuple[str, list[Path], list[str]]]:
    kal = data / "kalantari_test002_jpeg"
    return [
        ("ius_pingpong", sorted((data / "ius_pingpong").glob("Img*.JPG")), []),
        ("kalantari_test002", [kal / f"input_{i}_aligned.tif" for i in (1, 2, 3)], ["--ev=" + ",".join((kal / "ev.txt").read_text().split())]),
        ("colour_hdri_frobisher", sorted((data / "colour_hdri_frobisher").glob("IMG_*.jpg")), []),
        ("merianos_SeaRock", sorted((data / "merianos_fusion_noexif" / "SeaRock").glob("*.jpg")), []),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    shared = Path(os.environ.get("HDRMERGE_SHARED", REPO.parent / "shared"))
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "beyond", help="committable strips (synthetic, BSD photographs)")
    ap.add_argument("--local", type=Path, default=REPO / "beyond_local", help="local-only strips of the real brackets")
    ap.add_argument("--no-real", action="store_true", help="only the synthetic strips")
    args = ap.parse_args()
    data = shared / "data"
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="beyond-fig-") as tmp_name:
        tmp = Path(tmp_name)
        for k, photo in enumerate(SYNTH_PHOTOS):
            hdr = read_hdr_image(data / "openexr_photos" / f"{photo}.exr")
            shots, gt, moving = make_scene(hdr, SYNTH, np.random.default_rng([SYNTH.seed, k]), motion_mask=True)
            write_scene(tmp / photo, shots, gt, SYNTH)
            paths = [tmp / photo / f"input_{i}.tif" for i in (1, 2, 3)]
            # The shots are gamma 2.2 (SYNTH's encoding): the true curve is --exact's own.
            runs, masks, _ = fuse_runs(paths, [], tmp / f"{photo}-runs", "gamma2.2")
            img = strip(read_frame(paths[1]).ldr(), runs, masks, moving, gt, "gamma2.2")
            cv2.imwrite(str(args.out / f"{photo}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 85])
            print(args.out / f"{photo}.jpg")
        if args.no_real:
            return
        args.local.mkdir(parents=True, exist_ok=True)
        for name, shots, extra in real_brackets(data):
            runs, masks, report = fuse_runs(shots, extra, tmp / name, "gamma2.2")
            ordered = sorted(report["inputs"], key=lambda i: i["stops"])
            paths = [Path(i["path"]) for i in ordered]
            moving = moving_region(paths, [float(i["stops"]) for i in ordered])
            img = strip(read_frame(paths[1]).ldr(), runs, masks, moving, None, "gamma2.2")
            cv2.imwrite(str(args.local / f"{name}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
            print(args.local / f"{name}.jpg", "(local only: not for committing)")


if __name__ == "__main__":
    main()
