"""Environment layer: MPE task registry, the vector-env interface and its two backends, team returns.

- ``make_env(task, seed=None, teams=None, max_cycles=25, **env_kwargs) -> (ParallelEnv, TaskSpec)``
- ``TASKS`` / ``available_tasks()``: ``cooperative_navigation``, ``cooperative_communication``,
  ``predator_prey``, ``physical_deception`` (or any ParallelEnv import path, e.g. ``mpe2.simple_push_v3``)
- ``VectorEnv(task, num_envs, seed, teams=None, backend="auto", **env_kwargs)``: K copies behind one interface
  (``base.VectorEnvBase``: per-agent obs tensors, one action format, ``StepResult``, random state, rendering), on
  the batched torch MPE (``torch_mpe``, the four paper tasks) or on PettingZoo itself (``vector``, any task)
- ``team_returns(rewards, spec)``: team return = sum over steps of the team-mean reward

Names are imported from their modules on first use, so that ``pgm_marl.envs.backends`` and ``pgm_marl.envs.tasks``
(a config's checks) import neither torch nor pettingzoo.
"""
from __future__ import annotations

import importlib

#: exported name -> module that defines it
_EXPORTS = {
    "BACKENDS": "backends", "VectorEnv": "backends", "default_num_envs": "backends", "resolve_backend": "backends",
    "StepResult": "base", "VectorEnvBase": "base",
    "PettingZooVectorEnv": "vector",
    "ReturnAccumulator": "returns", "team_returns": "returns", "team_step_rewards": "returns",
    "TASKS": "tasks", "ActionSpec": "tasks", "TaskError": "tasks", "TaskSpec": "tasks", "available_tasks": "tasks",
    "make_env": "tasks",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
