"""Critic forms (``--critic``) and parameter sharing (``--share-params``): what each form may read, checked by
construction, and that each, trained by the unchanged critic loss (eq. 7-8), fits the exact soft Q of a small
tabular game (:func:`~pgm_marl.inference.exact.exact_soft_q`)."""
import copy
import itertools

import pytest
import torch
from torch import nn

from pgm_marl.config import TrainConfig
from pgm_marl.critics import AttentionCritics, LocalCritics, MeanFieldCritics, make_critic
from pgm_marl.errors import UserError
from pgm_marl.envs.tasks import ActionSpec, TaskSpec
from pgm_marl.inference.exact import exact_soft_q
from pgm_marl.learner import Learner
from pgm_marl.models.actions import ActionSpaces
from pgm_marl.models.tabular import TabularMarkovGame
from pgm_marl.networks import Actors, Sharing, TwinCritics
from tabular_learning import TabularActors, collect

FORMS = ("mlp", "attention", "mean-field", "local")


def spec_of(n, obs=4, actions=3, teams=None):
    agents = tuple(f"agent_{i}" for i in range(n))
    return TaskSpec(name="t", agents=agents, obs_dims=(obs,) * n,
                    action_spaces=tuple(ActionSpec("discrete", n=actions) for _ in agents),
                    teams=teams or {"all": agents}, max_cycles=5)


def one_hot_joint(n, batch, actions=3, seed=0):
    idx = torch.randint(actions, (batch, n), generator=torch.Generator().manual_seed(seed))
    return idx, nn.functional.one_hot(idx, actions).float().reshape(batch, n * actions)


def per_ego(joint, n):
    """The same joint action for every ego, materialized (not a stride-0 view): the per-ego paths."""
    return joint.unsqueeze(0).repeat(n, 1, 1)


@pytest.mark.parametrize("form", FORMS)
def test_every_form_has_the_twin_critic_interface(form):
    """Shapes of every path (shared joint, per-ego joint, extra batch dims as the exact estimator uses), and the
    shared and per-ego paths give the same numbers for the same joint action."""
    n, B = 3, 7
    torch.manual_seed(0)
    critic = make_critic(form, spec_of(n), [3] * n, hidden=16)
    state = torch.randn(B, 12)
    _, joint = one_hot_joint(n, B)
    q1, q2 = critic(state, joint.expand(n, B, 9))
    assert q1.shape == q2.shape == (n, B) and not torch.equal(q1, q2)
    p1, p2 = critic(state, per_ego(joint, n))
    torch.testing.assert_close((p1, p2), (q1, q2))
    extra = per_ego(joint, n).unsqueeze(1).expand(n, 4, B, 9).contiguous()  # [n, A, B, S]
    e1, _ = critic(state, extra)
    assert e1.shape == (n, 4, B)
    torch.testing.assert_close(e1, q1.unsqueeze(1).expand(n, 4, B))
    torch.testing.assert_close(critic.min(state, per_ego(joint, n)), torch.minimum(q1, q2))


def _swap_agents(critic, j, k):
    """A copy of an attention critic whose per-agent parameters of agents j and k are exchanged."""
    out = copy.deepcopy(critic)
    n = critic.n
    with torch.no_grad():
        for layer in [out.encoder, *out.head.layers]:
            for p in (layer.weight, layer.bias):
                for twin in (0, n):
                    p[[twin + j, twin + k]] = p[[twin + k, twin + j]]
    return out


def _swap_inputs(state, joint, j, k, obs=4, actions=3):
    s, a = state.clone(), joint.clone()
    s[:, [*range(j * obs, (j + 1) * obs), *range(k * obs, (k + 1) * obs)]] = torch.cat(
        [state[:, k * obs:(k + 1) * obs], state[:, j * obs:(j + 1) * obs]], -1)
    a[..., [*range(j * actions, (j + 1) * actions), *range(k * actions, (k + 1) * actions)]] = torch.cat(
        [joint[..., k * actions:(k + 1) * actions], joint[..., j * actions:(j + 1) * actions]], -1)
    return s, a


@pytest.mark.parametrize("path", ["shared", "common", "lookup", "pairs"])
def test_attention_is_invariant_to_the_order_of_the_other_agents(path, monkeypatch):
    """Exchanging two other agents (their inputs and their per-agent parameters) leaves Q_i unchanged and
    exchanges their own Q, on each of the four paths (shared joint; one draw of the others for every ego; each
    ego its own draw, with one-hot lookups; every (ego, agent) pair embedded). An attention that depended on the
    agents' order, or a path that looked up the wrong agent's action, fails."""
    n, B = 4, 6
    torch.manual_seed(1)
    critic = AttentionCritics((4,) * n, [3] * n, hidden=16)
    if path == "pairs":
        monkeypatch.setattr(AttentionCritics, "_one_hot_others", lambda self, slots: False)
    if path == "common":
        monkeypatch.setattr(AttentionCritics, "_one_hot_others", _never)
    state = torch.randn(B, 4 * n)
    if path == "shared":
        joint = one_hot_joint(n, B, seed=2)[1].expand(n, B, 3 * n)
    elif path == "common":
        joint = _common_joint(n, B, 3)
    else:  # each ego its own joint sample
        joint = torch.stack([one_hot_joint(n, B, seed=20 + i)[1] for i in range(n)])
    s2, j2 = _swap_inputs(state, joint, 1, 3)
    j2 = j2[0].expand(n, B, 3 * n) if path == "shared" else j2[[0, 3, 2, 1]]  # ego 1's view is now ego 3's
    q, _ = critic(state, joint)
    q_swapped, _ = _swap_agents(critic, 1, 3)(s2, j2)
    torch.testing.assert_close(q_swapped[[0, 2]], q[[0, 2]])
    torch.testing.assert_close(q_swapped[[1, 3]], q[[3, 1]])


def test_attention_paths_agree_and_agent_i_does_not_attend_to_itself(monkeypatch):
    """The lookup path equals embedding every pair; with two agents the attention weight on the one other
    agent is 1 whatever the keys (self-attention would make the keys matter)."""
    n, B = 3, 5
    torch.manual_seed(2)
    critic = AttentionCritics((4,) * n, [3] * n, hidden=16)
    state, (_, joint) = torch.randn(B, 12), one_hot_joint(n, B, seed=3)
    joint = torch.stack([one_hot_joint(n, B, seed=10 + i)[1] for i in range(n)])  # each ego its own sample
    lookup, _ = critic(state, joint)
    monkeypatch.setattr(AttentionCritics, "_one_hot_others", lambda self, slots: False)
    pairs, _ = critic(state, joint)
    torch.testing.assert_close(lookup, pairs)
    two = AttentionCritics((4, 4), [3, 3], hidden=16)
    s2, (_, j2) = torch.randn(B, 8), one_hot_joint(2, B)
    before, _ = two(s2, j2.expand(2, B, 6))
    with torch.no_grad():
        two.key.weight.normal_()
    after, _ = two(s2, j2.expand(2, B, 6))
    torch.testing.assert_close(before, after)
    three_before, _ = critic(state, joint)
    with torch.no_grad():
        critic.key.weight.normal_()
    assert not torch.allclose(critic(state, joint)[0], three_before)  # with two others the keys matter


def _attention_reference(critic, state, joint):
    """Iqbal & Sha's attention critic written out agent by agent and head by head (loops, no batching tricks):
    ``joint [n, *batch, B, S]``, ego i reading ``joint[i]``; returns both twins ``[2, n, *batch, B]``."""
    n, hid, heads = critic.n, critic.hidden, critic.heads
    d = hid // heads
    obs = critic.inputs.obs(state)  # [n, B, d_obs]
    w_enc, b_enc = critic.encoder.params()
    out = torch.zeros(2, n, *joint.shape[1:-1])
    for t in range(2):
        wq, wk = critic.query.weight[t], critic.key.weight[t]
        wv, bv = critic.value.weight[t], critic.value.bias[t, 0]
        for i in range(n):
            slots = critic.inputs.slots(joint[i : i + 1])[0]  # [*batch, B, n, size]: ego i's view of each a_j
            e = [nn.functional.leaky_relu(torch.cat([obs[j].expand(*slots.shape[:-2], -1), slots[..., j, :]], -1)
                                          @ w_enc[t * n + j] + b_enc[t * n + j, 0]) for j in range(n)]
            others = [j for j in range(n) if j != i]
            query = e[i] @ wq
            summary = []
            for h in range(heads):
                cols = slice(h * d, (h + 1) * d)
                logits = torch.stack([(query[..., cols] * (e[j] @ wk)[..., cols]).sum(-1) / d ** 0.5
                                      for j in others], -1)
                values = torch.stack([nn.functional.leaky_relu(e[j] @ wv + bv)[..., cols] for j in others], -2)
                summary.append((logits.softmax(-1).unsqueeze(-1) * values).sum(-2))
            x = torch.cat([e[i], *summary], -1)
            head = critic.head.agent_module(t * n + i)
            out[t, i] = head(x).squeeze(-1)
    return out


def _never(self, slots):
    raise AssertionError("the common path was not taken")


def _common_joint(n, B, actions, batch=(), seed=6):
    """One one-hot draw of every a_j shared by the egos i != j; each ego's own action relaxed (its own value):
    the actor step's joint action under ``--common-draws``, and the exact estimator's layout."""
    joint = one_hot_joint(n, B * max(1, len(batch) and batch[0]), seed=seed)[1].reshape(*batch, B, n * actions)
    joint = joint.expand(n, *joint.shape).clone()
    g = torch.Generator().manual_seed(seed + 1)
    for i in range(n):
        joint[i, ..., i * actions:(i + 1) * actions] = torch.rand(*batch, B, actions, generator=g).softmax(-1)
    return joint


@pytest.mark.parametrize("path", ["shared", "common", "lookup", "pairs"])
@pytest.mark.parametrize("batch", [(), (2,)])
def test_attention_equals_the_agent_by_agent_formula(path, batch, monkeypatch):
    """Each of the four code paths (and the exact estimator's extra batch dimension) computes the attention
    critic as written in its docstring, value and gradient in each ego's own action (what eq. 9 differentiates),
    checked against loops over agents and heads: a wrong head split, key or value, a missing scale, a
    mixed-up ego/agent index, or common keys read from an ego's own (relaxed) action fail."""
    n, B, actions = 4, 5, 3
    torch.manual_seed(3)
    critic = AttentionCritics((4, 4, 3, 4), [3] * n, hidden=16)
    state = torch.randn(B, 15)
    if path == "pairs":
        monkeypatch.setattr(AttentionCritics, "_one_hot_others", lambda self, slots: False)
    if path == "common":
        monkeypatch.setattr(AttentionCritics, "_one_hot_others", _never)
    if path == "shared":
        joint = one_hot_joint(n, B, seed=4)[1].expand(*batch, B, n * actions)
        joint = joint.expand(n, *joint.shape)
    elif path == "common":
        joint = _common_joint(n, B, actions, batch)
    else:
        joint = torch.stack([one_hot_joint(n, B * max(1, len(batch) and batch[0]), seed=5 + i)[1]
                             for i in range(n)]).reshape(n, *batch, B, n * actions)
        joint[0, ..., :actions] = torch.rand(*batch, B, actions).softmax(-1)  # ego 0's own action relaxed
    joint = joint.detach().requires_grad_()
    q1, q2 = critic(state, joint)
    ref = _attention_reference(critic, state, joint)
    torch.testing.assert_close(torch.stack([q1, q2]), ref, rtol=1e-5, atol=1e-5)
    if path != "shared":  # (the shared path is the critic loss's: no gradient in the actions)
        own = torch.block_diag(*[torch.ones(1, actions)] * n).bool().view(n, *([1] * (len(batch) + 1)), -1)
        grad, = torch.autograd.grad((q1 + q2).sum(), joint)
        grad_ref, = torch.autograd.grad(ref.sum(), joint)
        torch.testing.assert_close(grad.masked_fill(~own, 0), grad_ref.masked_fill(~own, 0), rtol=1e-5, atol=1e-5)


def test_mean_field_reads_the_others_only_through_their_mean():
    """Q_i is unchanged when two other agents exchange their actions (same mean) and changes when the mean
    changes; o_j of another agent never matters. With two teams, each team's mean is its own input."""
    n, B = 4, 8
    torch.manual_seed(3)
    teams = {"a": ("agent_0", "agent_1"), "b": ("agent_2", "agent_3")}
    critic = make_critic("mean-field", spec_of(n, teams=teams), [3] * n, hidden=16)
    state = torch.randn(B, 16)
    idx, joint = one_hot_joint(n, B, seed=4)
    q, _ = critic(state, per_ego(joint, n))
    _, swapped = _swap_inputs(state, joint, 2, 3)
    q_swap, _ = critic(state, per_ego(swapped, n))
    torch.testing.assert_close(q_swap[[0, 1]], q[[0, 1]])  # agents 2 and 3 are one team: its mean is unchanged
    _, cross = _swap_inputs(state, joint, 1, 2)
    rows = idx[:, 1] != idx[:, 2]  # rows where the swap across teams changes both teams' means
    assert not torch.allclose(critic(state, per_ego(cross, n))[0][0, rows], q[0, rows])
    other_obs = state.clone()
    other_obs[:, 4:] = torch.randn(B, 12)  # agents 1-3's observations
    torch.testing.assert_close(critic(other_obs, per_ego(joint, n))[0][0], q[0])


@pytest.mark.parametrize("form", ["local", "mean-field"])
@pytest.mark.parametrize("share", [False, True])
@pytest.mark.parametrize("batch", [(), (2,)])
@pytest.mark.parametrize("egos", ["per-ego", "shared"])
def test_mean_field_and_local_equal_the_agent_by_agent_formula(form, share, batch, egos):
    """Q_i^(k) = MLP_i^(k)([o_i, a_i, mean_{j in T, j != i} a_j for each team T]) written out with each agent's
    own network (its padded observation, two teams, the agent index with sharing), value and gradient in the
    joint action, for a per-ego joint and for one joint action expanded over the egos (the critic loss; the mean
    field's means are then computed from one copy), with and without an extra batch dimension: a twin's state
    weights read from the other twin, an observation slice or mean taken from the wrong agent (or the averaging
    weights transposed: two teams make them asymmetric), or a dropped bias fail."""
    n, B, actions = 4, 5, 3
    obs_dims = (4, 3, 4, 4)
    teams = {"a": ("agent_0", "agent_1", "agent_2"), "b": ("agent_3",)}
    spec = TaskSpec(name="t", agents=tuple(f"agent_{i}" for i in range(n)), obs_dims=obs_dims,
                    action_spaces=tuple(ActionSpec("discrete", n=actions) for _ in range(n)), teams=teams,
                    max_cycles=5)
    torch.manual_seed(6)
    sharing = Sharing.by_team(spec.agents, spec.teams) if share else None
    critic = make_critic(form, spec, [actions] * n, hidden=16, sharing=sharing)
    state = torch.randn(B, sum(obs_dims))
    if egos == "per-ego":
        joint = torch.rand(n, *batch, B, n, actions).softmax(-1).reshape(n, *batch, B, n * actions).requires_grad_()
        leaf = joint
    else:
        leaf = torch.rand(*batch, B, n, actions).softmax(-1).reshape(*batch, B, n * actions).requires_grad_()
        joint = leaf.expand(n, *leaf.shape)
    q1, q2 = critic(state, joint)
    offsets = [0, *itertools.accumulate(obs_dims)]
    team_members = [[spec.agents.index(a) for a in members] for members in teams.values()]
    ref = torch.zeros(2, n, *batch, B)
    for k in range(2):
        for i in range(n):
            o = torch.zeros(*batch, B, max(obs_dims))
            o[..., :obs_dims[i]] = state[:, offsets[i]:offsets[i + 1]]
            a = joint[i].unflatten(-1, (n, actions))
            parts = [o, a[..., i, :]]
            if form == "mean-field":
                for team in team_members:
                    others = [j for j in team if j != i]
                    parts.append(a[..., others, :].mean(-2) if others else torch.zeros(*batch, B, actions))
            x = torch.cat(parts, -1)
            ref[k, i] = critic.net.agent_module(k * n + i)(x).squeeze(-1)
    torch.testing.assert_close(torch.stack([q1, q2]), ref, rtol=1e-5, atol=1e-5)
    grad, = torch.autograd.grad((q1 + 2 * q2).sum(), leaf)
    grad_ref, = torch.autograd.grad((ref[0] + 2 * ref[1]).sum(), leaf)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-5, atol=1e-5)


def test_local_critic_reads_only_its_own_observation_and_action():
    n, B = 3, 6
    torch.manual_seed(4)
    critic = make_critic("local", spec_of(n), [3] * n, hidden=16)
    state, (_, joint) = torch.randn(B, 12), one_hot_joint(n, B)
    q, _ = critic(state, joint.expand(n, B, 9))
    state2, (_, joint2) = state.clone(), one_hot_joint(n, B, seed=9)
    state2[:, 4:] = torch.randn(B, 8)
    joint2[:, :3] = joint[:, :3]
    torch.testing.assert_close(critic(state2, joint2.expand(n, B, 9))[0][0], q[0])


def test_a_form_that_needs_other_agents_is_refused_for_one_agent():
    for form in ("mean-field", "attention"):
        with pytest.raises(UserError, match=f"--critic {form} needs other agents.*accepted for it: mlp, local"):
            make_critic(form, spec_of(1), [3], hidden=16)
    with pytest.raises(UserError, match="unknown critic 'gnn'; accepted: mlp, attention, mean-field, local"):
        make_critic("gnn", spec_of(2), [3, 3])


@pytest.mark.parametrize("form", FORMS)
def test_shared_parameters_are_one_set_per_team_told_apart_by_the_agent_index(form):
    """With sharing, a team's agents use one parameter set: the parameter count does not grow with the team,
    two agents of a team with the same inputs differ only through the agent-index weights (equal once those are
    equal), and a gradient step on one agent's output moves the whole team's network."""
    teams = {"a": ("agent_0", "agent_1", "agent_2"), "b": ("agent_3",)}
    spec = spec_of(4, teams=teams)
    sharing = Sharing.by_team(spec.agents, spec.teams)
    assert sharing.groups == (0, 0, 0, 1) and sharing.ids == (0, 1, 2, 0) and sharing.n_ids == 3
    torch.manual_seed(5)
    shared = make_critic(form, spec, [3] * 4, hidden=16, sharing=sharing)
    alone = make_critic(form, spec, [3] * 4, hidden=16)
    assert sum(p.numel() for p in shared.parameters()) < sum(p.numel() for p in alone.parameters())
    state = torch.randn(5, 4).repeat(1, 4)  # every agent observes the same
    _, one = one_hot_joint(1, 5)
    joint = one.repeat(1, 4)  # and takes the same action
    q, _ = shared(state, joint.expand(4, 5, 12))
    assert not torch.allclose(q[0], q[1])  # told apart by the agent index
    with torch.no_grad():
        for m in shared.modules():
            if getattr(m, "id_weight", None) is not None:
                m.id_weight[:, 1:] = m.id_weight[:, :1]
    q, _ = shared(state, joint.expand(4, 5, 12))
    torch.testing.assert_close(q[1], q[0])
    torch.testing.assert_close(q[2], q[0])


def test_shared_actors_share_one_network_per_team():
    spec = spec_of(3, teams={"a": ("agent_0", "agent_1"), "b": ("agent_2",)})
    actors = Actors(spec.obs_dims, [3] * 3, 16, sharing=Sharing.by_team(spec.agents, spec.teams))
    assert actors.net.layers[0].weight.shape[0] == 2 and actors.net.layers[0].id_weight.shape[:2] == (2, 2)
    obs = torch.randn(6, 4).expand(3, 6, 4)
    logits = actors(obs)
    assert not torch.allclose(logits[0], logits[1])
    logits[0].sum().backward()  # agent 0's output moves the team's parameters, not agent 2's
    grad = actors.net.layers[0].weight.grad
    assert grad[0].abs().sum() > 0 and grad[1].abs().sum() == 0


class ConcatStateActors(TabularActors):
    """Tabular policies on the concatenated one-hot state ``[*batch, n * S]`` (each agent observes it all)."""

    def observations(self, state):
        n = len(self.action_counts)
        return state.reshape(*state.shape[:-1], n, self.n_states).movedim(-2, 0)


def _concat(batch, n):
    return batch._replace(state=batch.state.repeat(1, n), next_state=batch.next_state.repeat(1, n))


@pytest.mark.parametrize("form", FORMS)
def test_each_form_fits_the_exact_soft_q_of_a_tabular_game(form):
    """Fixed policies (actor learning rate 0), the unchanged critic loss, a discounted 3-state game: every
    centralised form's min-twin Q_i(s, a) matches ``exact_soft_q`` within 0.05 at every (s, a); the local form
    can only learn E_{a_-i ~ pi_-i}[Q_i(s, a)], and matches that within 0.05. Measured (seed 0): max error
    0.016 / 0.018 (mlp, agents 0 / 1), 0.023 (attention), 0.024 (mean-field), 0.010 (local). (A target
    computed with the online networks, a wrong discount or a form reading another agent's action as its own
    fails.)"""
    alpha, gamma = 0.3, 0.5
    game = TabularMarkovGame.random(3, (2, 3), 60, seed=0)
    n, S = game.n_agents, game.n_states
    spec = TaskSpec(name="tabular", agents=("agent_0", "agent_1"), obs_dims=(S, S),
                    action_spaces=tuple(ActionSpec("discrete", n=a) for a in game.action_sizes),
                    teams={"all": ("agent_0", "agent_1")}, max_cycles=60)
    cfg = TrainConfig(task="tabular", seed=0, lr=0.01, gamma=gamma, tau=0.05, alpha=alpha, hidden=64, critic=form)
    torch.manual_seed(0)
    actors = ConcatStateActors(S, game.action_sizes)
    with torch.no_grad():
        actors.logits.copy_(actors.spaces.pad(torch.randn(n, S, 3, generator=torch.Generator().manual_seed(7))))
    learner = Learner(spec, cfg, actors=actors)
    for group in learner.optimizers["loss/actor"].param_groups:
        group["lr"] = 0.0
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for step in range(600):
            if step == 300:  # the second half with a smaller critic learning rate (less Adam noise)
                for group in learner.optimizers["loss/critic"].param_groups:
                    group["lr"] = 0.001
            learner.update(_concat(collect(game, learner, 256, gen), n))
    policies = actors.policies()
    cells = list(itertools.product(range(S), *[range(a) for a in game.action_sizes]))
    idx = torch.tensor(cells)
    state = nn.functional.one_hot(idx[:, 0], S).float().repeat(1, n)
    joint = torch.cat(ActionSpaces.coerce(game.action_sizes).encode(idx[:, 1:]), -1)
    with torch.no_grad():
        q = learner.critic.min(state, joint.expand(n, *joint.shape)).reshape(n, S, *game.action_sizes)
    for i in range(n):
        exact = exact_soft_q(game, policies, i, gamma, alpha)[0]
        if form == "local":  # the best a critic of (o_i, a_i) can do: the others' actions averaged out
            other = policies[1 - i]
            marginal = torch.einsum("sxy,sy->sx", exact, other) if i == 0 else torch.einsum("sxy,sx->sy", exact, other)
            got = q[i].mean(2) if i == 0 else q[i].mean(1)  # (constant over the unread action)
            err = (got - marginal).abs().max().item()
        else:
            err = (q[i] - exact).abs().max().item()
        assert err < 0.05, f"{form}, agent {i}: max |Q - exact| = {err:.4f}"


@pytest.mark.parametrize("form", ["attention", "mean-field", "local"])
def test_each_form_resumes_bit_for_bit(tmp_path, form):
    """A run with the form (and shared parameters, float16 replay storage) cut and resumed equals the
    uninterrupted run: metrics, learner, buffer and RNG states; a resume that changes the form is refused."""
    from test_train import TINY, _resume_matches
    tiny = {**TINY, "backend": "torch", "critic": form, "share_params": True, "replay_dtype": "float16"}
    _resume_matches(tmp_path, tiny)
    with pytest.raises(ValueError, match="critic='mlp' differs from the checkpoint's"):
        from pgm_marl.train import train
        train(TrainConfig(**{**tiny, "critic": "mlp"}, out=str(tmp_path / "cut")), resume=True)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("algo,box", [("masac", False), ("maddpg", False), ("masac-auto", False),
                                      ("masac-exact", False), ("masac", True), ("maddpg", True),
                                      ("predators=maddpg,prey=masac", False)])
def test_every_critic_preset_trains_with_every_form(form, algo, box):
    """One gradient step of each preset with a critic, discrete and Box actions and a mixed team, with each form:
    finite losses that move the critic, through the unchanged losses (the exact estimator's extra batch dims,
    maddpg's buffer actions, learned temperatures)."""
    task = "predator_prey" if "=" in algo else "cooperative_navigation"
    cfg = TrainConfig(task=task, algo=algo, critic=form, hidden=16, batch_size=16, buffer_size=64,
                      env_kwargs="continuous_actions=True" if box else None, progress=False, tensorboard=False)
    learner = _filled_learner(cfg)
    before = [p.detach().clone() for p in learner.critic.parameters()]
    out = learner.learn()
    assert all(torch.isfinite(torch.tensor(v)) for v in out.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, learner.critic.parameters()))


@pytest.mark.parametrize("box", [False, True])
def test_common_draws_share_each_agents_draw_among_the_other_egos(box, monkeypatch):
    """``--common-draws`` in a real actor step (attention, discrete and Box actions): the critic sees, for each
    agent j, one value of a_j at every ego i != j, and at ego j the same own action as with per-ego draws (same
    random numbers); a full gradient step stays finite. Sharing the ego's own row, or drawing the others anew,
    fails."""
    from pgm_marl.models.worlds import CriticWorld
    seen = []
    original = CriticWorld.log_likelihood
    monkeypatch.setattr(CriticWorld, "log_likelihood",
                        lambda self, s, actions, egos, t: seen.append([a.detach() for a in actions])
                        or original(self, s, actions, egos, t))
    views = {}
    for common in (False, True):
        cfg = TrainConfig(task="cooperative_navigation", critic="attention", common_draws=common, hidden=16,
                          batch_size=16, buffer_size=64, env_kwargs="continuous_actions=True" if box else None,
                          progress=False, tensorboard=False)
        learner = _filled_learner(cfg)
        batch = learner.memory.sample()
        torch.manual_seed(5)
        learner.loss.actor_terms(batch)
        views[common] = seen.pop()  # per agent j: [B, n_ego, size]
        out = learner.learn()
        assert all(torch.isfinite(torch.tensor(v)) for v in out.values())
    n = len(views[True])
    for j, (per_ego, shared) in enumerate(zip(views[False], views[True])):
        others = [e for e in range(n) if e != j]
        assert all(torch.equal(shared[:, e], shared[:, others[0]]) for e in others)
        assert not torch.equal(per_ego[:, others[0]], per_ego[:, others[1]])  # (per-ego draws do differ)
        torch.testing.assert_close(shared[:, j], per_ego[:, j])
        assert not torch.equal(shared[:, j], shared[:, others[0]])


def _filled_learner(cfg, steps=5):
    """A learner of ``cfg`` whose buffer holds ``steps`` steps of 4 torch environments."""
    from pgm_marl.envs import VectorEnv
    from pgm_marl.learner import make_learner
    venv = VectorEnv(cfg.task, num_envs=4, seed=0, backend="torch", **cfg.env_options())
    learner = make_learner(venv.spec, cfg)
    obs = venv.reset()
    for _ in range(steps):
        actions = learner.act(obs)
        res = venv.step(actions)
        learner.store(venv.state(obs), actions, res.reward, venv.state(res.next_obs), res.terminated)
        obs = res.obs
    return learner


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("algo", ["masac", "masac-exact", "masac-optimistic", "masac-inferred"])
def test_the_actor_step_reads_the_critic_without_training_it(form, algo, monkeypatch):
    """Eq. 9 differentiates Q_i with respect to the actions only: the actor loss's graph has no path to the
    critic's weights (no wasted weight-gradient products), the gradient reaching the actors is the one computed
    with trainable critic weights, and the critic loss still trains every critic weight."""
    import contextlib

    import pgm_marl.inference.actor as actor
    cfg = TrainConfig(task="cooperative_navigation", algo=algo, critic=form, hidden=16, batch_size=16,
                      buffer_size=64, progress=False, tensorboard=False)
    learner = _filled_learner(cfg)
    batch = learner.memory.sample()
    critic, actors = list(learner.critic.parameters()), list(learner.actors.parameters())
    trainable = [p for p in critic if p.requires_grad]  # (attention's query and key biases are not)

    def losses():
        torch.manual_seed(1)  # the same draws with and without the freeze
        return learner.loss(batch)

    out = losses()
    assert [id(p) for p in critic if p.requires_grad] == [id(p) for p in trainable]  # restored afterwards
    assert all(g is None for g in torch.autograd.grad(out["loss/actor"], trainable, allow_unused=True,
                                                      retain_graph=True))
    assert all(g is not None for g in torch.autograd.grad(out["loss/critic"], trainable, allow_unused=True))
    frozen_grads = torch.autograd.grad(out["loss/actor"], actors)
    monkeypatch.setattr(actor, "frozen", lambda module: contextlib.nullcontext())
    out = losses()
    assert any(g is not None for g in torch.autograd.grad(out["loss/actor"], trainable, allow_unused=True,
                                                          retain_graph=True))  # (the check above can fail)
    for a, b in zip(frozen_grads, torch.autograd.grad(out["loss/actor"], actors)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("sizes", [(3, 3, 3), (2, 5, 3)])
def test_agent_slots_are_each_agents_action_zero_padded(sizes):
    """``AgentInputs.slots`` against slicing the joint action agent by agent: the equal-width path (a view of the
    joint action, no copy) and the padded gather must both give ego i's value of a_j at ``[i, ..., j, :]``. A
    view reshaped (size, n) instead of (n, size), or offsets off by one agent, fails."""
    from pgm_marl.critics import AgentInputs

    n, S = len(sizes), sum(sizes)
    inputs = AgentInputs([4] * n, sizes)
    joint = torch.randn(n, 2, 5, S)  # [n, *batch, B, S]: each ego its own joint action
    slots = inputs.slots(joint)
    assert slots.shape == (n, 2, 5, n, max(sizes))
    offsets = [0, *itertools.accumulate(sizes)]
    for j, size in enumerate(sizes):
        torch.testing.assert_close(slots[..., j, :size], joint[..., offsets[j]: offsets[j] + size], rtol=0, atol=0)
        assert not slots[..., j, size:].any()
    assert (slots.data_ptr() == joint.data_ptr()) == (len(set(sizes)) == 1)  # a view exactly when widths agree
