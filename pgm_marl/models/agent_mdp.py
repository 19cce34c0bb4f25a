r"""Agent i's MDP with optimality variables (Figure 1; eq. 2-3) as a Pyro model.

For agent ``i`` (the *ego*), one trajectory of horizon ``H`` is generated as

.. math::

    s_0 \sim p(s_0), \qquad
    a_j^t \sim \pi_j(\cdot \mid s_t)\ (j \ne i,\ \text{fixed}), \qquad
    a_i^t \sim \mathcal U(\mathbb A_i), \qquad
    o_i^t \sim \mathrm{Bernoulli}\big(\exp(r_i(s_t, a^t) / \alpha)\big) = 1, \qquad
    s_{t+1} \sim p(\cdot \mid s_t, a^t).

The other agents' actions are part of agent i's environment (the box of Figure 1): marginalising them gives the
non-stationary transition of eq. 2. The guide (eq. 4, :mod:`pgm_marl.models.guide`) shares every site name:

* ``s_{t}``: state at step t (``infer["kind"] = "state"``);
* ``a_{j}_{t}``: action of agent j at step t (``"action"``, ``infer["agent"] = j``);
* ``o_{t}``: ego's optimality at step t (``"optimality"``), observed at 1.

Several egos can be unrolled at once: ``agent=None`` (all agents) or a list puts the per-agent models side by
side under ``pyro.plate("ego", dim=-1)``. They are independent models; batching them is only for speed (one
critic matmul for all agents in MA-SAC). Agent ``j``'s action site then has one value per ego, distributed as
the uniform prior where ``ego == j`` and as ``pi_j`` elsewhere.

A *world* supplies the game (the :class:`~pgm_marl.models.worlds.World` protocol): ``n_agents``, ``horizon``,
``plate()``, ``initial()``, ``replayed(j, dist, is_ego, t)`` (pin some actions to recorded data),
``log_likelihood(s, actions, egos, t)`` (``r_e(s, a)`` for each ego, or a critic standing in for the future)
and ``transition(s, actions, t)``. *Policies* (:class:`~pgm_marl.models.worlds.Policies`) supply
``params(j, s)``, agent j's policy parameters at state ``s``, and ``action_spaces``: what an action is (its
prior, its policy, :mod:`pgm_marl.models.actions`) is decided there, never here.
"""
from __future__ import annotations

from typing import Callable, Sequence

import pyro
import torch

from .distributions import Optimality

__all__ = ["agent_model", "ego_indices", "unroll", "per_agent"]


def per_agent(value, j: int):
    """``value[j]`` for a per-agent sequence, ``value`` itself for a scalar (e.g. the relaxation ``relax``)."""
    return value[j] if isinstance(value, (list, tuple)) else value


def ego_indices(agent: int | Sequence[int] | None, n_agents: int) -> torch.Tensor:
    """The ego agents as a LongTensor: ``None`` -> all agents, an int -> that agent alone."""
    egos = list(range(n_agents)) if agent is None else [agent] if isinstance(agent, int) else list(agent)
    bad = [e for e in egos if not (isinstance(e, int) and 0 <= e < n_agents)]
    if bad or not egos:
        raise ValueError(f"agent {agent!r} is not valid; accepted: an int in 0..{n_agents - 1}, a list of them, or None")
    return torch.tensor(egos)


def unroll(world, policies, egos: torch.Tensor, action_dist: Callable, optimality: bool) -> None:
    """The structure shared by model and guide: states, every agent's actions, optimality, dynamics.

    ``action_dist(j, space, params, is_ego)`` returns agent j's action distribution given its action space,
    its policy parameters at the current state and the boolean mask ``is_ego`` (shape ``[n_ego, 1]``) of the
    egos for which j is the ego.
    """
    n = world.n_agents
    with world.plate():
        s = pyro.sample("s_0", world.initial(), infer={"kind": "state", "t": 0})
        with pyro.plate("ego", len(egos), dim=-1):
            for t in range(world.horizon):
                actions = []
                for j in range(n):
                    is_ego = (egos == j).unsqueeze(-1)
                    info = {"kind": "action", "agent": j, "t": t, "egos": egos}
                    d = action_dist(j, policies.action_spaces[j], policies.params(j, s), is_ego)
                    d = world.replayed(j, d, is_ego, t)  # e.g. MADDPG: a_{-i} from the replay buffer
                    actions.append(pyro.sample(f"a_{j}_{t}", d, infer=info))
                if optimality:
                    ll = world.log_likelihood(s, actions, egos, t)  # r_e(s_t, a_t), [..., n_ego]
                    pyro.sample(f"o_{t}", optimality(ll), obs=torch.ones_like(ll),
                                infer={"kind": "optimality", "t": t, "egos": egos})
                if t + 1 < world.horizon:
                    s = pyro.sample(f"s_{t + 1}", world.transition(s, actions, t), infer={"kind": "state", "t": t + 1})


def agent_model(world, policies, agent=None, alpha: float = 1.0, estimator: str = "reparam", relax: float = 1.0,
                hard_others: bool = False, common_others=False) -> None:
    """Figure 1 / eq. 2-3: agent ``agent``'s MDP with optimality variables observed at 1.

    ``alpha`` is the temperature of eq. 3 (``p(o=1) = exp(r / alpha)``, 1 in the derivation; a number or one per
    ego), which divides by it: a run's alpha is resolved and checked by
    :func:`~pgm_marl.inference.variants.temperatures`; the zero-temperature limit is reached with
    :func:`~pgm_marl.inference.elbo.temper_actions` instead. ``estimator`` picks the gradient estimator
    (``"reparam"``: pathwise, a relaxed one-hot for discrete actions; ``"score"``) so that the prior and the guide
    live on the same space; ``relax`` is the Gumbel-softmax relaxation of discrete ``"reparam"`` sites (a
    number, or one per agent). ``hard_others`` and ``common_others`` only matter to the guide (the model replays
    its values).
    """
    egos = ego_indices(agent, world.n_agents)

    def prior_or_other(j, space, params, is_ego):  # uniform prior for the ego's own action, pi_j (fixed) otherwise
        return space.prior_site(params.detach(), is_ego, estimator, per_agent(relax, j))

    unroll(world, policies, egos, prior_or_other, lambda ll: Optimality(ll / alpha))
