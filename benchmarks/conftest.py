import functools

import numpy as np
import pytest

from xvert_gpu import anchors
from xvert_gpu.samples import NAMES, load_sample

SIZES = (256, 512, 1024)


@functools.lru_cache(maxsize=None)
def problem(size: int):
    """(float32 image, float64 image, float64 exact WLS) of the first sample at size^2."""
    x = load_sample(NAMES[0], size).astype(np.float32) / np.float32(255)
    x64 = x.astype(np.float64)
    exact, _, _ = anchors.truth(x64, direct_max=1024)
    return x, x64, exact


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.benchmark_suite)
