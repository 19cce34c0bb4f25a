"""Training configuration: one dataclass, defaults = the paper's section 5.2.

Every field carries its help text in ``metadata["help"]``; the CLI builds its ``--flags``
from these, and the run folder stores the config as ``config.json``.
"""
from __future__ import annotations

import ast
import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from .errors import ConfigError, MissingFileError

#: accepted ``precision`` values (:mod:`pgm_marl.networks` maps them to dtypes)
PRECISIONS = ("float32", "bfloat16")
#: accepted ``critic`` forms (:mod:`pgm_marl.critics`)
CRITIC_FORMS = ("mlp", "attention", "mean-field", "local")
#: accepted ``replay_dtype`` values (:data:`pgm_marl.replay.STORAGE_DTYPES`)
REPLAY_DTYPES = ("float32", "float16", "bfloat16")


def _f(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


_BARE_WORD = re.compile(r"[A-Za-z_][\w.\-]*")


def _split_top_level(text: str) -> list:
    """Split on commas outside brackets and quotes: ``"N=3,sizes=(1, 2)"`` -> ``["N=3", "sizes=(1, 2)"]``."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(depth - 1, 0)
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


def _env_value(text: str, key: str, value: str) -> Any:
    """One ``--env-kwargs`` value: a Python literal (finite numbers, True/False/None, quoted strings, tuples,
    lists, dicts) or a bare word, kept as a string (``render_mode=rgb_array``); anything else is refused."""
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        if _BARE_WORD.fullmatch(value):
            return value
        raise ConfigError(f"env_kwargs={text!r}: value {value!r} of {key} does not parse; accepted: a Python "
                          "literal (3, 0.5, True, None, 'text', (1, 2)) or a bare word") from None
    if isinstance(parsed, float) and not math.isfinite(parsed):
        raise ConfigError(f"env_kwargs={text!r}: value {value!r} of {key} is not finite; accepted: a finite number")
    return parsed


#: what each float field accepts, for the one-line error on a non-finite value
_FLOAT_ACCEPTED = {"lr": "a positive float", "gamma": "a float in [0, 1]", "tau": "a float in [0, 1]",
                   "alpha": "a finite float, or none (the paper's per-task value)"}


@dataclass
class TrainConfig:
    """Hyperparameters and bookkeeping of one training run."""

    task: str = _f("cooperative_navigation", "task name (cooperative_navigation, cooperative_communication, "
                   "predator_prey, physical_deception) or a PettingZoo parallel env import path")
    algo: str = _f("masac", "algorithm for all agents, one of the presets masac, maddpg, masac-auto, masac-exact, "
                   "reinforce-elbo, masac-inferred, masac-optimistic (README, Algorithms), or one per team, e.g. "
                   "'predators=masac,prey=maddpg'")
    seed: int = _f(0, "random seed (networks, exploration, replay sampling, env copy k gets seed + k)")
    episodes: int = _f(15000, "number of training episodes (all env copies together)")
    max_cycles: int = _f(25, "episode length in environment steps")
    num_envs: Optional[int] = _f(None, "parallel environment copies; an environment step counts each copy "
                                 "(none: 100 on the torch backend, i.e. one gradient step per vector step at "
                                 "update_every=100, or episodes if fewer; 1 on pettingzoo)")
    backend: str = _f("auto", "environment implementation: torch (batched tensors, the four paper tasks), "
                      "pettingzoo (mpe2 itself, any ParallelEnv), or auto (torch where it exists)")
    lr: float = _f(0.01, "Adam learning rate of actors and critics")
    gamma: float = _f(0.95, "discount factor")
    tau: float = _f(0.01, "Polyak averaging rate of the target networks, applied every gradient step")
    batch_size: int = _f(1024, "transitions per gradient step, sampled uniformly from the replay buffer")
    buffer_size: int = _f(1_000_000, "replay buffer capacity in transitions (round-robin)")
    update_every: int = _f(100, "environment steps per gradient step")
    learning_starts: int = _f(25_600, "environment steps before the first gradient step "
                              "(batch_size * max_cycles, as in Lowe et al.'s MADDPG code)")
    hidden: int = _f(128, "units in each of the two hidden layers")
    critic: str = _f("mlp", "form of each agent's critic Q_i(s, a) (section 5.4; README, Critic forms): mlp (the "
                     "paper's: one MLP over every observation and action), attention (MAAC, Iqbal & Sha 2019), "
                     "mean-field (o_i, a_i and each team's mean action, Yang et al. 2018) or local (o_i, a_i only)")
    share_params: bool = _f(False, "share actor and critic parameters among the agents of a team (an agent-index "
                            "input tells them apart); off: one network per agent, the paper's setting")
    common_draws: bool = _f(False, "in the actor step (eq. 9), draw each agent's action once per transition for all "
                            "the other agents' updates (common random numbers) instead of once per agent: each "
                            "agent's update keeps its distribution; the attention critic's step gets 1.3-2x "
                            "cheaper at 12-48 agents (README, Critic forms); off: the paper's independent draws")
    replay_dtype: str = _f("float32", "dtype the replay buffer stores observations in: float32, or float16 / "
                           "bfloat16 (half the memory for many agents; each stored observation is rounded to 11 / "
                           "8 significant bits)")
    precision: str = _f("float32", "dtype of the networks' hidden-layer products: float32, or bfloat16 (opt-in "
                        "mixed precision: 1.3-1.4x faster training on one thread on CPUs with bfloat16 dot products, "
                        "AVX512_BF16/AMX, slower elsewhere; parameters, optimizer, outputs and losses stay float32)")
    alpha: Optional[float] = _f(None, "entropy temperature; none = the paper's per-task value (section 5.2; "
                                "required for other tasks)")
    teams: Optional[str] = _f(None, "team map for an import-path task, e.g. 'red=agent_0+agent_1,blue=agent_2' "
                              "(none: the task's own teams, or one team per agent)")
    env_kwargs: Optional[str] = _f(None, "extra env constructor arguments, e.g. 'N=6,local_ratio=0.5' or "
                                   "'continuous_actions=True' (Box actions) (values: Python literals, or bare words "
                                   "kept as strings)")
    eval_every: int = _f(100, "training episodes between evaluations (deterministic policies)")
    eval_episodes: int = _f(100, "episodes per evaluation")
    eval_seed_offset: int = _f(10_000, "evaluation env seed = seed + eval_seed_offset")
    checkpoint_every: int = _f(1000, "training episodes between checkpoints (also saved at the end)")
    keep_replay: bool = _f(True, "keep the replay buffer in the run's last checkpoint, so that the finished run can "
                           "be extended with more --episodes; off: the last checkpoint drops it (5-6 GB at 24 "
                           "agents) and keeps weights, counters and RNG states, all that pgm-marl evaluate reads; "
                           "the checkpoints before it keep the replay, so an interrupted run still resumes")
    out: str = _f("runs/default", "run folder: config.json, metrics.csv, learning_curve.png, checkpoint.pt")
    tensorboard: bool = _f(True, "also log to TensorBoard (only if torch.utils.tensorboard is importable)")
    progress: bool = _f(True, "show a progress bar")
    threads: int = _f(1, "torch intra-op threads (1: small networks gain little from more, and parallel "
                      "runs on a small machine do not oversubscribe it)")

    def __post_init__(self) -> None:
        self._resolve_environment()
        try:
            self.validate()
        except ConfigError:
            raise
        except ValueError as err:  # validation only inspects the given values: any ValueError is about them
            raise ConfigError(str(err)) from None

    def validate(self) -> None:
        """Raise a one-line ``ConfigError`` (a ``ValueError``) naming the bad field, its value and what is accepted."""
        for f in dataclasses.fields(self):  # no NaN or infinity anywhere (json would write them as NaN / Infinity)
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                accepted = _FLOAT_ACCEPTED.get(f.name, "a finite float")
                raise ConfigError(f"{f.name} must be finite, got {v!r}; accepted: {accepted}")
        positive = ("episodes", "max_cycles", "num_envs", "batch_size", "buffer_size", "update_every",
                    "hidden", "eval_every", "eval_episodes", "checkpoint_every", "threads")
        for name in positive:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{name} must be a positive int, got {v!r}")
        for name in ("seed", "learning_starts", "eval_seed_offset"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"{name} must be a non-negative int, got {v!r}")
        for name, accepted in (("precision", PRECISIONS), ("critic", CRITIC_FORMS), ("replay_dtype", REPLAY_DTYPES)):
            if getattr(self, name) not in accepted:
                raise ConfigError(f"{name} must be one of {', '.join(accepted)}, got {getattr(self, name)!r}")
        for name in ("share_params", "common_draws", "keep_replay", "tensorboard", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ConfigError(f"lr must be a positive float, got {self.lr!r}")
        for name in ("gamma", "tau"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 <= v <= 1):
                raise ConfigError(f"{name} must be a float in [0, 1], got {v!r}")
        for name in ("task", "algo", "out"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v:
                raise ConfigError(f"{name} must be a non-empty string, got {v!r}")
        self.env_options()  # parse errors surface here, as one line
        if self.buffer_size < self.batch_size:
            raise ConfigError(f"buffer_size ({self.buffer_size}) must be >= batch_size ({self.batch_size})")

    def _resolve_environment(self) -> None:
        """Resolve ``backend="auto"`` and ``num_envs=None`` once, so that config.json holds the values used."""
        from .envs.backends import default_num_envs, resolve_backend  # imports neither torch nor pettingzoo

        if not isinstance(self.backend, str) or not isinstance(self.task, str):
            return  # validate() names the bad value
        self.backend = resolve_backend(self.task, self.backend, self.env_options())  # one-line errors
        if self.num_envs is None:
            self.num_envs = default_num_envs(self.backend, self.episodes)

    def env_options(self) -> Dict[str, Any]:
        """``teams`` and ``env_kwargs`` as keyword arguments of ``make_env`` / ``VectorEnv``."""
        out: Dict[str, Any] = {}
        if self.teams:
            out["teams"] = {}
            for part in self.teams.split(","):
                team, sep, members = part.partition("=")
                if not sep or not team.strip() or not members.strip():
                    raise ConfigError(f"teams={self.teams!r}: bad entry {part!r}; accepted: 'team=agent+agent,...'")
                out["teams"][team.strip()] = [m.strip() for m in members.split("+")]
        for part in _split_top_level(self.env_kwargs or ""):
            if not part.strip():
                continue
            key, sep, value = part.partition("=")
            if not sep or not key.strip().isidentifier():
                raise ConfigError(f"env_kwargs={self.env_kwargs!r}: bad entry {part!r}; accepted: 'name=value,...'")
            out[key.strip()] = _env_value(self.env_kwargs, key.strip(), value.strip())
        return out

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; accepted: {sorted(known)}")
        return cls(**cls.with_defaults(data))

    @classmethod
    def with_defaults(cls, data: Dict[str, Any]) -> Dict[str, Any]:
        """``data`` (a saved config) with the fields it predates filled in as the run had them: the default,
        except ``backend`` (written before the torch backend existed, such runs stepped mpe2)."""
        missing = {f.name: f.default for f in dataclasses.fields(cls) if f.name not in data}
        if "backend" in missing:
            missing["backend"] = "pettingzoo"
        return {**data, **missing}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")  # strict JSON

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise MissingFileError(f"no config file at {path}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ConfigError(f"cannot read config {path}: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config {path} must hold a JSON object")
        return cls.from_dict(data)
