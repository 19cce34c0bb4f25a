"""Reference returns of policies that learned nothing: uniformly random actions, and always action 0.

Runs ``--episodes`` episodes per task in one ``VectorEnv`` (copy k seeded with ``--seed + k``; the default
10000 is what evaluation of a seed-0 run uses), ``--max-cycles`` steps each, and reports the mean team return
with the library's definition (sum over steps of the team-mean reward, ``pgm_marl.envs.returns``) and its
standard deviation over episodes. In the MPE tasks action 0 is "no movement" (the speaker: say word 0), so
"always 0" is the return of agents that stay where they spawned. ``--continuous``: the tasks with
``continuous_actions=True`` (Box actions, uniform in the box; "always 0" is the zero vector: no movement).

Usage: python benchmarks/random_baseline.py [--task cooperative_navigation] [--continuous] [--env-kwargs N=24]
"""
import argparse
import statistics

import torch

from pgm_marl.config import TrainConfig
from pgm_marl.envs import TASKS, VectorEnv

POLICIES = ("uniform random", "always action 0")


@torch.no_grad()
def episode_returns(task: str, policy: str, episodes: int, seed: int, max_cycles: int,
                    continuous: bool = False, backend: str = "auto", **env_kwargs) -> dict:
    """Team -> list of ``episodes`` returns, collected exactly as ``pgm_marl.evaluate.evaluate`` does."""
    venv = VectorEnv(task, num_envs=episodes, seed=seed, max_cycles=max_cycles, backend=backend,
                     continuous_actions=continuous, **env_kwargs)
    gen = torch.Generator().manual_seed(seed)
    returns = {t: [] for t in venv.spec.teams}
    venv.reset()
    for _ in range(max_cycles):
        if continuous:  # per agent [K, d]: uniform in the box, or zeros
            boxes = [(torch.tensor(a.low), torch.tensor(a.high)) for a in venv.spec.action_spaces]
            actions = [lo + (hi - lo) * torch.rand(episodes, len(lo), generator=gen) if policy == "uniform random"
                       else torch.zeros(episodes, len(lo)) for lo, hi in boxes]
        elif policy == "uniform random":
            actions = list((torch.rand(episodes, venv.n_agents, generator=gen) * torch.tensor(venv.spec.action_counts)).long().T)
        else:
            actions = list(torch.zeros(venv.n_agents, episodes, dtype=torch.long))
        result = venv.step(actions)
        for t, ret in result.episode_return.items():
            returns[t].extend(ret[~torch.isnan(ret)].tolist())
    venv.close()
    return returns


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", action="append", choices=TASKS, default=None,
                   help="restrict to this task (repeatable; default: all four)")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--seed", type=int, default=10_000, help="env copy k is seeded with seed + k")
    p.add_argument("--max-cycles", type=int, default=25)
    p.add_argument("--continuous", action="store_true", help="continuous_actions=True (Box actions)")
    p.add_argument("--backend", default="auto", help="environment backend (the table in pgm_marl/metrics.py: "
                   "pettingzoo, i.e. mpe2 itself)")
    p.add_argument("--env-kwargs", default=None, help="task options as for train, e.g. N=24 (many agents)")
    args = p.parse_args()
    env_kwargs = TrainConfig(task=(args.task or TASKS)[0], env_kwargs=args.env_kwargs).env_options()
    torch.set_num_threads(1)
    print("| task | team | " + " | ".join(POLICIES) + " |")
    print("|---|---|" + "---:|" * len(POLICIES))
    for task in args.task or TASKS:
        results = {pol: episode_returns(task, pol, args.episodes, args.seed, args.max_cycles, args.continuous,
                                        args.backend, **env_kwargs) for pol in POLICIES}
        for team in results[POLICIES[0]]:
            cells = []
            for pol in POLICIES:
                r = results[pol][team]
                sd = statistics.stdev(r) if len(r) > 1 else float("nan")
                cells.append(f"{statistics.fmean(r):.2f} ± {sd:.2f}")
            print(f"| {task}{f' ({args.env_kwargs})' if args.env_kwargs else ''} | {team} | " + " | ".join(cells) + " |")
    print(f"\nmean ± std over {args.episodes} episodes of {args.max_cycles} steps (env seeds {args.seed}..."
          f"{args.seed + args.episodes - 1}); team return = sum over steps of the team-mean reward")


if __name__ == "__main__":
    main()
