"""Self-supervised fine-tuning of SAFNet / SAFNet-S on a photographer's own brackets.

The recipe follows SelfHDR (Zhang et al., ICLR 2024), adapted to fine-tuning a
trained network: no ground truth exists, so each training crop gets a label
made from the bracket itself.

* **Alignment**: each non-reference shot is aligned to the reference by
  OpenCV's DIS optical flow (:func:`align`) on the two brought to the same
  brightness. (The network's own flows are only trained where its fusion
  masks use a shot; elsewhere they can be several pixels off, even for a
  static scene.)
* **Noise**: the camera's noise level ``n`` under ``σ²(v) = n²·(1 + 16·v)``
  (read plus shot noise, ``v`` camera-linear in [0, 1]) is measured on each
  crop from the difference between the reference and the aligned short shot
  (:func:`estimate_noise`), so the scene's texture does not count as noise.
* **Colour target** ``C``: the aligned shots merged in the short-exposure
  linear domain by inverse variance (shot k of relative exposure ``e_k``
  estimates radiance ``L`` with variance ``n²·(1 + 16·e_k·L)/e_k²``), times
  a taper that removes clipped pixels. An aligned shot is dropped where its
  5×5 mean disagrees with the reference's beyond 3σ of the noise plus
  :data:`DISAGREE` while both are unclipped, where the reference is clipped
  but the shot sees too little light to clip it, and where its flow leaves
  the crop (all dilated by 3 px). ``C`` is then denoised and gated towards
  the starting network where they differ structurally (:func:`denoise`).
* **Colour mask** ``m``: 1 where some unclipped, trusted shot contributes;
  0 where every usable shot is clipped.
* **Structure target** ``S``: the reference shot where it is well exposed
  (SAFNet's triangle weight Λmid), the frozen starting network's output
  elsewhere. The label is ``T = m·C + (1 − m)·S``.
* **Loss**: L1 between the μ-law (μ = 5000) of the output and of ``T``,
  plus :data:`GRADIENT_WEIGHT` × the L1 of their horizontal and vertical
  differences (a structure term that needs no downloaded network). A border of
  :data:`BORDER` px of each crop is left out (no context there). The L1 is
  not weighted by ``m``: the mask acts through the label instead (every
  pixel is supervised, by ``C`` where a trusted unclipped shot exists and by
  ``S`` where none does), and misaligned shots are masked out of ``C`` by
  their trust weights. A literal "masked L1" (the L1 weighted by ``m``, no
  supervision where ``m = 0``) is not what docs/finetune.md measured.

Training draws random crops (``crop``×``crop`` px at full resolution, the flow
network at ``flow_scale`` as ``fuse`` runs it) from the training brackets, with
Adam at a small learning rate. Every ``val_every`` steps the same loss is
computed on fixed crops of held-out brackets (whole shooting sessions where
there are two or more, :func:`split_brackets`: brackets of the same scene as
the training ones would not show the network getting worse on other scenes,
docs/finetune.md); the weights with the lowest
validation loss (the starting ones included, as step 0) are the result, and
training stops after ``patience`` validations without improvement.

Everything a run depends on is in :class:`TrainingState`, so a run stopped
(Ctrl-C, ``stop`` event) and resumed gives the same weights as one that never
stopped (same device and thread count: CPU convolutions are deterministic).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hdrmerge.errors import InputError
from hdrmerge.frame_cache import CachedFrame
from hdrmerge.reading import Frame

#: μ of the μ-law the loss is computed after (the papers' tone mapping).
MU = 5000.0
#: Weight of the gradient (structure) term against the L1 term.
GRADIENT_WEIGHT = 1.0
#: Pixels at each crop's edge left out of the loss.
BORDER = 8
#: Relative difference of the 5×5 means of an aligned shot and the reference
#: above which the shot is taken as misaligned there.
DISAGREE = 0.2
#: Fixed validation crops per held-out bracket.
VAL_CROPS = 2
#: Version of the TrainingState file format.
STATE_FORMAT = "hdrmerge-finetune-state"
STATE_VERSION = 1


@dataclass
class FinetuneConfig:
    """What a fine-tune does (see ``hdrmerge finetune --help``).

    ``crop``: side of the square training crops, full-resolution pixels.
    ``lr``: Adam's learning rate. ``val_fraction``: share of brackets held
    out to score the weights (at least one when there are two or more).
    ``val_every``: steps between validations; ``patience``: validations
    without improvement before stopping. ``flow_scale``: scale of the flow
    network, as ``fuse --flow-scale``. ``max_memory``: bytes the training
    step may use (None: :func:`hdrmerge.tiling.default_budget`); the crop is
    reduced to fit. ``ema``: 0 (the default) validates and keeps the trained
    weights themselves; a decay ``d`` in (0, 1) validates and keeps instead
    their exponential moving average ``a ← d·a + (1 − d)·w`` after every
    step, started at the starting weights (docs/finetune.md measures it
    against the in-domain dip; not the default).
    """

    steps: int = 240
    crop: int = 192
    lr: float = 2e-5
    seed: int = 0
    val_fraction: float = 0.2
    val_every: int = 20
    patience: int = 4
    batch: int = 1
    flow_scale: float = 0.5
    max_memory: int | None = None
    ema: float = 0.0


@dataclass
class TrainingBracket:
    """One bracket ready for training.

    ``frames``: three :class:`hdrmerge.reading.Frame` (pixels in memory) or
    :class:`hdrmerge.frame_cache.CachedFrame` (pixels on disk), sorted short →
    long, in the network's gamma-2.2 domain (after the response step). ``exposures``:
    relative exposures ``2 ** (ev − min ev)`` in the same order (first 1.0).
    """

    name: str
    frames: list[Frame | CachedFrame]
    exposures: list[float]
    #: The shooting session the bracket belongs to (:func:`hdrmerge.finetune_inputs.find_brackets`:
    #: its folder and a run of capture times); "" (the default) is a session of its own. The
    #: held-out brackets are chosen session by session (:func:`split_brackets`).
    session: str = ""


@dataclass
class StepReport:
    """One training step: ``loss`` and its ``parts`` (``l1``, ``gradient``); ``val_loss`` when validated;
    ``best_val_loss``: the lowest validation loss so far, the starting weights' (step 0) and a
    resumed run's earlier ones included."""

    step: int
    steps: int
    loss: float
    parts: dict[str, float]
    val_loss: float | None
    seconds: float
    best_val_loss: float | None = None


@dataclass
class FinetuneOutcome:
    """The result: the best weights (by validation loss; the starting ones if nothing beat them)."""

    state_dict: dict[str, torch.Tensor]
    steps_done: int
    best_step: int
    best_val_loss: float
    start_val_loss: float
    history: list[tuple[int, float, float | None]]
    n_train: int
    n_val: int
    stopped_early: bool
    interrupted: bool


@dataclass
class TrainingState:
    """Everything ``--resume`` needs to continue a run exactly.

    ``model``/``best``: current and best weights (CPU fp32). ``optimizer``:
    Adam's ``state_dict()``. ``rng``: the sampler's numpy bit-generator state.
    ``start_sha256``: :func:`weights_fingerprint` of the starting weights
    (a resume must start from the same checkpoint). ``bad_validations``:
    validations since the last improvement. ``found``: every bracket the
    first run found, those it could not decode included (set by the CLI, so
    that ``--resume`` compares what is found now with what was found then;
    ``train``/``val`` hold only the brackets that loaded).

    ``averaged``: with ``config.ema``, the moving average of the weights
    (empty otherwise).

    File format (:meth:`save`): one safetensors file. Tensors are named
    ``model/<key>``, ``best/<key>``, ``ema/<key>`` (with ``config.ema``) and
    ``optim/<index>/<name>``; the
    metadata key ``hdrmerge.finetune_state`` holds a JSON object with
    ``format`` (``hdrmerge-finetune-state``), ``version`` (1), ``config``,
    ``arch``, ``step``, ``best_step``, ``best_val_loss``, ``start_val_loss``,
    ``bad_validations``, ``history`` ([step, loss, val or null] triples),
    ``train``/``val`` (bracket names), ``found``, ``start_sha256``, ``rng`` and the
    optimizer's ``param_groups`` and per-tensor step counts.
    """

    config: FinetuneConfig
    arch: str
    step: int
    model: dict[str, torch.Tensor]
    best: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: dict[str, Any]
    best_step: int
    best_val_loss: float
    start_val_loss: float
    bad_validations: int
    history: list[tuple[int, float, float | None]]
    train: list[str]
    val: list[str]
    start_sha256: str
    stopped_early: bool = False
    found: list[str] = field(default_factory=list)
    averaged: dict[str, torch.Tensor] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        """Write the state to ``path`` atomically (replacing an earlier state)."""
        from safetensors.torch import save_file

        from hdrmerge.atomic import atomic_path

        tensors: dict[str, torch.Tensor] = {}
        for k, v in self.model.items():
            tensors[f"model/{k}"] = v.detach().cpu().contiguous()
        for k, v in self.best.items():
            tensors[f"best/{k}"] = v.detach().cpu().contiguous()
        for k, v in self.averaged.items():
            tensors[f"ema/{k}"] = v.detach().cpu().contiguous()
        optim_scalars: dict[str, dict[str, Any]] = {}
        for idx, entry in self.optimizer["state"].items():
            for name, value in entry.items():
                if isinstance(value, torch.Tensor) and value.dim() > 0:
                    tensors[f"optim/{idx}/{name}"] = value.detach().cpu().contiguous()
                else:
                    optim_scalars.setdefault(str(idx), {})[name] = float(value)
        meta = {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "config": asdict(self.config),
            "arch": self.arch,
            "step": self.step,
            "best_step": self.best_step,
            "best_val_loss": self.best_val_loss,
            "start_val_loss": self.start_val_loss,
            "bad_validations": self.bad_validations,
            "stopped_early": self.stopped_early,
            "history": [list(h) for h in self.history],
            "train": self.train,
            "val": self.val,
            "found": self.found,
            "start_sha256": self.start_sha256,
            "rng": self.rng,
            "param_groups": self.optimizer["param_groups"],
            "optim_scalars": optim_scalars,
        }
        path = Path(path)
        with atomic_path(path, overwrite=True) as tmp:
            save_file(tensors, str(tmp), metadata={"hdrmerge.finetune_state": json.dumps(meta)})

    @classmethod
    def load(cls, path: Path) -> TrainingState:
        """Read a state written by :meth:`save`; InputError for anything else."""
        from safetensors import safe_open

        path = Path(path)
        hint = "give the state file a stopped `hdrmerge finetune` left"
        try:
            with safe_open(str(path), framework="pt") as f:
                raw = (f.metadata() or {}).get("hdrmerge.finetune_state")
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except FileNotFoundError:
            raise InputError(f"{path}: no such file; {hint}") from None
        except IsADirectoryError:
            raise InputError(f"{path} is a folder; {hint}") from None
        except Exception as exc:  # safetensors raises its own error types for foreign files
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"{path} is not a fine-tuning state ({reason}); {hint}") from None
        try:
            meta = json.loads(raw) if raw is not None else None
        except ValueError:
            meta = None
        if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT:
            raise InputError(f"{path} is not a fine-tuning state (no hdrmerge.finetune_state metadata); {hint}")
        if meta.get("version") != STATE_VERSION:
            raise InputError(
                f"{path} is a fine-tuning state of format version {meta.get('version')}, this hdrmerge reads "
                f"version {STATE_VERSION}; start the fine-tune again without --resume"
            )
        try:
            known = {f.name for f in fields(FinetuneConfig)}
            config = FinetuneConfig(**{k: v for k, v in meta["config"].items() if k in known})
            model = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
            best = {k[len("best/"):]: v for k, v in tensors.items() if k.startswith("best/")}
            averaged = {k[len("ema/"):]: v for k, v in tensors.items() if k.startswith("ema/")}
            state: dict[int, dict[str, Any]] = {}
            for k, v in tensors.items():
                if k.startswith("optim/"):
                    _, idx, name = k.split("/", 2)
                    state.setdefault(int(idx), {})[name] = v
            for idx, scalars in meta["optim_scalars"].items():
                for name, value in scalars.items():
                    state.setdefault(int(idx), {})[name] = torch.tensor(value)
            history = [(int(s), float(t), None if v is None else float(v)) for s, t, v in meta["history"]]
            return cls(
                config=config, arch=str(meta["arch"]), step=int(meta["step"]), model=model, best=best,
                optimizer={"state": state, "param_groups": meta["param_groups"]}, rng=meta["rng"],
                best_step=int(meta["best_step"]), best_val_loss=float(meta["best_val_loss"]),
                start_val_loss=float(meta["start_val_loss"]), bad_validations=int(meta["bad_validations"]),
                history=history, train=list(meta["train"]), val=list(meta["val"]),
                start_sha256=str(meta["start_sha256"]), stopped_early=bool(meta.get("stopped_early", False)),
                found=list(meta.get("found", [])), averaged=averaged,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: a damaged fine-tuning state ({type(exc).__name__}: {exc}); {hint}") from None


# --- helpers ---------------------------------------------------------------------------


def weights_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """sha256 over the names, shapes and float32 values of a state dict's tensors (sorted by name)."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().to(torch.float32).contiguous()
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def mu_law(x: torch.Tensor) -> torch.Tensor:
    """``log(1 + μ·x) / log(1 + μ)`` of ``x`` clamped to [0, 1]."""
    return torch.log1p(MU * x.clamp(0.0, 1.0)) / math.log1p(MU)


@dataclass
class Crop:
    """Network inputs and self-supervised label of one batch of crops (all B×C×h×w)."""

    x0: torch.Tensor
    x1: torch.Tensor
    x2: torch.Tensor
    target: torch.Tensor  # T = m·C + (1 − m)·S, short-exposure linear, [0, 1]


def crop_inputs(bracket: TrainingBracket, y: int, x: int, size: int, device: torch.device) -> list[torch.Tensor]:
    """The three 1×6×size×size network inputs of a crop whose top-left is (y, x)."""
    from hdrmerge.tiling import Window, frame_window

    win = Window(y, y + size, x, x + size)
    return [frame_window(f, e, win, device).contiguous() for f, e in zip(bracket.frames, bracket.exposures)]


def _box5(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)


def _in_bounds(flow: torch.Tensor) -> torch.Tensor:
    """B×1×h×w: 1 where ``p + flow(p)`` falls inside the crop (else the warp repeats the border)."""
    h, w = flow.shape[-2], flow.shape[-1]
    ys = torch.arange(h, dtype=flow.dtype, device=flow.device).view(1, h, 1)
    xs = torch.arange(w, dtype=flow.dtype, device=flow.device).view(1, 1, w)
    px, py = xs + flow[:, 0], ys + flow[:, 1]
    inside = (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)
    return inside.unsqueeze(1).to(flow.dtype)


def _unclipped(ldr: torch.Tensor) -> torch.Tensor:
    """B×1×h×w taper: 1 below code 0.9 (max channel), 0 from 0.98 up."""
    top = ldr.amax(dim=1, keepdim=True)
    return ((0.98 - top) / 0.08).clamp(0.0, 1.0)


def estimate_noise(ref: torch.Tensor, other: torch.Tensor, flow: torch.Tensor, e_ref: float, e_other: float) -> torch.Tensor:
    """Read-noise level ``n`` (B×1×1×1) of the camera under the model ``σ²(v) = n²·(1 + 16·v)``.

    ``v`` is a shot's camera-linear value in [0, 1]. Measured on the
    difference between the reference and another shot aligned to it by
    ``flow`` (so the scene's own texture cancels), where both are unclipped:
    each difference, divided by the standard deviation the model predicts
    for it with ``n = 1`` (the bilinear warp's averaging included), has the
    standard deviation ``n``; its median absolute deviation is robust to
    the pixels that alignment got wrong.
    """
    from hdrmerge.models.layers import warp

    xw = warp(other, flow)
    lin = ref[:, 0:3].clamp(0.0, 1.0)
    fx, fy = flow[:, 0:1] - flow[:, 0:1].floor(), flow[:, 1:2] - flow[:, 1:2].floor()
    smoothing = ((1 - fx) ** 2 + fx**2) * ((1 - fy) ** 2 + fy**2)
    unit = (1 + 16 * e_ref * lin) / e_ref**2 + smoothing * (1 + 16 * e_other * lin) / e_other**2
    z = ((xw[:, 0:3] - ref[:, 0:3]).abs() / unit.sqrt()).flatten(1)
    keep = ((ref[:, 3:6] < 0.9) & (xw[:, 3:6] < 0.9) & (ref[:, 3:6] > 0.02) & (xw[:, 3:6] > 0.02)).flatten(1)
    out = []
    for zi, ki in zip(z, keep):
        sel = zi[ki] if int(ki.sum()) >= 256 else zi
        out.append(1.4826 * sel.median())
    return torch.stack(out).clamp_min(1e-4).view(-1, 1, 1, 1)


#: Window (Gaussian σ, pixels) of the local statistics of the denoising filter and the gate.
DENOISE_SIGMA = 1.5
#: Local energy of the network's difference from the denoised merge, in units
#: of the merge's noise variance, up to which the merge is kept (see :func:`denoise`).
GATE = 3.0


def _gauss(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (r, r, r, r), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def denoise(colour: torch.Tensor, start: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """The colour target, denoised and kept where the starting network disagrees with it structurally.

    ``colour``: B×3×h×w linear merge; ``variance``: B×1×h×w, the noise
    variance of its values; ``start``: the frozen starting network's output.
    All in the μ-law domain, where the loss is computed:

    1. Lee's local linear minimum-mean-square-error filter: each pixel moves
       towards its local mean (Gaussian, σ = :data:`DENOISE_SIGMA`) by the
       share of the local variance that the noise explains, so flat noisy
       areas are smoothed while edges and texture well above the noise stay.
    2. A gate towards the starting network: where the difference between the
       network and the denoised merge has a local energy within
       :data:`GATE` × the merge's noise variance, it is noise (the
       network's, at high ISO) and the merge is kept; where it is larger,
       it has structure (a misaligned edge in the merge), and the label
       moves to the network in proportion. At base noise, where the network
       is accurate, this keeps the label from teaching the merge's
       alignment errors.
    """
    x = colour.clamp(0.0, 1.0)
    slope = MU / ((1.0 + MU * x) * math.log1p(MU))  # dμ/dx
    noise = variance * slope * slope
    y = mu_law(x)
    mean = _gauss(y, DENOISE_SIGMA)
    local = (_gauss(y * y, DENOISE_SIGMA) - mean * mean).clamp_min(1e-12)
    y = mean + ((local - noise) / local).clamp(0.0, 1.0) * (y - mean)
    d = mu_law(start) - y
    share = (GATE * noise / _gauss(d * d, DENOISE_SIGMA).clamp_min(1e-12)).clamp(0.0, 1.0)
    y = y + (1.0 - share) * d
    return torch.expm1(y * math.log1p(MU)) / MU


def align(ref: torch.Tensor, other: torch.Tensor, e_ref: float, e_other: float) -> torch.Tensor:
    """Optical flow (B×2×h×w, pixels, x then y) from the reference to another shot, by OpenCV's DIS.

    Both shots are brought to the same brightness first: their short-exposure
    linear values are clipped where the brighter of the two clips, scaled to
    that level, encoded with gamma 2.2 and averaged over the channels. The
    flow follows :func:`hdrmerge.models.layers.warp`'s convention: the shot
    sampled at ``p + flow(p)`` lands on the reference's pixel ``p``.
    """
    import cv2

    level = 0.9 / max(e_ref, e_other)
    out = []
    for r, o in zip(ref, other):
        grey = [
            (np.clip(t[0:3].mean(dim=0).cpu().numpy() / level, 0.0, 1.0) ** (1 / 2.2) * 255.0 + 0.5).astype(np.uint8)
            for t in (r, o)
        ]
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        flow = dis.calc(grey[0], grey[1], None)
        out.append(torch.from_numpy(flow).permute(2, 0, 1))
    return torch.stack(out).to(ref.device, ref.dtype)


def make_label(frozen: torch.nn.Module, x0: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor,
               exposures: Sequence[float], flow_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The self-supervised label ``T`` (B×3×h×w) and colour mask ``m`` (B×1×h×w) of a crop.

    See the module docstring. ``frozen`` is the starting network (eval mode).
    """
    from hdrmerge.models.layers import warp
    from hdrmerge.models.safnet import triangle_weights

    with torch.no_grad():
        out = frozen.run(x0, x1, x2, flow_scale)
        base = out.hdr.clamp(0.0, 1.0)
        radiance = _box5(base.mean(dim=1, keepdim=True))
        e1 = float(exposures[1])

        def variance(e: float) -> torch.Tensor:
            # Per pixel and channel, of a frame's estimate of radiance (short-exposure domain).
            return noise * noise * (1.0 + 16.0 * e * radiance) / (e * e)

        ref_top = x1[:, 3:6].amax(dim=1, keepdim=True)
        ref_mean = _box5(x1[:, 0:3].mean(dim=1, keepdim=True))
        num = torch.zeros_like(base)
        den = torch.zeros_like(radiance)
        usable = torch.zeros_like(radiance)
        flows = {k: align(x1, xk, e1, float(exposures[k])) for k, xk in ((0, x0), (2, x2))}
        noise = estimate_noise(x1, x0, flows[0], e1, float(exposures[0]))
        for k, xk, flow in ((0, x0, flows[0]), (1, x1, None), (2, x2, flows[2])):
            e = float(exposures[k])
            if flow is None:
                xw, trust = xk, torch.ones_like(radiance)
            else:
                xw = warp(xk, flow)
                top = xw[:, 3:6].amax(dim=1, keepdim=True)
                mean = _box5(xw[:, 0:3].mean(dim=1, keepdim=True))
                # Both unclipped: their local means must agree within noise (3σ of
                # the difference of two 5×5, 3-channel means) and DISAGREE.
                tol = 3.0 * torch.sqrt((variance(e) + variance(e1)) / 75.0) + DISAGREE * 0.5 * (mean + ref_mean)
                bad = ((mean - ref_mean).abs() > tol) & (top < 0.9) & (ref_top < 0.9)
                # Reference clipped: the shot must see light that would clip it.
                seen = _box5((xw[:, 0:3] * e1).amax(dim=1, keepdim=True))
                bad |= (ref_top > 0.97) & (seen < 0.7)
                bad = F.max_pool2d(bad.to(x1.dtype), 7, stride=1, padding=3)
                trust = _in_bounds(flow) * (1.0 - bad)
            clip = _unclipped(xw[:, 3:6])
            weight = trust * clip / variance(e)
            num = num + weight * xw[:, 0:3]
            den = den + weight
            usable = torch.maximum(usable, trust * clip)
        colour = num / den.clamp_min(1e-20)
        colour = denoise(colour, base, 1.0 / den.clamp_min(1e-20))
        colour_mask = usable
        w_mid = triangle_weights(x1[:, 3:6])[1].amin(dim=1, keepdim=True)
        structure = w_mid * x1[:, 0:3] + (1.0 - w_mid) * base
        target = (colour_mask * colour + (1.0 - colour_mask) * structure).clamp(0.0, 1.0)
    return target, colour_mask


def self_supervised_loss(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """μ-law L1 plus :data:`GRADIENT_WEIGHT` × μ-law gradient L1, inside a :data:`BORDER` px margin."""
    b = BORDER
    if min(pred.shape[-2:]) > 4 * b:
        pred, target = pred[..., b:-b, b:-b], target[..., b:-b, b:-b]
    p, t = mu_law(pred), mu_law(target)
    l1 = (p - t).abs().mean()
    grad = ((p[..., :, 1:] - p[..., :, :-1]) - (t[..., :, 1:] - t[..., :, :-1])).abs().mean()
    grad = grad + ((p[..., 1:, :] - p[..., :-1, :]) - (t[..., 1:, :] - t[..., :-1, :])).abs().mean()
    loss = l1 + GRADIENT_WEIGHT * grad
    return loss, {"l1": float(l1.detach()), "gradient": float(grad.detach())}


# --- memory ----------------------------------------------------------------------------

#: Bytes per crop pixel of one training step (forward with stored activations,
#: backward, the frozen network's label pass), float32 on the CPU: measured
#: 7853 (SAFNet-S) and 12871 (SAFNet) by benchmarks/finetune_memory.py, plus
#: about 15 % headroom. The validation crops and the frozen copy add a fixed
#: part on top (under 100 MiB for SAFNet-S at 96 px crops).
TRAIN_BYTES_PER_PIXEL = {"SAFNet-S": 9000, "SAFNet": 15000}


def fit_crop(config: FinetuneConfig, arch: str, size: tuple[int, int], device: torch.device) -> int:
    """The crop side a step uses: ``config.crop`` reduced to the memory budget and the smallest frame, even."""
    from hdrmerge.tiling import default_budget

    budget = config.max_memory if config.max_memory is not None else default_budget(device.type)
    per_pixel = TRAIN_BYTES_PER_PIXEL.get(arch, TRAIN_BYTES_PER_PIXEL["SAFNet"])
    fits = int(math.sqrt(max(budget, 1) / (per_pixel * max(1, config.batch))))
    side = min(config.crop, fits, size[0], size[1])
    if side < 32:
        raise InputError(
            f"a training crop of {side} px is too small (memory budget {budget // 2**20} MiB, smallest bracket "
            f"{size[1]}×{size[0]}); allow more --max-memory or use larger photos"
        )
    return side // 2 * 2


# --- training --------------------------------------------------------------------------


def split_brackets(
    names: Sequence[str], config: FinetuneConfig, sessions: Mapping[str, str] | None = None
) -> tuple[list[str], list[str]]:
    """Training and held-out bracket names, held out session by session.

    ``n = round(val_fraction × brackets)`` is the share asked for (at least 1
    of 2+ when ``val_fraction > 0``, never all). ``sessions`` maps a name to
    its shooting session (missing or "": a session of its own). With two or
    more sessions, whole sessions are held out, so that the held-out score
    sees content the training never saw: the sessions in a seeded shuffled
    order, each taken when it brings the count closer to ``n`` (the smallest
    one if none does; never every session). With a single session the
    brackets are held out one by one (the same seeded shuffle). Without
    ``sessions`` every bracket is its own session, and the split is the
    one-by-one split.
    """
    order = sorted(names)
    n_val = int(round(config.val_fraction * len(order)))
    if config.val_fraction > 0 and len(order) >= 2:
        n_val = max(1, n_val)
    n_val = min(n_val, len(order) - 1)
    groups: dict[str, list[str]] = {}
    for n in order:
        groups.setdefault((sessions or {}).get(n) or f"\0{n}", []).append(n)
    rng = np.random.default_rng([config.seed, 7])
    if n_val <= 0 or len(groups) < 2:
        rng.shuffle(order)
        return sorted(order[n_val:]), sorted(order[:n_val])
    keys = sorted(groups)
    rng.shuffle(keys)
    val: list[str] = []
    for i, key in enumerate(keys):
        taken = len(groups[key])
        left = len(keys) - i - 1  # sessions not yet considered
        if not left and len(val) + taken == len(order):
            break  # never every session
        if abs(len(val) + taken - n_val) < abs(len(val) - n_val):
            val += groups[key]
    if not val:
        val = list(min((groups[k] for k in keys), key=len))
    held = set(val)
    return [n for n in order if n not in held], sorted(val)


def _val_crops(brackets: Sequence[TrainingBracket], side: int, seed: int) -> list[tuple[TrainingBracket, int, int]]:
    out = []
    for i, b in enumerate(brackets):
        rng = np.random.default_rng([seed, 11, i])
        h, w = b.frames[0].size
        for _ in range(VAL_CROPS):
            out.append((b, int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))))
    return out


def finetune(
    model: torch.nn.Module,
    brackets: Sequence[TrainingBracket],
    config: FinetuneConfig,
    *,
    device: torch.device,
    on_step: Callable[[StepReport], None] | None = None,
    resume: TrainingState | None = None,
    stop: threading.Event | None = None,
    checkpoint_every: Callable[[TrainingState], None] | None = None,
) -> tuple[FinetuneOutcome, TrainingState]:
    """Fine-tune ``model`` (SAFNet or SAFNet-S, loaded with the starting checkpoint) on ``brackets``.

    ``model`` is left holding the best weights. ``resume``: a state from an
    earlier run with the same starting weights and brackets; its config
    replaces ``config`` except ``steps`` (which may be raised). When ``stop``
    is set (Ctrl-C) the current step finishes and the run returns with
    ``interrupted=True`` and a state that resumes exactly. ``checkpoint_every``
    receives the state after every validation. ``on_step`` receives every step.
    """
    import copy
    import dataclasses

    if len(brackets) == 0:
        raise InputError("no brackets to fine-tune on; give folders that hold bracketed shots")
    names = [b.name for b in brackets]
    if len(set(names)) != len(names):
        raise ValueError("bracket names must be unique")
    by_name = {b.name: b for b in brackets}
    arch = getattr(model, "arch", type(model).__name__)
    start = {k: v.detach().cpu().float().clone() for k, v in model.state_dict().items()}
    start_sha = weights_fingerprint(start)

    if resume is not None:
        if resume.start_sha256 != start_sha:
            raise InputError("the resumed state started from other weights; give the same --model as the first run")
        missing = [n for n in resume.train + resume.val if n not in by_name]
        if missing:
            raise InputError(
                f"the resumed state trained on brackets that are not given now ({', '.join(missing[:3])}); "
                "give the same folders as the first run"
            )
        steps = config.steps
        config = dataclasses.replace(resume.config, steps=steps)
        train_names, val_names = resume.train, resume.val
    else:
        train_names, val_names = split_brackets(names, config, {b.name: b.session for b in brackets})
    train = [by_name[n] for n in train_names]
    val = [by_name[n] for n in val_names] or train  # one bracket: score on its own fixed crops
    for b in brackets:
        if len(b.frames) != 3 or len(b.exposures) != 3:
            raise InputError(f"{b.name}: a bracket needs 3 shots, got {len(b.frames)}")
    smallest = (min(b.frames[0].size[0] for b in brackets), min(b.frames[0].size[1] for b in brackets))
    side = fit_crop(config, arch, smallest, device)

    frozen = copy.deepcopy(model).to(device).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)

    def label(crops: list[tuple[TrainingBracket, int, int]]) -> Crop:
        parts = [crop_inputs(b, y, x, side, device) for b, y, x in crops]
        x0, x1, x2 = (torch.cat([p[k] for p in parts]) for k in range(3))
        # The colour mask m is already in the label (T blends C and S by it); the loss needs T only.
        targets = [make_label(frozen, a0, a1, a2, b.exposures, config.flow_scale)[0]
                   for (b, _, _), (a0, a1, a2) in zip(crops, parts)]
        return Crop(x0, x1, x2, torch.cat(targets))

    val_batches = [label([c]) for c in _val_crops(val, side, config.seed)]

    # With config.ema, the weights validated and kept are an exponential moving average of the
    # trained ones, started at the starting weights (see FinetuneConfig); `scorer` runs them.
    scorer = copy.deepcopy(model).eval() if config.ema > 0 else model

    def validate() -> float:
        scorer.eval()
        total = 0.0
        with torch.no_grad():
            for c in val_batches:
                total += float(self_supervised_loss(scorer(c.x0, c.x1, c.x2, config.flow_scale), c.target)[0])
        return total / len(val_batches)

    def kept() -> dict[str, torch.Tensor]:
        """The weights validation scores and the result keeps (the average, or the trained ones)."""
        return {k: v.detach().cpu().float().clone() for k, v in scorer.state_dict().items()}

    if resume is not None:
        model.load_state_dict({k: v.to(device) for k, v in resume.model.items()})
        if scorer is not model:
            scorer.load_state_dict({k: v.to(device) for k, v in (resume.averaged or resume.model).items()})
        optimizer.load_state_dict(resume.optimizer)
        rng.bit_generator.state = resume.rng
        state = resume
        state.config = config
        best = {k: v.clone() for k, v in resume.best.items()}
    else:
        v0 = validate()
        best = {k: v.clone() for k, v in start.items()}
        state = TrainingState(
            config=config, arch=arch, step=0, model=start, best=best, optimizer=optimizer.state_dict(),
            rng=rng.bit_generator.state, best_step=0, best_val_loss=v0, start_val_loss=v0, bad_validations=0,
            history=[], train=train_names, val=val_names, start_sha256=start_sha,
        )

    def snapshot() -> None:
        state.model = {k: v.detach().cpu().float().clone() for k, v in model.state_dict().items()}
        state.averaged = kept() if scorer is not model else {}
        state.best = best
        state.optimizer = copy.deepcopy(optimizer.state_dict())
        state.rng = rng.bit_generator.state

    interrupted = False
    while state.step < config.steps and not state.stopped_early:
        if stop is not None and stop.is_set():
            interrupted = True
            break
        t0 = time.perf_counter()
        step = state.step + 1
        picks = []
        for _ in range(config.batch):
            b = train[int(rng.integers(0, len(train)))]
            h, w = b.frames[0].size
            picks.append((b, int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))))
        crop = label(picks)
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss, parts = self_supervised_loss(model(crop.x0, crop.x1, crop.x2, config.flow_scale), crop.target)
        loss.backward()
        optimizer.step()
        if scorer is not model:
            with torch.no_grad():
                for avg, new in zip(scorer.state_dict().values(), model.state_dict().values()):
                    if avg.is_floating_point():
                        avg.mul_(config.ema).add_(new, alpha=1.0 - config.ema)
                    else:
                        avg.copy_(new)
        state.step = step
        val_loss = None
        if step % config.val_every == 0 or step == config.steps:
            val_loss = validate()
            if val_loss < state.best_val_loss:
                state.best_val_loss, state.best_step, state.bad_validations = val_loss, step, 0
                best = kept()
            else:
                state.bad_validations += 1
                if state.bad_validations >= config.patience:
                    state.stopped_early = True
        state.history.append((step, float(loss.detach()), val_loss))
        if on_step is not None:
            on_step(StepReport(step, config.steps, float(loss.detach()), parts, val_loss, time.perf_counter() - t0,
                               state.best_val_loss))
        if val_loss is not None and checkpoint_every is not None:
            snapshot()
            checkpoint_every(state)
    snapshot()
    model.load_state_dict({k: v.to(device) for k, v in best.items()})
    outcome = FinetuneOutcome(
        state_dict={k: v.clone() for k, v in best.items()}, steps_done=state.step, best_step=state.best_step,
        best_val_loss=state.best_val_loss, start_val_loss=state.start_val_loss, history=list(state.history),
        n_train=len(train_names), n_val=len(val_names), stopped_early=state.stopped_early, interrupted=interrupted,
    )
    return outcome, state
