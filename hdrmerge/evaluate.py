"""``hdrmerge eval``: the papers' metrics on a test set, with baselines.

For each scene the whole pipeline runs as ``fuse`` would (reading, exposures
from the scene's exposure file, the network, short-exposure normalisation),
and the result is compared with the ground truth by PSNR-μ, PSNR-l, SSIM-μ
and SSIM-l (:mod:`hdrmerge.metrics`). Two baselines show what the network
adds:

* ``reference``: the reference shot alone, linearised into the
  short-exposure domain (``ldr^2.2 / e_ref``);
* ``merge``: the plain triangle-weighted merge of spec section 6 with masks
  of one and no alignment.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hdrmerge.datasets import Scene
from hdrmerge.metrics import all_metrics

METHODS = ("hdrmerge", "reference", "merge")
METRICS = ("psnr_mu", "psnr_l", "ssim_mu", "ssim_l")


@dataclass
class SceneResult:
    scene: str
    metrics: dict[str, dict[str, float]]  # method → metric → value
    seconds: float
    response: str = ""  # the camera response used and its source


@dataclass
class EvalReport:
    layout: str
    model: dict[str, Any]
    scenes: list[SceneResult] = field(default_factory=list)

    def means(self) -> dict[str, dict[str, float]]:
        return {
            m: {k: float(np.mean([s.metrics[m][k] for s in self.scenes])) for k in METRICS}
            for m in METHODS
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "layout": self.layout,
            "model": self.model,
            "scenes": [{"scene": s.scene, "seconds": round(s.seconds, 3), "response": s.response, **s.metrics} for s in self.scenes],
            "mean": self.means(),
        }

    def csv_rows(self) -> list[list[str]]:
        rows = [["scene", "method", *METRICS]]
        for s in self.scenes:
            for m in METHODS:
                rows.append([s.scene, m, *(f"{s.metrics[m][k]:.4f}" for k in METRICS)])
        for m, values in self.means().items():
            rows.append(["mean", m, *(f"{values[k]:.4f}" for k in METRICS)])
        return rows


def baselines(frames: Sequence[Any], relative: Sequence[float]) -> dict[str, np.ndarray]:
    """The reference shot alone and the plain merge, in the short-exposure domain."""
    import torch

    from hdrmerge.models import explicit_fusion, make_frames

    ldrs = [torch.from_numpy(f.ldr()).permute(2, 0, 1)[None] for f in frames]
    x0, x1, x2 = make_frames(ldrs, relative)
    ones = torch.ones_like(x1[:, :1])
    plain = explicit_fusion(x0, x1, x2, ones, ones).clamp(0, 1)
    hwc = lambda t: t[0].permute(1, 2, 0).numpy()  # noqa: E731
    return {"reference": np.clip(hwc(x1[:, 0:3]), 0, 1), "merge": hwc(plain)}


def evaluate(
    scenes: Sequence[Scene],
    engine: Any,
    layout: str,
    *,
    flow_scale: float | None = 0.5,
    save_dir: Path | None = None,
    tile: int | None = None,
    max_memory: int | None = None,
    response: Any = None,
    max_pixels: int | None = None,
    on_scene: Callable[[SceneResult], None] = lambda r: None,
    guard: bool = True,
    shadow_merge: bool = True,
    overwrite: bool = False,
) -> EvalReport:
    """Run every scene through the pipeline and score it and the baselines.

    ``response``: a :class:`hdrmerge.response.ResponseChoice` (default auto).
    ``max_pixels``: shots declaring more are refused before decoding (None: the default limit).
    ``guard``, ``shadow_merge``: hdrmerge's additions (:mod:`hdrmerge.postmerge`); both are
    off under ``--exact`` (a ``response`` of mode ``exact``), whatever these say.
    ``overwrite``: ``save_dir`` files that exist may be replaced.
    """
    from hdrmerge.errors import InputError
    from hdrmerge.inference import merge
    from hdrmerge.pipeline import load_bracket
    from hdrmerge.testsets import read_hdr_image
    from hdrmerge.tiling import resolve_flow_scale

    report = EvalReport(
        layout,
        {"name": engine.weights.name, "arch": engine.model.arch, "sha256": engine.weights.sha256,
         "finetuned_from": engine.weights.describe()["finetuned_from"],
         "device": engine.device.type, "precision": engine.precision,
         # AFUNet has no flow network: no flow scale to report.
         "flow_scale": None if not engine.has_intermediates else "auto" if flow_scale is None else flow_scale,
         # hdrmerge's additions to SAFNet's output (docs/quality.md); off under --exact, none for AFUNet.
         "additions": {
             "guard": guard and engine.has_intermediates and not (response is not None and response.mode == "exact"),
             "shadow_merge": shadow_merge and engine.has_intermediates and not (response is not None and response.mode == "exact"),
         }},
    )
    for scene in scenes:
        t = time.perf_counter()
        limit = {} if max_pixels is None else {"max_pixels": max_pixels}
        bracket = load_bracket(scene.ldrs, scene.ev, response=response, **limit)
        frames, relative = bracket.sorted_frames, bracket.relative_sorted()
        gt = read_hdr_image(scene.gt)
        h, w = frames[0].size
        if gt.shape[:2] != (h, w):
            raise InputError(f"scene {scene.name}: ground truth is {gt.shape[1]}×{gt.shape[0]}, shots are {w}×{h}")
        scale = resolve_flow_scale(flow_scale, (h, w))
        exact = response is not None and response.mode == "exact"
        result = merge(
            engine, frames, relative, flow_scale=scale, tile=tile, max_memory=max_memory,
            guard=guard and not exact, shadow_merge=shadow_merge and not exact,
        )
        outputs = {"hdrmerge": result.hdr, **baselines(frames, relative)}
        metrics = {m: all_metrics(img, gt) for m, img in outputs.items()}
        if save_dir is not None:
            _save(save_dir, scene, outputs, overwrite)
        r = SceneResult(scene.name, metrics, time.perf_counter() - t, bracket.response.label())
        report.scenes.append(r)
        on_scene(r)
    return report


def saved_paths(save_dir: Path, scene: Scene) -> dict[str, Path]:
    """Where ``--save-dir`` puts a scene's files: ``hdr`` (the predicted HDR) and each method's preview."""
    folder = save_dir / scene.name.replace("/", "_")
    return {"hdr": folder / "hdrmerge.hdr", **{m: folder / f"{m}.preview.jpg" for m in METHODS}}


def _save(save_dir: Path, scene: Scene, outputs: dict[str, np.ndarray], overwrite: bool) -> None:
    """Predicted HDR (.hdr) and μ-law previews of every method, atomically."""
    from hdrmerge.atomic import StagedOutputs
    from hdrmerge.writing import write_hdr, write_preview

    paths = saved_paths(save_dir, scene)
    paths["hdr"].parent.mkdir(parents=True, exist_ok=True)
    with StagedOutputs(overwrite=overwrite) as staged:
        write_hdr(staged.stage(paths["hdr"]), outputs["hdrmerge"], {"SOFTWARE": "hdrmerge eval"})
        for method, img in outputs.items():
            write_preview(staged.stage(paths[method]), img)
        staged.commit()


def fmt_db(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.2f}"
