"""Training data of SPEC section 5: two spine ROIs per radiograph, split by image.

Every image gives two square ROIs (upper and lower spine, :func:`xvert_gpu.roi.spine_rois`),
zero-padded where the image is smaller.  The split is by image (70/20/10 by default),
so the two crops of one film never sit on both sides of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .io import file_sha256, image_files, read_image
from .roi import crop_roi, spine_rois


def find_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Image files among ``inputs`` (files, or folders walked recursively), sorted, no duplicates."""
    found: dict[Path, None] = {}
    for item in map(Path, inputs):
        if item.is_dir():
            for p in image_files(item):
                found[p.resolve()] = None
        elif item.is_file():
            found[item.resolve()] = None
        else:
            raise FileNotFoundError(f"{item}: no such file or folder")
    return sorted(found)


@dataclass
class RoiSet:
    """ROI crops (M, S, S) float32 on [0, 1], with the image each came from."""

    crops: np.ndarray
    image_index: np.ndarray
    paths: list[Path]
    checksums: list[str] = field(default_factory=list)

    def subset(self, images: Sequence[int]) -> np.ndarray:
        """Indices of the crops that belong to the given images."""
        return np.flatnonzero(np.isin(self.image_index, np.asarray(images, dtype=int)))


def load_rois(paths: Sequence[Path], size: int = 512) -> RoiSet:
    """Read each image at its true bit depth and cut its two spine ROIs."""
    crops, owner = [], []
    for i, path in enumerate(paths):
        r = read_image(path)  # ImageReadError names the file
        x = r.as_float()
        for box in spine_rois(x, size=(size, size)):
            crops.append(crop_roi(x, box))
            owner.append(i)
    if not crops:
        raise ValueError("no training images")
    return RoiSet(np.stack(crops).astype(np.float32), np.asarray(owner), list(paths),
                  [file_sha256(p) for p in paths])


def split_images(n: int, fractions: Sequence[float] = (0.7, 0.2, 0.1),
                 seed: int = 0) -> tuple[list[int], list[int], list[int]]:
    """Shuffle image indices with ``seed`` and cut them into train / validation / test.

    Validation gets at least one image when there are two or more (early
    stopping needs it); test gets ``round(fraction * n)``; train keeps the rest
    and always at least one.
    """
    if n < 1:
        raise ValueError("need at least one image")
    f = np.asarray(fractions, dtype=float)
    if f.shape != (3,) or (f < 0).any() or not np.isclose(f.sum(), 1.0):
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1; got {fractions}")
    order = np.random.default_rng(seed).permutation(n).tolist()
    n_val = int(round(f[1] * n))
    if n >= 2 and f[1] > 0:
        n_val = max(1, n_val)
    n_test = int(round(f[2] * n))
    while n - n_val - n_test < 1:
        if n_test > 0:
            n_test -= 1
        else:
            n_val -= 1
    val, test = order[:n_val], order[n_val:n_val + n_test]
    return sorted(order[n_val + n_test:]), sorted(val), sorted(test)
