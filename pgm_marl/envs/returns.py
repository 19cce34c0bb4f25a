"""Team returns, one definition everywhere.

A team's episode return is the sum over the episode's steps of the MEAN reward of the
team's agents: ``G_team = sum_t mean_{i in team} r_{t,i}``.

Why fix it: published MPE numbers differ by ~N x (e.g. ~3x in cooperative navigation)
depending on whether papers report the sum over agents, the mean, or one agent's return.
The mean keeps a team's return on the per-agent reward scale, so teams of different
sizes (3 predators vs 1 prey) are comparable, and equals the per-agent return when all
agents share the reward (cooperative communication; navigation shares its global part).
"""
from __future__ import annotations

from typing import Dict

import torch

from .tasks import TaskSpec


def team_step_rewards(reward: torch.Tensor, spec: TaskSpec) -> Dict[str, torch.Tensor]:
    """Per-step team reward: mean over the team's agents of ``reward[..., n_agents]``."""
    if reward.shape[-1] != spec.n_agents:
        raise ValueError(f"reward last dim {reward.shape[-1]} != n_agents {spec.n_agents}")
    return {t: reward[..., list(spec.team_indices(t))].mean(-1) for t in spec.teams}


def team_returns(rewards: torch.Tensor, spec: TaskSpec) -> Dict[str, torch.Tensor]:
    """Episode returns per team from ``rewards`` of shape ``[T, n_agents]`` or ``[T, K, n_agents]``.

    Returns ``team -> tensor`` of shape ``[]`` or ``[K]``: sum over steps of the team-mean reward.
    """
    if rewards.dim() not in (2, 3):
        raise ValueError(f"rewards must be [T, n_agents] or [T, K, n_agents], got shape {tuple(rewards.shape)}")
    return {t: r.sum(0) for t, r in team_step_rewards(rewards, spec).items()}


class ReturnAccumulator:
    """Running per-copy team returns for ``K`` parallel episodes (used by ``VectorEnv``)."""

    def __init__(self, spec: TaskSpec, num_envs: int):
        self.spec = spec
        self.totals = {t: torch.zeros(num_envs, dtype=torch.float64) for t in spec.teams}

    def add(self, reward: torch.Tensor, done: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Add one step's ``reward [K, n_agents]``; return ``team -> [K]`` float32 episode
        returns where ``done [K]`` is true (NaN elsewhere) and restart those copies at 0."""
        out = {}
        for t, r in team_step_rewards(reward.to(torch.float64), self.spec).items():
            self.totals[t] += r
            out[t] = torch.where(done, self.totals[t], torch.full_like(r, float("nan"))).float()
            self.totals[t][done] = 0.0
        return out

    def reset(self) -> None:
        for v in self.totals.values():
            v.zero_()
