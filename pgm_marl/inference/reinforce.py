r"""``reinforce-elbo``: direct SVI on the trajectory ELBO of eq. 5 with the score-function estimator, no critic.

Section 4.3: "one can directly optimize ELBO_i using the REINFORCE gradient estimation trick". With the
guide's actions sampled from the policies (on-policy episodes), the gradient of eq. 5 is

.. math::

    \nabla_{\theta_i}\mathrm{ELBO}_i = \mathbb E_q\Big[\sum_t \nabla_{\theta_i}\log\pi_i(a_i^t \mid s_t)\,
        \big(G_i^t - b_i^t\big)\Big], \qquad
    G_i^t = \sum_{t' \ge t} \Big(\frac{r_i^{t'}}{\alpha} + \log p(a_i^{t'}) - \log\pi_i(a_i^{t'} \mid s_{t'})\Big),

(costs before t do not depend on ``a_i^t``; the direct ``-\nabla \log \pi_i`` term has expectation 0 and is
dropped). ``b_i^t`` is a leave-one-out baseline: the mean of ``G_i^t`` over the *other* samples of the batch,
independent of the sample it corrects, so the estimate stays unbiased; with a single sample, a baseline given
by the caller (e.g. a running mean over earlier batches, equally independent) is used instead. Every term is
read off the Pyro traces of :func:`agent_model` / :func:`policy_guide` (:func:`~pgm_marl.inference.elbo.site_terms`,
as the ELBO itself), grouped by each site's time step ``infer["t"]``; the episodes are an
:class:`~pgm_marl.models.worlds.EpisodeWorld`.
"""
from __future__ import annotations

import torch

from ..models.agent_mdp import agent_model
from ..models.guide import policy_guide
from .elbo import MAX_PLATE_NESTING, TERM_SIGNS, site_terms, traces

__all__ = ["reinforce_surrogate"]


def _per_sample(log_prob: torch.Tensor, num_particles) -> torch.Tensor:
    """A site's log-prob as ``[N, n_ego]``: N = particles (summing the data plate) or the data plate itself."""
    dims = MAX_PLATE_NESTING + (0 if num_particles is None else 1)
    x = log_prob.reshape((1,) * (dims - log_prob.dim()) + tuple(log_prob.shape))
    return x.sum(-2) if num_particles is not None else x


def reinforce_surrogate(world, policies, alpha, num_particles: int | None = None, baseline=None):
    """Score-function surrogate of eq. 5 with reward-to-go and a baseline.

    Returns ``(surrogate, elbo, togo)``: ``surrogate`` is a scalar whose gradient w.r.t. every agent's policy
    parameters is the unbiased estimate of ``sum_i grad ELBO_i`` (mean over the N samples); ``elbo`` ``[n_ego]``
    is the Monte-Carlo value of each ELBO_i; ``togo`` ``[T, N, n_ego]`` the rewards-to-go (detached). ``alpha`` is
    the temperature of eq. 3, which divides by it (:func:`~pgm_marl.inference.variants.temperatures` resolves it
    and refuses 0 for reinforce-elbo). ``baseline`` ``[T, n_ego]``, if given, replaces the leave-one-out mean
    (needed when N = 1); it must not depend on this batch.
    """
    model_tr, guide_tr = traces(agent_model, policy_guide, world, policies, None, alpha, "score",
                                num_particles=num_particles)
    horizon = world.horizon
    cost = [0.0] * horizon  # log p - log q of the sites of step t, [N, n_ego]
    score = [0.0] * horizon  # log pi_i(a_i^t | s_t) of the ego's own action (carries the gradient)
    for name, t, log_prob in site_terms(model_tr, guide_tr):
        if t is None:  # not a site of the MDP (Pyro's plate bookkeeping): log-density 0
            continue
        lp = _per_sample(log_prob, num_particles)
        cost[t] = cost[t] + TERM_SIGNS[name] * lp.detach()
        if name == "log_policy":
            score[t] = score[t] + lp
    togo = torch.stack(torch.broadcast_tensors(*cost)).flip(0).cumsum(0).flip(0)  # [T, N, n_ego]
    n = togo.shape[1]
    if baseline is None:
        if n < 2:
            raise ValueError("a leave-one-out baseline needs N >= 2 samples; accepted: more samples, or baseline=")
        baseline = (togo.sum(1, keepdim=True) - togo) / (n - 1)  # mean over the *other* samples
    else:
        baseline = baseline.unsqueeze(1)
    surrogate = sum((score[t] * (togo[t] - baseline[t])).mean(0).sum() for t in range(horizon))
    return surrogate, togo[0].mean(0), togo
