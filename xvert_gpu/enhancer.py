"""Spine contrast enhancement with a trained GL-U-Net chain (SPEC sections 5 and 6).

>>> enh = Enhancer.from_pretrained("default")          # doctest: +SKIP
>>> out = enh.enhance(image)                          # same array type, dtype and shape

``enhance`` runs the whole chain: preprocessing (Eqs. 1-6), then each of the T
stage networks with a fresh high-frequency component of its own input (T = 2
means three WLS solves per image), then the robust stretch of SPEC section 6 to
the input's dtype (or to ``bits``).  Images of any size: small ones are padded to
the network's multiple, large ones are tiled with blended overlaps
(:mod:`xvert_gpu.tiling`).  NumPy and CPU tensors run on the CPU unless
``device="cuda"``; CuPy arrays and CUDA tensors stay on the GPU throughout
(zero-copy hand-offs through DLPack).
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch

from . import artefact, backends
from .arrays import _plain, array_module, caller_stream, to_unit_float
from .chain import ChainParams, first_input, next_input
from .stretch import check_bits, integer_bits, quantise, robust_stretch
from .tiling import check_tile, run_tiled
from .wls import move_like, move_to

__all__ = ["Enhancer"]

PRECISIONS = ("auto", "fp32", "bf16")


def _scaled(a: Any, bits: int | None) -> Any:
    """float32 on [0, 1]: integers divided by ``2**bits - 1`` (default: their dtype's range)."""
    if bits is not None:
        check_bits(bits)  # float input ignores it (callers pass a file's bits), but not its type
    x = to_unit_float(a)
    if bits is None or a.dtype.kind == "f":
        return x
    full = np.iinfo(a.dtype).max
    bits = integer_bits(a.dtype, bits)  # checked here, before any work, as quantise will
    top = 2 ** bits - 1
    if int(a.max()) > top:
        raise ValueError(f"image has values up to {int(a.max())}, above the {bits}-bit maximum {top}")
    xp = array_module(x)
    return (x * xp.float32(full / top)).clip(0, 1)


def _on_device(net: Callable, device: torch.device) -> Callable:
    """``net`` in eval mode on ``device``. A module elsewhere or in training mode is copied,
    never changed: ``Module.to`` and ``eval`` work in place, and the caller may go on using
    it on its own device (or training it)."""
    if not isinstance(net, torch.nn.Module):
        return net
    tensors = [*net.parameters(), *net.buffers()]
    # "cuda" (no index) matches a tensor on cuda:0; comparing devices with != would not
    elsewhere = any(t.device.type != device.type
                    or (device.index is not None and t.device.index != device.index)
                    for t in tensors)
    if getattr(net, "training", False) or elsewhere:
        net = copy.deepcopy(net).to(device)
    try:
        net.eval()
    except NotImplementedError:  # exported programs are inference graphs already
        pass
    return net


class Enhancer:
    """A trained enhancement chain, ready to run.

    Parameters
    ----------
    stages : sequence of callables ``(xp, hfc) -> output``
        One network per stage, on (N, 1, H, W) float32 tensors (eager modules,
        TorchScript or exported programs).
    meta : dict
        The artefact's document: ``chain`` (see :class:`~xvert_gpu.chain.ChainParams`)
        and ``model`` (``depth`` gives the multiple of H and W the network needs).
    device : {"auto", "cpu", "cuda"}
    precision : {"auto", "fp32", "bf16"}
        Network arithmetic; "auto" is bf16 autocast on CUDA and fp32 on the CPU.
    tile, overlap : int
        Images larger than ``tile`` on a side are processed in overlapping tiles.
    batch_size : int
        Images per network call.
    profile : bool
        Accumulate the seconds spent in the WLS solves and in the networks in
        :attr:`timings` (synchronising the GPU around each part, which costs a little).
    """

    def __init__(self, stages: Sequence[Callable], meta: dict[str, Any], *, device: str = "auto",
                 precision: str = "auto", tile: int = 1024, overlap: int = 128, batch_size: int = 4,
                 profile: bool = False):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        self.params = ChainParams.from_dict(meta.get("chain", {}))
        if len(stages) < self.params.steps:
            raise ValueError(f"the chain has T = {self.params.steps} stages but {len(stages)} networks")
        self.stages = list(stages)[: self.params.steps]
        self.meta = meta
        self.backend = backends.resolve(device, None)
        self.device = self.backend
        self.torch_device = torch.device("cuda" if self.backend == "cuda" else "cpu")
        self.precision = ("bf16" if self.backend == "cuda" else "fp32") if precision == "auto" else precision
        self.multiple = 2 ** int(meta.get("model", {}).get("depth", 4))
        self.tile, self.overlap, self.batch_size = int(tile), int(overlap), int(batch_size)
        self.profile = bool(profile)
        self.timings = {"preprocess": 0.0, "network": 0.0}
        check_tile(self.tile, self.overlap, self.multiple)
        self.stages = [_on_device(net, self.torch_device) for net in self.stages]

    @classmethod
    def from_pretrained(cls, model: str = "default", device: str = "auto", **kwargs: Any) -> "Enhancer":
        """Load ``"default"`` (the bundled weights) or a ``.pt`` / ``.pt2`` artefact path."""
        backend = backends.resolve(device, None)
        stages, meta = artefact.load(model, "cuda" if backend == "cuda" else "cpu")
        return cls(stages, meta, device=device, **kwargs)

    @property
    def identity(self) -> str:
        """Short digest of the weights and every setting that changes the output (for manifests)."""
        doc = json.dumps({"weights": self.meta.get("sha256"), "chain": self.params.to_dict(),
                          "precision": self.precision, "tile": self.tile, "overlap": self.overlap,
                          "multiple": self.multiple}, sort_keys=True)
        return hashlib.sha256(doc.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        name = self.meta.get("path", "<in memory>")
        return (f"Enhancer({name!s}, T={self.params.steps}, device={self.device!r}, "
                f"precision={self.precision!r})")

    # -- the chain ---------------------------------------------------------------------------

    def _network(self, stage: int, xp: Any, hfc: Any) -> Any:
        """One stage network over a (N, H, W) NumPy/CuPy stack, in batches; same kind out."""
        from .arrays import to_torch

        net = self.stages[stage]
        outs = []
        for start in range(0, xp.shape[0], self.batch_size):
            sl = slice(start, start + self.batch_size)
            a = to_torch(xp[sl]).to(self.torch_device)[:, None]
            b = to_torch(hfc[sl]).to(self.torch_device)[:, None]
            with torch.inference_mode(), torch.autocast(
                    self.torch_device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                y = run_tiled(net, a, b, multiple=self.multiple, tile=self.tile, overlap=self.overlap)
            outs.append(y[:, 0].float())
        y = torch.cat(outs)
        if self.backend == "cuda":
            import cupy
            return cupy.from_dlpack(y.contiguous())
        return y.numpy()

    def _timed(self, part: str, fn: Callable, *args: Any) -> Any:
        if not self.profile:
            return fn(*args)
        self._sync()
        t0 = time.perf_counter()
        out = fn(*args)
        self._sync()
        self.timings[part] += time.perf_counter() - t0
        return out

    def _sync(self) -> None:
        if self.backend == "cuda":
            torch.cuda.synchronize()

    def enhance_unit(self, x: Any) -> Any:
        """The chain on a validated float32 [0, 1] (N, H, W) NumPy/CuPy stack: float32 [0, 1] out."""
        p = self.params
        x = move_to(x, self.backend)
        xp, hfc = self._timed("preprocess", first_input, x, p, self.backend)
        for t in range(p.steps):
            out = self._timed("network", self._network, t, xp, hfc)
            if not bool(array_module(out).isfinite(out).all()):
                raise FloatingPointError(f"stage {t + 1} network produced NaN or Inf")
            if t + 1 < p.steps:
                xp, hfc = self._timed("preprocess", next_input, out, p, self.backend)
        y = robust_stretch(out, p.low, p.high)
        # an image without contrast stays as it was, rather than becoming mid-grey
        xm = array_module(x)
        flat = (x.reshape(x.shape[0], -1).max(axis=1) == x.reshape(x.shape[0], -1).min(axis=1))
        return xm.where(flat[:, None, None], x, y)

    def enhance(self, image: Any, *, bits: int | None = None) -> Any:
        """Enhance an image (H, W) or a stack (N, H, W) of one size.

        Parameters
        ----------
        image : NumPy, CuPy or torch array (or a nested list)
            Integers are read as ``[0, 2**bits - 1]`` (default: their dtype's full
            range, e.g. 0..65535 for uint16); floats must be on [0, 1].
        bits : int, optional
            Stored bit depth of integer input (12 for 12-bit data in uint16); the
            output uses the same range.

        Returns
        -------
        The enhanced image, with the input's array type, device, dtype and shape
        (float input gives float32 on [0, 1]).
        """
        a, back = _plain(image)
        x = _scaled(a, bits)
        stack = x if x.ndim == 3 else x[None]
        with caller_stream(image):
            y = self.enhance_unit(stack)
            y = y if x.ndim == 3 else y[0]
            out = quantise(y, np.dtype(a.dtype), bits if a.dtype.kind in "ui" else None)
            return back(move_like(out, image))
