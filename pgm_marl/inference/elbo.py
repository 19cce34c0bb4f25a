r"""ELBO_i of eq. 5, built by Pyro from the per-agent model and the factorized guide.

.. math::

    \mathrm{ELBO}_i(\theta_i) = \mathbb E_{\tau \sim q_{\theta_i}}\Big[\sum_t
        \underbrace{\log p(o_i^t = 1 \mid s_t, a_t)}_{\text{log\_likelihood}\ =\ r_i(s_t, a_t)/\alpha}
        + \underbrace{\log p(a_i^t)}_{\text{log\_prior}}
        - \underbrace{\log \pi_i(a_i^t \mid s_t)}_{\text{log\_policy}}\Big]

The remaining factors (initial state, dynamics, other agents' actions) are identical in model and guide and
cancel; they are returned as ``env`` so a test can see that they do. Everything is read off Pyro traces
(``poutine.trace`` of the guide, ``poutine.replay`` of the model), as ``Trace_ELBO`` does.

:func:`temper_actions` (the handler of :class:`TemperActionsMessenger`) is the program transform that gives
eq. 9 its ``alpha``: it multiplies the log-density of every action site (prior and policy) by ``alpha``, so
that with likelihood ``exp(Q)`` the ELBO becomes ``E[Q + alpha log p(a_i) - alpha log pi_i(a_i)] =
alpha * ELBO(likelihood exp(Q / alpha))`` and ``alpha = 0`` is the MADDPG limit rather than a division by zero.

Two scales of one ELBO: tempering the likelihood (``agent_model(alpha=...)``, eq. 3) gives ELBO_i itself, its
``log_likelihood`` being ``sum_t r_i / alpha`` (reinforce-elbo, the exact checks); tempering the action sites
gives ``alpha * ELBO_i`` with ``log_likelihood = Q_i`` and ``alpha``-scaled action terms (MA-SAC's actor step,
whose :func:`~pgm_marl.inference.actor.actor_terms` names its terms by what they hold on that scale). The
temperature itself is resolved and checked once per run (:func:`~pgm_marl.inference.variants.temperatures`).
"""
from __future__ import annotations

import math

import pyro
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger

__all__ = ["TemperActionsMessenger", "temper_actions", "elbo_loss", "elbo_particles", "elbo_estimate", "traces",
           "site_terms", "TERM_SIGNS", "MAX_PLATE_NESTING"]

#: ego plate (dim -1) and an optional data plate (dim -2); particles go to dim -3.
MAX_PLATE_NESTING = 2


class TemperActionsMessenger(Messenger):
    """Scale the log-density of action sites by ``alpha`` (a float or a per-ego tensor ``[n_ego]``).

    Equivalent to ``poutine.scale`` on those sites, but 0 is allowed (the MADDPG limit). It is exact for
    reparameterized action sites only: a score-function surrogate would be scaled too, so non-reparameterized
    guide sites are refused (temper the likelihood, ``agent_model(alpha=...)``, for those). Used through its
    handler :func:`temper_actions`.
    """

    def __init__(self, alpha):
        super().__init__()
        self.alpha = alpha

    def _process_message(self, msg):
        if msg["type"] != "sample" or msg["infer"].get("kind") != "action":
            return
        if not msg["is_observed"] and not getattr(msg["fn"], "has_rsample", False) and not _is_one(self.alpha):
            raise ValueError(f"temper_actions(alpha={self.alpha!r}) needs reparameterized action sites; "
                             f"site {msg['name']!r} is not; accepted: estimator='reparam', or alpha in the model")
        msg["scale"] = self.alpha * msg["scale"]


def temper_actions(fn=None, alpha=1.0):
    """Handler of :class:`TemperActionsMessenger`, after Pyro's (``poutine.scale``): ``temper_actions(fn, alpha)``
    is ``fn`` with its action sites' log-densities scaled by ``alpha``; ``temper_actions(alpha=alpha)`` is the
    messenger itself, for a ``with`` block."""
    messenger = TemperActionsMessenger(alpha)
    return messenger if fn is None else messenger(fn)


def _is_one(alpha) -> bool:
    return bool(torch.all(torch.as_tensor(alpha) == 1))


def _vectorize(fn, num_particles):
    if num_particles is None:
        return fn
    return pyro.plate("particles", num_particles, dim=-(MAX_PLATE_NESTING + 1))(fn)


def elbo_loss(model, guide, *args, num_particles: int = 1, **kwargs) -> torch.Tensor:
    """Differentiable ``-ELBO`` from ``pyro.infer.Trace_ELBO`` (vectorized particles).

    Reparameterized sites give pathwise gradients; the others add Pyro's score-function surrogate.
    """
    elbo = pyro.infer.Trace_ELBO(num_particles=num_particles, vectorize_particles=num_particles > 1,
                                 max_plate_nesting=MAX_PLATE_NESTING)
    return elbo.differentiable_loss(model, guide, *args, **kwargs)


def traces(model, guide, *args, num_particles: int | None = None, **kwargs):
    """``(model_trace, guide_trace)`` with log-densities: the guide traced, the model replayed on its values."""
    guide_tr = poutine.trace(_vectorize(guide, num_particles)).get_trace(*args, **kwargs)
    model_tr = poutine.trace(poutine.replay(_vectorize(model, num_particles), trace=guide_tr)).get_trace(*args, **kwargs)
    guide_tr.compute_log_prob()
    model_tr.compute_log_prob()
    return model_tr, guide_tr


#: how each named term enters eq. 5: ``ELBO = log_likelihood + log_prior - log_policy + env``
TERM_SIGNS = {"log_likelihood": 1.0, "log_prior": 1.0, "log_policy": -1.0, "env": 1.0}


def site_terms(model_trace, guide_trace):
    """Every sample site of both traces as a named term of eq. 5: yields ``(name, t, log_prob)``.

    ``log_likelihood``: the optimality sites (model); ``log_prior`` / ``log_policy``: the ego's own action in
    the model / the guide (masked over the ego dim); ``env``: everything else, signed (+ model, - guide): the
    initial state, dynamics and the other agents' actions, identical in model and guide, so it cancels. The
    ELBO is ``sum(TERM_SIGNS[name] * log_prob)``; ``t`` is the site's time step.
    """
    for sign, trace in ((1.0, model_trace), (-1.0, guide_trace)):
        for site in trace.nodes.values():
            if site["type"] != "sample":
                continue
            lp, info = site["log_prob"], site["infer"]
            kind, t = info.get("kind"), info.get("t")
            if kind == "optimality":
                yield "log_likelihood", t, lp
            elif kind == "action":  # the ego's own action: prior (model) or policy (guide); the rest cancels
                own = (info["egos"] == info["agent"]).to(lp.dtype)
                yield ("log_prior" if sign > 0 else "log_policy"), t, lp * own
                yield "env", t, sign * (lp * (1 - own))
            else:
                yield "env", t, sign * lp


def elbo_particles(model, guide, *args, num_particles: int | None = None, **kwargs) -> dict[str, torch.Tensor]:
    """Eq. 5 per particle and per ego, split into the named terms of :func:`site_terms`.

    Returns ``elbo, log_likelihood, log_prior, log_policy, env`` with ``elbo = log_likelihood + log_prior -
    log_policy + env``, each of shape ``[num_particles, n_ego]`` (``[n_ego]`` without particles); data plates
    are summed. Each holds the traced log-densities, so under :func:`temper_actions` the action terms hold
    ``alpha`` times theirs.
    """
    model_tr, guide_tr = traces(model, guide, *args, num_particles=num_particles, **kwargs)
    dims = MAX_PLATE_NESTING + (0 if num_particles is None else 1)

    def reduce(x):  # [(P,) data, ego] -> [(P,) ego]: left-pad the plate dims, sum the data plate
        return x.reshape((1,) * (dims - x.dim()) + tuple(x.shape)).sum(-2)

    terms = {k: 0.0 for k in TERM_SIGNS}
    for name, _, lp in site_terms(model_tr, guide_tr):
        terms[name] = terms[name] + reduce(lp)
    terms["elbo"] = sum(sign * terms[name] for name, sign in TERM_SIGNS.items())
    shape = torch.broadcast_shapes(*(torch.as_tensor(v).shape for v in terms.values()))
    return {k: torch.as_tensor(v).expand(shape) for k, v in terms.items()}


def elbo_estimate(model, guide, *args, num_particles: int = 1000, **kwargs):
    """Monte-Carlo ELBO estimate with its standard error, from ``num_particles`` vectorized particles.

    Returns ``(mean, stderr)``, each of shape ``[n_ego]``.
    """
    with torch.no_grad():
        elbo = elbo_particles(model, guide, *args, num_particles=num_particles, **kwargs)["elbo"]
    return elbo.mean(0), elbo.std(0) / math.sqrt(num_particles)
