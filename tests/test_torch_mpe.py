"""pgm_marl.envs.torch_mpe against mpe2 1.1.1: step-for-step physics/observations/rewards, reset
distributions, truncation and returns, seeding/checkpoints, specs, and that the checks can fail."""
import numpy as np
import pytest
import torch
from pettingzoo.utils.env_logger import EnvLogger

from pgm_marl.envs import make_env
from pgm_marl.envs.returns import team_step_rewards
from pgm_marl.envs.torch_mpe import TorchMPEVectorEnv

F64 = torch.float64
TOL = 1e-5

# every task with its make_env defaults plus a non-default variant
VARIANTS = [
    ("cooperative_navigation", {}),
    ("cooperative_navigation", {"N": 4, "local_ratio": 0.3}),
    ("cooperative_communication", {}),
    ("cooperative_communication", {"max_cycles": 10}),
    ("predator_prey", {}),
    ("predator_prey", {"num_good": 2, "num_adversaries": 2, "num_obstacles": 1}),
    ("physical_deception", {}),
    ("physical_deception", {"N": 3}),
]
IDS = [f"{t}-{'-'.join(f'{k}{v}' for k, v in kw.items()) or 'default'}" for t, kw in VARIANTS]


@pytest.fixture(autouse=True)
def _quiet_pettingzoo():
    EnvLogger.suppress_output()  # out-of-bound continuous actions are clipped with a warning
    yield
    EnvLogger.unsuppress_output()


def mpe2_world(env):
    """(pos [E, 2], vel [A, 2], c [A, dim_c]) of an mpe2 env, float64."""
    w = env.unwrapped.world
    return (np.stack([e.state.p_pos for e in w.entities]), np.stack([a.state.p_vel for a in w.agents]),
            np.stack([np.asarray(a.state.c, dtype=np.float64) for a in w.agents]))


def full_obs(env):
    """Full-precision observations (the parallel env returns them cast to float32)."""
    raw = env.unwrapped
    return [raw.scenario.observation(a, raw.world) for a in raw.world.agents]


class Sticky:
    """Random actions that repeat the previous one with probability 0.7 (reaches max speeds / the walls)."""

    def __init__(self, spec, K, seed, continuous=False):
        self.spec, self.K, self.rng, self.continuous = spec, K, np.random.default_rng(seed), continuous
        self.prev = None

    def __call__(self):
        K = self.K
        if self.continuous:
            dims = [a.shape[0] for a in self.spec.action_spaces]
            new = self.rng.uniform(-0.25, 1.25, size=(K, len(dims), max(dims)))  # clipped to [0, 1]
        else:
            new = np.stack([self.rng.integers(a.n, size=K) for a in self.spec.action_spaces], 1)
        if self.prev is not None:
            keep = self.rng.random((K, new.shape[1])) < 0.7
            new = np.where(keep.reshape(keep.shape + (1,) * (new.ndim - 2)), self.prev, new)
        self.prev = new
        return new


def env_actions(acts, spec, dtype=F64):
    """The env action format (per-agent tensors) of a ``Sticky`` draw: ``[K]`` indices, or agent i's first
    ``d_i`` entries of the padded ``[K, A, max d]`` continuous draw."""
    if acts.ndim == 3:
        return [torch.as_tensor(acts[:, i, : a.shape[0]], dtype=dtype) for i, a in enumerate(spec.action_spaces)]
    return list(torch.as_tensor(acts, dtype=torch.long).T)


def ints(K, n, value):
    """Every agent of K copies takes action ``value``."""
    return [torch.full((K,), value, dtype=torch.long)] * n


def mpe2_actions(acts, spec, k):
    if acts.ndim == 3:
        return {a: acts[k, i, : spec.action_spaces[i].shape[0]].copy() for i, a in enumerate(spec.agents)}
    return {a: int(acts[k, i]) for i, a in enumerate(spec.agents)}


def lockstep(task, kw, K=100, steps=25, continuous=False, seed=0, tenv=None, reload=True):
    """Run K mpe2 envs for ``steps`` world steps; before each step copy their worlds into the torch env
    (``reload``), apply the same actions to both and record the max abs differences."""
    kw = dict(kw)
    max_cycles = kw.pop("max_cycles", 25)
    if continuous:
        kw["continuous_actions"] = True
    envs = [make_env(task, max_cycles=max_cycles, **kw)[0] for _ in range(K)]
    for k, e in enumerate(envs):
        e.reset(seed=1000 * seed + k)
    tenv = tenv or TorchMPEVectorEnv(task, num_envs=K, max_cycles=max_cycles, dtype=F64, **kw)
    spec = tenv.spec
    policy = Sticky(spec, K, seed, continuous)
    err = dict(obs=0.0, obs32=0.0, reward=0.0, pos=0.0, vel=0.0, c=0.0)
    stats = dict(hits=0, max_speed=0, bound=0)
    state = tenv.load_mpe2_states(envs)
    for _ in range(min(steps, max_cycles)):
        if reload:
            state = tenv.load_mpe2_states(envs)
        acts = policy()
        state, obs, rew = tenv.step_state(state, env_actions(acts, spec))
        ref_obs32, ref_rew = [], []
        for k, e in enumerate(envs):
            o, r, _, _, _ = e.step(mpe2_actions(acts, spec, k))
            ref_obs32.append([o[a] for a in spec.agents])
            ref_rew.append([r[a] for a in spec.agents])
        ref_full = [full_obs(e) for e in envs]
        for i in range(spec.n_agents):
            ref = np.stack([o[i] for o in ref_full])
            err["obs"] = max(err["obs"], np.abs(obs[i].numpy() - ref).max())
            ref32 = np.stack([o[i] for o in ref_obs32]).astype(np.float64)
            err["obs32"] = max(err["obs32"], np.abs(obs[i].float().double().numpy() - ref32).max())
        err["reward"] = max(err["reward"], np.abs(rew.numpy() - np.array(ref_rew)).max())
        worlds = [mpe2_world(e) for e in envs]
        for j, (name, x) in enumerate((("pos", state.positions), ("vel", state.velocities), ("c", state.comm))):
            ref = np.stack([w[j] for w in worlds])
            err[name] = max(err[name], np.abs(x.numpy() - ref).max())
        rr = np.array(ref_rew)
        if task == "cooperative_navigation":  # local part of the reward: collisions
            P = np.stack([w_[0] for w_ in worlds])  # [K, E, 2]
            A = spec.n_agents
            glob = -np.linalg.norm(P[:, :A, None] - P[:, None, A:], axis=-1).min(1).sum(-1)
            stats["hits"] += int((np.abs(rr - glob[:, None] * (1 - kw.get("local_ratio", 0.5))) > 1e-9).sum())
        if task == "predator_prey":
            stats["hits"] += int(sum(r[0] > 0 for r in ref_rew))
            speeds = np.linalg.norm(np.stack([w_[1] for w_ in worlds]), axis=-1)
            caps = np.array([a.max_speed for a in envs[0].unwrapped.world.agents])
            stats["max_speed"] += int((speeds >= caps - 1e-9).sum())
            stats["bound"] += int((np.abs(np.stack([w_[0][: spec.n_agents] for w_ in worlds])) > 0.9).sum())
    return err, stats, envs, tenv


@pytest.mark.parametrize("task, kw", VARIANTS, ids=IDS)
def test_step_for_step_matches_mpe2(task, kw):
    err, stats, _, _ = lockstep(task, kw, K=100)
    assert max(err.values()) <= TOL, err
    assert err["obs"] <= 1e-9 and err["pos"] <= 1e-9, err  # float64 physics reproduces mpe2 to rounding
    if task == "cooperative_navigation":
        assert stats["hits"] > 0  # contact forces and collision penalties were exercised
    if task == "predator_prey":
        assert stats["hits"] > 0 and stats["max_speed"] > 0 and stats["bound"] > 0, stats


#: many agents (issue 15): cooperative navigation with N = 12, predator-prey with 12 predators, 4 prey, 4 obstacles
MANY = [("cooperative_navigation", {"N": 12}),
        ("predator_prey", {"num_adversaries": 12, "num_good": 4, "num_obstacles": 4})]


@pytest.mark.parametrize("task, kw", MANY, ids=["N12", "12-4-4"])
def test_many_agents_step_for_step_match_mpe2(task, kw):
    """Large teams are checked against mpe2 as the small variants are: the reference state copied in before every
    step, the same actions, then observations, rewards and state compared (8 copies, one episode)."""
    err, stats, _, _ = lockstep(task, kw, K=8)
    assert max(err.values()) <= TOL, err
    assert err["obs"] <= 1e-9 and err["pos"] <= 1e-9, err
    assert stats["hits"] > 0, stats  # collisions (navigation) / catches (predator-prey) were exercised
    if task == "predator_prey":
        assert stats["max_speed"] > 0 and stats["bound"] > 0, stats


@pytest.mark.parametrize("N", [3, 6, 12, 24, 48])
def test_cooperative_navigation_at_many_sizes(N):
    """N = 3 ... 48: the spec is mpe2's, and a few steps from mpe2's states match it (2 copies: mpe2 is slow here)."""
    assert TorchMPEVectorEnv("cooperative_navigation", N=N).spec == make_env("cooperative_navigation", N=N)[1]
    err, _, _, _ = lockstep("cooperative_navigation", {"N": N}, K=2, steps=3)
    assert max(err.values()) <= TOL, err


@pytest.mark.parametrize("task", ["cooperative_navigation", "cooperative_communication", "predator_prey",
                                  "physical_deception"])
def test_continuous_actions_match_mpe2(task):
    err, _, _, tenv = lockstep(task, {}, K=30, continuous=True, seed=1)
    assert max(err.values()) <= TOL, err
    # one action format: per-agent tensors; a padded [K, A, max d] tensor is refused in one line
    with pytest.raises(ValueError, match=r"list of \d per-agent tensors.*got shape \[30, "):
        tenv.step_state(tenv.world_state, torch.rand(30, tenv.n_agents, tenv.world.max_action_dim, dtype=F64))


@pytest.mark.parametrize("task, kw", [VARIANTS[0], VARIANTS[4]], ids=[IDS[0], IDS[4]])
def test_free_running_trajectories_match_mpe2(task, kw):
    """Load only the reset states, then let both simulators run 25 steps on their own."""
    err, _, _, _ = lockstep(task, kw, K=50, reload=False, seed=2)
    assert max(err.values()) <= TOL, err


def _moments(x):
    """Per-column mean, variance, and standard errors of both (x: [n, d])."""
    n = x.shape[0]
    m = x.mean(0)
    v = x.var(0)
    m4 = ((x - m) ** 4).mean(0)
    return m, v, v / n, np.maximum(m4 - v ** 2, 1e-12) / n


@pytest.mark.parametrize("task, kw", VARIANTS, ids=IDS)
def test_reset_distribution_matches_mpe2(task, kw):
    kw = {k: v for k, v in kw.items() if k != "max_cycles"}
    env, _ = make_env(task, **kw)
    env.reset(seed=0)
    ref_pos, ref_goal = [], []
    tenv = TorchMPEVectorEnv(task, num_envs=20000, seed=1, dtype=F64, **kw)
    world = tenv.world
    for _ in range(2000):
        env.reset()
        ref_pos.append(mpe2_world(env)[0].ravel())
        ref_goal.append(world.goal_from_mpe2(env.unwrapped.world))
    ref_pos = np.array(ref_pos)
    tenv.reset()
    s = tenv.world_state
    pos = s.positions.reshape(20000, -1).numpy()
    (m1, v1, sm1, sv1), (m2, v2, sm2, sv2) = _moments(ref_pos), _moments(pos)
    assert (np.abs(m1 - m2) <= 5 * np.sqrt(sm1 + sm2)).all(), (m1, m2)
    assert (np.abs(v1 - v2) <= 5 * np.sqrt(sv1 + sv2)).all(), (v1, v2)
    # supports: agents in [-1, 1], landmarks in the scenario's range (simple_tag: [-0.9, 0.9])
    lim = np.abs(ref_pos).reshape(2000, -1, 2).max((0, 2))
    tl = np.abs(s.positions.numpy()).max((0, 2))
    assert (tl <= np.where(lim > 0.9, 1.0, 0.9)).all() and (tl > np.where(lim > 0.9, 0.99, 0.89)).all()
    assert not s.vel.any() and not s.c.any() and not tenv.t.any()
    if task in ("cooperative_communication", "physical_deception"):
        L = world.L
        f1 = np.bincount(ref_goal, minlength=L) / 2000
        f2 = torch.bincount(s.goal, minlength=L).numpy() / 20000
        p = (f1 + f2) / 2
        assert (np.abs(f1 - f2) <= 5 * np.sqrt(p * (1 - p) * (1 / 2000 + 1 / 20000))).all(), (f1, f2)
        assert (f2 > 0).all()
    else:
        assert not s.goal.any()


@pytest.mark.parametrize("task, kw", [VARIANTS[0], VARIANTS[2], VARIANTS[5], VARIANTS[7]],
                         ids=[IDS[0], IDS[2], IDS[5], IDS[7]])
def test_truncation_autoreset_and_episode_returns(task, kw):
    max_cycles = 7 if task == "cooperative_communication" else 25
    K = 3
    env = TorchMPEVectorEnv(task, num_envs=K, seed=4, max_cycles=max_cycles, **kw)
    spec = env.spec
    obs = env.reset()
    assert [tuple(o.shape) for o in obs] == [(K, d) for d in spec.obs_dims]
    assert all(o.dtype == torch.float32 for o in obs)
    gen = torch.Generator().manual_seed(0)
    hand = {t: torch.zeros(K, dtype=F64) for t in spec.teams}
    for step in range(1, 2 * max_cycles + 1):
        acts = [torch.randint(a.n, (K,), generator=gen) for a in spec.action_spaces]
        prev = env.world_state
        res = env.step(acts)
        ended = step % max_cycles == 0
        assert res.reward.shape == (K, spec.n_agents) and res.reward.dtype == torch.float32
        assert res.truncated.tolist() == [ended] * K and not res.terminated.any()
        assert res.done.tolist() == [ended] * K
        # next_obs is the true successor of the previous state, obs the (reset) current state
        _, ref_next, ref_rew = env.step_state(prev, acts)
        assert all(torch.equal(a, b.float()) for a, b in zip(res.next_obs, ref_next))
        assert torch.equal(res.reward, ref_rew.float())
        for t, r in team_step_rewards(res.reward.double(), spec).items():
            hand[t] += r
        if ended:
            assert not torch.equal(env.state(res.obs), env.state(res.next_obs))
            assert not env.t.any() and not env.world_state.vel.any()
            for t in spec.teams:
                assert torch.allclose(res.episode_return[t].double(), hand[t], atol=1e-5, rtol=1e-6)
                hand[t].zero_()
        else:
            assert all(torch.equal(a, b) for a, b in zip(res.obs, res.next_obs))
            assert all(torch.isnan(v).all() for v in res.episode_return.values())
            assert (env.t == step % max_cycles).all()
        cur = env.world.split(env.world.observation(env.world_state).float())
        assert all(torch.equal(a, b) for a, b in zip(res.obs, cur))
        fin = env.world.split(env.world.observation(env.last_next_state).float())
        assert all(torch.equal(a, b) for a, b in zip(res.next_obs, fin))
        assert (env.last_next_t == (max_cycles if ended else step % max_cycles)).all()
    assert env.state(res.obs).shape == (K, spec.state_dim)


def _rollout(env, steps, seed=0):
    gen = torch.Generator().manual_seed(seed)
    out = [torch.cat(env.reset(), -1)]
    for _ in range(steps):
        acts = [torch.randint(a.n, (env.num_envs,), generator=gen) for a in env.spec.action_spaces]
        res = env.step(acts)
        out += [env.state(res.obs), res.reward]
    return out


def test_seeding_reset_seed_and_checkpoints():
    a = TorchMPEVectorEnv("predator_prey", num_envs=5, seed=3)
    b = TorchMPEVectorEnv("predator_prey", num_envs=5, seed=3)
    ra, rb = _rollout(a, 30), _rollout(b, 30)  # crosses an auto-reset
    assert all(torch.equal(x, y) for x, y in zip(ra, rb))
    c = TorchMPEVectorEnv("predator_prey", num_envs=5, seed=4)
    assert not torch.equal(_rollout(c, 0)[0], ra[0])
    # reset(seed) reseeds; plain reset continues the generator
    first = a.reset(seed=7)
    again = a.reset(seed=7)
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    assert not torch.equal(a.reset()[0], first[0])
    fresh = TorchMPEVectorEnv("predator_prey", num_envs=5, seed=7)
    assert all(torch.equal(x, y) for x, y in zip(fresh.reset(), first))
    # generator state round-trips
    g = a.generator.get_state()
    o1 = a.reset()
    a.generator.set_state(g)
    assert all(torch.equal(x, y) for x, y in zip(a.reset(), o1))
    # whole-env checkpoint mid-episode continues identically
    for _ in range(10):
        a.step(ints(5, 4, 0))
    sd = a.state_dict()
    tail1 = [a.step(ints(5, 4, 1)) for _ in range(20)]
    d = TorchMPEVectorEnv("predator_prey", num_envs=5, seed=99)
    d.load_state_dict(sd)
    tail2 = [d.step(ints(5, 4, 1)) for _ in range(20)]
    for r1, r2 in zip(tail1, tail2):
        assert torch.equal(torch.cat(r1.obs, -1), torch.cat(r2.obs, -1)) and torch.equal(r1.reward, r2.reward)
        for t in r1.episode_return:
            assert torch.equal(r1.episode_return[t].nan_to_num(-1), r2.episode_return[t].nan_to_num(-1))


@pytest.mark.parametrize("task, kw", VARIANTS + [
    ("cooperative_navigation", {"continuous_actions": True}),
    ("cooperative_communication", {"continuous_actions": True}),
    ("predator_prey", {"continuous_actions": True, "num_good": 2}),
    ("physical_deception", {"continuous_actions": True, "teams": {"a": ["adversary_0", "agent_1"], "b": ["agent_0"]}}),
])
def test_spec_equals_make_env(task, kw):
    kw = dict(kw)
    ref = make_env(task, **kw)[1]
    env = TorchMPEVectorEnv(task, **kw)
    assert env.spec == ref and env.n_agents == ref.n_agents


def test_errors_are_one_line():
    env = TorchMPEVectorEnv("cooperative_communication", num_envs=2)
    with pytest.raises(RuntimeError):
        env.step(ints(2, 2, 0))
    env.reset()
    for bad in (torch.zeros(2, 2, dtype=torch.long), ints(3, 2, 0), ints(2, 3, 0), [torch.zeros(2)] * 2):
        with pytest.raises(ValueError, match=r"(list of 2 per-agent tensors|shape \[2\]).*got") as info:
            env.step(bad)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="action 3 of agent 'speaker_0' in env copy 0 is out of range"):
        env.step([torch.tensor([3, 0]), torch.tensor([0, 0])])  # the speaker has 3 actions
    from pgm_marl.envs import TaskError
    with pytest.raises(TaskError, match="num_agent_neighbors"):
        TorchMPEVectorEnv("cooperative_navigation", num_agent_neighbors=2)
    with pytest.raises(TaskError, match="bogus"):
        TorchMPEVectorEnv("predator_prey", bogus=1)
    with pytest.raises(TaskError):
        TorchMPEVectorEnv("mpe2.simple_push_v3")


@pytest.mark.parametrize("task", ["cooperative_communication", "physical_deception", "predator_prey"])
def test_to_mpe2_round_trip_and_render(task):
    tenv = TorchMPEVectorEnv(task, num_envs=4, seed=5, dtype=F64)
    tenv.reset()
    for _ in range(3):
        tenv.step(ints(4, tenv.n_agents, 1))
    env = make_env(task, render_mode="rgb_array")[0]
    env.reset(seed=0)
    tenv.to_mpe2(2, env)
    before, t_before = tenv.world_state, tenv.t.copy()
    tenv.load_mpe2_state(1, env)
    after = tenv.world_state
    assert tenv.t[1] == t_before[2] == 3
    for x, y in zip((before.positions, before.velocities, before.comm, before.goal),
                    (after.positions, after.velocities, after.comm, after.goal)):
        assert torch.equal(y[1], x[2]) and torch.equal(y[0], x[0]) and torch.equal(y[3], x[3])
    obs = tenv.world.split(tenv.world.observation(after))
    assert all(torch.allclose(o[1], torch.as_tensor(r), rtol=0, atol=1e-12) for o, r in zip(obs, full_obs(env)))
    if task == "cooperative_communication":
        w = env.unwrapped.world
        assert np.allclose(w.agents[1].color, w.agents[0].goal_b.color + 0.45)
    # the mpe2 env continues from the written state exactly as the torch copy does
    _, nobs, nrew = tenv.step_state(before, ints(4, tenv.n_agents, 1))
    _, rew, _, _, _ = env.step({a: 1 for a in tenv.spec.agents})
    assert all(np.abs(o[2].numpy() - r).max() < 1e-12 for o, r in zip(nobs, full_obs(env)))
    assert np.abs(nrew[2].numpy() - np.array([rew[a] for a in tenv.spec.agents])).max() < 1e-12
    frame = env.render()
    assert frame.shape == (700, 700, 3)
    # final=True writes the pre-reset successor state of the last step (an episode's last frame)
    tenv2 = TorchMPEVectorEnv(task, num_envs=2, seed=5, dtype=F64, max_cycles=3)
    tenv2.reset()
    for _ in range(3):
        res = tenv2.step(ints(2, tenv2.n_agents, 1))
    assert res.truncated.all()
    tenv2.to_mpe2(1, env, final=True)
    assert env.unwrapped.steps == 3
    assert all(np.abs(o[1].numpy() - r).max() < 1e-6 for o, r in zip(res.next_obs, full_obs(env)))
    tenv2.to_mpe2(1, env)
    assert env.unwrapped.steps == 0
    assert all(np.abs(o[1].numpy() - r).max() < 1e-6 for o, r in zip(res.obs, full_obs(env)))


@pytest.mark.parametrize("task, mutation", [
    ("predator_prey", "damping"), ("predator_prey", "contact_margin"), ("predator_prey", "obs_order"),
    ("predator_prey", "sensitivity"), ("predator_prey", "max_speed"), ("predator_prey", "bound"),
    ("cooperative_navigation", "local_ratio"), ("cooperative_navigation", "contact_force"),
    ("cooperative_communication", "comm_slot"), ("physical_deception", "obs_order"),
])
def test_checks_detect_wrong_semantics(task, mutation):
    """The step-for-step comparison fails for a wrong damping, contact margin, observation order, ..."""
    K = 10
    tenv = TorchMPEVectorEnv(task, num_envs=K, dtype=F64)
    w = tenv.world
    if mutation == "damping":
        w.damping = 0.2
    elif mutation == "contact_margin":
        w.contact_margin = 1e-2
    elif mutation == "contact_force":
        w.contact_force = 90.0
    elif mutation == "obs_order":  # swap two landmarks' relative positions
        rows = [r if len(r) < 8 else r[:4] + r[6:8] + r[4:6] + r[8:] for r in w.obs_rows]
        w._build_obs(w.obs_pool, rows)
    elif mutation == "comm_slot":  # listener reads message entries in the wrong order
        rows = [w.obs_rows[0], w.obs_rows[1][:-3] + w.obs_rows[1][-2:] + w.obs_rows[1][-3:-2]]
        w._build_obs(w.obs_pool, rows)
    elif mutation == "sensitivity":
        w._tab_u = w._tab_u * 1.01
    elif mutation == "max_speed":
        w.has_max_speed = False
    elif mutation == "bound":
        w.bound = torch.zeros_like
    elif mutation == "local_ratio":
        w.local_ratio = 0.45
    err, _, _, _ = lockstep(task, {}, K=K, steps=10, tenv=tenv, seed=3)
    assert max(err.values()) > 1e-3, err


def test_float32_default_close_to_mpe2():
    err, _, _, tenv = lockstep("cooperative_navigation", {}, K=20, tenv=TorchMPEVectorEnv(
        "cooperative_navigation", num_envs=20))
    assert tenv.world_state.pos.dtype == torch.float32
    assert max(err.values()) <= 1e-4, err
