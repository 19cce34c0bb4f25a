"""``TorchMPEVectorEnv``: K copies of an MPE task stepped as one batch of tensor ops.

The torch backend of :class:`~pgm_marl.envs.base.VectorEnvBase` (same constructor as the PettingZoo backend,
``spec``, ``reset``, ``step`` -> :class:`~pgm_marl.envs.base.StepResult`, ``state``, ``close``, the env action
format) for the four tasks of :data:`pgm_marl.envs.tasks.TASKS`, reproducing mpe2 1.1.1's ``SimpleEnv`` +
parallel wrapper (``reset`` / ``step`` / truncation after ``max_cycles`` world steps) on top of ``core.py``.
Options are checked once, in :func:`make_world`, by the same function as on the PettingZoo backend
(:func:`~pgm_marl.envs.tasks.check_env_kwargs`), plus what the port lacks
(:func:`~pgm_marl.envs.tasks.torch_unsupported`).

Differences from the PettingZoo backend:

- RNG: one ``torch.Generator`` (``self.generator``, on ``device``; ``generators()`` names it ``"env"``) draws
  every reset of every copy. The first ``reset()`` seeds it with ``seed``; later resets (explicit or automatic)
  continue it; ``reset(seed=s)`` reseeds it with ``s``. Reset *distributions* equal mpe2's, the random numbers do
  not (mpe2 uses one NumPy generator per env). Checkpoint with ``self.generator.get_state()`` / ``set_state()``
  or the whole env with ``state_dict()`` / ``load_state_dict()``.
- ``continuous_actions=True`` is supported: agent ``i``'s action ``[K, spec.action_spaces[i].shape[0]]`` is
  mpe2's Box layout (``[no-op, -x, +x, -y, +y]`` for movable agents, then ``dim_c`` message entries for talking
  agents; values are clipped to ``[0, 1]`` like pettingzoo's ``ClipOutOfBoundsWrapper``).
- Full precision: physics runs in ``dtype``; ``StepResult`` carries float32 like the PettingZoo backend, and
  ``last_next_obs`` (per-agent ``[K, d_i]``) / ``last_reward`` (``[K, n_agents]``) keep the last step's
  values in ``dtype``. ``step_state(state, actions)`` is the pure transition (no auto-reset).
- World state: ``self.world_state`` (:class:`~pgm_marl.envs.torch_mpe.core.MPEState`, copy axis last:
  ``pos [2, E, K]``, ``vel [2, A, K]``, ``c [dim_c, A, K]``; ``.positions`` / ``.velocities`` / ``.comm``
  give ``[K, *, *]``); the step counters ``self.t`` (int64 NumPy ``[K]``) live on the host, so the
  time limit never waits for the device.
- Observations are column views ``[K, d_i]`` of one contiguous ``[K, sum(obs_dims)]`` tensor (the
  global state), not separate tensors.
- mpe2 interop: ``load_mpe2_state(k, env)`` / ``load_mpe2_states(envs)`` / ``to_mpe2(k, env)``
  (e.g. to render copy ``k`` with mpe2's own renderer, as ``render_frame(k)`` does; ``to_mpe2(k, env,
  final=True)`` writes the last step's pre-reset successor ``last_next_state``, i.e. an episode's last frame).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from ..base import StepResult, VectorEnvBase
from ..returns import ReturnAccumulator
from ..tasks import _REGISTRY, TaskError, TaskSpec, _check_teams, check_env_kwargs, make_env, torch_unsupported
from .core import MPEState, MPEWorld, where_state
from .simple_adversary import SimpleAdversary
from .simple_speaker_listener import SimpleSpeakerListener
from .simple_spread import SimpleSpread
from .simple_tag import SimpleTag

#: task -> (scenario class, the options that shape its world: its constructor's keyword arguments); the other
#: options are rendering, infos, the action kind, or mpe2 features the port runs only at their defaults
SCENARIOS = {
    "cooperative_navigation": (SimpleSpread, ("N", "local_ratio")),
    "cooperative_communication": (SimpleSpeakerListener, ()),
    "predator_prey": (SimpleTag, ("num_good", "num_adversaries", "num_obstacles")),
    "physical_deception": (SimpleAdversary, ("N",)),
}


def make_world(task: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
               **env_kwargs) -> MPEWorld:
    """The scenario object of ``task`` with ``make_env``'s defaults (``continuous_actions=False``); the options
    are checked here, once (one-line ``TaskError``: a bad value, or one the torch port does not run)."""
    if task not in SCENARIOS:
        raise TaskError(f"the torch MPE cannot run {task!r}: {torch_unsupported(task, {})}; "
                        "accepted: --backend pettingzoo or auto")
    check_env_kwargs(task, env_kwargs)
    why = torch_unsupported(task, env_kwargs)
    if why is not None:
        raise TaskError(f"torch MPE {task!r}: {why}; accepted: --backend pettingzoo or auto")
    cls, shaping = SCENARIOS[task]
    kwargs = {**_REGISTRY[task][1], "continuous_actions": False, **env_kwargs}
    scen = {key: value for key, value in kwargs.items() if key in shaping}
    return cls(continuous_actions=kwargs["continuous_actions"], device=device, dtype=dtype, **scen)


class _Returns(ReturnAccumulator):
    """``ReturnAccumulator`` with its float64 totals on ``device`` and cached team indices (same numbers)."""

    def __init__(self, spec: TaskSpec, num_envs: int, device: torch.device):
        super().__init__(spec, num_envs)
        self.totals = {t: v.to(device) for t, v in self.totals.items()}
        self._idx = {t: None if spec.team_indices(t) == tuple(range(spec.n_agents))
                     else torch.as_tensor(spec.team_indices(t), device=device) for t in spec.teams}

    def add(self, reward: torch.Tensor, done: torch.Tensor, any_done: Optional[bool] = None) -> Dict[str, torch.Tensor]:
        r64 = reward.to(torch.float64)
        out = {}
        any_done = bool(done.any()) if any_done is None else any_done
        for t, idx in self._idx.items():
            r = (r64 if idx is None else r64.index_select(-1, idx)).mean(-1)
            total = self.totals[t]
            total += r
            if any_done:
                out[t] = torch.where(done, total, float("nan")).float()
                total.masked_fill_(done, 0.0)
            else:
                out[t] = torch.full(done.shape, float("nan"), device=done.device)
        return out


class TorchMPEVectorEnv(VectorEnvBase):
    """``num_envs`` copies of one of the four MPE tasks as batched tensors (see the module docstring)."""

    backend = "torch"

    def __init__(self, task: str, num_envs: int = 1, seed: int = 0, teams=None, max_cycles: int = 25,
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, **env_kwargs):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.device = torch.device(device)
        self.dtype = dtype
        self.world = make_world(task, device=self.device, dtype=dtype, **env_kwargs)
        self.continuous = self.world.continuous
        agents = self.world.agent_names
        _, _, team_of, order = _REGISTRY[task]
        if teams is None:
            teams = {t: [a for a in agents if team_of(a) == t] for t in order}
        self.spec = TaskSpec(name=task, agents=agents, obs_dims=self.world.obs_dims,
                             action_spaces=self.world.action_specs(), teams=_check_teams(task, agents, teams),
                             max_cycles=int(max_cycles))
        self.num_envs, self.seed, self.max_cycles = int(num_envs), seed, int(max_cycles)
        self.generator = torch.Generator(device=self.device)
        self._seeded = False
        self._returns = _Returns(self.spec, self.num_envs, self.device)
        self.world_state: Optional[MPEState] = None
        self.t = np.zeros(self.num_envs, dtype=np.int64)
        self.last_next_obs: Optional[List[torch.Tensor]] = None
        self.last_reward: Optional[torch.Tensor] = None
        self.last_next_state: Optional[MPEState] = None  # last step's successor state, before auto-reset
        self.last_next_t = self.t.copy()  # its step counters
        self._options = dict(env_kwargs)  # for the mpe2 env that draws the frames (render_frame)
        self._viewer = None

    # ------------------------------------------------------------------ core API
    def reset(self, seed: int | None = None) -> List[torch.Tensor]:
        """Reset all copies; the first reset (or ``reset(seed=s)``) seeds ``self.generator``."""
        if seed is not None:
            self.seed, self._seeded = seed, False
        if not self._seeded:
            self.generator.manual_seed(int(self.seed))
            self._seeded = True
        self.world_state = self.world.reset_state(self.num_envs, self.generator)
        self.t[:] = 0
        self._returns.reset()
        return self.world.split(self.world.observation(self.world_state).to(torch.float32))

    @property
    def started(self) -> bool:
        return self.world_state is not None

    def _world_actions(self, actions: List[torch.Tensor]) -> torch.Tensor:
        """Checked env actions in the world's layout (copy axis last): discrete indices ``[A, K]`` (long), or
        continuous ``[max_action_dim, A, K]`` in ``dtype`` (agent ``i``'s entries first, zero-padded)."""
        if not self.continuous:
            return torch.stack(actions).to(device=self.device, dtype=torch.long)
        D = self.world.max_action_dim
        return torch.stack([torch.nn.functional.pad(a.to(device=self.device, dtype=self.dtype).T,
                                                    (0, 0, 0, D - a.shape[1])) for a in actions], 1)

    def step_state(self, state: MPEState, actions):
        """Pure transition without auto-reset: ``(next MPEState, per-agent obs [K, d_i], reward [K, A])``
        in ``dtype`` (``state`` may hold any number ``K`` of copies; ``actions``: the env action format for K)."""
        a = self._world_actions(self.check_actions(actions, num_envs=state.num_envs))
        ns, obs, rew = self.world.step(state, a)
        return ns, self.world.split(obs), rew

    def _step(self, actions: List[torch.Tensor]) -> StepResult:
        """Step every copy with checked actions; auto-reset the copies that reached ``max_cycles``."""
        a = self._world_actions(actions)
        world = self.world
        ns, obs, rew = world.step(self.world_state, a)
        self.last_next_obs, self.last_reward, self.last_next_state = world.split(obs), rew, ns
        self.t += 1
        self.last_next_t = self.t.copy()
        done_np = self.t >= self.max_cycles
        done = torch.from_numpy(done_np).to(self.device)
        next_obs = world.split(obs.to(torch.float32))
        obs_after = next_obs
        any_done = bool(done_np.any())
        if any_done:
            ns = where_state(done, world.reset_state(self.num_envs, self.generator), ns)
            self.t[done_np] = 0
            obs_after = world.split(world.observation(ns).to(torch.float32))
        self.world_state = ns
        reward = rew.to(torch.float32)
        return StepResult(
            obs=list(obs_after),  # the same tensors as next_obs where no copy was reset (as VectorEnv)
            next_obs=next_obs,
            reward=reward,
            terminated=torch.zeros_like(done),
            truncated=done,
            episode_return=self._returns.add(reward, done, any_done),
        )

    def close(self) -> None:
        if self._viewer is not None:
            self._viewer.close()
            self._viewer = None

    # ------------------------------------------------------------------ random state and rendering
    def generators(self) -> Dict[str, torch.Generator]:
        """``{"env": self.generator}``: the one generator every reset of every copy draws from."""
        return {"env": self.generator}

    def render_frame(self, k: int = 0) -> np.ndarray:
        """Copy ``k`` drawn by mpe2's own renderer: its state is written into an mpe2 env (``to_mpe2``, built at
        the first call with this env's options and ``render_mode="rgb_array"``), which draws it."""
        if self._viewer is None:
            self._viewer, _ = make_env(self.spec.name, max_cycles=self.max_cycles,
                                       **{**self._options, "render_mode": "rgb_array"})
            self._viewer.reset(seed=0)
        self.to_mpe2(k, self._viewer)
        return self._viewer.render()

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Everything needed to continue bit-identically: generator, world state, step counters, returns."""
        ws = self.world_state
        return {"generator": self.generator.get_state(), "seed": self.seed, "seeded": self._seeded,
                "world_state": None if ws is None else {k: v.clone() for k, v in ws._asdict().items()},
                "t": torch.from_numpy(self.t.copy()),
                "returns": {t: v.clone() for t, v in self._returns.totals.items()}}

    def load_state_dict(self, sd: dict) -> None:
        self.generator.set_state(sd["generator"])
        self.seed, self._seeded = sd["seed"], sd["seeded"]
        ws = sd["world_state"]
        self.world_state = None if ws is None else MPEState(**{k: v.to(self.device) for k, v in ws.items()})
        self.t = sd["t"].numpy().astype(np.int64).copy()
        for t, v in sd["returns"].items():
            self._returns.totals[t] = v.to(self.device).clone()

    # ------------------------------------------------------------------ mpe2 interop
    def _mpe2_arrays(self, env):
        raw = env.unwrapped
        w = raw.world
        names = tuple(a.name for a in w.agents)
        if names != self.spec.agents or len(w.landmarks) != self.world.L:
            raise ValueError(f"mpe2 env has agents {names} and {len(w.landmarks)} landmarks; expected "
                             f"{self.spec.agents} and {self.world.L}")
        if any(np.any(lm.state.p_vel != 0) for lm in w.landmarks):
            raise ValueError("mpe2 env has a landmark with non-zero velocity; landmarks are immovable here")
        pos = np.stack([e.state.p_pos for e in w.entities]).astype(np.float64).T  # [2, E]
        vel = np.stack([a.state.p_vel for a in w.agents]).astype(np.float64).T  # [2, A]
        c = np.stack([np.asarray(a.state.c, dtype=np.float64).reshape(self.world.dim_c) for a in w.agents]).T
        return pos, vel, c, self.world.goal_from_mpe2(w), int(raw.steps)

    def load_mpe2_state(self, k: int, env) -> None:
        """Copy the world of mpe2 env ``env`` (parallel, AEC or raw) into copy ``k``: positions,
        velocities, communication states, goal landmark (and its colors), step counter."""
        if self.world_state is None:
            self.world_state = self.world.empty_state(self.num_envs)
        s = MPEState(*(x.clone() for x in self.world_state))  # never mutate tensors a caller may hold
        pos, vel, c, goal, steps = self._mpe2_arrays(env)
        kw = dict(dtype=self.dtype, device=self.device)
        s.pos[..., k] = torch.as_tensor(pos, **kw)
        s.vel[..., k] = torch.as_tensor(vel, **kw)
        s.c[..., k] = torch.as_tensor(c, **kw)
        s.goal[k] = goal
        self.t[k] = steps
        self.world_state = s

    def load_mpe2_states(self, envs: Sequence) -> MPEState:
        """Load ``envs[k]`` into copy ``k`` for all ``k`` (``len(envs) == num_envs``); return the state."""
        if len(envs) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} mpe2 envs, got {len(envs)}")
        arrays = [self._mpe2_arrays(e) for e in envs]
        kw = dict(dtype=self.dtype, device=self.device)
        self.world_state = MPEState(
            torch.as_tensor(np.stack([a[0] for a in arrays], -1), **kw),
            torch.as_tensor(np.stack([a[1] for a in arrays], -1), **kw),
            torch.as_tensor(np.stack([a[2] for a in arrays], -1), **kw),
            torch.as_tensor([a[3] for a in arrays], dtype=torch.long, device=self.device))
        self.t = np.array([a[4] for a in arrays], dtype=np.int64)
        return self.world_state

    def to_mpe2(self, k: int, env, final: bool = False) -> None:
        """Write copy ``k`` into mpe2 env ``env`` (positions, velocities, comm, goal and colors, step count).

        ``final=True`` writes the last step's successor state from before the auto-reset (``next_obs``'s
        state, e.g. an episode's last frame) instead of the current state."""
        if self.world_state is None:
            raise RuntimeError("call reset() before to_mpe2()")
        if final and self.last_next_state is None:
            raise RuntimeError("to_mpe2(final=True) needs a step() first")
        raw = env.unwrapped
        w = raw.world
        s, t = (self.last_next_state, self.last_next_t) if final else (self.world_state, self.t)
        pos = s.pos[..., k].detach().cpu().double().numpy().T  # [E, 2]
        vel = s.vel[..., k].detach().cpu().double().numpy().T  # [A, 2]
        c = s.c[..., k].detach().cpu().double().numpy().T  # [A, dim_c]
        for e, p in zip(w.entities, pos):
            e.state.p_pos = p.copy()
        for a, v, ci in zip(w.agents, vel, c):
            a.state.p_vel = v.copy()
            a.state.c = ci.copy()
        for lm in w.landmarks:
            lm.state.p_vel = np.zeros(self.world.dim_p)
        self.world.goal_to_mpe2(w, int(s.goal[k]))
        raw.steps = int(t[k])
        if raw.steps == 0:  # as SimpleEnv.reset: the camera range of the episode's first frame
            raw.original_cam_range = np.max(np.abs(pos))
