"""Exposure of each shot in stops (EV), from EXIF, from the user, or from the pixels.

Relative exposure is ``t · ISO / N²`` (shutter time in s, sensitivity, f-number);
its log2 is the frame's EV here, larger = brighter. Only differences matter.

Cameras print nominal values ("1/60 s" is really 2⁻⁶ s; "f/5.6" is 2^2.5), so
each factor is snapped to the nearest point of the third- or half-stop grid,
whichever is nearer. The APEX tags (ShutterSpeedValue Tv = −log2 t,
ApertureValue Av = 2·log2 N) carry the intended value more exactly and are
preferred when present.

Order of sources: ``--ev`` → EXIF times (t, ISO, N) → EXIF ExposureBiasValue →
EXIF times of some shots, the others placed among them by the pixels → an
estimate from the pixels. Every source except the pixels is cross-checked
against the pixel estimate; a disagreement over a third of a stop is reported,
an order the pixels reverse by more than :data:`REVERSED_STOPS` is refused.

An ISO or f-number that only some shots record is taken from the others when
they agree on it (reported); when they differ it is unknown, and the next
source is used. Exposures spanning more than :data:`MAX_SPAN_STOPS` are refused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from hdrmerge.errors import InputError
from hdrmerge.reading import GAMMA, Exif, Frame

#: Disagreement between metadata and pixels worth a warning, in stops.
CROSS_CHECK_STOPS = 1.0 / 3.0
#: A pair whose metadata says one way and whose pixels say the other by more
#: than this (stops) is refused: honest brackets never come near it (the
#: worst pair of the real brackets in docs/exposure.md, claimed +0.33, reads
#: -0.06 in the pixels), while --ev given in the wrong order reads -2 or so.
REVERSED_STOPS = 0.5
#: Two frames closer than this (stops) count as the same exposure.
SAME_EXPOSURE_STOPS = 0.1
#: Pixels counted as well exposed when their LDR value is inside this range.
_WELL_EXPOSED = (0.06, 0.92)
_MIN_PIXELS = 200
#: The widest bracket accepted, in stops from the shortest to the longest shot.
#: Camera auto-bracketing spans at most about 12 stops (three shots 6 EV
#: apart); a wider span is a typo in --ev or broken metadata (an
#: ExposureBiasValue of 1000 EV), and would overflow the output's floats.
MAX_SPAN_STOPS = 20.0


def snap_stops(x: float) -> float:
    """``x`` (stops) moved to the nearest nominal value: third- or half-stop grid.

    Only moves values within 0.12 stop of a grid point; others stay as they are.
    """
    third = round(x * 3.0) / 3.0
    half = round(x * 2.0) / 2.0
    best = third if abs(third - x) <= abs(half - x) else half
    return best if abs(best - x) <= 0.12 else x


@dataclass(frozen=True)
class ExifExposure:
    """The factors of one frame's exposure, snapped; log2 of each, in stops."""

    time_stops: float  # log2 t
    iso_stops: float | None  # log2(ISO / 100)
    aperture_stops: float | None  # log2 N² = Av

    @property
    def ev(self) -> float:
        return self.time_stops + (self.iso_stops or 0.0) - (self.aperture_stops or 0.0)


def exif_exposure(exif: Exif) -> ExifExposure | None:
    """Snapped exposure factors from one frame's EXIF, or None without a shutter time."""
    if exif.shutter_apex is not None and -20 < exif.shutter_apex < 30:
        time_stops = snap_stops(-exif.shutter_apex)
    elif exif.exposure_time is not None:
        time_stops = snap_stops(math.log2(exif.exposure_time))
    else:
        return None
    if exif.aperture_apex is not None and 0 <= exif.aperture_apex < 20:
        aperture = snap_stops(exif.aperture_apex)
    elif exif.fnumber is not None:
        aperture = snap_stops(2.0 * math.log2(exif.fnumber))
    else:
        aperture = None
    iso = snap_stops(math.log2(exif.iso / 100.0)) if exif.iso else None
    return ExifExposure(time_stops, iso, aperture)


_FACTORS = (("iso_stops", "ISO"), ("aperture_stops", "f-number"))


def _factor_text(field_name: str, stops: float, exif: Exif) -> str:
    """How a factor reads on a camera: ``ISO 400``, ``f/5.6``."""
    if field_name == "iso_stops":
        return f"ISO {exif.iso:g}" if exif.iso else f"ISO {100.0 * 2.0**stops:.0f}"
    return f"f/{exif.fnumber:g}" if exif.fnumber else f"f/{2.0 ** (stops / 2.0):.1f}"


def complete_factors(
    exposures: Sequence[ExifExposure], frames: Sequence[Frame]
) -> tuple[list[ExifExposure] | None, list[str]]:
    """Fill an ISO or f-number that some shots lack from the shots that have it.

    A factor missing in every shot cancels out of the relative exposures and
    is left alone. One missing in some shots is taken from the others when
    they all agree on it (a bracket usually varies the shutter time only);
    when they differ it is unknown, and ``None`` is returned with the reason,
    so that the caller falls back to the exposure bias or the pixels.
    Returns the completed factors (input order) and notes for the user.
    """
    filled = list(exposures)
    notes: list[str] = []
    for name, label in _FACTORS:
        values = [getattr(e, name) for e in exposures]
        missing = [i for i, v in enumerate(values) if v is None]
        have = [i for i, v in enumerate(values) if v is not None]
        if not missing or not have:
            continue
        lacking = ", ".join(frames[i].path.name for i in missing)
        if len({values[i] for i in have}) > 1:
            return None, [f"{label} missing in the EXIF of {lacking} and not the same in the other shots"]
        donor = have[0]
        for i in missing:
            filled[i] = replace(filled[i], **{name: values[donor]})
        text = _factor_text(name, values[donor], frames[donor].exif)  # type: ignore[arg-type]
        notes.append(f"{label} missing in the EXIF of {lacking}; taken from the other shots ({text})")
    return filled, notes


def _thumbnail(frame: Frame, max_side: int = 512) -> np.ndarray:
    """Every k-th pixel (LDR values in [0, 1]) so the longer side is <= ``max_side``."""
    h, w = frame.size
    step = max(1, int(math.ceil(max(h, w) / max_side)))
    small = frame.pixels[::step, ::step]
    return small.astype(np.float32) / np.float32(frame.scale)


def pixel_ev_difference(a: Frame, b: Frame) -> tuple[float, int]:
    """log2 of how much brighter ``b`` is exposed than ``a``, from pixels both show well.

    Robust: the median of per-pixel log ratios of linearised values over pixels
    well exposed in both frames (all channels inside 6%-92%). Returns the
    difference in stops and the number of pixels it rests on.
    """
    la, lb = _thumbnail(a), _thumbnail(b)
    if la.shape != lb.shape:
        raise InputError(f"{a.path.name} and {b.path.name} differ in size")
    lo, hi = _WELL_EXPOSED
    ok = (la.min(axis=2) > lo) & (la.max(axis=2) < hi) & (lb.min(axis=2) > lo) & (lb.max(axis=2) < hi)
    n = int(ok.sum())
    if n < _MIN_PIXELS:
        return float("nan"), n
    ya = (la[ok] ** GAMMA).mean(axis=1)
    yb = (lb[ok] ** GAMMA).mean(axis=1)
    return float(np.median(np.log2(yb) - np.log2(ya))), n


def _brightness(frame: Frame) -> float:
    lin = _thumbnail(frame, 256) ** GAMMA
    return float(lin.mean())


def estimate_from_pixels(frames: Sequence[Frame]) -> list[float]:
    """EV of each frame (first = 0 reference point) estimated from the pixels alone.

    Frames are chained from darkest to brightest, each pair estimated from
    pixels well exposed in both. InputError if a pair shares too few such pixels.
    """
    order = sorted(range(len(frames)), key=lambda i: _brightness(frames[i]))
    evs = [0.0] * len(frames)
    for prev, cur in zip(order, order[1:]):
        d, n = pixel_ev_difference(frames[prev], frames[cur])
        if math.isnan(d):
            raise InputError(
                f"cannot estimate the exposures of {frames[prev].path.name} and {frames[cur].path.name} "
                f"from their pixels (only {n} pixels are well exposed in both); pass --ev"
            )
        evs[cur] = evs[prev] + d
    base = evs[order[0]]
    return [e - base for e in evs]


def camera_rendered(frame: Frame) -> bool:
    """Whether a camera's own JPEG engine (with its S-shaped tone curve) made the file."""
    return frame.kind == "jpeg" and frame.exif.make is not None


#: How messages name each source of exposures.
_LABEL = {
    "--ev": "--ev",
    "exif": "EXIF",
    "exif-bias": "EXIF exposure bias",
    "exif+pixels": "EXIF",
    "pixels": "the pixel estimate",
}
#: What a user can do when a source disagrees with the pixels: one who gave
#: --ev is not told to give --ev.
_CHECK_FIX = {
    "--ev": "check the values",
    "exif": "check the metadata or pass --ev",
    "exif-bias": "check the metadata or pass --ev",
    "exif+pixels": "check the metadata or pass --ev",
}


def check_order(
    names: Sequence[str], ev: Sequence[float], pixel_ev: Sequence[float], source: str, *, suggest: bool = True
) -> None:
    """InputError where the pixels reverse the order of two shots that ``ev`` puts next to each other.

    A pair counts as reversed when the shot ``ev`` calls brighter is more than
    :data:`REVERSED_STOPS` darker in the pixels. A camera's tone curve
    stretches the pixel-measured steps but never turns them round, so this
    needs no allowance for it. With ``suggest`` (``ev`` covers every input)
    the message gives the values in the order the pixels give (for EXIF, in
    stops from the middle shot).
    """
    order = sorted(range(len(ev)), key=lambda k: ev[k])
    for i, j in zip(order, order[1:]):
        seen = pixel_ev[j] - pixel_ev[i]
        if seen >= -REVERSED_STOPS:
            continue
        values = sorted(ev)
        if source != "--ev":
            values = [v - values[len(values) // 2] for v in values]
        fitting = [0.0] * len(ev)
        for rank, k in enumerate(sorted(range(len(ev)), key=lambda k: pixel_ev[k])):
            fitting[k] = values[rank]
        suggestion = ",".join(f"{round(v, 2) + 0.0:g}" for v in fitting)
        fix = "give --ev in input order" if source == "--ev" else "the metadata is wrong; pass --ev"
        raise InputError(
            f"{_LABEL[source]} puts {names[j]} {ev[j] - ev[i]:.2f} stops above {names[i]}, but its pixels are "
            f"{-seen:.2f} stops darker; {fix}" + (f" (--ev={suggestion} fits the pixels)" if suggest else "")
        )


def place_among_known(
    frames: Sequence[Frame], exif: Sequence[ExifExposure | None], pixel_ev: Sequence[float]
) -> tuple[list[float], list[int], list[str]] | None:
    """EXIF exposures of the shots that have them, the others placed among them by the pixels.

    Needs at least two shots with a shutter time (and, among them, an ISO and
    f-number that :func:`complete_factors` can settle). A shot without one
    gets the EV of the known shot nearest to it in the pixels, plus the pixel
    step between them scaled by the known shots' ratio of EXIF to pixel span
    (a camera's tone curve stretches pixel steps by a common factor; kept
    within 0.5-2). Returns the EVs (input order), the indices of the known
    shots and notes for the user; None when this cannot be done.
    """
    known = [i for i, e in enumerate(exif) if e is not None]
    if len(known) < 2:
        return None
    filled, notes = complete_factors([exif[i] for i in known], [frames[i] for i in known])  # type: ignore[misc]
    if filled is None:
        return None
    ev: list[float] = [0.0] * len(frames)
    for i, e in zip(known, filled):
        ev[i] = e.ev
    lo = min(known, key=lambda k: ev[k])
    hi = max(known, key=lambda k: ev[k])
    seen = pixel_ev[hi] - pixel_ev[lo]
    gain = min(2.0, max(0.5, (ev[hi] - ev[lo]) / seen)) if seen > 0 else 1.0
    missing = [i for i in range(len(frames)) if i not in known]
    for m in missing:
        k = min(known, key=lambda k: abs(pixel_ev[k] - pixel_ev[m]))
        ev[m] = ev[k] + gain * (pixel_ev[m] - pixel_ev[k])
    names = [f.path.name for f in frames]
    lacking = ", ".join(names[m] for m in missing)
    notes.append(
        f"no exposure metadata in {lacking}; its exposure estimated from the pixels relative to "
        f"{' and '.join(names[k] for k in known)} (pass --ev to set it)"
    )
    return ev, known, notes


def cross_check(
    frames: Sequence[Frame], ev: Sequence[float], pixel_ev: Sequence[float], source: str, *, tone_curve_known: bool = False
) -> list[str]:
    """Warnings where the metadata and the pixels disagree by more than a third of a stop.

    Where the frames were linearised with a known camera response
    (``tone_curve_known``, :mod:`hdrmerge.response`) and for gamma-2.2 data
    (RAW, TIFF, JPEGs not rendered by a camera) each adjacent pair is
    compared directly. A camera's JPEG engine adds an S-shaped
    tone curve that stretches every pixel-measured interval by a common factor
    (30-40% on the brackets in docs/exposure.md), so there the pixel estimate
    is first scaled to the metadata's span; the middle frame is then compared,
    and the span itself only has to agree within a factor of two.
    """
    label = _LABEL[source]
    fix = _CHECK_FIX[source]
    names = [f.path.name for f in frames]
    order = sorted(range(len(ev)), key=lambda k: ev[k])
    out: list[str] = []
    span = ev[order[-1]] - ev[order[0]]
    seen_span = pixel_ev[order[-1]] - pixel_ev[order[0]]
    if not tone_curve_known and any(camera_rendered(f) for f in frames) and span > 0:
        lo, hi = order[0], order[-1]
        if not 0.5 <= seen_span / span <= 2.0:
            out.append(
                f"{label} puts {names[hi]} {span:+.2f} EV from {names[lo]}, the pixels say {seen_span:+.2f} EV "
                f"(beyond what a camera tone curve explains); {fix}"
            )
            return out
        gain = span / seen_span
        for mid in order[1:-1]:
            claimed = ev[mid] - ev[lo]
            seen = (pixel_ev[mid] - pixel_ev[lo]) * gain
            if abs(claimed - seen) > CROSS_CHECK_STOPS:
                out.append(
                    f"{label} puts {names[mid]} {claimed:+.2f} EV from {names[lo]}, the pixels say {seen:+.2f} EV "
                    f"(after allowing for the camera's tone curve); {fix}"
                )
        return out
    for i, j in zip(order, order[1:]):
        claimed = ev[j] - ev[i]
        seen = pixel_ev[j] - pixel_ev[i]
        if abs(claimed - seen) > CROSS_CHECK_STOPS:
            out.append(
                f"{label} puts {names[j]} {claimed:+.2f} EV from {names[i]}, the pixels say {seen:+.2f} EV; {fix}"
            )
    return out


@dataclass
class Exposures:
    """The EV of each input frame (in input order) and where it came from.

    ``source``: ``--ev``, ``exif`` (t·ISO/N²), ``exif-bias`` (ExposureBiasValue),
    ``exif+pixels`` (EXIF for some shots, the others placed by the pixels) or
    ``pixels``. ``shot_sources``: where each frame's EV came from (input
    order; ``exif`` or ``pixels`` under ``exif+pixels``, else ``source``).
    ``pixel_ev``: the pixel estimate, when it could be made.
    ``warnings``: human-readable notes for stderr and --json.
    """

    ev: list[float]
    source: str
    pixel_ev: list[float] | None = None
    warnings: list[str] = field(default_factory=list)
    shot_sources: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.shot_sources:
            self.shot_sources = [self.source] * len(self.ev)

    @property
    def order(self) -> list[int]:
        """Input indices sorted short → long."""
        return sorted(range(len(self.ev)), key=lambda i: self.ev[i])

    def relative(self) -> list[float]:
        """``2 ** (ev − min ev)`` for each frame, in input order."""
        lo = min(self.ev)
        return [2.0 ** (e - lo) for e in self.ev]


def check_span(names: Sequence[str], ev: Sequence[float], source: str) -> None:
    """InputError if the exposures span more than :data:`MAX_SPAN_STOPS` (or are not finite)."""
    label = _LABEL[source]
    fix = "check the values" if source == "--ev" else "the metadata is wrong; pass --ev"
    for name, e in zip(names, ev):
        if not math.isfinite(e):
            raise InputError(f"{label} gives {name} an exposure of {e} EV; {fix}")
    lo = min(range(len(ev)), key=lambda k: ev[k])
    hi = max(range(len(ev)), key=lambda k: ev[k])
    span = ev[hi] - ev[lo]
    if span > MAX_SPAN_STOPS:
        raise InputError(
            f"{label} puts {names[hi]} {span:.2f} stops above {names[lo]}, but a bracket spans at most "
            f"{MAX_SPAN_STOPS:g} stops; {fix}"
        )


def derive_exposures(
    frames: Sequence[Frame], ev_override: Sequence[float] | None = None, *, tone_curve_known: bool = False
) -> Exposures:
    """EV of each frame by the order of sources in this module's docstring.

    ``frames`` are in the gamma-2.2 domain; ``tone_curve_known``: they were
    linearised with a known camera response (see :func:`cross_check`).
    """
    names = [f.path.name for f in frames]
    try:
        pixel_ev: list[float] | None = estimate_from_pixels(frames)
        pixel_error = None
    except InputError as exc:
        pixel_ev, pixel_error = None, str(exc)

    warnings: list[str] = []
    checked = list(range(len(frames)))  # the frames whose EV the pixels check
    shot_sources: list[str] = []
    if ev_override is not None:
        if len(ev_override) != len(frames):
            raise InputError(f"--ev has {len(ev_override)} values for {len(frames)} inputs; give one per input, in input order")
        ev, source = [float(e) for e in ev_override], "--ev"
    else:
        exif = [exif_exposure(f.exif) for f in frames]
        biases = [f.exif.exposure_bias for f in frames]
        filled, notes = complete_factors(exif, frames) if all(e is not None for e in exif) else (None, [])  # type: ignore[arg-type]
        placed = None if filled is not None or pixel_ev is None else place_among_known(frames, exif, pixel_ev)
        if filled is not None:
            ev, source = [e.ev for e in filled], "exif"
            warnings.extend(notes)
        elif all(b is not None for b in biases) and len({round(b, 2) for b in biases}) == len(biases):  # type: ignore[arg-type]
            ev, source = [float(b) for b in biases], "exif-bias"  # type: ignore[arg-type]
            warnings.extend(f"{n}; exposures taken from the EXIF exposure bias" for n in notes)
        elif placed is not None:
            ev, checked, place_notes = placed
            source = "exif+pixels"
            shot_sources = ["exif" if i in checked else "pixels" for i in range(len(frames))]
            warnings.extend(place_notes)
        elif pixel_ev is not None:
            ev, source = list(pixel_ev), "pixels"
            partial = [n for n, e in zip(names, exif) if e is not None]
            why = notes[0] if notes else "no exposure metadata" if not partial else "exposure metadata in only some files"
            warnings.append(f"{why}; exposures estimated from the pixels (pass --ev to set them)")
        else:
            raise InputError(f"no exposure metadata in the files and {pixel_error[0].lower()}{pixel_error[1:]}" if pixel_error else "no exposure metadata; pass --ev")

    check_span(names, ev, source)
    exposures = Exposures(ev, source, pixel_ev, warnings, shot_sources)
    order = exposures.order
    # The same exposure twice cannot make a bracket.
    for a, b in zip(order, order[1:]):
        if ev[b] - ev[a] < SAME_EXPOSURE_STOPS:
            src = {
                "--ev": "from --ev", "exif": "from EXIF", "exif-bias": "from EXIF exposure bias", "pixels": "estimated from the pixels"
            }[exposures.shot_sources[b]]
            fix = "check the --ev values" if source == "--ev" else "pass --ev if the metadata is wrong"
            raise InputError(
                f"{names[a]} and {names[b]} have the same exposure ({ev[a]:+.2f} EV, {src}); "
                f"a bracket needs three different exposures ({fix})"
            )
    if source != "pixels" and pixel_ev is not None:
        # Only the frames whose EV the metadata gave: the others were placed by the pixels.
        sub = [frames[i] for i in checked]
        sub_ev, sub_pixel = [ev[i] for i in checked], [pixel_ev[i] for i in checked]
        check_order([f.path.name for f in sub], sub_ev, sub_pixel, source, suggest=len(sub) == len(frames))
        # With partial EXIF the response was fitted to the pixels alone (response.metadata_ev
        # needs every shot's exposure), so its steps may be stretched like a camera's tone curve's.
        known = tone_curve_known and source != "exif+pixels"
        warnings.extend(cross_check(sub, sub_ev, sub_pixel, source, tone_curve_known=known))
    return exposures
