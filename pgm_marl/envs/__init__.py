"""Environment layer: MPE task registry, vectorized torch env and team returns.

- ``make_env(task, seed=None, teams=None, max_cycles=25, **env_kwargs) -> (ParallelEnv, TaskSpec)``
- ``TASKS`` / ``available_tasks()``: ``cooperative_navigation``, ``cooperative_communication``,
  ``predator_prey``, ``physical_deception`` (or any ParallelEnv import path, e.g. ``mpe2.simple_push_v3``)
- ``VectorEnv(task, num_envs, seed, teams=None, backend="auto", **env_kwargs)``: K copies, per-agent obs tensors,
  on the batched torch MPE (``torch_mpe``, the four paper tasks) or on PettingZoo itself (any task)
- ``team_returns(rewards, spec)``: team return = sum over steps of the team-mean reward
"""
from .returns import ReturnAccumulator, team_returns, team_step_rewards
from .tasks import TASKS, ActionSpec, TaskError, TaskSpec, available_tasks, make_env
from .vector import BACKENDS, PettingZooVectorEnv, StepResult, VectorEnv, resolve_backend

__all__ = [
    "BACKENDS", "PettingZooVectorEnv", "resolve_backend", "TASKS", "ActionSpec", "ReturnAccumulator", "StepResult", "TaskError", "TaskSpec", "VectorEnv",
    "available_tasks", "make_env", "team_returns", "team_step_rewards",
]
