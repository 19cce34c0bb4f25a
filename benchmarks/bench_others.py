"""ms per gradient step of the algorithms that infer or imagine the others, against masac, steps alternating.

``Learner.update`` on a buffer of random transitions (``bench_training.random_replay``), batch 1024, cooperative
navigation (n = 3) by default, one torch thread; the algorithms' steps alternate (round robin) so that a shared
machine's load falls on all of them alike, and the ratios to the first algorithm are per-round medians.

Usage: python benchmarks/bench_others.py [--algos masac masac-inferred masac-optimistic] [--steps 40]
"""
import argparse
import statistics
import time

import torch

from bench_training import random_replay
from pgm_marl.config import TrainConfig
from pgm_marl.envs import make_env
from pgm_marl.train import make_learner


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="cooperative_navigation")
    p.add_argument("--algos", nargs="+", default=["masac", "masac-inferred", "masac-optimistic"])
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--steps", type=int, default=40, help="timed rounds (one step of every algorithm each)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--env-kwargs", default=None, help="e.g. continuous_actions=True")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfgs = {a: TrainConfig(task=args.task, algo=a, batch_size=args.batch_size, env_kwargs=args.env_kwargs,
                           progress=False, tensorboard=False) for a in args.algos}
    _, spec = make_env(args.task, **next(iter(cfgs.values())).env_options())
    learners = {a: make_learner(spec, cfg) for a, cfg in cfgs.items()}
    gen = torch.Generator().manual_seed(0)
    buffer = random_replay(spec, next(iter(learners.values())).spaces, 10 * args.batch_size, gen)
    for learner in learners.values():
        for _ in range(3):  # warm-up
            learner.update(buffer.sample(args.batch_size, gen))
    times = {a: [] for a in args.algos}
    for _ in range(args.steps):
        for a, learner in learners.items():
            batch = buffer.sample(args.batch_size, gen)
            start = time.perf_counter()
            learner.update(batch)
            times[a].append(1000 * (time.perf_counter() - start))
    base = args.algos[0]
    print(f"{args.task} (n = {spec.n_agents}), batch {args.batch_size}, {args.threads} thread(s), {args.steps} "
          "rounds, steps alternating")
    for a, ts in times.items():
        ratio = statistics.median(t / b for t, b in zip(ts, times[base]))
        q = statistics.quantiles(ts, n=4)
        print(f"  {a:<20} {statistics.median(ts):7.1f} ms / step (quartiles {q[0]:.1f}-{q[2]:.1f}), "
              f"x{ratio:.2f} {base} (median of per-round ratios)")


if __name__ == "__main__":
    main()
