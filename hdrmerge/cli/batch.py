"""``hdrmerge batch``: find every bracket in a folder, merge each, resume, report."""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from hdrmerge.cli.common import (
    DebugOpt,
    Device,
    DeviceOpt,
    DngDtype,
    DngDtypeOpt,
    GapOpt,
    GroupSizeOpt,
    Prefer,
    PreferOpt,
    RecursiveOpt,
    StopFlag,
    ExrCompression,
    ExrCompressionOpt,
    ExrDtype,
    ExrDtypeOpt,
    FlowScaleOpt,
    MAX_PIXELS_DEFAULT,
    MaxMemoryOpt,
    MaxPixelsOpt,
    TileOpt,
    HubRepoOpt,
    ModelOpt,
    Normalize,
    NormalizeOpt,
    OverwriteOpt,
    Precision,
    PrecisionOpt,
    QuietOpt,
    ResponseOpt,
    ExactOpt,
    NoGuardOpt,
    NoShadowMergeOpt,
    WeightsOpt,
    engine_loader,
    err_console,
    fuse_options,
    merge_progress,
    merge_summary,
    nonempty_path,
    print_json,
    print_note,
    print_table,
    check_gap,
    warn,
)
from hdrmerge.errors import EXIT_FAILURE, EXIT_INTERRUPTED, HdrmergeError, InputError


class Format(str, Enum):
    exr = "exr"
    hdr = "hdr"
    dng = "dng"


def _plan_table(rows: list[Any], title: str) -> Table:
    from hdrmerge.batch import describe_ev

    table = Table(title=title, title_justify="left")
    for col in ("#", "shots", "stops", "status", "output / reason"):
        table.add_column(col, overflow="fold")
    for b in rows:
        names = ", ".join(s.label + (f" (+{', '.join(o.name for o in s.others)})" if s.others else "") for s in b.shots)
        detail = b.output.name if b.output and b.status in ("merge", "merged") else b.reason
        if b.status in ("merge", "merged") and b.redo:
            detail += f"\n{b.redo}"
        if b.status in ("merge", "merged") and b.choice and len(b.shots) > 3:
            detail += f"\n{b.reason}"
        table.add_row(str(b.index), names, describe_ev(b.shots, b.choice.reference if b.choice else None), b.status, detail)
    return table


def batch(
    folder: Annotated[
        Path,
        typer.Argument(
            metavar="FOLDER", help="Folder with the shots.", show_default=False,
            parser=nonempty_path("FOLDER", "give the folder with the shots, e.g. hdrmerge batch DCIM/100CANON"),
        ),
    ],
    outdir: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", metavar="DIR", help="Where merged files go (default: FOLDER/hdr).", show_default=False,
            parser=nonempty_path("--output", "give the folder for the merged files, e.g. -o hdr (without -o they go to FOLDER/hdr)"),
        ),
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.", case_sensitive=False)] = Format.exr,
    recursive: RecursiveOpt = False,
    group_size: GroupSizeOpt = None,
    gap: GapOpt = 3.0,
    name: Annotated[
        str,
        typer.Option("--name", metavar="TEMPLATE", help="Output name template: {stem} {index} {date} {time} {camera}; the extension is added."),
    ] = "{stem}_hdr",
    prefer: PreferOpt = Prefer.raw,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan; merge nothing, load no network.")] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", metavar="N", help="Brackets decoded ahead in parallel while the network runs.")] = 1,
    response: ResponseOpt = "auto",
    exact: ExactOpt = False,
    no_guard: NoGuardOpt = False,
    no_shadow_merge: NoShadowMergeOpt = False,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    hub_repo: HubRepoOpt = None,
    device: DeviceOpt = Device.auto,
    precision: PrecisionOpt = Precision.auto,
    flow_scale: FlowScaleOpt = "0.5",
    tile: TileOpt = None,
    max_memory: MaxMemoryOpt = None,
    max_pixels: MaxPixelsOpt = MAX_PIXELS_DEFAULT,
    normalize: NormalizeOpt = Normalize.reference,
    exr_dtype: ExrDtypeOpt = ExrDtype.half,
    exr_compression: ExrCompressionOpt = ExrCompression.zip,
    dng_dtype: DngDtypeOpt = DngDtype.half,
    no_preview: Annotated[bool, typer.Option("--no-preview", help="Write no previews.")] = False,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    json_: Annotated[
        bool,
        typer.Option("--json", help="JSON lines on stdout instead of tables: one object per bracket, then a summary line."),
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Find the brackets in a folder and merge each one.

    Exit codes: 0 when every bracket was merged or already done; 1 when any
    bracket failed or was left to another run writing it; 2 bad usage; 130
    stopped by Ctrl-C.
    """
    from hdrmerge import preflight
    from hdrmerge.batch import PLAN_STATUSES, resume, scan
    from hdrmerge.batch import plan as make_plan
    from hdrmerge.locking import OutputLock, held_elsewhere
    from hdrmerge.pipeline import prepare, run_prepared

    if jobs < 1:
        raise InputError(f"--jobs {jobs}: must be at least 1")
    check_gap(gap)
    options = fuse_options(
        flow_scale, normalize, exr_dtype, exr_compression, no_preview, overwrite, tile, max_memory, response, exact,
        dng_dtype=dng_dtype.value,
        max_pixels=max_pixels,
        no_guard=no_guard,
        no_shadow_merge=no_shadow_merge,
    )
    if not dry_run:  # options that cannot work here fail before any decoding
        preflight.check_device(device.value, precision.value)
        preflight.check_weights(model, weights)
    outdir = outdir or folder / "hdr"
    if folder.is_dir() and folder.resolve().is_relative_to(outdir.resolve()):
        # Nothing under the output folder is read as a shot, so no shot would be found at all.
        raise InputError(
            f"the output folder {outdir} contains the input folder {folder}, whose shots would be skipped as outputs; "
            f"choose an output folder outside it with -o (the default is {folder / 'hdr'})"
        )
    files = scan(folder, recursive=recursive, exclude=[outdir])
    if not files:
        raise InputError(f"no photos in {folder} (JPEG, PNG, TIFF or camera RAW){'' if recursive else '; add --recursive for subfolders'}")
    the_plan = make_plan(
        files, outdir, fmt=fmt.value, name=name, gap_s=gap, group_size=group_size,
        overwrite=overwrite, preview=not no_preview, prefer=prefer.value,
    )
    chatty = not (quiet or json_)
    if any(b.status == "merge" for b in the_plan.brackets):
        _check_output_folder(outdir, create=not dry_run)

    if dry_run:
        if json_:
            for b in the_plan.brackets:
                print_json(b.to_json())
            counts = the_plan.counts()
            print_json({"summary": {s: counts.get(s, 0) for s in PLAN_STATUSES}, "dry_run": True})
        else:
            print_table(_plan_table(the_plan.brackets, f"Plan for {folder} ({len(files)} files)"))
        return

    todo = [b for b in the_plan.brackets if b.status == "merge"]
    # Brackets decoding at once share the memory (hdrmerge.frame_size.decode_share).
    options = replace(options, jobs=max(1, min(jobs, len(todo))))
    get_engine = engine_loader(model, weights, hub_repo, device, precision, chatty=chatty, quiet=quiet)
    results: dict[int, dict[str, Any]] = {}
    started = time.perf_counter()

    def emit(b: Any, state: str, reason: str = "", report: dict[str, Any] | None = None) -> None:
        row = b.to_json() | {"status": state, "reason": reason}
        if report is not None:
            row["timings_s"] = report["timings_s"]
            row["warnings"] = report["warnings"]
            row["response"] = report["response"]
            row["inputs"] = report["inputs"]  # stops from the reference, settings, ev100, as fuse --json
        results[b.index] = row
        if json_:
            print_json(row)
        elif state in ("failed", "locked"):
            # The brackets that make the exit code 1 say why on stderr, with --quiet too.
            what = "failed" if state == "failed" else "not merged"
            err_console.print(f"error: bracket {b.index} ({b.shots[0].label}…) {what}: {reason}", markup=False)
        elif state == "merged":
            for w in report["warnings"] if report else []:
                warn(f"bracket {b.index}: {w}", quiet=quiet)
            # One record line per merge, on a terminal and off it (cron, CI, make).
            if not quiet:
                err_console.print(f"[{b.index}/{len(the_plan.brackets)}] {merge_summary(report)}", markup=False)

    for b in the_plan.brackets:
        if b.status != "merge":
            emit(b, b.status, b.reason)

    interrupted = False
    # One lock per output, held from the bracket's decoding to its last
    # rename: a second run on the same folder leaves those brackets alone.
    locks: dict[int, OutputLock] = {}

    def unlock(b: Any) -> None:
        if (lock := locks.pop(b.index, None)) is not None:
            lock.release()

    with contextlib.ExitStack() as cleanup, StopFlag("bracket", quiet=quiet) as stop, ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="decode") as pool:
        cleanup.callback(lambda: [lock.release() for lock in locks.values()])
        pending: deque[tuple[Any, Future]] = deque()
        queue = deque(todo)

        def submit_next() -> None:
            while queue:
                b = queue.popleft()
                lock = OutputLock(b.output)
                if not lock.acquire():
                    emit(b, "locked", f"{held_elsewhere(lock)}; left to it")
                    continue
                if not overwrite:
                    # Another run may have finished this bracket since it was planned.
                    b.redo = ""
                    resume(b)
                    if b.status != "merge":
                        lock.release()
                        emit(b, b.status, b.reason)
                        continue
                locks[b.index] = lock
                paths = [s.path for s in b.choice.shots]
                pending.append((b, pool.submit(prepare, paths, b.output, _with_preview(options, b))))
                return

        for _ in range(jobs):
            submit_next()
        while pending:
            b, fut = pending.popleft()
            if stop.event.is_set():
                interrupted = True
                if fut.cancel():
                    unlock(b)
                continue
            try:
                prepared = fut.result()
            except Exception as exc:  # one bad bracket never ends the batch, whatever it raises
                unlock(b)
                submit_next()
                emit(b, "failed", _failure_reason(exc, debug))
                continue
            # Decoding of the next bracket(s) overlaps the network's work on this one.
            submit_next()
            engine = get_engine()  # loads once; a missing checkpoint stops the whole batch
            try:
                with merge_progress(chatty and err_console.is_terminal, f"[{b.index}/{len(the_plan.brackets)}]") as (on_stage, on_tile):
                    report = run_prepared(prepared, _with_preview(options, b), engine, on_stage=on_stage, on_tile=on_tile)
            except Exception as exc:
                emit(b, "failed", _failure_reason(exc, debug))
                continue
            finally:
                del prepared
                unlock(b)
            emit(b, "merged", "; ".join(x for x in (b.redo, b.reason if len(b.shots) > 3 else "") if x), report)
        # Stopped early if Ctrl-C left brackets unprocessed (cancelled or never queued).
        interrupted = interrupted or (stop.event.is_set() and bool(queue))

    counts: dict[str, int] = {}
    for row in results.values():
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    not_run = len(the_plan.brackets) - len(results)
    if not_run:
        counts["not started"] = not_run
    failed = counts.get("failed", 0)
    locked = counts.get("locked", 0)
    code = EXIT_INTERRUPTED if interrupted else (EXIT_FAILURE if failed or locked else 0)
    summary = {
        "merged": counts.get("merged", 0),
        "done": counts.get("done", 0),
        "single": counts.get("single", 0),
        "incomplete": counts.get("incomplete", 0) + counts.get("unusable", 0),
        "skipped": counts.get("skipped", 0),
        "failed": failed,
        "locked": locked,
        "not_started": not_run,
        "seconds": round(time.perf_counter() - started, 2),
        "exit_code": code,
    }
    if json_:
        print_json({"summary": summary})
    elif not quiet:  # --quiet, as for fuse: nothing on success; the failures' error lines above
        _print_summary(the_plan.brackets, results, summary, interrupted)
    if code:
        raise typer.Exit(code)


def _check_output_folder(outdir: Path, *, create: bool) -> None:
    """Create the output folder (``create``), or check that it could be created, and
    that files can be made in it, as a dry run must to show what the real run does.

    The check creates and removes a hidden temporary folder: only the
    operating system can tell (permissions, read-only and virtual file systems
    such as /sys refuse in their own ways).
    """
    import os
    import tempfile

    def refuse(exc: OSError, what: str) -> None:
        raise InputError(f"cannot {what} the output folder {outdir} ({exc.strerror}); choose another with -o") from None

    if create and not outdir.exists():
        try:
            outdir.mkdir(parents=True)
        except OSError as exc:
            refuse(exc, "create")
    at = outdir
    while not at.exists() and at != at.parent:  # the nearest folder that exists
        at = at.parent
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".hdrmerge-check-", dir=at))
    except OSError as exc:
        refuse(exc, "write into" if at == outdir else "create")


def _failure_reason(exc: Exception, debug: bool) -> str:
    """One line saying why a bracket failed, for its summary row.

    hdrmerge's own errors carry a message written for the user. Anything else
    (a library's assertion, an overflow, running out of memory) is a bug or a
    file no check foresaw: it fails this bracket only, named by its type, and
    ``--debug`` prints its traceback.
    """
    if isinstance(exc, HdrmergeError):
        return " ".join(str(exc).split())
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    if isinstance(exc, MemoryError):
        return "out of memory while merging this bracket; lower --max-memory or free memory"
    text = " ".join(str(exc).split()) or "no message"
    return f"unexpected {type(exc).__name__}: {text} (run with --debug for the traceback)"


def _with_preview(options: Any, b: Any) -> Any:
    """The shared options with this bracket's preview path."""
    return replace(options, preview=b.preview, no_preview=b.preview is None, replace_own=b.replace_own)


def _print_summary(brackets: list[Any], results: dict[int, dict[str, Any]], summary: dict[str, Any], interrupted: bool) -> None:
    table = Table(title="Summary", title_justify="left")
    for col in ("#", "first shot", "result", "detail"):
        table.add_column(col, overflow="fold")
    for b in brackets:
        row = results.get(b.index)
        state = row["status"] if row else "not started"
        detail = (row or {}).get("reason") or ""
        if state == "merged" and b.output:
            detail = b.output.name + (f"\n{detail}" if detail else "")
        table.add_row(str(b.index), b.shots[0].label, state, detail)
    print_table(table)
    line = (
        f"merged {summary['merged']}, already done {summary['done']}, singles {summary['single']}, "
        f"incomplete {summary['incomplete']}, "
        + (f"skipped {summary['skipped']}, " if summary["skipped"] else "")
        + f"failed {summary['failed']}"
        + (f", held by another run {summary['locked']}" if summary["locked"] else "")
        + (f", not started {summary['not_started']}" if summary["not_started"] else "")
        + f" in {summary['seconds']:.1f} s"
    )
    print_note(line)
    if interrupted:
        err_console.print("stopped by Ctrl-C; run the same command again to continue", markup=False)
