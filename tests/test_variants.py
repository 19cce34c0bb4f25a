"""Variants derived from the same model: reinforce-elbo (eq. 5 by score function), mixed teams, derivation API."""
import subprocess
import sys
from pathlib import Path

import pyro
import pytest
import torch

from pgm_marl.config import TrainConfig
from pgm_marl.inference.exact import exact_elbo
from pgm_marl.inference.reinforce import reinforce_surrogate
from pgm_marl.models.tabular import TabularMarkovGame, random_policies
from pgm_marl.models.worlds import TabularPolicies, TabularWorld
from pgm_marl.train import train

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("seed", [1])
def test_reinforce_surrogate_is_unbiased_for_grad_exact_elbo(seed):
    """Reward-to-go + leave-one-out baseline keep the score-function estimate unbiased: mean = autograd of eq. 5."""
    pyro.set_rng_seed(seed)
    game = TabularMarkovGame.random(3, (2, 3), 2, seed=seed)
    logits = [p.log().clone().requires_grad_(True) for p in random_policies(game, seed=seed + 10)]
    alpha = 0.5
    grads = []
    for _ in range(6):
        surrogate, *_ = reinforce_surrogate(TabularWorld(game), TabularPolicies(logits, logits=True), alpha,
                                           num_particles=10000)
        grads.append(torch.cat([g.flatten() for g in torch.autograd.grad(surrogate, logits)]))
    grads = torch.stack(grads)
    mean, se = grads.mean(0), grads.std(0) / len(grads) ** 0.5
    exact = torch.cat([torch.autograd.grad(exact_elbo(game, [l.softmax(-1) for l in logits], i, alpha), logits[i])[0]
                       .flatten() for i in range(game.n_agents)])
    assert torch.all((mean - exact).abs() < 4 * se + 1e-9)


def _reinforce(game, logits, trained, steps, seed):
    pyro.set_rng_seed(seed)
    opt = torch.optim.Adam([logits[i] for i in trained], lr=0.05)
    for _ in range(steps):
        surrogate, *_ = reinforce_surrogate(TabularWorld(game), TabularPolicies(logits, logits=True), 1.0,
                                           num_particles=256)
        opt.zero_grad()
        (-surrogate).backward()
        opt.step()


def _elbos(game, logits):
    return [exact_elbo(game, [l.softmax(-1) for l in logits], i).item() for i in range(game.n_agents)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reinforce_elbo_ascends_exact_elbo_on_tabular_game(seed):
    """SVI on ELBO_i over theta_i (the others fixed, as in agent i's model) raises the exact ELBO_i, every agent."""
    game = TabularMarkovGame.random(3, (2, 3), 3, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    start = [3 * torch.randn(3, a, generator=gen) for a in game.action_sizes]  # peaked: far from soft-optimal
    before = _elbos(game, start)
    for i in range(game.n_agents):
        logits = [l.clone().requires_grad_(True) for l in start]
        _reinforce(game, logits, [i], 40, seed)
        assert _elbos(game, logits)[i] > before[i] + 0.2, (i, before[i], _elbos(game, logits)[i])


def test_reinforce_elbo_all_agents_together_in_a_shared_reward_game():
    """All agents trained at once (as the training loop does): with a shared reward every ELBO_i goes up."""
    game = TabularMarkovGame.random(3, (2, 3), 3, seed=4)
    shared = TabularMarkovGame(game.initial, game.transition, game.rewards[:1].expand_as(game.rewards).clone(), 3)
    logits = [p.log().clone().requires_grad_(True) for p in random_policies(shared, seed=5)]
    before = _elbos(shared, logits)
    _reinforce(shared, logits, [0, 1], 40, 4)
    assert all(a > b + 0.05 for a, b in zip(_elbos(shared, logits), before))


def _tiny(tmp_path, **kw):
    base = dict(episodes=8, eval_every=4, eval_episodes=2, batch_size=32, learning_starts=50, update_every=10,
                hidden=16, buffer_size=500, checkpoint_every=4, out=str(tmp_path / "run"), progress=False,
                tensorboard=False)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("algo,num_envs", [("maddpg", 2), ("masac-auto", 2), ("masac-exact", 2),
                                           ("reinforce-elbo", 2), ("reinforce-elbo", 1)])
def test_every_preset_trains(tmp_path, algo, num_envs):
    torch.set_default_dtype(torch.float32)
    cfg = _tiny(tmp_path, task="cooperative_communication", algo=algo, num_envs=num_envs)
    run = train(cfg)
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[0] == "episode,env_steps,wall_seconds,return/all" and len(rows) == 3


def test_mixed_teams_report_each_team(tmp_path):
    torch.set_default_dtype(torch.float32)
    run = train(_tiny(tmp_path, task="predator_prey", algo="predators=masac,prey=maddpg"))
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert header == "episode,env_steps,wall_seconds,return/predators,return/prey"


def test_mixing_critic_free_and_critic_algorithms_is_refused(tmp_path):
    torch.set_default_dtype(torch.float32)
    with pytest.raises(ValueError, match="mixes critic-free"):
        train(_tiny(tmp_path, task="predator_prey", algo="predators=reinforce-elbo,prey=maddpg"))


def test_derive_variant_example_runs(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "derive_variant.py"), "--episodes", "8",
                          "--out", str(tmp_path / "derived"), "--tiny"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "derived" / "metrics.csv").exists()


def test_import_path_task_with_user_teams_and_env_kwargs_trains(tmp_path):
    torch.set_default_dtype(torch.float32)
    cfg = _tiny(tmp_path, task="mpe2.simple_spread_v3", env_kwargs="N=2,local_ratio=0.5",
                teams="red=agent_0,blue=agent_1", algo="red=masac,blue=maddpg", alpha=0.02)
    header = (train(cfg) / "metrics.csv").read_text().splitlines()[0]
    assert header == "episode,env_steps,wall_seconds,return/red,return/blue"
    with pytest.raises(ValueError, match="bad entry 'N'"):
        _tiny(tmp_path, env_kwargs="N")
    with pytest.raises(ValueError, match="bad entry 'red'"):
        _tiny(tmp_path, teams="red")


@pytest.mark.parametrize("algo,alpha,refused", [
    ("masac", -0.1, "--alpha -0.1 is not a valid temperature for masac; accepted: a finite number >= 0"),
    ("masac", float("nan"), "--alpha nan is not a valid temperature for masac; accepted: a finite number >= 0"),
    ("maddpg-hot", None, "--algo maddpg-hot's own temperature -1.0 is not a valid temperature for maddpg-hot; "
                         "accepted: a finite number >= 0"),
    ("reinforce-elbo", 0.0, "--alpha 0.0 is not a valid temperature for reinforce-elbo; accepted: a finite "
                            "number > 0 (eq. 3 divides by it)"),
    ("masac-auto", 0.0, "--alpha 0.0 is not a valid temperature for masac-auto; accepted: a finite number > 0"),
    ("masac", "0.1", "--alpha '0.1' is not a valid temperature for masac"),
    ("masac", True, "--alpha True is not a valid temperature for masac"),
])
def test_each_bad_alpha_is_refused_once_by_temperatures(tmp_path, monkeypatch, algo, alpha, refused):
    """Alpha's range is checked in one place (inference.variants.temperatures), per algorithm: neither the
    Algorithm nor the config refuses these values (the config only refuses a non-finite float, as for every
    float field); building the run's learner does, with the one line, before the run folder is written."""
    import dataclasses

    from pgm_marl.errors import ConfigError, UserError
    from pgm_marl.inference import variants

    torch.set_default_dtype(torch.float32)
    monkeypatch.setattr(variants, "PRESETS", dict(variants.PRESETS))  # this test's own table
    variants.register(dataclasses.replace(variants.PRESETS["maddpg"], name="maddpg-hot", temperature=-1.0))
    with pytest.raises(UserError) as err:
        variants.temperatures([variants.resolve(algo)] * 2, "cooperative_communication", alpha)
    message = str(err.value)
    assert refused in message and "\n" not in message
    try:
        cfg = _tiny(tmp_path, task="cooperative_communication", algo=algo, alpha=alpha)
    except ConfigError as bad:
        assert alpha != alpha and str(bad).startswith("alpha must be finite, got nan")  # NaN: no float field takes it
        return
    with pytest.raises(UserError) as err:
        train(cfg)
    assert str(err.value) == message
    assert not (tmp_path / "run").exists()


def test_accepted_alphas_are_kept_as_given():
    from pgm_marl.inference.variants import PRESETS, temperatures

    masac, maddpg, auto, elbo = (PRESETS[n] for n in ("masac", "maddpg", "masac-auto", "reinforce-elbo"))
    assert temperatures([masac, maddpg], "predator_prey") == [0.26, 0.0]
    assert temperatures([masac, maddpg, auto, elbo], "mpe2.simple_push_v3", 0.05) == [0.05, 0.0, 0.05, 0.05]
    assert temperatures([masac], "cooperative_navigation", 0) == [0.0]  # 0: MA-SAC's zero-temperature limit
    assert temperatures([maddpg], "mpe2.simple_push_v3") == [0.0]  # a preset's own number needs no --alpha


@pytest.mark.parametrize("task", ["cooperative_navigation", "cooperative_communication", "predator_prey",
                                  "physical_deception"])
def test_paper_temperature_at_another_number_of_agents_warns_once(task):
    """The paper tuned alpha at each task's default size (mpe2's, read off the built env here): at that size the
    paper's value passes quietly; at another size it still trains, with one warning naming both sizes, unless
    the user chose alpha or the temperature is learned (the paper's value only starts it)."""
    import warnings

    from pgm_marl.envs.tasks import make_env
    from pgm_marl.inference.variants import PAPER_ALPHA, PAPER_AGENTS, PRESETS, temperatures

    masac, auto = PRESETS["masac"], PRESETS["masac-auto"]
    n = len(make_env(task)[1].agents)
    assert PAPER_AGENTS[task] == n
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert temperatures([masac] * n, task, None, n) == [PAPER_ALPHA[task]] * n
        assert temperatures([masac] * 24, task, 0.1, 24) == [0.1] * 24
        assert temperatures([auto] * 24, task, None, 24) == [PAPER_ALPHA[task]] * 24
    with pytest.warns(UserWarning) as record:
        assert temperatures([masac] * 24, task, None, 24) == [PAPER_ALPHA[task]] * 24
    assert len(record) == 1
    assert f"with {n} agents, not 24" in str(record[0].message) and "masac-auto" in str(record[0].message)


def test_evaluate_loads_only_the_actors_and_needs_no_alpha(tmp_path, monkeypatch, capsys):
    """An import-path task (no paper temperature) trains without --alpha where the algorithm fixes its own
    (maddpg), and `pgm-marl evaluate` of a run needs none: it builds the actors alone, no loss (so no
    temperature), and acts exactly as the trained learner does."""
    from pgm_marl import cli, learner as learner_mod
    from pgm_marl.checkpoint import load_checkpoint
    from pgm_marl.envs import make_env
    from pgm_marl.evaluate import evaluate

    torch.set_default_dtype(torch.float32)
    cfg = _tiny(tmp_path, task="mpe2.simple_push_v3", backend="pettingzoo", algo="maddpg", episodes=2, num_envs=1,
                max_cycles=10, learning_starts=5, batch_size=4, update_every=5, eval_every=2, checkpoint_every=2)
    assert cfg.alpha is None
    run = train(cfg)
    _, spec = make_env(cfg.task, max_cycles=cfg.max_cycles, **cfg.env_options())
    state = load_checkpoint(run / "checkpoint.pt")["learner"]
    trained = learner_mod.make_learner(spec, cfg)
    trained.load_state_dict(state)
    policies = learner_mod.TrainedPolicies(spec, cfg)
    policies.load_state_dict(state)
    assert evaluate(policies, spec, cfg, 2, 7) == evaluate(trained, spec, cfg, 2, 7)

    def no_loss(*args, **kwargs):
        raise AssertionError("evaluate built a loss or resolved a temperature")
    for name in ("MASACLoss", "temperatures", "reinforce_surrogate"):
        monkeypatch.setattr(learner_mod, name, no_loss)
    assert cli.main(["evaluate", str(run), "--episodes", "2", "--seed", "7"]) == 0
    out = capsys.readouterr().out
    assert "mpe2.simple_push_v3 / maddpg" in out and "return/adversary_0" in out and "return/agent_0" in out
