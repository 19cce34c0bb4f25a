"""Worlds and policies that plug into :func:`agent_model` / :func:`policy_guide`: the two protocols, and every world.

A world is the game as agent i's model sees it (:class:`World`); policies give every agent's policy parameters
at a state and its action space (:class:`Policies`).

* :class:`TabularWorld` -- a :class:`~pgm_marl.models.tabular.TabularMarkovGame` with exact, enumerable
  dynamics (the small world every estimator is checked against);
* :class:`SimulatorWorld` -- a PettingZoo parallel env (MPE): the dynamics are the simulator, a
  :class:`~pgm_marl.models.distributions.SimulatorStep` identical in model and guide;
* :class:`CriticWorld` -- replay-buffer states, one step, a critic standing in for the future (the actor step
  of MA-SAC, eq. 9);
* :class:`EpisodeWorld` -- recorded on-policy episodes (reinforce-elbo);
* :class:`TabularPolicies` -- per-agent probability tables ``[S, A_j]`` (or trainable logits).
"""
from __future__ import annotations

import contextlib
from typing import ContextManager, Protocol, Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine

from .actions import ActionSpace, DiscreteActions
from .distributions import Recorded, Replayed, SimulatorStep

__all__ = ["World", "Policies", "TabularWorld", "SimulatorWorld", "CriticWorld", "EpisodeWorld",
           "TabularPolicies", "ego_gather"]


class World(Protocol):
    """The game as agent i's model and guide see it. ``s`` is whatever ``initial`` / ``transition`` return;
    ``actions`` is the list of every agent's site values at step ``t``; ``egos`` the ego indices ``[n_ego]``."""

    n_agents: int
    horizon: int  #: decision steps
    black_box: bool  #: dynamics opaque to provenance tracking (a simulator): graphs test edges into actions only

    def plate(self) -> ContextManager:
        """The data plate (dim -2) of batched worlds, or a null context."""

    def initial(self) -> dist.Distribution:
        """``p(s_0)``."""

    def replayed(self, j: int, d: dist.Distribution, is_ego: torch.Tensor, t: int) -> dist.Distribution:
        """Agent j's action site at step t: ``d``, or ``d`` pinned to recorded data (``is_ego``: ``[n_ego, 1]``)."""

    def log_likelihood(self, s, actions: Sequence[torch.Tensor], egos: torch.Tensor, t: int) -> torch.Tensor:
        """``log p(o_e = 1 | s, a)`` before the temperature: ``r_e(s, a)`` (or ``Q_e``) per ego, ``[..., n_ego]``."""

    def transition(self, s, actions: Sequence[torch.Tensor], t: int) -> dist.Distribution:
        """``p(s_{t+1} | s_t, a_t)``."""


class Policies(Protocol):
    """Every agent's policy: its parameters at a state (``[..., param_dim]``) and its action space."""

    action_spaces: Sequence[ActionSpace]

    def params(self, j: int, s: torch.Tensor) -> torch.Tensor: ...


def ego_gather(values: torch.Tensor, egos: torch.Tensor) -> torch.Tensor:
    """Pick each ego's own entry: ``values[..., e, egos[e]]`` from per-agent values ``[..., n_ego, n]``."""
    index = egos.expand(values.shape[:-1]).unsqueeze(-1)
    return values.gather(-1, index).squeeze(-1)


class TabularWorld:
    """A tabular Markov game as a world: ``s`` is a LongTensor of state indices."""

    black_box = False

    def __init__(self, game):
        self.game = game
        self.n_agents, self.horizon, self.action_sizes = game.n_agents, game.horizon, game.action_sizes

    def plate(self):
        return contextlib.nullcontext()

    def initial(self):
        return dist.Categorical(probs=self.game.initial)

    def replayed(self, j, d, is_ego, t):
        return d

    def log_likelihood(self, s, actions, egos, t):
        """``r_e(s, a)`` for each ego (eq. 3 before the temperature), multilinear in (relaxed) one-hot actions."""
        batch = torch.broadcast_shapes(s.shape, *(a.shape[:-1] for a in actions))
        return ego_gather(self.game.reward(s.expand(batch), [a.expand(batch + a.shape[-1:]) for a in actions]), egos)

    def transition(self, s, actions, t):
        batch = torch.broadcast_shapes(s.shape, *(a.shape[:-1] for a in actions))
        probs = self.game.transition_probs(s.expand(batch), [a.expand(batch + a.shape[-1:]) for a in actions])
        return dist.Categorical(probs=probs)


class TabularPolicies:
    """Per-agent policy tables. ``tables[j]`` is ``[S, A_j]``: probabilities, or logits when ``logits=True``.

    ``params(j, s)`` (logits) indexes agent j's row at state(s) ``s``; gradients flow to the tables (``theta_j``).
    """

    def __init__(self, tables: Sequence[torch.Tensor], logits: bool = False):
        self.tables = list(tables)
        self.is_logits = logits
        self.n_agents = len(self.tables)
        self.action_sizes = tuple(t.shape[-1] for t in self.tables)
        self.action_spaces = [DiscreteActions(a) for a in self.action_sizes]

    def params(self, j: int, s: torch.Tensor) -> torch.Tensor:
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
    ``action_spaces`` are the env's (what policies for it must use).
    """

    black_box = True

    def __init__(self, env, agents: Sequence[str], horizon: int, seed: int | None = None):
        from ..envs.tasks import ActionSpec
        from .actions import ActionSpaces

        self.env, self.agents, self.horizon = env, list(agents), horizon
        self.n_agents = len(self.agents)
        obs, _ = env.reset(seed=seed)
        self._states = [self._state(obs)]
        self._rewards: list[torch.Tensor] = []
        self.action_spaces = ActionSpaces.from_specs([ActionSpec.from_space(env.action_space(a)) for a in self.agents])
        self.action_sizes = self.action_spaces.param_dims

    def _state(self, obs):
        return torch.cat([torch.as_tensor(obs[a], dtype=torch.float32) for a in self.agents])

    def _step(self, t, actions):
        while len(self._rewards) <= t:
            joint = {}
            for a, space, act in zip(self.agents, self.action_spaces, actions):  # the first particle's action
                env_action = space.decode(act.reshape(-1, act.shape[-1])[0]).detach()
                joint[a] = env_action.item() if env_action.dim() == 0 else env_action.numpy()
            obs, rew, *_ = self.env.step(joint)
            self._rewards.append(torch.tensor([float(rew[a]) for a in self.agents]))
            self._states.append(self._state(obs))

    def plate(self):
        return contextlib.nullcontext()

    def initial(self):
        return SimulatorStep(self._states[0])

    def replayed(self, j, d, is_ego, t):
        return d

    def log_likelihood(self, s, actions, egos, t):
        self._step(t, actions)
        return ego_gather(self._rewards[t].expand(egos.shape + (self.n_agents,)), egos)

    def transition(self, s, actions, t):
        self._step(t, actions)
        return SimulatorStep(self._states[t + 1])


class CriticWorld:
    """One-step world for the actor: ``s`` ~ replay buffer, ``log p(o_i = 1 | s, a) = Q_i(s, a)`` (min of twins).

    ``resample_all[i]`` says whether agent i's step resamples the other agents' actions (eq. 9) or takes them
    from the buffer (MADDPG). ``buffer_actions``: each agent's buffer action as a site value ``[B, size_j]``.
    The batch plate is scaled by ``1/B`` so that sums over it are means.
    """

    horizon, black_box = 1, False

    def __init__(self, critic, state, buffer_actions, resample_all):
        self.critic, self.state = critic, state
        self.buffer_actions = buffer_actions
        self.n_agents = len(buffer_actions)
        self.resample_all = torch.as_tensor(resample_all, dtype=torch.bool)

    @contextlib.contextmanager
    def plate(self):
        batch = self.state.shape[0]
        with poutine.scale(scale=1.0 / batch), pyro.plate("batch", batch, dim=-2):
            yield

    def initial(self):
        # the buffer's states: a point mass of log-density 0 in model and guide alike (pyro's Delta would compare
        # all B x D floats, twice a step, to find log 1 = 0)
        return SimulatorStep(self.state.unsqueeze(-2))

    def replayed(self, j, d, is_ego, t):
        keep = ~(self.resample_all.unsqueeze(-1) | is_ego)  # [n_ego, 1]: egos that read a_j from the buffer
        if not keep.any():
            return d
        return Replayed(d, self.buffer_actions[j].unsqueeze(-2), keep.squeeze(-1))

    def log_likelihood(self, s, actions, egos, t):
        if len(egos) != self.n_agents:
            raise ValueError(f"CriticWorld needs every agent as an ego; got egos {egos.tolist()}")
        joint = torch.cat(actions, -1).movedim(-2, 0)  # [n_ego, B, sum size]: ego e's joint action sample
        return self.critic.min(self.state, joint).movedim(0, -1)  # [B, n_ego]

    def transition(self, s, actions, t):  # horizon 1: the critic already accounts for the future
        raise RuntimeError("CriticWorld has horizon 1")


class EpisodeWorld:
    """K recorded episodes of a simulator as agent i's world (states, actions, rewards per step).

    ``states [T+1, K, D]``, ``actions`` list of site values ``[T, K, size_j]``, ``rewards [T, K, n]``. The
    dynamics are :class:`SimulatorStep` point masses at the recorded next states (identical in model and guide).
    """

    black_box = True

    def __init__(self, states, actions, rewards):
        self.states, self.actions, self.rewards = states, actions, rewards
        self.horizon, self.n_agents = rewards.shape[0], rewards.shape[-1]

    @contextlib.contextmanager
    def plate(self):
        with pyro.plate("batch", self.states.shape[1], dim=-2):
            yield

    def initial(self):
        return SimulatorStep(self.states[0].unsqueeze(-2))

    def replayed(self, j, d, is_ego, t):
        return Recorded(d, self.actions[j][t].unsqueeze(-2))

    def log_likelihood(self, s, actions, egos, t):
        return self.rewards[t][:, egos]  # [K, n_ego]

    def transition(self, s, actions, t):
        return SimulatorStep(self.states[t + 1].unsqueeze(-2))
