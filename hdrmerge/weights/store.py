"""Integrity checks, the local checkpoint cache, and reading checkpoint files.

Layout of the cache (``cache_dir()``): one ``<name>.safetensors`` per verified
checkpoint. Its metadata records the registry name, architecture, the pins of
the original file, and a SHA-256 over the tensors themselves, which is checked
on every load, so a damaged cache file is never used.

A ``.pth`` file is only ever read with ``torch.load(weights_only=True)``;
after verification it is stored as safetensors, so cached loads never unpickle.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hdrmerge import __version__
from hdrmerge.atomic import atomic_path, write_errno
from hdrmerge.errors import InputError, WeightsError
from hdrmerge.weights.registry import CHECKPOINTS, Checkpoint

if TYPE_CHECKING:
    import torch

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Digests:
    """Hashes of one file: SHA-256, git blob id, and its size in bytes."""

    sha256: str
    git_blob: str
    size: int


def file_digests(path: Path) -> Digests:
    """SHA-256 and git blob id of ``path`` in one pass."""
    size = path.stat().st_size
    sha = hashlib.sha256()
    blob = hashlib.sha1(f"blob {size}\0".encode())
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
            blob.update(chunk)
    return Digests(sha.hexdigest(), blob.hexdigest(), size)


def matches(ckpt: Checkpoint, d: Digests) -> bool:
    """Whether digests ``d`` are those of checkpoint ``ckpt``."""
    if ckpt.sha256 is not None:
        return d.sha256 == ckpt.sha256
    return d.git_blob == ckpt.git_blob


def identify(d: Digests) -> Checkpoint | None:
    """The registered checkpoint whose pins ``d`` match, if any."""
    return next((c for c in CHECKPOINTS.values() if matches(c, d)), None)


def verify_file(path: Path, ckpt: Checkpoint) -> Digests:
    """Check ``path`` against ``ckpt``'s pins; WeightsError naming both hashes otherwise."""
    d = file_digests(path)
    if matches(ckpt, d):
        return d
    other = identify(d)
    hint = (
        f"it is the {other.name} checkpoint, not {ckpt.name}"
        if other
        else "the file is damaged or not the published checkpoint; fetch it again"
    )
    if ckpt.sha256 is not None:
        got, want = f"sha256 {d.sha256[:16]}…", f"{ckpt.sha256[:16]}…"
    else:
        got, want = f"git blob {d.git_blob[:16]}…", f"{ckpt.git_blob[:16]}…"
    raise WeightsError(
        f"{path.name} ({d.size} bytes) fails the integrity check for {ckpt.name}: "
        f"{got}, expected {want}; {hint}"
    )


def cache_dir() -> Path:
    """Where verified checkpoints are kept.

    ``HDRMERGE_CACHE_DIR`` if set, else ``$HF_HOME/hdrmerge``. ``HF_HOME`` is
    resolved by huggingface_hub's rule (``huggingface_hub.constants``), read
    at each call: when unset it is ``$XDG_CACHE_HOME/huggingface``, or
    ``~/.cache/huggingface`` when ``XDG_CACHE_HOME`` is unset too; ``~`` and
    ``$VARS`` in it are expanded.
    """
    if explicit := os.environ.get("HDRMERGE_CACHE_DIR"):
        return Path(explicit).expanduser()
    # Exactly huggingface_hub's expression, so hdrmerge shares HF_HOME with it
    # (a set but empty variable counts as set, as it does there).
    xdg = os.getenv("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
    hf_home = os.path.expandvars(os.path.expanduser(os.getenv("HF_HOME", os.path.join(xdg, "huggingface"))))
    return Path(hf_home) / "hdrmerge"


def cached_path(ckpt: Checkpoint) -> Path:
    """The cache file of ``ckpt`` (which may not exist)."""
    return cache_dir() / f"{ckpt.name}.safetensors"


def tensors_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of every tensor, in key order."""
    import torch

    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def read_pth(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a PyTorch file, never unpickling arbitrary objects.

    Tensors saved on a CUDA device are mapped to the CPU. A file that is not a
    plain state dict of tensors gives an InputError.
    """
    import torch

    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # torch raises many types for foreign or damaged files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"{path} is not a readable PyTorch checkpoint ({reason[:160]}); "
            "give a SAFNet or AFUNet .pth, or a .safetensors file"
        ) from exc
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(f"{path} holds a {type(obj).__name__}, not a state dict of tensors")
    return {str(k): v for k, v in obj.items()}


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file (no pickle involved)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            return {k: f.get_tensor(k) for k in f.keys()}, meta
    except Exception as exc:
        raise InputError(f"{path} is not a readable safetensors file ({exc}); fetch it again") from exc


def is_pytorch_file(path: Path) -> bool:
    """Whether ``path`` is a PyTorch file by content (else it is read as safetensors)."""
    with path.open("rb") as f:
        head = f.read(8)
    # A PyTorch file is a zip archive ("PK") or a legacy pickle; safetensors
    # starts with a little-endian header length followed by '{'.
    return head[:2] == b"PK" or head[:1] == b"\x80"


#: safetensors refuses headers larger than this; a "length" beyond it means another kind of file.
_MAX_SAFETENSORS_HEADER = 100_000_000


def checkpoint_kind(path: Path) -> str | None:
    """``pytorch``, ``safetensors`` or None (neither: a text file, a photo) from the first bytes.

    Only the signature is read; whether the file is whole is for the readers to say.
    """
    with path.open("rb") as f:
        head = f.read(9)
    if head[:2] == b"PK" or head[:1] == b"\x80":
        return "pytorch"
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < _MAX_SAFETENSORS_HEADER:
        return "safetensors"
    return None


def read_checkpoint_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` (preferred) or ``.pth``, by content."""
    if is_pytorch_file(path):
        return read_pth(path)
    return read_safetensors(path)[0]


def store(ckpt: Checkpoint, state: Mapping[str, torch.Tensor], source: Digests) -> Path:
    """Write ``state`` (already verified as ``ckpt``) to the cache as safetensors."""
    from safetensors.torch import save_file

    dest = cached_path(ckpt)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    meta = {
        "hdrmerge_name": ckpt.name,
        "arch": ckpt.arch,
        "source_file": ckpt.filename,
        "source_sha256": source.sha256,
        "source_git_blob": source.git_blob,
        "source_size": str(source.size),
        "tensors_sha256": tensors_digest(tensors),
        "hdrmerge_version": __version__,
    }
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dest, overwrite=True) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
    except Exception as exc:  # OSError, the atomic checks, safetensors' own error type
        raise cache_write_error(dest.parent, exc) from exc
    return dest


class CacheWriteError(WeightsError):
    """The cache folder takes no new file (read-only, full): no other source helps."""


def cache_write_error(folder: Path, exc: BaseException) -> CacheWriteError:
    """The error for a cache folder that takes no new file: the environment's
    problem (exit 1), not the user's output path."""
    code = write_errno(exc)
    reason = os.strerror(code) if code is not None else str(exc)
    return CacheWriteError(
        f"cannot write to the weights cache {folder} ({reason}); "
        "make it writable or set HDRMERGE_CACHE_DIR to a writable folder"
    )


@dataclass(frozen=True)
class CacheEntry:
    """A verified cached checkpoint."""

    path: Path
    state: dict[str, torch.Tensor]
    source_sha256: str


def load_cached(ckpt: Checkpoint) -> CacheEntry | None:
    """The cached ``ckpt`` after checking it; None if absent.

    A cache file whose metadata or tensors do not match is deleted and a
    WeightsError raised, so that the next run fetches a good copy.
    """
    path = cached_path(ckpt)
    if not path.is_file():
        return None
    try:
        state, meta = read_safetensors(path)
        problem = None
        if not matches(
            ckpt,
            Digests(meta.get("source_sha256", ""), meta.get("source_git_blob", ""), 0),
        ):
            problem = "it was made from another file"
        elif meta.get("tensors_sha256") != tensors_digest(state):
            problem = "its tensors do not match their recorded hash"
    except InputError:
        problem = "it cannot be read"
    if problem:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:  # a read-only cache: say what is wrong with the file all the same
            raise WeightsError(
                f"cached {ckpt.name} at {path} is damaged ({problem}) and cannot be removed ({exc.strerror}); "
                f"delete it, or set HDRMERGE_CACHE_DIR to a writable folder, then run "
                f"`hdrmerge weights download {ckpt.name}`"
            ) from None
        raise WeightsError(
            f"cached {ckpt.name} at {path} was damaged ({problem}) and has been removed; "
            f"run `hdrmerge weights download {ckpt.name}` or `hdrmerge weights install {ckpt.name} PATH`, "
            f"or put {ckpt.filename} in a folder named by HDRMERGE_WEIGHTS_DIR"
        )
    return CacheEntry(path, state, meta["source_sha256"])
