"""Command line: ``pgm-marl train [--FIELD VALUE ...] [--resume]`` and ``pgm-marl evaluate RUN_DIR``.

The ``train`` flags are generated from :class:`~pgm_marl.config.TrainConfig` (``batch_size`` ->
``--batch-size``), with each field's help text. User mistakes print ``error: <message>`` and exit 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path
from typing import List, Optional

from .config import TrainConfig


def _optional_float(text: str) -> Optional[float]:
    return None if text.lower() in ("none", "paper") else float(text)


def _optional_str(text: str) -> Optional[str]:
    return None if text.lower() == "none" else text


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per TrainConfig field; unset flags stay absent from the namespace."""
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        flag, kind = "--" + f.name.replace("_", "-"), hints[f.name]
        help_text = f"{f.metadata['help']} (default: {f.default})"
        if kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)
        else:
            conv = {Optional[float]: _optional_float, Optional[str]: _optional_str}.get(kind, kind)
            metavar = {Optional[float]: "FLOAT|none", Optional[str]: "TEXT|none"}.get(kind, f.name.upper())
            parser.add_argument(flag, dest=f.name, type=conv, default=argparse.SUPPRESS,
                                metavar=metavar, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pgm-marl", description="Multi-agent RL as probabilistic inference (MA-SAC)")
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train agents; writes a run folder (--out)")
    add_config_flags(tr)
    tr.add_argument("--resume", action="store_true",
                    help="continue the run in --out from its checkpoint (given flags override its config.json)")
    ev = sub.add_parser("evaluate", help="evaluate a trained run with deterministic policies")
    ev.add_argument("run_dir", metavar="RUN_DIR", help="run folder with config.json and checkpoint.pt")
    ev.add_argument("--episodes", type=int, default=100, help="evaluation episodes (default: 100)")
    ev.add_argument("--seed", type=int, default=None, help="env seed (default: the run's seed + eval_seed_offset)")
    ev.add_argument("--gif", default=None, metavar="PATH", help="also render one episode to this animated GIF")
    return parser


def cmd_train(args: argparse.Namespace) -> None:
    from .train import train

    given = {k: v for k, v in vars(args).items() if k not in ("command", "resume")}
    if args.resume:
        out = Path(given.get("out", TrainConfig.out))
        cfg = TrainConfig.from_dict({**TrainConfig.load(out / "config.json").to_dict(), **given})
    else:
        cfg = TrainConfig(**given)
    train(cfg, resume=args.resume)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from .checkpoint import load_checkpoint
    from .envs import make_env
    from .evaluate import evaluate, render_gif
    from .train import make_learner

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no run folder at {run_dir}")
    cfg = TrainConfig.load(run_dir / "config.json")
    ckpt = load_checkpoint(run_dir / "checkpoint.pt")
    _, spec = make_env(cfg.task, max_cycles=cfg.max_cycles, **cfg.env_options())
    learner = make_learner(spec, cfg)
    learner.load_state_dict(ckpt["learner"])
    seed = cfg.seed + cfg.eval_seed_offset if args.seed is None else args.seed
    returns = evaluate(learner, spec, cfg, args.episodes, seed)
    print(f"{cfg.task} / {cfg.algo}, episode {ckpt['counters']['episode']}, "
          f"{args.episodes} episodes (seed {seed}), deterministic policies:")
    for team, value in returns.items():
        print(f"  return/{team}: {value:.3f}")
    if args.gif:
        print(f"gif: {render_gif(learner, spec, cfg, args.gif, seed)}")


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        {"train": cmd_train, "evaluate": cmd_evaluate}[args.command](args)
    except (ValueError, FileNotFoundError, FileExistsError) as err:  # TaskError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; continue from the last checkpoint with --resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
