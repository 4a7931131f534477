"""The module's closed-form parts (spalstf.model._module)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spalstf.model._module import ridge_weight


@pytest.mark.parametrize("n_cells", [40, 8])  # more cells than genes (primal) and fewer (dual form)
def test_ridge_weight_primal_and_dual_agree(n_cells):
    rng = np.random.default_rng(0)
    C = torch.from_numpy(rng.normal(size=(n_cells, 12)))
    X = torch.from_numpy(rng.normal(size=(n_cells, 3)))
    expected = np.linalg.solve(C.numpy().T @ C.numpy() + 10.0 * np.eye(12), C.numpy().T @ X.numpy())
    np.testing.assert_allclose(ridge_weight(C, X, 10.0).numpy(), expected, rtol=1e-5, atol=1e-6)
