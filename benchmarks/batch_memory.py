"""Does memory stay flat over hundreds of brackets? (issue: batch)

Runs ``hdrmerge batch``'s own loop (plan → prefetching decode → network →
writers) in this process over N synthetic brackets and samples the resident
set size (RSS) after each one. Prints RSS at the baseline (after the first
10 brackets, once allocator pools and the model are warm), at the end, and
their ratio; a ratio near 1.0 means no growth.

    python benchmarks/batch_memory.py [N] [HxW]

Needs the SAFNet-S checkpoint (HDRMERGE_WEIGHTS_DIR, the cache, or network).
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    h, w = (int(x) for x in (sys.argv[2] if len(sys.argv) > 2 else "240x360").split("x"))
    from hdrmerge.cli import run
    from hdrmerge.demo_scene import write_bracket

    with tempfile.TemporaryDirectory() as tmp:
        card = Path(tmp) / "card"
        t0 = datetime(2026, 1, 1)
        for i in range(n):
            write_bracket(card, size=(h, w), start=t0 + timedelta(minutes=i), prefix=f"b{i:04d}", seed=i % 7)
        samples: list[float] = []
        # Sample RSS each time a bracket's JSON line is printed.
        real_write = sys.stdout.write

        def spy(text: str) -> int:
            if text.startswith('{"index"'):
                samples.append(rss_mib())
            return real_write(text) if text.startswith('{"summary"') else len(text)

        sys.stdout.write = spy  # type: ignore[method-assign]
        started = time.perf_counter()
        try:
            code = run(["batch", str(card), "--json", "--quiet"])
        finally:
            sys.stdout.write = real_write  # type: ignore[method-assign]
        elapsed = time.perf_counter() - started
    base, end, peak = samples[9], samples[-1], max(samples[9:])
    print(json.dumps({
        "brackets": n, "size": f"{w}x{h}", "exit_code": code, "seconds": round(elapsed, 1),
        "rss_baseline_mib": round(base, 1), "rss_end_mib": round(end, 1), "rss_peak_mib": round(peak, 1),
        "end_over_baseline": round(end / base, 3), "peak_over_baseline": round(peak / base, 3),
        # RSS at each tenth of the run, to tell a plateau from steady growth.
        "rss_by_tenth_mib": [round(samples[min(len(samples) - 1, k * len(samples) // 10)], 1) for k in range(1, 11)],
    }))


if __name__ == "__main__":
    main()
