"""The CUDA backend against the CPU (Numba) backend: every kernel, the V-cycle, the solve.

Every test runs on two devices:

- ``emulated`` (always; needs g++): the kernel sources compiled for this CPU, with the
  threads of a block run one after another (``XV_HOST_EMULATION`` in common.cuh turns the
  block reductions into atomics), driven by the unchanged Python code of
  ``xvert_gpu.cuda.system`` through a NumPy stand-in for CuPy. Every launch is checked:
  argument count and types against the kernel's C signature (CuPy passes NumPy scalars by
  their size, so an int64 where the kernel takes int would be garbage on a GPU), array
  dtypes and C-contiguity, grid limits, and NaN guard zones around every array that must
  stay untouched (a write out of bounds fails; a read out of bounds reads NaN).
- ``gpu`` (marker ``gpu``): the real kernels through CuPy; skipped when no GPU is visible.

On both, ``empty`` arrays of the backend are poisoned with NaN (ints with -7777), and the
tests poison kernel outputs themselves, so any element a kernel fails to write shows up.
"""

from __future__ import annotations

import ctypes
import functools
import re
import shutil
import subprocess
import types
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from xvert_gpu import backends, krylov, reference
from xvert_gpu.cpu import lines, stencil, transfer, vectors
from xvert_gpu.cpu.system import CpuSystem, weight_arrays
from xvert_gpu.cuda import loader, system

LAM, ALPHA, EPS, DELTA = 1.0, 1.2, 1e-4, 1e-4
STEPS = ((True, 0), (True, 1), (False, 0), (False, 1))

# shapes of the kernel tests: odd sizes, single rows / columns, several levels
SHAPES = [(37, 53), (1, 40), (40, 1), (1, 600), (600, 1), (3, 200), (33, 17), (2, 2), (1, 1)]
ML_SHAPES = [s for s in SHAPES if s[0] * s[1] > 256]  # shapes with a coarse level


# ================================================================================================
# host emulation of the kernels
# ================================================================================================
_PRELUDE = r"""
#include <math.h>
#include <stddef.h>
#define XV_HOST_EMULATION 1
#define __global__
#define __device__
#define __forceinline__ inline
namespace xv_emu {
struct Idx { unsigned x, y, z; };
inline Idx threadIdx, blockIdx, blockDim, gridDim;
inline int reverse = 0;
template <class F> void run(F&& body) {
    const unsigned long long nb = 1ull * gridDim.x * gridDim.y * gridDim.z;
    const unsigned long long nt = 1ull * blockDim.x * blockDim.y * blockDim.z;
    for (unsigned long long b0 = 0; b0 < nb; ++b0) {
        const unsigned long long b = reverse ? nb - 1 - b0 : b0;
        blockIdx = {unsigned(b % gridDim.x), unsigned(b / gridDim.x % gridDim.y),
                    unsigned(b / gridDim.x / gridDim.y)};
        for (unsigned long long t0 = 0; t0 < nt; ++t0) {
            const unsigned long long t = reverse ? nt - 1 - t0 : t0;
            threadIdx = {unsigned(t % blockDim.x), unsigned(t / blockDim.x % blockDim.y),
                         unsigned(t / blockDim.x / blockDim.y)};
            body();
        }
    }
}
}  // namespace xv_emu
using xv_emu::threadIdx;
using xv_emu::blockIdx;
using xv_emu::blockDim;
using xv_emu::gridDim;
inline double atomicAdd(double* p, double v) { const double old = *p; *p = old + v; return old; }
extern "C" void xv_emu_launch(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                              unsigned bz, int reverse) {
    xv_emu::gridDim = {gx, gy, gz};
    xv_emu::blockDim = {bx, by, bz};
    xv_emu::reverse = reverse;
}
"""

_KERNEL_HEAD = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)\s*\{')
_C_TYPES = {  # C parameter type -> (is pointer, NumPy dtype, ctypes type)
    "float*": (True, np.float32, ctypes.c_void_p),
    "double*": (True, np.float64, ctypes.c_void_p),
    "int*": (True, np.int32, ctypes.c_void_p),
    "int": (False, np.int32, ctypes.c_int),
    "long long": (False, np.int64, ctypes.c_longlong),
    "float": (False, np.float32, ctypes.c_float),
    "double": (False, np.float64, ctypes.c_double),
}


def _param_type(param: str) -> str:
    words = param.replace("*", " * ").split()
    words = [w for w in words if w not in ("const", "__restrict__")][:-1]  # drop the name
    return " ".join(words).replace(" *", "*")


def emulation_source(src: str) -> tuple[str, dict[str, list[str]]]:
    """Kernel bodies wrapped in the emulator's thread loop; also the parameter types."""
    src = re.sub(r"//[^\n]*", "", src)
    out, pos, signatures = [], 0, {}
    while True:
        m = _KERNEL_HEAD.search(src, pos)
        if m is None:
            break
        depth, i = 0, m.end() - 1
        while True:
            depth += {"{": 1, "}": -1}.get(src[i], 0)
            if depth == 0:
                break
            i += 1
        name, params = m.group(1), m.group(2)
        signatures[name] = [_param_type(p) for p in params.split(",")]
        out.append(src[pos:m.start()])
        out.append(f'extern "C" void {name}({params}) {{ xv_emu::run([&]() {{'
                   f'{src[m.end():i]}}}); }}')
        pos = i + 1
    out.append(src[pos:])
    return _PRELUDE + "".join(out), signatures


class Emulator:
    """The kernels compiled for the host; ``kernel(name)`` mimics a CuPy RawKernel."""

    reverse = 0   # run blocks and threads in reverse order (races would show up)
    guard = True  # NaN guard zones around every array (copies: slow for large images)

    def __init__(self, workdir):
        code, self.signatures = emulation_source(loader.source())
        cpp = workdir / "xv_emulated.cpp"
        lib = workdir / "libxv_emulated.so"
        cpp.write_text(code)
        proc = subprocess.run(["g++", "-std=c++17", "-O2", "-fPIC", "-shared", "-Wall",
                               "-ffp-contract=off", "-o", str(lib), str(cpp)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        self.lib = ctypes.CDLL(str(lib))
        self.lib.xv_emu_launch.argtypes = [ctypes.c_uint] * 6 + [ctypes.c_int]
        self.launches: list[str] = []

    @functools.lru_cache(maxsize=None)
    def kernel(self, name: str):
        types_ = self.signatures[name]
        fn = getattr(self.lib, name)
        fn.argtypes = [_C_TYPES[t][2] for t in types_]
        fn.restype = None
        return functools.partial(self._launch, name, fn, types_)

    def _launch(self, name, fn, ctypes_, grid, block, args, shared_mem=0, stream=None):
        assert len(grid) == 3 and len(block) == 3, name
        assert all(type(g) is int and g >= 1 for g in (*grid, *block)), (name, grid, block)
        assert grid[1] <= 65535 and grid[2] <= 65535 and grid[0] < 2**31, (name, grid)
        assert block[0] * block[1] * block[2] <= 1024, (name, block)
        assert len(args) == len(ctypes_), f"{name}: {len(args)} arguments for {len(ctypes_)}"
        values, guarded = [], []
        for k, (ctype, a) in enumerate(zip(ctypes_, args)):
            pointer, dtype, _ = _C_TYPES[ctype]
            if pointer:
                assert isinstance(a, np.ndarray), f"{name} argument {k}: array expected"
                assert a.dtype == dtype, f"{name} argument {k}: {a.dtype} for {ctype}"
                assert a.flags.c_contiguous, f"{name} argument {k}: not C-contiguous"
                if not self.guard:
                    values.append(a.ctypes.data)
                    continue
                g = max(256, a.size)
                buf = np.empty(a.size + 2 * g, dtype)
                buf[:] = np.nan if dtype != np.int32 else -7777
                buf[g:g + a.size] = a.ravel()
                values.append(buf.ctypes.data + g * buf.itemsize)
                guarded.append((k, a, buf, g))
            else:
                assert type(a) is dtype, f"{name} argument {k}: {type(a).__name__} for {ctype}"
                values.append(a.item())
        self.lib.xv_emu_launch(*grid, *block, self.reverse)
        fn(*values)
        self.launches.append(name)
        for k, a, buf, g in guarded:
            for guard in (buf[:g], buf[g + a.size:]):
                ok = np.isnan(guard).all() if a.dtype != np.int32 else (guard == -7777).all()
                assert ok, f"{name} wrote out of bounds of argument {k}"
            a[...] = buf[g:g + a.size].reshape(a.shape)


def _poison(a):
    a.fill(-7777 if a.dtype.kind in "iu" else np.nan)
    return a


class _PoisoningXp:
    """An array module whose ``empty`` poisons (its content is unspecified anyway)."""

    def __init__(self, xp):
        self._xp = xp

    def __getattr__(self, name):
        return getattr(self._xp, name)

    def empty(self, shape, dtype=np.float64):
        return _poison(self._xp.empty(shape, dtype))


_NUMPY_AS_CUPY = types.SimpleNamespace(
    asarray=np.asarray, ascontiguousarray=np.ascontiguousarray, empty=np.empty, zeros=np.zeros,
    ones=np.ones, float32=np.float32, float64=np.float64, int32=np.int32, linalg=np.linalg,
    asnumpy=np.asarray, ndarray=np.ndarray)


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("g++ is needed for the host emulation of the kernels")
    return Emulator(tmp_path_factory.mktemp("emulated"))


@dataclass
class Device:
    name: str
    xp: Any
    emulator: Emulator | None = None

    def put(self, a):
        return self.xp.array(np.asarray(a), copy=True) if self.emulator else self.xp.asarray(a)

    def get(self, a) -> np.ndarray:
        return np.array(self.xp.asnumpy(a))

    def empty(self, shape, dtype):
        return self.xp.empty(shape, dtype)

    def kernel(self, name):
        return system._kernel(name)


@pytest.fixture(params=["emulated", pytest.param("gpu", marks=pytest.mark.gpu)])
def dev(request, monkeypatch):
    if request.param == "gpu":
        if not backends.cuda_available():
            pytest.skip("no CUDA GPU visible to CuPy")
        import cupy
        xp = _PoisoningXp(cupy)
        monkeypatch.setattr(system, "_cupy", lambda: xp)
        return Device("gpu", xp)
    emu = request.getfixturevalue("emulator")
    xp = _PoisoningXp(_NUMPY_AS_CUPY)
    xp.array = np.array
    monkeypatch.setattr(system, "_cupy", lambda: xp)
    monkeypatch.setattr(system, "_kernel", emu.kernel)
    return Device("emulated", xp, emu)


# ================================================================================================
# images and CPU references
# ================================================================================================
@functools.lru_cache(maxsize=None)
def _real() -> np.ndarray:
    from xvert_gpu.samples import load_sample
    return load_sample("00000001_000.png").astype(np.float32) / 255.0


def image(shape, kind: str, seed: int = 0) -> np.ndarray:
    """float32 image on [0, 1]: 'real' (a crop of the sample), 'synthetic' (8-bit plateaus and
    edges), 'noise', 'constant' (all neighbours equal: the d == 0 weights) or 'zeros'."""
    H, W = shape
    if kind == "real":
        r = _real()
        if H > r.shape[0] or W > r.shape[1]:
            r = np.tile(r, (-(-H // r.shape[0]), -(-W // r.shape[1])))
        y0 = (97 * seed) % (r.shape[0] - H + 1)
        x0 = (61 * seed + 150) % (r.shape[1] - W + 1)
        return np.ascontiguousarray(r[y0:y0 + H, x0:x0 + W])
    if kind == "synthetic":
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
        a = 0.45 + 0.25 * np.sin(xx / 7.0 + seed) * np.cos(yy / 5.0 - seed)
        a += 0.2 * (((xx + 2 * yy + 3 * seed) % 17) < 6) + 0.1 * (xx > W / 2)
        return (np.round(np.clip(a, 0, 1) * 255) / 255).astype(np.float32)
    if kind == "noise":
        return np.random.default_rng(seed).random(shape, dtype=np.float32)
    if kind == "constant":
        return np.full(shape, 0.25 + 0.1 * seed, np.float32)
    if kind == "zeros":
        return np.zeros(shape, np.float32)
    raise ValueError(kind)


def stack(shape, kinds=("synthetic", "real", "noise"), seed: int = 0) -> np.ndarray:
    return np.stack([image(shape, k, seed + i) for i, k in enumerate(kinds)])


def cpu_levels(images: np.ndarray) -> list[list]:
    """CPU hierarchy levels per image: levels[k][n]."""
    hs = [CpuSystem(im, LAM, ALPHA, EPS, DELTA, plateaus=False, kcycle=False).hierarchy for im in images]
    return [[h.levels[k] for h in hs] for k in range(len(hs[0].levels))], hs


def cpu_weights(dev: Device, images: np.ndarray):
    """The CPU backend's couplings of a stack, on the device (the same operator on both sides)."""
    pairs = [weight_arrays(im, LAM, ALPHA, EPS, DELTA) for im in images]
    return dev.put(np.stack([p[0] for p in pairs])), dev.put(np.stack([p[1] for p in pairs]))


def device_level(dev: Device, levels: list) -> system.Level:
    """A batched CUDA level holding the operators of the CPU levels (one per image)."""
    def st(name):
        return dev.put(np.stack([getattr(lv, name) for lv in levels]))
    if not levels[0].nine:
        return system.Level(None, st("cn"), st("cw"), None, None, nine=False)
    return system.Level(st("mass"), st("cn"), st("cw"), st("cnw"), st("cne"), nine=True)


def assert_close(actual, desired, rtol, scale_atol=0.0):
    actual, desired = np.asarray(actual), np.asarray(desired)
    assert not np.isnan(actual).any(), "NaN in the result: an element was not written"
    atol = scale_atol * float(np.abs(desired).max(initial=0.0))
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol)


def rng(seed=0):
    return np.random.default_rng(seed)


# ================================================================================================
# kernels
# ================================================================================================
@pytest.mark.parametrize("shape", SHAPES)
def test_weights(dev, shape):
    imgs = stack(shape, ("synthetic", "real", "constant", "noise"))
    cn, cw = system.weights(dev.put(imgs), LAM, ALPHA, EPS, DELTA)
    for n, im in enumerate(imgs):
        rn, rw = weight_arrays(im, LAM, ALPHA, EPS, DELTA)
        assert_close(dev.get(cn)[n], rn, rtol=1e-5)
        assert_close(dev.get(cw)[n], rw, rtol=1e-5)


def test_weights_lambda_and_parameters(dev):
    imgs = stack((19, 23))
    cn, cw = system.weights(dev.put(imgs), 0.3, 0.8, 1e-3, 1e-2)
    for n, im in enumerate(imgs):
        rn, rw = weight_arrays(im, 0.3, 0.8, 1e-3, 1e-2)
        assert_close(dev.get(cn)[n], rn, rtol=1e-5)
        assert_close(dev.get(cw)[n], rw, rtol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
def test_line_factors(dev, shape):
    levels, _ = cpu_levels(stack(shape, ("real", "synthetic")))
    for k, lvs in enumerate(levels):
        lv = device_level(dev, lvs)
        lv.line_factors()
        got = [dev.get(a) for a in lv.factors]
        for n, ref in enumerate(lvs):
            W = ref.shape[1]
            cols = tuple(lines.columns_natural(c, W) for c in ref.cols)
            for a, b in zip(got, (*ref.rows, *cols)):
                assert_close(a[n], b, rtol=1e-6, scale_atol=1e-7)


@pytest.mark.parametrize("shape", SHAPES)
def test_apply_dot_and_residual(dev, shape):
    levels, _ = cpu_levels(stack(shape, ("real", "noise")))
    g = rng(1)
    for k, lvs in enumerate(levels):
        lv = device_level(dev, lvs)
        N, H, W = lv.shape
        # (u, A u): both float32, both float64, and PCG's float32 p with float64 q
        for dtype, out_dtype in ((np.float32, np.float32), (np.float64, np.float64),
                                 (np.float32, np.float64)):
            u = g.standard_normal((N, H, W)).astype(dtype)
            out = _poison(dev.empty((N, H, W), out_dtype))
            dot = dev.put(np.zeros(N))
            lv.apply_dot(dev.put(u), out, dot)
            f = g.standard_normal((N, H, W))
            res = _poison(dev.empty((N, H, W), dtype))
            lv.residual(dev.put(f), dev.put(u), res)
            for n, ref in enumerate(lvs):
                q = np.empty((H, W), out_dtype)
                d = stencil.apply_dot(u[n], *ref.op, q)
                tol = 1e-6 if out_dtype == np.float32 else 1e-12
                assert_close(dev.get(out)[n], q, rtol=tol, scale_atol=tol)
                assert_close(dev.get(dot)[n], d, rtol=1e-10)
                rr = np.empty((H, W), dtype)
                stencil.residual(f[n], u[n], *ref.op, rr)
                tol = 1e-6 if dtype == np.float32 else 1e-12
                assert_close(dev.get(res)[n], rr, rtol=tol, scale_atol=tol)
        with pytest.raises(TypeError):  # float64 u into a float32 q: never meant
            lv.apply_dot(dev.put(np.zeros((N, H, W))), dev.empty((N, H, W), np.float32),
                         dev.put(np.zeros(N)))


@pytest.mark.parametrize("shape", SHAPES)
def test_relax(dev, shape):
    levels, _ = cpu_levels(stack(shape, ("synthetic", "real")))
    g = rng(2)
    for k, lvs in enumerate(levels):
        lv = device_level(dev, lvs)
        lv.line_factors()
        N, H, W = lv.shape
        dtype = np.float32 if k == 0 else np.float64
        scratch = dev.empty(N * H * W, np.float64)
        for along_rows, parity in STEPS:
            f = g.standard_normal((N, H, W))
            u0 = g.standard_normal((N, H, W)).astype(dtype)
            u = dev.put(u0)
            lv.relax(dev.put(f), u, along_rows, parity, scratch)
            got = dev.get(u)
            if dev.emulator is not None:  # no dependence on the order of threads (no races)
                dev.emulator.reverse = 1
                try:
                    u2 = dev.put(u0)
                    lv.relax(dev.put(f), u2, along_rows, parity, scratch)
                finally:
                    dev.emulator.reverse = 0
                np.testing.assert_array_equal(dev.get(u2), got)
            for n, ref in enumerate(lvs):
                want = u0[n].copy()
                ref.relax(f[n], want, (along_rows, parity))
                tol = 1e-6 if dtype == np.float32 else 1e-12
                assert_close(got[n], want, rtol=tol, scale_atol=tol)
                # the lines of the other parity are untouched
                other = (slice(1 - parity, None, 2), slice(None)) if along_rows else \
                    (slice(None), slice(1 - parity, None, 2))
                np.testing.assert_array_equal(got[n][other], u0[n][other])


@pytest.mark.parametrize("shape", ML_SHAPES)
def test_interpolation_and_galerkin(dev, shape):
    levels, _ = cpu_levels(stack(shape, ("real", "synthetic")))
    for k, lvs in enumerate(levels[:-1]):
        lv = device_level(dev, lvs)
        lv.interpolation()
        pw = dev.get(lv.pw)
        for n, ref in enumerate(lvs):
            assert_close(pw[n], ref.pw, rtol=1e-6, scale_atol=1e-7)
        coarse = lv.galerkin()
        for name in ("mass", "cn", "cw", "cnw", "cne"):
            got = dev.get(getattr(coarse, name))
            for n, ref in enumerate(levels[k + 1]):
                assert_close(got[n], getattr(ref, name), rtol=1e-5, scale_atol=1e-6)


@pytest.mark.parametrize("shape", ML_SHAPES)
def test_restrict_and_prolong(dev, shape):
    levels, _ = cpu_levels(stack(shape, ("synthetic", "noise")))
    g = rng(3)
    for k, lvs in enumerate(levels[:-1]):
        lv = device_level(dev, lvs)
        lv.pw = dev.put(np.stack([ref.pw for ref in lvs]))
        N, H, W = lv.shape
        Hc, Wc = levels[k + 1][0].shape
        for dtype in (np.float32, np.float64):
            r = g.standard_normal((N, H, W)).astype(dtype)
            rc = _poison(dev.empty((N, Hc, Wc), np.float64))
            lv.restrict(dev.put(r), rc)
            uc = g.standard_normal((N, Hc, Wc))
            u0 = g.standard_normal((N, H, W)).astype(dtype)
            u = dev.put(u0)
            lv.prolong_add(dev.put(uc), u)
            f = g.standard_normal((N, H, W))
            rc2 = _poison(dev.empty((N, Hc, Wc), np.float64))
            lv.restrict_residual(dev.put(f), dev.put(r), rc2)
            for n, ref in enumerate(lvs):
                want = np.empty((Hc, Wc))
                transfer.restrict_residual_even_columns(f[n], r[n], *ref.op, ref.pw, want)
                assert_close(dev.get(rc2)[n], want, rtol=1e-12, scale_atol=1e-12)
                want = np.empty((Hc, Wc))
                transfer.restrict(r[n], ref.pw, want)
                assert_close(dev.get(rc)[n], want, rtol=1e-12, scale_atol=1e-12)
                want_u = u0[n].copy()
                transfer.prolong_add(uc[n], ref.pw, want_u)
                tol = 1e-6 if dtype == np.float32 else 1e-12
                assert_close(dev.get(u)[n], want_u, rtol=tol, scale_atol=tol)


@pytest.mark.parametrize("shape", SHAPES)
def test_hierarchy_and_coarse_solve(dev, shape):
    imgs = stack(shape, ("real", "synthetic", "constant"))
    levels, hs = cpu_levels(imgs)
    mg = system.Multigrid(*cpu_weights(dev, imgs))
    assert [lv.shape[1:] for lv in mg.levels] == [lv.shape for lv in hs[0].levels]
    last = mg.levels[-1]
    N, H, W = last.shape
    M = H * W
    dense = _poison(dev.empty((N, M, M), np.float64))
    dev.kernel("xv_dense_matrix")(*system._grid_flat(N * M), (*last.op_args, np.int32(N),
                                                              np.int32(H), np.int32(W), dense))
    f = rng(4).standard_normal((N, H, W))
    for dtype in (np.float32, np.float64):
        u = _poison(dev.empty((N, H, W), dtype))
        mg._cycle(len(mg.levels) - 1, dev.put(f), u)
        for n, h in enumerate(hs):
            want = transfer.dense_matrix(*h.levels[-1].op)
            assert_close(dev.get(dense)[n], want, rtol=1e-5, scale_atol=1e-7)
            sol = np.linalg.solve(want, f[n].ravel()).reshape(H, W)
            tol = 1e-6 if dtype == np.float32 else 1e-8
            assert_close(dev.get(u)[n], sol, rtol=tol, scale_atol=tol)


@pytest.mark.parametrize("shape", SHAPES)
def test_v_cycle(dev, shape):
    imgs = stack(shape, ("real", "synthetic"))
    _, hs = cpu_levels(imgs)
    mg = system.Multigrid(*cpu_weights(dev, imgs))
    r = rng(5).standard_normal(imgs.shape)
    z = _poison(dev.empty(imgs.shape, np.float32))
    mg.apply(dev.put(r), z)
    for n, h in enumerate(hs):
        want = np.empty(shape, np.float32)
        h.apply(r[n], want)
        assert_close(dev.get(z)[n], want, rtol=1e-4, scale_atol=1e-5)


def test_vectors(dev):
    N, H, W = 4, 37, 53
    g = rng(6)
    a32, b32 = g.standard_normal((2, N, H, W)).astype(np.float32)
    a64, b64 = g.standard_normal((2, N, H, W))
    for a, b in ((a32, b32), (a64, b64), (a64, b32), (b32, a64)):
        out = dev.put(np.zeros(N))
        system._dot(dev.put(a), dev.put(b), out)
        for n in range(N):
            assert_close(dev.get(out)[n], vectors.dot(a[n], b[n]), rtol=1e-10)

    x0, r0 = g.standard_normal((2, N, H, W))
    p0, z0 = g.standard_normal((2, N, H, W)).astype(np.float32)
    q0 = g.standard_normal((N, H, W))  # q = A p is float64 (see krylov.pcg)
    num = np.array([0.7, 1.1, -0.3, 2.0])
    den = np.array([1.3, 0.9, 0.8, 0.0])  # image 3: p.Ap == 0 is a breakdown: untouched
    state = np.array([0, 1, 0, 0], np.int32)  # image 1: converged: untouched
    x, r, p = dev.put(x0), dev.put(r0), dev.put(p0)
    rr = dev.put(np.zeros(N))
    system._update_solution(x, r, p, dev.put(q0), dev.put(num), dev.put(den), dev.put(state), rr)
    system._update_direction(p, dev.put(z0), dev.put(num), dev.put(den + 1.0), dev.put(state))
    for n in range(N):
        xs, rs, ps = x0[n].copy(), r0[n].copy(), p0[n].copy()
        want_rr = 0.0
        if state[n] == 0 and den[n] > 0:
            want_rr = vectors.update_solution(xs, rs, p0[n], q0[n], num[n] / den[n])
        if state[n] == 0:
            vectors.update_direction(ps, z0[n], num[n] / (den[n] + 1.0))
        assert_close(dev.get(x)[n], xs, rtol=1e-14)
        assert_close(dev.get(r)[n], rs, rtol=1e-14)
        assert_close(dev.get(rr)[n], want_rr, rtol=1e-10)
        assert_close(dev.get(p)[n], ps, rtol=1e-7)


def test_pcg_scalars(dev):
    N, maxiter = 5, 8
    bb = np.array([4.0, 0.0, 1.0, 9.0, 1.0])
    state = _poison(dev.empty(N, np.int32))
    iters = _poison(dev.empty(N, np.int32))
    hist = dev.put(np.zeros((maxiter + 1, N)))
    grid = system._grid_flat(N, 256)
    # an initial residual (from x0 = b) within the tolerance is done at once: ||r0|| <= 0.5 ||b||
    rr0 = np.array([1.0, 0.0, 0.3, 2.25, 0.26])
    dev.kernel("xv_pcg_init")(*grid, (np.int32(N), dev.put(bb), dev.put(rr0), np.float64(0.5),
                                      hist, state, iters))
    assert dev.get(state).tolist() == [1, 1, 0, 1, 0]
    np.testing.assert_array_equal(dev.get(hist)[0], rr0)
    rr0 = np.array([4.0, 0.0, 1.0, 9.0, 1.0])
    dev.kernel("xv_pcg_init")(*grid, (np.int32(N), dev.put(bb), dev.put(rr0), np.float64(0.5),
                                      hist, state, iters))
    assert dev.get(state).tolist() == [0, 1, 0, 0, 0]
    assert dev.get(iters).tolist() == [0] * N
    np.testing.assert_array_equal(dev.get(hist)[0], rr0)
    # image 0: ||r|| = 1.1 > 0.5 * 2 goes on; 2 and 4: p.Ap not positive (breakdown);
    # 3: ||r|| = 1.5 <= 0.5 * 3 converged
    pq_h = np.array([1.0, 1.0, -1.0, 1.0, np.nan])
    rr_h = np.array([1.21, 0.0, 0.5, 2.25, 0.1])
    for it in range(1, maxiter + 1):
        pq, rr, rz = dev.put(pq_h), dev.put(rr_h), dev.put(np.full(N, 3.0))
        dev.kernel("xv_pcg_check")(*grid, (np.int32(N), np.int32(maxiter), pq, rr, rz,
                                           dev.put(bb), np.float64(0.5), state, iters, hist))
        for a in (pq, rr, rz):  # the accumulators are zeroed for the next iteration
            np.testing.assert_array_equal(dev.get(a), np.zeros(N))
        if it == 1:
            assert dev.get(state).tolist() == [0, 1, 2, 1, 2]
            assert dev.get(iters).tolist() == [1, 0, 0, 1, 0]
    assert dev.get(state).tolist() == [3, 1, 2, 1, 2]
    assert dev.get(iters).tolist() == [maxiter, 0, 0, 1, 0]
    h = dev.get(hist)
    np.testing.assert_array_equal(h[1:, 0], np.full(maxiter, 1.21))
    np.testing.assert_array_equal(h[1:, 3], [2.25] + [0.0] * (maxiter - 1))
    np.testing.assert_array_equal(h[1:, [1, 2, 4]], 0.0)


# ================================================================================================
# the whole solve
# ================================================================================================
_CPU_SOLVES: dict = {}


def cpu_solve(im, tol, maxiter=None, from_image=True):
    """(g float32, iterations, residual history, converged) of the CPU backend (cached).

    ``from_image``: start from x0 = im, as ``solve_batch`` and ``wls_smooth`` do (else zero).
    """
    key = (im.shape, im.tobytes(), tol, maxiter, from_image)
    if key not in _CPU_SOLVES:
        history: list[float] = []
        g, info = krylov.pcg(CpuSystem(im, LAM, ALPHA, EPS, DELTA, plateaus=False, kcycle=False),
                             x0=im.astype(np.float64) if from_image else None, tol=tol,
                             maxiter=maxiter, residuals=history)
        _CPU_SOLVES[key] = (g.astype(np.float32), len(history) - 1, history, info == 0)
    return _CPU_SOLVES[key]


def detail_difference(g, g_ref, x):
    """||g - g_ref|| / ||x - g_ref||: the SPEC's accuracy measure, against the CPU result."""
    den = np.linalg.norm(x.astype(np.float64) - g_ref)
    return np.linalg.norm(g.astype(np.float64) - g_ref) / max(den, 1e-30)


def assert_history_close(got, want):
    """The first three relative residuals of two PCG runs follow one another.

    The CPU smoother solves its lines in float32 and the CUDA one in float64 before rounding u to
    float32. With couplings up to 1e4, a line solved to float32 rounding leaves a residual of
    about 1e-4 of the right-hand side, so smaller residuals (one iteration on a single-line
    image, where the smoother solves the whole system) are compared only to that level.
    """
    np.testing.assert_allclose(got[:3], want[:3], rtol=1e-3, atol=1e-4 * want[0])


@pytest.mark.parametrize("shape", [(37, 53), (1, 40), (40, 1), (1, 600), (33, 17), (1, 1)])
def test_system_protocol_matches_cpu(dev, shape):
    im = image(shape, "real", 3)
    history: list[float] = []
    cuda_system = system.CudaSystem(dev.put(im), LAM, ALPHA, EPS, DELTA)
    g, info = krylov.pcg(cuda_system, tol=1e-6, residuals=history)
    g_ref, it_ref, hist_ref, ok_ref = cpu_solve(im, 1e-6, from_image=False)
    assert (info == 0) == ok_ref
    assert abs((len(history) - 1) - it_ref) <= 1
    assert_history_close(history, hist_ref)
    assert detail_difference(dev.get(g), g_ref, im) < 1e-5
    # a starting guess goes through the float64 operator apply
    g2, info2 = krylov.pcg(cuda_system, x0=dev.put(g_ref.astype(np.float64)), tol=1e-6)
    assert info2 == 0
    assert detail_difference(dev.get(g2), g_ref, im) < 1e-5


def test_system_protocol_at_a_large_lambda(dev):
    """CudaSystem asks krylov.pcg for a float64 q (precise_matvec), as the CPU system does:
    at lam = 1e6 the solve converges to the exact answer instead of drifting."""
    im = image((37, 53), "real", 3)
    lam = 1e6
    history: list[float] = []
    cuda_system = system.CudaSystem(dev.put(im), lam, ALPHA, EPS, DELTA)
    assert cuda_system.zeros(precise=cuda_system.precise_matvec).dtype == np.float64
    g, info = krylov.pcg(cuda_system, x0=dev.put(im.astype(np.float64)), tol=1e-5,
                         maxiter=400, residuals=history)
    assert info == 0 and history[-1] <= 1e-5
    exact = reference.wls_smooth(im.astype(np.float64), lam=lam)
    assert np.abs(dev.get(g) - exact).max() < 1e-3


@pytest.mark.parametrize("shape,kinds", [
    ((37, 53), ("real", "synthetic", "noise", "zeros", "constant")),
    ((1, 40), ("real", "synthetic")),
    ((40, 1), ("real", "noise")),
    ((3, 200), ("real", "synthetic", "real")),
    ((64, 96), ("real", "real", "synthetic")),
])
def test_solve_batch_matches_cpu(dev, shape, kinds):
    imgs = stack(shape, kinds, seed=1)
    tol = 1e-6
    g, iters, hists, conv = system.solve_batch(dev.put(imgs), LAM, ALPHA, EPS, DELTA, tol=tol,
                                               check_every=3)
    g = dev.get(g)
    assert g.shape == imgs.shape and g.dtype == np.float32
    assert len(iters) == len(hists) == len(conv) == len(imgs)
    for n, im in enumerate(imgs):
        g_ref, it_ref, hist_ref, ok_ref = cpu_solve(im, tol)
        assert conv[n] == ok_ref
        assert abs(iters[n] - it_ref) <= 1, (n, iters[n], it_ref)
        assert len(hists[n]) == iters[n] + 1
        assert_history_close(hists[n], hist_ref)
        if kinds[n] == "zeros":
            assert iters[n] == 0 and hists[n] == [0.0]
            assert not g[n].any()
        else:
            assert hists[n][-1] <= tol
            assert detail_difference(g[n], g_ref, im) < 1e-5


def test_solve_batch_is_per_image(dev):
    """An image solved in a stack gives what it gives alone (each image is frozen at its own
    convergence, whatever the others do)."""
    imgs = stack((37, 53), ("noise", "real", "constant"), seed=4)
    g, iters, hists, _ = system.solve_batch(dev.put(imgs), tol=1e-6)
    for n in range(len(imgs)):
        g1, it1, h1, _ = system.solve_batch(dev.put(imgs[n:n + 1]), tol=1e-6, check_every=1)
        assert iters[n] == it1[0]
        np.testing.assert_allclose(hists[n], h1[0], rtol=1e-9)
        np.testing.assert_allclose(dev.get(g)[n], dev.get(g1)[0], rtol=1e-6, atol=1e-7)


def test_solve_batch_maxiter_and_lam_zero(dev):
    imgs = stack((37, 53), ("real", "synthetic"))
    g, iters, hists, conv = system.solve_batch(dev.put(imgs), tol=1e-12, maxiter=2)
    assert iters == [2, 2] and conv == [False, False] and all(len(h) == 3 for h in hists)
    for n, im in enumerate(imgs):
        g_ref, it_ref, hist_ref, ok_ref = cpu_solve(im, 1e-12, maxiter=2)
        np.testing.assert_allclose(hists[n], hist_ref, rtol=1e-5)
        np.testing.assert_allclose(dev.get(g)[n], g_ref, rtol=1e-5, atol=1e-6)
    g0, it0, h0, c0 = system.solve_batch(dev.put(imgs), lam=0.0)
    np.testing.assert_array_equal(dev.get(g0), imgs)
    assert it0 == [0, 0] and h0 == [[0.0], [0.0]] and c0 == [True, True]


def test_solve_batch_2d_and_noncontiguous(dev):
    base = stack((40, 60), ("real", "synthetic"))
    view = dev.put(base)[:, ::2, 1::2]  # strided: the solver must copy it contiguous first
    g_view = dev.get(system.solve_batch(view, tol=1e-6)[0])
    g_copy = dev.get(system.solve_batch(dev.put(np.ascontiguousarray(base[:, ::2, 1::2])),
                                        tol=1e-6)[0])
    np.testing.assert_array_equal(g_view, g_copy)
    g2d, it2d, _, _ = system.solve_batch(dev.put(base[0]), tol=1e-6)
    assert dev.get(g2d).shape == base[0].shape and len(it2d) == 1
    transposed = dev.put(base[1]).T  # a non-contiguous 2-D image through the protocol path
    cs = system.CudaSystem(transposed, LAM, ALPHA, EPS, DELTA)
    assert cs.b.flags.c_contiguous
    np.testing.assert_array_equal(dev.get(cs.b), base[1].T)


def test_solve_batch_real_image(dev):
    """The 512x512 sample (a 160x192 crop when emulated), stacked with a flipped copy."""
    im = _real() if dev.emulator is None else np.ascontiguousarray(_real()[200:360, 150:342])
    imgs = np.stack([im, np.ascontiguousarray(im[::-1, ::-1])])
    if dev.emulator is not None:  # the small images check the bounds; here speed matters
        dev.emulator.guard = False
    try:
        g, iters, hists, conv = system.solve_batch(dev.put(imgs), tol=1e-5)
    finally:
        if dev.emulator is not None:
            dev.emulator.guard = True
    g = dev.get(g)
    assert all(conv)
    g_ref, it_ref, _, _ = cpu_solve(im, 1e-5)
    assert abs(iters[0] - it_ref) <= 1
    assert abs(iters[1] - it_ref) <= 3  # flipped: other coarse points, about as hard
    assert detail_difference(g[0], g_ref, im) < 1e-4
    assert detail_difference(g[1][::-1, ::-1], g_ref, im) < 1e-4


# ================================================================================================
# the GPU only
# ================================================================================================
@pytest.mark.gpu
def test_loader_compiles_every_kernel():
    if not backends.cuda_available():
        pytest.skip("no CUDA GPU visible to CuPy")
    for name in loader.kernel_names():
        assert loader.function(name) is not None


@pytest.mark.gpu
@pytest.mark.parametrize("maxiter", [None, 7])
def test_solve_batch_graph_matches_eager(dev, maxiter):
    if dev.emulator is not None:
        pytest.skip("CUDA graphs need a GPU")
    imgs = stack((96, 80), ("real", "synthetic", "noise", "zeros"))
    eager = system.solve_batch(dev.put(imgs), tol=1e-6, maxiter=maxiter)
    graph = system.solve_batch(dev.put(imgs), tol=1e-6, maxiter=maxiter, graph=True)
    assert eager[1] == graph[1] and eager[3] == graph[3]
    for h1, h2 in zip(eager[2], graph[2]):
        np.testing.assert_allclose(h1, h2, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dev.get(eager[0]), dev.get(graph[0]), rtol=1e-6, atol=1e-7)


@pytest.mark.gpu
def test_torch_tensor_round_trip_shares_memory(monkeypatch):
    if not backends.cuda_available():
        pytest.skip("no CUDA GPU visible to CuPy")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA")
    import xvert_gpu

    written = []
    real_solve = system.solve_batch

    def spy(*args, **kwargs):
        result = real_solve(*args, **kwargs)
        written.append(result[0].data.ptr)
        return result

    monkeypatch.setattr(system, "solve_batch", spy)
    x = torch.from_numpy(_real()[:128, :160].copy()).cuda()
    g = xvert_gpu.wls_smooth(x, device="cuda", tol=1e-6)
    assert isinstance(g, torch.Tensor) and g.is_cuda and g.shape == x.shape
    assert written, "wls_smooth did not route the CUDA solve through solve_batch"
    assert g.data_ptr() == written[-1], "the returned tensor does not share the solver's memory"
    g_ref = cpu_solve(_real()[:128, :160].copy(), 1e-6)[0]
    assert detail_difference(g.cpu().numpy(), g_ref, _real()[:128, :160]) < 1e-5
    # the hand-off helpers share memory both ways
    c = xvert_gpu.to_cupy(x)
    assert c.data.ptr == x.data_ptr()
    assert xvert_gpu.to_torch(c).data_ptr() == x.data_ptr()


@pytest.mark.parametrize("lam", [1e4, 1e6, 1e8])
def test_solve_batch_is_right_at_a_large_lambda(dev, lam):
    """With float32 q = A p the batched PCG's recursive residual drifted below b - A x by about
    1e-7 lam: at lam = 1e6 it reported convergence for a wrong x, and after the true residual
    was checked it could only report failure. q is now float64 and a drifted image goes on from
    its true residual (as krylov.pcg): solved, and the last residual is the true one.

    At lam = 1e8 (lam / eps = 1e12) float64 itself computes b - A x only to about 1e-4 of b, so
    tol = 1e-5 may be out of reach: then the image must be reported as not converged.
    """
    imgs = stack((37, 53), ("real", "synthetic"), seed=2)
    tol = 1e-5
    g, iters, hists, conv = system.solve_batch(dev.put(imgs), lam=lam, tol=tol, maxiter=400)
    g = dev.get(g)
    assert len(hists) == 2
    for n, im in enumerate(imgs):
        exact = reference.wls_smooth(im.astype(np.float64), lam=lam)
        assert len(hists[n]) == iters[n] + 1
        if lam > 1e6 and not conv[n]:  # reported, not silent
            assert hists[n][-1] > tol
            continue
        assert conv[n], hists[n][-5:]
        assert 0.0 < hists[n][-1] <= tol
        # the reported residual is that of the float64 x: rounding it to float32 alone moves
        # b - A x by up to 1e-7 lam / eps of b, so g is judged against the exact solution
        assert np.abs(g[n] - exact).max() < 1e-3


def test_solve_batch_restarts_an_image_whose_residual_drifted(dev, monkeypatch):
    """The restart path itself: make the first convergence flag a lie (the true residual is
    recomputed and misses tol) and check that the image goes on and ends solved."""
    imgs = stack((37, 53), ("real", "synthetic"), seed=3)
    calls = []
    real = system._BatchPCG.true_residuals

    def drift_once(self, b):
        if not calls:  # perturb x once, as a drifted recursion would leave it
            self.x[...] = self.x + 1e-3
        calls.append(1)
        return real(self, b)

    monkeypatch.setattr(system._BatchPCG, "true_residuals", drift_once)
    g, iters, hists, conv = system.solve_batch(dev.put(imgs), lam=1.0, tol=1e-5, maxiter=200)
    g = dev.get(g)
    assert len(calls) >= 2  # a restart happened, then a check that found nothing to redo
    for n, im in enumerate(imgs):
        exact = reference.wls_smooth(im.astype(np.float64))
        assert conv[n] and hists[n][-1] <= 1e-5
        assert len(hists[n]) == iters[n] + 1
        assert detail_difference(g[n], exact, im) < 1e-4
