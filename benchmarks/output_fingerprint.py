"""Outputs of fold-0 models on the real pairs, saved or compared: the check that a restructuring changed nothing.

For each pair (``drosophila_embryo``, ``osmfish``): fold 0 of the benchmark's 5-fold gene split, a default SpaLSTF model
trained with ``torch.manual_seed(0)`` (one thread), then its outputs on the kept genes of the spatial data: the point
estimate, the mean and std of 3 DDIM draws, the bounds of ``interval=0.9`` (with one and with 3 draws), the gene
reliability, a reload of the saved model and its point estimate. ``--save DIR`` writes them (``<pair>.npz`` and the
saved model ``<pair>_model/``); ``--compare DIR`` recomputes them with the code checked out now and prints the largest
absolute difference of each array against the saved ones (``0`` everywhere: bit-identical), and also loads the model
saved in ``DIR`` with the current code and compares its outputs (a model saved before the change must still load and
give the same values). Exits 1 when any array differs.

Usage::

    python benchmarks/output_fingerprint.py --save /tmp/before          # on the old commit
    python benchmarks/output_fingerprint.py --compare /tmp/before       # on the new one
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from spalstf.benchmark import gene_folds, limit_threads, load_pair


def _outputs(model, st) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    mean, std = model.impute(st, progress_bar=False)
    arrays["point"] = mean.to_numpy()
    mean, std = model.impute(st, n_samples=3, progress_bar=False)
    arrays["draws_mean"], arrays["draws_std"] = mean.to_numpy(), std.to_numpy()
    model.interval_calibration_ = None
    mean, _, lower, upper = model.impute(st, interval=0.9, progress_bar=False)
    arrays["interval_point"], arrays["lower"], arrays["upper"] = mean.to_numpy(), lower.to_numpy(), upper.to_numpy()
    mean, std, lower, upper = model.impute(st, interval=0.9, n_samples=3, progress_bar=False)
    arrays["interval_draws_mean"], arrays["interval_draws_lower"] = mean.to_numpy(), lower.to_numpy()
    arrays["reliability"] = model.get_gene_reliability().to_numpy()
    return arrays


def _pair(name: str, shared: Path):
    import spalstf as sp

    _, mdata = load_pair(name, shared_data=shared)
    adata_st, adata_sc = mdata["spatial"], mdata["rna"]
    shared_genes = [g for g in adata_st.var_names if g in set(adata_sc.var_names)]
    kept, held = gene_folds(shared_genes, n_folds=5, random_state=0)[0]
    st = adata_st[:, kept].copy()
    reference = adata_sc.copy()  # registration writes into the AnnData it is given
    sp.model.SpaLSTF.setup_anndata(reference)
    return sp, st, reference, held


def fingerprint(name: str, shared: Path, saved: Path | None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The outputs of a freshly trained fold-0 model, and those of the model saved in ``saved`` (when given)."""
    sp, st, reference, held = _pair(name, shared)
    torch.manual_seed(0)
    model = sp.model.SpaLSTF(reference, st, genes=held)
    model.train(enable_progress_bar=False)
    fresh = _outputs(model, st)
    loaded = {}
    if saved is not None:
        old = sp.model.SpaLSTF.load(str(saved), adata=reference)
        loaded = _outputs(old, st)
    return fresh, loaded, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--save", type=Path)
    mode.add_argument("--compare", type=Path)
    parser.add_argument("--pairs", default="drosophila_embryo,osmfish")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shared-data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()
    limit_threads(args.threads)
    differs = False
    for name in args.pairs.split(","):
        if args.save is not None:
            args.save.mkdir(parents=True, exist_ok=True)
            fresh, _, model = fingerprint(name, args.shared_data, None)
            np.savez(args.save / f"{name}.npz", **fresh)
            model.save(str(args.save / f"{name}_model"), overwrite=True)
            print(f"{name}: saved {len(fresh)} arrays and the model in {args.save}")
            continue
        before = np.load(args.compare / f"{name}.npz")
        fresh, loaded, _ = fingerprint(name, args.shared_data, args.compare / f"{name}_model")
        for label, arrays in (("retrained", fresh), ("loaded", loaded)):
            for key in before.files:
                a, b = before[key], arrays[key]
                same = a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
                gap = float(np.nanmax(np.abs(a - b))) if a.shape == b.shape else float("inf")
                differs |= not same
                print(f"{name} {label:9s} {key:22s} {'identical' if same else f'max |diff| {gap:.3g}'}")
    sys.exit(1 if differs else 0)


if __name__ == "__main__":
    main()
