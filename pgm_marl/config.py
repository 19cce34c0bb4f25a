"""Training configuration: one dataclass, defaults = the paper's section 5.2.

Every field carries its help text in ``metadata["help"]``; the CLI builds its ``--flags``
from these, and the run folder stores the config as ``config.json``.
"""
from __future__ import annotations

import ast
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional


def _f(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Hyperparameters and bookkeeping of one training run."""

    task: str = _f("cooperative_navigation", "task name (cooperative_navigation, cooperative_communication, "
                   "predator_prey, physical_deception) or a PettingZoo parallel env import path")
    algo: str = _f("masac", "algorithm for all agents (e.g. masac, maddpg) or per team, "
                   "e.g. 'predators=masac,prey=maddpg'")
    seed: int = _f(0, "random seed (networks, exploration, replay sampling, env copy k gets seed + k)")
    episodes: int = _f(15000, "number of training episodes (all env copies together)")
    max_cycles: int = _f(25, "episode length in environment steps")
    num_envs: int = _f(1, "parallel environment copies; an environment step counts each copy")
    lr: float = _f(0.01, "Adam learning rate of actors and critics")
    gamma: float = _f(0.95, "discount factor")
    tau: float = _f(0.01, "Polyak averaging rate of the target networks, applied every gradient step")
    batch_size: int = _f(1024, "transitions per gradient step, sampled uniformly from the replay buffer")
    buffer_size: int = _f(1_000_000, "replay buffer capacity in transitions (round-robin)")
    update_every: int = _f(100, "environment steps per gradient step")
    learning_starts: int = _f(25_600, "environment steps before the first gradient step "
                              "(batch_size * max_cycles, as in Lowe et al.'s MADDPG code)")
    hidden: int = _f(128, "units in each of the two hidden layers")
    alpha: Optional[float] = _f(None, "entropy temperature; none = the paper's per-task value")
    teams: Optional[str] = _f(None, "team map for an import-path task, e.g. 'red=agent_0+agent_1,blue=agent_2' "
                              "(none: the task's own teams, or one team per agent)")
    env_kwargs: Optional[str] = _f(None, "extra env constructor arguments, e.g. 'N=6,local_ratio=0.5' (values parsed "
                                   "as Python literals)")
    eval_every: int = _f(100, "training episodes between evaluations (deterministic policies)")
    eval_episodes: int = _f(100, "episodes per evaluation")
    eval_seed_offset: int = _f(10_000, "evaluation env seed = seed + eval_seed_offset")
    checkpoint_every: int = _f(1000, "training episodes between checkpoints (also saved at the end)")
    out: str = _f("runs/default", "run folder: config.json, metrics.csv, learning_curve.png, checkpoint.pt")
    tensorboard: bool = _f(True, "also log to TensorBoard (only if torch.utils.tensorboard is importable)")
    progress: bool = _f(True, "show a progress bar")
    threads: int = _f(1, "torch intra-op threads (1: small networks gain little from more, and parallel "
                      "runs on a small machine do not oversubscribe it)")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise a one-line ``ValueError`` naming the bad field, its value and what is accepted."""
        positive = ("episodes", "max_cycles", "num_envs", "batch_size", "buffer_size", "update_every",
                    "hidden", "eval_every", "eval_episodes", "checkpoint_every", "threads")
        for name in positive:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        for name in ("seed", "learning_starts", "eval_seed_offset"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} must be a non-negative int, got {v!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr must be a positive float, got {self.lr!r}")
        for name in ("gamma", "tau"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 <= v <= 1):
                raise ValueError(f"{name} must be a float in [0, 1], got {v!r}")
        if self.alpha is not None and not (isinstance(self.alpha, (int, float)) and self.alpha >= 0):
            raise ValueError(f"alpha must be a non-negative float or None (paper's per-task value), got {self.alpha!r}")
        for name in ("task", "algo", "out"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v:
                raise ValueError(f"{name} must be a non-empty string, got {v!r}")
        self.env_options()  # parse errors surface here, as one line
        if self.buffer_size < self.batch_size:
            raise ValueError(f"buffer_size ({self.buffer_size}) must be >= batch_size ({self.batch_size})")

    def env_options(self) -> Dict[str, Any]:
        """``teams`` and ``env_kwargs`` as keyword arguments of ``make_env`` / ``VectorEnv``."""
        out: Dict[str, Any] = {}
        if self.teams:
            out["teams"] = {}
            for part in self.teams.split(","):
                team, sep, members = part.partition("=")
                if not sep or not team.strip() or not members.strip():
                    raise ValueError(f"teams={self.teams!r}: bad entry {part!r}; accepted: 'team=agent+agent,...'")
                out["teams"][team.strip()] = [m.strip() for m in members.split("+")]
        for part in (self.env_kwargs or "").split(","):
            if not part.strip():
                continue
            key, sep, value = part.partition("=")
            if not sep or not key.strip().isidentifier():
                raise ValueError(f"env_kwargs={self.env_kwargs!r}: bad entry {part!r}; accepted: 'name=value,...'")
            try:
                out[key.strip()] = ast.literal_eval(value.strip())
            except (ValueError, SyntaxError):
                out[key.strip()] = value.strip()  # a bare word is a string
        return out

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; accepted: {sorted(known)}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"no config file at {path}") from None
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read config {path}: {err}") from None
        if not isinstance(data, dict):
            raise ValueError(f"config {path} must hold a JSON object")
        return cls.from_dict(data)
