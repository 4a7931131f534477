"""What ranks the errors of an imputation within a gene: the evidence behind the intervals' per-cell widths.

For each pair (``drosophila_embryo``, ``osmfish``) and each fold of the benchmark's 5-fold gene split, a closed-form
SpaLSTF model (``blend=("ridge", "neighbours")``, the parts the calibration's copies use; no training) is built on the
fold's kept genes and calibrated on them (``calibrate_intervals``). Its point estimate of the held-out genes is mapped
into the platform's space and compared with their measurement ``log1p(x / L * 1e4)``. For every held-out gene, the
Spearman correlation across cells between the absolute error and three per-cell quantities is computed:

``neighbour_spread``
    the standard deviation of the gene over the cell's nearest reference cells (the model's context; the spread a
    posterior built from them would have);
``library``
    the cell's total over the kept genes;
``point``
    the predicted value.

Reported: the mean over the held-out genes of each correlation. A per-cell width is worth something only where such
a quantity ranks the errors.

Usage::

    python benchmarks/interval_diagnostics.py --threads 1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import machine, markdown_table

from spalstf.benchmark import limit_threads


def measure(name: str, shared: Path) -> dict:
    import spalstf as sp
    from spalstf.benchmark import gene_folds, load_pair
    from spalstf.metrics._gene import spearman_columns
    from spalstf.model._calibration import platform_values
    from spalstf.model._spatial_input import SpatialInput

    _, mdata = load_pair(name, shared_data=shared)
    adata_st, adata_sc = mdata["spatial"], mdata["rna"]
    genes = [g for g in adata_st.var_names if g in set(adata_sc.var_names)]
    sums = {"neighbour_spread": [], "library": [], "point": []}
    for kept, held in gene_folds(genes, n_folds=5, random_state=0):
        st = adata_st[:, kept].copy()
        reference = adata_sc.copy()  # registration writes into the AnnData it is given
        sp.model.SpaLSTF.setup_anndata(reference)
        model = sp.model.SpaLSTF(reference, st, genes=held, blend=("ridge", "neighbours"))
        calibration = model.calibrate_intervals(st)
        chunks = list(model._st_condition_chunks(SpatialInput.prepare(st, None), 4096))
        condition = torch.from_numpy(np.concatenate([c[2] for c in chunks]))
        library = np.concatenate([c[4] for c in chunks])
        module = model.module
        with torch.no_grad():
            estimate = module.posterior_mean(condition).numpy()
            neighbors, _ = module.find_neighbors(condition)
            spread = module.ref_profiles[:, module.n_measured :][neighbors].std(1).numpy()
        point, _ = calibration.point(estimate, module.target_mean.numpy(), module.target_std.numpy())
        X = adata_st[:, held].X
        measured = platform_values(np.asarray(X.toarray() if hasattr(X, "toarray") else X), library, 1e4)
        error = np.abs(measured - point)
        sums["neighbour_spread"].extend(spearman_columns(error, spread))
        sums["library"].extend(spearman_columns(error, np.broadcast_to(library[:, None], error.shape)))
        sums["point"].extend(spearman_columns(error, point))
    row = {"pair": name, "genes": len(genes)}
    row.update({k: float(np.nanmean(v)) for k, v in sums.items()})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="drosophila_embryo,osmfish")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shared-data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()
    limit_threads(args.threads)
    rows = [measure(name, args.shared_data) for name in args.pairs.split(",")]
    print(f"python benchmarks/interval_diagnostics.py {' '.join(sys.argv[1:])}\n{machine()}\n")
    print("mean over held-out genes of Spearman(|error|, quantity) across cells")
    print(markdown_table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
