"""The solvers ``wls_smooth`` is measured against (SPEC section 2 anchors), on one image.

Every anchor solves the same float64 system ``(I + L_w) g = x`` and reports the
time and the detail error it reached, so speed is compared at equal accuracy.
The iterative anchors start from ``g = x``, as ``wls_smooth`` does.
"""

from __future__ import annotations

import inspect
import time
from typing import Callable

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spl

from . import reference


def _detail(x: np.ndarray, exact: np.ndarray) -> Callable[[np.ndarray], float]:
    den = float(np.linalg.norm(x - exact))
    return lambda g: float(np.linalg.norm(np.asarray(g).reshape(x.shape) - exact) / den)


def truth(x: np.ndarray, direct_max: int) -> tuple[np.ndarray, str, float]:
    """The float64 solution: a direct solve up to ``direct_max`` pixels a side, else pyamg to 1e-11."""
    if max(x.shape) <= direct_max:
        g, sec = direct(x)
        return g, "scipy spsolve", sec
    import pyamg

    t = time.perf_counter()
    A = reference.system_matrix(*reference.weights(x)).tocsr()
    g = pyamg.ruge_stuben_solver(A).solve(x.ravel(), tol=1e-11, accel="cg", maxiter=300)
    return g.reshape(x.shape), "pyamg RS-PCG to 1e-11 (direct solve too large)", time.perf_counter() - t


def direct(x: np.ndarray) -> tuple[np.ndarray, float]:
    """scipy's sparse direct solve (what the reference MATLAB code does): (g, seconds)."""
    t = time.perf_counter()
    g = reference.wls_smooth(x)
    return g, time.perf_counter() - t


def iterations_to(run: Callable[[int | None, Callable | None], np.ndarray], detail: Callable,
                  target: float, maxiter: int) -> int | None:
    """First iteration count at which an iterative solver's detail error is <= target."""
    errs: list[float] = []

    def watch(xk):
        errs.append(detail(xk))
        if errs[-1] <= target:
            raise _Reached

    try:
        run(maxiter, watch)
    except _Reached:
        return len(errs)
    return None


class _Reached(Exception):
    """Stops an anchor's iteration once the target accuracy is reached."""


def pyamg_rs(x: np.ndarray, exact: np.ndarray, target: float, maxiter: int = 300) -> dict:
    """pyamg Ruge-Stuben AMG as CG preconditioner, setup + solve to the target detail error."""
    import pyamg

    A = reference.system_matrix(*reference.weights(x)).tocsr()
    b = x.ravel()

    def run(iters, cb):
        t = time.perf_counter()
        ml = pyamg.ruge_stuben_solver(A)
        t1 = time.perf_counter()
        g = ml.solve(b, x0=b.copy(), tol=1e-14, maxiter=iters, accel="cg", callback=cb)
        return g, t1 - t, time.perf_counter() - t1

    detail = _detail(x, exact)
    its = iterations_to(lambda n, cb: run(n, cb)[0], detail, target, maxiter)
    if its is None:
        return {"iterations": None, "note": f"did not reach {target:g} in {maxiter} iterations"}
    g, setup, solve = run(its, None)
    return {"iterations": its, "setup_s": setup, "solve_s": solve, "seconds": setup + solve,
            "detail_error": detail(g)}


def jacobi_pcg(x: np.ndarray, exact: np.ndarray, target: float, maxiter: int = 4000) -> dict:
    """scipy CG with a Jacobi (diagonal) preconditioner to the target detail error."""
    A = reference.system_matrix(*reference.weights(x)).tocsr()
    M = sp.diags(1.0 / A.diagonal())
    b = x.ravel()

    def run(iters, cb):
        return spl.cg(A, b, x0=b.copy(), rtol=1e-14, atol=0.0, maxiter=iters, M=M, callback=cb)[0]

    detail = _detail(x, exact)
    its = iterations_to(run, detail, target, maxiter)
    if its is None:
        return {"iterations": None, "note": f"did not reach {target:g} in {maxiter} iterations"}
    t = time.perf_counter()
    g = run(its, None)
    sec = time.perf_counter() - t
    return {"iterations": its, "seconds": sec, "detail_error": detail(g)}


def cupy_jacobi_pcg(x: np.ndarray, exact: np.ndarray, target: float, maxiter: int = 6000) -> dict:
    """``cupyx.scipy.sparse.linalg.cg`` with a Jacobi preconditioner on the GPU (issue 3's anchor)."""
    import cupy
    import cupyx.scipy.sparse as csp
    import cupyx.scipy.sparse.linalg as cspl

    A = csp.csr_matrix(reference.system_matrix(*reference.weights(x)).tocsr())
    dinv = 1.0 / A.diagonal()
    M = cspl.LinearOperator(A.shape, matvec=lambda v: dinv * v, dtype=cupy.float64)
    b = cupy.asarray(x.ravel())
    exact_d = cupy.asarray(exact.ravel())
    den = float(cupy.linalg.norm(b - exact_d))

    # CuPy 14 renamed cg's relative tolerance from tol to rtol (as SciPy did)
    rel = "rtol" if "rtol" in inspect.signature(cspl.cg).parameters else "tol"

    def run(iters, cb):
        return cspl.cg(A, b, x0=b.copy(), atol=0.0, maxiter=iters, M=M, callback=cb,
                       **{rel: 1e-14})[0]

    its = iterations_to(run, lambda g: float(cupy.linalg.norm(g - exact_d)) / den, target, maxiter)
    if its is None:
        return {"iterations": None, "note": f"did not reach {target:g} in {maxiter} iterations"}
    run(its, None)
    cupy.cuda.Device().synchronize()
    t = time.perf_counter()
    g = run(its, None)
    cupy.cuda.Device().synchronize()
    sec = time.perf_counter() - t
    return {"iterations": its, "seconds": sec, "detail_error": float(cupy.linalg.norm(g - exact_d)) / den}


def copy_bandwidth(nbytes: int = 1 << 28, repeats: int = 20) -> float:
    """Device-to-device copy bandwidth in GB/s (bytes read + written), the GPU roofline anchor."""
    import cupy

    src = cupy.empty(nbytes, cupy.uint8)
    dst = cupy.empty_like(src)
    dst[...] = src
    start, stop = cupy.cuda.Event(), cupy.cuda.Event()
    start.record()
    for _ in range(repeats):
        dst[...] = src
    stop.record()
    stop.synchronize()
    sec = cupy.cuda.get_elapsed_time(start, stop) / 1e3 / repeats
    return 2 * nbytes / sec / 1e9
