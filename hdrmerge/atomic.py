"""Atomic file creation: write to a temporary file beside the target, then rename.

A reader never sees a half-written file, an interrupted run leaves no partial
output, an existing file is only replaced when the caller says so, and an
input file is never replaced at all, whatever the caller says.

Temporaries are named after their owner so that a later run can recognise
those left by a process that was killed (``kill -9``, a power cut) and remove
them::

    .<stem>.hdrmerge-<where>-<pid>-<start>-<random>.part<suffix>

``where`` is a short hash of the host, its boot and the PID namespace (PIDs
only mean something within one of those); ``start`` is when process ``pid``
started (clock ticks since boot from ``/proc/<pid>/stat`` on Linux, psutil's
creation time elsewhere when it is installed, ``x`` when unknown). A temporary
is stale when it was made here and no process with that PID runs any more, or
the process now holding that PID started at another time. Anything else is
left alone: a live process's temporary is never removed. Temporary folders
(:func:`owned_temporary_dir`, e.g. a download's ``.download-<where>-<pid>-
<start>-<random>``) carry the same tag and follow the same rules.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from hdrmerge.errors import InputError, OutputError

#: Files renamed into place by this process so far (for "nothing written").
_written: list[Path] = []


def written() -> list[Path]:
    """The files this process has committed so far, in order."""
    return list(_written)


# --- paths ------------------------------------------------------------------


def resolve(path: Path) -> Path:
    """``path`` made absolute with every symlink followed; InputError on a symlink loop."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError) as exc:  # RuntimeError up to Python 3.12, OSError(ELOOP) later
        if isinstance(exc, OSError) and exc.errno != errno.ELOOP:
            raise
        raise InputError(f"{path} is a symlink loop; make it point at a file") from None


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file.

    True for the same resolved path (``./x`` and ``$PWD/x``, a symlinked
    folder) and, when both exist, for the same inode: hard links, and other
    spellings on a case-insensitive file system.
    """
    if resolve(a) == resolve(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): not the same file
        return False


def refuse_input(dest: Path, inputs: Iterable[Path], what: str = "the output", remedy: str = "") -> None:
    """InputError if ``dest`` is one of ``inputs``: an input is never replaced.

    ``what`` names the output in the message (``the preview``…), ``remedy``
    says what to do (default: choose another path for it). The message
    deliberately does not mention --overwrite: no flag allows this.
    """
    for inp in inputs:
        if same_file(dest, inp):
            which = "an input file" if str(dest) == str(inp) else f"the input file {inp}"
            raise InputError(
                f"{what} {dest} is {which}; inputs are never overwritten, "
                f"so {remedy or f'choose another path for {what}'}"
            )


# --- owners of temporaries --------------------------------------------------

_GONE = "gone"  # _start_token: no process with that PID


def _start_token(pid: int) -> str | None:
    """When process ``pid`` started, as an opaque token; ``_GONE`` if none runs, None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return _GONE
    except OSError:
        return None
    else:
        # The command name (field 2) may hold spaces and parentheses: split
        # after its closing one. starttime is field 22.
        fields = stat[stat.rfind(b")") + 2 :].split()
        return fields[19].decode() if len(fields) > 19 else None
    try:
        import psutil
    except ImportError:
        if os.name == "nt":  # os.kill(pid, 0) would send Ctrl-C there
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return _GONE
        except OSError:
            pass
        return None
    try:
        return f"{psutil.Process(pid).create_time():.3f}".replace(".", "")
    except psutil.NoSuchProcess:
        return _GONE
    except psutil.Error:
        return None


def _where() -> str:
    """8 hex digits naming this host, its boot and PID namespace."""
    parts = [socket.gethostname()]
    for source in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        with contextlib.suppress(OSError):
            parts.append(os.readlink(source) if source.endswith("/pid") else Path(source).read_text().strip())
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]


_owner_cache: dict[int, str] = {}


def owner_tag() -> str:
    """``<where>-<pid>-<start>`` of this process (computed again after a fork)."""
    pid = os.getpid()
    if pid not in _owner_cache:
        start = _start_token(pid)
        _owner_cache[pid] = f"{_where()}-{pid}-{start if start not in (None, _GONE) else 'x'}"
    return _owner_cache[pid]


#: An owner tag (:func:`owner_tag`) and tempfile's random letters.
_OWNED = r"(?P<where>[0-9a-f]{8})-(?P<pid>\d+)-(?P<start>[0-9x]+)-[a-z0-9_]+"
_TEMP = re.compile(rf"hdrmerge-{_OWNED}\.part(\..*)?")
_TEMP_DIR = re.compile(_OWNED)


def _is_stale(name: str) -> bool:
    """Whether a temporary (its name after ``.<stem>.``) was left by a process that is gone."""
    m = _TEMP.fullmatch(name)
    return m is not None and _owner_gone(m)


def _owner_gone(m: re.Match[str]) -> bool:
    """Whether the owner named in ``m`` (``where``, ``pid``, ``start``) has died.

    False when it runs, when it cannot be told, and for another host's or
    container's owner (not ours to judge); True too when its PID now belongs
    to a process that started at another time.
    """
    if m["where"] != owner_tag().split("-")[0]:
        return False
    pid = int(m["pid"])
    if pid == os.getpid():
        return False
    now = _start_token(pid)
    if now == _GONE:
        return True
    return now is not None and m["start"] != "x" and now != m["start"]


def remove_stale_temporaries(dest: Path) -> list[Path]:
    """Delete the temporaries of ``dest`` left by dead processes; return what was removed."""
    dest = Path(dest)
    parent = dest.parent if str(dest.parent) else Path(".")
    removed = []
    with contextlib.suppress(OSError):
        for tmp in parent.glob(f".{glob.escape(dest.stem)}.hdrmerge-*.part{glob.escape(dest.suffix)}"):
            if _is_stale(tmp.name[len(dest.stem) + 2 :]):
                try:
                    tmp.unlink()
                except FileNotFoundError:
                    continue  # another run cleaned it up first
                except OSError:
                    continue  # read-only: nothing we can do, and it does no harm
                removed.append(tmp)
    return removed


def owned_temporary_dir(parent: Path, prefix: str) -> Path:
    """A new folder ``<prefix><owner tag>-<random>`` in ``parent``, for work
    that a kill -9 would leave behind (see :func:`remove_stale_dirs`)."""
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{owner_tag()}-", dir=parent))


def remove_stale_dirs(parent: Path, prefix: str) -> list[Path]:
    """Delete the folders of :func:`owned_temporary_dir` in ``parent`` whose owner
    process is dead, by the rules of the temporary files; return what was removed.

    A live process's folder, a foreign host's, or one named otherwise is left alone.
    """
    removed = []
    with contextlib.suppress(OSError):
        for d in Path(parent).glob(f"{glob.escape(prefix)}*"):
            m = _TEMP_DIR.fullmatch(d.name[len(prefix) :])
            if m is None or d.is_symlink() or not d.is_dir() or not _owner_gone(m):
                continue
            shutil.rmtree(d, ignore_errors=True)  # another run may be removing it too
            if not d.exists():
                removed.append(d)
    return removed


def describe_removed(removed: list[Path]) -> str:
    """One warning line for the stale temporaries :func:`remove_stale_temporaries` deleted."""
    owners = sorted({m["pid"] for p in removed if (m := _TEMP.search(p.name))}, key=int)
    files = "s" if len(removed) > 1 else ""
    return (
        f"removed {len(removed)} temporary file{files} left by a killed run "
        f"(process {', '.join(owners)}): {', '.join(str(p) for p in removed)}"
    )


# --- checks and staging -----------------------------------------------------


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
        fd, probe = tempfile.mkstemp(prefix=f".hdrmerge-probe-{owner_tag()}-", dir=parent)
    except OSError as exc:
        raise InputError(
            f"output directory {parent} is not writable ({exc.strerror}); choose another output path"
        ) from None
    os.close(fd)
    os.unlink(probe)


_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EIO)


def write_errno(exc: BaseException) -> int | None:
    """The errno behind a failed write: from an OSError in the chain, else from
    the text of a C/C++ library's message (built with the same libc's strerror)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno is not None:
            return cause.errno
        cause = cause.__cause__ or cause.__context__
    text = str(exc)
    return next((code for code in _WRITE_ERRNOS if os.strerror(code) in text), None)


def _write_failure(dest: Path, exc: BaseException) -> str:
    """The one-line message for a failed write of ``dest``, naming it (not its temporary)."""
    code = write_errno(exc)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"cannot write {dest}: no space left on the device; free some space or choose another output folder"
    if code == errno.EROFS:
        return f"cannot write {dest}: the file system is read-only; choose another output folder"
    if code is not None:
        return f"cannot write {dest}: {os.strerror(code)}; check the output folder"
    return f"cannot write {dest}: {exc}"


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
    so no partial or corrupt output is ever left behind. A write that fails
    inside the block is reported naming ``dest``, not the hidden temporary.

    Files are renamed in the order they were staged: stage the main output
    last, so that a kill between two renames never leaves it beside missing
    companions (a set whose main file exists looks done).

    ``replace_own``: an existing file that hdrmerge wrote may be replaced even
    without ``overwrite`` (``batch`` redoing an incomplete output set); the
    file's tag is checked again just before the rename.

    ``protect``: input files no output may ever resolve to, even with
    ``overwrite``. ``removed``: stale temporaries of the outputs, left by
    dead processes, that :meth:`check` deleted.
    """

    def __init__(self, *, overwrite: bool = False, replace_own: bool = False, protect: Iterable[Path] = ()) -> None:
        self.overwrite = overwrite
        self.replace_own = replace_own
        self.protect = tuple(Path(p) for p in protect)
        self.removed: list[Path] = []
        self._staged: list[tuple[Path, Path]] = []

    def check(self, dest: Path, what: str = "the output") -> None:
        """Refuse early, before any work, an output that must not be written."""
        dest = Path(dest)
        refuse_input(dest, self.protect, what)
        check_writable(dest, overwrite=self.overwrite, replace_own=self.replace_own)
        self.removed += remove_stale_temporaries(dest)

    def stage(self, dest: Path) -> Path:
        dest = Path(dest)
        self.check(dest)
        try:
            fd, name = tempfile.mkstemp(
                prefix=f".{dest.stem}.hdrmerge-{owner_tag()}-", suffix=f".part{dest.suffix}", dir=dest.parent
            )
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
            refuse_input(dest, self.protect)
            if dest.exists() and not may_replace(dest, overwrite=self.overwrite, replace_own=self.replace_own):
                raise InputError(f"{dest} appeared while writing; pass --overwrite to replace it")
        done = []
        # All renames or none: a Ctrl-C arriving between two of them waits until the last.
        with _sigint_deferred():
            for tmp, dest in self._staged:
                os.chmod(tmp, 0o666 & ~umask)
                os.replace(tmp, dest)
                done.append(dest)
                _written.append(dest)
            self._staged.clear()
        return done

    def discard(self) -> None:
        for tmp, _ in self._staged:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self._staged.clear()

    def __enter__(self) -> StagedOutputs:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        staged = list(self._staged)
        self.discard()
        if isinstance(exc, (OSError, OutputError)):
            text = str(exc)
            for tmp, dest in staged:
                if tmp.name in text or _caused_by_write_of(exc, tmp):
                    raise OutputError(_write_failure(dest, exc)) from exc


def _caused_by_write_of(exc: BaseException, tmp: Path) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.filename is not None and Path(os.fsdecode(cause.filename)).name == tmp.name:
            return True
        cause = cause.__cause__ or cause.__context__
    return False


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold back SIGINT (main thread only) until the block is done, then raise it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[Any] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught and callable(previous):
        previous(signal.SIGINT, caught[0])
    elif caught and previous == signal.SIG_DFL:
        signal.raise_signal(signal.SIGINT)
