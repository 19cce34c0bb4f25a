r"""Distributions of box actions (:class:`~pgm_marl.models.actions.BoxActions`).

* :class:`SquashedGaussian` -- the policy ``a = c + h tanh(u)``, ``u ~ N(mean, std^2)`` (Haarnoja et al. 2018a,
  appendix C), whose log-density carries the change of variables of the squashing;
* :class:`BoxUniform` -- the uniform prior ``p(a_i)`` of eq. 5 on the box: a constant log-density;
* :class:`PointMass` -- a deterministic policy (MADDPG): samples carry the gradient, log-density 0;
* :class:`EgoPrior` -- the model's action site over the ego plate: the prior where the agent is the ego, its
  (fixed) policy elsewhere.
"""
from __future__ import annotations

import math

import torch
from pyro.distributions import TorchDistribution, constraints

__all__ = ["SquashedGaussian", "BoxUniform", "PointMass", "EgoPrior"]

_EPS = 1e-6  # a stored action on the box's boundary is read as tanh(u) = +-(1 - _EPS)
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class SquashedGaussian(TorchDistribution):
    r"""``a = c + h \tanh(u)``, ``u ~ N(mean, diag(std^2))``: a reparameterized policy on the box ``c +- h``.

    .. math:: \log\pi(a) = \sum_k \Big[\log\mathcal N(u_k; \mu_k, \sigma_k^2) - \log h_k
              - \log\big(1 - \tanh^2 u_k\big)\Big],

    the Gaussian log-density minus :meth:`log_abs_det_jacobian` of the squashing (which is what keeps the
    uniform prior on the box a constant in eq. 5). A draw remembers its ``u`` (``a._presquash``), so that
    ``log_prob`` of a sample, in the guide or replayed in the model, never inverts a saturated ``tanh``;
    other values (a stored action) are inverted with ``atanh``, clamped inside the box.
    ``reparameterized=False`` gives the score-function site of the same policy (``has_rsample`` False).
    """

    arg_constraints = {}
    support = constraints.real_vector

    def __init__(self, mean, log_std, center, half, reparameterized: bool = True, validate_args=None):
        self.loc, self.log_std, self.center, self.half = mean, log_std, center, half
        self.reparameterized = reparameterized
        super().__init__(mean.shape[:-1], mean.shape[-1:], validate_args=False)

    @property
    def has_rsample(self):
        return self.reparameterized

    def expand(self, batch_shape, _instance=None):
        shape = torch.Size(batch_shape) + self.event_shape
        return SquashedGaussian(self.loc.expand(shape), self.log_std.expand(shape), self.center, self.half,
                                self.reparameterized)

    def rsample(self, sample_shape=torch.Size(), generator: torch.Generator | None = None):
        shape = self._extended_shape(sample_shape)
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device, generator=generator)
        u = self.loc + self.log_std.exp() * eps
        a = self.center + self.half * torch.tanh(u)
        a._presquash = u
        return a

    def sample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_abs_det_jacobian(self, u: torch.Tensor) -> torch.Tensor:
        """``sum_k log |d a_k / d u_k| = sum_k log(h_k (1 - tanh^2 u_k))``, written stably."""
        return (self.half.log() + 2 * (math.log(2.0) - u - torch.nn.functional.softplus(-2 * u))).sum(-1)

    def log_prob(self, value):
        u = getattr(value, "_presquash", None)
        if u is None:
            u = torch.atanh(((value - self.center) / self.half).clamp(-1 + _EPS, 1 - _EPS))
        z = (u - self.loc) * torch.exp(-self.log_std)
        log_normal = (-0.5 * z * z - self.log_std - _HALF_LOG_2PI).sum(-1)
        return log_normal - self.log_abs_det_jacobian(u)


class BoxUniform(TorchDistribution):
    """Uniform on ``[low, high]^d``: log-density ``-sum_k log(high_k - low_k)`` at every value.

    Values are not checked against the box: every site value is a squashed or clipped policy action, inside it.
    The density is a constant, so it enters eq. 5 (and eq. 9, times alpha) as ``log p(a_i)`` does for
    discrete actions: without gradient.
    """

    arg_constraints = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, low, high, batch_shape=torch.Size(), validate_args=None):
        self.low, self.high = low, high
        self.log_density = -float((high - low).log().sum())
        super().__init__(torch.Size(batch_shape), low.shape[-1:], validate_args=False)

    def expand(self, batch_shape, _instance=None):
        return BoxUniform(self.low, self.high, batch_shape)

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        return self.low + (self.high - self.low) * torch.rand(shape, dtype=self.low.dtype, device=self.low.device)

    def log_prob(self, value):
        return torch.full(value.shape[:-1], self.log_density, dtype=value.dtype, device=value.device)


class PointMass(TorchDistribution):
    """A deterministic policy as a site: samples are ``value`` (its gradient flows), log-density 0.

    Its log-density is not finite in a continuous space; it only enters eq. 9 times alpha = 0 (MADDPG).
    """

    arg_constraints = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, value: torch.Tensor, validate_args=None):
        self.value = value
        super().__init__(value.shape[:-1], value.shape[-1:], validate_args=False)

    def expand(self, batch_shape, _instance=None):
        return PointMass(self.value.expand(torch.Size(batch_shape) + self.event_shape))

    def rsample(self, sample_shape=torch.Size()):
        return self.value.expand(self._extended_shape(sample_shape))

    def log_prob(self, value):
        return value.new_zeros(value.shape[:-1])


class EgoPrior(TorchDistribution):
    """``prior`` where ``is_ego`` (``[n_ego]``), ``other`` elsewhere: agent j's action site in the model over the
    ego plate (uniform prior in agent j's own model, pi_j, fixed, in the others')."""

    arg_constraints = {}
    support = constraints.real_vector

    def __init__(self, prior, other, is_ego: torch.Tensor, validate_args=None):
        self.prior, self.other, self.is_ego = prior, other, is_ego
        batch = torch.broadcast_shapes(prior.batch_shape, other.batch_shape, is_ego.shape)
        super().__init__(batch, other.event_shape, validate_args=False)

    @property
    def has_rsample(self):
        return self.prior.has_rsample and self.other.has_rsample

    def expand(self, batch_shape, _instance=None):
        return EgoPrior(self.prior.expand(batch_shape), self.other.expand(batch_shape), self.is_ego)

    def rsample(self, sample_shape=torch.Size()):
        return torch.where(self.is_ego[..., None], self.prior.rsample(sample_shape), self.other.rsample(sample_shape))

    def sample(self, sample_shape=torch.Size()):
        return torch.where(self.is_ego[..., None], self.prior.sample(sample_shape), self.other.sample(sample_shape))

    def log_prob(self, value):
        return torch.where(self.is_ego, self.prior.log_prob(value), self.other.log_prob(value))
