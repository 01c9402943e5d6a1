"""``hdrmerge weights``: list, download, install and verify checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hdrmerge.cli.common import (
    HubRepoOpt,
    JsonOpt,
    QuietOpt,
    ReadmeCommand,
    err_console,
    out_console,
    print_json,
    print_note,
    print_table,
    status,
)
from hdrmerge.errors import EXIT_FAILURE, HdrmergeError
from hdrmerge.weights.registry import CHECKPOINTS, get_checkpoint

app = typer.Typer(
    help="List, download, install, verify and remove SAFNet and AFUNet checkpoints.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="Checkpoint name, e.g. safnet-s (see `hdrmerge weights list`).")]


def _where(name: str) -> tuple[bool, str]:
    """Whether ``name`` is cached, and where it would be loaded from (or go to)."""
    from hdrmerge.weights import weights_dir_file
    from hdrmerge.weights.download import offline
    from hdrmerge.weights.store import cached_path

    ckpt = CHECKPOINTS[name]
    if (p := weights_dir_file(ckpt)) is not None:
        return cached_path(ckpt).is_file(), f"{p} (HDRMERGE_WEIGHTS_DIR)"
    cp = cached_path(ckpt)
    if cp.is_file():
        return True, str(cp)
    if offline():
        return False, f"not here; HF_HUB_OFFLINE is set: `hdrmerge weights install {name} PATH`"
    return False, f"downloaded on first use to {cp}"


def _finetuned_rows() -> list[dict]:
    """The fine-tuned checkpoints kept in the cache, as ``weights list --json`` gives them."""
    from hdrmerge.weights.finetuned import list_cached

    rows = []
    for c in list_cached():
        row: dict = {"name": c.name, "path": str(c.path)}
        if c.info is None:
            row["problem"] = c.problem
        else:
            row.update(c.info.to_json())
            # "name" stays what --model accepts (the file's stem); the name recorded when it was
            # fine-tuned differs once the file is renamed, and is kept apart.
            row["name"] = c.name
            row["hdrmerge_name"] = c.info.name
        rows.append(row)
    return rows


def _licence_short(licence: str) -> str:
    """The registry's word or two for a licence a fine-tuned checkpoint carried over."""
    return next((c.licence_short for c in CHECKPOINTS.values() if c.licence == licence), licence)


def _loss(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


@app.command("list", cls=ReadmeCommand)
def list_(json_: JsonOpt = False) -> None:
    """Show the known checkpoints, their licence, and whether they are on this machine;
    then the fine-tuned checkpoints kept in the cache (`hdrmerge finetune --name`)."""
    rows = []
    for name, c in CHECKPOINTS.items():
        cached, where = _where(name)
        rows.append(
            {
                "name": name,
                "arch": c.arch,
                "training_set": c.training_set,
                "licence": c.licence,
                "cached": cached,
                "where": where,
                "pin": c.pin,
                "origin": c.origin,
            }
        )
    tuned = _finetuned_rows()
    if json_:
        print_json({"checkpoints": rows, "finetuned": tuned})
        return
    table = Table(title="Checkpoints", title_justify="left")
    for col in ("name", "architecture", "training set", "licence", "cached", "where"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            r["name"], r["arch"], r["training_set"], CHECKPOINTS[r["name"]].licence_short,
            "yes" if r["cached"] else "no", r["where"]
        )
    print_table(table)
    # Each family's licence in full, as its authors state it.
    for licence in dict.fromkeys(c.licence for c in CHECKPOINTS.values()):
        names = ", ".join(c.name for c in CHECKPOINTS.values() if c.licence == licence)
        print_note(f"Licence of {names}: {licence}.")
    if not tuned:
        return
    from hdrmerge.weights.finetuned import finetuned_dir

    table = Table(title=f"Fine-tuned checkpoints in {finetuned_dir()} (use with --model NAME)", title_justify="left")
    for col in ("name", "architecture", "fine-tuned from", "brackets", "steps", "held-out loss", "created", "licence"):
        table.add_column(col, overflow="fold")
    for r in tuned:
        if "problem" in r:
            table.add_row(r["name"], "-", r["problem"], "-", "-", "-", "-", "-")
            continue
        table.add_row(
            r["name"], r["arch"], f"{r['base_name']} (sha256 {r['base_sha256'][:12]}…)",
            f"{r['brackets_train']} + {r['brackets_val']} held out", str(r["steps"]),
            f"{_loss(r['loss_start_val'])} → {_loss(r['loss_best_val'])}", r["created"][:10],
            _licence_short(r["licence"]),
        )
    print_table(table)
    for licence in dict.fromkeys(r["licence"] for r in tuned if "problem" not in r):
        names = ", ".join(r["name"] for r in tuned if r.get("licence") == licence)
        print_note(f"Licence of {names} (carried over from the starting weights): {licence}.")


@app.command(cls=ReadmeCommand)
def download(name: NameArg, hub_repo: HubRepoOpt = None, quiet: QuietOpt = False, json_: JsonOpt = False) -> None:
    """Download a checkpoint (Hub first, then the authors' address), verify it, cache it."""
    from hdrmerge.weights.download import download as fetch

    ckpt = get_checkpoint(name)
    status(f"Licence: {ckpt.licence}.", quiet=quiet or json_)
    path, attempts = fetch(ckpt, repo=hub_repo, progress=not (quiet or json_) and err_console.is_terminal)
    if json_:
        print_json({"name": name, "path": str(path), "sources": [a.__dict__ for a in attempts]})
    else:
        out_console.print(f"{name}: verified and cached at {path}", markup=False)


@app.command(cls=ReadmeCommand)
def install(
    name: NameArg,
    path: Annotated[Path, typer.Argument(metavar="PATH", help="A local copy of the checkpoint file.", dir_okay=False)],
    json_: JsonOpt = False,
) -> None:
    """Verify a local checkpoint file and put it in the cache (for machines that cannot download)."""
    from hdrmerge.weights import install as do_install

    dest = do_install(name, path)
    if json_:
        print_json({"name": name, "path": str(dest)})
    else:
        out_console.print(f"{name}: verified and cached at {dest}", markup=False)


@app.command(cls=ReadmeCommand)
def verify(
    names: Annotated[list[str] | None, typer.Argument(metavar="[NAME]...", help="Checkpoints to check; default all cached.", show_default=False)] = None,
    json_: JsonOpt = False,
) -> None:
    """Re-check cached checkpoints, fine-tuned ones included (and files in HDRMERGE_WEIGHTS_DIR); exit 1 if any is damaged."""
    from hdrmerge.weights import finetuned, weights_dir_file
    from hdrmerge.weights.store import load_cached, verify_file

    # Fine-tuned checkpoints in the cache: all of them by default, or those named.
    tuned = [n for n in names or [] if n not in CHECKPOINTS and finetuned.find_cached(n) is not None]
    wanted = [get_checkpoint(n).name for n in names if n not in tuned] if names else list(CHECKPOINTS)
    tuned_results = []
    for c in finetuned.list_cached() if not names else [c for c in finetuned.list_cached() if c.name in tuned]:
        try:
            _, info = finetuned.load(c.path)
            if info is None:
                raise HdrmergeError(c.problem or "not a fine-tuned checkpoint")
            tuned_results.append({"name": c.name, "where": str(c.path), "ok": True,
                                  "detail": f"tensors match their recorded hash ({info.provenance})"})
        except HdrmergeError as exc:
            tuned_results.append({"name": c.name, "where": str(c.path), "ok": False, "detail": str(exc)})
    results = []
    for name in wanted:
        ckpt = CHECKPOINTS[name]
        if (p := weights_dir_file(ckpt)) is not None:
            try:
                verify_file(p, ckpt)
                results.append({"name": name, "where": str(p), "ok": True, "detail": "matches " + ckpt.pin})
            except HdrmergeError as exc:
                results.append({"name": name, "where": str(p), "ok": False, "detail": str(exc)})
        try:
            entry = load_cached(ckpt)
        except HdrmergeError as exc:
            results.append({"name": name, "where": "cache", "ok": False, "detail": str(exc)})
            continue
        if entry is not None:
            results.append({"name": name, "where": str(entry.path), "ok": True, "detail": "matches " + ckpt.pin})
        elif names:
            results.append({"name": name, "where": "-", "ok": False, "detail": "not cached"})
    results += tuned_results
    bad = [r for r in results if not r["ok"]]
    if json_:
        print_json({"results": results, "ok": not bad})
    elif not results:
        out_console.print("No checkpoint is cached; nothing to verify.")
    else:
        table = Table()
        for col in ("name", "where", "result"):
            table.add_column(col, overflow="fold")
        for r in results:
            table.add_row(r["name"], r["where"], ("ok: " if r["ok"] else "FAILED: ") + r["detail"])
        print_table(table)
    if bad:
        raise typer.Exit(EXIT_FAILURE)


@app.command(cls=ReadmeCommand)
def remove(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A fine-tuned checkpoint in the cache (see `hdrmerge weights list`).")],
    json_: JsonOpt = False,
) -> None:
    """Delete a fine-tuned checkpoint kept in the cache (`hdrmerge finetune --name`)."""
    from hdrmerge.weights.finetuned import remove_cached

    path = remove_cached(name)
    # A stopped `finetune --name NAME --overwrite` keeps its state beside the checkpoint. It is that
    # run's, not the checkpoint's: left in place (removing it would lose the run), and said so.
    state = path.with_name(path.name + ".resume")
    left = state if state.is_file() else None
    if json_:
        print_json({"name": name, "removed": str(path), "state_left": str(left) if left else None})
    else:
        out_console.print(f"{name}: removed {path}", markup=False)
        if left:
            err_console.print(
                f"note: {left} is the state of a stopped fine-tune to this name, left in place; continue it with "
                f"`hdrmerge finetune ... --name {name} --resume {left}`, or delete it",
                markup=False,
            )
