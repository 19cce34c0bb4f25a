"""What a cooperative-navigation return is made of: coverage and collisions, per run and for the baselines.

Cooperative navigation's reward (``pgm_marl/envs/torch_mpe/simple_spread.py``, mpe2's ``simple_spread``) is
``-(1 - local_ratio) * sum_landmarks min_agents dist - local_ratio * (agent i's collisions)``, so a return near
uniform random's can hide very different behaviour: agents that reach landmarks but collide, or agents that
never move towards them. This script runs each run folder's deterministic policies (as ``pgm-marl evaluate``
does: the run's evaluation seeds, 100 episodes) and the two baselines of ``random_baseline.py`` (uniform random,
always action 0 = standing still) on the torch backend and splits the team return into

* ``coverage``: the sum over steps of ``-(1 - local_ratio) * sum_l min_a dist(a, l)`` (the distance part);
* ``collisions``: the sum over steps of ``-local_ratio * mean_i collisions_i`` (the two add up to the return);

and reports, at the last step, the mean distance from a landmark to its nearest agent, the fraction of
landmarks with an agent within 0.1 (mpe2's ``occupied_landmarks`` threshold in ``benchmark_data``), the
fraction of agents that are some landmark's nearest agent (several landmarks may share one), the mean
distance an agent travelled, and the share of all actions taken that is the most frequent one (with which:
0 = stay, 1-4 = push left, right, down, up): 1.0 with one action for every agent at every step, a policy that
collapsed (standing still is 1.0 of action 0; uniform random about 0.2).

Usage: python benchmarks/navigation_anatomy.py benchmarks/results/many_agents/n12/noshare/*seed0
"""
import argparse
from pathlib import Path

import torch

from pgm_marl.envs import VectorEnv
from pgm_marl.evaluate import load_trained
from pgm_marl.errors import UserError, one_line

OCCUPIED = 0.1  # mpe2 simple_spread benchmark_data: a landmark is occupied if an agent is within 0.1


class Baseline:
    """``act`` as a learner does, for the reference policies: uniform random or always action 0."""

    def __init__(self, kind: str, n_agents: int, n_actions: int, seed: int):
        self.kind, self.n, self.a = kind, n_agents, n_actions
        self.gen = torch.Generator().manual_seed(seed)

    def act(self, obs, deterministic=True):
        k = obs[0].shape[0]
        if self.kind == "still":
            return [torch.zeros(k, dtype=torch.long) for _ in range(self.n)]
        return list(torch.randint(self.a, (self.n, k), generator=self.gen))


@torch.no_grad()
def anatomy(policies, options: dict, episodes: int, seed: int, max_cycles: int) -> dict:
    """Run ``episodes`` episodes at once and split their team return (see the module docstring);
    ``options``: the run's env options (``TrainConfig.env_options``)."""
    n, local_ratio = int(options.get("N", 3)), float(options.get("local_ratio", 0.5))
    venv = VectorEnv("cooperative_navigation", num_envs=episodes, seed=seed, max_cycles=max_cycles,
                     backend="torch", **options)
    obs = venv.reset(seed=seed)
    start = venv.world_state.pos[:, :n].clone()  # [2, A, K]
    coverage = torch.zeros(episodes)
    collisions = torch.zeros(episodes)
    returns, counts = None, torch.zeros(5)
    for _ in range(max_cycles):
        actions = policies.act(obs, deterministic=True)
        counts += torch.bincount(torch.stack(list(actions)).reshape(-1).long(), minlength=5)[:5]
        result = venv.step(actions)
        obs = result.obs
        s = venv.last_next_state  # the state each step reached, before the auto-reset of the last step
        pos = s.pos  # [2, E, K]: agents then landmarks
        d = torch.cdist(pos[:, :n].permute(2, 1, 0), pos[:, n:].permute(2, 1, 0))  # [K, A, L]
        nearest = d.amin(1)  # [K, L]
        coverage -= (1 - local_ratio) * nearest.sum(1)
        dd = torch.cdist(pos[:, :n].permute(2, 1, 0), pos[:, :n].permute(2, 1, 0))  # [K, A, A]
        hits = ((dd < 0.3) & ~torch.eye(n, dtype=torch.bool)).sum(2).float()  # [K, A]: size sum 0.15 + 0.15
        collisions -= local_ratio * hits.mean(1)
        if bool(result.truncated.all()):
            returns = result.episode_return["all"]
    travelled = (pos[:, :n] - start).norm(dim=0)  # [A, K]
    owners = d.argmin(1)  # [K, L]: each landmark's nearest agent
    claimed = torch.tensor([owners[k].unique().numel() / n for k in range(episodes)])
    venv.close()
    return {"return": float(returns.mean()), "coverage": float(coverage.mean()),
            "collisions": float(collisions.mean()), "final_dist": float(nearest.mean()),
            "occupied": float((nearest < OCCUPIED).float().mean()), "claimed": float(claimed.mean()),
            "travelled": float(travelled.mean()), "return_check": float((coverage + collisions).mean()),
            "top_action": int(counts.argmax()), "top_share": float(counts.max() / counts.sum())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="run folders of cooperative navigation (same N)")
    p.add_argument("--episodes", type=int, default=100)
    args = p.parse_args()
    torch.set_num_threads(1)
    rows, first = [], None
    for run in args.runs:
        try:
            cfg, spec, policies, counters = load_trained(run)
        except UserError as err:  # a folder without its checkpoint (git-ignored: a fresh clone has none), ...
            raise SystemExit(f"{run}: {one_line(err)} (accepted: run folders that still hold checkpoint.pt)")
        if cfg.task != "cooperative_navigation":
            raise SystemExit(f"{run}: task {cfg.task}; accepted: cooperative_navigation runs")
        opts = cfg.env_options()
        if opts.get("continuous_actions"):
            raise SystemExit(f"{run}: continuous_actions=True; accepted: runs with discrete actions (the "
                             "baselines draw the 5 discrete moves)")
        first = first or (opts, cfg)
        if opts != first[0]:
            raise SystemExit(f"{run}: env options {opts}; the first run has {first[0]} (accepted: runs of one "
                             "setting)")
        rows.append((f"{run.parent.name}/{run.name}",
                     anatomy(policies, opts, args.episodes, cfg.seed + cfg.eval_seed_offset, cfg.max_cycles)))
    opts, cfg = first
    n, lr = int(opts.get("N", 3)), float(opts.get("local_ratio", 0.5))
    for kind in ("random", "still"):  # on the first run's evaluation seeds (the row says which)
        seed = cfg.seed + cfg.eval_seed_offset
        rows.append((f"({kind}, evaluation seed {seed})", anatomy(Baseline(kind, n, 5, seed), opts, args.episodes, seed, cfg.max_cycles)))
    print(f"cooperative navigation, N = {n}, local_ratio {lr}, {args.episodes} episodes, deterministic policies\n")
    print("| run | return | coverage part | collision part | final landmark-nearest-agent dist | landmarks "
          "occupied (< 0.1) | agents nearest to a landmark | distance travelled | most frequent action |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in rows:
        assert abs(r["return"] - r["return_check"]) < 1e-3 * max(1.0, abs(r["return"])), (name, r)
        print(f"| {name} | {r['return']:.2f} | {r['coverage']:.2f} | {r['collisions']:.2f} | {r['final_dist']:.3f} "
              f"| {r['occupied']:.2f} | {r['claimed']:.2f} | {r['travelled']:.2f} | "
              f"{r['top_share']:.2f} (action {r['top_action']}) |")


if __name__ == "__main__":
    main()
