"""The WLS system ``(I + L_w) g = x`` on the GPU: CuPy arrays and the kernels of ``kernels/``.

The same algorithm as the CPU backend (``xvert_gpu.cpu``), step for step and in the same
floating-point order: the matrix-free 5-point operator, the black-box multigrid cycle of
``cpu.multigrid`` as preconditioner (Dendy interpolation, Galerkin coarse operators, zebra
line Gauss-Seidel along rows then columns, the sweeps and coarse cycles per level of
``cpu.multigrid.cycle_shape``, the residual
restricted from the even columns, a dense inverse at the coarsest level) and conjugate
gradients with fused vector updates and float64 reductions. Every kernel works on a stack
of N images of one shape, so a stack is solved in one set of launches:

- :class:`CudaSystem` is one image behind the ``krylov.System`` protocol (one host sync
  per reduction, as ``krylov.pcg`` needs its scalars on the host);
- :func:`solve_batch` runs PCG for a whole stack with every scalar (alpha, beta, norms,
  convergence state) on the device, and reads the state back only every
  ``check_every`` iterations.

CuPy is imported only inside functions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..cpu import multigrid as _cpu_multigrid
from ..cpu.transfer import coarse_shape
from . import loader

_THREADS = 256       # threads per block of the per-pixel kernels (a multiple of 32: reductions)
_LINE_THREADS = 64   # threads per block of the one-thread-per-line kernels
_MAX_BLOCKS = 2048   # blocks per launch of the per-pixel kernels; grid-stride loops do the rest
_MAX_GRID_Y = 65535  # images per launch row; the kernels loop over the rest
_MAX_PIXELS = 1 << 30

_i32 = np.int32
_f64 = np.float64

# the cycle of the CPU backend, followed exactly: coarsest size, the alternating zebra sweep,
# and per level the sweeps and the coarse cycles (``cpu.multigrid.cycle_shape``)
COARSEST = _cpu_multigrid.COARSEST
_PRE = _cpu_multigrid._PRE
assert _PRE[-1] == (False, 1)  # the residual restriction relies on it (odd columns solved last)


def _cupy():
    import cupy
    return cupy


def _kernel(name: str):
    return loader.function(name)


def _grid(n_images: int, count: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Launch shape of a per-pixel kernel: blockIdx.x over ``count`` items, .y over images."""
    gy = min(n_images, _MAX_GRID_Y)
    gx = max(1, min(-(-count // _THREADS), _MAX_BLOCKS // gy))
    return (gx, gy, 1), (_THREADS, 1, 1)


def _grid_flat(total: int, threads: int = _LINE_THREADS):
    """Launch shape of a kernel with one flattened thread index over ``total`` items."""
    return (max(1, -(-total // threads)), 1, 1), (threads, 1, 1)


def _check_shape(shape: tuple[int, ...]) -> None:
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"expected a non-empty (N, H, W) stack; got shape {shape}")
    if shape[1] * shape[2] > _MAX_PIXELS:
        raise ValueError(f"image of {shape[1]}x{shape[2]} pixels is too large for the CUDA kernels")


def _stack(image: Any, ndim: int):
    """Contiguous float32 CuPy array of ``ndim`` dimensions (RawKernels ignore strides)."""
    cp = _cupy()
    a = cp.ascontiguousarray(cp.asarray(image), dtype=cp.float32)
    if a.ndim != ndim:
        raise ValueError(f"expected a {ndim}-D array; got shape {tuple(a.shape)}")
    return a


def _dtype_tag(a) -> str:
    if a.dtype == np.float32:
        return "f32"
    if a.dtype == np.float64:
        return "f64"
    raise TypeError(f"expected a float32 or float64 array; got {a.dtype}")


def weights(stack, lam: float, alpha: float, eps: float, delta: float):
    """Couplings (cn, cw) of a (N, H, W) float32 stack, as ``cpu.system.weight_arrays``."""
    cp = _cupy()
    stack = _stack(stack, 3)
    N, H, W = stack.shape
    _check_shape(tuple(stack.shape))
    cn = cp.empty((N, H, W), cp.float32)
    cw = cp.empty((N, H, W), cp.float32)
    grid, block = _grid(N, H * W)
    _kernel("xv_wls_weights")(grid, block, (stack, _i32(N), _i32(H), _i32(W), _f64(lam),
                                            _f64(alpha), _f64(eps), _f64(delta), cn, cw))
    return cn, cw


class Level:
    """One level of the batched hierarchy: the operator of N images and its work arrays.

    ``mass is None`` means a unit mass (the finest level); ``nine=False`` a 5-point
    operator whose diagonal couplings are ``None``.
    """

    def __init__(self, mass, cn, cw, cnw, cne, nine: bool):
        self.mass, self.cn, self.cw, self.cnw, self.cne = mass, cn, cw, cnw, cne
        self.nine = bool(nine)
        self.shape = tuple(cn.shape)
        self.pw = None       # (N, 4, H, W) interpolation from the next coarser level
        self.factors = None  # (rcp, rinv, ccp, cinv) Thomas factors of the line smoother
        self.f = self.u = None

    @property
    def op_args(self) -> tuple:
        """(mass, cn, cw, cnw, cne, unit_mass, nine) kernel arguments; unused arrays are
        passed as ``cn`` (never read)."""
        cn = self.cn
        return (cn if self.mass is None else self.mass, cn, self.cw,
                self.cnw if self.nine else cn, self.cne if self.nine else cn,
                _i32(self.mass is None), _i32(self.nine))

    def line_factors(self) -> None:
        cp = _cupy()
        N, H, W = self.shape
        self.factors = tuple(cp.empty(self.shape, cp.float32) for _ in range(4))
        grid, block = _grid_flat(N * (H + W))
        _kernel("xv_line_factors")(grid, block, (*self.op_args, _i32(N), _i32(H), _i32(W),
                                                 *self.factors))

    def interpolation(self) -> None:
        cp = _cupy()
        N, H, W = self.shape
        self.pw = cp.empty((N, 4, H, W), cp.float32)
        args = (*self.op_args, _i32(N), _i32(H), _i32(W), self.pw)
        _kernel("xv_interp_edges")(*_grid(N, H * W), args)
        _kernel("xv_interp_centres")(*_grid(N, (H // 2) * (W // 2)), args)

    def galerkin(self) -> "Level":
        cp = _cupy()
        N, H, W = self.shape
        Hc, Wc = coarse_shape(H, W)
        p1 = cp.empty(self.shape, cp.float32)
        _kernel("xv_pw_row_sums")(*_grid(N, H * W), (self.pw, _i32(N), _i32(H), _i32(W), p1))
        arrays = [cp.empty((N, Hc, Wc), cp.float32) for _ in range(5)]
        _kernel("xv_galerkin")(*_grid(N, Hc * Wc), (*self.op_args, self.pw, p1, _i32(N), _i32(H),
                                                    _i32(W), _i32(Hc), _i32(Wc), *arrays))
        return Level(*arrays, nine=True)

    # -- per-iteration kernels ---------------------------------------------------------------
    def apply_dot(self, u, out, dot) -> None:
        """out = A u; dot[n] += u[n] . out[n] (dot zeroed by the caller)."""
        N, H, W = self.shape
        tag = _dtype_tag(u)
        if out.dtype != u.dtype:
            if (u.dtype, out.dtype) != (np.float32, np.float64):
                raise TypeError("apply_dot needs u and out of one dtype, or u float32 and out "
                                "float64")
            tag = "f32_f64"
        _kernel(f"xv_apply_dot_{tag}")(*_grid(N, H * W), (u, *self.op_args, _i32(N), _i32(H),
                                                          _i32(W), out, dot))

    def residual(self, f, u, out) -> None:
        """out = f - A u."""
        N, H, W = self.shape
        tag = _dtype_tag(u)
        if out.dtype != u.dtype or f.dtype != np.float64:
            raise TypeError("residual needs a float64 f and u, out of one dtype")
        _kernel(f"xv_residual_{tag}")(*_grid(N, H * W), (f, u, *self.op_args, _i32(N), _i32(H),
                                                         _i32(W), out))

    def relax(self, f, u, along_rows: bool, parity: int, scratch) -> None:
        """One zebra half-sweep: exact solves along the rows (or columns) of one parity."""
        N, H, W = self.shape
        lines = (H if along_rows else W) - parity
        total = N * ((lines + 1) // 2)
        if total <= 0:
            return
        rcp, rinv, ccp, cinv = self.factors
        cp_, inv = (rcp, rinv) if along_rows else (ccp, cinv)
        name = f"xv_relax_{'rows' if along_rows else 'cols'}_{_dtype_tag(u)}"
        mass, cn, cw, cnw, cne, _, nine = self.op_args
        _kernel(name)(*_grid_flat(total), (f, u, cn, cw, cnw, cne, nine, _i32(N), _i32(H),
                                           _i32(W), cp_, inv, _i32(parity), scratch))

    def restrict_residual(self, f, u, fc) -> None:
        """fc = P^T (f - A u), the residual taken on the even columns only (it vanishes on the
        odd ones after a sweep that ends with their exact solves)."""
        N, H, W = self.shape
        Hc, Wc = fc.shape[1:]
        if f.dtype != np.float64:
            raise TypeError("restrict_residual needs a float64 f")
        _kernel(f"xv_restrict_residual_{_dtype_tag(u)}")(
            *_grid(N, Hc * Wc), (f, u, *self.op_args, self.pw, _i32(N), _i32(H), _i32(W),
                                 _i32(Hc), _i32(Wc), fc))

    def restrict(self, r, fc) -> None:
        """fc = P^T r (fc float64, on the next coarser level)."""
        N, H, W = self.shape
        Hc, Wc = fc.shape[1:]
        _kernel(f"xv_restrict_{_dtype_tag(r)}")(*_grid(N, Hc * Wc), (r, self.pw, _i32(N), _i32(H),
                                                                     _i32(W), _i32(Hc), _i32(Wc),
                                                                     fc))

    def prolong_add(self, uc, u) -> None:
        """u += P uc (uc float64, from the next coarser level)."""
        N, H, W = self.shape
        Hc, Wc = uc.shape[1:]
        _kernel(f"xv_prolong_add_{_dtype_tag(u)}")(*_grid(N, H * W), (uc, self.pw, _i32(N),
                                                                      _i32(H), _i32(W), _i32(Hc),
                                                                      _i32(Wc), u))


class Multigrid:
    """Batched multigrid hierarchy of N fine operators; ``apply(r, z)`` is one cycle of
    ``cpu.multigrid.Hierarchy`` (without plateaus) for every image.

    Parameters
    ----------
    cn, cw : CuPy arrays (N, H, W) float32
        Couplings of the finest (unit-mass, 5-point) operators, as :func:`weights` makes them.
    """

    def __init__(self, cn, cw):
        cp = _cupy()
        _check_shape(tuple(cn.shape))
        N, H, W = cn.shape
        fine = Level(None, cn, cw, None, None, nine=False)
        self.levels = [fine]
        level = fine
        while H * W > COARSEST:  # as cpu.multigrid.Hierarchy
            Hc, Wc = coarse_shape(H, W)
            if (Hc, Wc) == (H, W):
                break
            level.interpolation()
            level.line_factors()
            level = level.galerkin()
            self.levels.append(level)
            H, W = Hc, Wc
        M = H * W
        dense = cp.empty((N, M, M), cp.float64)
        _kernel("xv_dense_matrix")(*_grid_flat(N * M), (*level.op_args, _i32(N), _i32(H), _i32(W),
                                                        dense))
        inv = cp.linalg.inv(dense)
        del dense
        self._inv_t = cp.ascontiguousarray(inv.transpose(0, 2, 1))
        for lv in self.levels[1:]:
            lv.f = cp.empty(lv.shape, cp.float64)
            lv.u = cp.empty(lv.shape, cp.float64)
        self._scratch = cp.empty(N * fine.shape[1] * fine.shape[2], cp.float64)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.levels[0].shape

    def apply(self, r, z) -> None:
        """z = B r for all images: r (N, H, W) float64, z (N, H, W) float32."""
        if r.dtype != np.float64 or z.dtype != np.float32:
            raise TypeError(f"precondition needs r float64 and z float32; got {r.dtype}, {z.dtype}")
        self._cycle(0, r, z)

    def _cycle(self, k: int, f, u, zero: bool = True) -> None:
        level = self.levels[k]
        if level.pw is None:
            N, H, W = level.shape
            M = H * W
            _kernel(f"xv_coarse_solve_{_dtype_tag(u)}")(*_grid_flat(N * M),
                                                        (self._inv_t, f, _i32(N), _i32(M), u))
            return
        sweeps, visits = _cpu_multigrid.cycle_shape(k)
        pre = _PRE * sweeps
        if zero:
            u.fill(0)
        for along_rows, parity in pre:
            level.relax(f, u, along_rows, parity, self._scratch)
        coarse = self.levels[k + 1]
        level.restrict_residual(f, u, coarse.f)
        for visit in range(visits):
            self._cycle(k + 1, coarse.f, coarse.u, zero=visit == 0)
        level.prolong_add(coarse.u, u)
        for along_rows, parity in reversed(pre):
            level.relax(f, u, along_rows, parity, self._scratch)

    @property
    def nbytes(self) -> int:
        total = self._inv_t.nbytes + self._scratch.nbytes
        for lv in self.levels:
            for a in (lv.mass, lv.cn, lv.cw, lv.cnw, lv.cne, lv.pw, lv.f, lv.u,
                      *(lv.factors or ())):
                if a is not None:
                    total += a.nbytes
        return total


def _dot(a, b, out) -> None:
    """out[n] += a[n] . b[n] over (N, H, W) arrays."""
    if a.dtype == np.float32 and b.dtype == np.float64:
        a, b = b, a
    name = f"xv_dot_{_dtype_tag(a)}_{_dtype_tag(b)}"
    N = a.shape[0]
    HW = a.size // N
    _kernel(name)(*_grid(N, HW), (a, b, _i32(N), _i32(HW), out))


def _update_solution(x, r, p, q, num, den, state, rr) -> None:
    N = x.shape[0]
    HW = x.size // N
    _kernel("xv_update_solution")(*_grid(N, HW), (x, r, p, q, _i32(N), _i32(HW), num, den, state,
                                                  rr))


def _update_direction(p, z, num, den, state) -> None:
    N = p.shape[0]
    HW = p.size // N
    _kernel("xv_update_direction")(*_grid(N, HW), (p, z, _i32(N), _i32(HW), num, den, state))


class CudaSystem:
    """One image's WLS system on the GPU behind the ``krylov.System`` protocol.

    Vectors are CuPy arrays of the image's shape: ``x``, ``r``, ``q`` float64, ``z``, ``p``
    float32 (``zeros(precise=True)`` gives float64).
    """

    precise_matvec = True  # q = A p in float64, as the CPU system (see krylov.pcg)

    backend = "cuda"

    def __init__(self, image, lam: float, alpha: float, eps: float, delta: float):
        cp = _cupy()
        self.b = _stack(image, 2)
        stack = self.b[None]
        cn, cw = weights(stack, lam, alpha, eps, delta)
        self.hierarchy = Multigrid(cn, cw)
        self.fine = self.hierarchy.levels[0]
        self._acc = cp.zeros(1, cp.float64)
        self._coef = cp.zeros(1, cp.float64)
        self._one = cp.ones(1, cp.float64)
        self._active = cp.zeros(1, cp.int32)

    def zeros(self, precise: bool = False):
        cp = _cupy()
        return cp.zeros(self.b.shape, cp.float64 if precise else cp.float32)

    def _check(self, *arrays) -> None:
        for a in arrays:
            if tuple(a.shape) != tuple(self.b.shape) or not a.flags.c_contiguous:
                raise ValueError(f"expected a C-contiguous array of shape {tuple(self.b.shape)}")

    def _result(self) -> float:
        return float(self._acc[0])

    def matvec_dot(self, p, q) -> float:
        self._check(p, q)
        self._acc.fill(0)
        self.fine.apply_dot(p[None], q[None], self._acc)
        return self._result()

    def precondition(self, r, z) -> None:
        self._check(r, z)
        self.hierarchy.apply(r[None], z[None])

    def dot(self, a, b) -> float:
        self._check(a, b)
        self._acc.fill(0)
        _dot(a[None], b[None], self._acc)
        return self._result()

    def update_solution(self, x, r, p, q, a: float) -> float:
        self._check(x, r, p, q)
        if x.dtype != np.float64 or r.dtype != np.float64 or p.dtype != np.float32 \
                or q.dtype != np.float64:
            raise TypeError("update_solution needs x, r, q float64 and p float32")
        self._coef.fill(a)
        self._acc.fill(0)
        _update_solution(x[None], r[None], p[None], q[None], self._coef, self._one,
                         self._active, self._acc)
        return self._result()

    def update_direction(self, p, z, beta: float) -> None:
        self._check(p, z)
        if p.dtype != np.float32 or z.dtype != np.float32:
            raise TypeError("update_direction needs p, z float32")
        self._coef.fill(beta)
        _update_direction(p[None], z[None], self._coef, self._one, self._active)


# states of xv_pcg_check
ACTIVE, CONVERGED, BREAKDOWN, MAXITER = 0, 1, 2, 3


class _BatchPCG:
    """Device state of one batched PCG solve and the launches of one iteration.

    Per image: ``scal`` rows pq (p.Ap), rr (||r||^2) and two r.z slots used alternately
    (iteration ``it`` writes slot ``it % 2`` and reads slot ``(it - 1) % 2``), ``state`` and
    ``iters`` (see ``xv_pcg_check``), and ``rr_hist`` (maxiter + 1, N). No launch argument
    depends on the iteration number except through that parity.
    """

    def __init__(self, b, mg: Multigrid, tol: float, maxiter: int):
        cp = _cupy()
        N = b.shape[0]
        self.N, self.mg, self.fine = N, mg, mg.levels[0]
        self.tol, self.maxiter = _f64(tol), _i32(maxiter)
        self.scal = cp.zeros((4, N), cp.float64)
        self.pq, self.rr = self.scal[0], self.scal[1]
        self.rz = (self.scal[2], self.scal[3])
        self.bb = cp.zeros(N, cp.float64)
        self.rr_hist = cp.zeros((maxiter + 1, N), cp.float64)
        self.state = cp.empty(N, cp.int32)
        self.iters = cp.empty(N, cp.int32)
        _dot(b, b, self.bb)
        # start from x = b, as wls._solve_each does on the CPU: r = b - A b
        self.x = b.astype(cp.float64)
        self.r = cp.empty(b.shape, cp.float64)
        self.fine.residual(self.x, self.x, self.r)
        rr0 = cp.zeros(N, cp.float64)
        _dot(self.r, self.r, rr0)
        self._scalar_grid = _grid_flat(N, _THREADS)
        _kernel("xv_pcg_init")(*self._scalar_grid, (_i32(N), self.bb, rr0, self.tol,
                                                    self.rr_hist, self.state, self.iters))
        self.z = cp.empty(b.shape, cp.float32)
        self.q = cp.empty(b.shape, cp.float64)  # see krylov.pcg: A p in float64
        self.p = None

    def active(self) -> bool:
        """Host check (a sync): is any image still iterating?"""
        return bool((_cupy().asnumpy(self.state) == ACTIVE).any())

    def start(self, it: int = 0) -> None:
        """z = B r, p = z and its r.z, before iteration ``it + 1`` (which reads that slot)."""
        self.mg.apply(self.r, self.z)
        if self.p is None:
            self.p = self.z.copy()
        else:  # a restart: frozen images ignore p, z and their r.z slot
            self.p[...] = self.z
        slot = self.rz[it % 2]
        slot.fill(0)
        _dot(self.r, self.z, slot)

    def restart_drifted(self, checked: tuple) -> int:
        """Images flagged converged whose true residual (``checked``, from
        :meth:`true_residuals`, which left ``r = b - A x``) misses tol go on from it (as
        ``krylov.pcg`` restarts). Returns the iterations they have left (0: none to restart).

        With float64 ``q`` the recursive residual stays within about ``1e-16 lam`` of the true
        one, so this is rare; it keeps a drift from ever being reported as convergence.
        """
        state, iters, bb, true_h = checked
        drifted = ((state == CONVERGED) & (iters < int(self.maxiter)) & (bb > 0.0)
                   & (np.sqrt(true_h) > float(self.tol) * np.sqrt(bb)))
        if not drifted.any():
            return 0
        idx = np.flatnonzero(drifted)
        for n in idx:  # the history's last entry becomes the true residual, as in krylov.pcg
            self.rr_hist[int(iters[n]), int(n)] = true_h[n]
        state[idx] = ACTIVE
        self.state[...] = _cupy().asarray(state.astype(np.int32))
        return int(self.maxiter) - int(iters[idx].min())

    def true_residuals(self, b) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """r = b - A x (float64) for every image; host copies of state, iters, ||b||^2 and
        ||r||^2."""
        cp = _cupy()
        true = cp.zeros(self.N, cp.float64)
        self.fine.residual(b.astype(cp.float64), self.x, self.r)
        _dot(self.r, self.r, true)
        return (cp.asnumpy(self.state), cp.asnumpy(self.iters), cp.asnumpy(self.bb),
                cp.asnumpy(true))

    def update(self, it: int) -> None:
        """First half of iteration ``it``: q = A p, x and r updated, convergence flagged."""
        self.fine.apply_dot(self.p, self.q, self.pq)
        _update_solution(self.x, self.r, self.p, self.q, self.rz[(it - 1) % 2], self.pq,
                         self.state, self.rr)
        _kernel("xv_pcg_check")(*self._scalar_grid, (_i32(self.N), self.maxiter, self.pq, self.rr,
                                                     self.rz[it % 2], self.bb, self.tol,
                                                     self.state, self.iters, self.rr_hist))

    def direction(self, it: int) -> None:
        """Second half of iteration ``it``: z = B r, beta = r.z / previous r.z, p updated."""
        new, old = self.rz[it % 2], self.rz[(it - 1) % 2]
        self.mg.apply(self.r, self.z)
        _dot(self.r, self.z, new)
        _update_direction(self.p, self.z, new, old, self.state)

    def results(self, checked: tuple):
        """Iterations, residual histories and convergence flags, per image, from ``checked``
        (:meth:`true_residuals` after the last iteration).

        The last residual of each history is ``b - A x`` recomputed in float64, and an image
        counts as converged only when that meets ``tol`` (as ``krylov.pcg`` reports it).
        """
        state, iters, bb, true = checked
        rr = _cupy().asnumpy(self.rr_hist)
        residuals, converged = [], []
        for n in range(self.N):
            if bb[n] == 0.0:
                residuals.append([0.0])
                converged.append(bool(state[n] == CONVERGED))
                continue
            bnorm = math.sqrt(bb[n])
            history = [math.sqrt(v) / bnorm for v in rr[: iters[n] + 1, n]]
            history[-1] = math.sqrt(true[n]) / bnorm
            residuals.append(history)
            converged.append(bool(state[n] == CONVERGED) and history[-1] <= float(self.tol))
        return [int(k) for k in iters], residuals, converged


def solve_batch(stack, lam: float = 1.0, alpha: float = 1.2, eps: float = 1e-4,
                delta: float = 1e-4, tol: float = 1e-5, maxiter: int | None = None,
                check_every: int = 4, graph: bool = False):
    """WLS-smooth a stack of images with one batched PCG (all scalars on the device).

    Each image follows exactly the iteration of ``krylov.pcg`` started from ``x0 = b`` (as
    ``wls_smooth`` runs it), with its own alpha and beta, and is frozen at its own convergence; the host reads the convergence flags only every
    ``check_every`` iterations, so up to ``check_every - 1`` iterations of launches may run
    after the last image has converged.

    Parameters
    ----------
    stack : CuPy array (N, H, W) (or (H, W), a stack of one)
        Images, float32 on [0, 1]; anything else is converted (and made contiguous).
    lam, alpha, eps, delta : float
        WLS parameters (SPEC section 2).
    tol : float
        Stop image n when ``||r_n|| <= tol ||b_n||``.
    maxiter : int, optional
        Iteration limit (default 500, as ``krylov.pcg``).
    check_every : int
        Iterations between host checks of the convergence flags.
    graph : bool
        Replay the iterations from a CUDA graph (captured once, after two plain iterations
        have loaded every kernel) instead of launching each kernel from Python: saves the
        host's launch overhead (about 90 launches per iteration at 2048^2).

    Returns
    -------
    g : CuPy array, float32, the shape of ``stack``
    iterations : list[int]
    residuals : list[list[float]]
        ``||r_k|| / ||b||`` per image, from the initial residual on (as ``krylov.pcg``).
    converged : list[bool]
    """
    squeeze = getattr(stack, "ndim", None) == 2
    b = _stack(stack[None] if squeeze else stack, 3)
    _check_shape(tuple(b.shape))
    N = b.shape[0]
    maxiter = 500 if maxiter is None else int(maxiter)
    check_every = max(1, int(check_every))
    if lam == 0.0:  # the system is the identity
        g = b.copy()
        return (g[0] if squeeze else g), [0] * N, [[0.0] for _ in range(N)], [True] * N

    cn, cw = weights(b, lam, alpha, eps, delta)
    mg = Multigrid(cn, cw)
    del cn, cw
    pcg = _BatchPCG(b, mg, tol, max(maxiter, 0))
    it = 0
    if maxiter > 0 and pcg.active():
        pcg.start()
        it = _iterate(pcg, 0, maxiter, check_every, graph)
    # an image stops on its recursive residual; one whose b - A x misses tol goes on from that
    # (krylov.pcg does the same); each round costs it an iteration, so this ends
    checked = pcg.true_residuals(b)
    while (left := pcg.restart_drifted(checked)) > 0:
        pcg.start(it)
        it = _iterate(pcg, it, it + left, check_every, graph)
        checked = pcg.true_residuals(b)
    iterations, residuals, converged = pcg.results(checked)
    g = pcg.x.astype(_cupy().float32)
    return (g[0] if squeeze else g), iterations, residuals, converged


def _iterate(pcg: _BatchPCG, it: int, limit: int, check_every: int, graph: bool) -> int:
    """Iterations it+1 .. at most ``limit`` (or until no image is active); returns the last."""
    first = it
    while it < limit:
        if graph and it - first >= 2 and limit - it >= 2:
            return _run_graph(pcg, it, limit, check_every)
        it += 1
        pcg.update(it)
        if it == limit or (it % check_every == 0 and not pcg.active()):
            break
        pcg.direction(it)
    return it


def _run_graph(pcg: _BatchPCG, it: int, maxiter: int, check_every: int) -> int:
    """Iterations it+1, ... from a captured CUDA graph of two iterations (odd, even)."""
    cp = _cupy()
    if it % 2:  # the graph starts at an odd iteration
        it += 1
        pcg.update(it)
        pcg.direction(it)
    current = cp.cuda.get_current_stream()
    capture = cp.cuda.Stream(non_blocking=True)
    with capture:
        capture.begin_capture()
        try:
            for k in (it + 1, it + 2):
                pcg.update(k)
                pcg.direction(k)
        finally:
            graph = capture.end_capture()
    per_check = max(1, check_every // 2)
    while it < maxiter:
        for _ in range(per_check):
            graph.launch(stream=current)
            it += 2
            if it >= maxiter:
                break
        if not pcg.active():
            break
    return it
