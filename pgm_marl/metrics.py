"""Run logging: ``metrics.csv`` (one row per evaluation), learning-curve PNG, optional TensorBoard."""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional, Sequence

from .errors import UserError


#: Mean evaluation return of uniformly random policies per task and team, with the library's team return
#: (sum over steps of the team-mean reward), 25-step episodes, default env settings, 100 episodes on env seeds
#: 10000-10099 (the evaluation episodes of a seed-0 run), on mpe2 itself. Measured with
#: ``python benchmarks/random_baseline.py --backend pettingzoo``.
RANDOM_BASELINES: Dict[str, Dict[str, float]] = {
    "cooperative_navigation": {"all": -25.76},
    "cooperative_communication": {"all": -40.16},
    "predator_prey": {"predators": 4.80, "prey": -17.80},
    "physical_deception": {"good": 7.97, "adversary": -28.05},
}


#: The same with ``continuous_actions=True`` (uniform in each agent's Box; ``random_baseline.py --continuous``).
RANDOM_BASELINES_CONTINUOUS: Dict[str, Dict[str, float]] = {
    "cooperative_navigation": {"all": -25.17},
    "cooperative_communication": {"all": -39.60},
    "predator_prey": {"predators": 3.70, "prey": -12.31},
    "physical_deception": {"good": 7.81, "adversary": -27.14},
}


def random_baseline(cfg) -> Optional[Dict[str, float]]:
    """Team -> uniform-random return for a run's task, or None where the tables do not apply (other task,
    episode length, env arguments other than ``continuous_actions``, or teams)."""
    if cfg.max_cycles != 25 or cfg.teams:
        return None
    options = cfg.env_options() if cfg.env_kwargs else {}
    if not options:
        return RANDOM_BASELINES.get(cfg.task)
    if options == {"continuous_actions": True}:
        return RANDOM_BASELINES_CONTINUOUS.get(cfg.task)
    return None


#: ``metrics.csv`` names each team's evaluation return ``return/<team>``
RETURN_PREFIX = "return/"


def return_column(team: str) -> str:
    """The ``metrics.csv`` column (and TensorBoard tag) of a team's evaluation return: ``return/<team>``."""
    return RETURN_PREFIX + team


def return_columns(columns: Iterable[str]) -> Dict[str, str]:
    """``{team: column}`` for the ``return/<team>`` columns among ``columns`` (a header, or a row's keys), in
    order: the one reader of that naming (run folders, the sweep's table, reports, the plotting scripts)."""
    return {c[len(RETURN_PREFIX):]: c for c in columns if c.startswith(RETURN_PREFIX)}


def metric_columns(teams: Sequence[str]) -> list:
    return ["episode", "env_steps", "wall_seconds"] + [return_column(t) for t in teams]


class MetricsLogger:
    """Appends evaluation rows to ``run_dir/metrics.csv`` (flushed per row) and mirrors them to TensorBoard.

    With ``resume=True`` the rows written after the checkpoint (``episode > resume_episode``)
    are dropped, so an interrupted and resumed run has the same rows as an uninterrupted one.
    """

    def __init__(self, run_dir: str | Path, teams: Sequence[str], resume: bool = False,
                 resume_episode: int = 0, tensorboard: bool = False):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "metrics.csv"
        self.columns = metric_columns(teams)
        self.teams = list(teams)
        kept = []
        if resume and self.path.exists():
            with self.path.open(newline="") as f:
                reader = csv.DictReader(f)
                if reader.fieldnames != self.columns:
                    raise UserError(f"{self.path} has columns {reader.fieldnames}, expected {self.columns}; "
                                    "accepted: the metrics.csv this run wrote")
                kept = [row for row in reader if int(row["episode"]) <= resume_episode]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")  # rewrite atomically: no row is lost on a crash
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(kept)
        os.replace(tmp, self.path)
        self._file = self.path.open("a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=self.columns)
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"), purge_step=resume_episode + 1
                                        if resume else None)
            except Exception:  # tensorboard not installed: skip silently
                self.tb = None

    def log_eval(self, episode: int, env_steps: int, wall_seconds: float, returns: Mapping[str, float]) -> None:
        row = {"episode": episode, "env_steps": env_steps, "wall_seconds": f"{wall_seconds:.3f}"}
        row.update({return_column(t): repr(float(returns[t])) for t in self.teams})
        self._writer.writerow(row)
        self._file.flush()
        if self.tb is not None:
            for t in self.teams:
                self.tb.add_scalar(return_column(t), float(returns[t]), episode)

    def log_train(self, episode: int, diagnostics: Mapping[str, float]) -> None:
        """Learner diagnostics (``loss/critic``, ``alpha/<agent>`` ...) to TensorBoard only."""
        if self.tb is not None:
            for k, v in diagnostics.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(k, v, episode)

    def close(self) -> None:
        self._file.close()
        if self.tb is not None:
            self.tb.close()


def read_metrics(csv_path: str | Path) -> Dict[str, list]:
    """Columns of a metrics file as lists of floats."""
    with Path(csv_path).open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: [float(r[k]) for r in rows] for k in rows[0]}


def plot_learning_curve(csv_path: str | Path, png_path: str | Path, title: Optional[str] = None,
                        baseline: Optional[Mapping[str, float]] = None) -> None:
    """One line per team (evaluation return vs training episode); ``baseline``: team -> return of uniformly
    random policies (:func:`random_baseline`), drawn as a labelled dashed horizontal line in the team's colour."""
    import matplotlib  # here, not at the top: reading metrics (the CLI, the sweep, reports) needs no matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = read_metrics(csv_path)
    fig, ax = plt.subplots(figsize=(6, 4))
    for team, key in return_columns(data).items():
        line, = ax.plot(data["episode"], data[key], marker="o" if len(data[key]) < 30 else None, label=team)
        if baseline and team in baseline:
            label = "uniform random" + (f" ({team})" if len(baseline) > 1 else "")
            ax.axhline(baseline[team], color=line.get_color(), linestyle="--", linewidth=1, alpha=0.7, label=label)
    ax.set_xlabel("training episode")
    ax.set_ylabel("evaluation return (deterministic policy)")
    if title:
        ax.set_title(title)
    if data:
        ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
