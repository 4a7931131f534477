"""Training + imputation time of SpaLSTF as the reference grows (the cost must not grow with the reference size).

The ``"cpu"`` preset trains a fixed number of optimiser steps, so only the parts that touch every reference cell
grow with it (the per-gene quantiles, the ridge fits, the neighbour search of each step and of the calibration).
This script imputes fold 0 of the osmFISH pair (``../shared/data/osmfish``; the bundled Drosophila pair with
``--dataset drosophila_embryo``) with references of ``--sizes`` cells drawn with replacement from the real
reference (seeded), in fresh worker processes, and prints time and the ratio to the smallest size, next to gimVI on
the same fold (``--gimvi``).

Usage::

    python benchmarks/reference_scale.py --sizes 1400,14000 --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import machine, markdown_table, run_worker


def worker(args) -> dict:
    import warnings

    import anndata as ad
    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    from cross_validate import quiet

    import spalstf as sp
    from spalstf.benchmark import gene_folds, load_pair

    quiet()
    _, mdata = load_pair(args.dataset, shared_data=args.shared_data)
    adata_st, adata_sc = mdata["spatial"], mdata["rna"]
    shared = [g for g in adata_st.var_names if g in set(adata_sc.var_names)]
    kept, held = gene_folds(shared, 5, 0)[0]
    rows = np.random.default_rng(0).choice(adata_sc.n_obs, args.size, replace=True)
    reference = adata_sc[rows].copy()
    reference.obs_names = [f"ref{i}" for i in range(args.size)]
    st_fold = ad.AnnData(adata_st[:, kept].X.copy(), obs=adata_st.obs[[]].copy(), var=adata_st.var.loc[kept, []])
    t0 = time.perf_counter()
    if args.method == "gimvi":
        from spalstf.benchmark import impute_gimvi

        impute_gimvi(st_fold, reference, held, random_state=0)
    else:
        sp.tl.spalstf_impute(st_fold, reference, genes=held, progress_bar=False, require_spatial=False)
    return {"method": args.method, "reference_cells": args.size, "time_s": time.perf_counter() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1400,14000")
    parser.add_argument("--dataset", "--pair", dest="dataset", default="osmfish")
    parser.add_argument("--shared-data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gimvi", action="store_true", help="also time gimVI (200 epochs) on the same references")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--method", default="spalstf", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    rows = []
    methods = ["spalstf", "gimvi"] if args.gimvi else ["spalstf"]
    for method in methods:
        for size in [int(s) for s in args.sizes.split(",")]:
            extra = ["--dataset", args.dataset, "--shared-data", args.shared_data, "--threads", str(args.threads)]
            row = run_worker(__file__, ["--size", str(size), "--method", method, *extra], args.threads)
            base = next((r["time_s"] for r in rows if r["method"] == method), row["time_s"])
            row["ratio_to_smallest"] = row["time_s"] / base
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"{machine()}; {args.dataset} fold 0; {args.threads} thread(s)\n")
    print(markdown_table(rows, ["method", "reference_cells", "time_s", "ratio_to_smallest"]))


if __name__ == "__main__":
    main()
