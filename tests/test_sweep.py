"""``pgm-marl sweep``: grid expansion and folder names (no Ray), each run folder state handled in process
(start, restart, resume, skip, refuse), and the real CLI on a local Ray instance (listening on loopback only),
interrupted part way and rerun.

No test here depends on timing: a sweep is interrupted where it holds (``PGM_MARL_SWEEP_HOLD_AFTER``, a hook of
``pgm_marl.sweep``) and the test reads the line that says so; a ``ray start`` cluster is used once it has said it
is up. The timeouts (``HANG_GUARD``) only turn a hang into a failure.
"""
import argparse
import dataclasses
import glob
import ipaddress
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import pgm_marl
from pgm_marl import cli, sweep
from pgm_marl.config import TrainConfig
from pgm_marl.errors import ConfigError, UserError, one_line
from pgm_marl.runfolder import code_version
from pgm_marl.sweep import HOLD_ENV, execute_run, expand_grid, make_configs, parse_seeds, run_status

#: seconds after which a subprocess that has not answered is a hang (a failure), never a condition of the test
HANG_GUARD = 600

TINY = ["--task", "cooperative_navigation", "--episodes", "4", "--max-cycles", "5", "--learning-starts", "0",
        "--batch-size", "8", "--update-every", "5", "--eval-every", "2", "--eval-episodes", "2",
        "--checkpoint-every", "2", "--hidden", "16", "--no-tensorboard"]
TINY_CFG = dict(task="cooperative_navigation", episodes=4, max_cycles=5, learning_starts=0, batch_size=8,
                update_every=5, eval_every=2, eval_episodes=2, checkpoint_every=2, hidden=16, tensorboard=False,
                progress=False)


def parse(argv):
    """The ``sweep`` namespace's grid flags, as ``cmd_sweep`` reads them."""
    args = cli.build_parser().parse_args(["sweep", *argv])
    keep = {k: v for k, v in vars(args).items() if k not in sweep.SWEEP_KEYS}
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


def test_name_by_names_runs_by_a_field_with_one_value(tmp_path, capsys):
    """``--name-by critic``: a sweep of one critic form names its runs as a sweep of several would, so its runs sit
    beside the others' in one folder (the default leaves a one-value field out of the name)."""
    args = ["--seed", "0", "--critic", "mlp", "--env-kwargs", "N=12"]
    assert [n for n, _ in make_configs(parse(args), tmp_path)] == ["cooperative_navigation__masac__seed0"]
    named = make_configs(parse(args), tmp_path, name_by=["critic"])
    assert [n for n, _ in named] == ["cooperative_navigation__masac__criticmlp__seed0"]
    assert named[0][1].critic == "mlp" and named[0][1].env_kwargs == "N=12"
    default = expand_grid(parse(["--seed", "0"]), name_by=["critic", "share_params"])  # not given: the default
    assert [n for n, _ in default] == ["cooperative_navigation__masac__criticmlp__share_paramsFalse__seed0"]
    for bad in ("critik", "out", "seed"):
        with pytest.raises(ValueError, match=f"--name-by '{bad}' is not a field that can name a run; accepted: "):
            expand_grid(parse(["--seed", "0"]), name_by=[bad])
    assert cli.main(["sweep", "--out", str(tmp_path), *args, "--name-by", "critic", "--dry-run"]) == 0
    assert "cooperative_navigation__masac__criticmlp__seed0" in capsys.readouterr().out  # the flag reaches the grid
    assert cli.main(["sweep", "--out", str(tmp_path), *args, "--name-by", "critik", "--dry-run"]) == 2
    assert "--name-by 'critik' is not a field" in capsys.readouterr().err
    sweep.write_manifest(tmp_path, parse(args), named, name_by=["critic"])  # sweep.json names the same axes
    manifest = json.loads((tmp_path / "sweep.json").read_text())
    assert list(manifest["axes"]) == ["task", "algo", "critic", "seed"] and manifest["axes"]["critic"] == ["mlp"]
    assert "critic" not in manifest["fixed"] and manifest["fixed"]["env_kwargs"] == "N=12"


def test_a_second_grid_in_the_same_folder_keeps_the_first_in_sweep_json(tmp_path, monkeypatch):
    """Two sweeps into one folder (the forms, then ``--critic mlp``): sweep.json lists the runs of both and the
    first command under ``earlier``; repeating the second command (a resume) adds nothing. (Writing only the
    last grid loses the first's runs.)"""
    first = ["--seed", "0", "--critic", "local", "--critic", "mean-field"]
    second = ["--seed", "0", "--critic", "mlp"]
    for argv in (first, second, second):
        monkeypatch.setattr(sys, "argv", ["pgm-marl", "sweep", *argv])
        sweep.write_manifest(tmp_path, parse(argv), make_configs(parse(argv), tmp_path, name_by=["critic"]),
                             name_by=["critic"])
    manifest = json.loads((tmp_path / "sweep.json").read_text())
    assert sorted(manifest["runs"]) == [f"cooperative_navigation__masac__critic{c}__seed0"
                                        for c in ("local", "mean-field", "mlp")]
    assert manifest["argv"] == ["sweep", *second] and manifest["axes"]["critic"] == ["mlp"]
    assert [c["argv"] for c in manifest["earlier"]] == [["sweep", *first]]
    assert manifest["earlier"][0]["axes"]["critic"] == ["local", "mean-field"]


def test_repeated_values_count_once_and_name_collisions_are_refused():
    assert len(expand_grid(parse(["--seed", "0-2", "--seed", "1-3"]))) == 4
    with pytest.raises(ValueError, match="share the folder name 'cooperative_navigation__a-b__seed0'"):
        expand_grid(parse(["--algo", "a=b", "--algo", "a-b"]))


def test_train_and_sweep_take_a_flag_per_config_field():
    """Both commands build their flags from TrainConfig's fields (``pgm_marl.flags``): a field added there is a flag
    of both without another edit; the sweep leaves out only the fields it sets itself."""
    def options(command):
        parser = cli.build_parser()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
        return {s for a in sub._actions for s in a.option_strings}

    fields = {"--" + f.name.replace("_", "-") for f in dataclasses.fields(TrainConfig)}
    assert fields <= options("train")
    own = {"--" + name for name in sweep.NOT_FLAGS}
    assert fields - own <= options("sweep") and "--progress" not in options("sweep")
    assert "--no-tensorboard" in options("sweep") and "--no-tensorboard" in options("train")


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


def test_one_formatter_of_one_line_errors():
    """``errors.one_line``: the CLI joins a message's lines, the sweep's table keeps the type and the first line
    (a Ray task error carries a whole traceback)."""
    err = RuntimeError("\n  first line\n\n  second line\n")
    assert one_line(err) == "first line; second line"
    assert one_line(err, typed=True, first=True) == "RuntimeError: first line"
    assert one_line(KeyError("k"), typed=True) == "KeyError: 'k'" and one_line(ValueError(), typed=True) == "ValueError"


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


def read_until(pipe, marker):
    """Read a process's text ``pipe`` on a thread, to its end: ``(seen, lines, thread)``, where the event ``seen``
    is set at the first line that holds ``marker``, or at the end of the pipe (the process ended without it)."""
    lines, seen = [], threading.Event()

    def pump():
        for line in pipe:
            lines.append(line)
            if marker in line:
                seen.set()
        seen.set()
    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return seen, lines, thread


def start_held_sweep(cmd, held_after):
    """Start ``cmd`` (a sweep, in its own process group) with the hold hook, and return once it holds after
    ``held_after`` runs: ``(process, stderr lines so far and to come)``."""
    marker = f"sweep held after {held_after} runs"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            stdin=subprocess.DEVNULL, env={**os.environ, HOLD_ENV: str(held_after)})
    seen, lines, reader = read_until(proc.stderr, marker)
    if not (seen.wait(HANG_GUARD) and any(marker in line for line in lines)):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail(f"the sweep did not hold (exit {proc.returncode}):\n{''.join(lines)[-3000:]}")
    return proc, (lines, reader)


def interrupt(proc, stderr):
    """Ctrl-C (SIGINT to the foreground process group): the exit code and the whole stderr."""
    lines, reader = stderr
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=HANG_GUARD)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    reader.join(HANG_GUARD)  # to the end of the pipe
    return proc.returncode, "".join(lines)


def test_sweep_killed_part_way_and_rerun_skips_finished_runs(tmp_path):
    """2 x 2 grid, one run at a time; Ctrl-C (SIGINT to the process group) where the sweep holds after its first
    run has finished; rerun with a bad grid point added: the finished run is skipped (files untouched), the others
    finish, the bad one fails alone with its one-line error, exit 1; the original command then skips all four,
    exit 0."""
    out = tmp_path / "sweep"
    proc, stderr = start_held_sweep(sweep_cmd(out, "--max-parallel", "1"), held_after=1)
    done = sorted(Path(p).parent for p in glob.glob(str(out / "*" / "timing.json")))
    assert done == [out / "cooperative_navigation__masac__seed0"]  # the first grid point, alone
    code, err = interrupt(proc, stderr)
    assert code == 130, err
    assert "rerun the same command to continue" in err
    assert sorted(Path(p).parent for p in glob.glob(str(out / "*" / "timing.json"))) == done
    stamps = {d: {f.name: f.stat().st_mtime_ns for f in d.iterdir()} for d in done}

    rerun = subprocess.run(sweep_cmd(out, "--algo", "nonsense"), capture_output=True, text=True, timeout=HANG_GUARD,
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
    assert "3 finished, 0 resumed, 1 skipped, 2 failed of 6 runs" in rerun.stdout

    again = subprocess.run(sweep_cmd(out), capture_output=True, text=True, timeout=HANG_GUARD,
                           stdin=subprocess.DEVNULL)
    assert again.returncode == 0, again.stderr
    assert "0 finished, 0 resumed, 4 skipped, 0 failed of 4 runs" in again.stdout
    manifest = json.loads((out / "sweep.json").read_text())
    assert manifest["axes"]["algo"] == ["masac", "maddpg"] and manifest["axes"]["seed"] == [0, 1]
    assert manifest["fixed"]["episodes"] == 4 and len(manifest["runs"]) == 6  # (with the two nonsense runs)
    assert [len(c["axes"]["algo"]) for c in manifest["earlier"]] == [2, 3]  # the held sweep, the nonsense rerun


def process_tree(root):
    """Pids of ``root``, its descendants and the members of its process group (Linux ``/proc``)."""
    parents, groups = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # ended meanwhile
                continue
            parents[int(entry)], groups[int(entry)] = int(fields[1]), int(fields[2])
    tree = {root} | {pid for pid, group in groups.items() if group == root}
    while True:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        if not more:
            return tree
        tree |= more


def bound_sockets(pids):
    """``[(process name, protocol, ip, port)]``: the TCP sockets in LISTEN state and the UDP sockets with a local
    port that the processes ``pids`` hold (``/proc/<pid>/fd`` socket inodes looked up in ``/proc/net``)."""
    owner = {}
    for pid in pids:
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                owner[int(link[8:-1])] = name
    found = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/net/{proto}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], int(fields[9])
            hex_ip, hex_port = local.split(":")
            if inode not in owner or (proto.startswith("tcp") and state != "0A") or int(hex_port, 16) == 0:
                continue
            raw = bytes.fromhex(hex_ip)  # /proc/net: 32-bit words in host (little-endian) order
            ip = ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)))
            found.append((owner[inode], proto, ip, int(hex_port, 16)))
    return found


def is_loopback(ip):
    return ip.is_loopback or (ip.version == 6 and ip.ipv4_mapped is not None and ip.ipv4_mapped.is_loopback)


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads the listening sockets from Linux /proc")
def test_a_local_sweep_listens_on_loopback_only(tmp_path):
    """Without ``--address`` the sweep starts a Ray instance that other hosts cannot reach: while it is up (held
    after its first run), every TCP socket that the driver, the GCS, the raylet (with the object manager) and the
    workers listen on, and every UDP socket they bound, has a loopback address."""
    cmd = [sys.executable, "-m", "pgm_marl", "sweep", "--out", str(tmp_path / "sweep"), *TINY, "--algo", "masac",
           "--seed", "0-1", "--num-cpus", "1", "--max-parallel", "1", "--no-progress"]
    proc, stderr = start_held_sweep(cmd, held_after=1)
    try:
        found = bound_sockets(process_tree(proc.pid))
    finally:
        code, err = interrupt(proc, stderr)
    listeners = {name for name, proto, _, _ in found if proto.startswith("tcp")}
    assert {"gcs_server", "raylet"} <= listeners, found  # (the driver's name is python's)
    exposed = [entry for entry in found if not is_loopback(entry[2])]
    assert not exposed, f"listening beyond the loopback address: {exposed}"
    assert code == 130, err


def test_sweep_on_an_existing_cluster(tmp_path):
    """``--address``: the runs execute on a separate ``ray start --head`` cluster (token authentication, Ray's
    default, with a throwaway token); a rerun connects again and skips the finished run."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "RAY_USAGE_STATS_ENABLED": "0"}
    ray_cli = Path(sys.executable).parent / "ray"
    head = subprocess.Popen([str(ray_cli), "start", "--head", "--block", "--port", str(port), "--num-cpus", "1",
                             "--include-dashboard=false", "--disable-usage-stats"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True,
                            stdin=subprocess.DEVNULL)
    try:
        up, log, _ = read_until(head.stdout, "block forever")  # what `ray start --block` prints once the head is up
        assert up.wait(HANG_GUARD) and any("block forever" in line for line in log), "".join(log)
        cmd = [sys.executable, "-m", "pgm_marl", "sweep", "--out", str(tmp_path / "sweep"), *TINY, "--algo", "masac",
               "--seed", "0", "--address", f"127.0.0.1:{port}", "--no-progress"]
        first = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_GUARD, env=env,
                               stdin=subprocess.DEVNULL)
        assert first.returncode == 0, first.stderr
        assert "1 finished, 0 resumed, 0 skipped, 0 failed of 1 runs" in first.stdout
        run = tmp_path / "sweep" / "cooperative_navigation__masac__seed0"
        assert json.loads((run / "timing.json").read_text())["episodes"] == 4 and attempts(run) == ["start"]
        again = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_GUARD, env=env,
                               stdin=subprocess.DEVNULL)
        assert again.returncode == 0 and "0 finished, 0 resumed, 1 skipped" in again.stdout, again.stderr
    finally:  # the cluster's processes share the head's process group (a graceful SIGTERM takes ~30 s)
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=HANG_GUARD)


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


def test_a_local_instance_that_is_not_loopback_only_is_refused(monkeypatch):
    """start_ray checks what Ray made of the local instance: a node address other than loopback (Ray imported
    before the sweep could turn its clusters off) shuts the instance down before any run starts."""
    import ray

    calls = []
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(("init", kwargs["address"])))
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append(("shutdown",)))
    monkeypatch.setattr(ray.util, "get_node_ip_address", lambda: "192.0.2.7")
    monkeypatch.setenv(sweep.RAY_CLUSTERS_ENV, "1")
    with pytest.raises(RuntimeError, match="would listen on 192.0.2.7, not on the loopback address only"):
        sweep.start_ray(None, 1)
    assert calls == [("init", "local"), ("shutdown",)] and os.environ[sweep.RAY_CLUSTERS_ENV] == "0"
    monkeypatch.setattr(ray.util, "get_node_ip_address", lambda: "127.0.0.1")
    calls.clear()
    sweep.start_ray(None, 1)
    assert calls == [("init", "local")]


def test_the_hold_hook_reads_a_count(monkeypatch):
    monkeypatch.delenv(HOLD_ENV, raising=False)
    assert sweep.hold_after() is None
    monkeypatch.setenv(HOLD_ENV, "2")
    assert sweep.hold_after() == 2
    monkeypatch.setenv(HOLD_ENV, "two")
    with pytest.raises(ConfigError, match=f"^{HOLD_ENV}='two'; accepted: an int >= 0"):
        sweep.hold_after()
