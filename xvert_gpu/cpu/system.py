"""The WLS system ``(I + L_w) g = x`` of one image on the CPU."""

from __future__ import annotations

import numpy as np

from . import stencil, vectors, workspace
from .multigrid import Hierarchy, Level
from .plateaus import STRONG, Plateaus
from .weights import edge_weights


def weight_arrays(image: np.ndarray, lam: float, alpha: float, eps: float,
                  delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Couplings to the north and west neighbours, shape (H, W), float32."""
    cn = workspace.empty(image.shape, np.float32)
    cw = workspace.empty(image.shape, np.float32)
    edge_weights(image, float(lam), float(alpha), float(eps), float(delta), cn, cw)
    return cn, cw


# Above this ratio of the largest coupling (lam / eps) to the unit mass the cycle runs in float64.
# A float32 line factor is rounded by about 6e-8 of the coupling, which then exceeds the mass and
# the edge couplings that the line solve must resolve. Measured on 256^2 samples (iterations to
# tol 1e-5, float32 -> float64 cycle): lam / eps = 1e5 (the paper's lam = 10): 25 -> 25;
# 1e6: 45 -> 45; 1e7: 101 -> 86; 1e8: 248 -> 126; eps = 1e-8 at lam = 1: no convergence (detail
# error 0.1-0.3) -> 74-81 iterations. The float64 cycle costs about 7 float32 images more
# (factors, search directions, right-hand sides; peak RSS at 2048^2) and 10-15 % more time (the
# 1024^2 sample at lam = 1, same 14 iterations), so the paper's range stays in float32.
FLOAT64_CYCLE_ABOVE = 1e6


def cycle_dtype(lam: float, eps: float) -> type:
    """The multigrid cycle's working precision for weights up to ``lam / eps``."""
    return np.float64 if lam / eps > FLOAT64_CYCLE_ABOVE else np.float32


# Up to this ratio lam / eps the first coarse level's two cycles are combined by CG (the K-cycle,
# see multigrid.Hierarchy); above it, by the stationary repeat. Measured on 256^2 samples
# (iterations to tol 1e-5, stationary -> K-cycle): lam / eps = 1e4 (the paper's lam = 1):
# 11 -> 10 and 11 -> 9; 1e5: 25 -> 24 and 25 -> 20; 2e5: 33 -> 29 and 30 -> 26; 3e5 (eps = 1e-6):
# 33 -> 33 and 34 -> 34; 5e5: 46 -> 43 and 35 -> 37; 1e6: 45 -> 47 and 49 -> 51; 1e7: 86 -> 109;
# 1e8: 66 -> 157 and 52 -> 123. Where the Laplacian swamps the unit mass the nonlinear
# preconditioner costs flexible CG more than the better coarse solve gains.
KCYCLE_UP_TO = 3e5


def use_kcycle(lam: float, eps: float) -> bool:
    """Whether the K-cycle pays for weights up to ``lam / eps``."""
    return lam / eps <= KCYCLE_UP_TO


class CpuSystem:
    """Matrix-free operator, multigrid preconditioner and fused PCG updates.

    ``plateaus=False, kcycle=False`` leaves out the plateau correction and combines the
    repeated coarse cycle as a stationary iteration, giving the plain cycle that the CUDA
    backend runs (its tests compare the two). ``kcycle=None`` uses the K-cycle where it pays
    (:func:`use_kcycle`).
    """

    backend = "cpu"
    # q = A p in float64: p is float32, but A's entries are up to lam / eps times b's, so a
    # float32 q loses the small part of A p that the residual update needs (with lam = 1e4 the
    # recursive residual ended 100x below the true one, with lam = 1e6 at 1e-5 for a true 0.1)
    precise_matvec = True

    def __init__(self, image: np.ndarray, lam: float, alpha: float, eps: float, delta: float,
                 plateaus: bool = True, kcycle: bool | None = None):
        self.b = np.ascontiguousarray(image, dtype=np.float32)
        cn, cw = weight_arrays(self.b, lam, alpha, eps, delta)
        self.dtype = cycle_dtype(lam, eps)
        self.fine = Level(None, cn, cw, None, None, dtype=self.dtype)  # unit mass, 5-point
        strong = STRONG * lam / eps
        self.hierarchy = Hierarchy(self.fine, Plateaus(cn, cw, strong) if plateaus and lam > 0 else None,
                                   kcycle=use_kcycle(lam, eps) if kcycle is None else kcycle)
        self._op = self.fine.op

    @property
    def flexible(self) -> bool:
        """The K-cycle makes the preconditioner nonlinear: ``krylov.pcg`` then takes the
        flexible step."""
        return self.hierarchy.flexible

    def zeros(self, precise: bool = False) -> np.ndarray:
        return workspace.zeros(self.b.shape, np.float64 if precise else self.dtype)

    def matvec_dot(self, p: np.ndarray, q: np.ndarray) -> float:
        return stencil.apply_dot(p, *self._op, q)

    def precondition(self, r: np.ndarray, z: np.ndarray) -> None:
        self.hierarchy.apply(r, z)

    def update_split(self, x: np.ndarray, r: np.ndarray, p: np.ndarray, q: np.ndarray, a: float,
                     rp: np.ndarray, z: np.ndarray | None) -> tuple[float, float]:
        """The solution update that also rounds r into ``rp`` (the cycle's precision), which
        the preconditioner and the dot products then read at half the bytes; returns
        ``(||r||^2, rp . z)``. ``krylov.pcg`` uses it where a system has it."""
        return vectors.update_split(x, r, p, q, a, rp, z)

    dot = staticmethod(vectors.dot)
    update_solution = staticmethod(vectors.update_solution)
    update_direction = staticmethod(vectors.update_direction)
