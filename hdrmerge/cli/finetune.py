"""``hdrmerge finetune``: adapt the network to a camera from the photographer's own brackets.

Brackets are found as ``batch`` finds them and decoded as ``fuse`` decodes
them (hdrmerge.finetune_inputs); training is hdrmerge.finetune's; the result is
a fine-tuned checkpoint (hdrmerge.weights.finetuned) written to ``-o`` and/or
kept in the cache under ``--name``.

Ctrl-C finishes the current step, saves a resumable state beside the output
(``<output>.resume``), prints one line saying how to continue, and exits 130.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from hdrmerge.cli.common import (
    DebugOpt,
    Device,
    DeviceOpt,
    GapOpt,
    GroupSizeOpt,
    JsonOpt,
    MAX_PIXELS_DEFAULT,
    MaxPixelsOpt,
    ModelOpt,
    OverwriteOpt,
    Prefer,
    PreferOpt,
    QuietOpt,
    RecursiveOpt,
    ResponseOpt,
    StopFlag,
    WeightsOpt,
    check_gap,
    err_console,
    nonempty_path,
    parse_max_pixels,
    print_json,
    status,
    warn,
)
from hdrmerge.errors import EXIT_INTERRUPTED, InputError

#: Appended to the output's path for the resumable state of a stopped run.
RESUME_SUFFIX = ".resume"
#: Defaults, as hdrmerge.finetune.FinetuneConfig has them (repeated so that --help imports no torch;
#: a test keeps them equal).
DEFAULT_STEPS = 240
DEFAULT_CROP = 192
DEFAULT_VAL_FRACTION = 0.2


def finetune(
    folders: Annotated[
        list[Path],
        typer.Argument(metavar="FOLDER...", help="Folders of bracketed shots from your camera (found as `batch` finds them).", show_default=False),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", metavar="FILE.safetensors", help="Where to write the fine-tuned checkpoint.", show_default=False,
            parser=nonempty_path("--output", "give the checkpoint to write, e.g. -o tuned.safetensors"),
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", metavar="NAME", help="Also (or instead) keep it in the weights cache as NAME, for --model NAME.", show_default=False),
    ] = None,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    steps: Annotated[
        int | None,
        typer.Option("--steps", metavar="N", help=f"Training steps (default {DEFAULT_STEPS}; with --resume, the first run's).", show_default=False),
    ] = None,
    crop: Annotated[
        int | None,
        typer.Option("--crop", metavar="PX", help=f"Side of the square training crops in pixels, reduced to fit --max-memory (default {DEFAULT_CROP}; with --resume, the first run's).", show_default=False),
    ] = None,
    val_fraction: Annotated[
        float | None,
        typer.Option("--val-fraction", metavar="F", help=f"Share of brackets held out to score the weights and stop early, at least one of two or more, as whole sessions (folder, capture times 10 min apart) when there are two or more; 0 holds none out (default {DEFAULT_VAL_FRACTION}; with --resume, the first run's).", show_default=False),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option("--seed", metavar="N", help="Seed of the split, the crops and the order; same seed, same result (default 0; with --resume, the first run's).", show_default=False),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option("--resume", metavar="STATE", help="Continue a stopped run from the state it saved (FILE.safetensors.resume).", show_default=False),
    ] = None,
    recursive: RecursiveOpt = False,
    group_size: GroupSizeOpt = None,
    gap: GapOpt = 3.0,
    prefer: PreferOpt = Prefer.raw,
    response: ResponseOpt = "auto",
    device: DeviceOpt = Device.auto,
    max_memory: Annotated[
        str | None,
        typer.Option("--max-memory", metavar="SIZE", help="Memory a training step may use, e.g. 4GB; the crop is reduced to fit (default: half of what is free on CUDA, elsewhere at most 512MiB).", show_default=False),
    ] = None,
    max_pixels: MaxPixelsOpt = MAX_PIXELS_DEFAULT,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Fine-tune the network on your own brackets (no ground truth needed) and write a checkpoint.

    Exit codes: 0 success, 2 bad usage or input, 1 any other failure, 130
    stopped by Ctrl-C (the state is saved; --resume continues).
    """
    from hdrmerge import preflight
    from hdrmerge.finetune_inputs import find_brackets
    from hdrmerge.locking import locked_output
    from hdrmerge.response import parse_response_option
    from hdrmerge.tiling import parse_memory
    from hdrmerge.weights import finetuned

    started = time.perf_counter()
    # --- everything that needs neither decoding nor torch ---------------------------------
    # The option values first: a refusal of those creates nothing (not even the cache's
    # finetuned/ folder, which _targets makes for --name: its lock and state file live there).
    if resume is not None and not resume.is_file():
        raise InputError(f"--resume {resume}: no such file; give the state a stopped `hdrmerge finetune` saved")
    if steps is not None and steps < 1:
        raise InputError(f"--steps {steps}: must be at least 1; give the number of training steps, e.g. --steps {DEFAULT_STEPS}")
    if crop is not None and crop < 64:
        raise InputError(f"--crop {crop}: must be at least 64 pixels; give --crop 64 or more (default {DEFAULT_CROP})")
    if val_fraction is not None and not 0.0 <= val_fraction <= 0.5:
        raise InputError(
            f"--val-fraction {val_fraction}: must be between 0 and 0.5; give a share such as {DEFAULT_VAL_FRACTION}, "
            "or 0 to hold no bracket out"
        )
    check_gap(gap)
    response_choice = parse_response_option(response, False)
    memory = parse_memory(max_memory) if max_memory else None
    pixel_limit = parse_max_pixels(max_pixels)
    preflight.check_device(device.value, "fp32")
    if model is not None:
        _check_trainable(_model_arch(model), f"--model {model}")
    preflight.check_weights(model, weights)
    with ExitStack() as held:
        # Registered first, so run last (after the locks are released): the folders _targets creates
        # for --name go again when the run leaves them empty (a refusal after they were made).
        made: list[Path] = []
        held.callback(_remove_empty, made)
        targets = _targets(output, name, overwrite, made)
        # Held for the whole run, as fuse and batch hold an output: a second run to the same
        # checkpoint, or the same --name (and so the same state file), stops at once instead of
        # training to the end and then failing or overwriting. Every target is locked, not only the first.
        for target in targets:
            held.enter_context(locked_output(target))
        state_path = Path(str(targets[0]) + RESUME_SUFFIX)
        if state_path.exists() and not overwrite:
            if resume is None:
                raise InputError(
                    f"{state_path} exists: the state of a stopped fine-tune; add --resume {state_path} to continue it, "
                    "or --overwrite to start again"
                )
            if not _same_file(resume, state_path):
                # This run keeps its state in state_path: another run's state is not replaced silently.
                raise InputError(
                    f"{state_path} exists: the state of another stopped fine-tune, which this run would replace; "
                    f"continue that one with --resume {state_path}, or pass --overwrite to replace it"
                )
        found = find_brackets(folders, recursive=recursive, group_size=group_size, gap_s=gap, prefer=prefer.value)
        found_names = [b.name for b in found.brackets]
        chatty = not (quiet or json_)
        for line in found.skipped:
            status(f"not a bracket: {line}", quiet=not chatty)

        # --- the network, and the state to resume -----------------------------------------------
        # hdrmerge.finetune imports PyTorch: here, in the main thread, before the Ctrl-C handler is set.
        from hdrmerge.finetune import FinetuneConfig, TrainingState, finetune as train, weights_fingerprint
        from hdrmerge.inference import select_device
        from hdrmerge.models import build_model
        from hdrmerge.weights import load_weights
        from hdrmerge.weights.store import tensors_digest

        start = load_weights(model, weights, progress=chatty and err_console.is_terminal)
        _check_trainable(start.arch, f"{start.name or start.path}")
        net = build_model(start.state, start.arch, source=str(start.path))
        dev = select_device(device.value)
        state: TrainingState | None = None
        if resume is not None:
            state = TrainingState.load(resume)
            if state.start_sha256 != weights_fingerprint(net.state_dict()):
                raise InputError(
                    f"{resume} is the state of a fine-tune that started from other weights than "
                    f"{start.name or start.path}; give the --model or --weights of the first run, or start again without --resume"
                )
            # Compared found with found: a bracket the first run could not decode is in neither
            # train nor val, but is found again now (train/val are checked against what loads, by the core).
            _check_same_brackets(resume, state.found or state.train + state.val, found_names)
        if state is not None:
            # A resumed run keeps its first run's settings (the crop, the split and the order decide
            # what it trains on next); a different value given now is said to be ignored, not dropped silently.
            given = {"--crop": (crop, state.config.crop), "--val-fraction": (val_fraction, state.config.val_fraction),
                     "--seed": (seed, state.config.seed), "--max-memory": (memory, state.config.max_memory)}
            for option, (now, then) in given.items():
                if now is not None and now != then:
                    shown = max_memory if option == "--max-memory" else now
                    kept = ("the default" if then is None else f"{then / 2**20:g}MiB" if option == "--max-memory"
                            else then)
                    warn(f"{option} {shown} is ignored: a resumed run keeps its first run's setting ({kept})", quiet=quiet)
        config = FinetuneConfig(
            steps=steps if steps is not None else state.config.steps if state is not None else DEFAULT_STEPS,
            crop=crop if crop is not None else DEFAULT_CROP,
            seed=seed if seed is not None else 0,
            val_fraction=val_fraction if val_fraction is not None else DEFAULT_VAL_FRACTION,
            max_memory=memory,
        )

        # --- the brackets ----------------------------------------------------------------------
        from hdrmerge.finetune_inputs import load_training_brackets
        from hdrmerge.frame_cache import FrameCache

        status(f"model: {start.arch} ({start.name or start.path.name}) on {dev.type}; licence: {start.licence}", quiet=not chatty)
        # The decoded frames go to a temporary folder on disk, deleted when the run ends
        # (also on an error or Ctrl-C): the memory does not grow with the brackets.
        cache = held.enter_context(FrameCache())
        with _loading_progress(chatty and err_console.is_terminal) as on_loaded:
            brackets, skipped = load_training_brackets(
                found.brackets, response_choice, max_pixels=pixel_limit, cache=cache, on_loaded=on_loaded,
            )
        for w in skipped:
            warn(w, quiet=quiet)

        # --- training ----------------------------------------------------------------------------
        def save_state(s: TrainingState) -> None:
            s.found = found_names
            s.save(state_path)

        # As hdrmerge.finetune.split_brackets decides: nothing is held out with --val-fraction 0 or one
        # bracket, and the score shown is then on training crops.
        if state is not None:
            held_out_run = bool(state.val)
        else:
            held_out_run = config.val_fraction > 0 and len(brackets) >= 2
        scored_as = "held-out" if held_out_run else "training crops"
        with StopFlag("step", quiet=quiet or json_) as stop, \
                _training_progress(chatty, err_console.is_terminal, scored_as) as on_step:
            outcome, final = train(
                net, brackets, config, device=dev, on_step=on_step, resume=state, stop=stop.event,
                checkpoint_every=save_state,
            )
        if outcome.interrupted:
            save_state(final)
            line = (
                f"interrupted at step {outcome.steps_done} of {final.config.steps}; the state is saved in {state_path}; "
                f"to continue, run the same command with --resume {state_path}"
            )
            err_console.print(line, markup=False)
            if json_:
                print_json({"error": line, "exit_code": EXIT_INTERRUPTED, "resume": str(state_path),
                            "steps_done": outcome.steps_done})
            raise typer.Exit(EXIT_INTERRUPTED)

        # --- the checkpoint ----------------------------------------------------------------------
        # Without held-out brackets (--val-fraction 0, or a single bracket) the weights are chosen by
        # the loss on fixed crops of the training brackets: no held-out loss to record, and the
        # config says what the choice was scored on.
        held_out = outcome.n_val > 0
        config_record = {k: v for k, v in asdict(final.config).items() if k != "max_memory"}
        config_record["scored_on"] = "held-out brackets" if held_out else "training crops"
        info = finetuned.FinetunedInfo(
            name=name or targets[0].name.removesuffix(".safetensors"),
            arch=start.arch,
            base_name=start.name or "unregistered",
            base_sha256=start.sha256,
            base_tensors_sha256=tensors_digest(start.state),
            licence=start.licence,
            brackets_train=outcome.n_train,
            brackets_val=outcome.n_val,
            steps=outcome.steps_done,
            best_step=outcome.best_step,
            loss_start_val=outcome.start_val_loss if held_out else None,
            loss_best_val=outcome.best_val_loss if held_out else None,
            stopped_early=outcome.stopped_early,
            config=config_record,
        )
        info = finetuned.save(targets, outcome.state_dict, info, overwrite=overwrite)
        state_path.unlink(missing_ok=True)  # the run is complete: its state has nothing left to resume
        seconds = time.perf_counter() - started
        if json_:
            print_json({
                "outputs": [str(t) for t in targets], "name": info.name, "checkpoint": info.to_json(),
                "history": [{"step": s, "loss": t, "val_loss": v} for s, t, v in outcome.history],
                "skipped": found.skipped + skipped, "seconds": round(seconds, 2),
            })
            return
        if not quiet:
            where = " and ".join(str(t) for t in targets)
            scored = "held-out loss" if held_out else "no bracket held out; loss on training crops"
            err_console.print(
                f"wrote {where}: {info.arch} {info.provenance}; {scored} {outcome.start_val_loss:.4g} → "
                f"{outcome.best_val_loss:.4g} (best at step {outcome.best_step}"
                + (", stopped early" if outcome.stopped_early else "") + f"); {seconds:.0f} s",
                markup=False,
            )
            err_console.print(f"licence (carried over from {info.base_name}): {info.licence}", markup=False)
            if name is not None:
                err_console.print(f"use it with --model {name}", markup=False)


def _targets(output: Path | None, name: str | None, overwrite: bool, made: list[Path]) -> list[Path]:
    """The files to write (``-o`` first, then the cache file of ``--name``), checked before any work.

    The cache's ``finetuned/`` folder is created for ``--name`` (its lock and state file live
    there); the folders this creates are appended to ``made``, deepest first.
    """
    from hdrmerge.atomic import StagedOutputs
    from hdrmerge.weights import finetuned

    if output is None and name is None:
        raise InputError("say where the checkpoint goes: -o FILE.safetensors, --name NAME (kept in the weights cache), or both")
    targets: list[Path] = []
    probe = StagedOutputs(overwrite=overwrite)
    if output is not None:
        if output.suffix != ".safetensors":
            raise InputError(f"-o {output}: a fine-tuned checkpoint is a .safetensors file; give a name ending in .safetensors")
        probe.check(output)
        targets.append(output)
    if name is not None:
        cached = finetuned.cached_file(name)
        if cached.exists() and not overwrite:
            raise InputError(
                f"a fine-tuned checkpoint named {name} is in the cache already ({cached}); "
                "choose another --name, or pass --overwrite to replace it"
            )
        missing = [p for p in (cached.parent, *cached.parent.parents) if not p.exists()]
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            made.extend(missing)
        except OSError as exc:
            from hdrmerge.weights.store import cache_write_error

            raise cache_write_error(cached.parent, exc) from None
        probe.check(cached)
        targets.append(cached)
    return targets


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty: a checkpoint or a stopped run's state stays."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def _model_arch(model: str) -> str:
    from hdrmerge.weights import model_arch

    return model_arch(model)


def _check_trainable(arch: str, what: str) -> None:
    from hdrmerge.weights.finetuned import TRAINABLE

    if arch not in TRAINABLE:
        raise InputError(f"{what} is {arch}; fine-tuning works on {' and '.join(TRAINABLE)}: use --model safnet-s or safnet")


def _check_same_brackets(resume: Path, then: list[str], now: list[str]) -> None:
    """InputError unless a resumed run is given the brackets its first run found."""
    if sorted(then) == sorted(now):
        return
    gone = sorted(set(then) - set(now))
    new = sorted(set(now) - set(then))
    example = f"{gone[0]} is not among them now" if gone else f"{new[0]} was not among them then"
    raise InputError(
        f"{resume} is the state of a fine-tune on {len(then)} brackets, but {len(now)} are found now ({example}); "
        "give the same folders as the first run, or start again without --resume"
    )


@contextmanager
def _loading_progress(enabled: bool) -> Iterator[Callable[[int, int], None]]:
    """``on_loaded(done, total)``, shown as a bar on stderr while the brackets are decoded."""
    if not enabled:
        yield lambda done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("reading brackets"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err_console, transient=True) as progress:
        task = progress.add_task("read", total=None)
        yield lambda done, total: progress.update(task, completed=done, total=total)


@contextmanager
def _training_progress(enabled: bool, terminal: bool, scored_as: str = "held-out") -> Iterator[Callable[[Any], None] | None]:
    """``on_step(report)`` for hdrmerge.finetune (None when disabled).

    On a terminal: a live bar with the step, the last loss, the best held-out
    loss and the time left. Elsewhere (a log, CI): one plain line at the first
    step, at every validation and at the last step, with the time per step
    and the time left. ``scored_as`` names what the best score was taken on:
    ``held-out`` brackets, or ``training crops`` when none is held out.
    """
    if not enabled:
        yield None
        return
    held_out: list[str] = [""]  # the last validation's words, shown until the next one

    def losses(r: Any) -> str:
        # The latest held-out loss, and the best so far where that is another (the starting
        # weights' at step 0, an earlier validation, a resumed run's): never a worse one as "best".
        if r.val_loss is not None and r.best_val_loss is not None:
            best = "best" if r.val_loss <= r.best_val_loss else f"best {r.best_val_loss:.4g}"
            held_out[0] = f", {scored_as} {r.val_loss:.4g} ({best})"
        return f"loss {r.loss:.4g}{held_out[0]}"

    if not terminal:
        seconds: list[float] = []

        def line(r: Any) -> None:
            seconds.append(r.seconds)
            text = losses(r)
            if r.step == 1 or r.val_loss is not None or r.step == r.steps:
                per_step = sum(seconds[-20:]) / len(seconds[-20:])
                err_console.print(
                    f"step {r.step}/{r.steps}: {text}; {per_step:.2f} s/step, about "
                    f"{_duration((r.steps - r.step) * per_step)} left",
                    markup=False,
                )

        yield line
        return
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeRemainingColumn

    with Progress(
        SpinnerColumn(), TextColumn("fine-tuning"), BarColumn(), TextColumn("{task.fields[count]}"),
        TextColumn("{task.fields[losses]}"), TimeRemainingColumn(), console=err_console, transient=True,
    ) as progress:
        task = progress.add_task("train", total=None, count="", losses="")
        yield lambda r: progress.update(
            task, total=r.steps, completed=r.step, count=f"step {r.step}/{r.steps}", losses=losses(r)
        )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
