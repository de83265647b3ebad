"""Spine ROIs: order, position, following a shifted/padded film, small images, validation."""

import numpy as np
import pytest

from xvert_gpu.roi import body_extent, crop_roi, spine_point, spine_rois
from xvert_gpu.samples import NAMES, load_sample

ROI = (256, 256)


def _centre(box):
    top, left, h, w = box
    return top + h / 2, left + w / 2


@pytest.fixture(scope="module", params=NAMES)
def film(request):
    return load_sample(request.param)


def test_boxes_ordered_and_near_centre(film):
    H, W = film.shape
    upper, lower = spine_rois(film, size=ROI)
    assert upper[2:] == ROI and lower[2:] == ROI
    assert upper[0] < lower[0]
    assert upper[1] == lower[1]
    for box in (upper, lower):
        y, x = _centre(box)
        assert abs(x - W / 2) < 0.1 * W
        assert 0 <= box[0] and box[0] + box[2] <= H and 0 <= box[1] and box[1] + box[3] <= W
    x, y_up, y_lo = spine_point(film)
    assert abs(x - W / 2) < 0.1 * W
    assert y_up < y_lo


def test_default_size_on_512_film_is_whole_image(film):
    assert spine_rois(film) == [(0, 0, 512, 512), (0, 0, 512, 512)]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64, np.int32])
def test_dtype_independent(film, dtype):
    scale = {np.uint16: 257, np.float32: 1 / 255, np.float64: 1 / 255}.get(dtype, 1)
    img = (film.astype(np.float64) * scale).astype(dtype)
    assert spine_rois(img, size=ROI) == spine_rois(film, size=ROI)


def test_follows_black_padding_on_the_left(film):
    padded = np.pad(film, ((0, 0), (200, 0)))
    assert body_extent(padded)[2] >= 195
    for size in (ROI, (512, 512)):
        ref = spine_rois(film, size=size)
        moved = spine_rois(padded, size=size)
        for a, b in zip(ref, moved):
            assert a[0] == b[0]
            assert abs((b[1] - a[1]) - 200) <= 30


@pytest.mark.parametrize("shift", [-120, 100])
def test_follows_sideways_shift(film, shift):
    if shift > 0:
        shifted = np.pad(film, ((0, 0), (shift, 0)))[:, :film.shape[1]]
    else:
        shifted = np.pad(film, ((0, 0), (0, -shift)))[:, -shift:]
    x0 = spine_point(film)[0]
    x1 = spine_point(shifted)[0]
    assert abs((x1 - x0) - shift) <= 30
    ref = spine_rois(film, size=ROI)
    moved = spine_rois(shifted, size=ROI)
    for a, b in zip(ref, moved):
        assert abs((b[1] - a[1]) - shift) <= 30


def test_follows_padding_on_top(film):
    padded = np.pad(film, ((80, 0), (0, 0)))
    for a, b in zip(spine_rois(film, size=ROI), spine_rois(padded, size=ROI)):
        assert abs((b[0] - a[0]) - 80) <= 30
        assert a[1] == b[1]


def test_image_smaller_than_roi(film):
    small = load_sample(NAMES[0], 200)
    boxes = spine_rois(small)
    assert boxes[0][0] < boxes[1][0]
    for box in boxes:
        assert box[2:] == (512, 512)
        crop = crop_roi(small, box)
        assert crop.shape == (512, 512) and crop.dtype == small.dtype
        # the whole image is inside the crop, the rest is zero
        assert crop.sum(dtype=np.int64) == small.sum(dtype=np.int64)
    tiny = np.full((7, 5), 3.0, dtype=np.float32)
    box = spine_rois(tiny, size=(16, 16))[0]
    assert crop_roi(tiny, box).shape == (16, 16)


def test_crop_roi_exact_and_padded():
    img = np.arange(30, dtype=np.uint16).reshape(5, 6)
    np.testing.assert_array_equal(crop_roi(img, (1, 2, 3, 2)), img[1:4, 2:4])
    c = crop_roi(img, (-2, -1, 4, 4))
    assert c.shape == (4, 4) and c.dtype == np.uint16
    np.testing.assert_array_equal(c[2:, 1:], img[:2, :3])
    assert c[:2].sum() == 0 and c[:, 0].sum() == 0
    assert crop_roi(img, (100, 100, 3, 3)).sum() == 0
    with pytest.raises(ValueError):
        crop_roi(img, (0, 0, 0, 3))


@pytest.mark.parametrize("bad", [np.zeros(5), np.zeros((0, 4)), np.zeros((2, 3, 3)),
                                 np.array([[1.0, np.nan], [0.0, 1.0]]),
                                 np.array([[1.0, np.inf], [0.0, 1.0]]),
                                 np.array([["a", "b"]])])
def test_validation(bad):
    with pytest.raises(ValueError):
        spine_rois(bad)


def test_constant_and_blank_images_do_not_fail():
    for img in (np.zeros((64, 64)), np.ones((64, 80), dtype=np.uint8)):
        boxes = spine_rois(img, size=(32, 32))
        assert len(boxes) == 2 and boxes[0][0] <= boxes[1][0]


def test_no_torch_needed():
    import subprocess
    import sys
    code = ("import sys; sys.modules['torch'] = None; import numpy as np; "
            "from xvert_gpu.roi import spine_rois; print(spine_rois(np.eye(64), (32, 32)))")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
