"""Which output files hdrmerge wrote itself, and whether they are whole.

Every file hdrmerge writes says so: the OpenEXR ``software`` attribute, the
Radiance ``SOFTWARE=`` header line and the preview's EXIF Software tag all read
``hdrmerge <version>``. ``batch`` reads them back to resume: an output set is
done only when each of its files is there, tagged and whole; a set that is not
(a kill between two renames, a file deleted or cut short) is redone without
``--overwrite`` when every file of it that exists is hdrmerge's own, and a file
without the tag is never replaced without ``--overwrite``.

The checks read headers and file ends only (the EXR offset table, the JPEG end
marker), so resuming a card of a thousand brackets stays fast; only a Radiance
file is decoded, as its format has no index to check.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

#: What every output's software tag starts with (any version counts as ours).
SOFTWARE_PREFIX = "hdrmerge "

_EXR_MAGIC = b"\x76\x2f\x31\x01"
#: Scanlines per chunk of each OpenEXR compression (by its code in the header).
_EXR_LINES_PER_CHUNK = {0: 1, 1: 1, 2: 1, 3: 16, 4: 32, 5: 16, 6: 32, 7: 32, 8: 32, 9: 256, 10: 256, 11: 32}
#: Upper bound on a header we would write (a few attributes and source names).
_HEADER_LIMIT = 1 << 20


@dataclass(frozen=True)
class FileCheck:
    """``ours``: carries hdrmerge's software tag; ``whole``: complete and readable as far as checked."""

    ours: bool
    whole: bool


def check_output(path: Path) -> FileCheck:
    """Read the software tag and check the completeness of an existing output file.

    Anything that is not an OpenEXR, Radiance or JPEG file, or cannot be read,
    is neither ours nor whole.
    """
    try:
        with Path(path).open("rb") as f:
            head = f.read(_HEADER_LIMIT)
            size = f.seek(0, 2)
    except OSError:
        return FileCheck(False, False)
    if head.startswith(_EXR_MAGIC):
        return _check_exr(Path(path), head, size)
    if head.startswith(b"#?"):
        return _check_radiance(Path(path), head)
    if head.startswith(b"\xff\xd8\xff"):
        return _check_jpeg(Path(path), size)
    return FileCheck(False, False)


def made_by_hdrmerge(path: Path) -> bool:
    """Whether ``path`` carries hdrmerge's software tag (whole or not)."""
    return check_output(path).ours


def _check_exr(path: Path, head: bytes, size: int) -> FileCheck:
    """Single-part scanline OpenEXR (what hdrmerge writes): tag from the header,
    wholeness from the offset table: the last chunk must end inside the file."""
    version = struct.unpack_from("<I", head, 4)[0]
    pos, attrs = 8, {}
    try:
        while True:
            end = head.index(b"\0", pos)
            name = head[pos:end]
            if not name:
                pos = end + 1
                break
            type_end = head.index(b"\0", end + 1)
            (n,) = struct.unpack_from("<i", head, type_end + 1)
            value = head[type_end + 5 : type_end + 5 + n]
            if n < 0 or len(value) != n:
                return FileCheck(False, False)
            attrs[name] = value
            pos = type_end + 5 + n
    except (ValueError, struct.error):
        return FileCheck(False, False)
    ours = attrs.get(b"software", b"").startswith(SOFTWARE_PREFIX.encode())
    if version & 0x1200 or b"dataWindow" not in attrs or b"compression" not in attrs:
        return FileCheck(ours, False)  # tiled or multi-part: never written by hdrmerge
    _, ymin, _, ymax = struct.unpack("<4i", attrs[b"dataWindow"])
    lines = _EXR_LINES_PER_CHUNK.get(attrs[b"compression"][0])
    if lines is None or ymax < ymin:
        return FileCheck(ours, False)
    chunks = -(-(ymax - ymin + 1) // lines)
    table = head[pos : pos + 8 * chunks]
    if len(table) != 8 * chunks:
        return FileCheck(ours, False)
    offsets = struct.unpack(f"<{chunks}Q", table)
    last = max(offsets)
    if min(offsets) < pos + 8 * chunks or last + 8 > size:
        return FileCheck(ours, False)
    with path.open("rb") as f:
        f.seek(last)
        leader = f.read(8)
    if len(leader) != 8:
        return FileCheck(ours, False)
    _, packed = struct.unpack("<ii", leader)
    return FileCheck(ours, packed > 0 and last + 8 + packed <= size)


def _check_radiance(path: Path, head: bytes) -> FileCheck:
    header = head.split(b"\n\n", 1)[0]
    ours = any(line.startswith(b"SOFTWARE=" + SOFTWARE_PREFIX.encode()) for line in header.split(b"\n"))
    from hdrmerge.reading import _cv2  # OpenCV with its own logging silenced

    cv2 = _cv2()
    import numpy as np

    try:
        img = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    except (cv2.error, OSError):
        img = None
    return FileCheck(ours, img is not None and img.size > 0)


def _check_jpeg(path: Path, size: int) -> FileCheck:
    import exifread

    try:
        with path.open("rb") as f:
            tags = exifread.process_file(f, details=False, stop_tag="Software")
        software = str(tags.get("Image Software", ""))
    except Exception:  # exifread raises assorted errors on damaged files
        software = ""
    with path.open("rb") as f:
        f.seek(max(0, size - 64))
        tail = f.read()
    # A preview is a plain baseline JPEG: its end marker closes the file (an
    # end marker cannot occur inside the scan data, where 0xFF is escaped).
    return FileCheck(software.startswith(SOFTWARE_PREFIX), tail.rstrip(b"\0").endswith(b"\xff\xd9"))
