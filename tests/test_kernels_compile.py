"""Every CUDA kernel compiles for sm_80 and sm_90 (no GPU needed).

nvcc checks each ``kernels/*.cu`` on its own and the single translation unit that the
loader hands to NVRTC at run time, with all warnings as errors; the PTX must export every
``extern "C"`` kernel unmangled. Where libnvrtc is found, the loader's source is also
compiled by NVRTC with the loader's own options, as CuPy will at run time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from xvert_gpu.cuda import loader

KERNELS = Path(__file__).resolve().parents[1] / "kernels"
ARCHS = ("80", "90")
FLAGS = ("-std=c++17", "--fmad=false", "-Werror", "all-warnings")


def _nvcc() -> str | None:
    found = shutil.which("nvcc")
    if found:
        return found
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and os.path.isfile(os.path.join(root, "bin", "nvcc")):
            return os.path.join(root, "bin", "nvcc")
    return None


NVCC = _nvcc()
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")


def _cu_files() -> list[Path]:
    files = sorted(KERNELS.glob("*.cu"))
    assert files, "no kernel sources in kernels/"
    return files


@pytest.fixture(scope="module")
def ptx(tmp_path_factory) -> dict[str, Path]:
    """Compile every .cu file and the loader's combined source: one nvcc per arch, in parallel."""
    root = tmp_path_factory.mktemp("ptx")
    combined = root / "xvert_combined_tu.cu"
    combined.write_text(loader.source())
    inputs = [str(p) for p in _cu_files()] + [str(combined)]
    procs = {}
    for arch in ARCHS:
        out = root / f"sm_{arch}"
        out.mkdir()
        cmd = [NVCC, *FLAGS, f"-arch=sm_{arch}", "--ptx", "-odir", str(out), *inputs]
        procs[arch] = (out, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                             text=True))
    dirs = {}
    for arch, (out, proc) in procs.items():
        log, _ = proc.communicate()
        assert proc.returncode == 0, f"nvcc failed for sm_{arch}:\n{log}"
        assert "warning" not in log.lower(), f"nvcc warned for sm_{arch}:\n{log}"
        dirs[arch] = out
    return dirs


@needs_nvcc
@pytest.mark.parametrize("arch", ARCHS)
def test_every_file_compiles(ptx, arch):
    for cu in _cu_files():
        assert (ptx[arch] / (cu.stem + ".ptx")).stat().st_size > 0


@needs_nvcc
@pytest.mark.parametrize("arch", ARCHS)
def test_loader_source_exports_every_kernel(ptx, arch):
    text = (ptx[arch] / "xvert_combined_tu.ptx").read_text()
    names = loader.kernel_names()
    assert len(names) == len(set(names)), "duplicate kernel names"
    for name in names:
        assert f".entry {name}(" in text, f"{name} missing from the PTX (mangled or not compiled)"
    # and every kernel is defined in exactly one file
    per_file = [n for cu in _cu_files() for n in loader._KERNEL.findall(cu.read_text())]
    assert sorted(per_file) == sorted(names)


@needs_nvcc
def test_compile_check_fails_on_a_type_error(tmp_path):
    bad = tmp_path / "bad.cu"
    bad.write_text('#include "common.cuh"\n'
                   'extern "C" __global__ void xv_bad(float* out) { double* p = out; *p = 1.0; }\n')
    proc = subprocess.run([NVCC, *FLAGS, "-arch=sm_80", "--ptx", "-I", str(KERNELS), "-o",
                           str(tmp_path / "bad.ptx"), str(bad)], capture_output=True, text=True)
    assert proc.returncode != 0


def test_loader_source_inlines_headers_once():
    src = loader.source()
    assert '#include "' not in src
    assert src.count("#define XV_COMMON_CUH") == 1


def test_loader_reads_the_installed_subpackage(monkeypatch):
    """Installed, kernels/ is the subpackage xvert_gpu.kernels: read through importlib.resources."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "xvert_gpu.kernels", KERNELS / "__init__.py", submodule_search_locations=[str(KERNELS)])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "xvert_gpu.kernels", module)
    monkeypatch.setattr(loader, "_checkout_dir", lambda: Path("/nonexistent"))
    files = loader.source_files()
    assert sorted(files) == sorted(p.name for p in KERNELS.iterdir() if p.suffix in (".cu", ".cuh"))


def test_cuda_modules_import_without_cupy():
    code = ("import sys; import xvert_gpu.cuda, xvert_gpu.cuda.loader, xvert_gpu.cuda.system; "
            "assert 'cupy' not in sys.modules, 'CuPy imported at module import'")
    subprocess.run([sys.executable, "-c", code], check=True,
                   cwd=Path(__file__).resolve().parents[1])


# -- NVRTC, as CuPy uses it --------------------------------------------------------------------
def _libnvrtc() -> str | None:
    candidates = [os.environ.get("XVERT_NVRTC")]
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root:
            candidates += sorted(glob.glob(os.path.join(root, "lib64", "libnvrtc.so*")))
    for entry in sys.path:  # the nvidia-cuda-nvrtc wheels
        candidates += sorted(glob.glob(os.path.join(entry, "nvidia", "*", "lib", "libnvrtc.so*")))
        candidates += sorted(glob.glob(os.path.join(entry, "nvidia", "cuda_nvrtc", "lib",
                                                    "libnvrtc.so*")))
    candidates.append(ctypes.util.find_library("nvrtc"))
    for c in candidates:
        if c and "builtins" not in c and "alt" not in os.path.basename(c):
            try:
                ctypes.CDLL(c)
                return c
            except OSError:
                continue
    return None


@pytest.mark.parametrize("arch", ARCHS)
def test_nvrtc_compiles_loader_source(arch):
    path = _libnvrtc()
    if path is None:
        pytest.skip("libnvrtc not found (set XVERT_NVRTC to its path)")
    for builtins in sorted(glob.glob(os.path.join(os.path.dirname(path), "libnvrtc-builtins.so*"))):
        if ".alt." not in builtins:  # NVRTC dlopens it by soname: load it from beside libnvrtc
            ctypes.CDLL(builtins, mode=ctypes.RTLD_GLOBAL)
    lib = ctypes.CDLL(path)
    prog = ctypes.c_void_p()
    src = loader.source().encode()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), src, b"xvert_gpu.cu", 0, None, None) == 0
    opts = [o.encode() for o in (*loader.OPTIONS, f"--gpu-architecture=compute_{arch}")]
    arr = (ctypes.c_char_p * len(opts))(*opts)
    status = lib.nvrtcCompileProgram(prog, len(opts), arr)
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    lib.nvrtcDestroyProgram(ctypes.byref(prog))
    text = log.value.decode(errors="replace")
    assert status == 0, f"NVRTC failed:\n{text}"
    assert "warning" not in text.lower(), text
