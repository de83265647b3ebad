"""The preprocessing of SPEC section 2 (Eqs. 1-6): X -> (Xp, Y)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import backends
from .arrays import array_module, caller_stream, to_working
from .wls import SolveInfo, _check_params, _check_real, move_like, move_to, smooth_array


@dataclass
class Preprocessed:
    """The intermediate images of Eqs. 1-6, each float32 and of the caller's array kind.

    Attributes
    ----------
    x : input on [0, 1]
    g : WLS(x) [2-3]
    e : combined image ``mean(x) - x + g`` [4], floored at ``e_floor``
    xp : preprocessed image ``x / e`` [5]
    hfc : high-frequency component ``xp - WLS(xp)`` [6]
    info : the two solves (``info[0]`` for g, ``info[1]`` for WLS(xp))
    """

    x: Any
    g: Any
    e: Any
    xp: Any
    hfc: Any
    info: tuple[SolveInfo, SolveInfo]


def combine(x: Any, g: Any, e_floor: float) -> tuple[Any, Any]:
    """Eqs. 1, 4, 5 on a (N, H, W) or (H, W) array: returns (E, Xp).

    E = mean(X) - X + g can reach zero or below at strong bright edges; the
    floor keeps Xp = X / E finite.
    """
    xp = array_module(x)
    axes = (-2, -1)
    mean = x.mean(axis=axes, keepdims=True, dtype=xp.float64).astype(xp.float32)
    e = xp.maximum(mean - x + g, xp.float32(e_floor))
    return e, x / e


def preprocess(image: Any, lam: float = 1.0, alpha: float = 1.2, eps: float = 1e-4,
               delta: float = 1e-4, e_floor: float = 1e-3, tol: float = 1e-5,
               maxiter: int | None = None, device: str = "auto") -> Preprocessed:
    """Preprocess a radiograph or a stack: WLS, inversion, division and high-pass.

    Parameters
    ----------
    image : array (H, W) or (N, H, W)
        NumPy, CuPy or torch; integers scaled by their dtype's range, floats on [0, 1].
    lam, alpha, eps, delta : float
        WLS parameters, used for both solves (ranges as in :func:`~xvert_gpu.wls_smooth`).
    e_floor : float
        Lower clamp of the combined image E before the division (must be > 0).
    tol, maxiter, device
        As in :func:`wls_smooth`.

    Returns
    -------
    Preprocessed
    """
    lam, alpha, eps, delta, tol = _check_params(lam, alpha, eps, delta, tol, maxiter)
    e_floor = _check_real("e_floor", e_floor)
    if not e_floor > 0:
        raise ValueError(f"e_floor must be > 0; got {e_floor}")
    x, back = to_working(image)
    backend = backends.resolve(device, x)
    with caller_stream(image):
        x = move_to(x, backend)
        g, info_g = smooth_array(x, lam, alpha, eps, delta, tol, maxiter, backend)
        e, xprep = combine(x, g, e_floor)
        smooth_xp, info_xp = smooth_array(xprep, lam, alpha, eps, delta, tol, maxiter, backend)
        hfc = xprep - smooth_xp

        def out(a):
            return back(move_like(a, image))

        # x may be the caller's own array (float32 input is not copied): give back a copy
        return Preprocessed(out(x.copy()), out(g), out(e), out(xprep), out(hfc),
                            (info_g, info_xp))
