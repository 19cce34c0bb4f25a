"""The one interface of every environment backend: :class:`VectorEnvBase` and its :class:`StepResult`.

A backend holds K synchronous copies of one task and returns torch tensors. It implements ``reset``,
``_step`` (one step of every copy with actions already checked, auto-reset of the copies whose episode
ended), ``started``, ``close``, its random state (``generators`` / ``np_generators``) and ``render_frame``;
everything else is here. Two backends implement it: :class:`pgm_marl.envs.vector.PettingZooVectorEnv`
(PettingZoo parallel envs stepped in a Python loop; any task) and
:class:`pgm_marl.envs.torch_mpe.TorchMPEVectorEnv` (the four paper tasks as batched tensor programs);
:func:`pgm_marl.envs.backends.VectorEnv` picks one. Neither imports the other.

**The env action** has one format, produced by acting (:meth:`pgm_marl.models.actions.ActionSpaces.act`),
checked once here (:meth:`VectorEnvBase.check_actions`) and read by both backends: a list of ``n_agents``
tensors in ``spec.agents`` order, agent ``i``'s ``[K]`` integer action indices in ``[0, n_i)`` for a
Discrete space, ``[K, *shape]`` floats for a Box (the env clips them to the box, as mpe2 does).

Observations are a **list of per-agent tensors** ``obs[i]: [K, obs_dims[i]]`` in ``spec.agents`` order; sizes
differ between agents (speaker 3, listener 11), so nothing is padded. ``state(obs)`` concatenates them into the
global state ``[K, sum(obs_dims)]``.
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple

import numpy as np
import torch

from .tasks import TaskSpec


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
    """K copies of one task: ``spec`` (a :class:`~pgm_marl.envs.tasks.TaskSpec`), ``num_envs``, ``device``,
    ``reset``, ``step``, ``state``, ``close``, the random state and rendering (see the module docstring)."""

    backend: str  #: "torch" or "pettingzoo"
    spec: TaskSpec
    num_envs: int
    device: torch.device

    @property
    def n_agents(self) -> int:
        return self.spec.n_agents

    @staticmethod
    def state(obs: List[torch.Tensor]) -> torch.Tensor:
        """Global state: concatenation of per-agent observations in agent order, ``[K, sum(obs_dims)]``."""
        return torch.cat(obs, dim=-1)

    # ------------------------------------------------------------------ stepping
    @property
    def started(self) -> bool:
        """Whether the copies hold a state to step from (after ``reset()``)."""
        raise NotImplementedError

    def reset(self, seed: int | None = None) -> List[torch.Tensor]:
        """Reset every copy; return the per-agent observations. The first reset seeds the copies from the
        constructor's ``seed``; ``seed`` reseeds them as at a first reset (evaluation replays the same episodes)."""
        raise NotImplementedError

    def step(self, actions) -> StepResult:
        """Step every copy with ``actions`` (the env action format, checked here); auto-reset finished copies."""
        if not self.started:
            raise RuntimeError("call reset() before step()")
        return self._step(self.check_actions(actions))

    def _step(self, actions: List[torch.Tensor]) -> StepResult:
        """The backend's step, with actions that passed :meth:`check_actions`."""
        raise NotImplementedError

    def check_actions(self, actions, num_envs: int | None = None) -> List[torch.Tensor]:
        """``actions`` as the list of per-agent tensors that both backends read, or a one-line ``ValueError``:
        ``n_agents`` tensors in ``spec.agents`` order, ``[K]`` integers in ``[0, n_i)`` for a Discrete agent,
        ``[K, *shape]`` floats for a Box agent; ``K`` is ``num_envs`` (default: this env's)."""
        K, n, spaces = self.num_envs if num_envs is None else num_envs, self.n_agents, self.spec.action_spaces
        if not isinstance(actions, (list, tuple)) or len(actions) != n:
            got = (f"shape {list(actions.shape)}" if hasattr(actions, "shape") else
                   f"{len(actions)} items" if isinstance(actions, (list, tuple)) else type(actions).__name__)
            raise ValueError(f"actions must be a list of {n} per-agent tensors ([{K}] indices for a Discrete agent, "
                             f"[{K}, d] for a Box agent), got {got}")
        for agent, space, a in zip(self.spec.agents, spaces, actions):
            if space.kind == "discrete":
                ok = torch.is_tensor(a) and tuple(a.shape) == (K,) and not (
                    a.is_floating_point() or a.is_complex() or a.dtype == torch.bool)
                want = f"an integer tensor of shape [{K}]"
            else:
                ok = torch.is_tensor(a) and tuple(a.shape) == (K, *space.shape) and a.is_floating_point()
                want = f"a float tensor of shape {[K, *space.shape]}"
            if not ok:
                got = f"{a.dtype} of shape {list(a.shape)}" if torch.is_tensor(a) else type(a).__name__
                raise ValueError(f"actions of agent {agent!r} ({space}) must be {want}, got {got}")
        discrete = [i for i, s in enumerate(spaces) if s.kind == "discrete"]
        if discrete:  # one comparison (one device sync) for all Discrete agents
            index = torch.stack([actions[i].long() for i in discrete])  # [n_discrete, K]
            cache = self.__dict__.setdefault("_action_counts", {})  # device -> [n_discrete, 1], built once
            counts = cache.get(index.device)
            if counts is None:
                counts = torch.tensor([spaces[i].n for i in discrete], device=index.device)[:, None]
                cache[index.device] = counts
            bad = (index < 0) | (index >= counts)
            if bool(bad.any()):
                j, k = (int(x) for x in bad.nonzero()[0])
                i = discrete[j]
                raise ValueError(f"action {int(index[j, k])} of agent {self.spec.agents[i]!r} in env copy {k} is out "
                                 f"of range; accepted: 0 to {spaces[i].n - 1} ({spaces[i]})")
        return list(actions)

    def close(self) -> None:
        return None

    # ------------------------------------------------------------------ random state and rendering
    def generators(self) -> Dict[str, torch.Generator]:
        """The named ``torch.Generator``s the copies draw from, for checkpoints (none by default)."""
        return {}

    def np_generators(self) -> List[np.random.Generator]:
        """The NumPy generators the copies draw from, for checkpoints, in a fixed order (none by default)."""
        return []

    def render_frame(self, k: int = 0) -> np.ndarray:
        """An RGB image ``[H, W, 3]`` (uint8) of copy ``k``'s current state, drawn by the task's own renderer."""
        raise NotImplementedError
