r"""What agent i's model holds for the other agents (the environment box of Figure 1), and the networks for it.

In eq. 2 agent i's model draws every other agent's action from that agent's policy, a_j ~ pi_j(. | o_j): agent i
reads pi_j (``Algorithm.others = "given"``). Agent i need not: with ``others = "inferred"`` (Lowe et al. 2017,
section 4.2) its model holds its own approximation rho_i^j(a_j | o_j) instead, fitted by maximum likelihood to
the actions a_j in the replay buffer, and everything agent i's losses read of the others comes from rho_i^j:

.. math::

    p_i(s_{t+1} \mid s_t, a_i^t) = \int p(s_{t+1} \mid s_t, a^t) \prod_{j \ne i} \rho_i^j(a_j^t \mid o_j^t)\,
        da_{-i}^t \qquad \text{(eq. 2 with } \rho_i^j \text{ for } \pi_j)

Since many egos are unrolled side by side (the ego plate of :func:`~pgm_marl.models.agent_mdp.agent_model`),
agent j's action site holds one value per ego, and ego e's row is distributed as *e's* model of j:
:class:`EgoViews` is the :class:`~pgm_marl.models.worlds.Policies` object whose ``params(j, s)`` has a row per
ego (``[..., n_ego, P]``): pi_j for the egos that read it (and for j's own row), rho_e^j for the others. The
model and the guide are unchanged; only the policies object they are given differs.

Networks (one stacked MLP each, :class:`~pgm_marl.networks.BatchedMLP`, created after the actors and critics so
that those keep their initialisation):

* :class:`OpponentNets` -- rho_e^j(a_j | o_j) for every (inferring ego e, other agent j);
* :class:`ImaginedNets` -- q_e(a_{-e} | o_e) = prod_j q_e^j(a_j | o_e) for every ego e with the optimistic guide
  (:mod:`pgm_marl.models.optimistic_guide`);
* :class:`ConditionalActors` -- pi_e(a_e | o_e, a_{-e}) for those egos, pi_e(a_e | o_e) for the others.

rho and q are distributions over agent j's actions in *ego e's* model or guide: their family is the stochastic
policy of j's action space (categorical; squashed Gaussian on a box) whatever policy j itself acts with
(:class:`ViewSpace` mixes the two families in one site when j's own policy is a deterministic box policy).
"""
from __future__ import annotations

from typing import Sequence

import torch
from pyro.distributions import TorchDistribution, constraints
from torch import nn

from ..networks import Actors, BatchedMLP, Sharing, observation_index
from .actions import PAD_LOGIT, ActionSpaces
from .distributions import Replayed

__all__ = ["OpponentNets", "ImaginedNets", "ConditionalActors", "EgoViews", "ViewSpace", "RowMix",
           "other_pairs"]


def other_pairs(egos: Sequence[int], n: int) -> list[tuple[int, int]]:
    """``(e, j)`` for every ego ``e`` in ``egos`` and every other agent ``j != e``, in that order."""
    return [(e, j) for e in egos for j in range(n) if j != e]


def _pad_to(x: torch.Tensor, width: int) -> torch.Tensor:
    return torch.nn.functional.pad(x, (0, width - x.shape[-1]), value=PAD_LOGIT) if x.shape[-1] < width else x


class OpponentNets(nn.Module):
    """rho_e^j(a_j | o_j) for each pair ``(e, j)`` of ``pairs``: network k reads the observation of its pair's j.

    ``forward(obs [n, *batch, max d]) -> [len(pairs), *batch, P_max]`` policy parameters of ``spaces`` (agent j's
    stochastic family), padded as the actors' are.
    """

    def __init__(self, obs_dims: Sequence[int], spaces: ActionSpaces, pairs, hidden: int = 128,
                 precision: str = "float32"):
        super().__init__()
        self.pairs = [tuple(p) for p in pairs]
        others = [j for _, j in self.pairs]
        self.net = BatchedMLP(len(self.pairs), max(obs_dims), max(spaces.param_dims), hidden,
                              fan_in=[obs_dims[j] for j in others], precision=precision)
        self.register_buffer("other", torch.tensor(others, dtype=torch.long), persistent=False)
        self.register_buffer("pad_mask", spaces.pad_mask[others].clone(), persistent=False)
        self.spaces = spaces

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.spaces.pad(self.net(obs.index_select(0, self.other)), self.pad_mask)


class ImaginedNets(nn.Module):
    """q_e^j(a_j | o_e) for each ego ``e`` of ``egos`` and every agent j: one network per ego, reading o_e.

    ``forward(obs [n, *batch, max d]) -> [len(egos), n, *batch, P_max]`` (row ``[r, j]``: ego ``egos[r]``'s
    imagined policy of agent j; the entry ``j = e`` is not used).
    """

    def __init__(self, obs_dims: Sequence[int], spaces: ActionSpaces, egos, hidden: int = 128,
                 precision: str = "float32"):
        super().__init__()
        self.egos, self.n, self.width = list(egos), len(spaces), max(spaces.param_dims)
        self.net = BatchedMLP(len(self.egos), max(obs_dims), self.n * self.width, hidden,
                              fan_in=[obs_dims[e] for e in self.egos], precision=precision)
        self.register_buffer("index", torch.tensor(self.egos, dtype=torch.long), persistent=False)
        self.register_buffer("pad_mask", spaces.pad_mask.clone(), persistent=False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.net(obs.index_select(0, self.index))  # [m, *batch, n * P]
        out = out.unflatten(-1, (self.n, self.width)).movedim(-2, 1)  # [m, n, *batch, P]
        mask = self.pad_mask.reshape(1, self.n, *([1] * (out.dim() - 3)), self.width)
        return out.masked_fill(mask, PAD_LOGIT)


class ConditionalActors(Actors):
    """pi_k(a_k | o_k, a_{-k}) for the agents with ``conditioned[k]``, pi_k(a_k | o_k) for the others.

    Agent k's network reads its observation followed by the site values of every other agent's action (one-hot,
    relaxed one-hot or box values) as agent k imagines them. ``observations`` / ``pad_obs`` are those of
    :class:`~pgm_marl.networks.Actors` (the observations alone); ``forward(obs, imagined)`` takes ``imagined``
    ``[n, *batch, sum size]``, row k the joint action agent k imagines (its own slot is not read), or None: no
    imagined actions, correct only for the agents that do not condition (what the losses of those agents use).
    """

    def __init__(self, obs_dims: Sequence[int], action_spaces, conditioned: Sequence[bool], hidden: int = 128,
                 precision: str = "float32", sharing: Sharing | None = None):
        spaces = ActionSpaces.coerce(action_spaces)
        sizes, total = spaces.sizes, sum(spaces.sizes)
        cond = [total - sizes[k] if c else 0 for k, c in enumerate(conditioned)]
        super().__init__([d + c for d, c in zip(obs_dims, cond)], spaces, hidden, precision, sharing)
        self.obs_dims, self.conditioned = tuple(obs_dims), tuple(bool(c) for c in conditioned)
        self.register_buffer("obs_index", observation_index(obs_dims), persistent=False)
        d_obs, width = max(obs_dims), max(d + c for d, c in zip(obs_dims, cond))
        offsets = [sum(sizes[:j]) for j in range(len(sizes))]
        index = torch.full((len(sizes), width), d_obs + total, dtype=torch.long)  # -> the zero column
        for k, (d, c) in enumerate(zip(obs_dims, cond)):
            slots = [d_obs + offsets[j] + m for j in range(len(sizes)) if j != k for m in range(sizes[j])] if c else []
            index[k, : d + c] = torch.tensor(list(range(d)) + slots, dtype=torch.long)
        self.register_buffer("input_index", index, persistent=False)
        self.total = total

    def forward(self, obs_padded: torch.Tensor, imagined: torch.Tensor | None = None) -> torch.Tensor:
        n, batch = obs_padded.shape[0], obs_padded.shape[1:-1]
        if imagined is None:
            imagined = obs_padded.new_zeros(n, *batch, self.total)
        x = torch.cat([obs_padded, imagined.to(obs_padded.dtype), obs_padded.new_zeros(n, *batch, 1)], -1)
        index = self.input_index.reshape(n, *([1] * len(batch)), -1).expand(n, *batch, -1)
        return super().forward(x.gather(-1, index))


class RowMix(TorchDistribution):
    """``first`` on the ego rows where ``use_first`` (``[n_ego]``), ``second`` elsewhere: one action site whose
    rows come from two policy families (agent j's own deterministic box policy and its stochastic model in the
    other egos' rows). A drawn box value keeps its pre-squash ``u`` (``_presquash``) for the rows that have one."""

    arg_constraints = {}
    support = constraints.real_vector

    def __init__(self, first, second, use_first: torch.Tensor, validate_args=None):
        self.first, self.second, self.use_first = first, second, use_first
        batch = torch.broadcast_shapes(first.batch_shape, second.batch_shape, use_first.shape)
        super().__init__(batch, second.event_shape, validate_args=False)

    @property
    def has_rsample(self):
        return self.first.has_rsample and self.second.has_rsample

    def expand(self, batch_shape, _instance=None):
        return RowMix(self.first.expand(batch_shape), self.second.expand(batch_shape), self.use_first)

    def _mix(self, a, b):
        out = torch.where(self.use_first[..., None], a, b)
        ua, ub = getattr(a, "_presquash", None), getattr(b, "_presquash", None)
        if ua is not None or ub is not None:
            out._presquash = torch.where(self.use_first[..., None], a if ua is None else ua, b if ub is None else ub)
        return out

    def rsample(self, sample_shape=torch.Size()):
        return self._mix(self.first.rsample(sample_shape), self.second.rsample(sample_shape))

    def sample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value):
        return torch.where(self.use_first, self.first.log_prob(value), self.second.log_prob(value))


class ViewSpace:
    """Agent j's action space as every ego's model and guide see it (the ``action_spaces[j]`` of :class:`EgoViews`).

    ``own``: j's own space (its policy family); ``model``: the stochastic family of rho / q; ``modelled``
    ``[n_ego]``: the ego rows holding a model of j rather than pi_j; ``recorded`` ``[n_ego]`` (optional): rows
    whose value the guide records from elsewhere (an optimistic agent's behaviour, whose density is a mixture:
    :mod:`pgm_marl.models.optimistic_guide`), given log-density 0 in the model, as in the guide (the two cancel,
    as MADDPG's buffer actions do, :class:`Replayed`). Params are
    ``[..., n_ego, max(P_own, P_model)]``. When both families coincide (discrete actions, a stochastic box policy)
    the sites are exactly ``own``'s.
    """

    def __init__(self, own, model, modelled: torch.Tensor, recorded: torch.Tensor | None = None):
        self.own, self.model, self.modelled, self.recorded = own, model, modelled, recorded
        self.same = not getattr(own, "deterministic", False)
        self.param_dim = own.param_dim if self.same else max(own.param_dim, model.param_dim)
        self.kind, self.size, self.log_prior = own.kind, own.size, own.log_prior

    def _record(self, d):
        if self.recorded is None or not bool(self.recorded.any()):
            return d
        return Replayed(d, torch.zeros(d.event_shape), self.recorded)

    def _sites(self, make, params):
        if self.same:
            return make(self.own, params[..., : self.own.param_dim])
        return RowMix(make(self.own, params[..., : self.own.param_dim]),
                      make(self.model, params[..., : self.model.param_dim]), ~self.modelled)

    def prior_site(self, params, is_ego, estimator, relax):
        return self._record(self._sites(lambda s, p: s.prior_site(p, is_ego, estimator, relax), params))

    def policy_site(self, params, estimator, relax, hard=None):
        return self._sites(lambda s, p: s.policy_site(p, estimator, relax, hard), params)


class EgoViews:
    """Eq. 2 with rho: :class:`~pgm_marl.models.worlds.Policies` as each ego's model holds them: ``params(j, s)``
    ``[..., n, P]``, row e agent j's policy parameters in ego e's model: pi_j (``others="given"``, and j's own row)
    or rho_e^j (``others="inferred"``). Every agent is an ego (the learner's batched step).

    ``actors``: the policy networks; ``opponents``: an :class:`OpponentNets` (or None); ``spaces`` / ``model``:
    the agents' :class:`~pgm_marl.models.actions.ActionSpaces` and the stochastic family of rho.
    One forward of each network per state tensor, cached.
    """

    def __init__(self, actors, opponents, spaces: ActionSpaces, model: ActionSpaces, recorded=None):
        self.actors, self.opponents, self.spaces, self.model = actors, opponents, spaces, model
        n = len(spaces)
        modelled = torch.zeros(n, n, dtype=torch.bool)  # [ego, j]
        for e, j in (opponents.pairs if opponents is not None else []):
            modelled[e, j] = True
        self.modelled = modelled
        self.width = max(max(spaces.param_dims), max(model.param_dims))
        recorded = torch.zeros(n, n, dtype=torch.bool) if recorded is None else recorded
        self.action_spaces = [ViewSpace(spaces[j], model[j], modelled[:, j], recorded[:, j]) for j in range(n)]
        self.need_pi = True  # (a subclass whose own rows come from elsewhere may skip pi where every ego models j)
        self._key, self._views = None, None

    def views(self, s: torch.Tensor) -> torch.Tensor:
        """``[n_ego, n, *batch(s), P]``: every ego's parameters of every agent's policy at state ``s``."""
        if self._key is not s:
            obs = self.actors.observations(s)
            n = len(self.spaces)
            pi = _pad_to(self.actors(obs), self.width) if self.need_pi else obs.new_zeros(n, *obs.shape[1:-1],
                                                                                          self.width)
            views = pi.unsqueeze(0).repeat(n, *([1] * pi.dim()))
            if self.opponents is not None:
                e, j = (torch.tensor(k, dtype=torch.long) for k in zip(*self.opponents.pairs))
                views = views.index_put((e, j), _pad_to(self.opponents(obs), self.width).detach())  # (fixed in
                # agent i's model: rho is trained by its own loss only)
            self._key, self._views = s, views
        return self._views

    def params(self, j: int, s: torch.Tensor) -> torch.Tensor:
        return ego_rows(self.views(s)[:, j])[..., : self.action_spaces[j].param_dim]


def ego_rows(per_ego: torch.Tensor) -> torch.Tensor:
    """``[n_ego, ..., E, P] -> [..., n_ego, P]``: ego e's row, where ``E`` (the ego dim of the state it was
    computed at) is 1 (a state shared by all egos) or ``n_ego`` (each ego's own state: the diagonal)."""
    if per_ego.shape[-2] == 1:
        return per_ego.squeeze(-2).movedim(0, -2)
    return torch.diagonal(per_ego, dim1=0, dim2=-2).movedim(-1, -2)
