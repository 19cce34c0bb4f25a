"""The environment backends and the choice between them; importing this module imports neither torch nor pettingzoo.

``VectorEnv(task, num_envs, seed, backend=...)`` returns K synchronous copies of ``task`` behind one interface
(:class:`~pgm_marl.envs.base.VectorEnvBase`): a :class:`~pgm_marl.envs.vector.PettingZooVectorEnv` (PettingZoo
parallel envs stepped in a Python loop; any task) or a :class:`~pgm_marl.envs.torch_mpe.TorchMPEVectorEnv` (the
four paper tasks as batched tensor programs, checked step for step against mpe2). ``backend="auto"`` picks torch
for the four paper tasks unless an option needs mpe2 itself (:func:`~pgm_marl.envs.tasks.torch_unsupported`), and
PettingZoo otherwise. The backends are imported only when one is built.

Seeding: copy ``k`` of a PettingZoo backend is reset with ``seed + k`` at the first ``reset()``; every later reset
(auto-reset or explicit) is unseeded and continues that copy's own RNG, so copy ``k`` reproduces a single env doing
``reset(seed=seed + k)`` and then plain ``reset()`` per episode. The torch backend draws every reset from one
generator seeded with ``seed``.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Dict

from .tasks import TaskError, check_env_kwargs, check_task_name, torch_unsupported

if TYPE_CHECKING:
    from .base import VectorEnvBase

#: environment implementations; "auto" = torch for the four paper tasks, pettingzoo otherwise
BACKENDS = ("auto", "torch", "pettingzoo")
#: backend -> (module, class) implementing it
_CLASSES = {"torch": ("pgm_marl.envs.torch_mpe.vector", "TorchMPEVectorEnv"),
            "pettingzoo": ("pgm_marl.envs.vector", "PettingZooVectorEnv")}


def resolve_backend(task: str, backend: str = "auto", env_kwargs: Dict | None = None) -> str:
    """The concrete backend for ``task``: ``"torch"`` or ``"pettingzoo"``; a one-line ``TaskError`` if impossible.

    The task's name and options are checked here (:func:`~pgm_marl.envs.tasks.check_env_kwargs`), so a config
    refuses a bad value before anything is built, on either backend. ``env_kwargs`` may hold the run's ``teams``.
    """
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise TaskError(f"unknown backend {backend!r}; accepted: {', '.join(BACKENDS)}")
    options = {k: v for k, v in (env_kwargs or {}).items() if k != "teams"}
    if backend == "torch":  # (elsewhere make_env names an unknown task when the env is built)
        check_task_name(task)
    check_env_kwargs(task, options)
    why = torch_unsupported(task, options)
    if backend == "torch" and why is not None:
        raise TaskError(f"backend 'torch' cannot run {task!r}: {why}; accepted: --backend pettingzoo or auto")
    if backend == "auto":
        return "torch" if why is None else "pettingzoo"
    return backend


def default_num_envs(backend: str, episodes: int | None = None) -> int:
    """Env copies when ``num_envs`` is not given: 100 on torch (one vector step = 100 env steps = one gradient
    step at the paper's ``update_every=100``, so the ratio of updates to env steps is the paper's), but never
    more than the run's ``episodes`` (a round plays ``num_envs`` episodes); 1 on pettingzoo (its copies are
    stepped one by one: more of them gain nothing)."""
    if backend != "torch":
        return 1
    return max(1, min(100, episodes)) if isinstance(episodes, int) and not isinstance(episodes, bool) else 100


def VectorEnv(task: str, num_envs: int = 1, seed: int = 0, teams=None, max_cycles: int = 25, device="cpu",
              backend: str = "auto", **env_kwargs) -> "VectorEnvBase":
    """``num_envs`` copies of ``task`` on the chosen backend (see :func:`resolve_backend`); same interface."""
    module, name = _CLASSES[resolve_backend(task, backend, env_kwargs)]
    cls = getattr(importlib.import_module(module), name)
    return cls(task, num_envs=num_envs, seed=seed, teams=teams, max_cycles=max_cycles, device=device, **env_kwargs)
