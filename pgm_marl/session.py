"""A training run's bookkeeping, kept apart from Algorithm 1 (:func:`pgm_marl.train.train`): the run folder and
its files, resuming from a checkpoint and writing one, evaluation, the progress bar, and the closing
``timing.json`` and ``done:`` line.

:class:`RunSession` is opened before any work (the run folder and, to resume, the checkpoint are checked first),
started once the learner and the environment exist (the checkpoint restored into them, the run folder written),
and finished after the last round. Evaluation and checkpoints happen only between rounds, and a checkpoint holds
every RNG state, so a resumed run continues exactly like an uninterrupted one.
"""
from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import torch
from tqdm import tqdm

from .checkpoint import (CHECKPOINT_KEYS, TensorFiles, capture_rng, check_counters, dropped_replay, env_generators,
                         load_checkpoint, peek_checkpoint, replay_dropped, restore, restore_rng, save_checkpoint)
from .config import TrainConfig
from .errors import CheckpointError, ConfigError, MissingFileError, NonFiniteError, RunExistsError
from .evaluate import evaluate
from .guards import check_finite_state, learning_plan_warning
from .metrics import MetricsLogger, plot_learning_curve, random_baseline
from .runfolder import check_out_folder, make_run_folder, remove_stale_temp_files

__all__ = ["RESUMABLE_CHANGES", "resume_conflict", "Timer", "RunSession", "drop_replay"]

#: fields that may differ between a checkpoint and the config that resumes it
RESUMABLE_CHANGES = ("episodes", "checkpoint_every", "keep_replay", "out", "progress", "tensorboard", "threads")


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


class Timer:
    """Accumulates wall seconds per phase: ``with timer("env"): ...``."""

    def __init__(self, totals: Dict[str, float] | None = None):
        self.totals = dict(totals or {"act": 0.0, "env": 0.0, "learn": 0.0, "eval": 0.0, "checkpoint": 0.0})

    @contextmanager
    def __call__(self, phase: str):
        start = time.perf_counter()
        yield
        self.totals[phase] = self.totals.get(phase, 0.0) + time.perf_counter() - start


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, MB (``getrusage``; Linux reports kB)."""
    import resource
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class RunSession:
    """Everything of a training run that is not Algorithm 1.

    ``RunSession(cfg, resume)`` refuses, before any work, an unusable run folder, a folder that already holds a
    checkpoint (without ``resume``) or, with ``resume``, a missing checkpoint or one saved with other settings.
    ``start(learner, venv, make_eval_env)`` restores the checkpoint (a part that does not fit is refused before
    any file of the run is touched), creates the run folder, writes ``config.json``, opens ``metrics.csv`` and
    the progress bar; used as a context manager it closes them, the environments, and says which checkpoint is
    left when a non-finite number stopped the run. Between rounds: :meth:`log_train`, :meth:`evaluate_if_due`,
    :meth:`checkpoint_if_due`, :meth:`show_progress`; at the end: :meth:`finish` (``timing.json``, the ``done:``
    line).

    ``counters`` (``episode``, ``env_steps``, ``updates``, ``wall_seconds``) and ``timer`` are the loop's, saved
    with each checkpoint.
    """

    def __init__(self, cfg: TrainConfig, resume: bool = False):
        self.cfg, self.resume = cfg, resume
        self.run_dir = Path(cfg.out)
        self.ckpt_path = self.run_dir / "checkpoint.pt"
        check_out_folder(self.run_dir)  # a file, or a folder that cannot be written: refused before any work
        if resume and not self.ckpt_path.exists():
            raise MissingFileError(f"cannot resume: no checkpoint at {self.ckpt_path}")
        if not resume and self.ckpt_path.exists():
            raise RunExistsError(f"run folder {self.run_dir} already holds a checkpoint; pass --resume or choose "
                                 "another --out")
        self.files = TensorFiles.beside(self.ckpt_path)  # the replay's chunks, each written once
        self.ckpt = load_checkpoint(self.ckpt_path, required=CHECKPOINT_KEYS, files=self.files) if resume else None
        if self.ckpt is not None:
            conflict = resume_conflict(cfg, self.ckpt["config"])
            if conflict:
                key, old, value = conflict
                raise ConfigError(f"cannot resume {self.ckpt_path}: {key}={value!r} differs from the checkpoint's "
                                  f"{old!r} (only {', '.join(RESUMABLE_CHANGES)} may change)")
            done = self.ckpt["counters"].get("episode")
            if replay_dropped(self.ckpt["buffer"]) and isinstance(done, int) and done < cfg.episodes:
                raise CheckpointError(f"cannot extend {self.ckpt_path} to {cfg.episodes} episodes: the run finished "
                                      f"at episode {done} and its last checkpoint dropped the replay buffer "
                                      f"(--no-keep-replay or pgm-marl drop-replay); accepted: --episodes {done} or "
                                      "fewer, or a new run")
        self.counters = {"episode": 0, "env_steps": 0, "updates": 0, "wall_seconds": 0.0}
        self.timer = Timer()
        self.last_checkpoint: Optional[int] = None
        self.learner = self.venv = self.eval_venv = self.logger = self.bar = None

    # ---------------------------------------------------------------- start, stop

    def start(self, learner, venv, make_eval_env: Callable[[], object],
              generators: Callable[[], Dict[str, torch.Generator]]) -> "RunSession":
        """Restore the checkpoint into ``learner``, its memory, the counters and every RNG; warn about a run that
        would never learn; write the run folder's ``config.json`` and open ``metrics.csv`` and the progress bar.
        ``make_eval_env()``: the evaluation environment, built at the first evaluation and reseeded at each;
        ``generators()``: the named torch generators a checkpoint holds (:func:`pgm_marl.train.run_generators`)."""
        cfg, path, ckpt = self.cfg, self.ckpt_path, self.ckpt
        self.ckpt = None  # (restored below: the run does not keep a second copy of what it loaded)
        self.learner, self.venv, self.make_eval_env, self.generators = learner, venv, make_eval_env, generators
        if ckpt is not None:  # a checkpoint that does not fit is refused before any file of the run is touched
            restore(path, "learner", learner.load_state_dict, ckpt["learner"])
            if not replay_dropped(ckpt["buffer"]):  # (dropped: a finished run, nothing left to train)
                restore(path, "replay buffer", learner.memory.load_state_dict, ckpt["buffer"])
            restore(path, "counters", check_counters, ckpt["counters"])
            self.counters.update(ckpt["counters"])
            self.timer = Timer(ckpt["timing"])
            restore(path, "RNG states", lambda rng: restore_rng(rng, generators(), env_generators(venv)), ckpt["rng"])
            self.last_checkpoint = self.counters["episode"]
        plan = learning_plan_warning(cfg, learner.on_policy)
        if plan and self.counters["updates"] == 0:
            print(f"warning: {plan}", file=sys.stderr)
        make_run_folder(self.run_dir)
        stale = remove_stale_temp_files(self.run_dir)
        if stale:
            print(f"note: removed {len(stale)} stale temp file(s) of an interrupted write in {self.run_dir}: "
                  f"{', '.join(p.name for p in stale)}", file=sys.stderr)
        cfg.save(self.run_dir / "config.json")
        self.logger = MetricsLogger(self.run_dir, list(venv.spec.teams), resume=self.resume,
                                    resume_episode=self.counters["episode"], tensorboard=cfg.tensorboard)
        self.start_time, self.wall_before = time.perf_counter(), self.counters["wall_seconds"]
        self.steps_at_start, self.postfix = self.counters["env_steps"], {}
        self.bar = tqdm(total=cfg.episodes, initial=min(self.counters["episode"], cfg.episodes), unit="ep",
                        disable=not cfg.progress, dynamic_ncols=True)
        return self

    def __enter__(self) -> "RunSession":
        return self

    def __exit__(self, kind, err, tb) -> None:
        self.bar.close()
        self.logger.close()
        self.venv.close()
        if self.eval_venv is not None:
            self.eval_venv.close()
        if isinstance(err, NonFiniteError):  # nothing non-finite was stored or checkpointed: say what is left
            kept = (f"the last checkpoint ({self.ckpt_path}, episode {self.last_checkpoint}) is kept"
                    if self.last_checkpoint is not None else "no checkpoint was written")
            raise NonFiniteError(f"{err}; {kept}") from None

    def wall(self) -> float:
        """Wall seconds of the run, over all its sessions."""
        return self.wall_before + time.perf_counter() - self.start_time

    # ---------------------------------------------------------------- between rounds

    def _due(self, every: int) -> bool:
        """The round just ended (``num_envs`` episodes) crossed a multiple of ``every`` episodes."""
        episode = self.counters["episode"]
        return episode // every > (episode - self.cfg.num_envs) // every

    def log_train(self, diagnostics: Dict[str, float]) -> None:
        """The learner's diagnostics of the round's last gradient step, to TensorBoard (none: nothing)."""
        if diagnostics:
            self.logger.log_train(self.counters["episode"], diagnostics)

    def evaluate_if_due(self) -> None:
        """Evaluate when the round just ended crossed a multiple of ``eval_every`` episodes."""
        if self._due(self.cfg.eval_every):
            self.evaluate()

    def checkpoint_if_due(self) -> None:
        """Checkpoint when the round just ended crossed a multiple of ``checkpoint_every`` episodes, or was the
        last."""
        if self.counters["episode"] >= self.cfg.episodes or self._due(self.cfg.checkpoint_every):
            self.checkpoint()

    def show_progress(self) -> None:
        """Advance the progress bar: episodes, the last evaluation's returns, env steps per second."""
        rate = (self.counters["env_steps"] - self.steps_at_start) / max(time.perf_counter() - self.start_time, 1e-9)
        self.bar.set_postfix({**self.postfix, "steps/s": f"{rate:.0f}"}, refresh=False)
        self.bar.update(min(self.counters["episode"], self.cfg.episodes) - self.bar.n)

    def evaluate(self) -> None:
        """Mean team returns of the deterministic policies over ``eval_episodes`` episodes: a row of metrics.csv."""
        cfg = self.cfg
        with self.timer("eval"):
            self.eval_venv = self.eval_venv or self.make_eval_env()
            returns = evaluate(self.learner, self.venv.spec, cfg, cfg.eval_episodes, cfg.seed + cfg.eval_seed_offset,
                               venv=self.eval_venv)
        self.logger.log_eval(self.counters["episode"], self.counters["env_steps"], self.wall(), returns)
        self.postfix = {t: f"{r:.2f}" for t, r in returns.items()}

    def checkpoint(self) -> None:
        """Write checkpoint.pt atomically (learner, replay memory, config, counters, timing, every RNG state; a
        non-finite learner state is refused) and redraw learning_curve.png. The replay's chunks go to
        ``checkpoint_files/``, only those written since the last checkpoint; the run's last checkpoint drops
        them (and their files) with ``keep_replay`` off."""
        learner, counters = self.learner, self.counters
        drop = counters["episode"] >= self.cfg.episodes and not self.cfg.keep_replay
        counters["wall_seconds"] = self.wall()
        learner_state = learner.state_dict()
        check_finite_state(learner_state, f"refusing to write {self.ckpt_path} at update {counters['updates']}: "
                                          "learner state", self.venv.spec.agents)
        with self.timer("checkpoint"):  # (the checkpoint's own seconds are counted from the next one on)
            save_checkpoint(self.ckpt_path, {
                "learner": learner_state,
                "buffer": dropped_replay(getattr(learner.memory, "nbytes", 0)) if drop else
                learner.memory.state_dict(self.files),
                "config": self.cfg.to_dict(), "counters": dict(counters), "timing": dict(self.timer.totals),
                "rng": capture_rng(self.generators(), env_generators(self.venv)),
            }, files=self.files)
        self.last_checkpoint = counters["episode"]
        # the curve is redrawn with each checkpoint (a plot costs ~0.1 s: at every evaluation it was a fifth of a
        # paper-scale run on the torch backend)
        cfg = self.cfg
        plot_learning_curve(self.logger.path, self.run_dir / "learning_curve.png",
                            f"{cfg.task} / {cfg.algo} (seed {cfg.seed})", baseline=random_baseline(cfg))

    # ---------------------------------------------------------------- end

    def finish(self) -> Path:
        """Write timing.json (seconds per phase, wall, counts, replay bytes, this process's peak resident memory)
        and print the ``done:`` line."""
        c, totals = self.counters, self.timer.totals
        replay_bytes = int(getattr(self.learner.memory, "nbytes", 0))
        timing = {**{k: round(v, 3) for k, v in totals.items()}, "wall": round(self.wall(), 3),
                  "env_steps": c["env_steps"], "updates": c["updates"], "episodes": c["episode"],
                  "replay_bytes": replay_bytes, "peak_rss_mb": peak_rss_mb()}
        (self.run_dir / "timing.json").write_text(json.dumps(timing, indent=2) + "\n")
        split = ", ".join(f"{k} {v:.1f}s" for k, v in totals.items())  # printed with or without --progress
        print(f"done: {c['episode']} episodes, {c['env_steps']} env steps, {c['updates']} updates in "
              f"{timing['wall']:.1f}s ({split}), replay {replay_bytes / 1e6:.1f} MB; results in {self.run_dir}")
        return self.run_dir


def drop_replay(run_dir: str | Path) -> int:
    """Drop the replay buffer from a finished run's checkpoint, as ``keep_replay`` off would have at its end:
    ``checkpoint.pt`` is rewritten atomically without it (weights, config, counters, timing and RNG states kept:
    ``pgm-marl evaluate`` reads the run as before), then its files in ``checkpoint_files/`` are deleted. Returns
    the bytes deleted (0 when it was dropped already). A run that has not finished is refused: resuming it needs
    its replay."""
    path = Path(run_dir) / "checkpoint.pt"
    keys = [k for k in CHECKPOINT_KEYS if k != "buffer"]
    kept = load_checkpoint(path, required=CHECKPOINT_KEYS, only=keys)  # (memory-mapped; no chunk file opened)
    if replay_dropped(peek_checkpoint(path, "buffer")):
        return 0
    done, episodes = kept["counters"].get("episode"), kept["config"].get("episodes")
    if not (isinstance(done, int) and isinstance(episodes, int) and done >= episodes):
        raise CheckpointError(f"{path} is not a finished run's (episode {done} of {episodes}): resuming it needs "
                              "its replay buffer; accepted: the checkpoint of a finished run")
    files = TensorFiles.beside(path)
    held = [p for p in files.folder.iterdir() if p.is_file()] if files.folder.is_dir() else []
    nbytes = sum(p.stat().st_size for p in held)
    save_checkpoint(path, {**kept, "buffer": dropped_replay(nbytes)}, files=files)  # then deletes every file
    if files.folder.is_dir() and not any(files.folder.iterdir()):
        files.folder.rmdir()
    return nbytes
