"""Cost of one MA-SAC gradient step per critic form (``--critic``), with and without ``--share-params``, from 3 to 48
agents (cooperative navigation, ``N`` agents and landmarks; batch 1024, hidden 128), and its growth with n.

Each configuration runs in a fresh subprocess (so that its peak resident memory is its own): it builds the
learner on the torch backend's task spec, fills a buffer with random transitions, and times ``Learner.update``
(the whole step: actor, critic, Polyak) as the median of ``--steps`` steps after one warm-up step. Prints a table
(ms per step, peak RSS, speed-up over ``mlp``), fits the growth exponent ``ms ~ n^k`` from N = 6 to 48 per form,
and writes ``--out`` (JSON).

Usage: python benchmarks/bench_critics.py --threads 1 --out benchmarks/results/critics/bench_1thread.json
``--common-draws``: the actor step draws each agent's action once for all egos (``TrainConfig.common_draws``);
rows carry the flag, so both settings can share one ``--out`` file.

``--flops``: count instead of time. One step runs under ``torch.utils.flop_counter.FlopCounterMode`` (torch's own
count of the matrix products, mm / addmm / bmm / baddbmm, forward and backward; elementwise work is not counted),
so the table gives GFLOP per step and the FLOP ratio to ``mlp``: the speed-up a form would have if every
configuration ran its products at the same rate and spent nothing else. Counts do not depend on the machine's
load; dividing them by an idle timing of the same configuration gives the achieved GFLOP/s.

``--targets``: the comparisons behind issue 15's item 5 in one sitting (``mlp``, attention with common draws,
mean-field and local at N = 24 and 48, one network per agent), ``--rounds`` times, each round's ratios to
``mlp`` taken within the round (about 3 minutes a round on one thread): ``python benchmarks/bench_critics.py
--targets --threads 1 --steps 3 --out benchmarks/results/critics/targets.json``.

``--profile``: ``torch.profiler``'s table of one step per configuration (self CPU time per op), to see what a
step spends besides its products.

Comparing two commits on a loaded machine: alternate ``--one`` runs of the old and the new code, the old from a
worktree with ``PYTHONPATH`` naming it (``cd $WT && PYTHONPATH=$WT python benchmarks/bench_critics.py --one 48
mean-field no --threads 1 --steps 7``): without it the project's virtual environment imports this checkout's
``pgm_marl`` (an editable install) and both runs time the new code.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

# as the CLI (pgm_marl/cli.py): huge pages for torch's large tensors, read by torch at its first allocation (each
# configuration's subprocess inherits it); THP_MEM_ALLOC_ENABLE=0 python benchmarks/bench_critics.py ... times
# without them
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

FORMS = ("mlp", "attention", "mean-field", "local")


def setup(n: int, form: str, share: bool, threads: int, batch: int, common: bool = False):
    """The learner of one configuration and a buffer of ``2 batch`` random transitions."""
    import torch

    from pgm_marl.config import TrainConfig
    from pgm_marl.envs import VectorEnv
    from pgm_marl.learner import make_learner

    torch.set_num_threads(threads)
    cfg = TrainConfig(task="cooperative_navigation", env_kwargs=f"N={n}", critic=form, share_params=share,
                      batch_size=batch, buffer_size=2 * batch, progress=False, tensorboard=False, common_draws=common)
    spec = VectorEnv(cfg.task, num_envs=1, seed=0, backend="torch", **cfg.env_options()).spec
    learner = make_learner(spec, cfg)
    gen = torch.Generator().manual_seed(0)
    size = 2 * batch
    learner.memory.buffer.add(torch.randn(size, spec.state_dim, generator=gen),
                              torch.randint(5, (size, spec.n_agents), generator=gen),
                              torch.randn(size, spec.n_agents, generator=gen),
                              torch.randn(size, spec.state_dim, generator=gen), torch.zeros(size))
    return learner


def one(n: int, form: str, share: bool, threads: int, steps: int, batch: int, common: bool = False,
        flops: bool = False) -> dict:
    """Time ``steps`` gradient steps of one configuration in this process (or count one step's FLOPs)."""
    import torch

    from pgm_marl.session import peak_rss_mb

    learner = setup(n, form, share, threads, batch, common)
    params = sum(p.numel() for p in learner.critic.parameters())
    row = {"n": n, "critic": form, "share_params": share, "common_draws": common, "batch": batch,
           "huge_pages": os.environ["THP_MEM_ALLOC_ENABLE"] not in ("0", ""),
           "critic_params": params}
    if flops:
        from torch.utils.flop_counter import FlopCounterMode

        learner.update(learner.memory.sample())  # the first step builds what later steps reuse
        with FlopCounterMode(display=False) as counter:
            learner.update(learner.memory.sample())
        by_op = {str(op).split(".")[-1]: c / 1e9 for op, c in counter.get_flop_counts()["Global"].items()}
        return row | {"gflop": counter.get_total_flops() / 1e9, "gflop_by_op": by_op}
    times = []
    for k in range(steps + 1):
        b = learner.memory.sample()
        start = time.perf_counter()
        learner.update(b)
        if k:  # the first step warms up (allocations, MKL)
            times.append(time.perf_counter() - start)
    times.sort()
    return row | {"threads": threads, "ms": 1000 * times[len(times) // 2], "ms_all": [1000 * t for t in times],
                  "peak_rss_mb": peak_rss_mb()}


def growth(rows, form, share, common=False) -> float | None:
    """Least-squares slope of log ms on log n for N >= 6."""
    pts = [(math.log(r["n"]), math.log(r["ms"])) for r in rows if r["critic"] == form and r["share_params"] == share
           and r.get("common_draws", False) == common and r["n"] >= 6 and "ms" in r]
    if len(pts) < 2:
        return None
    mx, my = sum(x for x, _ in pts) / len(pts), sum(y for _, y in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


#: item 5 of issue 15: (N, form) -> how many times cheaper than ``mlp`` a step must be
TARGETS = {(24, "mean-field"): 8, (24, "attention"): 4, (48, "mean-field"): 10, (48, "attention"): 10}
TARGET_SIZES = (24, 48)


def targets(args) -> None:
    """``--targets``: ``mlp`` and each form at N = 24 and 48 (attention with common draws, its cheaper path), in
    ``--rounds`` rounds of one configuration after another, so that each round's ratios to ``mlp`` come from one
    window of the machine; prints each ratio's range over the rounds against its target, and the load average
    before and after (what the machine was doing)."""
    forms = [("mlp", False), ("attention", True), ("mean-field", False), ("local", False)]
    rows, load = [], [tuple(round(x, 2) for x in os.getloadavg())]
    for r in range(args.rounds):
        for n in TARGET_SIZES:
            for form, common in forms:
                steps = 2 if (n, form) == (48, "mlp") else args.steps  # ~20 s a step
                cmd = [sys.executable, __file__, "--one", str(n), form, "no", "--threads", str(args.threads),
                       "--steps", str(steps), "--batch", str(args.batch)] + (["--common-draws"] if common else [])
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, check=True)
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]) | {"round": r})
                print(f"round {r} N={n:<3} {form:<11} {rows[-1]['ms']:9.1f} ms/step", flush=True)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(rows, indent=1) + "\n")
    load.append(tuple(round(x, 2) for x in os.getloadavg()))
    print(f"\nload average (1, 5, 15 min) before {load[0]}, after {load[1]}; {args.threads} thread(s)\n"
          "| N | form | ms per step (rounds) | x cheaper than mlp (each round) | target |\n|---|---|---|---|---|")
    for n in TARGET_SIZES:
        for form, _ in forms:
            ms = [x["ms"] for x in rows if x["n"] == n and x["critic"] == form]
            ratios = [m["ms"] / x["ms"] for x in rows if x["n"] == n and x["critic"] == form
                      for m in rows if m["n"] == n and m["critic"] == "mlp" and m["round"] == x["round"]]
            goal = TARGETS.get((n, form))
            verdict = "" if goal is None else f"{goal}x: {'met' if min(ratios) >= goal else 'missed'}"
            print(f"| {n} | {form} | {' / '.join(f'{m:.0f}' for m in ms)} | "
                  f"{min(ratios):.1f}-{max(ratios):.1f}x | {verdict} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", type=int, nargs="+", default=[3, 6, 12, 24, 48])
    p.add_argument("--critics", nargs="+", default=list(FORMS), choices=FORMS)
    p.add_argument("--share", choices=("no", "yes", "both"), default="both")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=5, help="timed gradient steps per configuration (median)")
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--timeout", type=float, default=900, help="seconds per configuration")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--common-draws", action="store_true", help="TrainConfig.common_draws (README, Critic forms)")
    p.add_argument("--flops", action="store_true", help="count one step's matrix-product FLOPs instead of timing")
    p.add_argument("--profile", action="store_true",
                   help="print torch.profiler's table (self CPU time per op) of one step per configuration")
    p.add_argument("--targets", action="store_true",
                   help="item 5's targets: mlp and each form at N = 24 and 48, --rounds rounds, ratios per round")
    p.add_argument("--rounds", type=int, default=3, help="rounds of --targets")
    p.add_argument("--one", nargs=3, metavar=("N", "FORM", "SHARE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.targets:
        targets(args)
        return
    if args.one:
        n, form, share = int(args.one[0]), args.one[1], args.one[2] == "yes"
        print(json.dumps(one(n, form, share, args.threads, args.steps, args.batch, args.common_draws, args.flops)))
        return
    key = "gflop" if args.flops else "ms"
    shares = {"no": [False], "yes": [True], "both": [False, True]}[args.share]
    if args.profile:  # in this process, one configuration after another
        from torch.profiler import profile

        for n in args.agents:
            for form in args.critics:
                for share in shares:
                    learner = setup(n, form, share, args.threads, args.batch, args.common_draws)
                    learner.update(learner.memory.sample())  # warm-up
                    with profile() as prof:
                        learner.update(learner.memory.sample())
                    print(f"N={n} {form} share={'yes' if share else 'no'} "
                          f"{'common' if args.common_draws else 'per-ego'} draws, {args.threads} thread(s)")
                    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25), flush=True)
        return
    rows = json.loads(args.out.read_text()) if args.out and args.out.exists() else []
    done = {(r["n"], r["critic"], r["share_params"], r.get("common_draws", False)) for r in rows if key in r}
    print(f"{os.cpu_count()} CPUs, {args.threads} torch thread(s), batch {args.batch}", flush=True)
    for n in args.agents:
        for form in args.critics:
            for share in shares:
                if (n, form, share, args.common_draws) in done:
                    continue
                cmd = [sys.executable, __file__, "--one", str(n), form, "yes" if share else "no",
                       "--threads", str(args.threads), "--steps", str(args.steps), "--batch", str(args.batch)]
                cmd += ["--common-draws"] if args.common_draws else []
                cmd += ["--flops"] if args.flops else []
                try:
                    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
                    row = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else \
                        {"n": n, "critic": form, "share_params": share, "common_draws": args.common_draws,
                         "error": out.stderr.strip()[-300:]}
                except subprocess.TimeoutExpired:
                    row = {"n": n, "critic": form, "share_params": share, "common_draws": args.common_draws,
                           "error": f"over {args.timeout:.0f}s"}
                rows.append(row)
                print(f"N={n:<3} {form:<11} share={'yes' if share else 'no ':<4} "
                      f"{'common draws ' if args.common_draws else ''}" +
                      (f"{row['ms']:9.1f} ms/step  peak RSS {row['peak_rss_mb']:8.0f} MB" if "ms" in row
                       else f"{row['gflop']:9.2f} GFLOP/step" if "gflop" in row else row["error"]), flush=True)
                if args.out:  # resumable: each finished configuration is kept
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    if args.flops:
        print("\n| N | critic | share | draws | GFLOP/step | mlp's / this form's (the FLOP bound on the speed-up) |\n"
              "|---|---|---|---|---:|---:|")
    else:
        print("\n| N | critic | share | draws | ms/step | x faster than mlp (per-ego draws) | peak RSS (MB) |\n"
              "|---|---|---|---|---|---|---|")
    for r in sorted((r for r in rows if key in r),
                    key=lambda r: (r["n"], r["share_params"], r["critic"], r.get("common_draws", False))):
        ref = next((m[key] for m in rows if m.get("critic") == "mlp" and m["n"] == r["n"] and key in m
                    and m["share_params"] == r["share_params"] and not m.get("common_draws", False)), None)
        speed = f"{ref / r[key]:.1f}" if ref else "-"
        draws = "common" if r.get("common_draws", False) else "per-ego"
        print(f"| {r['n']} | {r['critic']} | {'yes' if r['share_params'] else 'no'} | {draws} | " +
              (f"{r['gflop']:.2f} | {speed} |" if args.flops else f"{r['ms']:.1f} | {speed} | {r['peak_rss_mb']:.0f} |"))
    if args.flops:
        return
    print("\ngrowth exponent k (ms ~ N^k, N = 6..48):")
    for form in args.critics:
        for share in shares:
            k = growth(rows, form, share, args.common_draws)
            print(f"  {form:<11} share={'yes' if share else 'no'}: {'-' if k is None else f'{k:.2f}'}")


if __name__ == "__main__":
    main()
