"""Per-kernel times and achieved bandwidth of the CUDA WLS solve, against a device-to-device
copy measured in the same run (issue 3: >= 70 % on the fused vector updates and the operator).

Run on a machine with a GPU, from the repository root::

    python3 benchmarks/gpu_kernels.py [--size 2048] [--batch 1] [--json out.json]

Byte counts are the fewest each kernel must move (each array it reads once, each it writes
once); neighbours' reads that hit the cache are not counted. Times are medians of CUDA-event
timings (``cupyx.profiler.benchmark``) after a warm-up; the copy is the bench's own anchor
(``xvert_gpu.anchors.copy_bandwidth``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _median_ms(fn, n_repeat: int = 50) -> float:
    from cupyx.profiler import benchmark

    res = benchmark(fn, n_repeat=n_repeat, n_warmup=5)
    return float(np.median(res.gpu_times[0]) * 1e3)


def main(argv: list[str] | None = None) -> int:
    import cupy as cp

    from xvert_gpu.anchors import copy_bandwidth
    from xvert_gpu.cuda import system as cs
    from xvert_gpu.samples import NAMES, load_sample

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--json", dest="json_path")
    args = ap.parse_args(argv)

    props = cp.cuda.runtime.getDeviceProperties(0)
    print("device:", props["name"].decode(), "cupy", cp.__version__)
    copy = copy_bandwidth()
    print(f"device-to-device copy: {copy:.0f} GB/s (read + write)")

    img = load_sample(NAMES[0], args.size).astype(np.float32) / np.float32(255)
    stack = cp.asarray(np.repeat(img[None], args.batch, axis=0))
    N, H, W = stack.shape
    n = N * H * W
    cn, cw = cs.weights(stack, 1.0, 1.2, 1e-4, 1e-4)
    mg = cs.Multigrid(cn, cw)
    fine = mg.levels[0]
    rng = cp.random.default_rng(0)
    f64 = lambda: rng.random((N, H, W), dtype=cp.float64)  # noqa: E731
    f32 = lambda: rng.random((N, H, W), dtype=cp.float32)  # noqa: E731
    p, z = f32(), f32()
    x, r, q = f64(), f64(), f64()
    acc = cp.zeros(N, cp.float64)
    num, den = cp.ones(N, cp.float64), cp.full(N, 2.0, cp.float64)
    state = cp.zeros(N, cp.int32)
    scratch = mg._scratch
    coarse = mg.levels[1]
    coarse.u.fill(0.5)

    rows = []

    def add(name, fn, nbytes):
        ms = _median_ms(fn)
        gbs = nbytes / ms / 1e6
        rows.append({"kernel": name, "ms": ms, "bytes": nbytes, "GBps": gbs,
                     "fraction_of_copy": gbs / copy})

    # q = A p (float32 p -> float64 q) and p.q: p, cn, cw read, q written
    add("apply_dot (q = A p, p.q)", lambda: fine.apply_dot(p, q, acc), n * (4 + 4 + 4 + 8))
    # x += a p; r -= a q; ||r||^2: x, r read and written (float64), p, q read
    add("update_solution (x, r, ||r||^2)",
        lambda: cs._update_solution(x, r, p, q, num, den, state, acc), n * (16 + 16 + 4 + 8))
    # p = z + beta p
    add("update_direction (p)", lambda: cs._update_direction(p, z, num, den, state), n * (8 + 4))
    add("dot (r . z)", lambda: cs._dot(r, z, acc), n * (8 + 4))
    add("residual (f - A u)", lambda: fine.residual(r, p, z), n * (8 + 4 + 4 + 4 + 4))
    # a zebra half-sweep of rows: half the lines; each reads f, u's neighbour lines (cache),
    # the two factor arrays and writes u on its own lines (the 5-point level reads no cw)
    half = n // 2
    add("relax rows, one parity", lambda: fine.relax(r, p, True, 0, scratch),
        half * (8 + 4 + 4 + 4 + 4) + n * 4 + half * 4)
    add("relax cols, one parity", lambda: fine.relax(r, p, False, 0, scratch),
        half * (8 + 4 + 4 + 4 + 4) + n * 4 + half * 4)
    nc = int(np.prod(coarse.shape))
    add("restrict_residual", lambda: fine.restrict_residual(r, p, coarse.f),
        n * (8 + 4 + 4 + 4) // 2 + n * 4 * 4 // 4 + nc * 8)
    add("prolong_add", lambda: fine.prolong_add(coarse.u, p), n * (4 + 4) + n * 4 * 4 // 4 + nc * 8)
    add("whole cycle (precondition)", lambda: mg.apply(r, z), 0)

    def iteration():
        fine.apply_dot(p, q, acc)
        cs._update_solution(x, r, p, q, num, den, state, acc)
        mg.apply(r, z)
        cs._dot(r, z, acc)
        cs._update_direction(p, z, num, den, state)

    add("whole PCG iteration", iteration, 0)

    print(f"\n{N} x {H} x {W}, {len(mg.levels)} levels")
    print(f"{'kernel':36s} {'ms':>9s} {'GB/s':>8s} {'of copy':>8s}")
    for row in rows:
        frac = f"{100 * row['fraction_of_copy']:.0f} %" if row["bytes"] else ""
        gbs = f"{row['GBps']:.0f}" if row["bytes"] else ""
        print(f"{row['kernel']:36s} {row['ms']:9.4f} {gbs:>8s} {frac:>8s}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(
            {"device": props["name"].decode(), "size": args.size, "batch": N,
             "copy_GBps": copy, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
