"""Quality metrics of the HDR papers (spec section 9).

All take H×W×3 float arrays in the short-exposure linear domain (the papers'
ground truth lives in [0, 1] there).

* PSNR-l: PSNR of the linear values, peak 1, over all pixels and channels.
* PSNR-μ: the same after the μ-law ``T(H) = log(1+μH)/log(1+μ)``, μ = 5000.
* SSIM-l / SSIM-μ: the structural similarity of Wang et al. (2004) on the
  linear / μ-law values: 11×11 Gaussian window with σ = 1.5, K1 = 0.01,
  K2 = 0.03, data range 1, computed per channel and averaged.
"""

from __future__ import annotations

import math

import numpy as np

from hdrmerge.writing import mu_law


def psnr(pred: np.ndarray, gt: np.ndarray, peak: float = 1.0) -> float:
    """PSNR in dB over all pixels and channels (inf for identical images)."""
    mse = float(np.mean((pred.astype(np.float64) - gt.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def psnr_mu(pred: np.ndarray, gt: np.ndarray) -> float:
    """PSNR-μ in dB: :func:`psnr` after the μ-law (μ = 5000) of both images."""
    return psnr(mu_law(pred), mu_law(gt))


def ssim(pred: np.ndarray, gt: np.ndarray, data_range: float = 1.0) -> float:
    """Mean SSIM over pixels and channels (Gaussian window 11, σ 1.5)."""
    import cv2

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for ch in range(pred.shape[2]):
        x = pred[..., ch].astype(np.float64)
        y = gt[..., ch].astype(np.float64)
        blur = lambda a: cv2.GaussianBlur(a, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)  # noqa: E731
        mx, my = blur(x), blur(y)
        sxx = blur(x * x) - mx * mx
        syy = blur(y * y) - my * my
        sxy = blur(x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
        values.append(float(s.mean()))
    return float(np.mean(values))


def all_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """PSNR-μ, PSNR-l, SSIM-μ and SSIM-l of ``pred`` against ``gt``."""
    tp, tg = mu_law(pred), mu_law(gt)
    return {
        "psnr_mu": psnr(tp, tg),
        "psnr_l": psnr(pred, gt),
        "ssim_mu": ssim(tp, tg),
        "ssim_l": ssim(pred, gt),
    }
