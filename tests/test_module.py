"""The module's closed-form parts (spalstf.model._module)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spalstf.model._closed_form import _ridge_basis


def ridge_weight(C, X, alpha):
    """``W_a`` of one penalty from the eigendecomposition the ensemble uses (primal or dual form)."""
    evals, proj, to_weights, _, _ = _ridge_basis(C, X)
    return to_weights(proj / (evals + alpha)[:, None])


@pytest.mark.parametrize("n_cells", [40, 8])  # more cells than genes (primal) and fewer (dual form)
def test_ridge_weight_primal_and_dual_agree(n_cells):
    rng = np.random.default_rng(0)
    C = torch.from_numpy(rng.normal(size=(n_cells, 12)))
    X = torch.from_numpy(rng.normal(size=(n_cells, 3)))
    expected = np.linalg.solve(C.numpy().T @ C.numpy() + 10.0 * np.eye(12), C.numpy().T @ X.numpy())
    np.testing.assert_allclose(ridge_weight(C, X, 10.0).numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("n_cells", "n_genes"), [(60, 5), (8, 12)])  # primal and dual form
def test_ridge_ensemble_is_the_mean_of_standardised_fits(n_cells, n_genes):
    from spalstf.model._closed_form import ridge_ensemble

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


def test_closed_form_blend_alone_estimates_as_a_module_blending_its_parts():
    """The calibration's inner folds fit a ClosedFormBlend: it must give what a module with the same parts gives."""
    from spalstf.model._closed_form import ClosedFormBlend

    module = _module(blend=("ridge", "neighbours"))
    blend = ClosedFormBlend(module.ref_profiles.clone(), 6, n_neighbors=5, ridge_alphas=(0.01, 1.0))
    blend.calibrate()
    condition = module.ref_profiles[:20, :6] + 0.1
    torch.testing.assert_close(blend.posterior_mean(condition), module.posterior_mean(condition), rtol=0, atol=0)
    for name in ("ridge_weight", "ridge_shift", "neighbour_shift", "neighbour_scale", "calibration_shift"):
        torch.testing.assert_close(getattr(blend, name), getattr(module, name), rtol=0, atol=0)


def test_module_state_keeps_the_names_of_saved_models():
    """Saved models are restored by name: the closed-form buffers and the point head keep theirs."""
    names = set(_module().state_dict())
    closed_form = {"ref_profiles", "ridge_weight", "ridge_shift", "neighbour_shift", "neighbour_scale"}
    module = {"mask", "x0_min", "x0_max", "network_shift", "network_scale", "calibration_shift", "calibration_scale"}
    head = {"mean_head.0.weight", "mean_head.0.bias", "mean_head.2.weight", "mean_head.2.bias"}
    assert closed_form | module | head <= names
