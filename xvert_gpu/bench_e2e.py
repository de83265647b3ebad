"""End-to-end benchmark: PNG in, enhanced PNG out, with the default model.

Two measurements on the same freshly written files:

* **split**: each image through read -> enhance -> write in sequence, with the
  seconds per image in each part (read, preprocess = every WLS solve of the chain,
  network = the T stage networks plus padding/tiling, write);
* **pipeline**: the real ``xvert-gpu enhance`` run (:func:`xvert_gpu.batch.enhance_archive`)
  over the folder, where decoding and encoding overlap with the enhancement.

Anchor: the same files only read and written again (no enhancement), the I/O
ceiling the pipeline could reach.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .io import read_image, write_image
from .samples import NAMES, load_sample


def _write_inputs(folder: Path, size: int, count: int) -> list[Path]:
    paths = []
    for i in range(count):
        img = load_sample(NAMES[i % len(NAMES)], size)
        if i >= len(NAMES):  # distinct files, so no cache or resume short-cut can help
            img = np.roll(img, 7 * i, axis=1)
        p = folder / f"img{i:04d}.png"
        write_image(p, img)
        paths.append(p)
    return paths


def bench_end_to_end(device: str, size: int = 1024, images: int = 2, model: str = "default",
                     progress: Callable[[str], None] = print) -> dict:
    """images/s and the per-part split for ``images`` PNGs of ``size``^2 (see module doc)."""
    from .batch import BatchOptions, enhance_archive
    from .enhancer import Enhancer

    with tempfile.TemporaryDirectory(prefix="xvert_e2e_") as tmp:
        tmp = Path(tmp)
        src = tmp / "in"
        src.mkdir()
        paths = _write_inputs(src, size, images)

        progress(f"end-to-end: I/O anchor, {images} x {size}^2 PNG")
        t0 = time.perf_counter()
        for i, p in enumerate(paths):
            r = read_image(p)
            write_image(tmp / f"copy{i}.png", r.pixels, like=r)
        io_seconds = time.perf_counter() - t0

        progress("end-to-end: split by part")
        enh = Enhancer.from_pretrained(model, device=device, profile=True)
        enh.enhance(read_image(paths[0]).pixels[:64, :64])  # warm-up: first-call costs
        enh.timings = {"preprocess": 0.0, "network": 0.0}
        split = {"read": 0.0, "enhance": 0.0, "write": 0.0}
        for i, p in enumerate(paths):
            t0 = time.perf_counter()
            r = read_image(p)
            t1 = time.perf_counter()
            out = enh.enhance(r.pixels, bits=r.bits)
            t2 = time.perf_counter()
            write_image(tmp / f"seq{i}.png", out, like=r)
            t3 = time.perf_counter()
            split["read"] += t1 - t0
            split["enhance"] += t2 - t1
            split["write"] += t3 - t2
        sequential = sum(split.values())
        per_image = {"read": split["read"] / images, "preprocess": enh.timings["preprocess"] / images,
                     "network": enh.timings["network"] / images, "write": split["write"] / images}
        per_image["other"] = split["enhance"] / images - per_image["preprocess"] - per_image["network"]

        progress("end-to-end: xvert-gpu enhance pipeline")
        opts = BatchOptions(inputs=[str(src)], outdir=str(tmp / "out"), model=model, device=device,
                            quiet=True)
        t0 = time.perf_counter()
        summary = enhance_archive(opts, stream=open(tmp / "log.txt", "w"))
        pipeline = time.perf_counter() - t0
        if summary.exit_code != 0:
            raise RuntimeError(f"the pipeline failed on some files: {(tmp / 'log.txt').read_text()}")

    return {"size": size, "images": images, "model": model, "device": enh.device,
            "precision": enh.precision, "seconds_per_image": per_image,
            "sequential_images_per_s": images / sequential,
            "pipeline_seconds": pipeline, "pipeline_images_per_s": images / pipeline,
            "io_only_images_per_s": images / io_seconds}


def print_end_to_end(r: dict) -> None:
    s = r["seconds_per_image"]
    print(f"\nend to end: {r['images']} x {r['size']}^2 PNG -> PNG, model {r['model']}, "
          f"{r['device']} {r['precision']}")
    print("  seconds per image: " + ", ".join(f"{k} {v:.3f}" for k, v in s.items()))
    print(f"  sequential {r['sequential_images_per_s']:.3f} images/s; xvert-gpu enhance pipeline "
          f"{r['pipeline_images_per_s']:.3f} images/s (model load included); "
          f"I/O only (anchor) {r['io_only_images_per_s']:.1f} images/s")
