"""Test sets with ground truth: layouts detected automatically.

* ``kalantari`` — one folder per scene holding three LDR images (sorted by
  name: short, reference, long), one text file of exposure values in stops
  (``exposure.txt``), and the ground-truth HDR (``HDRImg.hdr``). Scene
  folders may be nested (Kalantari 2017's ``Test/PAPER`` and ``Test/EXTRA``).
  Tel et al. 2023 (SCTNet) publish their test set in this layout, and
  ``hdrmerge synth`` writes it.
* ``hu2020`` — Hu et al. 2020 (NTIRE, "Sensor-realistic synthetic data
  engine"), three-exposure set: one folder per scene (``Test/086`` …
  ``Test/100`` in the split the papers use) holding the dynamic shots
  ``input_1_aligned.tif`` (low) … ``input_3_aligned.tif`` (high), their
  exposure values in stops (``input_exp.txt``, e.g. ``0 2 4``) and the ground
  truth ``ref_hdr_aligned_linear.hdr``. The static shots ``ref_N_aligned.tif``
  and ``ldr_visualize.png`` that the full download also holds are ignored.
  Kalantari 2017's *training* folders (``ref_hdr_aligned.hdr``) have the same
  form and are read the same way.
* ``challenge123`` — Kong et al. 2024: ``xxx_1/ldr_img_1.tif``,
  ``xxx_2/ldr_img_2.tif``, ``xxx_3/ldr_img_3.tif``, with ``exposure.txt`` and
  ``hdr_img.hdr`` in ``xxx_2``.

The ground truth is in the short-exposure linear domain of spec section 1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from hdrmerge.errors import InputError

_LDR = {".tif", ".tiff", ".png", ".jpg", ".jpeg"}
_GT = {".hdr", ".exr"}


@dataclass(frozen=True)
class Scene:
    """One test scene: three LDR paths (short → long), their EVs, the ground truth."""

    name: str
    ldrs: tuple[Path, Path, Path]
    ev: tuple[float, float, float]
    gt: Path


def read_ev_file(path: Path) -> tuple[float, float, float]:
    """Three exposure values (stops) from a whitespace-separated text file."""
    try:
        values = [float(v) for v in path.read_text().split()]
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a list of exposure values ({exc})") from None
    if len(values) != 3:
        raise InputError(f"{path}: {len(values)} exposure values; a scene needs 3")
    return values[0], values[1], values[2]


def _kalantari_scene(folder: Path, root: Path) -> Scene | None:
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    ldrs = sorted(p for p in files if p.suffix.lower() in _LDR and not p.name.lower().endswith(".preview.jpg"))
    gts = [p for p in files if p.suffix.lower() in _GT]
    txts = [p for p in files if p.suffix.lower() == ".txt"]
    name = folder.relative_to(root).as_posix() if folder != root else folder.name
    # A folder with exposure.txt and images is meant as a scene: a file missing or one too
    # many is an error, never a scene silently left out of the scores.
    if any(p.name.lower() == "exposure.txt" for p in txts) and (ldrs or gts):
        if len(ldrs) != 3:
            raise InputError(
                f"scene {name} holds {len(ldrs)} LDR image(s) ({', '.join(p.name for p in ldrs) or 'none'}) "
                "where it needs three beside exposure.txt; add the missing shot or move the extra files away"
            )
        if len(gts) != 1:
            raise InputError(
                f"scene {name} holds {len(gts)} HDR files ({', '.join(sorted(p.name for p in gts)) or 'none'}) "
                "where it needs one ground truth (HDRImg.hdr); "
                + ("add it" if not gts else "move the others away (eval --save-dir inside a test set puts hdrmerge.hdr there)")
            )
    if len(ldrs) != 3 or len(gts) != 1 or not txts:
        return None
    ev_file = next((p for p in txts if p.name.lower() == "exposure.txt"), txts[0] if len(txts) == 1 else None)
    if ev_file is None:
        return None
    return Scene(name, (ldrs[0], ldrs[1], ldrs[2]), read_ev_file(ev_file), gts[0])


def _hu_scene(folder: Path, root: Path) -> Scene | None:
    names = {p.name.lower(): p for p in folder.iterdir() if p.is_file()}
    ldrs = [names.get(f"input_{k}_aligned.tif") or names.get(f"input_{k}_aligned.tiff") for k in (1, 2, 3)]
    if not any(ldrs):
        return None
    gt = names.get("ref_hdr_aligned_linear.hdr") or names.get("ref_hdr_aligned.hdr")
    ev = names.get("input_exp.txt")
    missing = [f"input_{k}_aligned.tif" for k, p in zip((1, 2, 3), ldrs) if p is None]
    missing += [] if ev else ["input_exp.txt"]
    missing += [] if gt else ["ref_hdr_aligned_linear.hdr"]
    name = folder.relative_to(root).as_posix() if folder != root else folder.name
    if missing:
        raise InputError(f"Hu 2020 scene {name} lacks {missing[0]}; check the download")
    return Scene(name, (ldrs[0], ldrs[1], ldrs[2]), read_ev_file(ev), gt)  # type: ignore[arg-type]


def _challenge123(root: Path) -> list[Scene]:
    ids = sorted({m.group(1) for p in root.iterdir() if (m := re.fullmatch(r"(\d+)_[123]", p.name)) and p.is_dir()})
    scenes = []
    for i in ids:
        mid = root / f"{i}_2"
        ldrs = tuple(root / f"{i}_{k}" / f"ldr_img_{k}.tif" for k in (1, 2, 3))
        gt, ev = mid / "hdr_img.hdr", mid / "exposure.txt"
        missing = [p for p in (*ldrs, gt, ev) if not p.is_file()]
        if missing:
            raise InputError(f"Challenge123 scene {i} lacks {missing[0].relative_to(root)}; check the download")
        scenes.append(Scene(i, ldrs, read_ev_file(ev), gt))  # type: ignore[arg-type]
    return scenes


def discover(root: Path) -> tuple[str, list[Scene]]:
    """The layout of ``root`` and its scenes, sorted by name."""
    if not root.is_dir():
        raise InputError(f"{root}: not a folder; give the test set's folder")
    if any(re.fullmatch(r"\d+_[123]", p.name) for p in root.iterdir() if p.is_dir()):
        scenes = _challenge123(root)
        if scenes:
            return "challenge123", scenes
    scenes, layouts = [], set()
    for folder in sorted([root, *(p for p in root.rglob("*") if p.is_dir())]):
        # A Hu 2020 folder also holds the static shots, which would make it
        # look like a Kalantari folder with six images: test for it first.
        for layout, find in (("hu2020", _hu_scene), ("kalantari", _kalantari_scene)):
            scene = find(folder, root)
            if scene is not None:
                scenes.append(scene)
                layouts.add(layout)
                break
    if scenes:
        return "+".join(sorted(layouts)), scenes
    raise InputError(
        f"{root}: no test scenes found; expected folders with three LDR images, exposure.txt and "
        "HDRImg.hdr (Kalantari 2017, Tel 2023, hdrmerge synth), input_N_aligned.tif, input_exp.txt "
        "and ref_hdr_aligned_linear.hdr (Hu 2020), or xxx_1/xxx_2/xxx_3 (Challenge123)"
    )
