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


def test_model_statistics_chunked_equal_full(make_pair, tiny_model, monkeypatch):
    """ST and reference statistics from many small chunks equal the whole-matrix formulas."""
    adata_st, adata_sc = make_pair()
    adata_sc.X = sparse.csr_matrix(adata_sc.X)
    SpaLSTF.setup_anndata(adata_sc)
    monkeypatch.setattr(streaming, "CHUNK_ELEMENTS", 7 * 30)  # 7 rows per chunk
    model = SpaLSTF(adata_sc, adata_st, **tiny_model)
    st_values = prep.condition_values(adata_st.X, model.target_sum, model.cell_scaling)
    st_mean, st_std = _whole_matrix_stats(st_values)
    np.testing.assert_allclose(model.module.st_mean.numpy(), st_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.module.st_std.numpy(), st_std, rtol=1e-5)

    X = adata_sc[:, model.measured_genes + model.imputed_genes].X
    cond = prep.condition_values(X[:, :20], model.target_sum, model.cell_scaling)
    target = log1p_normalize(X, model.target_sum).astype(np.float32)[:, 20:]
    expected = np.concatenate(
        [prep.standardize(cond, *_whole_matrix_stats(cond)), prep.standardize(target, *_whole_matrix_stats(target))], 1
    )
    np.testing.assert_allclose(model.module.ref_profiles.numpy(), expected, rtol=1e-4, atol=1e-4)
