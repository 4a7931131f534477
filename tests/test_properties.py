"""Property-based tests over generated AnnData pairs: a call either succeeds with finite outputs of the documented
shape or raises one of our documented errors (raised by spalstf itself, naming the problem); inputs never change."""

from __future__ import annotations

import traceback
import warnings

import anndata as ad
import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import sparse

import spalstf as sp

#: The errors spalstf documents for bad input.
DOCUMENTED = (ValueError, KeyError, TypeError)
TINY = {
    "n_hidden": 8,
    "n_blocks": 1,
    "n_heads": 2,
    "n_tokens": 2,
    "n_lstm_hidden": 4,
    "n_lstm_layers": 1,
    "n_neighbors": 3,
    "n_diffusion_steps": 10,
    "max_steps": 2,
    "batch_size": 16,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "accelerator": "cpu",
}


@st.composite
def pairs(draw):
    """(adata_st, adata_sc): random shapes, storage, dtypes, empty rows/columns, bad values, names and their case."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    # about half the draws are valid pairs, so that successful calls are checked as often as refused ones
    sizes = st.one_of(st.integers(12, 40), st.integers(1, 11))
    n_st, n_sc = draw(sizes), draw(sizes)
    n_shared = draw(st.one_of(st.integers(2, 5), st.integers(0, 1)))
    n_only_sc = draw(st.integers(0, 4))
    n_only_st = draw(st.integers(0 if n_shared else 1, 2))
    shared = [f"Gene{i}" for i in range(n_shared)]
    st_genes = shared + [f"St{i}" for i in range(n_only_st)]
    sc_genes = shared + [f"Ref{i}" for i in range(n_only_sc)]
    if shared and draw(st.integers(0, 3)) == 0:
        st_genes[0] = st_genes[0].upper()  # a case variant
    X_st = rng.poisson(3.0, (n_st, len(st_genes))).astype(draw(st.sampled_from([np.float32, np.float64, np.int32])))
    X_sc = rng.poisson(3.0, (n_sc, len(sc_genes))).astype(draw(st.sampled_from([np.float32, np.float64, np.int64])))
    for X in (X_st, X_sc):
        if X.size and draw(st.booleans()):
            X[draw(st.integers(0, X.shape[0] - 1))] = 0  # an empty row
        if X.size and draw(st.booleans()):
            X[:, draw(st.integers(0, X.shape[1] - 1))] = 0  # an empty column
    bad = draw(st.sampled_from([None, None, None, "nan", "inf", "negative"]))
    if bad and X_st.size and X_st.dtype.kind == "f":
        X_st[0, 0] = {"nan": np.nan, "inf": np.inf, "negative": -1.0}[bad]
    st_obs = [f"c{i}" for i in range(n_st)]
    if n_st > 1 and draw(st.integers(0, 3)) == 0:
        st_obs[1] = st_obs[0]  # duplicated cell names
    if draw(st.booleans()):
        X_st = sparse.csr_matrix(X_st)
    if draw(st.booleans()):
        X_sc = sparse.csr_matrix(X_sc)
    adata_st = ad.AnnData(X=X_st, obs=pd.DataFrame(index=st_obs), var=pd.DataFrame(index=st_genes))
    adata_st.obsm["spatial"] = rng.uniform(size=(n_st, 2))
    adata_sc = ad.AnnData(
        X=X_sc, obs=pd.DataFrame(index=[f"r{i}" for i in range(n_sc)]), var=pd.DataFrame(index=sc_genes)
    )
    return adata_st, adata_sc


def _snapshot(adata: ad.AnnData) -> dict:
    X = adata.X.toarray() if sparse.issparse(adata.X) else np.array(adata.X, copy=True)
    return {
        "X": X,
        "dtype": adata.X.dtype,
        "obs": adata.obs.copy(),
        "var": adata.var.copy(),
        "obsm": sorted(adata.obsm),
        "uns": sorted(adata.uns),
    }


def _same(adata: ad.AnnData, before: dict) -> None:
    now = _snapshot(adata)
    np.testing.assert_array_equal(now["X"], before["X"])
    assert now["dtype"] == before["dtype"]
    pd.testing.assert_frame_equal(now["obs"], before["obs"])
    pd.testing.assert_frame_equal(now["var"], before["var"])
    assert now["obsm"] == before["obsm"] and now["uns"] == before["uns"]


def _raised_by_spalstf(err: BaseException) -> bool:
    frames = traceback.extract_tb(err.__traceback__)
    return bool(frames) and "/spalstf/" in frames[-1].filename.replace("\\", "/")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pairs())
def test_impute_succeeds_finite_or_raises_a_documented_error(one_thread, pair):
    adata_st, adata_sc = pair
    st_before, sc_before = _snapshot(adata_st), _snapshot(adata_sc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = sp.tl.spalstf_impute(adata_st, adata_sc, copy=True, progress_bar=False, **TINY)
        except DOCUMENTED as err:
            assert _raised_by_spalstf(err), f"{type(err).__name__} from another library: {err}"
            out = None
    _same(adata_st, st_before)
    _same(adata_sc, sc_before)
    if out is not None:
        imputed = out.obsm["spalstf_imputed"]
        assert imputed.index.equals(adata_st.obs_names)
        assert list(imputed.columns) == out.uns["spalstf_imputed"]["imputed_genes"]
        assert np.isfinite(imputed.to_numpy()).all() and (imputed.to_numpy() >= 0).all()
