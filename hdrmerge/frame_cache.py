"""Decoded frames kept on disk instead of in memory, for ``hdrmerge finetune``.

A fine-tune draws random crops from every bracket for the whole run. Holding
the decoded frames in memory would cost 3 × H × W × 3 × 2 bytes per bracket
(432 MB for a 24 MP bracket, 8.6 GB for 20), so each bracket is decoded
once, its frames are written uncompressed (their uint8/uint16 code values,
row-major H×W×3, no header) into a temporary folder, and crops are read back
through a memory map that is opened for each read and closed after it: the
pages a read touches leave the process's resident memory with the map, so
the peak does not grow with the number or the size of the brackets (the
kernel's page cache still keeps recently read parts, as it does for any file).

:class:`FrameCache` owns the folder (``hdrmerge-finetune-*`` under
``tempfile.gettempdir()``, i.e. ``$TMPDIR`` or ``/tmp``) and deletes it when
its ``with`` block ends, normally, by an exception or by Ctrl-C.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from hdrmerge.errors import HdrmergeError
from hdrmerge.frame_size import _bytes
from hdrmerge.reading import Frame


@dataclass(frozen=True)
class CachedFrame:
    """A decoded shot whose pixels live in a file of :class:`FrameCache`.

    Stands in for :class:`hdrmerge.reading.Frame` where only ``pixels``,
    ``size`` and ``scale`` are read (``hdrmerge.tiling.frame_window``).
    ``path``: the original shot; ``file``: the raw code values;
    ``shape``: (H, W, 3); ``dtype``: ``uint8`` or ``uint16``.
    """

    path: Path
    file: Path
    shape: tuple[int, int, int]
    dtype: str
    kind: str

    @property
    def pixels(self) -> np.ndarray:
        """H×W×3 read-only memory map of the code values, opened anew on each access.

        Slice it and copy the slice: the map (and the resident pages it
        touched) goes away when the last view of it is dropped.
        """
        return np.memmap(self.file, dtype=self.dtype, mode="r", shape=self.shape)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.shape[0], self.shape[1]

    @property
    def scale(self) -> float:
        """The integer value of 1.0 (255 or 65535)."""
        return 255.0 if self.dtype == "uint8" else 65535.0

    @property
    def nbytes(self) -> int:
        """Bytes of the file (and of the frame, were it held in memory)."""
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


class FrameCache:
    """A temporary folder of decoded frames; ``with FrameCache() as cache: cache.store(frame)``.

    ``parent``: where to make the folder (default ``tempfile.gettempdir()``).
    The folder and everything in it are deleted when the block ends.
    """

    def __init__(self, parent: Path | None = None) -> None:
        self.parent = parent
        self.folder: Path | None = None
        self._count = 0

    def __enter__(self) -> FrameCache:
        try:
            self.folder = Path(tempfile.mkdtemp(prefix="hdrmerge-finetune-", dir=self.parent))
        except OSError as exc:
            where = self.parent or tempfile.gettempdir()
            raise HdrmergeError(
                f"cannot make a folder for the decoded brackets in {where} ({exc.strerror or exc}); "
                "point TMPDIR at a writable folder"
            ) from None
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def free_bytes(self) -> int:
        """Free space on the folder's file system, in bytes."""
        assert self.folder is not None, "use FrameCache in a with block"
        return shutil.disk_usage(self.folder).free

    def check_space(self, needed: int, what: str) -> None:
        """HdrmergeError (exit 1) unless ``needed`` bytes more fit in the folder's file system.

        ``what`` says what needs them (e.g. "the 20 decoded brackets").
        A margin of 1 % of the need plus 64 MiB is kept free.
        """
        free = self.free_bytes()
        if needed + needed // 100 + 64 * 2**20 > free:
            raise HdrmergeError(
                f"{what} need {_bytes(needed)} of disk in {self.folder}, but {_bytes(free)} is free; "
                "free some space, point TMPDIR at a larger disk, or fine-tune on fewer brackets"
            )

    def store(self, frame: Frame) -> CachedFrame:
        """Write ``frame``'s pixels into the folder; the returned frame reads them from there."""
        assert self.folder is not None, "use FrameCache in a with block"
        pixels = np.ascontiguousarray(frame.pixels)
        file = self.folder / f"frame{self._count:05d}.raw"
        self._count += 1
        try:
            pixels.tofile(file)
        except OSError as exc:
            file.unlink(missing_ok=True)
            raise HdrmergeError(
                f"cannot keep the decoded brackets in {self.folder} ({exc.strerror or exc}); "
                "free some space, point TMPDIR at a larger disk, or fine-tune on fewer brackets"
            ) from None
        h, w, c = pixels.shape
        return CachedFrame(frame.path, file, (h, w, c), pixels.dtype.name, frame.kind)
