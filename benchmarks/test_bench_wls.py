"""pytest-benchmark: the WLS solve and its anchors, grouped per size.

Run ``python -m pytest benchmarks --benchmark-enable --benchmark-only`` and compare
runs with ``--benchmark-autosave`` / ``--benchmark-compare``. Accuracy is recorded
in ``extra_info`` so that times are read at equal detail error.
"""

import numpy as np
import pytest

import xvert_gpu
from xvert_gpu import anchors
from xvert_gpu.reference import detail_error
from xvert_gpu.samples import NAMES, load_sample

from conftest import SIZES, problem


@pytest.mark.parametrize("size", SIZES)
def test_wls_smooth(benchmark, size):
    x, x64, exact = problem(size)
    benchmark.group = f"wls {size}^2"
    xvert_gpu.wls_smooth(x)  # warm-up
    g, info = benchmark(xvert_gpu.wls_smooth, x, return_info=True)
    benchmark.extra_info.update(iterations=info.iterations, detail_error=detail_error(g, exact, x64))
    assert info.converged


@pytest.mark.parametrize("size", SIZES)
def test_pyamg_rs_equal_accuracy(benchmark, size):
    pytest.importorskip("pyamg")
    x, x64, exact = problem(size)
    benchmark.group = f"wls {size}^2"
    target = detail_error(xvert_gpu.wls_smooth(x), exact, x64)
    result = benchmark.pedantic(anchors.pyamg_rs, args=(x64, exact, target), rounds=1, iterations=1)
    benchmark.extra_info.update({k: v for k, v in result.items() if k != "note"})
    assert result["iterations"] is not None


@pytest.mark.parametrize("size", [256, 512])
def test_preprocess_batch(benchmark, size):
    stack = np.stack([load_sample(n, size) for n in NAMES] * 2)
    benchmark.group = f"preprocess batch 4x{size}^2"
    xvert_gpu.preprocess(stack[:1])
    p = benchmark(xvert_gpu.preprocess, stack)
    assert np.isfinite(p.hfc).all()
