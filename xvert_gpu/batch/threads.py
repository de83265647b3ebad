"""``--threads``: CPU threads of the network (torch) and of the WLS solver (Numba).

torch's intra-op pool is per process; Numba's thread count applies to parallel regions started
from the calling thread, so :func:`limit_threads` must be called in the thread that runs the
Enhancer. The WLS solver's results do not depend on the Numba thread count (its reductions sum
per-row partial sums in a fixed order); the network's CPU results can differ in the last bit
with torch's thread count.
"""

from __future__ import annotations

from typing import Callable

__all__ = ["limit_threads"]


def limit_threads(n: int | None) -> Callable[[], None]:
    """Use ``n`` CPU threads (None: leave as is); returns a function that restores the old counts."""
    if not n:
        return lambda: None
    import numba
    import torch

    old_torch, old_numba = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(int(n))
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))

    def restore() -> None:
        torch.set_num_threads(old_torch)
        numba.set_num_threads(old_numba)

    return restore
