"""``hdrmerge eval``: PSNR-μ/PSNR-l/SSIM-μ/SSIM-l on a test set, with baselines."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hdrmerge.cli.common import (
    DebugOpt,
    Device,
    DeviceOpt,
    FlowScaleOpt,
    MAX_PIXELS_DEFAULT,
    MaxMemoryOpt,
    MaxPixelsOpt,
    TileOpt,
    HubRepoOpt,
    JsonOpt,
    ModelOpt,
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
    nonempty_path,
    parse_flow_scale,
    print_json,
    print_table,
    status,
)
from hdrmerge.errors import InputError


def eval_(
    dataset: Annotated[Path, typer.Argument(metavar="DATASET", help="Test set folder (Kalantari 2017, Tel 2023, Hu 2020, Challenge123, or hdrmerge synth output).", show_default=False)],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", metavar="DIR", help="Folder for eval.csv and eval.json (created if needed).", show_default=False,
            parser=nonempty_path("--out", "give a folder for eval.csv and eval.json, e.g. --out results"),
        ),
    ] = None,
    save_dir: Annotated[
        Path | None,
        typer.Option(
            "--save-dir", metavar="DIR", help="Keep each scene's predicted HDR and the previews of all methods here.",
            show_default=False, parser=nonempty_path("--save-dir", "give a folder for the merged scenes, e.g. --save-dir merged"),
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", metavar="N", help="Only the first N scenes.", show_default=False)] = None,
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
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Score the network (and two baselines) against ground truth, as the papers do."""
    from hdrmerge.atomic import StagedOutputs
    from hdrmerge.datasets import discover
    from hdrmerge.evaluate import METHODS, evaluate, fmt_db, saved_paths

    from hdrmerge.cli.common import parse_max_pixels, parse_tile
    from hdrmerge.tiling import parse_memory

    from hdrmerge.response import parse_response_option

    from hdrmerge import preflight

    if limit is not None and limit < 1:
        raise InputError(f"--limit {limit}: give the number of scenes to score, 1 or more (leave it out for all)")
    preflight.check_device(device.value, precision.value)
    preflight.check_weights(model, weights)
    choice = parse_response_option(response, exact)
    scale = parse_flow_scale(flow_scale)
    tiling = {"tile": parse_tile(tile), "max_memory": parse_memory(max_memory) if max_memory else None}
    limit_pixels = parse_max_pixels(max_pixels)
    layout, scenes = discover(dataset)
    scenes = scenes[:limit] if limit else scenes
    chatty = not (quiet or json_)
    # Every file a run would write is checked before the first scene: none is replaced without --overwrite.
    staged = StagedOutputs(overwrite=overwrite)
    for folder, option in ((out, "--out"), (save_dir, "--save-dir")):
        try:  # a folder that cannot be made fails now, not after the scenes' merges
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise InputError(f"{option} {folder} is a file; give a folder") from None
        except OSError as exc:
            raise InputError(f"cannot create the {option} folder {folder} ({exc.strerror}); choose another") from None
    if out is not None:
        staged.check(out / "eval.csv")
        staged.check(out / "eval.json")
    if save_dir is not None:
        for scene in scenes:
            for path in saved_paths(save_dir, scene).values():
                if path.exists() or path.is_symlink():
                    staged.check(path)
    engine = engine_loader(model, weights, hub_repo, device, precision, chatty=chatty, quiet=quiet)()
    status(f"{len(scenes)} scenes, {layout} layout", quiet=not chatty)

    done = 0

    def progress(r) -> None:
        nonlocal done
        done += 1
        m = r.metrics["hdrmerge"]
        status(f"[{done}/{len(scenes)}] {r.scene}: PSNR-μ {fmt_db(m['psnr_mu'])} dB, PSNR-l {fmt_db(m['psnr_l'])} dB", quiet=not chatty)

    report = evaluate(
        scenes, engine, layout, flow_scale=scale, save_dir=save_dir, on_scene=progress, response=choice,
        max_pixels=limit_pixels, guard=not no_guard, shadow_merge=not no_shadow_merge, overwrite=overwrite, **tiling,
    )
    data = report.to_json()
    if out is not None:
        with staged:
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerows(report.csv_rows())
            staged.stage(out / "eval.csv").write_text(buf.getvalue())
            staged.stage(out / "eval.json").write_text(json.dumps(data, indent=1) + "\n")
            staged.commit()
    if json_:
        print_json(data)
        return
    table = Table(title=f"{dataset} ({layout}, {len(scenes)} scenes, {report.model['arch']})", title_justify="left")
    table.add_column("scene")
    table.add_column("method")
    for col in ("PSNR-μ", "PSNR-l", "SSIM-μ", "SSIM-l"):
        table.add_column(col, justify="right")
    rows = [(s.scene, s.metrics) for s in report.scenes] + [("mean", report.means())]
    for name, metrics in rows:
        for i, method in enumerate(METHODS):
            v = metrics[method]
            table.add_row(name if i == 0 else "", method, fmt_db(v["psnr_mu"]), fmt_db(v["psnr_l"]), f"{v['ssim_mu']:.4f}", f"{v['ssim_l']:.4f}", end_section=i == len(METHODS) - 1)
    print_table(table)
    if out is not None:
        status(f"wrote {out / 'eval.csv'} and {out / 'eval.json'}", quiet=not chatty)
