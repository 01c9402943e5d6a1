"""One bracket from files to outputs: read → exposures → network → writers.

Used by ``hdrmerge fuse`` (and by ``batch`` for each bracket). Every check that
can fail on the user's input (file count, readability, sizes, exposures,
output paths) runs before the network is loaded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from hdrmerge import __version__
from hdrmerge.atomic import StagedOutputs, describe_removed, refuse_input, resolve, same_file
from hdrmerge.errors import InputError
from hdrmerge.exposure import Exposures, check_span, derive_exposures, exif_exposure
from hdrmerge.frame_size import DEFAULT_MAX_PIXELS
from hdrmerge.header_fields import finetuned_from, merge_fields
from hdrmerge.reading import Frame, check_shot, read_frames
from hdrmerge.response import Response, ResponseChoice
from hdrmerge.tiling import resolve_flow_scale
from hdrmerge.writing import (
    absolute_gain,
    flow_to_rgb,
    mu_law,
    output_format,
    preview_path,
    write_exr,
    write_hdr,
    write_png,
    write_preview,
)

NORMALIZE = ("short", "reference", "absolute")
#: The paper behind each architecture, for output metadata.
PAPERS = {"SAFNet": "Kong et al., ECCV 2024", "SAFNet-S": "Kong et al., ECCV 2024", "AFUNet": "Li, Ni, Yang, ICCV 2025"}


@dataclass
class FuseOptions:
    """How to merge and what to write (see ``hdrmerge fuse --help``)."""

    ev: list[float] | None = None
    flow_scale: float | None = 0.5  # None: auto, from the frame size
    tile: int | None = None  # None: from the memory budget
    max_memory: int | None = None  # bytes; None: half of what is free
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger frames are refused before decoding
    jobs: int = 1  # brackets decoded at once (batch --jobs): their decodes share the memory
    normalize: str = "reference"
    exr_dtype: str = "half"
    exr_compression: str = "zip"
    dng_dtype: str = "half"
    preview: Path | None = None  # None: writing.preview_path(output)
    no_preview: bool = False
    debug_dir: Path | None = None
    overwrite: bool = False
    response: ResponseChoice = field(default_factory=ResponseChoice)  # --response / --exact
    replace_own: bool = False  # replace existing outputs hdrmerge wrote itself (batch resume)
    guard: bool = True  # --no-guard turns it off; --exact turns both additions off
    shadow_merge: bool = True  # --no-shadow-merge

    def additions(self) -> tuple[bool, bool]:
        """(guard, shadow merge) as they run: both off under ``--exact`` (:mod:`hdrmerge.postmerge`)."""
        exact = self.response.mode == "exact"
        return self.guard and not exact, self.shadow_merge and not exact


@dataclass
class Bracket:
    """Three decoded shots, their camera response and their exposures.

    ``frames`` and ``exposures.ev`` are in input order; ``order`` lists input
    indices short → long (``order[1]`` is the reference). The frames are in
    the network's gamma-2.2 domain, converted with ``response``.
    """

    frames: list[Frame]
    exposures: Exposures
    response: Response

    @property
    def order(self) -> list[int]:
        return self.exposures.order

    @property
    def sorted_frames(self) -> list[Frame]:
        return [self.frames[i] for i in self.order]

    @property
    def reference(self) -> Frame:
        return self.frames[self.order[1]]

    def relative_sorted(self) -> list[float]:
        rel = self.exposures.relative()
        return [rel[i] for i in self.order]


def check_shot_count(paths: Sequence[Path]) -> None:
    """InputError unless there are exactly three shots."""
    if len(paths) != 3:
        raise InputError(
            f"fuse takes exactly 3 shots, got {len(paths)}; "
            "for longer brackets use `hdrmerge batch`, which picks three"
        )


def load_bracket(
    paths: Sequence[Path],
    ev: Sequence[float] | None = None,
    *,
    response: ResponseChoice | None = None,
    on_checked: Callable[[], None] = lambda: None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    jobs: int = 1,
) -> Bracket:
    """Read three shots, find their response and exposures; InputError on any problem.

    ``response``: what ``--response``/``--exact`` asked for (default auto).

    ``max_pixels``: frames declaring more pixels are refused before decoding.
    ``jobs``: brackets that may be decoding at the same time (``batch --jobs``),
    whose decodes share the memory available.

    ``on_checked`` is called once the arguments and files have passed the
    cheap checks, just before the (slow) decoding starts; ``fuse`` uses it
    to start importing torch meanwhile.
    """
    check_shot_count(paths)
    if ev is not None and len(ev) != 3:
        raise InputError(f"--ev has {len(ev)} values; give 3, one per input in input order (e.g. --ev -2,0,2)")
    if any(same_file(a, b) for i, a in enumerate(paths) for b in paths[i + 1 :]):
        raise InputError("the same file is given twice; a bracket needs three different shots")
    if ev is not None:
        check_span([Path(p).name for p in paths], ev, "--ev")  # before the response fit uses them
    for p in paths:
        check_shot(p)
    on_checked()
    frames = read_frames(paths, max_pixels=max_pixels, jobs=jobs)
    first = frames[0]
    for f in frames[1:]:
        if f.size != first.size:
            raise InputError(
                f"{first.path.name} is {first.size[1]}×{first.size[0]} but {f.path.name} is "
                f"{f.size[1]}×{f.size[0]}; all shots of a bracket must have the same size"
            )
    from hdrmerge.response import choose_response, to_network_domain

    found = choose_response(frames, response or ResponseChoice(), ev)
    frames = [to_network_domain(f, found) for f in frames]
    # With the response known, the pixels measure exposure ratios directly;
    # only under an assumed gamma 2.2 may a camera's tone curve still stretch them.
    known = found.source in ("user", "file", "metadata", "estimated")
    exposures = derive_exposures(frames, ev, tone_curve_known=known)
    exposures.warnings[:0] = list(found.warnings)
    return Bracket(frames, exposures, found)


def output_paths(output: Path, options: FuseOptions) -> dict[str, Path]:
    """Every file a run will write, by role; checked before any work.

    Two roles may not name one file, however it is spelled (``./x.exr`` and
    ``$PWD/x.exr``, a symlinked folder, a hard link).
    """
    output_format(output)
    paths = {"hdr": output}
    if not options.no_preview:
        paths["preview"] = options.preview or preview_path(output)
    if options.debug_dir is not None:
        guard, shadows = options.additions()
        extra = (("guard", "guard_highlights") if guard else ()) + (("merge_reference", "merge_long", "merge_short") if shadows else ())
        for name in ("flow0", "flow2", "mask0", "mask2", "hdr_m", "hdr", *extra):
            paths[f"debug_{name}"] = options.debug_dir / f"{name}.png"
    roles = list(paths)
    for i, a in enumerate(roles):
        for b in roles[i + 1 :]:
            if same_file(paths[a], paths[b]):
                raise InputError(
                    f"{role_words(b).name} {paths[b]} is the same file as {role_words(a).name} {paths[a]}; "
                    f"{role_words(b).remedy}"
                )
    return paths


class RoleWords(NamedTuple):
    """How messages name an output role of :func:`output_paths`, and what to do when it collides."""

    name: str
    remedy: str


#: Words for each role; the debug images (``debug_<name>``) share the ``debug`` entry.
_ROLE_WORDS = {
    "hdr": RoleWords("the output", "choose another output path"),
    "preview": RoleWords("the preview", "choose another path for the preview"),
    "debug": RoleWords("the debug image", "choose another --debug-dir"),
}


def role_words(role: str) -> RoleWords:
    """The :data:`_ROLE_WORDS` entry of an :func:`output_paths` role."""
    return _ROLE_WORDS["debug" if role.startswith("debug_") else role]


def refuse_inputs_as_outputs(targets: dict[str, Path], inputs: Sequence[Path]) -> None:
    """InputError if any output would replace an input file, whatever --overwrite says."""
    for role, dest in targets.items():
        refuse_input(dest, inputs, *role_words(role))


def normalisation_gain(bracket: Bracket, normalize: str) -> float:
    """Factor from the network's short-exposure domain to the requested scale."""
    if normalize == "short":
        return 1.0
    if normalize == "reference":
        return bracket.relative_sorted()[1]
    if normalize == "absolute":
        short = bracket.sorted_frames[0]
        e = exif_exposure(short.exif)
        if e is None or e.iso_stops is None or e.aperture_stops is None:
            raise InputError(
                f"--normalize absolute needs ExposureTime, FNumber and ISO in the EXIF of the shortest "
                f"shot ({short.path.name}); use --normalize reference"
            )
        return absolute_gain(2.0**e.time_stops, 2.0 ** (e.aperture_stops / 2.0), 100.0 * 2.0**e.iso_stops)
    raise InputError(f"--normalize {normalize}: use short, reference or absolute")


def _exr_attributes(bracket: Bracket, meta: dict[str, Any]) -> dict[str, Any]:
    ref = bracket.reference
    exif = ref.exif
    e = exif_exposure(exif)
    attrs: dict[str, Any] = {
        "software": f"hdrmerge {__version__}",
        "comments": f"Merged by hdrmerge with {meta['model']['arch']} ({PAPERS[meta['model']['arch']]})",
        **{f"hdrmerge:{name}": v for name, v in merge_fields(bracket, meta).items()},
        "cameraMake": exif.make,
        "cameraModel": exif.model,
        "lensModel": exif.lens,
        "capDate": exif.datetime_original,
    }
    if e is not None:
        attrs["expTime"] = float(2.0**e.time_stops)
        if e.aperture_stops is not None:
            attrs["aperture"] = float(2.0 ** (e.aperture_stops / 2.0))
        if e.iso_stops is not None:
            attrs["isoSpeed"] = float(100.0 * 2.0**e.iso_stops)
    return {k: v for k, v in attrs.items() if v is not None}


def _hdr_header(bracket: Bracket, meta: dict[str, Any]) -> dict[str, str]:
    """The Radiance header's lines; exposures as people read them elsewhere: stops
    from the reference shot with the camera's settings, short → long like ``sources``."""
    from hdrmerge.exposure_text import exposures_text, relative_stops, shot_exposures, shot_settings_text

    ex = bracket.exposures
    stops = relative_stops(ex.ev, bracket.order[1])
    shots = shot_exposures([f.exif for f in bracket.frames], stops, bracket.order[1], ex.source)
    exposures = exposures_text(
        [stops[i] for i in bracket.order],
        [shot_settings_text(shots[i][1], ex.shot_sources[i], ex.source) for i in bracket.order],
        ex.source,
    )
    return {
        "SOFTWARE": f"hdrmerge {__version__}",
        "sources": " ".join(f.path.name for f in bracket.sorted_frames),
        "exposures": exposures,
        "model": f"{meta['model']['arch']} {meta['model']['name'] or 'unregistered'} sha256:{meta['model']['sha256']}"
        + (f" ({tuned})" if (tuned := finetuned_from(meta["model"])) else ""),
        "normalize": f"{meta['normalize']} (x{meta['normalize_gain']:.6g} from the short-exposure domain)",
        "response": bracket.response.label(),
        "camera": bracket.reference.exif.camera or "unknown",
        "captured": bracket.reference.exif.datetime_original or "unknown",
    }


def describe_bracket(bracket: Bracket) -> dict[str, Any]:
    """The bracket part of the report (``--json``).

    ``stops``: exposure relative to the reference shot (what people are
    shown); ``ev100``: the absolute exposure value, log2(N²/t) −
    log2(ISO/100), None without shutter time, f-number and ISO; under
    ``--ev``, the reference's minus the stops given, and ``settings`` only
    where they agree (:func:`hdrmerge.exposure_text.shot_exposures`); ``ev``:
    hdrmerge's internal exposure, log2(t·ISO/N²) (larger = more light), whose
    differences are what the network uses.
    """
    from hdrmerge.exposure_text import relative_stops, shot_exposures

    ex = bracket.exposures
    stops = relative_stops(ex.ev, bracket.order[1])
    shots = shot_exposures([f.exif for f in bracket.frames], stops, bracket.order[1], ex.source)
    return {
        "inputs": [
            {
                "path": str(f.path),
                "format": f.kind,
                "stops": round(stops[i], 4),
                "settings": shots[i][1] or None,
                "ev100": None if (v := shots[i][0]) is None else round(v, 4),
                "ev": round(ex.ev[i], 4),
                "pixel_ev": None if ex.pixel_ev is None else round(ex.pixel_ev[i], 4),
                "ev_source": ex.shot_sources[i],  # where this shot's exposure came from
                "exposure_time": f.exif.exposure_time,
                "fnumber": f.exif.fnumber,
                "iso": f.exif.iso,
                "role": ("short", "reference", "long")[bracket.order.index(i)],
            }
            for i, f in enumerate(bracket.frames)
        ],
        "exposures": {
            "source": ex.source,
            "stops_sorted": [round(stops[i], 4) for i in bracket.order],
            "ev_sorted": [round(ex.ev[i], 4) for i in bracket.order],
            "relative": [round(r, 6) for r in bracket.relative_sorted()],
        },
        "response": bracket.response.describe(),
        "size": {"width": bracket.frames[0].size[1], "height": bracket.frames[0].size[0]},
    }


@dataclass
class Prepared:
    """A bracket decoded and checked, with its output paths: ready for the network."""

    bracket: Bracket
    output: Path
    targets: dict[str, Path]
    gain: float
    read_s: float
    warnings: list[str] = field(default_factory=list)  # stale temporaries removed, …


def prepare(
    paths: Sequence[Path],
    output: Path,
    options: FuseOptions,
    *,
    on_checked: Callable[[], None] = lambda: None,
) -> Prepared:
    """Every check on the user's input and the decoding: all that needs no network.

    Safe to run in a worker thread while the network works on another bracket.
    ``on_checked``: see :func:`load_bracket`.
    """
    t = time.perf_counter()
    check_shot_count(paths)  # before the outputs: a wrong count is the first thing to put right
    for p in paths:
        resolve(p)  # a symlink loop is the user's input problem, not a crash
    targets = output_paths(output, options)
    # First of all, since no flag can allow it: an output must not be an input.
    refuse_inputs_as_outputs(targets, paths)
    probe = StagedOutputs(overwrite=options.overwrite, replace_own=options.replace_own, protect=paths)
    if options.debug_dir is not None and options.debug_dir.exists() and not options.debug_dir.is_dir():
        raise InputError(f"--debug-dir {options.debug_dir} is not a directory")
    for dest in targets.values():
        if options.debug_dir is not None and dest.parent == options.debug_dir and not dest.parent.exists():
            continue  # created when writing, once the inputs are known to be good
        probe.check(dest)
    def checked() -> None:
        if options.normalize == "absolute":  # from the EXIF alone, before decoding
            from hdrmerge.preflight import check_absolute_exif

            check_absolute_exif(paths, options.ev)
        on_checked()

    bracket = load_bracket(
        paths, options.ev, response=options.response, on_checked=checked, max_pixels=options.max_pixels,
        jobs=options.jobs,
    )
    gain = normalisation_gain(bracket, options.normalize)
    warnings = [describe_removed(probe.removed)] if probe.removed else []
    return Prepared(bracket, output, targets, gain, time.perf_counter() - t, warnings)


def run_prepared(
    prepared: Prepared,
    options: FuseOptions,
    engine: Any,
    *,
    on_stage: Callable[[str], None] = lambda s: None,
    on_tile: Callable[[int, int], None] | None = None,
    load_s: float = 0.0,
) -> dict[str, Any]:
    """Run the network on a prepared bracket and write its outputs; return the report.

    ``on_stage(name)`` is told each stage; ``on_tile(done, total)`` each tile
    of the full-resolution stage (see :func:`hdrmerge.tiling.run_tiled`).
    """
    from hdrmerge.inference import merge

    bracket, output, targets, gain = prepared.bracket, prepared.output, prepared.targets, prepared.gain
    timings = {"read": prepared.read_s, "load_model": load_s}
    on_stage("merging")
    flow_scale = resolve_flow_scale(options.flow_scale, bracket.frames[0].size)
    guard, shadows = options.additions()
    result = merge(
        engine,
        bracket.sorted_frames,
        bracket.relative_sorted(),
        flow_scale=flow_scale,
        intermediates=options.debug_dir is not None,
        tile=options.tile,
        max_memory=options.max_memory,
        on_tile=on_tile,
        guard=guard,
        shadow_merge=shadows,
    )
    timings["network"] = result.seconds

    report = describe_bracket(bracket)
    report.update(
        {
            # name, sha256, source and, for a fine-tuned checkpoint, what it was tuned from.
            "model": {"arch": engine.model.arch, **engine.weights.describe()},
            "device": engine.device.type,
            "precision": engine.precision,
            # AFUNet has no flow network: no flow scale to report.
            "flow_scale": flow_scale if engine.has_intermediates else None,
            "tile": result.tile,
            "tiles": result.tiles,
            # What hdrmerge added to SAFNet's output (docs/quality.md); AFUNet gets neither.
            "additions": {"guard": guard and engine.has_intermediates, "shadow_merge": shadows and engine.has_intermediates},
            "normalize": options.normalize,
            "normalize_gain": gain,
            "warnings": [*prepared.warnings, *bracket.exposures.warnings],
        }
    )

    on_stage("writing")
    t = time.perf_counter()
    if options.debug_dir is not None:
        options.debug_dir.mkdir(parents=True, exist_ok=True)
    with StagedOutputs(
        overwrite=options.overwrite, replace_own=options.replace_own, protect=[f.path for f in bracket.frames]
    ) as staged:
        fmt = output_format(output)
        # The preview and debug images use the short-exposure domain: write
        # them first, then scale the (large) HDR in place instead of copying it.
        if "preview" in targets:
            ref = bracket.reference
            write_preview(staged.stage(targets["preview"]), result.hdr, source=ref.path, exif=ref.exif)
        if options.debug_dir is not None:
            flows = [result.flow0, result.flow2]
            scale = max(float(np.hypot(f[..., 0], f[..., 1]).max()) for f in flows) or 1.0  # type: ignore[index]
            write_png(staged.stage(targets["debug_flow0"]), flow_to_rgb(result.flow0, scale))  # type: ignore[arg-type]
            write_png(staged.stage(targets["debug_flow2"]), flow_to_rgb(result.flow2, scale))  # type: ignore[arg-type]
            write_png(staged.stage(targets["debug_mask0"]), result.mask0)  # type: ignore[arg-type]
            write_png(staged.stage(targets["debug_mask2"]), result.mask2)  # type: ignore[arg-type]
            write_png(staged.stage(targets["debug_hdr_m"]), mu_law(result.hdr_m))  # type: ignore[arg-type]
            write_png(staged.stage(targets["debug_hdr"]), mu_law(result.hdr))
            for name, mask in result.additions.items():  # where the guard / shadow merge acted
                if f"debug_{name}" in targets:
                    write_png(staged.stage(targets[f"debug_{name}"]), mask)
            report["flow_max_px"] = round(scale, 3)
        # The HDR is staged last, so it is renamed into place last: a kill
        # between two renames leaves a set without its HDR, which batch redoes.
        hdr_out = result.hdr
        hdr_out *= np.float32(gain)
        if fmt == "exr":
            write_exr(
                staged.stage(output), hdr_out, _exr_attributes(bracket, report),
                dtype=options.exr_dtype, compression=options.exr_compression,
            )
        elif fmt == "dng":
            from hdrmerge.dng import dng_metadata, write_dng

            write_dng(staged.stage(output), hdr_out, dng_metadata(bracket, report), dtype=options.dng_dtype)
        else:
            write_hdr(staged.stage(output), hdr_out, _hdr_header(bracket, report))
        staged.commit()
    timings["write"] = time.perf_counter() - t
    report["timings_s"] = {k: round(v, 4) for k, v in timings.items()}
    report["outputs"] = {k: str(v) for k, v in targets.items()}
    return report


def fuse_files(
    paths: Sequence[Path],
    output: Path,
    options: FuseOptions,
    get_engine: Callable[[], Any],
    *,
    on_stage: Callable[[str], None] = lambda s: None,
    on_tile: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Merge three shots into ``output`` (+ preview, debug images); return the report.

    ``get_engine`` loads the network (or returns one already loaded); it is
    called only after every input check has passed.
    """
    from hdrmerge.inference import preload

    on_stage("reading")
    # Decoding overlaps the import of torch and the network code (~1.5 s),
    # started only once the inputs have passed the cheap checks, so that a
    # missing file or an existing output is still reported at once.
    importing = preload()
    prepared = prepare(paths, output, options, on_checked=importing.start)
    on_stage("loading model")
    t = time.perf_counter()
    engine = get_engine()
    load_s = time.perf_counter() - t
    return run_prepared(prepared, options, engine, on_stage=on_stage, on_tile=on_tile, load_s=load_s)
