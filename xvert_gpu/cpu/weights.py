"""WLS smoothness weights on the CPU (SPEC section 2, Eq. 3).

``w = lam / (|l_i - l_j|^alpha + eps)`` with ``l = log(img + delta)``: one
logarithm per pixel and a logarithm and an exponential per edge. Numba calls
libm for ``math.log`` and ``math.exp``, one element at a time, and this
LLVM has no vector math library; so both are written out here (fdlibm's
``log`` and ``exp``, within an ulp of float64) in loops over a row that LLVM
vectorises, with the exponent taken from the bits of the float64 values.
The power is thereby evaluated in float64, more accurately than the float32
``logf``/``expf`` of the CUDA kernel (the two agree to a few 1e-7).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from . import workspace
from .stencil import _NJ, chunks

_TINY = 2.2250738585072014e-308  # the smallest normal float64: the bit tricks below need one
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e+00
_SQRT2 = 1.4142135623730951
_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01
_P1 = 1.66666666666666019037e-01
_P2 = -2.77777777770155933842e-03
_P3 = 6.61375632143793436117e-05
_P4 = -1.65339022054652515390e-06
_P5 = 4.13813679705723846039e-08
_EXP_MAX = 700.0  # |y| beyond this: exp(y) is taken at the bound (0 or 1e304 beside eps, lam)
_MANTISSA = np.int64(0x000FFFFFFFFFFFFF)
_ONE_BITS = np.int64(0x3FF0000000000000)


@nb.njit(inline="always", **_NJ)
def _log_into(v, out):
    """out[j] = log(v[j]) for positive normal float64 ``v`` (fdlibm ``__ieee754_log``).

    ``v = 2^k m`` with ``m`` in [sqrt(2)/2, sqrt(2)); ``log m`` from the series in
    ``s = (m - 1) / (m + 1)``. ``out`` may not alias ``v``.
    """
    n = v.shape[0]
    vb = v.view(np.int64)
    ob = out.view(np.int64)
    for j in range(n):
        ob[j] = (vb[j] & _MANTISSA) | _ONE_BITS  # m in [1, 2)
    for j in range(n):
        k = np.float64(((vb[j] >> 52) & 0x7FF) - 1023)
        m = out[j]
        up = m > _SQRT2
        m = m * 0.5 if up else m
        k = k + 1.0 if up else k
        f = m - 1.0
        s = f / (2.0 + f)
        z = s * s
        w = z * z
        r = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7))) + w * (_LG2 + w * (_LG4 + w * _LG6))
        hfsq = 0.5 * f * f
        out[j] = k * _LN2_HI - ((hfsq - (s * (hfsq + r) + k * _LN2_LO)) - f)


@nb.njit(inline="always", **_NJ)
def _exp_into(y, out):
    """out[j] = exp(y[j]) (fdlibm ``__ieee754_exp``), ``y`` clipped to [-700, 700]; ``out`` may
    be ``y``."""
    n = y.shape[0]
    ob = out.view(np.int64)
    for j in range(n):
        x = min(max(y[j], -_EXP_MAX), _EXP_MAX)
        k = math.floor(x * _INV_LN2 + 0.5)
        hi = x - k * _LN2_HI
        lo = k * _LN2_LO
        r = hi - lo
        t = r * r
        c = r - t * (_P1 + t * (_P2 + t * (_P3 + t * (_P4 + t * _P5))))
        e = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi)
        out[j] = e
        ob[j] += np.int64(k) << 52  # times 2^k: e lies in [0.7, 1.5], the sum stays normal


@nb.njit(parallel=True, **_NJ)
def _log_luminance(img, delta, out):
    H, W = img.shape
    T = chunks(H)
    for t in nb.prange(T):
        v = np.empty(W)
        for y in range(t * H // T, (t + 1) * H // T):
            iy = img[y]
            for x in range(W):
                v[x] = np.float64(iy[x]) + delta  # >= delta >= _TINY (see edge_weights)
            _log_into(v, out[y])


@nb.njit(inline="always", **_NJ)
def _weights_into(d, lam, alpha, eps, g, e, out):
    """out[j] = lam / (d[j]^alpha + eps), and lam / eps where d[j] is zero; g, e: scratch.

    A zero d (equal pixels) would take the log of zero: it gets a placeholder, replaced at
    the end. A nonzero d under _TINY cannot occur: two distinct doubles l_i, l_j with
    |l| >= 1e-16 (or l == 0) differ by at least 1e-32.
    """
    n = d.shape[0]
    for j in range(n):
        g[j] = d[j] if d[j] >= _TINY else 1.0
    _log_into(g, e)
    for j in range(n):
        e[j] *= alpha
    _exp_into(e, e)
    top = lam / eps
    for j in range(n):
        out[j] = top if d[j] < _TINY else lam / (e[j] + eps)


@nb.njit(parallel=True, **_NJ)
def _edge_weights(lum, lam, alpha, eps, cn, cw):
    H, W = lum.shape
    T = chunks(H)
    for t in nb.prange(T):
        d = np.empty(W)
        g = np.empty(W)
        e = np.empty(W)
        for y in range(t * H // T, (t + 1) * H // T):
            ly = lum[y]
            n = W - 1  # west edges, x >= 1
            for j in range(n):
                d[j] = abs(ly[j + 1] - ly[j])
            _weights_into(d[:n], lam, alpha, eps, g[:n], e[:n], cw[y, 1:])
            cw[y, 0] = 0.0
            if y == 0:
                cn[0, :] = 0.0
                continue
            ln = lum[y - 1]
            for j in range(W):
                d[j] = abs(ly[j] - ln[j])
            _weights_into(d, lam, alpha, eps, g, e, cn[y])


def edge_weights(img: np.ndarray, lam: float, alpha: float, eps: float, delta: float,
                 cn: np.ndarray, cw: np.ndarray) -> None:
    """cn[y, x] couples (y, x) to (y-1, x), cw[y, x] to (y, x-1); zero on the first row/column.

    ``w = lam / (|l_i - l_j|^alpha + eps)`` with ``l = log(img + delta)``.
    """
    lum = workspace.empty(img.shape)
    if delta >= _TINY:
        _log_luminance(img, float(delta), lum)
    else:  # x + delta may be subnormal, which the bit tricks cannot take apart
        np.log(np.asarray(img, np.float64) + delta, out=lum)
    _edge_weights(lum, float(lam), float(alpha), float(eps), cn, cw)
    workspace.give_back(lum)
