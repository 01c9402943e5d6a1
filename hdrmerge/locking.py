"""Locks on outputs, so that two runs never write the same output at once.

:class:`OutputLock` takes an exclusive operating-system lock (``flock`` on
POSIX, ``msvcrt.locking`` on Windows) on a hidden file beside the output,
``.<name>.lock``, holding the process id of the run that holds it. The kernel
drops the lock when that process ends, however it ends (``kill -9``
included), so a crashed run never blocks the next one; a lock file it leaves
behind is reused and removed by the next run that takes it.

Neither ``batch`` nor ``fuse`` waits for a lock another run holds: ``batch``
leaves that bracket to the other run (status ``locked``), ``fuse`` stops
with :func:`locked_output`'s one-line error (exit 1).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from hdrmerge.errors import OutputError

if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        with contextlib.suppress(OSError):
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def lock_path(dest: Path) -> Path:
    """The lock file of output ``dest``: hidden, beside it."""
    dest = Path(dest)
    return dest.with_name(f".{dest.name}.lock")


class OutputLock:
    """An exclusive, non-blocking lock on one output path (see the module docstring)."""

    def __init__(self, dest: Path) -> None:
        self.dest = Path(dest)
        self.path = lock_path(self.dest)
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock if no other process holds it; True if taken. Never waits."""
        if self._fd is not None:
            return True
        for _ in range(8):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if not _try_lock(fd):
                    os.close(fd)
                    return False
                # A holder that released meanwhile unlinked the file we opened:
                # our lock would guard no name, so open the path again.
                try:
                    same = os.path.samestat(os.fstat(fd), os.stat(self.path))
                except FileNotFoundError:
                    same = False
                if same:
                    self._fd = fd
                    # The process id only names the holder in messages; the
                    # flock is the lock. On a full disk the write fails, and
                    # the run must still hold (and later remove) the file
                    # rather than leave it behind unlocked.
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, 0)
                        os.write(fd, f"{os.getpid()}\n".encode())
                    return True
                _unlock(fd)
                os.close(fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.close(fd)
                raise
        return False

    def holder(self) -> int | None:
        """Process id written by the run that holds (or last held) the lock, if readable."""
        try:
            text = self.path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def release(self) -> None:
        """Remove the lock file and drop the lock (a no-op if not held)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if os.name != "nt":
            # Unlinked while still locked, so a newcomer either fails on the
            # old file or finds it gone and locks a new one (see acquire).
            with contextlib.suppress(OSError):
                self.path.unlink()
        _unlock(fd)
        os.close(fd)
        if os.name == "nt":  # pragma: no cover - Windows cannot unlink an open file
            with contextlib.suppress(OSError):
                self.path.unlink()

    def __enter__(self) -> OutputLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def held_elsewhere(lock: OutputLock) -> str:
    """``another hdrmerge run (process N) is writing NAME``: the run that holds ``lock``."""
    pid = lock.holder()
    return f"another hdrmerge run{f' (process {pid})' if pid else ''} is writing {lock.dest.name}"


@contextlib.contextmanager
def locked_output(dest: Path) -> Iterator[None]:
    """Hold ``dest``'s lock for the block; OutputError (one line, exit 1) if another run holds it.

    Where no lock file can be made (a missing or read-only folder) nothing is
    locked: no output can be written there either, and the writer's own
    checks say why.
    """
    lock = OutputLock(dest)
    try:
        taken: bool | None = lock.acquire()
    except OSError:
        taken = None
    if taken is False:
        raise OutputError(f"{held_elsewhere(lock)}; wait for it to finish, or choose another output path")
    try:
        yield
    finally:
        lock.release()
