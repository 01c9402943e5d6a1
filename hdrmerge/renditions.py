"""One shot, several files: RAW+JPEG pairs, copies, backups and partial copies.

Camera cards and the folders people copy them to hold the same capture more
than once: ``IMG_0001.CR2`` beside ``IMG_0001.JPG`` (most cameras write both),
``IMG_0002 (1).JPG`` from a second copy, a ``backup/`` subfolder, a copy cut
short by a pulled card. Grouping them as separate shots would make every
exposure "repeat" and shred the bracket; :func:`collapse` makes each capture
one shot and picks the file to merge from.

Two files are the same capture when their camera (make, model, serial, where
both say) and exposure settings (shutter time, aperture, ISO, bias, where both
say) agree and their capture times are equal: to the subsecond when both
carry subseconds, else to the second **and** their names agree once copy
markers (``" (1)"``, ``" copy"``, ``" - Copy"``) are taken off, so that a
burst of identical exposures within one second is never merged into one shot.
Files with the same bytes (same size, same SHA-256) are one shot whatever
their names (``IMG_0002 (copy).JPG``, ``IMG_0002_1.JPG``) and metadata.

The file used (:func:`pick`) is, in this order of preference: one that looks
intact (cheap checks, no decoding: the JPEG/PNG end marker, the TIFF/DNG
strip and tile table, and no longer twin of the same type whose first bytes
it repeats, which is what a partial copy is); the preferred kind (RAW unless
``--prefer jpeg``); a name without a copy marker; the shallowest path; the
shortest name (``IMG_0002.JPG`` before ``IMG_0002_1.JPG``); the name.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hdrmerge.batch import Shot

#: Suffixes of the camera's processed renditions; every other shot suffix is RAW.
RASTER_SUFFIXES = frozenset(".jpg .jpeg .jpe .png .tif .tiff".split())
PREFER = ("raw", "jpeg")
#: What file managers and backup tools add to a copy's name.
_COPY_MARK = re.compile(r"(\s*\(\d+\)|\s*-\s*copy(\s*\(\d+\))?|\s+copy(\s+\d+)?)$", re.IGNORECASE)
#: Bytes compared to tell a partial copy from a different file.
_PREFIX_BYTES = 65536


def is_raw(path: Path) -> bool:
    return path.suffix.lower() not in RASTER_SUFFIXES


def base_name(path: Path) -> str:
    """The stem without copy markers, case-folded: ``IMG_0002 (1)`` → ``img_0002``."""
    return _COPY_MARK.sub("", path.stem).casefold()


def _agree(a: Any, b: Any, tol: float = 0.0, *, relative: bool = False) -> bool:
    """Equal where both are known (text case-insensitively, numbers within ``tol``)."""
    if a is None or b is None:
        return True
    if isinstance(a, str):
        return a.strip().casefold() == str(b).strip().casefold()
    return abs(a - b) <= (tol * max(abs(a), abs(b)) if relative else tol)


def same_capture(a: Shot, b: Shot) -> bool:
    """Whether two files are renditions of one capture (see the module docstring)."""
    if a.time is None or b.time is None:
        return False
    ea, eb = a.exif, b.exif
    if not (_agree(ea.make, eb.make) and _agree(ea.model, eb.model) and _agree(ea.body_serial, eb.body_serial)):
        return False
    if not (
        _agree(ea.exposure_time, eb.exposure_time, 0.01, relative=True)
        and _agree(ea.fnumber, eb.fnumber, 0.05)
        and _agree(ea.iso, eb.iso, 0.5)
        and _agree(ea.exposure_bias, eb.exposure_bias, 0.05)
    ):
        return False
    if ea.subsec and eb.subsec:
        return a.time == b.time
    return a.time.replace(microsecond=0) == b.time.replace(microsecond=0) and base_name(a.path) == base_name(b.path)


def looks_intact(path: Path) -> bool:
    """Cheap completeness check of one file, without decoding its pixels."""
    from hdrmerge.provenance import check_output
    from hdrmerge.reading import _complete, sniff

    try:
        with path.open("rb") as f:
            head = f.read(16)
        kind = sniff(head)
        if kind in ("jpeg", "png"):
            return _complete(path.read_bytes(), kind)
    except OSError:
        return False
    if kind == "tiff":  # TIFF and the TIFF-based RAW formats (DNG, CR2, NEF, ARW…)
        return check_output(path).whole
    return True  # other RAW containers (CR3, RAF…): no cheap check; a twin may still show it partial


def _partial_copies(paths: Sequence[Path]) -> set[Path]:
    """Files that are shorter than a twin of the same type and repeat its first bytes."""
    partial: set[Path] = set()
    sizes = {p: p.stat().st_size for p in paths}
    heads = {}
    for p in paths:
        with p.open("rb") as f:
            heads[p] = f.read(_PREFIX_BYTES)
    for p in paths:
        for q in paths:
            if (
                p.suffix.lower() == q.suffix.lower()
                and sizes[p] < sizes[q]
                and heads[q][: len(heads[p])] == heads[p]
            ):
                partial.add(p)
    return partial


def identical_files(paths: Sequence[Path]) -> dict[Path, Path]:
    """Each file whose bytes repeat an earlier file's in ``paths`` → that earlier file.

    Only files whose size another file shares are hashed (SHA-256), so a
    card of distinct shots costs one ``stat`` per file.
    """
    by_size: dict[int, list[Path]] = {}
    for p in paths:
        try:
            by_size.setdefault(p.stat().st_size, []).append(p)
        except OSError:
            continue
    first: dict[Path, Path] = {}
    for same_size in by_size.values():
        if len(same_size) < 2:
            continue
        seen: dict[bytes, Path] = {}
        for p in same_size:
            digest = hashlib.sha256()
            try:
                with p.open("rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
            except OSError:
                continue
            key = digest.digest()
            if key in seen:
                first[p] = seen[key]
            else:
                seen[key] = p
    return first


def pick(renditions: Sequence[Shot], prefer: str = "raw") -> tuple[Shot, str]:
    """The rendition to merge from, and why (see the module docstring)."""
    if prefer not in PREFER:
        raise ValueError(prefer)
    paths = [s.path for s in renditions]
    partial = _partial_copies(paths)
    intact = {p: p not in partial and looks_intact(p) for p in paths}

    def rank(s: Shot) -> tuple:
        p = s.path
        return (
            not intact[p],
            is_raw(p) != (prefer == "raw"),
            base_name(p) != p.stem.casefold(),
            len(p.parts),
            len(p.name),
            str(p),
        )

    ordered = sorted(renditions, key=rank)
    chosen = ordered[0]
    notes = []
    damaged = [p.name for p in paths if not intact[p]]
    if damaged:
        notes.append(f"{', '.join(damaged)} {'is' if len(damaged) == 1 else 'are'} damaged or a partial copy")
    if len({is_raw(p) for p in paths}) == 2:
        kind = "RAW" if is_raw(chosen.path) else "JPEG"
        notes.append(f"{kind} {'preferred' if is_raw(chosen.path) == (prefer == 'raw') else 'used'}")
    if not notes:
        notes.append("copies of one file")
    return chosen, "; ".join(notes)


def collapse(shots: Sequence[Shot], prefer: str = "raw") -> list[Shot]:
    """One shot per capture: each with ``others`` (its other renditions) and ``rendition``
    (why this file), in the order of the input's first rendition of each capture."""
    clusters: list[list[Shot]] = []
    by_second: dict[Any, list[list[Shot]]] = {}
    twin_of = identical_files([s.path for s in shots])
    cluster_of: dict[Path, list[Shot]] = {}
    for s in shots:
        key = s.time.replace(microsecond=0) if s.time is not None else None
        home = cluster_of.get(twin_of[s.path]) if s.path in twin_of else None
        if home is None and key is not None:
            home = next((c for c in by_second.get(key, []) if same_capture(c[0], s)), None)
        if home is None:
            home = [s]
            clusters.append(home)
            if key is not None:
                by_second.setdefault(key, []).append(home)
        else:
            home.append(s)
        cluster_of[s.path] = home
    out = []
    for c in clusters:
        if len(c) == 1:
            out.append(c[0])
            continue
        chosen, why = pick(c, prefer)
        out.append(replace(chosen, others=tuple(s.path for s in c if s is not chosen), rendition=why))
    return out
