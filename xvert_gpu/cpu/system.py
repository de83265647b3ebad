"""The WLS system ``(I + L_w) g = x`` of one image on the CPU."""

from __future__ import annotations

import numpy as np

from . import stencil, vectors
from .multigrid import Hierarchy, Level
from .plateaus import STRONG, Plateaus
from .weights import edge_weights


def weight_arrays(image: np.ndarray, lam: float, alpha: float, eps: float,
                  delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Couplings to the north and west neighbours, shape (H, W), float32."""
    cn = np.empty(image.shape, np.float32)
    cw = np.empty(image.shape, np.float32)
    edge_weights(image, float(lam), float(alpha), float(eps), float(delta), cn, cw)
    return cn, cw


class CpuSystem:
    """Matrix-free operator, multigrid preconditioner and fused PCG updates.

    ``plateaus=False`` leaves out the plateau correction, giving the plain
    cycle that the CUDA backend runs (its tests compare the two).
    """

    backend = "cpu"
    # q = A p in float64: p is float32, but A's entries are up to lam / eps times b's, so a
    # float32 q loses the small part of A p that the residual update needs (with lam = 1e4 the
    # recursive residual ended 100x below the true one, with lam = 1e6 at 1e-5 for a true 0.1)
    precise_matvec = True

    def __init__(self, image: np.ndarray, lam: float, alpha: float, eps: float, delta: float,
                 plateaus: bool = True):
        self.b = np.ascontiguousarray(image, dtype=np.float32)
        cn, cw = weight_arrays(self.b, lam, alpha, eps, delta)
        self.fine = Level(None, cn, cw, None, None)  # unit mass, 5-point
        strong = STRONG * lam / eps
        self.hierarchy = Hierarchy(self.fine, Plateaus(cn, cw, strong) if plateaus and lam > 0 else None)
        self._op = self.fine.op

    def zeros(self, precise: bool = False) -> np.ndarray:
        return np.zeros(self.b.shape, np.float64 if precise else np.float32)

    def matvec_dot(self, p: np.ndarray, q: np.ndarray) -> float:
        return stencil.apply_dot(p, *self._op, q)

    def precondition(self, r: np.ndarray, z: np.ndarray) -> None:
        self.hierarchy.apply(r, z)

    dot = staticmethod(vectors.dot)
    update_solution = staticmethod(vectors.update_solution)
    update_direction = staticmethod(vectors.update_direction)
