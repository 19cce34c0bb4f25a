r"""The actor step of MA-SAC (eq. 9) as SVI on agent i's one-step model, the critic standing in for the future.

With states from the replay buffer, agent i's model of section 4.2 truncated after one step and the
optimality likelihood replaced by ``exp(Q_i(s, a))`` (:class:`~pgm_marl.models.worlds.CriticWorld`) gives,
under the :func:`~pgm_marl.inference.elbo.temper_actions` transform (action log-densities scaled by ``alpha_i``),

.. math::

    \alpha_i\,\mathrm{ELBO}_i = \mathbb E_{s \sim \mathcal D}\,\mathbb E_{a \sim \pi}\big[Q_i(s, a)
        - \alpha_i \log \pi_i(a_i \mid o_i)\big] + \alpha_i \log p(a_i) = -\mathcal E_{\pi_i} + \alpha_i \log p(a_i),

i.e. minus eq. 9 up to the constant prior term (``log p(a_i) = -log |A_i|``, the number of actions or the
box's volume). ``alpha_i = 0`` is valid (MADDPG). The loss is read off the Pyro traces of
:func:`agent_model` / :func:`policy_guide` for all agents at once (the ego plate).
"""
from __future__ import annotations

import contextlib

import torch

from ..models.agent_mdp import agent_model
from ..models.guide import policy_guide
from ..models.worlds import CriticWorld
from .elbo import elbo_particles, temper_actions

__all__ = ["NeuralPolicies", "actor_terms", "exact_actor_terms", "frozen"]


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
    """Actor networks as the ``policies`` of the model/guide: ``params(j, s)`` on agent j's slice of state ``s``.

    All agents' parameters at a state are computed by one batched forward and cached for that state tensor, split
    into the agents' rows at once (:meth:`~pgm_marl.models.actions.ActionSpaces.rows`).
    """

    def __init__(self, actors, action_spaces):
        self.actors, self.action_spaces = actors, action_spaces
        self._key, self._params = None, None

    def params(self, j: int, s: torch.Tensor) -> torch.Tensor:
        if self._key is not s:
            self._key, self._params = s, self.action_spaces.rows(self.actors(self.actors.observations(s)))
        return self._params[j]


def actor_terms(actors, critic, action_spaces, state, buffer_actions, alpha, resample_all,
                relax=1.0, policies=None, guide=None, common_others=False) -> dict[str, torch.Tensor]:
    r"""Eq. 9 for every agent, read off the Pyro traces: terms ``[n]`` named by what they hold.

    .. math::

        \text{alpha\_elbo}_i = \underbrace{\mathbb E[Q_i(s, a)]}_{\text{expected\_q}}
            + \underbrace{\alpha_i \log p(a_i)}_{\text{alpha\_log\_prior}}
            - \underbrace{\alpha_i\,\mathbb E[\log \pi_i(a_i \mid o_i)]}_{\text{alpha\_log\_policy}},
        \qquad a_i \sim \pi_i \text{ (reparameterized)},\ a_{-i} \sim \pi_{-i} \text{ or the buffer's}

    The actor loss is ``-alpha_elbo`` (eq. 9 plus the constant ``alpha_i log |A_i|``). ``alpha`` ``[n]`` (as
    :func:`~pgm_marl.inference.variants.temperatures` resolves it; 0 is MADDPG's limit);
    ``resample_all[i]``: agent i's step draws a_{-i} afresh (MA-SAC) or reads the buffer's (MADDPG);
    ``buffer_actions``: each agent's buffer action as a site value; ``relax``: the Gumbel-softmax relaxation of
    discrete actions, one number or one per agent. Only a_i is relaxed in agent i's terms; the others' resampled
    actions are exact draws, as they carry no gradient there. ``common_others`` (one flag or one per agent j):
    one draw of a_j read by every ego but j (:class:`~pgm_marl.models.distributions.CommonOthers`).

    ``policies`` / ``guide``: another policies object and guide for the same model (default: the actors as
    every ego sees them, :class:`NeuralPolicies`, and eq. 4's :func:`policy_guide`): each ego's own model of the
    others (:class:`~pgm_marl.models.opponents.EgoViews`) or the optimistic guide
    (:mod:`pgm_marl.models.optimistic_guide`). ``alpha_kl_others`` is minus the traced others' terms, ``alpha_i
    KL(q_i || p_i)`` over a_{-i} for a guide with its own model of them (0 for eq. 4's, where they cancel).
    """
    world = CriticWorld(critic, state, buffer_actions, resample_all)
    policies = NeuralPolicies(actors, action_spaces) if policies is None else policies
    with frozen(critic):
        terms = elbo_particles(temper_actions(agent_model, alpha), temper_actions(guide or policy_guide, alpha),
                               world, policies, agent=None, alpha=1.0, estimator="reparam", relax=relax,
                               hard_others=True, common_others=common_others)
    return {"expected_q": terms["log_likelihood"], "alpha_log_prior": terms["log_prior"],
            "alpha_log_policy": terms["log_policy"], "alpha_kl_others": -terms["env"], "alpha_elbo": terms["elbo"]}


def exact_actor_terms(actors, critic, action_spaces, state, joint_actions, alpha) -> dict[str, torch.Tensor]:
    r"""Eq. 9 with the expectation over agent i's own discrete action summed exactly (``masac-exact``):

    .. math:: \mathbb E_{a_{-i}}\Big[\sum_k \pi_i(k \mid o_i)
              \big(Q_i(s, k, a_{-i}) - \alpha_i \log \pi_i(k \mid o_i)\big)\Big]

    ``joint_actions`` ``[n, B, sum size]`` gives each agent's sample of the others' actions (its own slot is
    overwritten by each of its actions, :meth:`~pgm_marl.models.actions.DiscreteActions.enumerate`). Returns the
    terms of :func:`actor_terms`, on the same scale; rows of agents whose actions are not enumerable are not
    meaningful (the caller uses :func:`actor_terms` for them).
    """
    spaces = action_spaces
    n = len(spaces)
    counts = [s.n if s.enumerable else 1 for s in spaces]
    a_max = max(counts)
    log_pi = actors(actors.observations(state)).log_softmax(-1)[..., :a_max]  # [n, B, A_max]; padded: pi = 0
    offsets = [sum(spaces.sizes[:i]) for i in range(n)]
    cand = joint_actions.unsqueeze(1).repeat(1, a_max, 1, 1)  # [n, A_max, B, sum size]
    for i, space in enumerate(spaces):
        if space.enumerable:  # row k = action k (rows >= n_i are padding, masked by pi = 0 below)
            rows = torch.cat([space.enumerate(), torch.zeros(a_max - counts[i], space.size)]).to(cand.dtype)
            cand[i, :, :, offsets[i]: offsets[i] + space.size] = rows[:, None, :]
    with frozen(critic):
        q = critic.min(state, cand)  # [n, A_max, B]
    pi = log_pi.exp().movedim(-1, 1)  # [n, A_max, B]
    expected_q = (pi * q).sum(1).mean(-1)
    alpha_log_policy = alpha * (pi * log_pi.movedim(-1, 1)).sum(1).mean(-1)
    alpha_log_prior = alpha * torch.tensor([s.log_prior for s in spaces], dtype=q.dtype)
    return {"expected_q": expected_q, "alpha_log_prior": alpha_log_prior, "alpha_log_policy": alpha_log_policy,
            "alpha_elbo": expected_q + alpha_log_prior - alpha_log_policy}
