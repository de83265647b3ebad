"""Unsupervised iterative training of the GL-U-Net chain (SPEC section 5).

>>> result = train(["radiographs/"], "run1", epochs_l1=200, epochs_joint=25)   # doctest: +SKIP

Per training step t = 1..T: phase 1 trains ``epochs_l1`` epochs with L1, phase 2
``epochs_joint`` epochs with L1 + L2, each phase with early stopping on the
validation loss (the best weights of the phase are kept).  Between steps the
trained network enhances every crop, and the next step trains on
``(Xp^{t+1}, Y^{t+1})`` from :func:`xvert_gpu.chain.next_input`, continuing from
step t's weights (``restart=True`` starts each step afresh).

Ablations (SPEC section 5): ``guidance=False``; ``loss="l1"`` (both phases use
L1); ``loss="l2"`` (both phases use L2); ``steps=1, 2, 3``.

Output folder:

* ``checkpoints/last.pt``: everything needed to resume, written atomically at the
  end of every epoch (a state dict read back with ``torch.load(weights_only=True)``);
* ``checkpoints/stage<t>.pt``: the final weights of each finished step;
* ``losses.csv`` and ``losses.png``: the losses per epoch;
* ``model.pt`` (TorchScript) and ``model.pt2`` (``torch.export``): the chain,
  loadable by :meth:`xvert_gpu.enhancer.Enhancer.from_pretrained`;
* ``provenance.json``: command, data checksums, seed, versions, final losses.
"""

from __future__ import annotations

import copy
import csv
import json
import platform
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from . import artefact, backends
from .arrays import to_cupy, to_numpy, to_torch
from .chain import ChainParams, first_input, next_input
from .dataset import RoiSet, find_images, load_rois, split_images
from .losses import l1_loss, l2_loss
from .model import GLUNet

__all__ = ["TrainConfig", "TrainResult", "train"]

LOSSES = ("both", "l1", "l2")


@dataclass
class TrainConfig:
    """Every setting of a training run (the paper's values as defaults)."""

    steps: int = 2
    epochs_l1: int = 200
    epochs_joint: int = 25
    patience: int = 20
    batch_size: int = 8
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.99)
    roi_size: int = 512
    base_channels: int = 64
    depth: int = 4
    guidance: bool = True
    loss: str = "both"
    bins: int = 64
    l2_grad: bool = False
    restart: bool = False
    split: tuple[float, float, float] = (0.7, 0.2, 0.1)
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    export: bool = True
    chain: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}; got {self.loss!r}")
        for name in ("steps", "batch_size", "roi_size", "base_channels", "depth", "bins"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        for name in ("epochs_l1", "epochs_joint", "patience"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}")
        if self.roi_size % 2 ** self.depth:
            raise ValueError(f"roi_size ({self.roi_size}) must be a multiple of 2**depth = {2 ** self.depth}")
        self.betas = tuple(self.betas)
        self.split = tuple(self.split)
        self.chain_params()  # validates

    def chain_params(self) -> ChainParams:
        return ChainParams.from_dict({**self.chain, "steps": self.steps})

    def phases(self) -> list[tuple[str, int]]:
        """(loss name, epochs) of the two phases of a step."""
        first, second = {"both": ("l1", "l1+l2"), "l1": ("l1", "l1"), "l2": ("l2", "l2")}[self.loss]
        return [(first, self.epochs_l1), (second, self.epochs_joint)]


@dataclass
class TrainResult:
    out_dir: Path
    model_path: Path | None
    export_path: Path | None
    history: list[dict[str, Any]]
    final: dict[str, Any]
    complete: bool = True


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def _new_model(cfg: TrainConfig) -> GLUNet:
    return GLUNet(cfg.base_channels, cfg.depth, cfg.guidance)


def _loss(name: str, model: GLUNet, xp: torch.Tensor, hfc: torch.Tensor, cfg: TrainConfig) -> tuple[torch.Tensor, dict]:
    out, features = model(xp, hfc, return_features=True)
    parts = {}
    if "l1" in name:
        parts["l1"] = l1_loss(out, hfc)
    if "l2" in name:
        parts["l2"] = l2_loss(out, features, cfg.bins, detach=not cfg.l2_grad)
    total = sum(parts.values())
    return total, {k: float(v.detach()) for k, v in parts.items()}


class _Trainer:
    """State of one run: model, optimiser, data of the current step, history."""

    def __init__(self, cfg: TrainConfig, rois: RoiSet, out: Path, progress: bool, command: str,
                 stop_after: int | None = None):
        self.cfg, self.rois, self.out, self.progress, self.command = cfg, rois, out, progress, command
        self.stop_after = stop_after
        self.backend = backends.resolve(cfg.device, None)
        self.dev = torch.device("cuda" if self.backend == "cuda" else "cpu")
        self.train_idx, self.val_idx, self.test_idx = split_images(len(rois.paths), cfg.split, cfg.seed)
        self.ckpt_dir = out / "checkpoints"
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.history: list[dict[str, Any]] = []
        self._inputs: tuple[int, Any, Any] | None = None  # (stages run, Xp, Y) of the last step

    # -- data ----------------------------------------------------------------------------------

    def _stage_inputs(self, stages: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        """(Xp^t, Y^t) of every crop for the step after the given finished stages.

        The inputs of the previous step are kept, so each step runs only the
        stage that has just finished (a resumed run replays the earlier ones once).
        """
        p = self.cfg.chain_params()
        done, xp, hfc = self._inputs or (0, *first_input(self.rois.crops, p, device=self.backend))
        for state in stages[done:]:
            net = _new_model(self.cfg).to(self.dev)
            net.load_state_dict(state)
            net.eval()
            outs = []
            with torch.inference_mode():
                for s in range(0, len(xp), self.cfg.batch_size):
                    a = _tensor(xp[s:s + self.cfg.batch_size], self.dev)
                    b = _tensor(hfc[s:s + self.cfg.batch_size], self.dev)
                    outs.append(net(a, b)[:, 0].float())
            out = torch.cat(outs)
            out = to_numpy(out) if self.backend == "cpu" else to_cupy(out)
            xp, hfc = next_input(out, p, self.backend)
        self._inputs = (len(stages), xp, hfc)
        return to_numpy(xp), to_numpy(hfc)

    # -- epochs --------------------------------------------------------------------------------

    def _epoch(self, model, opt, loss_name, xp, hfc, idx, train: bool, gen: torch.Generator) -> dict:
        model.train(train)
        order = idx[torch.randperm(len(idx), generator=gen).numpy()] if train else idx
        sums: dict[str, float] = {}
        count = 0
        amp = self.cfg.amp and self.dev.type == "cuda"
        for s in range(0, len(order), self.cfg.batch_size):
            batch = order[s:s + self.cfg.batch_size]
            if train and len(batch) < 2 and len(order) >= 2:
                continue  # BatchNorm needs two samples; a single leftover crop waits for the next epoch
            a, b = _tensor(xp[batch], self.dev), _tensor(hfc[batch], self.dev)
            with torch.set_grad_enabled(train), torch.autocast(self.dev.type, torch.bfloat16, enabled=amp):
                total, parts = _loss(loss_name, model, a, b, self.cfg)
            if train:
                opt.zero_grad(set_to_none=True)
                total.backward()
                opt.step()
            n = len(batch)
            count += n
            for k, v in {"loss": float(total.detach()), **parts}.items():
                sums[k] = sums.get(k, 0.0) + v * n
        return {k: v / max(count, 1) for k, v in sums.items()}

    # -- checkpoints ---------------------------------------------------------------------------

    def _checkpoint(self, at: tuple[int, int, int], model, stages: list[dict], optimizer: dict,
                    generator: torch.Tensor, best: dict, best_loss: float, since: int) -> dict:
        """Everything :meth:`run` needs to resume at (step, phase, epoch) ``at``."""
        step, phase, epoch = at
        return {"config": _jsonable(asdict(self.cfg)), "step": step, "phase": phase, "epoch": epoch,
                "model": model.state_dict(), "optimizer": optimizer, "generator": generator,
                "best": best, "best_loss": best_loss, "since": since,
                "stages": stages, "history": json.dumps(self.history)}

    def _save(self, state: dict) -> None:
        path = self.ckpt_dir / "last.pt"
        tmp = path.with_name(".last.pt.part")
        torch.save(state, tmp)
        tmp.replace(path)

    def _load(self) -> dict | None:
        path = self.ckpt_dir / "last.pt"
        if not path.is_file():
            return None
        return torch.load(path, map_location="cpu", weights_only=True)

    # -- the run -------------------------------------------------------------------------------

    def run(self, resume: bool) -> TrainResult:
        from tqdm.auto import tqdm

        cfg = self.cfg
        state = self._load() if resume else None
        if state is not None and state["config"] != _jsonable(asdict(cfg)):
            raise ValueError(f"{self.ckpt_dir / 'last.pt'}: the checkpoint was made with other "
                             "settings; use the same settings to resume, or a new --out folder")
        _seed_everything(cfg.seed)
        model = _new_model(cfg).to(self.dev)
        stages: list[dict] = []
        start = (0, 0, 0)  # step, phase, epoch
        if state is not None:
            stages = list(state["stages"])
            self.history = list(json.loads(state["history"]))
            start = (int(state["step"]), int(state["phase"]), int(state["epoch"]))
            model.load_state_dict(state["model"])
        total_epochs = cfg.steps * sum(e for _, e in cfg.phases())
        done_epochs = sum(1 for row in self.history)
        bar = tqdm(total=total_epochs, initial=done_epochs, disable=not self.progress,
                   desc="train", unit="epoch", dynamic_ncols=True)
        ran = 0
        tr, va = self.rois.subset(self.train_idx), self.rois.subset(self.val_idx)
        for step in range(start[0], cfg.steps):
            mid_step = state is not None and step == start[0] and start[1:] != (0, 0)
            if step > 0 and cfg.restart and not mid_step:
                torch.manual_seed(cfg.seed + step)
                model = _new_model(cfg).to(self.dev)
            xp, hfc = self._stage_inputs(stages)
            for phase, (loss_name, epochs) in enumerate(cfg.phases()):
                if (step, phase) < start[:2]:
                    continue
                opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.betas)
                gen = torch.Generator().manual_seed(cfg.seed * 1000 + step * 10 + phase)
                first_epoch, best, best_loss, since = 0, None, float("inf"), 0
                if state is not None and (step, phase) == start[:2]:
                    opt.load_state_dict(state["optimizer"])
                    gen.set_state(state["generator"])
                    first_epoch = start[2]
                    best = state["best"] or None
                    best_loss, since = float(state["best_loss"]), int(state["since"])
                for epoch in range(first_epoch, epochs):
                    if self.stop_after is not None and ran >= self.stop_after:
                        bar.close()
                        return TrainResult(self.out, None, None, self.history,
                                           self.history[-1] if self.history else {}, complete=False)
                    if since >= cfg.patience > 0 and best is not None:
                        bar.update(epochs - epoch)  # early stop: the rest of the phase is skipped
                        break
                    t0 = time.perf_counter()
                    tr_m = self._epoch(model, opt, loss_name, xp, hfc, tr, True, gen)
                    va_m = self._epoch(model, opt, loss_name, xp, hfc, va, False, gen) if len(va) else {}
                    monitor = va_m.get("loss", tr_m.get("loss", float("inf")))
                    if monitor < best_loss:
                        best_loss, since = monitor, 0
                        best = copy.deepcopy(model.state_dict())
                    else:
                        since += 1
                    row = {"step": step + 1, "phase": phase + 1, "loss": loss_name, "epoch": epoch + 1,
                           **{f"train_{k}": v for k, v in tr_m.items()},
                           **{f"val_{k}": v for k, v in va_m.items()},
                           "seconds": time.perf_counter() - t0}
                    self.history.append(row)
                    ran += 1
                    bar.set_postfix({k: f"{v:.4f}" for k, v in row.items()
                                     if k.startswith(("train_loss", "val_loss"))}, refresh=False)
                    bar.update(1)
                    self._save(self._checkpoint((step, phase, epoch + 1), model, stages, opt.state_dict(),
                                                gen.get_state(), best or {}, best_loss, since))
                    self._write_log()
                if best is not None:
                    model.load_state_dict(best)
            stages.append(copy.deepcopy(model.state_dict()))
            torch.save(stages[-1], self.ckpt_dir / f"stage{step + 1}.pt")
            self._save(self._checkpoint((step + 1, 0, 0), model, stages, {},
                                        torch.Generator().get_state(), {}, float("inf"), 0))
            state = None
        bar.close()
        return self._finish(stages)

    # -- outputs -------------------------------------------------------------------------------

    def _write_log(self) -> None:
        keys: list[str] = []
        for row in self.history:
            keys += [k for k in row if k not in keys]
        tmp = self.out / ".losses.csv.part"
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(self.history)
        tmp.replace(self.out / "losses.csv")

    def _plot(self) -> None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        x = np.arange(1, len(self.history) + 1)
        for key in ("train_loss", "val_loss", "train_l1", "train_l2"):
            y = [row.get(key, np.nan) for row in self.history]
            if not np.all(np.isnan(y)):
                ax.plot(x, y, label=key)
        for i in range(1, len(self.history)):
            if self.history[i]["step"] != self.history[i - 1]["step"]:
                ax.axvline(i + 0.5, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("epoch (all steps and phases)")
        ax.set_ylabel("loss")
        ax.legend()
        ax.set_title("XVertNet training losses")
        fig.tight_layout()
        fig.savefig(self.out / "losses.png", dpi=100)
        plt.close(fig)

    def _finish(self, stages: list[dict]) -> TrainResult:
        cfg = self.cfg
        nets = []
        for s in stages:
            net = _new_model(cfg)
            net.load_state_dict(s)
            nets.append(net.eval())
        final = self.history[-1] if self.history else {}
        meta = {
            "model": {"base_channels": cfg.base_channels, "depth": cfg.depth, "guidance": cfg.guidance},
            "chain": cfg.chain_params().to_dict(),
            "provenance": self._provenance(final),
        }
        model_path = artefact.save(nets, self.out / "model.pt", meta)
        export_path = artefact.save(nets, self.out / "model.pt2", meta) if cfg.export else None
        (self.out / "provenance.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        self._write_log()
        if self.history:
            self._plot()
        return TrainResult(self.out, model_path, export_path, self.history, final)

    def _provenance(self, final: dict) -> dict:
        return {
            "command": self.command,
            "config": _jsonable(asdict(self.cfg)),
            "data": [{"file": p.name, "sha256": c} for p, c in zip(self.rois.paths, self.rois.checksums)],
            "split": {"train": [self.rois.paths[i].name for i in self.train_idx],
                      "val": [self.rois.paths[i].name for i in self.val_idx],
                      "test": [self.rois.paths[i].name for i in self.test_idx]},
            "seed": self.cfg.seed,
            "device": torch.cuda.get_device_name() if self.dev.type == "cuda" else platform.processor() or "cpu",
            "versions": {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()},
            "epochs_run": len(self.history),
            "final_losses": final,
        }


def _jsonable(d: Any) -> Any:
    return json.loads(json.dumps(d))


def _tensor(a: np.ndarray, dev: torch.device) -> torch.Tensor:
    return to_torch(a).to(dev)[:, None]


def train(data: Sequence[str | Path], out: str | Path, *, resume: bool = False, progress: bool = True,
          command: str | None = None, stop_after: int | None = None, **settings: Any) -> TrainResult:
    """Train the GL-U-Net chain on radiographs, unsupervised.

    Parameters
    ----------
    data : files or folders
        Radiographs in any format :func:`xvert_gpu.io.read_image` reads.
    out : folder
        Where checkpoints, logs and the model artefacts go.
    resume : bool
        Continue from ``out/checkpoints/last.pt`` (the settings must be the same).
    progress : bool
        Show a progress bar with the losses.
    command : str, optional
        Recorded in the provenance (default: this process's command line).
    stop_after : int, optional
        Return after this many epochs in this call, with the checkpoint saved and
        ``complete=False`` (for time-boxed jobs; ``resume=True`` carries on).
    **settings
        Fields of :class:`TrainConfig` (e.g. ``steps=2, epochs_l1=200, epochs_joint=25``).

    Returns
    -------
    TrainResult
    """
    cfg = TrainConfig(**settings)
    out = Path(out)
    paths = find_images(data)
    if not paths:
        raise ValueError(f"no images found in {list(map(str, data))}")
    rois = load_rois(paths, cfg.roi_size)
    command = command or " ".join([Path(sys.argv[0]).name] + sys.argv[1:])
    return _Trainer(cfg, rois, out, progress, command, stop_after).run(resume)
