"""K synchronous environment copies returning torch tensors: one interface, two backends.

``VectorEnv(task, num_envs, seed, backend=...)`` returns a :class:`PettingZooVectorEnv` (K PettingZoo parallel
envs stepped in a Python loop; any task) or a :class:`~pgm_marl.envs.torch_mpe.TorchMPEVectorEnv` (the four
paper tasks as batched tensor programs, checked step for step against mpe2). Both return the same
:class:`StepResult`. ``backend="auto"`` picks torch for the four named tasks (unless an option needs mpe2
itself) and PettingZoo otherwise.

Observations are a **list of per-agent tensors** ``obs[i]: [K, obs_dims[i]]`` in
``spec.agents`` order; sizes differ between agents (speaker 3, listener 11), so nothing
is padded. ``VectorEnv.state(obs)`` concatenates them into the global state ``[K, sum(obs_dims)]``.

Seeding: copy ``k`` is reset with ``seed + k`` at the first ``reset()``; every later reset
(auto-reset or explicit) is unseeded and continues that copy's own RNG. Copy ``k`` therefore
reproduces a single env doing ``reset(seed=seed + k)`` and then plain ``reset()`` per episode.
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple

import numpy as np
import torch

from .returns import ReturnAccumulator
from .tasks import TASKS, TaskError, make_env

#: environment implementations; "auto" = torch for the four paper tasks, pettingzoo otherwise
BACKENDS = ("auto", "torch", "pettingzoo")
#: env kwargs only mpe2 itself understands (rendering)
_PETTINGZOO_ONLY = ("render_mode",)


def resolve_backend(task: str, backend: str = "auto", env_kwargs: Dict | None = None) -> str:
    """The concrete backend for ``task``: ``"torch"`` or ``"pettingzoo"``; a one-line ``TaskError`` if impossible."""
    if backend not in BACKENDS:
        raise TaskError(f"unknown backend {backend!r}; accepted: {', '.join(BACKENDS)}")
    torch_ok = task in TASKS and not any(k in (env_kwargs or {}) for k in _PETTINGZOO_ONLY)
    if backend == "torch" and not torch_ok:
        why = (f"it implements only the four paper tasks ({', '.join(TASKS)}), not {task!r}" if task not in TASKS
               else f"{', '.join(_PETTINGZOO_ONLY)} needs mpe2's own renderer")
        raise TaskError(f"backend 'torch' cannot run {task!r}: {why}; accepted: --backend pettingzoo or auto")
    if backend == "auto":
        if torch_ok:  # options the torch port lacks (curriculum, partial observability): mpe2 runs them
            from .torch_mpe.vector import unsupported_option
            torch_ok = unsupported_option(task, env_kwargs or {}) is None
        return "torch" if torch_ok else "pettingzoo"
    return backend


def default_num_envs(backend: str, episodes: int | None = None) -> int:
    """Env copies when ``num_envs`` is not given: 100 on torch (one vector step = 100 env steps = one gradient
    step at the paper's ``update_every=100``, so the ratio of updates to env steps is the paper's), but never
    more than the run's ``episodes`` (a round plays ``num_envs`` episodes); 1 on pettingzoo (its copies are
    stepped one by one: more of them gain nothing)."""
    if backend != "torch":
        return 1
    return max(1, min(100, episodes)) if isinstance(episodes, int) and not isinstance(episodes, bool) else 100


def VectorEnv(task: str, num_envs: int = 1, seed: int = 0, teams=None, max_cycles: int = 25,
              device: str | torch.device = "cpu", backend: str = "auto", **env_kwargs):
    """``num_envs`` copies of ``task`` on the chosen backend (see :func:`resolve_backend`); same interface."""
    backend = resolve_backend(task, backend, env_kwargs)
    if backend == "torch":
        from .torch_mpe import TorchMPEVectorEnv
        return TorchMPEVectorEnv(task, num_envs=num_envs, seed=seed, teams=teams, max_cycles=max_cycles,
                                 device=device, **env_kwargs)
    return PettingZooVectorEnv(task, num_envs=num_envs, seed=seed, teams=teams, max_cycles=max_cycles,
                               device=device, **env_kwargs)


class StepResult(NamedTuple):
    obs: List[torch.Tensor]  # [K, d_i] per agent; reset observation where an episode ended
    next_obs: List[torch.Tensor]  # [K, d_i] per agent; true final observation of the transition
    reward: torch.Tensor  # float32 [K, n_agents]
    terminated: torch.Tensor  # bool [K]: all agents terminated
    truncated: torch.Tensor  # bool [K]: time limit (MPE episodes end here after max_cycles)
    episode_return: Dict[str, torch.Tensor]  # team -> float32 [K]; NaN where no episode ended

    @property
    def done(self) -> torch.Tensor:
        return self.terminated | self.truncated


class VectorEnvBase:
    """What both backends share: ``spec`` (a TaskSpec), ``num_envs`` and the global state of an observation list."""

    spec: "object"
    num_envs: int

    @property
    def n_agents(self) -> int:
        return self.spec.n_agents

    @staticmethod
    def state(obs: List[torch.Tensor]) -> torch.Tensor:
        """Global state: concatenation of per-agent observations in agent order, ``[K, sum(obs_dims)]``."""
        return torch.cat(obs, dim=-1)


class PettingZooVectorEnv(VectorEnvBase):
    """``num_envs`` copies of ``make_env(task, ...)`` stepped in a Python loop (Discrete and Box actions)."""

    backend = "pettingzoo"

    def __init__(self, task: str, num_envs: int = 1, seed: int = 0, teams=None, max_cycles: int = 25,
                 device: str | torch.device = "cpu", **env_kwargs):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        made = [make_env(task, teams=teams, max_cycles=max_cycles, **env_kwargs) for _ in range(num_envs)]
        self.envs = [env for env, _ in made]
        self.spec = made[0][1]
        self.num_envs, self.seed, self.device = num_envs, seed, torch.device(device)
        self._returns = ReturnAccumulator(self.spec, num_envs)
        self._seeded = False

    def _empty(self) -> List[np.ndarray]:
        return [np.zeros((self.num_envs, d), dtype=np.float32) for d in self.spec.obs_dims]

    def _write(self, bufs: List[np.ndarray], k: int, obs: dict) -> None:
        for i, a in enumerate(self.spec.agents):
            if a in obs:  # agents absent from obs (left the episode) keep zeros
                bufs[i][k] = np.asarray(obs[a], dtype=np.float32).reshape(-1)

    def _tensors(self, bufs: List[np.ndarray]) -> List[torch.Tensor]:
        return [torch.from_numpy(b).to(self.device) for b in bufs]

    def _reset_one(self, k: int) -> dict:
        seed = None if self._seeded else self.seed + k
        obs, _ = self.envs[k].reset(seed=seed)
        return obs

    def reset(self, seed: int | None = None) -> List[torch.Tensor]:
        """Reset all copies (seeded with ``seed + k`` the first time only); return per-agent obs.

        ``seed`` reseeds: copy k restarts from ``seed + k`` as at a first reset (evaluation reuses one
        VectorEnv and replays the same episodes each time).
        """
        if seed is not None:
            self.seed, self._seeded = seed, False
        bufs = self._empty()
        for k in range(self.num_envs):
            self._write(bufs, k, self._reset_one(k))
        self._seeded = True
        self._returns.reset()
        return self._tensors(bufs)

    def _env_actions(self, actions) -> List[np.ndarray]:
        """Per-agent NumPy actions ``[K, ...]`` from LongTensor ``[K, n_agents]`` (all Discrete) or a list of
        per-agent tensors (``[K]`` indices for Discrete agents, ``[K, d]`` for Box agents, reshaped to the Box)."""
        K, n = self.num_envs, self.n_agents
        if torch.is_tensor(actions) or isinstance(actions, np.ndarray):
            acts = torch.as_tensor(actions).detach().cpu().numpy()
            if acts.shape != (K, n) or any(a.kind != "discrete" for a in self.spec.action_spaces):
                raise ValueError(f"actions must have shape [{K}, {n}] (all agents Discrete) or be a list of "
                                 f"per-agent tensors, got shape {acts.shape}")
            return [acts[:, i] for i in range(n)]
        if len(actions) != n:
            raise ValueError(f"actions must be {n} per-agent tensors, got {len(actions)}")
        out = []
        for space, a in zip(self.spec.action_spaces, actions):
            a = torch.as_tensor(a).detach().cpu().numpy()
            shape = (K,) if space.kind == "discrete" else (K, *space.shape)
            if a.size != int(np.prod(shape)):
                raise ValueError(f"actions for {space} must have shape {list(shape)}, got {list(a.shape)}")
            out.append(a.reshape(shape).astype(np.int64 if space.kind == "discrete" else np.float32))
        return out

    def step(self, actions) -> StepResult:
        """Step every copy with ``actions: LongTensor [K, n_agents]``; auto-reset finished copies."""
        if not self._seeded:
            raise RuntimeError("call reset() before step()")
        acts = self._env_actions(actions)
        K, agents = self.num_envs, self.spec.agents
        next_bufs = self._empty()
        reward = np.zeros((K, self.n_agents), dtype=np.float32)
        term = np.zeros(K, dtype=bool)
        trunc = np.zeros(K, dtype=bool)
        reset_obs = {}
        for k, env in enumerate(self.envs):
            live = set(env.agents)
            o, r, te, tr, _ = env.step({a: acts[i][k] if acts[i].ndim > 1 else int(acts[i][k])
                                        for i, a in enumerate(agents) if a in live})
            self._write(next_bufs, k, o)
            reward[k] = [r.get(a, 0.0) for a in agents]
            term[k] = bool(te) and all(te.values())
            trunc[k] = any(tr.values())
            if term[k] or trunc[k] or not env.agents:
                reset_obs[k] = self._reset_one(k)
        obs_bufs = [b.copy() for b in next_bufs] if reset_obs else next_bufs
        for k, o in reset_obs.items():
            self._write(obs_bufs, k, o)
        done = torch.zeros(K, dtype=torch.bool)
        done[list(reset_obs)] = True
        reward_t = torch.from_numpy(reward)
        returns = self._returns.add(reward_t, done)
        return StepResult(
            obs=self._tensors(obs_bufs),
            next_obs=self._tensors(next_bufs),
            reward=reward_t.to(self.device),
            terminated=torch.from_numpy(term).to(self.device),
            truncated=torch.from_numpy(trunc | (done.numpy() & ~term)).to(self.device),
            episode_return={t: v.to(self.device) for t, v in returns.items()},
        )

    def close(self) -> None:
        for env in self.envs:
            env.close()
