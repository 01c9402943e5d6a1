"""Does ``--response auto`` keep gamma 2.2 on noisy gamma-2.2 brackets? (issue #10: no loss beyond 0.1 dB)

``hdrmerge synth`` makes 16-bit gamma-2.2 TIFF sets from the six OpenEXR
photographs in HDRMERGE_SHARED/data/openexr_photos, at −2/0/+2 and −3/0/+3
EV, with ``--noise`` 0.01 (5× synth's default: a high-ISO camera) and
synth's motion and hand-held shift scaled to ``--side`` px, as
benchmarks/beyond_network.py makes its high-noise sets. Each set is scored
by ``hdrmerge eval`` twice in the same run: ``--response gamma2.2`` (the
true curve: the baseline) and the default ``--response auto``. Printed: per
scene the curve ``auto`` chose and both PSNR-μ and PSNR-l (dB), and the
worst ``auto − gamma2.2`` per set.

    nice python benchmarks/response_noise.py [--side 512] [--noise 0.01]

The checkpoint comes from HDRMERGE_SHARED's ``weights/`` (HDRMERGE_SHARED
defaults to ../shared) unless HDRMERGE_WEIGHTS_DIR is set, so the run needs
neither the weights cache nor the network.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _cli_runner import hdrmerge, shared_dir


def scores(folder: Path, out: Path, extra: list[str]) -> dict[str, dict[str, object]]:
    """``hdrmerge eval`` on ``folder``: scene → PSNR-μ, PSNR-l and the response used."""
    hdrmerge("eval", str(folder), "--out", str(out), "--quiet", *extra, exit_on_failure=True, shared_weights=True)
    data = json.loads((out / "eval.json").read_text())
    return {s["scene"]: {**s["hdrmerge"], "response": str(s.get("response", "")).split(" (")[0]} for s in data["scenes"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--side", type=int, default=512, help="longer side of the synthetic shots (px)")
    ap.add_argument("--noise", type=float, default=0.01, help="synth --noise (read-noise sigma)")
    args = ap.parse_args()
    photos = shared_dir() / "data" / "openexr_photos"
    scale = args.side / 1000
    with tempfile.TemporaryDirectory(prefix="respnoise-") as tmp:
        work = Path(tmp)
        worst_all = 0.0
        for spacing in (2, 3):
            folder = work / f"{spacing}ev"
            hdrmerge("synth", str(photos), str(folder), f"--ev=-{spacing},0,{spacing}", "--noise", f"{args.noise:g}",
                     "--encoding", "gamma2.2", "--format", "tif", "--bits", "16", "--no-exif",
                     "--max-side", str(args.side), "--motion", f"{30 * scale:g}", "--shift", f"{4 * scale:g}", "--quiet",
                     exit_on_failure=True)
            base = scores(folder, work / f"{spacing}ev-gamma", ["--response", "gamma2.2"])
            auto = scores(folder, work / f"{spacing}ev-auto", [])
            print(f"### −{spacing}/0/+{spacing} EV, noise {args.noise:g}, {args.side} px")
            print("| scene | auto chose | PSNR-μ auto | PSNR-μ gamma2.2 | PSNR-l auto | PSNR-l gamma2.2 |")
            print("|---|---|---:|---:|---:|---:|")
            worst = 0.0
            for scene, b in base.items():
                a = auto[scene]
                print(f"| {scene} | {a['response']} | {a['psnr_mu']:.2f} | {b['psnr_mu']:.2f} | {a['psnr_l']:.2f} | {b['psnr_l']:.2f} |")
                worst = min(worst, float(a["psnr_mu"]) - float(b["psnr_mu"]), float(a["psnr_l"]) - float(b["psnr_l"]))
            kept = sum(a["response"] == "gamma2.2" for a in auto.values())
            print(f"\nauto kept gamma 2.2 on {kept} of {len(auto)} scenes; worst auto − gamma2.2 {worst:+.2f} dB (PSNR-μ or PSNR-l)\n")
            worst_all = min(worst_all, worst)
        print(f"target no loss beyond 0.1 dB: {'MET' if worst_all >= -0.1 else 'MISSED'} (worst {worst_all:+.2f} dB)")


if __name__ == "__main__":
    main()
