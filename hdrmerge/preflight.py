"""Checks on options, checkpoints and metadata that need neither decoding nor torch.

A run that cannot succeed should say so at once, not after three shots have
been decoded and PyTorch imported (3–6 s). These checks read only small files:
the EXIF of the shots, the cache and ``HDRMERGE_WEIGHTS_DIR`` listings, and
PyTorch's own ``torch/version.py`` and the NVIDIA driver's entries under
``/proc`` and ``/dev`` to tell whether CUDA can work here. Where they cannot be
sure (another OS, an unusual install) they pass, and the late checks in
:mod:`hdrmerge.inference` and :mod:`hdrmerge.pipeline` still apply.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from hdrmerge.errors import InputError, WeightsError

#: The late checks' messages, repeated so that early and late failures read the same.
NO_CUDA = "--device cuda: no CUDA device is available to PyTorch here; use --device auto or cpu"
NO_MPS = "--device mps: Apple's Metal backend is not available here; use --device auto or cpu"
FP16_ON_CPU = "--precision fp16 needs a GPU; on the CPU use fp32 (or auto)"


def torch_cuda_build() -> bool | None:
    """Whether the installed PyTorch was built with CUDA, from its ``version.py``.

    None when that cannot be read (no torch, or a layout this does not know).
    PyTorch writes ``cuda = None`` there for its CPU builds and the CUDA
    version string for the others.
    """
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    try:
        text = (Path(spec.origin).parent / "version.py").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    match = re.search(r"^cuda\s*(?::[^=\n]*)?=\s*(.+?)\s*$", text, re.M)
    if match is None:
        return None
    return match.group(1) not in ("None", "''", '""')


def nvidia_driver_present() -> bool | None:
    """Whether an NVIDIA kernel driver is loaded (Linux), None on other systems."""
    if not sys.platform.startswith("linux"):
        return None
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists()


def cuda_possible() -> bool | None:
    """False when CUDA certainly cannot work here, True when it should, None if unsure.

    Certainly not: ``CUDA_VISIBLE_DEVICES`` hides every device, PyTorch is a
    CPU build, or (on Linux) no NVIDIA driver is loaded.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    build, driver = torch_cuda_build(), nvidia_driver_present()
    if build is False or driver is False:
        return False
    if build and driver:
        return True
    return None


def check_device(device: str, precision: str) -> None:
    """``--device`` and ``--precision`` that cannot work here; InputError."""
    device, precision = device.lower(), precision.lower()
    if device == "cuda" and cuda_possible() is False:
        raise InputError(NO_CUDA)
    if device == "mps" and sys.platform != "darwin":
        raise InputError(NO_MPS)
    if precision == "fp16":
        # auto falls back to the CPU where there is no CUDA and no MPS.
        if device == "cpu" or (device == "auto" and cuda_possible() is False and sys.platform != "darwin"):
            raise InputError(FP16_ON_CPU)


def check_weights(model: str | None, weights: Path | None) -> None:
    """An unknown ``--model`` (registered, or fine-tuned and kept in the cache), a
    missing ``--weights`` file, or a checkpoint that is nowhere here while
    downloads are off (``HF_HUB_OFFLINE``)."""
    from hdrmerge.weights import CHECKPOINTS, DEFAULT_CHECKPOINT, get_checkpoint, model_arch, weights_dir_file
    from hdrmerge.weights.download import install_hint, offline
    from hdrmerge.weights.finetuned import find_cached
    from hdrmerge.weights.store import cached_path

    tuned = bool(model) and model not in CHECKPOINTS and find_cached(model or "") is not None
    if tuned:
        model_arch(model or "")  # a fine-tuned file with a malformed header fails here, before any decoding
    ckpt = get_checkpoint(model) if model and not tuned else None
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise InputError(f"--weights {path}: no such file")
        from hdrmerge.weights.store import checkpoint_kind

        try:
            kind = checkpoint_kind(path)
        except OSError as exc:
            raise InputError(f"--weights {path}: cannot be read ({exc.strerror}); check the file's permissions") from exc
        if kind is None:
            raise InputError(
                f"--weights {path}: not a checkpoint (neither a safetensors nor a PyTorch file); "
                "give a SAFNet or AFUNet .safetensors or .pth file"
            )
        return
    if tuned:
        return
    ckpt = ckpt or get_checkpoint(DEFAULT_CHECKPOINT)
    if weights_dir_file(ckpt) is None and not cached_path(ckpt).is_file() and offline():
        raise WeightsError(
            f"{ckpt.name} is not cached and HF_HUB_OFFLINE is set, so it cannot be downloaded; "
            f"unset HF_HUB_OFFLINE, or {install_hint(ckpt)}"
        )


def check_absolute_exif(paths: Sequence[Path], ev: Sequence[float] | None) -> None:
    """``--normalize absolute`` needs shutter time, f-number and ISO of the shortest shot.

    Decided from the EXIF alone where it can be: the shortest shot is known
    from ``--ev``, or from the shutter times when every shot has one. When it
    cannot be known yet, the check fails only if no shot has all three.
    """
    from hdrmerge.batch import read_shot
    from hdrmerge.exposure import exif_exposure

    found = []
    for p in paths:
        try:  # EXIF, or LibRaw's metadata for RAW files exifread cannot parse; no pixels
            found.append(exif_exposure(read_shot(Path(p)).exif))
        except (InputError, OSError, ValueError):
            return  # the decoder reports an unreadable file in its own words
    complete = [e is not None and e.iso_stops is not None and e.aperture_stops is not None for e in found]
    if ev is not None and len(ev) == len(paths):
        shortest: int | None = min(range(len(paths)), key=lambda i: ev[i])
    elif all(e is not None for e in found):
        shortest = min(range(len(paths)), key=lambda i: found[i].ev)  # type: ignore[union-attr]
    else:
        shortest = None
    if shortest is not None and not complete[shortest]:
        raise InputError(
            f"--normalize absolute needs ExposureTime, FNumber and ISO in the EXIF of the shortest "
            f"shot ({Path(paths[shortest]).name}); use --normalize reference"
        )
    if shortest is None and not any(complete):
        raise InputError(
            "--normalize absolute needs ExposureTime, FNumber and ISO in the EXIF of the shortest "
            "shot, and no shot has all three; use --normalize reference"
        )
