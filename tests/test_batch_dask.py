"""``xvert-gpu enhance --dask local``: the same outputs, bit for bit, as a local run."""

from __future__ import annotations

import subprocess
import sys

import pytest

from batch_helpers import crop, image_files, make_tiny_model, manifest_rows, to_bits
from xvert_gpu import cli
from xvert_gpu.io import write_image

pytest.importorskip("distributed")


@pytest.mark.slow
def test_dask_local_matches_local_run(tmp_path, capsys):
    from PIL import Image

    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for i in range(4):
        Image.fromarray(crop(70 + i)).save(src / f"a{i}.png")
    write_image(src / "sub" / "b12.tif", to_bits(crop(75), 12), bits=12)
    write_image(src / "sub" / "c12.dcm", to_bits(crop(76), 12), bits=12, format="dicom")
    (src / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    model = make_tiny_model(tmp_path / "tiny.pt")

    local = tmp_path / "local"
    rc = cli.main(["enhance", str(src), "-o", str(local), "--model", str(model),
                   "--batch-size", "1", "--threads", "1", "-q"])
    assert rc == 1
    capsys.readouterr()

    dask_out = tmp_path / "dask"
    proc = subprocess.run([sys.executable, "-m", "xvert_gpu.cli", "enhance", str(src), "-o",
                           str(dask_out), "--model", str(model), "--dask", "local",
                           "--workers", "2", "-q"], capture_output=True, text=True, timeout=540)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "6 done, 0 skipped (already done), 1 failed" in proc.stdout
    assert f"{src / 'sub' / 'broken.png'}: " in proc.stdout
    assert image_files(dask_out) == image_files(local)  # bit for bit
    assert len(image_files(local)) == 6
    rows, local_rows = manifest_rows(dask_out), manifest_rows(local)
    assert {k: (r["status"], r["model"], r["out_sha256"]) for k, r in rows.items()} == \
        {k: (r["status"], r["model"], r["out_sha256"]) for k, r in local_rows.items()}
    workers = {r["worker"] for r in rows.values() if r["status"] == "done"}
    assert all(w.startswith("tcp://127.0.0.1:") for w in workers), workers

    # same resume semantics: a local rerun into the Dask OUTDIR has nothing left to do
    assert cli.main(["enhance", str(src), "-o", str(dask_out), "--model", str(model), "-q"]) == 1
    assert "0 done, 6 skipped" in capsys.readouterr().out


@pytest.mark.slow
def test_a_worker_killed_mid_batch_loses_nothing(tmp_path, capsys, monkeypatch):
    """SIGKILL one worker process while tasks are in flight: its tasks run elsewhere."""
    import os
    import signal

    from PIL import Image

    from xvert_gpu.batch import distributed

    src = tmp_path / "in"
    src.mkdir()
    for i in range(10):
        Image.fromarray(crop(80 + i, 96, 128)).save(src / f"a{i}.png")
    model = make_tiny_model(tmp_path / "tiny.pt")
    local = tmp_path / "local"
    assert cli.main(["enhance", str(src), "-o", str(local), "--model", str(model),
                     "--batch-size", "1", "--threads", "1", "-q"]) == 0

    killed = []
    run = distributed.DaskRunner.run

    def run_and_kill(self, jobs, outdir, on_start, on_result):
        def kill_after_first(result):
            on_result(result)
            if not killed:  # the other tasks of the window are still queued or running
                busy = self.client.processing()
                victim = max(busy, key=lambda w: len(busy[w]))
                pid = self.client.run(os.getpid, workers=[victim])[victim]
                os.kill(pid, signal.SIGKILL)
                killed.append(len(busy[victim]))
        return run(self, jobs, outdir, on_start, kill_after_first)

    monkeypatch.setattr(distributed.DaskRunner, "run", run_and_kill)
    out = tmp_path / "dask"
    rc = cli.main(["enhance", str(src), "-o", str(out), "--model", str(model), "--dask", "local",
                   "--workers", "2", "--threads", "1", "-q"])
    text = capsys.readouterr().out
    assert killed and killed[0] > 0, "no worker was killed with tasks on it"
    assert rc == 0, text
    assert "10 done, 0 skipped (already done), 0 failed" in text
    assert image_files(out) == image_files(local)  # every file once, bit for bit
    assert not [p for p in out.rglob("*") if p.is_file() and ".tmp" in p.name]
    assert {r["status"] for r in manifest_rows(out).values()} == {"done"}
