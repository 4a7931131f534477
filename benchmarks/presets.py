"""Compare the "cpu" (default) and "paper" presets on fold 0 of the Drosophila pair: time per epoch and SPCC.

The paper preset (hidden 512, 6 XCiT blocks, 16 heads, T = 1500, batch 2048, lr 1e-4, 1200 epochs) is trained for
``--paper-epochs`` epochs only (its full schedule takes hours on a CPU); the script reports the measured seconds per
epoch, the extrapolated time of the full schedule, and the median SPCC each reaches on the 17 held-out genes.

Usage::

    python benchmarks/presets.py [--paper-epochs 20] [--threads N]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
import torch

import spalstf as sp
from spalstf._cli import _quiet
from spalstf.model._defaults import PRESETS
from spalstf.tl._folds import gene_folds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper-epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    _quiet()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    mdata = sp.datasets.drosophila_embryo()
    adata_st, adata_sc = mdata["spatial"], mdata["rna"]
    kept, held = gene_folds(adata_st.var_names, 5, 0)[0]
    st_fold = adata_st[:, kept].copy()
    truth = adata_st[:, held].to_df()
    rows = []
    for preset, epochs in (("cpu", PRESETS["cpu"]["max_epochs"]), ("paper", args.paper_epochs)):
        reference = adata_sc.copy()
        sp.model.SpaLSTF.setup_anndata(reference)
        torch.manual_seed(0)
        model = sp.model.SpaLSTF(reference, st_fold, genes=held, preset=preset)
        t0 = time.perf_counter()
        model.train(max_epochs=epochs, enable_progress_bar=False)
        per_epoch = (time.perf_counter() - t0) / epochs
        mean, _ = model.impute(st_fold, progress_bar=False)
        full = PRESETS[preset]["max_epochs"]
        rows.append(
            {
                "preset": preset,
                "n_parameters": sum(p.numel() for p in model.module.parameters()),
                "epochs_trained": epochs,
                "s_per_epoch": per_epoch,
                "full_schedule_epochs": full,
                "full_schedule_hours": per_epoch * full / 3600,
                "median_SPCC_fold0": float(np.nanmedian(sp.metrics.spcc(truth, mean[held]))),
            }
        )
        print(rows[-1], flush=True)
    print(pd.DataFrame(rows).round(3).to_string(index=False))
    print(f"torch threads: {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
