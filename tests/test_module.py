"""The module's closed-form parts (spalstf.model._module)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spalstf.model._module import ridge_ensemble_weights


def ridge_weight(C, X, alpha):
    return next(ridge_ensemble_weights(C, X, [alpha]))


@pytest.mark.parametrize("n_cells", [40, 8])  # more cells than genes (primal) and fewer (dual form)
def test_ridge_weight_primal_and_dual_agree(n_cells):
    rng = np.random.default_rng(0)
    C = torch.from_numpy(rng.normal(size=(n_cells, 12)))
    X = torch.from_numpy(rng.normal(size=(n_cells, 3)))
    expected = np.linalg.solve(C.numpy().T @ C.numpy() + 10.0 * np.eye(12), C.numpy().T @ X.numpy())
    np.testing.assert_allclose(ridge_weight(C, X, 10.0).numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("n_cells", "n_genes"), [(60, 5), (8, 12)])  # primal and dual form
def test_ridge_ensemble_is_the_mean_of_standardised_fits(n_cells, n_genes):
    from spalstf.model._module import ridge_ensemble

    rng = np.random.default_rng(0)
    C = torch.from_numpy(rng.normal(size=(n_cells, n_genes)) + 0.5)  # not centred: the means matter
    X = C[:, :2] @ torch.from_numpy(rng.normal(size=(2, 3))) + torch.from_numpy(rng.normal(size=(n_cells, 3)))
    alphas = [0.6, 6.0, 60.0]
    W, shift = ridge_ensemble(C, X, alphas)
    expected = 0
    for a in alphas:
        pred = (C @ ridge_weight(C, X, a).double()).numpy()
        expected = expected + (pred - pred.mean(0)) / pred.std(0)
    expected /= len(alphas)
    np.testing.assert_allclose((C.float() @ W - shift).numpy(), expected, atol=1e-4)


def _module(blend=("ridge", "neighbours", "network"), **kw):
    from spalstf.model._module import SpaLSTFModule

    torch.manual_seed(0)
    profiles = torch.randn(80, 9)
    profiles[:, 6:] += profiles[:, :3]  # the unknown genes depend on the measured ones
    options = dict(
        n_neighbors=5,
        n_hidden=8,
        n_blocks=1,
        n_heads=2,
        n_tokens=3,
        n_lstm_hidden=4,
        n_lstm_layers=1,
        n_diffusion_steps=20,
        kl_weight=0.0,
        perturbation_std=0.5,
        ridge_alphas=(0.01, 1.0),
        context="bilstm",
        attention="xca",
        blend=blend,
    )
    return SpaLSTFModule(profiles, 6, **{**options, **kw})


def test_estimate_is_calibrated_on_the_reference():
    module = _module(blend=("ridge", "neighbours"))
    condition, targets = module.ref_profiles[:, :6], module.ref_profiles[:, 6:]
    est = module.posterior_mean(condition)
    # least squares on the blend: the residual is uncorrelated with the estimate and has mean 0 (in-sample)
    resid = targets - est
    assert torch.allclose(resid.mean(0), torch.zeros(3), atol=0.1)
    assert (torch.corrcoef(torch.cat([est.T, targets.T]))[:3, 3:].diagonal() > 0.5).all()


@pytest.mark.parametrize(
    "options",
    [{"context": "none"}, {"attention": "softmax"}, {"blend": ("network",)}, {"blend": ("ridge",)}],
)
def test_ablation_variants_train_and_impute(options):
    module = _module(**options)
    loss = module.loss(torch.arange(16))["loss"]
    loss.backward()
    module.calibrate()
    module.eval()
    out = module.posterior_mean(module.ref_profiles[:10, :6])
    draws = module.sample(module.ref_profiles[:4, :6], np.arange(4, dtype=np.uint64), n_samples=2, n_sampling_steps=3)
    assert out.shape == (10, 3) and draws.shape == (2, 4, 3)
    assert torch.isfinite(out).all() and torch.isfinite(draws).all()


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"blend": ()}, "blend"),
        ({"blend": ("ridge", "lasso")}, "blend"),
        ({"context": "lstm"}, "context"),
        ({"attention": "linear"}, "attention"),
    ],
)
def test_bad_module_options_are_named(options, match):
    with pytest.raises(ValueError, match=match):
        _module(**options)
