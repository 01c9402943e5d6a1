"""Does ``--response auto`` recover scene-linear HDR from any encoding? (docs/radiometry.md)

Synthesises bracket sets with ground truth from the OpenEXR photographs in
HDRMERGE_SHARED (``hdrmerge synth``: moving objects, hand-held shift, sensor
noise) in every encoding ``synth`` knows — gamma 2.2, sRGB, sRGB with a mild
and a strong camera S-curve, linear — at 1, 2 and 3 EV spacing, each as 8-bit
JPEG with EXIF (exposure, and ColorSpace as a camera writes it) and as TIFF
(16 bit; 8 bit for the linear 8-bit sets) with no metadata at all, whose
exposures come only from the layout's exposure.txt, as ``--ev`` gives them to
``fuse``, and whose response only from the pixels. Linear 16-bit exists only
as TIFF. Every set is scored by
``hdrmerge eval`` three ways:

* ``auto``: ``--response auto`` (the default), the estimate under test;
* ``file``: ``--response response.json``, the encoding's true curve that
  ``synth`` wrote: the best a response estimate can do;
* ``exact``: ``--exact``, the network authors' pipeline (gamma 2.2 assumed
  for every file): the baseline, which is what hdrmerge did before.

and checks the targets of issue #10: ``auto`` within 0.5 dB PSNR-μ of
``file`` on every set, and ``auto`` no more than 0.1 dB PSNR-μ below
``exact`` on the gamma-2.2 sets. Scenes are small crops (384×256 of each
photograph downscaled to 640 px) so that the full run (33 sets × 3 scenes ×
3 configurations) stays within about 15-20 minutes on a 2-core CPU.

If the installed ``hdrmerge eval`` has no ``--response``/``--exact`` yet, only
the baseline runs (plain ``eval``, which is gamma 2.2 throughout) and the
targets are reported as not measured.

    python benchmarks/radiometry.py [--quick] [--keep DIR] [--save-dir DIR] [--json FILE]

``--quick``: one scene, 2-EV sets only, a 192×128 crop (a smoke test, ~2 min).
``--save-dir``: keep each scene's previews per configuration (for figures).
``--keep DIR``: build the sets there, keep them and reuse them; without it they
go in a temporary folder, removed however the run ends.

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
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from _cli_runner import hdrmerge, shared_dir

PHOTOS = ("Desk", "MtTamWest", "Tree")
ENCODINGS = ("gamma2.2", "srgb", "camera-mild", "camera-strong", "linear")
SPACINGS = (1, 2, 3)
CONFIGS = ("auto", "file", "exact")
#: Targets of issue #10 (dB PSNR-μ).
AUTO_VS_FILE_DB = 0.5
GAMMA_LOSS_DB = 0.1


@dataclass(frozen=True)
class SetSpec:
    """One bracket set: an encoding, a file format and depth, an EV spacing."""

    encoding: str
    fmt: str  # "jpg" or "tif"
    bits: int
    spacing: int

    @property
    def name(self) -> str:
        return f"{self.encoding}-{self.fmt}{self.bits}-{self.spacing}ev"

    @property
    def group(self) -> str:
        """Sets sharing one true response file (same encoding and bit depth)."""
        return f"{self.encoding}-{self.bits}bit"


def set_specs(spacings: tuple[int, ...]) -> list[SetSpec]:
    specs = []
    for enc in ENCODINGS:
        for s in spacings:
            specs.append(SetSpec(enc, "jpg", 8, s))
            specs.append(SetSpec(enc, "tif", 8 if enc == "linear" else 16, s))
            if enc == "linear":
                specs.append(SetSpec(enc, "tif", 16, s))  # linear 16-bit: TIFF only
    return specs


def has_flags() -> bool:
    """Whether ``hdrmerge eval`` knows ``--response`` and ``--exact``."""
    out = hdrmerge("eval", "--help")
    return "--response" in out.stdout and "--exact" in out.stdout


def make_crops(photos_dir: Path, out: Path, names: tuple[str, ...], side: int, crop: tuple[int, int]) -> None:
    """Each photograph downscaled to ``side`` px (longer side), centre-cropped to crop (w, h), as .exr."""
    import OpenEXR

    from hdrmerge.testsets import read_hdr_image

    out.mkdir(parents=True)
    cw, ch = crop
    for name in names:
        img = read_hdr_image(photos_dir / f"{name}.exr")
        h, w = img.shape[:2]
        k = side / max(h, w)
        img = cv2.resize(img, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA)
        h, w = img.shape[:2]
        y0, x0 = max(0, (h - ch) // 2), max(0, (w - cw) // 2)
        tile = np.ascontiguousarray(img[y0 : y0 + ch, x0 : x0 + cw])
        OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}, {"RGB": tile}).write(str(out / f"{name}.exr"))


def synth_sets(crops: Path, root: Path, specs: list[SetSpec], scale: float) -> None:
    """``hdrmerge synth`` for each set into ``root/<group>/<set>/``; motion scaled to the crop."""
    for spec in specs:
        dest = root / spec.group / spec.name
        ev = f"--ev=-{spec.spacing},0,{spec.spacing}"
        r = hdrmerge("synth", str(crops), str(dest), ev, "--encoding", spec.encoding, "--format", spec.fmt,
                     *(["--bits", str(spec.bits), "--no-exif"] if spec.fmt == "tif" else []),
                     "--motion", f"{30 * scale:g}", "--shift", f"{4 * scale:g}", "--max-side", "100000", "--quiet")
        if r.returncode != 0:
            sys.exit(f"synth {spec.name} failed: {r.stderr.strip()}")


def run_eval(folder: Path, out: Path, extra: list[str], save_dir: Path | None) -> dict[str, dict[str, float]]:
    """``hdrmerge eval`` on ``folder``; scene name → the hdrmerge method's metrics and the response used."""
    args = ["eval", str(folder), "--out", str(out), "--overwrite", "--quiet", *extra]  # --keep reruns into the same folders
    if save_dir is not None:
        args += ["--save-dir", str(save_dir)]
    r = hdrmerge(*args, shared_weights=True)
    if r.returncode != 0:
        sys.exit(f"eval {' '.join(extra)} on {folder} failed: {r.stderr.strip()}")
    data = json.loads((out / "eval.json").read_text())
    return {s["scene"]: {**s["hdrmerge"], "response": s.get("response", "")} for s in data["scenes"]}


def short_label(label: str) -> str:
    """``srgb (metadata: ICC …)`` → ``srgb/metadata``; ``estimated (estimated: …)`` → ``estimated``."""
    name, _, rest = label.partition(" (")
    source = rest.split(":")[0].rstrip(")")
    return name if source in ("", name) else f"{name}/{source}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke test: one scene, 2-EV sets, tiny crops")
    ap.add_argument("--keep", type=Path, default=None, help="build the sets here and keep them (default: a temp dir)")
    ap.add_argument("--save-dir", type=Path, default=None, help="keep each scene's previews per configuration here")
    ap.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    args = ap.parse_args()
    if args.keep is not None:
        run(args, args.keep)
        return
    # The sets and eval outputs (~130 MB for the full run) go however the run ends.
    with tempfile.TemporaryDirectory(prefix="radbench-") as tmp:
        run(args, Path(tmp))


def run(args: argparse.Namespace, work: Path) -> None:
    """The whole benchmark, its sets built in (or, with ``--keep``, reused from) ``work``."""
    shared = shared_dir()
    names = PHOTOS[:1] if args.quick else PHOTOS
    spacings = (2,) if args.quick else SPACINGS
    side, crop = (320, (192, 128)) if args.quick else (640, (384, 256))
    specs = set_specs(spacings)
    flags = has_flags()
    configs = CONFIGS if flags else ("exact",)
    started = time.perf_counter()
    root = work / "sets"
    if not root.is_dir():
        make_crops(shared / "data" / "openexr_photos", work / "crops", names, side, crop)
        synth_sets(work / "crops", root, specs, side / 1000)
    print(f"# {len(specs)} sets × {len(names)} scenes ({crop[0]}×{crop[1]}) in {work}; flags {'present' if flags else 'absent: baseline only'}",
          file=sys.stderr, flush=True)

    # scores[config][set name] = {"psnr_mu": mean over scenes, "psnr_l": ...}
    per_scene: dict[str, dict[str, dict[str, float]]] = {}
    for config in configs:
        t = time.perf_counter()
        save = args.save_dir / config if args.save_dir else None
        if config == "file":
            found: dict[str, dict[str, float]] = {}
            for group in sorted({s.group for s in specs}):
                res = run_eval(root / group, work / "out" / config / group, ["--response", str(next((root / group).iterdir()) / "response.json")], save)
                found.update({f"{group}/{k}": v for k, v in res.items()})
        else:
            extra = {"auto": ["--response", "auto"], "exact": ["--exact"] if flags else []}[config]
            found = run_eval(root, work / "out" / config, extra, save)
        per_scene[config] = found
        print(f"# {config}: {len(found)} scenes in {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)

    scores: dict[str, dict[str, dict[str, float]]] = {c: {} for c in configs}
    for config, found in per_scene.items():
        for spec in specs:
            rows = [m for k, m in found.items() if k.split("/")[1] == spec.name]
            scores[config][spec.name] = {k: float(np.mean([m[k] for m in rows])) for k in ("psnr_mu", "psnr_l")}

    cols = [c for c in CONFIGS if c in configs]
    chosen = "auto" in per_scene
    print("| set | " + " | ".join(f"PSNR-μ {c}" for c in cols) + " | " + " | ".join(f"PSNR-l {c}" for c in cols) + (" | auto chose |" if chosen else " |"))
    print("|---|" + "---:|" * (2 * len(cols)) + ("---|" if chosen else ""))
    for spec in specs:
        s = [scores[c][spec.name] for c in cols]
        picks = sorted({short_label(m["response"]) for k, m in per_scene.get("auto", {}).items() if k.split("/")[1] == spec.name})
        print(f"| {spec.name} | " + " | ".join(f"{v['psnr_mu']:.2f}" for v in s) + " | " + " | ".join(f"{v['psnr_l']:.2f}" for v in s)
              + (f" | {', '.join(picks)} |" if chosen else " |"))
    print()
    targets: dict[str, object] = {}
    if flags:
        miss_file = [(n, round(scores["auto"][n]["psnr_mu"] - scores["file"][n]["psnr_mu"], 2)) for n in scores["auto"]
                     if scores["auto"][n]["psnr_mu"] < scores["file"][n]["psnr_mu"] - AUTO_VS_FILE_DB]
        gamma = [s.name for s in specs if s.encoding == "gamma2.2"]
        miss_gamma = [(n, round(scores["auto"][n]["psnr_mu"] - scores["exact"][n]["psnr_mu"], 2)) for n in gamma
                      if scores["auto"][n]["psnr_mu"] < scores["exact"][n]["psnr_mu"] - GAMMA_LOSS_DB]
        worst = min(scores["auto"][n]["psnr_mu"] - scores["file"][n]["psnr_mu"] for n in scores["auto"])
        worst_gamma = min(scores["auto"][n]["psnr_mu"] - scores["exact"][n]["psnr_mu"] for n in gamma)
        targets = {"auto_vs_file": {"met": not miss_file, "worst_db": round(worst, 2), "failing": miss_file},
                   "gamma_loss": {"met": not miss_gamma, "worst_db": round(worst_gamma, 2), "failing": miss_gamma}}
        print(f"target auto ≥ file − {AUTO_VS_FILE_DB} dB PSNR-μ on every set: {'MET' if not miss_file else 'MISSED'} "
              f"(worst auto − file {worst:+.2f} dB){'; failing: ' + ', '.join(f'{n} ({d:+.2f})' for n, d in miss_file) if miss_file else ''}")
        print(f"target auto ≥ exact − {GAMMA_LOSS_DB} dB PSNR-μ on gamma-2.2 sets: {'MET' if not miss_gamma else 'MISSED'} "
              f"(worst auto − exact {worst_gamma:+.2f} dB){'; failing: ' + ', '.join(f'{n} ({d:+.2f})' for n, d in miss_gamma) if miss_gamma else ''}")
        for c in cols:
            print(f"mean over sets, {c}: PSNR-μ {np.mean([v['psnr_mu'] for v in scores[c].values()]):.2f} dB, "
                  f"PSNR-l {np.mean([v['psnr_l'] for v in scores[c].values()]):.2f} dB")
    else:
        print("targets not measured: this hdrmerge has no --response/--exact (baseline only)")
    info = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "quick": args.quick, "photos": list(names), "crop": list(crop), "downscale": side, "sets": len(specs),
            "flags": flags, "seconds": round(time.perf_counter() - started)}
    print(json.dumps(info))
    if args.json:
        args.json.write_text(json.dumps({"info": info, "scores": scores, "per_scene": per_scene, "targets": targets}, indent=1) + "\n")


if __name__ == "__main__":
    main()
