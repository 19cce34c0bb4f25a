"""Exact (enumeration-based) reference quantities for tabular Markov games.

All expectations below are under the structured variational distribution of
Eq. 4,

    q(tau) = p(s_0) prod_t prod_j pi_j(a_j^t | s_t) prod_{t<H-1} p(s_{t+1} | s_t, a_t),

and are computed exactly by propagating state marginals forward and values
backward, so they serve as ground truth for the stochastic estimators
(Pyro's ``Trace_ELBO``, MA-SAC critics) elsewhere in the package.
"""

import math

import torch

from pgm_marl.models.tabular import validate_policies


def _check_agent(game, agent):
    if isinstance(agent, bool) or not isinstance(agent, int) or not 0 <= agent < game.n_agents:
        raise ValueError(f"agent must be an int in [0, {game.n_agents}); got {agent!r}")


def _check_positive(name, value):
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite positive number; got {value!r}")


def joint_policy_table(policies):
    """Joint policy ``pi(a | s) = prod_j pi_j(a_j | s)`` as a ``[S, A_1, ..., A_n]`` table."""
    joint = policies[0]
    for pi in policies[1:]:
        joint = joint.unsqueeze(-1) * pi.reshape((pi.shape[0],) + (1,) * (joint.dim() - 1) + pi.shape[1:])
    return joint


def _neg_entropy(pi):
    """``sum_a pi(a|s) log pi(a|s)`` per state, with ``0 log 0 = 0``."""
    return torch.xlogy(pi, pi).sum(-1)


def _state_kernel(game, joint):
    """``P_pi(s' | s) = sum_a pi(a | s) p(s' | s, a)`` as an ``[S, S]`` matrix."""
    S = game.n_states
    return (joint.reshape(S, -1, 1) * game.transition.reshape(S, -1, S)).sum(1)


def state_marginals(game, policies):
    """State marginals ``d_t(s) = q(s_t = s)`` for ``t = 0, ..., H - 1``.

    ``d_0 = p(s_0)`` and ``d_{t+1}(s') = sum_s d_t(s) sum_a pi(a | s) p(s' | s, a)``.

    :returns: tensor of shape ``[H, S]``.
    """
    validate_policies(game, policies)
    kernel = _state_kernel(game, joint_policy_table(policies))
    d = game.initial.to(kernel.dtype)
    marginals = [d]
    for _ in range(game.horizon - 1):
        d = d @ kernel
        marginals.append(d)
    return torch.stack(marginals)


def exact_elbo_terms(game, policies, agent, alpha=1.0):
    """Named terms of agent ``i``'s ELBO (Eq. 5, keeping the uniform prior):

    * ``log_likelihood`` = ``E_q[sum_t r_i(s_t, a_t)] / alpha`` (log-likelihood of ``o_i = 1``, Eq. 3),
    * ``log_prior`` = ``H log(1 / A_i)`` (uniform action prior ``p(a_i)``),
    * ``log_policy`` = ``E_q[sum_t log pi_i(a_i^t | s_t)]`` (minus the summed entropy),

    so that ``ELBO_i = log_likelihood + log_prior - log_policy`` (the names of
    :func:`~pgm_marl.inference.elbo.elbo_particles`).
    """
    _check_agent(game, agent)
    _check_positive("alpha", alpha)
    d = state_marginals(game, policies)  # [H, S]
    visits = d.sum(0)  # sum_t d_t(s)
    joint = joint_policy_table(policies)
    S = game.n_states
    expected_reward = (joint * game.rewards[agent]).reshape(S, -1).sum(-1)  # E_{a~pi}[r_i(s, a)]
    log_likelihood = (visits * expected_reward).sum() / alpha
    log_policy = (visits * _neg_entropy(policies[agent])).sum()
    log_prior = torch.tensor(-game.horizon * math.log(game.action_sizes[agent]), dtype=log_likelihood.dtype)
    return {"log_likelihood": log_likelihood, "log_prior": log_prior, "log_policy": log_policy}


def exact_elbo(game, policies, agent, alpha=1.0):
    """Eq. 5: ``ELBO_i = E_q[sum_t (r_i(s_t, a_t) / alpha + log(1 / A_i) - log pi_i(a_i^t | s_t))]``.

    Equals ``E_q[log p(tau, o_i = 1) - log q(tau)]`` exactly (the uniform prior term
    is kept), differentiable with respect to the policy tables.
    """
    terms = exact_elbo_terms(game, policies, agent, alpha)
    return terms["log_likelihood"] + terms["log_prior"] - terms["log_policy"]


def _soft_q_and_value(game, policies, agent, gamma, alpha):
    _check_agent(game, agent)
    _check_positive("alpha", alpha)
    if not (isinstance(gamma, (int, float)) and 0 <= gamma <= 1):
        raise ValueError(f"gamma must be a number in [0, 1]; got {gamma!r}")
    validate_policies(game, policies)
    S = game.n_states
    joint = joint_policy_table(policies)
    reward = game.rewards[agent]
    neg_ent = _neg_entropy(policies[agent])

    def value(q):
        return (joint * q).reshape(S, -1).sum(-1) - alpha * neg_ent

    q = reward
    qs, vs = [q], [value(q)]
    for _ in range(game.horizon - 1):
        q = reward + gamma * (game.transition @ vs[-1])
        qs.append(q)
        vs.append(value(q))
    return torch.stack(qs[::-1]), torch.stack(vs[::-1])


def exact_soft_q(game, policies, agent, gamma=1.0, alpha=1.0):
    """Soft Q-function of agent ``i`` by backward recursion (Eq. 7 with discount, Sec. 4.3):

        Q_i^{H-1}(s, a) = r_i(s, a),
        Q_i^t(s, a) = r_i(s, a) + gamma E_{s' ~ p(.|s,a)} E_{a' ~ pi(.|s')}
                      [Q_i^{t+1}(s', a') - alpha log pi_i(a'_i | s')].

    :returns: tensor of shape ``[H, S, A_1, ..., A_n]``.
    """
    return _soft_q_and_value(game, policies, agent, gamma, alpha)[0]


def exact_soft_value(game, policies, agent, gamma=1.0, alpha=1.0):
    """Soft value ``V_i^t(s) = E_{a ~ pi(.|s)}[Q_i^t(s, a) - alpha log pi_i(a_i | s)]``.

    For ``gamma = 1``: ``E_{s_0}[V_i^0(s_0)] / alpha + H log(1 / A_i) = ELBO_i``.

    :returns: tensor of shape ``[H, S]``.
    """
    return _soft_q_and_value(game, policies, agent, gamma, alpha)[1]


def soft_best_response(game, policies, agent, alpha=1.0):
    """Maximizer of ``ELBO_i`` over ``pi_i`` in a one-step game (``H = 1``), others fixed:

        pi_i(a_i | s) propto exp(E_{a_-i ~ pi_-i(.|s)}[r_i(s, a)] / alpha),

    attaining ``ELBO_i = E_{s_0}[log sum_{a_i} (1 / A_i) exp(E_{a_-i}[r_i(s_0, a)] / alpha)]``.

    :returns: tensor of shape ``[S, A_i]``.
    """
    if game.horizon != 1:
        raise ValueError(
            f"soft_best_response is closed-form only for one-step games (horizon 1); got horizon {game.horizon}"
        )
    _check_agent(game, agent)
    _check_positive("alpha", alpha)
    validate_policies(game, policies)
    # E_{a_-i}[r_i(s, a_i, a_-i)]: replace pi_i by ones so that only a_i stays free.
    others = list(policies)
    others[agent] = torch.ones_like(policies[agent])
    weighted = joint_policy_table(others) * game.rewards[agent]
    dims = [1 + j for j in range(game.n_agents) if j != agent]
    marginal_reward = weighted.sum(dims) if dims else weighted
    return torch.softmax(marginal_reward / alpha, dim=-1)


def _others_table(policies, agent):
    """``pi_{-i}(a_{-i} | s) = prod_{j != i} pi_j(a_j | s)`` as an ``[S, *A_{-i}]`` table (agent i's axis removed)."""
    others = [pi for j, pi in enumerate(policies) if j != agent]
    return joint_policy_table(others) if others else torch.ones(policies[agent].shape[0], dtype=policies[agent].dtype)


def exact_optimistic_elbo_terms(game, policies, agent, imagined, conditional, alpha=1.0):
    """Named terms of agent ``i``'s ELBO (Eq. 5) under the optimistic guide of
    :mod:`pgm_marl.models.optimistic_guide`, by enumeration:

        q(tau) = p(s_0) prod_t q_i(a_{-i}^t | s_t) pi_i(a_i^t | s_t, a_{-i}^t) prod_{t<H-1} p(s_{t+1} | s_t, a_t),

    the model being Eq. 2-3's (a_j ~ ``policies[j]`` for j != i, a_i uniform):

    * ``log_likelihood``, ``log_prior``: as :func:`exact_elbo_terms`, under this guide's state-action marginals;
    * ``log_policy`` = ``E_q[sum_t log pi_i(a_i^t | s_t, a_{-i}^t)]``;
    * ``log_others`` = ``E_q[sum_t log pi_{-i}(a_{-i}^t | s_t) - log q_i(a_{-i}^t | s_t)]``, i.e. minus the
      expected ``KL(q_i || pi_{-i})`` (the ``env`` term of :func:`~pgm_marl.inference.elbo.elbo_particles`, which
      is 0 for the factorized guide),

    so that ``ELBO_i = log_likelihood + log_prior - log_policy + log_others``.

    :param imagined: ``q_i(a_{-i} | s)`` as an ``[S, *A_{-i}]`` table (the others' axes in agent order).
    :param conditional: ``pi_i(a_i | s, a_{-i})`` as an ``[S, A_1, ..., A_n]`` table, normalized along agent i's
        axis.
    """
    _check_agent(game, agent)
    _check_positive("alpha", alpha)
    validate_policies(game, policies)
    S = game.n_states
    guide = imagined.unsqueeze(1 + agent) * conditional  # q(a | s) = q_i(a_{-i} | s) pi_i(a_i | s, a_{-i})
    prior = _others_table(policies, agent).unsqueeze(1 + agent)
    kernel = _state_kernel(game, guide)
    d = game.initial.to(kernel.dtype)
    visits = d.clone()
    for _ in range(game.horizon - 1):
        d = d @ kernel
        visits = visits + d
    per_state = lambda x: (visits * x.reshape(S, -1).sum(-1)).sum()  # noqa: E731
    log_likelihood = per_state(guide * game.rewards[agent]) / alpha
    log_policy = per_state(torch.xlogy(guide, conditional))
    log_others = per_state(torch.xlogy(guide, prior) - torch.xlogy(guide, imagined.unsqueeze(1 + agent)))
    log_prior = torch.tensor(-game.horizon * math.log(game.action_sizes[agent]), dtype=log_likelihood.dtype)
    return {"log_likelihood": log_likelihood, "log_prior": log_prior, "log_policy": log_policy,
            "log_others": log_others}


def exact_optimistic_elbo(game, policies, agent, imagined, conditional, alpha=1.0):
    """Eq. 5 under the optimistic guide: ``log_likelihood + log_prior - log_policy + log_others`` of
    :func:`exact_optimistic_elbo_terms` (differentiable in ``imagined`` and ``conditional``)."""
    t = exact_optimistic_elbo_terms(game, policies, agent, imagined, conditional, alpha)
    return t["log_likelihood"] + t["log_prior"] - t["log_policy"] + t["log_others"]


def optimistic_optimum(game, policies, agent, alpha=1.0):
    """The optimistic guide's maximum of ``ELBO_i`` in a one-step game (``H = 1``), the others' policies fixed:

        pi_i*(a_i | s, a_{-i}) propto exp(r_i(s, a) / alpha)                          = p(a_i | s, a_{-i}, o_i = 1),
        q_i*(a_{-i} | s) propto pi_{-i}(a_{-i} | s) sum_{a_i} p(a_i) exp(r_i(s, a) / alpha) = p(a_{-i} | s, o_i = 1),

    at which ``ELBO_i = E_{s_0}[log p(o_i = 1 | s_0)]``: the guide family holds the posterior over the actions
    (not over s_0, which the guide keeps at p(s_0)), so the bound is tight whenever s_0 is fixed.

    :returns: dict with ``imagined`` ``[S, *A_{-i}]``, ``conditional`` ``[S, *A]`` (the optimum, in the format of
        :func:`exact_optimistic_elbo`), ``elbo`` = ``E_{s_0}[log p(o_i = 1 | s_0)]`` (its value) and
        ``log_evidence`` = ``log p(o_i = 1)`` (equal to ``elbo`` when s_0 is fixed).
    """
    if game.horizon != 1:
        raise ValueError(f"optimistic_optimum is closed-form only for one-step games (horizon 1); got horizon "
                         f"{game.horizon}")
    _check_agent(game, agent)
    _check_positive("alpha", alpha)
    validate_policies(game, policies)
    logits = game.rewards[agent] / alpha  # [S, A_1..A_n]
    conditional = torch.softmax(logits, dim=1 + agent)
    marginal = torch.logsumexp(logits, dim=1 + agent) - math.log(game.action_sizes[agent])  # [S, *A_{-i}]
    log_joint = _others_table(policies, agent).log() + marginal
    others_dims = tuple(range(1, log_joint.dim()))
    log_evidence_s = torch.logsumexp(log_joint, dim=others_dims) if others_dims else log_joint
    shape = (-1,) + (1,) * len(others_dims)
    imagined = (log_joint - log_evidence_s.reshape(shape)).exp()
    initial = game.initial.to(log_evidence_s.dtype)
    return {"imagined": imagined, "conditional": conditional, "elbo": (initial * log_evidence_s).sum(),
            "log_evidence": torch.logsumexp(initial.log() + log_evidence_s, 0)}
