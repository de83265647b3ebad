"""``xvert-gpu preprocess``: folders walked as by ``enhance``, output-name collisions, errors."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from batch_helpers import crop, to_bits
from xvert_gpu import cli
from xvert_gpu.batch.paths import PREPROCESS_MARKER
from xvert_gpu.io import read_image, write_image
from xvert_gpu.preprocess import preprocess

pytestmark = pytest.mark.usefixtures("one_numba_thread")


@pytest.fixture
def run(capsys):
    """``xvert-gpu preprocess ARGS --device cpu`` in this process: (exit code, stdout, stderr)."""

    def call(*args):
        rc = cli.main(["preprocess", *map(str, args), "--device", "cpu"])
        out, err = capsys.readouterr()
        return rc, out, err

    return call


def png(path, i, size=64):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(crop(i, size, size)).save(path)
    return path


def expected(path, field):
    return getattr(preprocess(read_image(path).as_float(), device="cpu"), field)


def test_folders_are_walked_and_mirrored(tmp_path, run):
    src = tmp_path / "in"
    png(src / "a.png", 0)
    png(src / "sub" / "b.png", 1)
    (src / "notes.txt").write_text("not an image")
    png(src / "._a.png", 2)  # a macOS resource fork: hidden, ignored
    out = tmp_path / "out"
    rc, stdout, stderr = run(src, "-o", out)
    assert rc == 0, stderr
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == [PREPROCESS_MARKER, "a_hfc.tif", "a_xp.tif", "sub/b_hfc.tif",
                       "sub/b_xp.tif"]
    for rel, source, field in [("a_xp.tif", "a.png", "xp"), ("sub/b_hfc.tif", "sub/b.png", "hfc")]:
        got = tifffile.imread(out / rel)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, expected(src / source, field))
    assert f"{src / 'notes.txt'}: ignored" in stdout and "2 done, 0 failed, 2 ignored" in stdout


def test_same_stem_fails_the_second_input(tmp_path, run):
    first, second = png(tmp_path / "in" / "a.png", 3), png(tmp_path / "other" / "a.png", 4)
    out = tmp_path / "pp"
    rc, stdout, stderr = run(first, second, "-o", out)
    assert rc == 1
    assert f"error: {second}: its output a_xp.tif is already the output of {first}" in stderr
    assert sorted(p.name for p in out.iterdir()) == [PREPROCESS_MARKER, "a_hfc.tif", "a_xp.tif"]
    np.testing.assert_array_equal(tifffile.imread(out / "a_xp.tif"), expected(first, "xp"))
    # a.png and a.tif in one folder would both give a_xp.tif too
    write_image(tmp_path / "in" / "a.tif", to_bits(crop(5), 12), bits=12)
    rc, _, stderr = run(tmp_path / "in", "-o", tmp_path / "pp2")
    assert rc == 1 and f"{tmp_path / 'in' / 'a.tif'}: its output a_xp.tif" in stderr


def test_errors_name_the_file_once_and_the_rest_goes_on(tmp_path, run):
    good = png(tmp_path / "in" / "good.png", 6)
    data = good.read_bytes()
    bad = tmp_path / "in" / "bad_trunc.png"
    bad.write_bytes(data[: len(data) // 2])
    rc, _, stderr = run(bad, good, "-o", tmp_path / "out")
    assert rc == 1
    [line] = [ln for ln in stderr.splitlines() if str(bad) in ln]
    assert line.startswith(f"error: {bad}: ") and line.count(str(bad)) == 1, line
    assert (tmp_path / "out" / "good_xp.tif").is_file()
    assert not (tmp_path / "out" / "bad_trunc_xp.tif").exists()
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")] == \
        [PREPROCESS_MARKER]  # no temporary file left


def test_file_names_that_are_not_utf8_do_not_stop_the_run(tmp_path, run):
    """A Latin-1 name (surrogate escapes) printed to a strict UTF-8 stdout (capsys is one)
    raised after its outputs were written, and the files after it were never preprocessed."""
    import os

    first = tmp_path / "in" / os.fsdecode(b"a_caf\xe9.png")
    try:
        png(first, 7)
    except (OSError, UnicodeError):
        pytest.skip("the file system refuses file names that are not UTF-8")
    png(tmp_path / "in" / "b.png", 8)
    rc, stdout, stderr = run(tmp_path / "in", "-o", tmp_path / "out")
    assert rc == 0, stderr
    assert "a_caf\\xe9.png: WLS iterations" in stdout and "2 done, 0 failed" in stdout
    assert (tmp_path / "out" / "b_xp.tif").is_file()


def test_bit_depth_and_layout_refusal(tmp_path, run):
    # a 12-bit image is scaled by 4095, not by its uint16 container's 65535
    a8 = crop(7)
    Image.fromarray(a8).save(tmp_path / "a8.png")
    write_image(tmp_path / "a12.png", np.rint(a8 * (4095 / 255)).astype(np.uint16), bits=12)
    out = tmp_path / "out"
    assert run(tmp_path / "a8.png", tmp_path / "a12.png", "-o", out)[0] == 0
    xp8, xp12 = (tifffile.imread(out / f"{n}_xp.tif") for n in ("a8", "a12"))
    np.testing.assert_allclose(xp12, xp8, atol=2e-3)
    # an input inside OUTDIR: a usage error, nothing written next to the input
    before = sorted(p.name for p in tmp_path.iterdir())
    rc, _, stderr = run(tmp_path / "a8.png", "-o", tmp_path)
    assert rc == 2 and "inside OUTDIR" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_outdir_inside_the_input_folder_can_be_rerun_and_is_not_walked(tmp_path, run):
    """preprocess keeps no manifest, so its OUTDIR inside an input folder was refused on every
    rerun ('holds files that are not output of this command'), and a run into another OUTDIR
    walked it, failing on each Xp/HFC float TIFF (values outside [0, 1])."""
    src = tmp_path / "in"
    png(src / "a.png", 3, 32)
    assert run(src, "-o", src / "pp")[0] == 0
    rc, out, err = run(src, "-o", src / "pp")
    assert rc == 0 and "1 done, 0 failed" in out, err
    rc, out, err = run(src, "-o", src / "pp2")
    assert rc == 0 and "1 done, 0 failed, 1 ignored" in out and "an earlier OUTDIR" in out, err
    assert sorted(p.name for p in (src / "pp2").glob("*.tif")) == ["a_hfc.tif", "a_xp.tif"]


_SIGTERM_DRIVER = """
import os, signal, sys
from xvert_gpu import cli
real_fsync, calls = os.fsync, []
def fsync_then_sigterm(fd):  # SIGTERM while the third output file (1_xp.tif) is written
    calls.append(fd)
    real_fsync(fd)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGTERM)
os.fsync = fsync_then_sigterm
sys.exit(cli.main(["preprocess", sys.argv[1], "-o", sys.argv[2], "--device", "cpu"]))
"""


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGTERM"), reason="POSIX signals")
def test_sigterm_stops_like_ctrl_c_and_leaves_no_temporary_file(tmp_path):
    """SIGTERM killed the command outright (no message, exit -15, and a hidden temporary file
    left when it came during a write); it now stops as Ctrl-C does, with exit status 143."""
    import os
    import subprocess
    import sys

    src = tmp_path / "in"
    for i in range(3):
        png(src / f"{i}.png", i)
    env = dict(os.environ, NUMBA_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", _SIGTERM_DRIVER, str(src), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 143, (proc.returncode, proc.stderr[-2000:])
    assert "interrupted (SIGTERM)" in proc.stderr
    left = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert left == [PREPROCESS_MARKER, "0_hfc.tif", "0_xp.tif"], left
