"""The training loop, Algorithm 1: act, step, store, take the gradient steps that are due; evaluate, checkpoint.

The learner owns how it collects and when it updates (:mod:`pgm_marl.learner`): an off-policy learner keeps a
replay buffer and is due a step every ``update_every`` env steps; reinforce-elbo learns from each round's own
episodes at its end. All env copies start together and MPE episodes last exactly ``max_cycles`` steps, so one
*round* of ``max_cycles`` vector steps finishes ``num_envs`` episodes. Every round begins with
an explicit ``venv.reset()``; evaluation and checkpoints happen only between rounds, which
makes a resumed run continue exactly like an uninterrupted one (all RNG states are saved).
"""
from __future__ import annotations

import json
import random
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from tqdm import tqdm

from .checkpoint import (CHECKPOINT_KEYS, capture_rng, check_counters, env_generators, load_checkpoint, restore,
                         restore_rng, save_checkpoint)
from .config import TrainConfig
from .errors import ConfigError, MissingFileError, NonFiniteError, RunExistsError
from .envs import VectorEnv
from .evaluate import evaluate
from .guards import check_finite_state, check_finite_step, guarded_update, learning_plan_warning
from .metrics import MetricsLogger, plot_learning_curve, random_baseline
from .runfolder import check_out_folder, make_run_folder, remove_stale_temp_files

#: fields that may differ between a checkpoint and the config that resumes it
RESUMABLE_CHANGES = ("episodes", "checkpoint_every", "out", "progress", "tensorboard", "threads")


def make_learner(spec, cfg: TrainConfig):
    """Build the learner (imported lazily so that the training infrastructure imports without it)."""
    from .learner import make_learner as build
    return build(spec, cfg)


def run_generators(generators, venv) -> Dict[str, torch.Generator]:
    """Named torch generators to checkpoint: the learner's (``learner.generators()``: replay sampling; a lone
    ``torch.Generator`` is named ``"replay"``) and, on the torch backend, the environment's."""
    gens = {"replay": generators} if isinstance(generators, torch.Generator) else dict(generators)
    if isinstance(getattr(venv, "generator", None), torch.Generator):
        gens["env"] = venv.generator
    return gens


class Timer:
    """Accumulates wall seconds per phase: ``with timer("env"): ...``."""

    def __init__(self, totals: Dict[str, float] | None = None):
        self.totals = dict(totals or {"act": 0.0, "env": 0.0, "learn": 0.0, "eval": 0.0})

    @contextmanager
    def __call__(self, phase: str):
        start = time.perf_counter()
        yield
        self.totals[phase] = self.totals.get(phase, 0.0) + time.perf_counter() - start


def resume_conflict(cfg: TrainConfig, saved) -> Optional[Tuple[str, object, object]]:
    """The first setting of ``cfg`` that a run saved with config ``saved`` (a TrainConfig, or its dict from a
    checkpoint) cannot continue with, as ``(field, saved value, asked value)``, or None: only
    :data:`RESUMABLE_CHANGES` may differ, and a field a saved dict predates counts with the value the run had
    (:meth:`TrainConfig.with_defaults`)."""
    saved = (saved if isinstance(saved, TrainConfig) else TrainConfig.from_dict(saved)).to_dict()
    for key, value in cfg.to_dict().items():
        if key not in RESUMABLE_CHANGES and saved.get(key) != value:
            return key, saved.get(key), value
    return None


def _check_resume(cfg: TrainConfig, saved: dict, path: Path) -> None:
    conflict = resume_conflict(cfg, saved)
    if conflict:
        key, old, value = conflict
        raise ConfigError(f"cannot resume {path}: {key}={value!r} differs from the checkpoint's "
                          f"{old!r} (only {', '.join(RESUMABLE_CHANGES)} may change)")


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Train per ``cfg``; write config.json, metrics.csv, learning_curve.png, checkpoint.pt, timing.json."""
    run_dir = Path(cfg.out)
    ckpt_path = run_dir / "checkpoint.pt"
    check_out_folder(run_dir)  # a file, or a folder that cannot be written: refused before any work
    if resume and not ckpt_path.exists():
        raise MissingFileError(f"cannot resume: no checkpoint at {ckpt_path}")
    if not resume and ckpt_path.exists():
        raise RunExistsError(f"run folder {run_dir} already holds a checkpoint; pass --resume or choose another --out")
    ckpt = load_checkpoint(ckpt_path, required=CHECKPOINT_KEYS) if resume else None
    if ckpt is not None:
        _check_resume(cfg, ckpt["config"], ckpt_path)

    torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    venv = VectorEnv(cfg.task, num_envs=cfg.num_envs, seed=cfg.seed, max_cycles=cfg.max_cycles, backend=cfg.backend,
                     **cfg.env_options())
    spec = venv.spec
    eval_venv = None  # built at the first evaluation, reseeded at every one
    learner = make_learner(spec, cfg)  # bad task / algo fail here, before the run folder is written
    counters = {"episode": 0, "env_steps": 0, "updates": 0, "wall_seconds": 0.0}
    obs = venv.reset()  # first reset: copy k seeded with seed + k
    timer = Timer()
    if ckpt is not None:  # a checkpoint that does not fit is refused before any file of the run is touched
        restore(ckpt_path, "learner", learner.load_state_dict, ckpt["learner"])
        restore(ckpt_path, "replay buffer", learner.memory.load_state_dict, ckpt["buffer"])
        restore(ckpt_path, "counters", check_counters, ckpt["counters"])
        counters.update(ckpt["counters"])
        timer = Timer(ckpt["timing"])
        restore(ckpt_path, "RNG states", lambda rng: restore_rng(rng, run_generators(learner.generators(), venv),
                                                                  env_generators(venv)), ckpt["rng"])
    plan = learning_plan_warning(cfg, learner.on_policy)
    if plan and counters["updates"] == 0:
        print(f"warning: {plan}", file=sys.stderr)
    make_run_folder(run_dir)
    stale = remove_stale_temp_files(run_dir)
    if stale:
        print(f"note: removed {len(stale)} stale temp file(s) of an interrupted write in {run_dir}: "
              f"{', '.join(p.name for p in stale)}", file=sys.stderr)
    cfg.save(run_dir / "config.json")
    last_checkpoint = counters["episode"] if ckpt is not None else None
    logger = MetricsLogger(run_dir, list(spec.teams), resume=resume, resume_episode=counters["episode"],
                           tensorboard=cfg.tensorboard)
    title = f"{cfg.task} / {cfg.algo} (seed {cfg.seed})"
    eval_seed = cfg.seed + cfg.eval_seed_offset
    start_time, wall_before = time.perf_counter(), counters["wall_seconds"]
    wall = lambda: wall_before + time.perf_counter() - start_time  # noqa: E731

    def checkpoint() -> None:
        nonlocal last_checkpoint
        counters["wall_seconds"] = wall()
        learner_state = learner.state_dict()
        check_finite_state(learner_state, f"refusing to write {ckpt_path} at update {counters['updates']}: learner "
                                          "state", spec.agents)
        save_checkpoint(ckpt_path, {
            "learner": learner_state, "buffer": learner.memory.state_dict(), "config": cfg.to_dict(),
            "counters": dict(counters), "timing": dict(timer.totals),
            "rng": capture_rng(run_generators(learner.generators(), venv), env_generators(venv)),
        })
        last_checkpoint = counters["episode"]

    bar = tqdm(total=cfg.episodes, initial=min(counters["episode"], cfg.episodes), unit="ep",
               disable=not cfg.progress, dynamic_ncols=True)
    postfix: Dict[str, str] = {}
    steps_at_start = counters["env_steps"]
    try:
        while counters["episode"] < cfg.episodes:
            if counters["episode"] > 0 or ckpt is not None:  # (the very first round uses the seeded reset)
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
            before, counters["episode"] = counters["episode"], counters["episode"] + cfg.num_envs
            done = counters["episode"] >= cfg.episodes
            if diagnostics:
                logger.log_train(counters["episode"], diagnostics)
            if counters["episode"] // cfg.eval_every > before // cfg.eval_every:
                with timer("eval"):
                    eval_venv = eval_venv or VectorEnv(cfg.task, num_envs=cfg.eval_episodes, seed=eval_seed,
                                                       max_cycles=cfg.max_cycles, backend=cfg.backend,
                                                       **{**cfg.env_options(), "teams": spec.teams})
                    returns = evaluate(learner, spec, cfg, cfg.eval_episodes, eval_seed, venv=eval_venv)
                logger.log_eval(counters["episode"], counters["env_steps"], wall(), returns)
                postfix = {t: f"{r:.2f}" for t, r in returns.items()}
            if done or counters["episode"] // cfg.checkpoint_every > before // cfg.checkpoint_every:
                checkpoint()
                # the curve is redrawn with each checkpoint (a plot costs ~0.1 s: at every evaluation it was a
                # fifth of a paper-scale run on the torch backend)
                plot_learning_curve(logger.path, run_dir / "learning_curve.png", title, baseline=random_baseline(cfg))
            rate = (counters["env_steps"] - steps_at_start) / max(time.perf_counter() - start_time, 1e-9)
            bar.set_postfix({**postfix, "steps/s": f"{rate:.0f}"}, refresh=False)
            bar.update(min(counters["episode"], cfg.episodes) - bar.n)
    except NonFiniteError as err:  # nothing non-finite was stored or checkpointed: say what is left
        kept = (f"the last checkpoint ({ckpt_path}, episode {last_checkpoint}) is kept" if last_checkpoint is not None
                else "no checkpoint was written")
        raise NonFiniteError(f"{err}; {kept}") from None
    finally:
        bar.close()
        logger.close()
        venv.close()
        if eval_venv is not None:
            eval_venv.close()

    timing = {**{k: round(v, 3) for k, v in timer.totals.items()}, "wall": round(wall(), 3),
              "env_steps": counters["env_steps"], "updates": counters["updates"], "episodes": counters["episode"]}
    (run_dir / "timing.json").write_text(json.dumps(timing, indent=2) + "\n")
    split = ", ".join(f"{k} {v:.1f}s" for k, v in timer.totals.items())  # printed with or without --progress
    print(f"done: {counters['episode']} episodes, {counters['env_steps']} env steps, "
          f"{counters['updates']} updates in {timing['wall']:.1f}s ({split}); results in {run_dir}")
    return run_dir

