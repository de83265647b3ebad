"""Which (lam, eps) the CPU solver resolves, with the multigrid cycle in float32 and in float64.

For each 256^2 sample (8-bit resize, as ``load_sample``) and each (eps, lam) the table gives
``C`` (converged to tol = 1e-5) or ``-`` (not within 300 iterations), the iterations and the
detail error ``||g - g_exact|| / ||x - g_exact||`` against the float64 direct solve. The first
block forces the float32 cycle everywhere (as before the eleventh session), the second is the
solver as shipped (float64 above ``lam / eps = FLOAT64_CYCLE_ABOVE``).

    python benchmarks/precision_range.py > benchmarks/results/precision_range.txt
"""

from __future__ import annotations

import platform
import warnings

import numpy as np

import xvert_gpu
from xvert_gpu import reference
from xvert_gpu.cpu import system
from xvert_gpu.samples import NAMES, load_sample

EPS = (1e-4, 1e-6, 1e-7, 1e-8, 1e-9)
LAM = (0.1, 1.0, 10.0, 1e2, 1e4)


def table(images: dict[str, np.ndarray]) -> None:
    for name, x in images.items():
        for eps in EPS:
            cells = []
            for lam in LAM:
                if lam / eps > xvert_gpu.wls.RATIO_MAX:
                    cells.append("   refused  ")
                    continue
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # not converged: in the table
                    g, info = xvert_gpu.wls_smooth(x.astype(np.float32), lam=lam, eps=eps,
                                                   maxiter=300, return_info=True)
                exact = reference.wls_smooth(x, lam=lam, eps=eps)
                err = reference.detail_error(g, exact, x)
                cells.append(f"{'C' if info.converged else '-'}{info.iterations:4d} {err:7.1e}")
            print(f"{name[:8]} eps={eps:5.0e} | " + " | ".join(cells), flush=True)


def main() -> None:
    print(f"xvert_gpu {xvert_gpu.__version__}, NumPy {np.__version__}, {platform.processor() or platform.machine()}")
    print("columns: lam = " + ", ".join(f"{lam:g}" for lam in LAM))
    images = {name: load_sample(name, 256).astype(np.float64) / 255 for name in NAMES}
    shipped = system.FLOAT64_CYCLE_ABOVE
    print("\nfloat32 cycle everywhere (before):")
    system.FLOAT64_CYCLE_ABOVE = float("inf")
    table(images)
    system.FLOAT64_CYCLE_ABOVE = shipped
    print(f"\nas shipped (float64 cycle above lam / eps = {shipped:g}):")
    table(images)


if __name__ == "__main__":
    main()
