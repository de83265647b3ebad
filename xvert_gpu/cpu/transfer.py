"""Operator-dependent grid transfers and the Galerkin coarse operator (Dendy's BoxMG).

Coarse points are the fine points with both indices even. Every fine point
(y, x) interpolates from at most four coarse points, the corners of the coarse
cell it lies in; ``pw[k, y, x]`` holds the weight of corner ``k``:
0 = (y//2, x//2), 1 = (y//2, x//2 + 1), 2 = (y//2 + 1, x//2), 3 = (y//2 + 1, x//2 + 1).
Weights follow the fine operator, so interpolation does not cross the weak
couplings at the edges the WLS filter must keep.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from . import workspace
from .stencil import _NJ, apply_row, chunks, diagonal, neighbours


def coarse_shape(H: int, W: int) -> tuple[int, int]:
    return (H + 1) // 2, (W + 1) // 2


@nb.njit(parallel=True, **_NJ)
def interpolation_weights(mass, cn, cw, cnw, cne, pw):
    H, W = cn.shape
    # points on coarse rows or columns first: cell centres interpolate through them
    for y in nb.prange(H):
        for x in range(W):
            for k in range(4):
                pw[k, y, x] = 0.0
            if y % 2 == 0 and x % 2 == 0:
                pw[0, y, x] = 1.0
            elif y % 2 == 1 and x % 2 == 1:
                continue
            else:
                c = neighbours(cn, cw, cnw, cne, y, x, H, W)
                n, s, w, e, nw, ne, sw, se = c
                diag = diagonal(mass, c, y, x)
                if y % 2 == 0:  # between two coarse points of one row
                    den = diag - n - s
                    if den > 0.0:
                        pw[0, y, x] = (nw + w + sw) / den
                        if x + 1 < W:
                            pw[1, y, x] = (ne + e + se) / den
                else:  # between two coarse points of one column
                    den = diag - w - e
                    if den > 0.0:
                        pw[0, y, x] = (nw + n + ne) / den
                        if y + 1 < H:
                            pw[2, y, x] = (sw + s + se) / den
    for y in nb.prange(H):
        if y % 2 == 0:
            continue
        for x in range(1, W, 2):
            c = neighbours(cn, cw, cnw, cne, y, x, H, W)
            n, s, w, e, nw, ne, sw, se = c
            diag = diagonal(mass, c, y, x)
            p0 = nw + n * pw[0, y - 1, x] + w * pw[0, y, x - 1]
            p1 = n * pw[1, y - 1, x]
            p2 = w * pw[2, y, x - 1]
            p3 = 0.0
            if x + 1 < W:
                p1 += ne + e * pw[0, y, x + 1]
                p3 += e * pw[2, y, x + 1]
            if y + 1 < H:
                p2 += sw + s * pw[0, y + 1, x]
                p3 += s * pw[1, y + 1, x]
            if x + 1 < W and y + 1 < H:
                p3 += se
            pw[0, y, x] = p0 / diag
            pw[1, y, x] = p1 / diag
            pw[2, y, x] = p2 / diag
            pw[3, y, x] = p3 / diag


@nb.njit(parallel=True, **_NJ)
def prolong_add(uc, pw, u):
    """u += P uc."""
    H, W = u.shape
    Hc, Wc = uc.shape
    for y in nb.prange(H):
        I = y // 2
        for x in range(W):
            J = x // 2
            acc = pw[0, y, x] * uc[I, J]
            if J + 1 < Wc:
                acc += pw[1, y, x] * uc[I, J + 1]
                if I + 1 < Hc:
                    acc += pw[3, y, x] * uc[I + 1, J + 1]
            if I + 1 < Hc:
                acc += pw[2, y, x] * uc[I + 1, J]
            u[y, x] += acc


@nb.njit(parallel=True, **_NJ)
def restrict(r, pw, rc):
    """rc = P^T r."""
    H, W = r.shape
    Hc, Wc = rc.shape
    for I in nb.prange(Hc):
        for J in range(Wc):
            acc = 0.0
            # fine row 2I-1 sees (I, J) as its lower corners (k = 2, 3), rows 2I, 2I+1 as upper
            for y in range(max(2 * I - 1, 0), min(2 * I + 2, H)):
                kd = 2 if y < 2 * I else 0
                for x in range(max(2 * J - 1, 0), min(2 * J + 2, W)):
                    k = kd + 1 if x < 2 * J else kd
                    acc += pw[k, y, x] * r[y, x]
            rc[I, J] = acc


@nb.njit(inline="always", **_NJ)
def _even_residual(f, u, mass, cn, cw, cnw, cne, y, row, out):
    """out[J] = (f - A u)[y, 2J] in float64 (``row``: scratch of the whole row)."""
    apply_row(u, mass, cn, cw, cnw, cne, y, row)  # the whole row: vectorised, it costs less
    fy = f[y]
    for J in range(out.shape[0]):
        out[J] = fy[2 * J] - row[2 * J]


@nb.njit(parallel=True, **_NJ)
def restrict_residual_even_columns(f, u, mass, cn, cw, cnw, cne, pw, rc):
    """rc = P^T (f - A u), where the residual is known to vanish on odd columns.

    After a zebra sweep that ends with exact solves of the odd columns, only the
    even columns carry a residual. Each coarse row sums three fine rows of it,
    formed in float64 in a rolling three-row buffer: every fine row once (twice
    at the seams between threads), none stored: bit-identical to forming the
    residual image first, and one float32 image's worth less memory at 2048^2.
    """
    H, W = u.shape
    Hc, Wc = rc.shape
    T = chunks(Hc)
    for t in nb.prange(T):
        row = np.empty(W)
        above = np.empty(Wc)  # fine row y - 1 (odd), then y + 1 carried to the next coarse row
        mid = np.empty(Wc)
        below = np.empty(Wc)
        acc = np.empty(Wc)
        I0 = t * Hc // T
        for I in range(I0, (t + 1) * Hc // T):
            y = 2 * I
            if y > 0 and I == I0:
                _even_residual(f, u, mass, cn, cw, cnw, cne, y - 1, row, above)
            _even_residual(f, u, mass, cn, cw, cnw, cne, y, row, mid)
            if y + 1 < H:
                _even_residual(f, u, mass, cn, cw, cnw, cne, y + 1, row, below)
            p0 = pw[0, y]
            for J in range(Wc):
                acc[J] = p0[2 * J] * mid[J]
            if y > 0:  # the fine row above sees (I, J) as its lower-left corner
                p2 = pw[2, y - 1]
                for J in range(Wc):
                    acc[J] += p2[2 * J] * above[J]
            if y + 1 < H:
                p0 = pw[0, y + 1]
                for J in range(Wc):
                    acc[J] += p0[2 * J] * below[J]
            rc_I = rc[I]
            for J in range(Wc):
                rc_I[J] = acc[J]
            above, below = below, above


@nb.njit(parallel=True, **_NJ)
def _row_sums(pw, out):
    H, W = out.shape
    for y in nb.prange(H):
        for x in range(W):
            out[y, x] = pw[0, y, x] + pw[1, y, x] + pw[2, y, x] + pw[3, y, x]


def galerkin(mass, cn, cw, cnw, cne, pw, mc, cnc, cwc, cnwc, cnec):
    """Coarse operator P^T A P in the same symmetric 9-point form.

    For each coarse point, the column of ``A P`` on its 5x5 window of fine
    points is formed once (at most 81 products), then projected on the coarse
    neighbours' interpolation weights: 4-5x faster than taking ``P^T A P``
    entry by entry. The mass is the row sum ``P^T A (P 1)`` in difference
    form, with ``P 1`` summed in float32; ``kernels/transfer.cu`` does the same.
    """
    p1 = workspace.empty(cn.shape, np.float32)
    _row_sums(pw, p1)
    _galerkin(mass, cn, cw, cnw, cne, pw, p1, mc, cnc, cwc, cnwc, cnec)
    workspace.give_back(p1)


@nb.njit(inline="always", **_NJ)
def _at(a, k, y, x, H, W):
    """a[k, y, x], zero outside the grid."""
    return np.float64(a[k, y, x]) if 0 <= y < H and 0 <= x < W else 0.0


@nb.njit(parallel=True, **_NJ)
def _galerkin(mass, cn, cw, cnw, cne, pw, p1, mc, cnc, cwc, cnwc, cnec):
    H, W = cn.shape
    Hc, Wc = mc.shape
    p1 = p1.reshape((1, H, W))
    for I in nb.prange(Hc):
        S = np.zeros((5, 5))
        y0 = 2 * I - 2
        for J in range(Wc):
            x0 = 2 * J - 2
            # S = (A P)[:, (I, J)] on the 5x5 window of fine points from (2I-2, 2J-2): the
            # rows of A of the (up to) nine fine points that interpolate from (I, J)
            S[:] = 0.0
            for a in range(1, 4):
                y = y0 + a
                if y < 0 or y >= H:
                    continue
                for b in range(1, 4):
                    x = x0 + b
                    if x < 0 or x >= W:
                        continue
                    p = pw[2 * (a == 1) + (b == 1), y, x]  # corner (I, J) of point (y, x)
                    if p == 0.0:
                        continue
                    c = neighbours(cn, cw, cnw, cne, y, x, H, W)
                    S[a, b] += p * diagonal(mass, c, y, x)
                    S[a - 1, b] -= p * c[0]
                    S[a + 1, b] -= p * c[1]
                    S[a, b - 1] -= p * c[2]
                    S[a, b + 1] -= p * c[3]
                    if cnw is not None:
                        S[a - 1, b - 1] -= p * c[4]
                        S[a - 1, b + 1] -= p * c[5]
                        S[a + 1, b - 1] -= p * c[6]
                        S[a + 1, b + 1] -= p * c[7]
            # P^T S: only the window points that interpolate from the coarse neighbour count;
            # the row sum in difference form, (P^T A P 1) = S . (P 1)
            a_n = 0.0
            a_w = 0.0
            a_nw = 0.0
            a_ne = 0.0
            for a in range(2):  # rows 2I-2, 2I-1: below coarse row I-1
                y = y0 + a
                for b in range(2):  # columns 2J-2, 2J-1: right of coarse column J-1
                    s = S[a, b]
                    a_n += s * _at(pw, 1, y, x0 + b, H, W)
                    a_w += s * _at(pw, 2, y, x0 + b, H, W)
                    a_nw += s * _at(pw, 0, y, x0 + b, H, W)
                for b in range(2, 4):
                    s = S[a, b]
                    a_n += s * _at(pw, 0, y, x0 + b, H, W)
                    a_ne += s * _at(pw, 1, y, x0 + b, H, W)
                a_ne += S[a, 4] * _at(pw, 0, y, x0 + 4, H, W)
            for a in range(2, 4):
                for b in range(2):
                    a_w += S[a, b] * _at(pw, 0, y0 + a, x0 + b, H, W)
            rowsum = 0.0
            for a in range(5):
                for b in range(5):
                    rowsum += S[a, b] * _at(p1, 0, y0 + a, x0 + b, H, W)
            mc[I, J] = rowsum
            cnc[I, J] = -a_n
            cwc[I, J] = -a_w
            cnwc[I, J] = -a_nw
            cnec[I, J] = -a_ne


@nb.njit(**_NJ)
def dense_matrix(mass, cn, cw, cnw, cne):
    """The level's operator as a dense matrix (for the coarsest direct solve)."""
    H, W = cn.shape
    n = H * W
    A = np.zeros((n, n))
    for y in range(H):
        for x in range(W):
            i = y * W + x
            c = neighbours(cn, cw, cnw, cne, y, x, H, W)
            A[i, i] = diagonal(mass, c, y, x)
            offs = ((-1, 0, c[0]), (1, 0, c[1]), (0, -1, c[2]), (0, 1, c[3]),
                    (-1, -1, c[4]), (-1, 1, c[5]), (1, -1, c[6]), (1, 1, c[7]))
            for dy, dx, v in offs:
                if v != 0.0:
                    A[i, (y + dy) * W + x + dx] = -v
    return A
