"""Env throughput: raw PettingZoo parallel env vs VectorEnv (K = 1, 8, 32), random actions.

One env step = all agents acting once; a VectorEnv step counts K env steps.
Usage: python benchmarks/bench_envs.py --steps 4000
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
        env.step({a: int(rng.integers(spec.action_dims[i])) for i, a in enumerate(spec.agents)})
    return steps / (time.perf_counter() - start)


def bench_vector(task: str, steps: int, k: int, seed: int) -> float:
    venv = VectorEnv(task, num_envs=k, seed=seed)
    high = torch.tensor(venv.spec.action_dims)
    gen = torch.Generator().manual_seed(seed)
    venv.reset()
    n_vec = max(1, steps // k)
    start = time.perf_counter()
    for _ in range(n_vec):
        venv.step((torch.rand(k, venv.n_agents, generator=gen) * high).long())
    return n_vec * k / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=4000, help="env steps per configuration")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ks = (1, 8, 32)
    print("| task | raw env | " + " | ".join(f"VectorEnv K={k}" for k in ks) + " |")
    print("|---|---:|" + "---:|" * len(ks))
    for task in TASKS:
        row = [bench_raw(task, args.steps, args.seed)] + [bench_vector(task, args.steps, k, args.seed) for k in ks]
        print(f"| {task} | " + " | ".join(f"{v:,.0f}" for v in row) + " |")
    print(f"\nenv steps/s (all agents act once per step), {args.steps} steps per config, one process, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
