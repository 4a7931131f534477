"""Make the README figure: measured vs imputed expression of held-out genes on the Drosophila embryo.

Runs the gene cross-validation folds (5 folds, seed 0; the benchmark's split) that hold out ``sna``, ``trn``,
``tkv`` and ``Antp`` (the genes of the paper's figure 6) on the bundled Drosophila pair: each fold's genes are removed
from the spatial panel, imputed by SpaLSTF from the reference (4 diffusion draws, so the uncertainty map exists), and
plotted beside their in situ measurement in a lateral view of the embryo (anterior-posterior axis x against z).

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
from spalstf._constants import IMPUTED_KEY, STD_SUFFIX
from spalstf.tl._folds import gene_folds

GENES = ["sna", "trn", "tkv", "Antp"]
N_FOLDS, SEED, N_SAMPLES = 5, 0, 4
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "_static" / "drosophila_measured_vs_imputed.png"


def impute_held_out(adata_st: ad.AnnData, adata_sc: ad.AnnData, genes: list[str]) -> ad.AnnData:
    """Impute every fold holding one of ``genes``; returns a copy of ``adata_st`` with the held-out imputations."""
    means, stds, params = [], [], {}
    for i, (kept, held) in enumerate(gene_folds(adata_st.var_names, N_FOLDS, SEED)):
        if not set(held) & set(genes):
            continue
        st_fold = adata_st[:, kept].copy()  # the held-out genes are not seen by the model
        t0 = time.perf_counter()
        sp.tl.spalstf_impute(st_fold, adata_sc, genes=held, n_samples=N_SAMPLES, random_state=SEED, progress_bar=False)
        print(f"fold {i}: imputed {len(held)} held-out genes in {time.perf_counter() - t0:.0f} s")
        params = st_fold.uns[IMPUTED_KEY]["params"]
        means.append(st_fold.obsm[IMPUTED_KEY])
        stds.append(st_fold.obsm[IMPUTED_KEY + STD_SUFFIX])
    out = adata_st.copy()
    out.obsm[IMPUTED_KEY] = pd.concat(means, axis=1)
    out.obsm[IMPUTED_KEY + STD_SUFFIX] = pd.concat(stds, axis=1)
    out.uns[IMPUTED_KEY] = {"params": params, "imputed_genes": list(out.obsm[IMPUTED_KEY].columns)}
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
    sp.pl.spatial_genes(adata, GENES, dims=(0, 2), show=False, save=args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
