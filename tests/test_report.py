"""``pgm-marl report`` on synthetic run folders: numbers checked against direct NumPy computations.

The run folders are written by hand (config.json by TrainConfig, metrics.csv with known returns, timing.json),
so these tests need no training and no Ray.
"""
import csv
import json

import numpy as np
import pytest

from pgm_marl import cli
from pgm_marl.config import TrainConfig
from pgm_marl.metrics import metric_columns, return_columns
from pgm_marl.report import build_report, comparisons, find_runs, group_runs, marl_eval_json
from pgm_marl.sweep import final_returns

REPS = 300


def fake_run(root, task, algo, seed, curves, finished=True, episodes=None, **fields):
    """A run folder whose team ``t`` has evaluation returns ``curves[t]`` at episodes 100, 200, ...
    (``episodes``: the configured length, by default the last evaluation's episode)."""
    name = f"{task}__{algo.replace('=', '-').replace(',', '_')}__seed{seed}"
    name += "".join(f"__{k}{v}" for k, v in fields.items())
    run_dir = root / name
    run_dir.mkdir(parents=True)
    n = len(next(iter(curves.values())))
    episodes = episodes or 100 * n
    TrainConfig(task=task, algo=algo, seed=seed, episodes=episodes, out=str(run_dir), **fields).save(
        run_dir / "config.json")
    with (run_dir / "metrics.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["episode", "env_steps", "wall_seconds"] + [f"return/{t}" for t in curves])
        for i in range(n):
            w.writerow([100 * (i + 1), 2500 * (i + 1), 1.0 * i] + [repr(float(c[i])) for c in curves.values()])
    if finished:
        (run_dir / "timing.json").write_text(json.dumps({"episodes": episodes, "wall": 1.0}))
    return run_dir


def direct_iqm(x):
    """Mean of the middle 50%: drop floor(n/4) sorted values at each end."""
    x, k = np.sort(x), len(x) // 4
    return x[k:len(x) - k].mean()


def direct_p(x, y):
    """P(X > Y) over all pairs, ties counting 1/2."""
    x, y = np.asarray(x)[:, None], np.asarray(y)[None, :]
    return float(((x > y) + 0.5 * (x == y)).mean())


def stat(numbers, setting, team="all"):
    return next(s for s in numbers["groups"] if s["setting"] == setting and s["team"] == team)


def test_iqm_mean_std_and_cis_match_numpy(tmp_path):
    masac = [3.0, -1.0, 8.0, 5.0, 2.0, 7.0, 4.0, 6.0]
    maddpg = [1.0, 2.0, 2.5, 0.0, 9.0, -3.0, 1.5, 0.5]
    for s, (a, b) in enumerate(zip(masac, maddpg)):
        fake_run(tmp_path, "cooperative_navigation", "masac", s, {"all": [-20.0, a]})
        fake_run(tmp_path, "cooperative_navigation", "maddpg", s, {"all": [-20.0, b]})
    _, numbers, _ = build_report(tmp_path, reps=REPS)
    for setting, scores in (("masac", masac), ("maddpg", maddpg)):
        s = stat(numbers, setting)
        assert s["seeds"] == list(range(8)) and s["scores"] == sorted(s["scores"], key=scores.index)
        assert s["mean"] == pytest.approx(np.mean(scores))
        assert s["std"] == pytest.approx(np.std(scores, ddof=1))
        assert s["iqm"] == pytest.approx(direct_iqm(scores))  # masac: mean(3, 4, 5, 6) = 4.5
        lo, hi = s["iqm_ci"]
        assert min(scores) <= lo <= s["iqm"] <= hi <= max(scores) and hi > lo
    assert stat(numbers, "masac")["iqm"] == pytest.approx(4.5)
    (c,) = numbers["comparisons"]
    assert (c["a"], c["b"], c["n_a"], c["n_b"]) == ("masac", "maddpg", 8, 8)
    assert c["p"] == pytest.approx(direct_p(masac, maddpg))
    assert c["ci"][0] <= c["p"] <= c["ci"][1]


def test_probability_of_improvement_one_when_dominating_half_when_identical(tmp_path):
    for s in range(3):
        fake_run(tmp_path / "dom", "cooperative_navigation", "masac", s, {"all": [-10.0 + s]})
        fake_run(tmp_path / "dom", "cooperative_navigation", "maddpg", s, {"all": [-20.0 + s]})
        fake_run(tmp_path / "same", "cooperative_navigation", "masac", s, {"all": [-10.0 + s]})
        fake_run(tmp_path / "same", "cooperative_navigation", "maddpg", s, {"all": [-10.0 + s]})
    (dom,) = build_report(tmp_path / "dom", reps=REPS)[1]["comparisons"]
    assert dom["p"] == 1.0 and dom["ci"] == [1.0, 1.0]
    (same,) = build_report(tmp_path / "same", reps=REPS)[1]["comparisons"]
    assert same["p"] == 0.5


def test_last_k_evaluations_and_unfinished_runs(tmp_path):
    fake_run(tmp_path, "cooperative_navigation", "masac", 0, {"all": [1.0, 2.0, 3.0, 7.0]})
    fake_run(tmp_path, "cooperative_navigation", "masac", 1, {"all": [1.0, 2.0, 5.0, 9.0]})
    fake_run(tmp_path, "cooperative_navigation", "masac", 2, {"all": [0.0, 0.0]}, finished=False, episodes=400)
    text, numbers, _ = build_report(tmp_path, last=2, reps=REPS)
    assert stat(numbers, "masac")["scores"] == [5.0, 7.0]  # means of the last 2 evaluations
    assert "mean of the last 2 evaluations" in text
    assert numbers["unfinished_left_out"] == ["cooperative_navigation__masac__seed2"]
    _, numbers, _ = build_report(tmp_path, last=1, reps=REPS, include_unfinished=True)
    assert stat(numbers, "masac")["scores"] == [7.0, 9.0, 0.0]


def test_competitive_comparisons_same_team_mirrored_or_same_opponents(tmp_path):
    pp = "predator_prey"
    for s in range(2):
        fake_run(tmp_path, pp, "predators=masac,prey=maddpg", s, {"predators": [9.0 + s], "prey": [-30.0 - s]})
        fake_run(tmp_path, pp, "predators=maddpg,prey=masac", s, {"predators": [5.0 + s], "prey": [-10.0 - s]})
        fake_run(tmp_path, pp, "predators=maddpg,prey=maddpg", s, {"predators": [7.0 + s], "prey": [-20.0 - s]})
    groups = group_runs(find_runs(tmp_path))
    found = {(ga.algo, gb.algo, team, kind) for ga, gb, team, kind in comparisons(groups, "masac", "maddpg")}
    assert found == {
        ("predators=masac,prey=maddpg", "predators=maddpg,prey=masac", "predators", "mirrored"),
        ("predators=maddpg,prey=masac", "predators=masac,prey=maddpg", "prey", "mirrored"),
        ("predators=masac,prey=maddpg", "predators=maddpg,prey=maddpg", "predators", "same opponents"),
        ("predators=maddpg,prey=masac", "predators=maddpg,prey=maddpg", "prey", "same opponents"),
    }
    _, numbers, _ = build_report(tmp_path, reps=REPS)
    by = {(c["team"], c["kind"]): c["p"] for c in numbers["comparisons"]}
    assert by == {("predators", "mirrored"): 1.0, ("prey", "mirrored"): 1.0,
                  ("predators", "same opponents"): 1.0, ("prey", "same opponents"): 1.0}
    (overall,) = numbers["overall"]
    assert overall["strata"] == 4 and overall["p"] == 1.0


def test_overall_probability_is_the_mean_over_tasks(tmp_path):
    cn = ([1.0, 2.0, 3.0], [2.5, 0.0, 1.5])
    cc = ([1.0, 1.0, 4.0], [1.0, 5.0, 6.0])
    for task, (x, y) in (("cooperative_navigation", cn), ("cooperative_communication", cc)):
        for s in range(3):
            fake_run(tmp_path, task, "masac", s, {"all": [x[s]]})
            fake_run(tmp_path, task, "maddpg", s, {"all": [y[s]]})
    _, numbers, _ = build_report(tmp_path, reps=REPS)
    (overall,) = numbers["overall"]
    assert overall["p"] == pytest.approx((direct_p(*cn) + direct_p(*cc)) / 2)


def test_other_varying_fields_split_groups(tmp_path):
    for s in range(2):
        for alpha in (0.01, 0.02):
            fake_run(tmp_path, "cooperative_navigation", "masac", s, {"all": [alpha * 100 + s]}, alpha=alpha)
        fake_run(tmp_path, "cooperative_navigation", "maddpg", s, {"all": [0.0]}, alpha=0.01)
    _, numbers, _ = build_report(tmp_path, reps=REPS)
    assert {s["setting"] for s in numbers["groups"]} == {"masac, alpha=0.01", "masac, alpha=0.02",
                                                         "maddpg, alpha=0.01"}
    (c,) = numbers["comparisons"]  # only the alpha=0.01 groups differ by the algorithm alone
    assert (c["setting_a"], c["setting_b"]) == ("masac, alpha=0.01", "maddpg, alpha=0.01")


def test_bookkeeping_fields_do_not_split_groups(tmp_path):
    """Runs that differ only in what the run keeps or shows (threads, checkpoint cadence, whether the last checkpoint
    keeps the replay) are one setting; a field that changes the training (here alpha) still splits."""
    fake_run(tmp_path, "cooperative_navigation", "masac", 0, {"all": [1.0]}, keep_replay=True, threads=1)
    fake_run(tmp_path, "cooperative_navigation", "masac", 1, {"all": [2.0]}, keep_replay=False, threads=2,
             checkpoint_every=500)
    fake_run(tmp_path, "cooperative_navigation", "masac", 2, {"all": [3.0]}, alpha=0.5)
    _, numbers, _ = build_report(tmp_path, reps=REPS)
    assert {s["setting"]: s["seeds"] for s in numbers["groups"]} == {"masac, alpha=None": [0, 1],
                                                                     "masac, alpha=0.5": [2]}


def test_runs_from_before_a_field_existed_group_with_its_default(tmp_path):
    """A config.json written before ``precision`` existed belongs with the float32 runs, not in a group of its own
    (``precision=None``); a bfloat16 run is its own group."""
    for s in range(2):
        old = fake_run(tmp_path, "cooperative_navigation", "masac", s, {"all": [1.0 + s]})
        config = json.loads((old / "config.json").read_text())
        del config["precision"]
        (old / "config.json").write_text(json.dumps(config))
        fake_run(tmp_path / "new", "cooperative_navigation", "masac", s + 2, {"all": [3.0 + s]})
        fake_run(tmp_path, "cooperative_navigation", "masac", s + 4, {"all": [5.0]}, precision="bfloat16")
    _, numbers, _ = build_report(tmp_path, reps=REPS)
    assert {s["setting"]: s["seeds"] for s in numbers["groups"]} == {"masac, precision=float32": [0, 1, 2, 3],
                                                                     "masac, precision=bfloat16": [4, 5]}


def test_marl_eval_export_structure(tmp_path):
    for s in range(2):
        fake_run(tmp_path, "cooperative_navigation", "masac", s, {"all": [-30.0, -20.0, -10.0 - s]})
        fake_run(tmp_path, "predator_prey", "predators=masac,prey=maddpg", s,
                 {"predators": [1.0, 2.0, 3.0], "prey": [-1.0, -2.0, -3.0]})
    groups = group_runs(find_runs(tmp_path))
    data = marl_eval_json(groups, last=1)
    assert list(data) == ["mpe"]
    assert set(data["mpe"]) == {"cooperative_navigation", "predator_prey/predators", "predator_prey/prey"}
    runs = data["mpe"]["cooperative_navigation"]["masac"]
    assert set(runs) == {"seed_0", "seed_1"}
    run = runs["seed_1"]
    assert list(run) == ["step_0", "step_1", "step_2", "absolute_metrics"]  # absolute metrics last, as marl-eval reads
    assert run["step_2"] == {"step_count": 7500, "return": [-11.0]}
    assert run["absolute_metrics"] == {"return": [-11.0]}
    prey = data["mpe"]["predator_prey/prey"]["predators=masac,prey=maddpg"]["seed_0"]
    assert [prey[f"step_{i}"]["return"] for i in range(3)] == [[-1.0], [-2.0], [-3.0]]
    json.dumps(data, allow_nan=False)


def test_cli_writes_report_files(tmp_path, capsys):
    for s in range(2):
        fake_run(tmp_path, "cooperative_navigation", "masac", s, {"all": [-30.0, -10.0 - s]})
        fake_run(tmp_path, "cooperative_navigation", "maddpg", s, {"all": [-30.0, -20.0 - s]})
    export = tmp_path / "marl_eval.json"
    assert cli.main(["report", str(tmp_path), "--reps", "200", "--marl-eval", str(export)]) == 0
    out = capsys.readouterr().out
    assert "| cooperative_navigation | masac | all | 2 | -10.50 ± 0.71 |" in out
    assert "CIs are wide" in out
    for name in ("report.md", "report.json", "report_curves.png"):
        assert (tmp_path / name).stat().st_size > 0
    json.loads((tmp_path / "report.json").read_text())
    assert "mpe" in json.loads(export.read_text())


def test_cli_missing_folder_is_one_line_error(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no sweep folder at") and "\n" not in err


def test_team_returns_are_read_alike_by_the_report_and_the_sweep(tmp_path):
    """``return/<team>`` columns are read by one helper (``metrics.return_columns``), in the file's order."""
    assert return_columns(metric_columns(["predators", "prey"])) == {"predators": "return/predators",
                                                                     "prey": "return/prey"}
    run_dir = fake_run(tmp_path, "predator_prey", "masac", 0, {"predators": [1.0, 2.5], "prey": [-1.0, -3.0]})
    (run,) = find_runs(tmp_path)
    assert list(run.returns) == ["predators", "prey"] and run.returns["prey"].tolist() == [-1.0, -3.0]
    assert final_returns(run_dir) == {"predators": 2.5, "prey": -3.0}


def test_a_foreign_metrics_file_is_skipped_with_a_one_line_warning(tmp_path, capsys):
    fake_run(tmp_path, "cooperative_navigation", "masac", 0, {"all": [-20.0, -18.0]})
    foreign = fake_run(tmp_path, "cooperative_navigation", "masac", 1, {"all": [-20.0]})
    (foreign / "metrics.csv").write_text("step,return/all\n100,-20.0\n")
    assert [r.config["seed"] for r in find_runs(tmp_path)] == [0]
    assert capsys.readouterr().err == f"warning: {foreign} skipped: KeyError: 'episode'\n"


def test_compare_two_values_of_another_setting(tmp_path):
    """``critic=mlp:attention`` compares the groups that differ only in the critic form (same algorithm and other
    settings): P = 1 where attention dominates mlp; groups that also differ in another setting are not paired."""
    for s in range(3):
        for critic, ret in (("mlp", -20.0), ("attention", -10.0)):
            fake_run(tmp_path, "cooperative_navigation", "masac", s, {"all": [ret + s]}, critic=critic,
                     share_params=False)
        fake_run(tmp_path, "cooperative_navigation", "masac", s, {"all": [-30.0 + s]}, critic="attention",
                 share_params=True)
    _, numbers, _ = build_report(tmp_path, pairs=["critic=attention:mlp"], reps=REPS)
    (c,) = numbers["comparisons"]
    assert (c["setting_a"], c["setting_b"]) == ("masac, critic=attention, share_params=False",
                                                "masac, critic=mlp, share_params=False")
    assert c["p"] == 1.0
    with pytest.raises(SystemExit):
        cli.main(["report", str(tmp_path), "--compare", "critic=mlp"])


def test_a_compare_that_pairs_nothing_says_why(tmp_path, capsys):
    """An explicit ``--compare`` that finds no pair of groups is reported with its reason (a value no group has, a
    field that does not vary, or the other settings that differ alongside), not silently left out; the command
    line's default pair is not explained (a sweep of one algorithm lacks it)."""
    for s in range(2):
        fake_run(tmp_path, "cooperative_navigation", "masac", s, {"all": [-10.0 + s]}, critic="attention",
                 common_draws=True)
        fake_run(tmp_path, "cooperative_navigation", "masac", s, {"all": [-20.0 + s]}, critic="local")
    pairs = ["critic=attention:local", "critic=mlp:local", "share_params=True:False", "masac:maddpg"]
    _, numbers, _ = build_report(tmp_path, pairs=pairs, reps=REPS)
    assert numbers["comparisons"] == []
    reasons = {u["pair"]: u["reason"] for u in numbers["unpaired"]}
    assert reasons == {
        "critic=attention:local": "every group with critic=attention differs from every group with critic=local "
                                  "in another setting too: common_draws (True vs False)",
        "critic=mlp:local": "no group has critic=mlp; present: attention, local",
        "share_params=True:False": "share_params does not vary between these runs; settings that do: "
                                   "common_draws, critic",
        "masac:maddpg": "no group has algorithm maddpg; present: masac"}
    assert cli.main(["report", str(tmp_path), "--no-figure", "--compare", "critic=attention:local"]) == 0
    assert "No comparison for --compare critic=attention:local: every group" in capsys.readouterr().out
    assert cli.main(["report", str(tmp_path), "--no-figure"]) == 0
    assert "No comparison" not in capsys.readouterr().out
    paired = build_report(tmp_path, pairs=["critic=attention:local"], reps=REPS, explain=False)[1]
    assert "unpaired" not in paired


def test_a_comparison_folder_of_links_reports_runs_of_several_sweeps(tmp_path):
    """Runs of two sweeps linked into one folder are found through the links (each folder once, a link back
    up the tree does not loop), so ``--compare critic=...`` can pair runs trained in different sweeps."""
    for s in range(2):
        fake_run(tmp_path / "sweep_a", "cooperative_navigation", "masac", s, {"all": [-20.0 + s]}, critic="mlp")
        fake_run(tmp_path / "sweep_b", "cooperative_navigation", "masac", s, {"all": [-10.0 + s]},
                 critic="attention")
    both = tmp_path / "both"
    both.mkdir()
    for run in sorted((tmp_path / "sweep_a").iterdir()) + sorted((tmp_path / "sweep_b").iterdir()):
        (both / run.name).symlink_to(run, target_is_directory=True)
    (both / "again").symlink_to(tmp_path / "sweep_a", target_is_directory=True)  # the same runs a second time
    (both / "loop").symlink_to(both, target_is_directory=True)
    assert len(find_runs(both)) == 4
    _, numbers, _ = build_report(both, pairs=["critic=attention:mlp"], reps=REPS)
    (c,) = numbers["comparisons"]
    assert c["p"] == 1.0
