"""Gradient correlation, L1, entropy selection of c*, L2, and a tiny training run."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from xvert_gpu import losses  # noqa: E402
from xvert_gpu.losses import (feature_entropy, gradient_correlation, l1_loss,  # noqa: E402
                              l2_loss, select_target, total_loss)


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    return torch.rand(3, 1, 32, 40, generator=g, dtype=torch.float64)


def test_gc_self_is_one_and_shape(images):
    gc = gradient_correlation(images, images)
    assert gc.shape == (3,)
    torch.testing.assert_close(gc, torch.ones(3, dtype=gc.dtype), atol=1e-6, rtol=0)


@pytest.mark.parametrize("a, b", [(2.5, 0.3), (0.01, -4.0), (100.0, 7.0)])
def test_gc_invariant_to_positive_affine(images, a, b):
    other = torch.roll(images, 1, dims=-1) + 0.5 * images
    ref = gradient_correlation(images, other)
    torch.testing.assert_close(gradient_correlation(a * images + b, other), ref,
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(gradient_correlation(images, a * other + b), ref,
                               atol=1e-6, rtol=0)
    assert (ref.abs() < 1).all()


def test_gc_negated_is_minus_one(images):
    torch.testing.assert_close(gradient_correlation(images, -images),
                               -torch.ones(3, dtype=images.dtype), atol=1e-6, rtol=0)


def test_gc_matches_numpy_formula(images):
    a = images[0, 0].numpy()
    b = images[1, 0].numpy()

    def ncc(u, v):
        u, v = u - u.mean(), v - v.mean()
        return (u * v).sum() / (np.sqrt((u * u).sum()) * np.sqrt((v * v).sum()))

    expect = 0.5 * (ncc(np.diff(a, axis=1), np.diff(b, axis=1))
                    + ncc(np.diff(a, axis=0), np.diff(b, axis=0)))
    got = gradient_correlation(images[0:1], images[1:2])[0].item()
    assert got == pytest.approx(expect, abs=1e-9)


def test_gc_constant_image_is_finite_with_finite_gradient(images):
    const = torch.full((3, 1, 32, 40), 0.7, dtype=torch.float64, requires_grad=True)
    gc = gradient_correlation(const, images)
    assert torch.isfinite(gc).all()
    gc.sum().backward()
    assert torch.isfinite(const.grad).all()
    assert torch.isfinite(gradient_correlation(const.detach(), const.detach())).all()


def test_l1_loss_and_gradient(images):
    out = (images.flip(-1) + 0.1).requires_grad_(True)
    loss = l1_loss(out, images)
    expect = (1 - gradient_correlation(out, images)).mean()
    assert loss.ndim == 0 and loss.item() == pytest.approx(expect.item())
    assert l1_loss(images, images).item() == pytest.approx(0, abs=1e-6)
    loss.backward()
    assert out.grad is not None and out.grad.abs().sum() > 0


def _features():
    """(N=2, C=4) maps with known entropy order: image 0 -> map 2, image 1 -> map 1."""
    g = torch.Generator().manual_seed(3)
    h = w = 32
    const = torch.zeros(h, w)
    two_level = (torch.arange(w) < w // 2).float().expand(h, w).clone()  # log 2
    ramp = torch.linspace(0, 1, h * w).reshape(h, w)                     # ~ log 64
    noisy_few = torch.randint(0, 4, (h, w), generator=g).float()        # ~ log 4
    f0 = torch.stack([const, two_level, 3 * ramp - 1, noisy_few])
    f1 = torch.stack([noisy_few, 5 * ramp + 2, two_level, const])
    return torch.stack([f0, f1])


def test_feature_entropy_values():
    ent = feature_entropy(_features(), bins=64)
    assert ent.shape == (2, 4)
    assert ent[0, 0].item() == pytest.approx(0.0)
    assert ent[0, 1].item() == pytest.approx(np.log(2), abs=1e-6)
    assert ent[0, 2].item() == pytest.approx(np.log(64), abs=1e-3)
    assert ent[0, 3].item() == pytest.approx(np.log(4), abs=0.05)
    assert feature_entropy(_features(), bins=2)[0, 2].item() == pytest.approx(np.log(2), abs=1e-6)


def test_select_target_is_highest_entropy_map():
    feats = _features()
    target = select_target(feats, bins=64, normalize=False)
    assert target.shape == (2, 1, 32, 32)
    assert torch.equal(target[0, 0], feats[0, 2])
    assert torch.equal(target[1, 0], feats[1, 1])
    norm = select_target(feats, bins=64)
    torch.testing.assert_close(norm[0, 0], torch.linspace(0, 1, 1024).reshape(32, 32))
    assert norm.min() == 0 and norm.max() == 1


def test_l2_detach_controls_gradient_into_features():
    feats = _features().requires_grad_(True)
    out = torch.rand(2, 1, 32, 32, requires_grad=True)
    loss = l2_loss(out, feats)
    loss.backward()
    assert feats.grad is None
    assert out.grad is not None and out.grad.abs().sum() > 0
    target = select_target(feats.detach())
    assert loss.item() == pytest.approx(torch.mean((out - target) ** 2).item(), rel=1e-6)

    feats2 = _features().requires_grad_(True)
    l2_loss(out.detach(), feats2, detach=False).backward()
    assert feats2.grad is not None
    # only the chosen maps get a gradient
    nonzero = feats2.grad.abs().sum(dim=(-2, -1)) > 0
    assert nonzero.tolist() == [[False, False, True, False], [False, True, False, False]]


def test_total_loss_is_sum(images):
    feats = _features().double()
    out = torch.rand(2, 1, 32, 32, dtype=torch.float64)
    hfc = images[:2, :, :32, :32]
    assert total_loss(out, hfc, feats).item() == pytest.approx(
        (l1_loss(out, hfc) + l2_loss(out, feats)).item())
    assert losses.EPS > 0


def test_tiny_training_lowers_l1():
    from xvert_gpu.model import GLUNet
    from xvert_gpu.preprocess import preprocess
    from xvert_gpu.samples import load_sample

    crop = load_sample("00000001_000.png")[200:264, 220:284]
    pre = preprocess(crop, device="cpu")
    xp = torch.from_numpy(np.asarray(pre.xp, dtype=np.float32))[None, None]
    hfc = torch.from_numpy(np.asarray(pre.hfc, dtype=np.float32))[None, None]
    torch.manual_seed(0)
    model = GLUNet(base_channels=8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    history = []
    for _ in range(10):
        opt.zero_grad()
        out, feats = model(xp, hfc, return_features=True)
        loss = l1_loss(out, hfc)
        loss.backward()
        opt.step()
        history.append(loss.item())
    with torch.no_grad():
        final = l1_loss(model(xp, hfc), hfc).item()
    assert np.isfinite(history).all()
    assert final < history[0] - 0.1, (history, final)
    # the joint loss is finite and differentiable on the same model
    out, feats = model(xp, hfc, return_features=True)
    assert torch.isfinite(total_loss(out, hfc, feats))
