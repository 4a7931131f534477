"""What calibrated intervals cost: calibration and imputation time next to training, on the real pairs.

For each pair (``drosophila_embryo``, ``osmfish``), fold 0 of the benchmark's 5-fold gene split: a default SpaLSTF
model is trained on the reference for the fold's held-out genes, then ``calibrate_intervals`` (the inner
leave-genes-out over the kept genes with closed-form copies of the model), ``impute`` without and with ``interval=0.9``
are timed ``--repeats`` times each. Reported: median and range of each, and the ratios calibration / training and
imputation with / without intervals. The issue's bound: calibration costs no more than one extra training.

Usage::

    python benchmarks/calibration_cost.py --threads 1 --out results/benchmarks/calibration_cost
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import machine, markdown_table, save

from spalstf.benchmark import limit_threads


def _timed(func, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return times


def measure(name: str, shared: Path, repeats: int) -> dict:
    import spalstf as sp
    from spalstf.benchmark import gene_folds, load_pair

    _, mdata = load_pair(name, shared_data=shared)
    adata_st, adata_sc = mdata["spatial"], mdata["rna"]
    shared_genes = [g for g in adata_st.var_names if g in set(adata_sc.var_names)]
    kept, held = gene_folds(shared_genes, n_folds=5, random_state=0)[0]
    st = adata_st[:, kept].copy()
    reference = adata_sc.copy()  # registration writes into the AnnData it is given
    sp.model.SpaLSTF.setup_anndata(reference)
    torch.manual_seed(0)
    model = sp.model.SpaLSTF(reference, st, genes=held)
    train = _timed(lambda: model.train(enable_progress_bar=False), 1)[0]
    calibrate = _timed(lambda: model.calibrate_intervals(st), repeats)
    plain = _timed(lambda: model.impute(st, progress_bar=False), repeats)
    with_interval = _timed(lambda: model.impute(st, interval=0.9, progress_bar=False), repeats)
    return {
        "pair": name,
        "cells": st.n_obs,
        "measured": len(kept),
        "imputed": len(held),
        "train_s": train,
        "calibrate_s": float(np.median(calibrate)),
        "calibrate_range_s": f"{min(calibrate):.2f}-{max(calibrate):.2f}",
        "calibrate_over_train": float(np.median(calibrate)) / train,
        "impute_s": float(np.median(plain)),
        "impute_interval_s": float(np.median(with_interval)),
        "interval_over_plain": float(np.median(with_interval) / np.median(plain)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="drosophila_embryo,osmfish")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/calibration_cost"))
    parser.add_argument("--shared-data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()
    limit_threads(args.threads)
    rows = [measure(name, args.shared_data, args.repeats) for name in args.pairs.split(",")]
    command = "python benchmarks/calibration_cost.py " + " ".join(sys.argv[1:])
    save(rows, args.out, "calibration_cost", {"command": command, "machine": machine()})
    print(f"{command}\n{machine()}\n")
    print(markdown_table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
