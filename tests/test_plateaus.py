"""Plateau correction of the CPU preconditioner: labels, Galerkin diagonal, the step, symmetry."""

import numpy as np
import pytest
import scipy.sparse as sp

from xvert_gpu import reference
from xvert_gpu.cpu.plateaus import Plateaus
from xvert_gpu.cpu.system import CpuSystem, weight_arrays
from xvert_gpu.samples import NAMES, load_sample

from test_wls import _iterations_to
from conftest import exact_smooth

LAM, EPS = 1.0, 1e-4
STRONG = 0.5 * LAM / EPS


def crop(shape, name=NAMES[0], top=200, left=150):
    return load_sample(name)[top: top + shape[0], left: left + shape[1]].astype(np.float32) / 255


def plateaus_of(x):
    cn, cw = weight_arrays(x, LAM, 1.2, EPS, 1e-4)
    return Plateaus(cn, cw, STRONG), cn, cw


def piecewise_constant(labels, count):
    """P: pixels x plateaus, one 1 per labelled pixel."""
    on = labels.ravel() >= 0
    rows = np.flatnonzero(on)
    return sp.csr_matrix((np.ones(rows.size), (rows, labels.ravel()[on])), shape=(labels.size, count))


def test_labels_of_a_hand_made_image():
    img = np.array([[10, 10, 20, 30],
                    [40, 10, 20, 30],
                    [40, 50, 60, 30],
                    [70, 70, 70, 70]], np.float32) / 255
    p, _, _ = plateaus_of(img)
    np.testing.assert_array_equal(p.labels, [[0, 0, 1, 2],
                                             [3, 0, 1, 2],
                                             [3, -1, -1, 2],
                                             [4, 4, 4, 4]])
    assert p.count == 5


def _components(cn, cw, strong):
    """Plateau labels from scipy's connected components of the strong-coupling graph, numbered
    by first pixel in raster order, -1 for a pixel alone."""
    from scipy.sparse.csgraph import connected_components
    H, W = cn.shape
    idx = np.arange(H * W).reshape(H, W)
    north = cn[1:, :] >= strong
    west = cw[:, 1:] >= strong
    i = np.concatenate([idx[1:, :][north], idx[:, 1:][west]])
    j = np.concatenate([idx[:-1, :][north], idx[:, :-1][west]])
    g = sp.csr_matrix((np.ones(i.size), (i, j)), shape=(H * W, H * W))
    _, comp = connected_components(g, directed=False)
    size = np.bincount(comp)
    first = np.full(comp.max() + 1, H * W)
    np.minimum.at(first, comp, np.arange(H * W))
    big = np.flatnonzero(size >= 2)
    ids = np.full(comp.max() + 1, -1)
    ids[big[np.argsort(first[big])]] = np.arange(big.size)
    return ids[comp].reshape(H, W), big.size


@pytest.mark.parametrize("shape", [(1, 1), (1, 50), (50, 1), (2, 2), (3, 200), (200, 3),
                                   (129, 65), (67, 131), (300, 40)])
@pytest.mark.parametrize("bands", [1, 2, 3, 7, 1000])
def test_labels_are_the_components_for_any_band_count(shape, bands):
    # three grey levels: plateaus that meander and touch the seams between row bands
    from xvert_gpu.cpu.plateaus import _label
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    x = (rng.integers(0, 3, shape) / 2).astype(np.float32)
    cn, cw = weight_arrays(x, LAM, 1.2, EPS, 1e-4)
    labels = np.empty(shape, np.int32)
    count = _label(cn, cw, STRONG, labels, np.empty(x.size, np.int32), bands)
    want, n = _components(cn, cw, STRONG)
    assert count == n
    np.testing.assert_array_equal(labels, want)


def test_labels_of_a_sample_are_the_components():
    x = load_sample(NAMES[1], size=512).astype(np.float32) / 255
    p, cn, cw = plateaus_of(x)
    want, n = _components(cn, cw, STRONG)
    assert p.count == n > 1000
    np.testing.assert_array_equal(p.labels, want)


@pytest.mark.parametrize("shape", [(1, 9), (9, 1), (1, 1), (5, 5)])
def test_labels_of_thin_and_constant_images(shape):
    p, _, _ = plateaus_of(np.full(shape, 0.5, np.float32))
    if np.prod(shape) >= 2:
        assert p.count == 1 and (p.labels == 0).all()
        assert p.diag[0] == pytest.approx(np.prod(shape))  # unit masses, no coupling leaves
    else:
        assert p.count == 0 and (p.labels == -1).all()


def test_no_plateaus_without_equal_neighbours():
    x = np.random.default_rng(0).random((40, 30)).astype(np.float32)
    p, _, _ = plateaus_of(x)
    assert p.count == 0 and (p.labels == -1).all()
    z = np.empty_like(x)
    p.start(x, z)
    assert (z == 0).all()


@pytest.mark.parametrize("shape", [(64, 64), (61, 47)])
def test_diagonal_is_galerkin(shape):
    x = crop(shape)
    p, _, _ = plateaus_of(x)
    assert p.count > 10
    A = reference.system_matrix(*reference.weights(x.astype(np.float64)))
    P = piecewise_constant(p.labels, p.count)
    np.testing.assert_allclose(p.diag, (P.T @ A @ P).diagonal(), rtol=1e-5)


@pytest.mark.parametrize("odd_rows_only", [False, True])
def test_step_is_jacobi_on_the_plateaus(odd_rows_only):
    x = crop((48, 53))
    p, _, _ = plateaus_of(x)
    A = reference.system_matrix(*reference.weights(x.astype(np.float64)))
    P = piecewise_constant(p.labels, p.count)
    rng = np.random.default_rng(1)
    f = rng.standard_normal(x.shape).astype(np.float32)
    u = rng.standard_normal(x.shape).astype(np.float32)

    z = np.full_like(u, np.nan)
    p.start(f, z)
    want = P @ ((P.T @ f.ravel().astype(np.float64)) / p.diag)
    np.testing.assert_allclose(z.ravel(), want, rtol=1e-4, atol=1e-6)

    r = (f.ravel() - A @ u.ravel().astype(np.float64)).reshape(x.shape)
    if odd_rows_only:
        r[0::2] = 0.0
    want = u.ravel() + P @ ((P.T @ r.ravel()) / p.diag)
    p.correct(f, u, odd_rows_only=odd_rows_only)
    np.testing.assert_allclose(u.ravel(), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("shape", [(64, 64), (75, 41)])
def test_preconditioner_is_symmetric_and_positive(shape):
    """With the stationary coarse repeat the cycle is a fixed symmetric operator (the K-cycle
    is not linear: see the next test)."""
    x = crop(shape, NAMES[1])
    system = CpuSystem(x, LAM, 1.2, EPS, 1e-4, kcycle=False)
    assert system.hierarchy.plateaus is not None and system.hierarchy.plateaus.count > 0
    rng = np.random.default_rng(2)
    a, b = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    Ba, Bb = np.empty_like(a), np.empty_like(b)
    system.precondition(a, Ba)
    system.precondition(b, Bb)
    lhs, rhs = float(a.ravel() @ Bb.ravel()), float(b.ravel() @ Ba.ravel())
    assert abs(lhs - rhs) <= 1e-4 * np.sqrt(float(a.ravel() @ Ba.ravel()) * float(b.ravel() @ Bb.ravel()))
    assert float(a.ravel() @ Ba.ravel()) > 0 and float(b.ravel() @ Bb.ravel()) > 0


@pytest.mark.parametrize("shape", [(64, 64), (75, 41), (300, 257)])
def test_kcycle_preconditioner_is_positive(shape):
    """r . B r > 0 with the K-cycle: B r is still a descent direction for flexible CG."""
    x = crop(shape, NAMES[0])
    system = CpuSystem(x, LAM, 1.2, EPS, 1e-4)
    assert system.flexible
    rng = np.random.default_rng(3)
    for _ in range(3):
        a = rng.standard_normal(shape)
        Ba = np.empty(shape, np.float32)
        system.precondition(a, Ba)
        assert float(a.ravel() @ Ba.ravel()) > 0


def test_correction_cuts_the_iterations():
    x, exact = exact_smooth(NAMES[0])
    with_plateaus = _iterations_to(x, exact, 1e-5)
    without = _iterations_to(x, exact, 1e-5, plateaus=False)
    assert with_plateaus is not None and without is not None
    assert with_plateaus <= 0.6 * without, (with_plateaus, without)
