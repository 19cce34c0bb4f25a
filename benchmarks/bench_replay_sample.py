"""Cost of sampling a batch from the replay buffer at many agents (part of every gradient step's learn time;
``bench_critics.py`` times ``Learner.update`` on a batch already sampled, so it does not see this).

A buffer is filled with ``--rows`` transitions of cooperative navigation's state at ``--agents`` agents (``6 N^2``
floats a state), in episodes of 25 steps of 8 environment copies, so the next states are links to the next row
and, at each episode's end, tail rows; then ``--samples`` batches of ``--batch`` are drawn and the median time
printed, with a checksum of the last batch (equal checksums: the same rows were read).

    python benchmarks/bench_replay_sample.py --agents 48          # 20 000 transitions of 13 824 floats, ~1.2 GB

To compare two commits, run it from a worktree of the older one with ``PYTHONPATH`` naming that worktree (the
project's virtual environment otherwise imports this checkout's ``pgm_marl``).
"""
from __future__ import annotations

import argparse
import time

import torch

from pgm_marl.replay import ReplayBuffer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=48)
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--samples", type=int, default=9)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    n, copies = args.agents, 8
    dim = 6 * n * n
    buffer = ReplayBuffer(375_000, dim, n)
    g = torch.Generator().manual_seed(0)
    state = torch.randn(copies, dim, generator=g)
    for step in range(args.rows // copies):
        following = state + 0.01
        done = torch.full((copies,), float((step + 1) % 25 == 0))
        buffer.add(state, torch.zeros(copies, n, dtype=torch.long), torch.zeros(copies, n), following, done)
        state = following
    gen = torch.Generator().manual_seed(1)
    buffer.sample(args.batch, gen)  # warm-up
    times = []
    for _ in range(args.samples):
        start = time.perf_counter()
        batch = buffer.sample(args.batch, gen)
        times.append(time.perf_counter() - start)
    times.sort()
    checksum = float(batch.state.double().sum() + batch.next_state.double().sum())
    print(f"N = {n} ({dim} floats a state), {len(buffer)} transitions, batch {args.batch}, {args.threads} thread(s): "
          f"median {1e3 * times[len(times) // 2]:.1f} ms, min {1e3 * times[0]:.1f} ms; checksum {checksum:.6e}")


if __name__ == "__main__":
    main()
