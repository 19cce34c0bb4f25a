"""Where a gradient step's time goes, and what bounds it (docs/RESULTS.md, "Levers tried in the second session").

1. This machine's GEMM peak: a batched product shaped like the critics' hidden layer ([6, 1024, 128] x
   [6, 128, 128]) and a 2048 x 2048 product, in float32 and bfloat16.
2. The phases of one MA-SAC step (cooperative navigation, Pyro actor path), timed one by one: actor loss
   forward, critic loss forward (with its target), each backward, each Adam step, Polyak; at ``--batch`` and at
   batch 8, where the arithmetic is negligible and what remains is the fixed (Python, dispatch) cost.
3. ``--compile``: the step with the critic loss under ``torch.compile`` against eager, alternating.

Usage: python benchmarks/bench_step_anatomy.py [--threads 1] [--batch 1024] [--precision float32] [--compile]
Report the machine state (idle or shared) with the numbers.
"""
import argparse
import time

import pyro
import torch
from bench_training import random_replay  # (benchmarks/ is on the path when a script here runs)

from pgm_marl.config import TrainConfig
from pgm_marl.envs import make_env
from pgm_marl.learner import make_learner
from pgm_marl.networks import polyak_update


def median_ms(fn, reps: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[reps // 2]


def gemm_peaks(reps: int) -> None:
    print("== GEMM throughput ==")
    for dtype in (torch.float32, torch.bfloat16):
        a, w = torch.randn(6, 1024, 128, dtype=dtype), torch.randn(6, 128, 128, dtype=dtype)
        big_a, big_b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
        bmm = 2 * 6 * 1024 * 128 * 128 / median_ms(lambda: torch.bmm(a, w), reps) / 1e6
        mm = 2 * 2048 ** 3 / median_ms(lambda: big_a @ big_b, max(3, reps // 10)) / 1e6
        print(f"  {str(dtype):<15} bmm [6,1024,128]x[6,128,128] {bmm:6.0f} GFLOP/s, 2048^2 mm {mm:6.0f} GFLOP/s")


def learner_and_buffer(batch: int, precision: str):
    _, spec = make_env("cooperative_navigation")
    cfg = TrainConfig(task="cooperative_navigation", algo="masac", batch_size=batch, precision=precision,
                      progress=False, tensorboard=False)
    learner = make_learner(spec, cfg)
    gen = torch.Generator().manual_seed(0)
    return learner, random_replay(spec, learner.spaces, 10 * max(batch, 1024), gen), gen


def phases(batch: int, precision: str, reps: int) -> None:
    """The phases of ``Learner.update`` in its order, each timed on its own (medians)."""
    learner, buffer, gen = learner_and_buffer(batch, precision)
    loss, opts = learner.loss, learner.optimizers
    times = {}

    def tick(name, start):
        now = time.perf_counter()
        times.setdefault(name, []).append(now - start)
        return now

    for _ in range(reps + 3):
        b = buffer.sample(batch, gen)
        t = time.perf_counter()
        with pyro.validation_enabled(False):
            terms = loss.actor_terms(b)
            t = tick("actor loss forward (Pyro)", t)
            critic = loss.critic_loss(b)
            t = tick("critic loss forward (with target)", t)
        opts["loss/actor"].zero_grad(set_to_none=True)
        (-terms["alpha_elbo"].sum()).backward()
        t = tick("actor backward", t)
        opts["loss/actor"].step()
        t = tick("actor Adam", t)
        opts["loss/critic"].zero_grad(set_to_none=True)
        critic.backward()
        t = tick("critic backward", t)
        opts["loss/critic"].step()
        t = tick("critic Adam", t)
        polyak_update(learner.target_actors, learner.actors, learner.cfg.tau)
        polyak_update(learner.target_critic, learner.critic, learner.cfg.tau)
        tick("Polyak", t)
    print(f"== phases of one step, batch {batch}, {precision}, {torch.get_num_threads()} thread(s) (medians) ==")
    total = 0.0
    for name, ts in times.items():
        ms = 1000 * sorted(ts[3:])[reps // 2]
        total += ms
        print(f"  {name:<36}{ms:7.2f} ms")
    print(f"  {'sum':<36}{total:7.2f} ms")


def compiled_critic(batch: int, precision: str, reps: int) -> None:
    eager, buffer, gen = learner_and_buffer(batch, precision)
    compiled, _, _ = learner_and_buffer(batch, precision)
    start = time.perf_counter()
    compiled.loss.critic_loss = torch.compile(compiled.loss.critic_loss, dynamic=False)
    compiled.update(buffer.sample(batch, gen))
    print(f"== torch.compile of the critic loss (first call incl. compilation {time.perf_counter() - start:.1f} s) ==")
    for _ in range(2):
        for label, learner in (("eager", eager), ("compiled critic loss", compiled)):
            print(f"  {label:<22}{median_ms(lambda: learner.update(buffer.sample(batch, gen)), reps):7.1f} ms / step")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--precision", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--reps", type=int, default=31, help="timed repetitions per measurement (medians)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile of the critic loss")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    gemm_peaks(args.reps)
    for batch in (args.batch, 8):
        phases(batch, args.precision, args.reps)
    if args.compile:
        compiled_critic(args.batch, args.precision, args.reps)


if __name__ == "__main__":
    main()
