"""Which output files hdrmerge wrote itself, and whether they are whole.

Every file hdrmerge writes says so: the OpenEXR ``software`` attribute, the
Radiance ``SOFTWARE=`` header line, the DNG's and the preview's Software tag
all read ``hdrmerge <version>``. ``batch`` reads them back to resume: an output set is
done only when each of its files is there, tagged and whole; a set that is not
(a kill between two renames, a file deleted or cut short) is redone without
``--overwrite`` when every file of it that exists is hdrmerge's own, and a file
without the tag is never replaced without ``--overwrite``. What each file
says it was merged from (:func:`output_origin`: the shots' names and the
reference's capture time) tells ``batch`` whether it belongs to the bracket
at hand or to another one that was given the same output name.

The checks read headers and file ends only (the EXR offset table, the DNG's
strip and tile table, the JPEG end marker), so resuming a card of a thousand brackets stays fast; only a Radiance
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

    Anything that is not an OpenEXR, Radiance, TIFF/DNG or JPEG file, or cannot be read,
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
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return _check_tiff(Path(path), size)
    return FileCheck(False, False)


def made_by_hdrmerge(path: Path) -> bool:
    """Whether ``path`` carries hdrmerge's software tag (whole or not)."""
    return check_output(path).ours


def _exr_header(head: bytes) -> tuple[dict[bytes, tuple[bytes, bytes]], int] | None:
    """The attributes of an OpenEXR header (name → (type name, raw value)) and
    the offset where the header ends; None if it is cut short or malformed."""
    pos, attrs = 8, {}
    try:
        while True:
            end = head.index(b"\0", pos)
            name = head[pos:end]
            if not name:
                return attrs, end + 1
            type_end = head.index(b"\0", end + 1)
            (n,) = struct.unpack_from("<i", head, type_end + 1)
            value = head[type_end + 5 : type_end + 5 + n]
            if n < 0 or len(value) != n:
                return None
            attrs[name] = (head[end + 1 : type_end], value)
            pos = type_end + 5 + n
    except (ValueError, struct.error):
        return None


def _check_exr(path: Path, head: bytes, size: int) -> FileCheck:
    """Single-part scanline OpenEXR (what hdrmerge writes): tag from the header,
    wholeness from the offset table: the last chunk must end inside the file."""
    version = struct.unpack_from("<I", head, 4)[0]
    parsed = _exr_header(head)
    if parsed is None:
        return FileCheck(False, False)
    typed, pos = parsed
    attrs = {name: value for name, (_, value) in typed.items()}
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


def _check_tiff(path: Path, size: int) -> FileCheck:
    """DNG (a TIFF): Software of the first IFD; whole when every strip, tile and
    tag value of every IFD and SubIFD lies inside the file, and so does the
    EXIF IFD (hdrmerge appends it last)."""
    import logging

    import tifffile

    log = logging.getLogger("tifffile")
    level = log.level
    log.setLevel(logging.CRITICAL + 1)  # tifffile logs what it cannot parse; the verdict says it
    try:
        with tifffile.TiffFile(path) as tif:
            pages = list(tif.pages)
            ours = str(pages[0].tags.valueof("Software") or "").startswith(SOFTWARE_PREFIX)
            ends = []
            for page in pages:
                for sub in [page, *(page.pages if getattr(page, "pages", None) else [])]:
                    data = [off + n for off, n in zip(sub.dataoffsets, sub.databytecounts) if n > 0]
                    if not data:
                        return FileCheck(ours, False)
                    ends += data + [tag.valueoffset + tag.valuebytecount for tag in sub.tags.values()]
            exif_ifd = pages[0].tags.get(34665)
            exif_at = exif_ifd.offset + 8 if exif_ifd is not None else None  # the entry's value field
            little = tif.byteorder == "<"
    except Exception:  # tifffile raises assorted errors on damaged files
        return FileCheck(False, False)
    finally:
        log.setLevel(level)
    if max(ends) > size:
        return FileCheck(ours, False)
    if exif_at is not None and little and not _ifd_inside(path, exif_at, size):
        return FileCheck(ours, False)
    return FileCheck(ours, True)


def _ifd_inside(path: Path, pointer_at: int, size: int) -> bool:
    """Whether the little-endian classic-TIFF IFD pointed to from ``pointer_at``,
    and every value it stores outside its entries, lie inside the file."""
    sizes = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}
    with path.open("rb") as f:
        f.seek(pointer_at)
        (at,) = struct.unpack("<I", f.read(4))
        f.seek(at)
        raw = f.read(2)
        if len(raw) != 2:
            return False
        (n,) = struct.unpack("<H", raw)
        entries = f.read(12 * n + 4)
    if len(entries) != 12 * n + 4:
        return False
    for k in range(n):
        _, typ, count, value = struct.unpack_from("<HHII", entries, 12 * k)
        length = sizes.get(typ, 1) * count
        if length > 4 and value + length > size:
            return False
    return True


@dataclass(frozen=True)
class Origin:
    """What an output of hdrmerge says it was merged from.

    ``sources``: the file names of the three shots, short → long (the EXR's
    ``hdrmerge:sources``, the DNG's XMP ``hdrmerge:sources``, the Radiance
    ``# sources:`` line, which joins them with spaces, kept as one string);
    None for a preview, which names no sources. ``captured``: the reference
    shot's DateTimeOriginal as the file records it (the EXR's ``capDate``, the
    Radiance ``# captured:`` line, the DNG's and the preview's EXIF, read as
    a shot's is), None where it records none.
    """

    sources: tuple[str, ...] | str | None
    captured: str | None


def output_origin(path: Path) -> Origin | None:
    """The :class:`Origin` recorded in an output hdrmerge wrote; None when the file
    cannot be read that far. Reads the header only (the XMP and EXIF of a DNG)."""
    try:
        with Path(path).open("rb") as f:
            head = f.read(_HEADER_LIMIT)
    except OSError:
        return None
    if head.startswith(_EXR_MAGIC):
        return _exr_origin(head)
    if head.startswith(b"#?"):
        return _radiance_origin(head)
    if head.startswith(b"\xff\xd8\xff"):
        return _jpeg_origin(Path(path))
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return _dng_origin(Path(path))
    return None


def _date(value: object) -> str | None:
    text = str(value or "").strip().strip("\0").strip()
    return text or None


def _exr_origin(head: bytes) -> Origin | None:
    parsed = _exr_header(head)
    if parsed is None:
        return None
    attrs = parsed[0]
    sources: tuple[str, ...] | None = None
    kind, raw = attrs.get(b"hdrmerge:sources", (b"", b""))
    if kind == b"stringvector":  # int32 length, then the bytes, for each string
        names, at = [], 0
        while at + 4 <= len(raw):
            (n,) = struct.unpack_from("<i", raw, at)
            names.append(raw[at + 4 : at + 4 + n].decode("utf-8", "replace"))
            at += 4 + n
        sources = tuple(names)
    elif kind == b"string":
        sources = (raw.decode("utf-8", "replace"),)
    kind, raw = attrs.get(b"capDate", (b"", b""))
    return Origin(sources, _date(raw.decode("utf-8", "replace")) if kind == b"string" else None)


def _radiance_origin(head: bytes) -> Origin:
    lines = head.split(b"\n\n", 1)[0].decode("utf-8", "replace").split("\n")
    fields = dict(line[2:].partition(": ")[::2] for line in lines if line.startswith("# "))
    captured = fields.get("captured")
    return Origin(fields.get("sources"), None if captured in (None, "unknown") else _date(captured))


def _captured(path: Path) -> str | None:
    """The capture time as :func:`hdrmerge.reading.read_exif` reads it from a shot
    (DateTimeOriginal, else DateTime), so that it compares with the reference's."""
    from hdrmerge.reading import read_exif

    return _date(read_exif(path).datetime_original)


def _jpeg_origin(path: Path) -> Origin:
    return Origin(None, _captured(path))


def _dng_origin(path: Path) -> Origin | None:
    import html
    import logging
    import re

    import tifffile

    log = logging.getLogger("tifffile")
    level = log.level
    log.setLevel(logging.CRITICAL + 1)
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            xmp = page.tags.valueof(700) or b""
    except Exception:  # tifffile raises assorted errors on damaged files
        return None
    finally:
        log.setLevel(level)
    text = xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else str(xmp)
    found = re.search(r"<hdrmerge:sources>(.*?)</hdrmerge:sources>", text, re.DOTALL)
    sources = None
    if found:
        sources = tuple(html.unescape(x) for x in re.findall(r"<rdf:li>(.*?)</rdf:li>", found.group(1), re.DOTALL))
    return Origin(sources, _captured(path))
