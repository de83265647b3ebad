"""GLUNet: shapes, channel counts, validation, TorchScript and torch.export round trips."""

import pytest

torch = pytest.importorskip("torch")

from xvert_gpu.model import GLUNet  # noqa: E402

# TorchScript is deprecated upstream but is still the required artefact format.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 1, 64, 64, generator=g), torch.randn(2, 1, 64, 64, generator=g)


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return GLUNet(base_channels=8).eval()


@pytest.mark.parametrize("guidance, channels", [(True, 16), (False, 8)])
def test_shapes_and_channels(guidance, channels, inputs):
    torch.manual_seed(0)
    model = GLUNet(base_channels=8, guidance=guidance).eval()
    xp, hfc = inputs
    with torch.no_grad():
        out = model(xp, hfc)
        out2, feats = model(xp, hfc, return_features=True)
    assert out.shape == (2, 1, 64, 64)
    assert feats.shape == (2, channels, 64, 64)
    assert model.feature_channels == channels
    assert torch.equal(out, out2)
    assert torch.isfinite(out).all()
    assert hasattr(model, "gl") and (len(model.gl) > 0) == guidance


def test_guidance_uses_hfc_and_ablation_ignores_it(small, inputs):
    xp, hfc = inputs
    torch.manual_seed(0)
    plain = GLUNet(base_channels=8, guidance=False).eval()
    with torch.no_grad():
        assert not torch.allclose(small(xp, hfc), small(xp, torch.zeros_like(hfc)))
        assert torch.equal(plain(xp, hfc), plain(xp, torch.zeros_like(hfc)))


def test_default_config_has_128_last_level_maps():
    model = GLUNet().eval()
    assert model.feature_channels == 128
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        out, feats = model(x, x, return_features=True)
    assert out.shape == (1, 1, 32, 32)
    assert feats.shape == (1, 128, 32, 32)
    assert GLUNet(guidance=False).feature_channels == 64


@pytest.mark.parametrize("shape", [(1, 1, 60, 64), (1, 1, 64, 40), (1, 2, 64, 64), (1, 64, 64)])
def test_invalid_sizes_raise(small, shape):
    x = torch.zeros(shape)
    with pytest.raises(ValueError, match="must"):
        small(x, x)


def test_mismatched_hfc_raises(small):
    with pytest.raises(ValueError, match="hfc"):
        small(torch.zeros(1, 1, 64, 64), torch.zeros(1, 1, 32, 32))


@pytest.mark.parametrize("kwargs", [dict(base_channels=0), dict(depth=0)])
def test_invalid_config_raises(kwargs):
    with pytest.raises(ValueError):
        GLUNet(**kwargs)


def test_torchscript_round_trip(small, inputs, tmp_path):
    xp, hfc = inputs
    path = tmp_path / "glunet.pt"
    torch.jit.save(torch.jit.script(small), str(path))
    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        ref, ref_f = small(xp, hfc, return_features=True)
        out = loaded(xp, hfc)
        out_f = loaded.forward_with_features(xp, hfc)[1]
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(out_f, ref_f, atol=1e-5, rtol=0)
    with pytest.raises(Exception, match="multiples"):
        loaded(torch.zeros(1, 1, 60, 64), torch.zeros(1, 1, 60, 64))


def test_torchscript_without_guidance(inputs):
    torch.manual_seed(0)
    model = GLUNet(base_channels=8, guidance=False).eval()
    scripted = torch.jit.script(model)
    xp, hfc = inputs
    with torch.no_grad():
        torch.testing.assert_close(scripted(xp, hfc), model(xp, hfc), atol=1e-5, rtol=0)
        assert scripted(xp, hfc, True)[1].shape == (2, 8, 64, 64)


def test_torch_export_round_trip(small, inputs, tmp_path):
    export = getattr(torch, "export", None)
    if export is None or not hasattr(export, "export") or not hasattr(export, "save"):
        pytest.skip("torch.export not available")
    xp, hfc = inputs
    ep = torch.export.export(small, (xp, hfc))
    path = tmp_path / "glunet.pt2"
    torch.export.save(ep, str(path))
    loaded = torch.export.load(str(path)).module()
    with torch.no_grad():
        torch.testing.assert_close(loaded(xp, hfc), small(xp, hfc), atol=1e-5, rtol=0)
