"""Loads the CUDA kernels once, lazily, through ``cupy.RawModule``.

The sources are the ``.cu`` / ``.cuh`` files of the ``xvert_gpu.kernels`` subpackage (the
repository's top-level ``kernels/`` folder when running from a source checkout). They are
joined into one translation unit, local ``#include "..."`` lines inlined once each (NVRTC
gets no include path), and compiled by NVRTC on first use. CuPy is imported only inside
the functions that need it.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from pathlib import Path

#: NVRTC options. ``--fmad=false`` keeps products and sums separately rounded, as the Numba
#: CPU backend computes them (it matters only at the level of rounding).
OPTIONS = ("-std=c++17", "--fmad=false")

_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"[ \t]*$')
_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(')


def _checkout_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "kernels"


def source_files() -> dict[str, str]:
    """File name -> text of every kernel source (``.cu`` and ``.cuh``)."""
    files: dict[str, str] = {}
    try:
        root = importlib.resources.files("xvert_gpu.kernels")
        for entry in root.iterdir():
            if entry.name.endswith((".cu", ".cuh")):
                files[entry.name] = entry.read_text(encoding="utf-8")
    except ModuleNotFoundError:  # source checkout: kernels/ is not installed as a subpackage
        pass
    if not files:
        for path in sorted(_checkout_dir().glob("*.cu*")):
            if path.suffix in (".cu", ".cuh"):
                files[path.name] = path.read_text(encoding="utf-8")
    if not any(name.endswith(".cu") for name in files):
        raise FileNotFoundError("no CUDA kernel sources found (xvert_gpu.kernels or kernels/)")
    return files


@functools.lru_cache(maxsize=1)
def source() -> str:
    """The whole kernel source as one translation unit, with ``#line`` markers per file."""
    files = source_files()
    inlined: set[str] = set()

    def expand(name: str, chain: tuple[str, ...]) -> list[str]:
        if name not in files:
            raise FileNotFoundError(f"{chain[-1]} includes {name!r}, which is not a kernel source")
        if name in chain:
            raise ValueError(f"circular #include: {' -> '.join(chain + (name,))}")
        out = [f'#line 1 "{name}"']
        for number, line in enumerate(files[name].splitlines(), start=1):
            match = _INCLUDE.match(line)
            if match is None:
                out.append(line)
                continue
            header = match.group(1)
            if header not in inlined:
                inlined.add(header)
                out.extend(expand(header, chain + (name,)))
            out.append(f'#line {number + 1} "{name}"')
        return out

    lines: list[str] = []
    for name in sorted(files):
        if name.endswith(".cu"):
            lines.extend(expand(name, ()))
    return "\n".join(lines) + "\n"


def kernel_names() -> list[str]:
    """Names of all ``extern "C"`` kernels, in source order."""
    return _KERNEL.findall(source())


@functools.lru_cache(maxsize=1)
def module():
    """The compiled ``cupy.RawModule`` (NVRTC runs on first use; CuPy caches the binary)."""
    import cupy

    return cupy.RawModule(code=source(), options=OPTIONS)


def function(name: str):
    """The kernel ``name`` for the current device, as a ``cupy.RawKernel``-like callable."""
    import cupy

    return _function(name, cupy.cuda.runtime.getDevice())


@functools.lru_cache(maxsize=None)
def _function(name: str, device: int):
    return module().get_function(name)
