"""Fetching a checkpoint: the Hugging Face Hub first, then the authors' address.

Every fetched file lands in a private temporary directory, is checked against
the registry's pins, and only then converted into the cache
(:func:`hdrmerge.weights.store.store`). A partial, damaged or foreign file is
never used and never left behind: the temporary directory is removed whatever
happens. One left by a download that was killed (``kill -9``) is named after its
process (:func:`hdrmerge.atomic.owned_temporary_dir`) and removed by the next
download once that process is dead; a live download's is never touched.

Environment: ``HF_ENDPOINT`` (the Hub's address, honoured by huggingface_hub),
``HF_HUB_OFFLINE`` (no network access at all), ``HF_HOME`` (token and default
cache location), ``HDRMERGE_HUB_REPO`` / ``HDRMERGE_HUB_REVISION`` (which
repository and revision), ``HDRMERGE_FALLBACK_URL`` (the base address of the
second source; ``none`` disables it).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hdrmerge import __version__
from hdrmerge.atomic import owned_temporary_dir, remove_stale_dirs
from hdrmerge.errors import HdrmergeError, WeightsError
from hdrmerge.weights.registry import DEFAULT_HUB_REVISION, Checkpoint
from hdrmerge.weights.store import CacheWriteError, cache_dir, cache_write_error, read_pth, store, verify_file

_TRUE = {"1", "true", "yes", "on"}
_TIMEOUT_S = 30.0
#: Name prefix of a download's temporary folder in the cache.
_DOWNLOAD_PREFIX = ".download-"


def offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` forbids network access."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def hub_repo(ckpt: Checkpoint, option: str | None = None) -> tuple[str, str]:
    """``(repo_id, revision)``: the option, else the environment, else ``ckpt``'s own."""
    repo = option or os.environ.get("HDRMERGE_HUB_REPO") or ckpt.hub_repo
    revision = os.environ.get("HDRMERGE_HUB_REVISION") or DEFAULT_HUB_REVISION
    return repo, revision


def fallback_url(ckpt: Checkpoint) -> str | None:
    """The authors' address of ``ckpt`` (or ``$HDRMERGE_FALLBACK_URL/<file name>``, a mirror)."""
    base = os.environ.get("HDRMERGE_FALLBACK_URL")
    if base is None:
        return ckpt.url
    base = base.strip()
    if base.lower() in {"", "none", "off"}:
        return None
    return f"{base.rstrip('/')}/{ckpt.filename}"


def install_hint(ckpt: Checkpoint) -> str:
    """The way in for machines that cannot download."""
    return (
        f"fetch {ckpt.filename} elsewhere and run `hdrmerge weights install {ckpt.name} PATH`, "
        f"or put it in a folder named by HDRMERGE_WEIGHTS_DIR"
    )


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from, outermost first."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return seen


def _reason(exc: BaseException) -> str:
    """One short line describing a failed fetch."""
    for e in _chain(exc):
        if isinstance(e, (ConnectionError, TimeoutError)) or type(e).__name__ in {
            "ConnectError",
            "ConnectTimeout",
        }:
            return "cannot connect"
        if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError):
            return f"cannot connect ({' '.join(str(e.reason).split())})"
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None) or getattr(exc, "code", None)
    if status:
        # The Hub names the problem in a header (RepoNotFound, EntryNotFound, …).
        code = getattr(response, "headers", {}).get("X-Error-Code") if response is not None else None
        return f"HTTP {status}" + (f" ({code})" if code else "")
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:159] + "…"


def _probe_hub(ckpt: Checkpoint, repo: str, revision: str) -> None:
    """Ask the Hub once, without retries, for ``ckpt``'s file; re-raise the error if nothing answers.

    huggingface_hub retries a failed first request with backoff (about 23 s of
    waiting) whatever the failure; that helps with a busy server, but a
    machine that cannot connect at all (no network, unknown host, refused
    connection) would wait silently only to be told the same. Any other outcome
    (an answer, a server error, a read timeout) is left to
    :func:`hf_hub_download`, retries included.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    try:
        get_hf_file_metadata(
            hf_hub_url(repo, ckpt.filename, revision=revision),
            library_name="hdrmerge",
            library_version=__version__,
        )
    except Exception as exc:
        # httpx's names for a connection never made (DNS, refused, unreachable,
        # connect timeout); a read timeout comes after it was made.
        if any(type(e).__name__ in {"ConnectError", "ConnectTimeout"} for e in _chain(exc)):
            raise


def _fetch_hub(ckpt: Checkpoint, repo: str, revision: str, tmp: Path, progress: bool) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    was_disabled = are_progress_bars_disabled()
    if not progress:
        disable_progress_bars()
    # huggingface_hub logs each retry as a warning; our own error line says
    # what failed, so its chatter stays out of stderr unless debugging.
    hub_logger = logging.getLogger("huggingface_hub")
    old_level = hub_logger.level
    if os.environ.get("HDRMERGE_DEBUG", "").lower() not in _TRUE:
        hub_logger.setLevel(logging.ERROR)
    try:
        _probe_hub(ckpt, repo, revision)
        return Path(
            hf_hub_download(
                repo,
                ckpt.filename,
                revision=revision,
                cache_dir=tmp / "hub",
                library_name="hdrmerge",
                library_version=__version__,
            )
        )
    finally:
        hub_logger.setLevel(old_level)
        if not progress and not was_disabled:
            enable_progress_bars()


def _fetch_url(ckpt: Checkpoint, url: str, tmp: Path, progress: bool) -> Path:
    dest = tmp / ckpt.filename
    req = urllib.request.Request(url, headers={"User-Agent": f"hdrmerge/{__version__}"})
    with urllib.request.urlopen(req, timeout=_TIMEOUT_S) as resp, dest.open("wb") as out:
        total = int(resp.headers.get("Content-Length") or 0) or None
        bar: Callable[[int], None] = lambda n: None  # noqa: E731
        ctx = None
        if progress:
            from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

            ctx = Progress(
                *Progress.get_default_columns(),
                DownloadColumn(),
                TransferSpeedColumn(),
                transient=True,
            )
            ctx.start()
            task = ctx.add_task(f"{ckpt.filename}", total=total)
            bar = lambda n: ctx.advance(task, n)  # noqa: E731
        received = 0
        try:
            while chunk := resp.read(1 << 16):
                out.write(chunk)
                received += len(chunk)
                bar(len(chunk))
        finally:
            if ctx is not None:
                ctx.stop()
    if total is not None and received != total:
        raise OSError(f"connection closed after {received} of {total} bytes")
    return dest


@dataclass(frozen=True)
class Attempt:
    """One source tried: its label and what went wrong (None if it worked)."""

    source: str
    error: str | None


def download(
    ckpt: Checkpoint, *, repo: str | None = None, progress: bool | None = None
) -> tuple[Path, list[Attempt]]:
    """Fetch, verify and cache ``ckpt``; return the cache path and the sources tried.

    Raises WeightsError (one line, naming each source's failure and the
    ``weights install`` way in) if no source delivers the right bytes.
    """
    if offline():
        raise WeightsError(
            f"{ckpt.name} is not cached and HF_HUB_OFFLINE is set, so it cannot be downloaded; "
            f"unset HF_HUB_OFFLINE, or {install_hint(ckpt)}"
        )
    if progress is None:
        progress = sys.stderr.isatty()
    repo_id, revision = hub_repo(ckpt, repo)
    sources: list[tuple[str, Callable[[Path], Path]]] = [
        (f"Hub {repo_id}@{revision}", lambda tmp: _fetch_hub(ckpt, repo_id, revision, tmp, progress))
    ]
    if url := fallback_url(ckpt):
        sources.append((url, lambda tmp: _fetch_url(ckpt, url, tmp, progress)))

    root = cache_dir()
    # What a killed download left (its owner process is dead) goes first.
    remove_stale_dirs(root, _DOWNLOAD_PREFIX)
    attempts: list[Attempt] = []
    for label, fetch in sources:
        try:
            root.mkdir(parents=True, exist_ok=True)
            tmp = owned_temporary_dir(root, _DOWNLOAD_PREFIX)
        except OSError as exc:
            raise cache_write_error(root, exc) from None
        try:
            path = fetch(tmp)
            digests = verify_file(path, ckpt)
            state = read_pth(path)
            dest = store(ckpt, state, digests)
            attempts.append(Attempt(label, None))
            return dest, attempts
        except (KeyboardInterrupt, CacheWriteError):
            raise
        except HdrmergeError as exc:
            attempts.append(Attempt(label, str(exc)))
        except Exception as exc:  # any transport failure: try the next source
            attempts.append(Attempt(label, _reason(exc)))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    tried = "; ".join(f"{a.source}: {a.error}" for a in attempts)
    raise WeightsError(f"cannot download {ckpt.name} ({tried}); {install_hint(ckpt)}")
