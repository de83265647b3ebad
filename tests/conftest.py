import functools

import numpy as np
import pytest

import xvert_gpu
from xvert_gpu import reference
from xvert_gpu.samples import load_sample


@pytest.fixture(scope="session", autouse=True)
def _warm_numba():
    """Compile (or load from cache) the Numba kernels once, before any timing-free test runs."""
    xvert_gpu.wls_smooth(np.linspace(0, 1, 12 * 9, dtype=np.float32).reshape(12, 9))


@functools.lru_cache(maxsize=None)
def exact_smooth(name: str, size: int | None = None, lam: float = 1.0):
    """(x, g_exact) in float64 for a sample, cached across tests."""
    x = load_sample(name, size).astype(np.float64) / 255.0
    return x, reference.wls_smooth(x, lam=lam)


@pytest.fixture(scope="module")
def one_numba_thread():
    """Run the WLS solves on one Numba thread: they are small in the tests that use this, and
    on a shared 2-core machine parallel sweeps that wait on busy cores run slower."""
    numba = pytest.importorskip("numba")
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(before)
