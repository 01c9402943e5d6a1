"""Finding, checking and loading checkpoints (SAFNet family and AFUNet).

Resolution order for the checkpoint a command uses:

1. ``--weights PATH``: that file (``.safetensors`` or ``.pth``), whatever it is;
   its architecture is read from its keys and it is named if its hash is
   registered, or by its own metadata if ``hdrmerge finetune`` wrote it
   (:mod:`hdrmerge.weights.finetuned`; its tensors are checked against the
   hash recorded there). ``--model NAME`` naming a fine-tuned checkpoint kept
   in the cache (``finetune --name``) loads that file the same way.
2. ``HDRMERGE_WEIGHTS_DIR``: a directory holding files under their registered
   names (``SAFNet_S_siggraph17.pth``, …); the file is verified before use.
3. The cache (:func:`hdrmerge.weights.store.cache_dir`): verified safetensors.
4. Download (:mod:`hdrmerge.weights.download`), verified, then cached.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hdrmerge.errors import ArchitectureError, InputError, WeightsError
from hdrmerge.weights import finetuned
from hdrmerge.weights.finetuned import FinetunedInfo
from hdrmerge.weights.registry import CHECKPOINTS, DEFAULT_CHECKPOINT, Checkpoint, get_checkpoint
from hdrmerge.weights.store import (
    cached_path,
    file_digests,
    identify,
    is_pytorch_file,
    load_cached,
    read_pth,
    store,
    verify_file,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "CHECKPOINTS",
    "DEFAULT_CHECKPOINT",
    "Checkpoint",
    "LoadedWeights",
    "get_checkpoint",
    "install",
    "load_weights",
    "model_arch",
    "weights_dir_file",
]


@dataclass(frozen=True)
class LoadedWeights:
    """A state dict and what is known about where it came from.

    ``name`` is the registry name, or None for an unregistered file;
    ``sha256`` is that of the original checkpoint file; ``source`` is one of
    ``--weights``, ``HDRMERGE_WEIGHTS_DIR``, ``cache``, ``download``.
    """

    state: dict[str, torch.Tensor]
    arch: str
    name: str | None
    sha256: str
    source: str
    path: Path
    #: The provenance of a checkpoint written by ``hdrmerge finetune`` (None for others).
    finetuned: FinetunedInfo | None = None

    @property
    def licence(self) -> str:
        """The licence of these weights: the registry's, or the one a fine-tuned file carries over."""
        if self.finetuned is not None:
            return self.finetuned.licence
        if self.name in CHECKPOINTS:
            return CHECKPOINTS[self.name].licence
        return finetuned.UNKNOWN_LICENCE

    def describe(self) -> dict[str, object]:
        """The ``model`` part of a run's report (``--json``), without the run's own settings."""
        info = self.finetuned
        return {
            "name": self.name,
            "sha256": self.sha256,
            "source": self.source,
            "finetuned_from": None if info is None else {
                "name": info.base_name, "sha256": info.base_sha256, "brackets": info.brackets_train,
                "steps": info.steps, "created": info.created, "licence": info.licence,
            },
        }


def model_arch(model: str) -> str:
    """The architecture ``--model NAME`` stands for: a registered or a cached fine-tuned checkpoint's.

    Reads a fine-tuned file's header only; InputError for an unknown name.
    """
    if model not in CHECKPOINTS and (path := finetuned.find_cached(model)) is not None:
        info = finetuned.read_info(path)
        if info is not None:
            return info.arch
    return get_checkpoint(model).arch


def weights_dir_file(ckpt: Checkpoint) -> Path | None:
    """``$HDRMERGE_WEIGHTS_DIR/<registered file name>`` if that file exists."""
    root = os.environ.get("HDRMERGE_WEIGHTS_DIR")
    if not root:
        return None
    path = Path(root).expanduser() / ckpt.filename
    return path if path.is_file() else None


def _check_arch(state: dict[str, torch.Tensor], expected: str | None, source: str) -> str:
    from hdrmerge.models import detect_architecture

    found = detect_architecture(state)
    if expected is not None and found != expected:
        raise ArchitectureError(
            f"{source} holds a {found} checkpoint, but {expected} was asked for; "
            "drop --model or give a matching file"
        )
    return found


def load_weights(
    model: str | None = None,
    weights: Path | None = None,
    *,
    hub_repo: str | None = None,
    download: bool = True,
    progress: bool | None = None,
) -> LoadedWeights:
    """The checkpoint to run, by the resolution order in this module's docstring.

    ``model`` is a registry name (default ``safnet-s``) or the name of a
    fine-tuned checkpoint in the cache; with ``weights`` it only states which
    architecture the file must have.
    """
    if weights is None and model and model not in CHECKPOINTS and (path := finetuned.find_cached(model)) is not None:
        return load_file(path, None, "cache")
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise InputError(f"--weights {path}: no such file")
        return load_file(path, model_arch(model) if model else None, "--weights")
    ckpt = get_checkpoint(model or DEFAULT_CHECKPOINT)
    if (path := weights_dir_file(ckpt)) is not None:
        digests = verify_file(path, ckpt)
        state = read_pth(path)
        arch = _check_arch(state, ckpt.arch, str(path))
        return LoadedWeights(state, arch, ckpt.name, digests.sha256, "HDRMERGE_WEIGHTS_DIR", path)

    entry = load_cached(ckpt)
    source = "cache"
    if entry is None:
        if not download:
            raise WeightsError(
                f"{ckpt.name} is not cached; run `hdrmerge weights download {ckpt.name}`, "
                f"or put {ckpt.filename} in a folder named by HDRMERGE_WEIGHTS_DIR"
            )
        from hdrmerge.weights.download import download as fetch

        fetch(ckpt, repo=hub_repo, progress=progress)
        entry = load_cached(ckpt)
        source = "download"
        if entry is None:  # store() wrote it a moment ago; only a racing delete gets here
            raise WeightsError(f"{ckpt.name} vanished from the cache after download; run the command again")
    return LoadedWeights(entry.state, ckpt.arch, ckpt.name, entry.source_sha256, source, entry.path)


def load_file(path: Path, expected_arch: str | None, source: str) -> LoadedWeights:
    """Any checkpoint file (``--weights``, a cached fine-tuned one), named if it is known.

    A fine-tuned file is named by its metadata and its tensors are checked
    against the hash recorded there (WeightsError when they differ).
    """
    digests = file_digests(path)
    if is_pytorch_file(path):
        state, info = read_pth(path), None
    else:
        state, info = finetuned.load(path)
    arch = _check_arch(state, expected_arch, str(path))
    if info is not None and arch != info.arch:
        raise InputError(f"{path} says it holds a {info.arch} checkpoint but its tensors are {arch}'s; fine-tune again")
    known = identify(digests)
    name = info.name if info is not None else known.name if known else None
    return LoadedWeights(state, arch, name, digests.sha256, source, path, info)


def install(name: str, path: Path) -> Path:
    """Verify a local copy of checkpoint ``name`` and put it in the cache.

    The way in for machines that cannot download. Returns the cache path.
    """
    ckpt = get_checkpoint(name)
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{path}: no such file; give the path of {ckpt.filename}")
    digests = verify_file(path, ckpt)
    state = read_pth(path)
    _check_arch(state, ckpt.arch, str(path))
    return store(ckpt, state, digests)


def is_cached(ckpt: Checkpoint) -> bool:
    """Whether a cache file exists for ``ckpt`` (not whether it is intact)."""
    return cached_path(ckpt).is_file()
