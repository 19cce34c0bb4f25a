"""Tests for pgm_marl.envs: registry, VectorEnv equivalence to raw mpe2 envs, team returns, errors, the one
interface of both backends (action format, options, random state)."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from gymnasium import spaces
from mpe2 import simple_adversary_v3, simple_push_v3, simple_speaker_listener_v4, simple_spread_v3, simple_tag_v3
from pettingzoo import ParallelEnv

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
    assert spec.agents == agents and spec.obs_dims == dims and spec.action_counts == n_actions
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
        acts = [torch.randint(n, (2,), generator=gen) for n in n_actions]
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
        acts = np.stack([rng.integers(n, size=K) for n in venv.spec.action_counts], axis=1)
        res = venv.step(list(torch.as_tensor(acts, dtype=torch.long).T))
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
        res = venv.step([torch.tensor([acts[a]]) for a in venv.spec.agents])
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
        res = venv.step([torch.zeros(2, dtype=torch.long)] * 2)
    assert res.truncated.all() and set(res.episode_return) == {"red", "blue"}
    _, spec2 = make_env("mpe2.simple_push_v3:parallel_env", max_cycles=10)
    assert spec2.max_cycles == 10


@pytest.mark.parametrize("backend", ["pettingzoo", "torch"])
def test_reset_with_seed_replays_the_same_episodes(backend):
    venv = VectorEnv("cooperative_navigation", num_envs=3, seed=0, backend=backend)
    first = venv.reset(seed=7)
    for _ in range(5):
        venv.step([torch.zeros(3, dtype=torch.long)] * venv.n_agents)
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


# ------------------------------------------------------- one interface, one action format, options checked once

class NoRngParallelEnv(ParallelEnv):
    """A valid PettingZoo parallel env that keeps no ``np_random`` (nothing in the parallel API requires one): two
    agents on a line, each moves -1, 0 or +1; both are rewarded with minus the distance between them."""

    metadata = {"name": "no_rng_v0"}

    def __init__(self, max_cycles: int = 25):
        self.possible_agents = ["left", "right"]
        self.max_cycles = max_cycles
        self._draws = None  # its own random source, under a name of its own

    def observation_space(self, agent):
        return spaces.Box(-np.inf, np.inf, (2,), np.float32)

    def action_space(self, agent):
        return spaces.Discrete(3)

    def _obs(self):
        return {a: np.array([self.pos[i], self.pos[1 - i]], dtype=np.float32)
                for i, a in enumerate(self.possible_agents)}

    def reset(self, seed=None, options=None):
        if seed is not None or self._draws is None:
            self._draws = np.random.default_rng(seed)
        self.agents, self.t = list(self.possible_agents), 0
        self.pos = self._draws.uniform(-1, 1, 2)
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions):
        self.t += 1
        self.pos = self.pos + 0.1 * (np.array([actions[a] for a in self.possible_agents]) - 1)
        reward = -float(abs(self.pos[0] - self.pos[1]))
        over = self.t >= self.max_cycles
        obs = self._obs()
        if over:
            self.agents = []
        return (obs, {a: reward for a in self.possible_agents}, {a: False for a in self.possible_agents},
                {a: over for a in self.possible_agents}, {a: {} for a in self.possible_agents})


def test_parallel_env_without_np_random_trains_and_resumes(tmp_path):
    """The random state of an env is its backend's business (``np_generators()``), not a guess by the trainer: an
    env without ``np_random`` trains, checkpoints and resumes (its own random state is not checkpointed)."""
    from pgm_marl.config import TrainConfig
    from pgm_marl.train import train

    task = f"{__name__}:NoRngParallelEnv"
    venv = VectorEnv(task, num_envs=2, seed=0)
    venv.reset()
    assert venv.backend == "pettingzoo" and venv.np_generators() == [] and venv.generators() == {}
    cfg = dict(task=task, alpha=0.1, max_cycles=5, hidden=8, batch_size=8, learning_starts=0, update_every=5,
               buffer_size=100, eval_every=2, eval_episodes=2, checkpoint_every=2, progress=False, tensorboard=False,
               out=str(tmp_path / "run"))
    run = train(TrainConfig(**cfg, episodes=2))
    train(TrainConfig(**cfg, episodes=4), resume=True)
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) >= 3 and "return/left" in rows[0]


@pytest.mark.parametrize("backend", ["torch", "pettingzoo"])
def test_one_action_format_checked_once_on_both_backends(backend):
    """Acting (``ActionSpaces.act``) produces the one env action format; the base class's ``step`` checks it and
    both backends read it; anything else is a one-line ValueError naming what is accepted."""
    from pgm_marl.models.actions import ActionSpaces

    venv = VectorEnv("cooperative_communication", num_envs=3, seed=0, backend=backend)  # Discrete(3), Discrete(5)
    venv.reset()
    spaces_ = ActionSpaces.from_specs(venv.spec.action_spaces)
    acts = spaces_.act(spaces_.pad(torch.randn(2, 3, 5)), generator=torch.Generator().manual_seed(0))
    assert [tuple(a.shape) for a in acts] == [(3,), (3,)] and all(a.dtype == torch.int64 for a in acts)
    assert venv.step(acts).reward.shape == (3, 2)
    assert torch.equal(spaces_.store(acts), torch.stack(acts, -1))
    bad = [(torch.zeros(3, 2, dtype=torch.long), r"list of 2 per-agent tensors.*got shape \[3, 2\]"),
           ([torch.zeros(3, dtype=torch.long)], "got 1 items"),
           ([torch.zeros(3, dtype=torch.long), torch.zeros(3)], "'listener_0'.*integer tensor of shape \\[3\\]"),
           ([torch.zeros(3, dtype=torch.long), torch.zeros(2, dtype=torch.long)], "shape \\[3\\], got torch.int64"),
           ([torch.tensor([0, 3, 0]), torch.zeros(3, dtype=torch.long)], "action 3 of agent 'speaker_0' in env copy 1 "
                                                                         "is out of range; accepted: 0 to 2"),
           ([np.zeros(3, dtype=np.int64)] * 2, "integer tensor.*got ndarray")]
    for actions, match in bad:
        with pytest.raises(ValueError, match=match) as info:
            venv.step(actions)
        assert "\n" not in str(info.value)
    box = VectorEnv("cooperative_navigation", num_envs=2, seed=0, backend=backend, continuous_actions=True)
    box.reset()
    assert box.step([torch.full((2, 5), 0.5)] * 3).reward.shape == (2, 3)
    with pytest.raises(ValueError, match=r"float tensor of shape \[2, 5\], got torch.int64"):
        box.step([torch.zeros(2, 5, dtype=torch.long)] * 3)


@pytest.mark.parametrize("backend", ["torch", "pettingzoo"])
@pytest.mark.parametrize("task, kwargs, message", [
    ("cooperative_navigation", {"N": 2.5}, "N=2.5 of task 'cooperative_navigation' is not accepted; accepted: an int"),
    ("cooperative_navigation", {"N": "3"}, "N='3'"),
    ("cooperative_navigation", {"N": True}, "N=True"),
    ("cooperative_navigation", {"N": 0}, "N=0"),
    ("cooperative_navigation", {"local_ratio": "x"}, "local_ratio='x'.*accepted: a number in \\[0, 1\\]"),
    ("cooperative_navigation", {"local_ratio": 1.5}, "local_ratio=1.5"),
    ("cooperative_navigation", {"continuous_actions": "yes"}, "continuous_actions='yes'.*accepted: True or False"),
    ("predator_prey", {"num_good": -1}, "num_good=-1"),
    ("predator_prey", {"num_adversaries": 2.0}, "num_adversaries=2.0"),
    ("predator_prey", {"num_obstacles": None}, "num_obstacles=None"),
    ("physical_deception", {"N": 1.5}, "N=1.5"),
    ("predator_prey", {"num_agent_neighbors": True}, "num_agent_neighbors=True"),
    ("cooperative_communication", {"N": 3}, "unknown env option 'N' of task 'cooperative_communication'; accepted:"),
    ("cooperative_navigation", {"dtype": "float64"}, "unknown env option 'dtype'"),
    ("cooperative_navigation", {"seed": 3}, "seed=3 clashes with the run's own seed; accepted: set it with --seed"),
    ("mpe2.simple_push_v3", {"num_envs": 3}, "num_envs=3 clashes"),
])
def test_env_options_are_checked_once_for_both_backends(backend, task, kwargs, message):
    """The same check (``tasks.check_env_kwargs``) refuses a bad option when a config is built and when either
    backend builds the env: one line naming the value and what is accepted; nothing is coerced."""
    from pgm_marl.config import TrainConfig

    if backend == "torch" and task not in TASKS and "clashes" not in message:  # (a clash is refused first)
        message = "backend 'torch' cannot run"
    env_kwargs = ",".join(f"{key}={value!r}" for key, value in kwargs.items())
    with pytest.raises(TaskError, match=message) as info:
        TrainConfig(task=task, backend=backend, env_kwargs=env_kwargs, alpha=0.1)
    assert "\n" not in str(info.value)
    with pytest.raises(TaskError, match=message):
        resolve_backend(task, backend, kwargs)
    if not {"seed", "num_envs", "dtype"} & set(kwargs):  # (parameters of the constructors themselves)
        with pytest.raises(TaskError, match=message):
            VectorEnv(task, num_envs=1, backend=backend, **kwargs)
        if backend == "torch" and task in TASKS:  # the backend's own constructor checks them too
            from pgm_marl.envs.torch_mpe import TorchMPEVectorEnv

            with pytest.raises(TaskError, match=message):
                TorchMPEVectorEnv(task, **kwargs)


@pytest.mark.filterwarnings("ignore:.*without specifying any render mode")  # (mpe2's, in the refused case)
@pytest.mark.parametrize("backend", ["torch", "pettingzoo"])
def test_render_frame_on_both_backends(backend, monkeypatch):
    """Rendering is a method of the interface (the GIF renderer asks no backend what it is): mpe2's renderer draws
    copy k on either backend; ``render_mode="rgb_array"`` runs on torch (``"human"`` needs mpe2's window)."""
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    assert resolve_backend("cooperative_navigation", "auto", {"render_mode": "rgb_array"}) == "torch"
    assert resolve_backend("cooperative_navigation", "auto", {"render_mode": "human"}) == "pettingzoo"
    venv = VectorEnv("predator_prey", num_envs=2, seed=0, backend=backend, render_mode="rgb_array")
    venv.reset()
    venv.step([torch.ones(2, dtype=torch.long)] * venv.n_agents)
    frame = venv.render_frame(1)
    assert isinstance(frame, np.ndarray) and frame.shape == (700, 700, 3) and frame.dtype == np.uint8
    venv.close()
    if backend == "pettingzoo":  # copies built without an image renderer: one line saying what is accepted
        plain = VectorEnv("predator_prey", num_envs=1, seed=0, backend=backend)
        plain.reset()
        with pytest.raises(TaskError, match="not an image; accepted: env copies built with render_mode='rgb_array'"):
            plain.render_frame()


def test_building_a_config_imports_neither_torch_nor_pettingzoo():
    """``TrainConfig()`` resolves the backend and checks the env options with ``envs.backends`` / ``envs.tasks``,
    which import neither torch nor pettingzoo (a flag mistake is reported in a fraction of a second)."""
    code = ("import sys\n"
            "from pgm_marl.config import TrainConfig\n"
            "from pgm_marl.envs import TaskError\n"
            "assert TrainConfig().backend == 'torch'\n"
            "assert TrainConfig(task='predator_prey', env_kwargs='curriculum=True').backend == 'pettingzoo'\n"
            "try:\n"
            "    TrainConfig(env_kwargs='N=2.5')\n"
            "except TaskError as err:\n"
            "    assert 'N=2.5' in str(err)\n"
            "print(sorted(m for m in ('torch', 'pettingzoo', 'gymnasium', 'mpe2') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
