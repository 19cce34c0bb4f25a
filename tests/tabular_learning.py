"""Test harness: MA-SAC's own update code on a :class:`TabularMarkovGame`, checked against exact answers.

It lives with the tests (tests/test_tabular_masac.py), not in the package: training never uses it, and the
exact answers it is compared with (:mod:`pgm_marl.inference.exact`) do not depend on it.

:class:`TabularActors` / :class:`TabularCritics` have the interface of the MLP
:class:`~pgm_marl.networks.Actors` / :class:`~pgm_marl.networks.TwinCritics`, so the unchanged
:class:`~pgm_marl.learner.Learner` trains them; the result is compared with the exact quantities of
:mod:`pgm_marl.inference.exact` (``exact_soft_q``, ``soft_best_response``).

* The global state is the one-hot state vector ``[*batch, S]``; every agent observes all of it.
* ``Q_i(s, y)`` is the multilinear extension of a table in the (possibly relaxed) one-hot actions
  ``y_j``: the table entry for one-hot actions, ``E_{a ~ y}[Q_i(s, a)]`` for simplex points.
* Data: each step draws a fresh batch (no replay buffer) with ``s`` uniform over the states (every state
  is covered), ``a ~`` the current policies and ``s' ~ p(. | s, a)``. A one-step game (``horizon == 1``)
  terminates (target ``r``); otherwise the game is treated as continuing and discounted (``horizon`` and
  the initial distribution are not used: rewards and dynamics do not depend on ``t``).
"""
from __future__ import annotations

import itertools

import torch
from torch import nn

from pgm_marl.envs.tasks import ActionSpec, TaskSpec
from pgm_marl.learner import Learner
from pgm_marl.models.actions import ActionSpaces
from pgm_marl.replay import Batch

__all__ = ["TabularActors", "TabularCritics", "game_spec", "collect", "train_tabular", "learned_policies",
           "critic_q_tables"]


class TabularActors(nn.Module):
    """Logit tables ``[n, S, A_max]`` (padded by the action spaces), initialised uniform (zeros)."""

    def __init__(self, n_states: int, action_counts):
        super().__init__()
        self.n_states, self.action_counts = int(n_states), tuple(int(a) for a in action_counts)
        self.spaces = ActionSpaces.coerce(self.action_counts)
        n, a_max = len(self.action_counts), max(self.action_counts)
        self.obs_dims = (self.n_states,) * n
        self.logits = nn.Parameter(self.spaces.pad(torch.zeros(n, self.n_states, a_max)))

    def observations(self, state: torch.Tensor) -> torch.Tensor:
        """One-hot ``state [*batch, S] -> [n, *batch, S]`` (full observability)."""
        return state.expand(len(self.action_counts), *state.shape)

    def pad_obs(self, obs) -> torch.Tensor:
        """Per-agent observation list ``[K, S]`` -> ``[n, K, S]``."""
        return torch.stack([o.float() for o in obs])

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Logits ``[n, *batch, A_max]``: the table row of each (relaxed) one-hot observation."""
        return self.spaces.pad(torch.einsum("n...s,nsa->n...a", obs, self.logits))

    def policies(self) -> list[torch.Tensor]:
        """``pi_j(. | s)`` as ``[S, A_j]`` tables (detached), the format of :mod:`pgm_marl.inference.exact`."""
        return [self.logits[j, :, :d].detach().softmax(-1) for j, d in enumerate(self.action_counts)]


class TabularCritics(nn.Module):
    """Twin tables ``[2, n, S, A_1, ..., A_n]``; ``Q(s, y) = sum_a table[s, a] prod_j y_j[a_j]``.

    ``init`` is the constant initial value; not exactly 0, where the gradient of
    :meth:`~pgm_marl.models.distributions.Optimality.log_prob` is NaN (``log(-expm1(0))`` in the unused branch).
    """

    def __init__(self, n_states: int, action_counts, init: float = -1e-3):
        super().__init__()
        self.n_states, self.action_counts = int(n_states), tuple(int(a) for a in action_counts)
        self.n = len(self.action_counts)
        self.table = nn.Parameter(torch.full((2, self.n, self.n_states, *self.action_counts), float(init)))

    def forward(self, state: torch.Tensor, joint_actions: torch.Tensor):
        """``state [*batch, S]`` (broadcast to the actions' batch), ``joint_actions [n, *batch, sum A]``.

        Returns ``(q1, q2)``, each ``[n, *batch]``.
        """
        batch = joint_actions.shape[1:-1]
        s = state.expand(batch + state.shape[-1:]).reshape(-1, self.n_states)  # [M, S]
        y = joint_actions.reshape(self.n, -1, joint_actions.shape[-1])  # [n, M, sum A]
        q = torch.einsum("cns...,ms->cnm...", self.table, s)  # [2, n, M, A_1, ..., A_n]
        off = 0
        for d in self.action_counts:  # contract the leading remaining action axis with y_j
            q = torch.einsum("cnma...,nma->cnm...", q, y[..., off: off + d])
            off += d
        return q[0].reshape(self.n, *batch), q[1].reshape(self.n, *batch)

    def min(self, state, joint_actions) -> torch.Tensor:
        return torch.minimum(*self(state, joint_actions))


def game_spec(game) -> TaskSpec:
    """TaskSpec of a tabular game: agents ``agent_0..``, one team, each observing the one-hot state."""
    agents = tuple(f"agent_{i}" for i in range(game.n_agents))
    return TaskSpec(name="tabular", agents=agents, obs_dims=(game.n_states,) * game.n_agents,
                    action_spaces=tuple(ActionSpec("discrete", n=a) for a in game.action_sizes),
                    teams={"all": agents}, max_cycles=game.horizon)


def collect(game, learner_or_policies, batch_size: int, generator: torch.Generator) -> Batch:
    """``batch_size`` transitions: ``s`` uniform, ``a`` from ``learner.act`` (or from ``[S, A_j]`` policy
    tables, sampled with ``generator``), ``s' ~ p(. | s, a)``, ``r = rewards[:, s, a]``; terminated = 1
    for a one-step game (``horizon == 1``), else 0 (continuing discounted game). States are one-hot."""
    S, n = game.n_states, game.n_agents
    s = torch.randint(S, (batch_size,), generator=generator)
    state = nn.functional.one_hot(s, S).float()
    if hasattr(learner_or_policies, "act"):
        actions = torch.stack(learner_or_policies.act([state] * n), -1)
    else:  # the tables' rows as logits, drawn by the action spaces (Gumbel-max)
        spaces = ActionSpaces.coerce([pi.shape[-1] for pi in learner_or_policies])
        width = max(spaces.param_dims)
        logits = torch.stack([nn.functional.pad(pi[s].float().log(), (0, width - pi.shape[-1]))
                              for pi in learner_or_policies])
        actions = spaces.store(spaces.act(spaces.pad(logits), generator=generator))
    idx = (s,) + tuple(actions.T)
    reward = game.rewards[(slice(None),) + idx].T.float()  # [B, n]
    s_next = torch.multinomial(game.transition[idx].float(), 1, generator=generator)[:, 0]
    terminated = torch.full((batch_size,), float(game.horizon == 1))
    return Batch(state, actions, reward, nn.functional.one_hot(s_next, S).float(), terminated)


def train_tabular(game, cfg, steps: int, batch_size: int = 256, seed: int = 0, critic_only_steps: int = 0,
                  final_lr: float | None = None) -> Learner:
    """Train tabular actors/critics with :meth:`Learner.update` on fresh batches (:func:`collect`).

    The last ``critic_only_steps`` of the ``steps`` set the actor's Adam learning rate to 0 (same update
    code, frozen policy): the critic and the Polyak target actors then settle on the final policy.
    ``final_lr`` (if given) replaces the critic's learning rate in that phase (less Adam noise).
    """
    learner = Learner(game_spec(game), cfg, TabularActors(game.n_states, game.action_sizes),
                      TabularCritics(game.n_states, game.action_sizes))
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        if step == steps - critic_only_steps:
            for group in learner.optimizers["loss/actor"].param_groups:
                group["lr"] = 0.0
            if final_lr is not None:
                for group in learner.optimizers["loss/critic"].param_groups:
                    group["lr"] = final_lr
        learner.update(collect(game, learner, batch_size, generator))
    return learner


def learned_policies(learner) -> list[torch.Tensor]:
    """The learner's current policies as ``[S, A_j]`` tables."""
    return learner.actors.policies()


@torch.no_grad()
def critic_q_tables(learner) -> torch.Tensor:
    """``min`` twin ``Q_i(s, a)`` at one-hot actions for every ``(s, a)``, through ``critic.min``:
    ``[n, S, A_1, ..., A_n]`` (the layout of :func:`~pgm_marl.inference.exact.exact_soft_q` per agent)."""
    critic = learner.critic
    S, dims = critic.n_states, critic.action_counts
    spaces = ActionSpaces.coerce(dims)
    cells = list(itertools.product(range(S), *[range(d) for d in dims]))
    idx = torch.tensor(cells)  # [M, 1 + n]
    state = nn.functional.one_hot(idx[:, 0], S).float()
    joint = torch.cat(spaces.encode(idx[:, 1:]), -1)
    q = critic.min(state, joint.expand(len(dims), *joint.shape))  # [n, M]
    return q.reshape(len(dims), S, *dims)
