"""From raw expression to the model's space (spalstf.model._preprocessing): chunked statistics = whole-matrix ones."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

import spalstf._streaming as streaming
from spalstf._expression import log1p_normalize
from spalstf.model import SpaLSTF
from spalstf.model import _preprocessing as prep


def _whole_matrix_stats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene mean and standard deviation (ddof 0) of the whole matrix; a constant gene gets std 1."""
    std = values.std(axis=0)
    return values.mean(axis=0).astype(np.float32), np.where(std > 1e-8, std, 1.0).astype(np.float32)


@pytest.mark.parametrize("chunk", [1, 7, 50, 1000])
def test_running_gene_stats_equal_full(chunk):
    rng = np.random.default_rng(0)
    values = (rng.normal(3.0, 2.0, size=(123, 9)) * rng.uniform(0.1, 5, size=9)).astype(np.float32)
    values[:, 4] = 2.5  # constant gene -> std 1
    stats = prep.RunningGeneStats(9)
    for start in range(0, len(values), chunk):
        stats.update(values[start : start + chunk])
    mean, std = stats.result()
    full_mean, full_std = _whole_matrix_stats(values)
    np.testing.assert_allclose(mean, full_mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(std, full_std, rtol=1e-5)
    assert std[4] == 1.0
    with pytest.raises(ValueError, match="zero cells"):
        prep.RunningGeneStats(3).result()


@pytest.mark.parametrize("alignment", ["quantile", "zscore"])
def test_model_statistics_chunked_equal_full(make_pair, tiny_model, monkeypatch, alignment):
    """ST and reference statistics from many small chunks equal the whole-matrix formulas."""
    adata_st, adata_sc = make_pair()
    adata_sc.X = sparse.csr_matrix(adata_sc.X)
    SpaLSTF.setup_anndata(adata_sc)
    monkeypatch.setattr(streaming, "CHUNK_ELEMENTS", 7 * 30)  # 7 rows per chunk
    model = SpaLSTF(adata_sc, adata_st, alignment=alignment, **tiny_model)
    assert bool(model.module.st_normalized)  # Poisson counts: library-normalised
    st_values = prep.condition_values(adata_st.X, model.target_sum, model.cell_scaling)
    st_fit = prep.fit_alignment(alignment, st_values)
    for name, value in st_fit.items():
        np.testing.assert_allclose(getattr(model.module, f"st_{name}").numpy(), value, rtol=1e-5, atol=1e-6)

    X = adata_sc[:, model.measured_genes + model.imputed_genes].X.toarray()
    cond = prep.condition_values(X[:, :20], model.target_sum, model.cell_scaling)
    target = log1p_normalize(X[:, 20:], model.target_sum, library=X[:, :20].sum(1)).astype(np.float32)
    expected = np.concatenate(
        [
            prep.apply_alignment(alignment, prep.fit_alignment(alignment, cond), cond),
            prep.standardize(target, *_whole_matrix_stats(target)),
        ],
        1,
    )
    np.testing.assert_allclose(model.module.ref_profiles.numpy(), expected, rtol=1e-4, atol=1e-4)


# the quantile alignment ------------------------------------------------------------------------------------------
def test_gene_quantiles_are_mid_rank_normal_scores():
    from scipy.stats import norm, rankdata

    rng = np.random.default_rng(0)
    values = np.column_stack([rng.poisson(0.4, 3000), rng.normal(size=3000), rng.gamma(2.0, size=3000)])
    z = prep.GeneQuantiles.fit(values).transform(values)
    expected = norm.ppf((rankdata(values, axis=0) - 0.5) / len(values))
    central = np.abs(expected) < 2.0  # mid-ranks read from 1001 quantiles: coarser in the tails
    np.testing.assert_allclose(z[central], expected[central], atol=0.03)
    zeros = values[:, 0] == 0
    assert len(np.unique(z[zeros, 0])) == 1  # ties (the zeros of a sparse gene) share one score
    for j in range(3):  # monotone: the order of the cells is kept
        order = np.argsort(values[:, j], kind="stable")
        assert (np.diff(z[order, j]) >= 0).all()


def test_gene_quantiles_map_each_cell_alone():
    rng = np.random.default_rng(1)
    q = prep.GeneQuantiles.fit(rng.normal(size=(500, 4)))
    new = rng.normal(size=(20, 4)) * 3  # values beyond the fitted range too
    together = q.transform(new)
    alone = np.concatenate([q.transform(new[i : i + 1]) for i in range(len(new))])
    np.testing.assert_array_equal(together, alone)
    assert np.isfinite(together).all() and np.abs(together).max() <= 3.3  # clipped at the outer knots


def test_count_detection_decides_the_spatial_normalisation(make_pair, tiny_model):
    adata_st, adata_sc = make_pair()
    SpaLSTF.setup_anndata(adata_sc)
    assert bool(SpaLSTF(adata_sc, adata_st, **tiny_model).module.st_normalized)
    adata_st.X = adata_st.X / 7.0  # intensities, not counts: used as given
    assert not bool(SpaLSTF(adata_sc, adata_st, **tiny_model).module.st_normalized)
    assert bool(SpaLSTF(adata_sc, adata_st, normalize_st=True, **tiny_model).module.st_normalized)
