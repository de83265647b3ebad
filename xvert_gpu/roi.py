"""Spine regions of interest on a PA chest film (SPEC section 5).

:func:`spine_rois` returns two boxes ``(top, left, height, width)``, the upper
spine first, then the lower.  The method, in image coordinates (NumPy only):

1. **Body extent.**  The image is scaled to [0, 1] by its minimum and 99.5th
   percentile.  A column (row) belongs to the body when its mean exceeds 15 % of
   that range; the body is the longest run of such columns (rows).  Black padding
   or a black margin of a shifted film is therefore excluded.
2. **Spine column.**  Over the upper chest (rows at 15-50 % of the body's height,
   where the spine and mediastinum are flanked by the dark lungs), the column
   means are smoothed with a box of ~1/40 of the body width, and only the central
   50 % of the body width is searched.  The brightest column there lies inside
   the bright vertical band of the spine and mediastinum; the band is grown from
   it while the profile stays above halfway between that peak and the darkest
   (lung) column of the searched range, and the spine column is the band's
   midpoint (the midpoint, not the peak, because the heart and aortic arch make
   the band asymmetric).  The same column serves both boxes.
3. **Vertical centres.**  The upper box is centred at 35 % of the body's height
   (upper thoracic spine, between the lung apices and the carina), the lower box
   at 70 % (lower thoracic / thoraco-lumbar spine, behind the heart and the
   diaphragm domes).

Boxes: along an axis where the image is at least as long as the ROI, the box is
shifted to lie inside the image (so an image exactly the ROI size gives the whole
image twice).  Where the image is shorter than the ROI, the box is centred on the
spine point and extends beyond the image: the caller pads, e.g. with
:func:`crop_roi`, which zero-pads so its crop is always exactly the ROI size.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["spine_rois", "spine_point", "body_extent", "crop_roi"]

UPPER_FRACTION = 0.35
LOWER_FRACTION = 0.70
BODY_THRESHOLD = 0.15


def _validate(image: Any) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W), got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"image is empty, shape {a.shape}")
    if a.dtype == bool:
        a = a.astype(np.float64)
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"image must be numeric, got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    if not np.all(np.isfinite(a)):
        raise ValueError("image contains NaN or infinite values")
    return a


def _normalise(a: np.ndarray) -> np.ndarray:
    lo = float(a.min())
    hi = float(np.percentile(a, 99.5))
    if hi <= lo:
        hi = float(a.max())
    if hi <= lo:
        return np.zeros_like(a)
    return np.clip((a - lo) / (hi - lo), 0.0, 1.0)


def _longest_run(mask: np.ndarray) -> tuple[int, int]:
    """[start, stop) of the longest run of True; the whole axis when there is none."""
    best = (0, 0)
    start = None
    for i, m in enumerate(np.append(mask, False)):
        if m and start is None:
            start = i
        elif not m and start is not None:
            if i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    if best[1] == best[0]:
        return 0, mask.size
    return best


def _smooth(profile: np.ndarray, width: int) -> np.ndarray:
    width = max(1, int(width))
    if width == 1 or profile.size < 2:
        return profile.copy()
    kernel = np.ones(width) / width
    pad = width // 2
    padded = np.pad(profile, (pad, width - 1 - pad), mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def body_extent(image: Any) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the body, bottom/right exclusive (step 1)."""
    n = _normalise(_validate(image))
    return _body_extent(n)


def _body_extent(n: np.ndarray) -> tuple[int, int, int, int]:
    left, right = _longest_run(n.mean(axis=0) > BODY_THRESHOLD)
    top, bottom = _longest_run(n[:, left:right].mean(axis=1) > BODY_THRESHOLD)
    return top, bottom, left, right


def spine_point(image: Any) -> tuple[float, float, float]:
    """(x, y_upper, y_lower): the spine column and the two vertical ROI centres."""
    n = _normalise(_validate(image))
    top, bottom, left, right = _body_extent(n)
    height, width = bottom - top, right - left
    r0 = top + int(round(0.15 * height))
    r1 = max(r0 + 1, top + int(round(0.50 * height)))
    profile = _smooth(n[r0:r1, left:right].mean(axis=0), max(1, width // 40))
    c0 = int(round(0.25 * width))
    c1 = max(c0 + 1, int(round(0.75 * width)))
    central = profile[c0:c1]
    peak = int(np.argmax(central))
    level = 0.5 * (central[peak] + central.min())
    lo = peak
    while lo > 0 and central[lo - 1] >= level:
        lo -= 1
    hi = peak
    while hi < central.size - 1 and central[hi + 1] >= level:
        hi += 1
    x = left + c0 + 0.5 * (lo + hi)
    y_upper = top + UPPER_FRACTION * height
    y_lower = top + LOWER_FRACTION * height
    return float(x), float(y_upper), float(y_lower)


def _place(center: float, length: int, extent: int) -> int:
    start = int(round(center - length / 2.0))
    if extent >= length:
        start = min(max(start, 0), extent - length)
    return start


def spine_rois(image: Any, size: tuple[int, int] = (512, 512)) -> list[tuple[int, int, int, int]]:
    """Two ROIs ``[(top, left, height, width), ...]`` on the spine, upper first, then lower.

    Parameters
    ----------
    image : 2-D array of any numeric dtype
        A PA chest radiograph (bright bone, dark lungs).
    size : (height, width)
        ROI size.  Boxes lie inside the image along each axis where the image is
        at least that long; elsewhere they extend beyond it (crop with
        :func:`crop_roi`, which zero-pads).
    """
    h_roi, w_roi = (int(size[0]), int(size[1]))
    if h_roi < 1 or w_roi < 1:
        raise ValueError(f"size must be positive, got {size}")
    a = _validate(image)
    x, y_up, y_lo = spine_point(a)
    H, W = a.shape
    left = _place(x, w_roi, W)
    return [(_place(y, h_roi, H), left, h_roi, w_roi) for y in (y_up, y_lo)]


def crop_roi(image: Any, box: tuple[int, int, int, int], fill: float = 0) -> np.ndarray:
    """The box's pixels as an array of exactly ``(height, width)``, same dtype as ``image``.

    Parts of the box outside the image are filled with ``fill`` (0: black).
    """
    a = np.asarray(image)
    if a.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W), got shape {a.shape}")
    top, left, height, width = (int(v) for v in box)
    if height < 1 or width < 1:
        raise ValueError(f"box height and width must be positive, got {box}")
    out = np.full((height, width), fill, dtype=a.dtype)
    H, W = a.shape
    y0, y1 = max(top, 0), min(top + height, H)
    x0, x1 = max(left, 0), min(left + width, W)
    if y1 > y0 and x1 > x0:
        out[y0 - top:y1 - top, x0 - left:x1 - left] = a[y0:y1, x0:x1]
    return out
