"""xvert_gpu: GPU-accelerated XVertNet preprocessing and spine contrast enhancement.

Public API (SPEC section 2):

- :func:`wls_weights`, :func:`wls_smooth`: the WLS edge-preserving filter;
- :func:`preprocess`: Eqs. 1-6, giving the preprocessed image and its high-frequency part;
- :func:`to_torch`, :func:`to_cupy`: zero-copy hand-off for embedding users;
- :func:`clear_workspace`: frees the work memory the CPU solver keeps between calls;
- :class:`Enhancer`: the trained chain end to end (imported on first use: it needs torch).
"""

from .arrays import to_cupy, to_torch
from .cpu.workspace import clear as clear_workspace
from .preprocess import Preprocessed, preprocess
from .wls import SolveInfo, wls_smooth, wls_weights

__version__ = "0.1.0"

__all__ = ["wls_weights", "wls_smooth", "preprocess", "Preprocessed", "SolveInfo",
           "to_torch", "to_cupy", "Enhancer", "clear_workspace", "__version__"]

_LAZY = {"Enhancer": "enhancer"}  # names whose modules import torch


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
