"""Model artefacts: TorchScript and torch.export round trips, metadata, safe loading."""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from xvert_gpu import artefact

from batch_helpers import TINY_META as META, tiny_nets


@pytest.fixture(scope="module")
def nets():
    return tiny_nets()


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(1)
    return torch.rand(3, 1, 48, 80, generator=g), torch.randn(3, 1, 48, 80, generator=g) * 0.1


@pytest.mark.parametrize("suffix", [".pt", ".pt2"])
def test_round_trip_matches_eager(nets, inputs, tmp_path, suffix):
    path = artefact.save(nets, tmp_path / f"m{suffix}", META)
    stages, meta = artefact.load(path)
    assert len(stages) == 2 and meta["stages"] == 2
    assert meta["model"] == META["model"] and meta["chain"] == META["chain"]
    assert len(meta["sha256"]) == 64
    with torch.no_grad():
        for stage, net in zip(stages, nets):
            ref = net(*inputs)
            assert torch.allclose(stage(*inputs), ref, atol=1e-5, rtol=0)
            # other batch sizes and sizes (any multiple of 2**depth) work too
            small = (inputs[0][:1, :, :32, :16], inputs[1][:1, :, :32, :16])
            assert torch.allclose(stage(*small), net(*small), atol=1e-5, rtol=0)


def test_save_leaves_the_networks_as_they_were(tmp_path):
    nets = tiny_nets()
    nets[0].train()
    nets[1].to(torch.float64)  # another dtype: save writes float32 copies
    artefact.save(nets, tmp_path / "m.pt", META)
    assert nets[0].training and not nets[1].training
    assert all(p.dtype == torch.float64 for p in nets[1].parameters())
    stages, _ = artefact.load(tmp_path / "m.pt")
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():  # float32 weights: float32 input runs and gives float32
        assert stages[1](x, x).dtype == torch.float32


def test_torchscript_loads_without_the_package(nets, inputs, tmp_path):
    path = artefact.save(nets, tmp_path / "m.pt", META)
    np.save(tmp_path / "xp.npy", inputs[0].numpy())
    np.save(tmp_path / "hfc.npy", inputs[1].numpy())
    with torch.no_grad():
        expected = nets[1](*inputs).numpy()
    code = f"""
import sys, json, numpy as np, torch
sys.path = [p for p in sys.path if p not in ('', '.')]
extra = {{"xvert_gpu.json": ""}}
m = torch.jit.load({str(path)!r}, _extra_files=extra)
xp = torch.from_numpy(np.load({str(tmp_path / 'xp.npy')!r}))
hfc = torch.from_numpy(np.load({str(tmp_path / 'hfc.npy')!r}))
with torch.no_grad():
    out = m(xp, hfc, 1)
np.save({str(tmp_path / 'out.npy')!r}, out.numpy())
assert json.loads(extra["xvert_gpu.json"])["stages"] == 2
assert not any(k.startswith("xvert_gpu") for k in sys.modules), "model code was imported"
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, env=env)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-5, rtol=0)


def test_save_is_atomic_and_rejects_unknown_suffix(nets, tmp_path):
    with pytest.raises(ValueError, match=r"\.pt .*\.pt2"):
        artefact.save(nets, tmp_path / "m.onnx", META)
    artefact.save(nets, tmp_path / "sub" / "m.pt", META)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["m.pt"]


def test_missing_and_foreign_files_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        artefact.load(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(1000))
    with pytest.raises(ValueError, match="junk.pt"):
        artefact.load(junk)
    plain = tmp_path / "plain.pt"  # TorchScript, but not ours: no metadata
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(plain))
    with pytest.raises(ValueError, match="plain.pt"):
        artefact.load(plain)


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_malicious_pickle_is_not_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(ValueError, match="evil.pt"):
        artefact.load(evil)
    torch.save({"x": _Payload()}, tmp_path / "evil_zip.pt")
    with pytest.raises(ValueError, match="evil_zip.pt"):
        artefact.load(tmp_path / "evil_zip.pt")
    assert not (tmp_path / "PWNED").exists()


def test_newer_format_is_refused(nets, tmp_path):
    path = artefact.save(nets, tmp_path / "m.pt", {**META, "format_version": 99})
    with pytest.raises(ValueError, match="newer"):
        artefact.load(path)


def test_default_weights_are_bundled_and_small():
    path = artefact.default_path()
    assert path.is_file(), "the package must ship default weights"
    assert path.stat().st_size <= 64 * 10 ** 6
    stages, meta = artefact.load("default")
    prov = meta["provenance"]
    assert len(stages) == meta["chain"]["steps"] == 2
    for key in ("command", "data", "seed", "versions", "final_losses"):
        assert key in prov
    assert all(len(d["sha256"]) == 64 for d in prov["data"])
    assert json.dumps(meta)  # plain JSON
