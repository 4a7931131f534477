"""Where SpaLSTF's accuracy comes from: the paper's ablation (its Fig. 2) and the parts of the estimate, on one pair.

Each variant is SpaLSTF with documented model options (no code edit), run through ``sp.tl.cross_validate`` on the
same gene folds, next to the simple methods (ridge, kNN, SpaGE) of the same run:

============================  =======================================================================
variant                       options
============================  =======================================================================
``full``                      the defaults (BiLSTM context, XCA denoiser, KL term; blend of the three parts)
``no_bilstm``                 ``context="none"`` (the condition embedding is an MLP of the cell alone)
``no_xca``                    ``attention="softmax"`` (standard self-attention over the same gene tokens)
``no_kl``                     ``kl_weight=0.0``
``diffusion_bilstm_only``     ``attention="softmax", kl_weight=0.0`` (the paper's "Diffusion + BiLSTM")
``diffusion_xca_only``        ``context="none", kl_weight=0.0`` (the paper's "Diffusion + XCA")
``ridge_only``                ``blend=("ridge",)``
``neighbours_only``           ``blend=("neighbours",)``
``network_only``              ``blend=("network",)``: the learned head alone
``ridge_neighbours``          ``blend=("ridge", "neighbours")``: the closed-form parts, no learned part
``diffusion_mean``            the defaults, output = mean of ``--draws`` DDIM draws (the sampler as the estimator)
``paper``                     ``preset="paper"`` (published sizes, z-score + per-cell max-abs scaling, the network
                              alone), trained ``--paper-steps`` optimiser steps instead of 1200 epochs; output: its
                              point estimate (``n_samples=1``)
``paper_sampler``             the same model imputed by its sampler: the mean of ``--draws`` DDIM draws. Run by
                              default only where CUDA is available: on one CPU thread its 6 blocks of width 512 take
                              about 190 times the default network's time per draw and step (hours per fold)
============================  =======================================================================

The closed-form variants (``ridge_only``, ``neighbours_only``, ``ridge_neighbours``) do not use the network, so they
are trained for 1 step only (their estimate does not depend on training). The accuracy score (AS) ranks all rows
of the table together. Writes ``<out>/<dataset>_ablation.csv`` after every variant (so an interrupted run keeps the
finished rows) and prints the table.

Usage::

    python benchmarks/ablation.py --threads 1                     # bundled Drosophila pair
    python benchmarks/ablation.py --dataset osmfish --threads 1   # the shared osmFISH pair (../shared/data)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from cross_validate import machine_info, quiet

import spalstf as sp
from spalstf.benchmark import CrossValidationResult, limit_threads, load_pair

#: The variants: SpaLSTF options (model, training and imputation) of each.
VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "no_bilstm": {"context": "none"},
    "no_xca": {"attention": "softmax"},
    "no_kl": {"kl_weight": 0.0},
    "diffusion_bilstm_only": {"attention": "softmax", "kl_weight": 0.0},
    "diffusion_xca_only": {"context": "none", "kl_weight": 0.0},
    "ridge_only": {"blend": ("ridge",), "max_steps": 1},
    "neighbours_only": {"blend": ("neighbours",), "max_steps": 1},
    "network_only": {"blend": ("network",)},
    "ridge_neighbours": {"blend": ("ridge", "neighbours"), "max_steps": 1},
    "diffusion_mean": {"n_samples": 8, "sampler": "ddim"},
    "paper": {"preset": "paper", "max_epochs": None},
    "paper_sampler": {"preset": "paper", "max_epochs": None, "n_samples": 8, "sampler": "ddim"},
}
#: Variants run without ``--variants``: all, but the paper's sampler only where a GPU can run it.
DEFAULT_VARIANTS = [v for v in VARIANTS if v != "paper_sampler" or torch.cuda.is_available()]
PEERS = ("ridge", "knn", "spage")


def _combine(results: dict[str, CrossValidationResult]) -> CrossValidationResult:
    """One result whose methods are the variants (and peers), so that the AS ranks them all together."""
    parts = {"scores": [], "clustering": [], "resources": []}
    predictions = {}
    for name, res in results.items():
        for attr in parts:
            frame = getattr(res, attr).copy()
            frame["method"] = name if name in VARIANTS else frame["method"]
            parts[attr].append(frame)
        for method, pred in res.predictions.items():
            predictions[name if name in VARIANTS else method] = pred
    first = next(iter(results.values()))
    return CrossValidationResult(
        scores=pd.concat(parts["scores"], ignore_index=True),
        clustering=pd.concat(parts["clustering"], ignore_index=True),
        resources=pd.concat(parts["resources"], ignore_index=True),
        predictions=predictions,
        folds=first.folds,
        truth=first.truth,
    )


def _write_summary(results: dict[str, CrossValidationResult], path: Path) -> pd.DataFrame:
    """The table of the variants run so far (AS over all of its rows), written to ``path``."""
    summary = _combine(results).summary()
    summary.insert(0, "options", [json.dumps(VARIANTS.get(m, {})) if m in VARIANTS else "peer" for m in summary.index])
    path.parent.mkdir(parents=True, exist_ok=True)
    summary.to_csv(path)
    return summary


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", "--pair", dest="dataset", default="drosophila_embryo")
    parser.add_argument("--local", type=Path, default=None, help="local .h5mu with modalities 'spatial' and 'rna'")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help="comma-separated variant names")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--truth", default="auto", choices=["auto", "as_given", "log1p_cp10k"])
    parser.add_argument("--draws", type=int, default=8, help="DDIM draws of the sampler variants")
    parser.add_argument("--paper-steps", type=int, default=50, help="optimiser steps of the paper variants")
    parser.add_argument("--paper-batch-size", type=int, default=256)
    parser.add_argument("--shared-data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    quiet()
    limit_threads(args.threads)
    name, mdata = load_pair(args.dataset, local=args.local, shared_data=args.shared_data)
    adata_st, adata_sc = mdata["spatial"], mdata["rna"]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    print(f"{name}: spatial {adata_st.shape}, reference {adata_sc.shape}; variants {variants}", flush=True)
    info = machine_info()
    print("machine: " + json.dumps(info), flush=True)

    common = {"n_folds": 5, "random_state": args.random_state, "truth": args.truth}
    results: dict[str, CrossValidationResult] = {}
    start = time.perf_counter()
    results["peers"] = sp.tl.cross_validate(adata_st, adata_sc, methods=PEERS, **common)
    path = args.out / f"{name}_ablation.csv"
    summary = _write_summary(results, path)
    for variant in variants:
        options = dict(VARIANTS[variant])
        if variant.startswith("paper"):
            options.update(max_steps=args.paper_steps, batch_size=args.paper_batch_size)
        if "n_samples" in options:
            options["n_samples"] = args.draws
        t0 = time.perf_counter()
        results[variant] = sp.tl.cross_validate(
            adata_st, adata_sc, methods=("spalstf",), method_kwargs={"spalstf": options}, **common
        )
        print(f"{variant}: {time.perf_counter() - t0:.0f} s", flush=True)
        summary = _write_summary(results, path)
    pd.set_option("display.width", 220)
    pd.set_option("display.max_columns", 20)
    cols = ["SPCC", "SSIM", "RMSE", "JS", "ARI", "NMI", "AS", "time_s"]
    print(f"\n{name}: 5-fold gene CV, seed {args.random_state}, truth {results['peers'].truth}")
    print(summary[cols].round(3).to_string())
    print(f"\nwall time {time.perf_counter() - start:.0f} s; {info['torch_threads']} torch threads; wrote {path}")
    return summary


if __name__ == "__main__":
    main()
