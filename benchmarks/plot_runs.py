"""Learning curves of several runs, grouped by label: mean ± std over seeds, and a table of final returns.

Each ``--group LABEL=PATTERN`` names run folders by glob pattern (one folder per seed, each with the
``metrics.csv`` that ``pgm-marl train`` writes: one row per evaluation with deterministic policies). Runs of
one group are aligned on the evaluation episodes they all have (so a shorter, still-running seed truncates
its group to its length); the plot shows the mean over seeds with a ± 1 std band, and the table gives per
group, over seeds, the return at the last common evaluation and the mean of the last ``--last`` common
evaluations (each as mean ± std over seeds).

``--x`` picks the horizontal axis, one panel each (repeatable): ``episode`` (default), ``env_steps`` (the
same for every seed at an evaluation) or ``wall_seconds`` (the run's training wall time at that evaluation,
resumed runs included; a group's curve is drawn at the mean over its seeds, so read it on the machine state the
runs were trained in).

Usage:
    python benchmarks/plot_runs.py --group "MA-SAC=runs/cn_masac_s*" --group "MADDPG=runs/cn_maddpg_s*" \\
        --team all --out docs/cn.png --baseline -25.76 --x env_steps --x wall_seconds
"""
import argparse
import csv
import glob
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pgm_marl.metrics import return_columns  # noqa: E402


AXES = {"episode": "training episode", "env_steps": "environment steps",
        "wall_seconds": "wall-clock seconds of training (mean over seeds)"}


def read_run(path: Path, team: str | None) -> tuple[str, dict[int, tuple[float, float, float]]]:
    """``(column, {episode: (return, env_steps, wall_seconds)})`` of one run's ``metrics.csv``; ``team=None``
    picks the only team (a missing env_steps or wall_seconds column reads as NaN)."""
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        columns = return_columns(reader.fieldnames or [])
        if team is None:
            if len(columns) != 1:
                raise SystemExit(f"{path}: several teams {list(columns)}; pick one with --team")
            column = next(iter(columns.values()))
        else:
            if team not in columns:
                raise SystemExit(f"{path}: no team {team!r}; teams are {list(columns)}")
            column = columns[team]
        data = {}
        for row in reader:
            try:
                data[int(float(row["episode"]))] = (float(row[column]), float(row.get("env_steps") or "nan"),
                                                    float(row.get("wall_seconds") or "nan"))
            except (TypeError, ValueError):  # a row being written right now
                continue
    return column, data


def find_runs(pattern: str) -> list[Path]:
    """metrics.csv files of the folders (or files) matching ``pattern``, sorted."""
    out = []
    for p in sorted(glob.glob(pattern)):
        p = Path(p)
        csv_path = p if p.name == "metrics.csv" else p / "metrics.csv"
        if csv_path.is_file():
            out.append(csv_path)
    return out


def load_group(label: str, pattern: str, team: str | None, last: int) -> dict | None:
    runs = []
    for path in find_runs(pattern):
        _, data = read_run(path, team)
        if data:
            runs.append((path.parent, data))
        else:
            print(f"warning: {path} has no evaluation rows yet; skipped", file=sys.stderr)
    if not runs:
        print(f"warning: group {label!r}: no run with metrics.csv matches {pattern!r}", file=sys.stderr)
        return None
    common = sorted(set.intersection(*(set(d) for _, d in runs)))
    if not common:
        print(f"warning: group {label!r}: its runs share no evaluation episode; skipped", file=sys.stderr)
        return None
    longest = max(max(d) for _, d in runs)
    if common[-1] < longest:
        print(f"note: group {label!r} truncated to episode {common[-1]} (common to all {len(runs)} runs; "
              f"the longest reaches {longest})", file=sys.stderr)
    table = np.array([[d[e] for e in common] for _, d in runs])  # [seeds, evaluations, (return, steps, wall)]
    values = table[..., 0]
    tail = values[:, -last:].mean(1)
    x = {"episode": np.array(common, dtype=float), "env_steps": table[..., 1].mean(0),
         "wall_seconds": table[..., 2].mean(0)}
    return {"label": label, "runs": [str(r) for r, _ in runs], "episodes": np.array(common), "values": values,
            "x": x,
            "final": values[:, -1], "tail": tail, "tail_len": min(last, len(common))}


def mean_std(x) -> str:
    x = list(map(float, x))
    if len(x) == 1:
        return f"{x[0]:.2f} (1 seed)"
    return f"{statistics.fmean(x):.2f} ± {statistics.stdev(x):.2f}"


#: above this many groups the legend leaves the panels and goes below them, once for the figure
LEGEND_INSIDE = 6


def group_styles(count: int) -> list[dict]:
    """A distinct (colour, line style) per group: matplotlib's default colours except grey (nine), solid, then the
    same nine dashed, dotted and dash-dotted; grey stays the baseline's. More than 36 groups is an error."""
    colours = [f"C{k}" for k in range(10) if k != 7]  # C7 is grey, the baseline's colour
    dashes = ("-", "--", ":", "-.")
    if count > len(colours) * len(dashes):
        raise SystemExit(f"{count} groups: at most {len(colours) * len(dashes)} can be told apart in one plot")
    return [{"color": colours[k % len(colours)], "linestyle": dashes[k // len(colours)]} for k in range(count)]


def plot(groups: list, out: Path, team: str | None, baseline: float | None, baseline_label: str,
         title: str | None, axes: tuple[str, ...] = ("episode",)) -> None:
    fig, panels = plt.subplots(1, len(axes), figsize=(7 * len(axes), 4.5), squeeze=False)
    styles = group_styles(len(groups))
    for ax, axis in zip(panels[0], axes):
        for g, style in zip(groups, styles):
            mean, std = g["values"].mean(0), g["values"].std(0)
            x = g["x"][axis]
            if np.isnan(x).any():
                raise SystemExit(f"group {g['label']!r}: a run's metrics.csv has no {axis} column")
            ax.plot(x, mean, label=f"{g['label']} ({len(g['runs'])} seed{'s' * (len(g['runs']) > 1)})", **style)
            if len(g["runs"]) > 1:
                ax.fill_between(x, mean - std, mean + std, color=style["color"], alpha=0.2)
        if baseline is not None:
            ax.axhline(baseline, color="gray", linestyle="--", linewidth=1, label=baseline_label)
        ax.set_xlabel(AXES[axis])
        ax.set_ylabel(f"evaluation return{f' ({team})' if team else ''}, mean ± std over seeds")
        ax.grid(alpha=0.3)
        if len(groups) <= LEGEND_INSIDE:
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if len(groups) > LEGEND_INSIDE:  # one legend under the panels, where it hides no curve
        handles, labels = panels[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(3, len(labels)),
                   frameon=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--group", action="append", required=True, metavar="LABEL=PATTERN",
                   help="a curve: label and glob pattern of its run folders (repeatable)")
    p.add_argument("--team", default=None, help="team column return/<team> (default: the only one)")
    p.add_argument("--out", default=None, help="PNG to write (default: no plot, table only)")
    p.add_argument("--baseline", type=float, default=None,
                   help="draw a horizontal line here, e.g. the random policy's return from random_baseline.py")
    p.add_argument("--baseline-label", default="uniform random policy")
    p.add_argument("--title", default=None)
    p.add_argument("--last", type=int, default=10, help="evaluations averaged in the 'last N' column")
    p.add_argument("--x", action="append", choices=sorted(AXES), default=None,
                   help="horizontal axis, one panel each (repeatable; default: episode)")
    args = p.parse_args()
    groups = []
    for spec in args.group:
        label, sep, pattern = spec.partition("=")
        if not sep or not label or not pattern:
            raise SystemExit(f"--group {spec!r}: expected LABEL=PATTERN, e.g. 'MA-SAC=runs/cn_masac_s*'")
        g = load_group(label, pattern, args.team, args.last)
        if g is not None:
            groups.append(g)
    if not groups:
        raise SystemExit("no runs found")
    if args.out:
        plot(groups, Path(args.out), args.team, args.baseline, args.baseline_label, args.title,
             tuple(args.x or ["episode"]))
        print(f"wrote {args.out}\n")
    print(f"| group | seeds | episode | final return | mean of last {args.last} evaluations | wall s (mean) |")
    print("|---|---:|---:|---:|---:|---:|")
    for g in groups:
        print(f"| {g['label']} | {len(g['runs'])} | {int(g['episodes'][-1])} | {mean_std(g['final'])} "
              f"| {mean_std(g['tail'])} | {g['x']['wall_seconds'][-1]:.0f} |")
    print(f"\nmean ± std over seeds of the deterministic-policy evaluation return"
          f"{f' of team {args.team}' if args.team else ''}; runs aligned on the episodes common to a group")
    if args.baseline is not None:
        print(f"{args.baseline_label}: {args.baseline:.2f}")


if __name__ == "__main__":
    main()
