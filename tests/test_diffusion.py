import math

import torch

from spalstf.model._diffusion import Schedule


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
