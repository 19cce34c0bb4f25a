"""Worlds and policies that plug into :func:`agent_model` / :func:`policy_guide`.

A world is the game as agent i's model sees it; policies give every agent's action logits at a state.

* :class:`TabularWorld` -- a :class:`~pgm_marl.models.tabular.TabularMarkovGame` with exact, enumerable
  dynamics (the small world every estimator is checked against);
* :class:`SimulatorWorld` -- a PettingZoo parallel env (MPE): the dynamics are the simulator, a
  :class:`~pgm_marl.models.distributions.SimulatorStep` identical in model and guide;
* :class:`TabularPolicies` -- per-agent probability tables ``[S, A_j]`` (or trainable logits).
"""
from __future__ import annotations

import contextlib
from typing import Sequence

import pyro.distributions as dist
import torch

from .distributions import SimulatorStep

__all__ = ["TabularWorld", "SimulatorWorld", "TabularPolicies", "ego_gather"]


def ego_gather(values: torch.Tensor, egos: torch.Tensor) -> torch.Tensor:
    """Pick each ego's own entry: ``values[..., e, egos[e]]`` from per-agent values ``[..., n_ego, n]``."""
    index = egos.expand(values.shape[:-1]).unsqueeze(-1)
    return values.gather(-1, index).squeeze(-1)


class TabularWorld:
    """A tabular Markov game as a world: ``s`` is a LongTensor of state indices."""

    def __init__(self, game):
        self.game = game
        self.n_agents, self.horizon, self.action_sizes = game.n_agents, game.horizon, game.action_sizes

    def plate(self):
        return contextlib.nullcontext()

    def initial(self):
        return dist.Categorical(probs=self.game.initial)

    def log_likelihood(self, s, actions, egos, t=None):
        """``r_e(s, a)`` for each ego (eq. 3 before the temperature), multilinear in (relaxed) one-hot actions."""
        batch = torch.broadcast_shapes(s.shape, *(a.shape[:-1] for a in actions))
        return ego_gather(self.game.reward(s.expand(batch), [a.expand(batch + a.shape[-1:]) for a in actions]), egos)

    def transition(self, s, actions, t=None):
        batch = torch.broadcast_shapes(s.shape, *(a.shape[:-1] for a in actions))
        probs = self.game.transition_probs(s.expand(batch), [a.expand(batch + a.shape[-1:]) for a in actions])
        return dist.Categorical(probs=probs)


class TabularPolicies:
    """Per-agent policy tables. ``tables[j]`` is ``[S, A_j]``: probabilities, or logits when ``logits=True``.

    ``logits(j, s)`` indexes agent j's row at state(s) ``s``; gradients flow to the tables (``theta_j``).
    """

    def __init__(self, tables: Sequence[torch.Tensor], logits: bool = False):
        self.tables = list(tables)
        self.is_logits = logits
        self.n_agents = len(self.tables)
        self.action_sizes = tuple(t.shape[-1] for t in self.tables)

    def logits(self, j: int, s: torch.Tensor) -> torch.Tensor:
        table = self.tables[j] if self.is_logits else self.tables[j].log()
        return table[s]

    def probs(self) -> list[torch.Tensor]:
        return [t.softmax(-1) if self.is_logits else t for t in self.tables]


class SimulatorWorld:
    """A PettingZoo parallel env as agent i's world; states are concatenated observations (section 4.3).

    The simulator is stepped once per time step ``t``, the first time a site of that step is evaluated, and
    the result is cached, so model and guide see the same step (their dynamics factors cancel). ``rewards`` are
    the env's own (unshifted: the optimality factor is then unnormalized, which changes no gradient).
    Meant for tracing and drawing the model on a real task, with ``agent=i`` and no particle plate.
    """

    def __init__(self, env, agents: Sequence[str], horizon: int, seed: int | None = None):
        self.env, self.agents, self.horizon = env, list(agents), horizon
        self.n_agents = len(self.agents)
        obs, _ = env.reset(seed=seed)
        self._states = [self._state(obs)]
        self._rewards: list[torch.Tensor] = []
        self.action_sizes = tuple(env.action_space(a).n for a in self.agents)

    def _state(self, obs):
        return torch.cat([torch.as_tensor(obs[a], dtype=torch.float32) for a in self.agents])

    def _step(self, t, actions):
        while len(self._rewards) <= t:
            joint = {a: int(act.reshape(-1, act.shape[-1])[0].argmax()) for a, act in zip(self.agents, actions)}
            obs, rew, *_ = self.env.step(joint)
            self._rewards.append(torch.tensor([float(rew[a]) for a in self.agents]))
            self._states.append(self._state(obs))

    def plate(self):
        return contextlib.nullcontext()

    def initial(self):
        return SimulatorStep(self._states[0])

    def log_likelihood(self, s, actions, egos, t):
        self._step(t, actions)
        return ego_gather(self._rewards[t].expand(egos.shape + (self.n_agents,)), egos)

    def transition(self, s, actions, t):
        self._step(t, actions)
        return SimulatorStep(self._states[t + 1])
