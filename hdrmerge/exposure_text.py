"""Exposures in photographers' words: stops from the reference shot and camera settings.

What people read: each shot's exposure as stops relative to the bracket's
reference shot (``-2``, ``0``, ``+2``) and its settings as the camera wrote
them (``1/1000 s f/5 ISO 100``). The absolute exposure value goes into
``--json`` as ``ev100``, with the usual sign: EV100 = log2(N²/t) − log2(ISO/100),
so a brighter scene needs a higher EV100 (sunny 16 is about 15). hdrmerge's
internal ``ev`` (log2 of t·ISO/N², larger = more light gathered) is its
negative, which is why it is not shown to people.
"""

from __future__ import annotations

from collections.abc import Sequence

from hdrmerge.reading import Exif


def stops_text(stops: float) -> str:
    """``+2``, ``0``, ``-0.67``: a signed number of stops, two decimals at most."""
    if abs(stops) < 0.005:
        return "0"
    return f"{stops:+.2f}".rstrip("0").rstrip(".")


def shutter_text(seconds: float) -> str:
    """``1/1000 s``, ``1/4 s``, ``0.3 s``, ``2 s``, ``30 s``: as cameras print shutter times."""
    if seconds >= 1.0 or seconds <= 0.0:
        return f"{seconds:g} s"
    inverse = 1.0 / seconds
    if abs(inverse - round(inverse)) <= 0.02 * inverse:
        return f"1/{round(inverse)} s"
    return f"{seconds:.2g} s"


def settings_text(exif: Exif) -> str:
    """``1/1000 s f/5 ISO 100``; the parts the file lacks are left out ('' if all)."""
    parts = []
    if exif.exposure_time:
        parts.append(shutter_text(exif.exposure_time))
    if exif.fnumber:
        parts.append(f"f/{exif.fnumber:g}")
    if exif.iso:
        parts.append(f"ISO {exif.iso:g}")
    return " ".join(parts)


def shot_settings_text(settings: str | None, shot_source: str, source: str) -> str | None:
    """What follows a shot's stops in the record line: its settings, or ``from the pixels``
    for the shot of a bracket with partial EXIF whose exposure the pixels gave."""
    return "from the pixels" if source == "exif+pixels" and shot_source == "pixels" else settings


def ev100(exif: Exif) -> float | None:
    """EV100 = log2(N²/t) − log2(ISO/100) from the camera's nominal settings, or None.

    Uses the values snapped to the third/half-stop grid
    (:func:`hdrmerge.exposure.exif_exposure`), so 1/250 s f/5 ISO 100 gives
    12.67, not 12.61.
    """
    from hdrmerge.exposure import exif_exposure

    e = exif_exposure(exif)
    if e is None or e.aperture_stops is None or e.iso_stops is None:
        return None
    return e.aperture_stops - e.time_stops - e.iso_stops


def relative_stops(ev: Sequence[float], reference: int) -> list[float]:
    """Each exposure minus the reference's, in stops (``ev`` as log2 of light gathered)."""
    return [e - ev[reference] for e in ev]


def exposures_text(stops: Sequence[float], settings: Sequence[str | None], source: str) -> str:
    """``-2 (1/1000 s f/5 ISO 100), 0 (1/250 s …), +2 (…) stops from the reference (exif)``.

    In the order given; ``settings`` as :func:`settings_text` gives them ('' or
    None: left out); ``source``: where the exposures came from. The words of
    every merge's record line and of the Radiance header.
    """
    shots = (f"{stops_text(s)} ({text})" if text else stops_text(s) for s, text in zip(stops, settings))
    return f"{', '.join(shots)} stops from the reference ({source})"


def size_text(n_bytes: int) -> str:
    """``12.3 MB``: a file size in decimal units, as file managers show it."""
    for unit in ("B", "kB", "MB", "GB"):
        if n_bytes < 1000 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000  # type: ignore[assignment]
    return f"{n_bytes:.1f} GB"
