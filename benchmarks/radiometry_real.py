"""Clipped highlights on real brackets, before and after the response work (docs/radiometry.md).

For each real third-party bracket in HDRMERGE_SHARED/data (IUS pingpong,
Kalantari 2017 test scene 002, colour-hdri Frobisher, the five Merianos sets)
it runs ``hdrmerge fuse --normalize short`` twice — ``--exact`` (the network
authors' pipeline: every file taken as gamma 2.2, the baseline) and the
default (``--response auto``) — and reports the **clipped share**:

    the fraction of all output pixels whose largest channel is at least
    0.99 of the short shot's saturation (the output's top, 1.0, in the short
    domain) although the short shot is well exposed there, i.e. its largest
    code value lies in [0.06, 0.92] (neither clipped nor lost in noise).

The short shot recorded such a pixel below saturation, so a faithful merge
cannot clip it: the target is a share near 0%.

With ``--crops DIR`` it also writes, per bracket, a strip of the crop where
the two runs differ most (short shot, ``--exact``, default, each μ-law
tonemapped, clipped pixels of the kind counted above in magenta). None of
these brackets' licences allows redistribution, so the strips are for local
viewing only: DIR defaults to ``radiometry_local/`` (ignored by git).

If the installed hdrmerge has no ``--exact`` yet, only the default runs (it
is then the same pipeline as ``--exact``) and the "after" column is absent.

    python benchmarks/radiometry_real.py [--crops [DIR]]

The checkpoint comes from HDRMERGE_SHARED's ``weights/`` (HDRMERGE_SHARED
defaults to ../shared) unless HDRMERGE_WEIGHTS_DIR is set, so the run needs
neither the weights cache nor the network.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from hdrmerge.reading import read_frame
from hdrmerge.testsets import read_hdr_image

from _cli_runner import hdrmerge, shared_dir

REPO = Path(__file__).resolve().parent.parent
#: A short shot's pixel is well exposed when its largest code value lies here.
WELL_EXPOSED = (0.06, 0.92)
#: An output pixel is clipped when its largest channel reaches this (short domain, 1.0 = top).
CLIPPED = 0.99
CROP = 320  # side of the square crop, px


def brackets(data: Path) -> list[tuple[str, list[Path], list[str]]]:
    """(name, shots, extra fuse options) for every real bracket."""
    out = [
        ("ius_pingpong", sorted((data / "ius_pingpong").glob("Img*.JPG")), []),
        ("kalantari_test002", [data / "kalantari_test002_jpeg" / f"input_{i}_aligned.tif" for i in (1, 2, 3)],
         ["--ev=" + ",".join((data / "kalantari_test002_jpeg" / "ev.txt").read_text().split())]),
        ("colour_hdri_frobisher", sorted((data / "colour_hdri_frobisher").glob("IMG_*.jpg")), []),
    ]
    for folder in sorted(p for p in (data / "merianos_fusion_noexif").iterdir() if p.is_dir()):
        out.append((f"merianos_{folder.name}", sorted(folder.glob("*.jpg")), []))  # exposures from the pixels
    return out


def fuse(shots: list[Path], extra: list[str], out: Path) -> dict:
    r = hdrmerge("fuse", *map(str, shots), "-o", str(out), "--normalize", "short", "--no-preview", "--json", "--overwrite", *extra,
                 shared_weights=True)
    if r.returncode != 0:
        sys.exit(f"fuse {' '.join(extra)} {shots[0].parent.name} failed: {r.stderr.strip()}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def clipped_mask(hdr: np.ndarray, short: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(clipped where the short shot is well exposed, well exposed), both H×W bool."""
    s = short.max(axis=2)
    well = (s >= WELL_EXPOSED[0]) & (s <= WELL_EXPOSED[1])
    return well & (hdr.max(axis=2) >= CLIPPED), well


def short_shot(report: dict) -> np.ndarray:
    path = next(i["path"] for i in report["inputs"] if i["role"] == "short")
    return read_frame(path).ldr()


def response_of(report: dict) -> str:
    """What the run's --json says about the response used (absent before the response work)."""
    r = report.get("response")
    if r is None:
        return "gamma2.2 (implicit)"
    if isinstance(r, dict):
        name, source = r.get("name"), r.get("source")
        return str(name) if name == source else f"{name} ({source})"
    return str(r)


def strip(short: np.ndarray, runs: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    """The crop where the runs' clip masks differ most: short shot | each run (μ-law, clipped in magenta)."""
    import cv2

    from hdrmerge.writing import mu_law, to_u8

    masks = [m.astype(np.float32) for _, m in runs.values()]
    diff = np.abs(masks[0] - masks[-1]) if len(masks) > 1 else masks[0]
    c = min(CROP, *diff.shape)
    ii = cv2.integral(diff)  # window sums for every top-left corner
    score = ii[c:, c:] - ii[:-c, c:] - ii[c:, :-c] + ii[:-c, :-c]
    y0, x0 = np.unravel_index(int(np.argmax(score)), score.shape)
    sl = (slice(y0, y0 + c), slice(x0, x0 + c))
    tiles = [(short[sl] * 255 + 0.5).astype(np.uint8)]
    for hdr, mask in runs.values():
        t = to_u8(mu_law(hdr[sl]))
        t[mask[sl]] = (255, 0, 255)
        tiles.append(t)
    gap = np.full((c, 4, 3), 255, np.uint8)
    row = [tiles[0]]
    for t in tiles[1:]:
        row += [gap, t]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.hstack(row), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--crops", type=Path, nargs="?", const=REPO / "radiometry_local", default=None,
                    help="write local-only before/after strips here (default radiometry_local/)")
    args = ap.parse_args()
    data = shared_dir() / "data"
    exact = "--exact" in hdrmerge("fuse", "--help").stdout
    configs = {"exact": ["--exact"], "default": []} if exact else {"default": []}
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="radbench-real-") as tmp:
        for name, shots, extra in brackets(data):
            runs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            row: dict[str, object] = {"bracket": name}
            short = None
            for config, flags in configs.items():
                report = fuse(shots, [*extra, *flags], Path(tmp) / f"{name}-{config}.exr")
                hdr = read_hdr_image(Path(tmp) / f"{name}-{config}.exr")
                short = short_shot(report)
                clipped, well = clipped_mask(hdr, short)
                runs[config] = (hdr, clipped)
                row[config] = {"clipped_pct": round(100.0 * clipped.mean(), 2), "well_exposed_pct": round(100.0 * well.mean(), 1),
                               "response": response_of(report), "exposures": report["exposures"]["source"]}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.crops is not None and short is not None:
                strip(short, runs, args.crops / f"{name}.jpg")
    print()
    print("| bracket | " + " | ".join(f"clipped, {c}" for c in configs) + " | short shot well exposed | response (default) |")
    print("|---|" + "---:|" * len(configs) + "---:|---|")
    for row in rows:
        d = row["default"]
        print(f"| {row['bracket']} | " + " | ".join(f"{row[c]['clipped_pct']:.2f}%" for c in configs)
              + f" | {d['well_exposed_pct']:.1f}% | {d['response']} |")
    info = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "exact_flag": exact, "seconds": round(time.perf_counter() - started)}
    print(json.dumps(info))


if __name__ == "__main__":
    main()
