"""Batch planning: find the brackets in a folder the way a photographer would.

Only metadata is read here (EXIF through exifread, LibRaw for RAW formats it
cannot parse); no pixels are decoded and no network is loaded, so a plan for
a card of a thousand frames takes seconds and ``--dry-run`` is cheap.

Grouping (:func:`group_shots`): shots are ordered by capture time
(DateTimeOriginal with SubSecTimeOriginal; the file name breaks ties), and a
new bracket starts when

* the gap to the previous shot exceeds ``gap`` seconds plus that shot's own
  exposure time (so long night exposures do not split a bracket);
* the camera body, lens or focal length changes;
* ISO or aperture changes, unless both shots are tagged as part of the
  camera's auto-exposure bracket (cameras with auto ISO vary ISO inside one
  bracket to reach its exposures);
* an exposure repeats one already in the current group.

``group_size`` replaces all this with fixed groups in that order; when no
file has an EXIF capture time it is required, and the order is the file
names'. Without it, files that carry no capture time among files that do are
left out of the grouping (:func:`plan` lists each as skipped).

A group of camera-metered shots (:func:`burst_reason`) is a burst, not a
bracket, and is not merged. Files that hdrmerge wrote (its previews and
DNGs, by their Software tag) are never taken as shots.

From a bracket of more than three shots (:func:`choose_three`) the reference
is the middle exposure, and the short and long shots are the farthest from it
within :data:`MAX_STEP` stops on each side, the spacing SAFNet was trained on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import permutations, product
from pathlib import Path
from typing import TYPE_CHECKING

from hdrmerge.errors import InputError
from hdrmerge.exposure import exif_exposure
from hdrmerge.reading import Exif, read_exif, read_raw_metadata
from hdrmerge.writing import preview_path

if TYPE_CHECKING:
    from hdrmerge.provenance import Origin

#: File endings considered as shots (case-insensitive). Content decides the
#: format once a file is read; this list only keeps other files out of a scan.
SHOT_SUFFIXES = frozenset(
    ".jpg .jpeg .jpe .png .tif .tiff .dng .cr2 .cr3 .crw .nef .nrw .arw .srf .sr2 .raf .orf "
    ".rw2 .pef .srw .kdc .dcr .mrw .3fr .erf .mef .mos .x3f .iiq .rwl .gpr".split()
)
#: Seconds between shots that still belong to one bracket (plus exposure time).
DEFAULT_GAP_S = 3.0
#: Largest distance (stops) from the reference SAFNet was trained on.
MAX_STEP = 3.0
#: Two exposures closer than this (stops) are the same exposure.
_SAME_EV = 0.1
#: A group of auto-exposed shots spanning less than this (stops) is a burst
#: (:func:`burst_reason`): narrower than the narrowest useful bracket, −1/0/+1.
BURST_MAX_SPREAD = 2.0


@dataclass(frozen=True)
class Shot:
    """One file's metadata for planning. ``ev``: log2(t·ISO/N²) or bias, if known."""

    path: Path
    exif: Exif
    time: datetime | None
    ev: float | None
    #: Other files of the same capture (RAW+JPEG, copies; see hdrmerge.renditions), and why ``path`` was chosen.
    others: tuple[Path, ...] = ()
    rendition: str = ""

    @property
    def label(self) -> str:
        return self.path.name


def read_shot(path: Path) -> Shot:
    """Planning metadata of one file (never decodes pixels)."""
    exif = read_exif(path)
    raster = path.suffix.lower() in {".jpg", ".jpeg", ".jpe", ".png", ".tif", ".tiff"}
    if not raster and not (exif.has_exposure and exif.datetime_original):
        exif = read_raw_metadata(path, exif)
    e = exif_exposure(exif)
    ev = e.ev if e is not None else exif.exposure_bias
    return Shot(path, exif, exif.capture_time, ev)


def scan(folder: Path, *, recursive: bool = False, exclude: Iterable[Path] = ()) -> list[Path]:
    """Candidate shot files in ``folder``, sorted by path.

    Hidden files, previews written by hdrmerge (``*.preview.jpg``) and anything
    under an ``exclude`` directory (the output folder) are left out; other
    files hdrmerge wrote are found by their content in :func:`plan`.
    """
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder; give the folder that holds the shots")
    skip = [p.resolve() for p in exclude]
    pattern = "**/*" if recursive else "*"
    found = []
    for p in folder.glob(pattern):
        if not p.is_file() or p.name.startswith("."):
            continue
        if p.suffix.lower() not in SHOT_SUFFIXES or p.name.lower().endswith(".preview.jpg"):
            continue
        rp = p.resolve()
        if any(rp.is_relative_to(s) for s in skip):
            continue
        found.append(p)
    return sorted(found)


def _same(a: float | None, b: float | None, tol: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= tol


def split_reason(prev: Shot, cur: Shot, group: Sequence[Shot], gap_s: float) -> str | None:
    """Why ``cur`` cannot join the group ending with ``prev`` (None if it can)."""
    a, b = prev.exif, cur.exif
    if prev.time is not None and cur.time is not None:
        allowed = gap_s + (a.exposure_time or 0.0)
        gap = (cur.time - prev.time).total_seconds()
        if gap > allowed:
            return f"{gap:.1f} s after the previous shot"
    if (a.make, a.model, a.body_serial) != (b.make, b.model, b.body_serial):
        return "another camera"
    if a.lens != b.lens:
        return "another lens"
    if not _same(a.focal_length, b.focal_length, 0.05):
        return "another focal length"
    aeb = (a.exposure_mode or "").lower() == "auto bracket" and (b.exposure_mode or "").lower() == "auto bracket"
    if not aeb:
        if not _same(a.iso, b.iso, 0.5):
            return "ISO changed"
        if not _same(a.fnumber, b.fnumber, 0.05):
            return "aperture changed"
    if cur.ev is not None and any(s.ev is not None and abs(s.ev - cur.ev) < _SAME_EV for s in group):
        return "exposure repeats"
    return None


def burst_reason(shots: Sequence[Shot]) -> str | None:
    """Why a group is a burst rather than a bracket, or None.

    A burst: every shot says ExposureMode Auto (the camera metered each one;
    a camera's bracket says Auto Bracket, a hand bracket Manual or another
    exposure compensation), no two shots differ in exposure compensation
    (ExposureBiasValue, missing = 0), and all exposures are known and span
    less than :data:`BURST_MAX_SPREAD` stops: what metering drift gives, not
    what a bracket is shot for.
    """
    if not {(s.exif.exposure_mode or "").strip().casefold() for s in shots} <= {"auto", "auto exposure"}:
        return None  # (exifread names the EXIF value 0 "Auto Exposure")
    if len({round(s.exif.exposure_bias or 0.0, 2) for s in shots}) > 1:
        return None
    evs = [s.ev for s in shots]
    if any(e is None for e in evs):
        return None
    spread = max(evs) - min(evs)  # type: ignore[type-var,operator]
    if spread >= BURST_MAX_SPREAD:
        return None
    return (
        f"a burst, not a bracket: {len(shots)} shots exposed by the camera's auto exposure (ExposureMode Auto, "
        f"exposure compensation unchanged), {spread:.2f} stops apart; merge three with hdrmerge fuse if they are a bracket"
    )


@dataclass
class Group:
    """Shots that belong together, in capture order."""

    shots: list[Shot]
    note: str = ""


def group_shots(shots: Sequence[Shot], *, gap_s: float = DEFAULT_GAP_S, group_size: int | None = None) -> list[Group]:
    """Split shots into brackets (see the module docstring)."""
    if group_size is not None and group_size < 1:
        raise InputError(f"--group-size {group_size}: must be at least 1")
    timed = [s for s in shots if s.time is not None]
    untimed = [s for s in shots if s.time is None]
    if untimed and group_size is None:
        names = ", ".join(s.label for s in untimed[:3]) + (" …" if len(untimed) > 3 else "")
        raise InputError(
            f"{len(untimed)} file(s) carry no EXIF capture time ({names}); pass --group-size N "
            "to group them in file-name order"
        )
    ordered = sorted(timed, key=lambda s: (s.time, s.path.name)) + sorted(untimed, key=lambda s: s.path.name)
    if group_size is not None:
        return [
            Group(list(ordered[i : i + group_size]), f"fixed groups of {group_size}")
            for i in range(0, len(ordered), group_size)
        ]
    groups: list[Group] = []
    for shot in ordered:
        if groups and split_reason(groups[-1].shots[-1], shot, groups[-1].shots, gap_s) is None:
            groups[-1].shots.append(shot)
        else:
            groups.append(Group([shot]))
    return groups


@dataclass
class Choice:
    """Three shots out of a bracket (short, reference, long) and why."""

    short: Shot
    reference: Shot
    long: Shot
    why: str = ""

    @property
    def shots(self) -> list[Shot]:
        return [self.short, self.reference, self.long]


def choose_three(shots: Sequence[Shot]) -> Choice:
    """Pick short, reference and long shots from a bracket of three or more."""
    if len(shots) < 3:
        raise ValueError("need at least three shots")
    if any(s.ev is None for s in shots):
        if len(shots) == 3:
            return Choice(*shots, why="all three (exposures read when merging)")
        raise InputError("exposures unknown for some shots; cannot choose three of a longer bracket")
    by_ev = sorted(shots, key=lambda s: s.ev)  # type: ignore[arg-type,return-value]
    if len(by_ev) == 3:
        return Choice(*by_ev, why="all three")
    ref = by_ev[(len(by_ev) - 1) // 2] if len(by_ev) % 2 else by_ev[len(by_ev) // 2 - 1]
    below = [s for s in by_ev if s.ev < ref.ev - _SAME_EV]  # type: ignore[operator]
    above = [s for s in by_ev if s.ev > ref.ev + _SAME_EV]  # type: ignore[operator]

    def pick(side: list[Shot], sign: int) -> tuple[Shot, str]:
        inside = [s for s in side if abs(s.ev - ref.ev) <= MAX_STEP + 1e-6]  # type: ignore[operator]
        if inside:
            best = max(inside, key=lambda s: abs(s.ev - ref.ev))  # type: ignore[operator]
            return best, f"{best.ev - ref.ev:+.2f} EV, the farthest within {MAX_STEP:g} stops"  # type: ignore[operator]
        best = min(side, key=lambda s: abs(s.ev - ref.ev))  # type: ignore[operator]
        return best, f"{best.ev - ref.ev:+.2f} EV, the nearest (none within {MAX_STEP:g} stops)"  # type: ignore[operator]

    short, why_s = pick(below, -1)
    long, why_l = pick(above, +1)
    why = (
        f"{len(shots)}-shot bracket: reference {ref.label} (middle exposure); "
        f"short {short.label} ({why_s}); long {long.label} ({why_l})"
    )
    return Choice(short, ref, long, why)


#: What the plan does with a group, in the order the dry-run summary lists them.
PLAN_STATUSES = ("merge", "done", "single", "incomplete", "unusable", "skipped", "failed")


@dataclass
class PlannedBracket:
    """One row of the plan."""

    index: int
    shots: list[Shot]
    #: "merge", "done", "single", "incomplete", "unusable" (incl. bursts), "skipped" (a file that is
    #: no shot, or cannot be placed), "failed" (metadata unreadable, an output path taken)
    status: str
    reason: str = ""
    choice: Choice | None = None
    output: Path | None = None
    preview: Path | None = None
    #: Why an incomplete output set is redone (its files that exist are hdrmerge's own, and may be replaced).
    redo: str = ""

    @property
    def replace_own(self) -> bool:
        return bool(self.redo)

    def to_json(self) -> dict:
        return {
            "index": self.index,
            "files": [str(s.path) for s in self.shots],
            "status": self.status,
            "reason": self.reason,
            "chosen": [str(s.path) for s in self.choice.shots] if self.choice else None,
            "output": str(self.output) if self.output else None,
            "duplicates": [
                {"used": str(s.path), "others": [str(o) for o in s.others], "why": s.rendition}
                for s in self.shots
                if s.others
            ],
        } | ({"redo": self.redo} if self.redo else {})


_NAME_FIELDS = ("stem", "index", "date", "time", "camera")


def render_name(template: str, bracket: PlannedBracket) -> str:
    """Output file name (without extension) from ``template``.

    Fields: ``{stem}`` (first shot's stem), ``{index}`` (1-based bracket
    number, zero-padded to 4), ``{date}`` (YYYYMMDD) and ``{time}`` (HHMMSS)
    of the first shot, ``{camera}`` (model, spaces as dashes).
    """
    first = bracket.shots[0]
    t = first.time
    values = {
        "stem": first.path.stem,
        "index": f"{bracket.index:04d}",
        "date": t.strftime("%Y%m%d") if t else "nodate",
        "time": t.strftime("%H%M%S") if t else "notime",
        "camera": (first.exif.model or "camera").replace(" ", "-"),
    }
    try:
        name = template.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise InputError(
            f"--name {template!r}: unknown field {exc}; use {', '.join('{' + f + '}' for f in _NAME_FIELDS)}"
        ) from None
    if not name or "/" in name or name in {".", ".."}:
        raise InputError(f"--name {template!r} gives the file name {name!r}; it must name a file, not a path")
    return name


def check_names(template: str, brackets: Sequence[PlannedBracket]) -> None:
    """Refuse (InputError, exit 2) a ``--name`` that gives two brackets the same output.

    The message names the brackets by number and first shot, and suggests a
    template that tells every one of ``brackets`` apart: the capture date and
    time if they do, else the bracket number (unique within a run).
    """
    by_output: dict[Path, list[PlannedBracket]] = {}
    for b in brackets:
        assert b.output is not None
        by_output.setdefault(b.output, []).append(b)
    clashes = [(output, group) for output, group in by_output.items() if len(group) > 1]
    if not clashes:
        return
    output, group = clashes[0]
    named = [f"{b.index} ({b.shots[0].path})" for b in group]
    if len(named) > 3:  # a whole card under one name: the line stays short
        named = [*named[:2], f"{len(named) - 2} more"]
    shown = ", ".join(named[:-1]) + f" and {named[-1]}"
    more = len(clashes) - 1
    also = f" ({more} more output name{'s' if more > 1 else ''} shared too)" if more else ""
    capture_time = "_".join(f for f in ("{date}", "{time}") if f not in template)
    fixes = [(capture_time, "the capture time")] if capture_time else []
    fixes.append(("{index}", "the bracket number"))
    field, meaning = next(
        (f, m) for f, m in fixes if len({render_name(f"{template}_{f}", b) for b in brackets}) == len(brackets)
    )
    fix = f"{template}_{field}"
    raise InputError(
        f"--name {template!r} gives brackets {shown} the same output {output.name}{also}; "
        f"add {field} ({meaning}) to the name, e.g. --name '{fix}'"
    )


@dataclass
class Plan:
    brackets: list[PlannedBracket] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for b in self.brackets:
            out[b.status] = out.get(b.status, 0) + 1
        return out


def plan(
    files: Sequence[Path],
    outdir: Path | None,
    *,
    fmt: str = "exr",
    name: str = "{stem}_hdr",
    gap_s: float = DEFAULT_GAP_S,
    group_size: int | None = None,
    overwrite: bool = False,
    preview: bool = True,
    prefer: str = "raw",
) -> Plan:
    """Group ``files`` and decide what to do with each group.

    Files of one capture (RAW+JPEG, copies) become one shot first
    (:func:`hdrmerge.renditions.collapse`; ``prefer``: ``raw`` or ``jpeg``).
    Files hdrmerge wrote, and (without ``group_size``) files without a
    capture time among files with one, get a row of their own, skipped.
    ``outdir`` None: the brackets only, for callers that write no merge
    (``finetune``): no output names (so no name can collide), nothing resumed.
    """
    from hdrmerge.provenance import SOFTWARE_PREFIX
    from hdrmerge.renditions import collapse

    shots: list[Shot] = []
    skipped: list[tuple[Shot, str]] = []
    unreadable: list[tuple[Path, str]] = []
    for p in files:
        try:
            shot = read_shot(p)
        except Exception as exc:  # a file no reader foresaw fails alone, not the whole plan
            unreadable.append((p, f"cannot read its metadata ({type(exc).__name__}: {' '.join(str(exc).split())})"))
            continue
        software = shot.exif.software or ""
        if software.startswith(SOFTWARE_PREFIX):  # a preview or DNG of an earlier merge, wherever it lies
            skipped.append((shot, f"written by {software} (a merged result, not a shot)"))
        else:
            shots.append(shot)
    shots = collapse(shots, prefer)
    if group_size is None and any(s.time is not None for s in shots):
        # One file without a time cannot be placed among timed shots; it must not hold up the others.
        why = "no EXIF capture time, so it cannot be placed in a bracket; merge it with hdrmerge fuse"
        skipped += [(s, why) for s in shots if s.time is None]
        shots = [s for s in shots if s.time is not None]
    result = Plan()
    groups = group_shots(shots, gap_s=gap_s, group_size=group_size)
    for i, g in enumerate(groups, start=1):
        pb = PlannedBracket(i, g.shots, "merge")
        if len(g.shots) == 1:
            pb.status, pb.reason = "single", "a single shot"
        elif len(g.shots) == 2:
            pb.status, pb.reason = "incomplete", "only 2 shots; a bracket needs 3"
        elif group_size is None and (burst := burst_reason(g.shots)) is not None:
            pb.status, pb.reason = "unusable", burst
        else:
            try:
                pb.choice = choose_three(g.shots)
                pb.reason = pb.choice.why
            except InputError as exc:
                pb.status, pb.reason = "unusable", str(exc)
            except Exception as exc:
                pb.status, pb.reason = "unusable", f"cannot choose three shots ({type(exc).__name__}: {exc})"
        if pb.status == "merge" and outdir is not None:
            stem = render_name(name, pb)
            pb.output = outdir / f"{stem}.{fmt}"
            pb.preview = preview_path(pb.output) if preview else None
        result.brackets.append(pb)
    to_merge = [b for b in result.brackets if b.status == "merge" and outdir is not None]
    check_names(name, to_merge)  # before any output is looked at, let alone written
    if not overwrite:
        for pb in to_merge:
            resume(pb)
    for shot, why in skipped:
        result.brackets.append(PlannedBracket(len(result.brackets) + 1, [shot], "skipped", why))
    for p, why in unreadable:
        result.brackets.append(PlannedBracket(len(result.brackets) + 1, [Shot(p, Exif(), None, None)], "failed", why))
    return result


def resume(pb: PlannedBracket) -> None:
    """Mark a bracket done, to redo, or failed, from the outputs that exist already.

    Done only when its whole output set (the HDR and, if wanted, the preview)
    is there, tagged by hdrmerge, merged from this bracket and complete
    (:mod:`hdrmerge.provenance`). An incomplete set whose existing files are
    all hdrmerge's own merges of this bracket is redone, replacing them; a
    file hdrmerge did not write, or wrote from other shots (another card's
    bracket given the same name), fails the bracket and is left untouched.
    """
    from hdrmerge.provenance import check_output, output_origin

    assert pb.output is not None and pb.choice is not None
    wanted = [p for p in (pb.preview, pb.output) if p is not None]
    found = {p: check_output(p) for p in wanted if p.exists()}
    if not found:
        return
    foreign = [p for p, c in found.items() if not c.ours]
    other = [(p, o) for p in reversed(wanted) if p in found and not _merged_from(pb.choice, o := output_origin(p))]
    if foreign:
        pb.status = "failed"
        pb.reason = f"{foreign[0]} exists and was not written by hdrmerge; move it away, or pass --overwrite to replace it"
    elif other:
        p, origin = other[0]
        pb.status = "failed"
        pb.reason = (
            f"{p} holds another merge ({_origin_text(origin)}); pass --overwrite to replace it, "
            "or choose another -o or --name"
        )
    elif len(found) == len(wanted) and all(c.whole for c in found.values()):
        pb.status, pb.reason = "done", f"{pb.output.name} exists (--overwrite to redo)"
    else:
        missing = [p.name for p in wanted if p not in found]
        broken = [p.name for p, c in found.items() if not c.whole]
        what = ([f"{', '.join(missing)} missing"] if missing else []) + ([f"{', '.join(broken)} incomplete"] if broken else [])
        pb.redo = f"redone: {'; '.join(what)} (hdrmerge's own files replaced)"


def _merged_from(choice: Choice, origin: Origin | None) -> bool:
    """Whether an output's recorded origin is this bracket: the reference's capture
    time as recorded (or none on both sides) and, where the file names its sources,
    one file of each chosen shot (any of its renditions: ``--prefer`` may differ)."""
    if origin is None:
        return False
    ref_time = (choice.reference.exif.datetime_original or "").strip() or None
    if origin.captured != ref_time:
        return False
    if origin.sources is None:  # a preview: the capture time is all it records
        return True
    names = [[s.path.name, *(o.name for o in s.others)] for s in choice.shots]
    for combo in product(*names):
        if isinstance(origin.sources, str):  # Radiance: names joined by spaces, short → long
            if any(" ".join(order) == origin.sources for order in permutations(combo)):
                return True
        elif sorted(combo) == sorted(origin.sources):
            return True
    return False


def _origin_text(origin: Origin | None) -> str:
    if origin is None:
        return "its shots cannot be read"
    parts = []
    if origin.sources:
        parts.append("from " + (origin.sources if isinstance(origin.sources, str) else ", ".join(origin.sources)))
    parts.append(f"captured {origin.captured}" if origin.captured else "no capture time")
    return ", ".join(parts)


def describe_ev(shots: Sequence[Shot], reference: Shot | None = None) -> str:
    """Stops of each shot (capture order) from the reference, e.g. ``0, -0.67, +0.67``.

    The reference is the chosen one, else the middle exposure (as
    :func:`choose_three` picks it), the same convention as ``fuse``'s output.
    """
    from hdrmerge.exposure_text import stops_text

    evs = [s.ev for s in shots]
    if any(e is None for e in evs):
        return "?"
    ordered = sorted(evs)  # type: ignore[type-var]
    base = reference.ev if reference is not None and reference.ev is not None else ordered[(len(ordered) - 1) // 2]
    return ", ".join(stops_text(e - base) for e in evs)  # type: ignore[operator]
