"""Test harness for the opponent models (rho), the optimistic guide (q, pi_i(a_i | s, a_{-i})) on tabular games.

Tabular modules with the interfaces of :class:`~pgm_marl.models.opponents.OpponentNets`,
:class:`~pgm_marl.models.opponents.ImaginedNets` and :class:`~pgm_marl.models.opponents.ConditionalActors`, so
that the unchanged :class:`~pgm_marl.learner.Learner` trains them (as ``tabular_learning`` does for actors and
critics), and :class:`TabularOptimistic`, tables as the policies object of
:func:`~pgm_marl.models.optimistic_guide.optimistic_guide` on a :class:`~pgm_marl.models.worlds.TabularWorld`.
Every table is indexed by the one-hot state and contracted (multilinearly) with the one-hot or relaxed actions.
"""
from __future__ import annotations

import torch
from torch import nn

from pgm_marl.inference.others import OthersModels
from pgm_marl.inference.variants import parse_algo_spec
from pgm_marl.learner import Learner
from pgm_marl.models.actions import ActionSpaces, DiscreteActions
from pgm_marl.models.distributions import action_distribution
from pgm_marl.models.opponents import other_pairs
from tabular_learning import TabularActors, TabularCritics, collect, game_spec

__all__ = ["TabularOpponents", "TabularImagined", "TabularConditionalActors", "TabularOptimistic",
           "tabular_learner", "train", "contract_others"]


def contract_others(table: torch.Tensor, values, own: int, n: int) -> torch.Tensor:
    """``table [..., A_1, ..., A_n, P]`` minus agent ``own``'s axis (``[..., *A_{-own}, P]``) contracted with every
    other agent's (one-hot or relaxed) ``values[j]`` ``[..., A_j]``: ``[..., P]``."""
    for j in reversed([j for j in range(n) if j != own]):  # the last remaining action axis is j's
        y = values[j]
        rest = table.dim() - y.dim() - 1  # action axes left before j's
        table = (table * y.reshape(y.shape[:-1] + (1,) * rest + y.shape[-1:] + (1,))).sum(-2)
    return table


class TabularOpponents(nn.Module):
    """rho_e^j(a_j | s) tables ``[pairs, S, A_max]`` for ``pairs`` (e, j), initialised uniform."""

    def __init__(self, n_states: int, action_counts, pairs):
        super().__init__()
        self.pairs, self.spaces = [tuple(p) for p in pairs], ActionSpaces.coerce(action_counts)
        others = [j for _, j in self.pairs]
        self.register_buffer("mask", self.spaces.pad_mask[others].clone())
        self.logits = nn.Parameter(torch.zeros(len(self.pairs), n_states, max(action_counts)))

    def forward(self, obs):  # obs [n, *b, S] one-hot states
        other = torch.tensor([j for _, j in self.pairs])
        return self.spaces.pad(torch.einsum("k...s,ksa->k...a", obs[other], self.logits), self.mask)


class TabularImagined(nn.Module):
    """q_e^j(a_j | s) tables ``[m, n, S, A_max]`` for the egos ``egos``, initialised uniform."""

    def __init__(self, n_states: int, action_counts, egos):
        super().__init__()
        self.egos, self.spaces = list(egos), ActionSpaces.coerce(action_counts)
        self.logits = nn.Parameter(torch.zeros(len(self.egos), len(action_counts), n_states, max(action_counts)))

    def forward(self, obs):
        out = torch.einsum("m...s,mjsa->mj...a", obs[self.egos], self.logits)
        mask = self.spaces.pad_mask.reshape(1, len(self.spaces), *([1] * (out.dim() - 3)), -1)
        return out.masked_fill(mask, -1e4)


class TabularConditionalActors(TabularActors):
    """pi_k(a_k | s, a_{-k}) tables ``[S, *A_{-k}, A_max]`` per agent (``conditioned[k]``), else ``[S, A_max]``
    (the logits of :class:`TabularActors`), initialised uniform; ``forward(obs, imagined=None)`` as
    :class:`~pgm_marl.models.opponents.ConditionalActors`."""

    def __init__(self, n_states: int, action_counts, conditioned):
        super().__init__(n_states, action_counts)
        self.conditioned = list(conditioned)
        n, a_max = len(self.action_counts), max(self.action_counts)
        self.tables = nn.ParameterList(
            nn.Parameter(torch.zeros(n_states, *[d for j, d in enumerate(self.action_counts) if j != k], a_max))
            for k in range(n) if self.conditioned[k])

    def forward(self, obs, imagined=None):
        logits = list(torch.einsum("n...s,nsa->n...a", obs, self.logits))
        offsets = [sum(self.action_counts[:j]) for j in range(len(self.action_counts))]
        for t, k in enumerate(k for k in range(len(self.action_counts)) if self.conditioned[k]):
            if imagined is None:
                continue
            values = [imagined[k][..., o: o + d] for o, d in zip(offsets, self.action_counts)]
            table = torch.tensordot(obs[k], self.tables[t], dims=([-1], [0]))  # [..., *A_{-k}, A_max]
            logits[k] = contract_others(table, values, k, len(self.action_counts))
        return self.spaces.pad(torch.stack(logits))

    def conditional(self, k: int) -> torch.Tensor:
        """pi_k(a_k | s, a_{-k}) as an ``[S, A_1, ..., A_n]`` table (the format of ``exact_optimistic_elbo``)."""
        t = self.tables[[j for j in range(len(self.action_counts)) if self.conditioned[j]].index(k)]
        t = t[..., : self.action_counts[k]].detach().softmax(-1)  # [S, *A_{-k}, A_k]
        return t.movedim(-1, 1 + k)


def tabular_learner(game, cfg, algorithms=None) -> Learner:
    """A :class:`Learner` of ``cfg.algo`` on ``game`` with tabular actors, critics and, as the algorithms declare,
    tabular opponent models and imagined-action models and conditional actors."""
    spec = game_spec(game)
    algorithms = list(algorithms or parse_algo_spec(cfg.algo, spec.teams, spec.agents))
    S, dims, n = game.n_states, game.action_sizes, game.n_agents
    conditioned = [a.guide == "optimistic" for a in algorithms]
    inferring = [e for e, a in enumerate(algorithms) if a.others == "inferred"]
    actors = TabularConditionalActors(S, dims, conditioned) if any(conditioned) else TabularActors(S, dims)
    others = None
    if inferring or any(conditioned):
        spaces = ActionSpaces.coerce(dims)
        others = OthersModels(spec, spaces, algorithms,
                              opponents=TabularOpponents(S, dims, other_pairs(inferring, n)) if inferring else None,
                              imagined=TabularImagined(S, dims, [e for e in range(n) if conditioned[e]])
                              if any(conditioned) else None)
    return Learner(spec, cfg, actors, TabularCritics(S, dims), algorithms=algorithms, others=others)


def train(learner, game, steps: int, batch_size: int = 256, seed: int = 0) -> Learner:
    """``steps`` :meth:`Learner.update` on fresh batches (:func:`tabular_learning.collect`)."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        learner.update(collect(game, learner, batch_size, generator))
    return learner


class TabularOptimistic:
    """Tables as the policies object of :func:`~pgm_marl.models.optimistic_guide.optimistic_guide` on a
    :class:`~pgm_marl.models.worlds.TabularWorld`: the model's ``pi_j`` ``[S, A_j]``, each ego e's imagined
    ``q_e^j`` ``[S, A_j]`` (``imagined[e][j]``) and ``pi_e(a_e | s, a_{-e})`` ``[S, A_1, ..., A_n]``
    (``conditional[e]``, normalized along e's axis). Probabilities, or logits with ``logits=True``."""

    def __init__(self, model, imagined, conditional):
        self.model, self.imagined, self.conditional = model, imagined, conditional
        self.action_spaces = [DiscreteActions(t.shape[-1]) for t in model]

    def params(self, j, s):
        return self.model[j].log()[s]

    def imagine(self, j, s, egos, estimator, relax, hard_others, shape):
        rows = [(self.imagined[e][j] if e != j else self.model[j]).log()[_row(s, k)]
                for k, e in enumerate(egos.tolist())]
        d = action_distribution(torch.stack(rows, -2), estimator, relax)
        drawn = d.expand(shape)
        return d, drawn.rsample() if drawn.has_rsample else drawn.sample()

    def own_sites(self, s, values, egos, estimator, relax):
        n, out = len(self.model), []
        for j in range(n):
            rows = (egos == j).nonzero()
            if len(rows) == 0:  # not an ego: its own site is never used
                out.append(action_distribution(self.model[j].log()[s], estimator, relax))
                continue
            k = int(rows[0])
            table = self.conditional[j].log().movedim(1 + j, -1)[_row(s, k)]  # [..., *A_{-j}, A_j]
            logits = contract_others(table, [v[..., k, :] for v in values], j, n)
            out.append(action_distribution(logits.unsqueeze(-2), estimator, relax))
        return out


def _row(s: torch.Tensor, k: int) -> torch.Tensor:
    """Ego row ``k`` of states ``s`` ``[..., 1 or n_ego]`` (a state shared by the egos, or one per ego)."""
    return s[..., k if s.shape[-1] > 1 else 0]
