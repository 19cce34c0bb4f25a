r"""Derive an optimistic max-ent algorithm from the model, in the open, and train it on the climbing game.

Agent i's model (its MDP with optimality variables, Figure 1, eq. 2-3) is unchanged; the one new thing is the
variational family. Instead of eq. 4's pi_i(a_i | o_i) pi_{-i}(a_{-i} | o_{-i}), agent i imagines the others'
actions with its own q_i(a_{-i} | o_i) and acts on them, pi_i(a_i | o_i, a_{-i}) (as ROMMEO, Tian et al. 2019).
Eq. 5 with that guide is

    ELBO_i = E_q[r_i / alpha + log p(a_i) - log pi_i(a_i | o_i, a_{-i}) - log q_i(a_{-i} | o_i) / pi_{-i}(a_{-i})],

the factorized ELBO freed over a_{-i} at the price of KL(q_i || pi_{-i}): its maximum is log p(o_i = 1), with
q_i = p(a_{-i} | o_i = 1) (optimism about the others) and pi_i = p(a_i | a_{-i}, o_i = 1). This script

1. writes that guide as a Pyro function for one ego of a two-player matrix game (``climbing_guide``), fits it
   by SVI (Pyro's ``Trace_ELBO``) against a fixed column player and compares with exact enumeration
   (:func:`pgm_marl.inference.exact.optimistic_optimum`): the bound becomes tight, which eq. 4's guide cannot
   reach (its best is the soft best response, a Jensen gap below);
2. declares the algorithm as differences from MA-SAC, ``dataclasses.replace(MASAC, guide="optimistic",
   others="inferred")`` (the library's :func:`~pgm_marl.models.optimistic_guide.optimistic_guide` is the same
   guide for any number of agents, batched over egos; ``others="inferred"`` makes each agent's prior over the
   others its own rho_i, fitted to their actions);
3. trains masac, maddpg, masac-exact and the optimistic variant (with the relaxation of section 5.2 and a
   colder one, and masac at the colder one as a control) on the climbing game (Claus and Boutilier 1998) with
   the unchanged learner and its default networks, and prints the joint action each seed settles on (the most
   probable action of each agent's policy; an optimistic agent takes the most probable imagined a_{-i} first).

    python examples/derive_optimistic.py            # the table of docs/RESULTS.md (a few minutes on 1 thread)
    python examples/derive_optimistic.py --tiny     # a smoke run (seconds)
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pgm_marl.config import TrainConfig
from pgm_marl.envs.tasks import ActionSpec, TaskSpec
from pgm_marl.inference.elbo import MAX_PLATE_NESTING, elbo_estimate
from pgm_marl.inference.exact import exact_elbo, optimistic_optimum, soft_best_response
from pgm_marl.inference.others import OthersModels
from pgm_marl.inference.variants import MASAC, PRESETS
from pgm_marl.learner import Learner
from pgm_marl.models.actions import ActionSpaces
from pgm_marl.models.agent_mdp import agent_model
from pgm_marl.models.opponents import other_pairs
from pgm_marl.models.tabular import TabularMarkovGame
from pgm_marl.models.worlds import TabularPolicies, TabularWorld
from pgm_marl.replay import Batch

#: the climbing game: both players get PAYOFF[a, b] (rows a1-a3: agent 0, columns b1-b3: agent 1)
PAYOFF = torch.tensor([[11.0, -30.0, 0.0], [-30.0, 7.0, 6.0], [0.0, 0.0, 5.0]])
SCALE = 0.1  # rewards = SCALE * PAYOFF (the scale of the MPE rewards the defaults are tuned for)
ALPHA = 0.1  # temperature on that scale (alpha = 1 in payoff units)


def climbing_guide(world, policies, agent, alpha=1.0, estimator="score", relax=1.0, hard_others=False):
    """q_i(a_j) pi_i(a_i | a_j) for ego ``agent`` of a one-state, one-step, two-player game: imagine the other's
    action, then act on it. The sites (names, kinds, shapes) are those of ``agent_model``'s, as Pyro needs."""
    i, j = agent, 1 - agent
    q = pyro.param("q_logits", torch.zeros(3))  # q_i(a_j)
    pi = pyro.param("pi_logits", torch.zeros(3, 3))  # pi_i(a_i | a_j): row a_j
    egos = torch.tensor([i])
    pyro.sample("s_0", world.initial(), infer={"kind": "state", "t": 0})
    with pyro.plate("ego", 1, dim=-1):
        a_j = pyro.sample(f"a_{j}_0", dist.OneHotCategorical(logits=q),
                          infer={"kind": "action", "agent": j, "t": 0, "egos": egos})
        pyro.sample(f"a_{i}_0", dist.OneHotCategorical(logits=a_j @ pi),
                    infer={"kind": "action", "agent": i, "t": 0, "egos": egos})


def derive_in_the_open(steps: int, particles: int) -> None:
    """Part 1: SVI on ELBO_0 with ``climbing_guide``, the column player fixed (uniform), vs exact enumeration."""
    game = TabularMarkovGame(torch.ones(1), torch.ones(1, 3, 3, 1),
                             (SCALE * (PAYOFF - PAYOFF.max())).expand(2, 1, 3, 3).clone(), horizon=1)
    policies = [torch.full((1, 3), 1 / 3), torch.full((1, 3), 1 / 3)]
    world, pis = TabularWorld(game), TabularPolicies(policies)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    svi = pyro.infer.SVI(agent_model, climbing_guide, pyro.optim.Adam({"lr": 0.05}),
                         pyro.infer.Trace_ELBO(num_particles=particles, vectorize_particles=True,
                                               max_plate_nesting=MAX_PLATE_NESTING))
    for _ in range(steps):
        svi.step(world, pis, 0, ALPHA, "score")
    mean, stderr = elbo_estimate(agent_model, climbing_guide, world, pis, 0, ALPHA, "score",
                                 num_particles=20 * particles)
    best = optimistic_optimum(game, policies, 0, ALPHA)
    factorized = exact_elbo(game, [soft_best_response(game, policies, 0, ALPHA), policies[1]], 0, ALPHA)
    q = pyro.param("q_logits").detach().softmax(-1)
    print(f"1. SVI on the optimistic guide ({steps} steps): ELBO_0 = {float(mean):.3f} +- {float(stderr):.3f}; "
          f"log p(o_0 = 1) = {float(best['log_evidence']):.3f} (exact); eq. 4's best = {float(factorized):.3f}")
    print(f"   q_0(b) = {[round(float(x), 3) for x in q]}, exact p(b | o_0 = 1) = "
          f"{[round(float(x), 3) for x in best['imagined'][0]]}")


def climbing_spec() -> TaskSpec:
    agents = ("row", "column")
    return TaskSpec(name="climbing", agents=agents, obs_dims=(1, 1),
                    action_spaces=(ActionSpec("discrete", n=3), ActionSpec("discrete", n=3)),
                    teams={"row": ("row",), "column": ("column",)}, max_cycles=1)


class TableActors(nn.Module):
    """pi_k(a_k) (logits ``[n, 3]``) and, for the ``conditioned`` agents, pi_k(a_k | a_{-k}) (``[n, 3, 3]``, row
    a_{-k}): the one-state game's policies as tables, with the interface of ConditionalActors."""

    def __init__(self, conditioned):
        super().__init__()
        self.conditioned = list(conditioned)
        self.logits = nn.Parameter(torch.zeros(2, 3))
        self.tables = nn.Parameter(torch.zeros(2, 3, 3))

    def observations(self, state):
        return state.movedim(-1, 0).unsqueeze(-1)  # [n, *batch, 1]: each agent sees the constant 1

    def pad_obs(self, obs):
        return torch.stack(list(obs))

    def forward(self, obs, imagined=None):
        batch = obs.shape[1:-1]
        out = [self.logits[k].expand(*batch, 3) for k in range(2)]
        for k in range(2):
            if self.conditioned[k] and imagined is not None:  # multilinear in the other's (relaxed) one-hot
                other = imagined[k][..., 3:] if k == 0 else imagined[k][..., :3]
                out[k] = other @ self.tables[k]
        return torch.stack(out)


class TableCritics(nn.Module):
    """Twin Q_k(a_row, a_column) tables ``[2, n, 3, 3]`` (bilinear in the one-hot or relaxed actions)."""

    def __init__(self):
        super().__init__()
        self.table = nn.Parameter(torch.full((2, 2, 3, 3), -1e-3))

    def forward(self, state, joint):
        q = torch.einsum("n...a,cnab,n...b->cn...", joint[..., :3], self.table, joint[..., 3:])
        return q[0], q[1]

    def min(self, state, joint):
        return torch.minimum(*self(state, joint))


class TableModels(nn.Module):
    """rho_e^j(a_j) for ``pairs`` (``[pairs, 3]``) or q_e^j(a_j) for ``egos`` (``[m, n, 3]``): tables with the
    interfaces of OpponentNets / ImaginedNets."""

    def __init__(self, pairs=None, egos=None):
        super().__init__()
        self.pairs, self.egos = pairs, egos
        shape = (len(pairs), 3) if pairs is not None else (len(egos), 2, 3)
        self.logits = nn.Parameter(torch.zeros(shape))

    def forward(self, obs):
        batch = obs.shape[1:-1]
        if self.pairs is not None:
            return self.logits.reshape(len(self.pairs), *([1] * len(batch)), 3).expand(-1, *batch, -1)
        return self.logits.reshape(len(self.egos), 2, *([1] * len(batch)), 3).expand(-1, -1, *batch, -1)


def table_learner(spec, cfg, algorithm) -> Learner:
    """The unchanged learner with the one-state game's networks as tables (any modules with the interfaces)."""
    conditioned = [algorithm.guide == "optimistic"] * 2
    others = None
    if algorithm.others == "inferred" or algorithm.guide == "optimistic":
        spaces = ActionSpaces.from_specs(spec.action_spaces)
        others = OthersModels(spec, spaces, [algorithm] * 2,
                              opponents=TableModels(pairs=other_pairs([0, 1], 2)) if algorithm.others == "inferred"
                              else None,
                              imagined=TableModels(egos=[0, 1]) if algorithm.guide == "optimistic" else None)
    return Learner(spec, cfg, TableActors(conditioned), TableCritics(), algorithms=[algorithm] * 2, others=others)


def collect(learner, batch_size: int) -> Batch:
    """A fresh batch of one-step games (the one state is the constant observation 1; episodes end at once)."""
    state = torch.ones(batch_size, 2)
    a = torch.stack(learner.act([state[:, :1], state[:, 1:]]), -1)
    reward = SCALE * PAYOFF[a[:, 0], a[:, 1]]
    return Batch(state, a, torch.stack([reward, reward], -1), state, torch.ones(batch_size))


def settle(algorithm, seed: int, args) -> str:
    """Train both players with ``algorithm`` and read the joint action (each agent's most probable action)."""
    cfg = TrainConfig(task="climbing", algo=algorithm.name, seed=seed, hidden=args.hidden, lr=args.lr, alpha=ALPHA,
                      gamma=0.5, tau=0.1, batch_size=args.batch_size, progress=False, tensorboard=False)
    spec = climbing_spec()
    learner = (table_learner(spec, cfg, algorithm) if args.networks == "tables" else
               Learner(spec, cfg, algorithms=[algorithm, algorithm]))
    torch.manual_seed(seed)
    for _ in range(args.steps):
        learner.update(collect(learner, args.batch_size))
    a = learner.act([torch.ones(1, 1), torch.ones(1, 1)], deterministic=True)
    return f"(a{int(a[0]) + 1}, b{int(a[1]) + 1})"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--steps", type=int, default=300, help="gradient steps per run")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--networks", choices=["tables", "mlp"], default="tables",
                   help="tables (the one-state game's exact parameterisation) or the learner's default MLPs")
    p.add_argument("--hidden", type=int, default=32, help="hidden units of the MLPs (--networks mlp)")
    p.add_argument("--tiny", action="store_true", help="tiny budgets (a smoke run for tests)")
    args = p.parse_args(argv)
    if args.tiny:
        args.seeds, args.steps, args.batch_size, args.hidden = 1, 3, 16, 8
    torch.set_num_threads(1)
    derive_in_the_open(steps=20 if args.tiny else 300, particles=64 if args.tiny else 512)

    optimistic = dataclasses.replace(MASAC, name="masac-optimistic", guide="optimistic", others="inferred")
    assert optimistic == PRESETS["masac-optimistic"]
    print(f"2. {optimistic.name}: differs from masac in {sorted(optimistic.differences(MASAC))}")

    algorithms = [PRESETS["masac"], PRESETS["maddpg"], PRESETS["masac-exact"], optimistic,
                  dataclasses.replace(optimistic, name="masac-optimistic, relax 0.1", relax=0.1),
                  dataclasses.replace(MASAC, name="masac, relax 0.1", relax=0.1)]
    print(f"3. climbing game ({args.networks}), {args.seeds} seeds, {args.steps} gradient steps of batch "
          f"{args.batch_size}, lr {args.lr}, alpha {ALPHA} on rewards {SCALE} x payoff: the joint action each "
          "seed settles on")
    for algorithm in algorithms:
        start = time.perf_counter()
        cells = [settle(algorithm, seed, args) for seed in range(args.seeds)]
        counts = {c: cells.count(c) for c in sorted(set(cells))}
        print(f"   {algorithm.name:<28} {' '.join(cells)}   ({', '.join(f'{c} x{k}' for c, k in counts.items())}; "
              f"{time.perf_counter() - start:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
