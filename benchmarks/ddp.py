"""Time DDP training with 1 and 2 processes on the CPU (gloo), same global batch, on the Drosophila pair.

Each configuration runs in its own subprocess (``strategy="ddp"`` re-launches the script for the other ranks) with
one torch thread per process. The per-rank batch is ``--global-batch / devices``, so every configuration makes the
same optimiser steps over the same number of cells. Reported: median seconds per epoch (first epoch left out),
and the wall time of the whole subprocess (imports, model set-up, process group, training).

Usage::

    python benchmarks/ddp.py [--devices 1,2] [--epochs 4] [--global-batch 256] [--out results/benchmarks]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from _timing import EpochTimer, device_name, drosophila_pair


def worker(args) -> None:
    import spalstf as sp
    from spalstf.benchmark import silence_libraries

    silence_libraries()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    adata_st, adata_sc = drosophila_pair()
    sp.model.SpaLSTF.setup_anndata(adata_sc)
    torch.manual_seed(0)
    model = sp.model.SpaLSTF(adata_sc, adata_st, n_top_genes=None)
    timer = EpochTimer("cpu")
    kwargs = {"strategy": "ddp"} if args.worker > 1 else {}
    model.train(
        max_epochs=args.epochs,
        batch_size=args.global_batch // args.worker,
        accelerator="cpu",
        devices=args.worker,
        enable_progress_bar=False,
        callbacks=[timer],
        **kwargs,
    )
    if model.trainer.is_global_zero:
        result = {
            "devices": args.worker,
            "batch per process": args.global_batch // args.worker,
            "s / epoch": timer.per_epoch(),
            "epoch seconds": timer.seconds,
            "final train_loss": float(model.history["train_loss"].iloc[-1, 0]),
            "imputed genes": len(model.imputed_genes),
        }
        Path(args.result).write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="1,2")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--global-batch", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    parser.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rows = []
    for n in map(int, args.devices.split(",")):
        result = args.out / f"ddp_{n}.json"
        cmd = [sys.executable, __file__, "--worker", str(n), "--result", str(result)]
        cmd += ["--epochs", str(args.epochs), "--global-batch", str(args.global_batch)]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, cwd=args.out, capture_output=True)
        row = json.loads(result.read_text())
        row["wall s (whole run)"] = time.perf_counter() - t0
        rows.append(row)
        print(row, flush=True)
    torch.set_num_threads(1)
    print(f"\nDevice: {device_name('cpu')} per process; torch {torch.__version__}; Drosophila pair, preset cpu")
    print("\n| processes | batch per process | s / epoch | wall s (whole run) | final train_loss |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['devices']} | {r['batch per process']} | {r['s / epoch']:.2f} | {r['wall s (whole run)']:.1f} "
            f"| {r['final train_loss']:.3f} |"
        )
    info = {"device": device_name("cpu"), "torch": torch.__version__, "command": "python " + " ".join(sys.argv)}
    (args.out / "ddp_benchmark_cpu.json").write_text(json.dumps({**info, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
