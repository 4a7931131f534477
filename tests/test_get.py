"""`sp.get.imputed`: the imputed genes as an AnnData that carries the cells, coordinates and graphs."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import squidpy as sq
from scipy import sparse

import spalstf as sp

from .test_impute import _assert_unchanged, _snapshot

KEY = "spalstf_imputed"


@pytest.fixture
def imputed_pair(pair, trained):
    """A fresh pair imputed by the shared tiny model (2 draws: mean and std), with squidpy's spatial graph."""
    adata_st, adata_sc = pair
    sp.tl.spalstf_impute(adata_st, adata_sc, model=trained.model, n_samples=2, progress_bar=False)
    sq.gr.spatial_neighbors_knn(adata_st, n_neighs=4)
    return adata_st, adata_sc


def test_values_equal_the_obsm_result_and_cells_keep_coordinates_and_graphs(imputed_pair):
    adata_st, _ = imputed_pair
    before = _snapshot(adata_st)
    graphs = {k: v.copy() for k, v in adata_st.obsp.items()}
    genes = sp.get.imputed(adata_st)

    mean, std = adata_st.obsm[KEY], adata_st.obsm[KEY + "_std"]
    assert genes.obs_names.equals(adata_st.obs_names) and list(genes.var_names) == list(mean.columns)
    np.testing.assert_array_equal(genes.X, mean.to_numpy())
    assert set(genes.layers) == {"std"}
    np.testing.assert_array_equal(genes.layers["std"], std.to_numpy())
    assert genes.var["imputed"].all()
    pd.testing.assert_frame_equal(genes.obs, adata_st.obs)
    np.testing.assert_array_equal(genes.obsm["spatial"], adata_st.obsm["spatial"])
    assert set(genes.obsp) == {"spatial_connectivities", "spatial_distances"}
    for name, graph in graphs.items():
        assert (genes.obsp[name] != graph).nnz == 0
    assert genes.uns["spatial_neighbors"] == adata_st.uns["spatial_neighbors"]
    assert genes.uns[KEY]["imputed_genes"] == list(mean.columns)

    # copies: changing the new object leaves the spatial data as it was
    genes.X[:] = -1
    genes.obsm["spatial"][:] = 0
    genes.obsp["spatial_connectivities"].data[:] = 0
    _assert_unchanged(adata_st, before)
    for name, graph in graphs.items():
        assert (adata_st.obsp[name] != graph).nnz == 0


def test_include_measured_puts_measured_and_imputed_genes_side_by_side_for_squidpy(imputed_pair):
    adata_st, _ = imputed_pair
    adata_st.X = sparse.csr_matrix(adata_st.X)  # a sparse measurement is joined as its values
    genes = sp.get.imputed(adata_st, include_measured=True)

    imputed = adata_st.obsm[KEY].columns
    assert list(genes.var_names) == [*adata_st.var_names, *imputed]
    assert genes.var["imputed"].tolist() == [False] * adata_st.n_vars + [True] * len(imputed)
    np.testing.assert_array_equal(genes.X[:, : adata_st.n_vars], adata_st.X.toarray())
    np.testing.assert_array_equal(genes.X[:, adata_st.n_vars :], adata_st.obsm[KEY].to_numpy())
    assert np.isnan(genes.layers["std"][:, : adata_st.n_vars]).all()
    assert not np.isnan(genes.layers["std"][:, adata_st.n_vars :]).any()

    sq.gr.spatial_autocorr(genes, mode="moran", n_perms=None)
    moran = genes.uns["moranI"]["I"]
    assert set(moran.index) == set(genes.var_names) and moran.notna().all()


def test_genes_both_measured_and_imputed_need_a_suffix(pair, trained):
    adata_st, adata_sc = pair
    adata_st.obsm[KEY] = pd.DataFrame(np.ones((adata_st.n_obs, 2)), index=adata_st.obs_names, columns=["g0", "g25"])
    with pytest.raises(ValueError, match="imputed_suffix"):
        sp.get.imputed(adata_st, include_measured=True)
    genes = sp.get.imputed(adata_st, include_measured=True, imputed_suffix="_imputed")
    assert list(genes.var_names[-2:]) == ["g0_imputed", "g25_imputed"]
    assert genes.uns == {}  # values stored by hand carry no metadata


def test_result_written_to_a_file_is_read_back(pair, trained, tmp_path):
    adata_st, adata_sc = pair
    path = tmp_path / "imputed.h5ad"
    sp.tl.spalstf_impute(adata_st, adata_sc, model=trained.model, n_samples=2, out=path, progress_bar=False)
    assert KEY not in adata_st.obsm

    stored = ad.read_h5ad(path)
    for genes in (sp.get.imputed(adata_st), sp.get.imputed(adata_st, out=path)):
        np.testing.assert_array_equal(genes.X, stored.X)
        np.testing.assert_array_equal(genes.layers["std"], stored.layers["std"])
        assert list(genes.var_names) == list(stored.var_names)
        np.testing.assert_array_equal(genes.obsm["spatial"], adata_st.obsm["spatial"])
        assert genes.uns[KEY]["out"] == str(path)

    plain = tmp_path / "plain.h5ad"
    ad.AnnData(stored.X, obs=stored.obs, var=stored.var).write_h5ad(plain)
    with pytest.raises(ValueError, match="has no uns"):
        sp.get.imputed(adata_st, out=plain)
    with pytest.raises(ValueError, match="not the cells of adata_st"):
        sp.get.imputed(adata_st[:10].copy(), out=path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sp.get.imputed(adata_st, out=tmp_path / "missing.h5ad")


def test_errors_name_the_problem_and_the_fix(pair):
    adata_st, _ = pair
    with pytest.raises(KeyError, match="run sp.tl.spalstf_impute first"):
        sp.get.imputed(adata_st)
    adata_st.obsm[KEY] = pd.DataFrame(np.ones((adata_st.n_obs, 1)), index=adata_st.obs_names, columns=["g25"])
    with pytest.raises(ValueError, match="table_key is for a SpatialData"):
        sp.get.imputed(adata_st, table_key="table")
    with pytest.raises(ValueError, match="key_added is for a SpatialData"):
        sp.get.imputed(adata_st, key_added="imputed")
    with pytest.raises(KeyError, match="layer_measured"):
        sp.get.imputed(adata_st, include_measured=True, layer_measured="counts")
