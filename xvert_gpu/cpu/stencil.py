"""Symmetric 9-point grid operators in the form ``A u = m u + sum_j c_ij (u_i - u_j)``.

Every level of the multigrid hierarchy stores up to five arrays of shape
(H, W): ``mass`` (the row sum of A) and the couplings to the north ``cn``
(y-1, x), west ``cw`` (y, x-1), north-west ``cnw`` and north-east ``cne``.
Couplings are positive (the off-diagonal matrix entries are ``-c``); the
south, east and the two southern diagonals follow by symmetry. The finest
level has a unit mass (``mass is None``) and is 5-point (``cnw`` and ``cne``
are ``None``): Numba compiles a separate specialisation for ``None`` and
prunes those branches, so the finest level never reads arrays it does not need.

Applying the operator in difference form keeps the small mass term accurate
next to couplings 1e4 times larger, which a ``diag * u - sum c u_j`` form
would cancel away in float32.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_NJ = dict(cache=True, nogil=True, fastmath=False)


@nb.njit(inline="always", **_NJ)
def mass_at(mass, y, x):
    return 1.0 if mass is None else np.float64(mass[y, x])


@nb.njit(inline="always", **_NJ)
def neighbours(cn, cw, cnw, cne, y, x, H, W):
    """Couplings (n, s, w, e, nw, ne, sw, se) of pixel (y, x); zero across the border."""
    n = cn[y, x] if y > 0 else 0.0
    s = cn[y + 1, x] if y + 1 < H else 0.0
    w = cw[y, x] if x > 0 else 0.0
    e = cw[y, x + 1] if x + 1 < W else 0.0
    nw = ne = sw = se = 0.0
    if cnw is not None:
        if y > 0 and x > 0:
            nw = cnw[y, x]
        if y > 0 and x + 1 < W:
            ne = cne[y, x]
        if y + 1 < H and x > 0:
            sw = cne[y + 1, x - 1]
        if y + 1 < H and x + 1 < W:
            se = cnw[y + 1, x + 1]
    return (np.float64(n), np.float64(s), np.float64(w), np.float64(e),
            np.float64(nw), np.float64(ne), np.float64(sw), np.float64(se))


@nb.njit(inline="always", **_NJ)
def diagonal(mass, c, y, x):
    return mass_at(mass, y, x) + c[0] + c[1] + c[2] + c[3] + c[4] + c[5] + c[6] + c[7]


@nb.njit(inline="always", **_NJ)
def apply_at(u, mass, cn, cw, cnw, cne, y, x, H, W):
    """(A u)[y, x] in difference form."""
    n, s, w, e, nw, ne, sw, se = neighbours(cn, cw, cnw, cne, y, x, H, W)
    ui = np.float64(u[y, x])
    acc = mass_at(mass, y, x) * ui
    if y > 0:
        acc += n * (ui - u[y - 1, x])
    if y + 1 < H:
        acc += s * (ui - u[y + 1, x])
    if x > 0:
        acc += w * (ui - u[y, x - 1])
    if x + 1 < W:
        acc += e * (ui - u[y, x + 1])
    if cnw is not None:
        if y > 0 and x > 0:
            acc += nw * (ui - u[y - 1, x - 1])
        if y > 0 and x + 1 < W:
            acc += ne * (ui - u[y - 1, x + 1])
        if y + 1 < H and x > 0:
            acc += sw * (ui - u[y + 1, x - 1])
        if y + 1 < H and x + 1 < W:
            acc += se * (ui - u[y + 1, x + 1])
    return acc


@nb.njit(inline="always", **_NJ)
def apply_row(u, mass, cn, cw, cnw, cne, y, out):
    """out[x] = (A u)[y, x] for the whole row, in float64.

    Interior rows are formed from row slices indexed from zero, the form that
    LLVM vectorises (``apply_at``'s bounds checks keep it scalar).
    """
    H, W = u.shape
    if y == 0 or y + 1 == H or W < 2:
        for x in range(W):
            out[x] = apply_at(u, mass, cn, cw, cnw, cne, y, x, H, W)
        return
    uy = u[y]
    un = u[y - 1]
    us = u[y + 1]
    c0 = cn[y]
    c1 = cn[y + 1]
    if mass is None:
        for x in range(W):
            v = np.float64(uy[x])
            out[x] = v + c0[x] * (v - un[x]) + c1[x] * (v - us[x])
    else:
        my = mass[y]
        for x in range(W):
            v = np.float64(uy[x])
            out[x] = my[x] * v + c0[x] * (v - un[x]) + c1[x] * (v - us[x])
    n = W - 1
    a = cw[y, 1:]
    o = out[1:]  # west neighbours, x >= 1
    b = uy[1:]
    c = uy[:n]
    for j in range(n):
        o[j] += a[j] * (np.float64(b[j]) - c[j])
    o = out[:n]  # east neighbours, x <= W - 2
    for j in range(n):
        o[j] += a[j] * (np.float64(c[j]) - b[j])
    if cnw is not None:
        o = out[1:]  # north-west and south-west, x >= 1
        a = cnw[y, 1:]
        b = un[:n]
        c = cne[y + 1, :n]
        d = us[:n]
        e = uy[1:]
        for j in range(n):
            v = np.float64(e[j])
            o[j] += a[j] * (v - b[j]) + c[j] * (v - d[j])
        o = out[:n]  # north-east and south-east, x <= W - 2
        a = cne[y, :n]
        b = un[1:]
        c = cnw[y + 1, 1:]
        d = us[1:]
        e = uy[:n]
        for j in range(n):
            v = np.float64(e[j])
            o[j] += a[j] * (v - b[j]) + c[j] * (v - d[j])


# reassociation for this function alone (LLVM keeps an instruction's flags when it inlines it):
# a float64 sum kept in order is one dependent add per element; reassociated it runs in SIMD lanes,
# 3.5x faster at 2048^2 (1.1 against 3.8 ms for two float32 images, whose 32 MB it then reads at
# the bandwidth of a copy). The sum no longer depends on the order of its rows: still bit-identical
# for any number of threads
@nb.njit(cache=True, nogil=True, fastmath={"reassoc"})
def row_dot(a, b):
    """sum a[j] b[j] over two rows, accumulated in float64."""
    s = 0.0
    for j in range(a.shape[0]):
        s += np.float64(a[j]) * b[j]
    return s


@nb.njit(inline="always", **_NJ)
def chunks(H):
    """Row blocks for a parallel loop: enough to balance threads, few enough to reuse buffers."""
    return min(H, 32)


@nb.njit(parallel=True, **_NJ)
def residual(f, u, mass, cn, cw, cnw, cne, out):
    """out = f - A u."""
    H, W = u.shape
    T = chunks(H)
    for t in nb.prange(T):
        row = np.empty(W)
        for y in range(t * H // T, (t + 1) * H // T):
            apply_row(u, mass, cn, cw, cnw, cne, y, row)
            fy = f[y]
            oy = out[y]
            for x in range(W):
                oy[x] = fy[x] - row[x]


@nb.njit(parallel=True, **_NJ)
def apply_dot(u, mass, cn, cw, cnw, cne, out):
    """out = A u; returns u . A u accumulated in float64 (one pass for PCG)."""
    H, W = u.shape
    T = chunks(H)
    parts = np.zeros(T)
    for t in nb.prange(T):
        row = np.empty(W)
        part = 0.0
        for y in range(t * H // T, (t + 1) * H // T):
            apply_row(u, mass, cn, cw, cnw, cne, y, row)
            out[y] = row
            part += row_dot(u[y], row)
        parts[t] = part
    return parts.sum()
