"""Shared pieces of ``benchmarks/gpu.py`` and ``benchmarks/ddp.py``: epoch timer, data pairs, device name."""

from __future__ import annotations

import os
import platform
import time

import anndata as ad
import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch


def synchronize(device: str) -> None:
    """Wait for queued GPU work, so wall-clock times cover it."""
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()


def device_name(device: str) -> str:
    """GPU name, or the CPU with its core count and torch's thread count."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name()
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU {model}, {os.cpu_count()} cores visible, {torch.get_num_threads()} torch thread(s)"


class EpochTimer(pl.Callback):
    """Wall-clock seconds of every training epoch (device-synchronised)."""

    def __init__(self, device: str):
        self.device = device
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        synchronize(self.device)
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        synchronize(self.device)
        self.seconds.append(time.perf_counter() - self._start)

    def per_epoch(self) -> float:
        """Median epoch time, the first epoch (warm-up: allocator, kernels) left out when there are others."""
        times = self.seconds[1:] if len(self.seconds) > 1 else self.seconds
        return float(np.median(times))


def drosophila_pair(n_st_cells: int | None = None) -> tuple[ad.AnnData, ad.AnnData]:
    """The bundled Drosophila embryo pair (spatial 3,039 x 84, reference 1,297 x 2,000)."""
    import spalstf as sp

    mdata = sp.datasets.drosophila_embryo()
    adata_st, adata_sc = mdata["spatial"].copy(), mdata["rna"].copy()
    if n_st_cells is not None:
        adata_st = adata_st[: min(n_st_cells, adata_st.n_obs)].copy()
    return adata_st, adata_sc


def synthetic_pair(
    n_genes: int = 10_000, n_measured: int = 1_000, n_ref: int = 3_000, n_st: int = 2_000, n_types: int = 8, seed=0
) -> tuple[ad.AnnData, ad.AnnData]:
    """Poisson counts of ``n_types`` cell types; the spatial panel measures the first ``n_measured`` genes."""
    rng = np.random.default_rng(seed)
    means = rng.gamma(0.5, 2.0, size=(n_types, n_genes)).astype(np.float32)
    genes = [f"g{i}" for i in range(n_genes)]
    sc_types = rng.integers(0, n_types, n_ref)
    adata_sc = ad.AnnData(
        X=rng.poisson(means[sc_types]).astype(np.float32),
        obs=pd.DataFrame(index=[f"sc{i}" for i in range(n_ref)]),
        var=pd.DataFrame(index=genes),
    )
    st_types = rng.integers(0, n_types, n_st)
    adata_st = ad.AnnData(
        X=rng.poisson(2.0 * means[st_types][:, :n_measured]).astype(np.float32),
        obs=pd.DataFrame(index=[f"st{i}" for i in range(n_st)]),
        var=pd.DataFrame(index=genes[:n_measured]),
    )
    adata_st.obsm["spatial"] = rng.uniform(0, 100, size=(n_st, 2))
    return adata_st, adata_sc
