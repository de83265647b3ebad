"""Model artefacts: a trained GL-U-Net with the inference settings it was trained for.

Two formats, chosen by the file's suffix, both loadable without this package's
model code and without unpickling arbitrary Python objects:

* ``.pt``: TorchScript (:func:`torch.jit.script`), loads with :func:`torch.jit.load`.
* ``.pt2``: a :func:`torch.export` program package, loads with :func:`torch.export.load`.

Each holds a JSON document ``xvert_gpu.json`` (:data:`META_NAME`) with the
model configuration, the enhancement chain's settings (stages T, WLS parameters,
output stretch) and the training provenance.  Training checkpoints are plain
state dicts read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import copy
import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .io import file_sha256

META_NAME = "xvert_gpu.json"
FORMAT_VERSION = 1
DEFAULT_NAME = "default"


def default_path() -> Path:
    """The bundled default model (TorchScript)."""
    return Path(str(resources.files("xvert_gpu") / "weights" / "default.pt"))


class OutputOnly(nn.Module):
    """``forward(xp, hfc) -> output`` of one stage: the shape ``torch.export`` needs."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, xp: Tensor, hfc: Tensor) -> Tensor:
        return self.model.forward_with_features(xp, hfc)[0]


class Chain(nn.Module):
    """The T stage networks of the iterative chain (SPEC section 5): ``forward(xp, hfc, stage)``."""

    def __init__(self, stages: list[nn.Module]):
        super().__init__()
        if not stages:
            raise ValueError("a chain needs at least one stage network")
        self.stages = nn.ModuleList(stages)

    def forward(self, xp: Tensor, hfc: Tensor, stage: int) -> Tensor:
        for i, net in enumerate(self.stages):
            if i == stage:
                return net.forward_with_features(xp, hfc)[0]
        raise ValueError("stage index out of range")


def _tmp(path: Path) -> Path:
    # the suffix stays last: torch's archive writer wants files that end in .pt2
    return path.with_name(f".{path.stem}.part{path.suffix}")


def save(stages: list[nn.Module], path: str | Path, meta: dict[str, Any]) -> Path:
    """Write the stage networks (eval mode, CPU, fp32) with ``meta`` to ``path``, atomically.

    ``.pt``: one scripted :class:`Chain`.  ``.pt2``: one exported program per
    stage (``stage0``, ``stage1``, ...) in a PT2 archive, with dynamic batch
    size and H, W any multiple of ``2**depth``.
    """
    path = Path(path)
    # copies: Module.to and eval work in place, and the caller's networks stay where they are
    # (on the GPU, in training mode)
    stages = [copy.deepcopy(m).to("cpu", torch.float32).eval() for m in stages]
    doc = json.dumps({"format_version": FORMAT_VERSION, "stages": len(stages), **meta},
                     indent=2, sort_keys=True)
    tmp = _tmp(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".pt":
        torch.jit.save(torch.jit.script(Chain(stages)), str(tmp), _extra_files={META_NAME: doc})
    elif path.suffix == ".pt2":
        package_pt2, _ = _pt2_api(path)
        programs = {f"stage{i}": _export(m) for i, m in enumerate(stages)}
        package_pt2(str(tmp), exported_programs=programs, extra_files={META_NAME: doc})
    else:
        raise ValueError(f"{path}: model artefacts are .pt (TorchScript) or .pt2 (torch.export)")
    tmp.replace(path)
    return path


def _pt2_api(path: Path):
    try:  # the multi-program PT2 archive of torch >= 2.7
        from torch.export.pt2_archive._package import load_pt2, package_pt2
    except ImportError as exc:
        raise ValueError(f"{path}: this torch ({torch.__version__}) cannot read or write "
                         "multi-stage .pt2 archives; use the .pt (TorchScript) artefact") from exc
    return package_pt2, load_pt2


def _export(model: nn.Module):
    multiple = int(getattr(model, "multiple", 16))
    size = max(2 * multiple, 32)
    example = (torch.zeros(2, 1, size, size), torch.zeros(2, 1, size, size))  # n=1 would specialise
    n = torch.export.Dim("n", min=1, max=4096)
    h = torch.export.Dim("h", min=1, max=65536 // multiple)
    w = torch.export.Dim("w", min=1, max=65536 // multiple)
    dims = {0: n, 2: multiple * h, 3: multiple * w}
    return torch.export.export(OutputOnly(model), example, dynamic_shapes={"xp": dims, "hfc": dims})


def load(path: str | Path, device: str | torch.device = "cpu") -> tuple[list[Any], dict[str, Any]]:
    """``(stage callables (xp, hfc) -> output, meta)`` from a ``.pt``/``.pt2`` file or ``"default"``."""
    path = default_path() if str(path) == DEFAULT_NAME else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model artefact not found: {path}")
    try:
        if path.suffix == ".pt2":
            _, load_pt2 = _pt2_api(path)
            contents = load_pt2(str(path))
            doc = contents.extra_files.get(META_NAME, "")
            programs = contents.exported_programs
            stages = [programs[f"stage{i}"].module().to(device) for i in range(len(programs))]
        else:
            extra = {META_NAME: ""}
            chain = torch.jit.load(str(path), map_location=device, _extra_files=extra).eval()
            doc = extra[META_NAME]
            count = sum(1 for _ in chain.stages.children()) if doc else 0
            stages = [functools.partial(_call_stage, chain, i) for i in range(count)]
    except (RuntimeError, KeyError, OSError, ValueError, AttributeError) as exc:
        raise ValueError(f"{path}: not a readable xvert_gpu model artefact ({exc})") from exc
    if not doc:
        raise ValueError(f"{path}: no {META_NAME} inside; not an xvert_gpu model artefact")
    meta = json.loads(doc)
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path}: artefact format {meta['format_version']} is newer than this "
                         f"xvert_gpu reads ({FORMAT_VERSION}); upgrade xvert_gpu")
    if len(stages) != meta.get("stages", len(stages)):
        raise ValueError(f"{path}: holds {len(stages)} stage networks, its metadata says {meta['stages']}")
    meta["sha256"] = file_sha256(path)
    meta["path"] = str(path)
    return stages, meta


def _call_stage(chain: Any, stage: int, xp: Tensor, hfc: Tensor) -> Tensor:
    return chain(xp, hfc, stage)
