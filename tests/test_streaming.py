"""Streaming imputation: chunked reading (in-memory dense/sparse, backed), chunked statistics, .h5ad output."""

from __future__ import annotations

import hashlib

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import spalstf as sp
import spalstf._streaming as streaming
import spalstf.model._spatial_input as spatial_input_mod

ATOL = 1e-5
DDIM = {"n_samples": 2, "sampler": "ddim", "n_sampling_steps": 3, "random_state": 1}


@pytest.fixture(scope="module")
def reference(trained):
    """In-memory results (one chunk holds every cell)."""
    model, _, adata_st = trained
    return {
        "mean": model.impute(adata_st, progress_bar=False, batch_size=10_000)[0],
        "ddim": model.impute(adata_st, progress_bar=False, batch_size=10_000, **DDIM),
    }


def _backed(adata: ad.AnnData, path, X) -> ad.AnnData:
    ad.AnnData(X=X, obs=adata.obs, var=adata.var, obsm=dict(adata.obsm)).write_h5ad(path)
    return ad.read_h5ad(path, backed="r")


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


# streaming equals in-memory ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [1, 7, 60, 10_000])
@pytest.mark.parametrize("kind", ["dense", "csr", "csc", "backed_dense", "backed_csr", "layer"])
def test_streaming_equals_in_memory(trained, reference, kind, batch_size, tmp_path):
    model, _, adata_st = trained
    X = adata_st.X
    kwargs = {}
    if kind == "csr":
        adata = ad.AnnData(sparse.csr_matrix(X), obs=adata_st.obs, var=adata_st.var)
    elif kind == "csc":
        adata = ad.AnnData(sparse.csc_matrix(X), obs=adata_st.obs, var=adata_st.var)
    elif kind == "backed_dense":
        adata = _backed(adata_st, tmp_path / "st.h5ad", X)
    elif kind == "backed_csr":
        adata = _backed(adata_st, tmp_path / "st.h5ad", sparse.csr_matrix(X))
    elif kind == "layer":
        adata = ad.AnnData(np.full_like(X, -1.0), obs=adata_st.obs, var=adata_st.var, layers={"raw": X})
        kwargs["layer"] = "raw"
    else:
        adata = adata_st
    mean, std = model.impute(adata, progress_bar=False, batch_size=batch_size, **kwargs)
    assert std is None
    pd.testing.assert_frame_equal(mean, reference["mean"], check_exact=False, rtol=0, atol=ATOL)
    if batch_size in (7, 10_000):
        mean, std = model.impute(adata, progress_bar=False, batch_size=batch_size, **kwargs, **DDIM)
        pd.testing.assert_frame_equal(mean, reference["ddim"][0], check_exact=False, rtol=0, atol=ATOL)
        pd.testing.assert_frame_equal(std, reference["ddim"][1], check_exact=False, rtol=0, atol=ATOL)


def test_reader_reads_at_most_batch_size_rows(trained, reference, monkeypatch):
    """Imputation only ever indexes the expression matrix with row slices of <= batch_size rows."""
    model, _, adata_st = trained
    keys = []

    class Recorder:
        def __init__(self, X):
            self.X, self.shape = X, X.shape

        def __getitem__(self, key):
            keys.append(key)
            return self.X[key]

        def __array__(self, *args, **kwargs):
            raise AssertionError("the whole matrix was materialised")

    real = spatial_input_mod.get_matrix
    monkeypatch.setattr(spatial_input_mod, "get_matrix", lambda *a: Recorder(real(*a)))
    mean, _ = model.impute(adata_st, progress_bar=False, batch_size=16)
    pd.testing.assert_frame_equal(mean, reference["mean"], check_exact=False, rtol=0, atol=ATOL)
    assert keys and all(isinstance(k, slice) and k.stop - k.start <= 16 for k in keys)
    assert [k.start for k in keys] == [0, 16, 32, 48]


# output file -----------------------------------------------------------------------------------------------------
def test_out_file(trained, reference, tmp_path):
    model, _, adata_st = trained
    path = tmp_path / "imputed.h5ad"
    result = model.impute(adata_st, progress_bar=False, batch_size=7, out=path, **DDIM)
    assert result.isbacked and result.shape == (adata_st.n_obs, len(model.imputed_genes))
    assert list(result.obs_names) == list(adata_st.obs_names)
    assert list(result.var_names) == model.imputed_genes
    mean, std = reference["ddim"]
    np.testing.assert_allclose(result.X[:], mean.values, rtol=0, atol=ATOL)
    np.testing.assert_allclose(result.layers["std"], std.values, rtol=0, atol=ATOL)
    # the metadata layout is the one of sp.tl.spalstf_impute's uns[key_added] (spalstf._outputs)
    assert result.uns["spalstf_imputed"]["params"]["n_samples"] == 2
    assert list(result.uns["spalstf_imputed"]["measured_genes"]) == list(model.gene_plan.measured_st)
    result.file.close()
    assert not (tmp_path / "imputed.h5ad.partial").exists()

    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.impute(adata_st, progress_bar=False, out=path)
    result = model.impute(adata_st, progress_bar=False, out=path, overwrite=True)  # posterior mean: no std layer
    assert "std" not in result.layers
    np.testing.assert_allclose(result.X[:], reference["mean"].values, rtol=0, atol=ATOL)
    result.file.close()


def test_out_from_backed_input_leaves_input_unchanged(trained, reference, tmp_path):
    model, _, adata_st = trained
    src = tmp_path / "st.h5ad"
    backed = _backed(adata_st, src, sparse.csr_matrix(adata_st.X))
    before = _sha(src)
    result = model.impute(backed, progress_bar=False, batch_size=13, out=tmp_path / "out.h5ad")
    np.testing.assert_allclose(result.X[:], reference["mean"].values, rtol=0, atol=ATOL)
    result.file.close()
    backed.file.close()
    assert _sha(src) == before


def test_out_errors(trained, tmp_path):
    model, _, adata_st = trained
    with pytest.raises(ValueError, match="ending in '.h5ad'"):
        model.impute(adata_st, progress_bar=False, out=tmp_path / "imputed.csv")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model.impute(adata_st, progress_bar=False, out=tmp_path / "missing" / "imputed.h5ad")
    backed = _backed(adata_st, tmp_path / "st.h5ad", adata_st.X)
    with pytest.raises(ValueError, match="backed by"):
        model.impute(backed, progress_bar=False, out=tmp_path / "st.h5ad", overwrite=True)
    with pytest.raises(ValueError, match="batch_size"):
        model.impute(adata_st, progress_bar=False, batch_size=0)
    with pytest.raises(KeyError, match="g3"):  # missing genes are reported before any file is created
        model.impute(
            adata_st[:, [g for g in adata_st.var_names if g != "g3"]], progress_bar=False, out=tmp_path / "a.h5ad"
        )
    assert not (tmp_path / "a.h5ad").exists()


def test_failed_write_leaves_no_file(trained, tmp_path, monkeypatch):
    model, _, adata_st = trained

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(streaming.H5adChunkWriter, "write", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        model.impute(adata_st, progress_bar=False, out=tmp_path / "imputed.h5ad")
    assert list(tmp_path.iterdir()) == []


def test_h5ad_writer_layout(tmp_path):
    path = tmp_path / "x.h5ad"
    with streaming.H5adChunkWriter(path, pd.Index(["a", "b", "c"]), pd.Index(["g1", "g2"]), ["std"]) as w:
        w.write(0, 2, np.ones((2, 2), np.float32), std=np.zeros((2, 2), np.float32))
        w.write(2, 3, np.full((1, 2), 2.0, np.float32), std=np.ones((1, 2), np.float32))
        w.close()
    with h5py.File(path) as f:
        assert f["X"].dtype == np.float32
    adata = ad.read_h5ad(path)
    np.testing.assert_array_equal(adata.X, [[1, 1], [1, 1], [2, 2]])
    np.testing.assert_array_equal(adata.layers["std"], [[0, 0], [0, 0], [1, 1]])


# sp.tl.spalstf_impute --------------------------------------------------------------------------------------------
def test_tl_backed_equals_in_memory(pair, tiny_model, tiny_train, tmp_path):
    adata_st, adata_sc = pair
    kwargs = {**tiny_model, **tiny_train, "progress_bar": False, "random_state": 2}
    sp.tl.spalstf_impute(adata_st, adata_sc, **kwargs)
    backed = _backed(adata_st, tmp_path / "st.h5ad", sparse.csr_matrix(adata_st.X))
    sp.tl.spalstf_impute(backed, adata_sc, impute_batch_size=9, **kwargs)
    pd.testing.assert_frame_equal(
        backed.obsm["spalstf_imputed"], adata_st.obsm["spalstf_imputed"], check_exact=False, rtol=0, atol=ATOL
    )
    with pytest.raises(ValueError, match="to_memory"):
        sp.tl.spalstf_impute(backed, adata_sc, copy=True, **kwargs)

    out = tmp_path / "imputed.h5ad"
    sp.tl.spalstf_impute(backed, adata_sc, out=out, **kwargs)
    assert "spalstf_imputed" not in backed.obsm  # the stale in-memory result is removed
    assert backed.uns["spalstf_imputed"]["out"] == str(out)
    written = ad.read_h5ad(out)
    np.testing.assert_allclose(written.X, adata_st.obsm["spalstf_imputed"].values, rtol=0, atol=ATOL)
    # the same metadata, under the same names, in memory and in the file
    in_memory, in_file = adata_st.uns["spalstf_imputed"], written.uns["spalstf_imputed"]
    assert set(in_file) == set(backed.uns["spalstf_imputed"]) == set(in_memory) | {"out"}
    assert set(in_file["params"]) == set(in_memory["params"])
    for key in ("measured_genes", "imputed_genes"):
        assert list(in_file[key]) == in_memory[key]
    assert in_file["output_space"] == in_memory["output_space"]
    assert in_file["params"]["impute_batch_size"] == 1024 and in_memory["params"]["impute_batch_size"] == 1024
    with pytest.raises(FileExistsError, match="already exists"):  # raised before training
        sp.tl.spalstf_impute(backed, adata_sc, out=out, **kwargs)
    backed.file.close()
