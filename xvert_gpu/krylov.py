"""Preconditioned conjugate gradients over a backend's fused kernels (pyamg ``krylov.cg`` style)."""

from __future__ import annotations

import math
from typing import Any, Callable, Protocol


class System(Protocol):
    """What a backend provides for one SPD system ``A x = b`` (arrays of one image)."""

    b: Any

    def zeros(self, precise: bool = False) -> Any: ...  # precise: float64 storage
    def matvec_dot(self, p: Any, q: Any) -> float: ...          # q = A p; returns p.q
    def precondition(self, r: Any, z: Any) -> None: ...          # z = M r
    def dot(self, a: Any, b: Any) -> float: ...
    def update_solution(self, x: Any, r: Any, p: Any, q: Any, a: float) -> float: ...
    def update_direction(self, p: Any, z: Any, beta: float) -> None: ...
    # optional: update_split(x, r, p, q, a, rp, z) -> (||r||^2, rp . z), the solution update
    # that also rounds r into rp (the working precision), in one pass (see pcg)


def pcg(system: System, x0: Any = None, tol: float = 1e-5, maxiter: int | None = None,
        callback: Callable[[Any], None] | None = None,
        residuals: list | None = None) -> tuple[Any, int]:
    """Solve ``A x = b`` by preconditioned conjugate gradients.

    Parameters
    ----------
    system : System
        The operator, preconditioner and fused vector updates of one backend.
    x0 : array, optional
        Starting guess (zeros by default).
    tol : float
        Stop when the residual satisfies ``||r|| <= tol ||b||``: the recursively updated
        residual first, then ``b - A x`` recomputed from ``x`` (float64), which replaces it and
        restarts the iteration when it disagrees (see Notes).
    maxiter : int, optional
        Iteration limit (default 500).
    callback : callable, optional
        Called as ``callback(x)`` after every iteration.
    residuals : list, optional
        Receives ``||r_k|| / ||b||``, starting with the initial residual.

    Returns
    -------
    x : array
        The approximate solution.
    info : int
        0 when converged, otherwise the number of iterations done.

    Notes
    -----
    With float32 search directions the recursive residual drifts away from ``b - A x`` by about
    ``1e-7 lam`` of ``||b||`` (the operator's entries are ``lam`` times larger than ``b``'s), so
    for a large ``lam`` or a tight ``tol`` it could report convergence for a wrong ``x`` (a
    2x2 image at ``lam = 1e8`` came out 3.0 above the exact answer). The check at the end costs
    one float64 operator application; after a replacement the last entry of ``residuals`` is
    the recomputed value, and the iteration goes on from it.

    A system whose ``flexible`` attribute is true has a preconditioner that is not a fixed
    linear operator (a K-cycle); the direction update then takes the Polak-Ribiere form
    ``beta = r_k . (z_k - z_{k-1}) / r_{k-1} . z_{k-1}`` (flexible CG, Notay 2000), which
    equals the usual one for a fixed symmetric preconditioner and costs one dot product more.
    """
    maxiter = 500 if maxiter is None else int(maxiter)
    flexible = bool(getattr(system, "flexible", False))
    b = system.b
    bnorm = math.sqrt(system.dot(b, b))
    # x and r accumulate many small updates and stay in float64; z and p are float32, and so
    # is q unless the system asks for precise products (``precise_matvec``)
    x = system.zeros(precise=True)
    r = system.zeros(precise=True)
    if x0 is None:
        r[...] = b
        rnorm = math.sqrt(system.dot(r, r))
    else:
        x[...] = x0
        rnorm = _replace_residual(system, x, r)
    if bnorm == 0.0:
        if residuals is not None:
            residuals.append(0.0)
        return x, 0
    if residuals is not None:
        residuals.append(rnorm / bnorm)
    if rnorm <= tol * bnorm:
        return x, 0
    z = system.zeros()
    q = system.zeros(precise=getattr(system, "precise_matvec", False))
    # a system with ``update_split`` keeps r rounded to its working precision in rp, written by
    # the solution update itself: the preconditioner and the dot products read rp, not r (the
    # rounding changes them by 1e-7 relative, as the preconditioner's own rounding of r does)
    split = hasattr(system, "update_split")
    rp = system.zeros() if split else r
    if split:
        rp[...] = r
    system.precondition(rp, z)
    p = system.zeros()  # not z.copy(): the system allocates (from its pool, on the CPU)
    p[...] = z
    rz = system.dot(rp, z)
    for it in range(1, maxiter + 1):
        pq = system.matvec_dot(p, q)
        if not pq > 0.0:  # exact solution reached, or breakdown
            return x, 0 if rnorm <= tol * bnorm else it
        alpha = rz / pq
        r_z_old = 0.0  # r_k . z_{k-1}, which a fixed symmetric preconditioner makes zero
        if split:
            rr, r_z_old = system.update_split(x, r, p, q, alpha, rp, z if flexible else None)
        else:
            rr = system.update_solution(x, r, p, q, alpha)
        rnorm = math.sqrt(rr)
        if residuals is not None:
            residuals.append(rnorm / bnorm)
        if callback is not None:
            callback(x)
        restart = False
        if rnorm <= tol * bnorm:
            rnorm = _replace_residual(system, x, r)
            if residuals is not None:
                residuals[-1] = rnorm / bnorm
            if rnorm <= tol * bnorm:
                return x, 0
            restart = True  # the recursion had drifted: go on from the true residual
            if split:
                rp[...] = r
        elif flexible and not split:
            r_z_old = system.dot(r, z)
        system.precondition(rp, z)
        rz_new = system.dot(rp, z)
        if restart:
            p[...] = z
        else:
            system.update_direction(p, z, (rz_new - r_z_old) / rz)
        rz = rz_new
    rnorm = _replace_residual(system, x, r)  # what the caller is told is the true residual
    if residuals is not None:
        residuals[-1] = rnorm / bnorm
    return x, 0 if rnorm <= tol * bnorm else maxiter


def _replace_residual(system: System, x: Any, r: Any) -> float:
    """r = b - A x, recomputed from x (float64); returns ||r||."""
    system.matvec_dot(x, r)
    r *= -1.0  # in place: b - r would be a temporary float64 image, with every level held
    r += system.b
    return math.sqrt(system.dot(r, r))
