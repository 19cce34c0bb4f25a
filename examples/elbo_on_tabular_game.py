"""Eq. 5 three ways on a small random Markov game: Pyro's Monte-Carlo estimate, its named terms, and exact
enumeration; then one step of SVI on agent 0's policy with Pyro's Trace_ELBO.

    python examples/elbo_on_tabular_game.py --particles 20000
"""
from __future__ import annotations

import argparse

import pyro
import torch

from pgm_marl.inference import elbo_estimate, elbo_loss, elbo_particles, exact_elbo, exact_elbo_terms
from pgm_marl.models import TabularMarkovGame, TabularPolicies, TabularWorld, agent_model, policy_guide, random_policies


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--particles", type=int, default=20000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--alpha", type=float, default=1.0)
    args = p.parse_args(argv)
    pyro.set_rng_seed(args.seed)
    game = TabularMarkovGame.random(n_states=3, action_sizes=(2, 3), horizon=3, seed=args.seed)
    tables = random_policies(game, seed=args.seed + 1)
    world, policies = TabularWorld(game), TabularPolicies(tables)
    for estimator in ("score", "reparam"):
        mean, se = elbo_estimate(agent_model, policy_guide, world, policies, None, args.alpha, estimator,
                                 num_particles=args.particles)
        note = "" if estimator == "score" else "  (relaxed actions: the ELBO of the relaxed model, -> exact as relax -> 0)"
        print(f"{estimator:8s} Pyro estimate of ELBO_i per agent: {mean.tolist()} +- {se.tolist()}{note}")
    print("exact ELBO_i per agent:          ", [float(exact_elbo(game, tables, i, args.alpha)) for i in range(2)])
    terms = elbo_particles(agent_model, policy_guide, world, policies, 0, args.alpha, "score",
                           num_particles=args.particles)
    print("agent 0 named terms, Pyro:  ", {k: round(float(v.mean()), 4) for k, v in terms.items()})
    print("agent 0 named terms, exact: ", {k: round(float(v), 4) for k, v in exact_elbo_terms(game, tables, 0,
                                                                                             args.alpha).items()})
    logits = [t.log().clone().requires_grad_(True) for t in tables]
    opt = torch.optim.Adam([logits[0]], lr=0.1)
    with torch.no_grad():
        before = float(exact_elbo(game, [l.softmax(-1) for l in logits], 0, args.alpha))
    for _ in range(50):
        loss = elbo_loss(agent_model, policy_guide, world, TabularPolicies(logits, logits=True), 0, args.alpha,
                         "score", num_particles=256)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(exact_elbo(game, [l.softmax(-1) for l in logits], 0, args.alpha))
    print(f"50 SVI steps on theta_0 (score function): exact ELBO_0 {before:.4f} -> {after:.4f}")


if __name__ == "__main__":
    main()
