import math

import pytest
import torch

from spalstf.model._diffusion import Schedule, cosine_alpha_bar


def _oracle_eps(schedule, x_t, x0, i):
    ab = float(schedule.alpha_bar[i])
    return (x_t - math.sqrt(ab) * x0) / math.sqrt(1 - ab)


def test_ddpm_chain_with_oracle_denoiser_lands_on_the_data():
    schedule = Schedule(1000)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.tensor([[0.5, -1.2, 2.0]])
    x = torch.randn(1, 3, generator=gen)
    for i in range(schedule.n_steps - 1, -1, -1):
        eps = _oracle_eps(schedule, x, x0, i)
        x0_hat = schedule.predict_x0(x, eps, i).clamp(-3, 3)
        noise = torch.randn(1, 3, generator=gen) if i > 0 else None
        x = schedule.ddpm_step(x, x0_hat, i, noise)
    torch.testing.assert_close(x, x0, atol=1e-4, rtol=0)


def test_ddpm_step_equals_equation_3_without_clipping():
    schedule = Schedule(100)
    x_t, eps, noise = torch.randn(4, 5), torch.randn(4, 5), torch.randn(4, 5)
    i = 40
    a, ab, ab_prev = float(schedule.alpha[i]), float(schedule.alpha_bar[i]), float(schedule.alpha_bar[i - 1])
    sigma = math.sqrt((1 - ab_prev) / (1 - ab) * (1 - a))
    equation_3 = (x_t - (1 - a) / math.sqrt(1 - ab) * eps) / math.sqrt(a) + sigma * noise
    x0 = schedule.predict_x0(x_t, eps, i)
    torch.testing.assert_close(schedule.ddpm_step(x_t, x0, i, noise), equation_3, atol=1e-4, rtol=1e-4)


# schedule --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_steps", [2, 50, 1000, 1500])
def test_cosine_alpha_bar_decreasing(n_steps):
    ab = cosine_alpha_bar(n_steps)
    assert ab.dtype == torch.float64 and ab.shape == (n_steps,)
    assert (ab > 0).all() and (ab <= 1).all()
    assert (ab[1:] < ab[:-1]).all()
    assert ab[-1] < 0.01  # almost pure noise at the last step
    if n_steps >= 50:
        assert ab[0] > 0.99  # almost no noise at the first step


@pytest.mark.parametrize("n_steps", [50, 1000])
@pytest.mark.parametrize("n_sampling", [2, 3, 25, 49, 50, 333, 999, 5000])
def test_ddim_timesteps(n_steps, n_sampling):
    steps = Schedule(n_steps).ddim_timesteps(n_sampling)
    assert steps[0] == n_steps - 1
    assert steps[-1] == 0
    assert all(a > b for a, b in zip(steps[:-1], steps[1:], strict=True))
    assert len(steps) == min(n_sampling, n_steps)
    assert all(isinstance(s, int) for s in steps)


def test_schedule_rejects_single_step():
    with pytest.raises(ValueError, match="at least 2"):
        Schedule(1)
