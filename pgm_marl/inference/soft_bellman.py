"""The critic of MA-SAC: soft Bellman target (eq. 7, with discount) and its regression loss (eq. 8)."""
from __future__ import annotations

import torch

__all__ = ["soft_bellman_target", "critic_regression_loss"]


def soft_bellman_target(reward, next_q, next_log_pi, alpha, gamma: float, terminated) -> torch.Tensor:
    r"""Eq. 7 (one-step lookahead, discounted as in section 4.3):

    .. math:: \bar Q_i = r_i + \gamma\,(1 - d)\,\big(Q_i(s', a') - \alpha_i \log \pi_i(a'_i \mid o'_i)\big),
              \quad a' \sim \pi(\cdot \mid s')

    Shapes broadcast: ``reward, next_q, next_log_pi`` are ``[n, B]``, ``alpha`` ``[n, 1]``, ``terminated``
    ``[B]``. Only true termination stops bootstrapping: MPE episodes are *truncated* at 25 steps, and since
    the time step is not part of the observation the same state could continue, so the target bootstraps.
    The result is a constant for the critic (computed without gradient by the caller).
    """
    return reward + gamma * (1.0 - terminated) * (next_q - alpha * next_log_pi)


def critic_regression_loss(q1: torch.Tensor, q2: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 8 for both twins: ``E_D[(Q_i(s,a) - bar Q_i)^2]``, averaged over the batch, summed over agents."""
    target = target.detach()
    return ((q1 - target) ** 2).mean(-1).sum() + ((q2 - target) ** 2).mean(-1).sum()
