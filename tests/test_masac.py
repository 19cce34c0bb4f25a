"""MA-SAC (eq. 7-9) and its variants: batched networks, critic target, actor through Pyro, limits, isolation."""
import dataclasses
from types import SimpleNamespace

import pytest
import torch

from eq9_reference import eq9_actor_loss
from pgm_marl.envs import make_env
from pgm_marl.inference.soft_bellman import soft_bellman_target
from pgm_marl.inference.variants import MASAC, PRESETS, Algorithm, parse_algo_spec
from pgm_marl.learner import Learner
from pgm_marl.networks import Actors, TwinCritics
from pgm_marl.replay import Batch


def one_hot_actions(actions, action_counts):
    """Integer actions ``[B, n]`` -> one-hot ``[B, A_j]`` per agent (written here, not taken from the library)."""
    return [torch.nn.functional.one_hot(actions[:, j], d).float() for j, d in enumerate(action_counts)]


def _cfg(task, algo="masac", alpha=None, hidden=32, common_draws=False):
    return SimpleNamespace(algo=algo, seed=0, hidden=hidden, precision="float32", task=task, gamma=0.95, alpha=alpha,
                           lr=0.01, tau=0.01, common_draws=common_draws)


def _batch(spec, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    actions = torch.stack([torch.randint(0, d, (size,), generator=g) for d in spec.action_counts], -1)
    return Batch(torch.randn(size, spec.state_dim, generator=g), actions, -torch.rand(size, spec.n_agents, generator=g),
                 torch.randn(size, spec.state_dim, generator=g), (torch.rand(size, generator=g) < 0.2).float())


@pytest.fixture(scope="module")
def comm():  # unequal observation (3, 11) and action (3, 5) sizes
    return make_env("cooperative_communication")[1]


@pytest.fixture(scope="module")
def tag():
    return make_env("predator_prey")[1]


def test_batched_networks_equal_per_agent_modules(comm):
    actors = Actors(comm.obs_dims, comm.action_counts, 16)
    state = torch.randn(7, comm.state_dim)
    logits = actors(actors.observations(state))
    start = 0
    for k, (d_obs, d_act) in enumerate(zip(comm.obs_dims, comm.action_counts)):
        obs = torch.cat([state[:, start:start + d_obs], torch.zeros(7, max(comm.obs_dims) - d_obs)], -1)
        assert torch.allclose(actors.net.agent_module(k)(obs)[:, :d_act], logits[k, :, :d_act], atol=1e-6)
        assert torch.all(logits[k, :, d_act:] < -1e3)  # padded actions are impossible
        start += d_obs
    critic = TwinCritics(comm.state_dim, comm.action_counts, 16)
    joint = torch.randn(2, 7, sum(comm.action_counts))
    q1, q2 = critic(state, joint)
    for k in range(2):
        x = torch.cat([state, joint[k]], -1)
        assert torch.allclose(critic.net.agent_module(k)(x).squeeze(-1), q1[k], atol=1e-6)
        assert torch.allclose(critic.net.agent_module(2 + k)(x).squeeze(-1), q2[k], atol=1e-6)


def test_soft_bellman_target_is_eq7_with_discount_and_termination():
    r, q, lp = torch.tensor([[-1.0, -2.0]]), torch.tensor([[3.0, 4.0]]), torch.tensor([[-0.5, -1.5]])
    got = soft_bellman_target(r, q, lp, torch.tensor([[0.2]]), 0.9, torch.tensor([0.0, 1.0]))
    assert torch.allclose(got, torch.tensor([[-1.0 + 0.9 * (3.0 + 0.2 * 0.5), -2.0]]))


def _eq8_by_hand(learner, spec, batch, actors, critic):
    """Eq. 8 with the target of eq. 7 computed from the given ``actors`` / ``critic`` (the same draws as
    ``critic_loss`` when the RNG is seeded alike)."""
    la = actors(actors.observations(batch.next_state))
    ys, lps = [], []
    for j, d in enumerate(spec.action_counts):
        y = torch.distributions.RelaxedOneHotCategorical(torch.tensor(1.0), logits=la[j, :, :d]).rsample()
        y = torch.nn.functional.one_hot(y.argmax(-1), d).float()  # a' ~ pi exactly (Gumbel-max)
        ys.append(y)
        lps.append((y * la[j, :, :d].log_softmax(-1)).sum(-1))
    with torch.no_grad():
        joint_next = torch.cat(ys, -1).expand(2, -1, -1)
        nq = torch.minimum(*critic(batch.next_state, joint_next))
        alpha = 0.005  # section 5.2, cooperative communication
        target = batch.reward.T + 0.95 * (1 - batch.terminated) * (nq - alpha * torch.stack(lps))
        joint = torch.cat(one_hot_actions(batch.actions, spec.action_counts), -1).expand(2, -1, -1)
        q1, q2 = learner.critic(batch.state, joint)
        return ((q1 - target) ** 2).mean(-1).sum() + ((q2 - target) ** 2).mean(-1).sum()


def test_critic_loss_matches_eq8_by_hand_with_target_networks(comm):
    """The target of eq. 7 uses the target actors and critics: after moving the targets away from the online
    networks (at initialisation they are equal, and a test could not tell), only the by-hand loss computed
    with the targets matches."""
    learner = Learner(comm, _cfg("cooperative_communication"))
    with torch.no_grad():
        for p in list(learner.target_actors.parameters()) + list(learner.target_critic.parameters()):
            p.add_(0.3 * torch.randn_like(p))
    batch = _batch(comm)
    torch.manual_seed(3)
    loss = learner.loss.critic_loss(batch)
    torch.manual_seed(3)
    with_targets = _eq8_by_hand(learner, comm, batch, learner.target_actors, learner.target_critic)
    torch.manual_seed(3)
    with_online = _eq8_by_hand(learner, comm, batch, learner.actors, learner.critic)
    assert torch.allclose(loss, with_targets, rtol=1e-5)
    assert not torch.allclose(loss, with_online, rtol=1e-2)


@pytest.mark.parametrize("algo", ["masac", "maddpg", "predators=masac,prey=maddpg"])
def test_pyro_actor_loss_equals_closed_form_eq9(tag, algo):
    """Value and gradient of the actor loss read off Pyro traces equal the closed form of eq. 9 (same draws)."""
    learner = Learner(tag, _cfg("predator_prey", algo))
    batch = _batch(tag)
    loss = learner.loss
    torch.manual_seed(11)
    pyro_loss = -loss.actor_terms(batch)["alpha_elbo"]
    g_pyro = torch.autograd.grad(pyro_loss.sum(), list(learner.actors.parameters()))
    torch.manual_seed(11)
    ref = eq9_actor_loss(learner.actors, learner.critic, batch.state, one_hot_actions(batch.actions, tag.action_counts),
                         loss.alpha(), loss.resample_all)
    g_ref = torch.autograd.grad(ref.sum(), list(learner.actors.parameters()))
    assert torch.allclose(pyro_loss, ref, atol=1e-5)
    for a, b in zip(g_pyro, g_ref):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("algo", ["masac", "predators=masac,prey=maddpg", "masac-auto"])
def test_common_draws_equal_closed_form_eq9_with_one_draw_of_each_agent(tag, algo):
    """``--common-draws``: value and gradient of the Pyro actor loss equal eq. 9 written out with one draw of each
    a_j for all egos but j (same noise); they differ from the per-ego draws' (so the option acts), and each
    agent's own relaxed action is the per-ego draw's (same random numbers). A common draw taken from the ego's
    relaxed sample, or one carrying gradient into another ego's parameters, fails."""
    learner = Learner(tag, _cfg("predator_prey", algo, common_draws=True))
    assert all(a.draws == "common" for a in learner.algorithms)
    batch, loss = _batch(tag), learner.loss
    buffer = one_hot_actions(batch.actions, tag.action_counts)
    torch.manual_seed(11)
    pyro_loss = -loss.actor_terms(batch)["alpha_elbo"]
    g_pyro = torch.autograd.grad(pyro_loss.sum(), list(learner.actors.parameters()))
    torch.manual_seed(11)
    ref = eq9_actor_loss(learner.actors, learner.critic, batch.state, buffer, loss.alpha(), loss.resample_all,
                         common=True)
    g_ref = torch.autograd.grad(ref.sum(), list(learner.actors.parameters()))
    torch.testing.assert_close(pyro_loss, ref, atol=1e-5, rtol=1e-5)
    for a, b in zip(g_pyro, g_ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.manual_seed(11)
    per_ego = eq9_actor_loss(learner.actors, learner.critic, batch.state, buffer, loss.alpha(), loss.resample_all)
    resampling = loss.resample_all.nonzero().squeeze(-1)
    assert not torch.allclose(per_ego[resampling], ref[resampling], atol=1e-4)


def test_common_draws_keep_each_agents_gradient_in_expectation(comm):
    """Common random numbers across the egos leave each ELBO_i's estimator unchanged in distribution: the mean
    actor gradient over many draws equals the per-ego draws' within their standard errors (with one network
    per agent each agent's gradient is its own ELBO's). Common draws that were relaxed, or biased towards one
    action, fail."""
    per_ego = Learner(comm, _cfg("cooperative_communication", hidden=16))
    common = Learner(comm, _cfg("cooperative_communication", hidden=16, common_draws=True))
    common.actors.load_state_dict(per_ego.actors.state_dict())
    common.critic.load_state_dict(per_ego.critic.state_dict())
    batch = _repeat(_batch(comm, size=4), 500)
    flat = lambda gs: torch.cat([g.flatten() for g in gs])  # noqa: E731

    def mean_and_se(learner, chunks=20):
        ps = list(learner.actors.parameters())
        grads = torch.stack([flat(torch.autograd.grad(-learner.loss.actor_terms(batch)["alpha_elbo"].sum(), ps))
                             for _ in range(chunks)])
        return grads.mean(0), grads.std(0) / chunks ** 0.5

    torch.manual_seed(0)
    g_per_ego, se_per_ego = mean_and_se(per_ego)
    g_common, se_common = mean_and_se(common)
    assert torch.all((g_per_ego - g_common).abs() < 4 * (se_per_ego ** 2 + se_common ** 2).sqrt() + 1e-6)


def test_losses_are_isolated(comm):
    """Actor loss: no gradient to critics; critic loss: none to actors; targets: none at all."""
    learner = Learner(comm, _cfg("cooperative_communication", "masac-auto"))
    batch = _batch(comm)
    losses = learner.loss(batch)
    groups = {"actors": learner.actors, "critic": learner.critic, "targets_a": learner.target_actors,
              "targets_c": learner.target_critic}

    def touched(name):
        for m in groups.values():
            m.zero_grad(set_to_none=True)
        learner.loss.log_alpha.grad = None
        losses[name].backward(retain_graph=True)
        out = {k: any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters()) for k, m in groups.items()}
        out["log_alpha"] = learner.loss.log_alpha.grad is not None and bool(learner.loss.log_alpha.grad.abs().sum() > 0)
        return out

    assert touched("loss/actor") == {"actors": True, "critic": False, "targets_a": False, "targets_c": False,
                                     "log_alpha": False}
    assert touched("loss/critic") == {"actors": False, "critic": True, "targets_a": False, "targets_c": False,
                                      "log_alpha": False}
    assert touched("loss/temperature")["log_alpha"] and not touched("loss/temperature")["actors"]


def _actor_grad_and_target(spec, task, algorithm, seed=5):
    learner = Learner(spec, _cfg(task, algorithm.name), algorithms=[algorithm] * spec.n_agents)
    batch = _batch(spec)
    torch.manual_seed(seed)
    terms = learner.loss.actor_terms(batch)
    grad = torch.autograd.grad(-terms["alpha_elbo"].sum(), list(learner.actors.parameters()))
    torch.manual_seed(seed)
    with torch.no_grad():
        next_joint, next_log_pi = learner.loss._sample(learner.target_actors, batch.next_state)
        nq = learner.target_critic.min(batch.next_state, next_joint.expand(spec.n_agents, *next_joint.shape))
        target = soft_bellman_target(batch.reward.T, nq, next_log_pi, learner.loss.alpha()[:, None], 0.95,
                                     batch.terminated)
    return torch.cat([g.flatten() for g in grad]), target


def test_temperature_zero_limit_is_maddpg(tag):
    """alpha -> 0 with MADDPG's resampling: critic target and actor gradient converge to MADDPG's, linearly."""
    g0, t0 = _actor_grad_and_target(tag, "predator_prey", PRESETS["maddpg"])
    errors = []
    for eps in (1e-1, 1e-2, 1e-3, 1e-4):
        alg = dataclasses.replace(PRESETS["maddpg"], name=f"maddpg-eps{eps}", temperature=eps)
        g, t = _actor_grad_and_target(tag, "predator_prey", alg)
        errors.append(((g - g0).abs().max().item(), (t - t0).abs().max().item()))
    for (ga, ta), (gb, tb) in zip(errors, errors[1:]):
        assert gb < ga / 5 and tb < ta / 5
    assert errors[-1][0] < 5e-3 and errors[-1][1] < 5e-3  # O(eps): |gamma eps log pi| with log pi ~ -2
    # the resampling matters: temperature 0 with all actions resampled (eq. 9) is not MADDPG
    g_all, _ = _actor_grad_and_target(tag, "predator_prey", dataclasses.replace(MASAC, name="masac-t0", temperature=0.0))
    assert (g_all - g0).abs().max() > 10 * errors[-1][0]


def _repeat(batch, times):
    return Batch(*(x.repeat(times, *([1] * (x.dim() - 1))) for x in batch))


def test_exact_estimator_is_unbiased_and_relaxed_converges_to_it(comm):
    """masac-exact's actor gradient = the expectation of an unbiased score-function estimate; the relaxed
    (masac) gradient converges to it as the Gumbel-softmax relaxation ``relax`` goes to 0 (bias O(relax))."""
    learner = Learner(comm, _cfg("cooperative_communication", "masac-exact", hidden=16))
    params = list(learner.actors.parameters())
    flat = lambda gs: torch.cat([g.flatten() for g in gs])  # noqa: E731
    chunks, batch = 20, _repeat(_batch(comm, size=4), 500)  # each chunk: 500 draws for each of 4 states

    def mean_and_se(grad_fn):
        grads = torch.stack([grad_fn() for _ in range(chunks)])
        return grads.mean(0), grads.std(0) / chunks ** 0.5

    torch.manual_seed(0)  # the exact estimator still samples the other agent's action
    g_exact, se_exact = mean_and_se(lambda: flat(torch.autograd.grad(-learner.loss.actor_terms(batch)["alpha_elbo"].sum(),
                                                                     params)))

    def score_function():  # one-hot actions, E[grad log pi (Q - alpha log pi) - alpha grad log pi], written out
        alpha = learner.loss.alpha()
        logits = learner.actors(learner.actors.observations(batch.state))
        dists = [torch.distributions.OneHotCategorical(logits=logits[j, :, :d]) for j, d in enumerate(comm.action_counts)]
        a = [d.sample() for d in dists]
        with torch.no_grad():
            q = learner.critic.min(batch.state, torch.cat(a, -1).expand(2, -1, -1))
        surrogate = 0.0
        for i, d in enumerate(dists):
            lp = d.log_prob(a[i])
            surrogate = surrogate + (lp * (q[i] - alpha[i] * lp.detach()) - alpha[i] * lp).mean()
        return flat(torch.autograd.grad(-surrogate, params))

    g_sf, se_sf = mean_and_se(score_function)
    assert torch.all((g_exact - g_sf).abs() < 4 * (se_sf ** 2 + se_exact ** 2).sqrt() + 1e-6)
    errors = []
    for relax in (1.0, 0.1):
        alg = dataclasses.replace(MASAC, name=f"masac-relax{relax}", relax=relax)
        relaxed = Learner(comm, _cfg("cooperative_communication", alg.name, hidden=16), algorithms=[alg] * 2)
        relaxed.actors.load_state_dict(learner.actors.state_dict())
        relaxed.critic.load_state_dict(learner.critic.state_dict())
        ps = list(relaxed.actors.parameters())
        g, _ = mean_and_se(lambda: flat(torch.autograd.grad(-relaxed.loss.actor_terms(batch)["alpha_elbo"].sum(), ps)))
        errors.append(((g - g_exact).norm() / g_exact.norm()).item())
    assert errors[1] < errors[0] / 2, errors


def test_presets_differ_from_masac_exactly_where_declared():
    declared = {"masac": set(), "maddpg": {"temperature", "resample", "box_policy"}, "masac-auto": {"temperature"},
                "masac-exact": {"estimator"}, "reinforce-elbo": {"estimator", "critic"},
                "masac-inferred": {"others"}, "masac-optimistic": {"guide", "others"}}
    assert set(declared) == set(PRESETS)
    for name, fields in declared.items():
        assert PRESETS[name].differences(MASAC) == fields, name


def test_learned_temperature_moves_toward_target_entropy(comm):
    learner = Learner(comm, _cfg("cooperative_communication", "masac-auto"))
    batch = _batch(comm)
    before = learner.loss.alpha().clone()
    learner.update(batch)  # fresh policies are near uniform: entropy above target -> alpha decreases
    assert torch.all(learner.loss.alpha() < before)


def test_bad_algorithm_specs_are_refused(tag):
    with pytest.raises(ValueError, match="unknown algorithm 'sac'"):
        parse_algo_spec("sac", tag.teams, tag.agents)
    with pytest.raises(ValueError, match="unknown team 'wolves'"):
        parse_algo_spec("wolves=masac,prey=maddpg", tag.teams, tag.agents)
    with pytest.raises(ValueError, match="no algorithm for team.*prey"):
        parse_algo_spec("predators=masac", tag.teams, tag.agents)
    with pytest.raises(ValueError, match="resample='some'"):
        Algorithm("x", resample="some")
    with pytest.raises(ValueError, match="temperature='hot'"):  # the kind only: a number's range is temperatures'
        Algorithm("x", temperature="hot")
    with pytest.raises(ValueError, match="draws='shared'.*accepted: per-ego, common"):
        Algorithm("x", draws="shared")
    for preset in ("masac-inferred", "masac-optimistic", "reinforce-elbo"):  # nothing to share, or no actor step
        with pytest.raises(ValueError, match="draws='common' .* is not available"):
            dataclasses.replace(PRESETS[preset], draws="common")
    algos = parse_algo_spec("predators=masac,prey=maddpg", tag.teams, tag.agents)
    assert [a.name for a in algos] == ["masac"] * 3 + ["maddpg"]


def test_sampled_actions_follow_the_policies(comm):
    """Acting draws a_i ~ pi_i(.|o_i) (Gumbel-max); deterministic acting takes the most probable action."""
    learner = Learner(comm, _cfg("cooperative_communication"))
    obs = [torch.randn(1, d).expand(20000, d) for d in comm.obs_dims]
    actions = learner.act(obs)
    logits = learner.actors(learner.actors.pad_obs([o[:1] for o in obs]))
    for j, d in enumerate(comm.action_counts):
        freq = torch.bincount(actions[j], minlength=d).float() / len(actions[j])
        assert torch.allclose(freq, logits[j, 0, :d].softmax(-1), atol=0.015)
        assert torch.all(learner.act(obs, deterministic=True)[j] == logits[j, 0, :d].argmax())


@pytest.mark.parametrize("relax", [1.0, 0.02])
def test_relaxed_draw_is_the_gumbel_softmax_of_the_same_noise(relax):
    """``GumbelSoftmaxPolicy.rsample`` (its softmax written out for speed) against the textbook
    ``softmax((log pi + g) / tau)`` with the same uniforms, values and gradients; at tau = 0.02 the scaled
    logits reach hundreds, where an exponential without the max shift overflows (a missing shift fails), and
    there a dropped ``/ tau`` fails too."""
    from torch.distributions.utils import clamp_probs

    from pgm_marl.models.distributions import GumbelSoftmaxPolicy

    logits = (torch.randn(64, 7, 5, generator=torch.Generator().manual_seed(0)) * 3).requires_grad_()
    weights = torch.randn(64, 7, 5)
    torch.manual_seed(1)
    y = GumbelSoftmaxPolicy(relax, logits).rsample()
    (grad,) = torch.autograd.grad((y * weights).sum(), logits)
    torch.manual_seed(1)
    u = clamp_probs(torch.rand(64, 7, 5))
    ref = torch.softmax((logits.log_softmax(-1) - (-u.log()).log()) / relax, -1)
    (ref_grad,) = torch.autograd.grad((ref * weights).sum(), logits)
    assert torch.isfinite(y).all() and torch.isfinite(grad).all()
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-4)


def test_register_refuses_overwrites_unless_asked(monkeypatch):
    from pgm_marl.inference import variants

    monkeypatch.setattr(variants, "PRESETS", dict(PRESETS))  # this test's own table
    with pytest.raises(ValueError, match="'masac' is already registered"):
        variants.register(Algorithm("masac", temperature=0.3))
    assert variants.register(MASAC) is MASAC  # the same preset again: a no-op
    hot = variants.register(Algorithm("masac", temperature=0.3), replace=True)
    assert variants.resolve("masac") is hot


def test_tests_leave_the_preset_table_as_they_found_it():
    assert set(PRESETS) == {"masac", "maddpg", "masac-auto", "masac-exact", "reinforce-elbo", "masac-inferred",
                            "masac-optimistic"}
    assert PRESETS["masac"] == MASAC
