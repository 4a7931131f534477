"""Cosine noise schedule and the reverse samplers (DDPM chain and deterministic DDIM)."""

from __future__ import annotations

import math

import torch


def cosine_alpha_bar(n_steps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Cumulative signal level ``gamma_t`` for t = 1..T of the cosine schedule (Nichol & Dhariwal 2021).

    ``gamma(t) = cos(((t / T + s) / (1 + s)) * pi / 2) ** 2`` with per-step ``beta_t`` capped at ``max_beta``.
    Returns a float64 tensor of length ``n_steps`` (index ``t - 1``).
    """
    f = lambda u: math.cos((u / n_steps + s) / (1 + s) * math.pi / 2) ** 2
    betas = [min(1 - f(t + 1) / f(t), max_beta) for t in range(n_steps)]
    return torch.cumprod(1 - torch.tensor(betas, dtype=torch.float64), dim=0)


class Schedule:
    """Noise schedule of ``n_steps`` steps, indexed 0..T-1 (step index i is diffusion time t = i + 1)."""

    def __init__(self, n_steps: int):
        if n_steps < 2:
            raise ValueError(f"n_diffusion_steps must be at least 2, got {n_steps}.")
        self.n_steps = n_steps
        self.alpha_bar = cosine_alpha_bar(n_steps)
        prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar[:-1]])
        self.alpha = self.alpha_bar / prev

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Forward process: ``sqrt(gamma_t) x0 + sqrt(1 - gamma_t) noise`` for step indices ``t`` (per cell)."""
        ab = self.alpha_bar.to(x0.device)[t].float()[:, None]
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def predict_x0(self, x_t: torch.Tensor, eps: torch.Tensor, i: int) -> torch.Tensor:
        """Clean-data estimate implied by a noise prediction at step index ``i``."""
        ab = float(self.alpha_bar[i])
        return (x_t - math.sqrt(1 - ab) * eps) / math.sqrt(ab)

    def ddpm_step(self, x_t: torch.Tensor, x0: torch.Tensor, i: int, noise: torch.Tensor | None) -> torch.Tensor:
        """One ancestral step x_t -> x_{t-1} through the clean-data estimate ``x0`` (already clipped by the caller).

        ``x_{t-1} = c0 x0 + ct x_t + sqrt(beta_tilde) noise`` with ``c0 = sqrt(gamma_{t-1}) beta_t / (1 - gamma_t)``,
        ``ct = sqrt(alpha_t) (1 - gamma_{t-1}) / (1 - gamma_t)`` and ``beta_tilde = (1 - gamma_{t-1}) / (1 - gamma_t)
        beta_t``. With the unclipped ``x0`` this equals the paper's equation 3; clipping ``x0`` keeps the chain stable
        where the cosine schedule's last steps have ``alpha_t`` near 0. No noise is added at the last step.
        """
        if i == 0:
            return x0
        a, ab, ab_prev = float(self.alpha[i]), float(self.alpha_bar[i]), float(self.alpha_bar[i - 1])
        beta = 1 - a
        mean = math.sqrt(ab_prev) * beta / (1 - ab) * x0 + math.sqrt(a) * (1 - ab_prev) / (1 - ab) * x_t
        if noise is None:
            return mean
        return mean + math.sqrt((1 - ab_prev) / (1 - ab) * beta) * noise

    def ddim_step(self, x_t: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, i_prev: int) -> torch.Tensor:
        """Deterministic DDIM update (eta = 0) to step index ``i_prev`` (-1 means clean data)."""
        if i_prev < 0:
            return x0
        ab_prev = float(self.alpha_bar[i_prev])
        return math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev) * eps

    def ddim_timesteps(self, n_sampling_steps: int) -> list[int]:
        """Evenly spaced step indices from T-1 down to 0."""
        n = max(1, min(n_sampling_steps, self.n_steps))
        steps = torch.linspace(self.n_steps - 1, 0, n).round().long().tolist()
        return list(dict.fromkeys(steps))
