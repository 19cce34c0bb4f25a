"""Exact ELBO / soft-Q references checked against independent brute-force enumeration."""

import itertools
import math

import pytest
import torch

from pgm_marl.inference.exact import (
    exact_elbo,
    exact_elbo_terms,
    exact_soft_q,
    exact_soft_value,
    joint_policy_table,
    soft_best_response,
    state_marginals,
)
from pgm_marl.models.tabular import TabularMarkovGame, random_policies, validate_policies

F64 = torch.float64
# (n_states, action_sizes, horizon)
GAMES = [(3, (2, 3), 2), (3, (2, 3), 3), (3, (3, 2, 2), 2), (4, (3, 2), 2)]
SEEDS = [0, 1, 2]


def make(n_states, action_sizes, horizon, seed, reward_scale=2.0):
    game = TabularMarkovGame.random(n_states, action_sizes, horizon, seed, reward_scale=reward_scale, dtype=F64)
    return game, random_policies(game, seed + 100)


def _lookup(nested, index):
    for k in index:
        nested = nested[k]
    return nested


class Tables:
    """Plain nested-list copies of a game, for loops written straight from the definitions."""

    def __init__(self, game, policies):
        self.p0 = game.initial.tolist()
        self.P = game.transition.tolist()
        self.r = game.rewards.tolist()
        self.pi = [p.detach().tolist() for p in policies]
        self.S, self.H, self.sizes = game.n_states, game.horizon, game.action_sizes
        self.joint_actions = list(itertools.product(*[range(A) for A in self.sizes]))

    def trans(self, s, a, s2):
        return _lookup(self.P, (s,) + a + (s2,))

    def rew(self, i, s, a):
        return _lookup(self.r, (i, s) + a)

    def pi_joint(self, s, a):
        return math.prod(self.pi[j][s][aj] for j, aj in enumerate(a))

    def trajectories(self):
        """Yield (states, actions) for all trajectories of H decision steps."""
        steps = [range(self.S), self.joint_actions] * self.H
        for flat in itertools.product(*steps):
            yield flat[0::2], flat[1::2]


def brute_force_elbo(game, policies, agent, alpha):
    """sum_tau q(tau) [log p(tau, o_i = 1) - log q(tau)] over all trajectories."""
    T = Tables(game, policies)
    elbo = 0.0
    for states, actions in T.trajectories():
        log_q = math.log(T.p0[states[0]]) if T.p0[states[0]] > 0 else -math.inf
        log_p = log_q
        for t, (s, a) in enumerate(zip(states, actions)):
            for j, aj in enumerate(a):
                lp = math.log(T.pi[j][s][aj]) if T.pi[j][s][aj] > 0 else -math.inf
                log_q += lp
                log_p += -math.log(T.sizes[j]) if j == agent else lp
            log_p += T.rew(agent, s, a) / alpha
            if t + 1 < T.H:
                pr = T.trans(s, a, states[t + 1])
                lt = math.log(pr) if pr > 0 else -math.inf
                log_q, log_p = log_q + lt, log_p + lt
        if log_q > -math.inf:
            elbo += math.exp(log_q) * (log_p - log_q)
    return elbo


def brute_force_log_evidence(game, policies, agent, alpha):
    """log p(o_i^{0:H-1} = 1) in agent i's MDP (Eq. 2) with the uniform prior on a_i."""
    T = Tables(game, policies)
    total = 0.0
    for states, actions in T.trajectories():
        w = T.p0[states[0]]
        for t, (s, a) in enumerate(zip(states, actions)):
            for j, aj in enumerate(a):
                w *= 1.0 / T.sizes[j] if j == agent else T.pi[j][s][aj]
            w *= math.exp(T.rew(agent, s, a) / alpha)
            if t + 1 < T.H:
                w *= T.trans(s, a, states[t + 1])
        total += w
    return math.log(total)


def brute_force_soft_q(game, policies, agent, gamma, alpha, t, s, a):
    """Q^t(s, a) by enumerating all continuations (s_{t+1}, a_{t+1}, ..., s_{H-1}, a_{H-1})."""
    T = Tables(game, policies)
    k_steps = T.H - 1 - t
    total = T.rew(agent, s, a)
    steps = [range(T.S), T.joint_actions] * k_steps
    for flat in itertools.product(*steps):
        states, actions = flat[0::2], flat[1::2]
        prob, ret, prev_s, prev_a = 1.0, 0.0, s, a
        for k, (s2, a2) in enumerate(zip(states, actions), start=1):
            prob *= T.trans(prev_s, prev_a, s2) * T.pi_joint(s2, a2)
            p_i = T.pi[agent][s2][a2[agent]]
            ret += gamma**k * (T.rew(agent, s2, a2) - alpha * (math.log(p_i) if p_i > 0 else 0.0))
            prev_s, prev_a = s2, a2
        total += prob * ret
    return total


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_states,action_sizes,horizon", GAMES)
def test_elbo_matches_brute_force(n_states, action_sizes, horizon, seed):
    game, policies = make(n_states, action_sizes, horizon, seed)
    alpha = [1.0, 0.5, 2.0][seed]
    for agent in range(game.n_agents):
        expected = brute_force_elbo(game, policies, agent, alpha)
        actual = exact_elbo(game, policies, agent, alpha)
        assert actual.dtype == F64
        assert actual.item() == pytest.approx(expected, abs=1e-9, rel=1e-9)
        terms = exact_elbo_terms(game, policies, agent, alpha)
        assert set(terms) == {"log_likelihood", "log_prior", "log_policy"}
        elbo = terms["log_likelihood"] + terms["log_prior"] - terms["log_policy"]
        assert elbo.item() == pytest.approx(actual.item())
        assert terms["log_prior"].item() == pytest.approx(-horizon * math.log(action_sizes[agent]))
        # ELBO is a lower bound on the log evidence of agent i's MDP.
        assert actual.item() <= brute_force_log_evidence(game, policies, agent, alpha) + 1e-12


def test_elbo_with_zero_probabilities():
    game, policies = make(3, (3, 2), 3, 5)
    policies[0] = torch.tensor([[0.0, 0.3, 0.7], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0]], dtype=F64)
    policies[1] = torch.tensor([[1.0, 0.0], [0.2, 0.8], [0.0, 1.0]], dtype=F64)
    for agent in range(2):
        actual = exact_elbo(game, policies, agent)
        assert torch.isfinite(actual)
        assert actual.item() == pytest.approx(brute_force_elbo(game, policies, agent, 1.0), abs=1e-9)
        assert torch.isfinite(exact_soft_q(game, policies, agent, 0.9, 0.5)).all()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_states,action_sizes,horizon", GAMES)
@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_elbo_equals_initial_soft_value(n_states, action_sizes, horizon, seed, alpha):
    game, policies = make(n_states, action_sizes, horizon, seed)
    for agent in range(game.n_agents):
        q0 = exact_soft_q(game, policies, agent, gamma=1.0, alpha=alpha)[0]
        joint = joint_policy_table(policies)
        log_pi = policies[agent].log().reshape((n_states,) + tuple(
            A if j == agent else 1 for j, A in enumerate(action_sizes)))
        per_state = (joint * (q0 - alpha * log_pi)).reshape(n_states, -1).sum(-1)
        via_q = (game.initial * per_state).sum() / alpha - horizon * math.log(action_sizes[agent])
        elbo = exact_elbo(game, policies, agent, alpha)
        assert elbo.item() == pytest.approx(via_q.item(), abs=1e-6)
        v0 = exact_soft_value(game, policies, agent, gamma=1.0, alpha=alpha)[0]
        assert torch.allclose(v0, per_state, atol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_states,action_sizes,horizon", [(3, (2, 3), 3), (3, (3, 2, 2), 2)])
def test_soft_q_matches_enumeration(n_states, action_sizes, horizon, seed):
    game, policies = make(n_states, action_sizes, horizon, seed)
    gamma, alpha = 0.9, [1.0, 0.5, 0.2][seed]
    T = Tables(game, policies)
    for agent in range(game.n_agents):
        q = exact_soft_q(game, policies, agent, gamma=gamma, alpha=alpha)
        assert q.shape == (horizon, n_states) + action_sizes
        assert torch.equal(q[-1], game.rewards[agent])
        for t in range(horizon - 1):
            for s in range(n_states):
                for a in T.joint_actions:
                    expected = brute_force_soft_q(game, policies, agent, gamma, alpha, t, s, a)
                    assert q[(t, s) + a].item() == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize("seed", SEEDS)
def test_state_marginals(seed):
    game, policies = make(4, (3, 2), 3, seed)
    d = state_marginals(game, policies)
    assert d.shape == (3, 4)
    assert torch.allclose(d.sum(-1), torch.ones(3, dtype=F64))
    T = Tables(game, policies)
    d1 = [sum(T.p0[s] * T.pi_joint(s, a) * T.trans(s, a, s2) for s in range(4) for a in T.joint_actions)
          for s2 in range(4)]
    assert d[1].tolist() == pytest.approx(d1, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_elbo_gradient_matches_finite_differences(seed):
    game, _ = make(3, (2, 3), 3, seed)
    gen = torch.Generator().manual_seed(seed)
    logits = [torch.randn(3, A, generator=gen, dtype=F64) for A in game.action_sizes]

    def f(lg):
        return exact_elbo(game, [x.softmax(-1) for x in lg], agent=1, alpha=0.5)

    params = [x.clone().requires_grad_() for x in logits]
    grads = torch.autograd.grad(f(params), params)
    eps = 1e-6
    for k, x in enumerate(logits):
        for idx in itertools.product(*[range(d) for d in x.shape]):
            plus = [y.clone() for y in logits]
            minus = [y.clone() for y in logits]
            plus[k][idx] += eps
            minus[k][idx] -= eps
            fd = (f(plus) - f(minus)).item() / (2 * eps)
            assert grads[k][idx].item() == pytest.approx(fd, abs=1e-7)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_states,action_sizes,horizon", GAMES)
def test_soft_policy_gradient_identity(n_states, action_sizes, horizon, seed):
    """d ELBO_i / d pi_i(b|s) = sum_t d_t(s) (E_{a_-i}[Q^t(s, b, a_-i)] - alpha (log pi_i(b|s) + 1)) / alpha."""
    game, policies = make(n_states, action_sizes, horizon, seed)
    alpha = 0.7
    for agent in range(game.n_agents):
        pols = [p.clone().requires_grad_(j == agent) for j, p in enumerate(policies)]
        (grad,) = torch.autograd.grad(exact_elbo(game, pols, agent, alpha), pols[agent])
        q = exact_soft_q(game, policies, agent, 1.0, alpha)
        others = list(policies)
        others[agent] = torch.ones_like(policies[agent])
        weighted = joint_policy_table(others) * q  # [H, S, A...]
        dims = [2 + j for j in range(game.n_agents) if j != agent]
        q_i = weighted.sum(dims)  # [H, S, A_i]
        d = state_marginals(game, policies)
        expected = (d.unsqueeze(-1) * (q_i - alpha * (policies[agent].log() + 1))).sum(0) / alpha
        assert torch.allclose(grad, expected, atol=1e-10)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("action_sizes", [(2, 3), (3, 2, 2)])
@pytest.mark.parametrize("alpha", [1.0, 0.3])
def test_soft_best_response_maximizes_one_step_elbo(action_sizes, seed, alpha):
    game, policies = make(4, action_sizes, 1, seed, reward_scale=3.0)
    T = Tables(game, policies)
    gen = torch.Generator().manual_seed(seed)
    for agent in range(game.n_agents):
        br = soft_best_response(game, policies, agent, alpha)
        validate_policies(game, [br if j == agent else p for j, p in enumerate(policies)])
        # E_{s0}[log sum_{a_i} (1/A_i) exp(E_{a_-i}[r_i(s0, a)] / alpha)], by explicit loops.
        bound = 0.0
        for s in range(game.n_states):
            inner = 0.0
            for ai in range(action_sizes[agent]):
                mean_r = sum(
                    T.pi_joint(s, a) / T.pi[agent][s][ai] * T.rew(agent, s, a)
                    for a in T.joint_actions if a[agent] == ai
                )
                inner += math.exp(mean_r / alpha) / action_sizes[agent]
            bound += T.p0[s] * math.log(inner)
        at_br = exact_elbo(game, [br if j == agent else p for j, p in enumerate(policies)], agent, alpha)
        assert at_br.item() == pytest.approx(bound, abs=1e-8)
        assert bound <= brute_force_log_evidence(game, policies, agent, alpha) + 1e-12
        for _ in range(5):
            noise = torch.rand(br.shape, generator=gen, dtype=F64)
            perturbed = 0.9 * br + 0.1 * noise / noise.sum(-1, keepdim=True)
            other = exact_elbo(game, [perturbed if j == agent else p for j, p in enumerate(policies)], agent, alpha)
            assert other.item() < at_br.item()


def test_soft_best_response_requires_one_step():
    game, policies = make(3, (2, 3), 2, 0)
    with pytest.raises(ValueError, match="horizon 2"):
        soft_best_response(game, policies, 0)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("action_sizes", [(2, 3), (3, 2, 2)])
def test_reward_and_transition_multilinear(action_sizes, seed):
    game, _ = make(3, action_sizes, 2, seed)
    gen = torch.Generator().manual_seed(seed)
    batch = (5, 4)
    s = torch.randint(3, batch, generator=gen)
    idx = [torch.randint(A, batch, generator=gen) for A in action_sizes]
    onehot = [torch.nn.functional.one_hot(i, A).to(F64) for i, A in zip(idx, action_sizes)]
    r = game.reward(s, onehot)
    p = game.transition_probs(s, onehot)
    assert r.shape == batch + (game.n_agents,) and p.shape == batch + (3,)
    assert torch.equal(r, game.rewards[(slice(None), s) + tuple(idx)].movedim(0, -1))
    assert torch.equal(p, game.transition[(s,) + tuple(idx)])

    relaxed = [torch.rand(batch + (A,), generator=gen, dtype=F64).softmax(-1) for A in action_sizes]
    r = game.reward(s, relaxed)
    p = game.transition_probs(s, relaxed)
    for b in itertools.product(*[range(n) for n in batch]):
        si = s[b].item()
        exp_r = torch.zeros(game.n_agents, dtype=F64)
        exp_p = torch.zeros(3, dtype=F64)
        for a in itertools.product(*[range(A) for A in action_sizes]):
            w = math.prod(relaxed[j][b][aj].item() for j, aj in enumerate(a))
            exp_r += w * game.rewards[(slice(None), si) + a]
            exp_p += w * game.transition[(si,) + a]
        assert torch.allclose(r[b], exp_r, atol=1e-12)
        assert torch.allclose(p[b], exp_p, atol=1e-12)
    # broadcasting batch dims, as under Pyro enumeration
    r_b = game.reward(torch.arange(3).reshape(3, 1, 1), [x[None] for x in relaxed])
    assert r_b.shape == (3,) + batch + (game.n_agents,)


def test_random_game_properties():
    game = TabularMarkovGame.random(5, (3, 2, 4), 4, seed=7, reward_scale=0.5, dtype=F64)
    assert (game.n_agents, game.n_states, game.action_sizes, game.horizon) == (3, 5, (3, 2, 4), 4)
    assert game.dtype == F64
    assert (game.rewards <= 0).all() and (game.rewards >= -0.5).all()
    again = TabularMarkovGame.random(5, (3, 2, 4), 4, seed=7, reward_scale=0.5, dtype=F64)
    assert torch.equal(game.transition, again.transition) and torch.equal(game.rewards, again.rewards)
    pols = random_policies(game, 3)
    assert [tuple(p.shape) for p in pols] == [(5, 3), (5, 2), (5, 4)]
    validate_policies(game, pols)


def _valid_parts():
    game = TabularMarkovGame.random(3, (2, 3), 2, seed=0, dtype=F64)
    return game.initial.clone(), game.transition.clone(), game.rewards.clone()


def test_validation_errors():
    init, trans, rew = _valid_parts()
    with pytest.raises(ValueError, match=r"initial must have shape \[S\].*\(3, 1\)"):
        TabularMarkovGame(init[:, None], trans, rew, 2)
    with pytest.raises(ValueError, match=r"transition must have shape.*\(3, 2, 3, 2\)"):
        TabularMarkovGame(init, trans[..., :2], rew, 2)
    with pytest.raises(ValueError, match=r"rewards must have shape.*\(2, 3, 3, 2\)"):
        TabularMarkovGame(init, trans, rew.transpose(-1, -2), 2)
    with pytest.raises(ValueError, match=r"initial entries must sum to 1.*1\.5"):
        TabularMarkovGame(init * 1.5, trans, rew, 2)
    bad = trans.clone()
    bad[0, 0, 0, 0] += 0.25
    with pytest.raises(ValueError, match=r"transition rows.*must sum to 1.*1\.25 at index \(0, 0, 0\)"):
        TabularMarkovGame(init, bad, rew, 2)
    neg = init.clone()
    neg[0], neg[1] = -0.125, neg[1] + neg[0] + 0.125
    with pytest.raises(ValueError, match=r"nonnegative.*-0\.125"):
        TabularMarkovGame(neg, trans, rew, 2)
    pos = rew.clone()
    pos[1, 2, 1, 0] = 0.75
    with pytest.raises(ValueError, match=r"<= 0.*0\.75.*shift rewards by their max"):
        TabularMarkovGame(init, trans, pos, 2)
    nan = rew.clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        TabularMarkovGame(init, trans, nan, 2)
    for h in (0, -3, 2.0):
        with pytest.raises(ValueError, match=rf"horizon must be a positive int.*{h!r}"):
            TabularMarkovGame(init, trans, rew, h)


def test_policy_validation_errors():
    game, policies = make(3, (2, 3), 2, 0)
    with pytest.raises(ValueError, match="expected 2 policies.*got 1"):
        validate_policies(game, policies[:1])
    with pytest.raises(ValueError, match=r"policies\[1\] must have shape.*\(3, 3\).*\(3, 2\)"):
        validate_policies(game, [policies[0], policies[1][:, :2]])
    with pytest.raises(ValueError, match=r"policies\[0\] rows.*must sum to 1.*2"):
        exact_elbo(game, [policies[0] * 2, policies[1]], 0)
    with pytest.raises(ValueError, match=r"agent must be an int in \[0, 2\); got 2"):
        exact_elbo(game, policies, 2)
    with pytest.raises(ValueError, match=r"alpha must be a finite positive number; got 0"):
        exact_elbo(game, policies, 0, alpha=0)
    with pytest.raises(ValueError, match=r"gamma must be a number in \[0, 1\]; got 1\.5"):
        exact_soft_q(game, policies, 0, gamma=1.5)
