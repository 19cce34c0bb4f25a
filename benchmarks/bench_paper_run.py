"""One paper-scale run, timed: ``pgm-marl train --task cooperative_navigation --algo masac --seed S`` with every
section 5.2 default (15000 episodes, batch 1024, one gradient step per 100 env steps, evaluation of 100
deterministic episodes every 100 episodes), on the default (torch) backend.

Prints the wall time, the act / env / learn / eval split (from the run's ``timing.json``), env steps/s, ms per
gradient step and peak memory; then, in the same invocation, times a short prefix of the same schedule on the
torch and the pettingzoo backends and prints the per-episode ratio (the pettingzoo path is ~10x too slow to
run in full here). Learning starts after 1024 episodes, so a prefix shorter than that times no gradient step:
the default prefix (1200 episodes) includes 176 episodes of learning.

Usage: python benchmarks/bench_paper_run.py --seed 0 [--threads 2] [--prefix 1200] [--skip-full]
       [--precision bfloat16]
Report the machine state (idle or shared) with the numbers.
"""
import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import torch

from pgm_marl.config import TrainConfig
from pgm_marl.train import train

PHASES = ("act", "env", "learn", "eval")


def run(out: Path, **overrides) -> dict:
    cfg = TrainConfig(task="cooperative_navigation", algo="masac", out=str(out), progress=False,
                      tensorboard=False, **overrides)
    start = time.perf_counter()
    train(cfg)
    timing = json.loads((out / "timing.json").read_text())
    timing["outer_wall"] = time.perf_counter() - start  # includes building envs and networks
    timing["num_envs"], timing["backend"] = cfg.num_envs, cfg.backend
    return timing


def show(label: str, t: dict) -> None:
    wall = t["wall"]
    print(f"\n== {label}: backend {t['backend']}, num_envs {t['num_envs']}, {t['episodes']} episodes ==")
    print(f"wall {wall:.1f}s (with set-up {t['outer_wall']:.1f}s), {t['env_steps']} env steps "
          f"({t['env_steps'] / wall:.0f}/s overall), {t['updates']} gradient steps "
          f"({1000 * t['learn'] / max(t['updates'], 1):.1f} ms each incl. sampling)")
    for phase in PHASES:
        print(f"  {phase:<6}{t[phase]:8.2f}s  {100 * t[phase] / wall:5.1f}%")
    other = wall - sum(t[p] for p in PHASES)
    print(f"  {'other':<6}{other:8.2f}s  {100 * other / wall:5.1f}%  (replay buffer, logging, checkpoints)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the TrainConfig default)")
    p.add_argument("--precision", default="float32", choices=["float32", "bfloat16"],
                   help="the networks' hidden-layer products (TrainConfig.precision; default: float32)")
    p.add_argument("--prefix", type=int, default=1200, help="episodes of the backend-ratio prefix")
    p.add_argument("--skip-full", action="store_true", help="only the prefix comparison")
    p.add_argument("--out", default=None, help="keep the full run's folder here (default: a temporary one)")
    args = p.parse_args()
    common = {"seed": args.seed, "precision": args.precision, **({"threads": args.threads} if args.threads else {})}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.skip_full:
            full = run(Path(args.out) if args.out else tmp / "full", **common)
            show("paper-scale run", full)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"peak memory (max RSS of this process): {peak:.0f} MiB; torch threads {torch.get_num_threads()}")
            final = Path(args.out or tmp / "full") / "metrics.csv"
            print(f"metrics: {final}")
        prefix = {"episodes": args.prefix, "checkpoint_every": args.prefix, **common}
        fast = run(tmp / "prefix_torch", backend="torch", **prefix)
        slow = run(tmp / "prefix_pz", backend="pettingzoo", **prefix)
        show("prefix, torch backend", fast)
        show("prefix, pettingzoo backend", slow)
        print(f"\npettingzoo / torch wall time on the same {args.prefix}-episode prefix: "
              f"{slow['wall'] / fast['wall']:.1f}x (env phase {slow['env'] / max(fast['env'], 1e-9):.0f}x, "
              f"eval phase {slow['eval'] / max(fast['eval'], 1e-9):.0f}x)")


if __name__ == "__main__":
    main()
