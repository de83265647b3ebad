"""The robust output stretch of SPEC section 6, and quantisation to the output's bit depth.

The network output has no fixed range: each image is mapped so that its
``low`` and ``high`` percentiles (default 0.5 and 99.5) span [0, 1], then clipped.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .arrays import array_module

LOW = 0.5
HIGH = 99.5


def robust_stretch(a: Any, low: float = LOW, high: float = HIGH) -> Any:
    """Per image of a (H, W) or (N, H, W) NumPy/CuPy array: percentiles to [0, 1], clipped.

    An image whose percentiles coincide falls back to its min-max span; a
    constant image maps to 0.5 (it has no contrast to stretch, and any fixed
    value is as good as another; mid-grey keeps it visible).
    """
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"need 0 <= low < high <= 100 percentiles; got low={low}, high={high}")
    xp = array_module(a)
    stack = a if a.ndim == 3 else a[None]
    flat = stack.reshape(stack.shape[0], -1).astype(xp.float32, copy=False)
    # one q per call: CuPy's percentile with several q along axis 1 of a single row (one
    # image) indexes its sorted copy by q instead of by row and reads past it, so the high
    # percentile is garbage (cupy#9508, CuPy 14). q as float64, not a Python float: NumPy
    # then interpolates in float64 as it does for a list, and the values stay bit for bit.
    lo, hi = (xp.percentile(flat, np.float64(q), axis=1).astype(xp.float32)
              for q in (low, high))
    mn, mx = flat.min(axis=1), flat.max(axis=1)
    narrow = hi <= lo
    lo = xp.where(narrow, mn, lo)
    hi = xp.where(narrow, mx, hi)
    span = hi - lo
    flat_out = (flat - lo[:, None]) / xp.where(span > 0, span, 1)[:, None]
    flat_out = xp.where((span > 0)[:, None], flat_out, xp.float32(0.5))
    out = xp.clip(flat_out, 0, 1).astype(xp.float32).reshape(stack.shape)
    return out if a.ndim == 3 else out[0]


def check_bits(bits: Any) -> int:
    """``bits`` as an int, or a ValueError: ``int()`` would read 12.7 as 12 and True as 1."""
    if isinstance(bits, (bool, np.bool_)) or not isinstance(bits, numbers.Integral):
        raise ValueError(f"bits must be an integer; got {bits!r} ({type(bits).__name__})")
    return int(bits)


def integer_bits(dtype: Any, bits: int | None = None) -> int:
    """The stored bit depth of integer ``dtype`` data: ``bits`` checked, or the dtype's own.

    Signed types hold one bit less (the sign), so an int32 image has at most 31.
    """
    dtype = np.dtype(dtype)
    full = np.iinfo(dtype).bits if dtype.kind == "u" else np.iinfo(dtype).bits - 1
    bits = full if bits is None else check_bits(bits)
    if not 1 <= bits <= full:
        raise ValueError(f"bits={bits} does not fit dtype {dtype}: it holds 1 to {full} bits")
    return bits


def quantise(y: Any, dtype: Any, bits: int | None = None) -> Any:
    """[0, 1] floats to ``dtype``: integers on [0, 2**bits - 1] (default: the dtype's range).

    Float dtypes get float32 on [0, 1].
    """
    xp = array_module(y)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return y.astype(xp.float32, copy=False)
    if dtype.kind not in "ui":
        raise ValueError(f"cannot write output of dtype {dtype}")
    bits = integer_bits(dtype, bits)
    top = float(2 ** bits - 1)
    if bits <= 24:  # float32 holds every integer up to 2**24 exactly
        return xp.rint(xp.clip(y, 0, 1) * top).astype(dtype)
    # wider integers: float64, capped below 2**bits (2**63 - 1 rounds up to 2**63 and would wrap)
    limit = min(top, float(np.nextafter(2.0 ** bits, 0.0)))
    return xp.minimum(xp.rint(xp.clip(y, 0, 1).astype(xp.float64) * top), limit).astype(dtype)
