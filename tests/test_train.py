"""Unsupervised iterative training: loss goes down, exact resume, ablations, CLI outputs."""

import csv
import json

import numpy as np
import pytest
import torch

from xvert_gpu.cli import main
from xvert_gpu.dataset import find_images, load_rois, split_images
from xvert_gpu.enhancer import Enhancer
from xvert_gpu.samples import NAMES, sample_path
from xvert_gpu.train import TrainConfig, train

DATA = [str(sample_path(n)) for n in NAMES]
TINY = dict(roi_size=64, base_channels=4, depth=2, epochs_l1=2, epochs_joint=1, steps=2,
            batch_size=2, progress=False, export=False)


def test_a_short_run_on_real_crops_lowers_the_loss(tmp_path):
    r = train(DATA[:1], tmp_path, roi_size=128, base_channels=8, depth=3, epochs_l1=6,
              epochs_joint=0, steps=1, batch_size=2, split=(1.0, 0.0, 0.0), patience=0,
              progress=False, export=False, seed=3)
    losses = [row["train_loss"] for row in r.history]
    assert len(losses) == 6
    assert losses[-1] < losses[0] - 0.02, losses


def test_resume_continues_exactly(tmp_path):
    full = train(DATA, tmp_path / "a", **TINY)
    part = train(DATA, tmp_path / "b", stop_after=2, **TINY)
    assert not part.complete and part.model_path is None and len(part.history) == 2
    part = train(DATA, tmp_path / "b", stop_after=2, resume=True, **TINY)  # crosses into step 2
    assert len(part.history) == 4
    done = train(DATA, tmp_path / "b", resume=True, **TINY)
    assert done.complete and len(done.history) == len(full.history) == 6
    assert [r["train_loss"] for r in done.history] == [r["train_loss"] for r in full.history]
    for step in (1, 2):
        a = torch.load(tmp_path / "a" / "checkpoints" / f"stage{step}.pt", weights_only=True)
        b = torch.load(tmp_path / "b" / "checkpoints" / f"stage{step}.pt", weights_only=True)
        assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="other settings"):
        train(DATA, tmp_path / "b", resume=True, **{**TINY, "lr": 1e-2})


def test_cli_writes_model_log_plot_and_provenance(tmp_path):
    out = tmp_path / "run"
    rc = main(["train", *DATA, "--out", str(out), "--roi-size", "64", "--base-channels", "4",
               "--depth", "2", "--epochs-l1", "2", "--epochs-joint", "1", "--batch-size", "2",
               "--seed", "7", "--quiet"])
    assert rc == 0
    for name in ("model.pt", "model.pt2", "losses.csv", "losses.png", "provenance.json",
                 "checkpoints/last.pt", "checkpoints/stage1.pt", "checkpoints/stage2.pt"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader(open(out / "losses.csv")))
    assert [(r["step"], r["phase"]) for r in rows] == [("1", "1"), ("1", "1"), ("1", "2"),
                                                       ("2", "1"), ("2", "1"), ("2", "2")]
    assert all(float(r["train_l2"]) > 0 for r in rows if r["phase"] == "2")
    prov = json.loads((out / "provenance.json").read_text())["provenance"]
    assert prov["seed"] == 7 and prov["versions"]["torch"] == torch.__version__
    assert "xvert-gpu train" in prov["command"] and "--seed 7" in prov["command"]
    assert sorted(d["file"] for d in prov["data"]) == sorted(NAMES)
    assert set(prov["final_losses"]) >= {"train_loss", "val_loss"}
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)  # no arbitrary pickles
    assert state["step"] == 2
    image = np.asarray(load_rois([sample_path(NAMES[0])], 64).crops[0] * 255, np.uint8)
    a = Enhancer.from_pretrained(str(out / "model.pt")).enhance(image)
    b = Enhancer.from_pretrained(str(out / "model.pt2")).enhance(image)
    np.testing.assert_array_equal(a, b)


def test_ablations(tmp_path):
    r = train(DATA, tmp_path, **{**TINY, "steps": 1, "guidance": False, "loss": "l2",
                                 "restart": True, "export": False})
    assert {row["loss"] for row in r.history} == {"l2"}
    assert all("train_l1" not in row for row in r.history)
    assert getattr(torch.jit.load(str(r.model_path)).stages, "0").guidance is False
    assert TrainConfig(loss="l1").phases() == [("l1", 200), ("l1", 25)]
    assert TrainConfig().phases() == [("l1", 200), ("l1+l2", 25)]


def test_restart_starts_each_step_afresh(tmp_path):
    a = train(DATA, tmp_path / "a", **{**TINY, "restart": True})
    b = train(DATA, tmp_path / "b", **TINY)
    sa = torch.load(tmp_path / "a" / "checkpoints" / "stage2.pt", weights_only=True)
    sb = torch.load(tmp_path / "b" / "checkpoints" / "stage2.pt", weights_only=True)
    assert not all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.history[:3] == [{**r, "seconds": a.history[i]["seconds"]} for i, r in enumerate(b.history[:3])]


@pytest.mark.parametrize("kwargs, match", [({"loss": "l3"}, "loss"), ({"steps": 0}, "steps"),
                                           ({"roi_size": 100}, "multiple"),
                                           ({"epochs_l1": -1}, "epochs_l1")])
def test_bad_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_split_by_image():
    for n in (1, 2, 3, 10, 50):
        tr, va, te = split_images(n, seed=1)
        assert sorted(tr + va + te) == list(range(n)) and tr
        if n >= 2:
            assert va
    tr, va, te = split_images(10, seed=1)
    assert (len(tr), len(va), len(te)) == (7, 2, 1)
    assert split_images(10, seed=1) == split_images(10, seed=1) != split_images(10, seed=2)


def test_find_images_and_rois(tmp_path):
    assert find_images([sample_path(NAMES[0]).parent]) == sorted(find_images(DATA))
    with pytest.raises(FileNotFoundError):
        find_images([tmp_path / "missing"])
    rois = load_rois([sample_path(NAMES[0])], 768)  # larger than the 512^2 image: padded
    assert rois.crops.shape == (2, 768, 768) and rois.crops.dtype == np.float32
