"""Tests of xvert_gpu.metrics: the SPEC's check values (section 7), invariances, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import convolve2d

from xvert_gpu.metrics import entropy, lpc_si, round_half_away, tenengrad, tmqi


def _round(x):
    """MATLAB round (half away from zero), written independently of the module's helper."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def synthetic(R: int = 256, C: int = 256):
    """The SPEC's check image: I12, I8, blur (0-255 scale) and G, all float64 arrays."""
    r, c = np.mgrid[0:R, 0:C].astype(np.float64)
    v = (2000.0 + 900.0 * np.cos(2 * np.pi * c / (1.3 * C)) * (1 - ((r - R / 2) / R) ** 2)
         + 600.0 * (np.sin(2 * np.pi * r / 29 + 0.3 * np.sin(2 * np.pi * c / 97)) > 0.6)
         + 800.0 * ((r - 0.4 * R) ** 2 + (c - 0.6 * C) ** 2 < (0.15 * min(R, C)) ** 2)
         + 120.0 * np.sin(2 * np.pi * c / 7) * np.sin(2 * np.pi * r / 11))
    i12 = np.clip(_round(v), 0, 4095)
    i8 = _round(255.0 * i12 / 4095.0)
    blur = convolve2d(i8, np.ones((5, 5)) / 25.0, mode="same")  # zero padding
    g = _round(255.0 * (i12 / 4095.0) ** 0.6)
    return i12, i8, blur, g


@pytest.fixture(scope="module")
def check_images():
    return synthetic()


# --------------------------------------------------------------------------- check values

def test_entropy_check_value(check_images):
    _, i8, _, _ = check_images
    assert entropy(i8.astype(np.uint8)) == pytest.approx(7.090727249582, rel=1e-6)


def test_lpc_si_check_values(check_images):
    _, i8, blur, _ = check_images
    assert lpc_si(i8.astype(np.uint8)) == pytest.approx(0.800581880195, rel=1e-6)
    assert lpc_si(blur / 255.0) == pytest.approx(0.272535694425, rel=1e-6)


@pytest.mark.parametrize("ref_dtype", [np.uint16, np.float64])
def test_tmqi_check_values(check_images, ref_dtype):
    i12, i8, _, g = check_images
    ref = i12.astype(ref_dtype)
    assert tmqi(ref, i8.astype(np.uint8)) == pytest.approx(0.974243521479, rel=1e-6)
    assert tmqi(ref, g.astype(np.uint8)) == pytest.approx(0.849999141182, rel=1e-6)


def test_tmqi_components(check_images):
    i12, i8, _, _ = check_images
    q, s, n = tmqi(i12.astype(np.uint16), i8.astype(np.uint8), return_components=True)
    assert q == pytest.approx(0.974243521479, rel=1e-6)
    assert 0 < s <= 1 and 0 < n <= 1
    assert q == pytest.approx(0.8012 * s ** 0.3046 + 0.1988 * n ** 0.7088, rel=1e-12)


def test_tmqi_reference_storage_scale(check_images):
    """The reference is rescaled by its own max/min: 0..4095 and 0..1 storage agree closely."""
    i12, i8, _, _ = check_images
    q1 = tmqi(i12, i8.astype(np.uint8))
    q2 = tmqi(i12 / 4095.0, i8.astype(np.uint8))
    assert q2 == pytest.approx(q1, rel=1e-6)


# --------------------------------------------------------------------------- conventions

def test_round_half_away():
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49999999999999994, 2.4])
    np.testing.assert_array_equal(round_half_away(x), [-3, -2, -1, 1, 2, 3, 0, 2])
    assert round_half_away(18.5) == 19.0
    assert round_half_away(-0.4) == 0.0


def test_input_conventions_agree(check_images):
    """uint8, float on [0, 1] and uint16 (x 257) encode the same image the same way."""
    _, i8, _, _ = check_images
    u8 = i8.astype(np.uint8)
    f = i8 / 255.0
    u16 = (i8 * 257).astype(np.uint16)
    for fn in (entropy, tenengrad, lpc_si):
        ref = fn(u8)
        assert fn(f) == pytest.approx(ref, rel=1e-9)
        assert fn(u16) == pytest.approx(ref, rel=1e-9)


def test_entropy_float_rounding_and_clipping():
    # 0.5/255 rounds up to 1 (half away from zero); values outside [0, 1] are clipped.
    x = np.array([[0.5 / 255, 1.0 / 255, -3.0, 0.0, 2.0, 1.0]])
    # bins: 1 (x2), 0 (x2), 255 (x2)
    assert entropy(x) == pytest.approx(np.log2(3), rel=1e-12)


# --------------------------------------------------------------------------- invariances

def test_entropy_permutation_invariant(check_images):
    _, i8, _, _ = check_images
    u8 = i8.astype(np.uint8)
    rng = np.random.default_rng(1)
    perm = rng.permutation(u8.ravel()).reshape(u8.shape)
    assert entropy(perm) == entropy(u8)


def test_entropy_known_values():
    assert entropy(np.zeros((5, 7), np.uint8)) == 0.0
    half = np.zeros((4, 4), np.uint8)
    half[:2] = 200
    assert entropy(half) == pytest.approx(1.0)
    assert entropy(np.arange(256, dtype=np.uint8).reshape(16, 16)) == pytest.approx(8.0)


@pytest.mark.parametrize("value", [0, 17, 255])
def test_tenengrad_constant_is_zero(value):
    assert tenengrad(np.full((40, 33), value, np.uint8)) == 0.0


def test_tenengrad_ramp():
    """A horizontal ramp of slope s on [0, 1]: interior Gx = 8 s, replicated borders halve it."""
    s = 0.01
    x = np.tile(np.arange(50) * s, (20, 1))
    gx = np.full(50, 8 * s)
    gx[0] = gx[-1] = 4 * s
    assert tenengrad(x) == pytest.approx(np.mean(gx ** 2), rel=1e-12)
    assert tenengrad(x.T) == pytest.approx(tenengrad(x), rel=1e-12)


def test_tenengrad_falls_with_blur(check_images):
    _, i8, blur, _ = check_images
    assert tenengrad(blur / 255.0) < tenengrad(i8.astype(np.uint8))


def test_lpc_si_falls_with_blur(check_images):
    _, i8, _, _ = check_images
    prev = lpc_si(i8.astype(np.uint8))
    for k in (3, 5, 9):
        b = convolve2d(i8, np.ones((k, k)) / k ** 2, mode="same", boundary="symm")
        cur = lpc_si(b / 255.0)
        assert cur < prev
        prev = cur


def test_tmqi_range(check_images):
    i12, i8, _, g = check_images
    for t in (i8, g, _round(255 * (i12 / 4095.0) ** 1.8)):
        q = tmqi(i12, t.astype(np.uint8))
        assert 0.0 < q <= 1.0


@pytest.mark.parametrize("shape", [(257, 301), (301, 257), (290, 512), (175, 163)])
def test_odd_and_non_square_sizes(shape):
    i12, i8, blur, g = synthetic(*shape)
    u8 = i8.astype(np.uint8)
    for v in (entropy(u8), tenengrad(u8), lpc_si(u8), lpc_si(blur / 255.0),
              tmqi(i12.astype(np.uint16), u8), tmqi(i12, g.astype(np.uint8))):
        assert np.isfinite(v)
    assert 0 < tmqi(i12, u8) <= 1
    assert 0 < lpc_si(u8) <= 1
    assert lpc_si(blur / 255.0) < lpc_si(u8)


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("fn", [entropy, tenengrad, lpc_si])
def test_bad_input_single(fn):
    nan = np.full((32, 32), 0.5)
    nan[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fn(nan)
    with pytest.raises(ValueError, match="2-D"):
        fn(np.zeros((4, 32, 32)))
    with pytest.raises(ValueError, match="2-D"):
        fn(np.zeros(32))
    with pytest.raises(ValueError, match="empty"):
        fn(np.zeros((0, 32)))
    with pytest.raises(ValueError, match="dtype"):
        fn(np.zeros((32, 32), dtype=np.int32))


def test_bad_input_tmqi(check_images):
    i12, i8, _, _ = check_images
    u8 = i8.astype(np.uint8)
    bad = i12.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        tmqi(bad, u8)
    with pytest.raises(ValueError, match="same shape"):
        tmqi(i12, u8[:, :-1])
    with pytest.raises(ValueError, match="2-D"):
        tmqi(i12[None], u8[None])
    with pytest.raises(ValueError, match="empty"):
        tmqi(np.zeros((0, 0)), np.zeros((0, 0), np.uint8))
    with pytest.raises(ValueError, match="161"):
        tmqi(i12[:160], u8[:160])
    with pytest.raises(ValueError, match="constant"):
        tmqi(np.ones_like(i12), u8)


def test_ndarray_subclasses_are_read_as_plain_arrays(check_images):
    # np.matrix makes * a matrix product: TMQI of a square image came out above 1
    i12, i8, _, _ = check_images
    u8 = i8.astype(np.uint8)
    assert tmqi(np.matrix(i12), u8) == tmqi(i12, u8)
    assert tmqi(i12, np.matrix(u8)) == tmqi(i12, u8)
    for fn in (entropy, tenengrad, lpc_si):
        assert fn(np.matrix(u8)) == fn(u8), fn.__name__
        assert fn(np.ma.masked_array(u8)) == fn(u8), fn.__name__


def test_big_endian_uint16_is_uint16(check_images):
    # e.g. np.fromfile(path, ">u2"): the dtype compares unequal to np.uint16 but holds the same
    i12, i8, _, _ = check_images
    u16 = (i8 * 257).astype(np.uint16)
    for fn in (entropy, tenengrad, lpc_si):
        assert fn(u16.astype(">u2")) == fn(u16), fn.__name__
    assert tmqi(i12, u16.astype(">u2")) == tmqi(i12, u16)
    assert tmqi(i12.astype(">u2"), u16) == tmqi(i12.astype(np.uint16), u16)


def test_masked_pixels_are_refused(check_images):
    i12, i8, _, _ = check_images
    u8 = i8.astype(np.uint8)
    for fn in (entropy, tenengrad, lpc_si):
        with pytest.raises(ValueError, match="masked"):
            fn(np.ma.masked_array(u8, mask=u8 > 200))
    with pytest.raises(ValueError, match="reference is a masked array"):
        tmqi(np.ma.masked_array(i12, mask=i12 > 3000), u8)


# --------------------------------------------------------------------------- CuPy path

@pytest.mark.gpu
def test_cupy_matches_numpy(check_images):
    """On a GPU the same functions take CuPy arrays and agree with NumPy to 1e-6."""
    from xvert_gpu.backends import cuda_available
    if not cuda_available():
        pytest.skip("needs CuPy and a CUDA GPU")
    import cupy

    for shape in ((256, 256), (257, 301)):
        i12, i8, blur, g = check_images if shape == (256, 256) else synthetic(*shape)
        u8, bf, g8 = i8.astype(np.uint8), blur / 255.0, g.astype(np.uint8)
        pairs = [(entropy, (u8,)), (tenengrad, (u8,)), (lpc_si, (u8,)), (lpc_si, (bf,)),
                 (tmqi, (i12.astype(np.uint16), u8)), (tmqi, (i12, g8))]
        for fn, args in pairs:
            cpu = fn(*args)
            gpu = fn(*(cupy.asarray(a) for a in args))
            assert isinstance(gpu, float)
            assert gpu == pytest.approx(cpu, rel=1e-6), fn.__name__
