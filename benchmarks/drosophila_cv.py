"""5-fold gene cross-validation of SpaLSTF on the bundled Drosophila pair, with baselines on the same folds.

Folds: KFold(5, shuffle=True, random_state=0) over the 84 shared genes; in each fold the held-out genes are removed
from the ST data before anything is computed. Every method is scored against the same ground truth (the BDTNP values)
with ``sp.metrics``. Baselines (as defined in the project notes): reference log1p(CP10k) and ST values, both z-scored
per gene on the kept genes; kNN = mean of the 20 nearest reference cells; ridge = kept -> held-out (alpha 10).

Also times the diffusion samplers (DDIM, DDPM chain) per 1,000 cells on fold 0 and scores them on those cells.

Usage::

    python benchmarks/drosophila_cv.py [--out results/benchmarks] [--max-epochs N] [--sampler-cells 500]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scanpy as sc
import torch
from sklearn.linear_model import Ridge
from sklearn.neighbors import NearestNeighbors

import spalstf as sp
from spalstf._cli import _quiet
from spalstf.tl._folds import gene_folds


def _zscore(x: np.ndarray) -> np.ndarray:
    sd = x.std(0)
    return (x - x.mean(0)) / np.where(sd > 0, sd, 1)


def baselines(adata_st, adata_sc, kept, held) -> dict[str, pd.DataFrame]:
    ref = adata_sc.copy()
    sc.pp.normalize_total(ref, target_sum=1e4)
    sc.pp.log1p(ref)
    ref_kept = _zscore(ref[:, kept].X.toarray())
    ref_held = ref[:, held].X.toarray()
    st_kept = _zscore(np.asarray(adata_st[:, kept].X))
    nn = NearestNeighbors(n_neighbors=20).fit(ref_kept)
    idx = nn.kneighbors(st_kept, return_distance=False)
    knn = ref_held[idx].mean(1)
    ridge = Ridge(alpha=10.0).fit(ref_kept, ref_held).predict(st_kept)
    index = adata_st.obs_names
    return {"knn": pd.DataFrame(knn, index, held), "ridge": pd.DataFrame(ridge, index, held)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--sampler-cells", type=int, default=500)
    args = parser.parse_args()
    _quiet()
    warnings.filterwarnings("ignore")
    args.out.mkdir(parents=True, exist_ok=True)

    mdata = sp.datasets.drosophila_embryo()
    adata_st, adata_sc = mdata["spatial"], mdata["rna"]
    preds: dict[str, list[pd.DataFrame]] = {"spalstf": [], "knn": [], "ridge": []}
    times: dict[str, float] = {"spalstf": 0.0, "knn": 0.0, "ridge": 0.0}
    fold0_model = None
    for f, (kept, held) in enumerate(gene_folds(adata_st.var_names, 5, 0)):
        st_fold = adata_st[:, kept].copy()
        t0 = time.perf_counter()
        base = baselines(st_fold, adata_sc, kept, held)
        t1 = time.perf_counter()
        times["knn"] += (t1 - t0) / 2
        times["ridge"] += (t1 - t0) / 2
        for name, df in base.items():
            preds[name].append(df)
        reference = sp.tl._impute._registration_view(adata_sc, None)
        sp.model.SpaLSTF.setup_anndata(reference)
        torch.manual_seed(0)
        t0 = time.perf_counter()
        model = sp.model.SpaLSTF(reference, st_fold, genes=held)
        model.train(max_epochs=args.max_epochs, enable_progress_bar=False)
        mean, _ = model.impute(st_fold, progress_bar=False)
        times["spalstf"] += time.perf_counter() - t0
        preds["spalstf"].append(mean)
        if f == 0:
            fold0_model, fold0_st, fold0_held = model, st_fold, held
        print(f"fold {f}: spalstf done ({time.perf_counter() - t0:.1f} s)", flush=True)

    truth = adata_st.to_df()
    rows = []
    for method, dfs in preds.items():
        pred = pd.concat(dfs, axis=1)[truth.columns]
        scores = sp.metrics.gene_metrics(truth, pred.clip(lower=0), metrics=("SPCC", "SSIM", "RMSE", "JS"))
        scores.insert(0, "method", method)
        rows.append(scores.rename_axis("gene").reset_index())
    table = pd.concat(rows)
    table.to_csv(args.out / "drosophila_cv_per_gene.csv", index=False)
    summary = table.groupby("method")[["SPCC", "SSIM", "RMSE", "JS"]].median()
    summary["time_s"] = pd.Series(times)
    summary["AS"] = sp.metrics.accuracy_score(summary.drop(columns="time_s").reset_index()).to_numpy()

    # samplers, fold 0, a subset of cells
    cells = fold0_st.obs_names[:: max(1, fold0_st.n_obs // args.sampler_cells)][: args.sampler_cells]
    sub = fold0_st[cells].copy()
    sampler_rows = []
    for label, kw in (
        ("posterior mean (default)", {"n_samples": 1}),
        ("DDIM 25 steps, mean of 2 draws", {"n_samples": 2, "sampler": "ddim"}),
        ("DDIM 25 steps, mean of 8 draws", {"n_samples": 8, "sampler": "ddim"}),
        ("DDPM 1000 steps, mean of 2 draws", {"n_samples": 2, "sampler": "ddpm"}),
    ):
        t0 = time.perf_counter()
        mean, _ = fold0_model.impute(sub, progress_bar=False, **kw)
        dt = time.perf_counter() - t0
        n_draws = kw["n_samples"] if kw["n_samples"] > 1 else 1
        spcc = np.nanmedian(sp.metrics.spcc(adata_st[cells, fold0_held].to_df(), mean[fold0_held]))
        sampler_rows.append(
            {"output": label, "s_per_1000_cells_per_draw": dt / len(cells) * 1000 / n_draws, "median_SPCC_fold0": spcc}
        )
    samplers = pd.DataFrame(sampler_rows)
    samplers.to_csv(args.out / "drosophila_samplers.csv", index=False)

    info = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    }
    summary.to_csv(args.out / "drosophila_cv_summary.csv")
    (args.out / "drosophila_cv_info.json").write_text(json.dumps(info, indent=2))
    pd.set_option("display.width", 160)
    print("\nMedian per-gene metrics over the 84 genes (5 folds), time = training + imputation, all folds:")
    print(summary.round(3).to_string())
    print("\nSamplers on fold 0 (" + str(len(cells)) + " cells):")
    print(samplers.round(3).to_string(index=False))
    print(json.dumps(info))


if __name__ == "__main__":
    main()
