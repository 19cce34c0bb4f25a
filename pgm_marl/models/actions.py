r"""Action spaces: every decision that depends on what an action is, in one object per agent.

The derivation (eq. 2-9) never assumes discrete actions; only these objects know what an action is. Each
owns, for one agent:

* the model's action site (:meth:`~ActionSpace.prior_site`): the uniform prior :math:`p(a_i)` of eq. 5 for
  the ego, :math:`\pi_j` (fixed) for the others; the prior's log-density :attr:`~ActionSpace.log_prior` is
  the constant :math:`-\log|\mathbb A_i|` (the number of actions, or the box's volume);
* the guide's policy site (:meth:`~ActionSpace.policy_site`): relaxed (pathwise), hard (exact draws for the
  other agents of ELBO_i) or score-function;
* exact draws with their log-density (:meth:`~ActionSpace.sample`: the critic target's a', the exact
  estimator's a_{-i}), acting (:meth:`~ActionSpace.act`, with the evaluation mode of section 5.3), entropy;
* the encoding of a stored action as the site value the critic reads (:meth:`~ActionSpace.encode`) and back
  (:meth:`~ActionSpace.decode`), and enumeration where it exists (the exact estimator).

:class:`ActionSpaces` holds all agents' spaces: padding of network outputs across agents of different sizes,
the buffer format of a joint action, and batched acting.

Implementations: :class:`DiscreteActions` (Gumbel-softmax relaxation, section 5.2) and :class:`BoxActions` (a
tanh-squashed Gaussian, Haarnoja et al. 2018a, appendix C; or a deterministic policy for MADDPG).
"""
from __future__ import annotations

import math
from typing import Protocol, Sequence

import torch
from pyro.distributions import TorchDistribution

from .continuous import BoxUniform, EgoPrior, PointMass, SquashedGaussian
from .distributions import PartlyHard, action_distribution, gumbel, log_normalize

__all__ = ["ActionSpace", "DiscreteActions", "BoxActions", "ActionSpaces", "PAD_LOGIT", "gumbel"]

#: value of padded network outputs (discrete logits of actions an agent does not have: probability 0)
PAD_LOGIT = -1e4
#: bounds of the squashed Gaussian's log standard deviation (reached softly, through tanh; as CleanRL's SAC)
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class ActionSpace(Protocol):
    """One agent's action space (see the module docstring). ``params``: the policy network's output ``[..., P]``."""

    kind: str  #: "discrete" or "box"
    param_dim: int  #: P, the width of the policy's parameters (logits; mean and log std)
    size: int  #: width of the site value: one-hot (or relaxed) vector, or the box action; the critic's input
    stored_width: int  #: columns of a replay-buffer row (1: the action index; d: the box action)
    enumerable: bool  #: finite: :meth:`enumerate` exists (the exact estimator needs it)
    log_prior: float  #: log-density of the uniform prior, a constant

    def prior_site(self, params, is_ego, estimator: str, relax: float) -> TorchDistribution: ...

    def policy_site(self, params, estimator: str, relax: float, hard=None) -> TorchDistribution:
        """pi(. | params) as a site; where ``hard`` (``[n_ego]``, rows of the ego plate) its draws are exact and
        neither they nor their log-densities carry a gradient (the others' actions in agent i's guide)."""

    def sample(self, params, generator=None) -> tuple[torch.Tensor, torch.Tensor]: ...

    def act(self, params, deterministic: bool, generator=None) -> torch.Tensor: ...

    def entropy(self, params) -> torch.Tensor: ...

    def target_entropy(self, fraction: float) -> float: ...

    def encode(self, stored) -> torch.Tensor: ...

    def decode(self, value) -> torch.Tensor: ...

    def enumerate(self) -> torch.Tensor: ...


def constant_rows(params: torch.Tensor, hard: torch.Tensor | None) -> torch.Tensor:
    """``params`` without gradient in the rows ``hard`` (``[n_ego]``, the ego plate; None: all rows live): what
    :meth:`ActionSpace.policy_site` promises for them, done by hand where the draw itself has no cheaper way."""
    return params if hard is None else torch.where(hard.unsqueeze(-1), params.detach(), params)


class DiscreteActions:
    """``n`` actions; the site value is a one-hot vector, relaxed on the simplex for the pathwise gradient."""

    kind, enumerable, stored_width = "discrete", True, 1

    def __init__(self, n: int):
        self.n = self.param_dim = self.size = int(n)
        self.log_prior = -math.log(self.n)

    def __repr__(self) -> str:
        return f"Discrete({self.n})"

    def prior_site(self, params, is_ego, estimator, relax):
        """Uniform prior (log-probabilities ``-log n``) where ``is_ego`` (``[n_ego, 1]``), the fixed policy
        elsewhere; normalised before they are broadcast over the egos (one row per agent, not one per ego)."""
        log_pi = log_normalize(params)
        return action_distribution(torch.where(is_ego, self.log_prior, log_pi), estimator, relax, normalized=True)

    def policy_site(self, params, estimator, relax, hard=None):
        """Gumbel-softmax (``"reparam"``; exact Gumbel-max draws where ``hard``, :class:`PartlyHard`) or one-hot
        categorical."""
        if hard is not None and estimator == "reparam":
            return PartlyHard(action_distribution(params, estimator, relax), hard)
        return action_distribution(constant_rows(params, hard), estimator, relax)

    def draw(self, params, generator=None) -> torch.Tensor:
        """Gumbel-max: an exact draw of the action index (the argmax of the relaxed sample's noise)."""
        return (params + gumbel(params.shape, params, generator)).argmax(-1)

    def sample(self, params, generator=None):
        """Exact one-hot draw and its log-probability (same noise and order as the relaxed sample)."""
        log_pi = log_normalize(params)
        index = self.draw(log_pi, generator)
        return torch.nn.functional.one_hot(index, self.n).to(params.dtype), log_pi.gather(-1, index[..., None])[..., 0]

    def act(self, params, deterministic, generator=None):
        """Environment action ``[K]`` (int64): a draw from pi, or its most probable action (section 5.3)."""
        return params.argmax(-1) if deterministic else self.draw(params, generator)

    def entropy(self, params):
        log_pi = params.log_softmax(-1)
        return -(log_pi.exp() * log_pi).sum(-1)

    def target_entropy(self, fraction):
        """``fraction`` of the uniform policy's entropy ``log n``."""
        return fraction * math.log(self.n)

    def encode(self, stored):
        """Stored index ``[...]`` (or ``[..., 1]`` as float) -> one-hot ``[..., n]`` (float)."""
        index = stored.long()
        return torch.nn.functional.one_hot(index[..., 0] if stored.is_floating_point() else index, self.n).float()

    def decode(self, value):
        return value.argmax(-1)

    def enumerate(self):
        """Every action as a one-hot row, ``[n, n]``."""
        return torch.eye(self.n)


class BoxActions:
    r"""A box ``[low, high]^d``: ``a = c + h \tanh(u)``, ``u ~ N(mean, std^2)``; ``c, h``: center, half-width.

    The policy's parameters are ``[mean, raw log std]`` (``2d``); its log-density includes the change of
    variables of the squashing, ``-\sum_k \log(h_k (1 - \tanh^2 u_k))``
    (:class:`~pgm_marl.models.distributions.SquashedGaussian`), so that the prior stays the constant
    ``-\log|box|``. ``deterministic`` (MADDPG, temperature 0): the policy is the point mass at
    ``c + h \tanh(mean)`` (parameters ``[mean]``, ``d``), and acting adds Gaussian noise of standard deviation
    ``exploration`` times the half-width, clipped to the box.
    """

    kind, enumerable = "box", False

    def __init__(self, low, high, deterministic: bool = False, exploration: float = 0.1):
        low = torch.as_tensor(low, dtype=torch.float32).reshape(-1)
        high = torch.as_tensor(high, dtype=torch.float32).reshape(-1)
        if low.shape != high.shape or not bool(torch.isfinite(low).all() and torch.isfinite(high).all()) \
                or not bool((high > low).all()):
            raise ValueError(f"Box(low={low.tolist()}, high={high.tolist()}): the uniform prior of eq. 5 needs a "
                             "bounded box; accepted: finite low < high")
        self.low, self.high = low, high
        self.center, self.half = (high + low) / 2, (high - low) / 2
        self.dim = self.size = self.stored_width = low.numel()
        self.deterministic, self.exploration = bool(deterministic), float(exploration)
        self.param_dim = self.dim if deterministic else 2 * self.dim
        self.log_prior = -float((high - low).log().sum())

    def __repr__(self) -> str:
        return f"Box(d={self.dim}{', deterministic' if self.deterministic else ''})"

    def make_params(self, mean: torch.Tensor, log_std: torch.Tensor | None = None) -> torch.Tensor:
        """Policy parameters giving the pre-squash ``mean`` and ``log_std`` (inverse of the soft bounds)."""
        if self.deterministic:
            return mean
        z = 2 * (log_std - LOG_STD_MIN) / (LOG_STD_MAX - LOG_STD_MIN) - 1
        return torch.cat([mean, torch.atanh(z)], -1)

    def _gaussian(self, params, reparameterized: bool = True) -> SquashedGaussian:
        mean, raw = params[..., : self.dim], params[..., self.dim: 2 * self.dim]
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(raw) + 1)
        return SquashedGaussian(mean, log_std, self.center, self.half, reparameterized)

    def mode(self, params):
        """The deterministic action: ``c + h tanh(mean)`` (evaluation, section 5.3; MADDPG's policy)."""
        return self.center + self.half * torch.tanh(params[..., : self.dim])

    def prior_site(self, params, is_ego, estimator, relax):
        """Uniform on the box where ``is_ego``, the fixed policy elsewhere."""
        prior = BoxUniform(self.low, self.high, params.shape[:-1])
        return EgoPrior(prior, self.policy_site(params, estimator, relax), is_ego[..., 0])

    def policy_site(self, params, estimator, relax, hard=None):
        """Squashed Gaussian (pathwise for ``"reparam"``, score function for ``"score"``; every draw is exact,
        so ``relax`` changes nothing and ``hard`` only makes its rows constants), or the point mass of a
        deterministic policy."""
        params = constant_rows(params, hard)
        if self.deterministic:
            if estimator != "reparam":
                raise ValueError(f"a deterministic policy has no score function; accepted: estimator='reparam', "
                                 f"got {estimator!r}")
            return PointMass(self.mode(params))
        return self._gaussian(params, reparameterized=estimator == "reparam")

    def sample(self, params, generator=None):
        if self.deterministic:  # the target policy's action (MADDPG / TD3 without target smoothing)
            return self.mode(params), params.new_zeros(params.shape[:-1])
        d = self._gaussian(params)
        a = d.rsample(generator=generator)
        return a, d.log_prob(a)

    def act(self, params, deterministic, generator=None):
        """Environment action ``[K, d]``: a draw (or the mode); a deterministic policy adds exploration noise."""
        if deterministic:
            return self.mode(params)
        if not self.deterministic:
            return self._gaussian(params).rsample(generator=generator)
        noise = torch.randn(params.shape[:-1] + (self.dim,), generator=generator, dtype=params.dtype,
                            device=params.device)
        noisy = self.mode(params) + self.exploration * self.half * noise
        return torch.maximum(torch.minimum(noisy, self.high), self.low)

    def entropy(self, params):
        """Single-sample estimate ``-log pi(a)``, ``a ~ pi`` (no closed form under the squashing; SAC's)."""
        if self.deterministic:
            raise ValueError("a deterministic policy has no entropy (its temperature is 0)")
        a, log_pi = self.sample(params)
        return -log_pi

    def target_entropy(self, fraction):
        """Haarnoja et al. (2018b)'s ``-dim(A)`` on the box rescaled to ``[-1, 1]^d``: ``-d + sum_k log h_k``.
        (``fraction``, the discrete convention, does not apply.)"""
        return -self.dim + float(self.half.log().sum())

    def encode(self, stored):
        return stored.float()

    def decode(self, value):
        return value

    def enumerate(self):
        raise ValueError(f"{self} has no finite set of actions to enumerate")


def space_from_spec(spec, algorithm=None) -> ActionSpace:
    """The action space of a :class:`~pgm_marl.envs.tasks.ActionSpec`; for a box, the algorithm's policy family."""
    if spec.kind == "discrete":
        return DiscreteActions(spec.n)
    deterministic = algorithm is not None and algorithm.box_policy == "deterministic"
    return BoxActions(spec.low, spec.high, deterministic, algorithm.exploration_noise if algorithm else 0.1)


class ActionSpaces(Sequence):
    """Every agent's :class:`ActionSpace`, in agent order: padding, the joint buffer format, batched acting.

    Network outputs are padded to the widest ``param_dim`` (padded discrete logits at :data:`PAD_LOGIT`:
    probability 0). A joint action is stored as an int64 ``[K, n]`` row of indices when every agent is
    discrete, else as float ``[K, sum stored_width]``. The environment gets the one env action format
    (:mod:`pgm_marl.envs.base`): a list of per-agent tensors, ``[K]`` int64 indices for a discrete agent,
    ``[K, d]`` for a box agent.
    """

    def __init__(self, spaces: Sequence[ActionSpace]):
        self.spaces = list(spaces)
        self.param_dims = tuple(s.param_dim for s in self.spaces)
        self.sizes = tuple(s.size for s in self.spaces)
        self.all_discrete = all(s.kind == "discrete" for s in self.spaces)
        self.pad_mask = torch.tensor([[k >= p for k in range(max(self.param_dims))] for p in self.param_dims])
        widths = [s.stored_width for s in self.spaces]
        self.stored_offsets = [sum(widths[:j]) for j in range(len(widths) + 1)]
        self.storage_width = len(self.spaces) if self.all_discrete else self.stored_offsets[-1]
        self.storage_dtype = torch.int64 if self.all_discrete else torch.float32

    @classmethod
    def coerce(cls, spaces) -> "ActionSpaces":
        """An :class:`ActionSpaces`, from itself, a list of spaces, or a list of action counts (all discrete)."""
        if isinstance(spaces, ActionSpaces):
            return spaces
        return cls([DiscreteActions(s) if isinstance(s, int) else s for s in spaces])

    @classmethod
    def from_specs(cls, specs, algorithms=None) -> "ActionSpaces":
        algorithms = algorithms or [None] * len(specs)
        return cls([space_from_spec(s, a) for s, a in zip(specs, algorithms)])

    def __getitem__(self, j):
        return self.spaces[j]

    def __len__(self) -> int:
        return len(self.spaces)

    def __repr__(self) -> str:
        return f"ActionSpaces({self.spaces})"

    def pad(self, params: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``params [n, *batch, P_max]`` with the padded entries set to :data:`PAD_LOGIT`."""
        mask = self.pad_mask if mask is None else mask
        return params.masked_fill(mask.reshape(mask.shape[0], *([1] * (params.dim() - 2)), -1), PAD_LOGIT)

    def own(self, params: torch.Tensor, j: int) -> torch.Tensor:
        """Agent j's parameters ``[*batch, P_j]`` from the padded ``[n, *batch, P_max]``."""
        return params[j, ..., : self.param_dims[j]]

    def rows(self, params: torch.Tensor) -> list[torch.Tensor]:
        """Every agent's :meth:`own` parameters from one split of ``params`` (one backward op for all n, where
        indexing agent by agent builds a gradient of all n rows for each)."""
        return [r[..., :p] for r, p in zip(params.unbind(0), self.param_dims)]

    def sample(self, params: torch.Tensor, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact joint draw: site values concatenated ``[*batch, sum size]`` and ``log pi_j(a_j)`` ``[n, *batch]``."""
        drawn = [s.sample(self.own(params, j), generator) for j, s in enumerate(self.spaces)]
        return torch.cat([v for v, _ in drawn], -1), torch.stack([lp for _, lp in drawn])

    def act(self, params: torch.Tensor, deterministic: bool = False, generator=None) -> list[torch.Tensor]:
        """Environment actions (the env action format: agent j's ``[K]`` indices or ``[K, d]`` box action) from
        padded ``params [n, K, P_max]``."""
        if self.all_discrete:  # one Gumbel-max (or argmax) for all agents: padded actions never win
            return list((params if deterministic else params + gumbel(params.shape, params, generator)).argmax(-1))
        return [s.act(self.own(params, j), deterministic, generator) for j, s in enumerate(self.spaces)]

    def store(self, actions: Sequence[torch.Tensor]) -> torch.Tensor:
        """Environment actions (per-agent tensors) -> the replay buffer's row format (see the class docstring)."""
        if self.all_discrete:
            return torch.stack(list(actions), -1)
        return torch.cat([a.reshape(a.shape[0], -1).float() for a in actions], -1)

    def encode(self, stored: torch.Tensor) -> list[torch.Tensor]:
        """Stored joint actions ``[..., storage_width]`` -> each agent's site value ``[..., size_j]`` (critic input)."""
        if self.all_discrete:
            return [s.encode(stored[..., j]) for j, s in enumerate(self.spaces)]
        off = self.stored_offsets
        return [s.encode(stored[..., off[j]: off[j + 1]]) for j, s in enumerate(self.spaces)]
