"""The brackets ``hdrmerge finetune`` trains on: found in folders as ``batch`` finds them,
decoded as ``fuse`` decodes them.

Finding (:func:`find_brackets`) reads metadata only (hdrmerge.batch: scan, group,
choose three); loading (:func:`load_training_brackets`) decodes each bracket
with :func:`hdrmerge.pipeline.load_bracket`, the camera response step
included, so the network is tuned on exactly the frames ``fuse`` would give it,
and keeps the decoded frames on disk (:mod:`hdrmerge.frame_cache`) rather than
in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from hdrmerge.errors import InputError
from hdrmerge.frame_size import DEFAULT_MAX_PIXELS

if TYPE_CHECKING:
    from hdrmerge.finetune import TrainingBracket
    from hdrmerge.frame_cache import CachedFrame, FrameCache
    from hdrmerge.reading import Frame
    from hdrmerge.response import ResponseChoice


#: Seconds between the reference shots of two brackets in one folder above which
#: they belong to different shooting sessions (another scene, most likely).
SESSION_GAP_S = 600.0


@dataclass(frozen=True)
class FoundBracket:
    """Three shots chosen from one bracket (short, reference, long, as ``batch`` chooses them).

    ``name``: the reference shot's absolute path, which identifies the bracket
    in a resumable state. ``session``: its shooting session (:func:`sessions`),
    by which ``finetune`` holds brackets out. ``captured``: the reference's
    capture time (None without EXIF).
    """

    name: str
    paths: tuple[Path, Path, Path]
    session: str = ""
    captured: datetime | None = None


def sessions(brackets: Sequence[tuple[Path, datetime | None]], gap_s: float = SESSION_GAP_S) -> list[str]:
    """The shooting session of each bracket, given its folder and its reference's capture time.

    A session is a run of brackets in one folder whose capture times are each
    at most ``gap_s`` seconds after the one before (in time order); brackets
    without a capture time form one session per folder. Labels read
    ``<folder>, from <first capture time>`` (``<folder>, no capture time``).
    """
    labels = [""] * len(brackets)
    by_folder: dict[Path, list[int]] = {}
    for i, (folder, _) in enumerate(brackets):
        by_folder.setdefault(folder, []).append(i)
    for folder, members in by_folder.items():
        timed = sorted((i for i in members if brackets[i][1] is not None), key=lambda i: brackets[i][1])  # type: ignore[arg-type, return-value]
        label, before = "", None
        for i in timed:
            when = brackets[i][1]
            assert when is not None
            if before is None or (when - before).total_seconds() > gap_s:
                label = f"{folder}, from {when:%Y-%m-%d %H:%M:%S}"
            labels[i], before = label, when
        for i in members:
            if brackets[i][1] is None:
                labels[i] = f"{folder}, no capture time"
    return labels


@dataclass
class Found:
    """The brackets in the folders, and the groups that are not brackets (with why)."""

    brackets: list[FoundBracket] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    files: int = 0


def find_brackets(
    folders: Sequence[Path],
    *,
    recursive: bool = False,
    group_size: int | None = None,
    gap_s: float = 3.0,
    prefer: str = "raw",
) -> Found:
    """Every bracket in ``folders`` (metadata only); InputError when there is none.

    A folder's ``hdr`` subfolder (``batch``'s default output) is left out.
    A folder given twice, or a bracket found twice (a folder and its parent
    with ``recursive``), counts once.
    """
    from hdrmerge.batch import plan, scan

    found = Found()
    seen: set[Path] = set()
    unique = [f for f in folders if not (f.resolve() in seen or seen.add(f.resolve()))]  # type: ignore[func-returns-value]
    for folder in unique:
        files = scan(folder, recursive=recursive, exclude=[folder / "hdr"])
        found.files += len(files)
        if not files:
            continue
        # No output is written: no output names, which may well repeat (the synth layout's
        # input_1.tif in every scene folder, a card's IMG_0001 in 100CANON/ and 101CANON/).
        the_plan = plan(files, None, gap_s=gap_s, group_size=group_size, prefer=prefer)
        for b in the_plan.brackets:
            if b.status == "merge" and b.choice is not None:
                short, ref, long = (s.path for s in b.choice.shots)
                if any(f.name == str(ref.resolve()) for f in found.brackets):
                    continue  # found again through a parent folder given with --recursive
                found.brackets.append(FoundBracket(str(ref.resolve()), (short, ref, long),
                                                   captured=b.choice.reference.time))
            else:
                found.skipped.append(f"{b.shots[0].path}: {b.reason}")
    labels = sessions([(Path(f.name).parent, f.captured) for f in found.brackets])
    found.brackets = [replace(f, session=label) for f, label in zip(found.brackets, labels)]
    if not found.brackets:
        where = ", ".join(str(f) for f in unique)
        if not found.files:
            raise InputError(
                f"no brackets found in {where}: no photos (JPEG, PNG, TIFF or camera RAW)"
                f"{'' if recursive else ' (subfolders are not searched)'}; give folders of bracketed shots"
                f"{'' if recursive else ', or add --recursive'}"
            )
        raise InputError(
            f"no brackets found in {where}: {found.files} photo(s), but no three of them form a bracket; "
            f"see how they group with `hdrmerge batch {unique[0]} --dry-run`"
        )
    return found


def load_training_brackets(
    found: Sequence[FoundBracket],
    response: ResponseChoice,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    cache: FrameCache | None = None,
    on_loaded: Callable[[int, int], None] = lambda done, total: None,
) -> tuple[list[TrainingBracket], list[str]]:
    """Decode every bracket; return those that loaded and one warning per bracket that did not.

    A bracket that cannot be used (a damaged shot, implausible exposures) is
    left out with its reason, as ``batch`` leaves it out. ``cache``: where the
    decoded frames are kept (one bracket is in memory at a time; the frames
    returned read their crops from the cache's files); None keeps them all in
    memory. With a cache, the disk space is checked as soon as the first
    bracket is decoded, for that bracket's size times the brackets left, and
    again before each later one: HdrmergeError (exit 1) if they will not fit.
    InputError when no bracket loads.
    """
    from hdrmerge.finetune import TrainingBracket
    from hdrmerge.pipeline import load_bracket

    loaded: list[TrainingBracket] = []
    warnings: list[str] = []
    for i, fb in enumerate(found, start=1):
        try:
            bracket = load_bracket(list(fb.paths), None, response=response, max_pixels=max_pixels)
        except InputError as exc:
            warnings.append(f"bracket {fb.paths[1]} left out: {' '.join(str(exc).split())}")
        else:
            frames: list[Frame | CachedFrame] = list(bracket.sorted_frames)
            exposures = bracket.relative_sorted()
            if cache is not None:
                left = len(found) - i + 1
                cache.check_space(sum(f.pixels.nbytes for f in frames) * left,
                                  f"{left} decoded bracket{'s' if left > 1 else ''}")
                frames = [cache.store(f) for f in frames]
            del bracket  # the decoded pixels, in memory, go before the next bracket is read
            loaded.append(TrainingBracket(fb.name, frames, exposures, fb.session))
        on_loaded(i, len(found))
    if not loaded:
        raise InputError(f"none of the {len(found)} bracket(s) could be read ({warnings[0]}); give usable brackets")
    return loaded, warnings
