r"""The factorized variational distribution of eq. 4 as a Pyro guide.

.. math::

    q_{\theta_i}(\tau) = p(s_0) \prod_t \prod_j \pi_j(a_j^t \mid s_t) \prod_t p(s_{t+1} \mid s_t, a^t)

Only ``theta_i`` (the ego's policy) is adapted: the other agents' logits are detached inside agent i's guide,
so ``ELBO_i`` sends no gradient to ``theta_j``. The dynamics are the world's own, identical to the model's, so
they cancel in ``log p - log q`` (point (i) after eq. 4); decentralised execution follows from the product
over agents (point (ii)). Site names are those of :func:`pgm_marl.models.agent_model`.
"""
from __future__ import annotations

import torch

from .agent_mdp import ego_indices, per_agent, unroll
from .distributions import CommonOthers

__all__ = ["policy_guide"]


def policy_guide(world, policies, agent=None, alpha: float = 1.0, estimator: str = "reparam", relax: float = 1.0,
                 hard_others: bool = False, common_others=False) -> None:
    """Eq. 4: every agent acts from its own policy; only the ego's parameters receive gradients.

    ``alpha`` is accepted (and ignored) so that model and guide take the same arguments, as Pyro requires.
    ``hard_others``: draw the other agents' actions exactly (discrete actions: the Gumbel-max of the relaxed
    sample) rather than relaxed; they carry no gradient in ELBO_i, so only a_i needs the relaxation.
    ``common_others`` (one flag, or one per agent j): every ego but j reads one draw of a_j
    (:class:`~pgm_marl.models.distributions.CommonOthers`: common random numbers across the egos, each ELBO_i's
    estimator unchanged in distribution); otherwise each ego draws its own.
    """
    egos = ego_indices(agent, world.n_agents)

    def policy(j, space, params, is_ego):  # pi_j for every ego; gradient to theta_j only in agent j's own ELBO
        if hard_others:  # a_{-i} are constants in ELBO_i: exact draws, no gradient (policy_site's promise)
            d = space.policy_site(params, estimator, per_agent(relax, j), ~is_ego.squeeze(-1))
        else:
            d = space.policy_site(torch.where(is_ego, params, params.detach()), estimator, per_agent(relax, j))
        return CommonOthers(d, is_ego.squeeze(-1)) if per_agent(common_others, j) else d

    unroll(world, policies, egos, policy, optimality=None)
