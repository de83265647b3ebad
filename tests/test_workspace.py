"""The CPU solver's pool of work memory (``xvert_gpu.cpu.workspace``)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from xvert_gpu import wls_smooth
from xvert_gpu.cpu import workspace
from xvert_gpu.samples import NAMES, load_sample


@pytest.fixture(autouse=True)
def _empty_pool():
    workspace.clear()
    yield
    workspace.clear()


def test_outside_a_lease_arrays_are_plain_and_unpooled():
    a = workspace.empty((3, 4), np.float32)
    assert a.shape == (3, 4) and a.dtype == np.float32 and a.flags.c_contiguous
    workspace.give_back(a)  # not leased: nothing happens
    assert workspace.pooled_bytes() == 0
    z = workspace.zeros(5, np.int32)
    assert z.shape == (5,) and not z.any()


def test_a_lease_reuses_the_memory_of_the_previous_one():
    with workspace.lease():
        a = workspace.empty((64, 64), np.float32)
        address = a.ctypes.data
    assert workspace.pooled_bytes() == a.nbytes
    with workspace.lease():
        b = workspace.empty((64, 64), np.float32)
        assert b.ctypes.data == address  # same block
        # a block is matched by size alone: int32 labels and float64 half-images share it
        c = workspace.empty((32, 128), np.float32)
        assert c.ctypes.data != address
    assert workspace.pooled_bytes() == 2 * b.nbytes
    with workspace.lease():
        d = workspace.empty(64 * 64, np.int32)
        e = workspace.empty((64, 32), np.float64)
        assert {d.ctypes.data, e.ctypes.data} == {address, c.ctypes.data}


def test_zeros_are_zero_even_from_a_dirty_block():
    with workspace.lease():
        workspace.empty(100, np.float64).fill(7.0)
    with workspace.lease():
        z = workspace.zeros(100, np.float64)
        assert not z.any()


def test_blocks_given_back_early_serve_the_same_lease():
    with workspace.lease():
        tmp = workspace.empty((8, 8))
        address = tmp.ctypes.data
        workspace.give_back(tmp)
        again = workspace.empty((8, 8))
        assert again.ctypes.data == address
        other = workspace.empty((8, 8))
        assert other.ctypes.data != address


def test_nested_leases_belong_to_the_outer_one():
    with workspace.lease():
        with workspace.lease():
            a = workspace.empty(256, np.uint8)
        assert workspace.pooled_bytes() == 0  # still the outer lease's
        a[:] = 1
    assert workspace.pooled_bytes() == 256


def test_the_pool_keeps_no_more_than_the_largest_lease():
    with workspace.lease():
        workspace.empty(1000, np.uint8)
    with workspace.lease():
        workspace.empty(3000, np.uint8)  # a new size: 1000 bytes stay idle beside it
    assert workspace.pooled_bytes() <= 3000
    workspace.clear()
    assert workspace.pooled_bytes() == 0


def _image(seed, size=(90, 77)):
    # odd widths on several levels: the column factors' padding entries must stay zero
    x = load_sample(NAMES[seed % len(NAMES)], size).astype(np.float32) / np.float32(255)
    return np.ascontiguousarray(np.roll(x, 7 * seed, axis=1))


def test_a_solve_does_not_depend_on_what_the_pool_held_before():
    """Uninitialised pool memory holds the last solve's values: a kernel that read any of it
    before writing it would change the next solve's result."""
    a, b = _image(0), _image(1)
    first = wls_smooth(a, device="cpu")
    kept = first.copy()
    assert workspace.pooled_bytes() > 0
    wls_smooth(b, device="cpu")  # the pool now holds b's arrays
    again = wls_smooth(a, device="cpu")
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(first, kept)  # the returned image is the caller's, not leased
    workspace.clear()
    np.testing.assert_array_equal(wls_smooth(a, device="cpu"), first)


def test_concurrent_solves_lease_separate_memory():
    images = [_image(s) for s in range(4)]
    want = [wls_smooth(x, device="cpu") for x in images]
    got = [None] * len(images)

    def solve(i):
        got[i] = wls_smooth(images[i], device="cpu")

    threads = [threading.Thread(target=solve, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
