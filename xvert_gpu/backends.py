"""Choosing the backend that solves a WLS system: ``device="auto" | "cpu" | "cuda"``."""

from __future__ import annotations

import functools
import importlib.util
from typing import Any


@functools.lru_cache(maxsize=1)
def cuda_available() -> bool:
    """True when CuPy is installed and sees a GPU (CuPy is only imported here, lazily)."""
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no driver, no device, broken install: all mean "no GPU"
        return False


def resolve(device: str, data: Any) -> str:
    """The backend name for ``device`` and the array that holds the data."""
    from .arrays import _is_cupy

    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda'; got {device!r}")
    if device == "cuda" or (device == "auto" and (_is_cupy(data) or cuda_available())):
        if not cuda_available():
            raise RuntimeError("device='cuda' needs CuPy and a visible CUDA GPU; none was found "
                               "(install xvert_gpu[cuda12] or [cuda13], or use device='cpu')")
        if importlib.util.find_spec("xvert_gpu.cuda") is None:
            raise RuntimeError("the CUDA backend is not part of this build; use device='cpu'")
        return "cuda"
    return "cpu"


def system_class(backend: str):
    if backend == "cuda":
        from .cuda.system import CudaSystem
        return CudaSystem
    from .cpu.system import CpuSystem
    return CpuSystem
