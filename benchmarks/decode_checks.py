"""What the integrity and size checks of reading cost (issue 11, items 2 and 6).

Makes a 24 MP frame from a real photograph (ius_pingpong Img1, upscaled to
6000×4000) and encodes it as a JPEG, an 8-bit PNG and a 16-bit deflate TIFF.
For each it times, in the same run, the baseline (OpenCV's imdecode alone, the
way hdrmerge read before) and ``hdrmerge.reading.read_frame`` (header checks,
the limits, the strict decode, RGB conversion). Prints the best of N runs.

    python benchmarks/decode_checks.py [N]

Needs HDRMERGE_SHARED (the shared data folder).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from hdrmerge.reading import read_frame


def best(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    src = Path(os.environ["HDRMERGE_SHARED"]) / "data" / "ius_pingpong" / "Img1.JPG"
    big = cv2.resize(cv2.imread(str(src)), (6000, 4000), interpolation=cv2.INTER_CUBIC)
    encodings = {
        "JPEG q95": (".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 95]),
        "PNG 8-bit": (".png", big, []),
        "TIFF 16-bit deflate": (".tif", big.astype(np.uint16) * 257, [cv2.IMWRITE_TIFF_COMPRESSION, 8]),
    }
    print(f"24 MP (6000×4000) frames from {src.name}, best of {n}")
    print(f"{'format':<22}{'MB':>6}{'OpenCV imdecode':>18}{'read_frame':>12}{'ratio':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (ext, img, params) in encodings.items():
            path = Path(tmp) / f"frame{ext}"
            path.write_bytes(cv2.imencode(ext, img, params)[1].tobytes())
            data = path.read_bytes()
            base = best(lambda: cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED), n)
            ours = best(lambda: read_frame(path), n)
            print(f"{name:<22}{len(data) / 1e6:>6.1f}{base:>16.3f} s{ours:>10.3f} s{ours / base:>8.2f}")


if __name__ == "__main__":
    main()
