"""The iterative chain of SPEC section 5, shared by training and inference.

Stage 1 takes ``(Xp, Y)`` from :func:`xvert_gpu.preprocess`.  Stage ``t + 1``
takes the output of stage ``t``: ``Xp^{t+1} = phi_t(Xp^t, Y^t)`` and
``Y^{t+1} = Xp^{t+1} - WLS(Xp^{t+1})``.  The network output has no fixed range
and may be negative, while the WLS weights are computed on ``log(Xp + delta)``;
so ``Xp^{t+1}`` is the output mapped to [0, 1] by the robust stretch of SPEC
section 6 (the same map that makes the final image), which keeps the logarithm
defined and every stage's input on one scale.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .preprocess import preprocess
from .stretch import HIGH, LOW, robust_stretch
from .wls import _check_params, smooth_array


@dataclass(frozen=True)
class ChainParams:
    """Settings of the enhancement chain (stored in every model artefact)."""

    steps: int = 2
    lam: float = 1.0
    alpha: float = 1.2
    eps: float = 1e-4
    delta: float = 1e-4
    e_floor: float = 1e-3
    tol: float = 1e-5
    low: float = LOW
    high: float = HIGH

    def __post_init__(self):
        if int(self.steps) < 1:
            raise ValueError(f"steps (T) must be >= 1; got {self.steps}")
        # refused here, not on every image of a batch
        _check_params(self.lam, self.alpha, self.eps, self.delta, self.tol)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ChainParams":
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})


def first_input(x: Any, p: ChainParams, device: str = "auto") -> tuple[Any, Any]:
    """(Xp^1, Y^1) of a float32 [0, 1] (N, H, W) NumPy/CuPy stack (Eqs. 1-6)."""
    pre = preprocess(x, lam=p.lam, alpha=p.alpha, eps=p.eps, delta=p.delta,
                     e_floor=p.e_floor, tol=p.tol, device=device)
    return pre.xp, pre.hfc


def next_input(out: Any, p: ChainParams, backend: str) -> tuple[Any, Any]:
    """(Xp^{t+1}, Y^{t+1}) from a stage's raw (N, H, W) output, on the backend's device."""
    xp = robust_stretch(out, p.low, p.high)
    smooth, _ = smooth_array(xp, p.lam, p.alpha, p.eps, p.delta, p.tol, None, backend)
    return xp, xp - smooth
