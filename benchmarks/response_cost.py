"""What ``--response auto`` costs on a 24 MP bracket, against decoding the same bracket.

The bracket is three 6000×4000 shots, 8-bit JPEG (or, with ``--tiff16``,
16-bit TIFF without EXIF, the exposures given as ``--ev`` gives them, so that
the 16-bit clipping anchors' alignment is timed too), made from the OpenEXR
photograph MtTamWest (HDRMERGE_SHARED) upscaled, exposed at −2/0/+2 EV and
encoded with ``synth``'s camera-mild curve (sRGB and an S-curve), so that
``auto`` goes all the way: metadata read, histograms, matches, the fit of a
free curve (EXIF gives the exposures). Measured in the same process, median
of ``--repeat`` runs after one warm-up:

* ``decode`` (baseline): ``hdrmerge.reading.read_frames`` of the three files;
* ``estimate``: :func:`hdrmerge.response.choose_response` (issue #10: < 0.5 s);
* ``convert``: :func:`hdrmerge.response.to_network_domain` of the three
  frames (the 16-bit gamma-2.2 rewrite the network then reads);
* ``gamma2.2``: ``choose_response`` with ``--response gamma2.2`` plus
  ``to_network_domain``, which leaves the frames untouched.

    nice python benchmarks/response_cost.py [--repeat 5] [--tiff16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import tifffile

from hdrmerge.reading import read_frames
from hdrmerge.response import ResponseChoice, choose_response, parse_response_option, to_network_domain
from hdrmerge.testsets import read_hdr_image
from hdrmerge.testset_encodings import encode
from hdrmerge.demo_scene import ShotInfo, nominal_time, write_jpeg


EVS = (-2.0, 0.0, 2.0)


def make_bracket(folder: Path, size: tuple[int, int] = (4000, 6000), tiff16: bool = False) -> list[Path]:
    hdr = read_hdr_image(Path(os.environ["HDRMERGE_SHARED"]) / "data" / "openexr_photos" / "MtTamWest.exr")
    hdr = cv2.resize(hdr, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    hdr = hdr / np.percentile(hdr, 99) * 0.5
    paths = []
    for i, ev in enumerate(EVS):
        code = encode(np.clip(hdr * 2.0**ev, 0.0, 1.0), "camera-mild")
        if tiff16:
            path = folder / f"shot{i}.tif"
            tifffile.imwrite(path, (code * 65535.0 + 0.5).astype(np.uint16), photometric="rgb")
        else:
            path = folder / f"shot{i}.jpg"
            write_jpeg(path, (code * 255.0 + 0.5).astype(np.uint8), ShotInfo(exposure_time=nominal_time(-6.0 + ev)))
        paths.append(path)
    return paths


def timed(fn, repeat: int) -> tuple[float, object]:
    fn()  # warm-up (imports, caches)
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tiff16", action="store_true", help="16-bit TIFF shots without EXIF (exposures given) instead of JPEG")
    args = parser.parse_args()
    ev = list(EVS) if args.tiff16 else None
    with tempfile.TemporaryDirectory(prefix="hdrmerge-response-cost-") as tmp:
        paths = make_bracket(Path(tmp), tiff16=args.tiff16)
        decode_s, frames = timed(lambda: read_frames(paths), args.repeat)
        estimate_s, response = timed(lambda: choose_response(frames, ResponseChoice(), ev), args.repeat)
        convert_s, _ = timed(lambda: [to_network_domain(f, response) for f in frames], args.repeat)
        fixed = parse_response_option("gamma2.2")
        gamma_s, _ = timed(lambda: [to_network_domain(f, choose_response(frames, fixed, ev)) for f in frames], args.repeat)
    h, w = frames[0].size
    kind = "16-bit TIFF, --ev" if args.tiff16 else "JPEG"
    print(f"bracket: 3 × {w}×{h} {kind} (camera-mild), median of {args.repeat} runs")
    print(f"response chosen: {response.name} ({response.source}: {response.detail})")
    print("| step | seconds | × decode |")
    print("|---|---|---|")
    for name, s in (("decode (baseline)", decode_s), ("estimate (auto)", estimate_s), ("convert to 16-bit gamma 2.2", convert_s), ("gamma2.2: choose + convert", gamma_s)):
        print(f"| {name} | {s:.3f} | {s / decode_s:.2f} |")
    print(f"target: estimate < 0.5 s: {'met' if estimate_s < 0.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
