"""``python -m xvert_gpu.bench``: solver and preprocessing throughput on this machine.

Runs on the bundled sample radiographs resized to each size, measures every
method against its anchors in the same run, prints a table and optionally
writes JSON (with machine, versions and git commit) and a log-log plot.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any

import numpy as np

from . import __version__, anchors, backends
from .arrays import to_numpy
from .bench_memory import peak_memory
from .preprocess import preprocess
from .reference import detail_error
from .samples import NAMES, load_sample
from .wls import wls_smooth


def _progress(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _best_of(fn, repeats: int) -> tuple[Any, float]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best


def machine_info() -> dict:
    import numba
    import scipy

    info = {"python": platform.python_version(), "platform": platform.platform(),
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "numpy": np.__version__, "scipy": scipy.__version__, "numba": numba.__version__,
            "xvert_gpu": __version__, "device": "cpu"}
    try:
        with open("/proc/cpuinfo") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        if names:
            info["cpu"] = names[0]
    except OSError:
        pass
    try:
        import pyamg
        info["pyamg"] = pyamg.__version__
    except ImportError:
        pass
    if backends.cuda_available():
        import cupy
        props = cupy.cuda.runtime.getDeviceProperties(0)
        info.update(device=props["name"].decode(), cupy=cupy.__version__,
                    cuda_runtime=cupy.cuda.runtime.runtimeGetVersion())
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        info["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                                            text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    return info


def _on_device(x: np.ndarray, device: str):
    """The benchmark input where the solver works, so GPU timings exclude host transfers."""
    if device == "cuda":
        import cupy
        return cupy.asarray(x)
    return x


def _synced(out):
    if backends.cuda_available():
        import cupy
        cupy.cuda.get_current_stream().synchronize()
    return out


def bench_wls(size: int, device: str, direct_max: int, jacobi_max: int, repeats: int) -> dict:
    """Our solver against scipy direct, pyamg RS-PCG and Jacobi-PCG on one sample at ``size``^2."""
    x8 = load_sample(NAMES[0], size)
    x = x8.astype(np.float32) / np.float32(255)
    x64 = x.astype(np.float64)
    _progress(f"wls {size}^2: reference solve")
    exact, truth_kind, truth_s = anchors.truth(x64, direct_max)
    row: dict[str, Any] = {"size": size, "truth": truth_kind}
    if truth_kind.startswith("scipy"):
        row["scipy_direct"] = {"seconds": truth_s}
    else:
        row["scipy_direct"] = {"note": f"skipped above {direct_max}^2 (SPEC: 203 s and 10 GB at 2048^2)"}
    _progress(f"wls {size}^2: xvert_gpu ({device})")
    data = _on_device(x, device)
    wls_smooth(data, device=device)  # warm-up: kernels compiled and cached
    (g, info), sec = _best_of(lambda: _synced(wls_smooth(data, device=device, return_info=True)),
                              repeats)
    target = detail_error(to_numpy(g), exact, x64)
    row["xvert_gpu"] = {"seconds": sec, "iterations": info.iterations, "detail_error": target,
                        "backend": info.backend, "tol": info.tol}
    _progress(f"wls {size}^2: pyamg Ruge-Stuben to detail error {target:.2e}")
    try:
        row["pyamg_rs"] = anchors.pyamg_rs(x64, exact, target)
    except ImportError:
        row["pyamg_rs"] = {"note": "pyamg not installed"}
    if size <= jacobi_max:
        _progress(f"wls {size}^2: Jacobi-PCG (scipy)")
        row["jacobi_pcg"] = anchors.jacobi_pcg(x64, exact, target)
    else:
        row["jacobi_pcg"] = {"note": f"skipped above {jacobi_max}^2 (thousands of iterations)"}
    if info.backend == "cuda":
        _progress(f"wls {size}^2: cupyx Jacobi-PCG")
        row["cupyx_jacobi_pcg"] = anchors.cupy_jacobi_pcg(x64, exact, target)
    for name in ANCHORS:
        if name in row and "seconds" in row[name]:
            row[name]["speedup"] = row[name]["seconds"] / sec
    return row


ANCHORS = ("pyamg_rs", "scipy_direct", "jacobi_pcg", "cupyx_jacobi_pcg")


def bench_preprocess(device: str, batch: int, crop: int, repeats: int) -> dict:
    stack = _on_device(np.stack([load_sample(NAMES[i % len(NAMES)], crop) for i in range(batch)]), device)
    preprocess(stack[:1], device=device)
    _, sec = _best_of(lambda: _synced(preprocess(stack, device=device)), repeats)
    return {"batch": batch, "size": crop, "seconds": sec, "images_per_s": batch / sec}


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def print_table(results: dict) -> None:
    print(f"\nxvert_gpu {results['machine']['xvert_gpu']} on {results['machine']['cpu']} "
          f"({results['machine']['cpu_count']} cores), device {results['machine']['device']}")
    print("\nWLS solve (weights + solve), time at equal detail error; speed-up = anchor time / ours")
    hdr = f"{'size':>6} {'method':<14} {'seconds':>9} {'iters':>6} {'detail err':>11} {'speed-up':>9}"
    print(hdr + "\n" + "-" * len(hdr))
    for row in results["wls"]:
        for name in ("xvert_gpu",) + ANCHORS:
            if name not in row:
                continue
            r = row[name]
            if "seconds" not in r:
                print(f"{row['size']:>6} {name:<14} {r.get('note', '')}")
                continue
            print(f"{row['size']:>6} {name:<14} {r['seconds']:>9.3f} {_fmt(r.get('iterations'), '>6')} "
                  f"{_fmt(r.get('detail_error'), '>11.2e')} {_fmt(r.get('speedup'), '>9.1f')}")
    m = results.get("peak_memory")
    if m:
        if "bytes" in m:
            print(f"\npeak memory of one solve at {m['size']}^2: {m['bytes'] / 2**20:.0f} MiB = "
                  f"{m['images']:.1f} float32 images (issue 2's limit at 2048^2: 30; {m['how']})")
        else:
            print(f"\npeak memory at {m['size']}^2: {m['note']}")
    if "copy_bandwidth_GBps" in results:
        print(f"\ndevice-to-device copy: {results['copy_bandwidth_GBps']:.0f} GB/s")
    p = results.get("preprocess")
    if p:
        print(f"\npreprocess: batch of {p['batch']} x {p['size']}^2 in {p['seconds']:.3f} s "
              f"= {p['images_per_s']:.2f} images/s (two WLS solves each)")


def plot(results: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name in ("xvert_gpu",) + ANCHORS:
        pts = [(r["size"] ** 2, r[name]["seconds"]) for r in results["wls"]
               if "seconds" in r.get(name, {})]
        if pts:
            ax.loglog(*zip(*pts), "o-", label=name)
    ax.set_xlabel("pixels")
    ax.set_ylabel("seconds (weights + solve)")
    ax.set_title(f"WLS solve, {results['machine']['device']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _inference(args: argparse.Namespace, device: str) -> list[dict]:
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        _progress("torch not installed: no inference section")
        return []
    from .bench_inference import bench_inference

    size = args.inference_size or (128 if args.quick else 512)
    default = "1" if args.quick else ("1,8,32" if device == "cuda" else "1,4")
    batches = [int(b) for b in (args.inference_batches or default).split(",") if b.strip()]
    compile_ = device == "cuda" if args.compile_ is None else args.compile_
    precisions = [p.strip() for p in args.precisions.split(",")] if args.precisions else None
    return bench_inference(device, size, batches, compile_, progress=_progress, precisions=precisions)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m xvert_gpu.bench", description=__doc__)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--sizes", default=None, help="comma-separated sizes (default 512,1024; quick: 256,512)")
    ap.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    ap.add_argument("--json", dest="json_path", help="write the results here")
    ap.add_argument("--plot", dest="plot_path", help="write a log-log plot (PNG) here")
    ap.add_argument("--direct-max", type=int, default=1024, help="largest size for scipy's direct solve")
    ap.add_argument("--jacobi-max", type=int, default=512, help="largest size for Jacobi-PCG")
    ap.add_argument("--batch", type=int, default=8, help="preprocess batch size")
    ap.add_argument("--inference-size", type=int, default=None,
                    help="GL-U-Net input size (default 512; quick: 128)")
    ap.add_argument("--inference-batches", default=None,
                    help="comma-separated batch sizes (default 1,8,32 on CUDA, 1,4 on CPU; quick: 1)")
    ap.add_argument("--compile", dest="compile_", action="store_true", default=None,
                    help="also time torch.compile (default on CUDA only: slow to compile on a CPU)")
    ap.add_argument("--inference", dest="inference", action="store_true", default=None,
                    help="time the GL-U-Net section (default on CUDA only: minutes on a 2-core CPU)")
    ap.add_argument("--no-inference", dest="inference", action="store_false", help="skip it")
    ap.add_argument("--precisions", default=None,
                    help="inference precisions to time, e.g. fp32,bf16 (default: all the device has; "
                         "bf16 is very slow on CPUs without bf16 instructions)")
    ap.add_argument("--no-memory", dest="memory", action="store_false", default=True,
                    help="skip the peak memory of one solve at the largest size")
    ap.add_argument("--no-e2e", dest="e2e", action="store_false", default=True,
                    help="skip the end-to-end section (PNG in, enhanced PNG out)")
    ap.add_argument("--e2e-size", type=int, default=None, help="end-to-end image size (default 1024; quick: 256)")
    ap.add_argument("--e2e-images", type=int, default=None,
                    help="end-to-end image count (default 2 on CPU, 64 on CUDA; quick: 1)")
    ap.add_argument("--model", default="default", help="model artefact for the end-to-end section")
    args = ap.parse_args(argv)
    default = "256,512" if args.quick else "512,1024"
    try:
        sizes = [int(s) for s in (args.sizes or default).split(",") if s.strip()]
    except ValueError:
        ap.error(f"--sizes must be comma-separated integers; got {args.sizes!r}")
    if not sizes or min(sizes) < 8:
        ap.error("--sizes must name sizes of at least 8")
    device = backends.resolve(args.device, None)
    repeats = 1 if args.quick else 3
    results: dict[str, Any] = {"machine": machine_info(), "command": " ".join(sys.argv), "wls": []}
    results["machine"]["device"] = results["machine"]["device"] if device == "cuda" else "cpu"
    if device == "cuda":
        results["copy_bandwidth_GBps"] = anchors.copy_bandwidth()
    for size in sizes:
        results["wls"].append(bench_wls(size, device, args.direct_max, args.jacobi_max, repeats))
    if args.memory:
        _progress(f"peak memory of one solve at {max(sizes)}^2")
        results["peak_memory"] = {"size": max(sizes), **peak_memory(max(sizes), device)}
    _progress("preprocess throughput")
    results["preprocess"] = bench_preprocess(device, 2 if args.quick else args.batch,
                                             min(512, max(sizes)), repeats)
    if args.inference or (args.inference is None and device == "cuda"):
        results["inference"] = _inference(args, device)
    if args.e2e:
        from .bench_e2e import bench_end_to_end
        size = args.e2e_size or (256 if args.quick else 1024)
        count = args.e2e_images or (1 if args.quick else (64 if device == "cuda" else 2))
        results["end_to_end"] = bench_end_to_end(device, size, count, args.model, progress=_progress)
    print_table(results)
    if results.get("inference"):
        from .bench_inference import print_inference
        print_inference(results["inference"])
    if results.get("end_to_end"):
        from .bench_e2e import print_end_to_end
        print_end_to_end(results["end_to_end"])
    if args.json_path:
        with open(args.json_path, "w") as fh:
            json.dump(results, fh, indent=2, default=float)
        _progress(f"wrote {args.json_path}")
    if args.plot_path:
        try:
            plot(results, args.plot_path)
            _progress(f"wrote {args.plot_path}")
        except ImportError:
            _progress("matplotlib not installed: no plot")
    return 0


if __name__ == "__main__":
    sys.exit(main())
