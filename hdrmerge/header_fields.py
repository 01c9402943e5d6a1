"""hdrmerge's own metadata fields: the EXR header's ``hdrmerge:*`` attributes and the DNG's XMP.

One table for both formats, so that they say the same things under the same
names (docs/formats.md lists them). Exposures are given as photographers
read them and as ``--json`` gives them (:mod:`hdrmerge.exposure_text`):
``stops`` from the reference shot (``-2, 0, 2``) and the camera's ``ev100``.
``ev`` keeps hdrmerge's internal exposure, log2(t·ISO/N²) (larger = more
light gathered; −EV100 when it comes from EXIF), under its old name for
scripts that read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hdrmerge.pipeline import Bracket


def finetuned_from(model: Mapping[str, Any]) -> str | None:
    """``fine-tuned from safnet-s sha256:…`` for a report's fine-tuned model, else None."""
    base = model.get("finetuned_from")
    return None if not base else f"fine-tuned from {base['name']} sha256:{base['sha256']}"


def merge_fields(bracket: Bracket, report: Mapping[str, Any]) -> dict[str, Any]:
    """Field name (camelCase, no prefix) → str, float or a list of them; None: leave the field out.

    ``report``: the run's report (``--json``). Per-shot lists are short → long,
    like ``sources``; exposures in stops, rounded to 4 decimals as in ``--json``.
    ``ev100`` only when every shot has one (:func:`hdrmerge.exposure_text.shot_exposures`:
    its EXIF's shutter time, f-number and ISO, or under ``--ev`` the reference's and the stops).
    """
    from hdrmerge import __version__
    from hdrmerge.exposure_text import relative_stops, shot_exposures

    ex = bracket.exposures
    stops = relative_stops(ex.ev, bracket.order[1])
    shots = shot_exposures([f.exif for f in bracket.frames], stops, bracket.order[1], ex.source)
    ev100s = [shots[i][0] for i in bracket.order]
    model = report["model"]
    return {
        "sources": [f.path.name for f in bracket.sorted_frames],
        "stops": [round(stops[i], 4) for i in bracket.order],
        "ev100": None if None in ev100s else [round(v, 4) for v in ev100s if v is not None],
        "ev": [round(float(ex.ev[i]), 4) for i in bracket.order],
        "evSource": ex.source,
        "reference": bracket.reference.path.name,
        "model": model["arch"],
        "weights": model["name"] or "unregistered",
        "weightsSha256": model["sha256"],
        "weightsFinetunedFrom": finetuned_from(model),
        "normalize": report["normalize"],
        "normalizeGain": float(report["normalize_gain"]),
        # AFUNet estimates no flows: the field is left out.
        "flowScale": None if report["flow_scale"] is None else float(report["flow_scale"]),
        "response": bracket.response.name,
        "responseSource": bracket.response.source,
        "responseDetail": bracket.response.detail or None,
        "version": __version__,
    }
