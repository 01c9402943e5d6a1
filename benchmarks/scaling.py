"""Time and peak memory of `hdrmerge fuse` against megapixels, with a plot.

Brackets of 1.5, 6, 12 and 24 MP (3:2) are made as in memory_24mp.py and
merged with default settings (SAFNet-S, flow scale 0.5, automatic tiles) in
a child process each; wall time, network time and peak RSS are printed as
JSON lines, with ratios to the 1.5 MP run, and plotted to
docs/performance_scaling.png (needs matplotlib).

    python benchmarks/scaling.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from memory_24mp import make_bracket, run  # noqa: E402

SIZES = [(1000, 1500), (2000, 3000), (2832, 4248), (4000, 6000)]


def main() -> None:
    shared = Path(os.environ["HDRMERGE_SHARED"])
    rows = []
    for h, w in SIZES:
        with tempfile.TemporaryDirectory() as tmp:
            paths = make_bracket(Path(tmp), shared / "data" / "openexr_photos" / "MtTamWest.exr", (h, w))
            r = run(paths, Path(tmp) / "out.exr", "")
        r["megapixels"] = round(h * w / 1e6, 1)
        rows.append(r)
    for r in rows:
        r["time_vs_first"] = round(r["wall_s"] / rows[0]["wall_s"], 2)
        r["rss_vs_first"] = round(r["peak_rss_gib"] / rows[0]["peak_rss_gib"], 2)
        print(json.dumps(r), flush=True)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return
    mp = [r["megapixels"] for r in rows]
    fig, ax1 = plt.subplots(figsize=(6, 3.6), dpi=120)
    ax1.plot(mp, [r["wall_s"] for r in rows], "o-", color="tab:blue", label="wall time (s)")
    ax1.set_xlabel("megapixels")
    ax1.set_ylabel("seconds", color="tab:blue")
    ax2 = ax1.twinx()
    ax2.plot(mp, [r["peak_rss_gib"] for r in rows], "s--", color="tab:red", label="peak RSS (GiB)")
    ax2.set_ylabel("peak resident memory (GiB)", color="tab:red")
    ax2.set_ylim(0, max(3.2, max(r["peak_rss_gib"] for r in rows) * 1.15))
    ax2.axhline(3.0, color="tab:red", lw=0.6, ls=":")
    ax1.set_title("hdrmerge fuse, SAFNet-S, CPU (2 cores), defaults")
    fig.tight_layout()
    out = Path(__file__).resolve().parent.parent / "docs" / "performance_scaling.png"
    fig.savefig(out)
    print(out)


if __name__ == "__main__":
    main()
