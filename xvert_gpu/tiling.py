"""Running a fully convolutional network on images of any size.

The GL-U-Net needs H and W divisible by ``2**depth``.  Small images are padded
(reflected, or replicated where they are too small to reflect) and cropped back;
images larger than ``tile`` are cut into overlapping tiles whose outputs are
blended with linear ramps across each overlap, so no seam shows.  BatchNorm runs
on its running statistics in eval mode, so tiles see the same normalisation as
the whole image would.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

Net = Callable[[Tensor, Tensor], Tensor]


def _pad_to(x: Tensor, h: int, w: int) -> Tensor:
    ph, pw = h - x.shape[-2], w - x.shape[-1]
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < x.shape[-2] and pw < x.shape[-1] else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def run_padded(net: Net, xp: Tensor, hfc: Tensor, multiple: int) -> Tensor:
    """``net`` on (N, 1, H, W) inputs padded up to a multiple of ``multiple``, cropped back."""
    h, w = xp.shape[-2:]
    hp, wp = _round_up(h, multiple), _round_up(w, multiple)
    out = net(_pad_to(xp, hp, wp), _pad_to(hfc, hp, wp))
    return out[..., :h, :w]


def _starts(n: int, tile: int, overlap: int) -> list[int]:
    if n <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, n - tile, step)) + [n - tile]
    return sorted(set(starts))


def _ramp(n: int, start: int, size: int, overlap: int, device, dtype) -> Tensor:
    """Blend weight along one axis for a tile at ``start``.

    Across an overlap the weight is 0 over the quarter nearest the tile's edge
    (where zero padding inside the network distorts the output), rises linearly
    over the middle half and is 1 beyond; the two tiles' weights sum to 1.
    """
    w = torch.ones(size, device=device, dtype=dtype)
    if overlap > 0:
        d = torch.arange(overlap, device=device, dtype=dtype) + 0.5
        r = ((d - overlap / 4) / (overlap / 2)).clamp(0, 1)
        if start > 0:
            w[:overlap] = torch.minimum(w[:overlap], r)
        if start + size < n:
            w[-overlap:] = torch.minimum(w[-overlap:], r.flip(0))
    return w


def check_tile(tile: int, overlap: int, multiple: int) -> None:
    """Raise ``ValueError`` unless tiles are whole network multiples wider than both overlaps."""
    if tile % multiple or tile <= 2 * overlap or overlap < 0:
        raise ValueError(f"tile ({tile}) must be a multiple of {multiple} and > 2 * overlap ({overlap}), "
                         "with overlap >= 0")


def run_tiled(net: Net, xp: Tensor, hfc: Tensor, *, multiple: int, tile: int = 1024,
              overlap: int = 64) -> Tensor:
    """``net`` over (N, 1, H, W) inputs of any size, tiled with blended overlaps above ``tile``."""
    check_tile(tile, overlap, multiple)
    h, w = xp.shape[-2:]
    if h <= tile and w <= tile:
        return run_padded(net, xp, hfc, multiple)
    # pad so every tile is whole and aligned (at least one tile in each direction)
    hp, wp = max(_round_up(h, multiple), tile if h > tile else 0), max(_round_up(w, multiple), tile if w > tile else 0)
    xpp, hfp = _pad_to(xp, hp, wp), _pad_to(hfc, hp, wp)
    th, tw = min(tile, hp), min(tile, wp)
    acc = torch.zeros((xp.shape[0], 1, hp, wp), device=xp.device, dtype=torch.float32)
    norm = torch.zeros((1, 1, hp, wp), device=xp.device, dtype=torch.float32)
    for top in _starts(hp, th, overlap):
        wy = _ramp(hp, top, th, overlap, xp.device, torch.float32)
        for left in _starts(wp, tw, overlap):
            wx = _ramp(wp, left, tw, overlap, xp.device, torch.float32)
            weight = wy[:, None] * wx[None, :]
            sl = (..., slice(top, top + th), slice(left, left + tw))
            acc[sl] += net(xpp[sl], hfp[sl]).float() * weight
            norm[sl] += weight
    return (acc / norm)[..., :h, :w]
