"""``kill -9`` in the middle of ``xvert-gpu enhance``, then the same command again."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time


from batch_helpers import crop, image_files, make_tiny_model, manifest_rows
from xvert_gpu import cli
from xvert_gpu.io import read_image

N = 12
# large enough that the run is still busy when the test signals it after the first files
# (with 64 x 96 crops a loaded machine sometimes finished all twelve first)
SIDE = 192


def done_count(outdir) -> int:
    db = outdir / "xvert_manifest.sqlite"
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT count(*) FROM files WHERE status = 'done'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:  # created but no table yet
        return 0


def test_kill9_then_rerun_finishes_without_redoing(tmp_path, capsys):
    from PIL import Image

    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for i in range(N):
        Image.fromarray(crop(50 + i, SIDE, SIDE)).save(src / ("sub" if i % 3 == 0 else "") / f"x{i:02d}.png")
    model = make_tiny_model(tmp_path / "tiny.pt")
    args = ["--model", str(model), "--threads", "1", "--workers", "2", "-q"]

    # the reference: an uninterrupted run
    ref = tmp_path / "ref"
    assert cli.main(["enhance", str(src), "-o", str(ref), *args]) == 0
    reference = image_files(ref)
    assert len(reference) == N

    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "xvert_gpu.cli", "enhance", str(src), "-o",
                             str(out), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    try:
        while done_count(out) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no file done in time"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    before = manifest_rows(out)
    done_before = {k: r for k, r in before.items() if r["status"] == "done"}
    assert 2 <= len(done_before) < N, "the run was not interrupted in the middle"
    # what is visible under final names is complete: byte-identical to the reference
    visible = image_files(out)
    assert all(visible[rel] == reference[rel] for rel in visible)
    assert {r["output"] for r in done_before.values()} <= set(visible)
    mtimes = {r["output"]: (out / r["output"]).stat().st_mtime_ns for r in done_before.values()}

    # a temporary file as a kill during an encode leaves it (hidden, never under a final name)
    (out / ".x01.png.k2j3h4ab.tmp").write_bytes(b"partial")

    capsys.readouterr()
    assert cli.main(["enhance", str(src), "-o", str(out), *args]) == 0
    summary = capsys.readouterr().out
    assert f"{N - len(done_before)} done, {len(done_before)} skipped" in summary
    after = manifest_rows(out)
    assert all(r["status"] == "done" for r in after.values()) and len(after) == N
    for key, row in done_before.items():  # not redone
        assert after[key] == row
        assert (out / row["output"]).stat().st_mtime_ns == mtimes[row["output"]]
    for key, row in before.items():
        if row["status"] == "running":
            assert after[key]["attempts"] == row["attempts"] + 1
    assert image_files(out) == reference  # bit for bit
    leftovers = [p.name for p in out.rglob("*") if p.name.endswith((".tmp", ".part"))]  # cleaned
    assert leftovers == []
    assert read_image(out / "sub" / "x00.png").bits == 8


def test_ctrl_c_stops_cleanly_and_rerun_finishes(tmp_path, capsys):
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    for i in range(N):
        Image.fromarray(crop(80 + i, SIDE, SIDE)).save(src / f"y{i:02d}.png")
    model = make_tiny_model(tmp_path / "tiny.pt")
    args = ["--model", str(model), "--threads", "1", "-q"]
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "xvert_gpu.cli", "enhance", str(src), "-o",
                             str(out), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 240
    try:
        while done_count(out) < 1:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, stdout + stderr
    assert "INTERRUPTED" in stdout and "Traceback" not in stderr
    db = sqlite3.connect(f"file:{out / 'xvert_manifest.sqlite'}?mode=ro", uri=True)
    assert db.execute("SELECT status FROM runs").fetchall() == [("interrupted",)]
    db.close()
    n_done = sum(r["status"] == "done" for r in manifest_rows(out).values())
    assert cli.main(["enhance", str(src), "-o", str(out), *args]) == 0
    assert f"{N - n_done} done, {n_done} skipped" in capsys.readouterr().out
    assert len(image_files(out)) == N
