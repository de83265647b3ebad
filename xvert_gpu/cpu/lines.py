"""Zebra line Gauss-Seidel on the grid operators of :mod:`.stencil`: the multigrid smoother.

A half-sweep solves the tridiagonal system of every row (or column) of one
parity exactly, with the other lines held fixed. The Thomas factors of the
lines depend on the operator only and are computed once (:func:`line_factors`).

The kernels are written for the machine rather than for the reader of the
equations, because they are most of the solver's time:

- the right-hand sides are formed from row slices indexed from zero, which is
  the form Numba's LLVM vectorises (a computed index such as ``x0 + 2 * j`` is
  wrap-around checked and stays scalar);
- the elimination reads no couplings: in the form ``t[x] = d[x] + cp[x-1]
  t[x-1]``, then ``t[x] * inv[x]`` (the Thomas recurrence multiplied through
  by the pivot), the factor ``cp = c * inv`` of the previous point stands for
  the coupling, so a row sweep reads two factor arrays and no ``cw``, and a
  column sweep a half-width ``cp`` row instead of a strided walk over ``cn``
  (columns 6-18 % faster at 1024^2 and 2048^2, rows -9 % to +6 %);
- the serial recurrences of four rows run interleaved, so that four
  independent dependency chains hide each other's latency;
- the two row half-sweeps of one sweep run as one pass (:func:`relax_rows_pair`):
  the rows of the second parity follow the group of first-parity rows that
  encloses them, while that group's data is in cache;
- columns are eliminated row by row across a wide block of columns: the
  right-hand sides of both parities are formed with unit stride (SIMD over
  memory that a strided walk would read anyway), then the relaxed parity's
  are gathered into a half-width row and eliminated there, against column
  factors stored split by column parity (:func:`factor_arrays`). This halves
  the elimination's arithmetic and its scratch (1.5x faster than
  eliminating both parities; 3.6x on one thread at 2048^2). One block per
  thread: narrower blocks walk down the image in short runs whose 4 KiB row
  stride thrashes the L1 cache sets.

Right-hand sides, recurrences and scratch are in the precision of ``u``:
float32 in the solver, where it makes SIMD twice as wide and the scratch half
as large (columns 30 % and rows 15 % faster on one thread at 1024^2), with
iteration counts and detail errors unchanged; float64 when ``u`` is, which the
CUDA tests use as a reference. The CUDA kernels solve lines in float64 and
round ``u`` to float32, so the two backends' first PCG residuals agree only to
the float32 rounding level of a line solve (about 1e-4 relative).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from . import workspace
from .stencil import _NJ, diagonal, neighbours

ROWS_TOGETHER = 4  # interleaved row recurrences per task
MIN_BLOCK = 64  # narrowest column block worth a thread


@nb.njit(inline="always", **_NJ)
def _off_rows(u, cnw, y, x, H, W, c):
    """sum_j c_ij u_j over the six couplings outside row y (x-line relaxation)."""
    n, s, w, e, nw, ne, sw, se = c
    acc = 0.0
    if y > 0:
        acc += n * u[y - 1, x]
        if cnw is not None:
            if x > 0:
                acc += nw * u[y - 1, x - 1]
            if x + 1 < W:
                acc += ne * u[y - 1, x + 1]
    if y + 1 < H:
        acc += s * u[y + 1, x]
        if cnw is not None:
            if x > 0:
                acc += sw * u[y + 1, x - 1]
            if x + 1 < W:
                acc += se * u[y + 1, x + 1]
    return acc


@nb.njit(inline="always", **_NJ)
def _off_cols(u, cnw, y, x, H, W, c):
    """sum_j c_ij u_j over the six couplings outside column x (y-line relaxation)."""
    n, s, w, e, nw, ne, sw, se = c
    acc = 0.0
    if x > 0:
        acc += w * u[y, x - 1]
        if cnw is not None:
            if y > 0:
                acc += nw * u[y - 1, x - 1]
            if y + 1 < H:
                acc += sw * u[y + 1, x - 1]
    if x + 1 < W:
        acc += e * u[y, x + 1]
        if cnw is not None:
            if y > 0:
                acc += ne * u[y - 1, x + 1]
            if y + 1 < H:
                acc += se * u[y + 1, x + 1]
    return acc


def factor_arrays(shape: tuple[int, int], dtype=np.float32) -> tuple[tuple, tuple]:
    """Empty Thomas factors of one level: rows (cp, inv) of shape (H, W); columns (cp, inv)
    split by column parity, shape (2, H, ceil(W / 2)), where ``[s, y, j]`` is column ``2j + s``.

    float32 unless the couplings are so much larger than the mass that a factor's rounding
    perturbs the line's matrix by more than its mass (see :mod:`.system`)."""
    H, W = shape
    rows = (workspace.empty((H, W), dtype), workspace.empty((H, W), dtype))
    cols = (workspace.zeros((2, H, (W + 1) // 2), dtype), workspace.zeros((2, H, (W + 1) // 2), dtype))
    return rows, cols


def columns_natural(a: np.ndarray, W: int) -> np.ndarray:
    """A column factor array from the split layout of :func:`factor_arrays` back to (H, W)."""
    out = np.empty((a.shape[1], W), a.dtype)
    out[:, 0::2] = a[0, :, :(W + 1) // 2]
    out[:, 1::2] = a[1, :, :W // 2]
    return out


@nb.njit(inline="always", **_NJ)
def _diagonal_segment(mass, cn, cw, cnw, cne, y, x0, x1, out):
    """out[x - x0] = A's diagonal at (y, x), x0 <= x < x1, in float64.

    The terms are added in :func:`.stencil.diagonal`'s order (a missing
    coupling adds an exact zero there), so the values are bit-identical to it;
    interior columns as zero-based row slices, which LLVM vectorises.
    """
    H, W = cn.shape
    xa = max(x0, 1)
    xb = min(x1, W - 1)
    n = xb - xa
    o = out[xa - x0:xb - x0]
    north = y > 0
    south = y + 1 < H
    c0 = cn[y, xa:xb]
    cs = cn[y + 1, xa:xb] if south else c0  # c0 stands in where there is no row below: unread
    if mass is None:
        for j in range(n):
            o[j] = 1.0
    else:
        m = mass[y, xa:xb]
        for j in range(n):
            o[j] = np.float64(m[j])
    if north:
        for j in range(n):
            o[j] += c0[j]
    if south:
        for j in range(n):
            o[j] += cs[j]
    a = cw[y, xa:xb]
    b = cw[y, xa + 1:xb + 1]
    for j in range(n):
        o[j] += a[j]
    for j in range(n):
        o[j] += b[j]
    if cnw is not None:
        if north:
            a = cnw[y, xa:xb]
            b = cne[y, xa:xb]
            for j in range(n):
                o[j] += a[j]
            for j in range(n):
                o[j] += b[j]
        if south:
            a = cne[y + 1, xa - 1:xb - 1]
            b = cnw[y + 1, xa + 1:xb + 1]
            for j in range(n):
                o[j] += a[j]
            for j in range(n):
                o[j] += b[j]
    for x in (0, W - 1):  # border columns: the generic, bounds-checked form
        if x0 <= x < x1:
            out[x - x0] = diagonal(mass, neighbours(cn, cw, cnw, cne, y, x, H, W), y, x)


@nb.njit(parallel=True, **_NJ)
def line_factors(mass, cn, cw, cnw, cne, rcp, rinv, ccp, cinv):
    """Thomas-algorithm factors of every row and column block of A (operator only, set up once).

    Row y: ``inv = 1 / (diag - w * cp[x-1])`` and ``cp = e * inv``; columns likewise with n, s,
    stored split by column parity (see :func:`factor_arrays`). The row recurrences run
    ``ROWS_TOGETHER`` at a time, so that their divisions overlap instead of waiting on each
    other; the columns' run across a block of columns, with unit stride.
    """
    H, W = cn.shape
    L = ROWS_TOGETHER
    for k in nb.prange((H + L - 1) // L):
        y0 = k * L
        ny = min(L, H - y0)
        d = np.empty((L, W))
        for q in range(ny):
            _diagonal_segment(mass, cn, cw, cnw, cne, y0 + q, 0, W, d[q])
        if ny == L:
            d0, d1, d2, d3 = d[0], d[1], d[2], d[3]
            w0, w1, w2, w3 = cw[y0], cw[y0 + 1], cw[y0 + 2], cw[y0 + 3]
            i0, i1, i2, i3 = rinv[y0], rinv[y0 + 1], rinv[y0 + 2], rinv[y0 + 3]
            e0, e1, e2, e3 = rcp[y0], rcp[y0 + 1], rcp[y0 + 2], rcp[y0 + 3]
            p0 = p1 = p2 = p3 = 0.0
            for i in range(W):
                x = np.uintp(i)
                xe = np.uintp(min(i + 1, W - 1))  # the east coupling; none at the last point
                last = i + 1 == W
                v0 = 1.0 / (d0[x] - (w0[x] * p0 if i > 0 else 0.0))
                v1 = 1.0 / (d1[x] - (w1[x] * p1 if i > 0 else 0.0))
                v2 = 1.0 / (d2[x] - (w2[x] * p2 if i > 0 else 0.0))
                v3 = 1.0 / (d3[x] - (w3[x] * p3 if i > 0 else 0.0))
                p0 = 0.0 if last else w0[xe] * v0
                p1 = 0.0 if last else w1[xe] * v1
                p2 = 0.0 if last else w2[xe] * v2
                p3 = 0.0 if last else w3[xe] * v3
                i0[x] = v0
                i1[x] = v1
                i2[x] = v2
                i3[x] = v3
                e0[x] = p0
                e1[x] = p1
                e2[x] = p2
                e3[x] = p3
        else:
            for q in range(ny):
                y = y0 + q
                prev = 0.0
                for x in range(W):
                    inv = 1.0 / (d[q, x] - (cw[y, x] * prev if x > 0 else 0.0))
                    prev = cw[y, x + 1] * inv if x + 1 < W else 0.0
                    rinv[y, x] = inv
                    rcp[y, x] = prev
    nblocks = min((W + 1) // 2, 8)
    per = ((W + nblocks - 1) // nblocks + 1) // 2 * 2  # even: a block starts on an even column
    nblocks = (W + per - 1) // per
    for b in nb.prange(nblocks):  # columns depend on the row above: sweep down in blocks
        x0 = b * per
        x1 = min(W, x0 + per)
        nx = x1 - x0
        j0 = x0 // 2
        ne = (nx + 1) // 2  # the block's even and odd columns
        no = nx // 2
        d = np.empty(nx)
        for y in range(H):
            _diagonal_segment(mass, cn, cw, cnw, cne, y, x0, x1, d)
            if y > 0:  # the coupling to the row above, over the stored factor of that row
                c = cn[y, x0:x1]
                pe = ccp[0, y - 1, j0:j0 + ne]
                po = ccp[1, y - 1, j0:j0 + no]
                for j in range(ne):
                    d[2 * j] -= c[2 * j] * np.float64(pe[j])
                for j in range(no):
                    d[2 * j + 1] -= c[2 * j + 1] * np.float64(po[j])
            ie = cinv[0, y, j0:j0 + ne]
            io = cinv[1, y, j0:j0 + no]
            ce = ccp[0, y, j0:j0 + ne]
            co = ccp[1, y, j0:j0 + no]
            if y + 1 < H:
                s = cn[y + 1, x0:x1]
                for j in range(ne):
                    v = 1.0 / d[2 * j]
                    ie[j] = v
                    ce[j] = s[2 * j] * v
                for j in range(no):
                    v = 1.0 / d[2 * j + 1]
                    io[j] = v
                    co[j] = s[2 * j + 1] * v
            else:
                for j in range(ne):
                    ie[j] = 1.0 / d[2 * j]
                    ce[j] = 0.0
                for j in range(no):
                    io[j] = 1.0 / d[2 * j + 1]
                    co[j] = 0.0


@nb.njit(inline="always", **_NJ)
def _row_rhs(f, u, cn, cw, cnw, cne, y, out):
    """out[x] = f[y, x] + sum of c u over the couplings outside row y (all x)."""
    H, W = u.shape
    T = out.dtype.type
    if y == 0 or y + 1 == H:  # a border row: the generic, bounds-checked form
        for x in range(W):
            c = neighbours(cn, cw, cnw, cne, y, x, H, W)
            out[x] = f[y, x] + _off_rows(u, cnw, y, x, H, W, c)
        return
    fy = f[y]
    un = u[y - 1]
    us = u[y + 1]
    c0 = cn[y]
    c1 = cn[y + 1]
    for x in range(W):
        out[x] = T(fy[x]) + T(c0[x]) * un[x] + T(c1[x]) * us[x]
    if cnw is not None and W > 1:
        o = out[1:]  # north-west and south-west neighbours, x >= 1
        a = cnw[y, 1:]
        b = u[y - 1, :W - 1]
        c = cne[y + 1, :W - 1]
        d = u[y + 1, :W - 1]
        for j in range(W - 1):
            o[j] += T(a[j]) * b[j] + T(c[j]) * d[j]
        o = out[:W - 1]  # north-east and south-east neighbours, x <= W - 2
        a = cne[y, :W - 1]
        b = u[y - 1, 1:]
        c = cnw[y + 1, 1:]
        d = u[y + 1, 1:]
        for j in range(W - 1):
            o[j] += T(a[j]) * b[j] + T(c[j]) * d[j]


@nb.njit(inline="always", **_NJ)
def _four_chains(c, m, out, forward):
    """Along four lines at once, from zero: ``out_k[x] = c_k[x] + m_k[e] out_k[x -+ 1]``.

    ``m`` is the line's ``cp``, indexed by the edge ``e`` between x and the
    previous point of the walk (its left end: ``x - 1`` forward, ``x``
    backward). Forward this is the elimination (``c = out`` is allowed; the
    pivots are applied afterwards, in a separate vectorised pass, because
    eight 4 KiB-aliased streams are what the L1 cache holds), backward the
    substitution, which starts at the last column, where ``cp = 0``. Four
    independent recurrences in one loop hide each other's latency.
    """
    c0, c1, c2, c3 = c
    m0, m1, m2, m3 = m
    o0, o1, o2, o3 = out
    W = c0.shape[0]
    p0 = p1 = p2 = p3 = c0.dtype.type(0)
    for i in range(W):
        x = np.uintp(i if forward else W - 1 - i)  # unsigned: no wrap-around test
        # forward at x = 0 the product is m[0] * 0: the factors are finite
        e = np.uintp(max(i - 1, 0)) if forward else x
        p0 = c0[x] + m0[e] * p0
        p1 = c1[x] + m1[e] * p1
        p2 = c2[x] + m2[e] * p2
        p3 = c3[x] + m3[e] * p3
        o0[x] = p0
        o1[x] = p1
        o2[x] = p2
        o3[x] = p3


@nb.njit(**_NJ)  # a call, not inlined: its four call sites would quadruple the compile time
def _relax_row_set(f, u, cn, cw, cnw, cne, rcp, rinv, ys, ny, a):
    """Exact solve along rows ys[:ny] (up to ROWS_TOGETHER, none adjacent to another)."""
    W = u.shape[1]
    for q in range(ny):
        _row_rhs(f, u, cn, cw, cnw, cne, ys[q], a[q])
    if ny == ROWS_TOGETHER:
        r0, r1, r2, r3 = rcp[ys[0]], rcp[ys[1]], rcp[ys[2]], rcp[ys[3]]
        _four_chains((a[0], a[1], a[2], a[3]), (r0, r1, r2, r3), (a[0], a[1], a[2], a[3]), True)
        for q in range(ny):
            aq = a[q]
            iy = rinv[ys[q]]
            for x in range(W):
                aq[x] *= iy[x]
        _four_chains((a[0], a[1], a[2], a[3]), (r0, r1, r2, r3),
                     (u[ys[0]], u[ys[1]], u[ys[2]], u[ys[3]]), False)
    else:
        for q in range(ny):
            aq = a[q]
            ey = rcp[ys[q]]
            iy = rinv[ys[q]]
            p = aq[0]
            aq[0] = p * iy[0]
            for x in range(1, W):
                p = aq[x] + ey[x - 1] * p
                aq[x] = p * iy[x]
            uy = u[ys[q]]
            p = aq.dtype.type(0)
            for x in range(W - 1, -1, -1):
                p = aq[x] + ey[x] * p
                uy[x] = p


@nb.njit(parallel=True, **_NJ)
def relax_rows(f, u, cn, cw, cnw, cne, rcp, rinv, parity):
    """Exact solve along every row y with y % 2 == parity."""
    H, W = u.shape
    L = ROWS_TOGETHER
    nrows = (H - parity + 1) // 2
    for k in nb.prange((nrows + L - 1) // L):
        ys = np.empty(L, np.intp)
        ny = min(L, nrows - L * k)
        for q in range(ny):
            ys[q] = parity + 2 * (L * k + q)
        _relax_row_set(f, u, cn, cw, cnw, cne, rcp, rinv, ys, ny, np.empty((L, W), u.dtype))


@nb.njit(parallel=True, **_NJ)
def relax_rows_pair(f, u, cn, cw, cnw, cne, rcp, rinv, first, bands):
    """The rows of parity ``first``, then the others: two half-sweeps in one pass over memory.

    Each of ``bands`` bands of rows (a multiple of 2 ROWS_TOGETHER rows each)
    relaxes a group of rows of the first parity, then the rows of the second
    parity that group has just enclosed, while their data is in cache. A row
    of the second parity next to another band's row waits for a second,
    parallel pass. Every line sees the same values as in two separate
    half-sweeps, so the result is bit-identical to them.
    """
    H, W = u.shape
    L = ROWS_TOGETHER
    span = 2 * L
    nbands = max(1, min(bands, (H + span - 1) // span))
    per = ((H + span - 1) // span + nbands - 1) // nbands * span
    nbands = (H + per - 1) // per
    for bk in nb.prange(nbands):
        y_lo = bk * per
        y_hi = min(H, y_lo + per)
        a = np.empty((L, W), u.dtype)
        ys = np.empty(L, np.intp)
        zs = np.empty(L, np.intp)
        y0 = y_lo + (first - y_lo) % 2  # the band's first row of the first parity
        while y0 < y_hi:
            ny = min(L, (y_hi - y0 + 1) // 2)
            for q in range(ny):
                ys[q] = y0 + 2 * q
            _relax_row_set(f, u, cn, cw, cnw, cne, rcp, rinv, ys, ny, a)
            # the second-parity rows just above this group's rows: both neighbours are final
            nz = 0
            for q in range(ny):
                z = ys[q] - 1
                if z == 0 or z - 1 >= y_lo:
                    zs[nz] = z
                    nz += 1
            _relax_row_set(f, u, cn, cw, cnw, cne, rcp, rinv, zs, nz, a)
            y0 += span
        z = H - 1  # the grid's last row, when it is of the second parity and below this band's
        if y_hi == H and z % 2 != first and (z == 0 or z - 1 >= y_lo):
            zs[0] = z
            _relax_row_set(f, u, cn, cw, cnw, cne, rcp, rinv, zs, 1, a)
    # the second-parity rows at the seams between bands
    for bk in nb.prange(nbands - 1):
        z = (bk + 1) * per  # the next band's first row (even), or the row above it
        if z % 2 == first:
            z -= 1
        ys = np.empty(1, np.intp)
        ys[0] = z
        _relax_row_set(f, u, cn, cw, cnw, cne, rcp, rinv, ys, 1, np.empty((1, W), u.dtype))


@nb.njit(inline="always", **_NJ)
def _col_rhs(f, u, cn, cw, cnw, cne, y, x0, x1, out):
    """out[x - x0] = f[y, x] + sum of c u over the couplings outside column x, x0 <= x < x1."""
    H, W = u.shape
    T = out.dtype.type
    xa = max(x0, 1)
    xb = min(x1, W - 1)
    n = xb - xa
    o = out[xa - x0:xb - x0]
    fy = f[y, xa:xb]
    wl = cw[y, xa:xb]
    wr = cw[y, xa + 1:xb + 1]
    ul = u[y, xa - 1:xb - 1]
    ur = u[y, xa + 1:xb + 1]
    for j in range(n):
        o[j] = T(fy[j]) + T(wl[j]) * ul[j] + T(wr[j]) * ur[j]
    if cnw is not None:
        if y > 0:
            a = cnw[y, xa:xb]
            b = u[y - 1, xa - 1:xb - 1]
            c = cne[y, xa:xb]
            d = u[y - 1, xa + 1:xb + 1]
            for j in range(n):
                o[j] += T(a[j]) * b[j] + T(c[j]) * d[j]
        if y + 1 < H:
            a = cne[y + 1, xa - 1:xb - 1]
            b = u[y + 1, xa - 1:xb - 1]
            c = cnw[y + 1, xa + 1:xb + 1]
            d = u[y + 1, xa + 1:xb + 1]
            for j in range(n):
                o[j] += T(a[j]) * b[j] + T(c[j]) * d[j]
    for x in (0, W - 1):  # border columns: the generic, bounds-checked form
        if x0 <= x < x1:
            c = neighbours(cn, cw, cnw, cne, y, x, H, W)
            out[x - x0] = f[y, x] + _off_cols(u, cnw, y, x, H, W, c)


@nb.njit(parallel=True, **_NJ)
def relax_cols(f, u, cn, cw, cnw, cne, ccp, cinv, parity, threads):
    """Exact solve along every column x with x % 2 == parity.

    ``ccp``, ``cinv``: column factors split by parity (:func:`factor_arrays`).
    The right-hand sides of a block are formed for both parities with unit
    stride (they read only columns of the other parity, which this half-sweep
    never writes), then the relaxed parity's are gathered and eliminated.
    ``threads`` (``numba.get_num_threads()``, passed in so that the kernel can
    be cached) sets the number of column blocks.
    """
    H, W = u.shape
    s = parity
    ncols = (W - s + 1) // 2
    nblocks = max(1, min(threads, ncols // (MIN_BLOCK // 2)))
    per = (ncols + nblocks - 1) // nblocks
    for bk in nb.prange(nblocks):
        j0 = bk * per
        j1 = min(ncols, j0 + per)
        nj = j1 - j0
        x0 = 2 * j0  # the block's columns x0 .. x1 - 1 hold its lines s + 2j, j0 <= j < j1
        x1 = min(W, x0 + 2 * nj + 1)
        xa = x0 + s
        xe = xa + 2 * nj - 1
        both = np.empty(x1 - x0, u.dtype)
        kept = both[s:]
        dp = np.empty((H, nj), u.dtype)
        prev = np.empty(nj, u.dtype)  # the last row's elimination before its pivot
        for y in range(H):
            d = dp[y]
            _col_rhs(f, u, cn, cw, cnw, cne, y, x0, x1, both)
            for j in range(nj):
                d[j] = kept[2 * j]
            iy = cinv[s, y, j0:j1]
            if y > 0:
                my = ccp[s, y - 1, j0:j1]  # the coupling to the row above over its pivot
                for j in range(nj):
                    t = d[j] + my[j] * prev[j]
                    prev[j] = t
                    d[j] = t * iy[j]
            else:
                for j in range(nj):
                    prev[j] = d[j]
                    d[j] *= iy[j]
        # back substitution from the stored (u-typed) value below, the product in u's
        # precision: the rounding of the CUDA kernel, which the tests compare with
        below = np.empty_like(u[0, :nj])
        for y in range(H - 1, -1, -1):
            d = dp[y]
            if y == H - 1:
                for j in range(nj):
                    below[j] = d[j]
            else:
                ey = ccp[s, y, j0:j1]
                for j in range(nj):
                    below[j] = d[j] + ey[j] * below[j]
            uy = u[y, xa:xe:2]
            for j in range(nj):
                uy[j] = below[j]
