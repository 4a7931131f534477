"""Peak memory and time of one training epoch + imputation as the number of genes grows (synthetic data).

A synthetic reference (3,000 cells, Poisson counts) and spatial panel (500 cells) with ``--measured`` of the
``--genes`` genes measured; every other gene is imputed. Reports wall time and the process's peak RSS.

Usage::

    python benchmarks/gene_scale.py --genes 10000 --measured 8000
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings

import anndata as ad
import numpy as np
from scipy import sparse

import spalstf as sp
from spalstf._cli import _quiet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, default=10000)
    parser.add_argument("--measured", type=int, default=8000)
    parser.add_argument("--ref-cells", type=int, default=3000)
    parser.add_argument("--st-cells", type=int, default=500)
    args = parser.parse_args()
    _quiet()
    warnings.filterwarnings("ignore")
    rng = np.random.default_rng(0)
    names = [f"g{i}" for i in range(args.genes)]
    adata_sc = ad.AnnData(sparse.csr_matrix(rng.poisson(0.3, (args.ref_cells, args.genes)).astype(np.float32)))
    adata_sc.var_names = names
    adata_st = ad.AnnData(rng.poisson(0.3, (args.st_cells, args.measured)).astype(np.float32))
    adata_st.var_names = names[: args.measured]
    adata_st.obsm["spatial"] = rng.normal(size=(args.st_cells, 2))
    t0 = time.perf_counter()
    sp.tl.spalstf_impute(adata_st, adata_sc, max_epochs=1, progress_bar=False, n_top_genes=args.genes)
    n_imputed = adata_st.obsm["spalstf_imputed"].shape[1]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(
        f"{args.genes} genes ({args.measured} measured, {n_imputed} imputed), {args.ref_cells} reference cells: "
        f"1 epoch + imputation {time.perf_counter() - t0:.1f} s, peak RSS {peak:.2f} GB"
    )


if __name__ == "__main__":
    main()
