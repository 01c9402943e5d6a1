"""Exposures in photographers' words: stops from the reference shot and camera settings.

What people read: each shot's exposure as stops relative to the bracket's
reference shot (``-2``, ``0``, ``+2``) and its settings as the camera wrote
them (``1/1000 s f/5 ISO 100``). The absolute exposure value goes into
``--json`` as ``ev100``, with the usual sign: EV100 = log2(N²/t) − log2(ISO/100),
so a brighter scene needs a higher EV100 (sunny 16 is about 15); under ``--ev``
it follows the values given (:func:`shot_exposures`). hdrmerge's
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


#: Under ``--ev``, a shot's settings are shown only when its own EV100 is within this many stops of
#: the EV100 the merge gave it: half a step of the third-stop grid cameras write their settings on.
SETTINGS_AGREE_STOPS = 1 / 6


def shot_exposures(exifs: Sequence[Exif], stops: Sequence[float], reference: int, source: str) -> list[tuple[float | None, str]]:
    """Each shot's EV100 and the settings shown with it, as one bracket's outputs all state them.

    ``exifs`` and ``stops`` (from the reference shot, :func:`relative_stops`) in one order,
    ``reference`` an index into them, ``source`` where the exposures came from. Returns, in
    that order, (EV100 or None, settings text or '').

    From metadata (or the pixels), a shot's EV100 and settings are its own EXIF's
    (:func:`ev100`, :func:`settings_text`). Under ``--ev`` the values given are what was
    merged, and the EXIF may say otherwise (a camera that writes one exposure for every
    frame, or a wrong one): each EV100 is the reference shot's own, from its EXIF, minus the
    shot's stops (None for every shot when the reference lacks shutter time, f-number or
    ISO), and a shot's settings are shown only when its own EV100 agrees with that within
    :data:`SETTINGS_AGREE_STOPS` (the reference's always), so no output shows settings that
    contradict the exposures it was merged with.
    """
    own = [ev100(e) for e in exifs]
    if source != "--ev":
        return [(v, settings_text(e)) for v, e in zip(own, exifs)]
    anchor = own[reference]
    used = [None if anchor is None else anchor - s for s in stops]
    return [
        (u, settings_text(e) if i == reference or (u is not None and v is not None and abs(u - v) <= SETTINGS_AGREE_STOPS) else "")
        for i, (u, v, e) in enumerate(zip(used, own, exifs))
    ]


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
