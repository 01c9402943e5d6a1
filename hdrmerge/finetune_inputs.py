"""The brackets ``hdrmerge finetune`` trains on: found in folders as ``batch`` finds them,
decoded as ``fuse`` decodes them.

Finding (:func:`find_brackets`) reads metadata only (hdrmerge.batch: scan, group,
choose three); loading (:func:`load_training_brackets`) decodes each bracket
with :func:`hdrmerge.pipeline.load_bracket`, the camera response step
included, so the network is tuned on exactly the frames ``fuse`` would give it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hdrmerge.errors import HdrmergeError, InputError
from hdrmerge.frame_size import DEFAULT_MAX_PIXELS

if TYPE_CHECKING:
    from hdrmerge.finetune import TrainingBracket
    from hdrmerge.response import ResponseChoice


@dataclass(frozen=True)
class FoundBracket:
    """Three shots chosen from one bracket (short, reference, long, as ``batch`` chooses them).

    ``name``: the reference shot's absolute path, which identifies the bracket
    in a resumable state.
    """

    name: str
    paths: tuple[Path, Path, Path]


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
        # overwrite=True: no output is written, so existing outputs decide nothing.
        the_plan = plan(files, folder / "hdr", gap_s=gap_s, group_size=group_size, overwrite=True,
                        preview=False, prefer=prefer)
        for b in the_plan.brackets:
            if b.status == "merge" and b.choice is not None:
                short, ref, long = (s.path for s in b.choice.shots)
                if any(f.name == str(ref.resolve()) for f in found.brackets):
                    continue  # found again through a parent folder given with --recursive
                found.brackets.append(FoundBracket(str(ref.resolve()), (short, ref, long)))
            else:
                found.skipped.append(f"{b.shots[0].path}: {b.reason}")
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
    memory_limit: int | None = None,
    on_loaded: Callable[[int, int], None] = lambda done, total: None,
) -> tuple[list[TrainingBracket], list[str]]:
    """Decode every bracket; return those that loaded and one warning per bracket that did not.

    A bracket that cannot be used (a damaged shot, implausible exposures) is
    left out with its reason, as ``batch`` leaves it out. ``memory_limit``:
    bytes the decoded frames may take in all (they are held for the whole
    run); beyond it, HdrmergeError (exit 1) before memory runs out.
    InputError when no bracket loads.
    """
    from hdrmerge.finetune import TrainingBracket
    from hdrmerge.pipeline import load_bracket

    loaded: list[TrainingBracket] = []
    warnings: list[str] = []
    held = 0
    for i, fb in enumerate(found, start=1):
        try:
            bracket = load_bracket(list(fb.paths), None, response=response, max_pixels=max_pixels)
        except InputError as exc:
            warnings.append(f"bracket {fb.paths[1]} left out: {' '.join(str(exc).split())}")
        else:
            frames = bracket.sorted_frames
            held += sum(f.pixels.nbytes for f in frames)
            if memory_limit is not None and held > memory_limit:
                raise HdrmergeError(
                    f"the decoded brackets take more than {memory_limit / 2**30:.1f} GiB after {i} of {len(found)} "
                    "(they are held in memory while training); fine-tune on fewer brackets, or on smaller photos"
                )
            loaded.append(TrainingBracket(fb.name, frames, bracket.relative_sorted()))
        on_loaded(i, len(found))
    if not loaded:
        raise InputError(f"none of the {len(found)} bracket(s) could be read ({warnings[0]}); give usable brackets")
    return loaded, warnings
