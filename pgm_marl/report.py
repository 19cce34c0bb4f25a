"""``pgm-marl report SWEEP_DIR``: final returns per task and algorithm with the statistics of Agarwal et al. (2021).

Every folder below ``SWEEP_DIR`` with ``config.json`` and ``metrics.csv`` is a run (a ``pgm-marl sweep`` folder,
or any folder of ``pgm-marl train`` runs). Runs are grouped by task, algorithm spec and every other config field
that differs between runs (seeds, and bookkeeping such as ``out`` or ``threads``, do not group). A run's score
for a team is its final return: the deterministic-policy evaluation return at its last evaluation, or the mean
of its last ``--last K`` evaluations. Per group and team the report gives mean ± std over seeds and the
interquartile mean (IQM) with a 95% stratified-bootstrap confidence interval; for each pair of groups that
differ only in one team's algorithm (``--compare masac:maddpg``) it gives the probability of improvement
P(A > B) with its 95% CI. In a competitive task "A beats B" compares the same team's return when that team
plays A and when it plays B, either against the same opponents or with the opponents playing the other
algorithm (Figure 2c-d). IQM, bootstrap CIs and P(A > B) are rliable's (``rliable.library``,
``rliable.metrics``): the reviewed implementation of Agarwal et al., not re-derived here.

Outputs: ``report.md`` (the printed tables), ``report.json`` (the numbers), ``report_curves.png`` (IQM learning
curves with 95% bootstrap bands, one panel per task and team), and with ``--marl-eval PATH`` the raw results in
marl-eval's JSON format.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .config import TrainConfig
from .errors import ConfigError, MissingFileError, one_line
from .metrics import return_columns

#: config fields that never define a group: the seed, and fields that do not change what is learned
NOT_GROUPING = ("seed", "out", "progress", "tensorboard", "threads", "checkpoint_every", "keep_replay")
#: the four MPE tasks of the paper (marl-eval's environment name for them is "mpe")
MPE_TASKS = ("cooperative_navigation", "cooperative_communication", "predator_prey", "physical_deception")


@dataclass
class Run:
    """One run folder: its config, evaluation episodes, env steps and per-team returns (one per evaluation)."""

    path: Path
    config: dict
    episodes: np.ndarray
    env_steps: np.ndarray
    returns: Dict[str, np.ndarray]
    finished: bool

    def score(self, team: str, last: int) -> float:
        """Final return: mean of the last ``last`` evaluations (``last=1``: the last evaluation)."""
        return float(np.mean(self.returns[team][-last:]))


@dataclass
class Group:
    """Runs of one task and setting (algo spec + other varying fields), sorted by seed."""

    task: str
    algo: str
    extra: Tuple[Tuple[str, object], ...]
    runs: List[Run] = field(default_factory=list)

    @property
    def label(self) -> str:
        return ", ".join([self.algo] + [f"{k}={v}" for k, v in self.extra])

    @property
    def teams(self) -> List[str]:
        return list(self.runs[0].returns)


# ---------------------------------------------------------------- reading runs

def read_run(run_dir: Path) -> Optional[Run]:
    """The run in ``run_dir``, or None when it has no complete evaluation row yet."""
    config = json.loads((run_dir / "config.json").read_text())
    if not isinstance(config, dict):
        raise ValueError("config.json does not hold a JSON object")
    config = TrainConfig.with_defaults(config)  # fields added since the run: as the run had them
    rows = []
    with (run_dir / "metrics.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            try:
                rows.append({k: float(v) for k, v in row.items()})
            except (TypeError, ValueError):  # a row being written right now
                continue
    if not rows:
        return None
    teams = return_columns(rows[0])
    try:
        done = json.loads((run_dir / "timing.json").read_text()).get("episodes", -1) >= config.get("episodes", 0)
    except (OSError, ValueError):
        done = False
    return Run(run_dir, config, np.array([r["episode"] for r in rows], dtype=int),
               np.array([r["env_steps"] for r in rows], dtype=int),
               {t: np.array([r[column] for r in rows]) for t, column in teams.items()}, done)


def _metrics_files(sweep_dir: Path) -> List[Path]:
    """``metrics.csv`` files below ``sweep_dir``, following symbolic links (a comparison folder may link runs of
    several sweeps), each real folder once."""
    seen, out = set(), []
    for root, dirs, files in os.walk(sweep_dir, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a link back up the tree, or a second link to the same folder
            dirs[:] = []
            continue
        seen.add(real)
        if "metrics.csv" in files:
            out.append(Path(root) / "metrics.csv")
    return sorted(out)


def find_runs(sweep_dir: Path) -> List[Run]:
    """Every run below ``sweep_dir`` (folders with config.json and metrics.csv; symbolic links are followed),
    sorted by path."""
    if not sweep_dir.is_dir():
        raise MissingFileError(f"no sweep folder at {sweep_dir}; accepted: a folder holding run folders")
    runs = []
    for path in _metrics_files(sweep_dir):
        if not (path.parent / "config.json").exists():
            continue
        try:
            run = read_run(path.parent)
        except (OSError, ValueError, KeyError) as err:  # a config.json being written, a foreign metrics.csv
            print(f"warning: {path.parent} skipped: {one_line(err, typed=True)}", file=sys.stderr)
            continue
        if run is not None:
            runs.append(run)
    return runs


def varying_fields(runs: Sequence[Run]) -> List[str]:
    """Config fields (beyond task, algo and NOT_GROUPING) whose value differs between ``runs``."""
    keys = sorted({k for r in runs for k in r.config} - set(NOT_GROUPING) - {"task", "algo"})
    return [k for k in keys if len({json.dumps(r.config.get(k)) for r in runs}) > 1]


def group_runs(runs: Sequence[Run]) -> List[Group]:
    """Group by task, algo and every other config field that differs between the task's runs."""
    varying = {task: varying_fields([r for r in runs if r.config["task"] == task])
               for task in {r.config["task"] for r in runs}}
    groups: Dict[tuple, Group] = {}
    for r in runs:
        extra = tuple((k, r.config.get(k)) for k in varying[r.config["task"]])
        key = (r.config["task"], r.config["algo"], extra)
        groups.setdefault(key, Group(*key)).runs.append(r)
    for g in groups.values():
        g.runs.sort(key=lambda r: (r.config.get("seed", 0), str(r.path)))
    return sorted(groups.values(), key=lambda g: (g.task, g.extra != (), str(g.extra), g.algo))


def team_algos(spec: str, teams: Sequence[str]) -> Dict[str, str]:
    """``"masac"`` -> every team masac; ``"predators=masac,prey=maddpg"`` -> per team."""
    if "=" not in spec:
        return {t: spec.strip() for t in teams}
    pairs = (part.partition("=") for part in spec.split(","))
    return {team.strip(): algo.strip() for team, _, algo in pairs}


# ---------------------------------------------------------------- statistics (rliable)

@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """rliable's bootstrap draws from NumPy's global RNG: seed it for reproducible CIs, then restore it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def iqm_ci(scores: np.ndarray, reps: int, seed: int = 0) -> Tuple[float, float, float]:
    """IQM of ``scores`` [runs] and its 95% stratified-bootstrap CI (one task: a bootstrap over runs)."""
    from rliable import library as rly, metrics

    with seeded(seed):
        point, ci = rly.get_interval_estimates({"x": scores[:, None]}, lambda s: np.array([metrics.aggregate_iqm(s)]),
                                               reps=reps)
    return float(point["x"][0]), float(ci["x"][0, 0]), float(ci["x"][1, 0])


def improvement_ci(x: np.ndarray, y: np.ndarray, reps: int, seed: int = 0) -> Tuple[float, float, float]:
    """P(X > Y) (Mann-Whitney, ties 1/2) averaged over tasks, for ``x`` [runs_x, tasks] and ``y`` [runs_y, tasks],
    with its 95% stratified-bootstrap CI (runs resampled within each task, independently for X and Y)."""
    from rliable import library as rly, metrics

    with seeded(seed):
        point, ci = rly.get_interval_estimates(
            {"p": [x, y]}, lambda a, b: np.array([metrics.probability_of_improvement(a, b)]), reps=reps)
    return float(point["p"][0]), float(ci["p"][0, 0]), float(ci["p"][1, 0])


def curve_ci(values: np.ndarray, reps: int, seed: int = 0) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IQM over runs at each evaluation of ``values`` [runs, evals], with pointwise 95% bootstrap bands."""
    import scipy.stats
    from rliable import library as rly

    with seeded(seed):
        point, ci = rly.get_interval_estimates(
            {"c": values[:, None, :]}, lambda s: scipy.stats.trim_mean(s[:, 0, :], 0.25, axis=0), reps=reps)
    return point["c"], ci["c"][0], ci["c"][1]


def group_stats(g: Group, last: int, reps: int) -> List[dict]:
    """Per team: seeds, mean, std (ddof 1), IQM and its CI of the runs' final returns."""
    out = []
    for team in g.teams:
        s = np.array([r.score(team, last) for r in g.runs])
        iqm, lo, hi = iqm_ci(s, reps)
        out.append({"task": g.task, "setting": g.label, "algo": g.algo, "extra": dict(g.extra), "team": team,
                    "seeds": [r.config.get("seed") for r in g.runs], "scores": s.tolist(), "mean": float(s.mean()),
                    "std": float(s.std(ddof=1)) if len(s) > 1 else math.nan, "iqm": iqm, "iqm_ci": [lo, hi]})
    return out


def comparisons(groups: Sequence[Group], a: str, b: str) -> List[Tuple[Group, Group, str, str]]:
    """``(group_a, group_b, team, kind)`` where ``team`` plays ``a`` in group_a and ``b`` in group_b, the rest
    being equal; ``kind`` is "same opponents" (others' algorithms equal), "mirrored" (others play b then a) or
    "" (a single-team task)."""
    out = []
    for ga in groups:
        for gb in groups:
            if ga.task != gb.task or ga.extra != gb.extra or ga is gb:
                continue
            for team in ga.teams:
                if team not in gb.teams:
                    continue
                xa, xb = team_algos(ga.algo, ga.teams), team_algos(gb.algo, gb.teams)
                if xa.get(team) != a or xb.get(team) != b:
                    continue
                others = [t for t in ga.teams if t != team]
                if not others:
                    out.append((ga, gb, team, ""))
                elif all(xa.get(t) == xb.get(t) for t in others):
                    out.append((ga, gb, team, "same opponents"))
                elif all(xa.get(t) == b and xb.get(t) == a for t in others):
                    out.append((ga, gb, team, "mirrored"))
    return sorted(out, key=lambda c: (c[0].task, c[2], c[3], c[0].label))


def setting_comparisons(groups: Sequence[Group], name: str, a: str, b: str) -> List[Tuple[Group, Group, str, str]]:
    """``(group_a, group_b, team, "")`` for groups of one task and algorithm spec whose setting ``name`` (a config
    field that varies, e.g. ``critic``) is ``a`` in group_a and ``b`` in group_b, every other setting equal."""
    out = []
    for ga in groups:
        for gb in groups:
            sa, sb = dict(ga.extra), dict(gb.extra)
            if ga.task != gb.task or ga.algo != gb.algo or name not in sa or name not in sb:
                continue
            if str(sa.pop(name)) != a or str(sb.pop(name)) != b or sa != sb:
                continue
            out.extend((ga, gb, team, "") for team in ga.teams if team in gb.teams)
    return sorted(out, key=lambda c: (c[0].task, c[2], c[0].label))


def why_unpaired(groups: Sequence[Group], pair: str) -> str:
    """Why ``pair`` (``"A:B"`` or ``"FIELD=A:B"``) pairs no two groups: a side no group has, or the other
    settings in which every group of A differs from every group of B."""
    a, b = pair.split(":")
    name, _, a = a.rpartition("=")

    def has(g: Group, value: str) -> bool:
        if name:
            return str(dict(g.extra).get(name, object())) == value
        return value in team_algos(g.algo, g.teams).values()

    what = f"{name}=" if name else "algorithm "
    for value in (a, b):
        if not any(has(g, value) for g in groups):
            if name:
                present = sorted({str(dict(g.extra)[name]) for g in groups if name in dict(g.extra)})
                if not present:
                    varying = sorted({k for g in groups for k, _ in g.extra})
                    return (f"{name} does not vary between these runs; settings that do: "
                            f"{', '.join(varying) or 'none'}")
            else:
                present = sorted({x for g in groups for x in team_algos(g.algo, g.teams).values()})
            return f"no group has {what}{value}; present: {', '.join(present)}"
    differ = {}
    for ga in (g for g in groups if has(g, a)):
        for gb in (g for g in groups if has(g, b)):
            sa, sb = {"task": ga.task, **dict(ga.extra)}, {"task": gb.task, **dict(gb.extra)}
            if name:
                sa["algo"], sb["algo"] = ga.algo, gb.algo
            for k in sorted(set(sa) | set(sb)):
                if k != name and sa.get(k) != sb.get(k):
                    differ.setdefault(k, set()).add(f"{sa.get(k)} vs {sb.get(k)}")
    return (f"every group with {what}{a} differs from every group with {what}{b} in another setting too: "
            + "; ".join(f"{k} ({', '.join(sorted(v))})" for k, v in differ.items()))


def comparison_stats(groups: Sequence[Group], pairs: Sequence[str], last: int, reps: int,
                     unpaired: Optional[list] = None) -> Tuple[list, list]:
    """P(A > B) per comparison, and over all comparisons of each pair (stratified by task and team). A pair
    ``"A:B"`` compares algorithms; ``"FIELD=A:B"`` compares two values of another setting (``critic=mlp:attention``).
    ``unpaired``: a list that receives ``{"pair", "reason"}`` for each pair that finds no comparison."""
    rows, overall = [], []
    for pair in pairs:
        a, b = pair.split(":")
        name, _, a = a.rpartition("=")
        found = setting_comparisons(groups, name, a, b) if name else comparisons(groups, a, b)
        if not found and unpaired is not None:
            unpaired.append({"pair": pair, "reason": why_unpaired(groups, pair)})
        xs, ys = [], []
        for ga, gb, team, kind in found:
            x = np.array([r.score(team, last) for r in ga.runs])
            y = np.array([r.score(team, last) for r in gb.runs])
            p, lo, hi = improvement_ci(x[:, None], y[:, None], reps)
            rows.append({"task": ga.task, "team": team, "a": a, "b": b, "kind": kind, "setting_a": ga.label,
                         "setting_b": gb.label, "n_a": len(x), "n_b": len(y), "p": p, "ci": [lo, hi]})
            xs.append(x)
            ys.append(y)
        if len(found) > 1 and len({len(x) for x in xs}) == 1 and len({len(y) for y in ys}) == 1:
            p, lo, hi = improvement_ci(np.stack(xs, 1), np.stack(ys, 1), reps)
            overall.append({"a": a, "b": b, "strata": len(found), "p": p, "ci": [lo, hi]})
        elif len(found) > 1:
            overall.append({"a": a, "b": b, "strata": len(found), "p": None, "ci": None,
                            "note": "seed counts differ between comparisons: no aggregate"})
    return rows, overall


# ---------------------------------------------------------------- outputs

def aligned(g: Group, team: str) -> Tuple[np.ndarray, np.ndarray]:
    """``(episodes, values [runs, evals])`` on the evaluation episodes common to the group's runs."""
    common = sorted(set.intersection(*(set(r.episodes.tolist()) for r in g.runs)))
    values = np.array([[dict(zip(r.episodes.tolist(), r.returns[team]))[e] for e in common] for r in g.runs])
    return np.array(common), values


def plot_curves(groups: Sequence[Group], path: Path, reps: int) -> None:
    """IQM learning curves with 95% bootstrap bands: one panel per task and team, one line per setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(g.task, t) for g in groups for t in g.teams})
    cols = min(len(panels), 2)
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 4.2 * rows), squeeze=False)
    for ax, (task, team) in zip(axes.flat, panels):
        for g in (g for g in groups if g.task == task and team in g.teams):
            episodes, values = aligned(g, team)
            if len(episodes) == 0:
                continue
            mid, lo, hi = curve_ci(values, reps)
            line, = ax.plot(episodes, mid, label=f"{g.label} ({len(g.runs)} seed{'s' * (len(g.runs) > 1)})")
            ax.fill_between(episodes, lo, hi, color=line.get_color(), alpha=0.2)
        ax.set_title(task if team == "all" else f"{task}: {team}")
        ax.set_xlabel("training episode")
        ax.set_ylabel("evaluation return (IQM, 95% CI)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def marl_eval_json(groups: Sequence[Group], last: int, env_name: str = "mpe") -> dict:
    """marl-eval's raw format: {env: {task: {algo: {run: {"step_i": {"step_count", "return"}, "absolute_metrics"}}}}}.

    Task = our task, or ``task/team`` for a task with several teams (one "return" metric per marl-eval task);
    algo = the group's setting; run = ``seed_<seed>``; step_count = env steps at the evaluation; each "return"
    list holds one value (the mean over that evaluation's episodes: per-episode returns are not stored);
    ``absolute_metrics`` holds the final return (mean of the last ``last`` evaluations), not marl-eval's
    10x-episodes re-evaluation of the best policy.
    """
    out: Dict[str, dict] = {}
    for g in groups:
        env = env_name if g.task in MPE_TASKS else g.task.split(".")[0]
        for team in g.teams:
            task = g.task if len(g.teams) == 1 else f"{g.task}/{team}"
            algo = out.setdefault(env, {}).setdefault(task, {}).setdefault(g.label, {})
            for r in g.runs:
                name = f"seed_{r.config.get('seed')}"
                while name in algo:
                    name += "_"
                steps = {f"step_{i}": {"step_count": int(s), "return": [float(v)]}
                         for i, (s, v) in enumerate(zip(r.env_steps, r.returns[team]))}
                algo[name] = {**steps, "absolute_metrics": {"return": [r.score(team, last)]}}
    return out


def _no_nan(obj):
    """``obj`` with NaN floats as None (JSON has no NaN) and paths as strings."""
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_no_nan(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return str(obj) if isinstance(obj, Path) else obj


def _fmt(x: Optional[float]) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def markdown(stats: list, rows: list, overall: list, last: int, reps: int, skipped: List[str],
             unpaired: Sequence[dict] = ()) -> str:
    """The report's tables and footer."""
    which = "last evaluation" if last == 1 else f"mean of the last {last} evaluations"
    out = [f"## Final returns ({which}, deterministic policies)", "",
           "| task | setting | team | seeds | mean ± std | IQM [95% CI] |", "|---|---|---|---:|---:|---:|"]
    for s in stats:
        out.append(f"| {s['task']} | {s['setting']} | {s['team']} | {len(s['scores'])} | {_fmt(s['mean'])} ± "
                   f"{_fmt(s['std'])} | {_fmt(s['iqm'])} [{_fmt(s['iqm_ci'][0])}, {_fmt(s['iqm_ci'][1])}] |")
    if rows:
        out += ["", "## Probability of improvement", "",
                "| task | team | comparison | seeds | P(A > B) [95% CI] |", "|---|---|---|---:|---:|"]
        for c in rows:
            kind = f" ({c['kind']})" if c["kind"] else ""
            out.append(f"| {c['task']} | {c['team']} | {c['setting_a']} vs {c['setting_b']}{kind} | "
                       f"{c['n_a']} / {c['n_b']} | {c['p']:.2f} [{c['ci'][0]:.2f}, {c['ci'][1]:.2f}] |")
        for o in overall:
            value = o.get("note") or f"{o['p']:.2f} [{o['ci'][0]:.2f}, {o['ci'][1]:.2f}]"
            out.append(f"| all ({o['strata']} comparisons) | | {o['a']} vs {o['b']} | | {value} |")
    for u in unpaired:
        out += ["", f"No comparison for --compare {u['pair']}: {u['reason']}."]
    n = sorted({len(s["scores"]) for s in stats})
    out += ["", f"Scores: each run's {which} return (team mean reward summed over an episode). IQM: mean of the "
            "middle 50% of runs (scipy's 25%-trimmed mean, as rliable; with 3 runs or fewer it is the mean). "
            f"CIs: 95% percentile stratified bootstrap over runs ({reps} resamples, rliable). P(A > B): probability "
            "that a run of A scores higher than a run of B on the same task and team (Mann-Whitney, ties count "
            "1/2); 'mirrored': the opponents play B against A's team and A against B's team (Figure 2c-d). "
            f"Seeds per group: {', '.join(map(str, n))}. With few seeds these CIs are wide and "
            "coarse (from 3 vs 3 runs P(A > B) moves in steps of 1/9): read them as what the data cannot "
            "exclude, not as significance tests."]
    if skipped:
        out += ["", f"Not finished, left out ({len(skipped)}; --include-unfinished to use their last evaluations): "
                + ", ".join(skipped)]
    return "\n".join(out)


def build_report(sweep_dir: Path, last: int = 1, pairs: Sequence[str] = ("masac:maddpg",), reps: int = 2000,
                 include_unfinished: bool = False, explain: bool = True) -> Tuple[str, dict, List[Group]]:
    """``(markdown, numbers, groups)`` of the runs below ``sweep_dir``. ``explain``: say why a pair of ``pairs``
    found no comparison (off for the command line's default pair, which most sweeps of one algorithm lack)."""
    runs = find_runs(sweep_dir)
    skipped = [str(r.path.relative_to(sweep_dir)) for r in runs if not r.finished and not include_unfinished]
    runs = [r for r in runs if r.finished or include_unfinished]
    if not runs:
        raise MissingFileError(f"no finished run below {sweep_dir} (folders with config.json, metrics.csv and "
                                "timing.json); --include-unfinished to report runs still training")
    groups = group_runs(runs)
    stats = [s for g in groups for s in group_stats(g, last, reps)]
    unpaired = [] if explain else None
    rows, overall = comparison_stats(groups, pairs, last, reps, unpaired)
    numbers = {"sweep_dir": str(sweep_dir), "score": {"last_evaluations": last}, "reps": reps, "groups": stats,
               "comparisons": rows, "overall": overall, "unfinished_left_out": skipped}
    if unpaired:
        numbers["unpaired"] = unpaired
    return markdown(stats, rows, overall, last, reps, skipped, unpaired or ()), numbers, groups


# ---------------------------------------------------------------- command line

def _pair(text: str) -> str:
    a, sep, b = text.partition(":")
    if not sep or not a or not b or ":" in b:
        raise argparse.ArgumentTypeError(f"bad --compare {text!r}; accepted: 'A:B' (algorithms, e.g. 'masac:maddpg') "
                                         "or 'FIELD=A:B' (another setting, e.g. 'critic=mlp:attention')")
    return text


def add_report_parser(sub) -> argparse.ArgumentParser:
    rp = sub.add_parser("report", help="statistics and curves of a sweep's runs (IQM, bootstrap CIs, P(A > B))",
                        description=__doc__.split("\n\n")[1])
    rp.add_argument("sweep_dir", metavar="SWEEP_DIR", help="folder holding run folders (searched recursively)")
    rp.add_argument("--last", type=int, default=1, help="score = mean of the last K evaluations (default: 1, the "
                    "final evaluation)")
    rp.add_argument("--compare", action="append", type=_pair, default=None, metavar="A:B",
                    help="report P(A > B) for these algorithms, or FIELD=A:B for two values of another setting, e.g. "
                    "critic=mlp:attention (repeatable; default: masac:maddpg)")
    rp.add_argument("--reps", type=int, default=2000, help="bootstrap resamples (default: 2000)")
    rp.add_argument("--include-unfinished", action="store_true", help="also use runs still training")
    rp.add_argument("--marl-eval", default=None, metavar="PATH", help="also write marl-eval's raw JSON here")
    rp.add_argument("--no-figure", dest="figure", action="store_false", help="skip report_curves.png")
    return rp


def cmd_report(args: argparse.Namespace) -> None:
    """Print the tables; write report.md, report.json, report_curves.png and the marl-eval export."""
    for name in ("last", "reps"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name} must be a positive int, got {getattr(args, name)}")
    sweep_dir = Path(args.sweep_dir)
    text, numbers, groups = build_report(sweep_dir, args.last, args.compare or ["masac:maddpg"], args.reps,
                                         args.include_unfinished, explain=args.compare is not None)
    print(text)
    (sweep_dir / "report.md").write_text(text + "\n")
    (sweep_dir / "report.json").write_text(json.dumps(_no_nan(numbers), indent=2, allow_nan=False) + "\n")
    written = ["report.md", "report.json"]
    if args.figure:
        plot_curves(groups, sweep_dir / "report_curves.png", args.reps)
        written.append("report_curves.png")
    if args.marl_eval:
        Path(args.marl_eval).write_text(json.dumps(marl_eval_json(groups, args.last), indent=1) + "\n")
        written.append(args.marl_eval)
    print(f"\nwrote {', '.join(written)} in {sweep_dir}" if not args.marl_eval else
          f"\nwrote {', '.join(written[:-1])} in {sweep_dir} and {args.marl_eval}")
