"""WLS smoothness weights on the CPU (SPEC section 2, Eq. 3)."""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from . import workspace
from .stencil import _NJ


@nb.njit(parallel=True, **_NJ)
def _log_luminance(img, delta, out):
    H, W = img.shape
    for y in nb.prange(H):
        for x in range(W):
            out[y, x] = math.log(np.float64(img[y, x]) + delta)


@nb.njit(inline="always", **_NJ)
def _weight(d, lam, alpha, eps):
    # the log difference is taken in float64 (it cancels); its power only needs float32
    if d == 0.0:
        return lam / eps
    p = math.exp(np.float32(alpha) * math.log(np.float32(d)))
    return lam / (np.float64(p) + eps)


@nb.njit(parallel=True, **_NJ)
def _edge_weights(lum, lam, alpha, eps, cn, cw):
    H, W = lum.shape
    for y in nb.prange(H):
        for x in range(W):
            cw[y, x] = _weight(abs(lum[y, x] - lum[y, x - 1]), lam, alpha, eps) if x > 0 else 0.0
            cn[y, x] = _weight(abs(lum[y, x] - lum[y - 1, x]), lam, alpha, eps) if y > 0 else 0.0


def edge_weights(img: np.ndarray, lam: float, alpha: float, eps: float, delta: float,
                 cn: np.ndarray, cw: np.ndarray) -> None:
    """cn[y, x] couples (y, x) to (y-1, x), cw[y, x] to (y, x-1); zero on the first row/column.

    ``w = lam / (|l_i - l_j|^alpha + eps)`` with ``l = log(img + delta)``.
    """
    lum = workspace.empty(img.shape)
    _log_luminance(img, float(delta), lum)
    _edge_weights(lum, float(lam), float(alpha), float(eps), cn, cw)
    workspace.give_back(lum)
