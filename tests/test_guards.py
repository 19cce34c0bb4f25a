"""Non-finite numbers never pass silently; runs that cannot learn warn; crash leftovers are cleaned up.

NaN / inf are injected into a real (tiny) training run by wrapping ``VectorEnv.step`` and ``Learner.update``.
"""
import json
import math
import random
import re
from types import SimpleNamespace

import pytest
import torch

from pgm_marl import cli
from pgm_marl.checkpoint import load_checkpoint
from pgm_marl.config import TrainConfig
from pgm_marl.envs import vector
from pgm_marl.envs.torch_mpe import TorchMPEVectorEnv
from pgm_marl.errors import ConfigError, NonFiniteError, UserError
from pgm_marl.evaluate import evaluate
from pgm_marl.guards import check_finite_state, first_update_step, learning_plan_warning
from pgm_marl.learner import Learner
from pgm_marl.metrics import RANDOM_BASELINES, plot_learning_curve, random_baseline
from pgm_marl.train import train

TINY = dict(task="cooperative_navigation", num_envs=1, episodes=4, hidden=8, batch_size=8, learning_starts=0, update_every=5,
            buffer_size=200, eval_every=2, eval_episodes=2, checkpoint_every=2, progress=False, tensorboard=False)


pytestmark = pytest.mark.usefixtures("one_thread")  # (tests/conftest.py)


def inject_env(monkeypatch, at_step, change, num_envs=1):
    """Apply ``change(result)`` to the ``at_step``-th step (1-based) of the env with ``num_envs`` copies, on
    either backend (both classes are wrapped; the run uses one of them)."""
    calls = {"n": 0}
    for cls in (vector.PettingZooVectorEnv, TorchMPEVectorEnv):
        def step(self, actions, _original=cls.step):
            result = _original(self, actions)
            if self.num_envs == num_envs:
                calls["n"] += 1
                if calls["n"] == at_step:
                    change(result)
            return result
        monkeypatch.setattr(cls, "step", step)


def inject_update(monkeypatch, at_update, change):
    """Apply ``change(learner, diagnostics)`` after the ``at_update``-th learner update (it may raise)."""
    original, calls = Learner.update, {"n": 0}

    def update(self, batch):
        calls["n"] += 1
        if calls["n"] == at_update:
            return change(self, original(self, batch))
        return original(self, batch)
    monkeypatch.setattr(Learner, "update", update)


def nan_reward(result):
    result.reward[0, 1] = float("nan")


def test_nan_reward_at_step_12_stops_with_one_line(tmp_path, monkeypatch, capsys):
    inject_env(monkeypatch, 12, nan_reward)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteError) as err:
        train(TrainConfig(**TINY, out=str(out)))
    assert str(err.value) == (
        "non-finite reward nan from the environment: task cooperative_navigation, env copy 0, agent agent_1, "
        "step 12 of episode 1 (env step 12); training stopped before it entered the replay buffer; "
        "no checkpoint was written")
    assert not (out / "checkpoint.pt").exists()
    # the CLI: exactly that line on stderr, exit code 3 (non-finite numbers), no traceback
    capsys.readouterr()
    inject_env(monkeypatch, 12, nan_reward)
    assert cli.main(["train", "--out", str(tmp_path / "cli"), "--num-envs", "1", "--episodes", "4", "--hidden", "8", "--batch-size", "8",
                     "--learning-starts", "0", "--no-progress", "--no-tensorboard"]) == 3
    text = capsys.readouterr().err
    assert text.count("\n") == 1 and text.startswith("error: non-finite reward nan from the environment")


def test_last_good_checkpoint_stays(tmp_path, monkeypatch):
    inject_env(monkeypatch, 62, nan_reward)  # episode 3, step 12: after the checkpoint of episode 2
    out = tmp_path / "run"
    with pytest.raises(NonFiniteError, match=r"step 12 of episode 3 \(env step 62\).*the last checkpoint \(.*"
                                             r"checkpoint.pt, episode 2\) is kept$"):
        train(TrainConfig(**TINY, out=str(out)))
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["counters"]["episode"] == 2 and ckpt["counters"]["env_steps"] == 50
    assert all(torch.isfinite(c).all() for c in ckpt["buffer"]["chunks"]["reward"].values())
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []


def test_nan_observation_names_copy_agent_component_and_step(tmp_path, monkeypatch):
    def inf_obs(result):  # copy 1's next observation of agent_2, component 3
        result.next_obs[2][1, 3] = float("inf")
    inject_env(monkeypatch, 3, inf_obs, num_envs=2)
    with pytest.raises(NonFiniteError, match=re.escape(
            "non-finite next observation inf from the environment: task cooperative_navigation, env copy 1, "
            "agent agent_2 (component 3), step 3 of episode 2 (env step 6)")):
        train(TrainConfig(**{**TINY, "num_envs": 2}, out=str(tmp_path / "run")))


def test_nonfinite_loss_names_loss_agent_and_update(tmp_path, monkeypatch):
    def nan_loss(learner, diagnostics):
        return {**diagnostics, "loss/critic": math.nan, "actor/expected_q/agent_2": math.nan}
    inject_update(monkeypatch, 3, nan_loss)
    with pytest.raises(NonFiniteError, match=r"^non-finite loss/critic = nan for agent agent_2 at update 3 "
                                             r"\(env step \d+\); training diverged \(try a lower --lr\)"):
        train(TrainConfig(**TINY, out=str(tmp_path / "run")))


def test_nonfinite_weight_names_parameter_and_agent(tmp_path, monkeypatch):
    def nan_weight(learner, diagnostics):
        with torch.no_grad():
            learner.actors.net.layers[0].weight[1, 0, 0] = float("nan")
        return diagnostics
    inject_update(monkeypatch, 2, nan_weight)
    with pytest.raises(NonFiniteError, match=r"^non-finite weights in actors\.net\.layers\.0\.weight \(agent agent_1\) "
                                             r"after update 2 \(env step \d+\)"):
        train(TrainConfig(**TINY, out=str(tmp_path / "run")))


def test_distribution_validation_error_is_one_line_but_a_bug_is_not(tmp_path, monkeypatch):
    def pyro_dump(learner, diagnostics):
        raise ValueError("Expected parameter logits (Tensor of shape (3, 8, 5)) of distribution Categorical() to "
                         "satisfy the constraint IndependentConstraint(Real(), 1), but found invalid values:\n"
                         "tensor([[[nan, nan]]])")
    inject_update(monkeypatch, 1, pyro_dump)
    with pytest.raises(NonFiniteError) as err:
        train(TrainConfig(**TINY, out=str(tmp_path / "a")))
    assert "\n" not in str(err.value) and str(err.value).startswith("non-finite values in update 1")

    def bug(learner, diagnostics):
        raise ValueError("an internal bug")
    inject_update(monkeypatch, 1, bug)
    with pytest.raises(ValueError, match="an internal bug") as err:
        train(TrainConfig(**TINY, out=str(tmp_path / "b")))
    assert not isinstance(err.value, UserError)


def test_checkpoint_with_nonfinite_state_is_refused(tmp_path, monkeypatch):
    original, calls = Learner.state_dict, {"n": 0}

    def state_dict(self):
        state = original(self)
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint (episode 4)
            state["log_alpha"] = torch.full_like(state["log_alpha"], float("inf"))
        return state
    monkeypatch.setattr(Learner, "state_dict", state_dict)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteError, match=r"refusing to write .*checkpoint.pt at update \d+: learner state: "
                                             r"log_alpha \(agent agent_0\) holds non-finite values; the last "
                                             r"checkpoint .* episode 2\) is kept"):
        train(TrainConfig(**TINY, out=str(out)))
    assert torch.load(out / "checkpoint.pt", weights_only=True)["counters"]["episode"] == 2
    with pytest.raises(NonFiniteError, match=r"optimizers\.actor\.state\.0\.exp_avg\[1\] holds"):
        bad = [torch.zeros(2), torch.tensor([math.nan])]
        check_finite_state({"optimizers": {"actor": {"state": {0: {"exp_avg": bad}}}}}, "state")


def test_evaluation_never_reports_a_nan_episode_as_zero(tmp_path, monkeypatch):
    run = train(TrainConfig(**{**TINY, "episodes": 2}, out=str(tmp_path / "run")))
    cfg = TrainConfig.load(run / "config.json")
    from pgm_marl.envs import make_env
    from pgm_marl.learner import make_learner
    _, spec = make_env(cfg.task)
    learner = make_learner(spec, cfg)
    finite = evaluate(learner, spec, cfg, 3, seed=5)
    assert math.isfinite(finite["all"])

    def nan_in_copy_1(result):
        result.reward[1, 0] = float("nan")
        result.episode_return["all"][1] = float("nan")  # (the accumulator adds the NaN reward the same way)
    inject_env(monkeypatch, 25, nan_in_copy_1, num_envs=3)
    with pytest.raises(NonFiniteError, match=r"evaluation: non-finite return/all nan in the episode of env copy 1 "
                                             r"\(env seed 6\) of task cooperative_navigation, ended at step 25"):
        evaluate(learner, spec, cfg, 3, seed=5)


def test_runs_that_never_learn_warn_and_name_the_flag(tmp_path, capsys):
    warning = learning_plan_warning(TrainConfig(episodes=10))
    assert "never take a gradient step" in warning and "--learning-starts" in warning and "at most 250" in warning
    assert "--batch-size" in learning_plan_warning(TrainConfig(episodes=10, learning_starts=0))
    assert "--update-every" in learning_plan_warning(TrainConfig(episodes=2, learning_starts=0, batch_size=8,
                                                                 update_every=100))
    assert learning_plan_warning(TrainConfig(episodes=10), on_policy=True) is None
    # the README's short run and the Makefile's quick start do learn
    assert learning_plan_warning(TrainConfig(episodes=5000, learning_starts=2500)) is None
    assert learning_plan_warning(TrainConfig(episodes=200, learning_starts=1024)) is None
    # through training, once, on stderr; --no-progress still prints the summary
    train(TrainConfig(**{**TINY, "episodes": 2, "learning_starts": 1000}, out=str(tmp_path / "run")))
    captured = capsys.readouterr()
    assert captured.err.count("warning: this run will never take a gradient step") == 1
    assert re.search(r"^done: 2 episodes, 50 env steps, 0 updates in .*results in ", captured.out, re.M)


def test_first_update_step_matches_the_training_loop():
    """The warning's arithmetic against a replay of the loop's rule (buffer >= batch, learning_starts, update_every)."""
    def replay(c):
        steps = 0
        for _ in range(-(-c.episodes // c.num_envs) * c.max_cycles):
            before, steps = steps, steps + c.num_envs
            due = steps // c.update_every > before // c.update_every
            if steps >= c.learning_starts and steps >= c.batch_size and due:
                return steps
        return None
    rng = random.Random(0)
    for _ in range(3000):
        c = SimpleNamespace(num_envs=rng.randint(1, 5), episodes=rng.randint(1, 12), max_cycles=rng.randint(1, 10),
                            update_every=rng.randint(1, 40), learning_starts=rng.randint(0, 120),
                            batch_size=rng.randint(1, 60))
        assert first_update_step(c) == replay(c), c


def test_stale_temp_files_are_removed_on_start_and_resume(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".checkpoint.pt.k1ll3d.tmp").write_bytes(b"half a checkpoint")
    train(TrainConfig(**{**TINY, "episodes": 2}, out=str(out)))
    assert not (out / ".checkpoint.pt.k1ll3d.tmp").exists()
    assert "removed 1 stale temp file(s)" in capsys.readouterr().err
    (out / ".checkpoint.pt.x2.tmp").write_bytes(b"")
    (out / "metrics.csv.tmp").write_text("episode\n")
    train(TrainConfig(**TINY, out=str(out)), resume=True)
    assert sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp")) == []
    assert "removed 2 stale temp file(s)" in capsys.readouterr().err


def test_learning_curve_shows_the_uniform_random_baseline(tmp_path, monkeypatch):
    assert random_baseline(TrainConfig()) == {"all": -25.76}
    assert random_baseline(TrainConfig(task="predator_prey")) == RANDOM_BASELINES["predator_prey"]
    assert random_baseline(TrainConfig(max_cycles=50)) is None
    assert random_baseline(TrainConfig(task="mpe2.simple_spread_v3")) is None
    csv_path = tmp_path / "metrics.csv"
    csv_path.write_text("episode,env_steps,wall_seconds,return/predators,return/prey\n100,2500,1.0,3.0,-20.0\n")
    import matplotlib.figure
    figures = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: figures.append(fig))
    plot_learning_curve(csv_path, tmp_path / "curve.png", "t", baseline=RANDOM_BASELINES["predator_prey"])
    labels = [t.get_text() for t in figures[0].axes[0].get_legend().get_texts()]
    assert "uniform random (predators)" in labels and "uniform random (prey)" in labels
    ys = sorted(line.get_ydata()[0] for line in figures[0].axes[0].get_lines() if line.get_linestyle() == "--")
    assert ys == [-17.80, 4.80]


def test_config_json_never_holds_nan_or_infinity(tmp_path):
    for field, value in (("alpha", math.inf), ("lr", math.nan), ("gamma", -math.inf), ("tau", math.nan)):
        with pytest.raises(ConfigError, match=f"^{field} must be finite"):
            TrainConfig(**{field: value})
    cfg = TrainConfig()
    cfg.alpha = math.inf  # bypassing validation: save still refuses to write non-standard JSON
    with pytest.raises(ValueError):
        cfg.save(tmp_path / "config.json")
    (tmp_path / "config.json").write_text(json.dumps({"alpha": math.inf}))  # 'Infinity' written by another tool
    with pytest.raises(ConfigError, match="alpha must be finite, got inf"):
        TrainConfig.load(tmp_path / "config.json")


def test_code_version_names_this_checkout_or_nothing(tmp_path):
    """In a git checkout: its HEAD commit (40 hex digits) and a dirty flag; a copy of the package outside any
    checkout, or inside a repository that merely encloses it, has no commit."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import pgm_marl
    from pgm_marl.runfolder import code_version

    here = code_version()
    root = Path(pgm_marl.__file__).resolve().parent.parent
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert here["commit"] == head.stdout.strip() and re.fullmatch(r"[0-9a-f]{40}", here["commit"])
        assert isinstance(here["dirty"], bool)
    enclosing = tmp_path / "repo"
    (enclosing / "site").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(enclosing)], check=True)
    subprocess.run(["git", "-C", str(enclosing), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                    "--allow-empty", "-m", "enclosing"], check=True)  # a HEAD that is not the package's
    shutil.copytree(root / "pgm_marl", enclosing / "site" / "pgm_marl",
                    ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run([sys.executable, "-c", "import json; from pgm_marl.runfolder import code_version; "
                          "print(json.dumps(code_version()))"], capture_output=True, text=True,
                         cwd=enclosing / "site", env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(enclosing / "site")})
    assert json.loads(out.stdout) == {"version": pgm_marl.__version__, "commit": None, "dirty": None}, out.stderr
