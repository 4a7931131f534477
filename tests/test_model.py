from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

from spalstf.model import SpaLSTF

ATOL = 1e-5


def _impute(model, adata, **kwargs):
    return model.impute(adata, progress_bar=False, **kwargs)


# model -----------------------------------------------------------------------------------------------------------
def test_history_one_row_per_epoch(trained):
    model, _, _ = trained
    assert model.is_trained_
    for key in ("train_loss", "train_mse", "train_kl", "train_mean_mse"):
        assert key in model.history, key
        values = np.asarray(model.history[key], dtype=float).ravel()
        assert len(values) == 3, key
        assert np.isfinite(values).all(), key


def test_impute_output_frame(trained):
    model, _, adata_st = trained
    assert model.measured_genes == [f"g{i}" for i in range(20)]
    assert model.imputed_genes == [f"g{i}" for i in range(20, 30)]
    mean, std = _impute(model, adata_st)
    assert std is None
    assert isinstance(mean, pd.DataFrame)
    assert mean.index.equals(adata_st.obs_names)
    assert list(mean.columns) == model.imputed_genes
    assert np.isfinite(mean.values).all() and (mean.values >= 0).all()
    # the imputation depends on the cell: not one constant profile
    assert mean.values.std(0).max() > 0
    mean3, std3 = _impute(model, adata_st, n_samples=3)
    assert mean3.shape == std3.shape == mean.shape
    assert std3.index.equals(adata_st.obs_names) and list(std3.columns) == model.imputed_genes
    assert (std3.values >= 0).all() and std3.values.max() > 0


def _check_batch_independent(model, adata_st, **kwargs):
    ref_mean, ref_std = _impute(model, adata_st, batch_size=64, **kwargs)
    runs = [_impute(model, adata_st, batch_size=7, **kwargs)]
    perm = np.random.default_rng(1).permutation(adata_st.n_obs)
    shuffled = _impute(model, adata_st[perm], batch_size=16, **kwargs)
    assert shuffled[0].index.equals(adata_st.obs_names[perm])
    runs.append(tuple(None if f is None else f.loc[adata_st.obs_names] for f in shuffled))
    for mean, std in runs:
        np.testing.assert_allclose(mean.values, ref_mean.values, rtol=0, atol=ATOL)
        if ref_std is None:
            assert std is None
        else:
            np.testing.assert_allclose(std.values, ref_std.values, rtol=0, atol=ATOL)
    for i in (0, 13, adata_st.n_obs - 1):
        mean, std = _impute(model, adata_st[[i]], **kwargs)
        assert list(mean.index) == [adata_st.obs_names[i]]
        np.testing.assert_allclose(mean.values[0], ref_mean.values[i], rtol=0, atol=ATOL)
        if ref_std is not None:
            np.testing.assert_allclose(std.values[0], ref_std.values[i], rtol=0, atol=ATOL)
    return ref_mean, ref_std


def test_batch_independence_posterior_mean(trained):
    model, _, adata_st = trained
    _check_batch_independent(model, adata_st)


def test_batch_independence_ddim(trained):
    model, _, adata_st = trained
    mean, std = _check_batch_independent(model, adata_st, n_samples=3, sampler="ddim", random_state=5)
    other_mean, other_std = _impute(model, adata_st, n_samples=3, sampler="ddim", random_state=6)
    assert not np.allclose(mean.values, other_mean.values, atol=ATOL)
    assert not np.allclose(std.values, other_std.values, atol=ATOL)


def test_batch_independence_ddpm(trained):
    model, _, adata_st = trained
    mean, std = _check_batch_independent(model, adata_st, n_samples=2, sampler="ddpm", random_state=5)
    other_mean, other_std = _impute(model, adata_st, n_samples=2, sampler="ddpm", random_state=6)
    assert not np.allclose(mean.values, other_mean.values, atol=ATOL)
    assert not np.allclose(std.values, other_std.values, atol=ATOL)


def test_posterior_mean_ignores_sampler_and_seed(trained):
    model, _, adata_st = trained
    a, _ = _impute(model, adata_st, random_state=0)
    b, _ = _impute(model, adata_st, random_state=1, sampler="ddpm")
    np.testing.assert_array_equal(a.values, b.values)


def test_cell_draws_keyed_by_name(trained):
    """Renaming a cell changes its draws (noise is keyed by the name), not those of the other cells."""
    model, _, adata_st = trained
    renamed = adata_st.copy()
    renamed.obs_names = ["other0", *adata_st.obs_names[1:]]
    a, _ = _impute(model, adata_st, n_samples=2, random_state=0)
    b, _ = _impute(model, renamed, n_samples=2, random_state=0)
    np.testing.assert_allclose(a.values[1:], b.values[1:], rtol=0, atol=ATOL)
    assert not np.allclose(a.values[0], b.values[0], atol=ATOL)


def test_impute_argument_errors(trained):
    model, _, adata_st = trained
    with pytest.raises(ValueError, match="n_samples"):
        _impute(model, adata_st, n_samples=0)
    with pytest.raises(ValueError, match="sampler"):
        _impute(model, adata_st, n_samples=2, sampler="euler")


def test_impute_missing_measured_gene(trained):
    model, _, adata_st = trained
    with pytest.raises(KeyError, match="g3"):
        _impute(model, adata_st[:, [g for g in adata_st.var_names if g != "g3"]])
    # a different gene order is fine
    st = adata_st[:, ::-1].copy()
    mean, _ = _impute(model, st)
    np.testing.assert_allclose(mean.values, _impute(model, adata_st)[0].values, rtol=0, atol=ATOL)


def test_impute_before_training_raises(pair, tiny_model):
    adata_st, adata_sc = pair
    SpaLSTF.setup_anndata(adata_sc)
    model = SpaLSTF(adata_sc, adata_st, **tiny_model)
    with pytest.raises(RuntimeError, match="not trained"):
        model.impute(adata_st, progress_bar=False)


def test_default_genes_ranked_by_dispersion(pair, tiny_model):
    adata_st, adata_sc = pair
    rank = np.arange(30, dtype=float)
    rank[25] = 100.0
    rank[21] = np.nan
    adata_sc.var["dispersions_norm"] = rank
    SpaLSTF.setup_anndata(adata_sc)
    model = SpaLSTF(adata_sc, adata_st, n_top_genes=4, **tiny_model)
    assert model.imputed_genes == ["g25", "g29", "g28", "g27"]
    assert model.measured_genes == [f"g{i}" for i in range(20)]
    model = SpaLSTF(adata_sc, adata_st, **tiny_model)
    assert model.imputed_genes[-1] == "g21"  # unranked genes come last
    assert sorted(model.imputed_genes) == sorted(f"g{i}" for i in range(20, 30))


def test_requires_adata_st(pair, tiny_model):
    _, adata_sc = pair
    SpaLSTF.setup_anndata(adata_sc)
    with pytest.raises(ValueError, match="adata_st"):
        SpaLSTF(adata_sc, **tiny_model)


def test_st_layer_is_remembered(pair, tiny_model, tiny_train):
    adata_st, adata_sc = pair
    adata_st.layers["raw"] = adata_st.X.copy()
    adata_st.X = -np.ones_like(adata_st.X)  # e.g. scaled data; must not be read
    SpaLSTF.setup_anndata(adata_sc)
    model = SpaLSTF(adata_sc, adata_st, st_layer="raw", **tiny_model)
    model.train(**tiny_train)
    a, _ = _impute(model, adata_st)
    b, _ = _impute(model, adata_st, layer="raw")
    np.testing.assert_array_equal(a.values, b.values)
    with pytest.raises(KeyError, match="raw"):
        _impute(model, ad.AnnData(X=adata_st.layers["raw"], obs=adata_st.obs, var=adata_st.var))


# save / load -----------------------------------------------------------------------------------------------------
def test_save_load_round_trip(trained, tmp_path, make_pair):
    model, _, adata_st = trained
    model.save(tmp_path / "model", overwrite=True)
    _, reference = make_pair()
    SpaLSTF.setup_anndata(reference)
    loaded = SpaLSTF.load(tmp_path / "model", adata=reference, accelerator="cpu")
    assert loaded.is_trained_
    assert loaded.imputed_genes == model.imputed_genes
    assert loaded.measured_genes == model.measured_genes
    assert loaded.gene_plan == model.gene_plan
    # the fitted spatial alignment, the normalisation choice and the calibration are restored exactly
    assert not torch.allclose(model.module.st_knots, torch.zeros_like(model.module.st_knots))
    for name in ("st_knots", "ref_knots", "st_normalized", "calibration_scale", "network_scale"):
        torch.testing.assert_close(getattr(loaded.module, name), getattr(model.module, name), rtol=0, atol=0)
    for kwargs in ({}, {"n_samples": 2, "sampler": "ddim", "random_state": 3}):
        a_mean, a_std = _impute(model, adata_st, **kwargs)
        b_mean, b_std = _impute(loaded, adata_st, **kwargs)
        pd.testing.assert_frame_equal(a_mean, b_mean, check_exact=True)
        if a_std is None:
            assert b_std is None
        else:
            pd.testing.assert_frame_equal(a_std, b_std, check_exact=True)


# training budget, cells without signal ----------------------------------------------------------------------------
def test_step_budget_does_not_grow_with_the_reference(make_pair, tiny_model, tiny_train):
    """The cpu preset trains a number of optimiser steps, not epochs: a 10x larger reference takes the same steps."""
    steps = {}
    for n_copies in (1, 10):
        adata_st, adata_sc = make_pair()
        big = ad.concat([adata_sc] * n_copies, index_unique="-")
        SpaLSTF.setup_anndata(big)
        model = SpaLSTF(big, adata_st, **tiny_model)
        model.train(**{**tiny_train, "max_epochs": None, "max_steps": 7, "batch_size": 32})
        steps[n_copies] = model.trainer.global_step
    assert steps == {1: 7, 10: 7}


def test_cells_without_signal_are_left_out_of_the_spatial_statistics(make_pair, tiny_model):
    adata_st, adata_sc = make_pair()
    SpaLSTF.setup_anndata(adata_sc)
    torch.manual_seed(0)
    reference = SpaLSTF(adata_sc, adata_st, **tiny_model)
    with_empty = adata_st.copy()
    with_empty.X[:5] = 0
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="5 of 60 spatial cells have no signal"):
        model = SpaLSTF(adata_sc, with_empty, **tiny_model)
    expected = SpaLSTF(adata_sc, adata_st[5:].copy(), **tiny_model)
    torch.testing.assert_close(model.module.st_knots, expected.module.st_knots, rtol=0, atol=0)
    assert not torch.equal(model.module.st_knots, reference.module.st_knots)


def test_too_few_spatial_cells_with_signal_raise(make_pair, tiny_model):
    adata_st, adata_sc = make_pair()
    SpaLSTF.setup_anndata(adata_sc)
    with pytest.raises(ValueError, match="at least 10"):
        SpaLSTF(adata_sc, adata_st[:9].copy(), **tiny_model)
