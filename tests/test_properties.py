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


#: A fixed reference of three cell types (genes Gene0..Gene11) for the panel/name/key property.
def _typed_reference(seed: int = 0) -> tuple[ad.AnnData, np.ndarray]:
    rng = np.random.default_rng(seed)
    means = rng.gamma(2.0, 3.0, size=(3, 12)) + 1.0
    types = rng.integers(0, 3, 120)
    adata_sc = ad.AnnData(
        X=rng.poisson(means[types]).astype(np.float32),
        obs=pd.DataFrame(index=[f"r{i}" for i in range(120)]),
        var=pd.DataFrame(index=[f"Gene{i}" for i in range(12)]),
    )
    return adata_sc, means


_ODD_NAMES = {
    "as is": lambda g: g,
    "upper": str.upper,
    "lower": str.lower,
    "trailing space": lambda g: g + " ",
    "leading space": lambda g: " " + g,
}
#: Keys the spatial data holds before the call (coordinates, an embedding) and keys a user may pass.
_USER_OBSM = ("spatial", "X_umap")


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    panel=st.lists(st.integers(0, 11), min_size=1, max_size=5, unique=True),
    spellings=st.lists(st.sampled_from(["as is"] * 6 + sorted(_ODD_NAMES)), min_size=5, max_size=5),
    key=st.sampled_from(["spalstf_imputed", "imputed genes", "k", "K ", "spatial", "X_umap", "spatial_lower"]),
    case_sensitive=st.booleans(),
)
def test_small_panels_odd_names_and_keys_give_bounded_values_or_a_documented_error(
    one_thread, panel, spellings, key, case_sensitive
):
    """Panels of 1-5 genes, names varied in case and whitespace (so 0-5 of them match), any key: finite values within
    the reference's range, or a documented error raised by spalstf; never a user's obsm key replaced."""
    adata_sc, means = _typed_reference()
    rng = np.random.default_rng(len(panel))
    types = rng.integers(0, 3, 40)
    genes = [f"Gene{i}" for i in panel]
    adata_st = ad.AnnData(
        X=rng.poisson(2.0 * means[types][:, panel]).astype(np.float32),
        obs=pd.DataFrame(index=[f"c{i}" for i in range(40)]),
        var=pd.DataFrame(index=[_ODD_NAMES[s](g) for g, s in zip(genes, spellings, strict=False)]),
    )
    user_obsm = {k: rng.uniform(size=(40, 2)) for k in _USER_OBSM}
    for k, v in user_obsm.items():
        adata_st.obsm[k] = v.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            sp.tl.spalstf_impute(
                adata_st, adata_sc, key_added=key, case_sensitive=case_sensitive, progress_bar=False, **TINY
            )
            raised = None
        except DOCUMENTED as err:
            assert _raised_by_spalstf(err), f"{type(err).__name__} from another library: {err}"
            raised = err
    for k, v in user_obsm.items():  # never replaced, whatever happened
        np.testing.assert_array_equal(adata_st.obsm[k], v)
    if key in _USER_OBSM or key.startswith("spatial_"):
        if key in _USER_OBSM:
            assert raised is not None and "not written by spalstf_impute" in str(raised)
        return
    if raised is not None:  # whitespace left no gene, or one gene, to condition on
        assert "share no gene names" in str(raised) or "SpaLSTF needs at least 2" in str(raised), raised
        return
    measured = adata_st.uns[key]["measured_genes"]
    imputed = adata_st.obsm[key].to_numpy()
    reference = np.asarray(adata_sc.X, dtype=np.float64)
    by_name = {g.upper(): i for i, g in enumerate(adata_sc.var_names)}
    library = reference[:, [by_name[g.strip().upper()] for g in measured]]
    targets = np.log1p(
        reference[:, [list(adata_sc.var_names).index(g) for g in adata_st.uns[key]["imputed_genes"]]]
        / np.maximum(library.sum(axis=1, keepdims=True), 1)
        * 1e4
    )
    assert np.isfinite(imputed).all()
    # the blend's ridge part may extrapolate a little: at most twice the reference's largest normalised value
    assert imputed.min() >= 0 and imputed.max() <= targets.max() + np.log(2), (imputed.max(), targets.max())
