"""Command line: ``pgm-marl train [--FIELD VALUE ...] [--resume]``, ``pgm-marl evaluate RUN_DIR`` and ``pgm-marl
drop-replay RUN_DIR...``; ``pgm-marl sweep`` and ``pgm-marl report SWEEP_DIR`` are built in :mod:`pgm_marl.sweep`
and :mod:`pgm_marl.report`.

The ``train`` flags are generated from :class:`~pgm_marl.config.TrainConfig` (``batch_size`` ->
``--batch-size``), with each field's help text, by :mod:`pgm_marl.flags` (as are the ``sweep`` flags). User
mistakes (:class:`~pgm_marl.errors.UserError`, and argparse's own errors) print one line on stderr and exit 2;
non-finite numbers in a run exit 3; any other exception is a bug and keeps its traceback (exit 1).
"""
from __future__ import annotations

import os

# Before torch is imported: torch reads THP_MEM_ALLOC_ENABLE at its first allocation and then backs every CPU
# tensor of 2 MB or more with transparent huge pages (madvise). Without it, each large activation of a step at
# many agents (50 MB at N = 48) is mapped, faulted in 4 KB pages and unmapped again: ~300k page faults and ~0.5 s
# of kernel time per gradient step at N = 48 (docs/RESULTS.md, "Huge pages (c302312)"). Same numbers either way; set
# THP_MEM_ALLOC_ENABLE=0 to turn it off. Library users who import torch themselves set it in their environment.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import argparse  # noqa: E402
import sys
from pathlib import Path
from typing import List, Optional

from .config import TrainConfig
from .errors import CheckpointError, MissingFileError, UserError, one_line
from .flags import add_config_flags, int_at_least
from .report import add_report_parser, cmd_report
from .runfolder import check_out_folder, check_output_file
from .sweep import add_sweep_parser, cmd_sweep


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``prog: error: message (see prog --help)``), exit 2.
    Subparsers made by ``add_subparsers().add_parser`` are of the same class."""

    def error(self, message: str):
        hint = ""
        if "expected one argument" in message:  # argparse reads '--tau -inf' as two flags
            hint = "; a value that starts with '-' is written --flag=VALUE"
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}{hint} (see {self.prog} --help)\n")


def _team_run(text: str) -> tuple:
    """``TEAM=RUN_DIR`` of ``evaluate --team``."""
    team, sep, run = text.partition("=")
    if not sep or not team.strip() or not run.strip():
        raise argparse.ArgumentTypeError(f"got {text!r}; accepted: TEAM=RUN_DIR, e.g. prey=runs/other")
    return team.strip(), run.strip()


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="pgm-marl", description="Multi-agent RL as probabilistic inference (MA-SAC)")
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train agents; writes a run folder (--out)")
    add_config_flags(tr)
    tr.add_argument("--resume", action="store_true",
                    help="continue the run in --out from its checkpoint (given flags override its config.json)")
    ev = sub.add_parser("evaluate", help="evaluate a trained run with deterministic policies")
    ev.add_argument("run_dir", metavar="RUN_DIR", help="run folder with config.json and checkpoint.pt")
    ev.add_argument("--episodes", type=int_at_least(1), default=100, help="evaluation episodes (default: 100)")
    ev.add_argument("--seed", type=int_at_least(0), default=None,
                    help="env seed, >= 0 (default: the run's seed + eval_seed_offset)")
    ev.add_argument("--gif", default=None, metavar="PATH", help="also render one episode to this animated GIF (.gif)")
    ev.add_argument("--team", action="append", default=[], metavar="TEAM=RUN_DIR", type=_team_run,
                    help="cross-play: TEAM acts by RUN_DIR's policies (a run of the same task), e.g. "
                         "--team prey=runs/other; repeatable")
    dr = sub.add_parser("drop-replay", help="delete the replay buffer of finished runs' checkpoints (evaluate still "
                        "reads them; they can no longer be extended)")
    dr.add_argument("run_dirs", metavar="RUN_DIR", nargs="+",
                    help="run folders of finished runs, or folders of runs (a sweep's: its unfinished runs skipped)")
    add_sweep_parser(sub)
    add_report_parser(sub)
    return parser


def cmd_train(args: argparse.Namespace) -> None:
    given = {k: v for k, v in vars(args).items() if k not in ("command", "resume")}
    if args.resume:
        out = Path(given.get("out", TrainConfig.out))
        if not out.is_dir():
            raise MissingFileError(f"cannot resume: no run folder at --out {out}; accepted: a folder written by "
                                   "pgm-marl train")
        cfg = TrainConfig.from_dict({**TrainConfig.load(out / "config.json").to_dict(), **given})
    else:
        cfg = TrainConfig(**given)
    check_out_folder(cfg.out)
    from .train import train  # after the checks above: flag mistakes are reported without importing torch

    train(cfg, resume=args.resume)


def cmd_evaluate(args: argparse.Namespace) -> None:
    if args.gif:
        check_output_file(args.gif, "--gif", suffix=".gif")
    from .evaluate import evaluate, load_trained, render_gif, with_teams_from

    named = [team for team, _ in args.team]
    twice = sorted({team for team in named if named.count(team) > 1})
    if twice:  # (a dict would keep the last silently)
        raise UserError(f"--team names {', '.join(twice)} more than once; accepted: each team at most once, e.g. "
                        "--team prey=runs/other")
    cfg, spec, policies, counters = load_trained(args.run_dir)
    teams = dict(args.team)
    policies = with_teams_from(args.run_dir, policies, teams)
    seed = cfg.seed + cfg.eval_seed_offset if args.seed is None else args.seed
    returns = evaluate(policies, spec, cfg, args.episodes, seed)
    crossed = "".join(f", {team} from {run}" for team, run in teams.items())
    print(f"{cfg.task} / {cfg.algo}, episode {counters['episode']}{crossed}, "
          f"{args.episodes} episodes (seed {seed}), deterministic policies:")
    for team, value in returns.items():
        print(f"  return/{team}: {value:.3f}")
    if args.gif:
        print(f"gif: {render_gif(policies, spec, cfg, args.gif, seed)}")


def cmd_drop_replay(args: argparse.Namespace) -> None:
    """Each RUN_DIR a run folder (refused unless finished), or a folder of runs (a sweep's): there, every finished
    run below it, the others skipped and listed."""
    from .session import drop_replay

    total = 0
    for folder in map(Path, args.run_dirs):
        if (folder / "checkpoint.pt").is_file() or not folder.is_dir():
            runs, sweep = [folder], False  # (a missing folder: drop_replay's one-line error)
        else:
            runs, sweep = sorted(p.parent for p in folder.rglob("checkpoint.pt")), True
            if not runs:
                raise MissingFileError(f"no run folder (checkpoint.pt) in {folder}; accepted: a run folder or a "
                                       "folder of runs")
        for run in runs:
            try:
                freed = drop_replay(run)
            except CheckpointError as err:
                if not sweep:
                    raise
                print(f"{run}: skipped ({one_line(err)})")
                continue
            total += freed
            print(f"{run}: " + (f"replay dropped, {freed / 1e9:.2f} GB freed" if freed else "no replay left to drop"))
    print(f"{total / 1e9:.2f} GB freed")


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        {"train": cmd_train, "evaluate": cmd_evaluate, "drop-replay": cmd_drop_replay, "sweep": cmd_sweep,
         "report": cmd_report}[args.command](args)
    except UserError as err:  # a user mistake (TaskError, config, checkpoint, run folder) or non-finite numbers
        print(f"error: {one_line(err)}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted; continue from the last checkpoint with --resume", file=sys.stderr)
        return 130
    return 0  # anything else is a bug: it propagates with its traceback (exit 1)


if __name__ == "__main__":
    sys.exit(main())
