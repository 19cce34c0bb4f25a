"""How well each agent's model of the others, rho_i^j, matches their policies pi_j at the end of a
``masac-inferred`` / ``masac-optimistic`` run (issue 16 item 1's diagnostic, which a sweep without TensorBoard does
not keep). For each run folder: load its checkpoint (learner and replay buffer) and, at the states of ``--batch``
transitions drawn uniformly from its buffer and at the buffer's newest ``--batch`` transitions, print for each
pair (i, j): KL(pi_j || rho_i^j), the entropies H(pi_j) and H(rho_i^j), and the mean negative log-likelihood of
the stored a_j under rho_i^j and under the current pi_j (discrete actions: exact sums). Nothing is trained.

Usage: python benchmarks/opponent_kl.py benchmarks/results/others/cooperative_communication__masac-inferred__seed*
"""
import argparse
from pathlib import Path

import torch

from pgm_marl.checkpoint import load_checkpoint, restore
from pgm_marl.config import TrainConfig
from pgm_marl.envs import make_env
from pgm_marl.learner import make_learner


def pair_table(learner, batch) -> list[dict]:
    """Per (ego i, other j): KL(pi_j || rho_i^j), H(pi_j), H(rho_i^j) and the NLL of the batch's a_j under each."""
    others, spaces = learner.others, learner.spaces
    obs = learner.actors.observations(batch.state)
    actions = spaces.encode(batch.actions)
    rows = []
    with torch.no_grad():
        pi, rho = learner.actors(obs), others.opponents(obs)
        for (e, j), k in others.pair_index.items():
            if not spaces[j].enumerable:
                raise SystemExit("opponent_kl.py sums over actions: discrete actions only")
            sites = (spaces[j].policy_site(spaces.own(pi, j), "reparam", 1.0),
                     others.model[j].policy_site(rho[k, ..., : others.model.param_dims[j]], "reparam", 1.0))
            grid = spaces[j].enumerate().to(pi.dtype)[:, None, :]  # [A, 1, size]
            log_pi, log_rho = (site.log_prob(grid) for site in sites)  # [A, B]
            rows.append({"ego": learner.spec.agents[e], "other": learner.spec.agents[j],
                         "kl": float((log_pi.exp() * (log_pi - log_rho)).sum(0).mean()),
                         "h_pi": float(-(log_pi.exp() * log_pi).sum(0).mean()),
                         "h_rho": float(-(log_rho.exp() * log_rho).sum(0).mean()),
                         "nll_pi": float(-sites[0].log_prob(actions[j]).mean()),
                         "nll_rho": float(-sites[1].log_prob(actions[j]).mean())})
    return rows


def load(run_dir: Path):
    cfg = TrainConfig.load(run_dir / "config.json")
    _, spec = make_env(cfg.task, max_cycles=cfg.max_cycles, **cfg.env_options())
    learner = make_learner(spec, cfg)
    if learner.others is None or learner.others.opponents is None:
        raise SystemExit(f"{run_dir}: --algo {cfg.algo!r} keeps no model of the others (rho)")
    path = run_dir / "checkpoint.pt"
    ckpt = load_checkpoint(path, required=("learner", "buffer"))
    restore(path, "learner", learner.load_state_dict, ckpt["learner"])
    restore(path, "buffer", learner.memory.load_state_dict, ckpt["buffer"])
    return learner


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="run folders of runs that infer the others (checkpoint.pt)")
    p.add_argument("--batch", type=int, default=4096, help="transitions drawn from each run's buffer")
    args = p.parse_args()
    print("| run | states | i -> j | KL(pi_j || rho_i^j) | H(pi_j) | H(rho_i^j) | NLL of a_j: pi_j | rho_i^j |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for run in args.runs:
        learner = load(run)
        buffer = learner.memory.buffer
        batches = {"uniform": buffer.sample(args.batch, torch.Generator().manual_seed(0)),
                   "newest": buffer.latest(args.batch)}
        for where, batch in batches.items():
            for r in pair_table(learner, batch):
                print(f"| {run.name} | {where} | {r['ego']} -> {r['other']} | {r['kl']:.3f} | {r['h_pi']:.3f} "
                      f"| {r['h_rho']:.3f} | {r['nll_pi']:.3f} | {r['nll_rho']:.3f} |")


if __name__ == "__main__":
    main()
