"""Cross-play of trained runs of a two-team task: every run's first team against every run's second team.

Self-play returns (what a run's ``metrics.csv`` holds) say how a pairing of two teams trained together ends, not
which team's training is better: a team's return rises as much when its opponents are weak. Cross-play pits
each run's first team (the *row* team, e.g. the predators) against each run's second team (the *column* team,
e.g. the prey), with the runs' evaluation protocol (deterministic policies, ``--episodes`` episodes, all env
copies seeded from ``--seed``, the same for every pairing: common random numbers). Groups of runs (``--group
LABEL=PATTERN``, one run folder per seed, as ``plot_runs.py``) are then compared against common opponents:

* the matrix of the row team's mean return, row group's teams against column group's teams (mean ± std over the
  run pairs; the diagonal cells include each run's self-play);
* per group, its row team's return against every column team of every group, and its column team's return
  against every row team (mean ± std over the opponents' runs: each of the group's runs averaged over all
  opponents first, so the std is over the group's seeds), and the probability of improvement of each group over
  each other in both roles (rliable, as ``pgm-marl report``).

Self-play of a run at its own evaluation seed and episodes (``cfg.seed + eval_seed_offset``, ``eval_episodes``)
reproduces the last row of its ``metrics.csv`` (the checkpoint holds the policies of the last evaluation): the
script checks it for every run before any pairing and stops if one differs.

Usage:
    R=benchmarks/results/many_agents/pp/noshare
    python benchmarks/crossplay.py --group "mlp=$R/*criticmlp__seed*" --group "local=$R/*criticlocal__seed*" \\
        --episodes 100 --out benchmarks/results/many_agents/pp/crossplay.json
"""
import argparse
import csv
import glob
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pgm_marl.evaluate import CrossPlay, evaluate, load_trained
from pgm_marl.metrics import return_columns
from pgm_marl.report import improvement_ci


def last_evaluation(run: Path, team: str) -> float:
    with (run / "metrics.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        column = return_columns(reader.fieldnames or [])[team]
        return float(list(reader)[-1][column])


def poss(team: str) -> str:
    """``predators'``, ``prey's``."""
    return team + ("'" if team.endswith("s") else "'s")


def mean_std(values):
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt(values) -> str:
    m, s = mean_std(values)
    return f"{m:.2f} ± {s:.2f}" if len(values) > 1 else f"{m:.2f}"


def plot(path, labels, groups, results, teams, episodes) -> None:
    """Two heat maps, one per team: its mean return, row group's row team against column group's column team."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(5.2 * 2, 4.4))
    for ax, team, cmap in zip(axes, teams, ("Reds", "Blues")):
        m = np.array([[statistics.mean(results[a, b][team] for a in groups[g] for b in groups[h]) for h in labels]
                      for g in labels])
        ax.imshow(m, cmap=cmap)
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(j, i, f"{m[i, j]:.1f}", ha="center", va="center",
                        color="white" if (m[i, j] - m.min()) > 0.6 * (m.max() - m.min() + 1e-9) else "black")
        ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel(f"{teams[1]} trained with")
        ax.set_ylabel(f"{teams[0]} trained with")
        ax.set_title(f"{poss(team)} return")
    fig.suptitle(f"cross-play, mean over run pairs, {episodes} episodes per pairing")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--group", action="append", required=True, metavar="LABEL=PATTERN",
                   help="a label and a glob of run folders (one per seed); repeat for each group")
    p.add_argument("--episodes", type=int, default=100, help="evaluation episodes per pairing (default: 100)")
    p.add_argument("--seed", type=int, default=10_000,
                   help="env seed of every pairing (default: 10000, the evaluation seed of seed-0 runs)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="JSON file for every pairing's returns and the tables")
    p.add_argument("--plot", default=None, help="PNG of the matrix: each team's return, row group against column "
                                                "group (two panels)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    groups: dict[str, list[Path]] = {}
    for spec_text in args.group:
        label, sep, pattern = spec_text.partition("=")
        runs = sorted(Path(r) for r in glob.glob(pattern) if (Path(r) / "checkpoint.pt").is_file())
        if not sep or not runs:
            sys.exit(f"--group {spec_text!r}: accepted: LABEL=PATTERN matching run folders with a checkpoint.pt")
        groups[label] = runs
    loaded = {run: load_trained(run) for runs in groups.values() for run in runs}
    first = next(iter(loaded.values()))
    cfg0, spec0 = first[0], first[1]
    for run, (cfg, spec, _, _) in loaded.items():
        if (cfg.task, cfg.env_options(), cfg.max_cycles, spec.agents) != (cfg0.task, cfg0.env_options(),
                                                                            cfg0.max_cycles, spec0.agents):
            sys.exit(f"{run}: another task or team layout than {next(iter(loaded))}; accepted: runs of one task")
    teams = list(spec0.teams)
    if len(teams) != 2:
        sys.exit(f"task {cfg0.task}: teams {teams}; accepted: a task of two teams")
    row_team, column_team = teams
    column_agents = set(spec0.team_indices(column_team))
    owner = [1 if j in column_agents else 0 for j in range(len(spec0.agents))]  # 0: the row run, 1: the column run
    print(f"{cfg0.task} {cfg0.env_kwargs or ''}: {row_team} (rows) against {column_team} (columns), "
          f"{args.episodes} episodes at seed {args.seed}; {len(loaded)} runs, {len(loaded) ** 2} pairings", flush=True)

    runs = list(loaded)
    for run in runs:  # self-play at the run's own evaluation seed = its metrics.csv's last evaluation
        cfg, _, policies, _ = loaded[run]
        own = evaluate(policies, spec0, cfg, cfg.eval_episodes, cfg.seed + cfg.eval_seed_offset)
        for team in teams:
            want = last_evaluation(run, team)
            if abs(want - own[team]) > 1e-3 * max(1.0, abs(want)):
                sys.exit(f"{run}: self-play {team} {own[team]:.4f} != its last evaluation {want:.4f}: the "
                         "checkpoint is not the run's final policy, or the evaluation differs")
    print(f"  check: each run's self-play at its own evaluation seed equals its last evaluation ({len(runs)} runs)")

    results = {}  # (row run, column run) -> {team: return}
    start = time.perf_counter()
    for k, a in enumerate(runs):
        for b in runs:
            pair = CrossPlay([loaded[a][2], loaded[b][2]], owner)
            results[a, b] = evaluate(pair, spec0, cfg0, args.episodes, args.seed)
        print(f"  {k + 1}/{len(runs)} row runs done ({time.perf_counter() - start:.0f} s)", flush=True)

    labels = list(groups)
    lines = [f"### {poss(row_team)} return, {row_team} of the row group against {column_team} of the column group",
             "", "| " + row_team + " \\ " + column_team + " | " + " | ".join(labels) + " |",
             "|---|" + "---:|" * len(labels)]
    for g in labels:
        cells = [fmt([results[a, b][row_team] for a in groups[g] for b in groups[h]]) for h in labels]
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    summary = {}
    lines += ["", "### Against common opponents (every run of every group)", "",
              f"| group | runs | {poss(row_team)} return vs all {column_team} | {poss(column_team)} return vs all "
              f"{row_team} |",
              "|---|---:|---:|---:|"]
    for g in labels:
        as_row = [statistics.mean(results[a, b][row_team] for b in runs) for a in groups[g]]
        as_column = [statistics.mean(results[a, b][column_team] for a in runs) for b in groups[g]]
        summary[g] = {"runs": [str(r) for r in groups[g]], f"{row_team}_vs_all": as_row,
                      f"{column_team}_vs_all": as_column}
        lines.append(f"| {g} | {len(groups[g])} | {fmt(as_row)} | {fmt(as_column)} |")
    lines += ["", "### Probability of improvement against common opponents", "",
              f"| A vs B | P(A's {row_team} > B's) [95% CI] | P(A's {column_team} > B's) [95% CI] |", "|---|---:|---:|"]
    for i, g in enumerate(labels):
        for h in labels[i + 1:]:
            cells = []
            for key in (f"{row_team}_vs_all", f"{column_team}_vs_all"):
                x, y = (np.array(summary[k][key])[:, None] for k in (g, h))
                point, low, high = improvement_ci(x, y, reps=2000)
                summary[g].setdefault("improvement", {})[f"{h}/{key}"] = [point, low, high]
                cells.append(f"{point:.2f} [{low:.2f}, {high:.2f}]")
            lines.append(f"| {g} vs {h} | " + " | ".join(cells) + " |")
    lines += ["", f"{poss(row_team)} and {poss(column_team)} mean episode return (team reward summed over an episode), "
              f"deterministic policies, {args.episodes} episodes per pairing at env seed {args.seed}; ± std over run "
              "pairs (matrix) or over the group's runs, each averaged over all opponents (common opponents). P(A > B): "
              "probability that a run of A scores higher than a run of B against the same opponents (Mann-Whitney, "
              "ties 1/2; 95% bootstrap CI over runs, rliable), from each run's mean over all opponents."]
    if args.plot:
        plot(args.plot, labels, groups, results, (row_team, column_team), args.episodes)
    text = "\n".join(lines)
    print(text)
    if args.out:
        out = {"task": cfg0.task, "env_kwargs": cfg0.env_kwargs, "episodes": args.episodes, "seed": args.seed,
               "row_team": row_team, "column_team": column_team, "groups": {g: [str(r) for r in rs]
                                                                            for g, rs in groups.items()},
               "pairings": [{"row": str(a), "column": str(b), **results[a, b]} for a, b in results],
               "summary": summary, "table": text}
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
