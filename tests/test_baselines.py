"""Baselines: dtype/shape round trip, true bit depth in CLAHE, contrast/detail gains, validation."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from xvert_gpu import metrics
from xvert_gpu.baselines import BASELINES, Boost, clahe, farbman, get
from xvert_gpu.samples import NAMES, load_sample

SIZE = 192


pytestmark = pytest.mark.usefixtures("one_numba_thread")


@pytest.fixture(scope="module")
def img8():
    return load_sample(NAMES[0], SIZE)


@pytest.fixture(scope="module")
def img12():
    """A 12-bit film: the sample smoothed a little, with 12-bit noise, in uint16."""
    x = ndi.gaussian_filter(load_sample(NAMES[1], SIZE).astype(np.float64) / 255.0, 0.8)
    rng = np.random.default_rng(0)
    return np.clip(np.rint(x * 4095 + rng.normal(0, 2.0, x.shape)), 0, 4095).astype(np.uint16)


def _unit(a, bits=None):
    if a.dtype.kind == "f":
        return a.astype(np.float64)
    return a.astype(np.float64) / (2 ** (bits or 8 * a.dtype.itemsize) - 1)


def _highpass_energy(x):
    return float(np.mean((x - ndi.gaussian_filter(x, 2.0)) ** 2))


@pytest.mark.parametrize("name", sorted(BASELINES))
@pytest.mark.parametrize("kind", ["uint8", "uint16-12bit", "float32"])
def test_dtype_and_shape_kept(name, kind, img8, img12):
    method = get(name)
    if kind == "uint8":
        x, kw, top = img8[:, :150], {}, 255
    elif kind == "uint16-12bit":
        x, kw, top = img12[:, :150], {"bits": 12}, 4095
    else:
        x, kw, top = (img8[:, :150] / 255.0).astype(np.float32), {}, 1.0
    y = method(x, **kw)
    assert isinstance(y, np.ndarray)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert np.all(np.isfinite(y)) and y.min() >= 0 and y.max() <= top
    assert not np.array_equal(y, x)


def test_float64_gives_float32(img8):
    y = clahe(img8 / 255.0)
    assert y.dtype == np.float32 and 0.0 <= y.min() and y.max() <= 1.0


def test_clahe_uses_true_bit_depth(img12):
    squashed = np.rint(img12.astype(np.float64) * 255 / 4095).astype(np.uint8)
    y12 = clahe(img12, bits=12)
    y8 = clahe(squashed)
    # An 8-bit equalisation has at most 256 output levels; the 12-bit one keeps thousands.
    assert len(np.unique(y12)) > 1000
    assert len(np.unique(y8)) <= 256
    diff = np.abs(_unit(y12, 12) - _unit(y8))
    assert diff.mean() > 0.01
    # Same algorithm and strength, though: the two agree broadly.
    assert np.corrcoef(_unit(y12, 12).ravel(), _unit(y8).ravel())[0, 1] > 0.9


def test_clahe_bits_sets_output_range(img12):
    assert clahe(img12, bits=12).max() == 4095
    assert clahe(img12).max() == 65535  # uint16 defaults to the full 16-bit range


def test_clahe_uint8_matches_scikit_image(img8):
    from skimage import exposure

    ref = np.rint(exposure.equalize_adapthist(img8, clip_limit=0.01, nbins=257) * 255)
    assert np.array_equal(clahe(img8), ref.astype(np.uint8))


def test_clahe_clip_scaling_keeps_strength(img12):
    squashed = np.rint(img12.astype(np.float64) * 255 / 4095).astype(np.uint8)
    tc8 = metrics.tenengrad(clahe(squashed))
    tc12 = metrics.tenengrad(_unit(clahe(img12, bits=12), 12))
    raw = metrics.tenengrad(_unit(clahe(img12, bits=12, scale_clip=False), 12))
    assert 0.5 < tc12 / tc8 < 1.5
    assert raw > 1.3 * tc12  # unscaled, 4096 bins clip far less


def test_clahe_raises_local_contrast(img8):
    x = _unit(img8)
    y = _unit(clahe(img8))
    assert metrics.tenengrad(y) > 1.5 * metrics.tenengrad(x)

    def local_std(a):
        m = ndi.uniform_filter(a, 15)
        return float(np.sqrt(np.maximum(ndi.uniform_filter(a * a, 15) - m * m, 0)).mean())

    assert local_std(y) > 1.2 * local_std(x)


def test_farbman_boosts_detail(img8):
    x = _unit(img8)
    y = _unit(farbman(img8))
    assert _highpass_energy(y) > 2.0 * _highpass_energy(x)
    # The demo's "fine" setting boosts the finest detail more than its "coarse" one.
    fine, coarse = (_unit(farbman(img8[:128, :128], preset=p)) for p in ("fine", "coarse"))
    assert _highpass_energy(fine) > _highpass_energy(coarse)


def test_farbman_lab_domain_and_custom_boost(img8):
    x = img8[:128, :128]
    y = farbman(x, domain="lab")
    assert y.dtype == np.uint8 and _highpass_energy(_unit(y)) > _highpass_energy(_unit(x))
    same = farbman(x, preset=Boost(detail=(0.0, 0.0), base=0.0))  # all identities
    assert np.abs(same.astype(int) - x.astype(int)).max() <= 1


@pytest.mark.parametrize("name", sorted(BASELINES))
@pytest.mark.parametrize("value", [0.0, 0.37, 1.0])
def test_constant_image_stays_constant(name, value):
    x = np.full((40, 56), value, dtype=np.float32)
    y = get(name)(x)
    assert np.all(np.isfinite(y)) and np.ptp(y) == 0.0
    y8 = get(name)(np.full((40, 56), 9, dtype=np.uint8))
    assert np.ptp(y8) == 0


def test_torch_round_trip(img8):
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(img8[:64, :64].copy())
    y = clahe(t)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.uint8 and tuple(y.shape) == (64, 64)


@pytest.mark.parametrize("name", sorted(BASELINES))
@pytest.mark.parametrize("bad, match", [
    (np.zeros((3, 8, 8)), "2-D"),
    (np.zeros(8), "2-D"),
    (np.zeros((0, 8)), "empty"),
    (np.array([[0.2, np.nan], [0.1, 0.3]]), "NaN"),
    (np.array([[0.2, 1.5], [0.1, 0.3]]), r"\[0, 1\]"),
    (np.array([[0.2, -0.1], [0.1, 0.3]]), r"\[0, 1\]"),
    (np.array([[1, -2], [3, 4]]), "negative"),
    (np.zeros((4, 4), dtype=bool), "dtype"),
])
def test_validation(name, bad, match):
    with pytest.raises(ValueError, match=match):
        get(name)(bad)


def test_bits_validation():
    with pytest.raises(ValueError, match="12-bit maximum"):
        clahe(np.full((8, 8), 5000, dtype=np.uint16), bits=12)
    with pytest.raises(ValueError, match="bits"):
        clahe(np.zeros((8, 8), dtype=np.uint8), bits=12)


def test_parameter_validation(img8):
    with pytest.raises(ValueError, match="lambdas"):
        farbman(img8, lambdas=(0.5, 0.125))
    with pytest.raises(ValueError, match="preset"):
        farbman(img8, preset="ultra")
    with pytest.raises(ValueError, match="domain"):
        farbman(img8, domain="log")
    with pytest.raises(ValueError, match="nbins"):
        clahe(img8, nbins=1)
    with pytest.raises(ValueError, match="clip_limit"):
        clahe(img8, clip_limit=-1)


def test_registry():
    assert set(BASELINES) == {"clahe", "farbman"}
    assert get("clahe") is clahe and get("farbman") is farbman
    with pytest.raises(ValueError, match="clahe, farbman"):
        get("zssr")
