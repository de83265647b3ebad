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


@nb.njit(parallel=True, **_NJ)
def residual(f, u, mass, cn, cw, cnw, cne, out):
    """out = f - A u."""
    H, W = u.shape
    for y in nb.prange(H):
        for x in range(W):
            out[y, x] = f[y, x] - apply_at(u, mass, cn, cw, cnw, cne, y, x, H, W)


@nb.njit(parallel=True, **_NJ)
def apply_dot(u, mass, cn, cw, cnw, cne, out):
    """out = A u; returns u . A u accumulated in float64 (one pass for PCG)."""
    H, W = u.shape
    rows = np.zeros(H)
    for y in nb.prange(H):
        part = 0.0
        for x in range(W):
            acc = apply_at(u, mass, cn, cw, cnw, cne, y, x, H, W)
            out[y, x] = acc
            part += np.float64(u[y, x]) * acc
        rows[y] = part
    return rows.sum()
