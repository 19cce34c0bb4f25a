"""Evaluation with deterministic policies (most probable action) and GIF rendering."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Dict

import torch

from .config import TrainConfig
from .envs import TaskSpec, VectorEnv


@torch.no_grad()
def evaluate(learner, spec: TaskSpec, cfg: TrainConfig, episodes: int, seed: int,
             venv: VectorEnv | None = None) -> Dict[str, float]:
    """Mean team return over ``episodes`` episodes, all run in parallel (copy k seeded with ``seed + k``).

    ``venv``: a VectorEnv of ``episodes`` copies to reuse (reseeded here), so that periodic evaluation does not
    rebuild 100 environments each time; by default one is made and closed.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be a positive int, got {episodes!r}")
    own = venv is None
    if own:
        venv = VectorEnv(cfg.task, num_envs=episodes, seed=seed, max_cycles=cfg.max_cycles,
                         **{**cfg.env_options(), "teams": spec.teams})
    elif venv.num_envs != episodes:
        raise ValueError(f"venv has {venv.num_envs} copies but episodes={episodes}; they must be equal")
    totals = {t: 0.0 for t in spec.teams}
    finished = 0
    obs = venv.reset(seed=seed)
    for _ in range(cfg.max_cycles):
        result = venv.step(learner.act(obs, deterministic=True))
        obs = result.obs
        for t, ret in result.episode_return.items():
            ended = ~torch.isnan(ret)
            totals[t] += float(ret[ended].sum())
        finished += int(result.done.sum())
    if own:
        venv.close()
    if finished == 0:
        return {t: math.nan for t in spec.teams}
    return {t: v / finished for t, v in totals.items()}


@torch.no_grad()
def render_gif(learner, spec: TaskSpec, cfg: TrainConfig, path: str | Path, seed: int, fps: int = 10) -> Path:
    """Play one deterministic episode with ``render_mode="rgb_array"`` and save it as an animated GIF."""
    import imageio.v2 as imageio

    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # headless pygame
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    venv = VectorEnv(cfg.task, num_envs=1, seed=seed, max_cycles=cfg.max_cycles, render_mode="rgb_array",
                     **{**cfg.env_options(), "teams": spec.teams})
    env = venv.envs[0]
    obs = venv.reset()
    frames = [env.render()]
    for _ in range(cfg.max_cycles):
        result = venv.step(learner.act(obs, deterministic=True))
        obs = result.obs
        if bool(result.done[0]):
            break
        frames.append(env.render())
    venv.close()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, frames, duration=1000 / fps, loop=0)
    return path
