"""One dispatch point for NumPy, CuPy and PyTorch inputs (convert in, convert back).

``to_working(image)`` validates an image or stack, scales it to float32 on
[0, 1] and returns it as a NumPy array (CPU data) or a CuPy array (GPU data),
with a ``restore`` function that gives results back as the caller's kind:
NumPy in gives NumPy out, a torch tensor gives a torch tensor on the same
device, CuPy gives CuPy. GPU data never makes a host round trip.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Callable

import numpy as np


def _is_torch(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _is_cupy(x: Any) -> bool:
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(x, cupy.ndarray)


def array_module(x: Any):
    """NumPy or CuPy, whichever holds ``x`` (CuPy's ``get_array_module`` without importing it)."""
    if _is_cupy(x):
        import cupy
        return cupy
    return np


def to_cupy(x: Any):
    """A CuPy view of a CUDA torch tensor or CuPy array (zero-copy through DLPack)."""
    import cupy
    if _is_cupy(x):
        return x
    if _is_torch(x):
        if not x.is_cuda:
            raise ValueError("to_cupy needs a CUDA tensor; this one is on the CPU")
        return cupy.from_dlpack(x.detach().contiguous())
    return cupy.asarray(x)


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy array of a NumPy, CuPy or torch array (a host copy only for device data)."""
    if _is_cupy(x):
        return x.get()
    if _is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def to_torch(x: Any):
    """A torch tensor sharing the memory of a NumPy or CuPy array (zero-copy)."""
    import torch
    if _is_torch(x):
        return x
    if _is_cupy(x):
        return torch.from_dlpack(x)
    return torch.from_numpy(np.ascontiguousarray(x))


def base_ndarray(a: np.ndarray, name: str = "image") -> np.ndarray:
    """A NumPy array or subclass as a plain ``ndarray`` view of the same data (no copy).

    Subclasses change what the operators mean (``np.matrix`` makes ``*`` a matrix product) and
    a masked array's reductions skip its masked pixels, which every later step would use as
    data, so masked pixels are refused and the mask of a fully valid array is dropped.

    Raises
    ------
    ValueError
        If ``a`` is a masked array with masked pixels.
    """
    if isinstance(a, np.ma.MaskedArray):
        masked = int(np.ma.getmaskarray(a).sum())
        if masked:
            raise ValueError(f"{name} is a masked array with {masked} masked pixels; fill them "
                             f"first ({name}.filled(value)), the pixels under a mask are not data")
        a = np.ma.getdata(a)
    return a if type(a) is np.ndarray else a.view(np.ndarray)


def _torch_data(t: Any) -> Any:
    """A detached dense tensor holding ``t``'s values, ready for ``.numpy()`` or DLPack.

    Lazy conjugation and negation (``z.conj()``, ``z.conj().imag``) are only flags on a view,
    which ``.numpy()`` and DLPack refuse, so they are applied; sparse and meta tensors have no
    such data and raise ValueError.
    """
    import torch

    if t.layout != torch.strided:
        raise ValueError(f"image is a sparse tensor ({t.layout}); pass image.to_dense()")
    if t.is_meta:
        raise ValueError("image is a tensor on the meta device, which holds no data")
    return t.detach().resolve_conj().resolve_neg()


def _plain(x: Any) -> tuple[Any, Callable[[Any], Any]]:
    """Strip the torch wrapper: (numpy or cupy array, function that wraps results back)."""
    if _is_torch(x):
        t = _torch_data(x)
        if t.dtype.is_floating_point and t.dtype.itemsize < 4:
            t = t.float()  # bfloat16 has no NumPy / DLPack-to-CuPy counterpart
        if t.is_cuda:
            return to_cupy(t), to_torch
        return t.contiguous().numpy(), to_torch
    if _is_cupy(x):
        return x, lambda y: y
    if isinstance(x, np.ndarray):
        return base_ndarray(x), lambda y: y
    if hasattr(x, "__array__") or isinstance(x, (list, tuple)):
        return np.asarray(x), lambda y: y
    raise ValueError(f"image must be a NumPy, CuPy or torch array; got {type(x).__name__}")


def check_shape(a: Any) -> None:
    if a.ndim not in (2, 3):
        raise ValueError(f"image must be 2-D (H, W) or a stack (N, H, W); got shape {tuple(a.shape)}")
    if a.size == 0:
        raise ValueError(f"image is empty (shape {tuple(a.shape)})")
    if a.ndim == 3 and a.shape[-1] <= 4 and min(a.shape[:2]) > 4:
        # a stack of images 1-4 pixels wide is far less likely than a channels-last array
        what = "a colour" if a.shape[-1] in (3, 4) else "a channels-last"
        raise ValueError(f"image of shape {tuple(a.shape)} looks like {what} (H, W, {a.shape[-1]}) "
                         "image; pass one grey channel as (H, W) (e.g. image[..., 0]), or a stack "
                         "as (N, H, W)")


def to_unit_float(a: Any) -> Any:
    """Validate and scale to float32 on [0, 1]: integers by their dtype's range."""
    xp = array_module(a)
    check_shape(a)
    kind = a.dtype.kind
    if kind in "ui":
        if kind == "i" and bool((a < 0).any()):
            raise ValueError(f"image has negative values (min {int(a.min())})")
        return a.astype(xp.float32) / xp.float32(np.iinfo(a.dtype).max)
    if kind != "f":
        raise ValueError(f"image dtype {a.dtype} is not an integer or floating-point type")
    if not bool(xp.isfinite(a).all()):
        raise ValueError("image contains NaN or Inf")
    lo, hi = float(a.min()), float(a.max())
    if lo < 0.0:
        raise ValueError(f"image has negative values (min {lo!r}); float input must be on [0, 1]")
    if hi > 1.0:
        raise ValueError(f"float image must be on [0, 1]; its maximum is {hi!r} "
                         "(scale it, or pass the integer array)")
    return a.astype(xp.float32, copy=False)


def to_working(image: Any) -> tuple[Any, Callable[[Any], Any]]:
    """Validated float32 [0, 1] NumPy/CuPy array and the function that converts results back."""
    a, back = _plain(image)
    return to_unit_float(a), back


def to_working_float(image: Any) -> tuple[Any, Callable[[Any], Any]]:
    """Like ``to_working`` for non-negative float data with no upper bound (e.g. Xp)."""
    a, back = _plain(image)
    check_shape(a)
    xp = array_module(a)
    a = a.astype(xp.float32, copy=False)
    if not bool(xp.isfinite(a).all()):
        raise ValueError("image contains NaN or Inf")
    if float(a.min()) < 0.0:
        raise ValueError("image has negative values")
    return a, back


def caller_stream(image: Any):
    """Run CuPy work on torch's current CUDA stream when the input is a CUDA tensor.

    Keeps the kernels ordered with the caller's torch work without a device-wide sync.
    """
    if _is_torch(image) and image.is_cuda:
        import cupy
        import torch
        return cupy.cuda.ExternalStream(torch.cuda.current_stream(image.device).cuda_stream)
    return contextlib.nullcontext()
