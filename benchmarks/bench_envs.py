"""Env throughput, random actions: the raw mpe2 parallel env, and ``VectorEnv`` on the pettingzoo and torch
backends with K copies (default K = 1, 100, 1000).

One env step = all agents acting once; a VectorEnv step counts K env steps. The torch backend is timed over
``--vector-steps`` vector steps per K (auto-resets included); the pettingzoo backend over ``--steps`` env steps
(it costs the same per copy at any K). The ratio column is torch / pettingzoo at the largest K.

Usage: python benchmarks/bench_envs.py [--ks 1 100 1000] [--threads 1]
"""
import argparse
import time

import numpy as np
import torch

from pgm_marl.envs import TASKS, VectorEnv, make_env


def bench_raw(task: str, steps: int, seed: int) -> float:
    env, spec = make_env(task)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    start = time.perf_counter()
    for _ in range(steps):
        if not env.agents:
            env.reset()
        env.step({a: int(rng.integers(spec.action_counts[i])) for i, a in enumerate(spec.agents)})
    return steps / (time.perf_counter() - start)


def bench_vector(task: str, k: int, vector_steps: int, backend: str, seed: int) -> float:
    venv = VectorEnv(task, num_envs=k, seed=seed, backend=backend)
    high = torch.tensor(venv.spec.action_counts)
    gen = torch.Generator().manual_seed(seed)
    actions = [list((torch.rand(k, venv.n_agents, generator=gen) * high).long().T)  # the env format: [K] per agent
               for _ in range(min(vector_steps, 50))]
    venv.reset()
    for a in actions[:5]:  # warm-up
        venv.step(a)
    start = time.perf_counter()
    for i in range(vector_steps):
        venv.step(actions[i % len(actions)])
    rate = vector_steps * k / (time.perf_counter() - start)
    venv.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000, help="env steps per pettingzoo configuration")
    parser.add_argument("--vector-steps", type=int, default=500, help="vector steps per torch configuration")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cols = ["raw mpe2"] + [f"pettingzoo K={k}" for k in args.ks] + [f"torch K={k}" for k in args.ks]
    print("| task | " + " | ".join(cols) + " | torch / pettingzoo |")
    print("|---|" + "---:|" * (len(cols) + 1))
    for task in TASKS:
        raw = bench_raw(task, args.steps, args.seed)
        pz = [bench_vector(task, k, max(1, args.steps // k), "pettingzoo", args.seed) for k in args.ks]
        tt = [bench_vector(task, k, args.vector_steps, "torch", args.seed) for k in args.ks]
        print(f"| {task} | " + " | ".join(f"{v:,.0f}" for v in [raw] + pz + tt) + f" | {tt[-1] / pz[-1]:,.0f}x |")
    print(f"\nenv steps/s (all agents act once per step), torch {torch.__version__}, {torch.get_num_threads()} thread(s)")


if __name__ == "__main__":
    main()
