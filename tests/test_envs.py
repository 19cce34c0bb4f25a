"""Tests for pgm_marl.envs: registry, VectorEnv equivalence to raw mpe2 envs, team returns, errors."""
import numpy as np
import pytest
import torch
from mpe2 import simple_adversary_v3, simple_push_v3, simple_speaker_listener_v4, simple_spread_v3, simple_tag_v3

from pgm_marl.envs import TASKS, TaskError, VectorEnv, available_tasks, make_env, resolve_backend, team_returns

# task -> (raw mpe2 constructor kwargs, agents, obs dims, action sizes, teams)
EXPECTED = {
    "cooperative_navigation": (
        simple_spread_v3, {"N": 3}, ("agent_0", "agent_1", "agent_2"), (18, 18, 18), (5, 5, 5),
        {"all": ("agent_0", "agent_1", "agent_2")}),
    "cooperative_communication": (
        simple_speaker_listener_v4, {}, ("speaker_0", "listener_0"), (3, 11), (3, 5),
        {"all": ("speaker_0", "listener_0")}),
    "predator_prey": (
        simple_tag_v3, {"num_obstacles": 2}, ("adversary_0", "adversary_1", "adversary_2", "agent_0"),
        (16, 16, 16, 14), (5, 5, 5, 5),
        {"predators": ("adversary_0", "adversary_1", "adversary_2"), "prey": ("agent_0",)}),
    "physical_deception": (
        simple_adversary_v3, {"N": 2}, ("adversary_0", "agent_0", "agent_1"), (8, 10, 10), (5, 5, 5),
        {"good": ("agent_0", "agent_1"), "adversary": ("adversary_0",)}),
}


def raw_env(task):
    module, kwargs = EXPECTED[task][:2]
    return module.parallel_env(max_cycles=25, continuous_actions=False, **kwargs)


def t(x):
    return torch.from_numpy(np.asarray(x, dtype=np.float32))


def test_registry_names():
    assert set(TASKS) == set(EXPECTED) and available_tasks() == TASKS


@pytest.mark.parametrize("task", list(EXPECTED))
def test_task_spec_and_full_episodes(task):
    _, _, agents, dims, n_actions, teams = EXPECTED[task]
    env, spec = make_env(task, seed=0)
    assert spec.agents == agents and spec.obs_dims == dims and spec.action_dims == n_actions
    assert spec.teams == teams and spec.max_cycles == 25
    assert all(a.kind == "discrete" for a in spec.action_spaces)
    spec.require_discrete()
    for backend in ("pettingzoo", "torch"):
        assert VectorEnv(task, num_envs=2, seed=0, backend=backend).spec == spec
    venv = VectorEnv(task, num_envs=2, seed=0, backend="pettingzoo")
    obs = venv.reset()
    assert [o.shape for o in obs] == [(2, d) for d in dims] and all(o.dtype == torch.float32 for o in obs)
    assert venv.state(obs).shape == (2, sum(dims))
    gen = torch.Generator().manual_seed(0)
    for step in range(1, 51):  # two full episodes
        acts = torch.stack([torch.randint(n, (2,), generator=gen) for n in n_actions], dim=1)
        res = venv.step(acts)
        ended = step % 25 == 0
        assert res.reward.shape == (2, len(agents)) and res.reward.dtype == torch.float32
        assert res.truncated.tolist() == [ended] * 2 and not res.terminated.any()
        assert set(res.episode_return) == set(teams)
        for ret in res.episode_return.values():
            assert bool(torch.isfinite(ret).all()) if ended else bool(torch.isnan(ret).all())


@pytest.mark.parametrize("task", list(EXPECTED))
def test_vector_matches_single_envs_across_autoreset(task):
    K, seed = 3, 11
    venv = VectorEnv(task, num_envs=K, seed=seed, backend="pettingzoo")
    refs = [raw_env(task) for _ in range(K)]
    agents = venv.spec.agents
    ref_obs = [r.reset(seed=seed + k)[0] for k, r in enumerate(refs)]
    obs = venv.reset()
    rng = np.random.default_rng(0)
    for step in range(1, 51):
        for i, a in enumerate(agents):
            assert torch.equal(obs[i], torch.stack([t(o[a]) for o in ref_obs]))
        acts = np.stack([rng.integers(n, size=K) for n in venv.spec.action_dims], axis=1)
        res = venv.step(torch.as_tensor(acts, dtype=torch.long))
        finals, rewards = [], []
        for k, r in enumerate(refs):
            o, rew, _, tr, _ = r.step({a: int(acts[k, i]) for i, a in enumerate(agents)})
            finals.append(o)
            rewards.append([rew[a] for a in agents])
        assert torch.equal(res.reward, t(rewards))
        for i, a in enumerate(agents):
            assert torch.equal(res.next_obs[i], torch.stack([t(o[a]) for o in finals]))
        if step % 25 == 0:  # boundary: next_obs is the final obs, obs is the (unseeded) reset obs
            assert all(not r.agents for r in refs)
            ref_obs = [r.reset()[0] for r in refs]
            assert not torch.equal(res.obs[0], res.next_obs[0])
        else:
            ref_obs = finals
        obs = res.obs
    assert venv.state(obs).shape == (K, sum(venv.spec.obs_dims))


@pytest.mark.parametrize("task", ["cooperative_navigation", "physical_deception", "predator_prey"])
def test_team_returns_match_hand_computation(task):
    teams = EXPECTED[task][5]
    env, seed = raw_env(task), 3
    venv = VectorEnv(task, num_envs=1, seed=seed, backend="pettingzoo")
    venv.reset()
    env.reset(seed=seed)
    rng = np.random.default_rng(1)
    hand = {team: 0.0 for team in teams}
    raw = []
    while env.agents:
        acts = {a: int(rng.integers(env.action_space(a).n)) for a in env.possible_agents}
        _, rew, _, _, _ = env.step(acts)
        raw.append([rew[a] for a in env.possible_agents])
        for team, members in teams.items():
            hand[team] += sum(rew[a] for a in members) / len(members)
        res = venv.step(torch.tensor([[acts[a] for a in venv.spec.agents]]))
    for team in teams:
        assert res.episode_return[team].item() == pytest.approx(hand[team], rel=1e-5, abs=1e-5)
    rets = team_returns(torch.tensor(raw, dtype=torch.float64), venv.spec)
    assert {k: pytest.approx(v.item()) for k, v in rets.items()} == hand
    batched = team_returns(torch.tensor(raw, dtype=torch.float64)[:, None].expand(-1, 2, -1), venv.spec)
    assert all(v.shape == (2,) for v in batched.values())


def test_team_returns_definition_small():
    _, spec = make_env("physical_deception")  # agents: adversary_0, agent_0, agent_1
    r = torch.tensor([[1.0, 2.0, 4.0], [-1.0, 0.0, 2.0]])
    out = team_returns(r, spec)
    assert out["good"].item() == pytest.approx(3.0 + 1.0) and out["adversary"].item() == pytest.approx(0.0)


@pytest.mark.parametrize("task, teams, bad", [
    ("nonexistent_task", None, "nonexistent_task"),
    ("mpe2.simple_nothing_v9", None, "mpe2.simple_nothing_v9"),
    ("mpe2.simple_spread_v3.env", None, "not parallel"),
    ("mpe2.simple_spread_v3:env", None, "not parallel"),
    ("cooperative_navigation", {"all": ["agent_0", "agent_1"]}, "agent_2"),
    ("cooperative_navigation", {"a": ["agent_0", "agent_1"], "b": ["agent_1", "agent_2"]}, "agent_1"),
    ("cooperative_navigation", {"all": ["agent_0", "agent_1", "agent_2", "agent_9"]}, "agent_9"),
])
def test_bad_input_raises_task_error(task, teams, bad):
    with pytest.raises(TaskError, match=bad) as info:
        make_env(task, teams=teams)
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


def test_unknown_task_lists_accepted_names():
    with pytest.raises(TaskError) as info:
        make_env("spread")
    msg = str(info.value)
    assert all(name in msg for name in TASKS) and "mpe2.simple_push_v3" in msg


def test_require_discrete_names_agent_and_box_actions_step():
    _, spec = make_env("mpe2.simple_push_v3", continuous_actions=True)
    with pytest.raises(TaskError, match="adversary_0.*Box"):
        spec.require_discrete()
    venv = VectorEnv("mpe2.simple_push_v3", num_envs=2, seed=0, continuous_actions=True)  # Box actions step
    venv.reset()
    result = venv.step([torch.full((2, 5), 0.5), torch.full((2, 5), 0.25)])
    assert result.reward.shape == (2, 2)
    with pytest.raises(ValueError, match="per-agent tensors"):
        venv.step(torch.zeros(2, 2, dtype=torch.long))
    venv.close()


def test_import_path_env_default_and_user_teams():
    env, spec = make_env("mpe2.simple_push_v3")
    assert spec.agents == ("adversary_0", "agent_0") and spec.obs_dims == (8, 19)
    assert spec.teams == {"adversary_0": ("adversary_0",), "agent_0": ("agent_0",)}
    teams = {"red": ["adversary_0"], "blue": ["agent_0"]}
    venv = VectorEnv("mpe2.simple_push_v3", num_envs=2, seed=5, teams=teams)
    assert venv.spec.teams == {"red": ("adversary_0",), "blue": ("agent_0",)}
    ref = simple_push_v3.parallel_env(max_cycles=25)
    ref_obs, _ = ref.reset(seed=6)
    obs = venv.reset()
    assert torch.equal(obs[1][1], t(ref_obs["agent_0"]))
    for _ in range(25):
        res = venv.step(torch.zeros(2, 2, dtype=torch.long))
    assert res.truncated.all() and set(res.episode_return) == {"red", "blue"}
    _, spec2 = make_env("mpe2.simple_push_v3:parallel_env", max_cycles=10)
    assert spec2.max_cycles == 10


@pytest.mark.parametrize("backend", ["pettingzoo", "torch"])
def test_reset_with_seed_replays_the_same_episodes(backend):
    venv = VectorEnv("cooperative_navigation", num_envs=3, seed=0, backend=backend)
    first = venv.reset(seed=7)
    for _ in range(5):
        venv.step(torch.zeros(3, venv.n_agents, dtype=torch.long))
    again = venv.reset(seed=7)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(venv.reset(seed=8)[0], first[0])


def test_backend_choice():
    assert VectorEnv("cooperative_navigation", num_envs=2).backend == "torch"  # auto: torch for the paper tasks
    assert VectorEnv("mpe2.simple_push_v3", num_envs=1).backend == "pettingzoo"  # import paths: PettingZoo
    with pytest.raises(TaskError, match="backend 'torch' cannot run 'mpe2.simple_push_v3'"):
        VectorEnv("mpe2.simple_push_v3", backend="torch")
    with pytest.raises(TaskError, match="unknown backend 'jax'; accepted: auto, torch, pettingzoo"):
        VectorEnv("cooperative_navigation", backend="jax")


def test_auto_backend_falls_back_to_pettingzoo_for_options_the_torch_port_lacks():
    """mpe2 options the torch port only has at their defaults (curriculum, partial observability) are run by mpe2
    itself under ``auto``; an explicit ``backend="torch"`` still refuses them."""
    assert resolve_backend("predator_prey", "auto", {"curriculum": True}) == "pettingzoo"
    assert resolve_backend("predator_prey", "auto", {"curriculum": False, "num_good": 2}) == "torch"
    assert resolve_backend("cooperative_navigation", "auto", {"continuous_actions": True}) == "torch"
    assert VectorEnv("physical_deception", num_envs=1, num_agent_neighbors=1).backend == "pettingzoo"
    with pytest.raises(TaskError, match="curriculum=True is not supported"):
        VectorEnv("predator_prey", backend="torch", curriculum=True)
