"""The bundled sample radiographs (NIH ChestX-ray14; see data/SOURCES.md)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

NAMES = ("00000001_000.png", "00027426_000.png")


def sample_path(name: str = NAMES[0]) -> Path:
    """Path of a bundled sample file."""
    if name not in NAMES:
        raise ValueError(f"unknown sample {name!r}; choose from {NAMES}")
    return Path(str(resources.files("xvert_gpu") / "data" / name))


def load_sample(name: str = NAMES[0], size: int | tuple[int, int] | None = None) -> np.ndarray:
    """A sample as uint8 (H, W), optionally resized (bicubic, kept 8-bit like a real PNG).

    Parameters
    ----------
    name : str
        One of :data:`NAMES`.
    size : int or (height, width), optional
        Resize to this size; 8-bit quantisation is kept, so an upsampled sample
        has the plateaus and one-level steps that make the WLS system hard.
    """
    img = Image.open(sample_path(name)).convert("L")
    if size is not None:
        h, w = (size, size) if isinstance(size, int) else size
        img = img.resize((int(w), int(h)), Image.BICUBIC)
    return np.asarray(img, dtype=np.uint8).copy()
