"""Mixed precision: bf16 autocast on CPU (Lightning ``precision="bf16-mixed"``) and the module's float32 parts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spalstf.model import SpaLSTF, _module, autocast

EPOCHS = 5


def _train(make_pair, tiny_model, tiny_train, seed, precision):
    adata_st, adata_sc = make_pair()
    SpaLSTF.setup_anndata(adata_sc)
    torch.manual_seed(seed)
    model = SpaLSTF(adata_sc, adata_st, **tiny_model)
    model.train(**{**tiny_train, "max_epochs": EPOCHS}, precision=precision)
    mean, _ = model.impute(adata_st, progress_bar=False)
    draws, _ = model.impute(adata_st, n_samples=2, progress_bar=False)
    return model, mean.values, draws.values


NO_BF16_LSTM = "this CPU's oneDNN has no bfloat16 LSTM primitive: bf16-mixed cannot run here"


@pytest.fixture(scope="module")
def runs(make_pair, tiny_model, tiny_train):
    if not _module._cpu_runs_bf16_lstm():
        pytest.skip(NO_BF16_LSTM)
    return {
        key: _train(make_pair, tiny_model, tiny_train, seed, precision)
        for key, seed, precision in (("fp32", 0, "32"), ("bf16", 0, "bf16-mixed"), ("fp32_seed1", 1, "32"))
    }


def test_bf16_mixed_trains_close_to_fp32(runs):
    """bf16 changes the result far less than the seed does.

    bfloat16 keeps 8 mantissa bits (relative rounding 2^-9), so the networks' outputs and hence the trajectory
    differ slightly from float32. The yardstick is the run-to-run variation a user accepts anyway: the same
    training with another seed. Measured on this data (3 and 10 epochs): posterior mean 6e-4-1e-3 (bf16) vs
    3e-2-5e-2 (seed), DDIM mean of 2 draws 3e-3-2e-2 vs 3.6; the test asks for at most a tenth of the seed's effect.
    """
    model, mean, draws = runs["bf16"]
    _, mean32, draws32 = runs["fp32"]
    _, mean_s1, draws_s1 = runs["fp32_seed1"]
    for key in ("train_loss", "train_mse", "train_kl", "train_mean_mse"):
        values = np.asarray(model.history[key], dtype=float).ravel()
        assert len(values) == EPOCHS and np.isfinite(values).all(), key
    loss, loss32 = (np.asarray(runs[k][0].history["train_loss"], dtype=float).ravel() for k in ("bf16", "fp32"))
    np.testing.assert_allclose(loss, loss32, rtol=0.01)
    assert np.isfinite(mean).all() and np.isfinite(draws).all()
    assert np.abs(mean - mean32).max() < 0.1 * np.abs(mean_s1 - mean32).max()
    assert np.abs(draws - draws32).max() < 0.1 * np.abs(draws_s1 - draws32).max()
    assert not np.array_equal(mean, mean32)  # autocast did run the networks in bf16


def test_float32_parts_under_autocast(runs):
    """Neighbour search, ridge part and loss statistics ignore autocast; network outputs come back as float32."""
    model = runs["fp32"][0]
    module = model.module
    module.eval()
    cond = module.ref_profiles[:40, : module.n_measured] + 0.3 * torch.randn(40, module.n_measured)
    with torch.no_grad():
        idx, dist = module.find_neighbors(cond)
        y = module.encode(cond, idx, dist)
        mu = module.posterior_mean(cond)
        with autocast("cpu", "bf16-mixed"):
            idx_h, dist_h = module.find_neighbors(cond)
            y_h = module.encode(cond, idx_h, dist_h)
            mu_h = module.estimate(cond, idx_h, y_h)
            t = torch.full((40,), 10)
            eps_h = module.predict_noise(torch.zeros(40, module.n_imputed), cond, y_h, t)
            assert torch.mm(cond, cond.T).dtype == torch.bfloat16  # autocast is on here
    torch.testing.assert_close(idx_h, idx, rtol=0, atol=0)
    torch.testing.assert_close(dist_h, dist, rtol=0, atol=0)
    assert y_h.dtype == mu_h.dtype == eps_h.dtype == torch.float32
    torch.testing.assert_close(mu_h, mu, rtol=0, atol=0.05)
    # the closed-form parts alone are exact
    parts = module.part_table()
    with autocast("cpu", "bf16-mixed"):
        ridge_h = parts["ridge"].predict(cond, idx, y)
        neighbours_h = parts["neighbours"].predict(cond, idx, y)
    torch.testing.assert_close(ridge_h, cond @ module.ridge_weight, rtol=0, atol=1e-5)
    torch.testing.assert_close(
        neighbours_h, module.ref_profiles[idx][:, :, module.n_measured :].mean(1), rtol=0, atol=0
    )

    module.train()
    with autocast("cpu", "bf16-mixed"):
        out = module.loss(torch.arange(64))
    for name, value in out.items():
        assert value.dtype == torch.float32 and torch.isfinite(value), name
    module.eval()


def test_autocast_helper():
    x = torch.ones(2, 2)
    with autocast("cpu", "32"):
        assert (x @ x).dtype == torch.float32
    with autocast("cpu", "32-true"):
        assert (x @ x).dtype == torch.float32
    if _module._cpu_runs_bf16_lstm():
        with autocast(torch.device("cpu"), "bf16-mixed"):
            assert (x @ x).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        with autocast("cpu", "8-mixed"):
            pass


def test_bf16_on_a_cpu_without_bf16_lstm_names_the_fix(make_pair, tiny_model, tiny_train, monkeypatch):
    """Where oneDNN has no bfloat16 LSTM, bf16-mixed fails before training with the fix, not deep inside torch."""
    monkeypatch.setattr(_module, "_cpu_runs_bf16_lstm", lambda: False)
    adata_st, adata_sc = make_pair()
    SpaLSTF.setup_anndata(adata_sc)
    model = SpaLSTF(adata_sc, adata_st, **tiny_model)
    for accelerator in ("cpu", "auto") if not torch.cuda.is_available() else ("cpu",):
        for precision in ("bf16-mixed", "bf16", "bf16-true"):  # Lightning's names of bfloat16 training
            with pytest.raises(RuntimeError, match=r"no bfloat16 LSTM.*precision='32'"):
                model.train(**{**tiny_train, "max_epochs": 1, "accelerator": accelerator}, precision=precision)
    assert not model.is_trained_
    with pytest.raises(RuntimeError, match="precision='32'"):
        with autocast("cpu", "bf16-mixed"):
            pass
    with autocast("cpu", "32"), autocast("gpu", "32"):  # full precision is unaffected, whatever the device's name
        pass
    _module.check_autocast_supported("cuda", "bf16-mixed")  # other devices are left to torch and Lightning
    model.train(**{**tiny_train, "max_epochs": 1, "accelerator": "cpu"}, precision="32")
    assert model.is_trained_


def test_bf16_probe_matches_this_cpu():
    """The probe answers what a bf16 BiLSTM forward and backward really do here."""
    lstm = torch.nn.LSTM(3, 3, bidirectional=True, batch_first=True)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, _ = lstm(torch.ones(2, 4, 3))
        out.float().sum().backward()
        works = True
    except RuntimeError:
        works = False
    assert _module._cpu_runs_bf16_lstm() is works
    # the answer does not depend on the caller's grad mode, and the probe does not move the caller's random stream
    _module._cpu_runs_bf16_lstm.cache_clear()
    with torch.no_grad():
        assert _module._cpu_runs_bf16_lstm() is works
    _module._cpu_runs_bf16_lstm.cache_clear()
    with torch.inference_mode():
        assert _module._cpu_runs_bf16_lstm() is works
    _module._cpu_runs_bf16_lstm.cache_clear()
    torch.manual_seed(0)
    _module._cpu_runs_bf16_lstm()
    after_probe = torch.rand(3)
    torch.manual_seed(0)
    torch.testing.assert_close(after_probe, torch.rand(3), rtol=0, atol=0)
