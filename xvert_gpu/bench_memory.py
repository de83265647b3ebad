"""Peak memory of one ``wls_smooth`` call, in float32 images' worth (issue 2: under 30 at 2048^2).

On the CPU the solve runs in a fresh Python process, so that the benchmark's
other work (the direct solve's gigabytes) cannot mask or inflate its peak:
the process resets its peak resident size (``/proc/self/clear_refs``) just
before the call and reads it back after. On CUDA it is the bytes CuPy's
memory pool holds after the call, starting from an empty pool.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np

_CHILD = r"""
import resource, sys
import numpy as np
from xvert_gpu import wls_smooth
from xvert_gpu.samples import NAMES, load_sample

def status(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)

x = load_sample(NAMES[0], int(sys.argv[1])).astype(np.float32) / np.float32(255)
wls_smooth(x[:64, :64], device="cpu")  # kernels loaded before the measurement
try:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # peak resident size := the current one
    before, how = status("VmRSS"), "VmHWM"
except OSError:
    before, how = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "ru_maxrss"
g = wls_smooth(x, device="cpu")
after = status("VmHWM") if how == "VmHWM" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(after - before, how)
"""


def peak_memory(size: int, device: str, timeout: float = 600.0) -> dict:
    """Peak extra memory of ``wls_smooth`` on the ``size``^2 sample (the output included).

    Returns a dict with ``bytes``, ``images`` (in float32 ``size``^2 images) and ``how``,
    or with a ``note`` saying why it could not be measured.
    """
    image = size * size * 4
    if device == "cuda":
        import cupy

        from .samples import NAMES, load_sample
        from .wls import wls_smooth

        x = cupy.asarray(load_sample(NAMES[0], size).astype(np.float32) / np.float32(255))
        wls_smooth(x[:64, :64], device="cuda")
        pool = cupy.get_default_memory_pool()
        cupy.cuda.Device().synchronize()
        held = pool.used_bytes()  # x itself
        pool.free_all_blocks()
        wls_smooth(x, device="cuda")
        cupy.cuda.Device().synchronize()
        nbytes = pool.total_bytes() - held
        return {"bytes": nbytes, "images": nbytes / image, "how": "CuPy pool bytes after one call"}
    if not sys.platform.startswith("linux"):
        return {"note": "measured on Linux only (/proc/self/status)"}
    try:
        out = subprocess.run([sys.executable, "-c", _CHILD, str(size)], capture_output=True,
                             text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"note": f"the measuring process took over {timeout:.0f} s"}
    if out.returncode != 0:
        return {"note": "the measuring process failed: " + (out.stderr.strip().splitlines() or ["?"])[-1]}
    nbytes, how = out.stdout.split()[-2:]
    return {"bytes": int(nbytes), "images": int(nbytes) / image, "how": how}
