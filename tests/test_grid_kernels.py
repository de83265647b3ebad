"""The CPU multigrid's grid kernels against dense linear algebra.

The kernels (``cpu/stencil.py``, ``cpu/lines.py``, ``cpu/transfer.py``) are
written for speed: sliced row loops, interleaved recurrences, both column
parities eliminated at once. These tests pin them to the matrices they stand
for, on shapes that exercise every border branch.
"""

from __future__ import annotations

import numpy as np
import pytest

from xvert_gpu.cpu import lines, stencil, transfer

SHAPES = [(1, 1), (1, 9), (9, 1), (2, 2), (3, 5), (8, 8), (13, 7), (33, 70), (70, 33), (6, 203)]


def _operator(shape, nine, seed):
    """A random symmetric 9-point (or unit-mass 5-point) operator with couplings spread over 1e4."""
    rng = np.random.default_rng(seed)

    def couplings():
        return (10.0 ** rng.uniform(-1, 4, shape)).astype(np.float32)

    if not nine:
        return None, couplings(), couplings(), None, None
    mass = rng.uniform(0.1, 2.0, shape).astype(np.float32)
    return mass, couplings(), couplings(), couplings(), couplings()


def _dense(op):
    return transfer.dense_matrix(*op)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("nine", [False, True])
def test_apply_and_residual_match_dense(shape, nine):
    op = _operator(shape, nine, 1)
    A = _dense(op)
    rng = np.random.default_rng(2)
    u = rng.random(shape).astype(np.float32)
    f = rng.random(shape).astype(np.float32)
    Au = A @ u.ravel().astype(np.float64)
    out = np.empty(shape, np.float32)
    dot = stencil.apply_dot(u, *op, out)
    np.testing.assert_allclose(out.ravel(), Au, rtol=1e-5, atol=1e-5 * np.abs(Au).max())
    assert dot == pytest.approx(u.ravel().astype(np.float64) @ Au, rel=1e-9)
    r = np.empty(shape, np.float32)
    stencil.residual(f, u, *op, r)
    np.testing.assert_allclose(r.ravel(), f.ravel() - Au, rtol=1e-5, atol=1e-5 * np.abs(Au).max())


def _thomas_pivots(A, H, W, along_rows):
    """(cp, inv) of every line of the dense A, by the textbook recurrence, in (H, W) layout."""
    inv = np.empty((H, W))
    cp = np.empty((H, W))
    n, step = (W, 1) if along_rows else (H, W)
    for line in range(H if along_rows else W):
        first = line * W if along_rows else line
        prev = 0.0
        for k in range(n):
            i = first + k * step
            lower = -A[i, i - step] if k > 0 else 0.0
            upper = -A[i, i + step] if k + 1 < n else 0.0
            v = 1.0 / (A[i, i] - lower * prev)
            prev = upper * v
            yx = divmod(i, W)
            inv[yx] = v
            cp[yx] = prev
    return cp, inv


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("nine", [False, True])
def test_line_factors_are_the_thomas_pivots(shape, nine):
    """Rows in four interleaved recurrences, columns across blocks: each line's pivots are those
    of its own tridiagonal matrix (float64 factors, so no rounding between the two)."""
    op = _operator(shape, nine, 5)
    H, W = shape
    rows, cols = lines.factor_arrays(shape, np.float64)
    lines.line_factors(*op, *rows, *cols)
    A = _dense(op)
    for got, want in zip(rows, _thomas_pivots(A, H, W, True)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    for got, want in zip(cols, _thomas_pivots(A, H, W, False)):
        np.testing.assert_allclose(lines.columns_natural(got, W), want, rtol=1e-12, atol=0)


def _line_problem(shape, nine, op_seed, seed):
    """An operator with its line factors, and random f and u: (op, rows, cols, f, u0).

    f and u0 are float32, the solver's own argument types on every level, so that the tests
    reuse its compiled kernels.
    """
    op = _operator(shape, nine, op_seed)
    rows, cols = lines.factor_arrays(shape)
    lines.line_factors(*op, *rows, *cols)
    rng = np.random.default_rng(seed)
    return op, rows, cols, rng.random(shape).astype(np.float32), rng.random(shape).astype(np.float32)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("nine", [False, True])
@pytest.mark.parametrize("along_rows", [True, False])
@pytest.mark.parametrize("parity", [0, 1])
def test_zebra_half_sweep_solves_its_lines_exactly(shape, nine, along_rows, parity):
    """After a half-sweep the relaxed lines satisfy A u = f given the other lines, which stay put."""
    op, rows, cols, f, u0 = _line_problem(shape, nine, 3, 4)
    u = u0.copy()
    mass, cn, cw, cnw, cne = op
    if along_rows:
        lines.relax_rows(f, u, cn, cw, cnw, cne, *rows, parity)
        relaxed = np.zeros(shape, bool)
        relaxed[parity::2, :] = True
    else:
        # three threads: three column blocks at width 203 (their seams are tested)
        lines.relax_cols(f, u, cn, cw, cnw, cne, *cols, parity, 3)
        relaxed = np.zeros(shape, bool)
        relaxed[:, parity::2] = True
    np.testing.assert_array_equal(u[~relaxed], u0[~relaxed])
    A = _dense(op)
    idx = np.flatnonzero(relaxed.ravel())
    if idx.size == 0:
        return
    # the exact line solve, from the dense matrix
    rest = np.flatnonzero(~relaxed.ravel())
    rhs = f.ravel()[idx].astype(np.float64) - A[np.ix_(idx, rest)] @ u0.ravel()[rest]
    exact = np.linalg.solve(A[np.ix_(idx, idx)], rhs)
    np.testing.assert_allclose(u.ravel()[idx], exact, rtol=2e-4, atol=2e-4 * np.abs(exact).max())


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("nine", [False, True])
def test_column_half_sweep_does_not_depend_on_the_threads(shape, nine):
    """Column blocks give the same bits for any thread count: the lines are independent."""
    op, rows, cols, f, u0 = _line_problem(shape, nine, 8, 9)
    _, cn, cw, cnw, cne = op
    for parity in (0, 1):
        want = u0.copy()
        lines.relax_cols(f, want, cn, cw, cnw, cne, *cols, parity, 1)
        for threads in (2, 3, 6, 16):
            got = u0.copy()
            lines.relax_cols(f, got, cn, cw, cnw, cne, *cols, parity, threads)
            np.testing.assert_array_equal(got, want, err_msg=f"{threads} threads")


@pytest.mark.parametrize("shape", SHAPES + [(16, 3), (17, 4), (40, 9), (49, 5), (130, 6)])
@pytest.mark.parametrize("nine", [False, True])
@pytest.mark.parametrize("first", [0, 1])
def test_fused_row_pair_is_two_half_sweeps(shape, nine, first):
    """relax_rows_pair, in one, two, three or five bands, equals the two half-sweeps bit for bit."""
    op, rows, cols, f, u0 = _line_problem(shape, nine, 6, 7)
    _, cn, cw, cnw, cne = op
    want = u0.copy()
    lines.relax_rows(f, want, cn, cw, cnw, cne, *rows, first)
    lines.relax_rows(f, want, cn, cw, cnw, cne, *rows, 1 - first)
    assert shape[0] < 3 or not np.array_equal(want, u0)
    for bands in (1, 2, 3, 5):
        got = u0.copy()
        lines.relax_rows_pair(f, got, cn, cw, cnw, cne, *rows, first, bands)
        np.testing.assert_array_equal(got, want, err_msg=f"{bands} bands")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("nine", [False, True])
def test_galerkin_is_pt_a_p(shape, nine):
    op = _operator(shape, nine, 5)
    H, W = shape
    Hc, Wc = transfer.coarse_shape(H, W)
    pw = np.empty((4, H, W), np.float32)
    transfer.interpolation_weights(*op, pw)
    coarse = [np.empty((Hc, Wc), np.float32) for _ in range(5)]
    transfer.galerkin(*op, pw, *coarse)
    # P as a dense matrix from the corner weights
    P = np.zeros((H * W, Hc * Wc))
    for y in range(H):
        for x in range(W):
            for k, (di, dj) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
                I, J = y // 2 + di, x // 2 + dj
                if pw[k, y, x] != 0.0:
                    assert I < Hc and J < Wc
                    P[y * W + x, I * Wc + J] = pw[k, y, x]
    Ac = P.T @ _dense(op) @ P
    np.testing.assert_allclose(Ac, Ac.T, atol=1e-9 * np.abs(Ac).max())
    got = _dense(coarse)
    scale = np.abs(Ac).max()
    np.testing.assert_allclose(got, Ac, rtol=1e-4, atol=1e-5 * scale)


def test_repeated_coarse_cycle_is_a_residual_correction():
    """A cycle started from a guess u (the second visit of ``VISITS``) is u + C (f - A u).

    C is the cycle from zero; the identity is what makes the repeated coarse cycle two
    steps of one symmetric iteration, and so the preconditioner symmetric.
    """
    from xvert_gpu.cpu.multigrid import Hierarchy, Level

    h = Hierarchy(Level(*_operator((70, 33), False, 7)))
    assert len(h.levels) >= 3  # level 1 is not the exactly solved coarsest one
    level = h.levels[1]
    rng = np.random.default_rng(8)
    f, u0 = rng.standard_normal((2, *level.shape))
    u = u0.copy()
    h._cycle(1, f, u, zero=False)
    r = np.empty_like(f)
    stencil.residual(f, u0, *level.op, r)
    c = np.empty_like(f)
    h._cycle(1, r, c)
    np.testing.assert_allclose(u, u0 + c, rtol=0, atol=1e-5 * np.abs(u0 + c).max())
    # and it is not the cycle from zero
    h._cycle(1, f, c)
    assert np.abs(u - c).max() > 1e-2 * np.abs(c).max()


@pytest.mark.parametrize("shape, nine", [((70, 33), False), ((41, 90), True)])
def test_krylov_visits_are_the_energy_projection_on_two_cycles(shape, nine):
    """The K-cycle's u is the A-orthogonal projection of A^-1 f on span(c1, c2), with
    c1 = C f and c2 = C (f - a1 A c1), a1 = c1.f / c1.A c1 (C: the level's cycle from zero);
    it is a better solution than the first cycle alone."""
    from xvert_gpu.cpu.multigrid import Hierarchy, Level

    h = Hierarchy(Level(*_operator(shape, nine, 9)), kcycle=True)
    assert h.flexible
    assert len(h.levels) >= 3  # level 1 has a coarser level below it
    level = h.levels[1]
    A = _dense(level.op)
    f = np.random.default_rng(10).standard_normal(level.shape).astype(np.float32)
    u = np.empty_like(f)
    h._krylov_visits(1, f, u)

    c1 = np.empty_like(f)
    h._cycle(1, f, c1)
    c1 = c1.ravel().astype(np.float64)
    rt = f.ravel() - (c1 @ f.ravel()) / (c1 @ A @ c1) * (A @ c1)
    c2 = np.empty_like(f)
    h._cycle(1, rt.reshape(f.shape).astype(np.float32), c2)
    basis = np.stack([c1, c2.ravel().astype(np.float64)], axis=1)
    want = basis @ np.linalg.solve(basis.T @ A @ basis, basis.T @ f.ravel())
    np.testing.assert_allclose(u.ravel(), want, rtol=0, atol=1e-4 * np.abs(want).max())

    exact = np.linalg.solve(A, f.ravel())

    def energy_error(v):
        e = exact - v
        return e @ A @ e

    best_c1 = (c1 @ f.ravel()) / (c1 @ A @ c1) * c1
    assert energy_error(u.ravel().astype(np.float64)) < 0.9 * energy_error(best_c1)


def test_krylov_visits_on_the_coarsest_level_solve_it_once():
    """Where the level below is the exactly solved coarsest one, there is nothing to combine."""
    from xvert_gpu.cpu.multigrid import Hierarchy, Level

    h = Hierarchy(Level(*_operator((20, 20), False, 11)), kcycle=True)
    assert len(h.levels) == 2 and h.levels[1].pw is None
    level = h.levels[1]
    f = np.random.default_rng(12).standard_normal(level.shape).astype(np.float32)
    u = np.empty_like(f)
    h._krylov_visits(1, f, u)
    want = np.linalg.solve(_dense(level.op), f.ravel())
    np.testing.assert_allclose(u.ravel(), want, rtol=0, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("nine", [False, True])
def test_krylov_visits_of_a_zero_right_hand_side_are_zero(nine):
    from xvert_gpu.cpu.multigrid import Hierarchy, Level

    h = Hierarchy(Level(*_operator((70, 33), nine, 13)), kcycle=True)
    f = np.zeros(h.levels[1].shape, np.float32)
    u = np.full_like(f, np.nan)
    h._krylov_visits(1, f, u)
    assert not np.isnan(u).any() and np.abs(u).max() == 0.0


def test_vectorised_log_and_exp_of_the_weights_are_within_an_ulp():
    """``cpu/weights.py`` evaluates log and exp itself (fdlibm's, in loops LLVM vectorises)."""
    from xvert_gpu.cpu import weights

    rng = np.random.default_rng(0)
    v = np.concatenate([np.exp(rng.uniform(-700, 700, 20000)),
                        [1.0, 2.0, 0.5, np.sqrt(2.0), np.nextafter(np.sqrt(2.0), 2), 1e-4,
                         1 + 2e-16, 1 - 1e-16, 2.2250738585072014e-308, 1.7e308]])
    out = np.empty_like(v)
    weights._log_into(v, out)
    want = np.log(v)
    assert np.all(np.abs(out - want) <= np.spacing(np.abs(want)) + 1e-300)
    y = np.concatenate([rng.uniform(-700, 700, 20000), [0.0, 1e-300, -1e-12, 0.5, -0.5, 700.0]])
    got = np.empty_like(y)
    weights._exp_into(y, got)
    np.testing.assert_allclose(got, np.exp(y), rtol=4.5e-16)
    weights._exp_into(np.array([-1e4, 1e4]), got[:2])  # clipped to +-700
    np.testing.assert_allclose(got[:2], np.exp([-700.0, 700.0]), rtol=4.5e-16)


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (3, 5), (16, 16), (13, 7)])
@pytest.mark.parametrize("nine", [False, True])
def test_coarsest_cholesky_solve_matches_dense_solve(shape, nine):
    from xvert_gpu.cpu import multigrid

    A = _dense(_operator(shape, nine, 7))
    L = np.empty_like(A)
    assert multigrid._cholesky(A, L)
    np.testing.assert_allclose(L @ L.T, A, rtol=1e-12, atol=1e-12 * np.abs(A).max())
    f = np.random.default_rng(8).random(shape).astype(np.float32)
    u = np.empty(shape, np.float32)
    multigrid._cholesky_solve(L, f, u)
    want = np.linalg.solve(A, f.ravel().astype(np.float64)).reshape(shape)
    np.testing.assert_allclose(u, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())


def test_cholesky_refuses_a_matrix_that_is_not_positive_definite():
    from xvert_gpu.cpu import multigrid

    A = np.array([[1.0, 2.0], [2.0, 1.0]])
    assert not multigrid._cholesky(A, np.empty_like(A))


def test_hierarchy_falls_back_to_the_inverse_when_the_factor_fails(monkeypatch):
    """Near the 1e13 limit of lam / eps rounding may leave a Cholesky pivot non-positive; the
    coarsest solve then takes the dense inverse instead of failing."""
    from xvert_gpu.cpu import multigrid
    from xvert_gpu.cpu.system import CpuSystem

    x = np.random.default_rng(9).random((40, 37)).astype(np.float32)
    r = np.random.default_rng(10).random(x.shape).astype(np.float32)
    want = np.empty_like(r)
    CpuSystem(x, 1.0, 1.2, 1e-4, 1e-4).precondition(r, want)
    monkeypatch.setattr(multigrid, "_cholesky", lambda A, L: False)
    system = CpuSystem(x, 1.0, 1.2, 1e-4, 1e-4)
    assert system.hierarchy._coarse_inv is not None
    got = np.empty_like(r)
    system.precondition(r, got)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * np.abs(want).max())
