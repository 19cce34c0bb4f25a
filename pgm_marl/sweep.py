"""``pgm-marl sweep``: a grid of training runs as Ray tasks, idempotent and resumable.

Every :class:`~pgm_marl.config.TrainConfig` field is a flag; a flag given once applies to every run, a flag
given several times is a grid axis with one point per value (``--algo masac --algo maddpg --seed 0-4``; a
seed ``A-B`` is the inclusive range). An algorithm spec such as ``predators=masac,prey=maddpg`` is one value:
commas never split a value. Each run writes its usual run folder ``SWEEP_DIR/<name>`` where ``<name>`` is
derived from the run's axis values only (task, algorithm, every other field given several times, seed last:
``predator_prey__predators-masac_prey-maddpg__seed0``), so rerunning the same command finds the same folders.

Rerunning is idempotent: a finished run (``timing.json`` counts at least ``episodes``) is skipped, an
interrupted one (``checkpoint.pt`` but not finished) continues with ``train(cfg, resume=True)``, a folder
killed before its first checkpoint is cleared of its partial outputs and started afresh. A run folder whose
``config.json`` differs from what the sweep asks (beyond the fields a resume may change) fails with a
one-line error instead of being skipped or resumed. Each start is appended to the run's ``attempts.jsonl``
(mode, time, host, pid, and which code: version, git commit, uncommitted changes in ``pgm_marl/``).

Ray runs one task per run (``num_cpus = --threads``, one torch thread by default): a local instance with
one run per core, listening on the loopback address only (reachable from this machine only), unless
``--address`` names an existing cluster. On a cluster, ``--out`` must be a path that every node sees (a shared
file system) and ``pgm_marl`` must be installed on every node. A failing run does not stop the others; the
sweep ends with a table and exits 1 if any run failed. Stopping the driver (Ctrl-C, SIGTERM) kills the running
tasks; checkpoints are written atomically, so rerunning continues.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import ipaddress
import itertools
import json
import os
import re
import shutil
import signal
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .config import TrainConfig
from .errors import ConfigError, RunFolderError, UserError, one_line
from .flags import add_config_flags
from .metrics import return_columns
from .runfolder import code_version

#: TrainConfig fields the sweep sets itself: the run folder and the per-run progress bar
NOT_FLAGS = ("out", "progress")
#: axes that always name a run (in this order; ``seed`` goes last), whether they vary or not
NAMED_AXES = ("task", "algo")
#: the sweep command's own arguments (everything else it parses is a grid flag)
SWEEP_KEYS = ("command", "sweep_dir", "address", "num_cpus", "max_parallel", "dry_run", "progress", "name_by")
#: outputs of ``train`` that a run killed before its first checkpoint leaves behind
PARTIAL_OUTPUTS = ("config.json", "metrics.csv", "metrics.csv.tmp", "learning_curve.png", "timing.json")


# ---------------------------------------------------------------- the grid

def parse_seeds(text: str) -> List[int]:
    """``"3"`` -> [3]; ``"0-4"`` -> [0, 1, 2, 3, 4] (inclusive range)."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text)
    if not m:
        raise argparse.ArgumentTypeError(f"bad seed {text!r}; accepted: an int >= 0 or a range 'A-B', e.g. '0-4'")
    start, end = int(m.group(1)), int(m.group(2) if m.group(2) is not None else m.group(1))
    if end < start:
        raise argparse.ArgumentTypeError(f"bad seed range {text!r}: start > end; accepted: 'A-B' with A <= B, "
                                         "e.g. '0-4'")
    return list(range(start, end + 1))


def grid_values(given: Dict[str, List[Any]]) -> Dict[str, List[Any]]:
    """Flatten seed ranges and drop repeated values (order kept): ``{field: [value, ...]}``."""
    out = {}
    for name, values in given.items():
        flat = [v for group in values for v in group] if name == "seed" else list(values)
        out[name] = list(dict.fromkeys(flat))
    return out


def sanitize(text: str) -> str:
    """A filesystem-safe piece of a folder name: ``a=b,c=d`` -> ``a-b_c-d``."""
    text = str(text).replace("=", "-").replace(",", "_").replace("/", "-").replace(" ", "")
    return re.sub(r"[^A-Za-z0-9._+-]", "-", text)


def nameable_fields() -> List[str]:
    """Fields that can name a run besides task, algo and seed (which always do): every flag of the grid."""
    return [f.name for f in dataclasses.fields(TrainConfig) if f.name not in NAMED_AXES + ("seed",) + NOT_FLAGS]


def axis_order(values: Dict[str, List[Any]], name_by: Sequence[str] = ()) -> List[str]:
    """Fields that name a run: task, algo, every other field with several values or in ``name_by`` (field
    order), seed."""
    varying = [f for f in nameable_fields() if len(values.get(f, [])) > 1 or f in name_by]
    return list(NAMED_AXES) + varying + ["seed"]


def grid_axes(given: Dict[str, List[Any]], name_by: Sequence[str] = ()) -> Tuple[Dict[str, List[Any]], List[str]]:
    """``(values, axes)`` of a grid: every given field's values, plus the defaults of the fields that always
    name a run and of ``name_by``'s (a one-line ConfigError for a name that is not a field), and the naming axes
    in order (:func:`axis_order`)."""
    nameable = nameable_fields()
    for name in name_by:
        if name not in nameable:
            raise ConfigError(f"--name-by {name!r} is not a field that can name a run; accepted: "
                              f"{', '.join(nameable)} (task, algo and seed always do)")
    values = grid_values(given)
    for name in NAMED_AXES + ("seed",) + tuple(name_by):
        values.setdefault(name, [getattr(TrainConfig, name)])
    return values, axis_order(values, name_by)


def run_name(point: Dict[str, Any], axes: Sequence[str]) -> str:
    """Stable folder name of one grid point: task and algo by value, other axes as ``<field><value>``."""
    parts = []
    for name in axes:
        value = "none" if point[name] is None else point[name]
        parts.append(sanitize(value) if name in NAMED_AXES else f"{name}{sanitize(value)}")
    return "__".join(parts)


def expand_grid(given: Dict[str, List[Any]], name_by: Sequence[str] = ()) -> List[Tuple[str, Dict[str, Any]]]:
    """``[(name, {field: value})]`` for the product of the flags' values, in axis order.

    ``given`` maps each field given on the command line to its values; task, algo and seed default to
    TrainConfig's. ``name_by``: fields that name the runs even with one value (so that a one-value sweep's
    runs sit beside another sweep's under the same names). Raises a one-line ConfigError when two grid points
    would share a folder name.
    """
    values, axes = grid_axes(given, name_by)
    fixed = {k: v[0] for k, v in values.items() if k not in axes}
    points, seen = [], {}
    for combo in itertools.product(*(values[a] for a in axes)):
        point = {**fixed, **dict(zip(axes, combo))}
        name = run_name(point, axes)
        if name in seen:
            raise ConfigError(f"grid points {seen[name]} and {dict(zip(axes, combo))} share the folder name "
                             f"{name!r}; accepted: values that differ after sanitizing (=,/ and spaces)")
        seen[name] = dict(zip(axes, combo))
        points.append((name, point))
    return points


def make_configs(given: Dict[str, List[Any]], sweep_dir: Path,
                 name_by: Sequence[str] = ()) -> List[Tuple[str, TrainConfig]]:
    """One validated TrainConfig per grid point, its run folder under ``sweep_dir`` and no progress bar."""
    return [(name, TrainConfig(**{**point, "out": str(sweep_dir / name), "progress": False}))
            for name, point in expand_grid(given, name_by)]


# ---------------------------------------------------------------- state of one run folder

def read_timing(run_dir: Path) -> Dict[str, Any]:
    """``timing.json`` (written by ``train`` when it completes) or ``{}``."""
    try:
        return json.loads((run_dir / "timing.json").read_text())
    except (OSError, ValueError):
        return {}


def run_status(cfg: TrainConfig) -> str:
    """``finished`` (timing.json counts >= episodes), ``interrupted`` (a checkpoint), ``partial`` or ``absent``.

    A finished run needs no checkpoint: committed results keep config, metrics and timing but not the (large)
    checkpoint, and a sweep rerun on them must skip them, not retrain them.
    """
    run_dir = Path(cfg.out)
    if read_timing(run_dir).get("episodes", -1) >= cfg.episodes:
        return "finished"
    if (run_dir / "checkpoint.pt").exists():
        return "interrupted"
    return "partial" if (run_dir / "config.json").exists() or (run_dir / "metrics.csv").exists() else "absent"


def check_config(cfg: TrainConfig) -> None:
    """One-line RunFolderError if the run folder was trained with other settings than ``cfg`` asks."""
    from .train import resume_conflict

    path = Path(cfg.out) / "config.json"
    if not path.exists():
        return
    conflict = resume_conflict(cfg, TrainConfig.load(path))
    if conflict:
        key, old, value = conflict
        raise RunFolderError(f"{path.parent.name} was trained with {key}={old!r} but the sweep asks {value!r}; "
                             f"use another --out or make {key} an axis")


def clear_partial(run_dir: Path) -> None:
    """Remove what a run killed before its first checkpoint wrote (``train`` removes stale temp files itself)."""
    for name in PARTIAL_OUTPUTS:
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)
    shutil.rmtree(run_dir / "checkpoint_files", ignore_errors=True)  # chunks of a first checkpoint killed part way


def final_returns(run_dir: Path) -> Dict[str, float]:
    """``{team: return}`` of the last evaluation row of ``metrics.csv`` (``{}`` if none)."""
    try:
        with (Path(run_dir) / "metrics.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        return {team: float(rows[-1][c]) for team, c in return_columns(rows[-1]).items()} if rows else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def result_of(name: str, cfg: TrainConfig, status: str, error: str = "", wall: Optional[float] = None) -> dict:
    run_dir = Path(cfg.out)
    timing = read_timing(run_dir)
    return {"name": name, "status": status, "error": error, "returns": final_returns(run_dir),
            "wall": timing.get("wall") if wall is None else wall}


def execute_run(name: str, cfg_dict: Dict[str, Any]) -> dict:
    """Train one grid point (the body of a Ray task): skip, resume, restart or start; never raises."""
    start = time.perf_counter()
    try:
        cfg = TrainConfig.from_dict(cfg_dict)
        check_config(cfg)
        status = run_status(cfg)
        if status == "finished":
            return result_of(name, cfg, "skipped")
        run_dir = Path(cfg.out)
        if status == "partial":
            clear_partial(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "error.log").unlink(missing_ok=True)  # a failed attempt's traceback is not this attempt's
        mode = {"interrupted": "resume", "partial": "restart"}.get(status, "start")
        with (run_dir / "attempts.jsonl").open("a") as f:
            f.write(json.dumps({"mode": mode, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                "host": socket.gethostname(), "pid": os.getpid(), "code": code_version()}) + "\n")
        from .train import train
        train(cfg, resume=status == "interrupted")
        return result_of(name, cfg, "resumed" if status == "interrupted" else "finished")
    except Exception as err:  # one failing run must not stop the others
        out = {"name": name, "status": "failed", "error": one_line(err, typed=True, first=True), "returns": {},
               "wall": round(time.perf_counter() - start, 3)}
        if not isinstance(err, UserError):  # a bug keeps its traceback: in the run folder, named in the table
            try:
                log = Path(cfg_dict["out"]) / "error.log"
                log.parent.mkdir(parents=True, exist_ok=True)
                log.write_text(traceback.format_exc())
                out["error"] += f" (traceback: {log})"
            except Exception:
                pass
        try:
            out["returns"] = final_returns(Path(cfg_dict["out"]))
        except Exception:
            pass
        return out


# ---------------------------------------------------------------- the Ray driver

#: Ray reads this when it is imported: with Ray clusters off (its default on macOS and Windows) the node's IP
#: address is the loopback address, and Ray binds the servers of a local instance (GCS, raylet and object
#: manager, every worker's) to the node's IP address. Left on (Ray's default on Linux), even
#: ``ray.init(_node_ip_address="127.0.0.1")`` is turned into the machine's routable address and they listen on
#: every interface.
RAY_CLUSTERS_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"

#: A test hook: with ``PGM_MARL_SWEEP_HOLD_AFTER=N`` in the environment, the driver submits no run once ``N``
#: runs have returned (while some are left), prints ``sweep held after N runs`` on stderr and waits for an
#: interrupt (Ctrl-C or SIGTERM; the runs still in flight go on meanwhile). Tests interrupt a sweep at that known
#: point, or look at the local Ray instance while it is up, instead of racing a signal against the runs.
HOLD_ENV = "PGM_MARL_SWEEP_HOLD_AFTER"


def start_ray(address: Optional[str], num_cpus: Optional[int]) -> None:
    """Connect to the cluster at ``address``, or start a local instance with ``num_cpus`` (default: all) that
    listens on the loopback address only (see :data:`RAY_CLUSTERS_ENV`): reachable from this machine only.

    Ray reads that setting when it is imported, so a local instance needs a process that has not imported Ray
    before this call (the CLI); otherwise it is shut down again with a RuntimeError before any run starts.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not address:
        os.environ[RAY_CLUSTERS_ENV] = "0"  # (also inherited by the instance's processes)
    import ray

    opts = dict(log_to_driver=False, include_dashboard=False, configure_logging=True, logging_level="ERROR")
    if address:
        try:
            ray.init(address=address, **opts)
        except ConnectionError as err:  # (also what a missing or wrong authentication token ends in)
            raise UserError(
                f"--address {address!r}: cannot connect to a Ray cluster there ({one_line(err, typed=True, first=True)}"
                "); accepted: the address `ray start --head` prints (host:port); a cluster with token authentication "
                "(Ray's default) also needs RAY_AUTH_MODE=token and its token (~/.ray/auth_token or RAY_AUTH_TOKEN)"
            ) from None
        return
    ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), **opts)  # never a `ray start` cluster
    node_ip = ray.util.get_node_ip_address()
    if not ipaddress.ip_address(node_ip).is_loopback:
        ray.shutdown()
        raise RuntimeError(f"the local Ray instance would listen on {node_ip}, not on the loopback address only: Ray "
                           f"was imported before pgm_marl.sweep.start_ray without {RAY_CLUSTERS_ENV}=0; set it in "
                           "the environment, or import Ray after starting the sweep")


def hold_after() -> Optional[int]:
    """The :data:`HOLD_ENV` test hook's ``N``, or None when it is not set."""
    text = os.environ.get(HOLD_ENV)
    if text is None:
        return None
    if not re.fullmatch(r"\d+", text.strip()):
        raise ConfigError(f"{HOLD_ENV}={text!r}; accepted: an int >= 0 (runs returned before the sweep holds)")
    return int(text)


def hold(returned: int) -> None:
    """Say that the sweep holds (:data:`HOLD_ENV`) and wait for the interrupt that ends it (KeyboardInterrupt)."""
    print(f"sweep held after {returned} runs ({HOLD_ENV}); waiting for an interrupt", file=sys.stderr, flush=True)
    while True:  # short sleeps: a signal taken by another of the driver's threads is acted on at the next one
        time.sleep(0.1)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run_grid(runs: List[Tuple[str, TrainConfig]], address: Optional[str] = None, num_cpus: Optional[int] = None,
             max_parallel: Optional[int] = None, progress: bool = True) -> List[dict]:
    """Run every grid point not finished yet as a Ray task; a result dict per run, in grid order."""
    from tqdm import tqdm

    results: Dict[str, dict] = {}
    todo = []
    for name, cfg in runs:
        try:
            check_config(cfg)
        except ValueError as err:  # RunFolderError, or a config.json that does not load
            results[name] = result_of(name, cfg, "failed", one_line(err, typed=True, first=True))
            continue
        if run_status(cfg) == "finished":
            results[name] = result_of(name, cfg, "skipped")
        else:
            todo.append((name, cfg))
    bar = tqdm(total=len(runs), initial=len(results), unit="run", disable=not progress, dynamic_ncols=True)
    if todo:
        held = hold_after()
        start_ray(address, num_cpus)
        import ray

        previous = signal.signal(signal.SIGTERM, _interrupt)
        task = ray.remote(execute_run)
        limit = max_parallel or len(todo)
        in_flight: Dict[Any, Tuple[str, TrainConfig, float]] = {}
        returned = 0
        try:
            while todo or in_flight:
                if held is not None and returned >= held and todo:
                    hold(returned)
                while todo and len(in_flight) < limit:
                    name, cfg = todo.pop(0)
                    ref = task.options(num_cpus=cfg.threads, max_retries=0).remote(name, cfg.to_dict())
                    in_flight[ref] = (name, cfg, time.perf_counter())
                done, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in done:
                    name, cfg, t0 = in_flight.pop(ref)
                    try:
                        results[name] = ray.get(ref)
                    except Exception as err:  # the worker died (killed, out of memory)
                        results[name] = result_of(name, cfg, "failed", one_line(err, typed=True, first=True),
                                                  time.perf_counter() - t0)
                    returned += 1
                    bar.update(1)
                    bar.set_postfix(failed=sum(r["status"] == "failed" for r in results.values()), refresh=False)
        finally:
            signal.signal(signal.SIGTERM, previous)
            bar.close()
            ray.shutdown()
    bar.close()  # (closing twice is harmless)
    return [results[name] for name, _ in runs]


def format_table(results: List[dict]) -> str:
    """Markdown table: run, status, final returns per team, wall seconds, error."""
    lines = ["| run | status | final returns | wall s | error |", "|---|---|---|---:|---|"]
    for r in results:
        returns = ", ".join(f"{t} {v:.2f}" for t, v in r["returns"].items())
        wall = "" if r["wall"] is None else f"{r['wall']:.1f}"
        lines.append(f"| {r['name']} | {r['status']} | {returns} | {wall} | {r['error']} |")
    counts = {s: sum(r["status"] == s for r in results) for s in ("finished", "resumed", "skipped", "failed")}
    lines.append("\n" + ", ".join(f"{n} {s}" for s, n in counts.items()) + f" of {len(results)} runs "
                 "(skipped: finished before this sweep; resumed: continued from a checkpoint)")
    return "\n".join(lines)


def write_manifest(sweep_dir: Path, given: Dict[str, List[Any]], runs: List[Tuple[str, TrainConfig]],
                   name_by: Sequence[str] = ()) -> None:
    """``sweep.json``: the command's flags, the grid axes (those that name the runs) and every run's folder and
    config. Another grid swept into the same folder before (say the other critic forms beside ``--critic mlp``)
    stays: its runs remain under ``runs`` and its flags, axes and fixed values move to ``earlier`` (a command
    repeated as it was adds nothing there)."""
    values, axes = grid_axes(given, name_by)
    manifest = {"argv": sys.argv[1:], "axes": {a: values[a] for a in axes},
                "fixed": {k: v[0] for k, v in values.items() if k not in axes},
                "runs": {name: cfg.to_dict() for name, cfg in runs}}
    try:
        old = json.loads((sweep_dir / "sweep.json").read_text())
    except (OSError, ValueError):  # none yet, or unreadable: this grid alone
        old = None
    if isinstance(old, dict) and isinstance(old.get("runs"), dict):
        calls = [c for c in old.get("earlier", []) + [{k: old.get(k) for k in ("argv", "axes", "fixed")}]
                 if c["argv"] != manifest["argv"]]
        manifest["runs"] = {**old["runs"], **manifest["runs"]}
        if calls:
            manifest["earlier"] = calls
    sweep_dir.mkdir(parents=True, exist_ok=True)
    tmp = sweep_dir / "sweep.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, sweep_dir / "sweep.json")


# ---------------------------------------------------------------- command line

def add_sweep_parser(sub) -> argparse.ArgumentParser:
    """``pgm-marl sweep``: every TrainConfig field as a repeatable flag, plus the sweep's own flags."""
    sw = sub.add_parser("sweep", help="run a grid of training runs on Ray (repeat a flag for a grid axis)",
                        description=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(sw, skip=NOT_FLAGS, grid=True, types={"seed": (parse_seeds, "; 'A-B' is the range A..B")})
    sw.add_argument("--out", dest="sweep_dir", default="runs/sweep", metavar="SWEEP_DIR",
                    help="sweep folder: sweep.json and one run folder per grid point (default: runs/sweep)")
    sw.add_argument("--address", default=None, help="address of an existing Ray cluster (default: a local instance, on "
                    "the loopback address only)")
    sw.add_argument("--num-cpus", type=int, default=None, help="cores of the local Ray instance (default: all)")
    sw.add_argument("--max-parallel", type=int, default=None, help="at most this many runs at once (default: "
                    "as many as the Ray cores allow, one per --threads cores)")
    sw.add_argument("--dry-run", action="store_true", help="print the grid and each run's state; train nothing")
    sw.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    sw.add_argument("--name-by", action="append", default=[], metavar="FIELD",
                    help="a field that names the runs even when it has one value (repeatable; e.g. --name-by "
                    "critic gives ...__criticmlp__seed0 for a sweep of --critic mlp alone)")
    return sw


def cmd_sweep(args: argparse.Namespace) -> None:
    """Expand the grid, run it, print the table; ``SystemExit(1)`` if a run failed, 130 if interrupted."""
    given = {k: (v if isinstance(v, list) else [v]) for k, v in vars(args).items() if k not in SWEEP_KEYS}
    for name in ("num_cpus", "max_parallel"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be a positive int, got {getattr(args, name)}")
    sweep_dir = Path(args.sweep_dir).resolve()
    runs = make_configs(given, sweep_dir, args.name_by)
    if args.dry_run:
        for name, cfg in runs:
            print(f"{run_status(cfg):11s} {name}")
        print(f"{len(runs)} runs in {sweep_dir}")
        return
    write_manifest(sweep_dir, given, runs, args.name_by)
    try:
        results = run_grid(runs, args.address, args.num_cpus, args.max_parallel, args.progress)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to continue (finished runs are skipped, the others resume "
              "from their checkpoints)", file=sys.stderr)
        raise SystemExit(130) from None
    print(format_table(results))
    if any(r["status"] == "failed" for r in results):
        raise SystemExit(1)
