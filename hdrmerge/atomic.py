"""Atomic file creation: write to a temporary file beside the target, then rename.

A reader never sees a half-written file, an interrupted run leaves no partial
output, and an existing file is only replaced when the caller says so.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hdrmerge.errors import InputError, OutputError


def may_replace(dest: Path, *, overwrite: bool, replace_own: bool = False) -> bool:
    """Whether an existing ``dest`` may be replaced: with ``overwrite``, or with
    ``replace_own`` when hdrmerge wrote it (its software tag, checked now)."""
    if overwrite:
        return True
    from hdrmerge.provenance import made_by_hdrmerge

    return replace_own and made_by_hdrmerge(dest)


def check_writable(dest: Path, *, overwrite: bool, replace_own: bool = False) -> None:
    """Fail early (before any work) if ``dest`` cannot or must not be written."""
    if dest.exists() and not may_replace(dest, overwrite=overwrite, replace_own=replace_own):
        raise InputError(f"{dest} exists already; pass --overwrite to replace it")
    if dest.is_dir():
        raise InputError(f"{dest} is a directory; give a file name")
    parent = dest.parent if str(dest.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"output directory {parent} does not exist; create it first")
    # Probe by creating a file: permission bits say nothing for root, and
    # read-only mounts or full disks only show when a file is made.
    try:
        fd, probe = tempfile.mkstemp(prefix=".hdrmerge-probe-", dir=parent)
    except OSError as exc:
        raise InputError(
            f"output directory {parent} is not writable ({exc.strerror}); choose another output path"
        ) from None
    os.close(fd)
    os.unlink(probe)


@contextlib.contextmanager
def atomic_path(dest: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path in ``dest``'s directory; rename it to ``dest`` on success.

    The temporary name keeps ``dest``'s suffix, so writers that choose the
    format from the extension (OpenCV) still work. On any exception the
    temporary file is removed and ``dest`` is left as it was. (A single-file
    :class:`StagedOutputs`.)
    """
    with StagedOutputs(overwrite=overwrite) as staged:
        yield staged.stage(Path(dest))
        staged.commit()


class StagedOutputs:
    """Several output files that appear together or not at all.

    ``stage(dest)`` returns a temporary path beside ``dest`` to write to;
    ``commit()`` renames every staged file into place. Leaving the ``with``
    block without committing (an exception, Ctrl-C) deletes the temporaries,
    so no partial or corrupt output is ever left behind.

    Files are renamed in the order they were staged: stage the main output
    last, so that a kill between two renames never leaves it beside missing
    companions (a set whose main file exists looks done).

    ``replace_own``: an existing file that hdrmerge wrote may be replaced even
    without ``overwrite`` (``batch`` redoing an incomplete output set); the
    file's tag is checked again just before the rename.
    """

    def __init__(self, *, overwrite: bool = False, replace_own: bool = False) -> None:
        self.overwrite = overwrite
        self.replace_own = replace_own
        self._staged: list[tuple[Path, Path]] = []

    def check(self, dest: Path) -> None:
        """Refuse early, before any work, an output that must not be written."""
        check_writable(Path(dest), overwrite=self.overwrite, replace_own=self.replace_own)

    def stage(self, dest: Path) -> Path:
        dest = Path(dest)
        self.check(dest)
        try:
            fd, name = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=f".part{dest.suffix}", dir=dest.parent)
        except OSError as exc:
            raise OutputError(f"cannot create a file in {dest.parent}: {exc.strerror}") from exc
        os.close(fd)
        self._staged.append((Path(name), dest))
        return Path(name)

    def commit(self) -> list[Path]:
        umask = os.umask(0)
        os.umask(umask)
        for tmp, dest in self._staged:
            if not tmp.exists() or tmp.stat().st_size == 0:
                raise OutputError(f"writing {dest} produced no data")
            if dest.exists() and not may_replace(dest, overwrite=self.overwrite, replace_own=self.replace_own):
                raise InputError(f"{dest} appeared while writing; pass --overwrite to replace it")
        done = []
        for tmp, dest in self._staged:
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, dest)
            done.append(dest)
        self._staged.clear()
        return done

    def discard(self) -> None:
        for tmp, _ in self._staged:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self._staged.clear()

    def __enter__(self) -> StagedOutputs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()
