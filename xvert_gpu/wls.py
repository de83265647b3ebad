"""Weighted-least-squares edge-preserving smoothing (SPEC section 2, Eqs. 2-3).

``g = argmin sum (g - x)^2 + lam * (w_x (dg/dx)^2 + w_y (dg/dy)^2)``, i.e. the
sparse SPD system ``(I + lam L_w) g = x``, solved by conjugate gradients with a
multigrid preconditioner on the chosen backend.
"""

from __future__ import annotations

import numbers
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import backends
from .arrays import array_module, caller_stream, to_numpy, to_working
from .cpu import workspace
from .krylov import pcg


@dataclass
class SolveInfo:
    """What one ``wls_smooth`` call did.

    For a stack (N, H, W), ``iterations`` and ``residuals`` hold one entry per
    image and ``converged`` is true only if every image converged.
    """

    iterations: Any
    residuals: Any
    converged: bool
    backend: str
    seconds: float = 0.0
    tol: float = 0.0
    extra: dict = field(default_factory=dict)


_WEIGHT_MAX = float(np.finfo(np.float32).max)
# What the solver resolves (measured on the NIH samples at 256^2 and crops; the float64 cycle of
# cpu/system.py above lam / eps = 1e6). Below EPS_MIN the weight between equal pixels exceeds the
# weight across a one-level step of 8-bit data by more than 1e7, and the cycle stops reducing the
# error (detail error 0.1-0.8 at eps = 1e-10 for lam >= 1, where eps = 1e-9 converges). Above
# RATIO_MAX float64 evaluates b - A g only to about 1e-3 of b, and the solve drifts (detail error
# 1e-3 to 0.8 at lam / eps = 1e14-1e16; at most 3e-5 up to 1e13).
EPS_MIN = 1e-9
RATIO_MAX = 1e13


def _is_real(v: Any) -> bool:
    """A real scalar (NumPy and 0-d arrays included), not a string or a bool."""
    if isinstance(v, (str, bytes, bool, np.bool_)) or v is None:
        return False
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return getattr(v, "ndim", 0) == 0 and not np.iscomplexobj(v)


def _check_weight_params(lam: float, alpha: float, eps: float,
                         delta: float) -> tuple[float, float, float, float]:
    """The weight parameters as floats, or a ValueError naming the first bad one."""
    lam, alpha, eps, delta = (_check_real(name, v) for name, v in
                              (("lam", lam), ("alpha", alpha), ("eps", eps), ("delta", delta)))
    if lam < 0:
        raise ValueError(f"lam must be >= 0; got {lam}")
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0; got {alpha}")
    if eps <= 0 or delta <= 0:
        raise ValueError(f"eps and delta must be > 0; got eps={eps}, delta={delta}")
    if lam / eps > _WEIGHT_MAX:  # the weight between equal pixels, stored in float32
        raise ValueError(f"lam / eps = {lam / eps:g} overflows the float32 weights (at most "
                         f"{_WEIGHT_MAX:g}); got lam={lam}, eps={eps}")
    return lam, alpha, eps, delta


def _check_real(name: str, v: Any) -> float:
    """``v`` as a Python float, or a ValueError naming ``name``.

    The float is what the solver and the weights use: a Decimal, a Fraction or a 0-d torch
    tensor passes the check but would not mix with NumPy arrays in the arithmetic after it.
    """
    if not _is_real(v):
        raise ValueError(f"{name} must be a real number; got {v!r} ({type(v).__name__})")
    if not np.isfinite(float(v)):
        raise ValueError(f"{name} must be finite; got {v}")
    return float(v)


def _check_params(lam: float, alpha: float, eps: float, delta: float, tol: float,
                  maxiter: int | None = None) -> tuple[float, float, float, float, float]:
    """(lam, alpha, eps, delta, tol) as floats, or a ValueError naming the first bad parameter."""
    lam, alpha, eps, delta = _check_weight_params(lam, alpha, eps, delta)
    if lam > 0 and eps < EPS_MIN:
        raise ValueError(f"eps = {eps:g} is below {EPS_MIN:g}, the smallest the solver resolves: "
                         "the weight between equal pixels (lam / eps) would exceed the weight "
                         "across a one-level step by more than 1e7 (the paper's eps is 1e-4)")
    if lam / eps > RATIO_MAX:
        raise ValueError(f"lam / eps = {lam / eps:g} is above {RATIO_MAX:g}, the largest the "
                         "solver resolves: float64 computes the residual of such a system only to "
                         "about 1e-3 of the image, and the solve drifts; got "
                         f"lam={lam:g}, eps={eps:g}")
    tol = _check_real("tol", tol)
    if not 0 < tol < 1:
        raise ValueError(f"tol is a relative residual and must lie in (0, 1); got {tol}")
    if maxiter is not None and (isinstance(maxiter, bool) or not isinstance(maxiter, numbers.Integral)
                                or maxiter < 1):
        raise ValueError(f"maxiter must be a positive integer or None; got {maxiter!r}")
    return lam, alpha, eps, delta, tol


def wls_weights(image: Any, lam: float = 1.0, alpha: float = 1.2, eps: float = 1e-4,
                delta: float = 1e-4) -> tuple[Any, Any]:
    """Smoothness weights of the WLS filter, lambda included.

    Parameters
    ----------
    image : array (H, W) or (N, H, W)
        Integer (scaled by its dtype's range) or float on [0, 1].
    lam, alpha, eps, delta : float
        ``w = lam / (|dl|^alpha + eps)`` with ``l = log(image + delta)``.

    Returns
    -------
    wx : array (..., H, W-1)
        Weights between horizontal neighbours.
    wy : array (..., H-1, W)
        Weights between vertical neighbours.
    """
    lam, alpha, eps, delta = _check_weight_params(lam, alpha, eps, delta)
    x, back = to_working(image)
    xp = array_module(x)
    lum = xp.log(x.astype(xp.float64) + delta)
    wx = lam / (xp.abs(xp.diff(lum, axis=-1)) ** alpha + eps)
    wy = lam / (xp.abs(xp.diff(lum, axis=-2)) ** alpha + eps)
    return back(wx.astype(xp.float32)), back(wy.astype(xp.float32))


def smooth_array(x: Any, lam: float, alpha: float, eps: float, delta: float, tol: float,
                 maxiter: int | None, backend: str) -> tuple[Any, SolveInfo]:
    """WLS of a validated float32 (H, W) or (N, H, W) array of the backend's array module."""
    t0 = time.perf_counter()
    stack = x if x.ndim == 3 else x[None]
    if backend == "cuda":
        # one batched solve: every image's CG scalars live on the device
        from .cuda.system import solve_batch
        out, iterations, residuals, flags = solve_batch(stack, lam, alpha, eps, delta, tol, maxiter)
        converged = all(flags)
    else:
        out, iterations, residuals, converged = _solve_each(stack, lam, alpha, eps, delta, tol,
                                                            maxiter, backend)
    if not converged:
        warnings.warn(f"WLS solve did not reach tol={tol:g} within maxiter; "
                      f"final relative residuals {[r[-1] for r in residuals]}", RuntimeWarning,
                      stacklevel=3)
    if x.ndim == 2:
        out, iterations, residuals = out[0], iterations[0], residuals[0]
    info = SolveInfo(iterations, residuals, converged, backend, time.perf_counter() - t0, tol)
    return out, info


def _solve_each(stack: Any, lam: float, alpha: float, eps: float, delta: float, tol: float,
                maxiter: int | None, backend: str):
    """One ``krylov.pcg`` per image through the backend's ``System``."""
    xp = array_module(stack)
    out = xp.empty(stack.shape, xp.float32)
    iterations, residuals, converged = [], [], True
    system_cls = backends.system_class(backend)
    for i, img in enumerate(stack):
        history: list[float] = []
        if lam == 0.0:  # the system is the identity
            out[i] = img
            iterations.append(0)
            residuals.append([0.0])
            continue
        # the solve's work arrays come from (and go back to) the pool of earlier solves
        with workspace.lease():
            system = system_cls(img, lam, alpha, eps, delta)
            # starting from the image itself leaves only the detail layer x - g to remove, which
            # the line smoothers take out fast: 19/21/22 -> 17/17/18 iterations at 512/1024/2048^2
            g, info = pcg(system, x0=img, tol=tol, maxiter=maxiter, residuals=history)
            out[i] = g  # a copy: g is leased
        iterations.append(len(history) - 1)
        residuals.append(history)
        converged &= info == 0
    return out, iterations, residuals, converged


def wls_smooth(image: Any, lam: float = 1.0, alpha: float = 1.2, eps: float = 1e-4,
               delta: float = 1e-4, tol: float = 1e-5, maxiter: int | None = None,
               device: str = "auto", return_info: bool = False):
    """Edge-preserving WLS smoothing of an image or a stack of images.

    Parameters
    ----------
    image : array (H, W) or (N, H, W)
        NumPy, CuPy or torch. Integers are scaled by their dtype's range; float
        input must already be on [0, 1].
    lam : float
        Smoothing strength (``lam = 0`` returns the input).
    alpha, eps, delta : float
        Weight exponent, weight regulariser and log offset (SPEC section 2). The solver
        resolves ``eps >= 1e-9`` and ``lam / eps <= 1e13`` (a ValueError beyond); above
        ``lam / eps = 1e6`` its multigrid cycle runs in float64 (on the CPU backend; 10-15 %
        slower, about 7 images' worth more memory).
    tol : float
        Relative residual ``||x - A g|| / ||x||`` at which conjugate gradients
        stops, in (0, 1), checked on the residual recomputed from ``g`` before it stops. The
        iteration starts from ``g = x``; for the paper's ``lam`` (0.1 to 10) the detail error
        ``||g - g_exact|| / ||x - g_exact||`` comes out below ``tol``. A ``lam`` so small that
        ``x`` itself meets ``tol`` returns ``x`` (its detail layer, of size ``lam``, is
        below the tolerance).
    maxiter : int, optional
        Iteration limit per image, at least 1 (default 500); a solve that stops short warns.
    device : {"auto", "cpu", "cuda"}
        Backend; "auto" takes CUDA when CuPy sees a GPU.
    return_info : bool
        Also return a :class:`SolveInfo`.

    Returns
    -------
    g : array
        float32, same shape and array kind (and device) as ``image``.
    info : SolveInfo
        Only with ``return_info=True``.
    """
    lam, alpha, eps, delta, tol = _check_params(lam, alpha, eps, delta, tol, maxiter)
    x, back = to_working(image)
    backend = backends.resolve(device, x)
    with caller_stream(image):
        x = move_to(x, backend)
        g, info = smooth_array(x, lam, alpha, eps, delta, tol, maxiter, backend)
        g = back(move_like(g, image))
    return (g, info) if return_info else g


def move_to(x: Any, backend: str) -> Any:
    """The array on the backend's device (no copy when it is already there)."""
    if backend == "cuda":
        import cupy
        return cupy.asarray(x)
    return to_numpy(x)


def move_like(y: Any, like: Any) -> Any:
    """Put a result back on the device the caller's data came from."""
    from .arrays import _is_cupy, _is_torch

    on_gpu = _is_cupy(like) or (_is_torch(like) and like.is_cuda)
    if on_gpu:
        import cupy
        return cupy.asarray(y)
    return to_numpy(y)
