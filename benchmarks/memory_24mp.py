"""Peak memory and time of `hdrmerge fuse` on a 24 MP bracket (6000×4000), CPU.

Builds a bracket from an OpenEXR sample photograph upsampled to 6000×4000
(motion and shift scaled with it), writes it as JPEGs with EXIF, then runs
``hdrmerge fuse`` in a child process per setting, which reports its own peak
resident set size (VmHWM) as it exits. The first setting listed is the
baseline the others are compared to.

    python benchmarks/memory_24mp.py [SETTING ...]

A setting is a quoted string of fuse options, e.g. "--flow-scale 0.5".
Needs HDRMERGE_SHARED (for the photograph) and the SAFNet-S checkpoint.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from hdrmerge.testsets import SynthOptions, make_scene, read_hdr_image
from hdrmerge.demo_scene import ShotInfo, nominal_time, write_jpeg

SIZE = (4000, 6000)


def make_bracket(folder: Path, photo: Path, size: tuple[int, int] = SIZE) -> list[Path]:
    hdr = read_hdr_image(photo)
    big = cv2.resize(hdr, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
    k = size[1] / 1000  # motion and shift as for a 1000-px set, scaled
    opts = SynthOptions(max_side=max(size), motion=30 * k, shift=4 * k, noise=0.002)
    shots, _gt = make_scene(big, opts, np.random.default_rng(0))
    paths = []
    for i, (ldr, ev) in enumerate(zip(shots, opts.ev), start=1):
        p = folder / f"big_{i}.jpg"
        write_jpeg(p, (ldr * 255 + 0.5).astype(np.uint8), ShotInfo(exposure_time=nominal_time(-6 + ev)), quality=92)
        paths.append(p)
    return paths


# The child reports its own peak (VmHWM) when it exits. The kernel's
# ru_maxrss is no use here: it survives fork and exec, so a child would
# inherit the high-water mark of this parent, which holds the 24 MP bracket.
_LAUNCH = (
    "import atexit, runpy, sys\n"
    "def _peak():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            sys.stderr.write('PEAK_KIB ' + line.split()[1] + '\\n')\n"
    "atexit.register(_peak)\n"
    "sys.argv = ['hdrmerge'] + sys.argv[1:]\n"
    "runpy.run_module('hdrmerge', run_name='__main__')\n"
)


def run(paths: list[Path], out: Path, extra: str) -> dict:
    cmd = [sys.executable, "-c", _LAUNCH, "fuse", *map(str, paths), "-o", str(out), "--overwrite", "--no-preview", "--json", *shlex.split(extra)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"fuse failed ({extra}): {proc.stderr.strip()}")
    peak_kib = int(next(l for l in proc.stderr.splitlines() if l.startswith("PEAK_KIB")).split()[1])
    report = json.loads(proc.stdout)
    return {"setting": extra or "(defaults)", "peak_rss_gib": round(peak_kib / 2**20, 2), "wall_s": round(wall, 1),
            "network_s": report["timings_s"]["network"], "tile": report["tile"], "tiles": report["tiles"], "flow_scale": report["flow_scale"]}


def main() -> None:
    settings = sys.argv[1:] or ["--flow-scale 0.5", "--flow-scale auto"]
    shared = Path(os.environ["HDRMERGE_SHARED"])
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_bracket(Path(tmp), shared / "data" / "openexr_photos" / "MtTamWest.exr")
        rows = [run(paths, Path(tmp) / "out.exr", s) for s in settings]
    base = rows[0]
    for r in rows:
        r["rss_vs_first"] = round(r["peak_rss_gib"] / base["peak_rss_gib"], 3)
        r["time_vs_first"] = round(r["wall_s"] / base["wall_s"], 3)
        print(json.dumps(r))


if __name__ == "__main__":
    main()
