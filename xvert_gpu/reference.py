"""Float64 reference of SPEC section 2 with a direct sparse solve (scipy): the tests' truth.

Slow and memory-hungry by design (what Farbman's MATLAB code does): use it on
images up to about 1024^2.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spl


def weights(x: np.ndarray, lam: float = 1.0, alpha: float = 1.2, eps: float = 1e-4,
            delta: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    lum = np.log(np.asarray(x, np.float64) + delta)
    wx = lam / (np.abs(np.diff(lum, axis=1)) ** alpha + eps)
    wy = lam / (np.abs(np.diff(lum, axis=0)) ** alpha + eps)
    return wx, wy


def system_matrix(wx: np.ndarray, wy: np.ndarray) -> sp.csc_matrix:
    """``I + L_w`` for an (H, W) grid with Neumann borders."""
    H, W = wx.shape[0], wy.shape[1]
    idx = np.arange(H * W).reshape(H, W)
    i = np.concatenate([idx[:, :-1].ravel(), idx[:-1, :].ravel()])
    j = np.concatenate([idx[:, 1:].ravel(), idx[1:, :].ravel()])
    w = np.concatenate([wx.ravel(), wy.ravel()])
    off = sp.coo_matrix((-w, (i, j)), shape=(H * W, H * W))
    diag = np.ones(H * W)
    np.add.at(diag, i, w)
    np.add.at(diag, j, w)
    return (off + off.T + sp.diags(diag)).tocsc()


def wls_smooth(x: np.ndarray, lam: float = 1.0, alpha: float = 1.2, eps: float = 1e-4,
               delta: float = 1e-4) -> np.ndarray:
    """Exact WLS of one (H, W) image on [0, 1], float64."""
    x = np.asarray(x, np.float64)
    if lam == 0:
        return x.copy()
    A = system_matrix(*weights(x, lam, alpha, eps, delta))
    # minimum-degree ordering on A + A^T suits the symmetric grid system (2x faster than COLAMD)
    return spl.spsolve(A, x.ravel(), permc_spec="MMD_AT_PLUS_A").reshape(x.shape)


def preprocess(x: np.ndarray, lam: float = 1.0, alpha: float = 1.2, eps: float = 1e-4,
               delta: float = 1e-4, e_floor: float = 1e-3) -> dict[str, np.ndarray]:
    """Eqs. 1-6 in float64 for one (H, W) image on [0, 1]."""
    x = np.asarray(x, np.float64)
    g = wls_smooth(x, lam, alpha, eps, delta)
    e = np.maximum(x.mean() - x + g, e_floor)
    xp = x / e
    hfc = xp - wls_smooth(xp, lam, alpha, eps, delta)
    return {"x": x, "g": g, "e": e, "xp": xp, "hfc": hfc}


def detail_error(g: np.ndarray, exact: np.ndarray, x: np.ndarray) -> float:
    """``||g - g_exact|| / ||x - g_exact||``: accuracy relative to the detail the filter removes."""
    exact = np.asarray(exact, np.float64)
    return float(np.linalg.norm(np.asarray(g, np.float64) - exact)
                 / np.linalg.norm(np.asarray(x, np.float64) - exact))
