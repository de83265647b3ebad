"""pytest-benchmark: GL-U-Net inference and end-to-end enhancement, grouped per size.

Inference runs the default model's first stage network on (Xp, Y)-shaped inputs;
eager and TorchScript are compared in one group.  End to end is
``Enhancer.enhance`` on a sample (preprocessing, T stages, stretch) plus the PNG
read and write around it.
"""

import numpy as np
import pytest
import torch

from xvert_gpu import artefact
from xvert_gpu.enhancer import Enhancer
from xvert_gpu.io import read_image, write_image
from xvert_gpu.model import GLUNet
from xvert_gpu.samples import NAMES, load_sample


@pytest.fixture(scope="module")
def default_stage():
    stages, meta = artefact.load("default")
    eager = GLUNet(**meta["model"]).eval()
    return stages[0], eager, meta


@pytest.mark.parametrize("size", [256, 512])
@pytest.mark.parametrize("mode", ["torchscript", "eager"])
def test_inference(benchmark, default_stage, size, mode):
    scripted, eager, _ = default_stage
    net = scripted if mode == "torchscript" else eager
    x = torch.rand(1, 1, size, size)
    y = torch.randn(1, 1, size, size) * 0.05
    benchmark.group = f"inference {size}^2 batch 1"

    def run():
        with torch.inference_mode():
            return net(x, y)

    run()
    out = benchmark(run)
    assert out.shape == x.shape


@pytest.mark.parametrize("size", [256, 512])
def test_end_to_end_png(benchmark, tmp_path, size):
    src = tmp_path / "in.png"
    write_image(src, load_sample(NAMES[0], size))
    enh = Enhancer.from_pretrained("default")
    benchmark.group = f"end to end {size}^2"

    def run():
        r = read_image(src)
        return write_image(tmp_path / "out.png", enh.enhance(r.pixels, bits=r.bits), like=r)

    out = benchmark.pedantic(run, rounds=2, iterations=1, warmup_rounds=1)
    assert read_image(out).pixels.shape == (size, size)
    assert np.isfinite(read_image(out).pixels).all()
