"""``xvert-gpu train DATA... --out DIR``: unsupervised iterative training (SPEC section 5)."""

from __future__ import annotations

import argparse
import shlex
import sys

HELP = "train the GL-U-Net chain, unsupervised, on radiographs"


def add_parser(sub) -> argparse.ArgumentParser:
    from ..train import TrainConfig

    d = TrainConfig()
    p = sub.add_parser("train", help=HELP, description=HELP + " (defaults: the paper's settings)")
    p.add_argument("data", nargs="+", help="image files or folders (walked recursively)")
    p.add_argument("--out", required=True, help="output folder (checkpoints, logs, model.pt, model.pt2)")
    p.add_argument("--steps", type=int, default=d.steps, help="iterative training steps T")
    p.add_argument("--epochs-l1", type=int, default=d.epochs_l1, help="phase 1 epochs (L1) per step")
    p.add_argument("--epochs-joint", type=int, default=d.epochs_joint, help="phase 2 epochs (L1+L2) per step")
    p.add_argument("--patience", type=int, default=d.patience,
                   help="early stopping: epochs without a better validation loss (0: off)")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--roi-size", type=int, default=d.roi_size, help="square spine ROI side")
    p.add_argument("--base-channels", type=int, default=d.base_channels)
    p.add_argument("--depth", type=int, default=d.depth)
    p.add_argument("--no-guidance", dest="guidance", action="store_false", help="ablation: no GL branch")
    p.add_argument("--loss", choices=["both", "l1", "l2"], default=d.loss,
                   help="both: L1 then L1+L2 (paper); l1 / l2: that loss only (ablations)")
    p.add_argument("--bins", type=int, default=d.bins, help="histogram bins K for choosing c*")
    p.add_argument("--l2-grad", action="store_true", help="let the gradient flow through c*")
    p.add_argument("--restart", action="store_true", help="start each step from fresh weights")
    p.add_argument("--split", default="0.7,0.2,0.1", help="train,val,test fractions by image")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--no-amp", dest="amp", action="store_false", help="fp32 on CUDA (default: bf16 autocast)")
    p.add_argument("--no-export", dest="export", action="store_false", help="skip the .pt2 artefact")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    from ..train import train

    split = tuple(float(v) for v in args.split.split(","))
    settings = dict(steps=args.steps, epochs_l1=args.epochs_l1, epochs_joint=args.epochs_joint,
                    patience=args.patience, batch_size=args.batch_size, lr=args.lr,
                    roi_size=args.roi_size, base_channels=args.base_channels, depth=args.depth,
                    guidance=args.guidance, loss=args.loss, bins=args.bins, l2_grad=args.l2_grad,
                    restart=args.restart, split=split, seed=args.seed, device=args.device,
                    amp=args.amp, export=args.export)
    command = "xvert-gpu " + " ".join(shlex.quote(a) for a in getattr(args, "argv", sys.argv[1:]))
    result = train(args.data, args.out, resume=args.resume, progress=not args.quiet,
                   command=command, **settings)
    final = {k: round(v, 5) for k, v in result.final.items() if isinstance(v, float) and "loss" in k}
    print(f"model: {result.model_path}" + (f" and {result.export_path}" if result.export_path else ""))
    print(f"final losses: {final}; log: {result.out_dir / 'losses.csv'}")
    return 0
