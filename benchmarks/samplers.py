"""Time and score SpaLSTF's outputs on fold 0 of the Drosophila pair: posterior mean, DDIM and DDPM draws.

Trains the default model on fold 0 of KFold(5, shuffle=True, random_state=0) over the 84 genes (held-out genes
removed from the ST data first), then imputes a subset of cells with each output mode and reports seconds per 1,000
cells per draw and the median SPCC over the 17 held-out genes on those cells. The cross-validation against peers is
``benchmarks/cross_validate.py``.

Usage::

    python benchmarks/samplers.py [--cells 300] [--threads 1] [--out results/benchmarks]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import spalstf as sp
from spalstf.benchmark import gene_folds, silence_libraries

MODES = (
    ("posterior mean (default, n_samples=1)", {"n_samples": 1}),
    ("DDIM 25 steps, mean of 2 draws", {"n_samples": 2, "sampler": "ddim"}),
    ("DDIM 25 steps, mean of 8 draws", {"n_samples": 8, "sampler": "ddim"}),
    ("DDPM 1000 steps, mean of 2 draws", {"n_samples": 2, "sampler": "ddpm"}),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=300)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    args = parser.parse_args()
    silence_libraries()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    mdata = sp.datasets.drosophila_embryo()
    adata_st, adata_sc = mdata["spatial"], mdata["rna"]
    kept, held = gene_folds(adata_st.var_names, 5, 0)[0]
    st_fold = adata_st[:, kept].copy()
    reference = adata_sc.copy()
    sp.model.SpaLSTF.setup_anndata(reference)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = sp.model.SpaLSTF(reference, st_fold, genes=held)
    model.train(enable_progress_bar=False)
    train_s = time.perf_counter() - t0

    step = max(1, st_fold.n_obs // args.cells)
    sub = st_fold[st_fold.obs_names[::step][: args.cells]].copy()
    truth = adata_st[sub.obs_names, held].to_df()
    rows = []
    for label, kw in MODES:
        t0 = time.perf_counter()
        mean, _ = model.impute(sub, progress_bar=False, **kw)
        seconds = time.perf_counter() - t0
        rows.append(
            {
                "output": label,
                "s_per_1000_cells_per_draw": seconds / sub.n_obs * 1000 / kw["n_samples"],
                "median_SPCC": float(np.nanmedian(sp.metrics.spcc(truth, mean[held]))),
            }
        )
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "drosophila_samplers.csv", index=False)
    info = {"cells": sub.n_obs, "train_s_fold0": train_s, "torch_threads": torch.get_num_threads()}
    (args.out / "drosophila_samplers.json").write_text(json.dumps(info, indent=2))
    print(f"\nfold 0, {sub.n_obs} cells, training {train_s:.0f} s, torch threads {torch.get_num_threads()}")
    print(table.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
