"""Fixtures of the model, imputation and gene-plan tests (small synthetic reference / spatial pairs).

Each fixture name has one meaning in every test module: ``pair`` is a fresh ``(adata_st, adata_sc)``, ``trained`` a
:class:`Trained` ``(model, adata_sc, adata_st)``.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

N_REF, N_ST, N_GENES, N_MEASURED, N_TYPES = 150, 60, 30, 20, 3

#: Network sizes that train in well under a second on one CPU thread.
TINY_MODEL = {
    "n_hidden": 16,
    "n_blocks": 1,
    "n_heads": 2,
    "n_tokens": 4,
    "n_lstm_hidden": 8,
    "n_lstm_layers": 1,
    "n_neighbors": 5,
    "n_diffusion_steps": 50,
}
TINY_TRAIN = {
    "max_epochs": 2,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "log_every_n_steps": 1,
    "accelerator": "cpu",
}


def _make_pair(seed: int = 0) -> tuple[ad.AnnData, ad.AnnData]:
    """(adata_st, adata_sc): Poisson counts of a few cell types with different gene means.

    The reference has genes g0..g29; the spatial panel measured g0..g19 (at a different depth), with coordinates.
    """
    rng = np.random.default_rng(seed)
    means = rng.gamma(2.0, 3.0, size=(N_TYPES, N_GENES)) + 1.0
    genes = [f"g{i}" for i in range(N_GENES)]
    sc_types = rng.integers(0, N_TYPES, N_REF)
    adata_sc = ad.AnnData(
        X=rng.poisson(means[sc_types]).astype(np.float32),
        obs=pd.DataFrame({"cell_type": pd.Categorical(sc_types.astype(str))}, index=[f"sc{i}" for i in range(N_REF)]),
        var=pd.DataFrame(index=genes),
    )
    st_types = rng.integers(0, N_TYPES, N_ST)
    adata_st = ad.AnnData(
        X=rng.poisson(2.0 * means[st_types][:, :N_MEASURED]).astype(np.float32),
        obs=pd.DataFrame({"region": pd.Categorical(st_types.astype(str))}, index=[f"st{i}" for i in range(N_ST)]),
        var=pd.DataFrame(index=genes[:N_MEASURED]),
    )
    adata_st.obsm["spatial"] = rng.uniform(0, 100, size=(N_ST, 2))
    return adata_st, adata_sc


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread: the tiny networks are slower with more, and CI cores are shared."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def pair(one_thread) -> tuple[ad.AnnData, ad.AnnData]:
    """A fresh (adata_st, adata_sc) pair per test (tests may modify it)."""
    return _make_pair()


@pytest.fixture(scope="module")
def make_pair(one_thread):
    """Factory of fresh pairs, for module-scoped fixtures."""
    return _make_pair


@pytest.fixture(scope="module")
def tiny_model() -> dict:
    """Model options of a tiny network."""
    return dict(TINY_MODEL)


@pytest.fixture(scope="module")
def tiny_train() -> dict:
    """Training options of a seconds-long CPU run."""
    return dict(TINY_TRAIN)


@pytest.fixture(scope="module")
def train_tiny(make_pair, tiny_model, tiny_train):
    """Factory: ``train_tiny(**train_overrides) -> Trained``, a tiny model trained from seed 0."""
    from spalstf.model import SpaLSTF

    def train(**train_overrides):
        adata_st, adata_sc = make_pair()
        SpaLSTF.setup_anndata(adata_sc)
        torch.manual_seed(0)
        model = SpaLSTF(adata_sc, adata_st, **tiny_model)
        model.train(**{**tiny_train, **train_overrides})
        return Trained(model, adata_sc, adata_st)

    return train


class Trained(NamedTuple):
    """A trained tiny model, its registered reference and the spatial data it was built with."""

    model: object
    adata_sc: ad.AnnData
    adata_st: ad.AnnData


@pytest.fixture(scope="module")
def trained(train_tiny) -> Trained:
    """A tiny model trained for 3 epochs from seed 0 (one per test module)."""
    return train_tiny(max_epochs=3)


class RecordingHandler(logging.Handler):
    """A logging handler that keeps every record it receives (``records``), at every level."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def recording_handler() -> RecordingHandler:
    """A fresh :class:`RecordingHandler`, for tests that attach it to the loggers they watch."""
    return RecordingHandler()
