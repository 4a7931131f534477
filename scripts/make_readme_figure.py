"""Make the README figure: measured vs imputed expression of held-out genes on the Drosophila embryo.

Runs the gene cross-validation folds (5 folds, seed 0; the benchmark's split) that hold out ``sna``, ``trn``,
``tkv`` and ``Antp`` (the genes of the paper's figure 6) on the bundled Drosophila pair: each fold's genes are removed
from the spatial panel, imputed by SpaLSTF from the reference with calibrated 90% intervals (``interval=0.9``), and
plotted beside their in situ measurement in a lateral view of the embryo (anterior-posterior axis x against z), with
the width of the interval and, in the titles, each gene's predicted reliability (expected SPCC).

Usage::

    python scripts/make_readme_figure.py [--out docs/_static/drosophila_measured_vs_imputed.png] [--cache FILE.h5ad]

``--cache`` stores the imputed folds in (or, when the file exists, reads them from) an ``.h5ad`` file, to redraw the
figure without training again. With default training settings each fold takes a minute or two on two CPU cores.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import anndata as ad
import matplotlib

matplotlib.use("Agg")

import pandas as pd

import spalstf as sp
from spalstf._constants import IMPUTED_KEY, LOWER_SUFFIX, UPPER_SUFFIX
from spalstf.benchmark import gene_folds

GENES = ["sna", "trn", "tkv", "Antp"]
N_FOLDS, SEED, LEVEL = 5, 0, 0.9
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "_static" / "drosophila_measured_vs_imputed.png"


def impute_held_out(adata_st: ad.AnnData, adata_sc: ad.AnnData, genes: list[str]) -> ad.AnnData:
    """Impute every fold holding one of ``genes``; returns a copy of ``adata_st`` with the held-out imputations."""
    means, lowers, uppers, reliability, meta = [], [], [], {}, {}
    for i, (kept, held) in enumerate(gene_folds(adata_st.var_names, N_FOLDS, SEED)):
        if not set(held) & set(genes):
            continue
        st_fold = adata_st[:, kept].copy()  # the held-out genes are not seen by the model
        t0 = time.perf_counter()
        sp.tl.spalstf_impute(st_fold, adata_sc, genes=held, interval=LEVEL, random_state=SEED, progress_bar=False)
        print(f"fold {i}: imputed {len(held)} held-out genes in {time.perf_counter() - t0:.0f} s")
        meta = st_fold.uns[IMPUTED_KEY]
        reliability.update(meta["gene_reliability"])
        means.append(st_fold.obsm[IMPUTED_KEY])
        lowers.append(st_fold.obsm[IMPUTED_KEY + LOWER_SUFFIX])
        uppers.append(st_fold.obsm[IMPUTED_KEY + UPPER_SUFFIX])
    out = adata_st.copy()
    out.obsm[IMPUTED_KEY] = pd.concat(means, axis=1)
    out.obsm[IMPUTED_KEY + LOWER_SUFFIX] = pd.concat(lowers, axis=1)
    out.obsm[IMPUTED_KEY + UPPER_SUFFIX] = pd.concat(uppers, axis=1)
    out.uns[IMPUTED_KEY] = {
        "params": meta["params"],
        "interval": {"level": LEVEL},
        "imputed_genes": list(out.obsm[IMPUTED_KEY].columns),
        "gene_reliability": reliability,
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG to write")
    parser.add_argument("--cache", type=Path, default=None, help="h5ad file to store / reuse the imputed folds")
    args = parser.parse_args()

    if args.cache is not None and args.cache.exists():
        adata = ad.read_h5ad(args.cache)
        print(f"read imputed folds from {args.cache}")
    else:
        mdata = sp.datasets.drosophila_embryo()
        adata = impute_held_out(mdata["spatial"], mdata["rna"], GENES)
        if args.cache is not None:
            adata.write_h5ad(args.cache)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig = sp.pl.spatial_genes(adata, GENES, dims=(0, 2), show=False, return_fig=True)
    reliability = adata.uns[IMPUTED_KEY]["gene_reliability"]
    for ax in fig.axes:
        gene = ax.get_title().split(" ")[0]
        if ax.get_title().endswith("imputed") and gene in reliability:
            ax.set_title(f"{gene} imputed (reliability {reliability[gene]:.2f})")
    fig.savefig(args.out, bbox_inches="tight")
    print(f"wrote {args.out}; reliability { ({g: round(float(reliability[g]), 2) for g in GENES}) }")


if __name__ == "__main__":
    main()
