r"""The actor step of MA-SAC (eq. 9) as SVI on agent i's one-step model, the critic standing in for the future.

With states from the replay buffer, agent i's model of section 4.2 truncated after one step and the
optimality likelihood replaced by ``exp(Q_i(s, a))`` gives, under the :class:`~pgm_marl.inference.temperature`
transform (action log-densities scaled by ``alpha_i``),

.. math::

    \alpha_i\,\mathrm{ELBO}_i = \mathbb E_{s \sim \mathcal D}\,\mathbb E_{a \sim \pi}\big[Q_i(s, a)
        - \alpha_i \log \pi_i(a_i \mid o_i)\big] - \alpha_i \log |\mathbb A_i| = -\mathcal E_{\pi_i} - \alpha_i \log|\mathbb A_i|,

i.e. minus eq. 9 up to the constant prior term. ``alpha_i = 0`` is valid (MADDPG). The loss is read off the
Pyro traces of :func:`agent_model` / :func:`policy_guide` for all agents at once (the ego plate).
"""
from __future__ import annotations

import contextlib

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine

from ..models.agent_mdp import agent_model
from ..models.distributions import Replayed
from ..models.guide import policy_guide
from .elbo import elbo_particles, temperature

__all__ = ["NeuralPolicies", "CriticWorld", "actor_terms", "exact_actor_terms", "frozen"]


@contextlib.contextmanager
def frozen(module):
    """Stop gradients into ``module``'s parameters (the critic in the actor step: eq. 9 adapts theta_i only)."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, f in zip(module.parameters(), flags):
            p.requires_grad_(f)


class NeuralPolicies:
    """Actor networks as the ``policies`` of the model/guide: ``logits(j, s)`` on agent j's slice of state ``s``.

    All agents' logits at a state are computed by one batched forward and cached for that state tensor.
    """

    def __init__(self, actors):
        self.actors = actors
        self.action_dims = actors.action_dims
        self._key, self._logits = None, None

    def logits(self, j: int, s: torch.Tensor) -> torch.Tensor:
        if self._key is not s:
            self._key, self._logits = s, self.actors(self.actors.observations(s))
        return self._logits[j, ..., : self.action_dims[j]]


class CriticWorld:
    """One-step world for the actor: ``s`` ~ replay buffer, ``log p(o_i = 1 | s, a) = Q_i(s, a)`` (min of twins).

    ``resample_all[i]`` says whether agent i's step resamples the other agents' actions (eq. 9) or takes them
    from the buffer (MADDPG). The batch plate is scaled by ``1/B`` so that sums over it are means.
    """

    horizon = 1

    def __init__(self, critic, state, buffer_actions, resample_all):
        self.critic, self.state = critic, state
        self.buffer_actions = buffer_actions  # list of one-hot [B, A_j]
        self.n_agents = len(buffer_actions)
        self.resample_all = torch.as_tensor(resample_all, dtype=torch.bool)

    @contextlib.contextmanager
    def plate(self):
        batch = self.state.shape[0]
        with poutine.scale(scale=1.0 / batch), pyro.plate("batch", batch, dim=-2):
            yield

    def initial(self):
        return dist.Delta(self.state.unsqueeze(-2), event_dim=1)

    def replayed(self, j, d, is_ego, t=0):
        keep = ~(self.resample_all.unsqueeze(-1) | is_ego)  # [n_ego, 1]: egos that read a_j from the buffer
        if not keep.any():
            return d
        return Replayed(d, self.buffer_actions[j].unsqueeze(-2), keep.squeeze(-1))

    def log_likelihood(self, s, actions, egos, t=0):
        if len(egos) != self.n_agents:
            raise ValueError(f"CriticWorld needs every agent as an ego; got egos {egos.tolist()}")
        joint = torch.cat(actions, -1).movedim(-2, 0)  # [n_ego, B, sum A]: ego e's joint action sample
        return self.critic.min(self.state, joint).movedim(0, -1)  # [B, n_ego]

    def transition(self, s, actions, t=0):  # horizon 1: the critic already accounts for the future
        raise RuntimeError("CriticWorld has horizon 1")


def actor_terms(actors, critic, state, buffer_actions, alpha, resample_all, relax=1.0) -> dict[str, torch.Tensor]:
    """Eq. 9 for every agent from the Pyro traces: named terms ``[n]``; the actor loss is ``-terms["elbo"]``.

    ``alpha`` is ``[n]`` (>= 0). ``terms["reward"]`` is ``E[Q_i]``, ``terms["log_policy"]`` is
    ``alpha_i E[log pi_i]``; ``elbo = E[Q_i] - alpha_i E[log pi_i] - alpha_i log|A_i|``. ``relax``: the
    Gumbel-softmax temperature, one number or one per agent. Only a_i is relaxed in agent i's terms; the
    other agents' resampled actions are exact draws (Gumbel-max), as they carry no gradient there.
    """
    world = CriticWorld(critic, state, buffer_actions, resample_all)
    policies = NeuralPolicies(actors)
    tempered = temperature(alpha)
    with frozen(critic):
        return elbo_particles(tempered(agent_model), tempered(policy_guide), world, policies, None, 1.0, "reparam",
                             relax, True)


def exact_actor_terms(actors, critic, state, joint_actions, alpha) -> dict[str, torch.Tensor]:
    r"""Eq. 9 with the expectation over agent i's own discrete action summed exactly (``masac-exact``):

    .. math:: \mathbb E_{a_{-i}}\Big[\sum_k \pi_i(k \mid o_i)\big(Q_i(s, k, a_{-i}) - \alpha_i \log \pi_i(k \mid o_i)\big)\Big]

    ``joint_actions`` ``[n, B, sum A]`` gives each agent's sample of the others' actions (its own slot is
    overwritten by each one-hot ``k``). Returns ``reward`` (``E[Q_i]``) and ``log_policy``
    (``alpha_i E[log pi_i]``) and ``elbo``, each ``[n]``, on the same scale as :func:`actor_terms`.
    """
    dims = actors.action_dims
    n, a_max = len(dims), max(dims)
    log_pi = actors(actors.observations(state)).log_softmax(-1)  # [n, B, A_max]
    offsets = [sum(dims[:i]) for i in range(n)]
    cand = joint_actions.unsqueeze(1).repeat(1, a_max, 1, 1)  # [n, A_max, B, sum A]
    for i, (off, d) in enumerate(zip(offsets, dims)):
        eye = torch.eye(d, a_max, dtype=cand.dtype)[:, :d]  # row k = one-hot k (rows >= d unused, masked below)
        cand[i, :, :, off: off + d] = torch.cat([eye, eye.new_zeros(a_max - d, d)])[:, None, :] if a_max > d \
            else eye[:, None, :]
    with frozen(critic):
        q = critic.min(state, cand)  # [n, A_max, B]
    pi = log_pi.exp().movedim(-1, 1)  # [n, A_max, B]; padded actions have probability 0
    expected_q = (pi * q).sum(1).mean(-1)
    log_policy = alpha * (pi * log_pi.movedim(-1, 1)).sum(1).mean(-1)
    log_prior = -alpha * torch.log(torch.tensor(dims, dtype=q.dtype))
    return {"reward": expected_q, "log_policy": log_policy, "log_prior": log_prior,
            "elbo": expected_q + log_prior - log_policy}
