"""Eqs. 1-6 against the float64 reference, and edge cases."""

import numpy as np
import pytest

import xvert_gpu
from xvert_gpu import reference
from xvert_gpu.samples import NAMES, load_sample


def _rel(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


@pytest.mark.parametrize("name", NAMES)
def test_matches_float64_reference(name):
    a = load_sample(name)
    p = xvert_gpu.preprocess(a, tol=1e-6)
    ref = reference.preprocess(a.astype(np.float32) / np.float32(255))
    for field in ("x", "g", "e", "xp"):
        assert _rel(getattr(p, field), ref[field]) < 1e-5, field
    # the HFC is a difference of two close images: judge it relative to its own size
    assert _rel(p.hfc, ref["hfc"]) < 1e-3
    assert all(i.converged for i in p.info)


def test_equations_hold_exactly():
    a = load_sample(NAMES[0])[:160, :200]
    p = xvert_gpu.preprocess(a, e_floor=1e-3)
    x = a.astype(np.float32) / 255
    np.testing.assert_array_equal(p.x, x)
    e = np.maximum(x.mean(dtype=np.float64).astype(np.float32) - x + p.g, np.float32(1e-3))
    np.testing.assert_allclose(p.e, e, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(p.xp, x / p.e, rtol=1e-6)
    assert p.e.min() >= 1e-3


@pytest.mark.parametrize("img", [np.zeros((40, 40), np.uint8), np.full((40, 40), 255, np.uint8),
                                 np.full((33, 17), 0.25, np.float32)])
def test_constant_images(img):
    p = xvert_gpu.preprocess(img)
    for field in ("g", "e", "xp", "hfc"):
        assert np.isfinite(getattr(p, field)).all()
    np.testing.assert_allclose(p.hfc, 0, atol=1e-5)


def test_black_border_and_bright_edges_stay_finite():
    a = np.zeros((256, 256), np.uint8)
    a[30:226, 40:216] = load_sample(NAMES[0])[100:296, 100:276]
    a[100:110, :] = 255
    p = xvert_gpu.preprocess(a)
    for field in ("e", "xp", "hfc"):
        assert np.isfinite(getattr(p, field)).all()
    assert p.e.min() >= 1e-3


def test_stack_and_float_kinds():
    stack = np.stack([load_sample(n)[:96, :128] for n in NAMES])
    p = xvert_gpu.preprocess(stack)
    assert p.xp.shape == stack.shape and p.hfc.dtype == np.float32
    single = xvert_gpu.preprocess(stack[1])
    np.testing.assert_array_equal(p.xp[1], single.xp)
    np.testing.assert_array_equal(p.hfc[1], single.hfc)


def test_bad_floor():
    with pytest.raises(ValueError, match="e_floor"):
        xvert_gpu.preprocess(np.zeros((8, 8), np.float32), e_floor=0)
