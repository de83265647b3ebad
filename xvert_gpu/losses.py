"""Losses of SPEC section 4: gradient correlation (L1) and the entropy-selected feature loss (L2).

* ``GC(A, B) = (NCC(dA/dx, dB/dx) + NCC(dA/dy, dB/dy)) / 2`` per image, with forward
  differences and the standard normalised cross-correlation
  ``NCC(A, B) = sum((A - mean A)(B - mean B)) / (sqrt(sum (A - mean A)^2) sqrt(sum (B - mean B)^2))``
  (the paper's Eq. 9 squares the numerator: a typo).
* ``L1 = mean_n (1 - GC(output_n, Y_n))``.
* ``L2 = MSE(output, c*)`` with ``c*`` the last-level feature map of highest
  histogram entropy, per image; the target is that map min-max normalised to
  [0, 1] (the normalisation its entropy is measured on), so the output stays on
  the scale of an image.  ``c*`` is detached unless ``detach=False``.
* ``L = L1 + L2``.

All reductions run in at least float32, so the losses are safe under autocast.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["gradient_correlation", "l1_loss", "feature_entropy", "select_target",
           "l2_loss", "total_loss"]

EPS = 1e-10


def _as_float(x: Tensor) -> Tensor:
    if x.dtype in (torch.float32, torch.float64):
        return x
    return x.float()


def _ncc(a: Tensor, b: Tensor, eps: float) -> Tensor:
    """NCC per row of two (N, M) tensors; zero variance gives a finite value (0)."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    num = (a * b).sum(dim=1)
    den = torch.sqrt((a * a).sum(dim=1) + eps) * torch.sqrt((b * b).sum(dim=1) + eps)
    return num / den


def gradient_correlation(a: Tensor, b: Tensor, eps: float = EPS) -> Tensor:
    """Gradient correlation per image, shape (N,), on [-1, 1].

    Parameters
    ----------
    a, b : Tensor (N, C, H, W) or (N, H, W), same shape
        Images; differences are taken along the last two axes (forward
        differences, x = columns, y = rows), and each image's channels are pooled.
    eps : float
        Added to each sum of squares, so a constant image gives GC = 0 (finite,
        with finite gradients) instead of 0/0.
    """
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.dim() < 3 or a.shape[-1] < 2 or a.shape[-2] < 2:
        raise ValueError(f"expected (N, [C,] H, W) with H, W >= 2, got {tuple(a.shape)}")
    a = _as_float(a)
    b = _as_float(b)
    n = a.shape[0]
    ax = (a[..., :, 1:] - a[..., :, :-1]).reshape(n, -1)
    bx = (b[..., :, 1:] - b[..., :, :-1]).reshape(n, -1)
    ay = (a[..., 1:, :] - a[..., :-1, :]).reshape(n, -1)
    by = (b[..., 1:, :] - b[..., :-1, :]).reshape(n, -1)
    return 0.5 * (_ncc(ax, bx, eps) + _ncc(ay, by, eps))


def l1_loss(output: Tensor, hfc: Tensor) -> Tensor:
    """L1 = mean over the batch of 1 - GC(output, Y) (a scalar)."""
    return (1.0 - gradient_correlation(output, hfc)).mean()


def _minmax(features: Tensor) -> Tensor:
    """Each (n, c) map scaled to [0, 1]; a constant map becomes 0."""
    lo = features.amin(dim=(-2, -1), keepdim=True)
    hi = features.amax(dim=(-2, -1), keepdim=True)
    span = hi - lo
    return (features - lo) / torch.where(span > 0, span, torch.ones_like(span))


def feature_entropy(features: Tensor, bins: int = 64) -> Tensor:
    """Histogram entropy ``-sum p log p`` (nats) of every map, shape (N, C).

    Each map is min-max scaled to [0, 1] and histogrammed into ``bins`` equal
    bins (the maximum falls in the last bin).  No gradient (histograms are not
    differentiable).  A constant map has entropy 0; the maximum is ``log(bins)``.
    """
    if features.dim() != 4:
        raise ValueError(f"features must be (N, C, H, W), got {tuple(features.shape)}")
    if int(bins) < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    bins = int(bins)
    n, c, h, w = features.shape
    out = torch.empty((n, c), dtype=torch.float32, device=features.device)
    offsets = torch.arange(c, device=features.device).view(c, 1) * bins
    with torch.no_grad():
        for i in range(n):  # one image at a time bounds the index tensor's memory
            v = _minmax(_as_float(features[i].detach())).reshape(c, h * w)
            idx = torch.clamp((v * bins).long(), 0, bins - 1) + offsets
            counts = torch.bincount(idx.reshape(-1), minlength=c * bins).view(c, bins)
            p = counts.to(torch.float32) / float(h * w)
            plogp = torch.where(p > 0, p * torch.log(torch.where(p > 0, p, torch.ones_like(p))),
                                torch.zeros_like(p))
            out[i] = -plogp.sum(dim=1)
    return out


def select_target(features: Tensor, bins: int = 64, detach: bool = True,
                  normalize: bool = True) -> Tensor:
    """c* per image, shape (N, 1, H, W): the map of highest entropy.

    Parameters
    ----------
    detach : bool
        True (default): no gradient flows into the features through the target.
        The selection itself (an argmax) never carries a gradient.
    normalize : bool
        True (default): return the chosen map min-max scaled to [0, 1]; False: raw.
    """
    index = feature_entropy(features, bins).argmax(dim=1)  # (N,)
    n = features.shape[0]
    target = features[torch.arange(n, device=features.device), index].unsqueeze(1)
    if normalize:
        target = _minmax(target)
    if detach:
        target = target.detach()
    return target


def l2_loss(output: Tensor, features: Tensor, bins: int = 64, detach: bool = True,
            normalize: bool = True) -> Tensor:
    """L2 = MSE(output, c*) (a scalar); see :func:`select_target`."""
    target = select_target(features, bins, detach=detach, normalize=normalize)
    if output.shape != target.shape:
        raise ValueError(f"output {tuple(output.shape)} does not match c* {tuple(target.shape)}")
    out = _as_float(output)
    return torch.mean((out - target.to(out.dtype)) ** 2)


def total_loss(output: Tensor, hfc: Tensor, features: Tensor, bins: int = 64,
               detach: bool = True, normalize: bool = True) -> Tensor:
    """L = L1 + L2."""
    return l1_loss(output, hfc) + l2_loss(output, features, bins, detach=detach,
                                          normalize=normalize)
