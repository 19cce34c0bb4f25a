"""Cost of the checkpoints of a run whose replay grows: the whole buffer in ``checkpoint.pt`` each time (before
incremental checkpoints) against chunk files beside it, written only when they changed (``TensorFiles``).

A buffer of ``--rows`` transitions of cooperative navigation's state at ``--agents`` agents is filled in
``--checkpoints`` equal parts, with a checkpoint after each part (as a paper-budget run does every 1000 of its
15 000 episodes). Reports seconds and bytes written per strategy, and checks that both load back equal.

    python benchmarks/bench_checkpoint.py --agents 24 --rows 75000     # 1/5 of a paper run's replay at N = 24
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from pgm_marl.checkpoint import TensorFiles, load_checkpoint, save_checkpoint
from pgm_marl.replay import STORAGE_DTYPES, ReplayBuffer


def sizes(folder: Path) -> dict:
    """Size of each file under ``folder`` by path."""
    return {q: q.stat().st_size for q in folder.rglob("*") if q.is_file()} if folder.exists() else {}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, default=24)
    p.add_argument("--rows", type=int, default=75_000, help="transitions at the end (a paper run: 375 000)")
    p.add_argument("--checkpoints", type=int, default=14)
    p.add_argument("--copies", type=int, default=100, help="transitions per add (env copies)")
    p.add_argument("--replay-dtype", choices=sorted(STORAGE_DTYPES), default="float32")
    p.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp folder)")
    args = p.parse_args()
    n = args.agents
    state_dim = n * (6 * n - 2)  # cooperative navigation: N observations of 6N - 2 floats
    dtype = STORAGE_DTYPES[args.replay_dtype]
    g = torch.Generator().manual_seed(0)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        buf = ReplayBuffer(args.rows, state_dim, n, storage_dtype=dtype)
        files = TensorFiles.beside(tmp / "incremental" / "checkpoint.pt")
        seconds, written = {"full": 0.0, "incremental": 0.0}, {"full": 0, "incremental": 0}
        per_part = args.rows // args.checkpoints
        s = torch.randn(args.copies, state_dim, generator=g)
        for part in range(args.checkpoints):
            for _ in range(per_part // args.copies):
                ns = torch.randn(args.copies, state_dim, generator=g)
                buf.add(s, torch.randint(5, (args.copies, n), generator=g), torch.randn(args.copies, n, generator=g),
                        ns, torch.zeros(args.copies))
                s = ns
            for name in ("full", "incremental"):
                path = tmp / name / "checkpoint.pt"
                store = files if name == "incremental" else None
                before = sizes(files.folder) if store else {}
                start = time.perf_counter()
                save_checkpoint(path, {"buffer": buf.state_dict(store)}, store)
                seconds[name] += time.perf_counter() - start
                new = [size for q, size in sizes(files.folder).items() if q not in before] if store else []
                written[name] += path.stat().st_size + sum(new)
            print(f"checkpoint {part + 1}/{args.checkpoints}: {len(buf)} transitions, replay {buf.nbytes / 1e9:.2f} GB; "
                  f"so far full {seconds['full']:.1f} s, incremental {seconds['incremental']:.1f} s", flush=True)
        a, b = (load_checkpoint(tmp / name / "checkpoint.pt")["buffer"] for name in ("full", "incremental"))
        assert all(torch.equal(a["chunks"][r][c], b["chunks"][r][c]) for r in a["chunks"] for c in a["chunks"][r])
    print(f"\n{args.checkpoints} checkpoints of a replay growing to {args.rows} transitions, N = {n} "
          f"(state {state_dim} floats, {args.replay_dtype}), {torch.get_num_threads()} torch thread(s):")
    for name in ("full", "incremental"):
        print(f"  {name:<12} {seconds[name]:7.1f} s, about {written[name] / 1e9:6.2f} GB written")
    print(f"  ratio {seconds['full'] / max(seconds['incremental'], 1e-9):.1f}x")


if __name__ == "__main__":
    main()
