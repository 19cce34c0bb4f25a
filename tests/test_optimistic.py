"""The optimistic guide (``guide="optimistic"``): eq. 5 with q_i(a_{-i} | o_i) pi_i(a_i | o_i, a_{-i}), checked against
exact enumeration (:func:`~pgm_marl.inference.exact.exact_optimistic_elbo`, :func:`optimistic_optimum`).

Measured (this file's settings, float64 where exact): the traced ELBO terms are within 2 standard errors of the
enumeration; at the optimum the bound equals log p(o_i = 1) to 1e-12 with s_0 fixed and beats eq. 4's best by
the Jensen gap; the tabular learner (``masac-optimistic``, relax 0.1) settles within TV 0.02 of that optimum
for its own prior rho (q_i and pi_i(. | a_{-i})), its rho within KL 0.001 of the other's behaviour.
"""
import dataclasses

import pytest
import torch

from pgm_marl.config import TrainConfig
from pgm_marl.inference.elbo import elbo_particles
from pgm_marl.inference.exact import (exact_elbo, exact_optimistic_elbo, exact_optimistic_elbo_terms,
                                      optimistic_optimum, soft_best_response)
from pgm_marl.inference.variants import PRESETS
from pgm_marl.models.agent_mdp import agent_model
from pgm_marl.models.optimistic_guide import optimistic_guide
from pgm_marl.models.tabular import TabularMarkovGame, random_policies
from pgm_marl.models.worlds import TabularWorld
from tabular_others import TabularOptimistic, tabular_learner, train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def _random_guide(game, seed):
    """Random q_e^j ``[S, A_j]`` and pi_e(a_e | s, a_{-e}) ``[S, A_1, A_2]`` tables for both egos."""
    g = torch.Generator().manual_seed(seed)
    S, dims = game.n_states, game.action_sizes
    imagined = {e: [torch.softmax(torch.randn(S, a, generator=g), -1) for a in dims] for e in range(2)}
    conditional = {e: torch.softmax(2 * torch.randn(S, *dims, generator=g), 1 + e) for e in range(2)}
    return imagined, conditional


@pytest.mark.parametrize("horizon,agent", [(1, 0), (1, None), (2, 1)])
def test_traced_optimistic_elbo_equals_enumeration(float64, horizon, agent):
    """Each term of eq. 5 read off the traces of agent_model and optimistic_guide (exact draws, 20000 particles)
    is within 4 standard errors of its enumeration; the others' sites give -KL(q_i || pi_{-i}) (``env``)."""
    import pyro
    pyro.set_rng_seed(0)
    game = TabularMarkovGame.random(2, (3, 2), horizon, seed=0)
    policies = random_policies(game, 1)
    imagined, conditional = _random_guide(game, 2)
    tables = TabularOptimistic(policies, imagined, conditional)
    terms = elbo_particles(agent_model, optimistic_guide, TabularWorld(game), tables, agent, 0.7, "score",
                           num_particles=20000)
    for k, i in enumerate([0, 1] if agent is None else [agent]):
        exact = exact_optimistic_elbo_terms(game, policies, i, imagined[i][1 - i], conditional[i], 0.7)
        for name, ref in (("log_likelihood", "log_likelihood"), ("log_policy", "log_policy"), ("env", "log_others"),
                          ("elbo", None)):
            x = terms[name][:, k]
            value = exact_optimistic_elbo(game, policies, i, imagined[i][1 - i], conditional[i], 0.7) \
                if ref is None else exact[ref]
            assert abs(x.mean() - value) < 4 * x.std() / len(x) ** 0.5, (i, name, float(x.mean()), float(value))


def test_optimum_is_tight_and_beats_the_factorized_guide(float64):
    """One-step game: at q_i = p(a_{-i} | o_i = 1), pi_i = p(a_i | a_{-i}, o_i = 1) the ELBO is E_s0 log p(o_i = 1 |
    s_0), = log p(o_i = 1) when s_0 is fixed; it is above eq. 4's best (the soft best response) and above any
    perturbed guide; the factorized guide is the special case q_i = pi_{-i}, pi_i independent of a_{-i}."""
    game = TabularMarkovGame.random(2, (3, 2), 1, seed=3)
    fixed = TabularMarkovGame(torch.tensor([0.0, 1.0]), game.transition, game.rewards, 1)
    policies = random_policies(game, 4)
    g = torch.Generator().manual_seed(5)
    for i in range(2):
        for gm in (game, fixed):
            best = optimistic_optimum(gm, policies, i, 0.5)
            value = exact_optimistic_elbo(gm, policies, i, best["imagined"], best["conditional"], 0.5)
            torch.testing.assert_close(value, best["elbo"], atol=1e-12, rtol=0)
            factorized = list(policies)
            factorized[i] = soft_best_response(gm, policies, i, 0.5)
            assert value > exact_elbo(gm, factorized, i, 0.5) + 1e-3
            for _ in range(5):  # a maximum: perturbed guides are lower
                q = torch.softmax(best["imagined"].log() + 0.3 * torch.randn(best["imagined"].shape, generator=g), -1)
                c = torch.softmax(best["conditional"].log() + 0.3 * torch.randn(best["conditional"].shape,
                                                                                 generator=g), 1 + i)
                assert exact_optimistic_elbo(gm, policies, i, q, c, 0.5) < value
            # eq. 4 inside this family: q_i = pi_{-i} and pi_i(a_i | s) whatever a_{-i}
            pi_i = factorized[i].unsqueeze(2 - i)
            torch.testing.assert_close(exact_optimistic_elbo(gm, policies, i, policies[1 - i], pi_i.expand(
                -1, *gm.action_sizes), 0.5), exact_elbo(gm, factorized, i, 0.5), atol=1e-12, rtol=0)
        best = optimistic_optimum(fixed, policies, i, 0.5)  # s_0 fixed: the bound is tight
        torch.testing.assert_close(best["elbo"], best["log_evidence"], atol=1e-12, rtol=0)
        best = optimistic_optimum(game, policies, i, 0.5)  # s_0 random: the guide keeps p(s_0), a gap remains
        assert best["log_evidence"] > best["elbo"] + 1e-4


def test_learner_settles_at_the_optimum_of_its_own_elbo():
    """The unchanged learner with tabular networks, ``masac-optimistic`` with relax 0.1, one-step game (250 steps
    at lr 0.1, then 100 at 0.02): each agent's q_i and pi_i(. | a_{-i}) reach the optimum of ELBO_i for its own
    prior rho_i (TV <= 0.05; measured <= 0.02 over 3 seeds), and rho_i the other's behaviour, sum_a q_j(a)
    pi_j(. | a) (KL <= 0.01; measured <= 0.001). With the preset's relax 1 the relaxed imagined actions bias the
    fixed point: TV 0.07-0.16 (q_i), 0.11-0.25 (pi_i), measured, not tested."""
    alpha = 0.3
    game = TabularMarkovGame.random(2, (3, 2), 1, seed=1)
    cfg = TrainConfig(task="tabular", algo="masac-optimistic", seed=0, lr=0.1, gamma=0.5, tau=0.1, alpha=alpha)
    algorithm = dataclasses.replace(PRESETS["masac-optimistic"], relax=0.1)
    learner = train(tabular_learner(game, cfg, [algorithm, algorithm]), game, 250, batch_size=512)
    for optimizer in learner.optimizers.values():  # (less Adam noise at the end)
        for group in optimizer.param_groups:
            group["lr"] = 0.02
    train(learner, game, 100, batch_size=512, seed=100)
    others, actors, dims = learner.others, learner.actors, game.action_sizes
    imagined = others.imagined.logits.detach()
    for i in range(2):
        j = 1 - i
        rho = others.opponents.logits[others.pair_index[i, j], :, : dims[j]].detach().softmax(-1)
        q_i = imagined[i, j, :, : dims[j]].softmax(-1)
        behaviour_j = (imagined[j, i, :, : dims[i]].softmax(-1).unsqueeze(1 + j) * actors.conditional(j)).sum(1 + i)
        kl = (behaviour_j * (behaviour_j.log() - rho.log())).sum(-1).max()
        assert kl < 0.01, f"agent {i}: KL(behaviour_{j} || rho) = {kl:.4f}"
        prior = [None, None]
        prior[i], prior[j] = torch.full((2, dims[i]), 1.0 / dims[i]), rho
        best = optimistic_optimum(game, [p.to(game.rewards.dtype) for p in prior], i, alpha)
        tv_q = 0.5 * (q_i - best["imagined"]).abs().sum(-1).max()
        tv_pi = 0.5 * (actors.conditional(i) - best["conditional"]).abs().sum(1 + i).max()
        assert tv_q < 0.05 and tv_pi < 0.05, f"agent {i}: TV(q, q*) = {tv_q:.3f}, TV(pi, pi*) = {tv_pi:.3f}"


def test_critic_target_is_the_soft_value_under_the_guide(float64):
    """Eq. 7 under the optimistic guide: the mean of ``Q_i(s', a'_i, a'_{-i}) - alpha log ratio`` over the draws of
    :meth:`OthersModels.next_actions` equals, by enumeration, E_q[Q_i - alpha log pi_i(a_i | s, a_{-i})] -
    alpha KL(q_i || rho_i) (within 4 standard errors)."""
    torch.set_default_dtype(torch.float32)
    alpha = 0.3
    game = TabularMarkovGame.random(2, (3, 2), 1, seed=1)
    cfg = TrainConfig(task="tabular", algo="masac-optimistic", seed=0, lr=0.1, gamma=0.5, tau=0.1, alpha=alpha)
    learner = tabular_learner(game, cfg)
    g = torch.Generator().manual_seed(0)
    for module in (learner.target_actors, learner.others.target_imagined, learner.others.target_opponents):
        with torch.no_grad():
            for p in module.parameters():
                p.copy_(p + torch.randn(p.shape, generator=g))
    with torch.no_grad():
        learner.target_critic.table.copy_(torch.randn(learner.target_critic.table.shape[1:], generator=g))
    state = torch.eye(2)[torch.ones(50000, dtype=torch.long)]
    torch.manual_seed(0)
    with torch.no_grad():
        joint, log_ratio = learner.others.next_actions(learner.target_actors, state)
        samples = learner.target_critic.min(state, joint) - alpha * log_ratio  # [n, B]
    actors, others, dims = learner.target_actors, learner.others, game.action_sizes
    q_table = learner.target_critic.table[0, :, 1].double()  # [n, A_1, A_2] at state 1
    for i in range(2):
        j = 1 - i
        q_i = (others.target_imagined.logits[i, j, 1, : dims[j]]).double().softmax(-1)
        rho = others.target_opponents.logits[others.pair_index[i, j], 1, : dims[j]].double().softmax(-1)
        cond = actors.conditional(i)[1].double()  # [A_1, A_2], normalized along i's axis
        guide = q_i.unsqueeze(i) * cond
        value = (guide * (q_table[i] - alpha * cond.log())).sum() - alpha * (q_i * (q_i / rho).log()).sum()
        x = samples[i].double()
        assert abs(x.mean() - value) < 4 * x.std() / len(x) ** 0.5, (i, float(x.mean()), float(value))


def test_acting_imagines_then_acts():
    """a_{-i} ~ q_i(. | o_i), then a_i ~ pi_i(. | o_i, a_{-i}): agent i's action frequencies are sum_a q_i(a)
    pi_i(. | a) (within 0.015); deterministic acting takes the mode of pi_i(. | mode of q_i)."""
    game = TabularMarkovGame.random(1, (3, 2), 1, seed=1)
    cfg = TrainConfig(task="tabular", algo="masac-optimistic", seed=0, alpha=0.3)
    learner = tabular_learner(game, cfg)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in list(learner.actors.tables.parameters()) + list(learner.others.imagined.parameters()):
            p.copy_(2 * torch.randn(p.shape, generator=g))
    state = torch.ones(40000, 1)
    actions = learner.act([state, state])
    for i in range(2):
        j = 1 - i
        q = learner.others.imagined.logits[i, j, 0, : game.action_sizes[j]].detach().softmax(-1)
        cond = learner.actors.conditional(i)[0]  # normalized along i's axis
        marginal = (q.unsqueeze(i) * cond).sum(j)
        freq = torch.bincount(actions[i], minlength=game.action_sizes[i]).float() / len(state)
        torch.testing.assert_close(freq, marginal, atol=0.015, rtol=0)
        mode = cond.select(j, int(q.argmax())).argmax()
        assert bool((learner.act([state[:5], state[:5]], deterministic=True)[i] == mode).all())
