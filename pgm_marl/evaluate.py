"""Evaluation with deterministic policies (most probable action) and GIF rendering."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Dict, Mapping

import torch

from .checkpoint import check_counters, load_checkpoint, restore
from .config import TrainConfig
from .envs import TaskSpec, VectorEnv, VectorEnvBase, make_env
from .errors import ConfigError, MissingFileError, NonFiniteError
from .learner import TrainedPolicies


def load_trained(run_dir: str | Path):
    """``(cfg, spec, policies, counters)`` of a run folder's checkpoint: the actors only
    (:class:`~pgm_marl.learner.TrainedPolicies`; no critic, no loss, so no temperature is needed)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MissingFileError(f"no run folder at {run_dir}; accepted: a folder written by pgm-marl train "
                               "(config.json, checkpoint.pt)")
    cfg = TrainConfig.load(run_dir / "config.json")
    ckpt_path = run_dir / "checkpoint.pt"
    ckpt = load_checkpoint(ckpt_path, required=("learner", "counters"), only=("learner", "counters"))
    restore(ckpt_path, "counters", check_counters, ckpt["counters"])
    _, spec = make_env(cfg.task, max_cycles=cfg.max_cycles, **cfg.env_options())
    policies = TrainedPolicies(spec, cfg)
    restore(ckpt_path, "learner", policies.load_state_dict, ckpt["learner"])
    return cfg, spec, policies, ckpt["counters"]


class CrossPlay:
    """Several runs' policies acting as one: agent j acts by ``policies[owner[j]]`` (cross-play: one run's team
    against another run's team, e.g. ``CrossPlay([a, b], [0] * 12 + [1] * 4)`` for a's 12 predators against b's 4
    prey). Each of ``policies`` acts as a learner does (``act(obs, deterministic)``, one action per agent)."""

    def __init__(self, policies, owner):
        self.policies, self.owner = list(policies), list(owner)
        bad = [k for k in self.owner if not (isinstance(k, int) and 0 <= k < len(self.policies))]
        if bad:
            raise ValueError(f"owner {self.owner}: {bad[0]!r} is not a policy index; accepted: ints in "
                             f"0..{len(self.policies) - 1}")

    @torch.no_grad()
    def act(self, obs, deterministic: bool = False):
        acts = [policy.act(obs, deterministic) for policy in self.policies]
        if any(len(a) != len(self.owner) for a in acts):
            raise ValueError(f"a policy acted for {[len(a) for a in acts]} agents; owner names {len(self.owner)}")
        return [acts[k][j] for j, k in enumerate(self.owner)]


def with_teams_from(run_dir: str | Path, policies, teams: Mapping[str, str | Path]):
    """The policies of the run in ``run_dir`` with each team of ``teams`` (``{team: other run folder}``) acting by
    the other run's policies instead (a :class:`CrossPlay`; ``policies`` itself when ``teams`` is empty). The runs
    must share task, environment options and agents; a team the task lacks or another run's task is one line."""
    if not teams:
        return policies
    cfg = TrainConfig.load(Path(run_dir) / "config.json")
    _, spec = make_env(cfg.task, max_cycles=cfg.max_cycles, **cfg.env_options())
    members, owner = [policies], [0] * len(spec.agents)
    for team, other_dir in teams.items():
        if team not in spec.teams:
            raise ConfigError(f"--team {team}={other_dir}: {cfg.task} has no team {team!r}; accepted: "
                              f"{', '.join(spec.teams)}")
        other_cfg, other_spec, other, _ = load_trained(other_dir)
        if (other_cfg.task, other_cfg.env_options(), other_spec.teams) != (cfg.task, cfg.env_options(), spec.teams):
            def what(c, sp):
                return (f"{c.task} (env_kwargs {c.env_kwargs!r}; teams "
                        f"{', '.join(f'{t} of {len(m)}' for t, m in sp.teams.items())})")
            raise ConfigError(f"--team {team}={other_dir}: a run of {what(other_cfg, other_spec)}; accepted: a run "
                              f"of {what(cfg, spec)}, as {run_dir}")
        members.append(other)
        for j in spec.team_indices(team):
            owner[j] = len(members) - 1
    return CrossPlay(members, owner)


@torch.no_grad()
def evaluate(policies, spec: TaskSpec, cfg: TrainConfig, episodes: int, seed: int,
             venv: VectorEnvBase | None = None) -> Dict[str, float]:
    """Mean team return over ``episodes`` episodes, all run in parallel (copy k seeded with ``seed + k``).

    ``policies``: anything that acts as a learner does (``act(obs, deterministic=True)``): the learner during
    training, or a run's :class:`~pgm_marl.learner.TrainedPolicies` (``pgm-marl evaluate``).

    ``venv``: a VectorEnv of ``episodes`` copies to reuse (reseeded here), so that periodic evaluation does not
    rebuild 100 environments each time; by default one is made and closed.
    """
    if episodes < 1:
        raise ConfigError(f"episodes must be a positive int, got {episodes!r}")
    own = venv is None
    if own:
        venv = VectorEnv(cfg.task, num_envs=episodes, seed=seed, max_cycles=cfg.max_cycles, backend=cfg.backend,
                         **{**cfg.env_options(), "teams": spec.teams})
    elif venv.num_envs != episodes:
        raise ValueError(f"venv has {venv.num_envs} copies but episodes={episodes}; they must be equal")
    totals = {t: 0.0 for t in spec.teams}
    finished = 0
    obs = venv.reset(seed=seed)
    for step in range(1, cfg.max_cycles + 1):
        result = venv.step(policies.act(obs, deterministic=True))
        obs = result.obs
        ended = result.done.cpu()  # (episode_return is NaN where no episode ended: never use it as the mask)
        for t, ret in result.episode_return.items():
            ret = ret.cpu()[ended]
            if not bool(torch.isfinite(ret).all()):  # a NaN / inf return is an error, never a silent 0.0
                k = int(ended.nonzero()[(~torch.isfinite(ret)).nonzero()[0, 0]])
                if own:
                    venv.close()
                raise NonFiniteError(f"evaluation: non-finite return/{t} {float(ret[~torch.isfinite(ret)][0])} "
                                     f"in the episode of env copy {k} (env seed {seed + k}) of task {spec.name}, "
                                     f"ended at step {step}: the environment produced a non-finite reward")
            totals[t] += float(ret.sum())
        finished += int(ended.sum())
    if own:
        venv.close()
    if finished == 0:
        return {t: math.nan for t in spec.teams}
    return {t: v / finished for t, v in totals.items()}


@torch.no_grad()
def render_gif(policies, spec: TaskSpec, cfg: TrainConfig, path: str | Path, seed: int, fps: int = 10) -> Path:
    """Play one deterministic episode and save it as an animated GIF, drawn by mpe2's own renderer
    (``render_frame`` of the run's backend: the torch env copies each state into an mpe2 env to draw it; a
    PettingZoo env, built with ``render_mode="rgb_array"``, draws itself)."""
    import imageio.v2 as imageio

    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # headless pygame
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    options = {**cfg.env_options(), "teams": spec.teams, "render_mode": "rgb_array"}
    venv = VectorEnv(cfg.task, num_envs=1, seed=seed, max_cycles=cfg.max_cycles, backend=cfg.backend, **options)
    try:
        obs = venv.reset()
        frames = [venv.render_frame()]
        for _ in range(cfg.max_cycles):
            result = venv.step(policies.act(obs, deterministic=True))
            obs = result.obs
            if bool(result.done[0]):
                break
            frames.append(venv.render_frame())
    finally:
        venv.close()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, frames, duration=1000 / fps, loop=0)
    return path
