"""Section 5.4's temperature study: final return of MA-SAC on cooperative navigation against alpha.

Reads sweep folders of MA-SAC runs on cooperative navigation that differ in ``alpha`` (``benchmarks/figure2.sh``,
stage ``temperature``: alpha 0 with every agent resampled, i.e. MA-SAC's own zero-temperature limit, up to 0.26;
3 seeds each; a run without ``alpha`` used the paper's 0.02, e.g. Figure 2's) and, with ``--maddpg``, MADDPG runs
of the same task (alpha 0 with only agent i resampled) as a reference band.
Final return = mean of a run's last ``--last`` evaluations (default 10: episodes 14100-15000). Each point is
the IQM over seeds with its 95% stratified-bootstrap CI (rliable, through ``pgm_marl.report.iqm_ci``); with 3
seeds an IQM is the middle seed's value and the CI spans the seeds: read it as a range, not a test.

Usage: python benchmarks/plot_temperature.py benchmarks/results/temperature benchmarks/results/fig2 \
           --maddpg benchmarks/results/fig2 --seeds 0-2 --out docs/temperature.png
(``--seeds 0-2``: the study's three seeds; Figure 2's folder also holds seeds 3-4 of alpha 0.02 and MADDPG.)
Runs with another ``precision`` than float32 or with ``env_kwargs`` are left out.
"""
import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pgm_marl.report import find_runs, iqm_ci  # noqa: E402
from pgm_marl.sweep import parse_seeds  # noqa: E402

TASK = "cooperative_navigation"
PAPER_ALPHA = 0.02  # section 5.2's value for cooperative navigation (a run with alpha none used it)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep_dirs", type=Path, nargs="+")
    p.add_argument("--maddpg", type=Path, default=None, help="folder with MADDPG runs of the task (reference)")
    p.add_argument("--last", type=int, default=10)
    p.add_argument("--reps", type=int, default=2000)
    p.add_argument("--out", type=Path, default=Path("docs/temperature.png"))
    p.add_argument("--seeds", type=parse_seeds, default=None, help="only these seeds, e.g. 0-2 (default: all)")
    args = p.parse_args()

    def wanted(run, algo):
        return (run.finished and run.config["task"] == TASK and run.config["algo"] == algo
                and run.config.get("env_kwargs") is None and run.config["precision"] == "float32"
                and (args.seeds is None or run.config["seed"] in args.seeds))

    by_alpha = {}
    for run in (r for d in args.sweep_dirs for r in find_runs(d)):
        if wanted(run, "masac"):
            alpha = PAPER_ALPHA if run.config.get("alpha") is None else float(run.config["alpha"])
            by_alpha.setdefault(alpha, []).append(run.score("all", args.last))
    rows = []
    for alpha in sorted(by_alpha):
        s = np.array(by_alpha[alpha])
        iqm, lo, hi = iqm_ci(s, args.reps)
        rows.append({"alpha": alpha, "seeds": len(s), "scores": s.tolist(), "mean": float(s.mean()),
                     "std": float(s.std(ddof=1)) if len(s) > 1 else float("nan"), "iqm": iqm, "ci": [lo, hi]})
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    xs = np.arange(len(rows))  # alpha = 0 on a log axis is impossible: equally spaced, labelled ticks
    ax.errorbar(xs, [r["iqm"] for r in rows], yerr=[[r["iqm"] - r["ci"][0] for r in rows],
                                                     [r["ci"][1] - r["iqm"] for r in rows]],
                fmt="o-", capsize=4, label="MA-SAC (IQM, 95% CI)")
    for x, r in zip(xs, rows):
        ax.scatter([x] * len(r["scores"]), r["scores"], s=10, color="grey", alpha=0.6, zorder=3)
    reference = None
    if args.maddpg is not None:
        m = np.array([r.score("all", args.last) for r in find_runs(args.maddpg) if wanted(r, "maddpg")])
        if len(m):
            iqm, lo, hi = iqm_ci(m, args.reps)
            reference = {"seeds": len(m), "scores": m.tolist(), "mean": float(m.mean()), "iqm": iqm, "ci": [lo, hi]}
            ax.axhline(iqm, color="C1", label=f"MADDPG ({len(m)} seeds, IQM, 95% CI)")
            ax.axhspan(lo, hi, color="C1", alpha=0.15)
    ax.set_xticks(xs, [f"{r['alpha']:g}" for r in rows])
    ax.set_xlabel("temperature alpha (paper's tuned value: 0.02)")
    ax.set_ylabel(f"final return (mean of last {args.last} evaluations)")
    ax.set_title("cooperative navigation: MA-SAC against alpha")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    table = args.out.with_suffix(".json")
    table.write_text(json.dumps({"last": args.last, "alphas": rows, "maddpg": reference}, indent=2) + "\n")
    print("| alpha | seeds | mean ± std | IQM [95% CI] |\n|---:|---:|---|---|")
    for r in rows:
        print(f"| {r['alpha']:g} | {r['seeds']} | {r['mean']:.2f} ± {r['std']:.2f} | "
              f"{r['iqm']:.2f} [{r['ci'][0]:.2f}, {r['ci'][1]:.2f}] |")
    if reference:
        print(f"| MADDPG | {reference['seeds']} | {reference['mean']:.2f} | {reference['iqm']:.2f} "
              f"[{reference['ci'][0]:.2f}, {reference['ci'][1]:.2f}] |")
    print(f"wrote {args.out} and {table}")


if __name__ == "__main__":
    main()
