"""``kill -9`` in the middle of ``xvert-gpu enhance``, then the same command again."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

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


@pytest.mark.parametrize("sig,banner", [(signal.SIGINT, "INTERRUPTED"),
                                         (signal.SIGTERM, "INTERRUPTED (SIGTERM)")])
def test_ctrl_c_or_sigterm_stop_cleanly_and_rerun_finishes(tmp_path, capsys, sig, banner):
    """Ctrl-C, and SIGTERM (kill, systemd, Slurm, Kubernetes), which used to kill the run
    outright (the writes already running finished unreported and the run stayed 'running', so a
    rerun redid them): every output under a final name is recorded as done, the run is
    'interrupted', the exit status is 128 + the signal, and the rerun redoes nothing done."""
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    for i in range(N):
        Image.fromarray(crop(80 + 30 * (sig == signal.SIGTERM) + i, SIDE, SIDE)).save(
            src / f"y{i:02d}.png")
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
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 128 + sig, stdout + stderr
    assert banner in stdout and "Traceback" not in stderr
    db = sqlite3.connect(f"file:{out / 'xvert_manifest.sqlite'}?mode=ro", uri=True)
    assert db.execute("SELECT status FROM runs").fetchall() == [("interrupted",)]
    db.close()
    rows = manifest_rows(out)
    done = {r["output"] for r in rows.values() if r["status"] == "done"}
    assert done == set(image_files(out)) and done  # every finished write is recorded
    assert cli.main(["enhance", str(src), "-o", str(out), *args]) == 0
    assert f"{N - len(done)} done, {len(done)} skipped" in capsys.readouterr().out
    assert len(image_files(out)) == N


def test_the_sigterm_handler_is_the_run_s_own_and_main_thread_only(tmp_path, monkeypatch):
    """The handler is installed for the run only, over the default action only (an ignored
    SIGTERM or an embedding program's own handler is left as it is), and only in the main
    thread: a run in another thread still works (signal.signal raises there)."""
    import threading

    from PIL import Image

    from xvert_gpu.batch import BatchOptions, enhance_archive
    from xvert_gpu.batch.manifest import Manifest

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(crop(130)).save(src / "a.png")
    model = make_tiny_model(tmp_path / "tiny.pt")
    seen = []
    real_begin = Manifest.begin_run

    def begin_run(self, *args, **kwargs):  # what SIGTERM does while the run goes on
        seen.append(signal.getsignal(signal.SIGTERM))
        return real_begin(self, *args, **kwargs)

    def run(name):
        opts = BatchOptions([str(src)], str(tmp_path / name), model=str(model), threads=1,
                            quiet=True)
        return enhance_archive(opts).exit_code

    def own(signum, frame):  # an embedding program's handler
        pass

    monkeypatch.setattr(Manifest, "begin_run", begin_run)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert run("o1") == 0
    assert callable(seen[-1]) and seen[-1] not in (signal.SIG_DFL, own)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # restored
    for previous in (own, signal.SIG_IGN):
        signal.signal(signal.SIGTERM, previous)
        try:
            assert run(f"o_{len(seen)}") == 0
            assert seen[-1] == previous and signal.getsignal(signal.SIGTERM) == previous
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("rc", run("o_thread")))
    thread.start()
    thread.join(120)
    assert box.get("rc") == 0 and seen[-1] == signal.SIG_DFL
