"""Black-box multigrid cycle: the CPU WLS preconditioner (wrapped by :mod:`.plateaus`).

Operator-dependent interpolation and Galerkin coarse operators (Dendy 1982)
keep every coarse level a 9-point grid operator, and alternating zebra line
Gauss-Seidel smoothing solves the long thin iso-intensity bands of a
quantised radiograph exactly, which is what point smoothers and
aggregation miss (see ``benchmarks/preconditioners.md``). The post-smoother is
the adjoint of the pre-smoother; with the first coarse level's two cycles
repeated as a stationary iteration the cycle is a symmetric linear operator,
a preconditioner for plain conjugate gradients. Combined by CG instead (the
K-cycle, ``Hierarchy(kcycle=True)``) it is nonlinear, and the outer
iteration is flexible CG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numba as nb
import numpy as np

from . import lines, stencil, transfer, vectors, workspace
from .plateaus import Plateaus

COARSEST = 256  # unknowns solved directly at the bottom of the hierarchy


@dataclass
class Level:
    """One grid operator (see :mod:`.stencil`); ``None`` arrays: unit mass, 5-point."""

    mass: np.ndarray | None
    cn: np.ndarray
    cw: np.ndarray
    cnw: np.ndarray | None
    cne: np.ndarray | None
    pw: np.ndarray | None = None  # interpolation from the next coarser level
    # the cycle's working precision: line factors, right-hand sides and corrections
    dtype: type = np.float32
    work: dict = field(default_factory=dict)

    def __post_init__(self):
        self.rows, self.cols = lines.factor_arrays(self.shape, self.dtype)
        lines.line_factors(*self.op, *self.rows, *self.cols)

    def relax(self, f: np.ndarray, u: np.ndarray, step: tuple[bool, int]) -> None:
        """One zebra half-sweep: rows (``step[0]``) or columns of one parity."""
        along_rows, parity = step
        if along_rows:
            lines.relax_rows(f, u, self.cn, self.cw, self.cnw, self.cne, *self.rows, parity)
        else:
            lines.relax_cols(f, u, self.cn, self.cw, self.cnw, self.cne, *self.cols, parity,
                             nb.get_num_threads())

    def relax_pair(self, f: np.ndarray, u: np.ndarray, step: tuple[bool, int]) -> None:
        """Two zebra half-sweeps, parity ``step[1]`` then the other, in one pass where fused."""
        along_rows, first = step
        if along_rows:
            lines.relax_rows_pair(f, u, self.cn, self.cw, self.cnw, self.cne, *self.rows, first,
                                  nb.get_num_threads())
        else:
            self.relax(f, u, step)
            self.relax(f, u, (along_rows, 1 - first))

    @property
    def shape(self) -> tuple[int, int]:
        return self.cn.shape

    @property
    def nine(self) -> bool:
        return self.cnw is not None

    @property
    def op(self) -> tuple:
        return self.mass, self.cn, self.cw, self.cnw, self.cne

    def buffer(self, name: str, dtype=np.float64) -> np.ndarray:
        """A work array of the level's shape, kept between cycles."""
        buf = self.work.get(name)
        if buf is None:
            buf = self.work[name] = workspace.empty(self.shape, dtype)
        return buf


class Hierarchy:
    """Multigrid hierarchy of one grid operator; ``apply(r, z)`` is one cycle.

    The cycle is a V(1,1)-cycle except that the first coarse level's cycle runs twice
    (``VISITS``). With ``kcycle=False`` the second run goes on from the first one's result: a
    symmetric preconditioner still, as two steps of a symmetric stationary iteration are (the
    cycle the CUDA backend runs). With ``kcycle=True`` the two runs are combined by two steps of
    conjugate gradients on that level instead (Notay's K-cycle), which takes 20-30 % fewer
    outer iterations at 1024^2 and 2048^2 for two coarse matrix products more; the cycle is then
    no longer a fixed linear operator, and the outer solve must be flexible (``krylov.pcg``
    reads :attr:`flexible`).

    Parameters
    ----------
    fine : Level
        The finest operator.
    plateaus : Plateaus, optional
        The finest operator's plateaus, relaxed before and after the cycle.
    kcycle : bool
        Combine a level's repeated coarse cycles by conjugate gradients.
    """

    def __init__(self, fine: Level, plateaus: Plateaus | None = None, kcycle: bool = False):
        self.plateaus = plateaus
        self.kcycle = kcycle
        self.levels = [fine]
        level = fine
        while level.cn.size > COARSEST:
            H, W = level.shape
            Hc, Wc = transfer.coarse_shape(H, W)
            if (Hc, Wc) == (H, W):
                break
            level.pw = workspace.empty((4, H, W), np.float32)
            transfer.interpolation_weights(*level.op, level.pw)
            arrays = [workspace.empty((Hc, Wc), np.float32) for _ in range(5)]
            transfer.galerkin(*level.op, level.pw, *arrays)
            level = Level(*arrays, dtype=fine.dtype)
            self.levels.append(level)
        A = transfer.dense_matrix(*level.op)
        self._coarse = np.empty_like(A)
        self._coarse_inv = None
        if not _cholesky(A, self._coarse):
            # rounding made a pivot non-positive (couplings near the 1e13 limit): the inverse,
            # as before the factor; slower (OpenBLAS), but only in such extreme systems
            self._coarse_inv = np.linalg.inv(A)

    def apply(self, r: np.ndarray, z: np.ndarray) -> None:
        """z = B r, with B the cycle's approximation of A^-1."""
        f = r
        if r.dtype != z.dtype:
            # every fine-level kernel reads f: in z's precision it costs half the bytes, and the
            # lines are solved in that precision anyway (rounding r changes z by 1e-7 relative)
            f = self.levels[0].buffer("f", z.dtype)
            vectors.copy(r, f)
        self._cycle(0, f, z)
        if self.plateaus is not None:
            # the post-smoother ends on the even rows: their residual is zero
            self.plateaus.correct(f, z, odd_rows_only=True)

    def _cycle(self, k: int, f: np.ndarray, u: np.ndarray, zero: bool = True) -> None:
        """u = the level-k cycle's approximation of A_k^-1 f; ``zero=False`` improves u instead."""
        level = self.levels[k]
        if level.pw is None:
            if self._coarse_inv is None:
                _cholesky_solve(self._coarse, f, u)
            else:
                u[...] = (self._coarse_inv @ f.ravel()).reshape(u.shape)
            return
        sweeps, visits = cycle_shape(k)
        pre = _PAIRS * sweeps
        if zero:  # otherwise a repeated coarse cycle goes on from u (every step is affine in u)
            if k == 0 and self.plateaus is not None:
                self.plateaus.start(f, u)
            else:
                u[...] = 0.0
        for step in pre:
            level.relax_pair(f, u, step)
        coarse = self.levels[k + 1]
        fc = coarse.buffer("f", coarse.dtype)
        uc = coarse.buffer("u", coarse.dtype)
        # pre-smoothing ends with exact solves of the odd columns: their residual is zero
        transfer.restrict_residual_even_columns(f, u, *level.op, level.pw, fc)
        if visits == 2 and self.kcycle:
            self._krylov_visits(k + 1, fc, uc)
        else:
            for visit in range(visits):
                self._cycle(k + 1, fc, uc, zero=visit == 0)
        transfer.prolong_add(uc, level.pw, u)
        for along_rows, first in reversed(pre):
            level.relax_pair(f, u, (along_rows, 1 - first))

    def _krylov_visits(self, k: int, f: np.ndarray, u: np.ndarray) -> None:
        """u = two level-k cycles combined by two steps of flexible CG (Notay's K-cycle).

        ``c1 = C f``, ``c2 = C (f - a1 A c1)``, and u is the A-orthogonal projection of the
        solution on span(c1, c2): what the stationary repeat ``c1 + C (f - A c1)`` only
        approximates when the level's cycle is a weak solver (Notay and Vassilevski 2008).
        """
        level = self.levels[k]
        if level.pw is None:  # the coarsest level is solved exactly: nothing to combine
            self._cycle(k, f, u)
            return
        v = level.buffer("kv", level.dtype)
        rt = level.buffer("kr", level.dtype)
        c = level.buffer("kc", level.dtype)
        self._cycle(k, f, u)  # c1, kept in u
        rho1 = stencil.apply_dot(u, *level.op, v)  # v = A c1
        if not rho1 > 0.0:  # f == 0, so c1 == 0: the answer
            return
        a1 = vectors.dot(u, f) / rho1
        vectors.subtract_scaled(f, a1, v, rt)
        self._cycle(k, rt, c)  # c2
        gamma = vectors.dot(c, v)
        a2 = vectors.dot(c, rt)
        beta = stencil.apply_dot(c, *level.op, v)  # v = A c2 (A c1 is no longer needed)
        rho2 = beta - gamma * gamma / rho1  # c2's energy A-orthogonal to c1 (Cauchy-Schwarz: >= 0)
        if not rho2 > 1e-12 * beta:  # c2 adds no new direction (rt vanished, or c2 || c1)
            vectors.combine(u, a1, c, 0.0)
            return
        vectors.combine(u, a1 - gamma * a2 / (rho1 * rho2), c, a2 / rho2)

    @property
    def flexible(self) -> bool:
        """Whether ``apply`` is nonlinear in r, so that PCG needs the flexible update: a
        K-cycle combines two cycles of some level above the coarsest (where a level's cycle is
        the exact coarsest solve, ``_krylov_visits`` runs it once, a linear step)."""
        return self.kcycle and any(cycle_shape(k)[1] == 2 and self.levels[k + 1].pw is not None
                                   for k in range(len(self.levels) - 1))

    @property
    def nbytes(self) -> int:
        total = 0
        for lv in self.levels:
            for a in (lv.mass, lv.cn, lv.cw, lv.cnw, lv.cne, lv.pw, *lv.rows, *lv.cols,
                      *lv.work.values()):
                if a is not None:
                    total += a.nbytes
        total += 0 if self.plateaus is None else self.plateaus.nbytes
        return total + self._coarse.nbytes


@nb.njit(**stencil._NJ)
def _cholesky(A, L):
    """A = L L^T, L lower triangular (float64), row by row; False if a pivot is not positive.

    Serial and in Numba, as is :func:`_cholesky_solve`: NumPy's ``linalg.inv`` and ``@`` hand
    these small problems to OpenBLAS, whose threads then spin for a while after each call,
    against Numba's threads on the same cores (a 1024^2 solve 0.40 -> 0.36 s with
    OPENBLAS_NUM_THREADS=1, on two cores).
    """
    n = A.shape[0]
    L[:] = 0.0
    for i in range(n):
        Li = L[i]
        for j in range(i + 1):
            s = A[i, j] - stencil.row_dot(Li[:j], L[j, :j])
            if j < i:
                Li[j] = s / L[j, j]
            elif s > 0.0:
                Li[i] = math.sqrt(s)
            else:
                return False
    return True


@nb.njit(**stencil._NJ)
def _cholesky_solve(L, f, u):
    """u = (L L^T)^-1 f: forward substitution by rows, back substitution by columns of L^T
    (the rows of L), both with unit stride."""
    n = L.shape[0]
    fr = f.ravel()
    y = np.empty(n)
    for i in range(n):
        y[i] = (fr[i] - stencil.row_dot(L[i, :i], y[:i])) / L[i, i]
    for i in range(n - 1, -1, -1):
        xi = y[i] / L[i, i]
        y[i] = xi
        Li = L[i]
        for k in range(i):
            y[k] -= xi * Li[k]
    ur = u.ravel()
    for i in range(n):
        ur[i] = y[i]


# one alternating sweep: x-lines (even, odd rows), then y-lines (even, odd columns); reversed after
_PRE = ((True, 0), (True, 1), (False, 0), (False, 1))
assert _PRE[-1] == (False, 1)  # restrict_residual_even_columns relies on it
assert _PRE[0] == (True, 0)  # Plateaus.correct(odd_rows_only=True) after the cycle relies on it
# the same as pairs of half-sweeps of one direction (lines, first parity), which the CPU fuses
_PAIRS = _PRE[::2]
assert all(a == (b[0], 1 - b[1]) for a, b in zip(_PRE[1::2], _PAIRS))
# SWEEPS: alternating sweeps on (the finest level, every coarser one); VISITS: cycles of level
# k + 1 per cycle of level k, for (k = 0, k >= 1). The first coarse level's solve is what bounds
# the rate (benchmarks/preconditioners.md): cycling it twice with one sweep per level costs what
# the V-cycle with two coarse sweeps did, and takes 15 / 14 / 15 iterations instead of
# 17 / 17 / 18 at 512 / 1024 / 2048^2
SWEEPS = (1, 1)
VISITS = (2, 1)


def cycle_shape(k: int) -> tuple[int, int]:
    """(alternating sweeps on level k, cycles of level k + 1 per cycle of level k).

    The CUDA cycle reads its shape here too, so the two backends cannot drift apart.
    """
    i = 0 if k == 0 else 1
    return SWEEPS[i], VISITS[i]
