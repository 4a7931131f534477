"""What the closed-form blend costs through ``sp.tl.spalstf_impute``, next to the default model, on the real pairs.

For each pair, fold 0 of the benchmark's 5-fold gene split: ``sp.tl.spalstf_impute`` on the kept genes imputing the
held-out ones, with the default blend (ridge + neighbours + the trained network head) and with
``blend=("ridge", "neighbours")`` (no network is trained: nothing asked for uses it), ``--repeats`` times each in this
process. Reported: median and range of the wall time, the median SPCC of each against the held-out measurement
(log1p(CP10k) of the panel for counts, the values as given otherwise) and the time ratio.

Usage::

    python benchmarks/closed_form_speed.py --threads 1 --repeats 3
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import spalstf as sp
from spalstf.benchmark import gene_folds, limit_threads, load_pair

BLENDS = {"default": None, "closed_form": ("ridge", "neighbours")}


def _truth(adata_st, held) -> np.ndarray:
    X = adata_st.X.toarray() if hasattr(adata_st.X, "toarray") else np.asarray(adata_st.X)
    values = X.astype(np.float64)
    if np.allclose(values, np.round(values)):  # counts: log1p(CP10k) over the whole panel
        values = np.log1p(values / values.sum(1, keepdims=True).clip(1e-12) * 1e4)
    return values[:, adata_st.var_names.get_indexer(held)]


def measure(name: str, repeats: int, shared_data) -> list[dict]:
    _, mdata = load_pair(name, shared_data=shared_data)
    adata_st, adata_sc = mdata["spatial"], mdata["rna"]
    genes = [g for g in adata_st.var_names if g in set(adata_sc.var_names)]
    kept, held = gene_folds(genes, n_folds=5, random_state=0)[0]
    truth = _truth(adata_st, held)
    rows = []
    for label, blend in BLENDS.items():
        options = {} if blend is None else {"blend": blend}
        times = []
        for _ in range(repeats):
            st = adata_st[:, kept].copy()
            start = time.perf_counter()
            sp.tl.spalstf_impute(st, adata_sc, genes=held, progress_bar=False, **options)
            times.append(time.perf_counter() - start)
        spcc = sp.metrics.spcc(truth, st.obsm["spalstf_imputed"][held].to_numpy())
        rows.append(
            {
                "pair": name,
                "blend": label,
                "median_s": float(np.median(times)),
                "range_s": f"{min(times):.1f}-{max(times):.1f}",
                "median_spcc": float(np.nanmedian(spcc)),
                "trained": st.uns["spalstf_imputed"]["params"].get("training", "trained"),
            }
        )
    rows[1]["time_ratio_vs_default"] = rows[1]["median_s"] / rows[0]["median_s"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="drosophila_embryo,osmfish")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shared-data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()
    limit_threads(args.threads)
    for name in args.pairs.split(","):
        for row in measure(name, args.repeats, args.shared_data):
            print(row, flush=True)


if __name__ == "__main__":
    main()
