"""Draw Figure 1 (agent i's model, eq. 2-3) from the Pyro model's own trace, for a tabular game and an MPE task.

    python examples/draw_model.py --out runs/graphs

Writes ``tabular_agent{0,1}.png`` (random 2-agent game, H = 3) and ``spread_agent0.png`` (MPE cooperative
navigation ``simple_spread_v3``, 3 agents, H = 3, policies linear in each agent's own observation).
"""
from __future__ import annotations

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import torch  # noqa: E402

from pgm_marl.models.graph import draw_model_graph, model_graph  # noqa: E402
from pgm_marl.models.tabular import TabularMarkovGame, random_policies  # noqa: E402
from pgm_marl.models.worlds import SimulatorWorld, TabularPolicies, TabularWorld  # noqa: E402


class LinearPolicies:
    """``params(j, s) = W_j o_j + b_j`` with ``o_j`` agent j's slice of the concatenated observations ``s``."""

    def __init__(self, obs_sizes, action_spaces, seed=0):
        gen = torch.Generator().manual_seed(seed)
        self.action_spaces = action_spaces
        self.offsets = [sum(obs_sizes[:j]) for j in range(len(obs_sizes))]
        self.obs_sizes = list(obs_sizes)
        self.layers = [(torch.randn(s.param_dim, O, generator=gen) * 0.1, torch.zeros(s.param_dim))
                       for O, s in zip(obs_sizes, action_spaces)]

    def params(self, j, s):
        weight, bias = self.layers[j]
        obs = s[..., self.offsets[j]:self.offsets[j] + self.obs_sizes[j]]
        return obs @ weight.T + bias


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/graphs", help="output directory (default: runs/graphs)")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    paths = []

    game = TabularMarkovGame.random(n_states=4, action_sizes=(2, 3), horizon=3, seed=0)
    world, policies = TabularWorld(game), TabularPolicies(random_policies(game, seed=1))
    for i in range(game.n_agents):
        paths.append(os.path.join(args.out, f"tabular_agent{i}.png"))
        draw_model_graph(model_graph(world, policies, i), paths[-1], title=f"Tabular game: agent {i}, H = 3")

    from mpe2 import simple_spread_v3

    env = simple_spread_v3.parallel_env(N=3, max_cycles=25, continuous_actions=False)
    agents = env.possible_agents
    world = SimulatorWorld(env, agents, horizon=3, seed=0)
    policies = LinearPolicies([env.observation_space(a).shape[0] for a in agents], world.action_spaces)
    paths.append(os.path.join(args.out, "spread_agent0.png"))
    draw_model_graph(model_graph(world, policies, 0), paths[-1], title="MPE cooperative navigation: agent 0, H = 3")
    env.close()
    for p in paths:
        print(p)
    return paths


if __name__ == "__main__":
    main()
