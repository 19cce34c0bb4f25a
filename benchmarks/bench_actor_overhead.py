"""Cost of writing the actor step as Pyro model + guide: eq. 9 through Pyro traces vs its closed form.

On one batch of random transitions (batch ``--batch-size``, paper networks with ``--hidden`` units), times
per setting:

(a) ``Learner.loss.actor_terms(batch)``: the actor loss read off Pyro traces, forward + backward;
(b) ``tests/eq9_reference.py::eq9_actor_loss`` (the tests' oracle): the same loss in closed form (no Pyro),
    forward + backward;
(c) one full ``Learner.update(batch)`` (actor via Pyro + critic + Polyak), for scale.

Repetitions are interleaved (a, b, c, a, b, c, ...) so that load from other processes hits all three alike;
the table reports medians and the ratio a / b. Before timing, (a) and (b) are checked to give the same loss
with the same random draws. Settings: cooperative_navigation (n = 3) and ``mpe2.simple_spread_v3`` with
``N=6`` (n = 6).

Usage: python benchmarks/bench_actor_overhead.py --reps 20 --threads 1
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from pgm_marl.config import TrainConfig
from pgm_marl.envs import make_env
from pgm_marl.learner import Learner
from pgm_marl.replay import Batch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from eq9_reference import eq9_actor_loss  # noqa: E402  (the tests' closed-form oracle)

SETTINGS = (("cooperative_navigation", "cooperative_navigation", {}),
            ("mpe2.simple_spread_v3 (N=6)", "mpe2.simple_spread_v3", {"N": 6}))


def random_batch(spec, size: int, seed: int = 0) -> Batch:
    gen = torch.Generator().manual_seed(seed)
    high = torch.tensor(spec.action_counts)
    return Batch(torch.randn(size, spec.state_dim, generator=gen),
                 (torch.rand(size, spec.n_agents, generator=gen) * high).long(),
                 torch.randn(size, spec.n_agents, generator=gen),
                 torch.randn(size, spec.state_dim, generator=gen), torch.zeros(size))


def pyro_actor(learner, batch) -> torch.Tensor:
    return -learner.loss.actor_terms(batch)["alpha_elbo"]


def closed_actor(learner, batch, buffer_actions) -> torch.Tensor:
    loss = learner.loss
    relax = loss.algorithms[0].relax
    return eq9_actor_loss(learner.actors, learner.critic, batch.state, buffer_actions, loss.alpha(),
                          loss.resample_all, relax)


def bench(label: str, task: str, env_kwargs: dict, args) -> list:
    _, spec = make_env(task, **env_kwargs)
    cfg = TrainConfig(task=task, algo=args.algo, batch_size=args.batch_size, hidden=args.hidden,
                      alpha=None if "." not in task else 0.02, progress=False, tensorboard=False)
    learner = Learner(spec, cfg)  # (a) and (b): parameters never change
    updating = Learner(spec, cfg)  # (c): its parameters move every step
    batch = random_batch(spec, args.batch_size)
    buffer_actions = learner.spaces.encode(batch.actions)

    torch.manual_seed(1)
    a = pyro_actor(learner, batch)
    torch.manual_seed(1)
    b = closed_actor(learner, batch, buffer_actions)
    max_diff = float((a - b).detach().abs().max())

    def run_a():
        pyro_actor(learner, batch).sum().backward()

    def run_b():
        closed_actor(learner, batch, buffer_actions).sum().backward()

    def run_c():
        updating.update(batch)

    fns = {"a": run_a, "b": run_b, "c": run_c}
    times = {k: [] for k in fns}
    for _ in range(args.warmup):
        for fn in fns.values():
            fn()
    for _ in range(args.reps):
        for k, fn in fns.items():
            learner.actors.zero_grad(set_to_none=True)
            start = time.perf_counter()
            fn()
            times[k].append(1000 * (time.perf_counter() - start))
    med = {k: statistics.median(v) for k, v in times.items()}
    return [label, spec.n_agents, med["a"], med["b"], med["a"] / med["b"], med["a"] - med["b"], med["c"], max_diff]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=20, help="timed repetitions of each of (a), (b), (c)")
    p.add_argument("--warmup", type=int, default=3, help="untimed repetitions first")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--hidden", type=int, default=128, help="hidden units (paper: 128)")
    p.add_argument("--algo", default="masac")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (default: torch's choice); 1 on a busy machine")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [bench(label, task, kw, args) for label, task, kw in SETTINGS]
    print("| setting | n | (a) Pyro actor fwd+bwd ms | (b) closed form fwd+bwd ms | a / b | a - b ms "
          "| (c) full update ms | max abs diff a vs b |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, n, a, b, ratio, diff, c, err in rows:
        print(f"| {label} | {n} | {a:.1f} | {b:.1f} | {ratio:.2f} | {diff:.1f} | {c:.1f} | {err:.1e} |")
    print(f"\nmedians over {args.reps} interleaved repetitions, batch {args.batch_size}, hidden {args.hidden}, "
          f"algo {args.algo}, torch {torch.__version__}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
