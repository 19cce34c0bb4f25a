"""The training loop, Algorithm 1: act, step, store, take the gradient steps that are due; evaluate, checkpoint.

The learner owns how it collects and when it updates (:mod:`pgm_marl.learner`): an off-policy learner keeps a
replay buffer and is due a step every ``update_every`` env steps; reinforce-elbo learns from each round's own
episodes at its end. All env copies start together and MPE episodes last exactly ``max_cycles`` steps, so one
*round* of ``max_cycles`` vector steps finishes ``num_envs`` episodes. Every round begins with
an explicit ``venv.reset()``; evaluation and checkpoints happen only between rounds, which
makes a resumed run continue exactly like an uninterrupted one (all RNG states are saved).
The run folder, resuming, checkpoints, evaluation and the progress bar are :class:`~pgm_marl.session.RunSession`'s.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Dict

import numpy as np
import torch

from .config import TrainConfig
from .envs import VectorEnv
from .guards import check_finite_step, guarded_update
from .learner import make_learner
from .session import RESUMABLE_CHANGES, RunSession, resume_conflict  # noqa: F401 (re-exported: the sweep's check)


def run_generators(generators, venv) -> Dict[str, torch.Generator]:
    """Named torch generators to checkpoint: the learner's (``learner.generators()``: replay sampling; a lone
    ``torch.Generator`` is named ``"replay"``) and the environment's (``venv.generators()``: ``"env"`` on the torch
    backend)."""
    gens = {"replay": generators} if isinstance(generators, torch.Generator) else dict(generators)
    return {**gens, **venv.generators()}


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Train per ``cfg`` (Algorithm 1); write config.json, metrics.csv, learning_curve.png, checkpoint.pt,
    timing.json."""
    session = RunSession(cfg, resume)  # the run folder and a checkpoint to resume are checked before any work
    torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    venv = VectorEnv(cfg.task, num_envs=cfg.num_envs, seed=cfg.seed, max_cycles=cfg.max_cycles, backend=cfg.backend,
                     **cfg.env_options())
    spec = venv.spec

    def eval_venv():  # built at the first evaluation, reseeded at every one
        return VectorEnv(cfg.task, num_envs=cfg.eval_episodes, seed=cfg.seed + cfg.eval_seed_offset,
                         max_cycles=cfg.max_cycles, backend=cfg.backend, **{**cfg.env_options(), "teams": spec.teams})

    learner = make_learner(spec, cfg)  # bad task / algo fail here, before the run folder is written
    obs = venv.reset()  # first reset: copy k seeded with seed + k
    with session.start(learner, venv, eval_venv, lambda: run_generators(learner.generators(), venv)):
        counters, timer = session.counters, session.timer  # (as the checkpoint left them, when resuming)
        while counters["episode"] < cfg.episodes:
            if counters["episode"] > 0 or resume:  # (the very first round uses the seeded reset)
                obs = venv.reset()  # each round starts from a fresh reset that continues each copy's RNG
            diagnostics = {}
            for step in range(1, cfg.max_cycles + 1):  # each environment step, all copies at once
                with timer("act"):
                    actions = learner.act(obs)  # a_i ~ pi_i(. | o_i)
                with timer("env"):
                    res = venv.step(actions)  # s' ~ p(. | s, a)
                state, next_state = venv.state(obs), venv.state(res.next_obs)
                check_finite_step(spec, res.reward, state, next_state, episode=counters["episode"], step=step,
                                  env_steps=counters["env_steps"])  # NaN / inf never enter the buffer
                learner.store(state, actions, res.reward, next_state, res.terminated)  # D <- D u {(s, a, r, s')}
                obs = res.obs
                before, counters["env_steps"] = counters["env_steps"], counters["env_steps"] + cfg.num_envs
                due = learner.updates_due(before, counters["env_steps"], round_end=step == cfg.max_cycles)
                if due:
                    with timer("learn"):
                        for _ in range(due):  # each gradient step: losses and weights checked after it
                            diagnostics = guarded_update(learner.learn, learner, spec.agents,
                                                         update=counters["updates"] + 1,
                                                         env_steps=counters["env_steps"])
                            counters["updates"] += 1
            counters["episode"] += cfg.num_envs  # the round's num_envs episodes are done
            session.log_train(diagnostics)  # the round's last gradient step, to TensorBoard
            session.evaluate_if_due()  # every eval_every episodes: a row of metrics.csv
            session.checkpoint_if_due()  # every checkpoint_every episodes and after the last round
            session.show_progress()
    return session.finish()  # timing.json and the done: line
