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
        Stop when the recursively updated residual satisfies ``||r|| <= tol ||b||``.
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
    """
    maxiter = 500 if maxiter is None else int(maxiter)
    b = system.b
    bnorm = math.sqrt(system.dot(b, b))
    # x and r accumulate many small updates and stay in float64; z, p, q are float32
    x = system.zeros(precise=True)
    r = system.zeros(precise=True)
    if x0 is None:
        r[...] = b
    else:
        x[...] = x0
        system.matvec_dot(x, r)
        r[...] = b - r
    if bnorm == 0.0:
        if residuals is not None:
            residuals.append(0.0)
        return x, 0
    rnorm = math.sqrt(system.dot(r, r))
    if residuals is not None:
        residuals.append(rnorm / bnorm)
    if rnorm <= tol * bnorm:
        return x, 0
    z = system.zeros()
    q = system.zeros()
    system.precondition(r, z)
    p = z.copy()
    rz = system.dot(r, z)
    for it in range(1, maxiter + 1):
        pq = system.matvec_dot(p, q)
        if not pq > 0.0:  # exact solution reached, or breakdown
            return x, 0 if rnorm <= tol * bnorm else it
        alpha = rz / pq
        rnorm = math.sqrt(system.update_solution(x, r, p, q, alpha))
        if residuals is not None:
            residuals.append(rnorm / bnorm)
        if callback is not None:
            callback(x)
        if rnorm <= tol * bnorm:
            return x, 0
        system.precondition(r, z)
        rz_new = system.dot(r, z)
        system.update_direction(p, z, rz_new / rz)
        rz = rz_new
    return x, maxiter
