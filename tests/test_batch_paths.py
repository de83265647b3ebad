"""Batch enhancer without a model: planning, formats, safety, manifest, resume, lock, pipeline."""

import os
import shutil
import sqlite3

import numpy as np
import pytest

from batch_helpers import flat_png_jobs
from xvert_gpu.batch import UsageError
from xvert_gpu.batch.formats import output_format, output_name
from xvert_gpu.batch.manifest import Manifest
from xvert_gpu.batch.outdir import RunLock, clean_stale
from xvert_gpu.batch.paths import MANIFEST_NAME, Job, output_path, plan, safe_output
from xvert_gpu.batch.pipeline import run_local
from xvert_gpu.batch.resume import REFUSE, RUN, SKIP, decide
from xvert_gpu.io import write_image


def touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_format_mapping():
    assert output_format("png") == "png"
    assert output_format("jpeg") == "png"  # lossy 8-bit JPEG is not re-encoded as JPEG
    assert output_format("tiff") == "tiff"
    assert output_format("dicom") == "dicom"
    assert output_format("jsrt") == "jsrt"
    assert output_format("dicom", "png") == "png"
    assert output_format("png", "tiff") == "tiff"
    assert output_format("png", "dcm") == "dicom"
    with pytest.raises(ValueError):
        output_format("png", "jpeg")
    assert output_name("x.PNG", "png", "png") == "x.PNG"
    assert output_name("x.jpeg", "jpeg", "png") == "x.png"
    assert output_name("x.tiff", "tiff", "tiff") == "x.tiff"
    assert output_name("x.dicom", "dicom", "dicom") == "x.dicom"
    assert output_name("x.dcm", "dicom", "tiff") == "x.tif"
    assert output_name("x.png", "png", "dicom") == "x.dcm"
    assert output_name("JPCLN001.IMG", "jsrt", "jsrt") == "JPCLN001.IMG"
    assert output_name("1.2.840.99", "dicom", "dicom") == "1.2.840.99"
    assert output_name("1.2.840.99", "dicom", "png") == "1.2.840.99.png"


def test_plan_mirrors_tree_and_lists_what_it_ignores(tmp_path):
    src = tmp_path / "in"
    touch(src / "a.png")
    touch(src / "sub" / "b.jpg")
    touch(src / "sub" / "deep" / "c.tif")
    touch(src / "sub" / "d.dcm")
    touch(src / "sub" / "1.2.3.4", b"\0" * 128 + b"DICM" + b"\0" * 10)  # extension-less DICOM
    touch(src / "notes.txt")
    touch(src / ".DS_Store")
    touch(src / "sub" / "._b.png")  # macOS resource fork
    touch(src / "DICOMDIR", b"\0" * 128 + b"DICM")
    touch(src / ".hidden" / "e.png")
    touch(tmp_path / "elsewhere" / "f.png")
    os.symlink(tmp_path / "elsewhere", src / "link")
    p = plan([str(src)], tmp_path / "out")
    rels = {j.rel: j for j in p.jobs}
    assert set(rels) == {"a.png", "sub/b.png", "sub/deep/c.tif", "sub/d.dcm", "sub/1.2.3.4"}
    assert rels["sub/b.png"].in_format == "jpeg" and rels["sub/b.png"].out_format == "png"
    assert rels["sub/1.2.3.4"].in_format == "dicom"
    assert rels["sub/deep/c.tif"].source == os.path.join(str(src), "sub", "deep", "c.tif")
    assert rels["a.png"].key == str((src / "a.png").absolute())
    ignored = {os.path.relpath(path, src): why for path, why in p.ignored}
    assert set(ignored) == {"notes.txt", ".DS_Store", os.path.join("sub", "._b.png"), "DICOMDIR",
                            ".hidden", "link"}
    assert "symlink" in ignored["link"] and "DICOMDIR" in ignored["DICOMDIR"]
    assert p.rejected == []
    assert p.outdir == tmp_path.resolve() / "out"
    # --format tiff renames every output; the jobs keep their order
    assert [j.rel for j in plan([str(src)], tmp_path / "out", "tiff").jobs] == \
        ["a.tif", "sub/1.2.3.4.tif", "sub/b.tif", "sub/d.tif", "sub/deep/c.tif"]


def test_plan_explicit_files_collisions_and_duplicates(tmp_path):
    a = touch(tmp_path / "x" / "a.png")
    b = touch(tmp_path / "y" / "a.png")
    c = touch(tmp_path / "y" / "a.jpg")
    notes = touch(tmp_path / "notes.xyz")
    p = plan([str(a), str(b), str(notes), str(a), str(c)], tmp_path / "out")
    assert [j.source for j in p.jobs] == [str(a)]
    reasons = dict(p.rejected)
    assert "already the output of" in reasons[str(b)] and str(a) in reasons[str(b)]
    assert "already the output of" in reasons[str(c)]  # a.jpg -> a.png too
    # outputs that differ only in case are one file on a case-insensitive OUTDIR (SMB, macOS)
    d = touch(tmp_path / "z" / "A.PNG")
    e = touch(tmp_path / "z" / "b.png")
    p = plan([str(a), str(d), str(e)], tmp_path / "out")
    assert [j.source for j in p.jobs] == [str(a), str(e)]
    assert "only in case" in dict(p.rejected)[str(d)] and str(a) in dict(p.rejected)[str(d)]
    assert "unknown extension '.xyz'" in reasons[str(notes)]
    # named explicitly and met while walking: reported once, as failed
    txt = touch(tmp_path / "x" / "n.txt")
    p = plan([str(tmp_path / "x"), str(txt)], tmp_path / "out")
    assert [path for path, _ in p.rejected] == [str(txt)] and p.ignored == []


def test_layout_refusals(tmp_path):
    src = tmp_path / "in"
    touch(src / "a.png")
    with pytest.raises(UsageError, match="does not exist"):
        plan([str(tmp_path / "missing")], tmp_path / "out")
    with pytest.raises(UsageError, match="inside OUTDIR"):
        plan([str(src)], src)  # OUTDIR is the input folder
    with pytest.raises(UsageError, match="inside OUTDIR"):
        plan([str(src / "a.png")], src)  # the output would be the input
    with pytest.raises(UsageError, match="inside OUTDIR"):
        plan([str(src)], tmp_path)  # input folder inside OUTDIR
    touch(tmp_path / "file")
    with pytest.raises(UsageError, match="not a folder"):
        plan([str(src)], tmp_path / "file")
    # OUTDIR inside the input folder: fine while new or ours, and left out of the walk
    p = plan([str(src)], src / "enhanced")
    assert [j.rel for j in p.jobs] == ["a.png"]
    touch(src / "enhanced" / "a.png")
    touch(src / "enhanced" / MANIFEST_NAME)
    assert [j.rel for j in plan([str(src)], src / "enhanced").jobs] == ["a.png"]
    touch(src / "other" / "b.png")
    with pytest.raises(UsageError, match="not output of this command"):
        plan([str(src)], src / "other")
    # another earlier OUTDIR inside the input folder holds outputs: not walked, whatever OUTDIR
    touch(src / "old_run" / "c.png")
    touch(src / "old_run" / MANIFEST_NAME)
    p = plan([str(src)], src / "enhanced")
    assert "old_run/c.png" not in [j.rel for j in p.jobs]
    assert [why for path, why in p.ignored if path == str(src / "old_run")] == \
        ["an earlier OUTDIR (holds its manifest or marker): output images, not walked"]
    shutil.rmtree(src / "old_run")
    # the same through a relative path and "."
    cwd = os.getcwd()
    try:
        os.chdir(src)
        assert [j.rel for j in plan(["."], "enhanced").jobs] == ["a.png", "other/b.png"]
    finally:
        os.chdir(cwd)


def test_output_paths_never_escape_outdir(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for bad in ("../x.png", "a/../../x.png", "/etc/x.png", "", "a/b/../../../x.png"):
        with pytest.raises(ValueError, match="escapes OUTDIR"):
            output_path(out, bad)
    assert safe_output(out, "a/b/c.png") == out / "a" / "b" / "c.png"
    assert (out / "a" / "b").is_dir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, out / "evil")
    with pytest.raises(ValueError, match="symlink"):
        safe_output(out, "evil/x.png")
    with pytest.raises(ValueError, match="symlink"):
        safe_output(out, "evil/deeper/x.png")
    assert not (outside / "deeper").exists()
    os.symlink(outside / "target.png", out / "y.png")
    with pytest.raises(ValueError, match="symlink"):
        safe_output(out, "y.png")


def test_lock_and_stale_files(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(UsageError, match="another xvert-gpu enhance"):
            with RunLock(tmp_path):
                pass
    with RunLock(tmp_path):  # released
        pass
    stale = [touch(tmp_path / ".a.png.k2j3h4_x.tmp"), touch(tmp_path / "sub" / ".b.dcm.abcdefgh.tmp")]
    # not ours: the user's partial download and hidden temporary file in a reused folder
    keep = [touch(tmp_path / "a.png"), touch(tmp_path / "x.part.png"), touch(tmp_path / "notes.tmp"),
            touch(tmp_path / "sub" / "c.tif.part"), touch(tmp_path / ".notes.tmp"),
            touch(tmp_path / ".vimrc.swp.tmp")]
    assert clean_stale(tmp_path) == [] and all(p.exists() for p in stale)  # no manifest yet
    keep.append(touch(tmp_path / MANIFEST_NAME))
    removed = clean_stale(tmp_path)
    assert sorted(removed) == sorted(stale)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)


def test_manifest_rows(tmp_path):
    with Manifest(tmp_path / MANIFEST_NAME) as m:
        run = m.begin_run(["enhance"], "model1", {"format": "same"}, {"workers": 2})
        m.start("/in/a.png", "a.png", run, "{}", "model1")
        assert m.get("/in/a.png")["status"] == "running"
        m.finish("/in/a.png", "a.png", "failed", {"error": "boom", "size": 3})
        m.start("/in/a.png", "a.png", run, "{}", "model1")
        m.finish("/in/a.png", "a.png", "done", {"size": 3, "sha256": "ab", "out_size": 9})
        m.reject("/in/b.xyz", run, "unknown extension", "{}", "model1")
        m.end_run(run, "finished", {"done": 1, "failed": 1})
        a = m.get("/in/a.png")
        assert (a["status"], a["attempts"], a["error"], a["sha256"]) == ("done", 2, None, "ab")
        assert a["first_started"] <= a["started"] <= a["finished"]
        assert m.owner("a.png")["input"] == "/in/a.png" and m.owner("b.png") is None
        assert [r["input"] for r in m.rows("failed")] == ["/in/b.xyz"]
    db = sqlite3.connect(tmp_path / MANIFEST_NAME)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT status, done, failed FROM runs").fetchone() == ("finished", 1, 1)


def test_manifest_keeps_a_row_per_input_and_output(tmp_path):
    """An input sent to a second output keeps the first; a refusal touches no output's row."""
    with Manifest(tmp_path / MANIFEST_NAME) as m:
        m.start("/in/sub/g.png", "sub/g.png", 1, "{}", "M")
        m.finish("/in/sub/g.png", "sub/g.png", "done", {"size": 3})
        m.start("/in/sub/g.png", "g.png", 2, "{}", "M")  # named as a file this time
        m.finish("/in/sub/g.png", "g.png", "done", {"size": 3})
        m.reject("/in/sub/g.png", 3, "its output g.png is already the output of ...", "{}", "M")
        assert m.get("/in/sub/g.png", "sub/g.png")["status"] == "done"
        assert m.get("/in/sub/g.png", "g.png")["status"] == "done"
        assert m.get("/in/sub/g.png", "")["status"] == "failed"
        assert m.owner("sub/g.png")["input"] == m.owner("g.png")["input"] == "/in/sub/g.png"
        assert m.owner("") is None
        assert [(r["output"], r["status"]) for r in m.rows()] == [
            ("", "failed"), ("g.png", "done"), ("sub/g.png", "done")]
        # --overwrite by another input: the old row loses that output only
        m.start("/other/g.png", "g.png", 4, "{}", "M")
        assert m.owner("g.png")["input"] == "/other/g.png"
        lost = m.get("/in/sub/g.png", "")
        assert lost["status"] == "failed" and "/other/g.png" in lost["error"]
        assert m.get("/in/sub/g.png", "sub/g.png")["status"] == "done"


#: ``files`` as schema 1 (xvert_gpu <= this fix) created it: one row per input.
_FILES_SCHEMA1 = """
CREATE TABLE files (input TEXT PRIMARY KEY, output TEXT NOT NULL, status TEXT NOT NULL
    CHECK (status IN ('running', 'done', 'failed')), size INTEGER, mtime_ns INTEGER,
    sha256 TEXT, params TEXT, model TEXT, error TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    first_started REAL, started REAL, finished REAL, seconds REAL, in_format TEXT,
    out_format TEXT, bits INTEGER, width INTEGER, height INTEGER, out_size INTEGER,
    out_sha256 TEXT, worker TEXT, run INTEGER);
CREATE INDEX files_output ON files (output);
CREATE INDEX files_status ON files (status);
CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, started REAL, finished REAL,
    argv TEXT, model TEXT, params TEXT, settings TEXT, status TEXT, done INTEGER,
    skipped INTEGER, failed INTEGER, ignored INTEGER);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
INSERT INTO meta VALUES ('schema', '1');
INSERT INTO runs (started, status, done) VALUES (1.0, 'finished', 1);
INSERT INTO files (input, output, status, size, sha256, attempts, started, out_size, run)
    VALUES ('/in/a.png', 'a.png', 'done', 3, 'ab', 2, 5.0, 9, 1),
           ('/in/b.xyz', '', 'failed', NULL, NULL, 1, 5.0, NULL, 1);
"""


def test_manifest_schema1_is_migrated_in_place(tmp_path):
    path = tmp_path / MANIFEST_NAME
    db = sqlite3.connect(path)
    db.executescript(_FILES_SCHEMA1)
    db.close()
    with Manifest(path) as m:
        a = m.get("/in/a.png", "a.png")
        assert (a["status"], a["size"], a["sha256"], a["attempts"], a["out_size"]) == \
            ("done", 3, "ab", 2, 9)
        assert m.get("/in/b.xyz", "")["status"] == "failed"
        m.start("/in/a.png", "sub/a.png", 2, "{}", "M")  # a second output: a second row
        assert m.get("/in/a.png", "a.png")["status"] == "done"
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("2",)
    objects = dict(db.execute("SELECT name, tbl_name FROM sqlite_master WHERE name LIKE 'files%'"))
    assert objects == {"files": "files", "files_output": "files", "files_status": "files"}
    key = sorted((r[5], r[1]) for r in db.execute("PRAGMA table_info(files)") if r[5])
    assert key == [(1, "input"), (2, "output")]
    assert db.execute("SELECT count(*) FROM files").fetchone() == (3,)
    assert db.execute("SELECT count(*) FROM runs").fetchone() == (1,)
    db.execute("UPDATE meta SET value = '3' WHERE key = 'schema'")
    db.commit()
    db.close()
    with pytest.raises(RuntimeError, match="newer"):
        Manifest(path)


def test_resume_decisions(tmp_path):
    src = touch(tmp_path / "in" / "a.png", b"abc")
    out = tmp_path / "out"
    out.mkdir()
    job = Job(str(src), str(src.absolute()), "a.png", "png", "png")
    m = Manifest(out / MANIFEST_NAME)
    assert decide(job, m, out, "{}", "M") == (RUN, "new")
    touch(out / "a.png", b"foreign")
    assert decide(job, m, out, "{}", "M")[0] == REFUSE  # not ours
    assert decide(job, m, out, "{}", "M", overwrite=True)[0] == RUN
    m.start(job.key, "a.png", 1, "{}", "M")
    assert decide(job, m, out, "{}", "M") == (RUN, "running")  # ours (killed run): redo
    st = src.stat()
    import hashlib
    sha = hashlib.sha256(b"abc").hexdigest()
    m.finish(job.key, "a.png", "done", {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                        "out_size": 7, "sha256": sha})
    assert decide(job, m, out, "{}", "M") == (SKIP, "already done")
    assert decide(job, m, out, "{}", "M", resume=False)[0] == RUN
    assert decide(job, m, out, "{}", "other model") == (RUN, "another model")
    assert decide(job, m, out, '{"format": "png"}', "M") == (RUN, "other parameters")
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched, same bytes
    assert decide(job, m, out, "{}", "M") == (SKIP, "already done")
    src.write_bytes(b"abd")  # same size, new bytes, new mtime: the checksum decides
    assert decide(job, m, out, "{}", "M") == (RUN, "input changed")
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime are trusted
    assert decide(job, m, out, "{}", "M") == (SKIP, "already done")
    src.write_bytes(b"abcd")
    assert decide(job, m, out, "{}", "M") == (RUN, "input changed")
    src.write_bytes(b"abc")
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    (out / "a.png").write_bytes(b"short")  # output changed
    assert decide(job, m, out, "{}", "M") == (RUN, "output missing or changed")
    (out / "a.png").unlink()
    assert decide(job, m, out, "{}", "M") == (RUN, "output missing or changed")
    m.close()


def test_resume_when_another_input_owns_the_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    old = touch(tmp_path / "old" / "a.png", b"abc")
    m = Manifest(out / MANIFEST_NAME)
    st = old.stat()
    import hashlib
    m.start(str(old), "a.png", 1, "{}", "M")
    touch(out / "a.png", b"output")
    m.finish(str(old), "a.png", "done", {"size": 3, "mtime_ns": st.st_mtime_ns, "out_size": 6,
                                         "sha256": hashlib.sha256(b"abc").hexdigest()})
    # an identical copy elsewhere -> skipped, and the original keeps its record
    copy = touch(tmp_path / "copy" / "a.png", b"abc")
    job = Job(str(copy), str(copy), "a.png", "png", "png")
    assert decide(job, m, out, "{}", "M") == (SKIP, f"already done (as {old})")
    assert m.get(str(copy)) is None and m.get(str(old), "a.png")["status"] == "done"
    # the archive was moved: same bytes at a new path -> skipped, the row follows the file
    moved = touch(tmp_path / "new" / "a.png", b"abc")
    old.unlink()
    job = Job(str(moved), str(moved), "a.png", "png", "png")
    assert decide(job, m, out, "{}", "M") == (SKIP, f"already done (as {old})")
    assert m.get(str(old)) is None and m.get(str(moved))["status"] == "done"
    assert m.get(str(moved))["mtime_ns"] == moved.stat().st_mtime_ns
    assert decide(job, m, out, "{}", "M") == (SKIP, "already done")
    # a different image under the same output name -> refused, unless --overwrite
    other = touch(tmp_path / "other" / "a.png", b"xyz")
    job2 = Job(str(other), str(other), "a.png", "png", "png")
    action, reason = decide(job2, m, out, "{}", "M")
    assert action == REFUSE and f"holds the enhanced {moved}" in reason
    assert decide(job2, m, out, "{}", "M", overwrite=True)[0] == RUN
    m.start(job2.key, "a.png", 2, "{}", "M")  # the other row loses its output
    lost = m.get(str(moved))
    assert lost["status"] == "failed" and lost["output"] == "" and str(other) in lost["error"]
    assert decide(job, m, out, "{}", "M")[0] == REFUSE  # and cannot take it back silently
    m.close()


class FakeEnhancer:
    """Records the stacks it gets; negates uint8 images; fails on images whose first pixel is 13."""

    def __init__(self):
        self.calls = []

    def enhance(self, stack, bits=None):
        self.calls.append((stack.shape, stack.dtype.str, bits))
        if (stack[:, 0, 0] == 13).any():
            raise FloatingPointError("bad image")
        return (255 - stack).astype(stack.dtype)


def test_pipeline_groups_batches_deterministically(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shapes = [(8, 10), (8, 10), (6, 10), (8, 10), (8, 10), (6, 10), (8, 10), (8, 12)]
    jobs = []
    for i, shape in enumerate(shapes):
        img = np.full(shape, 40 + i, np.uint8)
        if i == 3:
            img[0, 0] = 13
        write_image(src / f"{i}.png", img)
        jobs.append(Job(str(src / f"{i}.png"), str(src / f"{i}.png"), f"{i}.png", "png", "png"))
    jobs.insert(2, Job(str(src / "missing.png"), str(src / "missing.png"), "missing.png", "png",
                       "png"))
    enh = FakeEnhancer()
    started, results = [], []
    run_local(enh, jobs, str(tmp_path / "out"), batch_size=3, workers=2,
              on_start=lambda j: started.append(j.rel), on_result=results.append)
    assert started == [j.rel for j in jobs]
    status = {r.source.rsplit("/", 1)[-1]: (r.status, r.error) for r in results}
    assert status["missing.png"] == ("failed", "file not found")
    assert status["3.png"][0] == "failed" and "enhancement failed" in status["3.png"][1]
    assert all(status[f"{i}.png"][0] == "done" for i in range(8) if i != 3)
    # stacks: (0, 1, 3) fails and is retried one by one; (4, 6) and the rest are flushed at the end
    assert [c[0][0] for c in enh.calls] == [3, 1, 1, 1, 2, 2, 1]
    assert all(c[2] == 8 for c in enh.calls)
    from xvert_gpu.io import read_image
    assert (read_image(tmp_path / "out" / "6.png").pixels == 255 - 46).all()


def _without_hanging(fn, fifos, limit=60.0):
    """``fn()`` in a thread; if it is still blocked on one of ``fifos`` after ``limit`` seconds
    (a regression: something opened a named pipe), a writer is opened and closed on each so
    that the reader gets end-of-file, and the test fails instead of hanging."""
    import threading

    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(limit)
    if t.is_alive():
        for f in fifos:
            try:
                os.close(os.open(f, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        t.join(limit)
        pytest.fail(f"blocked reading a named pipe among {fifos}")
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_named_pipes_are_never_opened(tmp_path):
    """A FIFO in an archive (named like an image, or extension-less like a PACS export) used to
    block the run for ever: the plan sniffed it for a DICOM preamble, the read hashed it."""
    from xvert_gpu.batch.work import Result, load

    src = tmp_path / "in"
    touch(src / "a.png")
    fifos = [src / "pipe.png", src / "1.2.840.5"]
    for f in fifos:
        os.mkfifo(f)
    p = _without_hanging(lambda: plan([str(src)], tmp_path / "out"), fifos)
    assert [j.rel for j in p.jobs] == ["a.png"]
    ignored = {os.path.basename(path): why for path, why in p.ignored}
    assert set(ignored) == {"pipe.png", "1.2.840.5"}
    assert all("not a regular file" in why and "FIFO" in why for why in ignored.values())
    # named explicitly: planned by its extension, then failed with the reason, not read
    [job] = plan([str(fifos[0])], tmp_path / "out").jobs
    result = _without_hanging(lambda: load(job), fifos)
    assert isinstance(result, Result) and result.status == "failed"
    assert "not a regular file" in result.error and "FIFO" in result.error


def test_ctrl_c_reports_the_writes_it_lets_finish(tmp_path, monkeypatch):
    """On Ctrl-C the pipeline let the running writes finish (outputs under their final names)
    but never reported them, so their manifest rows stayed 'running' and a rerun redid them."""
    import threading

    from xvert_gpu.batch import pipeline

    jobs = flat_png_jobs(tmp_path / "in", 3)
    writing, interrupted = threading.Event(), threading.Event()
    real_save = pipeline.save

    def save_after_interrupt(*args):  # the first write is still running when Ctrl-C comes
        writing.set()
        interrupted.wait()
        return real_save(*args)

    class InterruptedEnhancer(FakeEnhancer):
        def enhance(self, stack, bits=None):
            if self.calls:
                writing.wait()
                interrupted.set()
                raise KeyboardInterrupt
            return super().enhance(stack, bits)

    monkeypatch.setattr(pipeline, "save", save_after_interrupt)
    results = []
    with pytest.raises(KeyboardInterrupt):
        run_local(InterruptedEnhancer(), jobs, str(tmp_path / "out"), batch_size=1, workers=2,
                  on_result=results.append)
    assert [(r.source, r.status) for r in results] == [(jobs[0].source, "done")]
    assert sorted(os.listdir(tmp_path / "out")) == ["0.png"]


def test_a_non_dicom_named_dcm_is_failed_for_what_it_is(tmp_path):
    """A PNG named x.dcm under --format same failed with '--format dcm needs a DICOM input ...
    use --format same', which was the format given."""
    from xvert_gpu.batch.work import load

    write_image(tmp_path / "x.dcm", np.full((8, 10), 40, np.uint8), format="png")
    [job] = plan([str(tmp_path / "x.dcm")], tmp_path / "out").jobs
    assert (job.in_format, job.out_format) == ("dicom", "dicom")
    result = load(job)
    assert result.status == "failed"
    assert result.error.startswith("named as a DICOM file but holds a PNG image")
    assert "--format same" not in result.error


def test_remove_stale_output_deletes_only_its_own_output_of_other_bytes(tmp_path):
    """The rules of :func:`remove_stale_output` one by one (see also test_batch.py)."""
    import hashlib

    from xvert_gpu.batch.outdir import remove_stale_output

    out = tmp_path / "out"
    sha = lambda b: hashlib.sha256(b).hexdigest()  # noqa: E731
    recorded = {"sha256": sha(b"old input"), "out_sha256": sha(b"enhanced")}
    changed, same = {"sha256": sha(b"new input")}, {"sha256": sha(b"old input")}
    touch(out / "a.png", b"enhanced")
    assert remove_stale_output(out, "a.png", recorded, same) is None  # still its result
    assert remove_stale_output(out, "a.png", recorded, {}) is None  # input not hashed: unknown
    assert remove_stale_output(out, "a.png", {**recorded, "out_sha256": None}, changed) is None
    assert (out / "a.png").exists()
    touch(out / "b.png", b"edited by the user")  # not the bytes this command wrote
    assert remove_stale_output(out, "b.png", recorded, changed) is None
    assert (out / "b.png").exists()
    touch(tmp_path / "elsewhere.png", b"enhanced")
    os.symlink(tmp_path / "elsewhere.png", out / "c.png")  # never followed
    assert remove_stale_output(out, "c.png", recorded, changed) is None
    assert (tmp_path / "elsewhere.png").exists() and os.path.islink(out / "c.png")
    assert remove_stale_output(out, "missing.png", recorded, changed) is None
    note = remove_stale_output(out, "a.png", recorded, changed)
    assert note.endswith("was removed") and str(out / "a.png") in note
    assert not (out / "a.png").exists()


def test_a_folder_that_becomes_an_outdir_during_the_walk_is_not_walked(tmp_path, monkeypatch):
    """An earlier OUTDIR inside an input folder was told by its marker when its parent was
    listed. Another run that makes that folder its OUTDIR later, but before the walk gets into
    it (it writes its manifest before any output), had its outputs planned as inputs. The
    marker is now looked for again once the folder itself is listed."""
    from xvert_gpu.batch import paths

    src = tmp_path / "in"
    touch(src / "a.png")
    (src / "enh").mkdir()  # empty: another run's OUTDIR-to-be
    real_walk = os.walk

    def walk_while_another_run_starts(top, *args, **kwargs):
        for entry in real_walk(top, *args, **kwargs):
            yield entry
            if entry[0] == str(src):  # the other run starts now: manifest, then an output
                touch(src / "enh" / MANIFEST_NAME)
                touch(src / "enh" / "b.png")

    monkeypatch.setattr(paths.os, "walk", walk_while_another_run_starts)
    p = plan([str(src)], tmp_path / "out")
    assert [j.rel for j in p.jobs] == ["a.png"]
    assert [why for path, why in p.ignored if path == str(src / "enh")] == \
        ["an earlier OUTDIR (holds its manifest or marker): output images, not walked"]


def test_inputs_that_cannot_give_their_output_fail_before_decoding(tmp_path, monkeypatch):
    """A PNG named .IMG (JSRT raw out, --format same) was decoded and enhanced, then failed at
    the write ('JSRT raw images are 2048x2048'; at 2048x2048 it was written as JSRT raw); a
    non-DICOM under --format dcm was hashed and decoded before it was refused. Both now fail
    from the file's first bytes, before decoding, with the reason; valid files go on."""
    from xvert_gpu.batch import work

    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "fake.IMG", np.full((8, 10), 40, np.uint8), format="png")
    write_image(src / "plain.png", np.full((8, 10), 41, np.uint8))
    write_image(src / "t.tif", np.full((8, 10), 42, np.uint8), format="tiff")
    write_image(src / "good.png", np.full((8, 10), 43, np.uint8))
    out = tmp_path / "out"
    decoded = []
    real_read = work.read_image
    monkeypatch.setattr(work, "read_image", lambda path: decoded.append(path) or real_read(path))
    enh = FakeEnhancer()

    def run(names, choice):
        results = []
        run_local(enh, plan([str(src / n) for n in names], out, choice).jobs, str(out),
                  batch_size=1, workers=2, on_result=results.append)
        return {os.path.basename(r.source): (r.status, r.error) for r in results}

    same = run(["fake.IMG", "good.png"], "same")
    dcm = run(["plain.png", "t.tif", "fake.IMG"], "dcm")
    assert decoded == [str(src / "good.png")] and len(enh.calls) == 1  # only the valid file
    assert same["good.png"] == ("done", None)
    status, error = same["fake.IMG"]
    assert status == "failed" and error.startswith("named as a JSRT raw file (.IMG) but holds a "
                                                   "PNG image"), error
    for name, fmt in (("plain.png", "png"), ("t.tif", "tiff"), ("fake.IMG", "png")):
        status, error = dcm[name]
        assert status == "failed" and error.startswith(
            f"--format dcm needs a DICOM input to derive from (this is {fmt})"), (name, error)
    assert sorted(os.listdir(out)) == ["good.png"]
