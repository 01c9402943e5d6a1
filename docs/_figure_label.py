"""The caption band of the figure scripts docs/make_*.py (they import it from their own folder)."""

from __future__ import annotations

import cv2
import numpy as np


def label(img: np.ndarray, text: str, *, band_px: int = 22, font_scale: float = 0.5,
          text_at: tuple[int, int] = (6, 16)) -> np.ndarray:
    """H×W×3 RGB uint8 → a new H×W×3 BGR uint8 (for cv2.imwrite) with ``text`` in white on a black
    band ``band_px`` tall across the top; ``text_at`` is the text's baseline origin (x, y) in px."""
    out = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR)
    cv2.rectangle(out, (0, 0), (out.shape[1], band_px), (0, 0, 0), -1)
    cv2.putText(out, text, text_at, cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out
