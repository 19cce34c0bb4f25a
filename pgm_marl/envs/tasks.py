"""Task registry: the paper's four MPE tasks, or any PettingZoo parallel env by import path.

``make_env(task, ...)`` returns ``(env, spec)``: a PettingZoo ``ParallelEnv`` and a frozen
:class:`TaskSpec` (agent order, observation sizes, action spaces, teams, horizon). The paper tasks' options
(``--env-kwargs``) are checked here for both backends (:func:`check_env_kwargs`, :data:`OPTIONS`), with what
the torch port runs (:func:`torch_unsupported`). Importing this module imports neither gymnasium nor pettingzoo
(building an env does), so a config can name and check a task cheaply.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, Mapping, NamedTuple, Optional, Sequence, Tuple

from ..errors import UserError, one_line

if TYPE_CHECKING:  # gymnasium and pettingzoo are imported where an env is built: task names and specs need neither
    from gymnasium import spaces
    from pettingzoo import ParallelEnv


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
    def from_space(cls, space: "spaces.Space") -> "ActionSpec":
        from gymnasium import spaces

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
    def action_counts(self) -> Tuple[int, ...]:
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


# ---------------------------------------------------------------- env options (--env-kwargs)

class Option(NamedTuple):
    """One constructor option of a paper task: the values it accepts (``accepts(value)``, nothing coerced), in
    words for the one-line error, and the values the torch port runs (None: every accepted value)."""

    accepts: Callable[[object], bool]
    accepted: str
    torch_values: Optional[Tuple[object, ...]] = None


def _int_at_least(low: int) -> Callable[[object], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


_BOOL = Option(lambda v: isinstance(v, bool), "True or False")
_FALSE_ON_TORCH = Option(_BOOL.accepts, _BOOL.accepted, (False,))  # curriculum, terminate_on_success
_NEIGHBORS = Option(lambda v: v is None or _int_at_least(1)(v), "None or an int >= 1", (None,))  # partial observability
_COMMON = {
    "continuous_actions": _BOOL,
    # the torch port renders through mpe2's renderer (render_frame); only mpe2 opens a window
    "render_mode": Option(lambda v: v in (None, "human", "rgb_array"), "None, 'human' or 'rgb_array'",
                          (None, "rgb_array")),
    "dynamic_rescaling": _BOOL,  # rendering only
    "benchmark_data": _BOOL,  # infos only (a StepResult has none)
}
_PO = {"num_agent_neighbors": _NEIGHBORS, "num_landmark_neighbors": _NEIGHBORS}
_CURRICULUM = {"curriculum": _FALSE_ON_TORCH, "terminate_on_success": _FALSE_ON_TORCH}
#: the paper tasks' options: the keyword arguments of their mpe2 1.1.1 constructors (``max_cycles`` is the run's)
OPTIONS: Dict[str, Dict[str, Option]] = {
    "cooperative_navigation": {"N": Option(_int_at_least(1), "an int >= 1"),
                               "local_ratio": Option(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                                                     and 0 <= v <= 1, "a number in [0, 1]"),
                               **_COMMON, **_CURRICULUM, **_PO},
    "cooperative_communication": dict(_COMMON),
    "predator_prey": {"num_good": Option(_int_at_least(1), "an int >= 1 (the prey team needs a member)"),
                      "num_adversaries": Option(_int_at_least(1), "an int >= 1 (the predators team needs a member)"),
                      "num_obstacles": Option(_int_at_least(0), "an int >= 0"),
                      **_COMMON, **_CURRICULUM, **_PO},
    "physical_deception": {"N": Option(_int_at_least(1), "an int >= 1"), **_COMMON, **_PO},
}
#: keyword arguments every environment gets from the run itself, never an env option (the flag that sets each)
RUN_SETTINGS = {"max_cycles": "--max-cycles", "seed": "--seed", "num_envs": "--num-envs", "backend": "--backend",
                "task": "--task", "device": None}


def check_env_kwargs(task: str, env_kwargs: Mapping[str, object]) -> None:
    """The one check of env options, on every backend: a one-line ``TaskError`` for an option that clashes with the
    run's own settings (:data:`RUN_SETTINGS`, any task), or, for a paper task, an option its constructor lacks or a
    value it does not accept (:data:`OPTIONS`; nothing is coerced). An import-path env checks its own arguments."""
    for key, value in env_kwargs.items():
        if key in RUN_SETTINGS:
            flag = RUN_SETTINGS[key]
            raise TaskError(f"env option {key}={value!r} clashes with the run's own {key}; accepted: "
                            + (f"set it with {flag}, not with --env-kwargs" if flag else
                               "the env constructor's own options (the run sets this one)"))
    options = OPTIONS.get(task)
    if options is None:
        return
    for key, value in env_kwargs.items():
        if key not in options:
            raise TaskError(f"unknown env option {key!r} of task {task!r}; accepted: {', '.join(options)}")
        if not options[key].accepts(value):
            raise TaskError(f"env option {key}={value!r} of task {task!r} is not accepted; accepted: "
                            f"{options[key].accepted}")


def torch_unsupported(task: str, env_kwargs: Mapping[str, object]) -> Optional[str]:
    """Why the torch port (:mod:`pgm_marl.envs.torch_mpe`) cannot run ``task`` with these (accepted) options, in
    a few words, or None when it can; mpe2 itself (the pettingzoo backend) runs them all."""
    if task not in OPTIONS:
        return f"it implements only the four paper tasks ({', '.join(TASKS)})"
    for key, value in env_kwargs.items():
        runs = OPTIONS[task][key].torch_values
        if runs is not None and value not in runs:
            return f"{key}={value!r} is not supported by the torch port (only {' or '.join(map(repr, runs))})"
    return None


def check_task_name(task) -> None:
    """A one-line ``TaskError`` unless ``task`` is one of :data:`TASKS` or looks like an import path."""
    if not isinstance(task, str):
        raise TaskError(f"task must be a string, got {task!r}")
    if task not in _REGISTRY and "." not in task and ":" not in task:
        raise TaskError(f"unknown task {task!r}; accepted: {', '.join(TASKS)}, "
                        "or an import path like mpe2.simple_push_v3")


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
    if not isinstance(teams, Mapping):
        raise TaskError(f"teams of task {name!r} must map team names to lists of agent names, got {teams!r}; "
                        "accepted: --teams 'team=agent+agent,...'")
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
             max_cycles: int = 25, **env_kwargs) -> Tuple["ParallelEnv", TaskSpec]:
    """Build a PettingZoo ``ParallelEnv`` and its :class:`TaskSpec`.

    ``task`` is one of :data:`TASKS` (paper settings; discrete actions unless ``continuous_actions=True``) or an
    import path (``"mpe2.simple_push_v3"``, ``"module:callable"``); for import paths ``teams`` defaults
    to one team per agent. ``env_kwargs`` override the constructor's defaults.
    If ``seed`` is given the env is reset once with ``reset(seed=seed)`` (ready to step;
    later ``reset()`` calls continue its RNG) and action spaces are seeded with ``seed + i``.
    """
    from pettingzoo import AECEnv, ParallelEnv

    check_task_name(task)
    check_env_kwargs(task, env_kwargs)  # (the torch backend checks them with the same function)
    if task in _REGISTRY:
        path, defaults, team_of, order = _REGISTRY[task]
        fn = _resolve(path)
        kwargs = {**defaults, "continuous_actions": False, **env_kwargs}
    else:
        fn, team_of, order = _resolve(task), None, ()
        kwargs = dict(env_kwargs)
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
        obs_dims=tuple(int(math.prod(env.observation_space(a).shape)) for a in agents),
        action_spaces=tuple(ActionSpec.from_space(env.action_space(a)) for a in agents),
        teams=_check_teams(task, agents, teams),
        max_cycles=int(max_cycles),
    )
    if seed is not None:
        env.reset(seed=seed)
        for i, a in enumerate(agents):
            env.action_space(a).seed(seed + i)
    return env, spec
