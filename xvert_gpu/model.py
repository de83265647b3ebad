"""GL-U-Net (SPEC section 3): a U-Net on Xp guided by the high-frequency component Y.

Layout for ``GLUNet(base_channels=C, depth=D)`` with ``ch(k) = C * 2**k``:

* Encoder: a double convolution (3x3 conv -> BatchNorm -> ReLU, twice) at full
  resolution with ``ch(0)`` maps, then ``D`` down-samplings (2x2 max-pool ->
  double convolution) to ``ch(1) ... ch(D)``; the output of every level above the
  bottleneck is kept as a skip connection.
* Guidance layers (GL), fed by Y: a 3x3 stem convolution to ``ch(0)`` maps, then
  one GL block per decoder resolution.  A GL block is LeakyReLU -> 3x3 conv ->
  2x2 max-pool; the block at full resolution has no pooling (it must stay at full
  resolution), the block for level ``k >= 1`` pools once, so the GL branch gives
  ``ch(k)`` maps at every decoder resolution ``H / 2**k`` (k = 0 ... D-1).
* Decoder, from the bottleneck up: 2x2 transposed convolution to ``ch(k)`` maps,
  concatenation with the encoder skip, double convolution to ``ch(k)`` maps, then
  concatenation with the GL maps of that resolution.  The last level therefore
  holds ``ch(0) + ch(0)`` maps (64 + 64 = 128 with the defaults), which a 1x1
  convolution maps to the single-channel output.  With ``guidance=False`` the GL
  branch is absent and the last level holds ``ch(0)`` maps.

The module is scriptable with :func:`torch.jit.script` and exportable with
:func:`torch.export.export` (static shapes).
"""

from __future__ import annotations

from typing import List, Tuple, Union

import torch
from torch import Tensor, nn

__all__ = ["GLUNet", "GLBlock", "DoubleConv"]


class DoubleConv(nn.Module):
    """(3x3 conv -> BatchNorm -> ReLU) x 2."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class Down(nn.Module):
    """2x2 max-pool -> double convolution."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.pool(x))


class GLBlock(nn.Module):
    """Guidance-layer block: LeakyReLU -> 3x3 conv -> 2x2 max-pool (``pool=False``: no pooling)."""

    def __init__(self, in_channels: int, out_channels: int, pool: bool = True,
                 negative_slope: float = 0.2):
        super().__init__()
        self.act = nn.LeakyReLU(negative_slope)
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.conv(self.act(x)))


class Up(nn.Module):
    """2x2 transposed conv -> concat skip -> double convolution."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        self.conv = DoubleConv(2 * out_channels, out_channels)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.conv(torch.cat([self.up(x), skip], dim=1))


class GLUNet(nn.Module):
    """U-Net on Xp with guidance layers on the HFC Y (SPEC section 3).

    Parameters
    ----------
    base_channels : int
        Maps at the first level (64 in the paper); doubled per level.
    depth : int
        Number of down-samplings (4 in the paper); inputs must have H and W
        divisible by ``2 ** depth``.
    guidance : bool
        With False, the GL branch is absent (the paper's ablation).

    ``forward(xp, hfc, return_features=False)`` takes two (N, 1, H, W) tensors and
    returns the (N, 1, H, W) output, or ``(output, features)`` with the last
    decoder level's maps ``features`` of shape (N, F, H, W), ``F = 2 * base_channels``
    with guidance and ``base_channels`` without (:attr:`feature_channels`).
    ``hfc`` is ignored when ``guidance=False`` (it is still validated).
    """

    def __init__(self, base_channels: int = 64, depth: int = 4, guidance: bool = True):
        super().__init__()
        if int(base_channels) < 1:
            raise ValueError(f"base_channels must be >= 1, got {base_channels}")
        if int(depth) < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        base_channels = int(base_channels)
        depth = int(depth)
        self.base_channels = base_channels
        self.depth = depth
        self.guidance = bool(guidance)
        self.multiple = 2 ** depth
        ch = [base_channels * 2 ** k for k in range(depth + 1)]

        self.inc = DoubleConv(1, ch[0])
        self.down = nn.ModuleList([Down(ch[k - 1], ch[k]) for k in range(1, depth + 1)])

        # GL maps per decoder resolution k = 0 .. depth-1 (none when guidance is off).
        gl_ch = [ch[k] if self.guidance else 0 for k in range(depth)]
        if self.guidance:
            self.gl_stem = nn.Conv2d(1, ch[0], 3, padding=1)
            blocks = [GLBlock(ch[0], gl_ch[0], pool=False)]
            blocks += [GLBlock(gl_ch[k - 1], gl_ch[k], pool=True) for k in range(1, depth)]
            self.gl = nn.ModuleList(blocks)
        else:
            self.gl_stem = nn.Identity()
            self.gl = nn.ModuleList()

        # Decoder from the deepest level (depth-1) up to full resolution (0).
        ups = []
        below = ch[depth]
        for k in range(depth - 1, -1, -1):
            ups.append(Up(below, ch[k]))
            below = ch[k] + gl_ch[k]
        self.up = nn.ModuleList(ups)
        self.feature_channels = below
        self.out = nn.Conv2d(below, 1, 1)

    def _check(self, xp: Tensor, hfc: Tensor) -> None:
        if xp.dim() != 4 or xp.shape[1] != 1:
            raise ValueError("xp must have shape (N, 1, H, W), got " + str(list(xp.shape)))
        if hfc.shape != xp.shape:
            raise ValueError("hfc must have the shape of xp " + str(list(xp.shape))
                             + ", got " + str(list(hfc.shape)))
        h = xp.shape[2]
        w = xp.shape[3]
        if h == 0 or w == 0 or h % self.multiple != 0 or w % self.multiple != 0:
            raise ValueError("H and W must be positive multiples of 2**depth = "
                             + str(self.multiple) + ", got H=" + str(h) + ", W=" + str(w)
                             + "; pad or crop the input")

    def _guides(self, hfc: Tensor) -> List[Tensor]:
        guides: List[Tensor] = []
        g = self.gl_stem(hfc)
        for block in self.gl:
            g = block(g)
            guides.append(g)
        return guides

    @torch.jit.export
    def forward_with_features(self, xp: Tensor, hfc: Tensor) -> Tuple[Tensor, Tensor]:
        """(output (N, 1, H, W), last-level features (N, F, H, W))."""
        self._check(xp, hfc)
        x = self.inc(xp)
        skips: List[Tensor] = []
        for down in self.down:
            skips.append(x)
            x = down(x)
        guides: List[Tensor] = []
        if self.guidance:
            guides = self._guides(hfc)
        level = self.depth - 1
        for up in self.up:
            x = up(x, skips[level])
            if self.guidance:
                x = torch.cat([x, guides[level]], dim=1)
            level -= 1
        return self.out(x), x

    def forward(self, xp: Tensor, hfc: Tensor,
                return_features: bool = False) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        out, features = self.forward_with_features(xp, hfc)
        if return_features:
            return out, features
        return out
