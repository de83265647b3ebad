"""Shared helpers of the batch enhancer tests: a tiny model and small test radiographs."""

from __future__ import annotations

import functools
import sqlite3
from pathlib import Path

import numpy as np

from xvert_gpu.samples import NAMES, load_sample


TINY_META = {"model": {"base_channels": 4, "depth": 2, "guidance": True}, "chain": {"steps": 2}}


def tiny_nets() -> list:
    """Two depth-2, 4-channel GL-U-Nets in eval mode (random weights, seed 0; global RNG untouched)."""
    import torch

    from xvert_gpu.model import GLUNet

    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(0)
        return [GLUNet(4, depth=2).eval() for _ in range(2)]
    finally:
        torch.random.set_rng_state(state)


def make_tiny_model(path: Path) -> Path:
    """A 2-stage artefact of :func:`tiny_nets`."""
    from xvert_gpu import artefact

    return artefact.save(tiny_nets(), path, TINY_META)


@functools.lru_cache(maxsize=None)
def _sample(index: int) -> np.ndarray:
    return load_sample(NAMES[index % 2], 512)


def crop(i: int, h: int = 64, w: int = 96) -> np.ndarray:
    """A different uint8 (h, w) crop of a bundled sample for each ``i`` (over the spine)."""
    img = _sample(i)
    r = 120 + (37 * i) % (512 - 120 - h)
    c = 200 + (11 * i) % 80
    return np.ascontiguousarray(img[r:r + h, c:c + w])


def to_bits(a8: np.ndarray, bits: int) -> np.ndarray:
    """uint8 -> uint16 at ``bits`` bits (with low bits that are not all zero)."""
    top = 2 ** bits - 1
    return np.clip(np.rint(a8.astype(np.float64) * top / 255 + (a8 % 3)), 0, top).astype(np.uint16)


def manifest_rows(outdir: Path) -> dict[str, dict]:
    """Rows of OUTDIR's manifest by output path (read-only connection)."""
    db = sqlite3.connect(f"file:{outdir / 'xvert_manifest.sqlite'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return {r["input"]: dict(r) for r in db.execute("SELECT * FROM files")}
    finally:
        db.close()


def image_files(outdir: Path) -> dict[str, bytes]:
    """{relative path: bytes} of the visible image files under ``outdir``."""
    from xvert_gpu.io import EXTENSIONS

    return {p.relative_to(outdir).as_posix(): p.read_bytes() for p in sorted(outdir.rglob("*"))
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in EXTENSIONS}


def flat_png_jobs(folder: Path, count: int) -> list:
    """``count`` flat 8x10 PNGs ``0.png``... (values 40, 41, ...) in ``folder``, as pipeline jobs."""
    from xvert_gpu.batch.paths import Job
    from xvert_gpu.io import write_image

    folder.mkdir(parents=True, exist_ok=True)
    jobs = []
    for i in range(count):
        path = str(folder / f"{i}.png")
        write_image(path, np.full((8, 10), 40 + i, np.uint8))
        jobs.append(Job(path, path, f"{i}.png", "png", "png"))
    return jobs
