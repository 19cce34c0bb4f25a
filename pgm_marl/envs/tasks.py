"""Task registry: the paper's four MPE tasks, or any PettingZoo parallel env by import path.

``make_env(task, ...)`` returns ``(env, spec)``: a PettingZoo ``ParallelEnv`` and a frozen
:class:`TaskSpec` (agent order, observation sizes, action spaces, teams, horizon).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
from gymnasium import spaces
from pettingzoo import AECEnv, ParallelEnv

from ..errors import UserError, one_line


class TaskError(UserError):
    """Bad task name, import path, env type, env arguments or team map (one-line message; a ValueError)."""


@dataclass(frozen=True)
class ActionSpec:
    """One agent's action space: ``kind="discrete"`` with ``n``, or ``kind="box"`` with shape/low/high."""

    kind: str
    n: Optional[int] = None
    shape: Tuple[int, ...] = ()
    low: Optional[Tuple[float, ...]] = None
    high: Optional[Tuple[float, ...]] = None

    @classmethod
    def from_space(cls, space: spaces.Space) -> "ActionSpec":
        if isinstance(space, spaces.Discrete):
            return cls("discrete", n=int(space.n))
        if isinstance(space, spaces.Box):
            return cls("box", shape=tuple(space.shape),
                       low=tuple(space.low.ravel().tolist()), high=tuple(space.high.ravel().tolist()))
        raise TaskError(f"unsupported action space {space!r}; accepted: Discrete or Box")

    def __str__(self) -> str:
        return f"Discrete({self.n})" if self.kind == "discrete" else f"Box(shape={self.shape})"


@dataclass(frozen=True)
class TaskSpec:
    """Static description of a task. ``agents`` fixes the agent order used by every tensor."""

    name: str
    agents: Tuple[str, ...]
    obs_dims: Tuple[int, ...]
    action_spaces: Tuple[ActionSpec, ...]
    teams: Dict[str, Tuple[str, ...]]
    max_cycles: int

    @property
    def n_agents(self) -> int:
        return len(self.agents)

    @property
    def state_dim(self) -> int:
        """Size of the global state = concatenated observations in agent order."""
        return sum(self.obs_dims)

    @property
    def action_dims(self) -> Tuple[int, ...]:
        """Number of discrete actions per agent (requires discrete spaces)."""
        self.require_discrete()
        return tuple(a.n for a in self.action_spaces)

    def team_indices(self, team: str) -> Tuple[int, ...]:
        """Positions in ``agents`` of the team's members."""
        return tuple(self.agents.index(a) for a in self.teams[team])

    def require_discrete(self) -> None:
        """Raise a one-line ``TaskError`` if any agent has a non-discrete action space."""
        for agent, act in zip(self.agents, self.action_spaces):
            if act.kind != "discrete":
                raise TaskError(f"task {self.name!r}: agent {agent!r} has action space {act}; "
                                "this needs Discrete actions (pass continuous_actions=False)")


def _one_team(agent: str) -> str:
    return "all"


def _predator_prey(agent: str) -> str:
    return "predators" if agent.startswith("adversary") else "prey"


def _deception(agent: str) -> str:
    return "adversary" if agent.startswith("adversary") else "good"


# name -> (module, default kwargs, team of an agent, team order)
_REGISTRY: Dict[str, Tuple[str, dict, Callable[[str], str], Tuple[str, ...]]] = {
    "cooperative_navigation": ("mpe2.simple_spread_v3", {"N": 3}, _one_team, ("all",)),
    "cooperative_communication": ("mpe2.simple_speaker_listener_v4", {}, _one_team, ("all",)),
    "predator_prey": ("mpe2.simple_tag_v3",
                      {"num_good": 1, "num_adversaries": 3, "num_obstacles": 2},
                      _predator_prey, ("predators", "prey")),
    "physical_deception": ("mpe2.simple_adversary_v3", {"N": 2}, _deception, ("good", "adversary")),
}
TASKS: Tuple[str, ...] = tuple(_REGISTRY)


def available_tasks() -> Tuple[str, ...]:
    """Names of the paper's four tasks (any ParallelEnv import path is accepted too)."""
    return TASKS


def _resolve(path: str) -> Callable[..., object]:
    """``"pkg.module"`` (uses ``module.parallel_env``), ``"pkg.module:fn"`` or ``"pkg.module.fn"``."""
    mod_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(mod_name)
        if not attr:
            attr = "parallel_env"
    except ImportError:
        mod_name, _, attr = path.rpartition(".")
        try:
            module = importlib.import_module(mod_name) if mod_name else None
        except ImportError:
            module = None
        if module is None or attr == "":
            raise TaskError(f"unknown import path {path!r}: no importable module; "
                            "accepted: a module with parallel_env, 'module:callable' or 'module.callable'") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise TaskError(f"import path {path!r}: module {mod_name!r} has no callable {attr!r}; "
                        "accepted: a module with parallel_env, 'module:callable' or 'module.callable'")
    return fn


def _check_teams(name: str, agents: Sequence[str], teams: Mapping[str, Sequence[str]]) -> Dict[str, Tuple[str, ...]]:
    seen: Dict[str, str] = {}
    for team, members in teams.items():
        if isinstance(members, str):
            raise TaskError(f"team {team!r} of task {name!r}: members must be a list of agent names, got {members!r}")
        for a in members:
            if a not in agents:
                raise TaskError(f"team {team!r} names unknown agent {a!r} in task {name!r}; agents are {list(agents)}")
            if a in seen:
                raise TaskError(f"agent {a!r} is in two teams ({seen[a]!r} and {team!r}) in task {name!r}")
            seen[a] = team
    missing = [a for a in agents if a not in seen]
    if missing:
        raise TaskError(f"team map misses agents {missing} of task {name!r}; every agent of {list(agents)} "
                        "must be in exactly one team")
    return {str(t): tuple(m) for t, m in teams.items()}


def make_env(task: str, seed: Optional[int] = None, teams: Optional[Mapping[str, Sequence[str]]] = None,
             max_cycles: int = 25, **env_kwargs) -> Tuple[ParallelEnv, TaskSpec]:
    """Build a PettingZoo ``ParallelEnv`` and its :class:`TaskSpec`.

    ``task`` is one of :data:`TASKS` (paper settings; discrete actions unless ``continuous_actions=True``) or an
    import path (``"mpe2.simple_push_v3"``, ``"module:callable"``); for import paths ``teams`` defaults
    to one team per agent. ``env_kwargs`` override the constructor's defaults.
    If ``seed`` is given the env is reset once with ``reset(seed=seed)`` (ready to step;
    later ``reset()`` calls continue its RNG) and action spaces are seeded with ``seed + i``.
    """
    if not isinstance(task, str):
        raise TaskError(f"task must be a string, got {task!r}")
    if task in _REGISTRY:
        path, defaults, team_of, order = _REGISTRY[task]
        fn = _resolve(path)
        kwargs = {**defaults, "continuous_actions": False, **env_kwargs}
    elif "." in task or ":" in task:
        fn, team_of, order = _resolve(task), None, ()
        kwargs = dict(env_kwargs)
    else:
        raise TaskError(f"unknown task {task!r}; accepted: {', '.join(TASKS)}, "
                        "or an import path like mpe2.simple_push_v3")
    try:
        env = fn(max_cycles=max_cycles, **kwargs)
    except (TypeError, ValueError, AssertionError) as err:  # the env refuses the user's arguments
        raise TaskError(f"could not build {task!r} with max_cycles={max_cycles}, {kwargs}: "
                        f"{type(err).__name__}: {one_line(err)}; accepted: the env constructor's own arguments "
                        "(--env-kwargs)") from None
    if not isinstance(env, ParallelEnv):
        kind = "an AEC env, not parallel (use its parallel_env)" if isinstance(env, AECEnv) else type(env).__name__
        raise TaskError(f"{task!r} does not produce a PettingZoo ParallelEnv: got {kind}")
    agents = tuple(env.possible_agents)
    if teams is None:
        if team_of is None:
            teams = {a: [a] for a in agents}
        else:
            teams = {t: [a for a in agents if team_of(a) == t] for t in order}
    spec = TaskSpec(
        name=task,
        agents=agents,
        obs_dims=tuple(int(np.prod(env.observation_space(a).shape)) for a in agents),
        action_spaces=tuple(ActionSpec.from_space(env.action_space(a)) for a in agents),
        teams=_check_teams(task, agents, teams),
        max_cycles=int(max_cycles),
    )
    if seed is not None:
        env.reset(seed=seed)
        for i, a in enumerate(agents):
            env.action_space(a).seed(seed + i)
    return env, spec
