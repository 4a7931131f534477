"""Worker of ``test_distributed.py`` (not collected by pytest: the name does not start with ``test_``).

Trains the tiny synthetic model once, either in this process (``--devices 1``) or with Lightning DDP on CPU/gloo
(``--devices 2 --strategy ddp``: Lightning re-runs this script for rank 1), and writes per rank the trained
parameters and the reference cells the rank trained on, plus rank 0's imputation.

The training draws (condition perturbation, diffusion step, forward noise) are keyed by (cell, training step)
instead of coming from each process's global generator. Nothing else changes: the data loaders,
sampler, DDP gradient averaging, clipping and optimiser are the library's. With one full-reference batch in the
single process and one half-reference shard per rank, a step then sees the same cells with the same draws in both
runs, so the trained parameters must agree up to floating-point summation order.

Usage::

    python tests/ddp_worker.py --out DIR [--devices 2 --strategy ddp] [--epochs 3] [--kl-weight 0]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

from conftest import TINY_MODEL, TINY_TRAIN, _make_pair

from spalstf.model import SpaLSTF
from spalstf.model._module import SpaLSTFModule


class KeyedNoiseModule(SpaLSTFModule):
    """Training draws that are a function of (cell index, step), whichever process holds the cell.

    Steps are counted per process; the runs compared have one step per epoch in every process.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.visited: list[list[int]] = []  # reference cells of each training step on this rank

    def training_noise(self, indices, n_measured, n_imputed):
        perturbation, t, noise = [], [], []
        cells = indices.tolist()
        step = len(self.visited)
        self.visited.append(cells)
        for i in cells:
            gen = torch.Generator().manual_seed(1_000_003 * step + i)
            perturbation.append(torch.randn(n_measured, generator=gen))
            t.append(torch.randint(0, self.schedule.n_steps, (1,), generator=gen))
            noise.append(torch.randn(n_imputed, generator=gen))
        device = indices.device
        pert = torch.stack(perturbation).to(device) if self.training and self.perturbation_std > 0 else None
        return pert, torch.cat(t).to(device), torch.stack(noise).to(device)


class KeyedSpaLSTF(SpaLSTF):
    _module_cls = KeyedNoiseModule


def train(devices: int = 1, strategy: str | None = None, epochs: int = 3, kl_weight: float = 0.0, **train_kwargs):
    """Train on the synthetic pair: one batch of all cells (1 process) or one half-reference shard per rank."""
    torch.set_num_threads(1)
    adata_st, adata_sc = _make_pair()
    KeyedSpaLSTF.setup_anndata(adata_sc)
    torch.manual_seed(0)
    model = KeyedSpaLSTF(adata_sc, adata_st, **{**TINY_MODEL, "kl_weight": kl_weight})
    kwargs = {**TINY_TRAIN, "max_epochs": epochs, "batch_size": adata_sc.n_obs // devices, "devices": devices}
    if strategy is not None:
        kwargs["strategy"] = strategy
    model.train(**{**kwargs, **train_kwargs})
    return model, adata_st


def write(model, adata_st, out: Path, rank: int) -> None:
    """Parameters and visited cells of this rank; rank 0 adds the imputation and the loss history."""
    out.mkdir(parents=True, exist_ok=True)
    params = {k: v.detach().cpu() for k, v in model.module.named_parameters()}
    torch.save({"params": params, "visited": model.module.visited}, out / f"rank{rank}.pt")
    if rank == 0:
        mean, _ = model.impute(adata_st, progress_bar=False)
        draws, _ = model.impute(adata_st, n_samples=2, progress_bar=False)
        np.save(out / "posterior_mean.npy", mean.values)
        np.save(out / "ddim_mean.npy", draws.values)
        history = {k: np.asarray(v, dtype=float).ravel().tolist() for k, v in model.history.items()}
        (out / "history.json").write_text(json.dumps(history))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--strategy", default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--kl-weight", type=float, default=0.0)
    parser.add_argument("--precision", default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    extra = {"precision": args.precision} if args.precision else {}
    model, adata_st = train(args.devices, args.strategy, args.epochs, args.kl_weight, **extra)
    rank = model.trainer.global_rank
    assert rank == int(os.environ.get("LOCAL_RANK", 0))
    write(model, adata_st, args.out, rank)


if __name__ == "__main__":
    main()
