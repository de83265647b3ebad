"""How the CPU preconditioner was chosen: PCG iterations to a detail error of 1e-3 and 1e-5.

    python benchmarks/compare_preconditioners.py [SIZE ...]     (default 512)

Candidates, all inside the same float64 CG on the same system (sample 00000001_000.png
resized with 8-bit quantisation kept):

- pyamg Ruge-Stuben and smoothed aggregation (the anchors);
- 2x2 piecewise-constant aggregation, Galerkin 5-point coarse operators, red-black GS V(1,1);
- our black-box multigrid (Dendy interpolation, Galerkin 9-point coarse levels) with
  zebra line Gauss-Seidel, one or two alternating sweeps (x-lines then y-lines) per level;
- the same with the plateau correction before and after the cycle (what the CPU backend runs).
Results and the discussion are in benchmarks/preconditioners.md.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spl

from xvert_gpu import reference
from xvert_gpu.cpu import multigrid
from xvert_gpu.cpu.system import CpuSystem
from xvert_gpu.samples import load_sample


def cg_iterations(A, b, precond, exact, maxiter=300):
    """Iterations of float64 PCG to detail errors 1e-3 and 1e-5 (None when not reached)."""
    den = np.linalg.norm(b - exact)
    x = np.zeros_like(b)
    r = b.copy()
    z = precond(r)
    p = z.copy()
    rz = r @ z
    hits = {1e-3: None, 1e-5: None}
    for it in range(1, maxiter + 1):
        q = A @ p
        a = rz / (p @ q)
        x += a * p
        r -= a * q
        err = np.linalg.norm(x - exact) / den
        for t in hits:
            if hits[t] is None and err <= t:
                hits[t] = it
        if hits[1e-5] is not None:
            break
        z = precond(r)
        rz_new = r @ z
        p = z + rz_new / rz * p
        rz = rz_new
    return hits


def aggregation_2x2(shape, wx, wy):
    """Unsmoothed 2x2 aggregation, Galerkin (stays 5-point), red-black GS V(1,1)."""
    levels = []
    mass = np.ones(shape)
    while True:
        A = sp.csr_matrix(reference.system_matrix(wx, wy) - sp.eye(mass.size) + sp.diags(mass.ravel()))
        levels.append((mass.shape, A))
        if min(mass.shape) <= 8:
            break
        H, W = mass.shape
        Hc, Wc = (H + 1) // 2, (W + 1) // 2
        yy, xx = np.arange(H)[:, None] // 2, np.arange(W)[None, :] // 2
        mc = np.zeros((Hc, Wc))
        np.add.at(mc, (yy, xx), mass)
        jj = np.arange(W - 1)
        wxc = np.zeros((Hc, Wc - 1))
        np.add.at(wxc, (yy, (jj[jj % 2 == 1] // 2)[None, :]), wx[:, jj % 2 == 1])
        ii = np.arange(H - 1)
        wyc = np.zeros((Hc - 1, Wc))
        np.add.at(wyc, ((ii[ii % 2 == 1] // 2)[:, None], xx), wy[ii % 2 == 1, :])
        mass, wx, wy = mc, wxc, wyc
    coarse = spl.splu(levels[-1][1].tocsc())

    def cycle(k, b):
        shape_k, A = levels[k]
        if k == len(levels) - 1:
            return coarse.solve(b)
        H, W = shape_k
        colour = ((np.arange(H)[:, None] + np.arange(W)[None, :]) % 2).ravel()
        D = A.diagonal()
        x = np.zeros_like(b)
        for c in (0, 1):
            m = colour == c
            x[m] += (b - A @ x)[m] / D[m]
        yy, xx = np.arange(H)[:, None] // 2, np.arange(W)[None, :] // 2
        Hc, Wc = (H + 1) // 2, (W + 1) // 2
        rc = np.zeros((Hc, Wc))
        np.add.at(rc, (yy, xx), (b - A @ x).reshape(H, W))
        x += cycle(k + 1, rc.ravel()).reshape(Hc, Wc)[yy, xx].ravel()
        for c in (1, 0):
            m = colour == c
            x[m] += (b - A @ x)[m] / D[m]
        return x

    return lambda r: cycle(0, r)


def boxmg(x32, plan, plateaus):
    """Our hierarchy with a smoothing plan per level ('rc' = one alternating sweep)."""
    system = CpuSystem(x32, 1.0, 1.2, 1e-4, 1e-4, plateaus=plateaus)
    h = system.hierarchy
    sweeps = [len(s) // 2 for s in plan]
    saved = multigrid.SWEEPS
    multigrid.SWEEPS = (sweeps[0], sweeps[-1])

    def apply(r):
        z = np.zeros(r.shape, np.float32)
        h.apply(r.reshape(x32.shape), z.reshape(x32.shape))
        return z.astype(np.float64)

    return apply, lambda: setattr(multigrid, "SWEEPS", saved)


def main(sizes):
    import pyamg

    for size in sizes:
        x32 = load_sample(size=size).astype(np.float32) / np.float32(255)
        x = x32.astype(np.float64)
        wx, wy = reference.weights(x)
        A = reference.system_matrix(wx, wy).tocsr()
        exact = reference.wls_smooth(x).ravel()
        b = x.ravel()
        rows = []
        for name, make in [
            ("pyamg Ruge-Stuben", lambda: pyamg.ruge_stuben_solver(A).aspreconditioner().matvec),
            ("pyamg smoothed aggregation", lambda: pyamg.smoothed_aggregation_solver(A).aspreconditioner().matvec),
            ("2x2 aggregation + RB-GS", lambda: aggregation_2x2(x.shape, wx, wy)),
        ]:
            t = time.perf_counter()
            hits = cg_iterations(A, b, make(), exact)
            rows.append((name, hits, time.perf_counter() - t))
        for plateaus in (False, True):
            for plan in (["rc"], ["rc", "rcrc"], ["rcrc"]):
                apply, restore = boxmg(x32, plan, plateaus)
                t = time.perf_counter()
                hits = cg_iterations(A, b, apply, exact)
                restore()
                name = (f"BoxMG + zebra lines, sweeps {'/'.join(str(len(p) // 2) for p in plan)}"
                        + (" + plateaus" if plateaus else ""))
                rows.append((name, hits, time.perf_counter() - t))
        print(f"\n{size}^2: PCG iterations to detail error (float64 CG, wall time of this script)")
        for name, hits, sec in rows:
            print(f"  {name:<44} 1e-3: {str(hits[1e-3]):>5}  1e-5: {str(hits[1e-5]):>5}  {sec:7.1f} s")


if __name__ == "__main__":
    main([int(s) for s in sys.argv[1:]] or [512])
