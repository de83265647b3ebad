"""Fused PCG vector updates; every dot product accumulates in float64 (reassociated, in SIMD
lanes: see :func:`.stencil.row_dot`)."""

from __future__ import annotations

import numba as nb
import numpy as np

from .stencil import _NJ, row_dot


@nb.njit(parallel=True, **_NJ)
def update_solution(x, r, p, q, a):
    """x += a p; r -= a q; returns ||r||^2."""
    H, W = x.shape
    rows = np.zeros(H)
    for y in nb.prange(H):
        for j in range(W):
            x[y, j] += a * p[y, j]
            r[y, j] -= a * q[y, j]
        rows[y] = row_dot(r[y], r[y])
    return rows.sum()


@nb.njit(parallel=True, **_NJ)
def update_split(x, r, p, q, a, rp, z):
    """x += a p; r -= a q; rp = r in rp's precision; returns (||r||^2, rp . z), the second 0
    where z is None. One pass instead of the update, a copy and a dot product."""
    H, W = x.shape
    rows = np.zeros(H)
    cross = np.zeros(H)
    for y in nb.prange(H):
        ry = r[y]
        for j in range(W):
            x[y, j] += a * p[y, j]
            ry[j] -= a * q[y, j]
            rp[y, j] = ry[j]
        rows[y] = row_dot(ry, ry)
        if z is not None:
            cross[y] = row_dot(rp[y], z[y])
    return rows.sum(), cross.sum()


@nb.njit(parallel=True, **_NJ)
def dot(a, b):
    H, W = a.shape
    rows = np.zeros(H)
    for y in nb.prange(H):
        rows[y] = row_dot(a[y], b[y])
    return rows.sum()


def update_direction(p, z, beta):
    """p = z + beta p."""
    combine(p, beta, z, 1.0)


@nb.njit(parallel=True, **_NJ)
def copy(src, dst):
    """dst[...] = src, converted to dst's type (in parallel, unlike NumPy's copy)."""
    H, W = src.shape
    for y in nb.prange(H):
        for j in range(W):
            dst[y, j] = src[y, j]


@nb.njit(parallel=True, **_NJ)
def subtract_scaled(f, s, v, out):
    """out = f - s v."""
    H, W = f.shape
    for y in nb.prange(H):
        for j in range(W):
            out[y, j] = f[y, j] - s * v[y, j]


@nb.njit(parallel=True, **_NJ)
def combine(u, a, c, b):
    """u = a u + b c."""
    H, W = u.shape
    for y in nb.prange(H):
        for j in range(W):
            u[y, j] = a * u[y, j] + b * c[y, j]
