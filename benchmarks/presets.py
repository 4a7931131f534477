"""Compare the "cpu" (default) and "paper" presets on fold 0 of the Drosophila pair: time per step and SPCC.

The "cpu" preset trains its default budget (600 optimiser steps). The paper preset (hidden 512, 6 XCiT blocks, 16
heads, T = 1500, batch 2048, lr 1e-4, 1200 epochs, the network alone as the estimate) is trained for
``--paper-steps`` optimiser steps only (its full schedule takes hours on a CPU); the script reports the measured
seconds per step, the extrapolated time of each full schedule, and the median SPCC each reaches on the 17 held-out
genes.

Usage::

    python benchmarks/presets.py [--paper-steps 20] [--threads N]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
import torch

import spalstf as sp
from spalstf.benchmark import gene_folds, silence_libraries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper-steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    silence_libraries()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    mdata = sp.datasets.drosophila_embryo()
    adata_st, adata_sc = mdata["spatial"], mdata["rna"]
    kept, held = gene_folds(adata_st.var_names, 5, 0)[0]
    st_fold = adata_st[:, kept].copy()
    truth = adata_st[:, held].to_df()
    rows = []
    for preset, steps in (("cpu", None), ("paper", args.paper_steps)):
        reference = adata_sc.copy()
        sp.model.SpaLSTF.setup_anndata(reference)
        torch.manual_seed(0)
        model = sp.model.SpaLSTF(reference, st_fold, genes=held, preset=preset)
        t0 = time.perf_counter()
        model.train(max_steps=steps, enable_progress_bar=False)
        trained_steps = model.trainer.global_step
        per_step = (time.perf_counter() - t0) / trained_steps
        mean, _ = model.impute(st_fold, progress_bar=False)
        settings = model.settings
        if settings["max_steps"] is not None:
            full_steps = settings["max_steps"]
        else:
            full_steps = settings["max_epochs"] * int(
                np.ceil(reference.n_obs / min(settings["batch_size"], reference.n_obs))
            )
        rows.append(
            {
                "preset": preset,
                "n_parameters": sum(p.numel() for p in model.module.parameters()),
                "steps_trained": trained_steps,
                "s_per_step": per_step,
                "full_schedule_steps": full_steps,
                "full_schedule_hours": per_step * full_steps / 3600,
                "median_SPCC_fold0": float(np.nanmedian(sp.metrics.spcc(truth, mean[held]))),
            }
        )
        print(rows[-1], flush=True)
    print(pd.DataFrame(rows).round(3).to_string(index=False))
    print(f"torch threads: {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
