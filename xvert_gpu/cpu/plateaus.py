"""Plateau correction: the constant of every strongly coupled pixel run, relaxed as one unknown.

A quantised radiograph is a mosaic of plateaus: connected runs of (nearly)
equal pixels, coupled to each other by the largest weight the filter gives
(``lam / eps``) and to their surroundings by weights up to 1e4 times weaker.
Each plateau's constant is a mode of tiny energy. Line smoothing cannot
reduce it when the plateau meanders across rows and columns, and the
black-box coarse grid cannot represent it when no coarse point lies on it:
those modes are what bounded the plain V-cycle at 35-48 iterations.

With ``P`` the piecewise-constant map from plateaus (of two or more pixels)
to pixels and ``D`` the diagonal of the Galerkin operator ``P^T A P``, one
Jacobi step ``u += P D^-1 P^T (f - A u)`` before and after the V-cycle
relaxes all plateau constants at the cost of about one operator application,
and halves the iteration count at every size (see ``benchmarks/preconditioners.md``).
Applied symmetrically it keeps the preconditioner symmetric.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from . import workspace
from .stencil import _NJ, apply_row

STRONG = 0.5  # a coupling is strong above this fraction of lam / eps (the largest weight)
# row chunks of the plateau sums, each with its own array of per-plateau sums: one per thread
# would cost an image's worth for every 5 threads at 2048^2 (16 threads put a solve over the
# 30 images issue 2 allows), and the sums are bound by memory beyond a few threads anyway
MAX_PARTS = 4


@nb.njit(inline="always", **_NJ)
def _find(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]  # path halving
        i = parent[i]
    return i


@nb.njit(inline="always", **_NJ)
def _union(parent, i, j):
    a = _find(parent, i)
    b = _find(parent, j)
    if a != b:
        parent[max(a, b)] = min(a, b)  # the smaller index is the root: roots precede members


@nb.njit(inline="always", **_NJ)
def _strong_at(cn, cw, strong, y, x, H, W):
    """Whether pixel (y, x) has a strong coupling, so that it is not alone in its plateau."""
    return ((y > 0 and cn[y, x] >= strong) or (y + 1 < H and cn[y + 1, x] >= strong)
            or (x > 0 and cw[y, x] >= strong) or (x + 1 < W and cw[y, x + 1] >= strong))


@nb.njit(parallel=True, **_NJ)
def _label(cn, cw, strong, labels, parent, bands):
    """Union-find over strong couplings; plateaus of two or more pixels get ids 0..n-1.

    A pixel without a strong coupling gets -1: the line smoother already relaxes it exactly.

    Ids follow the plateaus' first pixels in raster order, and the smaller index
    is always the root, so the labels do not depend on the number of threads:
    row bands are joined and flattened in parallel, then their seams are joined
    (serially: one row each), then every pixel looks up its root's id.
    ``parent`` (int, H * W) is scratch; ``bands`` sets the parallelism.
    """
    H, W = cn.shape
    out = labels.ravel()
    B = max(1, min(bands, H))
    counts = np.zeros(B + 1, np.int64)
    bounds = np.empty(B + 1, np.int64)  # band b holds rows bounds[b] .. bounds[b + 1] - 1
    for b in range(B + 1):
        bounds[b] = b * H // B
    for b in nb.prange(B):
        y0, y1 = bounds[b], bounds[b + 1]
        for i in range(y0 * W, y1 * W):
            parent[i] = i
        for y in range(y0, y1):
            for x in range(W):
                i = y * W + x
                west = x > 0 and cw[y, x] >= strong
                if west:
                    _union(parent, i, i - 1)
                if y > y0 and cn[y, x] >= strong:
                    # already joined through the west and north-west pixels: skip the finds
                    if not (west and cn[y, x - 1] >= strong and cw[y - 1, x] >= strong):
                        _union(parent, i, i - W)
        for i in range(y0 * W, y1 * W):  # roots precede members: one pass flattens the band
            parent[i] = parent[parent[i]]
    for b in range(1, B):  # the seams: join the bands' roots
        y = bounds[b]
        for x in range(W):
            if cn[y, x] >= strong:
                _union(parent, y * W + x, (y - 1) * W + x)
    for b in nb.prange(B):  # each pixel's root (-1 alone), and the band's count of plateaus
        y0, y1 = bounds[b], bounds[b + 1]
        n = 0
        for y in range(y0, y1):
            for x in range(W):
                i = y * W + x
                if not _strong_at(cn, cw, strong, y, x, H, W):
                    out[i] = -1  # no strong coupling: a plateau of one pixel
                    continue
                r = parent[i]
                while parent[r] != r:  # a band root joined across a seam: read-only walk
                    r = parent[r]
                out[i] = r
                n += r == i
        counts[b + 1] = n
    for b in range(B):
        counts[b + 1] += counts[b]
    for b in nb.prange(B):  # number the roots in raster order, in parent
        n = counts[b]
        for i in range(bounds[b] * W, bounds[b + 1] * W):
            if out[i] == i:
                parent[i] = n
                n += 1
    for b in nb.prange(B):
        for i in range(bounds[b] * W, bounds[b + 1] * W):
            r = out[i]
            if r >= 0:
                out[i] = parent[r]
    return counts[B]


@nb.njit(parallel=True, **_NJ)
def _galerkin_diagonal(cn, cw, labels, parts, diag):
    """diag[p] = (P^T A P)[p, p]: the plateau's unit masses plus the couplings that leave it.

    ``parts`` (T, n) holds per-band sums (T row bands), added up in band order.
    """
    H, W = cn.shape
    T = parts.shape[0]
    for t in nb.prange(T):
        acc = parts[t]
        acc[:] = 0.0
        for y in range(t * H // T, (t + 1) * H // T):
            for x in range(W):
                p = labels[y, x]
                if p < 0:
                    continue
                d = 1.0
                if y > 0 and labels[y - 1, x] != p:
                    d += cn[y, x]
                if y + 1 < H and labels[y + 1, x] != p:
                    d += cn[y + 1, x]
                if x > 0 and labels[y, x - 1] != p:
                    d += cw[y, x]
                if x + 1 < W and labels[y, x + 1] != p:
                    d += cw[y, x + 1]
                acc[p] += d
    n = diag.shape[0]
    for p in nb.prange(n):
        d = 0.0
        for t in range(T):
            d += parts[t, p]
        diag[p] = d


@nb.njit(parallel=True, **_NJ)
def _sums(f, u, cn, cw, labels, parts, odd_rows_only):
    """parts[t] = per-plateau sums of f - A u over thread t's rows (u None: of f alone).

    With ``odd_rows_only`` the even rows are skipped: an x-line sweep over them
    has just left their residual at zero.
    """
    H, W = labels.shape
    T = parts.shape[0]
    for t in nb.prange(T):
        acc = parts[t]
        acc[:] = 0.0
        row = np.zeros(W)
        for y in range(t * H // T, (t + 1) * H // T):
            if odd_rows_only and y % 2 == 0:
                continue
            if u is not None:
                apply_row(u, None, cn, cw, None, None, y, row)
            for x in range(W):
                p = labels[y, x]
                if p >= 0:
                    acc[p] += f[y, x] - row[x]


@nb.njit(parallel=True, **_NJ)
def _spread(parts, diag, labels, u, add):
    """c = sum(parts) / diag; u = P c (``add``: u += P c), zero off the plateaus unless adding."""
    n = diag.shape[0]
    c = parts[0]
    for t in range(1, parts.shape[0]):
        c += parts[t]
    for p in nb.prange(n):
        c[p] /= diag[p]
    H, W = labels.shape
    for y in nb.prange(H):
        for x in range(W):
            p = labels[y, x]
            if p >= 0:
                if add:
                    u[y, x] += c[p]
                else:
                    u[y, x] = c[p]
            elif not add:
                u[y, x] = 0.0


class Plateaus:
    """The plateaus of one 5-point, unit-mass operator and their Jacobi correction.

    Parameters
    ----------
    cn, cw : ndarray
        Couplings to the north and west neighbours, shape (H, W).
    strong : float
        Couplings at or above this value join two pixels into one plateau.
    """

    def __init__(self, cn: np.ndarray, cw: np.ndarray, strong: float):
        self.cn, self.cw = cn, cw
        itype = np.int32 if cn.size < 2**31 else np.int64
        self.labels = workspace.empty(cn.shape, itype)
        parent = workspace.empty(cn.size, itype)
        self.count = int(_label(cn, cw, float(strong), self.labels, parent, nb.get_num_threads()))
        workspace.give_back(parent)
        self.diag = np.empty(self.count)
        self._parts = np.empty((min(nb.get_num_threads(), MAX_PARTS), self.count))
        _galerkin_diagonal(cn, cw, self.labels, self._parts, self.diag)

    def start(self, f: np.ndarray, u: np.ndarray) -> None:
        """u = P D^-1 P^T f: the correction from a zero guess, which needs no residual."""
        _sums(f, None, self.cn, self.cw, self.labels, self._parts, False)
        _spread(self._parts, self.diag, self.labels, u, False)

    def correct(self, f: np.ndarray, u: np.ndarray, odd_rows_only: bool = False) -> None:
        """u += P D^-1 P^T (f - A u)."""
        _sums(f, u, self.cn, self.cw, self.labels, self._parts, odd_rows_only)
        _spread(self._parts, self.diag, self.labels, u, True)

    @property
    def nbytes(self) -> int:
        return self.labels.nbytes + self.diag.nbytes + self._parts.nbytes
