"""Time training and imputation in full and mixed precision: Drosophila pair and a 10,000-gene synthetic pair.

For each pair and precision: seconds per training epoch (median over ``--epochs`` epochs, the first left out as
warm-up) and seconds per 1,000 cells imputed with the posterior mean (``n_samples=1``) and per DDIM draw
(``n_samples=--draws``, ``--ddim-steps`` steps; reported per draw). Training uses Lightning's ``precision=``;
imputation runs under :func:`spalstf.model.autocast` with the same precision. The posterior means of each
mixed-precision run are compared with the float32 run of the same seed (max absolute difference, log1p units).

Pairs: ``drosophila`` (bundled: reference 1,297 cells x 2,000 genes, spatial 3,039 cells x 84 genes; imputes the
1,916 reference genes the panel lacks) and ``synthetic`` (``--genes`` genes, ``--measured`` measured,
``--ref-cells`` / ``--st-cells`` cells; imputes every unmeasured gene).

Usage::

    python benchmarks/gpu.py --device cuda                      # fp32, bf16-mixed, 16-mixed on the GPU
    python benchmarks/gpu.py --device cpu --threads 1 --epochs 2 --cells 200 --genes 1000 --measured 200 \\
        --ref-cells 500 --st-cells 200                          # CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

from _timing import EpochTimer, device_name, drosophila_pair, synchronize, synthetic_pair

import spalstf as sp
from spalstf.benchmark import silence_libraries
from spalstf.model import autocast


def run(name, adata_st, adata_sc, precision, args) -> dict:
    reference = adata_sc.copy()
    sp.model.SpaLSTF.setup_anndata(reference)
    torch.manual_seed(0)
    model = sp.model.SpaLSTF(reference, adata_st, preset=args.preset, n_top_genes=None)
    timer = EpochTimer(args.device)
    accelerator = "gpu" if args.device == "cuda" else "cpu"
    model.train(
        max_epochs=args.epochs,
        accelerator=accelerator,
        devices=1,
        precision=precision,
        enable_progress_bar=False,
        callbacks=[timer],
        **({"batch_size": args.batch_size} if args.batch_size else {}),
    )
    cells = adata_st[: min(args.cells, adata_st.n_obs)].copy()
    row = {
        "pair": name,
        "precision": precision,
        "reference cells": reference.n_obs,
        "measured genes": len(model.measured_genes),
        "imputed genes": len(model.imputed_genes),
        "s / epoch": timer.per_epoch(),
        "epochs timed": len(timer.seconds),
    }
    with autocast(args.device, precision):
        model.impute(cells[:8], progress_bar=False)  # warm-up
        for label, kwargs, per in (
            ("posterior mean", {"n_samples": 1}, 1),
            (f"DDIM {args.ddim_steps} steps", {"n_samples": args.draws, "n_sampling_steps": args.ddim_steps}, None),
        ):
            synchronize(args.device)
            t0 = time.perf_counter()
            mean, _ = model.impute(cells, progress_bar=False, batch_size=args.impute_batch, **kwargs)
            synchronize(args.device)
            seconds = time.perf_counter() - t0
            row[f"s / 1k cells, {label}" + (" (per draw)" if per is None else "")] = (
                seconds / cells.n_obs * 1000 / (per or args.draws)
            )
            if per == 1:
                row["_posterior_mean"] = mean.values
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--pairs", default="drosophila,synthetic")
    parser.add_argument("--precisions", default=None, help="default: 32,bf16-mixed,16-mixed (cuda); 32,bf16-mixed")
    parser.add_argument("--preset", default="cpu", choices=["cpu", "paper"])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    parser.add_argument("--cells", type=int, default=2000, help="spatial cells imputed for the timing")
    parser.add_argument("--impute-batch", type=int, default=1024)
    parser.add_argument("--draws", type=int, default=2)
    parser.add_argument("--ddim-steps", type=int, default=25)
    parser.add_argument("--genes", type=int, default=10_000)
    parser.add_argument("--measured", type=int, default=1_000)
    parser.add_argument("--ref-cells", type=int, default=3_000)
    parser.add_argument("--st-cells", type=int, default=2_000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    args = parser.parse_args()
    silence_libraries()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible to torch")
    default = "32,bf16-mixed,16-mixed" if args.device == "cuda" else "32,bf16-mixed"
    precisions = (args.precisions or default).split(",")

    pairs = {
        "drosophila": lambda: drosophila_pair(),
        "synthetic": lambda: synthetic_pair(args.genes, args.measured, args.ref_cells, args.st_cells),
    }
    rows = []
    for name in args.pairs.split(","):
        adata_st, adata_sc = pairs[name]()
        label = name if name == "drosophila" else f"synthetic {args.genes} genes"
        base = None
        for precision in precisions:
            row = run(label, adata_st, adata_sc, precision, args)
            mean = row.pop("_posterior_mean")
            if precision == "32":
                base = mean
            row["max abs diff vs fp32, posterior mean"] = float(np.abs(mean - base).max()) if base is not None else None
            rows.append(row)
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)

    device = device_name(args.device)
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [f"{v:.3g}" if isinstance(v, float) else ("" if v is None else str(v)) for v in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(f"\nDevice: {device}; torch {torch.__version__}; preset {args.preset}\n\n{table}")
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"gpu_benchmark_{args.device}.json"
    info = {
        "device": device,
        "torch": torch.__version__,
        "command": "python " + " ".join(sys.argv),
        "args": {k: str(v) for k, v in vars(args).items()},
        "rows": rows,
    }
    out.write_text(json.dumps(info, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
