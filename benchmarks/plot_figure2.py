"""Figure 2 in the paper's style: evaluation return against training episode, mean +- std over seeds, one panel
per task (section 5.3: the most recent policy every 100 episodes, made deterministic, 100 episodes).

Panels: (a) cooperative navigation and (b) cooperative communication, MA-SAC vs MADDPG (team "all");
(c) predator-prey, the predators' return and (d) physical deception, the good agents' return, for every pairing
of team algorithms found (the paper shows the two cross-play pairings; the self-play controls are drawn dashed).
``--other-team`` draws the opposing team's return in (c)-(d) instead (prey, adversary).

Usage: python benchmarks/plot_figure2.py benchmarks/results/fig2 --out docs/figure2.png [--other-team]
"""
import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pgm_marl.metrics import RANDOM_BASELINES  # noqa: E402
from pgm_marl.report import aligned, find_runs, group_runs  # noqa: E402

PANELS = (("cooperative_navigation", "all", "all"), ("cooperative_communication", "all", "all"),
          ("predator_prey", "predators", "prey"), ("physical_deception", "good", "adversary"))


def short(algo: str) -> str:
    """``predators=masac,prey=maddpg`` -> ``predators MA-SAC / prey MADDPG``."""
    name = {"masac": "MA-SAC", "maddpg": "MADDPG"}
    parts = [p.partition("=") for p in algo.split(",")]
    if len(parts) == 1 and not parts[0][1]:
        return name.get(algo, algo)
    return " / ".join(f"{team} {name.get(a, a)}" for team, _, a in parts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep_dir", type=Path)
    p.add_argument("--out", type=Path, default=Path("docs/figure2.png"))
    p.add_argument("--other-team", action="store_true", help="plot prey / adversary returns in (c)-(d)")
    p.add_argument("--include-unfinished", action="store_true", help="also draw runs still training")
    args = p.parse_args()
    runs = [r for r in find_runs(args.sweep_dir) if r.finished or args.include_unfinished]
    groups = [g for g in group_runs(runs) if not g.extra]
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.2))
    for ax, (task, team, other), letter in zip(axes, PANELS, "abcd"):
        team = other if args.other_team else team
        for g in (g for g in groups if g.task == task):
            episodes, values = aligned(g, team)
            if len(episodes) == 0:
                continue
            algos = {part.partition("=")[2] for part in g.algo.split(",")} if "=" in g.algo else {g.algo}
            style = "--" if len(algos) == 1 and "=" in g.algo else "-"  # self-play controls dashed
            mean, std = values.mean(0), values.std(0)
            line, = ax.plot(episodes, mean, style, label=f"{short(g.algo)} ({len(g.runs)} seeds)")
            ax.fill_between(episodes, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        base = RANDOM_BASELINES.get(task, {}).get(team)
        if base is not None:
            ax.axhline(base, color="grey", linestyle=":", linewidth=1, label="uniform random")
        ax.set_title(f"({letter}) {task.replace('_', ' ')}" + ("" if team == "all" else f": {team}"))
        ax.set_xlabel("training episode")
        ax.set_ylabel("evaluation return (mean ± std over seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
