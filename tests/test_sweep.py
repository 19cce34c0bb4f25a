"""``pgm-marl sweep``: grid expansion and folder names (no Ray), each run folder state handled in process
(start, restart, resume, skip, refuse), and the real CLI on a local Ray instance, killed part way and rerun.
"""
import argparse
import glob
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pgm_marl
from pgm_marl import cli
from pgm_marl.config import TrainConfig
from pgm_marl.errors import UserError
from pgm_marl.runfolder import code_version
from pgm_marl.sweep import execute_run, expand_grid, make_configs, parse_seeds, run_status

TINY = ["--task", "cooperative_navigation", "--episodes", "4", "--max-cycles", "5", "--learning-starts", "0",
        "--batch-size", "8", "--update-every", "5", "--eval-every", "2", "--eval-episodes", "2",
        "--checkpoint-every", "2", "--hidden", "16", "--no-tensorboard"]
TINY_CFG = dict(task="cooperative_navigation", episodes=4, max_cycles=5, learning_starts=0, batch_size=8,
                update_every=5, eval_every=2, eval_episodes=2, checkpoint_every=2, hidden=16, tensorboard=False,
                progress=False)


def parse(argv):
    """The ``sweep`` namespace's grid flags, as ``cmd_sweep`` reads them."""
    args = cli.build_parser().parse_args(["sweep", *argv])
    keep = {k: v for k, v in vars(args).items()
            if k not in ("command", "sweep_dir", "address", "num_cpus", "max_parallel", "dry_run", "progress")}
    return {k: (v if isinstance(v, list) else [v]) for k, v in keep.items()}


# ---------------------------------------------------------------- grid expansion (no Ray)

def test_seed_ranges():
    assert parse_seeds("3") == [3]
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    with pytest.raises(argparse.ArgumentTypeError, match=r"bad seed range '5-2': start > end; accepted"):
        parse_seeds("5-2")
    with pytest.raises(argparse.ArgumentTypeError, match="bad seed 'x'"):
        parse_seeds("x")


def test_bad_seed_range_is_one_line_cli_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["sweep", "--seed", "5-2", "--dry-run"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "bad seed range '5-2'" in err and "\n" not in err


def test_team_specs_keep_their_commas_and_seed_ranges_expand():
    given = parse(["--task", "predator_prey", "--algo", "predators=masac,prey=maddpg",
                   "--algo", "predators=maddpg,prey=masac", "--seed", "0-1"])
    points = expand_grid(given)
    assert [name for name, _ in points] == [
        "predator_prey__predators-masac_prey-maddpg__seed0", "predator_prey__predators-masac_prey-maddpg__seed1",
        "predator_prey__predators-maddpg_prey-masac__seed0", "predator_prey__predators-maddpg_prey-masac__seed1"]
    assert [p["algo"] for _, p in points] == ["predators=masac,prey=maddpg"] * 2 + ["predators=maddpg,prey=masac"] * 2
    assert [p["seed"] for _, p in points] == [0, 1, 0, 1]


def test_single_flags_apply_to_all_repeated_flags_are_axes(tmp_path):
    once = make_configs(parse(["--algo", "masac", "--seed", "0", "--alpha", "0.01", "--lr", "0.001"]), tmp_path)
    assert [name for name, _ in once] == ["cooperative_navigation__masac__seed0"]
    assert once[0][1].alpha == 0.01 and once[0][1].lr == 0.001 and once[0][1].progress is False
    assert once[0][1].out == str(tmp_path / "cooperative_navigation__masac__seed0")
    twice = make_configs(parse(["--seed", "0", "--alpha", "0.01", "--alpha", "none", "--lr", "0.001"]), tmp_path)
    assert [name for name, _ in twice] == ["cooperative_navigation__masac__alpha0.01__seed0",
                                           "cooperative_navigation__masac__alphanone__seed0"]
    assert [cfg.alpha for _, cfg in twice] == [0.01, None] and {cfg.lr for _, cfg in twice} == {0.001}


def test_repeated_values_count_once_and_name_collisions_are_refused():
    assert len(expand_grid(parse(["--seed", "0-2", "--seed", "1-3"]))) == 4
    with pytest.raises(ValueError, match="share the folder name 'cooperative_navigation__a-b__seed0'"):
        expand_grid(parse(["--algo", "a=b", "--algo", "a-b"]))


def test_dry_run_lists_the_grid(tmp_path, capsys):
    assert cli.main(["sweep", "--out", str(tmp_path), "--algo", "masac", "--algo", "maddpg", "--seed", "0-2",
                     "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "absent      cooperative_navigation__maddpg__seed2" in out and "6 runs in" in out
    assert not (tmp_path / "sweep.json").exists()


# ---------------------------------------------------------------- one run folder, in process (no Ray)

def attempts(run_dir):
    return [json.loads(line)["mode"] for line in (Path(run_dir) / "attempts.jsonl").read_text().splitlines()]


def test_run_folder_states_start_restart_resume_skip_refuse(tmp_path):
    cfg = TrainConfig(**{**TINY_CFG, "episodes": 2, "out": str(tmp_path / "a")})
    assert run_status(cfg) == "absent"
    assert execute_run("a", cfg.to_dict())["status"] == "finished"
    record = json.loads((tmp_path / "a" / "attempts.jsonl").read_text())
    assert record["code"] == code_version() and record["code"]["version"] == pgm_marl.__version__
    assert attempts(cfg.out) == ["start"]
    longer = TrainConfig(**{**cfg.to_dict(), "episodes": 4})  # a finished run asked for more: interrupted
    assert run_status(cfg) == "finished" and run_status(longer) == "interrupted"
    result = execute_run("a", longer.to_dict())
    assert result["status"] == "resumed" and result["returns"].keys() == {"all"}
    assert attempts(cfg.out) == ["start", "resume"]
    assert execute_run("a", longer.to_dict())["status"] == "skipped"
    assert attempts(cfg.out) == ["start", "resume"]
    (Path(cfg.out) / "checkpoint.pt").unlink()  # committed results carry no checkpoint: still finished
    assert run_status(longer) == "finished" and execute_run("a", longer.to_dict())["status"] == "skipped"

    other = TrainConfig(**{**longer.to_dict(), "lr": 0.5})
    result = execute_run("a", other.to_dict())
    assert result["status"] == "failed"
    assert result["error"].startswith("RunFolderError: a was trained with lr=0.01 but the sweep asks 0.5")

    partial = tmp_path / "b"  # killed before its first checkpoint: config.json and a stale metrics row
    partial.mkdir()
    TrainConfig(**{**TINY_CFG, "out": str(partial)}).save(partial / "config.json")
    (partial / "metrics.csv").write_text("episode,env_steps,wall_seconds,return/all\n2,10,0.1,-99.0\n")
    cfg_b = TrainConfig(**{**TINY_CFG, "out": str(partial)})
    assert run_status(cfg_b) == "partial"
    assert execute_run("b", cfg_b.to_dict())["status"] == "finished"
    assert attempts(partial) == ["restart"]
    assert "-99.0" not in (partial / "metrics.csv").read_text()


def test_failing_run_reports_one_line(tmp_path):
    cfg = TrainConfig(**{**TINY_CFG, "algo": "nonsense", "out": str(tmp_path / "bad")})
    result = execute_run("bad", cfg.to_dict())
    assert result["status"] == "failed" and "\n" not in result["error"]
    assert "unknown algorithm 'nonsense'" in result["error"]
    assert not (tmp_path / "bad" / "error.log").exists()  # a user mistake: the one line says it all


def test_a_bug_in_one_run_keeps_its_traceback(tmp_path, monkeypatch):
    import pgm_marl.train

    def broken(cfg, resume=False):
        raise ZeroDivisionError("injected bug")
    monkeypatch.setattr(pgm_marl.train, "train", broken)
    cfg = TrainConfig(**{**TINY_CFG, "out": str(tmp_path / "bug")})
    result = execute_run("bug", cfg.to_dict())
    assert result["status"] == "failed" and "\n" not in result["error"]
    assert "ZeroDivisionError: injected bug" in result["error"] and "error.log" in result["error"]
    assert 'raise ZeroDivisionError("injected bug")' in (tmp_path / "bug" / "error.log").read_text()


# ---------------------------------------------------------------- the CLI on a local Ray instance

def sweep_cmd(out, *extra):
    return [sys.executable, "-m", "pgm_marl", "sweep", "--out", str(out), *TINY, "--algo", "masac",
            "--algo", "maddpg", "--seed", "0-1", "--num-cpus", "2", "--no-progress", *extra]


def test_sweep_killed_part_way_and_rerun_skips_finished_runs(tmp_path):
    """2 x 2 grid, one run at a time; Ctrl-C (SIGINT to the process group) once the first run has finished;
    rerun with a bad grid point added: finished runs are skipped (files untouched), the others finish, the bad
    one fails alone with its one-line error, exit 1; the original command then skips all four, exit 0."""
    out = tmp_path / "sweep"
    proc = subprocess.Popen(sweep_cmd(out, "--max-parallel", "1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, stdin=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not glob.glob(str(out / "*" / "timing.json")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: SIGINT to the foreground group
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode == 130, err
    assert "rerun the same command to continue" in err
    done = sorted(Path(p).parent for p in glob.glob(str(out / "*" / "timing.json")))
    assert done and len(done) < 4, "the sweep was not interrupted part way"
    stamps = {d: {f.name: f.stat().st_mtime_ns for f in d.iterdir()} for d in done}

    rerun = subprocess.run(sweep_cmd(out, "--algo", "nonsense"), capture_output=True, text=True, timeout=300,
                           stdin=subprocess.DEVNULL)
    assert rerun.returncode == 1, rerun.stderr
    rows = {line.split(" | ")[0].strip("| "): line for line in rerun.stdout.splitlines() if "__seed" in line}
    assert len(rows) == 6
    for d in done:  # finished before the kill: skipped, not one file rewritten, started once
        assert "| skipped |" in rows[d.name]
        assert {f.name: f.stat().st_mtime_ns for f in d.iterdir()} == stamps[d]
        assert attempts(d) == ["start"]
    for seed in (0, 1):
        bad = rows[f"cooperative_navigation__nonsense__seed{seed}"]
        assert "| failed |" in bad and "Error: unknown algorithm 'nonsense'; accepted: masac" in bad
    for name in (f"cooperative_navigation__{a}__seed{s}" for a in ("masac", "maddpg") for s in (0, 1)):
        assert run_status(TrainConfig.load(out / name / "config.json")) == "finished"
        assert json.loads((out / name / "timing.json").read_text())["episodes"] == 4
    assert "2 failed of 6 runs" in rerun.stdout

    again = subprocess.run(sweep_cmd(out), capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert again.returncode == 0, again.stderr
    assert "0 finished, 0 resumed, 4 skipped, 0 failed of 4 runs" in again.stdout
    manifest = json.loads((out / "sweep.json").read_text())
    assert manifest["axes"]["algo"] == ["masac", "maddpg"] and manifest["axes"]["seed"] == [0, 1]
    assert manifest["fixed"]["episodes"] == 4 and len(manifest["runs"]) == 4


def test_sweep_on_an_existing_cluster(tmp_path):
    """``--address``: the runs execute on a separate ``ray start --head`` cluster (token authentication, Ray's
    default, with a throwaway token); a rerun connects again and skips the finished run."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "RAY_USAGE_STATS_ENABLED": "0"}
    log = tmp_path / "head.log"
    ray_cli = Path(sys.executable).parent / "ray"
    with open(log, "w") as head_out:
        head = subprocess.Popen([str(ray_cli), "start", "--head", "--block", "--port", str(port), "--num-cpus", "1",
                                 "--include-dashboard=false", "--disable-usage-stats"], stdout=head_out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True, stdin=subprocess.DEVNULL)
    try:
        deadline = time.time() + 90
        while "block forever" not in log.read_text(errors="replace") and head.poll() is None:
            assert time.time() < deadline, log.read_text(errors="replace")
            time.sleep(0.2)
        cmd = [sys.executable, "-m", "pgm_marl", "sweep", "--out", str(tmp_path / "sweep"), *TINY, "--algo", "masac",
               "--seed", "0", "--address", f"127.0.0.1:{port}", "--no-progress"]
        first = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env, stdin=subprocess.DEVNULL)
        assert first.returncode == 0, first.stderr
        assert "1 finished, 0 resumed, 0 skipped, 0 failed of 1 runs" in first.stdout
        run = tmp_path / "sweep" / "cooperative_navigation__masac__seed0"
        assert json.loads((run / "timing.json").read_text())["episodes"] == 4 and attempts(run) == ["start"]
        again = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env, stdin=subprocess.DEVNULL)
        assert again.returncode == 0 and "0 finished, 0 resumed, 1 skipped" in again.stdout, again.stderr
    finally:  # the cluster's processes share the head's process group (a graceful SIGTERM takes ~30 s)
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=60)


def test_an_unreachable_cluster_is_one_line(monkeypatch):
    import ray

    from pgm_marl.sweep import start_ray

    def refuse(**kwargs):
        raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.9:6379")

    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(UserError, match=r"^--address '10.0.0.9:6379': cannot connect to a Ray cluster there "
                                        r"\(ConnectionError: Failed to connect .*\); accepted: the address"):
        start_ray("10.0.0.9:6379", None)


def test_num_envs_is_a_grid_flag_like_any_optional_int():
    """``num_envs`` is ``Optional[int]``: an int, or none / auto for the backend's default (as ``train``)."""
    given = parse(["--num-envs", "4", "--num-envs", "auto"])
    assert given["num_envs"] == [4, None]
    points = expand_grid(given)
    assert [p["num_envs"] for _, p in points] == [4, None]
