"""KL(pi_j || rho_i^j) of trained ``masac-inferred`` runs: how well each agent's model of the others matches their
policies at the end of training (the diagnostic of issue 16 item 1, which a sweep without TensorBoard does not
keep). For each run folder: load its checkpoint (learner and replay buffer), draw ``--batch`` transitions from
its buffer with a fixed seed, and print the mean over agent i's opponents of KL(pi_j || rho_i^j) at those
states, per agent i. Nothing is trained.

Usage: python benchmarks/opponent_kl.py benchmarks/results/others/cooperative_communication__masac-inferred__seed*
"""
import argparse
from pathlib import Path

import torch

from pgm_marl.checkpoint import load_checkpoint, restore
from pgm_marl.config import TrainConfig
from pgm_marl.envs import make_env
from pgm_marl.learner import make_learner


def opponent_kl(run_dir: Path, batch: int) -> dict[str, float]:
    cfg = TrainConfig.load(run_dir / "config.json")
    _, spec = make_env(cfg.task, max_cycles=cfg.max_cycles, **cfg.env_options())
    learner = make_learner(spec, cfg)
    if learner.others is None or learner.others.opponents is None:
        raise SystemExit(f"{run_dir}: --algo {cfg.algo!r} keeps no model of the others (rho)")
    path = run_dir / "checkpoint.pt"
    ckpt = load_checkpoint(path, required=("learner", "buffer"))
    restore(path, "learner", learner.load_state_dict, ckpt["learner"])
    restore(path, "buffer", learner.memory.load_state_dict, ckpt["buffer"])
    sample = learner.memory.buffer.sample(batch, torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = learner.loss(sample)
    return {k.rsplit("/", 1)[-1]: float(v) for k, v in out.items() if k.startswith("opponents/kl/")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="run folders of masac-inferred runs (with checkpoint.pt)")
    p.add_argument("--batch", type=int, default=4096, help="transitions drawn from each run's buffer")
    args = p.parse_args()
    for run in args.runs:
        kl = opponent_kl(run, args.batch)
        print(f"{run}: " + ", ".join(f"{agent} {value:.4f}" for agent, value in kl.items()))


if __name__ == "__main__":
    main()
