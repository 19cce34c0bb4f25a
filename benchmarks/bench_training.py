"""Training throughput: env steps/s with the acting / env / learning / eval split, and ms per gradient step.

1. Trains ``--episodes`` episodes with the real loop (``pgm_marl.train.train``) into a temporary run
   folder and reads its ``timing.json``. Learning starts after ``--learning-starts`` env steps
   (default 1024, so that short runs include gradient steps; the paper's schedule starts at 25,600).
2. Times ``Learner.update`` (median over ``--grad-steps``) on a buffer of random transitions with batch 1024
   for n = 3 (cooperative_navigation) and n = 6, 12 (``mpe2.simple_spread_v3`` with ``N``; ``--more-agents``;
   alpha 0.02); with ``--continuous`` also n = 3 with Box actions (``continuous_actions=True``: squashed
   Gaussian policies on 5-d actions); ``--precision float32 bfloat16`` times both, their steps alternating.

Usage: python benchmarks/bench_training.py --task cooperative_navigation --episodes 200 --num-envs 1
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from pgm_marl.config import TrainConfig
from pgm_marl.envs import make_env
from pgm_marl.inference.variants import PAPER_ALPHA
from pgm_marl.learner import make_learner
from pgm_marl.replay import ReplayBuffer
from pgm_marl.train import train


def bench_loop(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(task=args.task, algo=args.algo, episodes=args.episodes, num_envs=args.num_envs,
                          learning_starts=args.learning_starts, eval_every=args.episodes,
                          eval_episodes=args.eval_episodes, checkpoint_every=args.episodes,
                          buffer_size=max(args.episodes * 25, 1024), out=str(Path(tmp) / "run"),
                          progress=False, tensorboard=False)
        timing = json.loads((train(cfg) / "timing.json").read_text())
    wall = timing["wall"]
    print(f"\n== training loop: {args.task}, algo {args.algo}, {args.episodes} episodes, "
          f"num_envs {args.num_envs}, {torch.get_num_threads()} torch threads ==")
    print(f"env steps {timing['env_steps']}, gradient steps {timing['updates']}, wall {wall:.2f}s, "
          f"{timing['env_steps'] / wall:.0f} env steps/s")
    phases = [p for p in ("act", "env", "learn", "eval", "checkpoint") if p in timing]
    for phase in phases:
        print(f"  {phase:<11}{timing[phase]:8.2f}s  {100 * timing[phase] / wall:5.1f}%")
    other = wall - sum(timing[p] for p in phases)
    print(f"  {'other':<11}{other:8.2f}s  {100 * other / wall:5.1f}%  (buffer, logging, plots)")


def random_replay(spec, spaces, size: int, gen: torch.Generator) -> ReplayBuffer:
    """A buffer of ``size`` random transitions: discrete action indices, or for Box actions (``spaces`` not all
    discrete) float rows drawn in [0, 1] (the MPE boxes)."""
    if spaces is None or spaces.all_discrete:
        buffer = ReplayBuffer(size, spec.state_dim, spec.n_agents)
        actions = (torch.rand(size, spec.n_agents, generator=gen) * torch.tensor(spec.action_counts)).long()
    else:
        buffer = ReplayBuffer(size, spec.state_dim, spec.n_agents, spaces.storage_width, spaces.storage_dtype)
        actions = torch.rand(size, spaces.storage_width, generator=gen)
    buffer.add(torch.randn(size, spec.state_dim, generator=gen), actions,
               torch.randn(size, spec.n_agents, generator=gen),
               torch.randn(size, spec.state_dim, generator=gen), torch.zeros(size))
    return buffer


def bench_update(task: str, label: str, algo: str, batch: int, steps: int, precisions=("float32",),
                 **env_kwargs) -> None:
    """Median ms per ``Learner.update``; with several precisions their steps alternate (same machine state)."""
    _, spec = make_env(task, **env_kwargs)
    alpha = None if task in PAPER_ALPHA else 0.02  # (an import-path task has no paper temperature)
    learners = {p: make_learner(spec, TrainConfig(task=task, algo=algo, batch_size=batch, alpha=alpha, precision=p,
                                                  progress=False, tensorboard=False)) for p in precisions}
    gen = torch.Generator().manual_seed(0)
    buffer = random_replay(spec, getattr(next(iter(learners.values())), "spaces", None), 10 * batch, gen)
    for learner in learners.values():
        for _ in range(3):  # warm-up
            learner.update(buffer.sample(batch, gen))
    times = {p: [] for p in precisions}
    for _ in range(steps):
        for p, learner in learners.items():
            b = buffer.sample(batch, gen)
            start = time.perf_counter()
            learner.update(b)
            times[p].append(time.perf_counter() - start)
    medians = {}
    for p, ts in times.items():
        ts.sort()
        ms, q1, q3 = (1000 * ts[int(q * (steps - 1))] for q in (0.5, 0.25, 0.75))
        medians[p] = ms
        print(f"  {label:<40} n={spec.n_agents:<3} {p:<8} {ms:8.1f} ms / gradient step (median; quartiles "
              f"{q1:.1f}-{q3:.1f}), {torch.get_num_threads()} thread(s)")
    if len(medians) > 1:
        base = medians[precisions[0]]
        print("  " + ", ".join(f"{precisions[0]} / {p} = {base / ms:.2f}" for p, ms in medians.items()
                               if p != precisions[0]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="cooperative_navigation")
    p.add_argument("--algo", default="masac")
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--num-envs", type=int, default=1)
    p.add_argument("--learning-starts", type=int, default=1024)
    p.add_argument("--eval-episodes", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=1024, help="batch of the gradient-step timing")
    p.add_argument("--grad-steps", type=int, default=20, help="timed gradient steps per setting")
    p.add_argument("--skip-loop", action="store_true", help="only time gradient steps")
    p.add_argument("--continuous", action="store_true", help="also time n = 3 with Box actions")
    p.add_argument("--more-agents", type=int, nargs="*", default=[6, 12],
                   help="also time cooperative navigation with these N (default: 6 12)")
    p.add_argument("--precision", nargs="+", default=["float32"], choices=["float32", "bfloat16"],
                   help="time the gradient step in these precisions, steps alternating (default: float32)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (default: torch's choice); on a busy machine 1 avoids "
                        "large per-call slowdowns of small ops")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.skip_loop:
        bench_loop(args)
    print(f"\n== Learner.update, batch {args.batch_size}, algo {args.algo} ==")
    prec = tuple(args.precision)
    bench_update("cooperative_navigation", "cooperative_navigation", args.algo, args.batch_size, args.grad_steps,
                 prec)
    for n in args.more_agents:
        bench_update("mpe2.simple_spread_v3", f"mpe2.simple_spread_v3 (N={n})", args.algo, args.batch_size,
                     args.grad_steps, prec, N=n)
    if args.continuous:
        bench_update("cooperative_navigation", "cooperative_navigation (Box actions)", args.algo, args.batch_size,
                     args.grad_steps, prec, continuous_actions=True)


if __name__ == "__main__":
    main()
