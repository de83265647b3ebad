"""GL-U-Net inference throughput per compile mode and precision (a section of the benchmark)."""

from __future__ import annotations

import contextlib
import time
from typing import Any


def _modes(model, compile_: bool) -> dict[str, Any]:
    import torch

    modes: dict[str, Any] = {"eager": model, "torchscript": torch.jit.script(model)}
    if compile_:
        modes["torch.compile"] = torch.compile(model)
    return modes


def _precisions(device: str) -> dict[str, Any]:
    import torch

    precs: dict[str, Any] = {"fp32": contextlib.nullcontext}
    if device == "cuda":
        def tf32():
            @contextlib.contextmanager
            def ctx():
                old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
                torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
                try:
                    yield
                finally:
                    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
            return ctx()
        precs["tf32"] = tf32
    precs["bf16"] = lambda: torch.autocast(device_type=device, dtype=torch.bfloat16)
    return precs


def bench_inference(device: str, size: int, batches: list[int], compile_: bool,
                    base_channels: int = 64, progress=print,
                    precisions: list[str] | None = None) -> list[dict]:
    """Images/s of ``GLUNet(base_channels)`` forward passes (random weights: speed only)."""
    import torch

    from .model import GLUNet

    dev = torch.device("cuda" if device == "cuda" else "cpu")
    torch.manual_seed(0)
    model = GLUNet(base_channels=base_channels).to(dev).eval()
    rows = []
    with torch.inference_mode():
        modes = _modes(model, compile_)
        for prec, ctx in _precisions(device).items():
            if precisions is not None and prec not in precisions:
                continue
            for mode, fn in modes.items():
                for batch in batches:
                    progress(f"inference {size}^2 batch {batch}: {mode} {prec}")
                    xp = torch.rand(batch, 1, size, size, device=dev)
                    hfc = torch.rand(batch, 1, size, size, device=dev) - 0.5
                    try:
                        with ctx():
                            fn(xp, hfc)  # warm-up (and compilation)
                            if dev.type == "cuda":
                                torch.cuda.synchronize()
                            t = time.perf_counter()
                            out = fn(xp, hfc)
                            if dev.type == "cuda":
                                torch.cuda.synchronize()
                            sec = time.perf_counter() - t
                        ok = bool(torch.isfinite(out.float()).all())
                        rows.append({"mode": mode, "precision": prec, "batch": batch, "size": size,
                                     "seconds": sec, "images_per_s": batch / sec, "finite": ok})
                    except Exception as exc:  # a mode this torch build cannot run is reported, not fatal
                        rows.append({"mode": mode, "precision": prec, "batch": batch, "size": size,
                                     "note": f"{type(exc).__name__}: {exc}"[:200]})
    return rows


def print_inference(rows: list[dict]) -> None:
    print("\nGL-U-Net inference (random weights), images/s")
    print(f"{'size':>6} {'batch':>6} {'mode':<14} {'precision':<9} {'images/s':>9}")
    for r in rows:
        val = f"{r['images_per_s']:>9.2f}" if "images_per_s" in r else r["note"]
        print(f"{r['size']:>6} {r['batch']:>6} {r['mode']:<14} {r['precision']:<9} {val}")


__all__ = ["bench_inference", "print_inference"]
