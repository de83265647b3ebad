"""WLS solver: accuracy against the float64 direct solve, properties, convergence."""

import numpy as np
import pytest

import xvert_gpu
from xvert_gpu import reference
from xvert_gpu.reference import detail_error
from xvert_gpu.samples import NAMES, load_sample

from conftest import exact_smooth


class _Reached(Exception):
    """Raised from the PCG callback once the detail error target is met: the rest is waste."""


def _iterations_to(x, exact, target, maxiter=120, **kw):
    """Iterations until the detail error against ``exact`` first drops to ``target``."""
    errs = []
    from xvert_gpu.cpu.system import CpuSystem
    from xvert_gpu.krylov import pcg
    system = CpuSystem(x.astype(np.float32), kw.get("lam", 1.0), 1.2, 1e-4, 1e-4,
                       plateaus=kw.get("plateaus", True), kcycle=kw.get("kcycle"))

    def watch(u):
        errs.append(detail_error(u, exact, x))
        if errs[-1] <= target:
            raise _Reached

    # from x0 = x, as wls_smooth starts; tol is out of reach, the callback stops it
    try:
        pcg(system, x0=x.astype(np.float32), tol=1e-12, maxiter=maxiter, callback=watch)
    except _Reached:
        return len(errs)
    return None


@pytest.mark.parametrize("name", NAMES)
def test_default_and_tight_tolerance_on_samples(name):
    x, exact = exact_smooth(name)
    g = xvert_gpu.wls_smooth(x.astype(np.float32))
    assert g.dtype == np.float32 and g.shape == x.shape
    assert detail_error(g, exact, x) <= 1e-3
    g = xvert_gpu.wls_smooth(x.astype(np.float32), tol=1e-6)
    assert detail_error(g, exact, x) <= 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_iterations_to_1e5_detail_error_at_512(name):
    x, exact = exact_smooth(name)
    its = _iterations_to(x, exact, 1e-5)
    assert its is not None and its <= 60, its


@pytest.mark.parametrize("name", NAMES)
def test_upsampled_1024(name):
    x, exact = exact_smooth(name, 1024)
    g, info = xvert_gpu.wls_smooth(x.astype(np.float32), return_info=True)
    assert info.converged and detail_error(g, exact, x) <= 1e-3
    its = _iterations_to(x, exact, 1e-5)
    assert its is not None and its <= 60, its


@pytest.mark.parametrize("name", NAMES)
def test_kcycle_cuts_the_iterations_at_1024(name):
    """Combining the repeated first coarse cycle by CG (the K-cycle) saves iterations where the
    first coarse level is large (14 -> 10 and 13 -> 11 on the two samples when written)."""
    x, exact = exact_smooth(name, 1024)
    kcycle = _iterations_to(x, exact, 1e-5)
    stationary = _iterations_to(x, exact, 1e-5, kcycle=False)
    assert kcycle is not None and stationary is not None
    assert kcycle <= stationary - 2, (kcycle, stationary)


@pytest.mark.parametrize("lam, eps, kcycle", [(1.0, 1e-4, True), (10.0, 1e-4, True),
                                             (0.3, 1e-6, True), (100.0, 1e-4, False),
                                             (1.0, 1e-6, False), (1e4, 1e-4, False)])
def test_kcycle_only_where_it_pays(lam, eps, kcycle):
    """The K-cycle up to lam / eps = 3e5 (the paper's lam 0.1-10 at eps 1e-4); above it the
    stationary repeat, which then takes fewer iterations (66 against 157 at lam = 1e4)."""
    from xvert_gpu.cpu.system import CpuSystem

    x = load_sample(NAMES[0], 64).astype(np.float32) / 255
    system = CpuSystem(x, lam, 1.2, eps, 1e-4)
    assert system.hierarchy.kcycle is kcycle and system.flexible is kcycle


def test_kcycle_over_the_coarsest_level_is_linear():
    """Where the first coarse level is the coarsest, the K-cycle solves it once, exactly: the
    preconditioner stays linear and PCG keeps the usual direction update."""
    from xvert_gpu.cpu.system import CpuSystem

    x = load_sample(NAMES[0], 24).astype(np.float32) / 255  # 576 unknowns, then 144: coarsest
    system = CpuSystem(x, 1.0, 1.2, 1e-4, 1e-4)
    assert system.hierarchy.kcycle and len(system.hierarchy.levels) == 2
    assert not system.flexible


def _same_iterates(variants):
    """PCG to tol 1e-7 on a crop of a sample with each ``variant(x)`` system: the same
    iteration count, residual histories to 1e-3 and solutions to float32 rounding."""
    from xvert_gpu.krylov import pcg

    x, _ = exact_smooth(NAMES[1])
    x = x[:200, :160].astype(np.float32)
    out = []
    for variant in variants:
        history: list[float] = []
        g, info = pcg(variant(x), x0=x, tol=1e-7, residuals=history)
        assert info == 0
        out.append((g, history))
    (g0, h0), (g1, h1) = out
    assert len(h0) == len(h1) > 5
    np.testing.assert_allclose(h1, h0, rtol=1e-3)
    np.testing.assert_allclose(g1, g0, rtol=0, atol=1e-6)


def test_flexible_step_leaves_a_fixed_preconditioner_alone():
    """The flexible (Polak-Ribiere) direction update equals the usual one when the
    preconditioner is linear and symmetric: the same iterates, to rounding."""
    from xvert_gpu.cpu.system import CpuSystem

    def pinned(flexible):
        def make(x):
            system = CpuSystem(x, 1.0, 1.2, 1e-4, 1e-4, kcycle=False)
            assert not system.flexible
            system.__class__ = type("Pinned", (CpuSystem,), {"flexible": flexible})
            return system
        return make

    _same_iterates([pinned(False), pinned(True)])


def test_update_split_is_the_update_a_rounding_and_a_dot():
    from xvert_gpu.cpu import vectors

    rng = np.random.default_rng(5)
    x, r, q = (rng.standard_normal((37, 53)) for _ in range(3))
    p, z = (rng.standard_normal((37, 53)).astype(np.float32) for _ in range(2))
    x0, r0 = x.copy(), r.copy()
    rp = np.empty((37, 53), np.float32)
    rr, rz = vectors.update_split(x, r, p, q, 0.3, rp, z)
    np.testing.assert_allclose(x, x0 + 0.3 * p.astype(np.float64), rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(r, r0 - 0.3 * q, rtol=1e-15, atol=1e-15)
    np.testing.assert_array_equal(rp, r.astype(np.float32))
    assert rr == pytest.approx(float((r * r).sum()), rel=1e-12)
    assert rz == pytest.approx(float((rp.astype(np.float64) * z).sum()), rel=1e-12)
    assert vectors.update_split(x, r, p, q, 0.0, rp, None)[1] == 0.0


def test_split_residual_changes_the_solve_by_rounding_only():
    """PCG with the fused update (the preconditioner and the dots read r rounded to float32)
    follows the plain update's iterates: the same count, solutions to float32 rounding."""
    from xvert_gpu.cpu.system import CpuSystem

    def split(x):
        system = CpuSystem(x, 1.0, 1.2, 1e-4, 1e-4)
        assert system.flexible and hasattr(system, "update_split")
        return system

    def plain(x):  # the generic path every other System takes
        system = split(x)
        system.__class__ = type("Plain", (CpuSystem,), {"update_split": property(
            lambda self: (_ for _ in ()).throw(AttributeError("update_split")))})
        assert not hasattr(system, "update_split")
        return system

    _same_iterates([split, plain])


@pytest.mark.parametrize("shape", [(97, 131), (131, 97), (64, 1), (1, 200), (2, 3), (33, 257)])
def test_odd_and_non_square_shapes(shape):
    rng = np.random.default_rng(sum(shape))
    crop = load_sample(NAMES[1])[: shape[0], 100: 100 + shape[1]].astype(np.float64) / 255
    for x in (crop, rng.random(shape)):
        exact = reference.wls_smooth(x)
        g = xvert_gpu.wls_smooth(x.astype(np.float32), tol=1e-7)
        assert detail_error(g, exact, x) <= 1e-5


@pytest.mark.parametrize("lam", [0.1, 0.5, 3.0, 10.0])
def test_lambda_range(lam):
    x = load_sample(NAMES[0])[150:350, 150:350].astype(np.float64) / 255
    exact = reference.wls_smooth(x, lam=lam)
    g = xvert_gpu.wls_smooth(x.astype(np.float32), lam=lam)
    assert detail_error(g, exact, x) <= 1e-3
    g = xvert_gpu.wls_smooth(x.astype(np.float32), lam=lam, tol=1e-7)
    assert detail_error(g, exact, x) <= 1e-5


@pytest.mark.parametrize("shape,seed,lam", [((2, 2), 1, 1e8), ((2, 2), 1, 1e4), ((127, 33), 2, 1e8),
                                           ((64, 64), 3, 1e6)])
def test_large_lambda_is_solved_or_reported(shape, seed, lam):
    """A large lam gave wrong results that reported success: a 2x2 image at lam = 1e8 came out
    3.0 above the exact answer with a residual of 1e-9 (float32 A p lost the small part of the
    residual update). The answer is now right, with a true residual under tol."""
    x = np.random.default_rng(seed).random(shape).astype(np.float32)
    exact = reference.wls_smooth(x.astype(np.float64), lam=lam)
    g, info = xvert_gpu.wls_smooth(x, lam=lam, return_info=True)
    assert info.converged and info.residuals[-1] <= 1e-5
    assert x.min() - 1e-6 <= g.min() and g.max() <= x.max() + 1e-6
    assert np.abs(g - exact).max() < 1e-4


@pytest.mark.parametrize("name,lam,eps", [(NAMES[0], 1.0, 1e-8), (NAMES[1], 1.0, 1e-9),
                                           (NAMES[1], 100.0, 1e-6), (NAMES[0], 1e4, 1e-4)])
def test_strong_couplings_are_solved(name, lam, eps):
    """With the line factors and the cycle in float32, a coupling lam / eps of 1e8 or more
    (a small eps, or a large lam) perturbed the line solves by more than the mass and the edge
    couplings: eps = 1e-8 stalled at a detail error of 0.1-0.3 after 300 iterations, with only
    a warning. Above lam / eps = 1e6 the cycle now runs in float64."""
    from xvert_gpu.cpu.system import CpuSystem

    x = load_sample(name, 256).astype(np.float64) / 255
    exact = reference.wls_smooth(x, lam=lam, eps=eps)
    g, info = xvert_gpu.wls_smooth(x.astype(np.float32), lam=lam, eps=eps, maxiter=300,
                                   return_info=True)
    assert info.converged, info.residuals[-3:]
    assert detail_error(g, exact, x) <= 1e-5
    assert x.min() - 1e-6 <= g.min() and g.max() <= x.max() + 1e-6
    assert CpuSystem(x[:8, :8].astype(np.float32), lam, 1.2, eps, 1e-4).dtype == np.float64


def test_the_paper_parameters_keep_the_float32_cycle():
    """The float64 cycle costs memory and time: the paper's range stays in float32."""
    from xvert_gpu.cpu.system import CpuSystem

    x = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    for lam in (0.1, 1.0, 10.0):
        system = CpuSystem(x, lam, 1.2, 1e-4, 1e-4)
        assert system.dtype == np.float32 and system.zeros().dtype == np.float32
        assert all(a.dtype == np.float32 for lv in system.hierarchy.levels for a in lv.rows + lv.cols)


@pytest.mark.parametrize("kw, match", [({"eps": 1e-10}, r"eps = 1e-10 is below 1e-09"),
                                       ({"lam": 1e10}, r"lam / eps = 1e\+14 is above 1e\+13")])
@pytest.mark.parametrize("func", [xvert_gpu.wls_smooth, xvert_gpu.preprocess])
def test_parameters_beyond_the_solver_are_refused(func, kw, match):
    """Beyond eps = 1e-9 or lam / eps = 1e13 the solve stalled or drifted (a 8x8 image at
    lam = 1e12 came back at 743, outside its [0, 1] range) with only a warning."""
    with pytest.raises(ValueError, match=match):
        func(np.eye(8, dtype=np.float32), **kw)


@pytest.mark.parametrize("func", [xvert_gpu.wls_smooth, xvert_gpu.preprocess])
@pytest.mark.filterwarnings("ignore:WLS solve did not reach")  # at the limit tol may be out of reach
def test_parameters_at_the_solver_limits_are_accepted(func):
    """eps = 1e-9 and lam / eps = 1e13 exactly (1e4 / 1e-9) are still solved."""
    out = func(np.eye(8, dtype=np.float32), lam=1e4, eps=1e-9)
    g = getattr(out, "g", out)  # preprocess returns the stages, g among them
    assert 0.0 <= g.min() and g.max() <= 1.0


def test_chain_settings_beyond_the_solver_are_refused_up_front():
    """A model's chain settings are checked once, not on every image of a batch."""
    from xvert_gpu.chain import ChainParams

    with pytest.raises(ValueError, match="eps = 1e-12 is below"):
        ChainParams(eps=1e-12)
    with pytest.raises(ValueError, match="tol"):
        ChainParams.from_dict({"tol": 0.0})
    assert ChainParams.from_dict(ChainParams().to_dict()) == ChainParams()


def test_lam_zero_needs_no_solve_whatever_eps():
    x = np.eye(8, dtype=np.float32)
    np.testing.assert_array_equal(xvert_gpu.wls_smooth(x, lam=0.0, eps=1e-12), x)


def test_pcg_checks_the_true_residual_before_it_stops(monkeypatch):
    """With float32 products (as the CUDA backend has) the recursive residual drifts below the
    true one at a large lam; pcg recomputes b - A x before it stops and goes on from it."""
    from xvert_gpu.cpu.system import CpuSystem
    from xvert_gpu.krylov import pcg

    monkeypatch.setattr(CpuSystem, "precise_matvec", False)
    x = load_sample(NAMES[0])[150:214, 150:214].astype(np.float32) / 255
    system = CpuSystem(x, 1e6, 1.2, 1e-4, 1e-4)
    history = []
    g, info = pcg(system, x0=x, tol=1e-5, maxiter=300, residuals=history)
    q = np.zeros(x.shape)
    system.matvec_dot(g, q)
    true = np.linalg.norm(x - q) / np.linalg.norm(x)
    assert true == pytest.approx(history[-1], rel=1e-6)  # what it reports is the truth
    assert (info == 0) == (true <= 1e-5)
    assert any(later > earlier for earlier, later in zip(history, history[1:]))  # a restart


@pytest.mark.parametrize("value", [0.0, 0.37, 1.0])
def test_constant_image_unchanged(value):
    x = np.full((45, 61), value, np.float32)
    g = xvert_gpu.wls_smooth(x)
    np.testing.assert_allclose(g, x, atol=1e-6)


def test_output_within_input_range():
    for x in (load_sample(NAMES[0]).astype(np.float32) / 255,
              np.random.default_rng(1).random((80, 90)).astype(np.float32) * 0.5 + 0.2):
        g = xvert_gpu.wls_smooth(x)
        assert g.min() >= x.min() - 1e-5 and g.max() <= x.max() + 1e-5


def test_lambda_zero_is_identity():
    x = load_sample(NAMES[0])[:100, :120]
    g = xvert_gpu.wls_smooth(x, lam=0.0)
    np.testing.assert_array_equal(g, x.astype(np.float32) / 255)


def test_flip_symmetry():
    x = load_sample(NAMES[1])[100:301, 50:260].astype(np.float32) / 255
    g = xvert_gpu.wls_smooth(x, tol=1e-7)
    for axis in (0, 1):
        gf = xvert_gpu.wls_smooth(np.flip(x, axis), tol=1e-7)
        np.testing.assert_allclose(np.flip(gf, axis), g, atol=2e-5)
    gt = xvert_gpu.wls_smooth(np.ascontiguousarray(x.T), tol=1e-7)
    np.testing.assert_allclose(gt.T, g, atol=2e-5)


def test_no_nan_on_extreme_images():
    sample = load_sample(NAMES[0]).astype(np.float32) / 255
    bordered = np.zeros((300, 300), np.float32)
    bordered[40:260, 60:240] = sample[100:320, 100:280]
    checker = (np.indices((64, 64)).sum(0) % 2).astype(np.float32)
    for x in (np.zeros((50, 50), np.float32), np.ones((50, 50), np.float32), bordered, checker):
        g, info = xvert_gpu.wls_smooth(x, return_info=True)
        assert np.isfinite(g).all() and info.converged
        assert g.min() >= x.min() - 1e-5 and g.max() <= x.max() + 1e-5
    exact = reference.wls_smooth(bordered.astype(np.float64))
    assert detail_error(xvert_gpu.wls_smooth(bordered, tol=1e-7), exact, bordered) <= 1e-5


def test_stack_matches_single_images():
    imgs = np.stack([load_sample(n)[:128, :160] for n in NAMES])
    g, info = xvert_gpu.wls_smooth(imgs, return_info=True)
    assert g.shape == imgs.shape and len(info.iterations) == 2
    for i in range(2):
        np.testing.assert_array_equal(g[i], xvert_gpu.wls_smooth(imgs[i]))


def test_info_and_history():
    x = load_sample(NAMES[0])[:200, :200]
    g, info = xvert_gpu.wls_smooth(x, return_info=True)
    assert info.backend == "cpu" and info.converged
    assert len(info.residuals) == info.iterations + 1
    assert info.residuals[-1] <= 1e-5
    # the iteration starts from g = x: the first residual is ||x - A x|| / ||x||
    from xvert_gpu import reference
    xf = x.astype(np.float64) / 255
    A = reference.system_matrix(*reference.weights(xf.astype(np.float32)))
    r0 = np.linalg.norm(xf.ravel() - A @ xf.ravel()) / np.linalg.norm(xf)
    assert info.residuals[0] == pytest.approx(r0, rel=1e-4)


def test_maxiter_reports_non_convergence():
    x = load_sample(NAMES[0])[:200, :200]
    with pytest.warns(RuntimeWarning, match="did not reach"):
        g, info = xvert_gpu.wls_smooth(x, maxiter=2, return_info=True)
    assert not info.converged and info.iterations == 2 and np.isfinite(g).all()


def test_weights_match_definition():
    x = load_sample(NAMES[0])[:50, :70]
    wx, wy = xvert_gpu.wls_weights(x, lam=2.0)
    assert wx.shape == (50, 69) and wy.shape == (49, 70)
    rx, ry = reference.weights(x.astype(np.float32) / np.float32(255), lam=2.0)  # same float32 input
    np.testing.assert_allclose(wx, rx, rtol=1e-6)
    np.testing.assert_allclose(wy, ry, rtol=1e-6)
    assert wx.max() <= 2.0 / 1e-4 * (1 + 1e-6)
    wx3, _ = xvert_gpu.wls_weights(np.stack([x, x]))
    assert wx3.shape == (2, 50, 69)


def test_cpu_weights_kernel_matches_reference():
    from xvert_gpu.cpu.system import weight_arrays
    x = load_sample(NAMES[1]).astype(np.float32) / 255
    cn, cw = weight_arrays(x, 1.0, 1.2, 1e-4, 1e-4)
    rx, ry = reference.weights(x)
    np.testing.assert_allclose(cw[:, 1:], rx, rtol=2e-6)
    np.testing.assert_allclose(cn[1:, :], ry, rtol=2e-6)
    assert (cw[:, 0] == 0).all() and (cn[0] == 0).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_upsampled_2048_against_pyamg_truth(name):
    """2048^2: the direct solve needs 10 GB, so a 1e-10 pyamg Ruge-Stuben solve is the truth.

    Issue 2: at most 60 iterations to a detail error of 1e-5, and at most 30 % more than at
    512^2, on both bundled samples (15 -> 17 and 13 -> 16 when this test was written with the
    V-cycle; 14 -> 15 and 11 -> 14 with the first coarse level cycled twice; 12 -> 11 and
    8 -> 10 with its two cycles combined by CG, the K-cycle).
    """
    pyamg = pytest.importorskip("pyamg")
    x = load_sample(name, 2048).astype(np.float64) / 255
    A = reference.system_matrix(*reference.weights(x))
    ml = pyamg.ruge_stuben_solver(A.tocsr())
    exact = ml.solve(x.ravel(), tol=1e-11, accel="cg", maxiter=200).reshape(x.shape)
    g = xvert_gpu.wls_smooth(x.astype(np.float32))
    assert detail_error(g, exact, x) <= 1e-3
    its = _iterations_to(x, exact, 1e-5)
    its512 = _iterations_to(*exact_smooth(name), 1e-5)
    assert its <= 60 and its <= 1.3 * its512, (its512, its)
