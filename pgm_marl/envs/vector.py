"""The PettingZoo backend: K PettingZoo parallel envs (any task) stepped in a Python loop.

:class:`PettingZooVectorEnv` implements :class:`~pgm_marl.envs.base.VectorEnvBase` (the interface, the env action
format and :class:`~pgm_marl.envs.base.StepResult` are there); :func:`pgm_marl.envs.backends.VectorEnv` builds it.

Seeding: copy ``k`` is reset with ``seed + k`` at the first ``reset()``; every later reset
(auto-reset or explicit) is unseeded and continues that copy's own RNG. Copy ``k`` therefore
reproduces a single env doing ``reset(seed=seed + k)`` and then plain ``reset()`` per episode.
"""
from __future__ import annotations

from typing import List

import numpy as np
import torch

from .base import StepResult, VectorEnvBase
from .returns import ReturnAccumulator
from .tasks import TaskError, make_env


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

    @property
    def started(self) -> bool:
        return self._seeded

    def _step(self, actions: List[torch.Tensor]) -> StepResult:
        """Step every copy (actions checked by ``step``: agent i's ``[K]`` indices or ``[K, *shape]`` Box values)."""
        acts = [a.detach().cpu().numpy() for a in actions]
        acts = [a if space.kind == "discrete" else a.astype(np.float32)
                for a, space in zip(acts, self.spec.action_spaces)]
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

    def np_generators(self) -> List[np.random.Generator]:
        """Each copy's ``np_random`` (mpe2 keeps it on the raw env: ``env.unwrapped.np_random``; it is replaced at
        every seeded reset, so ask after ``reset()``). Nothing in PettingZoo's parallel API requires an env to
        keep one: an env without it contributes nothing, and its own random state is not checkpointed."""
        gens = (getattr(env.unwrapped, "np_random", None) for env in self.envs)
        return [g for g in gens if isinstance(g, np.random.Generator)]

    def render_frame(self, k: int = 0) -> np.ndarray:
        """Copy ``k`` drawn by its env's own renderer (build the copies with ``render_mode="rgb_array"``)."""
        frame = self.envs[k].render()
        if not isinstance(frame, np.ndarray):
            raise TaskError(f"task {self.spec.name!r}: env copy {k} returned {type(frame).__name__} from render(), "
                            "not an image; accepted: env copies built with render_mode='rgb_array'")
        return frame
