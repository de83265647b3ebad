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


@nb.njit(inline="always", **_NJ)
def _weight(pw, y, x, I, J):
    """P[(y, x), (I, J)], zero outside the support."""
    di = I - (y >> 1)
    dj = J - (x >> 1)
    if di < 0 or di > 1 or dj < 0 or dj > 1:
        return 0.0
    return pw[2 * di + dj, y, x]


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


def restrict_residual_even_columns(f, u, mass, cn, cw, cnw, cne, pw, rc, r=None):
    """rc = P^T (f - A u), where the residual is known to vanish on odd columns.

    After a zebra sweep that ends with exact solves of the odd columns, only the
    even columns carry a residual: they alone are kept, row by row (each fine
    row once), in ``r`` (float64, (H, Wc); allocated when not given), and then
    summed into the coarse rows.
    """
    if r is None:
        r = np.empty((u.shape[0], rc.shape[1]), np.float64)
    _residual_even_columns(f, u, mass, cn, cw, cnw, cne, r)
    _restrict_even_columns(r, pw, rc)


@nb.njit(parallel=True, **_NJ)
def _residual_even_columns(f, u, mass, cn, cw, cnw, cne, r):
    H, W = u.shape
    T = chunks(H)
    for t in nb.prange(T):
        row = np.empty(W)  # the whole row: vectorised, it costs less than the even half alone
        for y in range(t * H // T, (t + 1) * H // T):
            apply_row(u, mass, cn, cw, cnw, cne, y, row)
            for J in range(r.shape[1]):
                r[y, J] = f[y, 2 * J] - row[2 * J]


@nb.njit(parallel=True, **_NJ)
def _restrict_even_columns(r, pw, rc):
    H = r.shape[0]
    Hc, Wc = rc.shape
    for I in nb.prange(Hc):
        y = 2 * I
        for J in range(Wc):
            x = 2 * J
            acc = pw[0, y, x] * r[y, J]
            if y > 0:  # the fine row above sees (I, J) as its lower-left corner
                acc += pw[2, y - 1, x] * r[y - 1, J]
            if y + 1 < H:
                acc += pw[0, y + 1, x] * r[y + 1, J]
            rc[I, J] = acc


@nb.njit(parallel=True, **_NJ)
def _row_sums(pw, out):
    H, W = out.shape
    for y in nb.prange(H):
        for x in range(W):
            out[y, x] = pw[0, y, x] + pw[1, y, x] + pw[2, y, x] + pw[3, y, x]


def galerkin(mass, cn, cw, cnw, cne, pw, mc, cnc, cwc, cnwc, cnec):
    """Coarse operator P^T A P in the same symmetric 9-point form."""
    p1 = np.empty(cn.shape, np.float32)
    _row_sums(pw, p1)
    _galerkin(mass, cn, cw, cnw, cne, pw, p1, mc, cnc, cwc, cnwc, cnec)


@nb.njit(parallel=True, **_NJ)
def _galerkin(mass, cn, cw, cnw, cne, pw, p1, mc, cnc, cwc, cnwc, cnec):
    H, W = cn.shape
    Hc, Wc = mc.shape
    for I in nb.prange(Hc):
        for J in range(Wc):
            a_n = 0.0
            a_w = 0.0
            a_nw = 0.0
            a_ne = 0.0
            rowsum = 0.0
            for y in range(max(2 * I - 1, 0), min(2 * I + 2, H)):
                for x in range(max(2 * J - 1, 0), min(2 * J + 2, W)):
                    p = _weight(pw, y, x, I, J)
                    if p == 0.0:
                        continue
                    c = neighbours(cn, cw, cnw, cne, y, x, H, W)
                    # A row of fine point (y, x) times P, for the four stored coarse directions
                    # and the full row sum (A P 1), in difference form
                    for t in range(9):
                        dy = t // 3 - 1
                        dx = t % 3 - 1
                        yy = y + dy
                        xx = x + dx
                        if yy < 0 or yy >= H or xx < 0 or xx >= W:
                            continue
                        if t == 4:
                            a = diagonal(mass, c, y, x)
                        else:
                            # t: 0 nw, 1 n, 2 ne, 3 w, 5 e, 6 sw, 7 s, 8 se
                            if t == 0:
                                a = -c[4]
                            elif t == 1:
                                a = -c[0]
                            elif t == 2:
                                a = -c[5]
                            elif t == 3:
                                a = -c[2]
                            elif t == 5:
                                a = -c[3]
                            elif t == 6:
                                a = -c[6]
                            elif t == 7:
                                a = -c[1]
                            else:
                                a = -c[7]
                        if a == 0.0:
                            continue
                        pa = p * a
                        a_n += pa * _weight(pw, yy, xx, I - 1, J)
                        a_w += pa * _weight(pw, yy, xx, I, J - 1)
                        a_nw += pa * _weight(pw, yy, xx, I - 1, J - 1)
                        a_ne += pa * _weight(pw, yy, xx, I - 1, J + 1)
                        rowsum += pa * p1[yy, xx]
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
