"""Training loop, determinism, resume and the CLI, on CI-sized configs.

The loop is exercised with a tiny stand-in learner (``TinyLearner``, test-only: linear policies,
one SGD step per update, the library's replay memory) so that it does not depend on the real learner's speed;
the resume test also runs with the real learner, and continuous actions train end to end on both backends.
"""
import csv
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from pgm_marl import cli, train as train_mod
from pgm_marl.checkpoint import load_checkpoint
from pgm_marl.config import TrainConfig
from pgm_marl.replay import ReplayMemory
from pgm_marl.train import train

TINY = dict(task="cooperative_navigation", episodes=6, eval_every=2, eval_episodes=3, batch_size=32,
            learning_starts=64, update_every=10, hidden=16, buffer_size=500, checkpoint_every=2,
            progress=False, tensorboard=False, num_envs=1)


class TinyLearner:
    """Test-only stand-in with the Learner interface (pgm_marl.learner): linear softmax policies, a regression
    'update', off-policy collection by the library's :class:`ReplayMemory`."""

    on_policy = False

    def __init__(self, spec, cfg):
        self.spec = spec
        self.actors = torch.nn.ModuleList(torch.nn.Linear(d, a) for d, a in zip(spec.obs_dims, spec.action_counts))
        self.opt = torch.optim.Adam(self.actors.parameters(), lr=cfg.lr)
        self.memory = ReplayMemory(cfg, spec.state_dim, spec.n_agents)

    def store(self, state, actions, reward, next_state, terminated):
        self.memory.add(state, torch.stack(actions, -1), reward, next_state, terminated)

    def updates_due(self, env_steps_before, env_steps, round_end):
        return self.memory.updates_due(env_steps_before, env_steps)

    def generators(self):
        return self.memory.generators()

    def learn(self):
        return self.update(self.memory.sample())

    @torch.no_grad()
    def act(self, obs, deterministic=False):
        logits = [net(o) for net, o in zip(self.actors, obs)]  # the env action format: one [K] tensor per agent
        if deterministic:
            return [lg.argmax(-1) for lg in logits]
        return [torch.distributions.Categorical(logits=lg).sample() for lg in logits]

    def update(self, batch):
        obs = batch.state.split(list(self.spec.obs_dims), dim=-1)
        logp = [torch.log_softmax(net(o), -1).gather(-1, batch.actions[:, i:i + 1]).squeeze(-1)
                for i, (net, o) in enumerate(zip(self.actors, obs))]
        loss = -(torch.stack(logp, -1) * batch.reward).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss/actor": float(loss.detach())}

    def state_dict(self):
        return {"actors": self.actors.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state):
        self.actors.load_state_dict(state["actors"])
        self.opt.load_state_dict(state["opt"])


pytestmark = pytest.mark.usefixtures("one_thread")  # (tests/conftest.py)


@pytest.fixture(params=["pettingzoo", "torch"])
def tiny(request):
    """The tiny config on each environment backend (same loop, same guarantees)."""
    return {**TINY, "backend": request.param}


@pytest.fixture
def tiny_learner(monkeypatch):
    monkeypatch.setattr(train_mod, "make_learner", TinyLearner)


def same(a, b) -> bool:
    """Nested dicts / lists of tensors and plain values, equal bit for bit (e.g. two checkpoints' buffers)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    return a == b


def rows(run_dir, drop=("wall_seconds",)):
    with (run_dir / "metrics.csv").open(newline="") as f:
        return [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(f)]


def test_train_writes_run_folder(tmp_path, tiny_learner, tiny):
    run = train(TrainConfig(**tiny, out=str(tmp_path / "run")))
    for name in ("config.json", "metrics.csv", "learning_curve.png", "checkpoint.pt", "timing.json"):
        assert (run / name).is_file(), name
    got = rows(run, drop=())
    assert [int(r["episode"]) for r in got] == [2, 4, 6]
    assert [int(r["env_steps"]) for r in got] == [50, 100, 150]
    assert list(got[0]) == ["episode", "env_steps", "wall_seconds", "return/all"]
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    # updates every 10 env steps from env step 64 (buffer >= 32): steps 70, 80, ..., 150
    assert ckpt["counters"]["updates"] == 9 and ckpt["counters"]["episode"] == 6
    assert set(ckpt["timing"]) >= {"act", "env", "learn", "eval", "checkpoint"}
    timing = json.loads((run / "timing.json").read_text())
    assert timing["episodes"] == 6 and timing["updates"] == 9 and timing["replay_bytes"] > 0  # the buffer's chunks


def test_same_seed_same_metrics(tmp_path, tiny_learner, tiny):
    a = train(TrainConfig(**{**tiny, "num_envs": 2}, out=str(tmp_path / "a")))
    b = train(TrainConfig(**{**tiny, "num_envs": 2}, out=str(tmp_path / "b")))
    assert rows(a) == rows(b) and len(rows(a)) == 3
    c = train(TrainConfig(**{**tiny, "seed": 1, "num_envs": 2}, out=str(tmp_path / "c")))
    assert rows(c) != rows(a)


def _resume_matches(tmp_path, tiny):
    straight = train(TrainConfig(**tiny, out=str(tmp_path / "straight")))
    cut = train(TrainConfig(**{**tiny, "episodes": 4}, out=str(tmp_path / "cut")))
    with (cut / "metrics.csv").open("a") as f:  # a row written after the checkpoint must be dropped
        f.write("5,125,1.0,-99.0\n")
    resumed = train(TrainConfig(**tiny, out=str(tmp_path / "cut")), resume=True)
    assert rows(resumed) == rows(straight) and len(rows(straight)) == 3
    a, b = (load_checkpoint(run / "checkpoint.pt") for run in (straight, resumed))
    assert a["counters"]["updates"] == b["counters"]["updates"]
    assert same(a["buffer"], b["buffer"]) and same(a["learner"], b["learner"]) and same(a["rng"], b["rng"])


def test_resume_equals_uninterrupted_run(tmp_path, tiny_learner, tiny):
    _resume_matches(tmp_path, tiny)


def test_resume_with_many_replay_chunk_files(tmp_path, tiny_learner, tiny, monkeypatch):
    """With chunks of 8 rows the replay spans many files in checkpoint_files/, most kept from one checkpoint
    to the next: a resumed run still ends bit-identical to the straight one, and the folder holds exactly the
    files the last checkpoint refers to."""
    from pgm_marl import checkpoint, replay
    monkeypatch.setattr(replay, "CHUNK_ROWS", 8)
    monkeypatch.setattr(replay, "CHUNK_BYTES", 1)
    _resume_matches(tmp_path, tiny)
    run = tmp_path / "cut"
    raw = torch.load(run / "checkpoint.pt", weights_only=True)["buffer"]["chunks"]
    refs = {ref[checkpoint.TENSOR_FILE] for chunks in raw.values() for ref in chunks.values()}
    assert len(raw["states"]) > 10 and {p.name for p in (run / "checkpoint_files").iterdir()} == refs


def test_resume_equals_uninterrupted_run_real_learner(tmp_path, tiny):
    _resume_matches(tmp_path, tiny)


def test_existing_run_refused_and_resume_checks(tmp_path, tiny_learner, capsys, tiny):
    out = str(tmp_path / "run")
    train(TrainConfig(**{**tiny, "episodes": 2}, out=out))
    with pytest.raises(FileExistsError, match="--resume"):
        train(TrainConfig(**tiny, out=out))
    with pytest.raises(ValueError, match="seed=3 differs"):
        train(TrainConfig(**{**tiny, "seed": 3}, out=out), resume=True)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(TrainConfig(**tiny, out=str(tmp_path / "none")), resume=True)
    assert cli.main(["train", "--out", out, "--episodes", "2", "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err
    # CLI resume: flags not given come from the run's config.json
    assert cli.main(["train", "--out", out, "--episodes", "4", "--resume"]) == 0
    assert [int(r["episode"]) for r in rows(tmp_path / "run")] == [2, 4]


def test_a_checkpoint_from_before_a_field_existed_resumes_with_its_default(tmp_path, tiny_learner, tiny):
    """A field added later (here ``precision``) is absent from older checkpoints: they resume with its default,
    and asking for another value is refused like any other change."""
    out = tmp_path / "run"
    train(TrainConfig(**{**tiny, "episodes": 2}, out=str(out)))
    path = out / "checkpoint.pt"
    ckpt = torch.load(path, weights_only=True)
    del ckpt["config"]["precision"]
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match="precision='bfloat16' differs from the checkpoint's 'float32'"):
        train(TrainConfig(**{**tiny, "precision": "bfloat16"}, out=str(out)), resume=True)
    train(TrainConfig(**tiny, out=str(out)), resume=True)
    assert [int(r["episode"]) for r in rows(out)] == [2, 4, 6]


def test_keep_replay_off_drops_it_from_the_last_checkpoint_only(tmp_path, tiny_learner, tiny, monkeypatch):
    """``keep_replay=False``: the checkpoints before the last hold the replay (an interrupted run resumes), the last
    drops it and its files; it may be switched on resume (the run still ends bit-identical to a straight one); a
    finished run without replay refuses to be extended, with one line."""
    from pgm_marl import session as session_mod
    from pgm_marl.checkpoint import replay_dropped
    written = []
    save = session_mod.save_checkpoint

    def recording(path, payload, files=None):
        written.append((payload["counters"]["episode"], replay_dropped(payload["buffer"])))
        save(path, payload, files)
    monkeypatch.setattr(session_mod, "save_checkpoint", recording)
    straight = train(TrainConfig(**tiny, out=str(tmp_path / "straight")))
    assert written == [(2, False), (4, False), (6, False)]
    written.clear()
    off = train(TrainConfig(**{**tiny, "keep_replay": False}, out=str(tmp_path / "off")))
    assert written == [(2, False), (4, False), (6, True)]  # (the last only)
    assert rows(off) == rows(straight)
    written.clear()
    cut = train(TrainConfig(**{**tiny, "episodes": 4, "keep_replay": True}, out=str(tmp_path / "cut")))
    resumed = train(TrainConfig(**{**tiny, "keep_replay": False}, out=str(cut)), resume=True)
    assert written == [(2, False), (4, False), (6, True)]  # (the last only)
    assert rows(resumed) == rows(straight)
    a, b = (load_checkpoint(run / "checkpoint.pt") for run in (straight, resumed))
    assert same(a["learner"], b["learner"]) and same(a["rng"], b["rng"])
    assert a["counters"]["updates"] == b["counters"]["updates"] == 9
    assert b["buffer"] == {"dropped": True, "nbytes": json.loads((resumed / "timing.json").read_text())["replay_bytes"]}
    assert b["buffer"]["nbytes"] > 0 and not any((resumed / "checkpoint_files").iterdir())
    with pytest.raises(ValueError, match="finished at episode 6 and its last checkpoint dropped the replay buffer"):
        train(TrainConfig(**{**tiny, "episodes": 8}, out=str(resumed)), resume=True)
    train(TrainConfig(**tiny, out=str(resumed)), resume=True)  # nothing left to train: no replay needed
    assert rows(resumed) == rows(straight)


def test_drop_replay_of_finished_runs(tmp_path, capsys):
    """``pgm-marl drop-replay``: a finished run's checkpoint loses its replay and files, not its weights (evaluate
    reads it as before); a second call finds nothing; an unfinished run and a missing one are refused in one
    line."""
    from pgm_marl.evaluate import evaluate, load_trained
    cfg = TrainConfig(**{**TINY, "backend": "torch", "episodes": 4}, out=str(tmp_path / "run"))
    run = train(cfg)
    before = torch.load(run / "checkpoint.pt", weights_only=True)
    files = sum(p.stat().st_size for p in (run / "checkpoint_files").iterdir())
    def returns():
        _, spec, policies, _ = load_trained(run)
        return evaluate(policies, spec, cfg, 3, 7)
    expected = returns()
    assert files > 0 and cli.main(["drop-replay", str(run)]) == 0
    assert f"replay dropped, {files / 1e9:.2f} GB freed" in capsys.readouterr().out
    after = torch.load(run / "checkpoint.pt", weights_only=True)
    assert after["buffer"] == {"dropped": True, "nbytes": files} and not (run / "checkpoint_files").exists()
    assert all(same(before[k], after[k]) for k in before if k != "buffer")
    assert returns() == expected
    assert cli.main(["drop-replay", str(run)]) == 0 and "no replay left to drop" in capsys.readouterr().out
    unfinished = train(TrainConfig(**{**TINY, "backend": "torch", "episodes": 2}, out=str(tmp_path / "half")))
    raw = torch.load(unfinished / "checkpoint.pt", weights_only=True)
    raw["config"]["episodes"] = 4  # (as if it had stopped at episode 2 of 4)
    torch.save(raw, unfinished / "checkpoint.pt")
    capsys.readouterr()
    assert cli.main(["drop-replay", str(unfinished), str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "is not a finished run's (episode 2 of 4)" in err and err.count("\n") == 1
    assert any((unfinished / "checkpoint_files").iterdir())
    assert cli.main(["drop-replay", str(tmp_path / "none")]) == 2
    assert "no checkpoint file at" in capsys.readouterr().err
    # a folder of runs (a sweep's): every finished run below it, the unfinished one skipped and named
    again = train(TrainConfig(**{**TINY, "backend": "torch", "episodes": 2}, out=str(tmp_path / "sweep" / "again")))
    shutil.move(str(unfinished), str(tmp_path / "sweep" / "half"))
    shutil.move(str(run), str(tmp_path / "sweep" / "run"))
    capsys.readouterr()
    assert cli.main(["drop-replay", str(tmp_path / "sweep")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{again}: replay dropped") and "half: skipped (" in lines[1]
    assert lines[2].endswith("run: no replay left to drop") and lines[3].endswith("GB freed") and len(lines) == 4
    assert not (again / "checkpoint_files").exists()
    assert any((tmp_path / "sweep" / "half" / "checkpoint_files").iterdir())
    (tmp_path / "empty").mkdir()
    assert cli.main(["drop-replay", str(tmp_path / "empty")]) == 2
    assert "no run folder (checkpoint.pt) in" in capsys.readouterr().err


def test_cli_help_and_errors(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "--batch-size" in text and "round-robin" in text and "--resume" in text
    assert cli.main(["train", "--task", "no_such_task", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown task 'no_such_task'") and err.count("\n") == 1
    assert cli.main(["train", "--episodes", "0"]) == 2
    assert "episodes must be a positive int" in capsys.readouterr().err
    assert cli.main(["evaluate", "/nonexistent/run"]) == 2


def test_cli_evaluate_and_gif(tmp_path, capsys, tiny):  # the real learner: evaluate loads its actors
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--no-progress", "--no-tensorboard"]
    args += [f"--{k.replace('_', '-')}={v}" for k, v in tiny.items() if k not in ("progress", "tensorboard")]
    assert cli.main(args + ["--episodes", "2"]) == 0
    shutil.rmtree(out / "checkpoint_files")  # evaluating reads the actors, never the replay's files
    gif = tmp_path / "ep.gif"
    assert cli.main(["evaluate", str(out), "--episodes", "3", "--gif", str(gif)]) == 0
    text = capsys.readouterr().out
    assert "return/all:" in text
    assert gif.read_bytes()[:6] in (b"GIF89a", b"GIF87a")


@pytest.mark.parametrize("backend", ["pettingzoo", "torch"])
@pytest.mark.parametrize("algo", ["masac", "maddpg", "masac-auto"])
def test_continuous_actions_train_end_to_end(tmp_path, backend, algo):
    """Box actions (mpe2's continuous_actions=True) through the real learner: act, store float actions,
    update, evaluate, checkpoint; masac-exact is refused with one line saying why."""
    cfg = TrainConfig(**{**TINY, "backend": backend, "algo": algo, "episodes": 4, "num_envs": 2,
                         "env_kwargs": "continuous_actions=True"}, out=str(tmp_path / "run"))
    run = train(cfg)
    ckpt = load_checkpoint(run / "checkpoint.pt")
    actions = next(iter(ckpt["buffer"]["chunks"]["actions"].values()))  # the replay buffer's first chunk
    assert ckpt["counters"]["updates"] > 0 and actions.dtype == torch.float32
    assert actions.shape[1] == 15  # three agents, Box(5) each
    assert len(rows(run)) == 2
    with pytest.raises(ValueError, match="masac-exact.*Box.*finite set of actions"):
        train(TrainConfig(**{**cfg.to_dict(), "algo": "masac-exact", "out": str(tmp_path / "exact")}))


def test_evaluate_an_import_path_run_saved_without_alpha(tmp_path, capsys):
    """Runs of import-path tasks from before --alpha was required have alpha none in config.json; they still
    evaluate (the checkpoint restores the temperatures), while training such a task without --alpha is refused."""
    out = tmp_path / "push"
    small = {**TINY, "task": "mpe2.simple_push_v3", "backend": "pettingzoo", "episodes": 2, "num_envs": 1}
    with pytest.raises(ValueError, match="--alpha"):
        train(TrainConfig(**small, out=str(out)))
    train(TrainConfig(**small, alpha=0.05, out=str(out)))
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "alpha": None}))
    assert cli.main(["evaluate", str(out), "--episodes", "2"]) == 0
    assert "return/" in capsys.readouterr().out


@pytest.mark.parametrize("preset, expected", [(None, "1"), ("0", "0")])
def test_cli_enables_torch_huge_pages_before_torch_is_imported(preset, expected):
    """torch reads THP_MEM_ALLOC_ENABLE once, at its first allocation: the CLI must set it before importing
    torch (an import hook records the value the first import of torch sees, whether the CLI's modules or the
    caller import it first), and keep a value the user set."""
    probe = (
        "import os, sys\n"
        "seen = []\n"
        "class Hook:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' and not seen:\n"
        "            seen.append(os.environ.get('THP_MEM_ALLOC_ENABLE'))\n"
        "        return None\n"
        "sys.meta_path.insert(0, Hook())\n"
        "import pgm_marl.cli\n"
        "import torch\n"
        "print(seen[0])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if preset is not None:
        env["THP_MEM_ALLOC_ENABLE"] = preset
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


def test_cross_play_takes_each_agent_from_its_owner(tmp_path):
    """``CrossPlay``: agent j acts by the policy ``owner[j]`` names. Checked against one policy object whose actors
    hold a's weights for the predators and b's for the prey (an independent construction): same evaluation
    returns; a bad owner index is a one-line error."""
    from pgm_marl.envs import make_env
    from pgm_marl.evaluate import CrossPlay, evaluate
    from pgm_marl.learner import TrainedPolicies
    cfg = TrainConfig(task="predator_prey", hidden=16, backend="torch", progress=False, tensorboard=False)
    _, spec = make_env(cfg.task, max_cycles=cfg.max_cycles, **cfg.env_options())
    prey = set(spec.team_indices("prey"))
    owner = [1 if j in prey else 0 for j in range(len(spec.agents))]
    torch.manual_seed(0)
    a, b, spliced = (TrainedPolicies(spec, cfg) for _ in range(3))
    state = {k: torch.stack([(b if owner[j] else a).actors.state_dict()[k][j] for j in range(len(owner))])
             for k in spliced.actors.state_dict()}
    spliced.actors.load_state_dict(state)
    crossed = evaluate(CrossPlay([a, b], owner), spec, cfg, 20, 3)
    assert crossed == evaluate(spliced, spec, cfg, 20, 3)
    assert crossed != evaluate(CrossPlay([b, a], owner), spec, cfg, 20, 3)  # (the swap is another pairing)
    assert evaluate(CrossPlay([a, a], owner), spec, cfg, 20, 3) == evaluate(a, spec, cfg, 20, 3)
    with pytest.raises(ValueError, match="2 is not a policy index; accepted: ints in 0..1"):
        CrossPlay([a, b], [0, 2, 1, 1])


def test_cli_evaluate_one_team_from_another_run(tmp_path, capsys):
    """``pgm-marl evaluate A --team prey=B``: A's predators against B's prey, the numbers of ``CrossPlay`` over the
    two runs' loaded policies; a team the task lacks, a run of another task, a team named twice and a malformed value
    are one line."""
    from pgm_marl.evaluate import CrossPlay, evaluate, load_trained
    base = {**TINY, "task": "predator_prey", "backend": "torch", "episodes": 2}
    a, b = (train(TrainConfig(**base, seed=s, out=str(tmp_path / f"s{s}"))) for s in (0, 1))
    cn = train(TrainConfig(**{**base, "task": "cooperative_navigation"}, out=str(tmp_path / "cn")))
    capsys.readouterr()
    assert cli.main(["evaluate", str(a), "--episodes", "5", "--team", f"prey={b}"]) == 0
    text = capsys.readouterr().out
    cfg, spec, pa, _ = load_trained(a)
    owner = [1 if j in spec.team_indices("prey") else 0 for j in range(len(spec.agents))]
    want = evaluate(CrossPlay([pa, load_trained(b)[2]], owner), spec, cfg, 5, cfg.seed + cfg.eval_seed_offset)
    assert f"prey from {b}" in text and all(f"return/{t}: {v:.3f}" in text for t, v in want.items())
    assert want != evaluate(pa, spec, cfg, 5, cfg.seed + cfg.eval_seed_offset)  # (B's prey are not A's)
    for flag, message in ((f"wolves={b}", "has no team 'wolves'; accepted: predators, prey"),
                          (f"prey={cn}", "a run of cooperative_navigation")):
        assert cli.main(["evaluate", str(a), "--episodes", "5", "--team", flag]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert cli.main(["evaluate", str(a), "--team", f"prey={b}", "--team", f"prey={cn}"]) == 2  # (not the last)
    err = capsys.readouterr().err
    assert "--team names prey more than once" in err and err.count("\n") == 1, err
    with pytest.raises(SystemExit) as exit_:  # (argparse's own one-line error)
        cli.main(["evaluate", str(a), "--team", "prey"])
    assert exit_.value.code == 2 and "got 'prey'; accepted: TEAM=RUN_DIR" in capsys.readouterr().err


@pytest.mark.parametrize("field", ["share_params", "common_draws", "keep_replay"])
def test_bool_fields_refuse_other_values_in_one_line(field):
    """A config.json (or library caller) giving a bool field another value is a one-line error naming it."""
    with pytest.raises(ValueError, match=f"^{field} must be true or false, got 'yes'$"):
        TrainConfig(**{field: "yes"})
