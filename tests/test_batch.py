"""``xvert-gpu enhance`` end to end with a tiny model: formats and bit depths, the bad-input
corpus, resume/overwrite, refusals."""

from __future__ import annotations

import os
import shutil
import sqlite3

import numpy as np
import pytest

from batch_helpers import crop, image_files, make_tiny_model, manifest_rows, to_bits
from xvert_gpu import cli
from xvert_gpu.io import read_image, write_image


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny.pt")


@pytest.fixture
def enhance(capsys, model):
    """Run ``xvert-gpu enhance ARGS --model tiny --threads 1`` in this process:
    (exit code, stdout, stderr). One thread: on 2 busy cores, tiny images are much faster so."""

    def run(*args, model_arg=True, threads="1"):
        argv = ["enhance", *map(str, args)] + (["--model", str(model)] if model_arg else [])
        argv += ["--threads", threads] if threads else []
        rc = cli.main(argv)
        out, err = capsys.readouterr()
        return rc, out, err

    return run


def dicom_input(path, pixels, bits, patient="P123"):
    """A derived-DICOM input with a patient ID (uncompressed, ``bits`` stored)."""
    write_image(path, pixels, bits=bits, format="dicom")
    rad = read_image(path)
    rad.dataset.PatientID = patient
    rad.dataset.PatientName = "Test^Patient"
    write_image(path.with_suffix(".tmp.dcm"), rad.pixels, like=rad, format="dicom")
    os.replace(path.with_suffix(".tmp.dcm"), path)
    return path


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """A small archive of every format and bit depth, plus a non-image file."""
    import tifffile
    from PIL import Image

    src = tmp_path_factory.mktemp("archive") / "in"
    (src / "sub" / "deep").mkdir(parents=True)
    Image.fromarray(crop(0)).save(src / "a8.png")
    Image.fromarray(crop(1)).save(src / "sub" / "b.jpg", quality=95)
    write_image(src / "sub" / "c12.png", to_bits(crop(2), 12), bits=12)
    write_image(src / "sub" / "c12.tif", to_bits(crop(3), 12), bits=12)
    dicom_input(src / "sub" / "deep" / "d12.dcm", to_bits(crop(4), 12), 12)
    write_image(src / "sub" / "deep" / "e16.png", to_bits(crop(5), 16), bits=16)
    tifffile.imwrite(src / "f32.tif", crop(6).astype(np.float32) / 255)
    (src / "notes.txt").write_text("not an image")
    return src


EXPECTED = {  # output -> (input, format, bits)
    "a8.png": ("a8.png", "png", 8),
    "sub/b.png": ("sub/b.jpg", "png", 8),
    "sub/c12.png": ("sub/c12.png", "png", 12),
    "sub/c12.tif": ("sub/c12.tif", "tiff", 12),
    "sub/deep/d12.dcm": ("sub/deep/d12.dcm", "dicom", 12),
    "sub/deep/e16.png": ("sub/deep/e16.png", "png", 16),
    "f32.tif": ("f32.tif", "tiff", 32),
}


def test_mirror_tree_formats_and_bit_depths(archive, enhance, tmp_path, model):
    out = tmp_path / "out"
    rc, stdout, stderr = enhance(archive, "-o", out)
    assert rc == 0, stdout + stderr
    assert "7 done" in stdout and "0 failed" in stdout and "1 ignored" in stdout
    assert "notes.txt: not an image" in stdout
    assert "img/s" in stderr or "s/img" in stderr  # the progress bar
    assert set(image_files(out)) == set(EXPECTED)
    for rel, (src_rel, fmt, bits) in EXPECTED.items():
        src, res = read_image(archive / src_rel), read_image(out / rel)
        assert (res.format, res.bits, res.shape) == (fmt, bits, src.shape), rel
        assert res.pixels.dtype == src.pixels.dtype
        assert not np.array_equal(res.as_float(), src.as_float())  # it was enhanced
    ds = read_image(out / "sub/deep/d12.dcm").dataset
    src_ds = read_image(archive / "sub/deep/d12.dcm").dataset
    assert ds.PatientID == "P123" and ds.StudyInstanceUID == src_ds.StudyInstanceUID
    assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert ds.SOPInstanceUID != src_ds.SOPInstanceUID
    rows = manifest_rows(out)
    identity = rows[str(archive / "a8.png")]["model"]
    assert "XVertNet" in ds.DerivationDescription and identity in ds.DerivationDescription
    assert len(rows) == 7 and {r["status"] for r in rows.values()} == {"done"}
    row = rows[str(archive / "sub/deep/d12.dcm")]
    assert (row["output"], row["bits"], row["width"], row["height"]) == ("sub/deep/d12.dcm", 12, 96, 64)
    assert row["out_size"] == (out / "sub/deep/d12.dcm").stat().st_size and len(row["sha256"]) == 64
    assert not [p for p in out.rglob("*.tmp")]

    # other output formats keep the bit depth too; c12.png and c12.tif now collide
    out2 = tmp_path / "out2"
    rc, stdout, _ = enhance(archive / "sub", "-o", out2, "--format", "tiff", "-q")
    assert rc == 1 and "4 done" in stdout
    assert (f"{archive / 'sub' / 'c12.tif'}: its output c12.tif is already the output of "
            f"{archive / 'sub' / 'c12.png'}") in stdout
    assert {r: read_image(out2 / r).bits for r in ("b.tif", "c12.tif", "deep/d12.tif",
                                                    "deep/e16.tif")} == \
        {"b.tif": 8, "c12.tif": 12, "deep/d12.tif": 12, "deep/e16.tif": 16}
    rc, stdout, _ = enhance(archive / "sub" / "deep", archive / "a8.png", "-o", tmp_path / "out3",
                            "--format", "dcm", "-q")
    assert rc == 1
    assert f"{archive / 'a8.png'}: --format dcm needs a DICOM input" in stdout
    assert read_image(tmp_path / "out3" / "d12.dcm").bits == 12
    assert not (tmp_path / "out3" / "a8.dcm").exists()


def test_bad_inputs_are_reported_and_the_rest_is_done(tmp_path, enhance):
    import pydicom
    import tifffile
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(crop(7)).save(src / "good1.png")
    write_image(src / "good2.tif", to_bits(crop(8), 12), bits=12)
    (src / "zero.png").write_bytes(b"")
    good = (src / "good1.png").read_bytes()
    (src / "truncated.png").write_bytes(good[: len(good) // 2])
    (src / "random.png").write_bytes(np.random.default_rng(0).bytes(3000))
    rgb = np.stack([crop(9), crop(10), crop(11)], axis=-1)
    Image.fromarray(rgb).save(src / "colour.png")
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(src / "one.png")
    nan = crop(12).astype(np.float32) / 255
    nan[3, 4] = np.nan
    tifffile.imwrite(src / "nan.tif", nan)
    write_image(src / "nopixels.dcm", crop(13), format="dicom")
    ds = pydicom.dcmread(src / "nopixels.dcm")
    del ds.PixelData
    ds.save_as(src / "nopixels.dcm")
    notes = tmp_path / "notes.xyz"
    notes.write_text("hello")

    out = tmp_path / "out"
    rc, stdout, stderr = enhance(src, notes, "-o", out, "-q", threads=None)  # defaults too
    assert rc == 1
    assert "2 done" in stdout and "8 failed" in stdout
    expected = {"zero.png": "empty file", "truncated.png": "truncated",
                "random.png": "bad signature", "colour.png": "colour image",
                "one.png": "too small", "nan.tif": "NaN", "nopixels.dcm": "without pixel data"}
    for name, reason in expected.items():
        line = [ln for ln in stdout.splitlines() if ln.strip().startswith(f"{src / name}: ")]
        assert len(line) == 1 and reason in line[0], (name, stdout)
        assert f"{src / name}: " in stderr  # reported as it happened too
    assert f"{notes}: unknown extension '.xyz'" in stdout
    assert set(image_files(out)) == {"good1.png", "good2.tif"}
    rows = manifest_rows(out)
    assert {k: r["status"] for k, r in rows.items()} == {
        **{str(src / n): "failed" for n in expected}, str(notes): "failed",
        str(src / "good1.png"): "done", str(src / "good2.tif"): "done"}
    assert "empty file" in rows[str(src / "zero.png")]["error"]

    # rerun: done files are skipped, failed ones retried (and fail again)
    rc, stdout, _ = enhance(src, notes, "-o", out, "-q")
    assert rc == 1 and "0 done, 2 skipped" in stdout and "8 failed" in stdout
    rows2 = manifest_rows(out)
    assert rows2[str(src / "zero.png")]["attempts"] == 2 and rows2[str(notes)]["attempts"] == 2
    assert rows2[str(src / "good1.png")] == rows[str(src / "good1.png")]


def test_resume_skips_done_files_and_overwrite_redoes(tmp_path, enhance):
    from PIL import Image

    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    names = ["x0.png", "x1.png", "sub/x2.png"]
    for i, n in enumerate(names):
        Image.fromarray(crop(20 + i)).save(src / n)
    out = tmp_path / "out"
    assert enhance(src, "-o", out, "-q")[0] == 0
    first = manifest_rows(out)
    first_files = image_files(out)
    mtimes = {n: (out / n).stat().st_mtime_ns for n in names}

    rc, stdout, _ = enhance(src, "-o", out, "-q")
    assert rc == 0 and "0 done, 3 skipped" in stdout
    assert manifest_rows(out) == first  # attempts, timestamps: untouched
    assert {n: (out / n).stat().st_mtime_ns for n in names} == mtimes

    # a changed input and a deleted output are redone, nothing else
    Image.fromarray(crop(30)).save(src / "x1.png")
    (out / "sub" / "x2.png").unlink()
    rc, stdout, _ = enhance(src, "-o", out, "-q")
    assert rc == 0 and "2 done, 1 skipped" in stdout
    rows = manifest_rows(out)
    assert rows[str(src / "x0.png")] == first[str(src / "x0.png")]
    assert rows[str(src / "x1.png")]["attempts"] == 2
    assert rows[str(src / "x1.png")]["sha256"] != first[str(src / "x1.png")]["sha256"]
    assert (out / "sub" / "x2.png").read_bytes() == first_files["sub/x2.png"]  # deterministic

    # the manifest's outputs are relative to OUTDIR: a moved OUTDIR still resumes; so does a
    # moved archive (same bytes, new paths)
    moved = tmp_path / "moved"
    shutil.move(out, moved)
    assert "0 done, 3 skipped" in enhance(src, "-o", moved, "-q")[1]
    shutil.move(src, tmp_path / "in2")
    src = tmp_path / "in2"
    assert "0 done, 3 skipped" in enhance(src, "-o", moved, "-q")[1]
    assert set(manifest_rows(moved)) == {str(src / n) for n in names}
    # a different archive with the same names is not mixed into it
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(crop(31)).save(other / "x0.png")
    rc, stdout, _ = enhance(other, "-o", moved, "-q")
    assert rc == 1 and f"holds the enhanced {src / 'x0.png'}" in stdout

    rc, stdout, _ = enhance(src, "-o", moved, "-q", "--overwrite")
    assert rc == 0 and "3 done, 0 skipped" in stdout
    rows = manifest_rows(moved)
    assert all(rows[str(src / n)]["attempts"] >= 2 for n in names)
    assert "3 done" in enhance(src, "-o", moved, "-q", "--no-resume")[1]
    # another output format is another parameter set
    rc, stdout, _ = enhance(src, "-o", moved, "-q", "--format", "tiff")
    assert rc == 0 and "3 done" in stdout and (moved / "sub" / "x2.tif").exists()
    assert pairs(moved)[(str(src / "x0.png"), "x0.tif")] == "done"
    assert pairs(moved)[(str(src / "x0.png"), "x0.png")] == "done"  # still on record
    assert "0 done, 3 skipped" in enhance(src, "-o", moved, "-q")[1]  # --format same again
    # a choice that writes the same file as the last one is no change: --format png on PNG
    # inputs was redone (the row recorded "same"), and --format same after it again
    assert "0 done, 3 skipped" in enhance(src, "-o", moved, "-q", "--format", "png")[1]
    assert "0 done, 3 skipped" in enhance(src, "-o", moved, "-q", "--format", "tiff")[1]
    # rows written before the manifest recorded the format written (they hold the choice)
    db = sqlite3.connect(moved / "xvert_manifest.sqlite")
    with db:
        db.execute("""UPDATE files SET params = json_set(params, '$.format', 'same')
                      WHERE output LIKE '%.png'""")
    db.close()
    assert "0 done, 3 skipped" in enhance(src, "-o", moved, "-q", "--format", "png")[1]


def pairs(outdir) -> dict[tuple[str, str], str]:
    """{(input, output): status} of OUTDIR's manifest."""
    import sqlite3

    db = sqlite3.connect(f"file:{outdir / 'xvert_manifest.sqlite'}?mode=ro", uri=True)
    try:
        return {(i, o): st for i, o, st in db.execute("SELECT input, output, status FROM files")}
    finally:
        db.close()


def test_an_input_named_two_ways_keeps_both_outputs(tmp_path, enhance):
    """Inside its folder, then as a file: two outputs, both remembered, both skipped after."""
    from PIL import Image

    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(crop(60)).save(src / "sub" / "g.png")
    out = tmp_path / "out"
    assert enhance(src, "-o", out, "-q")[0] == 0  # -> out/sub/g.png
    rc, stdout, _ = enhance(src / "sub" / "g.png", "-o", out, "-q")  # -> out/g.png
    assert rc == 0 and "1 done" in stdout
    written = image_files(out)
    assert set(written) == {"sub/g.png", "g.png"}
    for _ in range(2):  # each output was written by this command: never "not in the manifest"
        for arg in (src, src / "sub" / "g.png"):
            rc, stdout, _ = enhance(arg, "-o", out, "-q")
            assert rc == 0 and "0 done, 1 skipped" in stdout, stdout
    assert image_files(out) == written
    key = str(src / "sub" / "g.png")
    assert pairs(out) == {(key, "sub/g.png"): "done", (key, "g.png"): "done"}
    # resume rules hold per output: a deleted output is redone, the other one skipped
    (out / "g.png").unlink()
    assert "0 done, 1 skipped" in enhance(src, "-o", out, "-q")[1]
    assert "1 done, 0 skipped" in enhance(src / "sub" / "g.png", "-o", out, "-q")[1]
    # a changed input is redone for each output
    Image.fromarray(crop(61)).save(src / "sub" / "g.png")
    assert "1 done, 0 skipped" in enhance(src, "-o", out, "-q")[1]
    assert "1 done, 0 skipped" in enhance(src / "sub" / "g.png", "-o", out, "-q")[1]
    assert (out / "g.png").read_bytes() == (out / "sub" / "g.png").read_bytes() != written["g.png"]


def test_file_names_that_are_not_utf8_are_enhanced_recorded_and_printed(tmp_path, enhance):
    """Latin-1 names (bytes that are not UTF-8: Python's surrogate escapes) once stopped the
    whole run at the manifest (UnicodeEncodeError), and the summary could not be printed to a
    strict UTF-8 stdout (capsys is one)."""
    from PIL import Image

    from xvert_gpu.batch.manifest import Manifest

    src = tmp_path / "in"
    src.mkdir()
    good, bad = src / os.fsdecode(b"caf\xe9.png"), src / os.fsdecode(b"r\xf6ntgen.png")
    try:
        Image.fromarray(crop(62)).save(good)
    except (OSError, UnicodeError):
        pytest.skip("the file system refuses file names that are not UTF-8")
    bad.write_bytes(b"not a png")
    Image.fromarray(crop(63)).save(src / "plain.png")
    out = tmp_path / "out"
    rc, stdout, stderr = enhance(src, "-o", out)
    assert rc == 1 and "2 done, 0 skipped (already done), 1 failed" in stdout, stdout + stderr
    assert "r\\xf6ntgen.png: not a PNG file" in stdout  # the byte shown, not a crash
    assert (out / good.name).is_file()
    with Manifest(out / "xvert_manifest.sqlite") as manifest:  # the exact name comes back
        assert manifest.get(str(good), good.name)["status"] == "done"
        assert manifest.get(str(bad))["status"] == "failed"
    rc, stdout, _ = enhance(src, "-o", out, "-q")
    assert rc == 1 and "0 done, 2 skipped (already done), 1 failed" in stdout, stdout


@pytest.mark.parametrize("identical", [False, True])
def test_a_collision_never_damages_a_done_file(tmp_path, enhance, identical):
    """Two inputs with one output name, in one order then the other: the first one's done
    output stays done and on record, and is skipped when the first order comes back."""
    from PIL import Image

    a, b = tmp_path / "in" / "a.png", tmp_path / "other" / "a.png"
    for i, path in enumerate((a, b)):
        path.parent.mkdir()
        Image.fromarray(crop(62 + (0 if identical else i))).save(path)
    out = tmp_path / "oc"
    rc, stdout, _ = enhance(a, b, "-o", out, "-q")
    assert rc == 1 and "1 done, 0 skipped (already done), 1 failed" in stdout
    assert f"{b}: its output a.png is already the output of {a}" in stdout
    first = (out / "a.png").read_bytes()

    rc, stdout, _ = enhance(b, a, "-o", out, "-q")  # the other order: neither may run
    assert f"{a}: its output a.png is already the output of {b}" in stdout
    if identical:  # b's output is there already (as a's), and a keeps its record
        assert rc == 1 and "0 done, 1 skipped (already done), 1 failed" in stdout
    else:
        assert rc == 1 and "0 done, 0 skipped (already done), 2 failed" in stdout
        assert f"{b}: output {out / 'a.png'} holds the enhanced {a}" in stdout
    assert (out / "a.png").read_bytes() == first
    assert pairs(out)[(str(a), "a.png")] == "done" and (str(b), "a.png") not in pairs(out)

    rc, stdout, _ = enhance(a, b, "-o", out, "-q")  # back to the first order
    assert rc == 1 and "0 done, 1 skipped (already done), 1 failed" in stdout, stdout
    assert f"{a}:" not in stdout.replace(f"output of {a}", "")
    assert (out / "a.png").read_bytes() == first
    assert pairs(out)[(str(a), "a.png")] == "done"


def test_refusals(tmp_path, enhance, model):
    from PIL import Image

    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(crop(40)).save(src / "a.png")
    Image.fromarray(crop(41)).save(src / "sub" / "b.png")
    (src / "old").mkdir()
    (src / "old" / "keep.txt").write_text("user data")
    (tmp_path / "afile").write_text("x")

    # usage errors: exit 2, nothing written
    for args, message in [
        ((src, "-o", src), "inside OUTDIR"),
        ((src / "a.png", "-o", src), "inside OUTDIR"),
        ((src, "-o", tmp_path), "inside OUTDIR"),
        ((src, "-o", src / "old"), "not output of this command"),
        ((src, "-o", tmp_path / "afile"), "not a folder"),
        ((tmp_path / "missing.png", "-o", tmp_path / "o"), "does not exist"),
    ]:
        rc, stdout, stderr = enhance(*args, "-q")
        assert rc == 2 and message in stderr, (args, stderr)
    rc, _, stderr = enhance(src, "-o", tmp_path / "o", "--model", tmp_path / "nope.pt", "-q",
                            model_arg=False)
    assert rc == 2 and "cannot load model" in stderr
    with pytest.raises(SystemExit) as exc:
        cli.main(["enhance", str(src), "-o", str(tmp_path / "o"), "--batch-size", "0"])
    assert exc.value.code == 2
    assert not (tmp_path / "o").exists() and sorted(os.listdir(src / "old")) == ["keep.txt"]

    # per file: a symlinked folder inside OUTDIR, a foreign file under an output name
    out = tmp_path / "out"
    outside = tmp_path / "outside"
    outside.mkdir()
    out.mkdir()
    os.symlink(outside, out / "sub")
    (out / "a.png").write_bytes(b"precious")
    rc, stdout, _ = enhance(src, "-o", out, "-q")
    assert rc == 1
    assert f"{src / 'a.png'}: output {out / 'a.png'} exists and was not written by" in stdout
    assert f"{src / 'sub' / 'b.png'}: cannot write output:" in stdout and "symlink" in stdout
    assert (out / "a.png").read_bytes() == b"precious" and os.listdir(outside) == []
    os.unlink(out / "sub")
    rc, stdout, _ = enhance(src, "-o", out, "-q", "--overwrite")
    assert rc == 0 and read_image(out / "a.png").shape == (64, 96)

    # OUTDIR inside the input folder: new, then reused; never walked
    inner = src / "enhanced"
    assert enhance(src, "-o", inner, "-q")[0] == 0
    rc, stdout, _ = enhance(src, "-o", inner, "-q")
    assert rc == 0 and "0 done, 2 skipped" in stdout and "ignored" in stdout
    assert set(image_files(inner)) == {"a.png", "sub/b.png"}


def test_unusable_manifest_or_lock_is_a_usage_error(tmp_path, enhance):
    """A corrupt manifest, one from a newer schema, or a folder where the lock or the manifest
    goes ended the run with a Python traceback; now exit 2 and the reason, nothing processed."""
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(crop(42)).save(src / "a.png")
    data = (src / "a.png").read_bytes()
    cases = {"corrupt": ("xvert_manifest.sqlite", b"not a database" * 64, "file is not a database"),
             "manifest_folder": ("xvert_manifest.sqlite", None, "unable to open"),
             "lock_folder": (".xvert_gpu.lock", None, "cannot create the lock file")}
    for name, (entry, content, message) in cases.items():
        out = tmp_path / name
        out.mkdir()
        if content is None:
            (out / entry).mkdir()
        else:
            (out / entry).write_bytes(content)
        rc, stdout, stderr = enhance(src, "-o", out, "-q")
        assert rc == 2 and message in stderr and "Traceback" not in stderr, (name, stderr)
        assert str(out / entry) in stderr
        assert not (out / "a.png").exists()
    out = tmp_path / "newer"
    assert enhance(src, "-o", out, "-q")[0] == 0
    db = sqlite3.connect(out / "xvert_manifest.sqlite")
    with db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    db.close()
    rc, stdout, stderr = enhance(src, "-o", out, "-q")
    assert rc == 2 and "schema 99 is newer" in stderr
    assert (src / "a.png").read_bytes() == data


def test_a_full_disk_under_the_manifest_stops_the_run_cleanly(tmp_path, enhance, monkeypatch):
    """When the manifest could no longer be written mid-run (full disk), the run ended in a
    Python traceback (two: the closing run record failed as well); now it stops, says why,
    exits 1, and the same command finishes the rest."""
    from PIL import Image

    from xvert_gpu.batch.manifest import Manifest

    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        Image.fromarray(crop(50 + i)).save(src / f"z{i}.png")
    real_finish, real_end = Manifest.finish, Manifest.end_run
    calls = []

    def finish(self, *args, **kwargs):
        calls.append(args)
        if len(calls) > 1:
            raise sqlite3.OperationalError("database or disk is full")
        return real_finish(self, *args, **kwargs)

    def end_run(self, *args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Manifest, "finish", finish)
    monkeypatch.setattr(Manifest, "end_run", end_run)
    out = tmp_path / "out"
    rc, stdout, stderr = enhance(src, "-o", out, "-q", "--workers", "1")
    assert rc == 1 and "Traceback" not in stderr
    assert "STOPPED: cannot write the manifest" in stdout and "disk is full" in stdout
    monkeypatch.setattr(Manifest, "finish", real_finish)
    monkeypatch.setattr(Manifest, "end_run", real_end)
    rc, stdout, _ = enhance(src, "-o", out, "-q")
    assert rc == 0 and "1 skipped" in stdout and len(image_files(out)) == 3


XRAY = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "xray")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(XRAY), reason="no /work/shared/data/xray")
def test_real_dicoms_give_derived_dicoms(tmp_path, enhance):
    """SIIM CR films (JPEG baseline, one MONOCHROME1): derived 8-bit MONOCHROME2 DICOMs."""
    src = tmp_path / "in"
    src.mkdir()
    for name in ("siim_cr_jpeg_baseline.dcm", "siim_cr_monochrome1.dcm"):
        shutil.copy(os.path.join(XRAY, name), src / name)
    out = tmp_path / "out"
    rc, stdout, _ = enhance(src, "-o", out, "-q")
    assert rc == 0 and "2 done" in stdout, stdout
    for name in ("siim_cr_jpeg_baseline.dcm", "siim_cr_monochrome1.dcm"):
        source, result = read_image(src / name), read_image(out / name)
        assert (result.bits, result.shape, result.inverted) == (8, source.shape, False)
        ds = result.dataset
        assert ds.PhotometricInterpretation == "MONOCHROME2"
        assert ds.PatientID == source.dataset.PatientID
        assert not ds.file_meta.TransferSyntaxUID.is_compressed
        assert ds.SOPInstanceUID != source.dataset.SOPInstanceUID
        assert ds.StudyInstanceUID == source.dataset.StudyInstanceUID
        assert "XVertNet" in ds.DerivationDescription


def test_a_refused_file_named_two_ways_has_one_manifest_row(tmp_path, enhance):
    """The manifest keys refusals as it keys jobs: a path through '..' is the same input."""
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    bad = src / "notes.xyz"
    bad.write_text("not an image")
    out = tmp_path / "out"
    for named in (bad, src / "sub" / ".." / "notes.xyz"):
        rc, _, _ = enhance(named, "-o", out, "-q")
        assert rc == 1
    rows = manifest_rows(out)
    assert list(rows) == [str(bad)] and rows[str(bad)]["attempts"] == 2


def test_a_changed_input_that_fails_takes_its_stale_output_with_it(tmp_path, enhance,
                                                                    monkeypatch):
    """An input enhanced, then truncated: the rerun failed on it but left the output made from
    its old content, which looked like a valid result of the input as it now is. The output
    is now removed (and the failure says so), but only when it is the file this command wrote
    for that input, and only when it was made from other bytes than the input now holds."""
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    for i, name in enumerate(("a.png", "b.png", "c.png")):
        Image.fromarray(crop(70 + i)).save(src / name)
    out = tmp_path / "out"
    assert enhance(src, "-o", out, "-q")[0] == 0
    data = {name: (src / name).read_bytes() for name in ("a.png", "b.png")}
    (src / "a.png").write_bytes(data["a.png"][: len(data["a.png"]) // 2])
    (src / "b.png").write_bytes(data["b.png"][: len(data["b.png"]) // 2])
    (out / "b.png").write_bytes(b"the user's own file now")  # no longer what this command wrote

    rc, stdout, stderr = enhance(src, "-o", out, "-q")
    assert rc == 1 and "0 done, 1 skipped (already done), 2 failed" in stdout
    removed = (f"its earlier output {out / 'a.png'}, made from the input's previous content, "
               "was removed")
    assert f"{src / 'a.png'}: " in stdout and removed in stdout and removed in stderr
    assert not (out / "a.png").exists()
    assert (out / "b.png").read_bytes() == b"the user's own file now"  # never its to delete
    assert "removed" not in [ln for ln in stdout.splitlines() if str(src / "b.png") in ln][0]
    row = manifest_rows(out)[str(src / "a.png")]
    assert row["status"] == "failed" and removed in row["error"]
    assert row["out_sha256"] is None and row["out_size"] is None
    assert set(image_files(out)) == {"b.png", "c.png"}

    # the input as it was: done again; an attempt that fails on the same bytes keeps the output
    (src / "a.png").write_bytes(data["a.png"])
    assert "1 done" in enhance(src / "a.png", "-o", out, "-q")[1]
    written = (out / "a.png").read_bytes()
    from xvert_gpu.enhancer import Enhancer

    def broken(self, *args, **kwargs):
        raise FloatingPointError("no convergence")

    monkeypatch.setattr(Enhancer, "enhance", broken)
    rc, stdout, _ = enhance(src / "a.png", "-o", out, "-q", "--no-resume")
    assert rc == 1 and "enhancement failed" in stdout and "removed" not in stdout
    assert (out / "a.png").read_bytes() == written  # still the result of the input as it is


def test_runs_into_nested_outdirs_are_refused_while_both_would_run(tmp_path, enhance):
    """A run into out/ while another wrote into out/sub/ (or the other way round): each OUTDIR
    had its own lock, so both ran. The outer run's start deleted the inner run's temporary
    files in flight (its rename then fails), and both wrote out/sub/<name>, each recording as
    done a file the other may have replaced. A run is now refused (exit 2, nothing written)
    while a run into an OUTDIR inside its own, or containing it, is going on."""
    from PIL import Image

    from xvert_gpu.batch.outdir import RunLock

    src, other = tmp_path / "in", tmp_path / "other"
    (src / "sub").mkdir(parents=True)
    other.mkdir()
    Image.fromarray(crop(80)).save(src / "sub" / "x.png")
    Image.fromarray(crop(81)).save(other / "y.png")
    out = tmp_path / "out"
    inner = out / "sub"
    assert enhance(src, "-o", out, "-q")[0] == 0
    written = (inner / "x.png").stat().st_mtime_ns

    with RunLock(inner):  # another run into out/sub/, writing y.png right now
        inflight = inner / ".y.png.k2j3h4ab.tmp"
        inflight.write_bytes(b"half of an output")
        rc, _, stderr = enhance(src, "-o", out, "-q", "--no-resume")
        assert rc == 2, stderr
        assert f"another xvert-gpu enhance (pid {os.getpid()}) is writing to {inner}" in stderr
        assert "inside OUTDIR" in stderr
        assert inflight.exists() and (inner / "x.png").stat().st_mtime_ns == written
        inflight.unlink()
    with RunLock(out):  # the other way round
        rc, _, stderr = enhance(other, "-o", inner / "deep", "-q")
        assert rc == 2 and f"is writing to {out}, which contains OUTDIR" in stderr, stderr
        assert not (inner / "deep" / "y.png").exists()
    # one after the other: fine
    assert enhance(other, "-o", inner / "deep", "-q")[0] == 0
    assert enhance(src, "-o", out, "-q")[0] == 0
