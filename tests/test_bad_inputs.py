"""Regression corpus of bad inputs, run through the real CLI in subprocesses.

Every case must exit 2 with exactly one line on stderr, no traceback, and a message that names the bad value, on
each environment backend (:data:`BACKENDS`: ``train`` cases get ``--backend``, ``evaluate`` cases read a run trained
on that backend); :data:`TORCH_ONLY` adds the torch backend's own checks (options that only mpe2 runs).
The cases that point at an existing run (or at damaged copies of it) must not change any of its files, and no
case may create anything in the working directory. A genuine internal error must keep its traceback (exit 1).

Speed: a fresh ``python -m pgm_marl`` costs 2-3 s of imports (torch, matplotlib) before the first check, so the
whole corpus runs in processes forked from one server that imported the CLI once (:data:`FORK_SERVER`): each
case is its own process, with its own stdout/stderr file descriptors and exit status, running
``sys.exit(pgm_marl.cli.main(argv))`` as the ``pgm-marl`` entry point does (an uncaught exception prints its
traceback and exits 1, like the interpreter). :data:`FRESH` cases also run as real ``python -m pgm_marl``.
"""
import hashlib
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from pgm_marl import cli
from pgm_marl.checkpoint import load_checkpoint
from pgm_marl.config import TrainConfig
from pgm_marl.train import train

TINY = dict(task="cooperative_navigation", episodes=2, max_cycles=5, hidden=8, batch_size=8, learning_starts=0,
            update_every=5, buffer_size=100, eval_every=2, eval_episodes=2, checkpoint_every=2, progress=False,
            tensorboard=False)

#: the backends every case runs on (``train`` cases get ``--backend``; ``evaluate`` cases read a run of that backend)
BACKENDS = ("torch", "pettingzoo")


def _path_task(expected: str, task: str) -> dict:
    """The expected message of an import-path case: mpe2 runs it (pettingzoo); the torch backend refuses the task."""
    return {"pettingzoo": expected, "torch": f"backend 'torch' cannot run {task!r}: it implements only the four paper"}


#: (argv with {placeholders}, a substring the one-line message must contain: the bad value, named; or one such
#: substring per backend); every case runs on every backend of BACKENDS
CASES = [
    # flags, refused by the config before torch is imported
    ("train --episodes 0", "episodes must be a positive int, got 0"),
    ("train --alpha inf", "alpha must be finite, got inf"),
    ("train --lr nan", "lr must be finite, got nan"),
    ("train --tau=-inf", "tau must be finite, got -inf"),
    ("train --tau -inf", "written --flag=VALUE"),
    ("train --gamma 1.5", "gamma must be a float in [0, 1], got 1.5"),
    ("train --learning-starts -1", "learning_starts must be a non-negative int, got -1"),
    ("train --buffer-size 10 --batch-size 20", "buffer_size (10) must be >= batch_size (20)"),
    ("train --batch-size abc", "invalid int value: 'abc'"),
    ("train --no-such-flag 3", "--no-such-flag"),
    ("train --env-kwargs N=(3", "value '(3' of N does not parse"),
    ("train --env-kwargs =3", "bad entry '=3'"),
    ("train --env-kwargs x=1e999", "value '1e999' of x is not finite"),
    ("train --teams red", "bad entry 'red'"),
    ("train --critic gnn", "critic must be one of mlp, attention, mean-field, local, got 'gnn'"),
    ("train --replay-dtype int8", "replay_dtype must be one of float32, float16, bfloat16, got 'int8'"),
    # run folders
    ("train --out {file}", "is an existing file"),
    ("train --out {file}/run", "is a file, not a folder"),
    ("train --out {unwritable}", "{unwritable_name}"),
    ("train --out {run}", "already holds a checkpoint"),
    ("train --out {run} --resume --seed 3", "seed=3 differs"),
    ("train --out {run} --resume --critic attention", "critic='attention' differs"),
    ("train --out {run} --resume --common-draws", "common_draws=True differs"),
    ("train --out {tmp}/nothing_here --resume", "no run folder at --out"),
    ("train --out {no_ckpt} --resume", "no checkpoint at"),
    ("train --out {bad_keys} --resume", "lacks learner, buffer, config, timing, rng, counters"),
    ("train --out {corrupt} --resume", "corrupt or not a checkpoint"),
    ("train --out {misfit} --resume", "does not fit this run's learner"),
    ("train --out {bad_config} --resume", "alpha must be finite, got inf"),
    # tasks, env arguments, algorithms
    ("train --task no_such_task", "unknown task 'no_such_task'"),
    ("train --task no.such.module", _path_task("unknown import path 'no.such.module'", "no.such.module")),
    ("train --task collections:OrderedDict",
     _path_task("does not produce a PettingZoo ParallelEnv", "collections:OrderedDict")),
    ("train --task mpe2.simple_spread_v3 --env-kwargs local_ratio=2",
     _path_task("'local_ratio': 2", "mpe2.simple_spread_v3")),
    ("train --task mpe2.simple_spread_v3 --env-kwargs bogus=1", _path_task("bogus", "mpe2.simple_spread_v3")),
    ("train --task mpe2.simple_push_v3 --env-kwargs continuous_actions=True",
     _path_task("has no temperature in the paper", "mpe2.simple_push_v3")),
    ("train --env-kwargs continuous_actions=True --algo masac-exact", "Box(d=5), but the exact estimator"),
    ("train --task mpe2.simple_spread_v3 --teams red=agent_0",
     _path_task("misses agents ['agent_1', 'agent_2']", "mpe2.simple_spread_v3")),
    # the paper tasks' env options, checked once for both backends (envs.tasks.check_env_kwargs): no coercion
    ("train --env-kwargs N=2.5", "env option N=2.5 of task 'cooperative_navigation' is not accepted; accepted: an int"),
    ("train --env-kwargs N='3'", "env option N='3' of task"),
    ("train --env-kwargs N=True", "env option N=True of task"),
    ("train --env-kwargs N=0", "env option N=0 of task"),
    ("train --env-kwargs continuous_actions='yes'", "continuous_actions='yes' of task 'cooperative_navigation' is "
                                                    "not accepted; accepted: True or False"),
    ("train --env-kwargs continuous_actions=yes", "continuous_actions='yes' of task"),
    ("train --env-kwargs local_ratio='x'", "local_ratio='x' of task 'cooperative_navigation' is not accepted; "
                                           "accepted: a number in [0, 1]"),
    ("train --env-kwargs local_ratio=2", "local_ratio=2 of task"),
    ("train --task predator_prey --env-kwargs num_good=-1", "num_good=-1 of task 'predator_prey'"),
    ("train --task predator_prey --env-kwargs num_adversaries=2.0", "num_adversaries=2.0 of task 'predator_prey'"),
    ("train --task predator_prey --env-kwargs num_agent_neighbors=True", "num_agent_neighbors=True of task"),
    ("train --task physical_deception --env-kwargs N=1.5", "N=1.5 of task 'physical_deception'"),
    ("train --env-kwargs bogus=1", "unknown env option 'bogus' of task 'cooperative_navigation'; accepted: N, "),
    ("train --env-kwargs dtype=float64", "unknown env option 'dtype'"),
    ("train --task cooperative_communication --env-kwargs N=3", "unknown env option 'N' of task "
                                                                "'cooperative_communication'"),
    # options that clash with the run's own settings
    ("train --env-kwargs max_cycles=10", "env option max_cycles=10 clashes with the run's own max_cycles; accepted: "
                                         "set it with --max-cycles"),
    ("train --env-kwargs seed=1", "seed=1 clashes with the run's own seed"),
    ("train --env-kwargs num_envs=4", "num_envs=4 clashes"),
    ("train --env-kwargs backend=torch", "backend='torch' clashes"),
    ("train --env-kwargs device=cuda", "device='cuda' clashes"),
    ("train --env-kwargs teams=x", "teams of task 'cooperative_navigation' must map team names to lists of agent "
                                   "names, got 'x'"),
    ("train --task predator_prey --algo predators=masac", "no algorithm for team(s) prey"),
    ("train --algo nope", "unknown algorithm 'nope'"),
    ("train --algo masac-optimistic --common-draws", "--common-draws with --algo masac-optimistic: draws='common' "
                                                     "with others='inferred', guide='optimistic'"),
    # alpha's range, checked once (inference.variants.temperatures), per algorithm
    ("train --algo reinforce-elbo --alpha 0", "--alpha 0.0 is not a valid temperature for reinforce-elbo; "
                                              "accepted: a finite number > 0 (eq. 3 divides by it)"),
    ("train --alpha -0.5", "--alpha -0.5 is not a valid temperature for masac; accepted: a finite number >= 0"),
    ("train --algo masac-auto --alpha 0", "--alpha 0.0 is not a valid temperature for masac-auto; accepted: a "
                                          "finite number > 0"),
    ("train --task predator_prey --algo predators=maddpg,prey=masac --alpha -1",
     "--alpha -1.0 is not a valid temperature for masac"),
    # evaluate
    ("evaluate {run} --seed -1", "--seed: got '-1'"),
    ("evaluate {run} --episodes 0", "--episodes: got '0'"),
    ("evaluate {tmp}/nothing_here", "no run folder at"),
    ("evaluate {no_ckpt}", "no checkpoint file at"),
    ("evaluate {bad_keys}", "lacks learner, counters"),
    ("evaluate {corrupt}", "corrupt or not a checkpoint"),
    ("evaluate {misfit}", "does not fit this run's learner"),
    ("evaluate {bad_config}", "alpha must be finite, got inf"),
    ("evaluate {unknown_key}", "unknown config keys ['colour']"),
    ("evaluate {run} --gif {tmp}/frames.png", "ending in .gif"),
    ("evaluate {run} --gif {file}/x.gif", "is a file, not a folder"),
    # the command itself
    ("", "the following arguments are required: command"),
    ("frobnicate", "invalid choice: 'frobnicate'"),
]
#: the torch backend's own checks: options mpe2 runs (so not a mistake on pettingzoo) that the torch port lacks
TORCH_ONLY = [
    ("train --env-kwargs curriculum=True", "backend 'torch' cannot run 'cooperative_navigation': curriculum=True is "
                                           "not supported by the torch port (only False); accepted: --backend "
                                           "pettingzoo or auto"),
    ("train --task predator_prey --env-kwargs terminate_on_success=True", "terminate_on_success=True is not supported"),
    ("train --task physical_deception --env-kwargs num_agent_neighbors=1", "num_agent_neighbors=1 is not supported"),
    ("train --env-kwargs num_landmark_neighbors=2", "num_landmark_neighbors=2 is not supported"),
    ("train --env-kwargs render_mode=human", "render_mode='human' is not supported by the torch port (only None or "
                                             "'rgb_array')"),
]


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Per backend: an existing (real, tiny) run and damaged copies of it; returns the placeholders of CASES."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("bad_inputs")
    (tmp / "a_file").write_text("not a folder\n")
    unwritable = tmp / "read_only" / "run"
    if os.geteuid() == 0:  # root writes anywhere a permission allows; /proc refuses new folders to everyone
        unwritable = Path("/proc/pgm_marl_test_run")
    else:
        unwritable.parent.mkdir()
        unwritable.parent.chmod(0o500)
    placeholders = {}
    for backend in BACKENDS:
        base = tmp / backend
        base.mkdir()
        run = train(TrainConfig(**TINY, backend=backend, out=str(base / "run")))
        config = json.loads((run / "config.json").read_text())
        assert config["backend"] == backend

        def folder(name, config_update=None, checkpoint=None, raw_config=None):
            d = base / name
            d.mkdir()
            (d / "config.json").write_text(raw_config or json.dumps({**config, **(config_update or {})}))
            if isinstance(checkpoint, bytes):
                (d / "checkpoint.pt").write_bytes(checkpoint)
            elif checkpoint is not None:
                torch.save(checkpoint, d / "checkpoint.pt")
            return d

        ckpt = load_checkpoint(run / "checkpoint.pt")  # the replay's chunks inline: copies stand alone
        misfit = {**ckpt, "config": {**ckpt["config"], "hidden": 16}}  # weights of hidden 8, config says 16
        placeholders[backend] = {
            "tmp": tmp, "run": run, "file": tmp / "a_file", "unwritable": unwritable,
            "unwritable_name": unwritable.name,
            "no_ckpt": folder("no_ckpt"),
            "bad_keys": folder("bad_keys", checkpoint={"weights": torch.zeros(3)}),
            "corrupt": folder("corrupt", checkpoint=b"PK\x03\x04 this is not a zip archive"),
            "misfit": folder("misfit", {"hidden": 16}, misfit),
            "bad_config": folder("bad_config", checkpoint=ckpt,
                                 raw_config=json.dumps(config).replace('"alpha": null', '"alpha": Infinity')),
            "unknown_key": folder("unknown_key", {"colour": "blue"}, ckpt),
        }
    return {"tmp": tmp, "unwritable": unwritable, **placeholders}


def _case(argv: str, expected, backend: str, places: dict):
    """``(argv list, expected substring)`` of a case on ``backend``: ``train`` gets ``--backend``."""
    words = [a.format(**places) for a in argv.split()]
    if words[:1] == ["train"]:
        words += ["--backend", backend]
    return words, (expected[backend] if isinstance(expected, dict) else expected).format(**places)


#: the CASES that also run as a fresh ``python -m pgm_marl`` (one per layer: argparse, config, run folder, task,
#: env constructor, checkpoint, evaluate)
FRESH = ("train --batch-size abc", "train --alpha inf", "train --out {file}", "train --task no_such_task",
         "train --task mpe2.simple_spread_v3 --env-kwargs local_ratio=2", "evaluate {bad_keys}",
         "evaluate {run} --seed -1")

#: reads JSON lines {"argv": [...], "cwd": ...}; forks a child per line that runs the CLI with its stdout and
#: stderr sent to files; answers one JSON line {"code", "stdout", "stderr"} per case
FORK_SERVER = r"""
import json, os, sys, tempfile, traceback
import pgm_marl.cli, pgm_marl.train, pgm_marl.learner, pgm_marl.evaluate  # the imports every case would repeat
import mpe2.simple_spread_v3, mpe2.simple_push_v3, mpe2.simple_tag_v3
import torch._dynamo  # (torch.optim imports it at the first optimizer: seconds, in every case that builds a learner)
for line in sys.stdin:
    case = json.loads(line)
    out, err = tempfile.mkstemp(), tempfile.mkstemp()
    sys.stdout.flush(); sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.chdir(case["cwd"])
            os.dup2(out[0], 1); os.dup2(err[0], 2)
            try:
                code = pgm_marl.cli.main(case["argv"])
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            except BaseException:
                traceback.print_exc()
                code = 1
        finally:
            sys.stdout.flush(); sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    texts = []
    for fd, path in (out, err):
        os.close(fd)
        with open(path) as f:
            texts.append(f.read())
        os.unlink(path)
    print(json.dumps({"code": os.waitstatus_to_exitcode(status), "stdout": texts[0], "stderr": texts[1]}), flush=True)
"""


def _fresh_cli(argv, cwd):
    out = subprocess.run([sys.executable, "-m", "pgm_marl", *argv], cwd=cwd, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return {"code": out.returncode, "stdout": out.stdout, "stderr": out.stderr}


def _forked_cli(argvs, cwd):
    server = subprocess.Popen([sys.executable, "-c", FORK_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    results = []
    try:
        for argv in argvs:
            server.stdin.write(json.dumps({"argv": argv, "cwd": str(cwd)}) + "\n")
            server.stdin.flush()
            results.append(json.loads(server.stdout.readline()))
    finally:
        server.stdin.close()
        server.wait(timeout=60)
    return results


def _check(argv, expected, out):
    """'' if ``out`` is a clean one-line user error naming ``expected``, else what is wrong."""
    err = out["stderr"]
    if (out["code"] == 2 and err.count("\n") == 1 and err.endswith("\n") and "Traceback" not in err
            and expected in err and not out["stdout"].strip()):
        return ""
    return f"{argv!r}: exit {out['code']}, stderr {err[-600:]!r}, stdout {out['stdout'][-200:]!r}"


def test_every_bad_input_is_one_clean_line(runs, tmp_path):
    """Every case on every backend (and the torch backend's own cases on it): exit 2, one line naming the value."""
    assert len(CASES) >= 45 and all(f in dict(CASES) for f in FRESH)
    before = _snapshot(runs["tmp"])
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    cases = [_case(argv, expected, backend, runs[backend]) for backend in BACKENDS for argv, expected in CASES]
    cases += [_case(argv, expected, "torch", runs["torch"]) for argv, expected in TORCH_ONLY]
    failures = [_check(argv, expected, out) for (argv, expected), out in zip(cases, _forked_cli([a for a, _ in cases],
                                                                                                  cwd))]
    fresh = [_case(argv, expected, backend, runs[backend]) for backend in BACKENDS for argv, expected in CASES
             if argv in FRESH]
    with ThreadPoolExecutor(max_workers=2) as pool:
        outs = pool.map(lambda case: _fresh_cli(case[0], cwd), fresh)
        failures += [_check(argv, expected, out) for (argv, expected), out in zip(fresh, outs)]
    failures = [f for f in failures if f]
    assert not failures, "\n".join(failures)
    assert _snapshot(runs["tmp"]) == before, "a bad input changed a file of an existing run"
    assert list(cwd.iterdir()) == [], "a bad input created files"
    assert not runs["unwritable"].exists()


def test_internal_error_keeps_its_traceback(tmp_path, monkeypatch, capsys):
    """A bug (here a ValueError raised inside training) is not a user mistake: traceback, exit 1."""
    code = ("import sys, pgm_marl.train as t\n"
            "def bug(cfg, resume=False): raise ValueError('internal bug: not a user mistake')\n"
            "t.train = bug\n"
            "from pgm_marl.cli import main\n"
            f"sys.exit(main(['train', '--out', {str(tmp_path / 'run')!r}, '--episodes', '1']))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    assert "Traceback" in out.stderr and "internal bug: not a user mistake" in out.stderr
    # in-process: main lets it propagate instead of printing a one-line error
    import pgm_marl.train as train_mod

    def bug(cfg, resume=False):
        raise KeyError("internal")
    monkeypatch.setattr(train_mod, "train", bug)
    with pytest.raises(KeyError):
        cli.main(["train", "--out", str(tmp_path / "run2"), "--episodes", "1"])
    assert capsys.readouterr().err == ""


def test_permission_error_is_one_line(tmp_path, monkeypatch, capsys):
    """--out in a folder the user cannot write (simulated: the test may run as root)."""
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert cli.main(["train", "--out", str(tmp_path / "x" / "run"), "--episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"no permission to write in {tmp_path}" in err
    monkeypatch.undo()

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))
    monkeypatch.setattr(Path, "mkdir", denied)
    from pgm_marl.runfolder import make_run_folder
    from pgm_marl.errors import RunFolderError
    with pytest.raises(RunFolderError, match="cannot create or write the run folder: Permission denied"):
        make_run_folder(tmp_path / "y")


def test_algo_help_lists_every_preset(capsys):
    from pgm_marl.inference.variants import PRESETS
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    start = text.index("--algo ALGO algorithm")  # the flag's help, after the usage line
    assert all(name in text[start:start + 300] for name in PRESETS), text[start:start + 300]
