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
by the caller (e.g. a running mean over earlier batches, equally independent) is used instead. Every term is read off the Pyro traces
of :func:`agent_model` / :func:`policy_guide`, grouped by each site's time step ``infer["t"]``.
"""
from __future__ import annotations

import contextlib

import pyro
import torch

from ..models.agent_mdp import agent_model
from ..models.distributions import Recorded, SimulatorStep
from ..models.guide import policy_guide
from .elbo import MAX_PLATE_NESTING, own_action_mask, traces

__all__ = ["EpisodeWorld", "reinforce_surrogate"]


class EpisodeWorld:
    """K recorded episodes of a simulator as agent i's world (states, one-hot actions, rewards per step).

    ``states [T+1, K, D]``, ``actions`` list of one-hot ``[T, K, A_j]``, ``rewards [T, K, n]``. The dynamics
    are :class:`SimulatorStep` point masses at the recorded next states (identical in model and guide).
    """

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


def _per_sample(log_prob: torch.Tensor, num_particles) -> torch.Tensor:
    """A site's log-prob as ``[N, n_ego]``: N = particles (summing the data plate) or the data plate itself."""
    dims = MAX_PLATE_NESTING + (0 if num_particles is None else 1)
    x = log_prob.reshape((1,) * (dims - log_prob.dim()) + tuple(log_prob.shape))
    return x.sum(-2) if num_particles is not None else x


def reinforce_surrogate(world, policies, alpha, num_particles: int | None = None, baseline=None):
    """Score-function surrogate of eq. 5 with reward-to-go and a baseline.

    Returns ``(surrogate, elbo, togo)``: ``surrogate`` is a scalar whose gradient w.r.t. every agent's policy
    parameters is the unbiased estimate of ``sum_i grad ELBO_i`` (mean over the N samples); ``elbo`` ``[n_ego]``
    is the Monte-Carlo value of each ELBO_i; ``togo`` ``[T, N, n_ego]`` the rewards-to-go (detached). ``alpha > 0``
    is the temperature of eq. 3. ``baseline`` ``[T, n_ego]``, if given, replaces the leave-one-out mean (needed
    when N = 1); it must not depend on this batch.
    """
    model_tr, guide_tr = traces(agent_model, policy_guide, world, policies, None, alpha, "score",
                                num_particles=num_particles)
    horizon = world.horizon
    cost = [0.0] * horizon  # log p - log q of the sites of step t, [N, n_ego]
    score = [0.0] * horizon  # log pi_i(a_i^t | s_t) of the ego's own action (carries the gradient)
    for sign, trace in ((1.0, model_tr), (-1.0, guide_tr)):
        for site in trace.nodes.values():
            if site["type"] != "sample" or "t" not in site["infer"]:
                continue
            t = min(site["infer"]["t"], horizon - 1)
            lp = _per_sample(site["log_prob"], num_particles)
            cost[t] = cost[t] + sign * lp.detach()
            if sign < 0 and site["infer"]["kind"] == "action":
                score[t] = score[t] + lp * own_action_mask(site)
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
