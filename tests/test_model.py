"""Pyro model (Figure 1, eq. 2-3) + guide (eq. 4): the ELBO Pyro builds equals exact enumeration (eq. 5)."""
import pyro
import pytest
import torch

from pgm_marl.inference.elbo import elbo_estimate, elbo_loss, elbo_particles, temper_actions
from pgm_marl.inference.exact import exact_elbo, exact_elbo_terms, exact_soft_q
from pgm_marl.models.agent_mdp import agent_model
from pgm_marl.models.guide import policy_guide
from pgm_marl.models.tabular import TabularMarkovGame, random_policies
from pgm_marl.models.worlds import TabularPolicies, TabularWorld

GAMES = [((3, (2, 3), 3), 1), ((4, (3, 2), 2), 2), ((3, (2, 3, 2), 2), 3)]


@pytest.fixture(autouse=True)
def _float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def _setup(shape, seed):
    game = TabularMarkovGame.random(*shape, seed=seed)
    return game, random_policies(game, seed=seed + 100)


@pytest.mark.parametrize("estimator", ["score", "reparam"])
@pytest.mark.parametrize("shape,seed", GAMES)
def test_pyro_elbo_matches_exact_enumeration(shape, seed, estimator):
    """Trace-based estimate of eq. 5 within 4 standard errors of exact enumeration, for every ego at once."""
    pyro.set_rng_seed(seed)
    game, pols = _setup(shape, seed)
    relax = 1.0 if estimator == "score" else 0.02  # the relaxed ELBO tends to the discrete one as relax -> 0
    mean, se = elbo_estimate(agent_model, policy_guide, TabularWorld(game), TabularPolicies(pols), None, 0.7,
                             estimator, relax, num_particles=40000)
    exact = torch.stack([exact_elbo(game, pols, i, alpha=0.7) for i in range(game.n_agents)])
    tol = 4 * se + (0.0 if estimator == "score" else 0.02 * exact.abs())
    assert torch.all((mean - exact).abs() < tol), (mean, exact, se)


def test_named_terms_match_exact_terms_and_env_cancels():
    pyro.set_rng_seed(0)
    game, pols = _setup((3, (2, 3), 3), 1)
    terms = elbo_particles(agent_model, policy_guide, TabularWorld(game), TabularPolicies(pols), 1, 1.0, "score",
                           num_particles=40000)
    exact = exact_elbo_terms(game, pols, 1)
    assert torch.allclose(terms["env"], torch.zeros(()), atol=1e-10)  # dynamics, s_0, a_{-i}: identical in p and q
    for name in ("log_likelihood", "log_prior", "log_policy"):
        mc = terms[name][:, 0]
        assert abs(mc.mean() - exact[name]) < 4 * mc.std() / 200 + 1e-12, name


@pytest.mark.parametrize("shape,seed", GAMES[:2])
def test_elbo_is_expected_soft_q_at_t0(shape, seed):
    """gamma = 1: ELBO_i = E_{s0,a0}[Q_i^0 - alpha log pi_i] / alpha + H log(1/A_i) (eq. 5-7), to 1e-6."""
    game, pols = _setup(shape, seed)
    alpha = 0.5
    for i in range(game.n_agents):
        q0 = exact_soft_q(game, pols, i, gamma=1.0, alpha=alpha)[0]  # [S, A_1..A_n]
        joint = pols[0]
        for p in pols[1:]:
            joint = joint.unsqueeze(-1) * p.reshape(p.shape[0], *([1] * (joint.dim() - 1)), p.shape[1])
        log_pi_i = pols[i].log().reshape(pols[i].shape[0], *[pols[i].shape[1] if j == i else 1 for j in range(game.n_agents)])
        v0 = (joint * (q0 - alpha * log_pi_i)).flatten(1).sum(-1)
        expected = (game.initial * v0).sum() / alpha + game.horizon * torch.log(torch.tensor(1.0 / game.action_sizes[i]))
        assert torch.allclose(exact_elbo(game, pols, i, alpha=alpha), expected, atol=1e-6)


def _fd_grad(game, logits, agent, eps=1e-6):
    grad = torch.zeros_like(logits[agent])
    for idx in range(grad.numel()):
        for sign in (1, -1):
            moved = [l.clone() for l in logits]
            moved[agent].view(-1)[idx] += sign * eps
            grad.view(-1)[idx] += sign * exact_elbo(game, [l.softmax(-1) for l in moved], agent) / (2 * eps)
    return grad


def _mc_grad(game, logits, agent, estimator, relax, reps=8, particles=20000):
    grads = []
    for _ in range(reps):
        params = [l.clone().requires_grad_(True) for l in logits]
        loss = elbo_loss(agent_model, policy_guide, TabularWorld(game), TabularPolicies(params, logits=True), agent,
                         1.0, estimator, relax, num_particles=particles)
        grads.append(-torch.autograd.grad(loss, params[agent])[0])
    grads = torch.stack(grads)
    return grads.mean(0), grads.std(0) / reps ** 0.5


@pytest.mark.parametrize("seed", [1, 2])
def test_score_function_gradient_matches_finite_differences(seed):
    pyro.set_rng_seed(seed)
    game, pols = _setup((3, (2, 3), 2), seed)
    logits = [p.log() for p in pols]
    for agent in (0, 1):
        fd = _fd_grad(game, logits, agent)
        mc, se = _mc_grad(game, logits, agent, "score", 1.0)
        assert torch.all((mc - fd).abs() < 4 * se + 1e-9), (mc, fd, se)


def test_reparameterized_gradient_converges_to_finite_differences():
    """The relaxed (Gumbel-softmax) pathwise gradient is biased by O(relax); it reaches the exact one as relax -> 0."""
    pyro.set_rng_seed(0)
    game, pols = _setup((3, (2, 3), 2), 1)
    logits = [p.log() for p in pols]
    fd = _fd_grad(game, logits, 0)
    errors = []
    for relax in (1.0, 0.3, 0.05):
        mc, se = _mc_grad(game, logits, 0, "reparam", relax)
        errors.append(((mc - fd).abs() - 4 * se).clamp(min=0).max())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.05 * fd.abs().max()


def test_other_agents_get_no_gradient_from_elbo_i():
    game, pols = _setup((3, (2, 3, 2), 2), 3)
    params = [p.log().clone().requires_grad_(True) for p in pols]
    for estimator in ("score", "reparam"):
        loss = elbo_loss(agent_model, policy_guide, TabularWorld(game), TabularPolicies(params, logits=True), 1,
                         1.0, estimator, num_particles=500)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        assert grads[1] is not None and grads[1].abs().sum() > 0
        assert all(g is None or torch.all(g == 0) for j, g in enumerate(grads) if j != 1)


def test_elbo_is_maximal_at_soft_best_response_in_one_step_game():
    """One step: max over pi_i of ELBO_i = E_s0 log sum_a (1/A) exp(E_{a-i} r / alpha), reached at pi ~ exp(Q/alpha)."""
    from pgm_marl.inference.exact import soft_best_response

    pyro.set_rng_seed(0)
    game, pols = _setup((3, (3, 2), 1), 4)
    alpha = 0.4
    br = soft_best_response(game, pols, 0, alpha=alpha)
    pols_br = [br, pols[1]]
    mean_r = torch.einsum("sab,sb->sa", game.rewards[0], pols[1])
    best = (game.initial * torch.logsumexp(mean_r / alpha - torch.log(torch.tensor(3.0)), -1)).sum()
    mean, se = elbo_estimate(agent_model, policy_guide, TabularWorld(game), TabularPolicies(pols_br), 0, alpha, "score",
                             num_particles=40000)
    assert abs(mean.item() - best) < 4 * se.item()
    for _ in range(5):
        other = br + 0.1 * torch.rand_like(br)
        other = other / other.sum(-1, keepdim=True)
        assert exact_elbo(game, [other, pols[1]], 0, alpha=alpha) < exact_elbo(game, pols_br, 0, alpha=alpha)


def test_bound_is_tight_when_the_others_do_not_matter():
    """One start state, r_0 independent of a_1: at the soft best response ELBO_0 = log p(o_0 = 1) with zero variance."""
    from pgm_marl.inference.exact import soft_best_response

    game, pols = _setup((3, (3, 2), 1), 6)
    rewards = game.rewards.clone()
    rewards[0] = rewards[0, :, :, :1].expand_as(rewards[0])  # agent 0's reward ignores agent 1's action
    initial = torch.tensor([0.0, 1.0, 0.0])
    game = TabularMarkovGame(initial, game.transition, rewards, 1)
    br = soft_best_response(game, pols, 0, alpha=1.0)
    log_evidence = torch.logsumexp(rewards[0, 1, :, 0] - torch.log(torch.tensor(3.0)), -1)
    mean, se = elbo_estimate(agent_model, policy_guide, TabularWorld(game), TabularPolicies([br, pols[1]]), 0, 1.0,
                             "score", num_particles=2000)
    assert se.item() < 1e-10 and abs(mean.item() - log_evidence) < 1e-10


def test_temper_actions_is_alpha_times_tempered_elbo():
    """With reparameterized sites, temper_actions on a model with exp(r) likelihood = alpha * ELBO(exp(r / alpha))."""
    game, pols = _setup((3, (2, 3), 2), 5)
    args = (TabularWorld(game), TabularPolicies(pols))
    alpha = 0.3
    pyro.set_rng_seed(7)
    a = elbo_particles(temper_actions(agent_model, alpha), temper_actions(policy_guide, alpha), *args, None, 1.0,
                       "reparam", num_particles=50)["elbo"]
    pyro.set_rng_seed(7)
    b = elbo_particles(agent_model, policy_guide, *args, None, alpha, "reparam", num_particles=50)["elbo"]
    assert torch.allclose(a, alpha * b, atol=1e-10)
    with pytest.raises(ValueError, match="reparameterized"):
        elbo_particles(temper_actions(agent_model, alpha), temper_actions(policy_guide, alpha), *args, None, 1.0,
                       "score")
    with temper_actions(alpha=alpha):  # the messenger itself, as a context (Pyro's handler convention)
        pyro.set_rng_seed(7)
        c = elbo_particles(agent_model, policy_guide, *args, None, 1.0, "reparam", num_particles=50)["elbo"]
    assert torch.equal(a, c)


def test_bad_agent_is_refused():  # (alpha is checked once, for a run, by inference.variants.temperatures)
    game, pols = _setup((3, (2, 3), 1), 1)
    args = (TabularWorld(game), TabularPolicies(pols))
    with pytest.raises(ValueError, match="agent 5"):
        elbo_particles(agent_model, policy_guide, *args, 5)


@pytest.mark.parametrize("soft_rows, common", [([1], False), ([0, 2], False), ([], False), ([1], True)])
def test_partly_hard_draws_match_relaxing_every_row_then_hardening_the_constant_ones(soft_rows, common):
    """The guide's site of agent j (:class:`PartlyHard`, optionally under :class:`CommonOthers`), built on the
    undetached parameters ``[B, 1, |A|]``: with the same noise, its value is torch's RelaxedOneHotCategorical
    draw in the relaxed rows and that draw's Gumbel-max one-hot in the others, its log-density the categorical
    one at that value, and its gradient that of the same formula with the hard rows' parameters detached (they
    are constants in ELBO_i). Relaxing the wrong row, letting a hard row's draw or density carry gradient, or
    a common row's density read at another value, fails."""
    from pgm_marl.models.distributions import CommonOthers, GumbelSoftmaxPolicy, PartlyHard

    n_ego, batch, size = 4, 6, 5
    params = torch.randn(batch, 1, size, requires_grad=True)
    hard = torch.tensor([k not in soft_rows for k in range(n_ego)])
    is_ego = ~hard
    weight = torch.randn(batch, n_ego, size)
    site = PartlyHard(GumbelSoftmaxPolicy(torch.tensor(1.0), params), hard)
    if common:  # (the guide shares draws around one ego's own row)
        site = CommonOthers(site, is_ego)
    site = site.expand(torch.Size([batch, n_ego]))  # as the ego plate does
    torch.manual_seed(0)
    value = site.rsample()
    got = (value * weight).sum() + site.log_prob(value).sum()
    grad = torch.autograd.grad(got, params)[0] if got.requires_grad else torch.zeros_like(params)

    live = torch.where(is_ego.unsqueeze(-1), params, params.detach()).expand(batch, n_ego, size)
    torch.manual_seed(0)
    y = torch.distributions.RelaxedOneHotCategorical(torch.tensor(1.0), logits=live).rsample()
    one_hot = torch.nn.functional.one_hot(y.argmax(-1), size).to(y.dtype)
    ref_value = torch.where(hard.unsqueeze(-1), one_hot, y)
    if common:  # every other ego reads the first other ego's exact draw
        source = int(hard.nonzero()[0, 0])
        ref_value = torch.where(is_ego.unsqueeze(-1), ref_value, ref_value[:, source: source + 1])
    ref_lp = (ref_value * live.log_softmax(-1)).sum(-1)
    ref = (ref_value * weight).sum() + ref_lp.sum()
    ref_grad = torch.autograd.grad(ref, params)[0] if ref.requires_grad else torch.zeros_like(params)
    torch.testing.assert_close(value, ref_value, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(site.log_prob(value), ref_lp, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(grad, ref_grad, atol=1e-5, rtol=1e-5)
    assert grad.abs().sum() > 0 if soft_rows else not got.requires_grad
    # (what a hard row's density would add if it carried gradient: not 0, so such a leak fails above)
    leak = torch.autograd.grad((ref_value.detach()[:, hard] * params.log_softmax(-1)).sum(), params)[0]
    assert leak.abs().sum() > 1e-3


def test_partly_hard_with_one_mask_entry_broadcast_over_the_egos_relaxes_every_row_with_its_own_noise():
    """A mask of one entry broadcast over several egos (no row to single out) keeps every row its own relaxed
    draw, as torch's RelaxedOneHotCategorical with the same noise; a shortcut that relaxed row 0 and broadcast it
    would give every ego the same action."""
    from pgm_marl.models.distributions import GumbelSoftmaxPolicy, PartlyHard

    params = torch.randn(6, 1, 5)
    site = PartlyHard(GumbelSoftmaxPolicy(torch.tensor(1.0), params), torch.tensor([False])).expand(torch.Size([6, 3]))
    torch.manual_seed(0)
    value = site.rsample()
    torch.manual_seed(0)
    ref = torch.distributions.RelaxedOneHotCategorical(torch.tensor(1.0), logits=params.expand(6, 3, 5)).rsample()
    torch.testing.assert_close(value, ref, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(value[:, 0], value[:, 1])
