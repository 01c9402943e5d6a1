"""Fine-tuned checkpoints (``hdrmerge finetune``): their file format and their place in the cache.

A fine-tuned checkpoint is a safetensors file holding the network's state dict
(float32, the same keys as the checkpoint it started from, so that strict
loading and architecture detection treat it like any other) and, in the
file's metadata (string → string), where it came from:

==========================  ====================================================
``hdrmerge_format``         ``hdrmerge-finetuned/1`` (what marks the file)
``hdrmerge_name``           its name (``--name``, else the output file's stem)
``arch``                    ``SAFNet-S`` or ``SAFNet``
``base_name``               the starting checkpoint: a registered name, another
                            fine-tuned checkpoint's name, or ``unregistered``
``base_sha256``             SHA-256 of the starting checkpoint's file
``base_tensors_sha256``     :func:`~hdrmerge.weights.store.tensors_digest` of
                            the starting weights
``licence``                 the starting weights' licence, carried over
``brackets_train``          brackets trained on
``brackets_val``            held-out brackets scored for early stopping
``steps``                   training steps done
``best_step``               the step whose weights were kept
``loss_start_val``          held-out self-supervised loss before training
                            (empty when no bracket was held out)
``loss_best_val``           held-out loss of the weights kept (likewise)
``stopped_early``           ``true`` / ``false``
``config``                  the training settings, as JSON, and ``scored_on``:
                            ``held-out brackets`` or ``training crops``
``created``                 when it was written, ISO 8601 UTC
``hdrmerge_version``        the hdrmerge that wrote it
``tensors_sha256``          :func:`~hdrmerge.weights.store.tensors_digest` of
                            the tensors, checked on every load
==========================  ====================================================

Fine-tuned checkpoints kept in the cache (``hdrmerge finetune --name NAME``)
live in ``<cache>/finetuned/<NAME>.safetensors``, apart from the registered
ones, and are used with ``--model NAME``.

Nothing here imports torch at module level; reading the metadata alone
(:func:`read_info`) never does, so ``hdrmerge weights list`` stays instant.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hdrmerge import __version__
from hdrmerge.errors import InputError, WeightsError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import torch

FORMAT = "hdrmerge-finetuned/1"
#: Architectures ``hdrmerge finetune`` can train.
TRAINABLE = ("SAFNet-S", "SAFNet")
#: What a name given to ``--name`` may look like (it becomes a file name and a ``--model`` value).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: The licence recorded when the starting checkpoint's licence is not known.
UNKNOWN_LICENCE = "unknown: the starting checkpoint was not a registered one; its own licence applies"


@dataclass(frozen=True)
class FinetunedInfo:
    """The provenance of a fine-tuned checkpoint (the file's metadata, typed).

    Losses are the self-supervised loss of ``hdrmerge finetune`` on the
    held-out brackets; None when none were held out (``--val-fraction 0``,
    or one bracket), when the weights were chosen on training crops instead
    (``config["scored_on"]`` says which).
    """

    name: str
    arch: str
    base_name: str
    base_sha256: str
    base_tensors_sha256: str
    licence: str
    brackets_train: int
    brackets_val: int
    steps: int
    best_step: int
    loss_start_val: float | None
    loss_best_val: float | None
    stopped_early: bool
    config: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    hdrmerge_version: str = __version__
    tensors_sha256: str = ""

    def to_metadata(self) -> dict[str, str]:
        """The safetensors metadata (every value a string)."""
        def text(v: Any) -> str:
            if v is None:
                return ""
            if isinstance(v, bool):
                return "true" if v else "false"
            if isinstance(v, float):
                return repr(v)
            return str(v)

        meta = {"hdrmerge_format": FORMAT, "hdrmerge_name": self.name}
        for key, value in asdict(self).items():
            if key == "name":
                continue
            meta[key] = json.dumps(value, sort_keys=True) if key == "config" else text(value)
        return meta

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str], source: str) -> FinetunedInfo:
        """Parse a fine-tuned file's metadata; InputError naming ``source`` if it is malformed."""
        try:
            def opt_float(key: str) -> float | None:
                return float(meta[key]) if meta.get(key, "") != "" else None

            return cls(
                name=meta["hdrmerge_name"],
                arch=meta["arch"],
                base_name=meta["base_name"],
                base_sha256=meta["base_sha256"],
                base_tensors_sha256=meta["base_tensors_sha256"],
                licence=meta["licence"],
                brackets_train=int(meta["brackets_train"]),
                brackets_val=int(meta["brackets_val"]),
                steps=int(meta["steps"]),
                best_step=int(meta["best_step"]),
                loss_start_val=opt_float("loss_start_val"),
                loss_best_val=opt_float("loss_best_val"),
                stopped_early=meta["stopped_early"] == "true",
                config=json.loads(meta.get("config") or "{}"),
                created=meta.get("created", ""),
                hdrmerge_version=meta.get("hdrmerge_version", ""),
                tensors_sha256=meta["tensors_sha256"],
            )
        except (KeyError, ValueError) as exc:
            raise InputError(
                f"{source} says it is a fine-tuned checkpoint but its metadata is incomplete ({exc}); "
                "fine-tune again, or give another file"
            ) from None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def provenance(self) -> str:
        """One line for people: what it was tuned from and on what."""
        return (
            f"fine-tuned from {self.base_name} (sha256 {self.base_sha256[:12]}…) on {self.brackets_train} "
            f"brackets plus {self.brackets_val} held out, {self.steps} steps, {self.created[:10] or 'date unknown'}"
        )


def read_info(path: Path) -> FinetunedInfo | None:
    """The provenance of a fine-tuned checkpoint file, from its header only.

    None for any other file (a registered checkpoint's cache file, a ``.pth``,
    a safetensors file without hdrmerge's fine-tuning metadata). InputError
    for a fine-tuned file whose metadata is malformed.
    """
    meta = read_metadata(path)
    if meta is None or meta.get("hdrmerge_format") != FORMAT:
        return None
    return FinetunedInfo.from_metadata(meta, str(path))


def read_metadata(path: Path) -> dict[str, str] | None:
    """A safetensors file's metadata (header only, no torch); None if it is not a readable safetensors file."""
    from safetensors import safe_open

    try:
        with Path(path).open("rb") as f:
            if f.read(2)[:2] == b"PK":  # a PyTorch zip: not ours, and not worth a parse error
                return None
        with safe_open(str(path), framework="numpy") as f:
            return dict(f.metadata() or {})
    except Exception:  # safetensors raises its own types for foreign or damaged files
        return None


def verify(state: Mapping[str, torch.Tensor], info: FinetunedInfo, path: Path) -> None:
    """WeightsError when the tensors are not those the file recorded when it was written."""
    from hdrmerge.weights.store import tensors_digest

    if info.arch not in TRAINABLE:
        raise InputError(f"{path} names the architecture {info.arch!r}; fine-tuned checkpoints are {' or '.join(TRAINABLE)}")
    if tensors_digest(state) != info.tensors_sha256:
        raise WeightsError(
            f"{path} is damaged: its tensors do not match the hash recorded when it was fine-tuned; "
            "restore it from a backup or fine-tune again"
        )


def save(
    dests: Path | Sequence[Path], state: Mapping[str, torch.Tensor], info: FinetunedInfo, *, overwrite: bool = False
) -> FinetunedInfo:
    """Write a fine-tuned checkpoint (float32 on the CPU) to one or more files; return ``info`` as written.

    The files appear together or not at all (:class:`hdrmerge.atomic.StagedOutputs`);
    ``created`` and ``tensors_sha256`` are filled in here.
    """
    import shutil

    import torch
    from safetensors.torch import save_file

    from hdrmerge.atomic import StagedOutputs
    from hdrmerge.weights.store import tensors_digest

    paths = [Path(dests)] if isinstance(dests, (str, Path)) else [Path(d) for d in dests]
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state.items()}
    info = replace(
        info,
        created=info.created or datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        tensors_sha256=tensors_digest(tensors),
        hdrmerge_version=__version__,
    )
    with StagedOutputs(overwrite=overwrite) as staged:
        temporaries = [staged.stage(p) for p in paths]
        save_file(tensors, str(temporaries[0]), metadata=info.to_metadata())
        for tmp in temporaries[1:]:
            shutil.copyfile(temporaries[0], tmp)
        staged.commit()
    return info


def load(path: Path) -> tuple[dict[str, torch.Tensor], FinetunedInfo | None]:
    """Tensors of a safetensors file and, for a fine-tuned one, its checked provenance."""
    from hdrmerge.weights.store import read_safetensors

    state, meta = read_safetensors(Path(path))
    if meta.get("hdrmerge_format") != FORMAT:
        return state, None
    info = FinetunedInfo.from_metadata(meta, str(path))
    verify(state, info, Path(path))
    return state, info


# --- the cache ----------------------------------------------------------------


def finetuned_dir() -> Path:
    """Where ``finetune --name`` keeps checkpoints: ``<cache>/finetuned``."""
    from hdrmerge.weights.store import cache_dir

    return cache_dir() / "finetuned"


def check_name(name: str) -> str:
    """``name`` if it can name a fine-tuned checkpoint in the cache; InputError otherwise."""
    from hdrmerge.weights.registry import CHECKPOINTS

    if not _NAME.fullmatch(name) or name.endswith(".safetensors"):
        raise InputError(
            f"--name {name!r}: use letters, digits, '.', '-' and '_' (at most 64, starting with a "
            "letter or digit), e.g. --name mycam"
        )
    if name in CHECKPOINTS:
        raise InputError(f"--name {name}: that is a registered checkpoint's name; choose another, e.g. {name}-mycam")
    return name


def cached_file(name: str) -> Path:
    """The cache file of fine-tuned checkpoint ``name`` (which may not exist)."""
    return finetuned_dir() / f"{check_name(name)}.safetensors"


def find_cached(name: str) -> Path | None:
    """The cache file of fine-tuned checkpoint ``name`` if it exists (None for a name no file could have)."""
    from hdrmerge.weights.registry import CHECKPOINTS

    if name in CHECKPOINTS or not _NAME.fullmatch(name):
        return None
    path = finetuned_dir() / f"{name}.safetensors"
    return path if path.is_file() else None


@dataclass(frozen=True)
class CachedFinetuned:
    """One file in ``<cache>/finetuned``: its provenance, or why it cannot be read."""

    name: str
    path: Path
    info: FinetunedInfo | None
    problem: str = ""


def list_cached() -> list[CachedFinetuned]:
    """The fine-tuned checkpoints in the cache, by name (headers only; tensors are checked on use)."""
    folder = finetuned_dir()
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.safetensors")):
        if path.name.startswith("."):  # a temporary of a write under way
            continue
        try:
            info = read_info(path)
            problem = "" if info is not None else "not a fine-tuned checkpoint (unreadable or foreign); remove it"
        except InputError as exc:
            info, problem = None, str(exc)
        found.append(CachedFinetuned(path.stem, path, info, problem))
    return found


def remove_cached(name: str) -> Path:
    """Delete fine-tuned checkpoint ``name`` from the cache; InputError if there is none."""
    from hdrmerge.weights.registry import CHECKPOINTS

    if name in CHECKPOINTS:
        raise InputError(
            f"{name} is a registered checkpoint; `weights remove` deletes fine-tuned checkpoints only "
            "(see `hdrmerge weights list`)"
        )
    path = find_cached(name)
    if path is None:
        known = ", ".join(c.name for c in list_cached()) or "none"
        raise InputError(f"no fine-tuned checkpoint {name!r} in the cache (fine-tuned ones there: {known})")
    try:
        path.unlink()
    except OSError as exc:
        raise WeightsError(f"cannot remove {path} ({exc.strerror}); check the permissions of {path.parent}") from None
    return path


def cached_names() -> list[str]:
    """Names of the fine-tuned checkpoints in the cache (for messages listing what is known)."""
    folder = finetuned_dir()
    return sorted(p.stem for p in folder.glob("*.safetensors") if not p.name.startswith(".")) if folder.is_dir() else []
