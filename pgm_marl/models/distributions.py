"""Distributions used by the per-agent model and guide.

* :class:`GumbelSoftmaxPolicy` -- a reparameterizable relaxed one-hot action (Jang et al., 2017; section 5.2)
  whose log-density is the categorical log-probability extended linearly to the simplex.
* :class:`Optimality` -- the optimality variable of eq. 3, ``p(o = 1 | s, a) = exp(l)``.
* :class:`PartlyHard`, :class:`Replayed`, :class:`Recorded` -- the guide's exact draws of the other agents'
  actions, buffer actions (MADDPG) and recorded on-policy actions, around any action distribution.
* :class:`CommonOthers` -- one draw of agent j's action read by every ego but j (common random numbers across
  the ego plate).
* :class:`SimulatorStep` -- a black-box dynamics factor (an MPE simulator step): identical in model and guide,
  so it cancels in the ELBO (point (i) after eq. 4) and is given log-density 0.
"""
from __future__ import annotations

import torch
from pyro.distributions import OneHotCategorical, TorchDistribution, constraints

__all__ = ["GumbelSoftmaxPolicy", "PartlyHard", "CommonOthers", "Optimality", "SimulatorStep", "Replayed",
           "action_distribution", "Recorded", "harden", "gumbel", "log_normalize", "ESTIMATORS"]

#: Gradient estimators for discrete actions: "reparam" = relaxed one-hot (pathwise), "score" = one-hot
#: categorical (score function / REINFORCE, Pyro's default for non-reparameterizable sites).
ESTIMATORS = ("reparam", "score")


def log_normalize(logits: torch.Tensor) -> torch.Tensor:
    """``log pi`` from unnormalised logits over the last dimension (``logits - logsumexp``; kept in this form
    rather than ``log_softmax`` so that every caller rounds alike)."""
    return logits - logits.logsumexp(-1, keepdim=True)


class GumbelSoftmaxPolicy(TorchDistribution):
    r"""Gumbel-softmax relaxed one-hot action ``y = softmax((log pi + g) / relax)``, ``relax`` = 1 (section 5.2).

    Its ``log_prob`` is the policy's categorical log-probability extended linearly to the simplex,

    .. math:: \log\pi(y) = \sum_k y_k \log\pi_k,

    which equals ``log pi(a)`` when ``y`` is the one-hot vector of ``a``. This is the ``log pi_i(a_i | s)`` of
    eq. 9 evaluated at a relaxed sample; it is differentiable in both ``y`` and the logits.

    Samples are those of ``torch.distributions.RelaxedOneHotCategorical`` (same uniform draws, same Gumbel
    transform), written directly: the actor step builds and expands these distributions a dozen times per
    gradient step, and the generic class costs several normalisations and object layers each time.
    """

    arg_constraints = {"logits": constraints.real_vector}
    support = constraints.simplex
    has_rsample = True

    def __init__(self, relax, logits: torch.Tensor, validate_args=None, normalized: bool = False):
        self.relax = relax
        # log pi, normalised (``normalized``: the caller has, e.g. before broadcasting them over the egos)
        self.logits = logits if normalized else log_normalize(logits)
        super().__init__(logits.shape[:-1], logits.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(GumbelSoftmaxPolicy, _instance)
        batch_shape = torch.Size(batch_shape)
        new.relax = self.relax
        new.logits = self.logits.expand(batch_shape + self.event_shape)
        super(GumbelSoftmaxPolicy, new).__init__(batch_shape, self.event_shape, validate_args=False)
        return new

    @property
    def probs(self) -> torch.Tensor:
        return self.logits.exp()

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        return self.relaxed(self.logits, self.noise(self._extended_shape(sample_shape)))

    def noise(self, shape) -> torch.Tensor:
        """The Gumbel noise of :meth:`rsample`."""
        return gumbel(shape, self.logits)

    def relaxed(self, logits: torch.Tensor, gumbels: torch.Tensor) -> torch.Tensor:
        """The relaxed one-hot ``softmax((logits + g) / relax)`` (``logits``: this policy's, or some rows of them)."""
        return _softmax((logits + gumbels) / self.relax)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return (value * self.logits).sum(-1)


def gumbel(shape, like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard Gumbel noise ``-log(-log u)`` (the draws of :class:`GumbelSoftmaxPolicy` and of the exact
    Gumbel-max draws of :mod:`~pgm_marl.models.actions`)."""
    u = torch.rand(shape, dtype=like.dtype, device=like.device, generator=generator)
    eps = torch.finfo(u.dtype).eps  # clamp_probs' bounds, in place: the same numbers without four temporaries
    return u.clamp_(eps, 1 - eps).log_().neg_().log_().neg_()


def _softmax(x: torch.Tensor) -> torch.Tensor:
    """``softmax(x, -1)`` written out (shift by the max, exponentiate, normalise): torch's CPU kernel is about 4x
    slower for the few actions of a policy (a last dimension of 5: 4.4 against 1.2 ms for ``[1024, 24, 5]``, one
    thread), and the actor step draws N^2 B of them. Agrees with ``torch.softmax`` to rounding (a few 1e-7)."""
    e = (x - x.detach().amax(-1, keepdim=True)).exp()
    return e / e.sum(-1, keepdim=True)


def harden(y: torch.Tensor) -> torch.Tensor:
    """Gumbel-max: the one-hot argmax of a relaxed sample is an exact categorical sample (same noise)."""
    # (max's indices: argmax's, the first maximum, in 2/3 of its time over a few actions; one_hot's int64 costs a pass)
    return torch.zeros_like(y).scatter_(-1, y.max(-1, keepdim=True).indices, 1.0)


class PartlyHard(TorchDistribution):
    """A :class:`GumbelSoftmaxPolicy` whose samples are exact, and constant, where ``hard`` is True.

    In agent i's guide only a_i needs the relaxation (its pathwise gradient); the other agents' actions are
    constants there, so they are drawn exactly from ``pi_j`` (the Gumbel-max of the same noise, :func:`harden`:
    the expectation over a_{-i} in eq. 9 is then unbiased) and neither those draws nor their log-densities carry a
    gradient, whatever the parameters do. ``hard`` marks rows of the last batch dim (the ego plate; ``[n_ego]``).
    ``log_prob`` is the extended categorical one, which is exact at one-hot values.

    The batched guide relaxes one row of agent j's site, its own ego's: then the relaxed draw and its
    log-density are built on that row alone (``[*batch, 1, |A|]``) and only the combined value spans the egos,
    so the autograd work of a site is that of one agent, not of n_ego (the per-agent sites' elementwise work
    grows with n^2 B |A| otherwise). The numbers are those of relaxing every row and hardening all but one.
    """

    arg_constraints = {}
    has_rsample = True

    def __init__(self, base: GumbelSoftmaxPolicy, hard: torch.Tensor, validate_args=None, _row_logits=None):
        self.base, self.hard = base, hard
        soft = (~hard).nonzero() if hard.dim() == 1 and len(hard) > 1 else None  # (one row: nothing to save)
        self._all_hard = bool(hard.all())
        self._row = int(soft[0, 0]) if soft is not None and len(soft) == 1 else None  # the one relaxed row
        if self._row is not None and _row_logits is None:
            # the row's logits as given, before any expand: a view of an expanded tensor would send its gradient
            # back through a tensor of every ego's row
            lg = base.logits
            _row_logits = lg if lg.dim() < 2 or lg.shape[-2] == 1 else lg.narrow(-2, self._row, 1)
        self._row_logits, self._drawn = _row_logits, None
        super().__init__(torch.broadcast_shapes(base.batch_shape, hard.shape), base.event_shape, validate_args=False)

    @property
    def support(self):
        return self.base.support

    def expand(self, batch_shape, _instance=None):
        return PartlyHard(self.base.expand(batch_shape), self.hard, _row_logits=self._row_logits)

    def rsample(self, sample_shape=torch.Size()):
        base = self.base
        gumbels = base.noise(base._extended_shape(sample_shape))
        if self._row is None and not self._all_hard:  # general: relax every row, harden some
            y = base.relaxed(base.logits, gumbels)
            value = torch.where(self.hard.unsqueeze(-1), harden(y.detach()), y)
            self._drawn = (value, None)
            return value
        with torch.no_grad():  # Gumbel-max: softmax((logits + g) / relax) is monotone in logits + g (relax > 0)
            exact = harden(base.logits + gumbels)
        if self._all_hard:
            self._drawn = (exact, None)
            return exact
        y = base.relaxed(self._row_logits, gumbels.narrow(-2, self._row, 1))  # [..., 1, |A|], with its gradient
        value = torch.where(self.hard.unsqueeze(-1), exact, y)
        self._drawn = (value, y)
        return value

    def log_prob(self, value):
        if self._row is None and not self._all_hard:  # general: every row's density, the hard ones detached
            live = self.base.log_prob(value)
            return torch.where(self.hard, live.detach(), live)
        with torch.no_grad():  # the hard rows: constants
            fixed = self.base.log_prob(value)
        if self._all_hard:
            return fixed
        # the relaxed row alone: the draw's own, or that row of another value
        own = self._drawn is not None and value is self._drawn[0]
        row = self._drawn[1] if own else value.narrow(-2, self._row, 1)
        return torch.where(self.hard, fixed, (row * self._row_logits).sum(-1))


class _Wrapping(TorchDistribution):
    """A distribution around ``self.base`` (set by the subclass): its support and reparameterizability, and its
    draws: ``base``'s sample passed through :meth:`_transform`, remembered so that ``log_prob`` of the value
    returned can read the ``base`` sample behind it (:meth:`_base_draw`)."""

    arg_constraints = {}
    _drawn = None  # (returned sample, base sample) of the last draw

    @property
    def has_rsample(self):
        return self.base.has_rsample

    @property
    def support(self):
        return self.base.support

    def _transform(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def _draw(self, y: torch.Tensor) -> torch.Tensor:
        out = self._transform(y)
        self._drawn = (out, y)
        return out

    def rsample(self, sample_shape=torch.Size()):
        return self._draw(self.base.rsample(sample_shape))

    def sample(self, sample_shape=torch.Size()):
        return self._draw(self.base.sample(sample_shape))

    def _base_draw(self, value: torch.Tensor) -> torch.Tensor | None:
        """The ``base`` sample behind ``value`` if ``value`` is this site's own draw, else None."""
        return self._drawn[1] if self._drawn is not None and value is self._drawn[0] else None


class CommonOthers(_Wrapping):
    """``base`` (agent j's action site under the ego plate, one value per ego) with one draw shared by the egos.

    The egos' models side by side under ``pyro.plate("ego")`` are separate objectives (ELBO_i for each i), so
    each is estimated as well when every ego ``i != j`` reads the same draw of a_j: common random numbers across
    the plate. Each ego's estimator keeps its distribution (its a_{-i} are still independent draws from
    pi_{-i}); only the draws of different egos become dependent. The ego's own row (``is_ego``, ``[n_ego]``) is
    ``base``'s own sample, unchanged (relaxed, with its gradient); every other row takes the first other row's
    sample (an exact draw under :class:`PartlyHard`). Random numbers are drawn as by ``base``, so the egos'
    own actions are those of the per-ego draws. What it buys: a critic that sees the same a_{-i} for every ego
    reads each agent's (o_j, a_j) once per transition (the attention critic, :mod:`pgm_marl.critics`).
    """

    def __init__(self, base, is_ego: torch.Tensor, validate_args=None):
        self.base, self.is_ego = base, is_ego
        others = (~is_ego).nonzero()
        self.source = int(others[0, 0]) if len(others) else None  # the row every other ego reads
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    def expand(self, batch_shape, _instance=None):
        return CommonOthers(self.base.expand(batch_shape), self.is_ego)

    def _share(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(self.is_ego.unsqueeze(-1), x, x.narrow(-2, self.source, 1))  # ego dim: -2 of a value

    def _transform(self, y: torch.Tensor) -> torch.Tensor:
        if self.source is None:
            return y
        out = self._share(y)
        u = getattr(y, "_presquash", None)  # a squashed draw's pre-image travels with it (SquashedGaussian)
        if u is not None:
            out._presquash = self._share(u)
        return out

    def log_prob(self, value):
        own = self._base_draw(value)
        if self.source is None or own is None:
            return self.base.log_prob(value)
        # its own draw: every ego reads the same pi_j, so a row holding the source row's draw has that row's
        # density (read off the base's own draw: [*batch, n_ego] values instead of the actions themselves)
        lp = self.base.log_prob(own)
        return torch.where(self.is_ego, lp, lp.narrow(-1, self.source, 1))


class Optimality(TorchDistribution):
    r"""Eq. 3: the optimality variable ``o ~ Bernoulli(exp(l))`` with ``l = r / alpha``.

    ``log_prob(1) = l`` exactly (no ``log(exp(.))`` round trip), ``log_prob(0) = log(1 - exp(l))``. Observed at
    ``o = 1`` only ``l`` is used, so ``l > 0`` (a critic value, or unshifted rewards) acts as an unnormalized
    factor; see README "Rewards and eq. 3" for why a constant shift changes no gradient.
    """

    arg_constraints = {"log_prob_one": constraints.real}
    support = constraints.boolean

    def __init__(self, log_prob_one: torch.Tensor, validate_args=None):
        self.log_prob_one = log_prob_one
        super().__init__(log_prob_one.shape, torch.Size(), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return Optimality(self.log_prob_one.expand(batch_shape))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        one = self.log_prob_one
        # the unselected branch must stay finite at one == 0, or its (masked) gradient is 0 * inf = nan
        return torch.where(value.bool(), one, torch.log(-torch.expm1(one.clamp(max=-1e-12))))

    def sample(self, sample_shape=torch.Size()):
        probs = self.log_prob_one.clamp(max=0.0).exp().expand(self._extended_shape(sample_shape))
        return torch.bernoulli(probs.detach())


class SimulatorStep(TorchDistribution):
    """A dynamics step computed by a simulator: a point mass at ``value`` with log-density 0.

    The same factor appears in the model and in the guide (eq. 4 uses the true dynamics), so its density cancels
    in ``log p - log q``; 0 is the value that keeps every estimate exact. It is not reparameterizable: gradients
    do not flow through a black-box simulator, which is why MA-SAC needs a critic.
    """

    arg_constraints = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(self, value: torch.Tensor, validate_args=None):
        self.value = value
        super().__init__(value.shape[:-1], value.shape[-1:], validate_args=False)

    def expand(self, batch_shape, _instance=None):
        return SimulatorStep(self.value.expand(tuple(batch_shape) + tuple(self.event_shape)))

    def sample(self, sample_shape=torch.Size()):
        return self.value.expand(self._extended_shape(sample_shape))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return value.new_zeros(value.shape[:-1])


def action_distribution(logits: torch.Tensor, estimator: str, relax: float = 1.0, normalized: bool = False):
    """The distribution of a discrete action with the given logits, for the chosen gradient estimator.

    ``"reparam"``: :class:`GumbelSoftmaxPolicy` with relaxation ``relax`` (1 in section 5.2; the
    relaxed ELBO tends to the discrete one as ``relax -> 0``); ``"score"``: one-hot categorical.
    Both put values on the simplex, so rewards, critics and dynamics take the same one-hot-shaped input.
    """
    if estimator == "reparam":
        # float32 samples at small relax miss the simplex check (|sum - 1| < 1e-6) by rounding only
        return GumbelSoftmaxPolicy(torch.tensor(relax, dtype=logits.dtype), logits=logits, validate_args=False,
                                   normalized=normalized)
    if estimator == "score":
        return OneHotCategorical(logits=logits)
    raise ValueError(f"unknown estimator {estimator!r}; accepted: {', '.join(ESTIMATORS)}")


class Replayed(_Wrapping):
    """``base`` where ``mask`` is False; a point mass at the recorded ``value`` (log-density 0) where it is True.

    MADDPG's guide for agent i: the other agents' actions are the buffer's, not resampled (section 4.3, last
    paragraph). The same wrapper in the model makes those factors cancel, as the dynamics do.
    """

    def __init__(self, base, value: torch.Tensor, mask: torch.Tensor, validate_args=None):
        self.base, self.value, self.mask = base, value, mask
        batch = torch.broadcast_shapes(base.batch_shape, value.shape[:-1], mask.shape)
        super().__init__(batch, base.event_shape, validate_args=False)

    def expand(self, batch_shape, _instance=None):
        return Replayed(self.base.expand(batch_shape), self.value, self.mask)

    def _transform(self, x):
        return torch.where(self.mask.unsqueeze(-1), self.value, x)

    def log_prob(self, value):
        # its own draw: base's density at base's own sample (equal where not masked; keeps a squashed sample's
        # pre-image)
        own = self._base_draw(value)
        value = value if own is None else own
        return torch.where(self.mask, torch.zeros((), dtype=value.dtype), self.base.log_prob(value))


class Recorded(TorchDistribution):
    """``base`` whose sample is a value already drawn from it (an on-policy episode); log-density is ``base``'s."""

    arg_constraints = {}
    has_rsample = False

    def __init__(self, base, value):
        self.base, self.value = base, value
        super().__init__(torch.broadcast_shapes(base.batch_shape, value.shape[:-1]), base.event_shape,
                         validate_args=False)

    @property
    def support(self):
        return self.base.support

    def expand(self, batch_shape, _instance=None):
        return Recorded(self.base.expand(batch_shape), self.value)

    def sample(self, sample_shape=torch.Size()):
        return self.value.expand(sample_shape + self.batch_shape + self.event_shape)

    def log_prob(self, value):
        return self.base.log_prob(value)
