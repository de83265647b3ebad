"""Public API: input validation, scaling, array kinds, devices."""

import numpy as np
import pytest

import xvert_gpu
from xvert_gpu.samples import load_sample


@pytest.mark.parametrize("func", [xvert_gpu.wls_smooth, xvert_gpu.preprocess, xvert_gpu.wls_weights])
@pytest.mark.parametrize("bad, match", [
    (np.zeros(10, np.float32), "2-D"),
    (np.zeros((2, 3, 4, 5), np.float32), "2-D"),
    (np.zeros((0, 5), np.float32), "empty"),
    (np.zeros((3, 0, 5), np.float32), "empty"),
    (np.full((4, 4), np.nan, np.float32), "NaN"),
    (np.array([[0.1, np.inf], [0.2, 0.3]]), "NaN or Inf"),
    (np.array([[0.1, -0.2], [0.2, 0.3]]), "negative"),
    (np.array([[0.1, 1.5], [0.2, 0.3]]), r"\[0, 1\]"),
    (np.array([[1, -3], [2, 4]], np.int16), "negative"),
    (np.zeros((64, 64, 3), np.uint8), "colour"),
    (np.zeros((64, 48, 1), np.uint8), r"channels-last \(H, W, 1\)"),
    (np.zeros((64, 48, 2), np.float32), "channels-last"),
    (np.zeros((4, 4), bool), "dtype"),
    (np.zeros((4, 4), np.complex64), "dtype"),
])
def test_bad_input_raises_value_error(func, bad, match):
    with pytest.raises(ValueError, match=match):
        func(bad)


@pytest.mark.parametrize("kw, match", [
    ({"lam": -1}, "lam"), ({"alpha": 0}, "alpha"), ({"eps": 0}, "eps"), ({"tol": 0}, "tol"),
    ({"lam": float("nan")}, "lam"), ({"device": "tpu"}, "device"),
    ({"tol": 1.0}, r"tol .*\(0, 1\)"), ({"tol": 5}, "tol"),
    ({"maxiter": 0}, "maxiter"), ({"maxiter": -1}, "maxiter"), ({"maxiter": 2.5}, "maxiter"),
    ({"maxiter": True}, "maxiter"), ({"lam": "1"}, "lam must be a real number"),
    ({"lam": None}, "lam must be a real number"), ({"alpha": 1j}, "alpha"),
    ({"delta": np.ones(2)}, "delta"),
    ({"lam": 1e35}, r"lam / eps .* overflows"), ({"lam": 1.0, "eps": 1e-40}, r"lam / eps"),
])
@pytest.mark.parametrize("func", [xvert_gpu.wls_smooth, xvert_gpu.preprocess])
def test_bad_parameters(func, kw, match):
    with pytest.raises(ValueError, match=match):
        func(np.zeros((8, 8), np.float32), **kw)


@pytest.mark.parametrize("kw", [{"lam": 1e35}, {"eps": 1e-40}])
def test_weights_that_overflow_float32_are_refused(kw):
    """lam / eps beyond float32's range gave inf weights (and NaN solves) with only NumPy's
    overflow warning."""
    with pytest.raises(ValueError, match=r"lam / eps .* overflows the float32 weights"):
        xvert_gpu.wls_weights(np.zeros((8, 8), np.float32), **kw)
    wx, wy = xvert_gpu.wls_weights(np.zeros((8, 8), np.float32), lam=3e34)
    assert np.isfinite(wx).all() and np.isfinite(wy).all()


@pytest.mark.parametrize("e_floor", [0, -1e-3, "0.001", None, float("nan"), float("inf")])
def test_bad_e_floor(e_floor):
    with pytest.raises(ValueError, match="e_floor"):
        xvert_gpu.preprocess(np.zeros((8, 8), np.float32), e_floor=e_floor)


def test_numpy_scalars_are_accepted():
    x = load_sample()[:32, :32]
    g = xvert_gpu.wls_smooth(x, lam=np.float32(1.0), tol=np.float64(1e-6), maxiter=np.int64(100))
    np.testing.assert_allclose(g, xvert_gpu.wls_smooth(x, tol=1e-6), atol=1e-6)


def test_integer_scaling_by_dtype_range():
    a8 = load_sample()[:64, :64]
    a16 = a8.astype(np.uint16) * 257
    g8 = xvert_gpu.wls_smooth(a8, tol=1e-7)
    g16 = xvert_gpu.wls_smooth(a16, tol=1e-7)
    gf = xvert_gpu.wls_smooth(a8.astype(np.float32) / 255, tol=1e-7)
    np.testing.assert_allclose(g8, gf, atol=1e-6)
    np.testing.assert_allclose(g16, gf, atol=1e-5)
    p = xvert_gpu.preprocess(a16)
    np.testing.assert_allclose(p.x, a16 / 65535.0, atol=1e-7)


def test_input_is_not_modified():
    a = load_sample()[:50, :60].astype(np.float32) / 255
    before = a.copy()
    xvert_gpu.preprocess(a)
    xvert_gpu.wls_smooth(a)
    np.testing.assert_array_equal(a, before)


def test_non_contiguous_and_float64_input():
    a = load_sample()[:120, :90]
    view = (a.astype(np.float64) / 255)[::2, ::-1]
    g = xvert_gpu.wls_smooth(view)
    ref = xvert_gpu.wls_smooth(np.ascontiguousarray(view).astype(np.float32))
    assert g.dtype == np.float32
    np.testing.assert_array_equal(g, ref)


def test_cuda_request_without_gpu_is_a_clear_error():
    if xvert_gpu.backends.cuda_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(RuntimeError, match="CUDA"):
        xvert_gpu.wls_smooth(np.zeros((8, 8), np.float32), device="cuda")


def test_importing_does_not_import_cupy():
    import subprocess
    import sys
    # on a GPU machine device="auto" imports CuPy to solve there; device="cpu" never does
    code = ("import sys, xvert_gpu; xvert_gpu.wls_smooth(__import__('numpy').zeros((4,4)), "
            "device='cpu'); print('cupy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_torch_cpu_tensor_round_trip():
    torch = pytest.importorskip("torch")
    a = torch.from_numpy(load_sample()[:64, :80].copy())
    g = xvert_gpu.wls_smooth(a)
    assert isinstance(g, torch.Tensor) and g.dtype == torch.float32 and tuple(g.shape) == (64, 80)
    np.testing.assert_array_equal(g.numpy(), xvert_gpu.wls_smooth(a.numpy()))
    p = xvert_gpu.preprocess(a)
    assert isinstance(p.hfc, torch.Tensor)
    shared = xvert_gpu.to_torch(g.numpy())
    assert shared.data_ptr() == g.numpy().ctypes.data


def test_enhancer_is_exported_lazily():
    import subprocess
    import sys
    code = ("import sys, xvert_gpu; before = 'torch' in sys.modules; "
            "from xvert_gpu.enhancer import Enhancer; "
            "print(before, xvert_gpu.Enhancer is Enhancer, 'Enhancer' in xvert_gpu.__all__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "True"]
    with pytest.raises(AttributeError, match="no attribute 'Enhancerr'"):
        xvert_gpu.Enhancerr


def test_float_above_one_message_has_the_digits():
    with pytest.raises(ValueError, match="1.0000001"):
        xvert_gpu.wls_smooth(np.array([[0.5, 1.0000001]], np.float64))


def test_preprocess_does_not_alias_the_input():
    a = load_sample()[:40, :40].astype(np.float32) / 255
    before = a.copy()
    p = xvert_gpu.preprocess(a)
    assert not np.shares_memory(p.x, a)
    p.x[...] = 0.0
    np.testing.assert_array_equal(a, before)


def test_torch_half_precision_tensors():
    torch = pytest.importorskip("torch")
    a = load_sample()[:40, :40].astype(np.float32) / 255
    for dtype in (torch.bfloat16, torch.float16):
        t = torch.from_numpy(a).to(dtype)
        g = xvert_gpu.wls_smooth(t)
        assert isinstance(g, torch.Tensor) and g.shape == t.shape
        want = xvert_gpu.wls_smooth(t.float().numpy())
        np.testing.assert_allclose(g.numpy(), want, atol=1e-6)


@pytest.mark.parametrize("func", [xvert_gpu.wls_smooth, xvert_gpu.preprocess, xvert_gpu.wls_weights])
def test_masked_array_with_masked_pixels_is_refused(func):
    # the min/max checks skip masked pixels, while the solver would smooth their hidden values
    a = load_sample()[:24, :24].astype(np.float32) / 255
    m = np.ma.masked_array(a.copy(), mask=a > 0.5)
    m.data[m.mask] = 5.0
    with pytest.raises(ValueError, match="masked"):
        func(m)


def test_masked_array_without_masked_pixels_is_its_data():
    a = load_sample()[:24, :24].astype(np.float32) / 255
    g = xvert_gpu.wls_smooth(np.ma.masked_array(a, mask=False))
    assert type(g) is np.ndarray
    np.testing.assert_array_equal(g, xvert_gpu.wls_smooth(a))
    wx, _ = xvert_gpu.wls_weights(np.ma.masked_array(a))
    assert type(wx) is np.ndarray


@pytest.mark.parametrize("func", [xvert_gpu.wls_weights, xvert_gpu.wls_smooth, xvert_gpu.preprocess])
@pytest.mark.parametrize("kind", ["Fraction", "Decimal", "0-d array", "torch 0-d"])
def test_real_parameters_of_any_type_match_floats(func, kind):
    # the checks accept anything float() takes; the arithmetic after them must too
    from decimal import Decimal
    from fractions import Fraction
    convert = {"Fraction": Fraction, "Decimal": lambda v: Decimal(str(v)), "0-d array": np.array,
               "torch 0-d": lambda v: pytest.importorskip("torch").tensor(v)}[kind]
    a = load_sample()[:16, :20]
    kw = {"lam": 2.0, "alpha": 1.5, "eps": 1e-3, "delta": 1e-3}
    want = func(a, **kw)
    got = func(a, **{k: convert(v) for k, v in kw.items()})
    for w, g in zip(want if isinstance(want, tuple) else [want.xp if hasattr(want, "xp") else want],
                    got if isinstance(got, tuple) else [got.xp if hasattr(got, "xp") else got]):
        np.testing.assert_allclose(g, w, rtol=1e-5)  # torch.tensor(1e-3) is float32


def test_torch_lazy_negated_view_is_read_as_its_values():
    # z.conj().imag is a real tensor whose negation is only a flag (the "neg bit"); .numpy()
    # refuses such a tensor when it is contiguous, as a 1x1 one is
    torch = pytest.importorskip("torch")
    a = torch.full((1, 1), 0.25)
    view = torch.complex(torch.zeros_like(a), -a).conj().imag
    assert view.is_neg() and view.is_contiguous() and torch.equal(view, a)
    for func in (xvert_gpu.wls_smooth, xvert_gpu.wls_weights, xvert_gpu.preprocess):
        assert func(view) is not None
    assert xvert_gpu.wls_smooth(view).item() == 0.25


@pytest.mark.parametrize("kind, match", [("sparse", "sparse"), ("meta", "meta"),
                                         ("conj", "dtype complex64")])
def test_torch_tensors_without_plain_data_raise_value_error(kind, match):
    torch = pytest.importorskip("torch")
    a = torch.rand(12, 10)
    bad = {"sparse": lambda: a.to_sparse(), "meta": lambda: a.to("meta"),
           "conj": lambda: torch.complex(a, a).conj()}[kind]()
    for func in (xvert_gpu.wls_smooth, xvert_gpu.preprocess, xvert_gpu.wls_weights):
        with pytest.raises(ValueError, match=match):
            func(bad)


def test_a_float_just_above_one_is_named_exactly():
    """The message read 'its maximum is 1' for a value one ulp above 1."""
    x = np.full((4, 4), np.nextafter(1.0, 2.0))
    with pytest.raises(ValueError, match=r"its maximum is 1\.0000000000000002"):
        xvert_gpu.wls_smooth(x)
